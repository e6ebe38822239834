"""Private chat entry: /start, with deep-link payloads routed to the feature that made the link, and files
sent in private, routed to the feature that asked for one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram import Bot, F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.context import RequestContext
from bot.services import chats as chat_service
from bot.services import people as people_service
from bot.services import roles as role_service
from handlers.common import IN_PRIVATE, OnLoop
from storage.models import Chat

DeepLinkHandler = Callable[[Message, RequestContext, str], Awaitable[bool]]
# Payload prefix → handler. Features register here; a handler returns False when the payload is not theirs.
DEEP_LINKS: dict[str, DeepLinkHandler] = {}


AwaitedInput = Callable[[Message, RequestContext, str], Awaitable[None]]
# Kind of free-text answer the bot asked for in private (``PendingInput.kind``) → its handler, given the ref.
AWAITED_INPUTS: dict[str, AwaitedInput] = {}


def awaited_input(kind: str) -> Callable[[AwaitedInput], AwaitedInput]:
    def register(handler: AwaitedInput) -> AwaitedInput:
        AWAITED_INPUTS[kind] = handler
        return handler

    return register


AwaitedDocument = Callable[[Message, RequestContext, Bot, str], Awaitable[None]]
# Kind of file the bot asked for in private (``PendingInput.kind``) → its handler, given the ref.
AWAITED_DOCUMENTS: dict[str, AwaitedDocument] = {}
# A file nobody asked for is answered with how to ask for one: a locale key per feature that takes files.
DOCUMENT_HINTS: dict[str, str] = {}


def awaited_document(kind: str, hint: str) -> Callable[[AwaitedDocument], AwaitedDocument]:
    def register(handler: AwaitedDocument) -> AwaitedDocument:
        AWAITED_DOCUMENTS[kind] = handler
        DOCUMENT_HINTS[kind] = hint
        return handler

    return register


def deep_link(prefix: str) -> Callable[[DeepLinkHandler], DeepLinkHandler]:
    def register(handler: DeepLinkHandler) -> DeepLinkHandler:
        DEEP_LINKS[prefix] = handler
        return handler

    return register


async def committee_chat(ctx: RequestContext, chat_pk: int | None) -> tuple[Chat | None, str | None]:
    """The group a private request (a deep link, a private button) names, if the person is on its
    committee; else None and the refusal's key. The group key comes from outside and is checked here."""
    chat = await chat_service.get_chat_by_pk(ctx.session, chat_pk) if chat_pk is not None else None
    if chat is None:
        return None, "errors.button_expired"
    role = await role_service.role_in_chat(ctx.session, chat.id, ctx.person.id, ctx.superusers)
    if not role.is_committee:
        return None, "errors.committee_only"
    return chat, None


async def start(message: Message, ctx: RequestContext, command: CommandObject, bot: Bot) -> None:
    payload = (command.args or "").strip()
    if payload:
        prefix = payload.split("_", 1)[0]
        handler = DEEP_LINKS.get(prefix)
        if handler is not None and await handler(message, ctx, payload):
            return
    me = await bot.me()
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=ctx.t("start.add_to_group"), url=f"https://t.me/{me.username}?startgroup=1")]
        ]
    )
    ctx.replies.add(message.answer(ctx.t("start.intro"), reply_markup=keyboard))


async def private_document(message: Message, ctx: RequestContext, bot: Bot) -> None:
    """A file in private: for the feature whose file the bot waits for (lessons, a backup), with the
    ref it gave when it asked."""
    pending = await people_service.awaited_input(ctx.session, ctx.person.id)
    handler = AWAITED_DOCUMENTS.get(pending[0]) if pending is not None else None
    if handler is None:
        ctx.replies.add(message.reply("\n".join(ctx.t(key) for key in DOCUMENT_HINTS.values())))
        return
    await handler(message, ctx, bot, pending[1])


def build_router() -> Router:
    router = Router(name="start")
    router.message.register(start, CommandStart(), IN_PRIVATE)
    router.message.register(private_document, IN_PRIVATE, OnLoop(F.document))
    return router
