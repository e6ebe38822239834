"""The 每日党课 library: /lessons in the group (the library page by page, a tap on a lesson for its preview,
reordering and removal, "📥 导入课程"), then the lesson file that the committee member sends the bot in
private, and the import report, line by line. The whole panel is one message, edited in place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiogram import Bot, Router
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
    IN_GROUP,
    IN_PRIVATE,
    RowId,
    explain,
    parse_row_id,
    quote,
    refuse_callback_error,
    require_committee_message,
    require_group_committee_callback,
)
from handlers.start import awaited_document, committee_chat, deep_link
from handlers.timephrases import describe

if TYPE_CHECKING:
    from bot.outbox import Envelope

PAGE_SIZE = 8
BUTTON_TITLE = 16  # characters of a title on a lesson's button: a phone shows about that much
PREVIEW_LIMIT = 4000  # a message takes 4096 characters; the preview shortens the body to stay below
PROBLEMS_SHOWN = 30
AWAITED = "lesson_import"
OPTION_LETTERS = "ABCDEFGHIJ"


class LibraryButton(CallbackData, prefix="lsn"):
    action: str  # import | push (value: "d2000", "w0730", "off", or "" for the menu) | back
    value: str = ""


class ManageButton(CallbackData, prefix="lsm"):
    action: str  # list (a page) | open | up | down | first | remove | remove_yes
    lesson_id: RowId = 0
    page: RowId = 0


class StudyButton(CallbackData, prefix="lst"):
    push_id: RowId


def push_text(t: Translator, schedule) -> str:
    if schedule is None or schedule.status != "active":
        return t("lessons.push_off")
    return t("lessons.push_on", rule=quote(describe(schedule_service.rule_of(schedule.rule), t)))


def _manage(action: str, lesson_id: int = 0, page: int = 0) -> str:
    return ManageButton(action=action, lesson_id=lesson_id, page=page).pack()


def _short(title: str, length: int = BUTTON_TITLE) -> str:
    return title if len(title) <= length else title[: length - 1] + "…"


def page_of(number: int) -> int:
    """The page that shows the lesson listed as ``number`` (from 1)."""
    return max(number - 1, 0) // PAGE_SIZE


def library_view(
    t: Translator, lessons, schedule=None, pushed: set[int] | frozenset[int] = frozenset(), page: int = 0
) -> tuple[str, InlineKeyboardMarkup]:
    own = [lesson for lesson in lessons if lesson.chat_id is not None]
    lines = [t("lessons.library_title", own=len(own), pack=len(lessons) - len(own)), push_text(t, schedule)]
    pages = max((len(lessons) + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = min(max(page, 0), pages - 1)  # the page asked for may be gone, or made up
    start = page * PAGE_SIZE
    rows = []
    if lessons:
        lines.append(t("lessons.page", page=page + 1, pages=pages))
    else:
        lines.append(t("lessons.library_empty"))
    for number, lesson in enumerate(lessons[start : start + PAGE_SIZE], start + 1):
        marks = t("lessons.has_quiz") if lesson.quiz_question else ""
        marks += t("lessons.was_pushed") if lesson.id in pushed else ""
        lines.append(f"{number}. {quote(lesson.title)}{marks}")
        rows.append(
            [InlineKeyboardButton(text=f"{number}. {_short(lesson.title)}", callback_data=_manage("open", lesson.id))]
        )
    arrows = []
    if page > 0:
        arrows.append(InlineKeyboardButton(text="◀", callback_data=_manage("list", page=page - 1)))
    if page < pages - 1:
        arrows.append(InlineKeyboardButton(text="▶", callback_data=_manage("list", page=page + 1)))
    if arrows:
        rows.append(arrows)
    lines.append(t("lessons.import_hint"))
    rows.append(
        [
            InlineKeyboardButton(text=t("lessons.import_button"), callback_data=LibraryButton(action="import").pack()),
            InlineKeyboardButton(text=t("lessons.push_button"), callback_data=LibraryButton(action="push").pack()),
        ]
    )
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def quiz_lines(t: Translator, lesson) -> list[str]:
    if not lesson.quiz_question:
        return [t("lessons.preview_no_quiz")]
    lines = [t("lessons.preview_quiz", question=quote(lesson.quiz_question))]
    for index, option in enumerate(lesson_service.quiz_options(lesson)):
        mark = "✅" if index == lesson.quiz_answer else "▫️"
        lines.append(f"{mark} {OPTION_LETTERS[index]}. {quote(option)}")
    return lines


def preview_view(t: Translator, found: lesson_service.LessonPreview) -> tuple[str, InlineKeyboardMarkup]:
    """The lesson as members would get it, then what the committee needs to decide about it."""
    lesson = found.lesson
    head = t("lessons.preview_title", number=found.number)
    details = ["", *quiz_lines(t, lesson)]
    if lesson.tags:
        details.append(t("lessons.preview_tags", tags=quote("、".join(lesson.tags.split(",")))))
    if lesson.push_on:
        details.append(t("lessons.preview_date", date=lesson.push_on.isoformat()))
    if found.push is not None:
        details.append(t("lessons.preview_pushed", date=found.push.pushed_on.isoformat()))
    else:
        details.append(t("lessons.preview_not_pushed"))
    if found.is_next:
        details.append(t("lessons.preview_next"))
    if not found.own:
        details.append(t("lessons.preview_pack"))
    elif found.push is None:  # once pushed, its place in the order no longer matters
        details.append(t("lessons.preview_own"))
    # Telegram counts the text after its markup is read, which the raw length never falls below.
    fixed = len(head) + 2 + len(post_text(t, lesson, body="")) + sum(len(line) + 1 for line in details)
    budget = PREVIEW_LIMIT - fixed
    body = lesson.body if len(lesson.body) <= budget else lesson.body[: max(budget - 1, 0)] + "…"
    text = "\n".join([head, "", post_text(t, lesson, body=body), *details])

    rows = []
    if found.own:
        moves = []
        if not found.first_own:
            moves.append(InlineKeyboardButton(text=t("lessons.move_up"), callback_data=_manage("up", lesson.id)))
        if not found.last_own:
            moves.append(InlineKeyboardButton(text=t("lessons.move_down"), callback_data=_manage("down", lesson.id)))
        if moves:
            rows.append(moves)
        # A dated lesson goes out on its day, and one pushed already never again: ordering cannot help.
        if found.push is None and lesson.push_on is None and not found.is_next:
            rows.append([InlineKeyboardButton(text=t("lessons.move_first"), callback_data=_manage("first", lesson.id))])
    rows.append(
        [
            InlineKeyboardButton(text=t("lessons.remove_button"), callback_data=_manage("remove", lesson.id)),
            InlineKeyboardButton(
                text=t("lessons.back_to_list"), callback_data=_manage("list", page=page_of(found.number))
            ),
        ]
    )
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


def remove_confirm_view(t: Translator, found: lesson_service.LessonPreview) -> tuple[str, InlineKeyboardMarkup]:
    lesson = found.lesson
    lines = [t("lessons.remove_confirm", title=quote(lesson.title))]
    if found.push is not None:
        lines.append(t("lessons.remove_keeps_records"))
    if not found.own:
        lines.append(t("lessons.remove_pack_note"))
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=t("lessons.remove_yes"), callback_data=_manage("remove_yes", lesson.id)),
                InlineKeyboardButton(text=t("lessons.remove_no"), callback_data=_manage("open", lesson.id)),
            ]
        ]
    )
    return "\n".join(lines), keyboard


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


def post_text(t: Translator, lesson, *, body: str | None = None) -> str:
    body = lesson.body if body is None else body
    return t("lessons.post", title=quote(lesson.title), body=quote(body), source=quote(lesson.source))


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


async def _library(ctx: RequestContext, page: int = 0):
    lessons = await lesson_service.library(ctx.session, ctx.chat.id)
    return library_view(
        ctx.t,
        lessons,
        await lesson_service.push_of(ctx.session, ctx.chat.id),
        await lesson_service.pushed_lessons(ctx.session, ctx.chat.id),
        page,
    )


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


MOVED = {"up": "lessons.moved_up", "down": "lessons.moved_down", "first": "lessons.moved_first"}


async def manage_button(callback: CallbackQuery, callback_data: ManageButton, ctx: RequestContext) -> None:
    """The library panel: a page of it, a lesson's preview, moving and removing a lesson."""
    if not await require_group_committee_callback(ctx, callback):
        return
    action, lesson_id, t = callback_data.action, callback_data.lesson_id, ctx.t
    today = ctx.clock.now().astimezone(ctx.group_settings.zone).date()
    notice = None
    try:
        if action == "list":
            text, keyboard = await _library(ctx, callback_data.page)
        elif action in ("open", *MOVED):
            if action in MOVED and await lesson_service.move(
                ctx.session, ctx.chat.id, lesson_id, ctx.person.id, action
            ):
                notice = t(MOVED[action])
            found = await lesson_service.preview(ctx.session, ctx.chat.id, lesson_id, today)
            text, keyboard = preview_view(t, found)
        elif action == "remove":
            found = await lesson_service.preview(ctx.session, ctx.chat.id, lesson_id, today)
            text, keyboard = remove_confirm_view(t, found)
        elif action == "remove_yes":
            found = await lesson_service.preview(ctx.session, ctx.chat.id, lesson_id, today)
            await lesson_service.remove(ctx.session, ctx.chat.id, lesson_id, ctx.person.id, ctx.clock.now())
            text, keyboard = await _library(ctx, page_of(found.number))
            notice = t("lessons.removed", title=found.lesson.title)
        else:
            raise DomainError("errors.button_expired")
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer(notice))


@deep_link("lsn")
async def import_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    chat, refusal = await committee_chat(ctx, parse_row_id(payload.partition("_")[2]))
    if chat is None:
        ctx.replies.add(message.answer(ctx.t(refusal)))
        return True
    await _ask_for_file(ctx, ctx.person.id, chat.id, chat.title)
    return True


@awaited_document(AWAITED, hint="lessons.file_unexpected")
async def lesson_file(message: Message, ctx: RequestContext, bot: Bot, ref: str) -> None:
    """A file in private: the lessons the bot asked for, for the group named when it asked."""
    t = ctx.t
    chat = await chat_service.get_chat_by_pk(ctx.session, int(ref)) if ref.isdigit() else None
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
        await people_service.drop_input(ctx.session, ctx.person.id, AWAITED, ref)
    ctx.replies.add(message.reply(report_text(t, report, chat.title or "")))


# ------------------------------------------------------------------------------------------ the daily push


async def render_post(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    found = await lesson_service.pushed(session, envelope.args["push_id"])
    if found is None or found[0].message_id is not None:
        return None
    push, lesson = found
    # Removed while the post waited (for the end of quiet hours): a removed lesson is never pushed.
    if not await lesson_service.in_library(session, push.chat_id, lesson.id):
        return None
    t = envelope.t
    return SendMessage(chat_id=envelope.recipient, text=post_text(t, lesson), reply_markup=study_keyboard(t, push.id))


async def render_exhausted(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    """The committee is told the library is used up, unless lessons came in while the message waited."""
    if envelope.chat is None or not await lesson_service.is_exhausted(session, envelope.chat.id):
        return None
    text = envelope.t("lessons.exhausted", group=quote(envelope.chat.title or ""), count=envelope.args["pushes"])
    return SendMessage(chat_id=envelope.recipient, text=text)


async def posted(session: AsyncSession, envelope: Envelope, message) -> list[TelegramMethod]:
    now = message.date if message.date.tzinfo else message.date.replace(tzinfo=UTC)
    await lesson_service.record_posted(session, envelope.args["push_id"], message.message_id, envelope.key, now)
    return []


async def post_unknown(session: AsyncSession, envelope: Envelope, now: datetime) -> None:
    """The post's answer was lost, so it is not sent again: its quiz still goes, without the reply."""
    await lesson_service.record_posted(session, envelope.args["push_id"], None, envelope.key, now)


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
        reply_parameters=(
            ReplyParameters(message_id=found[0].message_id, allow_sending_without_reply=True)
            if found[0].message_id is not None
            else None
        ),
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
    router.message.register(lessons_command, Command("lessons"), IN_GROUP)
    router.message.register(lesson_command, Command("lesson"), IN_PRIVATE)
    router.callback_query.register(library_button, LibraryButton.filter())
    router.callback_query.register(manage_button, ManageButton.filter())
    router.callback_query.register(study_button, StudyButton.filter())
    router.poll_answer.register(quiz_answer)
    return router
