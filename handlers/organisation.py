"""The organisation tree and roles: /units, /unit, /bind, /unbind, /grant, /revoke."""

from __future__ import annotations

import re

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.types import User as TgUser

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import organisation as org_service
from bot.services import people as people_service
from bot.services.errors import DomainError
from bot.services.organisation import UnitNode
from bot.services.people import Person
from bot.services.roles import Role
from handlers.common import (
    IN_GROUP,
    explain,
    quote,
    refuse_callback,
    refuse_callback_error,
    refuse_message,
    require_committee_callback,
)

GROUP_CHATS = {"group", "supergroup"}
KIND_ICONS = {"committee": "🏛", "branch": "🚩", "group": "👥"}
INDENT = "\u3000"
MAX_TREE_LINES = 120
MAX_BIND_BUTTONS = 30
MAX_TITLES_PER_UNIT = 3
ROOT_WORDS = {"root", "根", "顶级", "none"}
UNDER = re.compile(r"^(?P<name>.*?)\s+(?:under|上级)\s+(?P<parent>\S+)\s*$", re.S | re.I)


class BindButton(CallbackData, prefix="ob"):
    action: str  # unit | new
    unit_id: int = 0


# --- small helpers --------------------------------------------------------------------------------


def _split_first(text: str | None) -> tuple[str, str]:
    """The first word and the rest (the rest keeps its line breaks, so that names with them are refused)."""
    match = re.match(r"(\S+)(?:[ \t\u3000]+(.*))?$", (text or "").strip(), re.S)
    if match is None:
        return "", ""
    return match.group(1), (match.group(2) or "").strip()


def _parse_id(token: str) -> int | None:
    token = token.strip().lstrip("#＃")
    return int(token) if token.isascii() and token.isdigit() else None


def _kind(t: Translator, kind: str) -> str:
    return t(f"org.kind.{kind}")


def _display_name(first_name: str | None, last_name: str | None, username: str | None, user_id: int) -> str:
    name = " ".join(part for part in (first_name, last_name) if part)
    return name or (f"@{username}" if username else str(user_id))


async def _may_see_units(ctx: RequestContext) -> bool:
    if ctx.chat is not None:
        return await ctx.is_committee()
    return ctx.person.id in ctx.superusers or await org_service.holds_any_unit_role(ctx.session, ctx.person.id)


# --- /units ---------------------------------------------------------------------------------------


def render_tree(t: Translator, nodes: list[UnitNode], bound: dict[int, list], here_unit_id: int | None) -> str:
    if not nodes:
        return t("org.units_empty")
    lines = [t("org.units_title")]
    for node in nodes[:MAX_TREE_LINES]:
        icon = KIND_ICONS.get(node.kind, "•")
        line = f"{INDENT * node.depth}{icon} <b>{quote(node.name)}</b> {_kind(t, node.kind)} #{node.id}"
        titles = [quote(chat.title or str(chat.telegram_id)) for chat in bound.get(node.id, [])]
        if titles:
            shown = t("org.list_separator").join(titles[:MAX_TITLES_PER_UNIT])
            if len(titles) > MAX_TITLES_PER_UNIT:
                shown += t("org.more_groups", count=len(titles))
            line += f" · 💬 {shown}"
        if node.id == here_unit_id:
            line += " " + t("org.here")
        lines.append(line)
    if len(nodes) > MAX_TREE_LINES:
        lines.append(t("org.units_more", count=len(nodes) - MAX_TREE_LINES))
    return "\n".join(lines)


async def units_command(message: Message, ctx: RequestContext) -> None:
    if ctx.person is None:
        return
    if not await _may_see_units(ctx):
        refuse_message(ctx, message, "errors.committee_only")
        return
    here = ctx.chat.unit_id if ctx.chat is not None else None
    nodes = await org_service.visible_tree(ctx.session, ctx.person.id, ctx.superusers, also=here)
    bound = await org_service.bound_chats(ctx.session, [node.id for node in nodes[:MAX_TREE_LINES]])
    ctx.replies.add(message.answer(render_tree(ctx.t, nodes, bound, here)))


# --- /unit add|rename|move|delete -----------------------------------------------------------------

ADD_WORDS = {"add", "new", "create", "新建", "添加", "建"}
RENAME_WORDS = {"rename", "改名", "重命名"}
MOVE_WORDS = {"move", "移动", "移到"}
DELETE_WORDS = {"delete", "del", "remove", "删除"}


async def unit_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if ctx.person is None:
        return
    if not await _may_see_units(ctx):
        refuse_message(ctx, message, "errors.committee_only")
        return
    t = ctx.t
    sub, rest = _split_first(command.args)
    sub = sub.lower()
    try:
        if sub in ADD_WORDS:
            text = await _add(ctx, rest)
        elif sub in RENAME_WORDS:
            text = await _rename(ctx, rest)
        elif sub in MOVE_WORDS:
            text = await _move(ctx, rest)
        elif sub in DELETE_WORDS:
            text = await _delete(ctx, rest)
        else:
            text = None
    except DomainError as error:
        text = explain(t, error)
    ctx.replies.add(message.reply(text if text is not None else t("org.usage")))


def _chat_pk(ctx: RequestContext) -> int | None:
    return ctx.chat.id if ctx.chat is not None else None


async def _add(ctx: RequestContext, rest: str) -> str | None:
    kind_word, name = _split_first(rest)
    if not name:
        return None
    kind = org_service.parse_kind(kind_word)
    parent_id = ctx.chat.unit_id if ctx.chat is not None else None
    under = UNDER.match(name)
    if under is not None:
        name = under.group("name")
        token = under.group("parent")
        if token.lower() in ROOT_WORDS:
            parent_id = None
        else:
            parent_id = _parse_id(token)
            if parent_id is None:
                return None
    unit = await org_service.create_unit(
        ctx.session,
        ctx.person.id,
        ctx.superusers,
        name=name,
        kind=kind,
        parent_id=parent_id,
        chat_pk=_chat_pk(ctx),
    )
    return ctx.t("org.created", kind=_kind(ctx.t, unit.kind), name=quote(unit.name), id=unit.id)


async def _rename(ctx: RequestContext, rest: str) -> str | None:
    token, name = _split_first(rest)
    unit_id = _parse_id(token)
    if unit_id is None or not name:
        return None
    unit, old = await org_service.rename_unit(
        ctx.session, ctx.person.id, ctx.superusers, unit_id, name, chat_pk=_chat_pk(ctx)
    )
    return ctx.t("org.renamed", old=quote(old), name=quote(unit.name), id=unit.id)


async def _move(ctx: RequestContext, rest: str) -> str | None:
    token, target = _split_first(rest)
    unit_id = _parse_id(token)
    if unit_id is None or not target or len(target.split()) != 1:
        return None
    if target.lower() in ROOT_WORDS:
        parent_id = None
    else:
        parent_id = _parse_id(target)
        if parent_id is None:
            return None
    unit, parent = await org_service.move_unit(
        ctx.session, ctx.person.id, ctx.superusers, unit_id, parent_id, chat_pk=_chat_pk(ctx)
    )
    if parent is None:
        return ctx.t("org.moved_root", name=quote(unit.name), id=unit.id)
    return ctx.t("org.moved", name=quote(unit.name), id=unit.id, parent=quote(parent.name), parent_id=parent.id)


async def _delete(ctx: RequestContext, rest: str) -> str | None:
    token, extra = _split_first(rest)
    unit_id = _parse_id(token)
    if unit_id is None or extra:
        return None
    unit = await org_service.delete_unit(ctx.session, ctx.person.id, ctx.superusers, unit_id, chat_pk=_chat_pk(ctx))
    return ctx.t("org.deleted", name=quote(unit.name), id=unit.id)


# --- /bind, /unbind -------------------------------------------------------------------------------


def _bound_text(t: Translator, unit, changed: bool) -> str:
    key = "org.bound" if changed else "org.bound_already"
    return t(key, kind=_kind(t, unit.kind), name=quote(unit.name), id=unit.id)


async def bind_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if ctx.chat is None or ctx.person is None:
        return
    if not await ctx.is_committee():
        refuse_message(ctx, message, "errors.committee_only")
        return
    t = ctx.t
    if command.args:
        unit_id = _parse_id(command.args)
        if unit_id is None:
            ctx.replies.add(message.reply(t("org.bind_usage")))
            return
        try:
            unit, changed = await org_service.bind_chat(ctx.session, ctx.chat, ctx.person.id, ctx.superusers, unit_id)
        except DomainError as error:
            ctx.replies.add(message.reply(explain(t, error)))
            return
        ctx.replies.add(message.reply(_bound_text(t, unit, changed)))
        return

    nodes = await org_service.manageable_units(ctx.session, ctx.person.id, ctx.superusers)
    may_create = await org_service.may_create_branch_for_chat(ctx.session, ctx.chat, ctx.person.id, ctx.superusers)
    if not nodes and not may_create:
        ctx.replies.add(message.reply(t("org.bind_none")))
        return
    rows = []
    for node in nodes[:MAX_BIND_BUTTONS]:
        mark = " ✅" if node.id == ctx.chat.unit_id else ""
        label = f"{INDENT * node.depth}{KIND_ICONS.get(node.kind, '•')} {node.name} #{node.id}{mark}"
        rows.append([InlineKeyboardButton(text=label, callback_data=BindButton(action="unit", unit_id=node.id).pack())])
    if may_create:
        title = " ".join((ctx.chat.title or "").split())[: org_service.NAME_MAX_LENGTH]
        rows.append(
            [
                InlineKeyboardButton(
                    text=t("org.new_branch_button", title=title), callback_data=BindButton(action="new").pack()
                )
            ]
        )
    lines = [t("org.bind_choose")]
    current = await org_service.get_unit(ctx.session, ctx.chat.unit_id)
    if current is not None:
        lines.append(t("org.bind_current", name=quote(current.name), id=current.id))
    if len(nodes) > MAX_BIND_BUTTONS:
        lines.append(t("org.bind_too_many", count=MAX_BIND_BUTTONS))
    ctx.replies.add(message.answer("\n".join(lines), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows)))


async def bind_button(callback: CallbackQuery, callback_data: BindButton, ctx: RequestContext) -> None:
    if ctx.chat is None or ctx.person is None or not isinstance(callback.message, Message):
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    if not await require_committee_callback(ctx, callback):
        return
    t = ctx.t
    try:
        if callback_data.action == "unit":
            unit, changed = await org_service.bind_chat(
                ctx.session, ctx.chat, ctx.person.id, ctx.superusers, callback_data.unit_id
            )
            text = _bound_text(t, unit, changed)
        elif callback_data.action == "new" and callback_data.unit_id == 0:
            unit = await org_service.create_branch_for_chat(
                ctx.session, ctx.chat, ctx.person.id, ctx.superusers, ctx.clock.now()
            )
            text = t("org.branch_created", name=quote(unit.name), id=unit.id)
        else:
            raise DomainError("errors.button_expired")
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    ctx.replies.add(callback.message.edit_text(text, reply_markup=None))
    ctx.replies.add(callback.answer())


async def unbind_command(message: Message, ctx: RequestContext) -> None:
    if ctx.chat is None or ctx.person is None:
        return
    if not await ctx.is_committee():
        refuse_message(ctx, message, "errors.committee_only")
        return
    try:
        unit = await org_service.unbind_chat(ctx.session, ctx.chat, ctx.person.id, ctx.superusers)
    except DomainError as error:
        ctx.replies.add(message.reply(explain(ctx.t, error)))
        return
    ctx.replies.add(message.reply(ctx.t("org.unbound", name=quote(unit.name), id=unit.id)))


# --- /grant, /revoke ------------------------------------------------------------------------------


class _NoTarget(Exception):
    pass


async def _target(message: Message, ctx: RequestContext, words: list[str]) -> tuple[int, str]:
    """Who the command is about: a mention by name, an @username we know, or the author of the replied-to
    message. Returns their id and display name; raises DomainError or _NoTarget."""
    for entity in message.entities or []:
        if entity.type == "text_mention" and entity.user is not None:
            return await _remember(ctx, entity.user)
    usernames = [word for word in words if word.startswith(("@", "＠"))]
    if usernames:
        user = await org_service.find_user(ctx.session, usernames[0].lstrip("@＠"))
        if user is None:
            raise DomainError("org.unknown_user")
        return user.id, _display_name(user.first_name, user.last_name, user.username, user.id)
    reply = message.reply_to_message
    if reply is not None and reply.forum_topic_created is None and reply.from_user is not None:
        return await _remember(ctx, reply.from_user)
    raise _NoTarget


async def _remember(ctx: RequestContext, user: TgUser) -> tuple[int, str]:
    if user.is_bot:
        raise DomainError("org.target_is_bot")
    person = Person(user.id, user.first_name, user.last_name, user.username, user.language_code)
    await people_service.remember_person(ctx.session, person, ctx.clock.now())
    return user.id, person.display_name


async def _require_secretary(message: Message, ctx: RequestContext) -> bool:
    if ctx.chat is None or ctx.person is None:
        return False
    if await ctx.role() >= Role.SECRETARY:
        return True
    refuse_message(ctx, message, "org.secretary_only")
    return False


async def grant_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if not await _require_secretary(message, ctx):
        return
    t = ctx.t
    words = (command.args or "").split()
    role_words = [word for word in words if not word.startswith(("@", "＠"))]
    if len(role_words) != 1:
        ctx.replies.add(message.reply(t("org.grant_usage")))
        return
    try:
        role = org_service.parse_role(role_words[0])
        target_id, name = await _target(message, ctx, words)
        change = await org_service.grant_role(
            ctx.session, ctx.chat, ctx.person.id, ctx.superusers, target_id, role, ctx.clock.now()
        )
    except _NoTarget:
        ctx.replies.add(message.reply(t("org.grant_usage")))
        return
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    role_label = t(f"org.role.{change.role}")
    if change.unit is not None:
        text = t("org.granted_unit", name=quote(name), role=role_label, unit=quote(change.unit.name), id=change.unit.id)
    else:
        text = t("org.granted_chat", name=quote(name), role=role_label)
    ctx.replies.add(message.reply(text))


async def revoke_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if not await _require_secretary(message, ctx):
        return
    t = ctx.t
    words = (command.args or "").split()
    if any(not word.startswith(("@", "＠")) for word in words):
        ctx.replies.add(message.reply(t("org.revoke_usage")))
        return
    try:
        target_id, name = await _target(message, ctx, words)
        change = await org_service.revoke_role(ctx.session, ctx.chat, ctx.person.id, ctx.superusers, target_id)
    except _NoTarget:
        ctx.replies.add(message.reply(t("org.revoke_usage")))
        return
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    text = t("org.revoked", name=quote(name), role=t(f"org.role.{change.role}"))
    if change.still_admin_role is not None:
        text += "\n" + t("org.still_admin", role=t(f"org.role.{change.still_admin_role}"))
    ctx.replies.add(message.reply(text))


def build_router() -> Router:
    router = Router(name="organisation")
    in_group = IN_GROUP
    router.message.register(units_command, Command("units"))
    router.message.register(unit_command, Command("unit"))
    router.message.register(bind_command, Command("bind"), in_group)
    router.message.register(unbind_command, Command("unbind"), in_group)
    router.message.register(grant_command, Command("grant"), in_group)
    router.message.register(revoke_command, Command("revoke"), in_group)
    router.callback_query.register(bind_button, BindButton.filter())
    return router
