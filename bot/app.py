"""Builds the bot, the dispatcher and the delivery path: the same factory serves production and tests."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
)

from bot.caches import chat_cache, role_cache
from bot.commands import GROUP, PRIVATE, commands_for
from bot.config import Settings
from bot.delivery import Delivery, RateLimiter
from bot.i18n import SUPPORTED_LANGUAGES, Translator
from bot.meeting_updates import MeetingUpdates
from bot.middlewares import ClaimBatcher, ContextMiddleware, InFlight, RosterKeeper, UpdateTransactionMiddleware
from bot.notice_updates import NoticeUpdates
from bot.outbox import OutboxKind, OutboxWorker
from bot.scheduler import Scheduler
from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import lessons as lesson_service
from bot.services import meetings as meeting_service
from bot.services import people as people_service
from bot.services import points as points_service
from bot.services import reports as report_service
from bot.services import schedules as schedule_service
from bot.services.clock import Clock, SystemClock
from bot.services.maintenance import prune_processed_updates
from bot.services.roles import Role
from bot.throttle import FloodGuard, ThrottleMiddleware
from handlers import build_root_router, writing_buttons
from handlers import compliance as compliance_view
from handlers import lessons as lesson_view
from handlers import ranking as ranking_view
from handlers import reports as report_view
from handlers import schedules as schedule_view
from storage import lessons as lesson_store
from storage.db import Database

log = logging.getLogger(__name__)


class WebhookRefused(Exception):
    """Telegram would not take our webhook URL (e.g. not HTTPS)."""


SHUTDOWN_GRACE_SECONDS = 10.0


def _keep_response_types() -> list[type]:
    """aiogram parses every answer with ``Response[<result type>]``; pydantic keeps those generic
    classes only weakly, so they are rebuilt (slowly) after each garbage collection. Hold the ones
    this bot uses."""
    from aiogram import methods
    from aiogram.methods.base import Response

    used = (
        methods.GetUpdates,
        methods.GetMe,
        methods.SendMessage,
        methods.EditMessageText,
        methods.EditMessageReplyMarkup,
        methods.AnswerCallbackQuery,
        methods.SendDocument,
        methods.SendPhoto,
        methods.SendPoll,
        methods.GetChatAdministrators,
        methods.GetChatMember,
        methods.GetChat,
        methods.PinChatMessage,
        methods.SetMyCommands,
        methods.DeleteWebhook,
        methods.SetWebhook,
    )
    return [Response[method.__returning__] for method in used]


_RESPONSE_TYPES = _keep_response_types()


def build_bot(token: str, api_url: str) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode="HTML"))


@dataclass
class Application:
    settings: Settings
    db: Database
    bot: Bot
    delivery: Delivery
    dispatcher: Dispatcher
    clock: Clock
    in_flight: InFlight
    outbox: OutboxWorker
    notice_updates: NoticeUpdates
    meeting_updates: MeetingUpdates
    scheduler: Scheduler
    _housekeeping: asyncio.Task | None = None

    async def start_workers(self) -> None:
        """What runs beside the updates: the outbox, live notice counts, the schedule timer, housekeeping."""
        await self.outbox.start()
        await self.notice_updates.resume()
        await self.meeting_updates.resume()
        await self.scheduler.start()
        self._housekeeping = asyncio.create_task(housekeeping(self))

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        await self.scheduler.stop()
        await self.outbox.stop()
        await self.dispatcher["roster"].flush()
        await self.bot.session.close()
        await self.db.dispose()


def build_delivery(bot: Bot, db: Database, settings: Settings) -> Delivery:
    async def on_forbidden(chat_id: int) -> None:
        async with db.transaction() as session:
            if chat_id < 0:
                await chat_service.deactivate_chat(session, chat_id)
            else:
                await people_service.mark_blocked(session, chat_id)

    async def on_migrated(old_chat_id: int, new_chat_id: int) -> None:
        async with db.transaction() as session:
            await chat_service.migrate_chat(session, old_chat_id, new_chat_id)

    limiter = RateLimiter(
        global_per_second=settings.global_messages_per_second,
        group_per_minute=settings.group_messages_per_minute,
        private_per_second=settings.private_messages_per_second,
    )
    return Delivery(bot, limiter, on_forbidden=on_forbidden, on_migrated=on_migrated)


def build_dispatcher(
    *,
    settings: Settings,
    db: Database,
    delivery: Delivery,
    clock: Clock,
    in_flight: InFlight,
    notice_updates: NoticeUpdates,
    meeting_updates: MeetingUpdates,
) -> Dispatcher:
    roster = RosterKeeper(db, clock)
    dispatcher = Dispatcher(
        db=db,
        delivery=delivery,
        clock=clock,
        settings=settings,
        roster=roster,
        notice_updates=notice_updates,
        meeting_updates=meeting_updates,
    )
    claims = ClaimBatcher(db)
    # First of all: a flooding user's updates are dropped before they cost a transaction.
    guard = FloodGuard(clock, burst=settings.throttle_burst, per_minute=settings.throttle_per_minute)
    dispatcher.update.outer_middleware(
        ThrottleMiddleware(
            guard,
            db=db,
            claims=claims,
            delivery=delivery,
            in_flight=in_flight,
            superusers=settings.superuser_ids,
            default_language=settings.default_language,
        )
    )
    dispatcher.update.outer_middleware(
        UpdateTransactionMiddleware(
            db, delivery, in_flight, settings.default_language, writing_buttons=writing_buttons(), claims=claims
        )
    )
    dispatcher.update.outer_middleware(
        ContextMiddleware(
            clock,
            default_language=settings.default_language,
            default_timezone=settings.timezone,
            superusers=settings.superuser_ids,
            roster=roster,
            chat_cache=chat_cache(),
            role_cache=role_cache(),
        )
    )
    dispatcher.include_router(build_root_router())
    return dispatcher


def build_application(settings: Settings, *, clock: Clock | None = None) -> Application:
    clock = clock or SystemClock()
    db = Database(settings.database_url)
    bot = build_bot(settings.token(), settings.bot_api_url)
    delivery = build_delivery(bot, db, settings)
    in_flight = InFlight()
    defaults = {"default_language": settings.default_language, "default_timezone": settings.timezone}
    lesson_store.default_language = settings.default_language  # whose sample pack a group without a language gets
    notice_updates = NoticeUpdates(db, delivery, clock, **defaults)
    meeting_updates = MeetingUpdates(db, delivery, clock, **defaults)
    kinds = {
        **notice_updates.outbox_kinds(),
        **meeting_updates.outbox_kinds(),
        "announcement": OutboxKind(schedule_view.render_announcement),
        attendance_service.COMPLIANCE: OutboxKind(compliance_view.render_compliance),
        "lesson_post": OutboxKind(
            lesson_view.render_post, on_sent=lesson_view.posted, on_unknown=lesson_view.post_unknown
        ),
        "lesson_quiz": OutboxKind(lesson_view.render_quiz, on_sent=lesson_view.quiz_posted),
        lesson_service.EXHAUSTED: OutboxKind(lesson_view.render_exhausted),
        points_service.BOARD_POST: OutboxKind(ranking_view.render_board),
        report_service.MONTHLY: OutboxKind(report_view.render_monthly),
    }
    outbox = OutboxWorker(db, delivery, clock, kinds, **defaults)
    # The timer follows the real clock; with a clock under a test's control, the test runs what is due.
    scheduler = Scheduler(db, clock, timer=isinstance(clock, SystemClock), **defaults)
    dispatcher = build_dispatcher(
        settings=settings,
        db=db,
        delivery=delivery,
        clock=clock,
        in_flight=in_flight,
        notice_updates=notice_updates,
        meeting_updates=meeting_updates,
    )
    return Application(
        settings, db, bot, delivery, dispatcher, clock, in_flight, outbox, notice_updates, meeting_updates, scheduler
    )


async def publish_commands(bot: Bot, default_language: str) -> None:
    """setMyCommands per language and scope: members see member commands, admins also committee ones."""
    scopes = (
        (BotCommandScopeAllPrivateChats(), PRIVATE, Role.MEMBER),
        (BotCommandScopeAllGroupChats(), GROUP, Role.MEMBER),
        (BotCommandScopeAllChatAdministrators(), GROUP, Role.SECRETARY),
    )
    for language in (None, *SUPPORTED_LANGUAGES):
        t = Translator(language or default_language)
        for scope, where, role in scopes:
            commands = [
                BotCommand(command=spec.name, description=t(f"commands.{spec.name}"))
                for spec in commands_for(where, role)
            ]
            await bot.set_my_commands(commands, scope=scope, language_code=language)


def allowed_updates(dispatcher: Dispatcher) -> list[str]:
    return sorted(set(dispatcher.resolve_used_update_types()) | {"message", "callback_query", "my_chat_member"})


HOUSEKEEPING_INTERVAL_SECONDS = 6 * 3600


async def housekeeping(app: Application) -> None:
    """Runs for the life of the process: prune what is no longer needed, then sleep."""
    while True:
        try:
            async with app.db.transaction() as session:
                pruned = await prune_processed_updates(session, app.clock.now())
                drafts = await schedule_service.forget_stale_drafts(session, app.clock.now())
                drafts += await meeting_service.forget_stale_drafts(session, app.clock.now())
                groups = await chat_service.active_group_ids(session)
            routines = 0
            defaults = {"default_language": app.settings.default_language, "default_timezone": app.settings.timezone}
            for chat_pk in groups:
                # One short transaction per group: with a thousand groups, one transaction held the write
                # lock (and on PostgreSQL every group's row) for seconds after each start.
                async with app.db.transaction() as session:
                    routines += await schedule_service.ensure_group_routines(
                        session, chat_pk, app.clock.now(), **defaults
                    )
            log.info(
                "housekeeping: forgot %s old update ids and %s stale drafts; made %s routine schedules",
                pruned,
                drafts,
                routines,
            )
        except Exception:
            log.exception("housekeeping failed")
        try:
            async with app.db.transaction() as session:
                if added := await lesson_service.ensure_sample_pack(session, app.clock.now()):
                    log.info("housekeeping: the sample pack's %s lessons are in the library", added)
        except Exception:
            log.exception("loading the sample lesson pack failed")
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_SECONDS)


async def run_polling(app: Application) -> None:
    await app.bot.delete_webhook(drop_pending_updates=False)
    await app.start_workers()
    await _poll(app)


async def _poll(app: Application) -> None:
    await app.dispatcher.start_polling(
        app.bot,
        allowed_updates=allowed_updates(app.dispatcher),
        tasks_concurrency_limit=app.settings.max_concurrent_updates,
        handle_signals=True,
        close_bot_session=False,
    )
    # Polling has stopped taking updates; let the ones in hand finish before the database closes.
    if not await app.in_flight.wait_idle(timeout=SHUTDOWN_GRACE_SECONDS):
        log.warning("%s updates still in progress at shutdown", app.in_flight.count)


async def run_webhook(app: Application) -> None:
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    settings = app.settings
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    web_app = web.Application()
    SimpleRequestHandler(app.dispatcher, app.bot, secret_token=secret).register(web_app, path=settings.webhook_path)
    setup_application(web_app, app.dispatcher, bot=app.bot)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
    await site.start()
    try:
        await app.bot.set_webhook(
            settings.webhook_url + settings.webhook_path,
            secret_token=secret,
            allowed_updates=allowed_updates(app.dispatcher),
        )
    except TelegramBadRequest as error:
        await runner.cleanup()
        raise WebhookRefused(error.message) from None
    log.info("webhook listening on %s:%s%s", settings.webhook_host, settings.webhook_port, settings.webhook_path)
    await app.start_workers()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await app.in_flight.wait_idle(timeout=SHUTDOWN_GRACE_SECONDS)
