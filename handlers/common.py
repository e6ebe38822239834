"""Small pieces every router uses: where a command came from, and polite refusals."""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from aiogram import F
from aiogram.filters import Filter
from aiogram.types import CallbackQuery, Message, TelegramObject
from magic_filter import MagicFilter
from pydantic import Field

from bot.commands import GROUP, PRIVATE
from bot.context import RequestContext
from bot.i18n import Translator
from bot.services.errors import DomainError
from bot.services.timephrase import PhraseError


class OnLoop(Filter):
    """A magic filter (``F.chat.type == "private"``) checked on the event loop.

    aiogram runs a filter that is not a coroutine function in a worker thread (``asyncio.to_thread``),
    and a magic filter is a plain function: every check was a thread hop, about a seventh of the work
    of a /help. Wrapped, the same check is a function call."""

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        return self.magic.resolve(event)


IN_GROUP = OnLoop(F.chat.type.in_({"group", "supergroup"}))
IN_PRIVATE = OnLoop(F.chat.type == "private")

# Ids in callback data and deep links are untrusted input. A number larger than its column holds names no
# row, yet a query with it fails in the database driver (SQLite's past 64 bits) instead of finding nothing.
# Buttons type their ids with these, so that such data is refused like any other malformed button: row ids
# within PostgreSQL's 32-bit INTEGER, Telegram's user ids within 64 bits.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Field(ge=0, le=MAX_ROW_ID)]
UserId = Annotated[int, Field(ge=0, le=2**63 - 1)]


def parse_row_id(text: str) -> int | None:
    """A row id written in a deep link: ASCII digits within range (``int`` would also read
    "٣", and ``isdigit`` passes "²", which ``int`` refuses); None for anything else."""
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ROW_ID))):
        return None
    number = int(text)
    return number if number <= MAX_ROW_ID else None


def where_of(chat_type: str) -> str:
    return PRIVATE if chat_type == "private" else GROUP


def quote(text: str | None) -> str:
    """User text, safe to put into an HTML-formatted message."""
    return escape(text or "", quote=False)


def explain(t: Translator, error: DomainError, *, html: bool = True) -> str:
    """The user's-language sentence for a refused request. A time phrase that could not be read is
    explained with what was understood of it."""
    if isinstance(error, PhraseError):
        from handlers.timephrases import explain_failure  # it builds on this module

        return explain_failure(error, t)
    return sentence_of(t, error, html=html)


def sentence_of(t: Translator, error: DomainError, *, html: bool = True) -> str:
    """The sentence for the error's key. Its values are user input, so they are escaped for HTML
    messages; callback alerts are plain text and take them as they are."""
    return t(error.key, **{key: quote(str(value)) if html else str(value) for key, value in error.params.items()})


def refuse_message(ctx: RequestContext, message: Message, key: str, **params: object) -> None:
    ctx.replies.add(message.reply(ctx.t(key, **params)))


def refuse_callback(ctx: RequestContext, callback: CallbackQuery, key: str, **params: object) -> None:
    ctx.replies.add(callback.answer(ctx.t(key, **params), show_alert=True))


async def require_committee_message(ctx: RequestContext, message: Message) -> bool:
    if await ctx.is_committee():
        return True
    refuse_message(ctx, message, "errors.committee_only")
    return False


async def require_committee_callback(ctx: RequestContext, callback: CallbackQuery) -> bool:
    if await ctx.is_committee():
        return True
    refuse_callback(ctx, callback, "errors.committee_only")
    return False


async def require_group_committee_callback(ctx: RequestContext, callback: CallbackQuery) -> bool:
    """A committee button on a message in a group: refuses it anywhere else, or from a member."""
    if ctx.chat is None or callback.message is None:
        refuse_callback(ctx, callback, "errors.button_expired")
        return False
    return await require_committee_callback(ctx, callback)


def refuse_callback_error(ctx: RequestContext, callback: CallbackQuery, error: DomainError) -> None:
    """A refused button press: the reason as an alert (plain text: alerts take no HTML)."""
    ctx.replies.add(callback.answer(explain(ctx.t, error, html=False), show_alert=True))
