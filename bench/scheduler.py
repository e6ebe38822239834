"""Recurring announcements: how long the schedule timer takes to load, and how late a firing goes out.

Run from the repository root: ``uv run python -m bench.scheduler [--schedules 5000] [--lag-schedules 300]``.

Two figures, each compared within the same run:

1. **Start-up with many active schedules.** A SQLite database made by the bot's own migrations is filled
   directly with ``--groups`` active supergroups and ``--schedules`` active daily announcements spread over
   them, all due in 1-25 hours (so nothing fires while we measure). (a) In-process: ``bot.scheduler.Scheduler``
   is built on that database and ``await scheduler.start()`` (load every active ``next_run_at``, add one
   APScheduler date job each, fire what is due) is timed until the event loop is idle again, ``--reps`` times,
   logging as the bot does; target: under 2 s. (b) End to end: ``python -m bot`` is started against the Bot API
   emulator, once on a copy of that database and once on a copy with the schedules deleted, taking turns
   ``--starts`` times, and timed from the spawn to its first ``getUpdates``, and from its ``deleteWebhook``
   (sent just before the workers and the timer start) to that ``getUpdates``. The differences of the medians
   are what the schedules add to a start.
2. **Firing lag.** A fresh database and emulator (no limit enforcement; the bot keeps its shipped outbound
   limits, 28 msg/s overall and 20/min per group) with ``--lag-schedules`` schedules in as many groups, due one
   after another over ``--lag-window`` seconds, starting ``--lead`` seconds after seeding. The bot is started at
   once; the lag of each schedule is the emulator's time of its ``sendMessage`` (``at``, CLOCK_MONOTONIC, the
   clock this driver reads too) minus its due time; target: p99 under 1 s. Every schedule must be sent exactly
   once, also after a few more quiet seconds, else the exit code is 1.

Missing a target is reported but does not change the exit code. The figures are written to
``bench/results/scheduler.json`` (ignored by git). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench import broadcast
from bench.broadcast import SUPERUSER, TOKEN, bot_env, calls_since, group_ids, halt, prepare_database, spawn
from bench.throughput import api, cpu_seconds, settled, wait_until
from bot.config import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "scheduler.json"
TARGET_LOAD_SECONDS = 2.0
TARGET_P99_SECONDS = 1.0
# The bot's own defaults (it runs with none of its settings in the environment): the schedules' times of day
# are read in this zone, and the in-process Scheduler gets the same defaults.
ZONE_NAME = Settings.model_fields["timezone"].default
LANGUAGE = Settings.model_fields["default_language"].default
ZONE = ZoneInfo(ZONE_NAME)
LIMITS = {name: Settings.model_fields[name].default for name in broadcast.LIMIT_SETTINGS}
TEXT_MARK = re.compile(r"bench (\d+)\b")  # the announcement's text is "bench <i>"
# One private message pending before each start, so that the bot's first getUpdates returns at once: the
# emulator records a call when it has answered it, and an empty long poll would answer only after 10 s.
WAKE_UP = {"op": "send_message", "chat_id": SUPERUSER, "user_id": SUPERUSER, "text": "你好"}


# ------------------------------------------------------------------------------------------- set-up


def daily_rule(hhmm: str, cache: dict[str, object]):
    """The stored form of "every day HH:MM": parsed by the bot's own rule parser, kept as its canonical
    phrase, and checked to read back the same (``rule_of`` is how the bot reads stored rules)."""
    if hhmm not in cache:
        from bot.services import timephrase
        from bot.services.schedules import rule_of

        now = datetime.now(UTC)
        for phrase in (f"every day {hhmm}", f"每天 {hhmm}"):
            try:
                rule = timephrase.parse(phrase, now=now, zone=ZONE)
                break
            except Exception as error:  # the parser's own error type; try the Chinese phrase next
                failure = error
        else:
            raise RuntimeError(f"the rule parser takes neither 'every day {hhmm}' nor '每天 {hhmm}': {failure}")
        stored = rule_of(rule.canonical())
        if stored.next_after(now, ZONE) != rule.next_after(now, ZONE):
            raise RuntimeError(f"rule {rule.canonical()!r} does not read back the same")
        cache[hhmm] = stored
    return cache[hhmm]


def add_schedules(db_url: str, rows: list[tuple[int, str, str, datetime]]) -> list[int]:
    """Active announcements as ``/schedule`` would leave them once confirmed: (chat pk, canonical rule,
    text, next_run_at). ``quiet_ok``: the post goes out at once whatever the hour, so that the figures do
    not depend on whether the bench runs inside the default quiet hours (22:00-07:00)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from storage.models import Schedule

    engine = create_engine(db_url)
    with Session(engine) as session, session.begin():
        schedules = [
            Schedule(
                chat_id=chat_pk,
                kind="announcement",
                rule=rule,
                text=text,
                with_ack=False,
                quiet_ok=True,
                status="active",
                next_run_at=next_run,
                created_by=SUPERUSER,
            )
            for chat_pk, rule, text, next_run in rows
        ]
        session.add_all(schedules)
        session.flush()
        ids = [schedule.id for schedule in schedules]
    engine.dispose()
    return ids


def chat_pks(db_url: str) -> dict[int, int]:
    """Telegram chat id → chats.id, for the groups ``prepare_database`` wrote."""
    with closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn:
        return dict(conn.execute("SELECT telegram_id, id FROM chats"))


def prepare_startup_db(path: Path, groups: int, schedules: int) -> int:
    """``groups`` bound supergroups and ``schedules`` daily announcements spread over them and over the day;
    each next run is the rule's first one at least an hour from now. Returns how many are active."""
    db_url = f"sqlite:///{path}"
    prepare_database(db_url, group_ids(groups), path.with_suffix(".migrate.log"))
    pks = sorted(chat_pks(db_url).values())
    start = datetime.now(UTC) + timedelta(hours=1)
    rules: dict[str, object] = {}
    rows = []
    for i in range(schedules):
        minute = i * 1440 // schedules  # spread over the day: a few schedules per minute at most
        rule = daily_rule(f"{minute // 60:02d}:{minute % 60:02d}", rules)
        rows.append((pks[i % len(pks)], rule.canonical(), f"bench {i}", rule.next_after(start, ZONE)))
    add_schedules(db_url, rows)
    return len(rows)


def copy_database(source: Path, target: Path, *, drop_schedules: bool = False) -> None:
    """A consistent copy (SQLite's backup API, WAL included), optionally without any schedule."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        if drop_schedules:
            dst.execute("DELETE FROM schedules")
            dst.commit()
            dst.execute("VACUUM")


def start_emulator(tmp: Path) -> tuple[subprocess.Popen, str]:
    """The emulator WITHOUT limit enforcement (the due rate stays well below Telegram's limits)."""
    log = tmp / "emulator.log"
    proc = spawn(["-m", "tests.emulator", "--port", "0", "--token", TOKEN], dict(os.environ), log, subprocess.PIPE)
    line = proc.stdout.readline().strip()
    if not line.startswith("EMULATOR_URL="):
        raise RuntimeError(f"emulator did not start: {line!r} {log.read_text()[-2000:]}")
    return proc, line.split("=", 1)[1]


def start_bot(url: str, db_path: Path, log: Path, opts: argparse.Namespace) -> subprocess.Popen:
    # broadcast.bot_env: none of the bot's settings from the shell or .env, the shipped outbound limits.
    env = bot_env(url, f"sqlite:///{db_path}", argparse.Namespace(global_rate=None, log_level=opts.log_level))
    return spawn(["-m", "bot"], env, log)


def first_call(url: str, seq: int, method: str, bot: subprocess.Popen, log: Path, timeout: float) -> dict:
    """The first ``method`` call recorded from ``seq`` on (waiting for it)."""
    deadline = time.monotonic() + timeout
    while True:
        calls, _ = calls_since(url, seq, method)
        if calls:
            return calls[0]
        if bot.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"bot exited with {bot.returncode}; log tail:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {method} within {timeout:.0f}s; bot log tail:\n{log.read_text()[-2000:]}")
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------- 1a: in-process load


async def loop_idle() -> None:
    """Return once every callback already queued on the loop has run (they run in order)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


async def load_once(db_url: str) -> tuple[float, float, int]:
    """``start()`` until it returns, and until the loop is idle again: each ``add_job`` on a running
    APScheduler 3 ``AsyncIOScheduler`` queues a ``wakeup`` (``call_soon_threadsafe``), and the ones still queued
    when ``start()`` returns hold up whatever the loop does next (in the bot: polling)."""
    from bot.scheduler import Scheduler
    from bot.services.clock import SystemClock
    from storage.db import Database

    db = Database(db_url)
    scheduler = Scheduler(db, SystemClock(), default_language=LANGUAGE, default_timezone=ZONE_NAME, timer=True)
    try:
        started = time.perf_counter()
        await scheduler.start()
        returned = time.perf_counter() - started
        await loop_idle()
        idle = time.perf_counter() - started
        jobs = scheduler.job_count
    finally:
        await scheduler.stop()
        await loop_idle()  # the shutdown is queued too
        await db.dispose()
    return returned, idle, jobs


async def timetable_query(db_url: str) -> float:
    """The database read alone (what ``resync`` loads), for where the time goes."""
    from bot.services import schedules as schedule_service
    from storage.db import Database

    db = Database(db_url)
    try:
        started = time.perf_counter()
        async with db.transaction(read_only=True) as session:
            await schedule_service.timetable(session)
        return time.perf_counter() - started
    finally:
        await db.dispose()


@dataclass
class Load:
    schedules: int
    reps: int
    seconds: list[float]  # start() called → loop idle again (the figure for the target)
    returned_seconds: list[float]  # start() called → start() returned
    jobs: list[int]
    timetable_query_seconds: float
    median: float = 0.0
    max: float = 0.0

    def __post_init__(self) -> None:
        self.median = round(statistics.median(self.seconds), 4)
        self.max = round(max(self.seconds), 4)

    @property
    def correct(self) -> bool:
        return all(jobs == self.schedules for jobs in self.jobs)


def measure_load(db_path: Path, schedules: int, reps: int, log_level: str) -> Load:
    """In this process, logging as the bot does (``LOG_LEVEL``, its format), to a file: at INFO, APScheduler
    logs one 'Added job' line per job, which is part of what a start costs."""
    db_url = f"sqlite:///{db_path}"
    handler = logging.FileHandler(db_path.with_suffix(".inprocess.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(log_level.upper())

    async def run() -> Load:
        results = [await load_once(db_url) for _ in range(reps)]
        query = min([await timetable_query(db_url) for _ in range(3)])
        return Load(
            schedules=schedules,
            reps=reps,
            seconds=[round(idle, 4) for _, idle, _ in results],
            returned_seconds=[round(returned, 4) for returned, _, _ in results],
            jobs=[jobs for _, _, jobs in results],
            timetable_query_seconds=round(query, 4),
        )

    try:
        return asyncio.run(run())
    finally:
        root.removeHandler(handler)
        handler.close()


# ------------------------------------------------------------------------------------------- 1b: end to end


@dataclass
class Start:
    round: int
    database: str  # "no schedules" | "N schedules"
    spawn_to_polling: float  # spawn → first getUpdates reached the emulator
    webhook_to_polling: float  # deleteWebhook → first getUpdates: start_workers (outbox, timer) and polling set-up


def time_start(url: str, db_path: Path, label: str, round_no: int, tmp: Path, opts: argparse.Namespace) -> Start:
    log = tmp / f"bot-start-{round_no}-{label.split()[0]}.log"
    seq = api(url, "/_emulator/calls?method=-")["next"]
    api(url, "/_emulator/world", WAKE_UP)
    spawned = time.monotonic()
    bot = start_bot(url, db_path, log, opts)
    try:
        polling = first_call(url, seq, "getUpdates", bot, log, 120)
        webhook = first_call(url, seq, "deleteWebhook", bot, log, 1)
        wait_until(url, settled(0.3), bot, log, "quiet after the start", 30)  # the wake-up message answered
    finally:
        halt(bot)
    return Start(
        round=round_no,
        database=label,
        spawn_to_polling=round(polling["at"] - spawned, 3),
        webhook_to_polling=round(polling["at"] - webhook["at"], 3),
    )


def measure_starts(template: Path, schedules: int, tmp: Path, opts: argparse.Namespace) -> list[Start]:
    empty = tmp / "startup-empty.db"
    copy_database(template, empty, drop_schedules=True)
    databases = {"no schedules": empty, f"{schedules} schedules": template}
    emulator, url = start_emulator(tmp)
    starts = []
    try:
        api(url, "/_emulator/world", broadcast.world_setup([])[:2])  # the superuser, who sends the wake-up
        for round_no in range(1, opts.starts + 1):
            for label, source in databases.items():
                run_db = tmp / "startup-run.db"
                for stale in tmp.glob("startup-run.db*"):
                    stale.unlink()
                copy_database(source, run_db)  # every start from the same state
                starts.append(time_start(url, run_db, label, round_no, tmp, opts))
                s = starts[-1]
                print(
                    f"  start {round_no} {label:<15} spawn → polling {s.spawn_to_polling:6.2f}s, "
                    f"deleteWebhook → polling {s.webhook_to_polling:6.3f}s",
                    flush=True,
                )
    finally:
        halt(emulator)
    return starts


# ------------------------------------------------------------------------------------------- 2: firing lag


@dataclass
class Lag:
    schedules: int
    window_seconds: float
    lead_seconds: float
    polling_before_first_due: float  # seconds; negative: the bot was not polling yet
    bot_startup_seconds: float  # spawn → first getUpdates
    sent: int
    exactly_once: int
    missing: int
    duplicated: int
    duplicates_after_wait: int  # extra copies that came in the quiet seconds after the last one
    failed_requests: int
    p50: float
    p95: float
    p99: float
    max: float
    min: float
    mean: float
    bot_cpu_percent: float  # during the due window
    outbox: dict[str, int] = field(default_factory=dict)
    moved_to_next_day: int = 0
    lags: list[float] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.exactly_once == self.schedules


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def is_announcement(call: dict) -> bool:
    chat = call["params"].get("chat_id")
    return (
        call["method"] == "sendMessage"
        and isinstance(chat, int)
        and chat < 0
        and TEXT_MARK.search(str(call["params"].get("text", ""))) is not None
    )


def schedule_of(call: dict) -> int:
    return int(TEXT_MARK.search(call["params"]["text"]).group(1))


def delivered(calls: list[dict], groups: list[int]) -> Counter:
    """Successful posts per schedule; a post counts for schedule i only in its own group."""
    return Counter(
        schedule_of(c)
        for c in calls
        if is_announcement(c) and c["status"] == 200 and c["params"]["chat_id"] == groups[schedule_of(c)]
    )


def measure_lag(tmp: Path, lead: float, opts: argparse.Namespace) -> Lag:
    n, window = opts.lag_schedules, opts.lag_window
    groups = group_ids(n)
    db_path = tmp / "lag.db"
    db_url = f"sqlite:///{db_path}"
    prepare_database(db_url, groups, tmp / "lag-migrate.log")
    pks = chat_pks(db_url)
    emulator, url = start_emulator(tmp)
    bot = None
    log = tmp / "bot-lag.log"
    try:
        api(url, "/_emulator/world", broadcast.world_setup(groups))  # the groups, with the bot as admin
        api(url, "/_emulator/world", WAKE_UP)
        seq0 = api(url, "/_emulator/calls?method=-")["next"]

        # Due times: T0 + lead + i · window / n, each "every day HH:MM" with HH:MM the due minute (in the
        # group's zone) rounded down, so that the rule's next run after the due time is the next day.
        offset = time.time() - time.monotonic()  # wall clock → CLOCK_MONOTONIC, which the emulator stamps
        t0 = datetime.now(UTC)
        rules: dict[str, object] = {}
        dues, rows = [], []
        for i, chat in enumerate(groups):
            due = t0 + timedelta(seconds=lead + i * window / n)
            due = due.replace(microsecond=due.microsecond // 1000 * 1000)
            rule = daily_rule(due.astimezone(ZONE).strftime("%H:%M"), rules)
            if rule.next_after(due, ZONE) - due < timedelta(hours=12):
                raise RuntimeError(f"{rule.canonical()!r} runs again soon after {due}: it would fire twice")
            dues.append(due)
            rows.append((pks[chat], rule.canonical(), f"bench {i}", due))
        add_schedules(db_url, rows)
        due_mono = [due.timestamp() - offset for due in dues]

        spawned = time.monotonic()
        bot = start_bot(url, db_path, log, opts)
        polling = first_call(url, seq0, "getUpdates", bot, log, lead + 60)
        print(
            f"  bot polling {polling['at'] - spawned:.2f}s after spawn, "
            f"{due_mono[0] - polling['at']:.2f}s before the first due time",
            flush=True,
        )

        # Wait for every schedule's first post request, then for more quiet seconds. Nothing is due before
        # due_mono[0]; the calls are read from seq0 on, so an early post would still be seen (as a negative lag).
        time.sleep(max(0.0, due_mono[0] - time.monotonic()))
        cpu0 = time.monotonic(), cpu_seconds(bot.pid) if bot.poll() is None else 0.0
        first: dict[int, float] = {}
        seq = seq0
        deadline = due_mono[-1] + 60
        while len(first) < n and time.monotonic() < deadline and bot.poll() is None:
            calls, seq = calls_since(url, seq, "sendMessage")
            for call in calls:
                if is_announcement(call):
                    first.setdefault(schedule_of(call), call["at"])
            time.sleep(0.05)
        cpu_percent = 0.0
        if bot.poll() is None:
            cpu_percent = 100 * (cpu_seconds(bot.pid) - cpu0[1]) / max(time.monotonic() - cpu0[0], 1e-9)
        seen_at_end = calls_since(url, seq0, "sendMessage")[0]
        if bot.poll() is None:
            time.sleep(opts.after)
            wait_until(url, settled(1.0), bot, log, "quiet after the last post", 30)
        calls = calls_since(url, seq0, "sendMessage")[0]
    finally:
        if bot is not None:
            halt(bot)
        halt(emulator)
    if len(first) < n:
        print(
            f"  only {len(first)}/{n} schedules were posted; bot log tail:\n{log.read_text(errors='replace')[-3000:]}",
            file=sys.stderr,
        )
    return summarise_lag(
        n,
        window,
        lead,
        due_mono,
        polling["at"] - spawned,
        polling["at"],
        first,
        seen_at_end,
        calls,
        cpu_percent,
        db_path,
        dues,
    )


def summarise_lag(
    n: int,
    window: float,
    lead: float,
    due_mono: list[float],
    startup: float,
    polling_at: float,
    first: dict[int, float],
    seen_at_end: list[dict],
    calls: list[dict],
    cpu_percent: float,
    db_path: Path,
    dues: list[datetime],
) -> Lag:
    groups = group_ids(n)
    posts = [c for c in calls if is_announcement(c)]
    ok = delivered(calls, groups)
    before = delivered(seen_at_end, groups)
    per_schedule = [ok.get(i, 0) for i in range(n)]
    lags = [first[i] - due_mono[i] for i in sorted(first)]
    with closing(sqlite3.connect(db_path)) as conn:
        outbox = dict(conn.execute("SELECT status, count(*) FROM outbox WHERE kind = 'announcement' GROUP BY status"))
        next_runs = [row[0] for row in conn.execute("SELECT next_run_at FROM schedules ORDER BY id")]
    last_due = max(dues).replace(tzinfo=None)
    moved = sum(1 for value in next_runs if value and datetime.fromisoformat(value) > last_due + timedelta(hours=12))
    return Lag(
        schedules=n,
        window_seconds=window,
        lead_seconds=round(lead, 2),
        polling_before_first_due=round(due_mono[0] - polling_at, 3),
        bot_startup_seconds=round(startup, 3),
        sent=len(first),
        exactly_once=sum(k == 1 for k in per_schedule),
        missing=sum(k == 0 for k in per_schedule),
        duplicated=sum(k > 1 for k in per_schedule),
        duplicates_after_wait=sum(max(0, ok[i] - before.get(i, 0)) for i in ok),
        failed_requests=sum(c["status"] != 200 for c in posts),
        p50=round(percentile(lags, 50), 4) if lags else math.nan,
        p95=round(percentile(lags, 95), 4) if lags else math.nan,
        p99=round(percentile(lags, 99), 4) if lags else math.nan,
        max=round(max(lags), 4) if lags else math.nan,
        min=round(min(lags), 4) if lags else math.nan,
        mean=round(statistics.fmean(lags), 4) if lags else math.nan,
        bot_cpu_percent=round(cpu_percent),
        outbox=outbox,
        moved_to_next_day=moved,
        lags=[round(x, 4) for x in lags],
    )


# ------------------------------------------------------------------------------------------- main


def report_startup(load: Load, starts: list[Start], schedules: int) -> dict:
    print(f"1. Start-up with {schedules} active schedules")
    print(
        f"   (a) in-process Scheduler.start() until the loop is idle, logging as the bot, {load.reps} times: "
        + ", ".join(f"{s:.3f}" for s in load.seconds)
        + f" s; jobs {sorted(set(load.jobs))}"
    )
    print(
        f"       median {load.median:.3f}s, max {load.max:.3f}s → target < {TARGET_LOAD_SECONDS:g} s: "
        f"{'met' if load.max < TARGET_LOAD_SECONDS else 'MISSED'}"
    )
    returned = statistics.median(load.returned_seconds)
    print(
        f"       start() returned after {returned:.3f}s and the loop was idle {load.median - returned:.3f}s later "
        f"(medians); the timetable query alone takes {load.timetable_query_seconds * 1000:.0f} ms"
    )
    labels = list(dict.fromkeys(s.database for s in starts))
    medians = {
        label: (
            statistics.median(s.spawn_to_polling for s in starts if s.database == label),
            statistics.median(s.webhook_to_polling for s in starts if s.database == label),
        )
        for label in labels
    }
    print(f"   (b) python -m bot, spawn → first getUpdates, {len(starts) // len(labels)} starts each (medians):")
    head = f"       {'database':<16} {'spawn → polling':>16} {'deleteWebhook → polling':>24}"
    print(head)
    print("       " + "-" * (len(head) - 7))
    for label, (spawn_s, webhook_s) in medians.items():
        print(f"       {label:<16} {spawn_s:>15.2f}s {webhook_s:>23.3f}s")
    base, full = medians[labels[0]], medians[labels[-1]]
    diff = (full[0] - base[0], full[1] - base[1])
    print(f"       {'difference':<16} {diff[0]:>+15.2f}s {diff[1]:>+23.3f}s   (what the schedules add to a start)")
    return {
        "medians": {label: {"spawn_to_polling": m[0], "webhook_to_polling": m[1]} for label, m in medians.items()},
        "difference_spawn_to_polling": round(diff[0], 3),
        "difference_webhook_to_polling": round(diff[1], 3),
    }


def report_lag(lag: Lag, opts: argparse.Namespace) -> None:
    rate = lag.schedules / lag.window_seconds
    print(
        f"2. Firing lag: {lag.schedules} schedules in {lag.schedules} groups, due over {lag.window_seconds:g}s "
        f"({rate:.0f}/s; the bot's shipped limits {LIMITS['global_messages_per_second']:g}/s overall, "
        f"{LIMITS['group_messages_per_minute']}/min per group)"
    )
    head = f"   {'count':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'min':>7}"
    head += f" {'once':>5} {'missing':>7} {'dup':>4}"
    print(head)
    print("   " + "-" * (len(head) - 3))
    print(
        f"   {lag.sent:>5} {lag.p50:>6.3f}s {lag.p95:>6.3f}s {lag.p99:>6.3f}s {lag.max:>6.3f}s {lag.min:>6.3f}s "
        f"{lag.exactly_once:>5} {lag.missing:>7} {lag.duplicated:>4}"
    )
    print(
        f"   bot polling {lag.polling_before_first_due:.2f}s before the first due time (start-up "
        f"{lag.bot_startup_seconds:.2f}s, lead {lag.lead_seconds:g}s); bot CPU {lag.bot_cpu_percent}% while firing; "
        f"{lag.failed_requests} failed requests; outbox {lag.outbox}; {lag.moved_to_next_day}/{lag.schedules} "
        f"schedules moved to the next day"
    )
    print(
        f"   no duplicates in the {opts.after:g}s (+ 1 s quiet) after the last post: "
        + ("yes" if lag.duplicates_after_wait == 0 else f"NO ({lag.duplicates_after_wait})")
    )
    verdict = "met" if lag.p99 < TARGET_P99_SECONDS else "MISSED"
    print(
        f"   p99 {lag.p99:.3f}s → target < {TARGET_P99_SECONDS:g} s: {verdict}; "
        f"every schedule sent exactly once: {'yes' if lag.correct else 'NO'}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.scheduler", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--groups", type=int, default=1000, help="supergroups for the start-up figure (default 1000)")
    ap.add_argument("--schedules", type=int, default=5000, help="active schedules for the start-up figure")
    ap.add_argument("--reps", type=int, default=5, help="in-process Scheduler.start() timings (default 5)")
    ap.add_argument("--starts", type=int, default=5, help="bot starts on each database, taking turns (default 5)")
    ap.add_argument("--lag-schedules", type=int, default=300, help="schedules (and groups) for the lag (default 300)")
    ap.add_argument("--lag-window", type=float, default=20.0, help="seconds over which they fall due (default 20)")
    ap.add_argument("--lead", type=float, default=8.0, help="seconds from seeding to the first due time (default 8)")
    ap.add_argument("--after", type=float, default=5.0, help="seconds to watch for duplicates afterwards (default 5)")
    ap.add_argument("--log-level", default="INFO", help="the bot's LOG_LEVEL (default INFO, as deployed)")
    args = ap.parse_args(argv)
    if min(args.groups, args.schedules, args.reps, args.starts, args.lag_schedules) < 1 or args.lag_window <= 0:
        ap.error("counts must be at least 1 and --lag-window positive")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too

    print(
        f"Scheduler bench: start-up with {args.schedules} schedules in {args.groups} groups "
        f"(target: loads in < {TARGET_LOAD_SECONDS:g} s), firing lag of {args.lag_schedules} schedules due over "
        f"{args.lag_window:g}s (target: p99 < {TARGET_P99_SECONDS:g} s)."
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}; "
        f"LOG_LEVEL={args.log_level}.\n",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmpdir:
            tmp = Path(tmpdir)
            template = tmp / "startup.db"
            seeded = prepare_startup_db(template, args.groups, args.schedules)
            print(f"seeded {args.groups} groups and {seeded} active schedules", flush=True)
            load = measure_load(template, args.schedules, args.reps, args.log_level)
            print(
                f"  in-process loads (start() → loop idle): {', '.join(f'{s:.3f}s' for s in load.seconds)}", flush=True
            )
            starts = measure_starts(template, args.schedules, tmp, args)

            # Enough time for the bot to start: the lead asked for, or more if start-ups here are slow.
            lead = max(args.lead, max(s.spawn_to_polling for s in starts) + 3)
            print(f"firing lag: lead {lead:.1f}s", flush=True)
            (tmp / "lag").mkdir()
            lag = measure_lag(tmp / "lag", lead, args)
            if lag.polling_before_first_due < 0:  # a slow start: the first firings measured the start-up
                lead = lead + 2 * lag.bot_startup_seconds
                print(f"  the bot was not polling before the first due time; again with lead {lead:.1f}s", flush=True)
                (tmp / "lag-again").mkdir()
                lag = measure_lag(tmp / "lag-again", lead, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for proc in list(broadcast._procs):
            halt(proc)

    print()
    startup = report_startup(load, starts, args.schedules)
    print()
    report_lag(lag, args)
    correct = load.correct and lag.correct and lag.duplicates_after_wait == 0
    write_results(args, load, starts, startup, lag, correct)
    return 0 if correct else 1


def write_results(
    args: argparse.Namespace, load: Load, starts: list[Start], startup: dict, lag: Lag, correct: bool
) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "config": {
            **vars(args),
            "timezone": ZONE_NAME,
            "emulator_enforce_limits": False,
            "bot_outbound_limits": LIMITS,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_at_end": os.getloadavg()[0],
        },
        "startup": {
            "in_process": {**asdict(load), "correct": load.correct},
            "target_load_seconds": TARGET_LOAD_SECONDS,
            "target_met": load.max < TARGET_LOAD_SECONDS,
            "end_to_end": [asdict(s) for s in starts],
            **startup,
        },
        "lag": {
            **asdict(lag),
            "correct": lag.correct,
            "target_p99_seconds": TARGET_P99_SECONDS,
            "target_met": lag.p99 < TARGET_P99_SECONDS,
        },
        "every_schedule_exactly_once": correct,
    }
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
