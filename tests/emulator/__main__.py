"""Standalone emulator: ``python -m tests.emulator --port 0`` prints ``EMULATOR_URL=...`` and serves
until SIGTERM/SIGINT. Drive it through the control API (``/_emulator/...``, see server.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .server import BotAPIEmulator


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--token", default="123456:TEST-TOKEN")
    ap.add_argument("--bot-id", type=int, default=None, help="default: the token's numeric prefix")
    ap.add_argument("--bot-username", default="branch_test_bot")
    ap.add_argument("--bot-name", default="支部群助手")
    ap.add_argument("--enforce-limits", action="store_true", help="emulate Telegram's flood limits (429)")
    return ap.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emu = BotAPIEmulator(
        token=args.token,
        bot_id=args.bot_id,
        bot_username=args.bot_username,
        bot_name=args.bot_name,
        enforce_limits=args.enforce_limits,
    )
    url = await emu.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"EMULATOR_URL={url}", flush=True)
    try:
        await stop.wait()
    finally:
        await emu.stop()
        print(f"EMULATOR_STATS={emu.stats()}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
