"""Loopback Telegram Bot API emulator shared by the tests and the benchmark.

In-process::

    emu = BotAPIEmulator(token="123456:TEST-TOKEN")
    await emu.start()                      # emu.base_url == "http://127.0.0.1:PORT"
    bot = Bot(emu.token, session=AiohttpSession(api=TelegramAPIServer.from_base(emu.base_url)))

Standalone (benchmarks)::

    python -m tests.emulator --port 0      # prints EMULATOR_URL=http://127.0.0.1:PORT
"""

from .markup import ParseError, parse_text
from .server import ApiError, BotAPIEmulator, Call, Fault

__all__ = ["ApiError", "BotAPIEmulator", "Call", "Fault", "ParseError", "parse_text"]
