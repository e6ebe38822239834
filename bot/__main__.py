"""`python -m bot [run|migrate|check]` — also installed as the `branch-assistant` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.config import ConfigError, Settings, load_settings


class StartupError(Exception):
    """Something the operator must fix; printed as one line."""


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:300]


async def _open_database(settings: Settings):
    from sqlalchemy.exc import SQLAlchemyError

    from storage.db import Database
    from storage.migrate import upgrade_to_head

    try:
        db = Database(settings.database_url)
    except (ValueError, SQLAlchemyError, ImportError) as error:
        raise StartupError(f"DATABASE_URL is not usable: {_describe(error)}") from None
    except OSError as error:
        raise StartupError(f"cannot open the database: {_describe(error)}") from None
    try:
        await upgrade_to_head(db.engine)
    except (OSError, SQLAlchemyError) as error:
        await db.dispose()
        raise StartupError(f"cannot open the database: {_describe(getattr(error, 'orig', None) or error)}") from None
    return db


async def _who_am_i(bot):
    from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError

    try:
        return await bot.me()
    except TelegramUnauthorizedError:
        raise StartupError("the Bot API rejected BOT_TOKEN (401 Unauthorized)") from None
    except TelegramAPIError as error:
        raise StartupError(f"cannot reach the Bot API server: {_describe(error)}") from None
    except OSError as error:
        raise StartupError(f"cannot reach the Bot API server: {_describe(error)}") from None


async def migrate(settings: Settings) -> None:
    db = await _open_database(settings)
    await db.dispose()
    print("database is up to date")


async def check(settings: Settings) -> None:
    from bot.app import build_bot

    token = settings.token()
    db = await _open_database(settings)
    try:
        await db.ping()
    finally:
        await db.dispose()
    bot = build_bot(token, settings.bot_api_url)
    try:
        me = await _who_am_i(bot)
    finally:
        await bot.session.close()
    print(f"ok: @{me.username} (id {me.id}, {me.full_name}); database ready; Bot API at {settings.bot_api_url}")


async def run(settings: Settings) -> None:
    from bot.app import WebhookRefused, build_application, publish_commands, run_polling, run_webhook

    settings.token()
    db = await _open_database(settings)
    await db.dispose()
    app = build_application(settings)
    try:
        me = await _who_am_i(app.bot)
        logging.getLogger("bot").info(
            "starting as @%s (%s)", me.username, "webhook" if settings.webhook_url else "polling"
        )
        await publish_commands(app.bot, settings.default_language)
        if settings.webhook_url:
            try:
                await run_webhook(app)
            except WebhookRefused as error:
                raise StartupError(f"the Bot API refused WEBHOOK_URL: {error}") from None
        else:
            await run_polling(app)
    finally:
        await app.close()


COMMANDS = {"run": run, "migrate": migrate, "check": check}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="branch-assistant", description="支部群助手 Branch Assistant")
    parser.add_argument("command", nargs="?", default="run", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # One "Added job" line per schedule at every start, and two lines per firing, say nothing useful.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        asyncio.run(COMMANDS[args.command](settings))
    except (ConfigError, StartupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
