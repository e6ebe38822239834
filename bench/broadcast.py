"""One notice broadcast to many groups, against the Bot API emulator enforcing Telegram's limits.

Run from the repository root: ``uv run python -m bench.broadcast [--groups 300] [--rounds 1]``.

Each round starts from scratch: a fresh SQLite database, made by the bot's own migrations and then filled
directly with one root unit, ``--groups`` active supergroups bound to it and a superuser; a fresh emulator
process started with ``--enforce-limits`` (30 messages/s overall, 20/min per group, 1/s per private chat,
429 beyond); and a fresh ``python -m bot`` with its shipped outbound limits. The superuser sends
``/broadcast <text>`` in private and the driver waits for the preview, then presses its confirm button
(``bcs:…``). The clock starts when that press has been injected (the update is available to the bot) and
stops at the emulator's record of the last group's first successful notice ``sendMessage``.

Figures: elapsed against the ideal (groups / 30 s), the ratio (target ≤ 1.10), 429 answers in total and
after the first second of sending, and whether every group got the notice exactly once. The exit code is 1
when a group got it 0 or 2+ times; missing the ratio target is only reported. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.throughput import api, cpu_seconds, proc_status, settled, stop, wait_until
from bot.config import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "broadcast.json"
TOKEN = "123456:TEST-TOKEN"
SUPERUSER = 9000
TELEGRAM_RATE = 30  # messages per second overall: what the emulator enforces, and what "ideal" assumes
TARGET_RATIO = 1.10
NOTICE_MARK = "📢"  # every notice post starts with the "📢 <b>… 通知</b>" header
NOTICE_TEXT = "请各支部于本周五前组织学习并反馈情况。"
LIMIT_SETTINGS = ("global_messages_per_second", "group_messages_per_minute", "private_messages_per_second")
_procs: list[subprocess.Popen] = []


def group_ids(n: int) -> list[int]:
    return [-1_001_000_000_000 - i for i in range(1, n + 1)]


# ------------------------------------------------------------------------------------------- set-up


def prepare_database(db_url: str, groups: list[int], log: Path) -> None:
    """The schema from the bot's own migrations, then the rows a real deployment would have after the
    groups were bound: much faster than binding 300 groups through commands, and the same data."""
    env = {**bot_base_env(), "DATABASE_URL": db_url}
    done = subprocess.run([sys.executable, "-m", "bot", "migrate"], cwd=REPO, env=env, capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"python -m bot migrate failed ({done.returncode}): {done.stderr[-2000:]}")

    # Imported here: the driver needs SQLAlchemy only for this step. The ORM writes the timestamps
    # exactly as the bot does (naive UTC on SQLite, see storage.models.UTCDateTime).
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from storage.models import Chat, Unit, User

    engine = create_engine(db_url)
    with Session(engine) as session, session.begin():
        session.add(User(id=SUPERUSER, first_name="书记", language_code="zh-hans", started_bot=True))
        root = Unit(name="综合党委", kind="committee", created_by=SUPERUSER)
        session.add(root)
        session.flush()
        session.add_all(
            Chat(
                telegram_id=chat,
                type="supergroup",
                title=f"第{i}党支部",
                is_active=True,
                bot_is_admin=True,
                unit_id=root.id,
            )
            for i, chat in enumerate(groups, 1)
        )
    engine.dispose()


def world_setup(groups: list[int]) -> list[dict]:
    """The same world on the emulator's side: the superuser (has started the bot) and every group,
    created by the superuser, with the bot as an administrator."""
    ops: list[dict] = [
        {"op": "add_user", "user_id": SUPERUSER, "first_name": "书记"},
        {"op": "user_started", "user_id": SUPERUSER},
    ]
    for i, chat in enumerate(groups, 1):
        ops += [
            {"op": "add_chat", "chat_id": chat, "type": "supergroup", "title": f"第{i}党支部"},
            {"op": "set_admins", "chat_id": chat, "user_ids": [], "creator_id": SUPERUSER},
            {"op": "set_bot_admin", "chat_id": chat, "is_admin": True},
        ]
    return ops


def bot_base_env() -> dict[str, str]:
    """The environment without any of the bot's settings, so that nothing set in the shell leaks in."""
    names = {name.upper() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k.upper() not in names}


def bot_env(url: str, db_url: str, opts: argparse.Namespace) -> dict[str, str]:
    # The limits are passed explicitly, with the values the code ships (Settings' defaults), so that
    # neither the shell nor a local .env changes what is measured; --global-rate is for experiments.
    limits = {name.upper(): str(Settings.model_fields[name].default) for name in LIMIT_SETTINGS}
    if opts.global_rate is not None:
        limits["GLOBAL_MESSAGES_PER_SECOND"] = str(opts.global_rate)
    return {
        **bot_base_env(),
        **limits,
        "BOT_TOKEN": TOKEN,
        "BOT_API_URL": url,
        "DATABASE_URL": db_url,
        "SUPERUSER_IDS": str(SUPERUSER),  # comma-separated ids; a JSON list is refused by bot.config
        "LOG_LEVEL": opts.log_level,
    }


def spawn(args: list[str], env: dict[str, str], log: Path, stdout=None) -> subprocess.Popen:
    """Start ``python <args>`` in the repo root, in its own session (we stop it ourselves)."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            text=stdout is not None,
        )
    _procs.append(proc)
    return proc


def halt(proc: subprocess.Popen) -> None:
    stop(proc)
    if proc in _procs:
        _procs.remove(proc)


def start_emulator(tmp: Path) -> tuple[subprocess.Popen, str]:
    log = tmp / "emulator.log"
    args = ["-m", "tests.emulator", "--port", "0", "--token", TOKEN, "--enforce-limits"]
    proc = spawn(args, dict(os.environ), log, stdout=subprocess.PIPE)
    line = proc.stdout.readline().strip()
    if not line.startswith("EMULATOR_URL="):
        raise RuntimeError(f"emulator did not start: {line!r} {log.read_text()[-2000:]}")
    return proc, line.split("=", 1)[1]


def calls_since(url: str, seq: int, method: str | None = None) -> tuple[list[dict], int]:
    """Calls recorded from ``seq`` on, and the seq to ask from next time."""
    query = f"?since={seq}" + (f"&method={method}" if method else "")
    answer = api(url, "/_emulator/calls" + query)
    return answer["calls"], answer["next"]


def is_notice(call: dict) -> bool:
    chat = call["params"].get("chat_id")
    return (
        call["method"] == "sendMessage"
        and isinstance(chat, int)
        and chat < 0
        and NOTICE_MARK in str(call["params"].get("text", ""))
    )


def confirm_button(call: dict) -> str | None:
    rows = ((call["response"] or {}).get("result") or {}).get("reply_markup", {}).get("inline_keyboard", [])
    datas = [button.get("callback_data") or "" for row in rows for button in row]
    return next((data for data in datas if data.startswith("bcs:")), None)


def ask_for_preview(url: str, bot: subprocess.Popen, log: Path) -> tuple[int, str]:
    """The superuser sends /broadcast in private; returns the preview's message id and confirm data."""
    seq = api(url, "/_emulator/calls?method=-")["next"]
    api(
        url,
        "/_emulator/world",
        {"op": "send_message", "chat_id": SUPERUSER, "user_id": SUPERUSER, "text": f"/broadcast {NOTICE_TEXT}"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        calls, _ = calls_since(url, seq, "sendMessage")
        for call in calls:
            if call["params"].get("chat_id") == SUPERUSER and call["status"] == 200 and confirm_button(call):
                return call["response"]["result"]["message_id"], confirm_button(call)
        if bot.poll() is not None:
            raise RuntimeError(f"bot exited with {bot.returncode}; log tail:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"no preview with a confirm button; bot log tail:\n{log.read_text()[-2000:]}")


# ------------------------------------------------------------------------------------------- measuring


def wait_for_notices(
    url: str, seq: int, groups: list[int], bot: subprocess.Popen, timeout: float
) -> tuple[dict[int, float], bool]:
    """Poll the emulator's records until every group has a successful notice (or time is up).
    Returns each group's first success time (emulator ``at``: CLOCK_MONOTONIC, same clock as ours)."""
    first_ok: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(first_ok) < len(groups):
        calls, seq = calls_since(url, seq, "sendMessage")
        for call in calls:
            if is_notice(call) and call["status"] == 200:
                first_ok.setdefault(call["params"]["chat_id"], call["at"])
        if bot.poll() is not None or time.monotonic() > deadline:
            return first_ok, False
        time.sleep(0.05)
    return first_ok, True


def wait_for_summary(url: str, seq: int, timeout: float = 30) -> bool:
    """Once every post is settled the bot sends the author a summary: wait for it, so that the round
    ends with the broadcast finished (and late duplicates, if any, have had time to show up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls, _ = calls_since(url, seq, "sendMessage")
        if any(c["params"].get("chat_id") == SUPERUSER and c["status"] == 200 for c in calls):
            return True
        time.sleep(0.2)
    return False


def outbox_statuses(db_path: Path) -> dict[str, int]:
    """What the bot itself recorded for the notice posts (read after it has stopped)."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT status, count(*) FROM outbox WHERE kind = 'notice_post' GROUP BY status")
        return dict(rows.fetchall())


@dataclass
class Run:
    round: int
    groups: int
    ideal_seconds: float
    seconds: float  # press injected → last group's first successful notice
    ratio: float
    first_notice_after: float  # press → first notice request
    send_span_seconds: float  # first notice request → last group's first success
    notice_requests: int
    rejected_429: int
    rejected_429_after_first_second: int
    other_failures: int
    groups_exactly_once: int
    groups_missing: int
    groups_duplicated: int
    panel_edits: int
    summary_sent: bool
    outbox: dict[str, int]
    bot_cpu_percent: float
    bot_peak_rss_mb: float

    @property
    def correct(self) -> bool:
        return self.groups_exactly_once == self.groups


def measure(round_no: int, opts: argparse.Namespace) -> Run:
    groups = group_ids(opts.groups)
    ideal = len(groups) / TELEGRAM_RATE
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as tmpdir:
        tmp = Path(tmpdir)
        db_path = tmp / "bench.db"
        db_url = f"sqlite:///{db_path}"
        prepare_database(db_url, groups, tmp / "migrate.log")
        emulator, url = start_emulator(tmp)
        bot = None
        try:
            api(url, "/_emulator/world", world_setup(groups))
            log = tmp / "bot.log"
            profile = ["-m", "cProfile", "-o", str(Path(opts.profile).resolve())] if opts.profile else []
            bot = spawn([*profile, "-m", "bot"], bot_env(url, db_url, opts), log)
            wait_until(url, lambda s: s["methods"].get("getUpdates", 0) > 0, bot, log, "first getUpdates", 60)
            message_id, data = ask_for_preview(url, bot, log)
            # Start from an idle bot: the preview's transaction and replies are done.
            wait_until(url, settled(), bot, log, "quiet after the preview", 30)

            seq0 = api(url, "/_emulator/calls?method=-")["next"]
            cpu0 = cpu_seconds(bot.pid)
            press = {
                "op": "press_button",
                "chat_id": SUPERUSER,
                "user_id": SUPERUSER,
                "message_id": message_id,
                "data": data,
            }
            api(url, "/_emulator/world", press)
            t0 = time.monotonic()  # the press is now available to the bot's getUpdates
            first_ok, complete = wait_for_notices(url, seq0, groups, bot, timeout=max(60.0, 4 * ideal + 30))
            cpu1 = cpu_seconds(bot.pid) if bot.poll() is None else cpu0
            summary = complete and wait_for_summary(url, seq0)
            if bot.poll() is None:
                wait_until(url, settled(1.0), bot, log, "quiet after the broadcast", 30)
                rss = proc_status(bot.pid, "VmHWM") / 1024
            else:
                rss = 0.0
            calls, _ = calls_since(url, seq0)
        finally:
            if bot is not None:
                halt(bot)
            halt(emulator)
        if not complete:
            print(
                f"  round {round_no}: only {len(first_ok)}/{len(groups)} groups got the notice; bot log tail:\n"
                f"{log.read_text(errors='replace')[-3000:]}",
                file=sys.stderr,
            )
        return summarise(
            round_no, groups, ideal, t0, first_ok, calls, summary, outbox_statuses(db_path), cpu1 - cpu0, rss
        )


def summarise(
    round_no: int,
    groups: list[int],
    ideal: float,
    t0: float,
    first_ok: dict[int, float],
    calls: list[dict],
    summary: bool,
    outbox: dict[str, int],
    cpu: float,
    rss_mb: float,
) -> Run:
    notices = [c for c in calls if is_notice(c)]
    delivered = Counter(c["params"]["chat_id"] for c in notices if c["status"] == 200)
    per_group = [delivered.get(chat, 0) for chat in groups]
    started = min((c["at"] for c in notices), default=t0)
    finished = max(first_ok.values(), default=t0)
    rejected = [c for c in calls if c["status"] == 429]
    seconds = finished - t0
    return Run(
        round=round_no,
        groups=len(groups),
        ideal_seconds=round(ideal, 3),
        seconds=round(seconds, 3),
        ratio=round(seconds / ideal, 3),
        first_notice_after=round(started - t0, 3),
        send_span_seconds=round(finished - started, 3),
        notice_requests=len(notices),
        rejected_429=len(rejected),
        # A burst at the very start is tolerable; 429s later mean the steady pace is wrong.
        rejected_429_after_first_second=sum(c["at"] > started + 1.0 for c in rejected),
        other_failures=sum(c["status"] not in (200, 429) and c["method"] != "getUpdates" for c in calls),
        groups_exactly_once=sum(n == 1 for n in per_group),
        groups_missing=sum(n == 0 for n in per_group),
        groups_duplicated=sum(n > 1 for n in per_group),
        panel_edits=sum(c["method"] == "editMessageText" and c["params"].get("chat_id") == SUPERUSER for c in calls),
        summary_sent=summary,
        outbox=outbox,
        bot_cpu_percent=round(100 * cpu / seconds) if seconds > 0 else 0,
        bot_peak_rss_mb=round(rss_mb, 1),
    )


# ------------------------------------------------------------------------------------------- main


def print_table(runs: list[Run]) -> None:
    head = (
        f"{'round':>5} {'secs':>7} {'ideal':>6} {'ratio':>6} {'1st after':>9} {'429s':>5} {'>1s':>4} "
        f"{'once':>5} {'missing':>7} {'dup':>4} {'edits':>5} {'summary':>7} {'bot CPU':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        print(
            f"{r.round:>5} {r.seconds:>7.2f} {r.ideal_seconds:>6.1f} {r.ratio:>6.3f} {r.first_notice_after:>8.2f}s "
            f"{r.rejected_429:>5} {r.rejected_429_after_first_second:>4} {r.groups_exactly_once:>5} "
            f"{r.groups_missing:>7} {r.groups_duplicated:>4} {r.panel_edits:>5} {'yes' if r.summary_sent else 'NO':>7} "
            f"{r.bot_cpu_percent:>6}%"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.broadcast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--groups", type=int, default=300, help="groups bound to the unit (default 300)")
    ap.add_argument("--rounds", type=int, default=1, help="broadcasts, each from scratch (default 1)")
    ap.add_argument("--log-level", default="INFO", help="the bot's LOG_LEVEL (default INFO, as deployed)")
    ap.add_argument(
        "--global-rate",
        type=float,
        metavar="N",
        help="experiment: GLOBAL_MESSAGES_PER_SECOND for the bot (default: what the code ships)",
    )
    ap.add_argument("--profile", metavar="FILE", help="run the bot under cProfile, stats to FILE (slows it down)")
    args = ap.parse_args(argv)
    if args.groups < 1 or args.rounds < 1:
        ap.error("--groups and --rounds must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too

    shipped = Settings.model_fields["global_messages_per_second"].default
    rate = args.global_rate if args.global_rate is not None else shipped
    ideal = args.groups / TELEGRAM_RATE
    print(
        f"Broadcast bench: 1 notice to {args.groups} supergroups, {args.rounds} round(s); ideal {ideal:.1f}s "
        f"({args.groups} / {TELEGRAM_RATE} msg/s), target ratio ≤ {TARGET_RATIO}."
    )
    print(
        f"Emulator WITH limit enforcement ({TELEGRAM_RATE}/s overall, 20/min per group, 1/s per private chat); "
        f"bot GLOBAL_MESSAGES_PER_SECOND={rate:g}{'' if args.global_rate is None else ' (experiment)'}, "
        f"LOG_LEVEL={args.log_level}."
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}.\n",
        flush=True,
    )

    runs: list[Run] = []
    try:
        for round_no in range(1, args.rounds + 1):
            runs.append(measure(round_no, args))
            r = runs[-1]
            print(
                f"  round {round_no}: {r.seconds:.2f}s (ratio {r.ratio:.3f}), {r.rejected_429} × 429, "
                f"{r.groups_exactly_once}/{r.groups} groups exactly once",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for proc in list(_procs):
            halt(proc)

    ratio = statistics.median(r.ratio for r in runs)
    correct = all(r.correct for r in runs)
    print()
    print_table(runs)
    print()
    print(
        f"median elapsed {statistics.median(r.seconds for r in runs):.2f}s vs ideal {ideal:.2f}s → "
        f"ratio {ratio:.3f}: target {'met' if ratio <= TARGET_RATIO else 'missed'} (≤ {TARGET_RATIO})"
    )
    print(
        f"429 responses: {sum(r.rejected_429 for r in runs)} in total, "
        f"{sum(r.rejected_429_after_first_second for r in runs)} after the first second of sending"
    )
    print("every group got exactly one notice: " + ("yes" if correct else "NO"))

    if args.profile:
        print(f"cProfile stats of the bot in {args.profile}; profiled figures not written to {RESULTS}")
    else:
        write_results(args, rate, runs, ratio, correct)
    return 0 if correct else 1


def write_results(args: argparse.Namespace, rate: float, runs: list[Run], ratio: float, correct: bool) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "config": {
            **vars(args),
            "bot_global_messages_per_second": rate,
            "emulator_enforce_limits": True,
            "telegram_rate_per_second": TELEGRAM_RATE,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_at_end": os.getloadavg()[0],
        },
        "runs": [{**asdict(r), "correct": r.correct} for r in runs],
        "median_ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO,
        "rejected_429": sum(r.rejected_429 for r in runs),
        "rejected_429_after_first_second": sum(r.rejected_429_after_first_second for r in runs),
        "every_group_exactly_once": correct,
    }
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
