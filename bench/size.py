"""Memory and start-up of the bot on a deployment's worth of data: 1,000 groups, 10,000 members, a year.

Run from the repository root: ``uv run python -m bench.size [--rounds 3]``.

1. **World.** ``python -m bot migrate`` makes a fresh SQLite file, ``bench.broadcast.prepare_database`` writes
   the root unit, the superuser and ``--groups`` active supergroups (bot admin), and this driver adds, through
   the ORM and bulk ``INSERT``s: 50 branch units under the root (each group bound to one, zh, Asia/Shanghai),
   ``--members`` users, each a member of one home group (a few groups of 200-320, the rest 3-30), the group's
   creator as secretary and one or two more admins as committee, 亮身份 declarations for about 70 %, and a year
   of records up to now: per group 3 meetings a month (answers from about 90 %, sign-ins from about 80 %, 补学
   for the others), 3 group notices a month and 1 broadcast from the root (acks from about 70 %), a lesson
   pushed every day at 20:00 (studied by about 40 %, quiz answered by about 30 %), the routines the bot makes
   for a group (``ensure_routines_everywhere``, and the daily push through ``lessons.set_push``), the one-off
   schedules of every meeting, the next meeting on the timetable, the outbox rows all this sent, audit rows and
   two days of processed update ids. The bot's own code loads the sample lesson packs; the library is topped
   up to one lesson per day (a group never gets a lesson twice). ``PRAGMA foreign_key_check`` must pass.
2. **Rounds.** Each round copies that database, starts the emulator (``python -m tests.emulator``, no limit
   enforcement) with the groups and the superuser (``bench.broadcast.world_setup``) and the members the driver
   uses. First the reference, ``bench/echo_bot.py`` (a bare aiogram bot, no database), is started, timed and read
   the same way, and stopped. Then it spawns ``python -m bot`` with none of the shell's bot settings
   (``bench.broadcast.bot_env``, LOG_LEVEL INFO). Start-up is timed as in ``bench.scheduler``: from the spawn, and
   from the bot's ``deleteWebhook``, to its first ``getUpdates`` as the emulator recorded it (CLOCK_MONOTONIC on
   both sides; a private message is pending so that the first long poll returns at once). Then the driver waits for
   the start-up housekeeping to finish (its log line) and for 1 s without a Bot API call, lets the bot idle
   ``--idle`` seconds and reads VmRSS, RssAnon and VmHWM from ``/proc/<pid>/status``. Then some typical use in the
   three biggest groups, one step at a time, each waited for: two ``/help``, ``/rank``, ``/me``, the ranking's
   "unit, this month" button, and ``/help`` and ``/me`` in private; then the same figures again.
3. **Imports.** ``python -X importtime`` of what ``python -m bot`` imports before it polls: the 15 largest
   cumulative costs and the self time per top-level package.

Targets: RSS under 200 MB (judged on the median VmHWM after the activity, the peak so far), start-up under
3 s (judged on spawn → first ``getUpdates``). Missing one is reported, not an exit code. The figures go to
``bench/results/size.json`` (ignored by git). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench import broadcast
from bench.broadcast import SUPERUSER, group_ids, halt, prepare_database
from bench.scheduler import WAKE_UP, chat_pks, copy_database, first_call, start_bot, start_emulator
from bench.throughput import api, bot_command, cpu_seconds, proc_status, settled, wait_until

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "size.json"
TARGET_RSS_MB = 200.0
TARGET_START_SECONDS = 3.0
ZONE_NAME, LANGUAGE = "Asia/Shanghai", "zh"
ZONE = ZoneInfo(ZONE_NAME)
FIRST_USER = 100_001
BIG_GROUPS = (320, 280, 250, 220, 200)  # sizes at 10,000 members; scaled with --members
UNITS = 50
BATCH = 50_000  # rows per INSERT transaction
UPDATE_IDS = 1_000_000_000  # processed update ids of the last two days: far above the emulator's own
HOUSEKEEPING_DONE = "housekeeping: forgot"  # the bot's log line once the start-up housekeeping is done
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰建国志红文斌海燕鹏飞宇辉晓东雪梅春生"
POSTS = ("车间主任", "班组长", "技术员", "质检员", "调度员", "安全员", "仓库管理员", "行政专员", "销售经理", "工程师")


# ------------------------------------------------------------------------------------------- the world


@dataclass
class World:
    """What the rounds need to know about the built database (kept next to it as JSON for --reuse)."""

    groups: list[int]  # Telegram ids, in the order of chats.id
    sizes: list[int]
    committee: list[list[int]]  # per group: secretary (creator) first, then the committee
    period: list[str]  # first and last moment of the records (ISO, UTC)
    counts: dict[str, int] = field(default_factory=dict)
    db_bytes: int = 0
    build_seconds: float = 0.0
    fk_check_seconds: float = 0.0

    def members(self, index: int) -> list[int]:
        first = FIRST_USER + sum(self.sizes[:index])
        return list(range(first, first + self.sizes[index]))

    def biggest(self, n: int) -> list[int]:
        return sorted(range(len(self.sizes)), key=lambda i: (-self.sizes[i], i))[:n]


def group_sizes(rng: random.Random, groups: int, members: int) -> list[int]:
    big = [max(3, round(size * members / 10_000)) for size in BIG_GROUPS][: max(1, groups // 10)]
    rest, left = groups - len(big), members - sum(big)
    if rest < 1 or not 3 * rest <= left <= 30 * rest:
        raise SystemExit(f"--members {members} does not fit --groups {groups} (3-30 a group besides the big ones)")
    sizes = [rng.randint(3, 16) for _ in range(rest)]
    total = sum(sizes)
    while total != left:
        i = rng.randrange(rest)
        if total < left and sizes[i] < 30:
            sizes[i], total = sizes[i] + 1, total + 1
        elif total > left and sizes[i] > 3:
            sizes[i], total = sizes[i] - 1, total - 1
    return big + sizes


def at_local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE).astimezone(UTC)


def month_days(start: datetime, end: datetime, days: tuple[int, ...], hour: int, minute: int) -> list[datetime]:
    """The given days of every month at the local time, from the month of ``start`` to the one after ``end``."""
    found, month = [], start.astimezone(ZONE).date().replace(day=1)
    last = (end.astimezone(ZONE).date().replace(day=1) + timedelta(days=32)).replace(day=1)
    while month <= last:
        found += [at_local(month.replace(day=day), hour, minute) for day in days]
        month = (month + timedelta(days=32)).replace(day=1)
    return found


def runs_of(rule_text: str, start: datetime, end: datetime) -> list[datetime]:
    """A stored rule's runs in (start, end], read in the groups' zone as the bot reads them."""
    from bot.services.schedules import rule_of

    rule, runs, moment = rule_of(rule_text), [], start
    while (moment := rule.next_after(moment, ZONE)) is not None and moment <= end:
        runs.append(moment)
    return runs


class Writer:
    """Rows collected per table and written in bulk INSERTs (executemany through the session), in batches."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.buffers: dict[type, list[dict]] = defaultdict(list)
        self.pending = 0
        self.written: Counter = Counter()

    def add(self, model: type, row: dict) -> None:
        self.buffers[model].append(row)
        self.pending += 1
        if self.pending >= BATCH:
            self.flush()

    def flush(self) -> None:
        from sqlalchemy import insert
        from sqlalchemy.orm import Session

        with Session(self.engine) as session, session.begin():
            for model, rows in self.buffers.items():
                if rows:
                    session.execute(insert(model.__table__), rows)
                    self.written[model.__tablename__] += len(rows)
        self.buffers.clear()
        self.pending = 0


class Ids:
    def __init__(self) -> None:
        self.next: Counter = Counter()

    def __call__(self, name: str) -> int:
        self.next[name] += 1
        return self.next[name]


async def add_routines(db_url: str, secretaries: dict[int, int], now: datetime, start: datetime) -> None:
    """With the bot's own services: the sample packs, each group's routines, its daily lesson push."""
    from bot.services import attendance, points, reports  # noqa: F401 (they register the routines)
    from bot.services import chats as chat_service
    from bot.services import lessons as lesson_service
    from bot.services import schedules as schedule_service
    from storage.db import Database
    from storage.models import Chat

    db = Database(db_url)
    try:
        async with db.transaction() as session:
            await lesson_service.ensure_sample_pack(session, start)
        async with db.transaction() as session:
            await schedule_service.ensure_routines_everywhere(
                session, now, default_language=LANGUAGE, default_timezone=ZONE_NAME
            )
            for chat_pk, secretary in secretaries.items():
                chat = await session.get(Chat, chat_pk)
                settings = chat_service.settings_of(chat, default_language=LANGUAGE, default_timezone=ZONE_NAME)
                await lesson_service.set_push(session, chat_pk, secretary, lesson_service.DEFAULT_PUSH, settings, now)
    finally:
        await db.dispose()


def build_world(db_path: Path, opts: argparse.Namespace) -> World:
    from sqlalchemy import create_engine, event, text, update
    from sqlalchemy.orm import Session

    from bot.services import lessons, meetings, points, reports
    from bot.services.schedules import firing_key
    from bot.services.timephrase import Rule
    from storage.models import (
        AuditLog,
        Base,
        Chat,
        ChatMember,
        ChatRole,
        Identity,
        Lesson,
        LessonPush,
        LessonStudy,
        Meeting,
        MeetingAnswer,
        MeetingMakeup,
        MeetingSignIn,
        Notice,
        NoticeAck,
        NoticePost,
        OutboxMessage,
        ProcessedUpdate,
        QuizAnswer,
        Schedule,
        Unit,
        UnitRole,
        User,
    )

    started_build = time.monotonic()
    rng = random.Random(opts.seed)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(days=365)
    db_url = f"sqlite:///{db_path}"
    groups = group_ids(opts.groups)
    prepare_database(db_url, groups, db_path.with_name(db_path.name + ".migrate.log"))
    pk_of = chat_pks(db_url)
    pks = [pk_of[chat] for chat in groups]
    sizes = group_sizes(rng, opts.groups, opts.members)
    world = World(groups, sizes, [], [start.isoformat(), end.isoformat()])
    members = [world.members(i) for i in range(len(groups))]
    started_bot = {uid: rng.random() < 0.6 for uid in range(FIRST_USER, FIRST_USER + opts.members)}
    for i, people in enumerate(members):
        world.committee.append(people[: 2 + (i % 2)])  # the creator (secretary), then one or two committee
        for uid in world.committee[-1]:
            started_bot[uid] = True

    engine = create_engine(db_url)

    @event.listens_for(engine, "connect")
    def _fast(dbapi_connection, _record) -> None:  # a bench build: no fsync, a big page cache
        dbapi_connection.execute("PRAGMA synchronous=OFF")
        dbapi_connection.execute("PRAGMA cache_size=-262144")

    def say(what: str) -> None:
        print(f"  [{time.monotonic() - started_build:6.1f}s] {what}", flush=True)

    # Units, users, membership, roles, identities ---------------------------------------------------
    with Session(engine) as session, session.begin():
        root = session.execute(text("SELECT id FROM units WHERE parent_id IS NULL")).scalar_one()
        units = [
            Unit(name=f"第{k}联合党支部", kind="branch", parent_id=root, created_by=SUPERUSER, created_at=start)
            for k in range(1, UNITS + 1)
        ]
        session.add_all(units)
        session.flush()
        unit_ids = [unit.id for unit in units]
        session.execute(
            update(Chat),
            [
                {
                    "id": pk,
                    "unit_id": unit_ids[i % UNITS],
                    "language": LANGUAGE,
                    "timezone": ZONE_NAME,
                    "created_at": start,
                }
                for i, pk in enumerate(pks)
            ],
        )
    writer = Writer(engine)
    names = {}
    for uid in range(FIRST_USER, FIRST_USER + opts.members):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        names[uid] = name
        joined = start + timedelta(minutes=rng.randrange(60 * 24 * 30))
        writer.add(
            User,
            {
                "id": uid,
                "first_name": name,
                "last_name": None,
                "username": f"member{uid}" if rng.random() < 0.5 else None,
                "language_code": "zh-hans",
                "started_bot": started_bot[uid],
                "blocked_bot": False,
                "rank_hidden": rng.random() < 0.03,
                "created_at": joined,
                "updated_at": joined,
            },
        )
    for i, people in enumerate(members):
        committee = set(world.committee[i])
        for uid in people:
            seen = end - timedelta(minutes=rng.randrange(60 * 24 * 14))
            writer.add(
                ChatMember,
                {
                    "chat_id": pks[i],
                    "user_id": uid,
                    "status": "member",
                    "is_admin": uid in committee,
                    "first_seen_at": start,
                    "last_seen_at": seen,
                },
            )
            if uid in committee:
                role = "secretary" if uid == world.committee[i][0] else "committee"
                writer.add(
                    ChatRole,
                    {
                        "chat_id": pks[i],
                        "user_id": uid,
                        "source": "telegram_admin",
                        "role": role,
                        "granted_by": None,
                        "granted_at": start,
                    },
                )
            if rng.random() < 0.7:
                submitted = start + timedelta(minutes=rng.randrange(60 * 24 * 90))
                verified = rng.random() < 0.9
                writer.add(
                    Identity,
                    {
                        "user_id": uid,
                        "chat_id": pks[i],
                        "unit_id": unit_ids[i % UNITS],
                        "real_name": names[uid],
                        "member_type": rng.choices(("full", "probationary", "activist", "masses"), (80, 8, 8, 4))[0],
                        "duty_post": rng.choice(POSTS),
                        "pledge": "立足岗位作贡献，争当先锋树形象",
                        "skills": rng.choice((None, "电工", "数据分析", "驾驶", "摄影")),
                        "available_times": rng.choice((None, "周末", "工作日晚上")),
                        "contact": None,
                        "contact_public": False,
                        "floating": False,
                        "floating_org": None,
                        "status": "verified" if verified else "pending",
                        "reject_reason": None,
                        "reviewed_by": world.committee[i][0] if verified else None,
                        "reviewed_at": submitted + timedelta(days=1) if verified else None,
                        "show_card": rng.random() < 0.5,
                        "submitted_at": submitted,
                        "updated_at": submitted,
                    },
                )
    for k, unit_id in enumerate(unit_ids):  # each branch unit's secretary: the secretary of its first group
        writer.add(
            UnitRole,
            {
                "unit_id": unit_id,
                "user_id": world.committee[k][0],
                "role": "secretary",
                "granted_by": SUPERUSER,
                "granted_at": start,
            },
        )
    writer.flush()
    say(f"{len(groups)} groups in {UNITS} units, {opts.members} members")

    # The bot's own services: sample packs, routines, the daily push -----------------------------------
    asyncio.run(add_routines(db_url, {pks[i]: world.committee[i][0] for i in range(len(groups))}, end, start))
    with closing(sqlite3.connect(db_path)) as conn:
        routine_rows = conn.execute("SELECT id, chat_id, kind, rule FROM schedules").fetchall()
        pack = conn.execute(
            "SELECT id, quiz_answer, quiz_options FROM lessons WHERE chat_id IS NULL AND language = ? "
            "ORDER BY position, id",
            (LANGUAGE,),
        ).fetchall()
        max_position = conn.execute("SELECT max(position) FROM lessons WHERE chat_id IS NULL").fetchone()[0] or 0
    routines: dict[int, dict[str, int]] = defaultdict(dict)
    rules: dict[str, str] = {}
    for schedule_id, chat_pk, kind, rule in routine_rows:
        routines[chat_pk][kind] = schedule_id
        rules[kind] = rule
    runs = {kind: runs_of(rule, start, end) for kind, rule in rules.items()}
    pushes = runs[lessons.PUSH]
    with Session(engine) as session, session.begin():
        extra = [
            Lesson(
                chat_id=None,
                position=max_position + n,
                title=f"每日一课 第{len(pack) + n}讲",
                body="学习贯彻党的创新理论，结合岗位实际谈体会。" * 20,
                source="支部学习材料",
                tags="理论学习,每日一课",
                quiz_question="本课的学习要求是什么？",
                quiz_options=json.dumps(["学懂弄通做实", "走过场", "只看标题", "不用学习"], ensure_ascii=False),
                quiz_answer=0,
                status="active",
                language=LANGUAGE,
                created_at=start,
            )
            for n in range(1, len(pushes) - len(pack) + 1)
        ]
        session.add_all(extra)
        session.flush()
        pack += [(lesson.id, lesson.quiz_answer, lesson.quiz_options) for lesson in extra]
    say(
        f"sample packs and {len(extra)} more lessons ({len(pack)} in the zh library), "
        f"{len(routine_rows)} routine schedules: " + ", ".join(f"{k} {len(v)} runs" for k, v in runs.items())
    )

    # A year of records, group by group ------------------------------------------------------------
    next_id = Ids()
    with closing(sqlite3.connect(db_path)) as conn:
        next_id.next["schedules"] = conn.execute("SELECT max(id) FROM schedules").fetchone()[0]
    message_ids = iter(range(10_000, 10**12))

    def outbox(key: str, kind: str, args: dict, chat_pk: int | None, at: datetime, user_id: int | None = None) -> None:
        writer.add(
            OutboxMessage,
            {
                "dedupe_key": key,
                "kind": kind,
                "args": json.dumps(args, ensure_ascii=False, sort_keys=True),
                "chat_id": chat_pk,
                "user_id": user_id,
                "status": "sent",
                "attempts": 1,
                "not_before": at,
                "message_id": next(message_ids),
                "error": None,
                "created_at": at,
                "sent_at": at + timedelta(seconds=1),
            },
        )

    def audit(chat_pk: int | None, actor: int, action: str, detail: str, at: datetime) -> None:
        writer.add(
            AuditLog, {"chat_id": chat_pk, "actor_id": actor, "action": action, "detail": detail, "created_at": at}
        )

    kinds_by_month = ("general", "lecture", "theme_day")
    meeting_times = [
        (moment, day_kind)
        for moment, day_kind in zip(
            month_days(start, end, (5, 15, 25), 19, 0),
            [kind for _ in range(40) for kind in ("committee", "group", "third")],
            strict=False,
        )
    ]
    held = [(moment, kind) for moment, kind in meeting_times if moment >= start and moment + timedelta(hours=2) <= end]
    upcoming = next((moment, kind) for moment, kind in meeting_times if moment > end + timedelta(days=1))
    notice_times = [moment for moment in month_days(start, end, (3, 12, 21), 9, 30) if start <= moment <= end]
    broadcast_times = [moment for moment in month_days(start, end, (28,), 10, 0) if start <= moment <= end]
    broadcasts = []
    for moment in broadcast_times:
        notice_id = next_id("notices")
        broadcasts.append((notice_id, moment))
        writer.add(
            Notice,
            {
                "id": notice_id,
                "author_id": SUPERUSER,
                "origin_chat_id": None,
                "unit_id": root,
                "kind": "text",
                "text": f"📢 关于{moment.astimezone(ZONE):%m}月主题党日活动安排的通知：请各支部按要求组织学习。",
                "file_id": None,
                "pin": False,
                "status": "published",
                "send_at": None,
                "panel_chat_id": SUPERUSER,
                "panel_message_id": next(message_ids),
                "created_at": moment,
                "published_at": moment,
                "finished_at": moment + timedelta(seconds=len(groups) / 28 + 5),
            },
        )
        outbox(f"broadcast-summary:{notice_id}", "broadcast_summary", {"notice_id": notice_id}, None, moment, SUPERUSER)
        audit(None, SUPERUSER, "broadcast", f"notice={notice_id} unit={root} groups={len(groups)}", moment)

    def meeting_rows(i: int, moment: datetime, day_kind: str, is_upcoming: bool) -> None:
        chat_pk, people, secretary = pks[i], members[i], world.committee[i][0]
        local = moment.astimezone(ZONE)
        kind = kinds_by_month[local.month % 3] if day_kind == "third" else day_kind
        meeting_id, created, ends = next_id("meetings"), moment - timedelta(days=7), moment + timedelta(hours=2)
        answers, signed, missed = Counter(), 0, []
        for uid in people:
            r = rng.random()
            answer = "yes" if r < 0.765 else "leave" if r < 0.855 else "maybe" if r < 0.9 else None
            if is_upcoming and rng.random() < 0.4:
                answer = None  # a week to go: fewer have answered yet
            if answer is not None:
                answers[answer] += 1
                writer.add(
                    MeetingAnswer,
                    {
                        "meeting_id": meeting_id,
                        "user_id": uid,
                        "answer": answer,
                        "reason": "出差在外" if answer == "leave" else None,
                        "leave_status": "approved" if answer == "leave" else None,
                        "reviewed_by": secretary if answer == "leave" else None,
                        "answered_at": created + timedelta(minutes=rng.randrange(60 * 24 * 6)),
                    },
                )
            if is_upcoming:
                continue
            p = rng.random()
            if (answer == "yes" and p < 0.97) or (answer == "maybe" and p < 0.5) or (answer is None and p < 0.3):
                signed += 1
                signed_at = moment + timedelta(seconds=rng.randrange(-600, 1200))
                writer.add(
                    MeetingSignIn,
                    {
                        "meeting_id": meeting_id,
                        "user_id": uid,
                        "signed_at": signed_at,
                        "late": signed_at > moment + timedelta(minutes=15),
                        "method": "button" if rng.random() < 0.85 else "code",
                        "proxy_by": None,
                        "note": None,
                    },
                )
            else:
                missed.append((uid, "leave" if answer == "leave" else "absent"))
        for uid, reason in missed:
            writer.add(
                MeetingMakeup,
                {
                    "meeting_id": meeting_id,
                    "user_id": uid,
                    "reason": reason,
                    "assigned_at": ends,
                    "studied_at": ends + timedelta(hours=rng.randrange(1, 120)) if rng.random() < 0.5 else None,
                },
            )
            if started_bot[uid]:
                outbox(
                    f"meeting:{meeting_id}:makeup:{uid}", "meeting_makeup", {"meeting_id": meeting_id}, chat_pk, ends
                )
        counts = f"{answers['yes']}/{answers['leave']}/{answers['maybe']}"
        writer.add(
            Meeting,
            {
                "id": meeting_id,
                "chat_id": chat_pk,
                "kind": kind,
                "title": f"{local:%m}月{meetings.KINDS.index(kind) + 1}号会议",
                "starts_at": moment,
                "ends_at": ends,
                "place": "三楼会议室",
                "agenda": "一、学习上级文件精神；二、研究本月支部工作；三、其他事项。",
                "status": "scheduled" if is_upcoming else "closed",
                "step": None,
                "checkin_mode": "both",
                "checkin_code": f"{1000 + i % 9000}",
                "late_minutes": 15,
                "checkin_opened_at": None if is_upcoming else moment,
                "checkin_closed_at": None if is_upcoming else ends,
                "version": 0,
                "message_id": next(message_ids),
                "signin_message_id": None if is_upcoming else next(message_ids),
                "shown_counts": f"{counts}/{signed}",
                "minutes_kind": None if is_upcoming else "text",
                "minutes_text": None if is_upcoming else "会议传达学习了上级文件精神，研究部署了下阶段工作。",
                "minutes_file_id": None,
                "created_by": secretary,
                "created_at": created,
                "updated_at": created if is_upcoming else ends,
            },
        )
        audit(chat_pk, secretary, "meeting_published", str(meeting_id), created)
        args = {"meeting_id": meeting_id}
        outbox(f"meeting:{meeting_id}:post", "meeting_post", args, chat_pk, created)
        steps = [(meetings.REMINDER, moment - timedelta(minutes=m)) for m in meetings.DEFAULT_REMINDERS]
        steps += [(meetings.OPEN, moment), (meetings.CLOSE, ends)]
        for kind_name, due in steps:
            schedule_id, done = next_id("schedules"), due <= end
            due_local = due.astimezone(ZONE)
            rule = Rule(kind="once", date=due_local.date(), hour=due_local.hour, minute=due_local.minute)
            writer.add(
                Schedule,
                {
                    "id": schedule_id,
                    "chat_id": chat_pk,
                    "kind": kind_name,
                    "rule": rule.canonical(),
                    "text": "",
                    "with_ack": False,
                    "quiet_ok": False,
                    "status": "done" if done else "active",
                    "replaces_id": None,
                    "ref": meetings.ref_of(meeting_id),
                    "next_run_at": None if done else due,
                    "last_run_at": due if done else None,
                    "created_by": None,
                    "created_at": created,
                    "updated_at": due if done else created,
                },
            )
            if not done:
                continue
            if kind_name == meetings.REMINDER:
                key = firing_key(schedule_id, due)
                outbox(key, "meeting_reminder", args, chat_pk, due)
                for uid in people:  # the silent ones who can be reached (a tenth or so answered nothing)
                    if started_bot[uid] and rng.random() < 0.1:
                        outbox(f"{key}:user:{uid}", "meeting_reminder_private", args, chat_pk, due, uid)
            elif kind_name == meetings.OPEN:
                outbox(f"meeting:{meeting_id}:signin", "meeting_signin", args, chat_pk, due)
                outbox(f"meeting:{meeting_id}:code:{secretary}", "meeting_code", args, chat_pk, due, secretary)
            else:
                outbox(f"meeting:{meeting_id}:summary", "meeting_summary", args, chat_pk, due)

    def notice_rows(i: int, notice_id: int | None, moment: datetime) -> None:
        chat_pk, people, secretary = pks[i], members[i], world.committee[i][0]
        if notice_id is None:  # the group's own notice
            notice_id = next_id("notices")
            writer.add(
                Notice,
                {
                    "id": notice_id,
                    "author_id": secretary,
                    "origin_chat_id": chat_pk,
                    "unit_id": None,
                    "kind": "text",
                    "text": "请各位党员本周五前提交学习心得，并按时参加支部活动。",
                    "file_id": None,
                    "pin": rng.random() < 0.3,
                    "status": "published",
                    "send_at": None,
                    "panel_chat_id": groups[i],
                    "panel_message_id": next(message_ids),
                    "created_at": moment,
                    "published_at": moment,
                    "finished_at": None,
                },
            )
            audit(chat_pk, secretary, "notice_published", str(notice_id), moment)
        post_id, acked = next_id("notice_posts"), 0
        for uid in people:
            if rng.random() < 0.7:
                acked += 1
                writer.add(
                    NoticeAck,
                    {"post_id": post_id, "user_id": uid, "acked_at": moment + timedelta(minutes=rng.randrange(4320))},
                )
        writer.add(
            NoticePost,
            {
                "id": post_id,
                "notice_id": notice_id,
                "chat_id": chat_pk,
                "message_id": next(message_ids),
                "shown_acks": acked,
                "nudges": 0,
                "last_nudge_at": None,
            },
        )
        outbox(
            f"notice:{notice_id}:chat:{chat_pk}",
            "notice_post",
            {"notice_id": notice_id, "post_id": post_id},
            chat_pk,
            moment,
        )

    def lesson_rows(i: int) -> None:
        chat_pk, people, push_schedule = pks[i], members[i], routines[pks[i]][lessons.PUSH]
        for day, due in enumerate(pushes):
            lesson_id, answer, options = pack[day]
            push_id = next_id("lesson_pushes")
            writer.add(
                LessonPush,
                {
                    "id": push_id,
                    "chat_id": chat_pk,
                    "lesson_id": lesson_id,
                    "pushed_on": due.astimezone(ZONE).date(),
                    "message_id": next(message_ids),
                    "poll_id": f"5{push_id:011d}" if options else None,
                    "created_at": due,
                },
            )
            key = firing_key(push_schedule, due)
            outbox(f"{key}:post", "lesson_post", {"push_id": push_id}, chat_pk, due)
            if options:
                outbox(f"{key}:quiz", "lesson_quiz", {"push_id": push_id}, chat_pk, due + timedelta(seconds=2))
            choices = len(json.loads(options)) if options else 0
            for uid in people:
                if rng.random() < 0.4:
                    writer.add(
                        LessonStudy,
                        {"push_id": push_id, "user_id": uid, "studied_at": due + timedelta(minutes=rng.randrange(720))},
                    )
                if choices and rng.random() < 0.3:
                    option = answer if rng.random() < 0.8 else rng.randrange(choices)
                    writer.add(
                        QuizAnswer,
                        {
                            "push_id": push_id,
                            "user_id": uid,
                            "option": option,
                            "correct": option == answer,
                            "answered_at": due + timedelta(minutes=rng.randrange(720)),
                        },
                    )

    def routine_rows(i: int) -> None:
        chat_pk, secretary = pks[i], world.committee[i][0]
        for kind, post_period in ((points.WEEKLY_POST, "week"), (points.MONTHLY_POST, "month")):
            for due in runs.get(kind, []):
                first, until = points.posted_period(post_period, due, ZONE)
                args = {"period": post_period, "first": first.isoformat(), "until": until.isoformat()}
                key = f"{points.board_key_prefix(chat_pk)}{post_period}:{first.isoformat()}"
                outbox(key, points.BOARD_POST, args, chat_pk, due)
        for due in runs.get(reports.MONTHLY, []):
            month = reports.month_of(due, ZONE, 1)
            for part in ("chart", "ledger"):
                key = f"{reports.MONTHLY}:{chat_pk}:{month:%Y%m}:user:{secretary}:{part}"
                outbox(key, reports.MONTHLY, {"month": month.isoformat(), "part": part}, chat_pk, due, secretary)

    for i in range(len(groups)):
        for moment, kind in held:
            meeting_rows(i, moment, kind, False)
        meeting_rows(i, *upcoming, True)
        for moment in notice_times:
            notice_rows(i, None, moment)
        for notice_id, moment in broadcasts:
            notice_rows(i, notice_id, moment)
        lesson_rows(i)
        routine_rows(i)
        audit(pks[i], None, "sync_admins", ",".join(map(str, sorted(world.committee[i]))), start)
        if (i + 1) % max(1, len(groups) // 5) == 0:
            say(f"records of {i + 1}/{len(groups)} groups ({sum(writer.written.values()):,} rows so far)")
    for n in range(opts.processed_updates):  # the update ids of the last two days (older ones are pruned)
        moment = end - timedelta(seconds=(opts.processed_updates - n) * 172_800 / opts.processed_updates)
        writer.add(ProcessedUpdate, {"update_id": UPDATE_IDS + n, "processed_at": moment})
    writer.flush()

    with closing(sqlite3.connect(db_path)) as conn:
        for kind, kind_runs in runs.items():  # the routines have been running all year
            if kind_runs:
                conn.execute(
                    "UPDATE schedules SET last_run_at = ?, created_at = ?, updated_at = ? WHERE kind = ? AND ref = ?",
                    (sqlite_time(kind_runs[-1]), sqlite_time(start), sqlite_time(start), kind, kind),
                )
        conn.commit()
        say(f"{sum(writer.written.values()):,} rows written; foreign_key_check ...")
        checked = time.monotonic()
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        world.fk_check_seconds = round(time.monotonic() - checked, 1)
        if problems:
            raise RuntimeError(f"foreign_key_check: {len(problems)} rows point nowhere, e.g. {problems[:5]}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        world.counts = {
            table.name: conn.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
            for table in Base.metadata.sorted_tables
        }
    engine.dispose()
    world.db_bytes = sum(path.stat().st_size for path in db_path.parent.glob(db_path.name + "*") if path.is_file())
    world.build_seconds = round(time.monotonic() - started_build, 1)
    return world


def sqlite_time(moment: datetime) -> str:
    """How SQLAlchemy stores a UTCDateTime on SQLite (naive UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def load_or_build(opts: argparse.Namespace, tmp: Path) -> tuple[Path, World]:
    db_path = Path(opts.db).resolve() if opts.db else tmp / "world.db"
    meta = db_path.with_name(db_path.name + ".world.json")
    if opts.reuse and db_path.exists() and meta.exists():
        world = World(**json.loads(meta.read_text()))
        print(f"reusing {db_path} ({world.db_bytes / 2**20:.0f} MB, built in {world.build_seconds:.0f}s)")
        return db_path, world
    for stale in db_path.parent.glob(db_path.name + "*"):
        stale.unlink()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the world in {db_path} ...", flush=True)
    world = build_world(db_path, opts)
    meta.write_text(json.dumps(asdict(world), ensure_ascii=False) + "\n")
    return db_path, world


def print_world(world: World) -> None:
    print(f"\nWorld: records from {world.period[0]} to {world.period[1]} (UTC)")
    width = max(len(name) for name in world.counts)
    for name, count in sorted(world.counts.items(), key=lambda item: -item[1]):
        print(f"  {name:<{width}} {count:>10,}")
    print(
        f"  {'total':<{width}} {sum(world.counts.values()):>10,}\n"
        f"  database file {world.db_bytes / 2**20:.0f} MB; built in {world.build_seconds:.0f}s "
        f"(of which foreign_key_check {world.fk_check_seconds:.0f}s)\n",
        flush=True,
    )


# ------------------------------------------------------------------------------------------- a round


@dataclass
class Step:
    name: str
    op: dict
    method: str  # the reply waited for
    chat_id: int | None  # where that reply goes (None: any)


@dataclass
class Round:
    round: int
    loadavg: float  # 1-minute load average when the round started
    echo_spawn_to_polling: float  # the reference: bench/echo_bot.py, a bare aiogram bot, no database
    echo_rss_mb: float  # its VmRSS after the same idle wait
    spawn_to_get_me: float  # interpreter, imports, migrations check, building the application
    spawn_to_polling: float  # spawn → first getUpdates (the start-up target)
    webhook_to_polling: float  # deleteWebhook → first getUpdates (workers, timer, polling set-up)
    polling_to_housekeeping: float  # first getUpdates → the housekeeping's log line seen (polled every 0.1 s)
    startup_cpu_seconds: float  # the bot's CPU from spawn to idle
    idle_rss_mb: float
    idle_anon_mb: float
    idle_hwm_mb: float
    active_rss_mb: float
    active_anon_mb: float
    active_hwm_mb: float
    activity_cpu_seconds: float
    log_warnings: int  # WARNING lines in the bot's log
    log_errors: int  # ERROR lines and tracebacks
    steps: list[dict] = field(default_factory=list)  # name, seconds from injection to the reply, its status


def memory(pid: int) -> tuple[float, float, float]:
    return tuple(proc_status(pid, key) / 1024 for key in ("VmRSS", "RssAnon", "VmHWM"))


def world_ops(world: World, active: list[int]) -> list[dict]:
    """The groups and the superuser (as ``bench.broadcast`` sets them up), then the real admins and the
    members of the groups used for activity."""
    ops = broadcast.world_setup(world.groups)
    for index in active:
        people = world.members(index)[:12] + world.committee[index]
        for uid in dict.fromkeys(people):
            ops += [{"op": "add_user", "user_id": uid, "first_name": f"同志{uid % 10_000}"}]
            ops += [{"op": "user_started", "user_id": uid}]
        secretary, *committee = world.committee[index]
        ops.append({"op": "set_admins", "chat_id": world.groups[index], "user_ids": committee, "creator_id": secretary})
    return ops


def activity(world: World, active: list[int]) -> list[Step]:
    steps = []
    for index in active:
        chat, committee = world.groups[index], set(world.committee[index])
        m1, m2, m3, m4 = [uid for uid in world.members(index) if uid not in committee][:4]

        def say(uid: int, text: str, where: int = chat) -> dict:
            return {"op": "send_message", "chat_id": where, "user_id": uid, "text": text}

        steps += [
            Step(f"/help in group {index + 1}", say(m1, "/help"), "sendMessage", chat),
            Step(f"/help in group {index + 1}", say(m2, "/help"), "sendMessage", chat),
            Step(f"/rank in group {index + 1} ({world.sizes[index]} members)", say(m3, "/rank"), "sendMessage", chat),
            Step(f"/me in group {index + 1}", say(m4, "/me"), "sendMessage", chat),
            Step(f"🏆 unit · month button, group {index + 1}", {"press_rank": m3}, "answerCallbackQuery", None),
            Step("/help in private", say(m1, "/help", m1), "sendMessage", m1),
            Step("/me in private", say(m4, "/me", m4), "sendMessage", m4),
        ]
    return steps


def rank_button(call: dict) -> str | None:
    rows = ((call["response"] or {}).get("result") or {}).get("reply_markup", {}).get("inline_keyboard", [])
    datas = [button.get("callback_data") or "" for row in rows for button in row]
    return next((data for data in datas if data.startswith("rnk:u:month")), None) or next(
        (data for data in datas if data.startswith("rnk:")), None
    )


def run_steps(url: str, steps: list[Step], bot, log: Path) -> list[dict]:
    done, last_rank = [], None
    for step in steps:
        op = step.op
        if "press_rank" in op:
            if last_rank is None:
                raise RuntimeError("no /rank reply with a ranking button to press")
            chat, message_id, data = last_rank
            op = {"op": "press_button", "chat_id": chat, "user_id": op["press_rank"], "message_id": message_id}
            op["data"] = data
        seq = api(url, "/_emulator/calls?method=-")["next"]
        api(url, "/_emulator/world", op)
        injected = time.monotonic()
        deadline = injected + 60
        reply = None
        while reply is None:
            calls, _ = broadcast.calls_since(url, seq, step.method)
            reply = next((c for c in calls if step.chat_id is None or c["params"].get("chat_id") == step.chat_id), None)
            if reply is None:
                if bot.poll() is not None:
                    raise RuntimeError(f"bot exited with {bot.returncode}; log tail:\n{log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{step.name}: no {step.method} in 60s; log tail:\n{log.read_text()[-2000:]}")
                time.sleep(0.01)
        if step.name.startswith("/rank") and rank_button(reply):
            last_rank = (reply["params"]["chat_id"], reply["response"]["result"]["message_id"], rank_button(reply))
        done.append({"step": step.name, "seconds": round(reply["at"] - injected, 3), "status": reply["status"]})
        wait_until(url, settled(0.3), bot, log, f"quiet after {step.name}", 60)
    return done


def wait_for_log(log: Path, text: str, bot, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if bot.poll() is not None:
            raise RuntimeError(f"bot exited with {bot.returncode}; log tail:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} in the bot's log within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic()


def measure_echo(url: str, tmp: Path, opts: argparse.Namespace) -> tuple[float, float]:
    """The floor on this stack: ``bench.echo_bot`` (aiogram, aiohttp, pydantic; no database, no handlers of
    ours), timed and read the same way."""
    args, env = bot_command("baseline", tmp, url, opts)
    log = tmp / "echo.log"
    seq = api(url, "/_emulator/calls?method=-")["next"]
    api(url, "/_emulator/world", WAKE_UP)
    spawned = time.monotonic()
    echo = broadcast.spawn(args, {**broadcast.bot_base_env(), **env}, log)
    try:
        polling = first_call(url, seq, "getUpdates", echo, log, 120)
        wait_until(url, settled(1.0), echo, log, "quiet after the echo bot's start", 60)
        time.sleep(opts.idle)
        rss = proc_status(echo.pid, "VmRSS") / 1024
    finally:
        halt(echo)
    return round(polling["at"] - spawned, 3), round(rss, 1)


def start_our_bot(url: str, db_path: Path, log: Path, opts: argparse.Namespace):
    """As ``bench.scheduler.start_bot`` (a clean environment, ``bench.broadcast.bot_env``), plus any
    ``--bot-env`` of an experiment."""
    if not opts.bot_env:
        return start_bot(url, db_path, log, opts)
    options = argparse.Namespace(global_rate=None, log_level=opts.log_level)
    env = {**broadcast.bot_env(url, f"sqlite:///{db_path}", options), **dict(opts.bot_env)}
    return broadcast.spawn(["-m", "bot"], env, log)


def measure(round_no: int, template: Path, world: World, tmp: Path, opts: argparse.Namespace) -> Round:
    loadavg = os.getloadavg()[0]
    run_db = tmp / "run.db"
    for stale in tmp.glob("run.db*"):
        stale.unlink()
    copy_database(template, run_db)  # every round from the same state
    active = world.biggest(3)
    emulator, url = start_emulator(tmp)
    bot = None
    log = tmp / f"bot-{round_no}.log"
    try:
        api(url, "/_emulator/world", world_ops(world, active))
        echo = measure_echo(url, tmp, opts)
        seq = api(url, "/_emulator/calls?method=-")["next"]
        api(url, "/_emulator/world", WAKE_UP)
        spawned = time.monotonic()
        bot = start_our_bot(url, run_db, log, opts)
        polling = first_call(url, seq, "getUpdates", bot, log, 120)
        webhook = first_call(url, seq, "deleteWebhook", bot, log, 1)
        get_me = first_call(url, seq, "getMe", bot, log, 1)
        housekept = wait_for_log(log, HOUSEKEEPING_DONE, bot, 300)
        wait_until(url, settled(1.0), bot, log, "quiet after the start", 60)
        time.sleep(opts.idle)
        idle = memory(bot.pid)
        cpu0 = cpu_seconds(bot.pid)
        steps = run_steps(url, activity(world, active), bot, log)
        wait_until(url, settled(1.0), bot, log, "quiet after the activity", 60)
        active_memory = memory(bot.pid)
        cpu1 = cpu_seconds(bot.pid)
    finally:
        if bot is not None:
            halt(bot)
        halt(emulator)
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if " ERROR " in line or line.startswith("Traceback")]
    warnings = [line for line in lines if " WARNING " in line and "Received SIGTERM" not in line]  # our stop
    for line in [*errors, *warnings][:5]:
        print(f"  bot log: {line[:200]}", file=sys.stderr)
    return Round(
        round=round_no,
        loadavg=round(loadavg, 2),
        echo_spawn_to_polling=echo[0],
        echo_rss_mb=echo[1],
        spawn_to_get_me=round(get_me["at"] - spawned, 3),
        spawn_to_polling=round(polling["at"] - spawned, 3),
        webhook_to_polling=round(polling["at"] - webhook["at"], 3),
        polling_to_housekeeping=round(housekept - polling["at"], 2),
        startup_cpu_seconds=round(cpu0, 2),
        idle_rss_mb=round(idle[0], 1),
        idle_anon_mb=round(idle[1], 1),
        idle_hwm_mb=round(idle[2], 1),
        active_rss_mb=round(active_memory[0], 1),
        active_anon_mb=round(active_memory[1], 1),
        active_hwm_mb=round(active_memory[2], 1),
        activity_cpu_seconds=round(cpu1 - cpu0, 2),
        log_warnings=len(warnings),
        log_errors=len(errors),
        steps=steps,
    )


# ------------------------------------------------------------------------------------------- imports

IMPORTED_BEFORE_POLLING = "import bot.__main__, storage.db, storage.migrate, bot.app"


def import_costs(top: int) -> dict:
    """``python -X importtime`` of what ``python -m bot`` imports before it polls (the second of two runs,
    so that the bytecode is cached), and wall times of a bare interpreter and of those imports (median of 3)."""
    env = broadcast.bot_base_env()
    command = [sys.executable, "-X", "importtime", "-c", IMPORTED_BEFORE_POLLING]
    for _ in range(2):
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            rows.append((int(found[1]), int(found[2]), len(found[3]), found[4]))
    by_package: Counter = Counter()
    for self_us, _, _, name in rows:
        by_package[name.split(".")[0]] += self_us

    def wall(code: str) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
            times.append(time.perf_counter() - started)
        return round(statistics.median(times), 3)

    return {
        "code": IMPORTED_BEFORE_POLLING,
        "modules": len(rows),
        "total_self_seconds": round(sum(r[0] for r in rows) / 1e6, 3),
        "top_cumulative": [
            {"module": name, "cumulative_ms": round(cum / 1000, 1), "self_ms": round(own / 1000, 1), "depth": depth}
            for own, cum, depth, name in sorted(rows, key=lambda r: -r[1])[:top]
        ],
        "self_by_package_ms": {name: round(us / 1000, 1) for name, us in by_package.most_common(top)},
        "wall_bare_interpreter_seconds": wall("pass"),
        "wall_imports_seconds": wall(IMPORTED_BEFORE_POLLING),
    }


def print_imports(costs: dict) -> None:
    print(f'Imports before polling (`python -X importtime -c "{costs["code"]}"`, {costs["modules"]} modules):')
    print(
        f"  wall: bare interpreter {costs['wall_bare_interpreter_seconds']:.2f}s, with these imports "
        f"{costs['wall_imports_seconds']:.2f}s (medians of 3); importtime's self times add up to "
        f"{costs['total_self_seconds']:.2f}s"
    )
    print(f"  {'cumulative':>10} {'self':>8}  module (top {len(costs['top_cumulative'])} by cumulative time)")
    for row in costs["top_cumulative"]:
        print(f"  {row['cumulative_ms']:>8.0f}ms {row['self_ms']:>6.0f}ms  {'  ' * row['depth']}{row['module']}")
    print(
        "  self time by top-level package: "
        + ", ".join(f"{k} {v:.0f}ms" for k, v in costs["self_by_package_ms"].items())
    )
    print(flush=True)


# ------------------------------------------------------------------------------------------- main


def median(runs: list[Round], name: str) -> float:
    return statistics.median(getattr(run, name) for run in runs)


def print_rounds(runs: list[Round]) -> dict:
    head = (
        f"{'round':>5} {'spawn→getMe':>11} {'spawn→poll':>10} {'webhook→poll':>12} {'→housekeep':>10} "
        f"{'start CPU':>9} {'idle RSS':>8} {'anon':>6} {'HWM':>6} {'act RSS':>7} {'anon':>6} {'HWM':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        print(
            f"{r.round:>5} {r.spawn_to_get_me:>10.2f}s {r.spawn_to_polling:>9.2f}s {r.webhook_to_polling:>11.3f}s "
            f"{r.polling_to_housekeeping:>9.1f}s {r.startup_cpu_seconds:>8.1f}s {r.idle_rss_mb:>8.0f} "
            f"{r.idle_anon_mb:>6.0f} {r.idle_hwm_mb:>6.0f} {r.active_rss_mb:>7.0f} {r.active_anon_mb:>6.0f} "
            f"{r.active_hwm_mb:>6.0f}"
        )
    print("(MB: VmRSS, RssAnon, VmHWM after the idle wait and after the activity)")
    print(
        "reference, bench/echo_bot.py (bare aiogram, no database): spawn → first getUpdates "
        + ", ".join(f"{r.echo_spawn_to_polling:.2f}s" for r in runs)
        + "; VmRSS idle "
        + ", ".join(f"{r.echo_rss_mb:.0f} MB" for r in runs)
        + "; load average at the rounds' start "
        + ", ".join(f"{r.loadavg:.2f}" for r in runs)
    )
    names = [step["step"] for step in runs[0].steps]
    print("\nactivity, seconds from injection to the reply (median over rounds):")
    for k, name in enumerate(names):
        print(f"  {statistics.median(r.steps[k]['seconds'] for r in runs):>6.3f}s  {name}")
    skip = ("round", "loadavg", "steps", "log_warnings", "log_errors")
    medians = {name: round(median(runs, name), 3) for name in Round.__dataclass_fields__ if name not in skip}
    failed = sum(step["status"] != 200 for r in runs for step in r.steps)
    print(
        f"\nreplies with a status other than 200: {failed}; the bot's log: "
        f"{sum(r.log_errors for r in runs)} errors, {sum(r.log_warnings for r in runs)} warnings"
    )
    rss_met = medians["active_hwm_mb"] < TARGET_RSS_MB
    start_met = medians["spawn_to_polling"] < TARGET_START_SECONDS
    print(
        f"\nmemory: median VmRSS idle {medians['idle_rss_mb']:.0f} MB, "
        f"after activity {medians['active_rss_mb']:.0f} MB, "
        f"peak (VmHWM) {medians['active_hwm_mb']:.0f} MB → target < {TARGET_RSS_MB:.0f} MB: "
        f"{'met' if rss_met else 'MISSED'} (the bare aiogram echo bot idles at {medians['echo_rss_mb']:.0f} MB)"
    )
    print(
        f"start-up: median spawn → first getUpdates {medians['spawn_to_polling']:.2f}s (spawn → getMe "
        f"{medians['spawn_to_get_me']:.2f}s, deleteWebhook → first getUpdates {medians['webhook_to_polling']:.3f}s) "
        f"→ target < {TARGET_START_SECONDS:g} s: {'met' if start_met else 'MISSED'} "
        f"(the echo bot polls {medians['echo_spawn_to_polling']:.2f}s after its spawn)"
    )
    return {"medians": medians, "rss_target_met": rss_met, "startup_target_met": start_met}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.size", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3, help="bot starts, each on a fresh copy (default 3)")
    ap.add_argument("--groups", type=int, default=1000, help="supergroups (default 1000)")
    ap.add_argument("--members", type=int, default=10_000, help="members, one home group each (default 10000)")
    ap.add_argument("--processed-updates", type=int, default=30_000, help="update ids of the last 2 days kept")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idling before the first reading (default 5)")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--db", metavar="FILE", help="build the world into FILE and keep it (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="with --db: reuse FILE if it was built before")
    ap.add_argument("--log-level", default="INFO", help="the bot's LOG_LEVEL (default INFO, as deployed)")
    ap.add_argument(
        "--bot-env",
        action="append",
        default=[],
        type=lambda text: tuple(text.split("=", 1)) if "=" in text else ap.error(f"--bot-env {text}: KEY=VALUE"),
        metavar="KEY=VALUE",
        help="experiment: also set this in the bot's environment (repeatable), e.g. MALLOC_ARENA_MAX=2",
    )
    ap.add_argument("--top", type=int, default=15, help="import costs listed (default 15)")
    args = ap.parse_args(argv)
    if min(args.rounds, args.groups, args.members) < 1 or (args.reuse and not args.db):
        ap.error("counts must be at least 1; --reuse needs --db")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too

    print(
        f"Size bench: {args.groups} groups, {args.members} members, a year of records; {args.rounds} round(s). "
        f"Targets: RSS < {TARGET_RSS_MB:.0f} MB, start-up < {TARGET_START_SECONDS:g} s."
    )
    load_start = os.getloadavg()
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}; LOG_LEVEL={args.log_level}.\n",
        flush=True,
    )
    runs: list[Round] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-size-") as tmpdir:
            tmp = Path(tmpdir)
            template, world = load_or_build(args, tmp)
            print_world(world)
            costs = import_costs(args.top)
            print_imports(costs)
            for round_no in range(1, args.rounds + 1):
                runs.append(measure(round_no, template, world, tmp, args))
                r = runs[-1]
                print(
                    f"  round {round_no}: spawn → polling {r.spawn_to_polling:.2f}s, deleteWebhook → polling "
                    f"{r.webhook_to_polling:.3f}s; RSS idle {r.idle_rss_mb:.0f} MB, after activity "
                    f"{r.active_rss_mb:.0f} MB, peak {r.active_hwm_mb:.0f} MB; load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for proc in list(broadcast._procs):
            halt(proc)

    print()
    summary = print_rounds(runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "config": {
            **vars(args),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_at_start": load_start,
            "loadavg_at_end": os.getloadavg(),
        },
        "world": {
            **{k: v for k, v in asdict(world).items() if k not in ("groups", "sizes", "committee")},
            "groups": len(world.groups),
            "members": sum(world.sizes),
            "biggest_groups": sorted(world.sizes, reverse=True)[:5],
            "median_group": statistics.median(world.sizes),
        },
        "imports": costs,
        "runs": [asdict(r) for r in runs],
        **summary,
        "target_rss_mb": TARGET_RSS_MB,
        "target_startup_seconds": TARGET_START_SECONDS,
    }
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
