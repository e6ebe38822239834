"""亮身份: the invitation in the group, the guided form in private, the committee's review, the card,
/whois and /review."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.context import RequestContext
from bot.i18n import Translator, language_for_user
from bot.services import chats as chat_service
from bot.services import identity as identity_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services.errors import DomainError
from bot.services.identity import CONTACT_VISIBILITY, MEMBER_TYPES, REJECT_PRESETS, TEXT_STEPS, CardView, Draft
from handlers.common import IN_GROUP, IN_PRIVATE, OnLoop, UserId, explain, parse_row_id, quote, refuse_callback
from handlers.start import AWAITED_INPUTS, awaited_input, deep_link
from storage.models import Identity


class FormButton(CallbackData, prefix="idf"):
    step: str
    value: str


class VerdictButton(CallbackData, prefix="idv"):
    approve: bool
    user_id: UserId


class ReasonButton(CallbackData, prefix="idr"):
    user_id: UserId
    choice: str  # a REJECT_PRESETS key, or "x" to not reject after all


class CardButton(CallbackData, prefix="idc"):
    action: str  # show | hide | redo


async def declare_url(bot: Bot, chat_pk: int | None) -> str:
    me = await bot.me()
    payload = f"declare_{chat_pk}" if chat_pk is not None else "declare"
    return f"https://t.me/{me.username}?start={payload}"


async def declare_keyboard(bot: Bot, t: Translator, chat_pk: int | None) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(text=t("identity.invite_button"), url=await declare_url(bot, chat_pk))
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


# ---------------------------------------------------------------- rendering


def render_card(t: Translator, view: CardView) -> str:
    identity = view.identity
    lines = [
        t("identity.card.title"),
        t("identity.card.name", name=quote(identity.real_name), type=t(f"identity.type.{identity.member_type}")),
    ]
    if view.unit_name:
        lines.append(t("identity.card.unit", unit=quote(view.unit_name)))
    lines.append(t("identity.card.duty", value=quote(identity.duty_post)))
    lines.append(t("identity.card.pledge", value=quote(identity.pledge)))
    if identity.skills:
        lines.append(t("identity.card.skills", value=quote(identity.skills)))
    if identity.available_times:
        lines.append(t("identity.card.times", value=quote(identity.available_times)))
    if view.show_contact:
        key = "identity.card.contact" if identity.contact_public else "identity.card.contact_private"
        lines.append(t(key, value=quote(identity.contact)))
    if view.show_private:
        if identity.floating and identity.floating_org:
            lines.append(t("identity.card.floating", value=quote(identity.floating_org)))
        if identity.status == "rejected":
            lines.append(t("identity.card.status_rejected", reason=quote(identity.reject_reason)))
        else:
            lines.append(t(f"identity.card.status_{identity.status}"))
    return "\n".join(lines)


def _draft_as_identity(draft: Draft) -> CardView:
    data = draft.data
    identity = Identity(
        real_name=data.get("real_name") or "",
        member_type=data.get("member_type") or "masses",
        duty_post=data.get("duty_post") or "",
        pledge=data.get("pledge") or "",
        skills=data.get("skills"),
        available_times=data.get("available_times"),
        contact=data.get("contact"),
        contact_public=bool(data.get("contact_public")),
        floating=bool(data.get("floating")),
        floating_org=data.get("floating_org"),
        status="pending",
    )
    unit_name = next((unit.name for unit in draft.unit_options if unit.id == data.get("unit_id")), None)
    return CardView(identity, unit_name, show_contact=bool(identity.contact), show_private=True)


def _button(text: str, step: str, value: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=FormButton(step=step, value=value).pack())


def render_step(t: Translator, draft: Draft) -> tuple[str, InlineKeyboardMarkup]:
    step, data = draft.step, draft.data
    rows: list[list[InlineKeyboardButton]] = []
    if step == "confirm":
        text = t("identity.ask.confirm", card=render_card(t, _draft_as_identity(draft)))
        rows.append([_button(t("identity.submit"), step, "submit")])
        rows.append([_button(t("identity.restart"), step, "restart")])
    else:
        text = t(f"identity.ask.{step}")
        if step == "unit":
            rows += [[_button(unit.name[:60], step, str(unit.id))] for unit in draft.unit_options]
        elif step == "type":
            rows += [[_button(t(f"identity.type.{kind}"), step, kind)] for kind in MEMBER_TYPES]
        elif step == "contact_vis":
            rows.append(
                [_button(t(f"identity.choice.contact_{choice}"), step, choice) for choice in CONTACT_VISIBILITY]
            )
        elif step == "floating":
            rows.append([_button(t("identity.choice.floating_no"), step, "no")])
            rows.append([_button(t("identity.choice.floating_yes"), step, "yes")])
        elif step in TEXT_STEPS:
            current = data.get(TEXT_STEPS[step][0])
            if current:
                text += "\n" + t("identity.current", value=quote(current))
                rows.append([_button(t("identity.keep"), step, "keep")])
            if step in identity_service.OPTIONAL_STEPS:
                rows.append([_button(t("identity.skip"), step, "skip")])
    rows.append([_button(t("identity.cancel"), step, "cancel")])
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


# ---------------------------------------------------------------- the form


@deep_link("declare")
async def declare_from_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    _, _, chat_ref = payload.partition("_")
    chat_pk = None
    if chat_ref:
        ref = parse_row_id(chat_ref)
        chat = await chat_service.get_chat_by_pk(ctx.session, ref) if ref is not None else None
        if chat is None or chat.type not in chat_service.GROUP_TYPES:
            ctx.replies.add(message.answer(ctx.t("identity.bad_link")))
            return True
        chat_pk = chat.id
    await _open_form(message, ctx, chat_pk)
    return True


@deep_link("review")
async def review_from_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    await review_command(message, ctx)
    return True


async def _open_form(message: Message, ctx: RequestContext, chat_pk: int | None, *, restart: bool = False) -> None:
    had_identity = await identity_service.get_identity(ctx.session, ctx.person.id) is not None
    draft = await identity_service.open_form(ctx.session, ctx.person.id, chat_pk, restart=restart)
    if draft.resumed:
        intro = ctx.t("identity.resumed")
    else:
        intro = ctx.t("identity.editing") if had_identity else ctx.t("identity.started")
    text, keyboard = render_step(ctx.t, draft)
    ctx.replies.add(message.answer(intro + "\n\n" + text, reply_markup=keyboard))


async def declare_command(message: Message, ctx: RequestContext, bot: Bot) -> None:
    if message.chat.type == "private":
        await _open_form(message, ctx, None, restart=True)
        return
    if ctx.chat is None:
        return
    keyboard = await declare_keyboard(bot, ctx.t, ctx.chat.id)
    key = "identity.invite" if await ctx.is_committee() else "identity.declare_hint_group"
    ctx.replies.add(message.answer(ctx.t(key), reply_markup=keyboard))


async def form_button(callback: CallbackQuery, callback_data: FormButton, ctx: RequestContext, bot: Bot) -> None:
    t, user_id = ctx.t, ctx.person.id
    step, value = callback_data.step, callback_data.value
    try:
        if value == "cancel":
            await identity_service.cancel_form(ctx.session, user_id)
            ctx.replies.add(callback.message.edit_text(t("identity.cancelled")))
            ctx.replies.add(callback.answer())
            return
        if step == "confirm" and value == "restart":
            draft = await identity_service.open_form(ctx.session, user_id, None, restart=True)
        elif step == "confirm" and value == "submit":
            identity = await identity_service.submit(ctx.session, user_id, ctx.clock.now())
            ctx.replies.add(callback.message.edit_text(t("identity.submitted")))
            ctx.replies.add(callback.answer())
            await _ask_committee_to_review(ctx, bot, identity)
            return
        else:
            draft = await identity_service.choose(ctx.session, user_id, step, value)
    except DomainError as error:
        refuse_callback(ctx, callback, error.key)
        return
    text, keyboard = render_step(t, draft)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer())


async def private_text(message: Message, ctx: RequestContext) -> None:
    """Free text in private: an answer the bot asked for (a rejection reason, a leave reason), or the
    answer to the form's step."""
    pending = await identity_service.take_pending_input(ctx.session, ctx.person.id)
    if pending is not None and pending[0] in AWAITED_INPUTS:
        await AWAITED_INPUTS[pending[0]](message, ctx, pending[1])
        return
    if await identity_service.current_form(ctx.session, ctx.person.id) is None:
        ctx.replies.add(message.answer(ctx.t("identity.hint_private")))
        return
    try:
        draft = await identity_service.answer_text(ctx.session, ctx.person.id, message.text)
    except DomainError as error:
        ctx.replies.add(message.reply(explain(ctx.t, error)))
        return
    text, keyboard = render_step(ctx.t, draft)
    ctx.replies.add(message.answer(text, reply_markup=keyboard))


# ---------------------------------------------------------------- review


def _verdict_keyboard(t: Translator, user_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("identity.review.approve"),
                    callback_data=VerdictButton(approve=True, user_id=user_id).pack(),
                ),
                InlineKeyboardButton(
                    text=t("identity.review.reject"),
                    callback_data=VerdictButton(approve=False, user_id=user_id).pack(),
                ),
            ]
        ]
    )


async def _review_message(ctx: RequestContext, t: Translator, identity: Identity) -> tuple[str, InlineKeyboardMarkup]:
    chat = await chat_service.get_chat_by_pk(ctx.session, identity.chat_id) if identity.chat_id else None
    view = await identity_service.card_for(ctx.session, identity, viewer_is_committee=True, viewer_is_self=False)
    text = t("identity.review.new", group=quote(chat.title if chat else "—"), card=render_card(t, view))
    return text, _verdict_keyboard(t, identity.user_id)


async def _ask_committee_to_review(ctx: RequestContext, bot: Bot, identity: Identity) -> None:
    if identity.chat_id is None:
        return
    reviewers = await role_service.committee_user_ids(ctx.session, identity.chat_id)
    reachable = await people_service.reachable_users(ctx.session, reviewers - {identity.user_id})
    for reviewer in reachable:
        t = Translator(language_for_user(reviewer.language_code, ctx.t.language))
        text, keyboard = await _review_message(ctx, t, identity)
        ctx.replies.add(SendMessage(chat_id=reviewer.id, text=text, reply_markup=keyboard))
    if reachable:
        return
    chat = await chat_service.get_chat_by_pk(ctx.session, identity.chat_id)
    if chat is None or not chat.is_active:
        return
    settings = chat_service.settings_of(chat, default_language=ctx.t.language, default_timezone="UTC")
    t = Translator(settings.language)
    me = await bot.me()
    button = InlineKeyboardButton(text=t("identity.review.open_bot"), url=f"https://t.me/{me.username}?start=review")
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[button]])
    ctx.replies.add(SendMessage(chat_id=chat.telegram_id, text=t("identity.review.group_note"), reply_markup=keyboard))


async def _may_review(ctx: RequestContext, identity: Identity) -> bool:
    role = await role_service.role_in_chat(ctx.session, identity.chat_id, ctx.person.id, ctx.superusers)
    return role.is_committee


async def verdict_button(callback: CallbackQuery, callback_data: VerdictButton, ctx: RequestContext) -> None:
    identity = await identity_service.get_identity(ctx.session, callback_data.user_id)
    if identity is None:
        refuse_callback(ctx, callback, "identity.not_found")
        return
    if not await _may_review(ctx, identity):
        refuse_callback(ctx, callback, "errors.committee_only")
        return
    if identity.status != "pending":
        refuse_callback(ctx, callback, "identity.already_reviewed")
        return
    if callback_data.approve:
        await identity_service.review(
            ctx.session, identity.user_id, ctx.person.id, approve=True, reason=None, now=ctx.clock.now()
        )
        outcome = ctx.t("identity.review.approved", reviewer=quote(ctx.person.display_name))
        ctx.replies.add(callback.message.edit_text(f"{callback.message.html_text}\n\n{outcome}"))
        ctx.replies.add(callback.answer())
        await _tell_member(ctx, identity)
        return
    await identity_service.expect_reject_reason(ctx.session, ctx.person.id, identity.user_id)
    presets = [
        [
            InlineKeyboardButton(
                text=ctx.t(f"identity.reject_reason.{key}"),
                callback_data=ReasonButton(user_id=identity.user_id, choice=key).pack(),
            )
        ]
        for key in REJECT_PRESETS
    ]
    presets.append(
        [
            InlineKeyboardButton(
                text=ctx.t("identity.review.reason_cancel"),
                callback_data=ReasonButton(user_id=identity.user_id, choice="x").pack(),
            )
        ]
    )
    ctx.replies.add(
        callback.message.answer(
            ctx.t("identity.review.ask_reason"), reply_markup=InlineKeyboardMarkup(inline_keyboard=presets)
        )
    )
    ctx.replies.add(callback.answer())


async def reason_button(callback: CallbackQuery, callback_data: ReasonButton, ctx: RequestContext) -> None:
    if callback_data.choice == "x":
        await identity_service.clear_pending_input(ctx.session, ctx.person.id)
        ctx.replies.add(callback.message.edit_text(ctx.t("identity.review.reason_cancelled")))
        ctx.replies.add(callback.answer())
        return
    if callback_data.choice not in REJECT_PRESETS:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    await identity_service.clear_pending_input(ctx.session, ctx.person.id)
    reason = ctx.t(f"identity.reject_reason.{callback_data.choice}")
    if await _reject(ctx, callback_data.user_id, reason):
        ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
        ctx.replies.add(callback.answer())
    else:
        refuse_callback(ctx, callback, "identity.already_reviewed")


@awaited_input("reject_reason")
async def reject_reason(message: Message, ctx: RequestContext, ref: str) -> None:
    await _reject(ctx, int(ref), message.text, reply_to=message)


async def _reject(ctx: RequestContext, user_id: int, reason: str, reply_to: Message | None = None) -> bool:
    identity = await identity_service.get_identity(ctx.session, user_id)
    if identity is None or not await _may_review(ctx, identity):
        if reply_to is not None:
            ctx.replies.add(reply_to.answer(ctx.t("errors.committee_only")))
        return False
    try:
        await identity_service.review(
            ctx.session, user_id, ctx.person.id, approve=False, reason=reason, now=ctx.clock.now()
        )
    except DomainError as error:
        if error.key == "identity.bad_reason":
            # Keep waiting for a usable reason.
            await identity_service.expect_reject_reason(ctx.session, ctx.person.id, user_id)
        if reply_to is not None:
            ctx.replies.add(reply_to.answer(explain(ctx.t, error)))
        return False
    outcome = ctx.t(
        "identity.review.rejected", reviewer=quote(ctx.person.display_name), reason=quote(identity.reject_reason)
    )
    ctx.replies.add(SendMessage(chat_id=ctx.person.id, text=outcome))
    await _tell_member(ctx, identity)
    return True


async def _tell_member(ctx: RequestContext, identity: Identity) -> None:
    member = await people_service.get_user(ctx.session, identity.user_id)
    if member is None or not member.started_bot or member.blocked_bot:
        return
    t = Translator(language_for_user(member.language_code, ctx.t.language))
    if identity.status == "verified":
        text = t("identity.review.member_verified")
        rows = [
            [
                InlineKeyboardButton(
                    text=t("identity.review.show_card"), callback_data=CardButton(action="show").pack()
                ),
                InlineKeyboardButton(
                    text=t("identity.review.hide_card"), callback_data=CardButton(action="hide").pack()
                ),
            ]
        ]
    else:
        text = t("identity.review.member_rejected", reason=quote(identity.reject_reason))
        rows = [[InlineKeyboardButton(text=t("identity.review.redo"), callback_data=CardButton(action="redo").pack())]]
    ctx.replies.add(SendMessage(chat_id=member.id, text=text, reply_markup=InlineKeyboardMarkup(inline_keyboard=rows)))


async def card_button(callback: CallbackQuery, callback_data: CardButton, ctx: RequestContext) -> None:
    t, user_id = ctx.t, ctx.person.id
    if callback_data.action == "redo":
        identity = await identity_service.get_identity(ctx.session, user_id)
        draft = await identity_service.open_form(
            ctx.session, user_id, identity.chat_id if identity else None, restart=True
        )
        text, keyboard = render_step(t, draft)
        ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
        ctx.replies.add(callback.message.answer(t("identity.editing") + "\n\n" + text, reply_markup=keyboard))
        ctx.replies.add(callback.answer())
        return
    if callback_data.action not in ("show", "hide"):
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    try:
        identity = await identity_service.set_card_visible(ctx.session, user_id, callback_data.action == "show")
    except DomainError as error:
        refuse_callback(ctx, callback, error.key)
        return
    ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
    if callback_data.action == "hide":
        ctx.replies.add(callback.answer(t("identity.review.card_hidden")))
        return
    chat = await chat_service.get_chat_by_pk(ctx.session, identity.chat_id) if identity.chat_id else None
    if chat is not None and chat.is_active:
        settings = chat_service.settings_of(chat, default_language=t.language, default_timezone="UTC")
        group_t = Translator(settings.language)
        view = await identity_service.card_for(ctx.session, identity, viewer_is_committee=False, viewer_is_self=False)
        ctx.replies.add(SendMessage(chat_id=chat.telegram_id, text=render_card(group_t, view)))
    ctx.replies.add(callback.answer(t("identity.review.card_posted")))


async def review_command(message: Message, ctx: RequestContext) -> None:
    pending = await identity_service.pending_all(ctx.session)
    shown = 0
    for identity in pending:
        if shown >= 10:
            break
        if identity.user_id == ctx.person.id or not await _may_review(ctx, identity):
            continue
        text, keyboard = await _review_message(ctx, ctx.t, identity)
        ctx.replies.add(message.answer(text, reply_markup=keyboard))
        shown += 1
    if not shown:
        ctx.replies.add(message.answer(ctx.t("identity.review.none_pending")))


# ---------------------------------------------------------------- /whois


async def whois_command(message: Message, ctx: RequestContext) -> None:
    target = message.reply_to_message.from_user if message.reply_to_message else None
    if target is None or target.is_bot:
        ctx.replies.add(message.reply(ctx.t("identity.card.whois_usage")))
        return
    identity = await identity_service.get_identity(ctx.session, target.id)
    view = None
    if identity is not None:
        view = await identity_service.card_for(
            ctx.session,
            identity,
            viewer_is_committee=await ctx.is_committee(),
            viewer_is_self=target.id == ctx.person.id,
        )
    ctx.replies.add(message.reply(render_card(ctx.t, view) if view else ctx.t("identity.card.none")))


def build_router() -> Router:
    router = Router(name="identity")
    private = IN_PRIVATE
    groups = IN_GROUP
    router.message.register(declare_command, Command("declare"))
    router.message.register(review_command, Command("review"), private)
    router.message.register(whois_command, Command("whois"), groups)
    router.message.register(private_text, private, OnLoop(F.text), OnLoop(~F.text.startswith("/")))
    router.callback_query.register(form_button, FormButton.filter())
    router.callback_query.register(verdict_button, VerdictButton.filter())
    router.callback_query.register(reason_button, ReasonButton.filter())
    router.callback_query.register(card_button, CardButton.filter())
    return router
