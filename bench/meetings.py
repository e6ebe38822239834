"""Meeting sign-in: many members of one meeting press "✅ 签到" within a few seconds.

Run from the repository root: ``uv run python -m bench.meetings [--members 2000] [--window 10] [--mode both]
[--bot process]``.

Each round starts from scratch: a fresh SQLite database, the Bot API emulator (``tests.emulator``, enforcing
Telegram's limits) in this process, and our bot with the shipped outbound limits and the production cap on
concurrent updates (``MAX_CONCURRENT_UPDATES``). The bot runs one of two ways (``--bot``):

* ``process`` (the default): as deployed, ``python -m bot`` in its own process, polling the emulator over
  HTTP and reading the real clock. Its log goes to a file at ``LOG_LEVEL``.
* ``inprocess``: the production factory inside this process (``tests.harness.BotHarness``), polling over HTTP
  too, but sharing this process (and its core) with the emulator and the driver. Its clock is frozen
  (``FrozenClock``) so that the meeting starts when the driver says; timers, batching and debouncing run in
  real time.

1. **World.** One supergroup with the secretary as its creator, the bot as an administrator, and
   ``--members`` members. Each member says something in the group, so that the bot has seen all of them
   (the roster rows are written and its caches are warm, as for a group the bot has been in for a while).
2. **Meeting.** The secretary sends ``/meeting 党课 | …`` and presses "✅ 发布" on the preview. In process, the
   meeting starts a day ahead on the real clock and the secretary opens sign-in early, as the committee
   does: ``/meetings``, the meeting's number "1", "▶️ 开始签到". In-process, the clock moves through the
   reminders to the start and the due schedule opens sign-in. Either way the outbox posts the sign-in
   message with its "✅ 签到 · 0" button (``mts:<meeting id>``).
3. **Sign-in (timed).** Every member presses that button once, through the emulator (``press_button``,
   the same update Telegram would send), either paced evenly over ``--window`` seconds (``paced``) or all
   at once (``burst``). A sign-in's latency runs from its press (the moment it was due to be pressed) to
   the emulator receiving the bot's ``answerCallbackQuery`` for that callback id (its ``at``, the same
   ``time.monotonic`` clock). The wall time runs from the first press to the last answer.
4. **Checks.** Exactly one ``meeting_sign_ins`` row per member and none else (read from the bot's SQLite
   file, read-only); every press answered exactly once, successfully, with the "签到成功" text. Then
   ``--again`` of the presses are delivered once more with the same update_id (as Telegram does after a
   restart): nothing is written and nothing answered; and as many members press again (new callback ids):
   each is told they signed in already and nothing is written. Finally the button shows the full count, and
   the rows are counted once more after the bot has stopped.

The exit code is 1 when a sign-in is lost or doubled, a press is not answered exactly once, or the wall time
exceeds ``--window`` × ``--slack``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.config import Settings
from bot.services.clock import FrozenClock
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

REPO = Path(__file__).resolve().parents[1]
RESULTS = {"process": REPO / "bench" / "results" / "meetings.json"}
RESULTS["inprocess"] = RESULTS["process"].with_name("meetings-inprocess.json")
GROUP = -1_001_234_567_077
SECRETARY = 2001
FIRST_MEMBER = 100_001
CREATED = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # in-process: Mon 2026-11-23 10:00 in Shanghai (the default zone)
START = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)  # in-process: Wed 2026-11-25 19:30 in Shanghai
LINE = "党课 | 学习党章第一章 | {start} | 三楼会议室"
SIGNED = "签到成功"  # meetings.signed: "✅ {time} 签到成功：{title}"
ALREADY = "无需重复"  # meetings.already_signed: "你已于 {time} 签到，无需重复。"
CONCURRENCY = Settings.model_fields["max_concurrent_updates"].default
ZONE = ZoneInfo(Settings.model_fields["timezone"].default)
# The bot's outbound limits, passed to the process with the values the code ships (as bench.broadcast does).
LIMIT_SETTINGS = ("global_messages_per_second", "group_messages_per_minute", "private_messages_per_second")
ROSTER_FLUSH_SECONDS = 0.2  # the roster middleware writes its sightings in batches this often
SETTLE_SECONDS = 1.0  # in process: after the last update was taken, for what is still in hand to finish


# ------------------------------------------------------------------------------------------- the world


def buttons(message: dict) -> dict[str, str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return {button["text"]: button.get("callback_data") or "" for row in rows for button in row}


def button_data(message: dict, starts_with: str) -> str:
    found = [data for text, data in buttons(message).items() if text.startswith(starts_with)]
    if not found:
        text = (message.get("text") or "")[:60]
        raise RuntimeError(f"no button {starts_with!r} under {text!r}: {list(buttons(message))}")
    return found[0]


def in_group(emulator: BotAPIEmulator, mark: str) -> list[dict]:
    return [m for m in emulator.sent_messages(GROUP) if mark in (m.get("text") or "")]


def last_in_group(emulator: BotAPIEmulator, mark: str) -> dict:
    found = in_group(emulator, mark)
    if not found:
        texts = [(m.get("text") or "")[:40] for m in emulator.sent_messages(GROUP)[-5:]]
        raise RuntimeError(f"no group message with {mark!r}; the last ones: {texts}")
    return found[-1]


def build_world(emulator: BotAPIEmulator, members: list[int]) -> None:
    emulator.add_user(SECRETARY, "李", "书记")
    for user_id in members:
        emulator.add_user(user_id, f"党员{user_id}")
    emulator.add_chat(GROUP, "supergroup", "第一党支部")
    emulator.set_admins(GROUP, [], creator_id=SECRETARY)


def everyone_speaks(emulator: BotAPIEmulator, members: list[int]) -> None:
    """Seen in the group: on the roster, and in the bot's roster cache, as in a group it has been in a while."""
    emulator.send_message(GROUP, SECRETARY, "大家好")
    for user_id in members:
        emulator.send_message(GROUP, user_id, "到")


def read_only(db_path: Path) -> contextlib.closing[sqlite3.Connection]:
    """The bot's SQLite file, opened read-only (it is WAL: readers do not disturb the bot's writes)."""
    return contextlib.closing(sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=10))


def sign_in_rows(db_path: Path, meeting_id: int) -> tuple[int, int, set[int]]:
    """(rows, distinct members, the members) of the meeting in ``meeting_sign_ins``."""
    with read_only(db_path) as db:
        users = [
            row[0] for row in db.execute("SELECT user_id FROM meeting_sign_ins WHERE meeting_id = ?", (meeting_id,))
        ]
    return len(users), len(set(users)), set(users)


def members_on_roster(db_path: Path, members: list[int]) -> int:
    with read_only(db_path) as db:
        [(count,)] = db.execute(
            "SELECT count(*) FROM chat_members JOIN chats ON chats.id = chat_members.chat_id "
            "WHERE chats.telegram_id = ? AND chat_members.user_id BETWEEN ? AND ?",
            (GROUP, min(members), max(members)),
        )
    return count


# ------------------------------------------------------------------------------------------- the bot, two ways


class BenchHarness(BotHarness):
    """``BotHarness`` polling like the bot does in production: at most ``concurrency`` updates in hand.
    (The tests' harness sets no limit; with 2,000 presses pending that would be 2,000 tasks at once.)"""

    def __init__(self, *args, concurrency: int | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency

    async def start(self) -> BenchHarness:
        from bot.app import allowed_updates, build_application
        from storage.migrate import upgrade_to_head

        self.app = build_application(self.settings, clock=self.clock)
        await upgrade_to_head(self.app.db.engine)
        await self.app.start_workers()
        self._task = asyncio.create_task(
            self.app.dispatcher.start_polling(
                self.app.bot,
                handle_signals=False,
                close_bot_session=False,
                polling_timeout=1,
                allowed_updates=allowed_updates(self.app.dispatcher),
                tasks_concurrency_limit=self.concurrency,
            )
        )
        await self.emulator.wait_for_call("getMe", timeout=10)
        return self


class InProcessBot:
    """The bot inside this process, on a frozen clock that the driver moves; ``settle`` waits for everything
    in hand (updates, roster batches, due schedules, the outbox, the debounced count edits)."""

    def __init__(self, emulator: BotAPIEmulator, db_path: Path, opts: argparse.Namespace, log: Path) -> None:
        self.emulator = emulator
        self.clock = FrozenClock(CREATED)
        url = f"sqlite+aiosqlite:///{db_path}"
        self.harness = BenchHarness(emulator, url, clock=self.clock, concurrency=opts.concurrency or None)

    async def __aenter__(self) -> InProcessBot:
        await self.harness.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.harness.stop()

    async def settle(self, timeout: float = 10.0) -> None:
        await self.harness.settle(timeout=timeout)

    def cpu_seconds(self) -> float | None:
        return None  # the bench process's own CPU time is the bot's too

    async def prepare(self, members: list[int]) -> dict:
        """The group, its members seen by the bot, the meeting published and its sign-in opened. Returns the
        sign-in message."""
        emulator = self.emulator
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await self.settle()

        started = time.monotonic()
        everyone_speaks(emulator, members)
        await self.settle(timeout=max(60.0, len(members) / 20))
        print(f"  {len(members)} members seen in the group in {time.monotonic() - started:.1f}s", flush=True)

        emulator.send_message(GROUP, SECRETARY, "/meeting " + LINE.format(start="11月25日 19:30"))
        await self.settle()
        preview = last_in_group(emulator, "会议预览")
        emulator.press_button(GROUP, SECRETARY, preview["message_id"], button_data(preview, "✅ 发布"))
        await self.settle()
        last_in_group(emulator, "会议通知")

        # The meeting's life up to the start: the reminders a day and an hour before (jumping straight to the
        # start would skip them with a warning), then the due schedule opens sign-in and the outbox posts it.
        for moment in (START - timedelta(days=1), START - timedelta(hours=1), START):
            self.clock.set(moment)
            await self.settle()
        return last_in_group(emulator, "签到开始")


class ProcessBot:
    """``python -m bot`` as deployed: its own process, polling the emulator over HTTP, on the real clock.

    Its environment holds none of the shell's bot settings; the outbound limits and ``MAX_CONCURRENT_UPDATES``
    are passed explicitly (the shipped values unless ``--concurrency`` says otherwise). With ``--profile`` it
    runs under cProfile, which writes its stats when the bot exits on SIGTERM."""

    def __init__(self, emulator: BotAPIEmulator, db_path: Path, opts: argparse.Namespace, log: Path) -> None:
        self.emulator = emulator
        self.db_path = db_path
        self.log = log
        names = {name.upper() for name in Settings.model_fields}
        self.env = {
            **{k: v for k, v in os.environ.items() if k.upper() not in names},
            **{name.upper(): str(Settings.model_fields[name].default) for name in LIMIT_SETTINGS},
            "BOT_TOKEN": emulator.token,
            "BOT_API_URL": emulator.base_url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
            "LOG_LEVEL": opts.log_level,
            "MAX_CONCURRENT_UPDATES": str(opts.concurrency),
        }
        self.profile = ["-m", "cProfile", "-o", opts.profile] if opts.profile else []
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> ProcessBot:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.profile,
                "-m",
                "bot",
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C reaches the bench, which stops the bot itself
            )
        try:
            await self.emulator.wait_for(
                lambda: self.emulator.calls_of("getUpdates") or self.process.returncode is not None,
                timeout=60,
                message="the bot polling",
            )
        except BaseException:
            await self.stop()
            raise
        if self.process.returncode is not None:
            raise RuntimeError(f"the bot exited with {self.process.returncode}: {self.log_tail()}")
        return self

    async def __aexit__(self, *exc) -> None:
        code = await self.stop()
        if code not in (0, None):
            print(f"  the bot exited with {code}: {self.log_tail()}", file=sys.stderr)

    async def stop(self) -> int | None:
        """SIGTERM, as systemd or Docker stop it; SIGKILL when it has not stopped within 30 s."""
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def cpu_seconds(self) -> float:
        """The bot process's user + system CPU time so far (from /proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def settle(self, timeout: float = 10.0) -> None:
        """Every injected update taken, then a moment for the ones still in hand."""
        await self.emulator.wait_until_consumed(timeout=timeout)
        await asyncio.sleep(SETTLE_SECONDS)

    async def group_message(self, mark: str, timeout: float = 30) -> dict:
        await self.emulator.wait_for(lambda: in_group(self.emulator, mark), timeout, message=f"a message {mark!r}")
        return last_in_group(self.emulator, mark)

    async def tap(self, message_id: int, starts_with: str, user: int = SECRETARY) -> None:
        """Press a button and wait for its answer."""
        data = button_data(self.emulator.message(GROUP, message_id), starts_with)
        qid = self.emulator.press_button(GROUP, user, message_id, data)["callback_query"]["id"]
        await self.emulator.wait_for_call(
            "answerCallbackQuery", lambda call: str(call.params.get("callback_query_id")) == qid, timeout=30
        )

    async def prepare(self, members: list[int]) -> dict:
        """As the in-process ``prepare``, on the real clock (see tests/test_meetings.py, the real process)."""
        emulator = self.emulator
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await self.group_message("已获得管理员权限")  # the admins are synced
        await asyncio.sleep(0.5)  # the roles are written just after the welcome goes out

        started = time.monotonic()
        everyone_speaks(emulator, members)
        await emulator.wait_until_consumed(timeout=max(60.0, len(members) / 20))
        await emulator.wait_for(  # the roster's last batch written (they are flushed every 0.2 s)
            lambda: members_on_roster(self.db_path, members) == len(members), timeout=30, message="the roster"
        )
        await asyncio.sleep(2 * ROSTER_FLUSH_SECONDS)
        print(f"  {len(members)} members seen in the group in {time.monotonic() - started:.1f}s", flush=True)

        # A day ahead (and two hours, so that the day-before reminder does not fall due during the bench).
        start = datetime.now(ZONE) + timedelta(days=1, hours=2)
        emulator.send_message(GROUP, SECRETARY, "/meeting " + LINE.format(start=f"{start:%Y-%m-%d %H:%M}"))
        preview = await self.group_message("会议预览")
        await self.tap(preview["message_id"], "✅ 发布")
        await self.group_message("会议通知")

        # Sign-in opened early, as the committee does: /meetings, the meeting's number, "▶️ 开始签到".
        emulator.send_message(GROUP, SECRETARY, "/meetings")
        listing = await self.group_message("即将召开")
        await self.tap(listing["message_id"], "1")
        await self.tap(listing["message_id"], "▶️ 开始签到")
        return await self.group_message("签到开始")


# ------------------------------------------------------------------------------------------- measuring


@dataclass
class Press:
    user_id: int
    due: float  # when this member presses (monotonic): latencies are measured from here
    injected: float  # when the driver got to inject it (later than due when the event loop was busy)
    update: dict


async def press_all(
    emulator: BotAPIEmulator, members: list[int], message_id: int, data: str, offsets: list[float]
) -> dict[str, Press]:
    """Inject one press per member at ``start + offsets[i]``; returns them by callback query id.

    Presses whose time has come are injected together; the driver then sleeps until the next one is due.
    When the loop is busy (the emulator, and in-process the bot, run in it too) the driver gets there late,
    but each press keeps its due time: a member's tap does not wait for the bot, so that wait belongs to the
    latency."""
    presses: dict[str, Press] = {}
    start = time.monotonic()
    i = 0
    while i < len(members):
        now = time.monotonic()
        while i < len(members) and start + offsets[i] <= now:
            update = emulator.press_button(GROUP, members[i], message_id, data)
            presses[update["callback_query"]["id"]] = Press(members[i], start + offsets[i], now, update)
            i += 1
        if i < len(members):
            await asyncio.sleep(max(0.0, start + offsets[i] - time.monotonic()))
    return presses


def answers_since(emulator: BotAPIEmulator, seq: int, ids) -> dict[str, list]:
    """``answerCallbackQuery`` calls recorded after ``seq`` for these callback ids, by id."""
    found: dict[str, list] = {}
    for call in emulator.calls_of("answerCallbackQuery"):
        qid = str(call.params.get("callback_query_id"))
        if call.seq > seq and qid in ids:
            found.setdefault(qid, []).append(call)
    return found


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 2,000 is the 1,980th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def percent(cpu_seconds: float | None, wall: float) -> float | None:
    return round(100 * cpu_seconds / wall) if cpu_seconds is not None and wall > 0 else None


@dataclass
class Run:
    bot: str  # process | inprocess
    mode: str  # paced | burst
    members: int
    window_seconds: float  # presses spread over this (paced); the target for the last answer
    wall_seconds: float  # first press → last answer
    throughput: float  # sign-ins per second over the wall time
    p50: float
    p95: float
    p99: float
    max: float
    injector_late_max: float  # how far behind its schedule the driver injected a press, at worst
    answered_once: int  # presses answered exactly once, successfully, with the success text
    unanswered: int
    answered_twice: int
    failed_answers: int  # answers that were not 200 or did not say 签到成功
    rows: int
    distinct_rows: int
    missing_members: int
    unexpected_rows: int
    redelivered: int
    redelivered_answers: int  # must be 0: a redelivered update was handled already
    repeated: int
    repeated_answered_already: int  # second presses answered once with "无需重复"
    rows_after_again: int  # counted once the bot has stopped
    button_after: str  # the sign-in button's text once the debounced edits are done
    edits_during: int  # edits of the group's messages while signing in (debounced count updates)
    edits_of_signin: int  # of those, of the sign-in message (its count); the rest: the meeting's post
    rate_limited: int  # 429s from the emulator during the round
    bot_cpu_percent: float | None  # the bot's process during the sign-in (None in-process: see the next)
    bench_cpu_percent: float | None  # this process: emulator and driver (in-process: and the bot)
    setup_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def correct(self) -> bool:
        n = self.members
        return (
            self.answered_once == n
            and self.rows == self.distinct_rows == self.rows_after_again == n
            and self.missing_members == self.unexpected_rows == 0
            and self.redelivered_answers == 0
            and self.repeated_answered_already == self.repeated
        )

    def in_time(self, slack: float) -> bool:
        return self.wall_seconds <= self.window_seconds * slack


async def measure(mode: str, opts: argparse.Namespace, tmp: Path, log: Path) -> Run:
    members = list(range(FIRST_MEMBER, FIRST_MEMBER + opts.members))
    order = members[:]
    random.Random(opts.seed).shuffle(order)  # members press in no particular order
    n = len(order)
    offsets = [i * opts.window / n for i in range(n)] if mode == "paced" else [0.0] * n
    db_path = tmp / "bot.db"
    kind = ProcessBot if opts.bot == "process" else InProcessBot

    async with BotAPIEmulator(enforce_limits=True) as emulator:
        build_world(emulator, members)
        async with kind(emulator, db_path, opts, log) as bot:
            started = time.monotonic()
            signin = await bot.prepare(members)
            setup_seconds = time.monotonic() - started
            data = button_data(signin, "✅ 签到")
            meeting_id = int(data.split(":")[1])
            message_id = signin["message_id"]

            # --- timed: every member presses once
            seq0, limited0 = emulator.last_seq, emulator.rate_limited_count
            bench_cpu0, bot_cpu0 = time.process_time(), bot.cpu_seconds()
            presses = await press_all(emulator, order, message_id, data, offsets)
            try:
                await emulator.wait_for_call(
                    "answerCallbackQuery",
                    lambda call: str(call.params.get("callback_query_id")) in presses,
                    count=n,
                    since=seq0,
                    timeout=opts.window * opts.slack + 60,
                )
            except AssertionError as error:  # reported below as unanswered presses
                print(f"  not every press was answered: {str(error)[:300]}", file=sys.stderr)
            bench_cpu = time.process_time() - bench_cpu0
            bot_cpu = bot.cpu_seconds() - bot_cpu0 if bot_cpu0 is not None else None
            answers = answers_since(emulator, seq0, presses)
            first_due = min(p.due for p in presses.values())
            last_answer = max((calls[0].at for calls in answers.values()), default=first_due)
            edits = Counter(
                "signin" if call.params.get("message_id") == message_id else "other"
                for method in ("editMessageText", "editMessageReplyMarkup")
                for call in emulator.calls_of(method)
                if call.seq > seq0 and call.params.get("chat_id") == GROUP
            )
            await bot.settle(timeout=120)  # anything still in hand finishes before the rows are read
            rows, distinct, users = sign_in_rows(db_path, meeting_id)

            # --- the same updates again (redelivery), and a second tap by some members (new callback ids)
            again = list(presses.values())[: min(opts.again, n)]
            seq1 = emulator.last_seq
            for press in again:
                emulator.redeliver(press.update)
            await bot.settle()
            redelivered_answers = sum(len(calls) for calls in answers_since(emulator, seq1, presses).values())
            seq2 = emulator.last_seq
            repeats = {}
            for press in again:
                update = emulator.press_button(GROUP, press.user_id, message_id, data)
                repeats[update["callback_query"]["id"]] = press.user_id
            await bot.settle(timeout=60)
            repeat_answers = answers_since(emulator, seq2, repeats)
            full = f"✅ 签到 · {n}"
            with contextlib.suppress(AssertionError):  # the count is debounced: reported below if it never shows
                await emulator.wait_for(lambda: full in buttons(emulator.message(GROUP, message_id)), timeout=60)
            button = next(iter(buttons(emulator.message(GROUP, message_id))), "")
            rate_limited = emulator.rate_limited_count - limited0
        rows_after, _, _ = sign_in_rows(db_path, meeting_id)  # the bot has stopped: nothing more will come

    def answered_ok(calls: list) -> bool:
        return len(calls) == 1 and calls[0].status == 200 and SIGNED in str(calls[0].params.get("text", ""))

    latencies = [calls[0].at - presses[qid].due for qid, calls in answers.items()]
    wall = last_answer - first_due
    return Run(
        bot=opts.bot,
        mode=mode,
        members=n,
        window_seconds=opts.window,
        wall_seconds=round(wall, 3),
        throughput=round(len(answers) / wall, 1) if wall > 0 else 0.0,
        p50=round(percentile(latencies, 50), 4) if latencies else math.nan,
        p95=round(percentile(latencies, 95), 4) if latencies else math.nan,
        p99=round(percentile(latencies, 99), 4) if latencies else math.nan,
        max=round(max(latencies), 4) if latencies else math.nan,
        injector_late_max=round(max(p.injected - p.due for p in presses.values()), 4),
        answered_once=sum(answered_ok(calls) for calls in answers.values()),
        unanswered=n - len(answers),
        answered_twice=sum(len(calls) > 1 for calls in answers.values()),
        failed_answers=sum(not answered_ok(calls) for calls in answers.values() if len(calls) == 1),
        rows=rows,
        distinct_rows=distinct,
        missing_members=len(set(members) - users),
        unexpected_rows=len(users - set(members)),
        redelivered=len(again),
        redelivered_answers=redelivered_answers,
        repeated=len(repeats),
        repeated_answered_already=sum(
            len(calls) == 1 and calls[0].status == 200 and ALREADY in str(calls[0].params.get("text", ""))
            for calls in repeat_answers.values()
        ),
        rows_after_again=rows_after,
        button_after=button,
        edits_during=sum(edits.values()),
        edits_of_signin=edits["signin"],
        rate_limited=rate_limited,
        bot_cpu_percent=percent(bot_cpu, wall),
        bench_cpu_percent=percent(bench_cpu, wall),
        setup_seconds=round(setup_seconds, 2),
        latencies=[round(x, 4) for x in sorted(latencies)],
    )


def configure_logging(path: Path, level: str) -> None:
    """Log as the bot does (``LOG_LEVEL``, its format; aiogram logs one line per update at INFO), to a
    file: writing the lines is part of what an update costs."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------------- main


def cpu_text(r: Run) -> str:
    """``bot/bench`` CPU in % of a core; in-process the one process's figure."""
    if r.bot_cpu_percent is None:
        return f"{r.bench_cpu_percent:.0f}%"
    return f"{r.bot_cpu_percent:.0f}/{r.bench_cpu_percent:.0f}%"


def print_table(runs: list[Run], slack: float) -> None:
    head = (
        f"{'bot':<9} {'mode':<6} {'members':>7} {'window':>6} {'wall':>7} {'sign-in/s':>9} {'p50':>7} {'p95':>7} "
        f"{'p99':>7} {'max':>7} {'once':>5} {'rows':>5} {'lost':>4} {'dup':>4} {'edits':>5} {'429':>4} "
        f"{'CPU bot/bench':>13} {'result':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        ok = r.correct and r.in_time(slack)
        print(
            f"{r.bot:<9} {r.mode:<6} {r.members:>7} {r.window_seconds:>5g}s {r.wall_seconds:>6.2f}s "
            f"{r.throughput:>9.1f} {r.p50:>6.3f}s {r.p95:>6.3f}s {r.p99:>6.3f}s {r.max:>6.3f}s "
            f"{r.answered_once:>5} {r.rows:>5} {r.missing_members:>4} {r.answered_twice + r.rows - r.distinct_rows:>4} "
            f"{r.edits_during:>5} {r.rate_limited:>4} {cpu_text(r):>13} {'pass' if ok else 'FAIL':>6}"
        )


def report(r: Run, slack: float) -> None:
    print(
        f"  {r.mode}: {r.answered_once}/{r.members} answered once with 签到成功 ({r.unanswered} unanswered, "
        f"{r.answered_twice} answered twice, {r.failed_answers} wrong answers); rows {r.rows} "
        f"({r.distinct_rows} distinct, {r.missing_members} members missing, {r.unexpected_rows} unexpected)"
    )
    print(
        f"  {r.mode}: {r.redelivered} updates redelivered → {r.redelivered_answers} answers; {r.repeated} second "
        f"presses → {r.repeated_answered_already} told 无需重复; rows after the bot stopped {r.rows_after_again}; "
        f"button now {r.button_after!r}"
    )
    print(
        f"  {r.mode}: wall {r.wall_seconds:.2f}s against {r.window_seconds:g}s × {slack:g}: "
        f"{'in time' if r.in_time(slack) else 'TOO SLOW'}; the driver injected at worst "
        f"{r.injector_late_max * 1000:.0f} ms behind its schedule; set-up {r.setup_seconds:.1f}s"
    )
    if r.bot_cpu_percent is None:
        cpu = f"CPU {r.bench_cpu_percent:.0f}% of a core (bot, emulator and driver in one process)"
    else:
        cpu = (
            f"CPU of the bot's process {r.bot_cpu_percent:.0f}% of a core, "
            f"of the bench's (emulator, driver) {r.bench_cpu_percent:.0f}%"
        )
    print(
        f"  {r.mode}: {r.edits_during} edits in the group while signing in ({r.edits_of_signin} of the sign-in "
        f"message, {r.edits_during - r.edits_of_signin} of the meeting's post), {r.rate_limited} × 429; {cpu}",
        flush=True,
    )


async def run_all(opts: argparse.Namespace, tmp: Path, log: Path) -> list[Run]:
    modes = ["paced", "burst"] if opts.mode == "both" else [opts.mode]
    runs = []
    for mode in modes:
        for round_no in range(1, opts.rounds + 1):
            print(f"{mode}, round {round_no}:", flush=True)
            round_dir = tmp / f"{mode}-{round_no}"
            round_dir.mkdir()
            runs.append(await measure(mode, opts, round_dir, log))
            report(runs[-1], opts.slack)
    return runs


def run_rounds(opts: argparse.Namespace) -> list[Run]:
    with tempfile.TemporaryDirectory(prefix="bench-meetings-") as tmpdir:
        tmp = Path(tmpdir)
        log = tmp / "bot.log"  # in process, the bot's output (every round appends); in-process, the log
        try:
            if opts.bot == "process":
                configure_logging(tmp / "bench.log", "WARNING")  # the emulator's complaints, if any
                return asyncio.run(run_all(opts, tmp, log))  # --profile is the bot process's (ProcessBot)
            configure_logging(log, opts.log_level)
            if not opts.profile:
                return asyncio.run(run_all(opts, tmp, log))
            import cProfile

            profiler = cProfile.Profile()
            try:
                return profiler.runcall(asyncio.run, run_all(opts, tmp, log))
            finally:
                profiler.dump_stats(opts.profile)
        finally:
            if opts.keep_log and log.exists():
                Path(opts.keep_log).write_bytes(log.read_bytes())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.meetings", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--members", type=int, default=2000, help="members who sign in (default 2000)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds the presses are spread over (default 10)")
    ap.add_argument(
        "--mode",
        choices=("paced", "burst", "both"),
        default="both",
        help="paced: presses evenly over the window; burst: all at once; both (default): one round of each",
    )
    ap.add_argument(
        "--bot",
        choices=("process", "inprocess"),
        default="process",
        help="process (default): python -m bot, as deployed; inprocess: the bot inside the bench's process",
    )
    ap.add_argument("--rounds", type=int, default=1, help="rounds of each mode, each from scratch (default 1)")
    ap.add_argument(
        "--slack", type=float, default=1.0, help="fail when the wall time exceeds window × slack (default 1.0)"
    )
    ap.add_argument("--again", type=int, default=50, help="presses redelivered, and second presses (default 50)")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=CONCURRENCY,
        help=f"updates in hand at once, as MAX_CONCURRENT_UPDATES (default {CONCURRENCY}; in-process 0: no limit)",
    )
    ap.add_argument("--seed", type=int, default=1, help="seed of the order members press in")
    ap.add_argument("--log-level", default="INFO", help="the bot's log level (default INFO, as deployed)")
    ap.add_argument("--keep-log", metavar="FILE", help="copy the bot's log to FILE")
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="run the bot under cProfile, stats to FILE (in process: the last round's); figures not written",
    )
    args = ap.parse_args(argv)
    if args.members < 1 or args.rounds < 1 or args.window <= 0 or args.again < 0:
        ap.error("--members and --rounds must be at least 1, --window positive, --again not negative")
    if args.bot == "process" and args.concurrency < 1:
        ap.error("--concurrency must be at least 1 with --bot process")

    where = (
        "the bot as its own process (python -m bot), the emulator in this one"
        if args.bot == "process"
        else "bot and emulator in this process"
    )
    print(
        f"Meeting sign-in bench: {args.members} members of one meeting press 签到, mode {args.mode}, window "
        f"{args.window:g}s (fail beyond {args.window * args.slack:g}s); {where}; emulator enforcing Telegram's "
        f"limits, bot with its shipped limits, MAX_CONCURRENT_UPDATES={args.concurrency or 'unlimited'}, "
        f"LOG_LEVEL={args.log_level}."
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}.\n",
        flush=True,
    )
    try:
        runs = run_rounds(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

    print()
    print_table(runs, args.slack)
    correct = all(r.correct for r in runs)
    in_time = all(r.in_time(args.slack) for r in runs)
    print()
    for mode in dict.fromkeys(r.mode for r in runs):
        mine = [r for r in runs if r.mode == mode]
        throughput = statistics.median(r.throughput for r in mine)
        p99 = statistics.median(r.p99 for r in mine)
        wall = statistics.median(r.wall_seconds for r in mine)
        print(f"{args.bot} {mode}: median {throughput:.0f} sign-ins/s, p99 {p99:.3f}s, wall {wall:.2f}s")
    print(f"every member signed in exactly once, every press answered once: {'yes' if correct else 'NO'}")
    print(f"every round within {args.window:g}s × {args.slack:g}: {'yes' if in_time else 'NO'}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.profile:
        print(f"cProfile stats in {args.profile}; profiled figures not written to {RESULTS[args.bot]}")
    else:
        write_results(args, runs, correct, in_time)
    return 0 if correct and in_time else 1


def write_results(args: argparse.Namespace, runs: list[Run], correct: bool, in_time: bool) -> None:
    path = RESULTS[args.bot]
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "config": {
            **vars(args),
            "emulator_enforce_limits": True,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_at_end": os.getloadavg()[0],
        },
        "runs": [{**asdict(r), "correct": r.correct, "in_time": r.in_time(args.slack)} for r in runs],
        "every_sign_in_exactly_once": correct,
        "every_round_in_time": in_time,
    }
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
