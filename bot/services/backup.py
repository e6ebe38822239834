"""A group's (or a unit's groups') settings, schedules and lesson library as one JSON file, and the way
back: a file read, checked in full, compared with a group, and restored into it in one go.

The file holds what the committee set up, never who is in the group: no member, no name, no id but the
group's own. Its checks are those of the commands that set each thing (settings, schedule rules, lesson
files), so a file passes exactly when typing the same in by hand would. A restore adds what the group
does not have yet (a schedule with the same rule and text, a lesson with the same title, is left alone)
and overwrites the settings, so restoring the same file twice changes nothing the second time.

The format, version 1::

    {"format": "branch-assistant-backup", "version": 1, "created_at": "2026-11-23T02:00:00Z",
     "from": {"title": "第一党支部", "telegram_id": -1001234567077},
     "unit": null,                                  # or {"name": "园区综合党委"} for a unit's backup
     "groups": [{"title": "第一党支部", "telegram_id": -1001234567077,
                 "settings": {"language": "zh", "timezone": "Asia/Shanghai",
                              "quiet_hours": {"start": "22:00", "end": "07:00"},   # null: none
                              "meeting_reminders": [1440, 60],                    # minutes before
                              "meeting_rules": {"general": "quarter", "committee": "month"},
                              "vanguard_weights": {"attendance": 40, "acks": 20, "learning": 30, "identity": 10}},
                 "schedules": [{"kind": "announcement", "rule": "every Monday 09:00", "text": "…",
                                "with_ack": false, "quiet_ok": false, "status": "active"},
                               {"kind": "lesson_push", "rule": "every day 20:00", "status": "active"}],
                 "lessons": [{"title": "…", "body": "…", "source": "…", "tags": ["…"], "date": null,
                              "quiz": {"question": "…", "options": ["…", "…"], "answer": "…"}}]}]}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import lesson_files
from bot.services import lessons as lesson_service
from bot.services import meetings as meeting_service
from bot.services import organisation as org_service
from bot.services import outbox as outbox_service
from bot.services import points as points_service
from bot.services import reports as report_service
from bot.services import schedules as schedule_service
from bot.services import vanguard as vanguard_service
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.lesson_files import LessonDraft
from bot.services.timephrase import Rule
from storage import lessons as lesson_store
from storage import schedules as schedule_store
from storage.models import AuditLog, Chat, Lesson, Schedule

FORMAT = "branch-assistant-backup"
VERSION = 1
MAX_FILE_BYTES = 1024 * 1024
MAX_GROUPS = 2000  # a park's units hold hundreds of groups; the file's size is the real bound
ANNOUNCEMENT = schedule_service.ANNOUNCEMENT
# The group's one-of-a-kind schedules that the committee chooses; a meeting's steps and the bot's own
# checks are not settings and stay out of the file.
ROUTINES = (lesson_service.PUSH, points_service.WEEKLY_POST, points_service.MONTHLY_POST, report_service.MONTHLY)
STATUSES = ("active", "paused")
SETTINGS = ("language", "timezone", "quiet_hours", "meeting_reminders", "meeting_rules", "vanguard_weights")
_ROOT_FIELDS = ("format", "version", "created_at", "from", "unit", "groups")
_GROUP_FIELDS = ("title", "telegram_id", "settings", "schedules", "lessons")
_ANNOUNCEMENT_FIELDS = ("kind", "rule", "text", "with_ack", "quiet_ok", "status")
_ROUTINE_FIELDS = ("kind", "rule", "status")
_LESSON_FIELDS = ("title", "body", "source", "tags", "date", "quiz")
_QUIZ_FIELDS = ("question", "options", "answer")
# Where in a lesson each of the lesson file checks points.
_LESSON_PROBLEM_FIELDS = {
    "lessons.title_missing": "title",
    "lessons.body_missing": "body",
    "lessons.source_missing": "source",
    "lessons.bad_tags": "tags",
    "lessons.bad_date": "date",
    "lessons.bad_quiz": "quiz",
    "lessons.quiz_incomplete": "quiz.question",
    "lessons.bad_options": "quiz.options",
    "lessons.bad_answer": "quiz.answer",
}
_LESSON_LENGTH_FIELDS = {"question": "quiz.question", "options": "quiz.options"}
_UNSAFE_IN_NAMES = re.compile(r"[\s/\\:*?\"<>|]+")


# ------------------------------------------------------------------------------------------ what a file holds


@dataclass(frozen=True)
class Problem:
    path: str  # where in the file, e.g. "groups[0].schedules[2].rule"; "" for the file as a whole
    key: str  # a locale key (of this feature, or of the check that refused the value)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Announcement:
    rule: Rule
    text: str
    with_ack: bool
    quiet_ok: bool
    status: str


@dataclass(frozen=True)
class Routine:
    kind: str
    rule: Rule
    status: str


@dataclass(frozen=True)
class EntrySettings:
    """The settings an entry carries; None where the file leaves one out (the group's stays)."""

    language: str | None = None
    timezone: str | None = None
    quiet_hours: tuple[str | None, str | None] | None = None  # (None, None): no quiet hours
    meeting_reminders: tuple[int, ...] | None = None
    meeting_rules: dict[str, str] | None = None
    vanguard_weights: dict[str, int] | None = None


@dataclass(frozen=True)
class Entry:
    index: int
    title: str
    telegram_id: int
    settings: EntrySettings
    announcements: list[Announcement]
    routines: list[Routine]
    lessons: list[LessonDraft]


@dataclass(frozen=True)
class Backup:
    created_at: datetime | None
    source_title: str
    unit_name: str | None
    entries: list[Entry]
    problems: list[Problem]

    def entry_for(self, telegram_id: int) -> Entry | None:
        """The entry to restore into this group: its own, or the only one there is."""
        own = next((entry for entry in self.entries if entry.telegram_id == telegram_id), None)
        if own is None and len(self.entries) == 1:
            return self.entries[0]
        return own


def _at(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


class _Reader:
    """Walks a parsed file, keeping every problem found rather than stopping at the first."""

    def __init__(self, base: GroupSettings, now: datetime) -> None:
        self.base = base
        self.now = now
        self.problems: list[Problem] = []

    def add(self, path: str, key: str, **params: Any) -> None:
        self.problems.append(Problem(path, key, params))

    def refused(self, path: str, error: DomainError) -> None:
        self.problems.append(Problem(path, error.key, dict(error.params)))

    def mapping(self, value: Any, path: str, known: tuple[str, ...], required: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.add(path, "backup.not_object")
            return None
        for key in value:
            if key not in known:
                self.add(_at(path, str(key)), "backup.unknown_field")
        for key in required:
            if key not in value:
                self.add(_at(path, key), "backup.missing")
        return value

    def text(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.add(path, "backup.not_text")
            return None
        if "\x00" in value:  # a "\u0000" escape: nobody types one, and PostgreSQL cannot store it
            self.add(path, "backup.nul_character")
            return None
        return value

    def integer(self, value: Any, path: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, "backup.not_integer")
            return None
        return value

    def flag(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.add(path, "backup.not_flag")
            return None
        return value

    def listing(self, value: Any, path: str) -> list | None:
        if not isinstance(value, list):
            self.add(path, "backup.not_list")
            return None
        return value

    # --------------------------------------------------------------------------------- the whole file

    def backup(self, root: Any) -> Backup:
        empty = Backup(None, "", None, [], self.problems)
        if self.mapping(root, "", _ROOT_FIELDS, ("format", "version", "groups")) is None:
            return empty
        if root.get("format") != FORMAT:
            self.add("format", "backup.wrong_format", expected=FORMAT)
            return empty
        if root.get("version") != VERSION or isinstance(root.get("version"), bool):
            self.add("version", "backup.wrong_version", value=str(root.get("version"))[:20], supported=VERSION)
            return empty
        created_at = None
        if root.get("created_at") is not None and self.text(root["created_at"], "created_at") is not None:
            try:
                created_at = datetime.fromisoformat(root["created_at"].replace("Z", "+00:00"))
            except ValueError:
                self.add("created_at", "backup.bad_moment")
        source_title = ""
        if root.get("from") is not None:
            source = self.mapping(root["from"], "from", ("title", "telegram_id"))
            if source is not None:
                if "title" in source:
                    source_title = self.text(source["title"], "from.title") or ""
                if "telegram_id" in source:
                    self.integer(source["telegram_id"], "from.telegram_id")
        unit_name = None
        if root.get("unit") is not None:
            unit = self.mapping(root["unit"], "unit", ("name",), ("name",))
            if unit is not None and "name" in unit:
                unit_name = self.text(unit["name"], "unit.name")
        entries = []
        groups = self.listing(root.get("groups"), "groups") if "groups" in root else None
        if groups is not None and not groups:
            self.add("groups", "backup.no_groups")
        elif groups is not None and len(groups) > MAX_GROUPS:
            self.add("groups", "backup.too_many_groups", limit=MAX_GROUPS)
        elif groups is not None:
            seen: dict[int, str] = {}
            for index, raw in enumerate(groups):
                entry = self.entry(raw, index)
                if entry is None:
                    continue
                path = _at(_at("groups", index), "telegram_id")
                if entry.telegram_id in seen:
                    self.add(path, "backup.duplicate_group", first=seen[entry.telegram_id])
                    continue
                seen[entry.telegram_id] = path
                entries.append(entry)
        return Backup(created_at, source_title, unit_name, entries, self.problems)

    def entry(self, raw: Any, index: int) -> Entry | None:
        path = _at("groups", index)
        before = len(self.problems)
        if self.mapping(raw, path, _GROUP_FIELDS, ("telegram_id",)) is None:
            return None
        telegram_id = self.integer(raw["telegram_id"], _at(path, "telegram_id")) if "telegram_id" in raw else None
        title = (self.text(raw["title"], _at(path, "title")) or "") if "title" in raw else ""
        settings = self.settings(raw.get("settings"), _at(path, "settings"))
        # The entry's own zone and quiet hours are those its schedules will run in once restored.
        checked_in = GroupSettings(
            settings.language or self.base.language,
            settings.timezone or self.base.timezone,
            *(
                settings.quiet_hours
                if settings.quiet_hours is not None
                else (self.base.quiet_start, self.base.quiet_end)
            ),
        )
        announcements, routines = self.schedules(raw.get("schedules"), _at(path, "schedules"), checked_in)
        lessons = self.lessons(raw.get("lessons"), _at(path, "lessons"))
        if len(self.problems) > before or telegram_id is None:
            return None
        return Entry(index, title, telegram_id, settings, announcements, routines, lessons)

    # --------------------------------------------------------------------------------- settings

    def settings(self, raw: Any, path: str) -> EntrySettings:
        if raw is None or self.mapping(raw, path, SETTINGS) is None:
            return EntrySettings()
        found: dict[str, Any] = {}
        try_each = {
            "language": self._language,
            "timezone": self._timezone,
            "quiet_hours": self._quiet_hours,
            "meeting_reminders": self._reminders,
            "meeting_rules": self._rules,
            "vanguard_weights": self._weights,
        }
        for name, read in try_each.items():
            if name not in raw:
                continue
            where = _at(path, name)
            try:
                value = read(raw[name], where)
            except DomainError as error:
                self.refused(where, error)
                continue
            if value is not None:
                found[name] = value
        return EntrySettings(**found)

    def _language(self, value: Any, path: str) -> str | None:
        if self.text(value, path) is None:
            return None
        if value not in chat_service.LANGUAGES:
            raise DomainError("settings.bad_language")
        return value

    def _timezone(self, value: Any, path: str) -> str | None:
        return chat_service.validate_timezone(value) if self.text(value, path) is not None else None

    def _quiet_hours(self, value: Any, path: str) -> tuple[str | None, str | None] | None:
        if value is None:
            return (None, None)
        if self.mapping(value, path, ("start", "end"), ("start", "end")) is None:
            return None
        start, end = value.get("start"), value.get("end")
        if not isinstance(start, str) or not isinstance(end, str):
            raise DomainError("settings.bad_quiet_hours")
        return chat_service.validate_quiet_hours(start, end)

    def _reminders(self, value: Any, path: str) -> tuple[int, ...] | None:
        if self.listing(value, path) is None:
            return None
        if not all(self.integer(item, _at(path, index)) is not None for index, item in enumerate(value)):
            return None
        # The settings command's own reading, so the same offsets pass (minutes, written as such).
        return meeting_service.parse_reminders(",".join(f"{minutes}m" for minutes in value)) if value else ()

    def _rules(self, value: Any, path: str) -> dict[str, str] | None:
        if not isinstance(value, dict):
            self.add(path, "backup.not_object")
            return None
        if not all(self.text(period, _at(path, str(kind))) is not None for kind, period in value.items()):
            return None
        if not value:
            return {}
        text = " ".join(f"{kind}={period}" for kind, period in value.items())
        return attendance_service.parse_rules(text, {})

    def _weights(self, value: Any, path: str) -> dict[str, int] | None:
        components = vanguard_service.COMPONENTS
        if self.mapping(value, path, components, components) is None:
            return None
        if not all(self.integer(value[name], _at(path, name)) is not None for name in components if name in value):
            return None
        if not all(name in value for name in components):
            return None
        text = " ".join(f"{name}={value[name]}" for name in components)
        return vanguard_service.parse_weights(text, dict.fromkeys(components, 0))

    # --------------------------------------------------------------------------------- schedules

    def schedules(self, raw: Any, path: str, settings: GroupSettings) -> tuple[list[Announcement], list[Routine]]:
        announcements: list[Announcement] = []
        routines: list[Routine] = []
        if raw is None or self.listing(raw, path) is None:
            return announcements, routines
        kinds: dict[str, str] = {}
        for index, item in enumerate(raw):
            where = _at(path, index)
            if not isinstance(item, dict):
                self.add(where, "backup.not_object")
                continue
            kind = item.get("kind", ANNOUNCEMENT)
            if kind == ANNOUNCEMENT:
                found = self.announcement(item, where, settings)
                if found is not None:
                    announcements.append(found)
            elif kind in ROUTINES:
                if kind in kinds:
                    self.add(_at(where, "kind"), "backup.duplicate_routine", first=kinds[kind])
                    continue
                kinds[kind] = where
                found = self.routine(item, where, settings)
                if found is not None:
                    routines.append(found)
            else:
                self.add(_at(where, "kind"), "backup.unknown_kind", value=str(kind)[:32])
        if len(announcements) > schedule_service.MAX_PER_CHAT:
            self.add(path, "schedules.too_many", limit=schedule_service.MAX_PER_CHAT)
        return announcements, routines

    def _rule(self, value: Any, path: str, settings: GroupSettings) -> Rule | None:
        if self.text(value, path) is None:
            return None
        try:
            if len(value) > schedule_service.RULE_LENGTH:
                raise DomainError("schedules.rule_too_long")
            rule = schedule_service.rule_of(value)
            schedule_service.check_rule(rule, settings, self.now)
        except DomainError as error:
            self.refused(path, error)
            return None
        return rule

    def _status(self, item: dict, path: str) -> str | None:
        status = item.get("status", "active")
        if status not in STATUSES:
            self.add(_at(path, "status"), "backup.bad_status", value=str(status)[:20])
            return None
        return status

    def announcement(self, item: dict, path: str, settings: GroupSettings) -> Announcement | None:
        before = len(self.problems)
        self.mapping(item, path, _ANNOUNCEMENT_FIELDS, ("rule", "text"))
        rule = self._rule(item["rule"], _at(path, "rule"), settings) if "rule" in item else None
        text = None
        if "text" in item and self.text(item["text"], _at(path, "text")) is not None:
            try:
                text = schedule_service.validate_text(item["text"])
            except DomainError as error:
                self.refused(_at(path, "text"), error)
        flags = [self.flag(item[name], _at(path, name)) if name in item else False for name in ("with_ack", "quiet_ok")]
        status = self._status(item, path)
        if len(self.problems) > before or rule is None or text is None or status is None:
            return None
        return Announcement(rule, text, bool(flags[0]), bool(flags[1]), status)

    def routine(self, item: dict, path: str, settings: GroupSettings) -> Routine | None:
        before = len(self.problems)
        self.mapping(item, path, _ROUTINE_FIELDS, ("rule",))
        rule = self._rule(item["rule"], _at(path, "rule"), settings) if "rule" in item else None
        status = self._status(item, path)
        if len(self.problems) > before or rule is None or status is None:
            return None
        return Routine(item["kind"], rule, status)

    # --------------------------------------------------------------------------------- lessons

    def lessons(self, raw: Any, path: str) -> list[LessonDraft]:
        drafts: list[LessonDraft] = []
        if raw is None or self.listing(raw, path) is None:
            return drafts
        if len(raw) > lesson_files.MAX_LESSONS:
            self.add(_at(path, lesson_files.MAX_LESSONS), "lessons.too_many", limit=lesson_files.MAX_LESSONS)
        titles: dict[str, str] = {}
        for index, item in enumerate(raw[: lesson_files.MAX_LESSONS]):
            where = _at(path, index)
            if self.mapping(item, where, _LESSON_FIELDS) is None:
                continue
            if isinstance(item.get("quiz"), dict):
                self.mapping(item["quiz"], _at(where, "quiz"), _QUIZ_FIELDS)
            found: list[lesson_files.Problem] = []
            # The lesson file's own checks, entry by entry; its "line" is the lesson's place here.
            draft = lesson_files.draft_of(index, item, found)
            for problem in found:
                self.problems.append(Problem(_lesson_path(where, problem), problem.key, dict(problem.params)))
            if draft is None:
                continue
            if draft.title in titles:
                self.add(_at(where, "title"), "backup.duplicate_title", first=titles[draft.title])
                continue
            titles[draft.title] = _at(where, "title")
            drafts.append(draft)
        return drafts


def _lesson_path(path: str, problem: lesson_files.Problem) -> str:
    if problem.key == "lessons.too_long":
        name = str(problem.params.get("field", ""))
        return _at(path, _LESSON_LENGTH_FIELDS.get(name, name))
    name = _LESSON_PROBLEM_FIELDS.get(problem.key)
    return _at(path, name) if name else path


def read_backup(data: bytes, base: GroupSettings, now: datetime) -> Backup:
    """What a backup file holds, and every problem found in it (a file with any is not restored).
    Rules are checked as the group would run them: in the zone the file sets, else in ``base``'s.
    A file too big to look at is refused with a ``DomainError``."""
    if len(data) > MAX_FILE_BYTES:
        raise DomainError("backup.file_too_big", limit=MAX_FILE_BYTES // 1024)
    reader = _Reader(base, now)
    try:
        root = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        reader.add("", "backup.not_text_file")
        return Backup(None, "", None, [], reader.problems)
    except json.JSONDecodeError as error:
        reader.add("", "backup.not_json", line=error.lineno, column=error.colno)
        return Backup(None, "", None, [], reader.problems)
    except (ValueError, RecursionError):
        reader.add("", "backup.not_json", line=1, column=1)
        return Backup(None, "", None, [], reader.problems)
    backup = reader.backup(root)
    if backup.problems:  # nothing of a file with problems is used
        return Backup(backup.created_at, backup.source_title, backup.unit_name, [], backup.problems)
    return backup


# ------------------------------------------------------------------------------------------ making one


def _settings_of(chat: Chat, default_language: str, default_timezone: str) -> dict[str, Any]:
    current = chat_service.settings_of(chat, default_language=default_language, default_timezone=default_timezone)
    quiet = {"start": current.quiet_start, "end": current.quiet_end} if current.quiet_start else None
    rules = attendance_service.rules_of(chat)
    return {
        "language": current.language,
        "timezone": current.timezone,
        "quiet_hours": quiet,
        "meeting_reminders": list(meeting_service.reminders_of(chat)),
        "meeting_rules": {kind: rules[kind] for kind in meeting_service.KINDS if kind in rules},
        "vanguard_weights": vanguard_service.weights_of(chat),
    }


async def _schedules_of(session: AsyncSession, chat_pk: int) -> list[dict[str, Any]]:
    listed = await schedule_service.listed(session, chat_pk)
    items: list[dict[str, Any]] = [
        {
            "kind": ANNOUNCEMENT,
            "rule": schedule.rule,
            "text": schedule.text,
            "with_ack": schedule.with_ack,
            "quiet_ok": schedule.quiet_ok,
            "status": schedule.status,
        }
        for schedule in sorted(listed, key=lambda schedule: schedule.id)
    ]
    for kind in ROUTINES:
        routine = await schedule_service.routine_of(session, chat_pk, kind)
        if routine is not None and routine.status in STATUSES:
            items.append({"kind": kind, "rule": routine.rule, "status": routine.status})
    return items


def _lesson_of(lesson: Lesson) -> dict[str, Any]:
    options = lesson_service.quiz_options(lesson)
    quiz = None
    if lesson.quiz_question:
        answer = options[lesson.quiz_answer] if lesson.quiz_answer is not None else None
        quiz = {"question": lesson.quiz_question, "options": options, "answer": answer}
    return {
        "title": lesson.title,
        "body": lesson.body,
        "source": lesson.source,
        "tags": [tag for tag in lesson.tags.split(",") if tag],
        "date": lesson.push_on.isoformat() if lesson.push_on else None,
        "quiz": quiz,
    }


async def entry_of(session: AsyncSession, chat: Chat, *, default_language: str, default_timezone: str) -> dict:
    return {
        "title": chat.title or "",
        "telegram_id": chat.telegram_id,
        "settings": _settings_of(chat, default_language, default_timezone),
        "schedules": await _schedules_of(session, chat.id),
        "lessons": [_lesson_of(lesson) for lesson in await lesson_store.own_lessons(session, chat.id)],
    }


async def may_back_up_unit(session: AsyncSession, chat: Chat, user_id: int, superusers: frozenset[int]) -> bool:
    """A unit's backup holds every group below it: for those who manage the unit the group is bound to."""
    return chat.unit_id is not None and await org_service.can_manage(session, chat.unit_id, user_id, superusers)


async def unit_groups(session: AsyncSession, unit_id: int) -> list[Chat]:
    """The active groups bound to the unit or a unit below it, in the tree's order."""
    nodes = await org_service.descendants(session, unit_id)
    bound = await org_service.bound_chats(session, [node.id for node in nodes])
    groups: dict[int, Chat] = {}
    for node in nodes:
        for chat in bound.get(node.id, []):
            groups.setdefault(chat.id, chat)
    return list(groups.values())


@dataclass(frozen=True)
class Made:
    filename: str
    data: bytes
    groups: int
    schedules: int
    lessons: int
    unit_name: str | None


def file_name(name: str, day: str) -> str:
    safe = _UNSAFE_IN_NAMES.sub("-", name).strip("-.")[:40] or "group"
    return f"backup-{safe}-{day}.json"


async def make_backup(
    session: AsyncSession,
    chat: Chat,
    actor_id: int,
    superusers: frozenset[int],
    now: datetime,
    *,
    unit: bool = False,
    default_language: str,
    default_timezone: str,
) -> Made:
    """The group's backup, or (``unit``) that of every group of the unit it is bound to and below."""
    unit_row = None
    groups = [chat]
    if unit:
        if not await may_back_up_unit(session, chat, actor_id, superusers):
            raise DomainError("backup.unit_not_allowed")
        unit_row = await org_service.require_unit(session, chat.unit_id)
        groups = await unit_groups(session, unit_row.id)
    entries = [
        await entry_of(session, group, default_language=default_language, default_timezone=default_timezone)
        for group in groups
    ]
    document = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "from": {"title": chat.title or "", "telegram_id": chat.telegram_id},
        "unit": {"name": unit_row.name} if unit_row is not None else None,
        "groups": entries,
    }
    zone = chat_service.zone_or_default(chat.timezone, default_timezone)
    day = now.astimezone(zone).date().isoformat()
    name = unit_row.name if unit_row is not None else (chat.title or str(chat.telegram_id))
    schedules = sum(len(entry["schedules"]) for entry in entries)
    lessons = sum(len(entry["lessons"]) for entry in entries)
    scope = f"unit={unit_row.id} groups={len(entries)}" if unit_row is not None else "group"
    session.add(AuditLog(chat_id=chat.id, actor_id=actor_id, action="backup_made", detail=f"{scope} lessons={lessons}"))
    await session.flush()
    return Made(
        file_name(name, day),
        json.dumps(document, ensure_ascii=False, indent=2).encode(),
        len(entries),
        schedules,
        lessons,
        unit_row.name if unit_row is not None else None,
    )


# ------------------------------------------------------------------------------------------ restoring one


@dataclass(frozen=True)
class SettingChange:
    name: str  # one of SETTINGS
    old: Any
    new: Any


@dataclass(frozen=True)
class RoutineChange:
    routine: Routine
    old: Schedule | None  # the group's schedule of that kind as it was, if any


@dataclass(frozen=True)
class Plan:
    """What restoring an entry into a group would change there."""

    entry: Entry
    settings: list[SettingChange]
    announcements: list[Announcement]  # to add
    announcements_present: int  # the same rule and text are there already
    routines: list[RoutineChange]
    lessons: list[LessonDraft]  # to add, after the group's own
    lessons_present: int  # a lesson of that title is there already

    @property
    def empty(self) -> bool:
        return not (self.settings or self.announcements or self.routines or self.lessons)


def _current_settings(chat: Chat, default_language: str, default_timezone: str) -> dict[str, Any]:
    current = chat_service.settings_of(chat, default_language=default_language, default_timezone=default_timezone)
    return {
        "language": current.language,
        "timezone": current.timezone,
        "quiet_hours": (current.quiet_start, current.quiet_end),
        "meeting_reminders": meeting_service.reminders_of(chat),
        "meeting_rules": attendance_service.rules_of(chat),
        "vanguard_weights": vanguard_service.weights_of(chat),
    }


def _routine_same(routine: Routine, existing: Schedule | None) -> bool:
    on = existing is not None and existing.status == "active"
    if routine.status != "active":
        return not on  # off is off, whatever rule a stopped schedule kept
    return on and existing.rule == routine.rule.canonical()


async def plan_restore(
    session: AsyncSession, chat: Chat, entry: Entry, *, default_language: str, default_timezone: str
) -> Plan:
    current = _current_settings(chat, default_language, default_timezone)
    settings = [
        SettingChange(name, current[name], getattr(entry.settings, name))
        for name in SETTINGS
        if getattr(entry.settings, name) is not None and getattr(entry.settings, name) != current[name]
    ]
    existing = {(schedule.rule, schedule.text) for schedule in await schedule_service.listed(session, chat.id)}
    announcements, present = [], 0
    for announcement in entry.announcements:
        key = (announcement.rule.canonical(), announcement.text)
        if key in existing:
            present += 1
            continue
        existing.add(key)
        announcements.append(announcement)
    listed = await schedule_store.count_listed(session, chat.id, ANNOUNCEMENT)
    if announcements and listed + len(announcements) > schedule_service.MAX_PER_CHAT:
        raise DomainError("schedules.too_many", limit=schedule_service.MAX_PER_CHAT)
    routines = []
    for routine in entry.routines:
        old = await schedule_service.routine_of(session, chat.id, routine.kind)
        if not _routine_same(routine, old):
            routines.append(RoutineChange(routine, old))
    titles = await lesson_store.titles_of(session, chat.id)
    lessons = [draft for draft in entry.lessons if draft.title not in titles]
    return Plan(entry, settings, announcements, present, routines, lessons, len(entry.lessons) - len(lessons))


async def restore(
    session: AsyncSession,
    chat_pk: int,
    entry: Entry,
    actor_id: int,
    now: datetime,
    *,
    default_language: str,
    default_timezone: str,
) -> Plan:
    """Restore an entry into the group, all of it or (on any refusal) nothing; returns what changed,
    worked out afresh here, so a second restore of the same file finds nothing left to do."""
    # Locked first (PostgreSQL): two restores at once must not both find a schedule missing and add it.
    chat = await session.get(Chat, chat_pk, with_for_update=True)
    if chat is None:
        raise DomainError("errors.chat_gone")
    defaults = {"default_language": default_language, "default_timezone": default_timezone}
    plan = await plan_restore(session, chat, entry, **defaults)
    if plan.empty:
        return plan
    async with session.begin_nested():
        await _apply(session, chat, plan, actor_id, now, defaults)
    return plan


async def _apply(
    session: AsyncSession, chat: Chat, plan: Plan, actor_id: int, now: datetime, defaults: dict[str, str]
) -> None:
    entry, changed = plan.entry, {change.name for change in plan.settings}
    restored = entry.settings
    if changed & {"language", "timezone", "quiet_hours"}:
        await chat_service.change_settings(
            session,
            chat,
            actor_id,
            language=restored.language if "language" in changed else None,
            timezone=restored.timezone if "timezone" in changed else None,
            quiet_hours=restored.quiet_hours if "quiet_hours" in changed else None,
        )
    settings = chat_service.settings_of(chat, **defaults)
    if "timezone" in changed:  # the group's schedules now read in the new zone, as after /settings tz
        await schedule_service.follow_timezone(session, chat.id, settings, now)
    if "meeting_reminders" in changed:
        await meeting_service.set_reminders(session, chat.id, actor_id, restored.meeting_reminders)
    if "meeting_rules" in changed:
        await attendance_service.set_rules(session, chat.id, actor_id, restored.meeting_rules)
    if "vanguard_weights" in changed:
        await vanguard_service.set_weights(session, chat.id, actor_id, restored.vanguard_weights)

    added = []
    for announcement in plan.announcements:
        runs = schedule_service.check_rule(announcement.rule, settings, now)  # in the group's zone as it is now
        active = announcement.status == "active"
        schedule = Schedule(
            chat_id=chat.id,
            kind=ANNOUNCEMENT,
            rule=announcement.rule.canonical(),
            text=announcement.text,
            with_ack=announcement.with_ack,
            quiet_ok=announcement.quiet_ok,
            status=announcement.status,
            next_run_at=runs[0] if active else None,
            created_by=actor_id,
            created_at=now,
            updated_at=now,
        )
        session.add(schedule)
        added.append(schedule)
    await session.flush()
    for schedule in added:
        detail = f"{schedule.id} {schedule.rule} (restored)"
        session.add(AuditLog(chat_id=chat.id, actor_id=actor_id, action="schedule_created", detail=detail))

    for change in plan.routines:
        routine = change.routine
        rule = routine.rule if routine.status == "active" else None
        schedule = await schedule_service.set_routine(session, chat.id, routine.kind, rule, settings, now)
        if rule is None and schedule is not None:  # nor what it planned that still waits (quiet hours)
            await outbox_service.cancel_all(session, schedule_service.firing_key_prefix(schedule.id))
        detail = f"{routine.kind} {rule.canonical() if rule else 'off'} (restored)"
        session.add(AuditLog(chat_id=chat.id, actor_id=actor_id, action="routine_set", detail=detail))

    if plan.lessons:
        position = await lesson_store.next_position(session, chat.id)
        session.add_all(
            lesson_service.lesson_row(draft, chat.id, position + index, actor_id, now)
            for index, draft in enumerate(plan.lessons)
        )
        detail = f"{len(plan.lessons)} (restored)"
        session.add(AuditLog(chat_id=chat.id, actor_id=actor_id, action="lessons_imported", detail=detail))

    summary = (
        f"from {entry.telegram_id} {entry.title[:60]}: settings={','.join(sorted(changed)) or '-'}"
        f" schedules+{len(plan.announcements)} routines={len(plan.routines)} lessons+{len(plan.lessons)}"
    )
    session.add(AuditLog(chat_id=chat.id, actor_id=actor_id, action="backup_restored", detail=summary))
    await session.flush()
