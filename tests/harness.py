"""Run the bot against the emulator: in this process (the production factory, polling over HTTP) or as
the real `python -m bot` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from bot.app import Application, allowed_updates, build_application
from bot.config import Settings
from bot.services.clock import Clock
from storage.migrate import upgrade_to_head
from tests.emulator import BotAPIEmulator

ROOT = Path(__file__).resolve().parent.parent


def settings_for(emulator: BotAPIEmulator, database_url: str, **overrides) -> Settings:
    values = {
        "bot_token": emulator.token,
        "bot_api_url": emulator.base_url,
        "database_url": database_url,
        "superuser_ids": frozenset(),
        **overrides,
    }
    return Settings(_env_file=None, **values)


class BotHarness:
    """The production Application, polling the emulator from inside the test's event loop."""

    def __init__(self, emulator: BotAPIEmulator, database_url: str, *, clock: Clock | None = None, **settings):
        self.emulator = emulator
        self.settings = settings_for(emulator, database_url, **settings)
        self.clock = clock
        self.app: Application | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> BotHarness:
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
            )
        )
        await self.emulator.wait_for_call("getMe", timeout=10)
        return self

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every injected update has been taken and handled, replies included."""
        await self.emulator.wait_until_consumed(timeout=timeout)
        for _ in range(3):  # handler tasks start right after the batch is taken; let them register
            await asyncio.sleep(0.01)
            assert await self.app.in_flight.wait_idle(timeout=timeout), "updates still in progress"
        # Each step is bounded, so that a hang fails the test saying where it hung.
        await self._step("roster flush", self.app.dispatcher["roster"].flush(), timeout)  # sightings, batched
        await self._step("due schedules", self.app.scheduler.run_due(), timeout)  # a frozen clock has no timer
        await self.app.outbox.drain(timeout)  # what the updates planned to send
        await self._step("notice updates", self.app.notice_updates.flush(), timeout)  # counts, without pauses
        await self._step("meeting updates", self.app.meeting_updates.flush(), timeout)
        await self.app.outbox.drain(timeout)  # what finishing a broadcast planned

    @staticmethod
    async def _step(name: str, step, timeout: float) -> None:
        try:
            await asyncio.wait_for(step, timeout)
        except TimeoutError:
            raise AssertionError(f"settle: {name} did not finish within {timeout} s") from None

    async def stop(self) -> None:
        """Stop polling, let updates in hand finish, close. Safe to call twice."""
        if self._task is not None:
            with contextlib.suppress(RuntimeError):
                await self.app.dispatcher.stop_polling()
            await asyncio.wait_for(self._task, 10)
            await self.app.in_flight.wait_idle(timeout=10)
            self._task = None
        if self.app is not None:
            await self.app.close()
            self.app = None

    async def __aenter__(self) -> BotHarness:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


class BotProcess:
    """`python -m bot` as a child process talking HTTP to the emulator."""

    def __init__(self, emulator: BotAPIEmulator, database_url: str, *args: str, **env: str) -> None:
        self.emulator = emulator
        self.args = args or ("run",)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "WEBHOOK_", "DATABASE_"))},
            "BOT_TOKEN": emulator.token,
            "BOT_API_URL": emulator.base_url,
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: asyncio.subprocess.Process | None = None
        self.output = b""

    async def start(self, wait_for_polling: bool = True) -> BotProcess:
        """Start the process; with ``wait_for_polling``, return once its first getUpdates has arrived (not
        once it is answered: with nothing pending, that is a whole long poll later)."""
        polls_before = self.emulator.polls_started
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *self.args,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        if wait_for_polling:
            await self.emulator.wait_for(
                lambda: self.emulator.polls_started > polls_before or self.process.returncode is not None,
                timeout=60,
            )
            assert self.process.returncode is None, self.text()
        return self

    async def _read(self) -> None:
        assert self.process and self.process.stdout
        while chunk := await self.process.stdout.read(65536):
            self.output += chunk

    def text(self) -> str:
        return self.output.decode(errors="replace")

    async def wait(self, timeout: float = 60) -> int:
        assert self.process
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await self._reader
        return code

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        return await self.wait(timeout=30)

    async def kill(self) -> int:
        return await self.stop(signal.SIGKILL)
