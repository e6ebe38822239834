"""The 每日党课 library: /lessons in the group (what the library holds, and "📥 导入课程"), then the lesson
file that the committee member sends the bot in private, and the import report, line by line."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage, SendPoll, TelegramMethod
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputPollOption,
    Message,
    PollAnswer,
    ReplyParameters,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import chats as chat_service
from bot.services import lesson_files
from bot.services import lessons as lesson_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services import schedules as schedule_service
from bot.services.errors import DomainError
from bot.services.lesson_files import Problem
from handlers.common import (
    explain,
    quote,
    refuse_callback_error,
    require_committee_message,
    require_group_committee_callback,
)
from handlers.start import deep_link
from handlers.timephrases import describe

if TYPE_CHECKING:
    from bot.outbox import Envelope

TITLES_SHOWN = 10
PROBLEMS_SHOWN = 30
AWAITED = "lesson_import"


class LibraryButton(CallbackData, prefix="lsn"):
    action: str  # import | push (value: "d2000", "w0730", "off", or "" for the menu) | back
    value: str = ""


class StudyButton(CallbackData, prefix="lst"):
    push_id: int


def push_text(t: Translator, schedule) -> str:
    if schedule is None or schedule.status != "active":
        return t("lessons.push_off")
    return t("lessons.push_on", rule=quote(describe(schedule_service.rule_of(schedule.rule), t)))


def library_view(t: Translator, lessons, schedule=None) -> tuple[str, InlineKeyboardMarkup]:
    own = [lesson for lesson in lessons if lesson.chat_id is not None]
    lines = [t("lessons.library_title", own=len(own), pack=len(lessons) - len(own)), push_text(t, schedule)]
    for index, lesson in enumerate(lessons[:TITLES_SHOWN], 1):
        mark = t("lessons.has_quiz") if lesson.quiz_question else ""
        lines.append(f"{index}. {quote(lesson.title)}{mark}")
    if len(lessons) > TITLES_SHOWN:
        lines.append(t("lessons.more", count=len(lessons) - TITLES_SHOWN))
    lines.append(t("lessons.import_hint"))
    buttons = [
        InlineKeyboardButton(text=t("lessons.import_button"), callback_data=LibraryButton(action="import").pack()),
        InlineKeyboardButton(text=t("lessons.push_button"), callback_data=LibraryButton(action="push").pack()),
    ]
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=[buttons])


def push_menu(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    rows = [
        [
            InlineKeyboardButton(
                text=f"{t(f'lessons.days_{days}')} {time[:2]}:{time[2:]}",
                callback_data=LibraryButton(action="push", value=days + time).pack(),
            )
            for time in lesson_service.PUSH_TIMES
        ]
        for days in lesson_service.PUSH_DAYS
    ]
    rows = [row[:3] for row in rows] + [row[3:] for row in rows]
    rows.append(
        [
            InlineKeyboardButton(
                text=t("lessons.push_stop"), callback_data=LibraryButton(action="push", value="off").pack()
            ),
            InlineKeyboardButton(text=t("lessons.back"), callback_data=LibraryButton(action="back").pack()),
        ]
    )
    return t("lessons.push_choose"), InlineKeyboardMarkup(inline_keyboard=rows)


def post_text(t: Translator, lesson) -> str:
    return t("lessons.post", title=quote(lesson.title), body=quote(lesson.body), source=quote(lesson.source))


def study_keyboard(t: Translator, push_id: int) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(text=t("lessons.studied_button"), callback_data=StudyButton(push_id=push_id).pack())
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


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
    text, keyboard = await _library(ctx)
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def _library(ctx: RequestContext):
    lessons = await lesson_service.library(ctx.session, ctx.chat.id)
    return library_view(ctx.t, lessons, await lesson_service.push_of(ctx.session, ctx.chat.id))


async def _ask_for_file(ctx: RequestContext, user_id: int, chat_pk: int, title: str | None) -> None:
    await people_service.expect_input(ctx.session, user_id, AWAITED, str(chat_pk))
    ctx.replies.add(SendMessage(chat_id=user_id, text=ctx.t("lessons.send_file", group=quote(title or ""))))


async def library_button(callback: CallbackQuery, callback_data: LibraryButton, ctx: RequestContext, bot: Bot) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    if callback_data.action in ("push", "back"):
        await _push_choice(callback, callback_data, ctx)
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


async def _push_choice(callback: CallbackQuery, callback_data: LibraryButton, ctx: RequestContext) -> None:
    t, value = ctx.t, callback_data.value
    if callback_data.action == "push" and not value:
        text, keyboard = push_menu(t)
        ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
        ctx.replies.add(callback.answer())
        return
    if callback_data.action == "push":
        try:
            await lesson_service.set_push(
                ctx.session,
                ctx.chat.id,
                ctx.person.id,
                None if value == "off" else value,
                ctx.group_settings,
                ctx.clock.now(),
            )
        except DomainError as error:
            refuse_callback_error(ctx, callback, error)
            return
    text, keyboard = await _library(ctx)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer(t("lessons.saved") if callback_data.action == "push" else None))


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


# ------------------------------------------------------------------------------------------ the daily push


async def render_post(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    found = await lesson_service.pushed(session, envelope.args["push_id"])
    if found is None or found[0].message_id is not None:
        return None
    push, lesson = found
    t = envelope.t
    return SendMessage(chat_id=envelope.recipient, text=post_text(t, lesson), reply_markup=study_keyboard(t, push.id))


async def posted(session: AsyncSession, envelope: Envelope, message) -> list[TelegramMethod]:
    now = message.date if message.date.tzinfo else message.date.replace(tzinfo=UTC)
    await lesson_service.record_posted(session, envelope.args["push_id"], message.message_id, envelope.key, now)
    return []


async def render_quiz(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    found = await lesson_service.pushed(session, envelope.args["push_id"])
    if found is None or found[0].poll_id is not None or not found[1].quiz_question:
        return None
    lesson = found[1]
    return SendPoll(
        chat_id=envelope.recipient,
        question=lesson.quiz_question,
        question_parse_mode=None,  # plain text: a "<" in a question must not be read as markup
        options=[InputPollOption(text=option, text_parse_mode=None) for option in lesson_service.quiz_options(lesson)],
        type="quiz",
        correct_option_id=lesson.quiz_answer,
        is_anonymous=False,  # so that each member's answer reaches the bot
        reply_parameters=ReplyParameters(message_id=found[0].message_id, allow_sending_without_reply=True),
    )


async def quiz_posted(session: AsyncSession, envelope: Envelope, message) -> list[TelegramMethod]:
    if message.poll is not None:
        await lesson_service.record_quiz_posted(session, envelope.args["push_id"], message.poll.id)
    return []


async def study_button(callback: CallbackQuery, callback_data: StudyButton, ctx: RequestContext) -> None:
    if ctx.person is None:
        return
    chat_pk = ctx.chat.id if ctx.chat is not None else None
    try:
        result = await lesson_service.study(ctx.session, callback_data.push_id, ctx.person.id, chat_pk, ctx.clock.now())
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    # The group's post is not edited per tap (dozens of taps after a push would spend the group's 20
    # messages a minute); a private copy loses its button once used.
    if result.new and chat_pk is None and callback.message is not None:
        ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
    ctx.replies.add(callback.answer(ctx.t("lessons.studied" if result.new else "lessons.studied_already")))


async def quiz_answer(poll_answer: PollAnswer, ctx: RequestContext) -> None:
    if poll_answer.user is None:
        return
    await lesson_service.answer_quiz(
        ctx.session, poll_answer.poll_id, poll_answer.user.id, poll_answer.option_ids, ctx.clock.now()
    )


async def lesson_command(message: Message, ctx: RequestContext) -> None:
    """In private: the latest pushed lesson the member has not marked studied (again for the next)."""
    rows = await lesson_service.catch_up(ctx.session, ctx.person.id, limit=1)
    if not rows:
        ctx.replies.add(message.answer(ctx.t("lessons.all_caught_up")))
        return
    push, lesson = rows[0]
    ctx.replies.add(message.answer(post_text(ctx.t, lesson), reply_markup=study_keyboard(ctx.t, push.id)))


def build_router() -> Router:
    router = Router(name="lessons")
    router.message.register(lessons_command, Command("lessons"), F.chat.type.in_({"group", "supergroup"}))
    router.message.register(lesson_command, Command("lesson"), F.chat.type == "private")
    router.message.register(lesson_file, F.chat.type == "private", F.document)
    router.callback_query.register(library_button, LibraryButton.filter())
    router.callback_query.register(study_button, StudyButton.filter())
    router.poll_answer.register(quiz_answer)
    return router
