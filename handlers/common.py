"""Small pieces every router uses: where a command came from, and polite refusals."""

from __future__ import annotations

from html import escape

from aiogram.types import CallbackQuery, Message

from bot.commands import GROUP, PRIVATE
from bot.context import RequestContext
from bot.i18n import Translator
from bot.services.errors import DomainError
from bot.services.timephrase import PhraseError


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
