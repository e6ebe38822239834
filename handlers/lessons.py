"""The 每日党课 library: /lessons in the group (what the library holds, and "📥 导入课程"), then the lesson
file that the committee member sends the bot in private, and the import report, line by line."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import chats as chat_service
from bot.services import lesson_files
from bot.services import lessons as lesson_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services.errors import DomainError
from bot.services.lesson_files import Problem
from handlers.common import explain, quote, require_committee_message, require_group_committee_callback
from handlers.start import deep_link

TITLES_SHOWN = 10
PROBLEMS_SHOWN = 30
AWAITED = "lesson_import"


class LibraryButton(CallbackData, prefix="lsn"):
    action: str  # import


def library_view(t: Translator, lessons) -> tuple[str, InlineKeyboardMarkup]:
    own = [lesson for lesson in lessons if lesson.chat_id is not None]
    lines = [t("lessons.library_title", own=len(own), pack=len(lessons) - len(own))]
    for index, lesson in enumerate(lessons[:TITLES_SHOWN], 1):
        mark = t("lessons.has_quiz") if lesson.quiz_question else ""
        lines.append(f"{index}. {quote(lesson.title)}{mark}")
    if len(lessons) > TITLES_SHOWN:
        lines.append(t("lessons.more", count=len(lessons) - TITLES_SHOWN))
    lines.append(t("lessons.import_hint"))
    button = InlineKeyboardButton(text=t("lessons.import_button"), callback_data=LibraryButton(action="import").pack())
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=[[button]])


def problem_line(t: Translator, problem: Problem) -> str:
    params = dict(problem.params)
    if "field" in params:
        params["field"] = t(f"lessons.field_{params['field']}")
    params = {key: quote(str(value)) for key, value in params.items()}
    return t("lessons.problem_line", line=problem.line, text=t(problem.key, **params))


def report_text(t: Translator, report: lesson_service.ImportReport, group: str) -> str:
    if not report.problems:
        return t("lessons.imported", count=report.imported, group=quote(group))
    lines = [t("lessons.import_refused", count=len(report.problems), readable=report.readable)]
    lines += [problem_line(t, problem) for problem in report.problems[:PROBLEMS_SHOWN]]
    if len(report.problems) > PROBLEMS_SHOWN:
        lines.append(t("lessons.more_problems", count=len(report.problems) - PROBLEMS_SHOWN))
    lines.append(t("lessons.send_again"))
    return "\n".join(lines)


async def lessons_command(message: Message, ctx: RequestContext) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    text, keyboard = library_view(ctx.t, await lesson_service.library(ctx.session, ctx.chat.id))
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def _ask_for_file(ctx: RequestContext, user_id: int, chat_pk: int, title: str | None) -> None:
    await people_service.expect_input(ctx.session, user_id, AWAITED, str(chat_pk))
    ctx.replies.add(SendMessage(chat_id=user_id, text=ctx.t("lessons.send_file", group=quote(title or ""))))


async def library_button(callback: CallbackQuery, callback_data: LibraryButton, ctx: RequestContext, bot: Bot) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    if callback_data.action != "import":
        ctx.replies.add(callback.answer(ctx.t("errors.button_expired"), show_alert=True))
        return
    # The file comes in private: at once if the member has started the bot, else through a link.
    if await people_service.reachable_users(ctx.session, [ctx.person.id]):
        await _ask_for_file(ctx, ctx.person.id, ctx.chat.id, ctx.chat.title)
        ctx.replies.add(callback.answer(ctx.t("lessons.check_private"), show_alert=True))
        return
    me = await bot.me()
    ctx.replies.add(callback.answer(url=f"https://t.me/{me.username}?start=lsn_{ctx.chat.id}"))


@deep_link("lsn")
async def import_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    _, _, ref = payload.partition("_")
    chat = await chat_service.get_chat_by_pk(ctx.session, int(ref)) if ref.isdigit() else None
    if chat is None:
        ctx.replies.add(message.answer(ctx.t("errors.button_expired")))
        return True
    role = await role_service.role_in_chat(ctx.session, chat.id, ctx.person.id, ctx.superusers)
    if not role.is_committee:
        ctx.replies.add(message.answer(ctx.t("errors.committee_only")))
        return True
    await _ask_for_file(ctx, ctx.person.id, chat.id, chat.title)
    return True


async def lesson_file(message: Message, ctx: RequestContext, bot: Bot) -> None:
    """A file in private: the lessons the bot asked for, for the group named when it asked."""
    t = ctx.t
    pending = await people_service.awaited_input(ctx.session, ctx.person.id)
    if pending is None or pending[0] != AWAITED:
        ctx.replies.add(message.reply(t("lessons.file_unexpected")))
        return
    chat = await chat_service.get_chat_by_pk(ctx.session, int(pending[1]))
    role = await role_service.role_in_chat(ctx.session, chat.id, ctx.person.id, ctx.superusers) if chat else None
    if chat is None or role is None or not role.is_committee:
        ctx.replies.add(message.reply(t("errors.committee_only")))
        return
    document = message.document
    try:
        if (document.file_size or 0) > lesson_files.MAX_FILE_BYTES:
            raise DomainError("lessons.file_too_big", limit=lesson_files.MAX_FILE_BYTES // 1024)
        lesson_files.format_of(document.file_name or "")
        data = (await bot.download(document.file_id)).read()
        report = await lesson_service.import_file(
            ctx.session, chat.id, ctx.person.id, document.file_name or "", data, ctx.clock.now()
        )
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    if report.imported:
        await people_service.drop_input(ctx.session, ctx.person.id, AWAITED, pending[1])
    ctx.replies.add(message.reply(report_text(t, report, chat.title or "")))


def build_router() -> Router:
    router = Router(name="lessons")
    router.message.register(lessons_command, Command("lessons"), F.chat.type.in_({"group", "supergroup"}))
    router.message.register(lesson_file, F.chat.type == "private", F.document)
    router.callback_query.register(library_button, LibraryButton.filter())
    return router
