"""Bad input (issue 9): every parser of user text, every command and every button, fed arbitrary strings and
forged callback data. Each either answers clearly (a DomainError with a sentence in both languages, a reply, an
alert) or ignores the input; none fails, none makes Telegram refuse a reply, and a forged button changes nothing.

The first half calls the parsers directly, where hypothesis can try many inputs quickly. The second half goes
through the production Dispatcher over the emulator: one bot for a whole corpus of inputs, drawn by hypothesis
with a fixed seed so that CI always runs the same corpus, and a failure names the input that caused it.
"""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiogram.filters.callback_data import CallbackData
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import handlers
from bot.commands import COMMANDS
from bot.i18n import Translator
from bot.middlewares import ClaimBatcher
from bot.services import attendance as attendance_service
from bot.services import backup as backup_service
from bot.services import chats as chat_service
from bot.services import identity as identity_service
from bot.services import lesson_files, timephrase
from bot.services import meetings as meeting_service
from bot.services import notices as notice_service
from bot.services import organisation as org_service
from bot.services import reports as report_service
from bot.services import schedules as schedule_service
from bot.services import vanguard as vanguard_service
from bot.services.chats import GroupSettings
from bot.services.clock import FrozenClock
from bot.services.errors import DomainError
from handlers import backup as backup_view
from handlers import lessons as lesson_view
from handlers import meetings as meeting_view
from handlers import schedules as schedule_view
from handlers.common import explain
from handlers.timephrases import describe
from storage.models import Base
from tests.emulator import BotAPIEmulator
from tests.emulator.markup import ParseError, parse_text
from tests.harness import BotHarness

FORGED_PER_BUTTON = 12
ARGS_PER_COMMAND = 8

ZH, EN = Translator("zh"), Translator("en")
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
ZONES = [ZoneInfo(name) for name in ("Asia/Shanghai", "America/New_York", "Pacific/Kiritimati", "Asia/Kathmandu")]
SHANGHAI = GroupSettings("zh", "Asia/Shanghai", "22:00", "07:00")
TELEGRAM_TEXT_LIMIT = 4096  # a message's text can be no longer: no parser of message text sees more


def backup_of(group: dict) -> bytes:
    """A backup file of one group (restored into any group, as the only one it names)."""
    return json.dumps({"format": "branch-assistant-backup", "version": 1, "groups": [group]}).encode()


# Backups whose texts hold NUL characters (JSON's "\u0000"), which PostgreSQL cannot store.
NUL_BACKUP = backup_of(
    {
        "telegram_id": -1001234567077,
        "title": "第一党支部\u0000",
        "schedules": [{"kind": "announcement", "rule": "每天 20:00", "text": "学习\u0000"}],
    }
)
NUL_LESSON_BACKUP = backup_of(
    {"telegram_id": 1, "lessons": [{"title": "党章", "body": "正\u0000文", "source": "来源"}]}
)

# Pieces that have broken parsers elsewhere: scripts written right to left, joiners and marks of zero width,
# control characters, emoji sequences, digits that are not ASCII, HTML and Markdown specials, separators the
# parsers split on, and words the parsers look for, so that random text often gets past the first check.
NASTY = (
    " ", "\n", "\t", "\r", "\x00", "\x07", "\x1b", "\x7f", "\u200b", "\u200d", "\u200e", "\u202e", "\u2028", "\ufeff",
    "\ufffd", "مرحبا", "שלום", "👍", "👍🏽", "👨‍👩‍👧", "🇨🇳", "<b>", "</b>", "<script>alert(1)</script>",
    '<a href="tg://user?id=1">', "&", "&amp;", "&#0;", "&lt", "*", "_", "[", "]", "`", "~", "\\", "|", "｜", ":", "：",
    "=", "-", "–", ",", "，", "、", ";", "%", "²", "٣", "①", "一", "十二", "0", "1", "09", "31", "99999999999999999999",
    "-1", "0000", "2026", "9999", "12:00", "25:61", "23:59", "每天", "每周三", "每月", "最后一个", "周五", "明天",
    "下午", "3点", "半", "工作日", "every", "monday", "tomorrow", "cron", "*/5", "支委会", "党课", "支部党员大会",
    "月", "季度", "关", "off", "出勤", "回执", "学习", "亮身份", "默认", "Asia/Shanghai", "UTC", "d", "h", "m",
    "天", "小时", "分钟", "上月", "年", "日", "号", "branch", "支部", "委员", "书记", "---",
)  # fmt: skip


# Numbers with the separators and units that dates, times, months, offsets and weights are written with.
NUMBER = st.one_of(
    st.integers(0, 60).map(str),
    st.integers(0, 99).map("{:02d}".format),
    st.integers(0, 10**5).map(str),
    st.integers(0, 9999).map("{:04d}".format),
    st.sampled_from(["²", "٣", "-1", "99999999999999999999"]),
)
SEPARATOR = st.sampled_from(["", "-", ".", "/", ":", "=", " ", "年", "月", "日", "号", "d", "h", "m", ",", "|"])
NUMBERS = st.lists(st.tuples(NUMBER, SEPARATOR), min_size=1, max_size=3).map(
    lambda pairs: "".join(number + separator for number, separator in pairs)
)


def _long(piece: str, length: int) -> str:
    return (piece * (length // max(len(piece), 1) + 1))[:length]


def text_of(max_size: int = 60) -> st.SearchStrategy[str]:
    """Arbitrary text, text made of the pieces above, and the longest text a message can hold."""
    pieces = st.one_of(st.sampled_from(NASTY), st.text(max_size=4))
    return st.one_of(
        st.text(max_size=max_size),
        NUMBERS,
        st.lists(pieces, max_size=10).map("".join),
        st.lists(pieces, max_size=8).map(" ".join),
        st.builds(_long, st.sampled_from(NASTY + ("a", "中", "<b>&")), st.integers(1000, TELEGRAM_TEXT_LIMIT)),
    )


TEXT = text_of()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def html_ok(text: str) -> None:
    """What Telegram would say to ``text`` sent with parse_mode HTML: it must parse (user text escaped) and
    say something."""
    try:
        plain, _ = parse_text(text, "HTML")
    except ParseError as error:
        raise AssertionError(f"Telegram would refuse {text!r}: {error}") from None
    assert plain.strip(), text


def refused_clearly(error: DomainError) -> None:
    """A refusal the user can read in both languages: the key exists, takes the params it is given, and the
    sentence, user text included, is valid HTML."""
    for t in (ZH, EN):
        assert t.has(error.key), f"no locale key {error.key} in {t.language}"
        html_ok(explain(t, error))
        assert explain(t, error, html=False).strip()


def either(call, *args, **kwargs):
    """The parser's value, or None after checking that its refusal is a clear DomainError. Anything else
    (ValueError, KeyError, OverflowError ...) escapes and fails the test."""
    try:
        return call(*args, **kwargs)
    except DomainError as error:
        refused_clearly(error)
        return None


# ------------------------------------------------------------------------------------------ time phrases


@FAST
@given(TEXT, st.sampled_from(ZONES))
def test_time_phrases_read_or_refuse_clearly(text: str, zone: ZoneInfo) -> None:
    rule = either(timephrase.parse, text, now=NOW, zone=zone)
    if rule is not None:
        # What /schedule does with a phrase it could read: check it, then describe it in the preview.
        group = GroupSettings("zh", zone.key, "22:00", "07:00")
        runs = either(schedule_service.check_rule, rule, group, NOW)
        for t in (ZH, EN):
            html_ok(describe(rule, t))
        if runs is not None:
            assert runs == sorted(runs) and all(run > NOW for run in runs)
    for errors in ("notices", "meetings"):
        moment = either(timephrase.moment_of, text, now=NOW, zone=zone, within=timedelta(days=366), errors=errors)
        assert moment is None or moment > NOW


@FAST
@given(TEXT, TEXT, st.sampled_from(ZONES))
def test_notice_arguments_split_or_refuse_clearly(head: str, tail: str, zone: ZoneInfo) -> None:
    for args in (head, f"{head} | {tail}", f"{head}|{tail}|{head}"):
        phrase, text = notice_service.split_schedule(args, zone, NOW)
        if phrase is not None:
            either(notice_service.parse_send_at, phrase, zone, NOW)
        for kind in notice_service.KINDS:
            either(notice_service.validate_text, text, kind)
    either(schedule_service.validate_text, tail)


# ------------------------------------------------------------------------------------------ meetings


@FAST
@given(st.lists(TEXT, min_size=0, max_size=6), st.sampled_from(ZONES))
def test_meeting_lines_read_or_refuse_clearly(parts: list[str], zone: ZoneInfo) -> None:
    details = either(meeting_service.parse_one_line, " | ".join(parts), zone, NOW)
    if details is not None:
        assert details.kind in meeting_service.KINDS and details.starts_at > NOW
    for part in parts[:2]:
        either(meeting_service.validate_title, part)
        either(meeting_service.validate_place, part)
        either(meeting_service.validate_agenda, part)
        either(meeting_service.kind_of, part)


@FAST
@given(TEXT)
def test_settings_values_read_or_refuse_clearly(text: str) -> None:
    minutes = either(meeting_service.parse_reminders, text)
    assert minutes is None or list(minutes) == sorted(minutes, reverse=True)
    rules = either(attendance_service.parse_rules, text, dict(attendance_service.DEFAULT_RULES))
    assert rules is None or set(rules) <= set(meeting_service.KINDS)
    weights = either(vanguard_service.parse_weights, text, dict(vanguard_service.DEFAULT_WEIGHTS))
    assert weights is None or all(0 <= value <= 100 for value in weights.values())
    either(report_service.parse_monthly, text)
    for zone in ZONES[:2]:
        month = either(report_service.parse_month, text, NOW, zone)
        assert month is None or month.day == 1
    either(chat_service.validate_timezone, text)
    start, _, end = text.replace("–", "-").partition("-")  # as /settings quiet reads its value
    either(chat_service.validate_quiet_hours, start.strip(), end.strip())
    either(chat_service.validate_quiet_hours, text, None)


# Two numbers and their separators: what months ("2026-11"), times ("19:30"), days ("5日 09:00") and offsets
# ("1d,1h") look like, so that the parsers' number handling is tried far more often than random text would.
NUMERIC = st.one_of(NUMBERS, st.builds("{}{}{}{}".format, NUMBER, SEPARATOR, NUMBER, SEPARATOR))


@settings(max_examples=400, deadline=None)
@given(NUMERIC)
@example("0000-01")  # year 0 is no date: parse_month built one before checking the range
def test_numbers_read_or_refuse_clearly(text: str) -> None:
    for zone in ZONES[:2]:
        month = either(report_service.parse_month, text, NOW, zone)
        assert month is None or month.day == 1
    either(report_service.parse_monthly, text)
    either(report_service.parse_monthly, "1 " + text)
    either(meeting_service.parse_reminders, text)
    either(vanguard_service.parse_weights, "出勤=" + text, dict(vanguard_service.DEFAULT_WEIGHTS))
    either(chat_service.validate_quiet_hours, *text.partition("-")[::2])
    either(timephrase.parse, text, now=NOW, zone=ZONES[0])


@FAST
@given(TEXT)
def test_organisation_words_read_or_refuse_clearly(text: str) -> None:
    name = either(org_service.validate_name, text)
    assert name is None or 1 <= len(name) <= org_service.NAME_MAX_LENGTH
    either(org_service.name_from_title, text)
    either(org_service.parse_kind, text)
    either(org_service.parse_role, text)


@FAST
@given(TEXT)
def test_identity_answers_read_or_refuse_clearly(text: str) -> None:
    for step, (_, low, high) in identity_service.TEXT_STEPS.items():
        value = either(identity_service.validate_text, step, text)
        assert value is None or low <= len(value) <= high


# ------------------------------------------------------------------------------------------ files


def lesson_problems_render(parsed: lesson_files.Parsed) -> None:
    for problem in parsed.problems:
        for t in (ZH, EN):
            assert t.has(problem.key), problem.key
            html_ok(lesson_view.problem_line(t, problem))


FILE_NAMES = st.one_of(
    st.sampled_from(["lessons.md", "l.markdown", "l.yaml", "l.yml", "l.csv", "L.CSV", "x.txt", "", ".", "md", "a.b.c"]),
    st.text(max_size=20),
    st.builds("{}.{}".format, st.text(max_size=8), st.sampled_from(["md", "yaml", "csv"])),
)
YAML_SCALARS = st.one_of(
    TEXT, st.integers(), st.sampled_from(["", "~", "null", "0x1F", "1_000", "2026-02-30", "[", "{"])
)
LESSON_FIELDS = [
    "title",
    "标题",
    "body",
    "正文",
    "source",
    "来源",
    "tags",
    "date",
    "quiz",
    "question",
    "options",
    "answer",
]


def _yaml_value(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON is YAML, and quotes what needs quoting


@st.composite
def lesson_file(draw) -> tuple[str, bytes]:
    """A file that looks like a lesson file, with random values and random breakage."""
    kind = draw(st.sampled_from(["md", "yaml", "csv"]))
    entries = draw(
        st.lists(
            st.dictionaries(st.sampled_from([*LESSON_FIELDS, "answer"]), YAML_SCALARS, max_size=6),
            min_size=0,
            max_size=4,
        )
    )
    if kind == "md":
        blocks = []
        for entry in entries:
            meta = "\n".join(f"{key}: {_yaml_value(value)}" for key, value in entry.items() if key != "body")
            blocks.append(f"---\n{meta}\n---\n{entry.get('body', draw(TEXT))}")
        text = "\n".join(blocks)
    elif kind == "yaml":
        text = "\n".join(
            "- " + ("\n  ".join(f"{key}: {_yaml_value(value)}" for key, value in entry.items()) or "{}")
            for entry in entries
        )
    else:
        columns = sorted({key for entry in entries for key in entry}) or ["title"]
        rows = [",".join(columns)] + [",".join(str(entry.get(key, "")) for key in columns) for entry in entries]
        text = "\n".join(rows)
    text += draw(st.sampled_from(["", "\n", "\n---", "\n- [", '\n"', "\n&a *a", "\n!!python/object:os.system"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]))
    return f"lessons.{kind}", text.encode(encoding, errors="replace")


def storable(*texts: str | None) -> None:
    """Text the bot accepted will be saved: PostgreSQL stores no NUL character."""
    assert not any("\x00" in (text or "") for text in texts), texts


def lesson_storable(draft: lesson_files.LessonDraft) -> None:
    storable(draft.title, draft.body, draft.source, draft.question, *draft.tags, *draft.options)


@FAST
@given(st.one_of(st.tuples(FILE_NAMES, st.binary(max_size=2000)), lesson_file()))
@example(("lessons.md", '---\ntitle: "党章\\0"\nsource: 来源\n---\n正文\n'.encode()))  # a YAML escape for NUL
@example(("lessons.csv", "title,body,source\n党章,正\x00文,来源\n".encode()))
def test_lesson_files_read_or_refuse_clearly(file: tuple[str, bytes]) -> None:
    parsed = either(lesson_files.parse_file, *file)
    if parsed is not None:
        assert parsed.ok or parsed.problems
        lesson_problems_render(parsed)
        for draft in parsed.lessons:
            lesson_storable(draft)


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)


@st.composite
def backup_file(draw) -> bytes:
    """A backup file of the right shape whose values are replaced at random, or arbitrary JSON or bytes."""
    group = {
        "title": "第一党支部",
        "telegram_id": -1001234567077,
        "settings": {
            "language": "zh",
            "timezone": "Asia/Shanghai",
            "quiet_hours": {"start": "22:00", "end": "07:00"},
            "meeting_reminders": [1440, 60],
            "meeting_rules": {"general": "quarter", "committee": "month"},
            "vanguard_weights": {"attendance": 40, "acks": 20, "learning": 30, "identity": 10},
        },
        "schedules": [
            {
                "kind": "announcement",
                "rule": "every Monday 09:00",
                "text": "学习",
                "with_ack": False,
                "status": "active",
            },
            {"kind": "lesson_push", "rule": "every day 20:00", "status": "active"},
        ],
        "lessons": [
            {
                "title": "党章",
                "body": "正文",
                "source": "来源",
                "tags": ["党章"],
                "date": None,
                "quiz": {"question": "问题", "options": ["甲", "乙"], "answer": "甲"},
            }
        ],
    }
    root = {"format": "branch-assistant-backup", "version": 1, "created_at": "2026-11-23T02:00:00Z", "groups": [group]}
    # Replace a few values anywhere in the tree.
    for _ in range(draw(st.integers(0, 4))):
        node, key = root, None
        path = []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if path:
            parent, key = path[-1]
            parent[key] = draw(st.one_of(JSON, TEXT, st.integers(-(2**70), 2**70)))
    return json.dumps(root, ensure_ascii=draw(st.booleans())).encode()


@FEW
@given(st.one_of(backup_file(), JSON.map(lambda value: json.dumps(value).encode()), st.binary(max_size=300)))
@example(NUL_BACKUP)  # a "\u0000" escape: the restore failed on PostgreSQL
@example(NUL_LESSON_BACKUP)
def test_backup_files_read_or_refuse_clearly(data: bytes) -> None:
    backup = either(backup_service.read_backup, data, SHANGHAI, NOW)
    for entry in backup.entries if backup is not None else ():
        storable(entry.title, *(announcement.text for announcement in entry.announcements))
        for draft in entry.lessons:
            lesson_storable(draft)
    if backup is not None and backup.problems:
        for problem in backup.problems:
            for t in (ZH, EN):
                assert t.has(problem.key), problem.key
        for t in (ZH, EN):
            html_ok(backup_view.report_text(t, backup.problems))


# ================================================================================== through the Dispatcher

GROUP_A, GROUP_B = -1001000000901, -1001000000902
SECRETARY_A, MEMBER_A, SECRETARY_B, MEMBER_B = 7001, 7002, 7003, 7004
# Names and titles with HTML in them: every echo of them must be escaped.
PEOPLE = {
    SECRETARY_A: "<b>李</b>&书记",
    MEMBER_A: "党员 <i>&amp; 👨‍👩‍👧",
    SECRETARY_B: "王书记",
    MEMBER_B: "郑 \u202e党员",
}
TITLES = {GROUP_A: "第一党支部 <script>&", GROUP_B: "第二党支部"}
# Hundreds of inputs in moments, each of which must reach its handler: Telegram's pace and the flood guard would
# make this test take an hour or drop most of it. Both are tested elsewhere.
UNLIMITED = {
    "group_messages_per_minute": 1_000_000,
    "private_messages_per_second": 1_000_000.0,
    "global_messages_per_second": 1_000_000.0,
    "throttle_burst": 1_000_000_000,
    "throttle_per_minute": 1e12,
}
LINE = "党课 | 学习党章 | 明天 19:30 | 三楼会议室"


def as_telegram_delivers(text: str) -> str:
    """Text as a user's message arrives: Telegram (tdlib's clean_input_string) turns control characters other
    than a line break into spaces and drops carriage returns and the marks U+2028–U+202E."""
    cleaned = "".join(" " if ord(char) < 32 and char != "\n" else char for char in text.replace("\r", ""))
    return re.sub("[\u2028-\u202e]", "", cleaned)


def corpus(strategy: st.SearchStrategy, count: int) -> list:
    """``count`` values of ``strategy``, the same ones on every run: hypothesis chooses them (edge cases
    first), but with a fixed seed, so that CI always tries the same inputs and a failure can be re-run."""
    values: list = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value) -> None:
        values.append(value)

    collect()
    return values


def callback_data_of(message: dict) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [button["callback_data"] for row in rows for button in row if button.get("callback_data")]


def data_starting(message: dict, prefix: str) -> str:
    found = [data for data in callback_data_of(message) if data.startswith(prefix)]
    assert found, f"no button {prefix!r} in {callback_data_of(message)}"
    return found[0]


def last(emulator: BotAPIEmulator, chat_id: int) -> dict:
    return emulator.sent_messages(chat_id)[-1]


class World:
    """Two branch groups with a bit of everything: what the forged input is tried against."""

    def __init__(self, emulator: BotAPIEmulator, bot: BotHarness) -> None:
        self.emulator = emulator
        self.bot = bot
        self.anchors: dict[int, int] = {}  # chat → a plain bot message to press forged buttons on

    async def say(self, chat: int, user: int, text: str, reply_to: int | None = None) -> dict:
        self.emulator.send_message(chat, user, text, reply_to_message_id=reply_to)
        await self.bot.settle()
        return last(self.emulator, chat)

    async def press(self, chat: int, user: int, message: dict, prefix: str) -> dict:
        self.emulator.press_button(chat, user, message["message_id"], data_starting(message, prefix))
        await self.bot.settle()
        return last(self.emulator, chat)

    async def branch(self, group: int, secretary: int, member: int) -> None:
        emulator = self.emulator
        emulator.bot_added(group, secretary, status="administrator")
        await self.bot.settle()
        await emulator.wait_for_call(
            "getChatAdministrators", lambda call: str(call.params.get("chat_id")) == str(group)
        )
        for user in (secretary, member):
            emulator.send_message(group, user, "大家好")
            emulator.send_message(user, user, "/start")
        await self.bot.settle()
        preview = await self.say(group, secretary, "/notice 明天上午交材料 <b>&")
        await self.press(group, secretary, preview, "ntd:send:")
        preview = await self.say(group, secretary, f"/meeting {LINE}")
        await self.press(group, secretary, preview, "mtd:publish:")
        post = next(m for m in reversed(emulator.sent_messages(group)) if "mtr:" in str(callback_data_of(m)))
        await self.press(group, member, post, "mtr:")  # 参加, then 请假 with a reason: the secretary decides
        await self.press(group, member, post, data_starting(post, "mtr:").replace(":yes", ":leave"))
        await self.say(member, member, "出差")
        preview = await self.say(group, secretary, "/schedule 每天 20:00 | 每日一学")
        await self.press(group, secretary, preview, "scd:save:")
        bind = await self.say(group, secretary, "/bind")
        await self.press(group, secretary, bind, "ob:new")  # a 支部 named after the group: units to forge
        # Every panel and list there is, for the buttons on them.
        for command in (
            *("/schedules", "/settings", "/lessons", "/rank", "/me", "/roster", "/vanguard", "/notices"),
            *("/meetings", "/units", "/backup", "/broadcast 广播 <b>内容</b>", "/declare"),
        ):
            emulator.send_message(group, secretary, command)
        emulator.send_message(secretary, secretary, "/me")
        emulator.send_message(secretary, secretary, "/forgetme")
        await self.bot.settle()
        self.anchors[group] = (await self.say(group, secretary, "/help"))["message_id"]
        for user in (secretary, member):
            self.anchors[user] = (await self.say(user, user, "/help"))["message_id"]

    async def declare(self, group: int, member: int) -> None:
        """A member's 亮身份 (first choice at every step), so that the committee gets verdict buttons."""
        async with self.bot.app.db.transaction() as session:
            pk = (await chat_service.get_chat(session, group)).id
        await self.say(member, member, f"/start declare_{pk}")
        for _ in range(20):
            form = [data for data in callback_data_of(last(self.emulator, member)) if data.startswith("idf:")]
            choices = [data for data in form if data.rsplit(":", 1)[1] not in ("keep", "skip", "cancel", "restart")]
            if "idf:confirm:submit" in form:
                await self.press(member, member, last(self.emulator, member), "idf:confirm:submit")
                return
            if choices:
                await self.press(member, member, last(self.emulator, member), choices[0])
            else:
                await self.say(member, member, "郑小红 总装车间")  # fits every text step
        raise AssertionError("the declaration form did not end")


# ------------------------------------------------------------------------------------------ what may change

# Seeing an update records the update's id and when (and under which name) its sender was last seen; nothing
# else may change when the input was bad.
SEEN = {
    "users": {"first_name", "last_name", "username", "language_code", "started_bot", "updated_at"},
    "chat_members": {"last_seen_at"},
}
BOOKKEEPING = {"processed_updates"}


async def snapshot(bot: BotHarness) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    async with bot.app.db.transaction() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in BOOKKEEPING:
                continue
            columns = [column for column in table.columns if column.name not in SEEN.get(table.name, ())]
            rows = (await session.execute(select(*columns))).all()
            tables[table.name] = sorted(repr(tuple(row)) for row in rows)
    return tables


def changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    found = {}
    for name in before:
        gone, new = set(before[name]) - set(after[name]), set(after[name]) - set(before[name])
        if gone or new:
            found[name] = {"before": sorted(gone)[:5], "after": sorted(new)[:5]}
    return found


# ------------------------------------------------------------------------------------------ what is checked


class Watch:
    """What the bot did since ``begin()``: Telegram calls it made, and what it logged."""

    def __init__(self, emulator: BotAPIEmulator, caplog: pytest.LogCaptureFixture) -> None:
        self.emulator = emulator
        self.caplog = caplog
        self.since = 0

    def begin(self) -> None:
        self.since = self.emulator.last_seq
        self.caplog.clear()

    def calls(self) -> list:
        return [call for call in self.emulator.calls if call.seq > self.since and call.method != "getUpdates"]

    def check(self, what: str) -> None:
        """No handler failed (the middleware logs it and apologises), no reply was refused by Telegram
        (unescaped user text, too long a text or alert), nothing was logged as an error."""
        errors = [
            f"{record.name}: {record.getMessage()} {record.exc_info[1] if record.exc_info else ''}"[:600]
            for record in self.caplog.records
            if record.levelno >= logging.ERROR
        ]
        assert not errors, f"{what}: errors logged:\n" + "\n".join(errors[:10])
        refused = [
            f"{call.method} {call.status} {call.description} {json.dumps(call.params, ensure_ascii=False)[:300]}"
            for call in self.calls()
            if not call.ok and "message is not modified" not in (call.description or "")
        ]
        assert not refused, f"{what}: Telegram refused:\n" + "\n".join(refused[:10])
        sorry = {ZH("errors.internal"), EN("errors.internal")}
        apologies = [call for call in self.calls() if (call.params.get("text") or "") in sorry]
        assert not apologies, f"{what}: the bot apologised for a failure: {apologies[:3]}"

    def answered_once(self, presses: list[tuple[dict, str]]) -> None:
        """Every button press got exactly one answer (the spinner stops; a second would be refused)."""
        answers: dict[str, int] = {}
        for call in self.calls():
            if call.method == "answerCallbackQuery" and call.ok:
                key = str(call.params.get("callback_query_id"))
                answers[key] = answers.get(key, 0) + 1
        wrong = [(data, answers.get(update["callback_query"]["id"], 0)) for update, data in presses]
        wrong = [(data, count) for data, count in wrong if count != 1]
        assert not wrong, f"presses not answered exactly once (data, answers): {wrong[:10]}"


# ------------------------------------------------------------------------------------------ the bot


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        for user, name in PEOPLE.items():
            emu.add_user(user, name)
        for group, title in TITLES.items():
            emu.add_chat(group, "supergroup", title)
        emu.set_admins(GROUP_A, [], creator_id=SECRETARY_A)
        emu.set_admins(GROUP_B, [], creator_id=SECRETARY_B)
        yield emu


@pytest.fixture
async def world(
    emulator: BotAPIEmulator, database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    caplog.set_level(logging.WARNING)
    # An answered update waits 50 ms for others to share its claim; one chat's updates run one after another,
    # so a corpus of hundreds in one group would spend most of its time waiting. What is claimed is the same.
    monkeypatch.setattr(ClaimBatcher, "GATHER_SECONDS", 0.001)
    async with BotHarness(emulator, database_url, clock=FrozenClock(NOW), **UNLIMITED) as bot:
        world = World(emulator, bot)
        await world.branch(GROUP_A, SECRETARY_A, MEMBER_A)
        await world.branch(GROUP_B, SECRETARY_B, MEMBER_B)
        await world.declare(GROUP_B, MEMBER_B)
        yield world


# ------------------------------------------------------------------------------------------ forged buttons


def button_classes() -> list[type[CallbackData]]:
    """Every kind of button the handlers make (each router keeps its CallbackData next to it)."""
    for module in pkgutil.iter_modules(handlers.__path__):
        importlib.import_module(f"handlers.{module.name}")
    found, todo = [], [CallbackData]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("handlers."):
                found.append(sub)
    return sorted(found, key=lambda cls: cls.__prefix__)


# Ids no row has, written every way an int can be (pydantic takes some of them, the handlers others), and
# numbers no column can hold. Never a small number: that could be a real id of the presser's own group.
HOSTILE_INTS = (
    "-1",
    "-987654",
    "987654",
    " 987654",
    "+987654",
    "987_654",
    "٩٨٧٦٥٤",
    "2147483648",
    "-2147483649",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551617",
    "9" * 40,
    "1e3",
    "0x10",
    "²",
    "①",
    "abc",
    "",
)
HOSTILE_BOOLS = ("2", "x", "", "²", "-1", "tru", "yes!", "０")


def hostile_text(max_size: int = 12) -> st.SearchStrategy[str]:
    """Text for a str field; a plain small number could select a real option ("st:tz:3")."""
    return st.text(max_size=max_size).filter(lambda text: not (text.isascii() and text.isdigit()) and ":" not in text)


@st.composite
def forged_data(
    draw, cls: type[CallbackData], words: dict[int, list[str]], foreign: list[str], *, first_word: bool = False
) -> str:
    """The button's prefix with field values no real button of the presser's would carry: hostile or other
    groups' ids beside real actions, random text, too few or too many fields, far too much data. With
    ``first_word``, a button without ids gets a real first field (its action) and hostile others: a value no
    button offers, which may still be an action the committee may take, for an action may ignore its value."""
    fields = list(cls.model_fields.values())
    has_id = any(field.annotation is int for field in fields)
    values = []
    for position, field in enumerate(fields):
        if field.annotation is int:
            values.append(draw(st.sampled_from(HOSTILE_INTS + tuple(foreign))))
        elif field.annotation is bool:
            values.append(draw(st.sampled_from((("0", "1") if has_id else ()) + HOSTILE_BOOLS)))
        elif words.get(position) and (has_id or first_word and position == 0):
            # A real action, about something that is not the presser's.
            values.append(draw(st.one_of(st.sampled_from(words[position]), hostile_text())))
        else:
            values.append(draw(st.one_of(hostile_text(), st.sampled_from(HOSTILE_INTS))))
    shape = draw(st.sampled_from(["exact", "exact", "exact", "short", "long", "overlong"]))
    if shape == "short" and values:
        values.pop()
    elif shape == "long" or not values:  # a button without fields is legitimate only without any
        values.append(draw(hostile_text()))
    elif shape == "overlong":
        values.append("9" * 100)
    return ":".join([cls.__prefix__, *values])


# Actions of buttons that the world above leaves no copy of (a draft's, once it is saved, is gone).
ACTIONS = {
    "mtd": {0: ["publish", "mode", "duration", "late", "drop"]},
    "mtp": {0: ["names", "ics", "mode", "edit", "edit_field", "cancel", "cancel_yes", "checkin_open", "proxy"]},
    "scd": {0: ["save", "drop"]},
    "sch": {0: ["resume", "delete_yes"]},
    "ntd": {0: ["send", "pin", "drop"]},
    "lsm": {0: ["list", "up", "down", "first", "remove", "remove_yes"]},
    "rsb": {0: ["pick", "apply", "cancel"]},
    "idr": {1: ["incomplete", "name_mismatch", "not_member", "x"]},
    "ob": {0: ["unit", "new"]},
    "rpt": {2: ["g", "u"], 3: ["x", "c"]},
}


def field_words(datas: list[str]) -> dict[str, dict[int, list[str]]]:
    """The words buttons carry in each place (their actions), per prefix."""
    words: dict[str, dict[int, set[str]]] = {
        prefix: {position: set(found) for position, found in by.items()} for prefix, by in ACTIONS.items()
    }
    for data in datas:
        prefix, *values = data.split(":")
        for position, value in enumerate(values):
            if value and not value.lstrip("-").isdigit():
                words.setdefault(prefix, {}).setdefault(position, set()).add(value)
    return {prefix: {pos: sorted(found) for pos, found in by.items()} for prefix, by in words.items()}


def button_datas(emulator: BotAPIEmulator, chats: tuple[int, ...]) -> set[str]:
    return {data for chat in chats for message in emulator.sent_messages(chat) for data in callback_data_of(message)}


def foreign(emulator: BotAPIEmulator) -> tuple[list[str], list[str]]:
    """Group B's buttons that group A has none of, and the numbers in them that no button of A's carries:
    B's meetings, notices, schedules, units, its group key and its people."""
    own = button_datas(emulator, (GROUP_A, SECRETARY_A, MEMBER_A))
    buttons = sorted(button_datas(emulator, (GROUP_B, SECRETARY_B, MEMBER_B)) - own)

    def numbers(datas) -> set[str]:
        return {value for data in datas for value in data.split(":")[1:] if value.isdigit()}

    return buttons, sorted(numbers(buttons) - numbers(own))


# Buttons only the committee may use, pressed by a member in the group they were made for.
COMMITTEE_BUTTONS = (
    "st", "ntd", "ntx", "nts", "ntn", "mtk", "mtd", "mtp", "mtx", "mtl", "sch", "scd", "scg", "lsn", "lsm",
    "ob", "bku", "rsb", "bcu", "bcs", "bcd", "bcr", "ros", "rosn", "vg", "rpt", "rnp", "idv", "idr",
)  # fmt: skip


async def press_all(
    world: World, watch: Watch, datas: list[str], where: list[tuple[int, int]], what: str, *, same: bool = True
) -> None:
    """Press every ``data`` as each (chat, user), on a plain message of the bot's there; then check that each
    press was answered once, that nothing failed and (with ``same``) that nothing changed."""
    before = await snapshot(world.bot) if same else {}
    watch.begin()
    presses = []
    for chat, user in where:
        for data in datas:
            presses.append((world.emulator.press_button(chat, user, world.anchors[chat], data, forged=True), data))
    await world.bot.settle()
    watch.check(what)
    watch.answered_once(presses)
    changed = changes(before, await snapshot(world.bot)) if same else {}
    assert not changed, f"{what}: forged buttons changed {json.dumps(changed, ensure_ascii=False, indent=1)}"


async def test_forged_buttons_are_refused_and_change_nothing(world: World, caplog) -> None:
    emulator = world.emulator
    watch = Watch(emulator, caplog)
    own = button_datas(emulator, (GROUP_A, SECRETARY_A, MEMBER_A))
    foreign_buttons, foreign_ids = foreign(emulator)
    assert foreign_buttons and foreign_ids
    words = field_words(sorted(own | set(foreign_buttons)))
    everywhere = [(GROUP_A, SECRETARY_A), (GROUP_A, MEMBER_A), (SECRETARY_A, SECRETARY_A), (MEMBER_A, MEMBER_A)]

    # Group B's real buttons, pressed in group A and in private by A's committee and member.
    await press_all(world, watch, foreign_buttons, everywhere, "other group's buttons")
    # Group A's committee buttons, pressed by a member of A.
    committee = sorted(data for data in own if data.split(":")[0] in COMMITTEE_BUTTONS)
    await press_all(world, watch, committee, [(GROUP_A, MEMBER_A), (MEMBER_A, MEMBER_A)], "member on committee buttons")
    # Every kind of button with forged fields, one kind at a time so that a failure names it.
    for cls in button_classes():
        datas = corpus(forged_data(cls, words.get(cls.__prefix__, {}), foreign_ids), FORGED_PER_BUTTON)
        await press_all(world, watch, datas, everywhere, f"forged {cls.__module__}.{cls.__name__}")
    # The actions of buttons without ids, with values no button offers ("st:tz:²"): the committee in its
    # group may be taking a real action, anyone else is refused.
    for cls in button_classes():
        if any(field.annotation is int for field in cls.model_fields.values()) or len(cls.model_fields) < 2:
            continue
        forged = forged_data(cls, words.get(cls.__prefix__, {}), foreign_ids, first_word=True)
        datas = corpus(forged, FORGED_PER_BUTTON)
        what = f"actions of {cls.__module__}.{cls.__name__}"
        await press_all(world, watch, datas, everywhere[1:], what)
        await press_all(world, watch, datas, everywhere[:1], what + " by the committee", same=False)
    # Anything at all: no known prefix, an empty string, bytes Telegram would never send.
    junk = corpus(st.one_of(st.text(max_size=80), st.sampled_from(["", ":", "::::", "\x00", "ack", "ack:"])), 40)
    await press_all(world, watch, junk, everywhere, "junk callback data")
    # What failed before: ids no column holds reached the database driver, which refused them, and "²", a
    # digit to str.isdigit but not to int().
    await press_all(world, watch, FAILED_BUTTONS, everywhere, "buttons that failed once")


# ------------------------------------------------------------------------------------------ commands and answers

# Inputs that failed before this test: a number no column holds, "²", the year 0. (/bind and /unit never
# failed, their storage checks ids; they are here as the other commands that take one.)
HUGE = "99999999999999999999"
FAILED_BUTTONS = [
    *(f"{prefix}:{HUGE}" for prefix in ("ack", "nts", "ntn", "ntx", "mts", "mtm", "mtc", "lst", "bku", "bcd", "bcr")),
    "ack:2147483648",
    f"mtr:{HUGE}:yes",
    f"mtp:open:{HUGE}:",
    f"sch:open:{HUGE}",
    f"mtx:{HUGE}:0:0",
    f"idv:0:{HUGE}",
    f"vg:g:{HUGE}:0:0",
    "st:tz:²",
    "st:quiet:²",
]
FAILED_COMMANDS = [
    f"/start lsn_{HUGE}",
    f"/start declare_{HUGE}",
    f"/start bak_{HUGE}",
    f"/start mtg_{HUGE}_ics",
    f"/start rpt_{HUGE}_202611",
    "/start rpt_1_20²611",
    f"/start vg_{HUGE}_0",
    "/start vg_1_²",
    "/start declare_2147483648",
    f"/bind {HUGE}",
    f"/unit rename {HUGE} 新名",
    f"/unit delete {HUGE}",
    f"/unit add 党小组 名称 under {HUGE}",
    "/report 0000-01",
]
# Words the commands look for in their arguments, so that arbitrary arguments often reach the deeper parsing.
ARG_WORDS = (
    "add", "rename", "move", "delete", "new", "tz", "quiet", "lang", "reminders", "rules", "report", "vanguard",
    "委员", "书记", "branch", "支部", "党小组", "上月", "root", "@nobody", "@", "＠", "|", "#", "#1", "每天 20:00",
)  # fmt: skip
ARGS = st.one_of(
    TEXT,
    st.lists(
        st.one_of(st.sampled_from(ARG_WORDS), NUMBER, st.sampled_from(HOSTILE_INTS), TEXT), min_size=1, max_size=4
    ).map(" ".join),
)
# Deep-link payloads and how many parts follow each prefix ("mtg_12_ics").
DEEP_LINKS = {"bak": 1, "rst": 1, "declare": 1, "review": 0, "lsn": 1, "mtg": 2, "rpt": 2, "vg": 2}


def start_args(foreign_ids: list[str]) -> st.SearchStrategy[str]:
    """/start payloads: a deep link's prefix with hostile, other groups' or random parts, mostly as many as the
    link has, sometimes one more or one less."""
    part = st.one_of(
        st.sampled_from(HOSTILE_INTS + tuple(foreign_ids) + ("leave", "ics", "makeup", "code", "202611", "20²611")),
        NUMBER,
        hostile_text(6),
    )

    @st.composite
    def link(draw) -> str:
        prefix = draw(st.sampled_from(sorted(DEEP_LINKS)))
        count = max(0, DEEP_LINKS[prefix] + draw(st.sampled_from([0, 0, 0, 1, -1])))
        return "_".join([prefix, *(draw(part) for _ in range(count))])

    return st.one_of(ARGS, link())


def command_args(foreign_ids: list[str]) -> dict[str, st.SearchStrategy[str]]:
    """Arguments shaped like each command's own, with hostile pieces where ids, names and times go."""
    word = st.one_of(st.sampled_from(HOSTILE_INTS + tuple(foreign_ids)), NUMBER, hostile_text(8), TEXT)
    line = st.lists(word, min_size=1, max_size=5).map(" | ".join)
    return {
        "unit": st.builds(
            "{} {} {} {}".format,
            st.sampled_from(["add", "rename", "move", "delete", "新建", "删除"]),
            st.one_of(word, st.sampled_from(["支部", "党小组", "branch"])),
            word,
            st.sampled_from(["", "under 1", "under " + HOSTILE_INTS[9], "root"]),
        ),
        "bind": word,
        "settings": st.builds(
            "{} {}".format,
            st.sampled_from(["tz", "quiet", "lang", "reminders", "rules", "report", "vanguard", "时区", "x"]),
            st.one_of(word, NUMERIC, st.sampled_from(["22:00-07:00", "1d,1h", "支委会=月", "出勤=40", "1 09:00"])),
        ),
        "grant": st.builds(
            "{} {}".format, st.sampled_from(["委员", "书记", "x"]), st.sampled_from(["@nobody", "@", ""])
        ),
        "revoke": st.sampled_from(["@nobody", "@", "＠x", "x"]),
        "report": st.one_of(NUMERIC, word),
        "notice": line,
        "schedule": line,
        "meeting": line,
        "broadcast": line,
    }


# What the issue names: the longest text, nothing, only emoji, right-to-left text, HTML and Markdown specials,
# characters of zero width, control characters.
EDGE_TEXTS = (
    "",
    " ",
    "\u200b\u200d\ufeff",
    "👍🏽👨‍👩‍👧🇨🇳",
    "مرحبا بالعالم \u202eטקסט",
    "<b>粗体</b> & <script>alert(1)</script> <a href='x'>",
    "*_[]()~`>#+-=|{}.! &amp; &lt; &#0;",
    "\x00\x07\x1b",
    _long("党", 5000),
    _long("<b>&amp;", 5000),
    _long("👍", 5000),
)


async def send_all(world: World, watch: Watch, messages: list[tuple[int, int, str]], what: str, *, same=False) -> None:
    """Send every (chat, user, text); then check that nothing failed (and, with ``same``, nothing changed)."""
    before = await snapshot(world.bot) if same else None
    watch.begin()
    for chat, user, text in messages:
        world.emulator.send_message(chat, user, as_telegram_delivers(text))
    await world.bot.settle(timeout=30)
    watch.check(what)
    if before is not None:
        changed = changes(before, await snapshot(world.bot))
        assert not changed, f"{what}: changed {json.dumps(changed, ensure_ascii=False, indent=1)}"


async def test_commands_take_any_arguments(world: World, caplog) -> None:
    emulator = world.emulator
    watch = Watch(emulator, caplog)
    _, ids = foreign(emulator)
    names = [spec.name for spec in COMMANDS]
    shaped = command_args(ids) | {"start": start_args(ids)}
    args = {name: corpus(st.one_of(ARGS, shaped[name]) if name in shaped else ARGS, ARGS_PER_COMMAND) for name in names}

    def lines(chat: int, user: int, skip: tuple[str, ...] = ()) -> list[tuple[int, int, str]]:
        return [(chat, user, f"/{name} {arg}") for name in names if name not in skip for arg in args[name]]

    # A member in the group: every command refused or answered, and nothing changed (but /sync, which is
    # everyone's, and is audited each time).
    await send_all(world, watch, lines(GROUP_A, MEMBER_A, skip=("sync",)), "member in the group", same=True)
    for chat, user in ((GROUP_A, SECRETARY_A), (SECRETARY_A, SECRETARY_A), (MEMBER_A, MEMBER_A)):
        await send_all(world, watch, lines(chat, user), f"commands in {chat} from {user}")
    # The edge cases as the arguments of every command, from the committee.
    edge = [(GROUP_A, SECRETARY_A, f"/{name} {text}") for name in names for text in EDGE_TEXTS]
    await send_all(world, watch, edge, "edge texts as arguments")
    # What failed before, from the committee, in the group and privately.
    failed = [(chat, SECRETARY_A, line) for chat in (GROUP_A, SECRETARY_A) for line in FAILED_COMMANDS]
    await send_all(world, watch, failed, "commands that failed once")
    # A backup whose text holds a NUL (a "\u0000" escape), which PostgreSQL cannot store: refused, unchanged.
    await world.say(GROUP_A, SECRETARY_A, "/restore")
    before = await snapshot(world.bot)
    emulator.send_document(SECRETARY_A, SECRETARY_A, "backup.json", NUL_BACKUP)
    await world.bot.settle()
    assert "\\u0000" in last(emulator, SECRETARY_A)["text"] and not callback_data_of(last(emulator, SECRETARY_A))
    assert not changes(before, await snapshot(world.bot))
    watch.check("a backup with a NUL")


def prompt_of(emulator: BotAPIEmulator, chat: int, pattern: re.Pattern[str]) -> dict:
    """The bot's latest question in the chat that ``pattern`` recognises."""
    found = [m for m in emulator.sent_messages(chat) if pattern.match(m.get("text") or "")]
    assert found, f"no prompt {pattern.pattern} in {chat}"
    return found[-1]


async def answer(world: World, chat: int, user: int, prompt: dict | None, texts) -> None:
    """Every text as an answer: a reply to ``prompt`` (in a group), or a private message."""
    for text in texts:
        reply_to = prompt["message_id"] if prompt is not None else None
        world.emulator.send_message(chat, user, as_telegram_delivers(text), reply_to_message_id=reply_to)
    await world.bot.settle(timeout=30)


async def test_answers_to_the_bots_questions_take_any_text(world: World, caplog) -> None:
    emulator = world.emulator
    watch = Watch(emulator, caplog)
    texts = [*EDGE_TEXTS, *corpus(TEXT, 12)]
    watch.begin()

    # A meeting made step by step: each question gets every text (the bad ones are refused and asked again),
    # then a good answer moves it on.
    await world.press(GROUP_A, SECRETARY_A, await world.say(GROUP_A, SECRETARY_A, "/meeting"), "mtk:")
    for good in ("学习党章", "明天 19:30", "三楼会议室", "无"):
        prompt = prompt_of(emulator, GROUP_A, meeting_view.PROMPT)
        await answer(world, GROUP_A, SECRETARY_A, prompt, texts)
        if prompt_of(emulator, GROUP_A, meeting_view.PROMPT) == prompt or good == "明天 19:30":
            await answer(world, GROUP_A, SECRETARY_A, prompt_of(emulator, GROUP_A, meeting_view.PROMPT), [good])
    # Editing a published meeting, and its minutes, from its panel.
    panel = await world.say(GROUP_A, SECRETARY_A, "/meetings")
    panel = await world.press(GROUP_A, SECRETARY_A, panel, "mtp:open:")
    meeting_id = data_starting(panel, "mtp:").split(":")[2]
    for action in ("edit_field:{}:title", "edit_field:{}:time", "edit_field:{}:place", "minutes:{}:"):
        emulator.press_button(
            GROUP_A, SECRETARY_A, panel["message_id"], "mtp:" + action.format(meeting_id), forged=True
        )
        await world.bot.settle()
        await answer(world, GROUP_A, SECRETARY_A, prompt_of(emulator, GROUP_A, meeting_view.PROMPT), texts)
    # A recurring announcement made with buttons, and one edited.
    guide = await world.say(GROUP_A, SECRETARY_A, "/schedule")
    guide = await world.press(GROUP_A, SECRETARY_A, guide, "scg:d:")
    await world.press(GROUP_A, SECRETARY_A, emulator.message(GROUP_A, guide["message_id"]), "scg:d:2000")
    await answer(world, GROUP_A, SECRETARY_A, prompt_of(emulator, GROUP_A, schedule_view.PROMPT), texts)
    listing = await world.say(GROUP_A, SECRETARY_A, "/schedules")
    panel = await world.press(GROUP_A, SECRETARY_A, listing, "sch:open:")
    await world.press(GROUP_A, SECRETARY_A, emulator.message(GROUP_A, panel["message_id"]), "sch:edit:")
    await answer(world, GROUP_A, SECRETARY_A, prompt_of(emulator, GROUP_A, schedule_view.PROMPT), texts)
    # A notice made from a member's message.
    for text in texts:
        said = emulator.send_message(GROUP_A, MEMBER_A, as_telegram_delivers(text) or "…")
        emulator.send_message(GROUP_A, SECRETARY_A, "/notice", reply_to_message_id=said["message"]["message_id"])
    await world.bot.settle(timeout=30)
    # In private: the reason for a leave, the 亮身份 form, the reason for rejecting a declaration.
    post = next(m for m in emulator.sent_messages(GROUP_A) if "mtr:1:leave" in callback_data_of(m))
    for choice in ("mtr:1:yes", "mtr:1:leave"):  # the reason given in the world is asked for again
        emulator.press_button(GROUP_A, MEMBER_A, post["message_id"], choice)
    await world.bot.settle()
    assert "请假原因" in last(emulator, MEMBER_A)["text"]
    await answer(world, MEMBER_A, MEMBER_A, None, texts)
    await world.say(MEMBER_A, MEMBER_A, "/declare")
    await answer(world, MEMBER_A, MEMBER_A, None, texts)
    review = next(m for m in emulator.sent_messages(SECRETARY_B) if "idv:0:" + str(MEMBER_B) in callback_data_of(m))
    await world.press(SECRETARY_B, SECRETARY_B, review, "idv:0:")
    await answer(world, SECRETARY_B, SECRETARY_B, None, texts)
    watch.check("answers to the bot's questions")
