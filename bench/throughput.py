"""End-to-end throughput through the Bot API emulator: a bare aiogram echo bot versus our bot.

Run from the repository root: ``uv run python -m bench.throughput [--updates 3000] [--rounds 3]``.
Every run starts a fresh emulator process (no limit enforcement) and a fresh bot process, builds the
same world (50 supergroups, 2,000 users), warms the bot up, then injects the measured batch in one
control-API request and times it until every update is confirmed and every expected reply recorded.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "throughput.json"
TOKEN = "123456:TEST-TOKEN"
TARGET_RATIO = 0.7
LIFTED = "1000000"  # our bot's outbound limits, lifted: we measure processing cost, not Telegram's limits
N_GROUPS, N_USERS = 50, 2000
GROUPS = [-1_001_000_000_000 - i for i in range(1, N_GROUPS + 1)]
USERS = [100_001 + i for i in range(N_USERS)]
OWNERS = set(USERS[:N_GROUPS])  # USERS[i] created GROUPS[i]; they never press buttons (they would pass)
MIX = {"group_text": 50, "group_help": 20, "private_help": 10, "button": 20}  # percent
GROUP_TEXTS = ["收到", "好的", "已学习", "收到，谢谢", "好的，马上到", "已学习，受益匪浅", "明白", "👍"]
BUTTON_DATA = ["st:lang:en", "st:lang:zh", "st:tzmenu", "st:quietmenu", "st:close"]
# Which kinds of update each bot answers (sendMessage or answerCallbackQuery).
ANSWERS = {
    "baseline": {"group_text", "group_help", "private_help", "button"},
    "ours": {"group_help", "private_help", "button"},
}
REPLY_METHODS = ("sendMessage", "answerCallbackQuery")
_procs: list[subprocess.Popen] = []


# ------------------------------------------------------------------------------------------- the stream


def home_group(user: int) -> int:
    return GROUPS[(user - USERS[0]) % N_GROUPS]


def make_stream(seed: int, n: int) -> tuple[list[dict], Counter]:
    """``n`` world ops (``/_emulator/world``) drawn from MIX; returns them and how many of each kind."""
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    ops = []
    for kind in kinds:
        user = rng.choice(USERS)
        if kind == "group_text":
            ops.append(
                {"op": "send_message", "chat_id": home_group(user), "user_id": user, "text": rng.choice(GROUP_TEXTS)}
            )
        elif kind == "group_help":
            ops.append({"op": "send_message", "chat_id": home_group(user), "user_id": user, "text": "/help"})
        elif kind == "private_help":
            ops.append({"op": "send_message", "chat_id": user, "user_id": user, "text": "/help"})
        else:
            while user in OWNERS:
                user = rng.choice(USERS)
            ops.append(
                {
                    "op": "press_button",
                    "chat_id": home_group(user),
                    "user_id": user,
                    "message_id": 900_000 + rng.randrange(1000),
                    "data": rng.choice(BUTTON_DATA),
                    "forged": True,
                }
            )
    return ops, Counter(kinds)


def world_setup() -> list[dict]:
    """Users (all have started the bot), supergroups with an owner, and the bot added to each group."""
    ops: list[dict] = []
    for user in USERS:
        ops += [
            {"op": "add_user", "user_id": user, "first_name": f"同志{user % 10_000}"},
            {"op": "user_started", "user_id": user},
        ]
    for i, group in enumerate(GROUPS):
        ops += [
            {"op": "add_chat", "chat_id": group, "type": "supergroup", "title": f"第{i + 1}党支部"},
            {"op": "set_admins", "chat_id": group, "user_ids": [], "creator_id": USERS[i]},
            {"op": "bot_added", "chat_id": group, "by_user_id": USERS[i]},
        ]
    return ops


# ------------------------------------------------------------------------------------------- helpers


def api(url: str, path: str, body: object = None, timeout: float = 120):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.load(response)
    if not payload.get("ok"):
        raise RuntimeError(f"{path}: {payload.get('description')}")
    return payload["result"]


def stats(url: str) -> dict:
    return api(url, "/_emulator/stats")


def replies(s: dict) -> int:
    return sum(s["methods"].get(m, 0) for m in REPLY_METHODS)


def spawn(args: list[str], env: dict[str, str], log: Path, stdout=None) -> subprocess.Popen:
    """Start ``python <args>`` in the repo root, in its own session (we stop it ourselves)."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            text=stdout is not None,
        )
    _procs.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _procs:
        _procs.remove(proc)


def proc_status(pid: int, key: str) -> int:
    """A ``kB`` figure from /proc/<pid>/status (e.g. VmHWM = peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_until(
    url: str, done, proc: subprocess.Popen, log: Path, what: str, timeout: float, interval: float = 0.01
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = stats(url)
        if done(s):
            return s
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"bot exited with {proc.returncode} while waiting for {what}; log tail:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f}s; emulator stats: {s}")
        time.sleep(interval)


def settled(quiet: float = 0.5):
    """A ``done`` predicate: nothing pending and no new Bot API call for ``quiet`` seconds."""
    last = {"calls": -1, "since": 0.0}

    def done(s: dict) -> bool:
        now = time.monotonic()
        if s["calls_total"] != last["calls"] or s["pending_updates"]:
            last.update(calls=s["calls_total"], since=now)
            return False
        return now - last["since"] >= quiet

    return done


def start_emulator(tmp: Path) -> tuple[subprocess.Popen, str]:
    proc = spawn(
        ["-m", "tests.emulator", "--port", "0", "--token", TOKEN], {}, tmp / "emulator.log", stdout=subprocess.PIPE
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("EMULATOR_URL="):
        raise RuntimeError(f"emulator did not start: {line!r} {(tmp / 'emulator.log').read_text()[-2000:]}")
    return proc, line.split("=", 1)[1]


def bot_command(kind: str, tmp: Path, url: str, opts: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    env = {"BOT_TOKEN": TOKEN, "BOT_API_URL": url, "LOG_LEVEL": opts.log_level}
    if kind == "baseline":
        return ["-m", "bench.echo_bot"], env
    env.update(
        DATABASE_URL=f"sqlite:///{tmp}/bench.db",
        GROUP_MESSAGES_PER_MINUTE=LIFTED,
        GLOBAL_MESSAGES_PER_SECOND=LIFTED,
        PRIVATE_MESSAGES_PER_SECOND=LIFTED,
    )
    profile = ["-m", "cProfile", "-o", str(Path(opts.profile).resolve())] if opts.profile else []
    return [*profile, "-m", "bot"], env


# ------------------------------------------------------------------------------------------- one run


@dataclass
class Run:
    round: int
    bot: str
    updates: int
    seconds: float
    updates_per_second: float
    replies_expected: int
    replies_seen: int
    failed_replies: int
    inject_seconds: float
    bot_cpu_percent: float
    emulator_cpu_percent: float
    bot_peak_rss_mb: float


def measure(
    kind: str, round_no: int, warmup: tuple[list, Counter], measured: tuple[list, Counter], opts: argparse.Namespace
) -> Run:
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmpdir:
        tmp = Path(tmpdir)
        emulator, url = start_emulator(tmp)
        bot = None
        try:
            api(url, "/_emulator/world", world_setup())
            args, env = bot_command(kind, tmp, url, opts)
            log = tmp / "bot.log"
            bot = spawn(args, env, log)
            wait_until(url, lambda s: s["methods"].get("getUpdates", 0) > 0, bot, log, "first getUpdates", 60)
            # Warm-up: the bot_added updates (already queued) plus a batch of the stream, until all is quiet.
            api(url, "/_emulator/world", warmup[0])
            before = wait_until(url, settled(), bot, log, "warm-up", 120)

            ops, kinds = measured
            n, expected = len(ops), sum(kinds[k] for k in ANSWERS[kind])
            seq0 = api(url, "/_emulator/calls?method=-")["next"] - 1
            cpu0 = cpu_seconds(bot.pid), cpu_seconds(emulator.pid)
            t0 = time.monotonic()
            api(url, "/_emulator/world", ops)  # one request: the emulator makes all of them available at once
            t1 = time.monotonic()
            wait_until(
                url,
                lambda s: (
                    s["confirmed_updates"] - before["confirmed_updates"] >= n
                    and replies(s) - replies(before) >= expected
                ),
                bot,
                log,
                f"{n} updates and {expected} replies",
                max(120, n / 10),
                interval=0.02,
            )
            t2 = time.monotonic()
            cpu1 = cpu_seconds(bot.pid), cpu_seconds(emulator.pid)
            after = wait_until(url, settled(), bot, log, "quiet after the batch", 30)
            failed = sum(
                call["status"] != 200
                for method in REPLY_METHODS
                for call in api(url, f"/_emulator/calls?method={method}&since={seq0 + 1}")["calls"]
            )
            seconds = t2 - t1
            return Run(
                round=round_no,
                bot=kind,
                updates=n,
                seconds=round(seconds, 3),
                updates_per_second=round(n / seconds, 1),
                replies_expected=expected,
                replies_seen=replies(after) - replies(before),
                failed_replies=failed,
                inject_seconds=round(t1 - t0, 3),
                bot_cpu_percent=round(100 * (cpu1[0] - cpu0[0]) / seconds),
                emulator_cpu_percent=round(100 * (cpu1[1] - cpu0[1]) / seconds),
                bot_peak_rss_mb=round(proc_status(bot.pid, "VmHWM") / 1024, 1),
            )
        finally:
            if bot is not None:
                stop(bot)
            stop(emulator)


# ------------------------------------------------------------------------------------------- main


def print_table(runs: list[Run]) -> None:
    head = (
        f"{'round':>5} {'bot':<8} {'upd/s':>8} {'secs':>7} {'replies':>13} {'fail':>4} "
        f"{'bot CPU':>7} {'emu CPU':>7} {'peak RSS':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        print(
            f"{r.round:>5} {r.bot:<8} {r.updates_per_second:>8.1f} {r.seconds:>7.2f} "
            f"{r.replies_seen:>6}/{r.replies_expected:<6} {r.failed_replies:>4} "
            f"{r.bot_cpu_percent:>6}% {r.emulator_cpu_percent:>6}% {r.bot_peak_rss_mb:>6.1f} MB"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    ap.add_argument("--updates", type=int, default=3000, help="measured updates per run (default 3000)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each bot, alternating (default 3)")
    ap.add_argument("--warmup", type=int, default=300, help="warm-up updates after the bot_added ones")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--log-level", default="INFO", help="LOG_LEVEL for both bots (default INFO, as deployed)")
    ap.add_argument("--profile", metavar="FILE", help="run our bot under cProfile, stats to FILE (slows it down)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too

    warmup = make_stream(args.seed + 1, args.warmup)
    measured = make_stream(args.seed, args.updates)
    mix = ", ".join(f"{k} {v}" for k, v in sorted(measured[1].items()))
    print(f"Throughput bench: {args.updates} measured updates ({mix}), {N_GROUPS} supergroups, {N_USERS} users,")
    print(
        f"warm-up {N_GROUPS}×bot_added + {args.warmup} updates, {args.rounds} rounds alternating; "
        f"LOG_LEVEL={args.log_level}."
    )
    print(
        "Emulator WITHOUT limit enforcement; our bot with its outbound limiter lifted "
        f"(GROUP_MESSAGES_PER_MINUTE = GLOBAL_/PRIVATE_MESSAGES_PER_SECOND = {LIFTED})."
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}; "
        "the emulator, the bot and this driver share them (and so may other processes).\n",
        flush=True,
    )

    runs: list[Run] = []
    try:
        for round_no in range(1, args.rounds + 1):
            for kind in ("baseline", "ours"):
                started = time.monotonic()
                runs.append(measure(kind, round_no, warmup, measured, args))
                r = runs[-1]
                print(
                    f"  round {round_no} {kind:<8} {r.updates_per_second:8.1f} upd/s "
                    f"(measured {r.seconds:.1f}s of a {time.monotonic() - started:.0f}s run)",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for proc in list(_procs):
            stop(proc)

    median = {k: statistics.median(r.updates_per_second for r in runs if r.bot == k) for k in ANSWERS}
    ratios = [o.updates_per_second / b.updates_per_second for b, o in zip(runs[0::2], runs[1::2], strict=True)]
    ratio = statistics.median(ratios)
    print()
    print_table(runs)
    print()
    print(
        f"median baseline {median['baseline']:.1f} upd/s · ours {median['ours']:.1f} upd/s · "
        f"median ratio ours/baseline {ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in ratios)})"
    )
    print(f"load average now {os.getloadavg()[0]:.2f} (other processes on the machine skew the figures)")
    print(f"target: ratio ≥ {TARGET_RATIO} → {'MET' if ratio >= TARGET_RATIO else 'NOT MET'}")

    if args.profile:
        print(f"cProfile stats of our bot in {args.profile}; profiled figures not written to {RESULTS}")
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "config": {
                    **vars(args),
                    "groups": N_GROUPS,
                    "users": N_USERS,
                    "mix_percent": MIX,
                    "measured_mix": dict(measured[1]),
                    "emulator_enforce_limits": False,
                    "our_outbound_limits": float(LIFTED),
                    "cpus": os.cpu_count(),
                    "python": sys.version.split()[0],
                    "loadavg_at_end": os.getloadavg()[0],
                },
                "runs": [asdict(r) for r in runs],
                "median_updates_per_second": median,
                "ratios": ratios,
                "median_ratio": ratio,
                "target_ratio": TARGET_RATIO,
                "target_met": ratio >= TARGET_RATIO,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
