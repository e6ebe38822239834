"""Loopback Telegram Bot API emulator.

An aiohttp server speaking the real Bot API wire protocol (``/bot<token>/<method>``, GET or POST with
query / urlencoded / multipart / JSON parameters) plus an in-process Python API and a small HTTP
control API (``/_emulator/...``) to drive the simulated world and inspect what the bot did.

Everything runs on the event loop that called :meth:`BotAPIEmulator.start`; the world/injection helpers
are synchronous and must be called from that loop (or through the control API).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import mimetypes
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web

from .markup import ParseError, parse_text, strip_entities, utf16_len

__all__ = ["ApiError", "BotAPIEmulator", "Call", "Fault"]

# ------------------------------------------------------------------------------------ wire decoding

# Parameters that aiogram (and every other client) sends JSON-serialized inside form fields.
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "options",
        "allowed_updates",
        "link_preview_options",
        "reply_parameters",
        "media",
        "explanation_entities",
        "question_entities",
        "description_entities",
        "message_ids",
        "permissions",
        "correct_option_ids",
        "country_codes",
        "results",
        "reaction",
        "rights",
        "menu_button",
        "suggested_post_parameters",
        "explanation_media",
    }
)
INT_FIELDS = frozenset(
    {
        "chat_id",
        "from_chat_id",
        "message_id",
        "user_id",
        "offset",
        "limit",
        "timeout",
        "reply_to_message_id",
        "message_thread_id",
        "direct_messages_topic_id",
        "open_period",
        "close_date",
        "cache_time",
        "correct_option_id",
        "max_connections",
        "duration",
        "width",
        "height",
        "until_date",
        "sender_chat_id",
    }
)
BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "is_anonymous",
        "allows_multiple_answers",
        "allows_revoting",
        "disable_web_page_preview",
        "drop_pending_updates",
        "allow_sending_without_reply",
        "has_spoiler",
        "disable_content_type_detection",
        "is_closed",
        "only_if_banned",
        "revoke_messages",
        "show_caption_above_media",
        "allow_paid_broadcast",
        "members_only",
        "shuffle_options",
        "allow_adding_options",
        "hide_results_until_closes",
        "for_channels",
        "remove_caption",
    }
)
_INT_RE = re.compile(r"-?\d+")
_LOOPBACK_HTTP = re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)")
_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?")
_BOT_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")

# Updates that Telegram only sends when explicitly listed in allowed_updates.
_NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_COPYABLE = ("text", "entities", "caption", "caption_entities", "document", "photo", "poll", "sticker")
_5XX = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
FAULT_KINDS = frozenset({"429", "429_bare", "5xx", "slow", "403", "migrate", "down", "lost"})


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": code, "description": ...}``."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)


@dataclass
class Call:
    """One request the bot made. ``params`` are JSON-decoded; ``files`` maps the parameter name
    (``document``, ``photo``...; ``attach://`` references resolved) to ``(filename, bytes)``."""

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]]
    at: float
    response: dict[str, Any] | None
    status: int
    seq: int = 0
    content_type: str = ""  # how the request body arrived (urlencoded / multipart/form-data / json / "")

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result") if self.response else None

    @property
    def description(self) -> str | None:
        return self.response.get("description") if self.response else None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "method": self.method,
            "params": self.params,
            "files": {
                k: {"filename": fn, "size": len(data), "data_b64": base64.b64encode(data).decode()}
                for k, (fn, data) in self.files.items()
            },
            "at": self.at,
            "status": self.status,
            "content_type": self.content_type,
            "response": self.response,
        }

    def __repr__(self) -> str:
        params = {k: v for k, v in self.params.items() if k not in ("reply_markup", "entities")}
        text = json.dumps(params, ensure_ascii=False, default=str)
        if len(text) > 160:
            text = text[:157] + "..."
        return f"<Call #{self.seq} {self.method} {self.status} {text}>"


@dataclass
class Fault:
    """A scripted failure for the next ``count`` matching requests (see ``BotAPIEmulator.fail_next``)."""

    method: str
    kind: str
    count: int = 1
    retry_after: int = 1
    delay: float = 0.0
    chat_id: int | str | None = None
    migrate_to: int | None = None
    status: int = 502

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.count <= 0 or (self.method != "*" and self.method != method):
            return False
        return self.chat_id is None or str(params.get("chat_id")) == str(self.chat_id)

    def error(self, params: dict[str, Any], emu: BotAPIEmulator) -> ApiError:
        kind = self.kind
        if kind == "429":
            ra = int(self.retry_after)
            return ApiError(429, f"Too Many Requests: retry after {ra}", {"retry_after": ra})
        if kind == "429_bare":
            return ApiError(429, "Too Many Requests")
        if kind == "5xx":
            return ApiError(self.status, _5XX.get(self.status, "Internal Server Error"))
        if kind == "403":
            return ApiError(403, "Forbidden: bot was blocked by the user")
        # migrate
        target = self.migrate_to
        if target is None:
            chat_id = params.get("chat_id")
            state = emu._chats.get(chat_id) if isinstance(chat_id, int) else None
            if state is not None and state.migrated_to is not None:
                target = state.migrated_to
            elif isinstance(chat_id, int):
                target = int(f"-100{abs(chat_id)}")
            else:
                target = -1001234567890
        return ApiError(
            400, "Bad Request: group chat was upgraded to a supergroup chat", {"migrate_to_chat_id": target}
        )


class _Entry:
    __slots__ = ("id", "update", "type", "delivered", "dead")

    def __init__(self, update: dict[str, Any], utype: str) -> None:
        self.id: int = update["update_id"]
        self.update = update
        self.type = utype
        self.delivered = False
        self.dead = False  # filtered out by allowed_updates: never delivered, waits to be popped


class _ChatState:
    __slots__ = (
        "id",
        "chat",
        "type",
        "admins",
        "creator",
        "members",
        "kicked",
        "bot_status",
        "migrated_to",
        "pinned",
        "messages",
        "next_id",
        "sends",
    )

    def __init__(self, chat: dict[str, Any]) -> None:
        self.id: int = chat["id"]
        self.chat = chat
        self.type: str = chat["type"]
        self.admins: set[int] = set()
        self.creator: int | None = None
        self.members: set[int] = set()
        self.kicked: set[int] = set()
        self.bot_status = "member"
        self.migrated_to: int | None = None
        self.pinned: list[int] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.sends: deque[float] = deque()

    @property
    def is_private(self) -> bool:
        return self.type == "private"


class _ClientGone(Exception):
    pass


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _decode_field(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            if name == "reply_markup":
                raise _bad("can't parse reply keyboard markup JSON object") from None
            if name.endswith("entities"):
                raise _bad("can't parse entities JSON object") from None
            raise _bad(f"can't parse {name} JSON object") from None
    if name in INT_FIELDS:
        return int(value) if _INT_RE.fullmatch(value) else value
    if name in BOOL_FIELDS:
        low = value.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0", ""):
            return False
    return value


class BotAPIEmulator:
    """In-process fake Telegram Bot API server. See the module docstring and ``tests/emulator/README``."""

    WORLD_OPS = frozenset(
        {
            "add_user",
            "add_chat",
            "set_admins",
            "set_bot_admin",
            "user_started",
            "user_blocked",
            "send_message",
            "press_button",
            "bot_added",
            "bot_removed",
            "bot_promoted",
            "member_joined",
            "member_left",
            "migrate_chat",
            "poll_answer",
            "inject_update",
            "set_down",
            "fail_next",
            "clear_calls",
            "configure",
            "message",
            "sent_messages",
        }
    )
    CONFIG_ATTRS = frozenset(
        {
            "enforce_limits",
            "global_rate_per_sec",
            "per_group_per_minute",
            "per_private_per_sec",
            "filter_allowed_updates",
            "callback_query_ttl",
            "max_poll_options",
        }
    )

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_id: int | None = None,
        bot_username: str = "branch_test_bot",
        bot_name: str = "支部群助手",
        enforce_limits: bool = False,
    ) -> None:
        self.token = token
        if bot_id is None:
            prefix = token.split(":", 1)[0]
            bot_id = int(prefix) if prefix.isdigit() else 123456
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
        }
        # limits
        self.enforce_limits = enforce_limits
        self.global_rate_per_sec: int | None = 30
        self.per_group_per_minute: int | None = 20
        self.per_private_per_sec: int | None = 1
        self.rate_limited_count = 0
        # behaviour knobs
        self.filter_allowed_updates = True
        self.callback_query_ttl: float | None = None
        self.max_poll_options = 10
        # world
        self._users: dict[int, dict[str, Any]] = {}
        self._started: set[int] = set()
        self._blocked: set[int] = set()
        self._chats: dict[int, _ChatState] = {}
        self._usernames: dict[str, int] = {}
        self._callbacks: dict[str, list[Any]] = {}  # id -> [answered, created_at]
        self._cb_counter = itertools.count(4_000_000_000_000_000_001)
        self._polls: dict[str, dict[str, Any]] = {}
        self._poll_counter = itertools.count(5_000_000_000_000_000_001)
        self._files: dict[str, dict[str, Any]] = {}
        self._file_paths: dict[str, str] = {}
        self._file_counter = itertools.count(1)
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._descriptions: dict[tuple[str, str], str] = {}
        self._sent: list[tuple[int, int, dict[str, Any]]] = []
        self._webhook_url = ""
        self._webhook_secret: str | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_last_error: tuple[int, str] | None = None
        self.webhook_deliveries = 0  # updates POSTed to the bot's webhook and answered 2xx
        # updates
        self._queue: deque[_Entry] = deque()
        self._redelivery: deque[_Entry] = deque()
        self._next_update_id = 1
        self._allowed: frozenset[str] | None = None
        self._injected = 0
        self._confirmed = 0
        self._filtered = 0
        self._dropped = 0
        self._dead_count = 0
        self._poll_gen = 0
        self._updates_ev: asyncio.Event | None = None
        # records
        self.polls_started = 0  # getUpdates requests that arrived (a call is recorded only when answered)
        self.calls: list[Call] = []
        self._calls_by_method: dict[str, list[Call]] = {}
        self._method_counts: dict[str, int] = {}
        self._seq = 0
        self.errors: list[str] = []  # emulator-internal exceptions (bugs), should stay empty
        self._changed: asyncio.Event | None = None
        # faults
        self._faults: list[Fault] = []
        self._down = False
        self._global_sends: deque[float] = deque()
        # server
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.base_url = ""
        self.port = 0
        self._methods = self._build_method_table()

    # ============================================================================== lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/_emulator/health", self._ctl_health)
        r.add_post("/_emulator/updates", self._ctl_updates)
        r.add_get("/_emulator/calls", self._ctl_calls)
        r.add_get("/_emulator/stats", self._ctl_stats)
        r.add_post("/_emulator/fault", self._ctl_fault)
        r.add_post("/_emulator/reset_calls", self._ctl_reset_calls)
        r.add_post("/_emulator/world", self._ctl_world)
        r.add_get("/_emulator/sent_messages", self._ctl_sent_messages)
        r.add_post("/_emulator/wait_consumed", self._ctl_wait_consumed)
        r.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        r.add_route("*", "/bot{token}/{method}", self._handle_api)
        r.add_route("*", "/{tail:.*}", self._handle_not_found)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._stopping = False
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        addr = self._runner.addresses[0]
        self.port = addr[1]
        self.base_url = f"http://{host}:{self.port}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping = True
        self._wake_pollers()
        task, self._webhook_task = self._webhook_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotAPIEmulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ============================================================================== world state

    def add_user(
        self,
        user_id: int,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "zh-hans",
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name or f"User{user_id}"}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
            self._usernames[username.lower()] = user_id
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        chat: dict[str, Any] = {"id": user_id, "type": "private", "first_name": user["first_name"]}
        if last_name:
            chat["last_name"] = last_name
        if username:
            chat["username"] = username
        state = self._chats.get(user_id)
        if state is None:
            self._chats[user_id] = _ChatState(chat)
        else:
            state.chat = chat
        return user

    def add_chat(
        self, chat_id: int, type: str = "supergroup", title: str | None = None, username: str | None = None
    ) -> dict[str, Any]:
        if type == "private":
            if chat_id not in self._users:
                self.add_user(chat_id)
            return self._chats[chat_id].chat
        if type not in ("group", "supergroup", "channel"):
            raise ValueError(f"bad chat type {type!r}")
        if chat_id > 0:
            raise ValueError("group/supergroup chat ids are negative")
        chat: dict[str, Any] = {"id": chat_id, "title": title or f"Group {chat_id}", "type": type}
        if username:
            chat["username"] = username
            self._usernames[username.lower()] = chat_id
        state = self._chats.get(chat_id)
        if state is None:
            self._chats[chat_id] = _ChatState(chat)
        else:
            state.chat = chat
            state.type = type
        return chat

    def user(self, user_id: int) -> dict[str, Any]:
        return self._ensure_user(user_id)

    def chat(self, chat_id: int) -> dict[str, Any]:
        return self._ensure_chat(chat_id).chat

    def set_admins(self, chat_id: int, user_ids: Iterable[int], creator_id: int | None = None) -> None:
        state = self._ensure_chat(chat_id)
        ids = set(user_ids)
        for uid in ids | ({creator_id} if creator_id is not None else set()):
            self._ensure_user(uid)
        if creator_id is not None:
            state.creator = creator_id
            ids.discard(creator_id)
        state.admins = ids
        state.members |= ids
        if creator_id is not None:
            state.members.add(creator_id)

    def set_bot_admin(self, chat_id: int, is_admin: bool = True) -> None:
        state = self._ensure_chat(chat_id)
        state.bot_status = "administrator" if is_admin else "member"

    def user_started(self, user_id: int, started: bool = True) -> None:
        self._ensure_user(user_id)
        if started:
            self._started.add(user_id)
        else:
            self._started.discard(user_id)

    def user_blocked(self, user_id: int, blocked: bool = True) -> None:
        self._ensure_user(user_id)
        if blocked:
            self._blocked.add(user_id)
        else:
            self._blocked.discard(user_id)

    def configure(self, **attrs: Any) -> None:
        for k, v in attrs.items():
            if k not in self.CONFIG_ATTRS:
                raise ValueError(f"unknown emulator option {k!r}")
            setattr(self, k, v)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """Current stored state of a message (None if unknown or deleted)."""
        state = self._chats.get(chat_id)
        return None if state is None else state.messages.get(message_id)

    def _ensure_user(self, user_id: int) -> dict[str, Any]:
        user = self._users.get(user_id)
        if user is None:
            if user_id == self.bot_id:
                return self.bot_user
            user = self.add_user(user_id)
        return user

    def _ensure_chat(self, chat_id: int) -> _ChatState:
        state = self._chats.get(chat_id)
        if state is None:
            if chat_id > 0:
                self.add_user(chat_id)
            else:
                self.add_chat(chat_id, "supergroup" if chat_id <= -1_000_000_000_000 else "group")
            state = self._chats[chat_id]
        return state

    # ============================================================================== injection

    def inject_update(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Enqueue a raw update dict (update_id assigned when missing). Messages inside are remembered
        so that replies / edits / button presses referring to them work."""
        if "update_id" in raw:
            update = dict(raw)
            self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        else:
            update = {"update_id": self._next_update_id, **raw}
            self._next_update_id += 1
        for key in ("message", "edited_message", "channel_post"):
            msg = update.get(key)
            if isinstance(msg, dict):
                self._ingest_message(msg)
        utype = next((k for k in update if k != "update_id"), "unknown")
        entry = _Entry(update, utype)
        q = self._queue
        if not q or q[-1].id < entry.id:
            q.append(entry)
        else:  # out-of-order id (rare): keep the queue sorted
            idx = next((i for i, e in enumerate(q) if e.id > entry.id), len(q))
            q.insert(idx, entry)
        self._injected += 1
        self._wake_pollers()
        self._notify()
        return update

    def redeliver(self, update: dict[str, Any]) -> dict[str, Any]:
        """Deliver the very same update (same update_id) once more, as Telegram does when a bot died
        before confirming it. It is handed out before anything else, even if its id was confirmed."""
        entry = _Entry(update, next((k for k in update if k != "update_id"), "unknown"))
        self._redelivery.append(entry)
        self._injected += 1
        self._wake_pollers()
        self._notify()
        return update

    def _ingest_message(self, msg: dict[str, Any]) -> None:
        chat = msg.get("chat")
        mid = msg.get("message_id")
        if not isinstance(chat, dict) or not isinstance(mid, int) or not isinstance(chat.get("id"), int):
            return
        state = self._chats.get(chat["id"])
        if state is None:
            state = _ChatState(chat)
            self._chats[chat["id"]] = state
        state.messages[mid] = msg
        state.next_id = max(state.next_id, mid + 1)
        sender = msg.get("from")
        if isinstance(sender, dict) and isinstance(sender.get("id"), int) and not sender.get("is_bot"):
            self._users.setdefault(sender["id"], sender)
            if state.is_private:
                self._started.add(sender["id"])
                self._blocked.discard(sender["id"])
            else:
                state.members.add(sender["id"])

    def _now(self) -> int:
        return int(time.time())

    def _user_message(self, state: _ChatState, user: dict[str, Any] | None, **content: Any) -> dict[str, Any]:
        mid = state.next_id
        state.next_id += 1
        msg: dict[str, Any] = {"message_id": mid}
        if user is not None:
            msg["from"] = user
        msg["chat"] = state.chat
        msg["date"] = self._now()
        msg.update(content)
        state.messages[mid] = msg
        return msg

    def send_message(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        reply_to_message_id: int | None = None,
        *,
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A user writes ``text`` in ``chat_id`` (for a private chat ``chat_id == user_id``)."""
        state = self._ensure_chat(chat_id)
        user = self._ensure_user(user_id)
        if state.is_private and chat_id != user_id:
            raise ValueError(f"private chat {chat_id} belongs to user {chat_id}, not {user_id}")
        content: dict[str, Any] = {"text": text}
        if entities is None:
            m = _COMMAND_RE.match(text)
            if m:
                entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(m.group())}]
        if entities:
            content["entities"] = entities
        if reply_to_message_id is not None:
            target = state.messages.get(reply_to_message_id)
            if target is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat_id} to reply to")
            content["reply_to_message"] = {k: v for k, v in target.items() if k != "reply_to_message"}
        msg = self._user_message(state, user, **content)
        if state.is_private:
            self._started.add(user_id)
            self._blocked.discard(user_id)
        else:
            state.members.add(user_id)
            state.kicked.discard(user_id)
        return self.inject_update({"message": msg})

    def send_document(
        self, chat_id: int, user_id: int, filename: str, data: bytes, caption: str | None = None
    ) -> dict[str, Any]:
        """A user sends a file to ``chat_id``; the bot can fetch it with getFile and the file URL."""
        state = self._ensure_chat(chat_id)
        user = self._ensure_user(user_id)
        info = self._store_file("document", filename, data)
        document = {key: info[key] for key in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")}
        content: dict[str, Any] = {"document": document}
        if caption:
            content["caption"] = caption
        msg = self._user_message(state, user, **content)
        if state.is_private:
            self._started.add(user_id)
        else:
            state.members.add(user_id)
        return self.inject_update({"message": msg})

    def press_button(
        self, chat_id: int, user_id: int, message_id: int, data: str, *, forged: bool = False
    ) -> dict[str, Any]:
        """A user presses an inline button with callback ``data`` under bot message ``message_id``.
        Unless ``forged``, the message must be a stored bot message that currently has such a button."""
        state = self._ensure_chat(chat_id)
        user = self._ensure_user(user_id)
        msg = state.messages.get(message_id)
        if not forged:
            if msg is None:
                raise ValueError(f"no message {message_id} in chat {chat_id} (use forged=True to fake one)")
            if msg.get("from", {}).get("id") != self.bot_id:
                raise ValueError(f"message {message_id} in chat {chat_id} was not sent by the bot")
            rows = (msg.get("reply_markup") or {}).get("inline_keyboard") or []
            datas = [b.get("callback_data") for row in rows for b in row]
            if data not in datas:
                raise ValueError(
                    f"message {message_id} in chat {chat_id} has no button with callback_data {data!r}; "
                    f"current buttons: {datas!r} (use forged=True to press anyway)"
                )
        if msg is None:
            msg = {
                "message_id": message_id,
                "from": self.bot_user,
                "chat": state.chat,
                "date": self._now(),
                "text": "",
            }
        qid = str(next(self._cb_counter))
        self._callbacks[qid] = [False, time.monotonic()]
        if state.is_private:
            self._started.add(user_id)
        return self.inject_update(
            {
                "callback_query": {
                    "id": qid,
                    "from": user,
                    "message": msg,
                    "chat_instance": str((chat_id * 7919 + 104729) % 10**18),
                    "data": data,
                }
            }
        )

    def _member_dict(self, state: _ChatState, user_id: int, status: str | None = None) -> dict[str, Any]:
        user = self.bot_user if user_id == self.bot_id else self._ensure_user(user_id)
        if status is None:
            if user_id == self.bot_id:
                status = state.bot_status if not state.is_private else "member"
            elif state.is_private:
                status = "member" if user_id == state.id else "left"
            elif user_id == state.creator:
                status = "creator"
            elif user_id in state.admins:
                status = "administrator"
            elif user_id in state.kicked:
                status = "kicked"
            elif user_id in state.members:
                status = "member"
            else:
                status = "left"
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        if status == "administrator":
            is_bot = user_id == self.bot_id
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": is_bot,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
                "can_send_welcome_messages": True,
                "can_pin_messages": True,
                "can_manage_topics": False,
            }
        if status == "kicked":
            return {"status": "kicked", "user": user, "until_date": 0}
        if status in ("member", "left"):
            return {"status": status, "user": user}
        raise ValueError(f"bad member status {status!r}")

    def _member_update(
        self, kind: str, state: _ChatState, by_user: dict[str, Any], old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        return self.inject_update(
            {
                kind: {
                    "chat": state.chat,
                    "from": by_user,
                    "date": self._now(),
                    "old_chat_member": old,
                    "new_chat_member": new,
                }
            }
        )

    def bot_added(self, chat_id: int, by_user_id: int, status: str = "member") -> list[dict[str, Any]]:
        """The bot is added to a group: returns [my_chat_member update, service message update]."""
        if status not in ("member", "administrator"):
            raise ValueError("status must be 'member' or 'administrator'")
        state = self._ensure_chat(chat_id)
        if state.is_private:
            raise ValueError("bot_added is for groups; a private chat starts with send_message(/start)")
        by_user = self._ensure_user(by_user_id)
        old = self._member_dict(state, self.bot_id, "kicked" if state.bot_status == "kicked" else "left")
        state.bot_status = status
        state.members.add(by_user_id)
        new = self._member_dict(state, self.bot_id, status)
        u1 = self._member_update("my_chat_member", state, by_user, old, new)
        msg = self._user_message(
            state,
            by_user,
            new_chat_participant=self.bot_user,
            new_chat_member=self.bot_user,
            new_chat_members=[self.bot_user],
        )
        u2 = self.inject_update({"message": msg})
        return [u1, u2]

    def bot_promoted(self, chat_id: int, by_user_id: int, is_admin: bool = True) -> dict[str, Any]:
        """The bot, already in the group, is made an admin (or demoted): my_chat_member update."""
        return self._bot_status_changed(chat_id, by_user_id, "administrator" if is_admin else "member")

    def bot_removed(self, chat_id: int, by_user_id: int, status: str = "kicked") -> dict[str, Any]:
        """The bot is kicked from / leaves a group: my_chat_member update; later sends get 403."""
        if status not in ("kicked", "left"):
            raise ValueError("status must be 'kicked' or 'left'")
        return self._bot_status_changed(chat_id, by_user_id, status)

    def _bot_status_changed(self, chat_id: int, by_user_id: int, status: str) -> dict[str, Any]:
        state = self._ensure_chat(chat_id)
        by_user = self._ensure_user(by_user_id)
        old = self._member_dict(state, self.bot_id)
        state.bot_status = status
        new = self._member_dict(state, self.bot_id, status)
        return self._member_update("my_chat_member", state, by_user, old, new)

    def member_joined(self, chat_id: int, user_id: int, by_user_id: int | None = None) -> list[dict[str, Any]]:
        """A user joins: returns [service message update, chat_member update]."""
        state = self._ensure_chat(chat_id)
        user = self._ensure_user(user_id)
        by_user = self._ensure_user(by_user_id) if by_user_id is not None else user
        old = self._member_dict(state, user_id)
        state.members.add(user_id)
        state.kicked.discard(user_id)
        new = self._member_dict(state, user_id)
        msg = self._user_message(
            state, by_user, new_chat_participant=user, new_chat_member=user, new_chat_members=[user]
        )
        u1 = self.inject_update({"message": msg})
        u2 = self._member_update("chat_member", state, by_user, old, new)
        return [u1, u2]

    def member_left(self, chat_id: int, user_id: int, by_user_id: int | None = None) -> list[dict[str, Any]]:
        """A user leaves (or is removed by ``by_user_id``): [service message update, chat_member update]."""
        state = self._ensure_chat(chat_id)
        user = self._ensure_user(user_id)
        by_user = self._ensure_user(by_user_id) if by_user_id is not None else user
        old = self._member_dict(state, user_id)
        state.members.discard(user_id)
        state.admins.discard(user_id)
        if state.creator == user_id:
            state.creator = None
        new = self._member_dict(state, user_id, "left")
        msg = self._user_message(state, by_user, left_chat_participant=user, left_chat_member=user)
        u1 = self.inject_update({"message": msg})
        u2 = self._member_update("chat_member", state, by_user, old, new)
        return [u1, u2]

    def migrate_chat(self, old_chat_id: int, new_chat_id: int, by_user_id: int | None = None) -> list[dict[str, Any]]:
        """group → supergroup: [message with migrate_to_chat_id in the old chat,
        message with migrate_from_chat_id in the new one]. Later requests to the old id get 400 + migrate."""
        old = self._ensure_chat(old_chat_id)
        if old.is_private:
            raise ValueError("private chats can't be migrated")
        self.add_chat(new_chat_id, "supergroup", old.chat.get("title"))
        new = self._chats[new_chat_id]
        new.admins = set(old.admins)
        new.creator = old.creator
        new.members = set(old.members)
        new.kicked = set(old.kicked)
        new.bot_status = old.bot_status
        if by_user_id is None:
            by_user_id = old.creator if old.creator is not None else next(iter(sorted(old.admins)), None)
        by_user = self._ensure_user(by_user_id) if by_user_id is not None else None
        m1 = self._user_message(old, by_user, migrate_to_chat_id=new_chat_id)
        old.migrated_to = new_chat_id
        u1 = self.inject_update({"message": m1})
        m2 = self._user_message(new, by_user, migrate_from_chat_id=old_chat_id)
        u2 = self.inject_update({"message": m2})
        return [u1, u2]

    def poll_answer(self, poll_id: str, user_id: int, option_ids: list[int]) -> dict[str, Any]:
        user = self._ensure_user(user_id)
        poll = self._polls.get(str(poll_id))
        persistent = [str(i) for i in option_ids]
        if poll is not None:
            opts = poll["poll"]["options"]
            for i in option_ids:
                if not 0 <= i < len(opts):
                    raise ValueError(f"poll {poll_id} has no option {i}")
            persistent = [opts[i]["persistent_id"] for i in option_ids]
            poll["votes"][user_id] = list(option_ids)
            self._refresh_poll(poll)
        return self.inject_update(
            {
                "poll_answer": {
                    "poll_id": str(poll_id),
                    "user": user,
                    "option_ids": list(option_ids),
                    "option_persistent_ids": persistent,
                }
            }
        )

    def _refresh_poll(self, poll: dict[str, Any], closed: bool | None = None) -> dict[str, Any]:
        counts: dict[int, int] = {}
        for ids in poll["votes"].values():
            for i in ids:
                counts[i] = counts.get(i, 0) + 1
        old = poll["poll"]
        new = dict(old)
        new["options"] = [{**o, "voter_count": counts.get(i, 0)} for i, o in enumerate(old["options"])]
        new["total_voter_count"] = sum(1 for ids in poll["votes"].values() if ids)
        if closed is not None:
            new["is_closed"] = closed
        poll["poll"] = new
        state = self._chats.get(poll["chat_id"])
        if state is not None and poll["message_id"] in state.messages:
            state.messages[poll["message_id"]] = {**state.messages[poll["message_id"]], "poll": new}
        return new

    # ============================================================================== faults

    def fail_next(
        self,
        method: str,
        kind: str,
        count: int = 1,
        *,
        retry_after: int = 1,
        delay: float = 0.0,
        chat_id: int | str | None = None,
        migrate_to: int | None = None,
        status: int = 502,
    ) -> Fault:
        """Make the next ``count`` ``method`` requests (``"*"`` = any method; optionally only those for
        ``chat_id``) fail with ``kind``: 429 | 429_bare | 5xx | slow | 403 | migrate | down | lost.
        ``down`` closes the connection without processing; ``lost`` processes the request normally and
        then closes the connection without answering (the message *was* sent)."""
        fault = Fault(method, kind, count, retry_after, delay, chat_id, migrate_to, status)
        self._faults.append(fault)
        return fault

    def set_down(self, down: bool = True) -> None:
        """While down every Bot API request is answered 502 Bad Gateway."""
        self._down = down

    def _take_fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        if not self._faults:
            return None
        for fault in self._faults:
            if fault.matches(method, params):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ============================================================================== records

    def calls_of(self, method: str, **param_filters: Any) -> list[Call]:
        calls = self._calls_by_method.get(method, [])
        if not param_filters:
            return list(calls)
        out = []
        for c in calls:
            for k, v in param_filters.items():
                p = c.params.get(k)
                if p != v and str(p) != str(v):
                    break
            else:
                out.append(c)
        return out

    def sent_messages(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot successfully sent (current state if edited since; last known if deleted)."""
        out = []
        for cid, mid, original in self._sent:
            if chat_id is not None and cid != chat_id:
                continue
            state = self._chats.get(cid)
            current = state.messages.get(mid) if state is not None else None
            out.append(current if current is not None else original)
        return out

    def clear_calls(self) -> None:
        self.calls = []
        self._calls_by_method = {}
        self._method_counts = {}
        self._sent = []
        self.rate_limited_count = 0

    @property
    def pending_updates(self) -> int:
        return len(self._queue) + len(self._redelivery) - self._dead_count

    def stats(self) -> dict[str, Any]:
        return {
            "calls_total": len(self.calls),
            "methods": dict(self._method_counts),
            "pending_updates": self.pending_updates,
            "confirmed_updates": self._confirmed,
            "injected_updates": self._injected,
            "filtered_updates": self._filtered,
            "dropped_updates": self._dropped,
            "last_update_id": self._next_update_id - 1,
            "rate_limited_count": self.rate_limited_count,
            "sent_messages": len(self._sent),
            "errors": list(self.errors),
        }

    def _notify(self) -> None:
        ev = self._changed
        if ev is not None:
            self._changed = None
            ev.set()

    async def _wait_change(self, timeout: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        ev = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await ev.wait()

    async def wait_for(  # noqa: ASYNC109
        self, predicate: Callable[[], bool], timeout: float = 5.0, message: str | None = None
    ) -> None:
        """Wait until ``predicate()`` is true. Re-checked on every request/injection (and every 20 ms,
        for state that changes without talking to the API). AssertionError with context on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n  ".join(repr(c) for c in self.calls[-12:]) or "(none)"
                what = message or getattr(predicate, "__name__", repr(predicate))
                raise AssertionError(
                    f"emulator: condition {what} not met within {timeout}s; "
                    f"pending updates={self.pending_updates}; last calls:\n  {recent}"
                )
            await self._wait_change(min(remaining, 0.02))

    @property
    def last_seq(self) -> int:
        """Sequence number of the latest recorded call (use as ``since=`` to wait only for newer calls)."""
        return self._seq

    async def wait_for_call(  # noqa: ASYNC109
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        count: int = 1,
        *,
        since: int = 0,
    ) -> list[Call]:
        """Wait until at least ``count`` recorded ``method`` calls (with ``seq > since``) satisfy
        ``predicate``; returns all matching calls. Scans only new calls on each wake-up."""
        found: list[Call] = []
        source: list[Call] | None = None
        scanned = 0

        def check() -> bool:
            nonlocal source, scanned, found
            calls = self._calls_by_method.get(method, [])
            if calls is not source:  # first time, or clear_calls() replaced the lists
                source, scanned, found = calls, 0, []
            for c in calls[scanned:]:
                if c.seq > since and (predicate is None or predicate(c)):
                    found.append(c)
            scanned = len(calls)
            return len(found) >= count

        try:
            await self.wait_for(check, timeout, message=f"{count}× {method}")
        except AssertionError as e:
            seen = self._calls_by_method.get(method, [])
            raise AssertionError(
                f"{e}\n{method} calls so far ({len(seen)}, matching {len(found)}): {seen[-5:]!r}"
            ) from None
        return found

    async def wait_until_consumed(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until every injected update was confirmed by the bot (getUpdates offset moved past it)."""
        await self.wait_for(lambda: self.pending_updates == 0, timeout, message="all updates consumed")

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        files: dict[str, tuple[str, bytes]],
        at: float,
        payload: dict[str, Any] | None,
        status: int,
        content_type: str = "",
    ) -> Call:
        self._seq += 1
        call = Call(method, params, files, at, payload, status, self._seq, content_type)
        self.calls.append(call)
        lst = self._calls_by_method.get(method)
        if lst is None:
            self._calls_by_method[method] = [call]
        else:
            lst.append(call)
        self._method_counts[method] = self._method_counts.get(method, 0) + 1
        self._notify()
        return call

    # ============================================================================== HTTP plumbing

    @staticmethod
    def _response(payload: dict[str, Any], status: int) -> web.Response:
        return web.Response(body=_json_dumps(payload).encode(), status=status, content_type="application/json")

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        raw: dict[str, Any] = dict(request.query.items()) if request.query_string else {}
        parts: dict[str, tuple[str, bytes]] = {}
        if request.method == "POST" and request.body_exists:
            ctype = request.content_type
            if ctype == "multipart/form-data":
                reader = await request.multipart()
                while True:
                    part = await reader.next()
                    if part is None:
                        break
                    if not isinstance(part, BodyPartReader) or part.name is None:
                        raise _bad("nested multipart is not supported")
                    if part.filename is not None:
                        parts[part.name] = (part.filename, bytes(await part.read(decode=False)))
                    else:
                        raw[part.name] = await part.text()
            elif ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON object") from None
                if not isinstance(body, dict):
                    raise _bad("JSON object expected")
                raw.update(body)
            else:  # urlencoded (aiohttp FormData without files) or anything form-like
                raw.update((await request.post()).items())
        params = {k: _decode_field(k, v) for k, v in raw.items()}
        files: dict[str, tuple[str, bytes]] = {}
        if parts:
            for k, v in params.items():
                if isinstance(v, str) and v.startswith("attach://") and v[9:] in parts:
                    files[k] = parts.pop(v[9:])
            files.update(parts)
        return params, files

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        raw_method = request.match_info["method"]
        ctype = request.content_type if request.body_exists else ""
        try:
            params, files = await self._read_params(request)
        except ApiError as e:
            self._record(raw_method, {}, {}, at, e.payload(), e.code, ctype)
            return self._response(e.payload(), e.code)
        except (ValueError, web.HTTPException) as e:  # malformed multipart / body too large ...
            err = _bad(f"can't parse request: {e}")
            self._record(raw_method, {}, {}, at, err.payload(), err.code, ctype)
            return self._response(err.payload(), err.code)
        if request.match_info["token"] != self.token:
            err = ApiError(401, "Unauthorized")
            self._record(raw_method, params, files, at, err.payload(), err.code, ctype)
            return self._response(err.payload(), err.code)
        entry = self._methods.get(raw_method.lower())
        if entry is None:
            err = ApiError(404, "Not Found")
            self._record(raw_method, params, files, at, err.payload(), err.code, ctype)
            return self._response(err.payload(), err.code)
        method, handler = entry
        if self._down:
            err = ApiError(502, "Bad Gateway")
            self._record(method, params, files, at, err.payload(), err.code, ctype)
            return self._response(err.payload(), err.code)

        fault = self._take_fault(method, params) if self._faults else None
        if fault is not None:
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.kind == "down":
                self._record(method, params, files, at, None, 0, ctype)
                return self._abort(request)
            if fault.kind not in ("slow", "lost"):
                err = fault.error(params, self)
                self._record(method, params, files, at, err.payload(), err.code, ctype)
                return self._response(err.payload(), err.code)

        try:
            if method == "getUpdates":
                self.polls_started += 1
                result = await self._get_updates(params, request)
            else:
                result = handler(params, files)
            payload: dict[str, Any] = {"ok": True, "result": result}
            status = 200
        except ApiError as e:
            payload, status = e.payload(), e.code
        except _ClientGone:
            return web.Response(status=499)
        except Exception as e:  # an emulator bug: answer 500 and remember it
            self.errors.append(f"{method}: {type(e).__name__}: {e}")
            payload = {"ok": False, "error_code": 500, "description": f"Internal Server Error: emulator: {e}"}
            status = 500
        self._record(method, params, files, at, payload, status, ctype)
        if fault is not None and fault.kind == "lost":
            return self._abort(request)
        return self._response(payload, status)

    @staticmethod
    def _abort(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Nothing can be written any more; aiohttp silently drops the response on a closed transport.
        return web.Response(status=499)

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return self._response(ApiError(404, "Not Found").payload(), 404)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._response(ApiError(401, "Unauthorized").payload(), 401)
        file_id = self._file_paths.get(request.match_info["path"])
        if file_id is None:
            return self._response(ApiError(404, "Not Found").payload(), 404)
        info = self._files[file_id]
        return web.Response(body=info["data"], content_type=info.get("mime_type") or "application/octet-stream")

    # ============================================================================== control API

    @staticmethod
    def _ctl_ok(result: Any) -> web.Response:
        return web.Response(
            text=json.dumps({"ok": True, "result": result}, ensure_ascii=False, default=str),
            content_type="application/json",
        )

    @staticmethod
    def _ctl_err(description: str, status: int = 400) -> web.Response:
        return web.Response(
            text=json.dumps({"ok": False, "description": description}, ensure_ascii=False),
            status=status,
            content_type="application/json",
        )

    async def _ctl_health(self, request: web.Request) -> web.Response:
        return self._ctl_ok({"base_url": self.base_url, "bot_id": self.bot_id})

    async def _ctl_updates(self, request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list) or not all(isinstance(u, dict) for u in body):
            return self._ctl_err("expected a JSON list of update objects")
        return self._ctl_ok([self.inject_update(u)["update_id"] for u in body])

    async def _ctl_calls(self, request: web.Request) -> web.Response:
        method = request.query.get("method")
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return self._ctl_err("since must be an integer")
        source = self.calls if method is None else self._calls_by_method.get(method, [])
        # seq is increasing: skip quickly from the end
        start = len(source)
        while start > 0 and source[start - 1].seq >= since:
            start -= 1
        return self._ctl_ok({"calls": [c.to_json() for c in source[start:]], "next": self._seq + 1})

    async def _ctl_stats(self, request: web.Request) -> web.Response:
        return self._ctl_ok(self.stats())

    async def _ctl_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            fault = self.fail_next(**body)
        except (TypeError, ValueError) as e:
            return self._ctl_err(str(e))
        return self._ctl_ok(fault.__dict__)

    async def _ctl_reset_calls(self, request: web.Request) -> web.Response:
        self.clear_calls()
        return self._ctl_ok(True)

    async def _ctl_world(self, request: web.Request) -> web.Response:
        """Body: one ``{"op": name, ...kwargs}`` object or a list of them; runs the matching Python API."""
        body = await request.json()
        ops = body if isinstance(body, list) else [body]
        results = []
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in self.WORLD_OPS:
                return self._ctl_err(f"bad op {op!r}; allowed: {sorted(self.WORLD_OPS)}")
            kwargs = {k: v for k, v in op.items() if k != "op"}
            try:
                result = getattr(self, op["op"])(**kwargs)
            except (TypeError, ValueError) as e:
                return self._ctl_err(f"{op['op']}: {e}")
            results.append(result.__dict__ if isinstance(result, Fault) else result)
        return self._ctl_ok(results if isinstance(body, list) else results[0])

    async def _ctl_sent_messages(self, request: web.Request) -> web.Response:
        chat_id = request.query.get("chat_id")
        return self._ctl_ok(self.sent_messages(int(chat_id) if chat_id else None))

    async def _ctl_wait_consumed(self, request: web.Request) -> web.Response:
        timeout = float(request.query.get("timeout", "30"))
        try:
            await self.wait_until_consumed(timeout)
        except AssertionError as e:
            return self._ctl_err(str(e), 408)
        return self._ctl_ok(self.stats())

    # ============================================================================== getUpdates

    def _wake_pollers(self) -> None:
        ev = self._updates_ev
        if ev is not None:
            self._updates_ev = None
            ev.set()

    def _pop_front(self) -> None:
        e = self._queue.popleft()
        if e.dead:
            self._dead_count -= 1
        else:
            self._confirmed += 1

    def _confirm(self, offset: Any) -> None:
        if not isinstance(offset, int):
            return
        q = self._queue
        if offset < 0:
            keep = -offset
            while len(q) > keep:
                self._pop_front()
            return
        while q and q[0].id < offset:
            self._pop_front()
        r = self._redelivery
        if r and any(e.delivered and e.id < offset for e in r):
            kept = deque(e for e in r if not (e.delivered and e.id < offset))
            self._confirmed += len(r) - len(kept)
            self._redelivery = kept

    def _allowed_type(self, utype: str) -> bool:
        if not self.filter_allowed_updates:
            return True
        allowed = self._allowed
        if allowed is None:
            return utype not in _NOT_DEFAULT_UPDATES
        return utype in allowed

    def _collect(self, limit: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        r = self._redelivery
        if r:
            for e in list(r):
                if not self._allowed_type(e.type):
                    r.remove(e)
                    self._filtered += 1
                    continue
                if len(out) < limit:
                    e.delivered = True
                    out.append(e.update)
            if out:
                return out
        q = self._queue
        while q and (q[0].dead or not self._allowed_type(q[0].type)):
            if q[0].dead:
                self._dead_count -= 1
            else:
                self._filtered += 1
            q.popleft()
        for e in q:
            if len(out) >= limit:
                break
            if e.dead:
                continue
            if self._allowed_type(e.type):
                out.append(e.update)
            else:  # filtered: never delivered, dropped once it reaches the front
                e.dead = True
                self._dead_count += 1
                self._filtered += 1
        return out

    async def _get_updates(self, p: dict[str, Any], request: web.Request) -> list[dict[str, Any]]:
        if self._webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        limit = p.get("limit", 100)
        limit = 100 if not isinstance(limit, int) or limit < 1 or limit > 100 else limit
        timeout = p.get("timeout", 0)
        timeout = max(0, timeout) if isinstance(timeout, int) else 0
        allowed = p.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed = frozenset(allowed) if allowed else None
        self._poll_gen += 1
        gen = self._poll_gen
        self._wake_pollers()  # an older long poll gets 409 Conflict, like Telegram
        self._confirm(p.get("offset"))
        self._notify()
        batch = self._collect(limit)
        if batch or timeout == 0 or self._stopping:
            return batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if self._updates_ev is None:
                self._updates_ev = asyncio.Event()
            ev = self._updates_ev
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await ev.wait()
            transport = request.transport
            if transport is None or transport.is_closing():
                raise _ClientGone
            if self._poll_gen != gen:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            if self._stopping:
                return []
            batch = self._collect(limit)
            if batch:
                return batch

    # ============================================================================== validation helpers

    def _resolve_chat_id(self, raw: Any, name: str = "chat_id") -> int:
        if raw is None or raw == "":
            raise _bad(f"{name} is empty")
        if isinstance(raw, bool):
            raise _bad("chat not found")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and raw.startswith("@"):
            cid = self._usernames.get(raw[1:].lower())
            if cid is not None:
                return cid
        raise _bad("chat not found")

    def _get_chat(self, p: dict[str, Any], *, send: bool = False, name: str = "chat_id") -> _ChatState:
        chat_id = self._resolve_chat_id(p.get(name), name)
        state = self._chats.get(chat_id)
        if state is None:
            raise _bad("chat not found")
        if state.migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": state.migrated_to},
            )
        if state.is_private:
            if send:
                if chat_id in self._blocked:
                    raise ApiError(403, "Forbidden: bot was blocked by the user")
                if chat_id not in self._started:
                    raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        elif state.bot_status in ("kicked", "left"):
            kind = state.type
            if state.bot_status == "kicked":
                raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
            raise ApiError(403, f"Forbidden: bot is not a member of the {kind} chat")
        return state

    def _parse(
        self, text: Any, parse_mode: Any, entities: Any, *, what: str = "entities"
    ) -> tuple[str, list[dict[str, Any]]]:
        text = str(text)
        if parse_mode:
            try:
                return parse_text(text, str(parse_mode))
            except ParseError as e:
                raise _bad(f"can't parse entities: {e}") from None
            except LookupError:
                raise _bad("unsupported parse_mode") from None
        plain, _ = parse_text(text, None)
        if entities:
            if not isinstance(entities, list) or not all(
                isinstance(e, dict)
                and isinstance(e.get("type"), str)
                and isinstance(e.get("offset"), int)
                and isinstance(e.get("length"), int)
                for e in entities
            ):
                raise _bad(f"can't parse {what} JSON object")
            if plain != text:  # leading whitespace trimmed: shift like Telegram
                return strip_entities(text, entities)
            return plain, entities
        return plain, []

    def _check_markup(self, markup: Any, *, inline_only: bool = False) -> dict[str, Any] | None:
        """Validate reply_markup; returns the inline keyboard to store on the message (or None)."""
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
            for row in rows:
                for b in row:
                    if not isinstance(b, dict) or not isinstance(b.get("text"), str):
                        raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
                    actions = [a for a in _INLINE_BUTTON_ACTIONS if a in b]
                    if not actions:
                        raise _bad(
                            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                        )
                    if "callback_data" in b:
                        data = b["callback_data"]
                        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
                            raise _bad("BUTTON_DATA_INVALID")
                    if "url" in b:
                        url = b["url"]
                        if not isinstance(url, str) or not re.match(r"(https?|tg)://\S+$", url):
                            raise _bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
            return markup if any(rows) else None
        if inline_only:
            raise _bad("inline keyboard expected")
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad('field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays')
            for row in rows:
                for b in row:
                    if not (isinstance(b, str) or (isinstance(b, dict) and isinstance(b.get("text"), str))):
                        raise _bad('can\'t parse keyboard button: Field "text" must be of type String')
            return None
        if markup.get("remove_keyboard") or markup.get("force_reply"):
            return None
        raise _bad("can't parse reply keyboard markup JSON object")

    def _reply_to(self, state: _ChatState, p: dict[str, Any]) -> dict[str, Any] | None:
        rp = p.get("reply_parameters")
        mid: Any = None
        allow = bool(p.get("allow_sending_without_reply"))
        target_state = state
        if isinstance(rp, dict):
            mid = rp.get("message_id")
            allow = allow or bool(rp.get("allow_sending_without_reply"))
            if rp.get("chat_id") not in (None, state.id):
                target_state = self._chats.get(self._resolve_chat_id(rp["chat_id"])) or state
        elif rp is not None:
            raise _bad("can't parse reply parameters JSON object")
        if mid is None:
            mid = p.get("reply_to_message_id")
        if mid is None:
            return None
        target = target_state.messages.get(mid) if isinstance(mid, int) else None
        if target is None:
            if allow:
                return None
            raise _bad("message to be replied not found")
        return {k: v for k, v in target.items() if k != "reply_to_message"}

    def _check_rate(self, state: _ChatState, *, edit: bool = False) -> None:
        if not self.enforce_limits:
            return
        now = time.monotonic()
        waits: list[float] = []
        if not edit and self.global_rate_per_sec:
            g = self._global_sends
            while g and g[0] <= now - 1.0:
                g.popleft()
            if len(g) >= self.global_rate_per_sec:
                waits.append(g[0] + 1.0 - now)
        if state.is_private:
            window, limit = 1.0, (None if edit else self.per_private_per_sec)
        else:
            window, limit = 60.0, self.per_group_per_minute
        if limit:
            q = state.sends
            while q and q[0] <= now - window:
                q.popleft()
            if len(q) >= limit:
                waits.append(q[0] + window - now)
        if waits:
            self.rate_limited_count += 1
            ra = max(1, math.ceil(max(waits)))
            raise ApiError(429, f"Too Many Requests: retry after {ra}", {"retry_after": ra})

    def _count_send(self, state: _ChatState, *, edit: bool = False) -> None:
        if not self.enforce_limits:
            return
        now = time.monotonic()
        if not edit:
            self._global_sends.append(now)
        if not (edit and state.is_private):
            state.sends.append(now)

    def _bot_message(self, state: _ChatState, content: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
        mid = state.next_id
        state.next_id += 1
        msg: dict[str, Any] = {
            "message_id": mid,
            "from": self.bot_user,
            "chat": state.chat,
            "date": self._now(),
        }
        reply = self._reply_to(state, p)
        if reply is not None:
            msg["reply_to_message"] = reply
        msg.update(content)
        state.messages[mid] = msg
        self._sent.append((state.id, mid, msg))
        self._count_send(state)
        return msg

    def _store_file(self, kind: str, filename: str, data: bytes) -> dict[str, Any]:
        n = next(self._file_counter)
        prefix = {"document": "BQACAgIAAxkBAAI", "photo": "AgACAgIAAxkBAAI"}.get(kind, "CAACAgIAAxkBAAI")
        file_id = f"{prefix}{n:06d}EMU"
        ext = "." + filename.rsplit(".", 1)[1] if "." in filename else ""
        path = f"{kind}s/file_{n}{ext}"
        info = {
            "file_id": file_id,
            "file_unique_id": f"AgAD{n:06d}",
            "file_name": filename,
            "mime_type": mimetypes.guess_type(filename)[0] or "application/octet-stream",
            "file_size": len(data),
            "data": data,
            "path": path,
            "kind": kind,
        }
        self._files[file_id] = info
        self._file_paths[path] = file_id
        return info

    def _input_file(self, kind: str, p: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        if kind in files:
            filename, data = files[kind]
            if not data:
                raise _bad("file must be non-empty")
            return self._store_file(kind, filename, data)
        value = p.get(kind)
        if not value:
            raise _bad(f"there is no {kind} in the request")
        if isinstance(value, str):
            if value in self._files:
                return self._files[value]
            if re.match(r"https?://", value):
                name = value.rstrip("/").rsplit("/", 1)[-1] or "file"
                return self._store_file(kind, name, b"")
        raise _bad("wrong file identifier/HTTP URL specified")

    # ============================================================================== methods

    def _build_method_table(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        table: dict[str, tuple[str, Callable[..., Any]]] = {}
        for name in dir(self):
            if name.startswith("_api_"):
                canonical = name[5:]
                table[canonical.lower()] = (canonical, getattr(self, name))
        table["getupdates"] = ("getUpdates", self._get_updates)
        return table

    def _api_getMe(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _api_logOut(self, p: dict[str, Any], f: Any) -> bool:
        return True

    def _api_close(self, p: dict[str, Any], f: Any) -> bool:
        return True

    def _drop_pending(self) -> None:
        self._dropped += self.pending_updates
        self._queue.clear()
        self._redelivery.clear()
        self._notify()

    def _api_deleteWebhook(self, p: dict[str, Any], f: Any) -> bool:
        self._webhook_url = ""
        if p.get("drop_pending_updates"):
            self._drop_pending()
        self._wake_pollers()
        return True

    def _api_setWebhook(self, p: dict[str, Any], f: Any) -> bool:
        url = p.get("url") or ""
        # Telegram insists on HTTPS; plain http is tolerated for loopback hosts so webhook mode is testable.
        if url and not str(url).startswith("https://") and not _LOOPBACK_HTTP.match(str(url)):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self._webhook_url = str(url)
        self._webhook_secret = str(p["secret_token"]) if p.get("secret_token") else None
        allowed = p.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed = frozenset(allowed) if allowed else None
        if p.get("drop_pending_updates"):
            self._drop_pending()
        self._wake_pollers()
        if self._webhook_url and (self._webhook_task is None or self._webhook_task.done()):
            self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_worker())
        return True

    def _api_getWebhookInfo(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": self.pending_updates,
        }
        if self._webhook_url:
            info["max_connections"] = 40
            if self._webhook_last_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_last_error
        return info

    async def _webhook_worker(self) -> None:
        """While a webhook is set, POST pending updates to it one at a time (in order), like Telegram:
        JSON body, ``X-Telegram-Bot-Api-Secret-Token`` header; a 2xx answer confirms the update and a
        method in the answer body (aiogram's "reply into webhook") is executed. Failures are retried."""
        backoff = 0.05
        async with aiohttp.ClientSession() as http:
            while self._webhook_url and not self._stopping:
                batch = self._collect(1)
                if not batch:
                    if self._updates_ev is None:
                        self._updates_ev = asyncio.Event()
                    await self._updates_ev.wait()
                    continue
                update = batch[0]
                url = self._webhook_url
                headers = {"Content-Type": "application/json"}
                if self._webhook_secret:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = self._webhook_secret
                error: str | None = None
                try:
                    async with http.post(
                        url,
                        data=_json_dumps(update).encode(),
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=60),
                    ) as resp:
                        if 200 <= resp.status < 300:
                            await self._execute_webhook_reply(resp)
                        else:
                            error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
                except (aiohttp.ClientError, TimeoutError, OSError) as e:
                    error = f"Connection failed: {type(e).__name__}: {e}"
                if error is None:
                    backoff = 0.05
                    self.webhook_deliveries += 1
                    self._confirm(update["update_id"] + 1)
                    self._notify()
                else:
                    self._webhook_last_error = (self._now(), error)
                    self._notify()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)

    async def _execute_webhook_reply(self, resp: aiohttp.ClientResponse) -> None:
        raw: dict[str, Any] = {}
        parts: dict[str, tuple[str, bytes]] = {}
        ctype = resp.content_type
        if ctype == "multipart/form-data":
            reader = aiohttp.MultipartReader.from_response(resp)
            while True:
                part = await reader.next()
                if part is None:
                    break
                if isinstance(part, BodyPartReader) and part.name is not None:
                    if part.filename is not None:
                        parts[part.name] = (part.filename, bytes(await part.read(decode=False)))
                    else:
                        raw[part.name] = await part.text()
        elif ctype == "application/json":
            body = await resp.json()
            if isinstance(body, dict):
                raw = body
        else:
            await resp.read()
        method_name = raw.pop("method", None)
        if not isinstance(method_name, str):
            return
        at = time.monotonic()
        entry = self._methods.get(method_name.lower())
        if entry is None or entry[0] == "getUpdates":
            err = ApiError(404, "Not Found")
            self._record(method_name, raw, {}, at, err.payload(), err.code, "webhook-reply")
            return
        method, handler = entry
        try:
            params = {k: _decode_field(k, v) for k, v in raw.items()}
            files = {
                k: parts.pop(v[9:])
                for k, v in params.items()
                if isinstance(v, str) and v.startswith("attach://") and v[9:] in parts
            }
            files.update(parts)
            payload: dict[str, Any] = {"ok": True, "result": handler(params, files)}
            status = 200
        except ApiError as e:
            params, files = raw, {}
            payload, status = e.payload(), e.code
        self._record(method, params, files, at, payload, status, "webhook-reply")

    def _api_sendMessage(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state = self._get_chat(p, send=True)
        text = p.get("text")
        if text is None or text == "":
            raise _bad("message text is empty")
        plain, entities = self._parse(text, p.get("parse_mode"), p.get("entities"))
        if not plain:
            raise _bad("message text is empty")
        if len(plain) > 4096:
            raise _bad("message is too long")
        markup = self._check_markup(p.get("reply_markup"))
        self._check_rate(state)
        content: dict[str, Any] = {"text": plain}
        if entities:
            content["entities"] = entities
        if isinstance(p.get("link_preview_options"), dict):
            content["link_preview_options"] = p["link_preview_options"]
        if markup:
            content["reply_markup"] = markup
        return self._bot_message(state, content, p)

    def _caption(self, p: dict[str, Any]) -> dict[str, Any]:
        caption = p.get("caption")
        if caption is None or caption == "":
            return {}
        plain, entities = self._parse(caption, p.get("parse_mode"), p.get("caption_entities"))
        if len(plain) > 1024:
            raise _bad("message caption is too long")
        out: dict[str, Any] = {}
        if plain:
            out["caption"] = plain
        if entities:
            out["caption_entities"] = entities
        return out

    def _send_media(self, kind: str, p: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        state = self._get_chat(p, send=True)
        caption = self._caption(p)
        markup = self._check_markup(p.get("reply_markup"))
        info = self._input_file(kind, p, files)
        self._check_rate(state)
        content: dict[str, Any] = {}
        if kind == "photo":
            content["photo"] = [
                {
                    "file_id": info["file_id"],
                    "file_unique_id": info["file_unique_id"],
                    "file_size": info["file_size"],
                    "width": 800,
                    "height": 600,
                }
            ]
        else:
            content[kind] = {k: info[k] for k in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")}
        content.update(caption)
        if markup:
            content["reply_markup"] = markup
        return self._bot_message(state, content, p)

    def _api_sendDocument(self, p: dict[str, Any], f: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        return self._send_media("document", p, f)

    def _api_sendPhoto(self, p: dict[str, Any], f: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        return self._send_media("photo", p, f)

    def _api_getFile(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        info = self._files.get(str(p.get("file_id")))
        if info is None:
            raise _bad("invalid file_id")
        return {
            "file_id": info["file_id"],
            "file_unique_id": info["file_unique_id"],
            "file_size": info["file_size"],
            "file_path": info["path"],
        }

    def _api_sendPoll(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state = self._get_chat(p, send=True)
        question = str(p.get("question") or "")
        if not question.strip():
            raise _bad("poll question must be non-empty")
        if len(question) > 300:
            raise _bad("poll question length must not exceed 300")
        options = p.get("options")
        if not isinstance(options, list):
            raise _bad("can't parse options JSON object")
        texts = []
        for o in options:
            t = o.get("text") if isinstance(o, dict) else o
            if not isinstance(t, str) or not t.strip():
                raise _bad("poll options must be non-empty")
            if len(t) > 100:
                raise _bad("poll options length must not exceed 100")
            texts.append(t)
        if len(texts) < 2:
            raise _bad("poll must have at least 2 option")
        if len(texts) > self.max_poll_options:
            raise _bad(f"poll can't have more than {self.max_poll_options} options")
        markup = self._check_markup(p.get("reply_markup"))
        self._check_rate(state)
        poll_id = str(next(self._poll_counter))
        poll = {
            "id": poll_id,
            "question": question,
            "options": [{"persistent_id": f"{poll_id}:{i}", "text": t, "voter_count": 0} for i, t in enumerate(texts)],
            "total_voter_count": 0,
            "is_closed": bool(p.get("is_closed", False)),
            "is_anonymous": bool(p.get("is_anonymous", True)),
            "type": str(p.get("type") or "regular"),
            "allows_multiple_answers": bool(p.get("allows_multiple_answers", False)),
            "allows_revoting": bool(p.get("allows_revoting", True)),
            "members_only": bool(p.get("members_only", False)),
        }
        content: dict[str, Any] = {"poll": poll}
        if markup:
            content["reply_markup"] = markup
        msg = self._bot_message(state, content, p)
        self._polls[poll_id] = {"poll": poll, "chat_id": state.id, "message_id": msg["message_id"], "votes": {}}
        return msg

    def _api_stopPoll(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state = self._get_chat(p, send=True)
        msg = state.messages.get(p.get("message_id"))  # type: ignore[arg-type]
        if msg is None or "poll" not in msg or msg.get("from", {}).get("id") != self.bot_id:
            raise _bad("message with poll to stop not found")
        poll = self._polls[msg["poll"]["id"]]
        if poll["poll"]["is_closed"]:
            raise _bad("poll has already been closed")
        markup = self._check_markup(p.get("reply_markup"), inline_only=True)
        new = self._refresh_poll(poll, closed=True)
        current = state.messages[msg["message_id"]]
        if markup:
            state.messages[msg["message_id"]] = {**current, "reply_markup": markup}
        elif "reply_markup" in current:
            state.messages[msg["message_id"]] = {k: v for k, v in current.items() if k != "reply_markup"}
        return new

    def _edit_target(self, p: dict[str, Any]) -> tuple[_ChatState, dict[str, Any]]:
        if p.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        state = self._get_chat(p, send=True)
        mid = p.get("message_id")
        if not isinstance(mid, int):
            raise _bad("message identifier is not specified")
        msg = state.messages.get(mid)
        if msg is None:
            raise _bad("message to edit not found")
        if msg.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return state, msg

    def _replace_message(
        self, state: _ChatState, msg: dict[str, Any], changes: dict[str, Any], drop: tuple[str, ...]
    ) -> dict[str, Any]:
        new = {k: v for k, v in msg.items() if k not in drop and k != "edit_date"}
        new.update(changes)
        new["edit_date"] = self._now()
        state.messages[msg["message_id"]] = new
        self._count_send(state, edit=True)
        return new

    def _api_editMessageText(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state, msg = self._edit_target(p)
        text = p.get("text")
        if text is None or text == "":
            raise _bad("message text is empty")
        plain, entities = self._parse(text, p.get("parse_mode"), p.get("entities"))
        if not plain:
            raise _bad("message text is empty")
        if len(plain) > 4096:
            raise _bad("MESSAGE_TOO_LONG")
        if "text" not in msg:
            raise _bad("there is no text in the message to edit")
        markup = self._check_markup(p.get("reply_markup"), inline_only=True)
        if msg["text"] == plain and msg.get("entities", []) == entities and msg.get("reply_markup") == markup:
            raise _bad(NOT_MODIFIED)
        self._check_rate(state, edit=True)
        changes: dict[str, Any] = {"text": plain}
        if entities:
            changes["entities"] = entities
        if markup:
            changes["reply_markup"] = markup
        return self._replace_message(state, msg, changes, ("text", "entities", "reply_markup"))

    def _api_editMessageCaption(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state, msg = self._edit_target(p)
        if "text" in msg or "poll" in msg:
            raise _bad("there is no caption in the message to edit")
        caption = self._caption(p)
        markup = self._check_markup(p.get("reply_markup"), inline_only=True)
        if (
            msg.get("caption") == caption.get("caption")
            and msg.get("caption_entities") == caption.get("caption_entities")
            and msg.get("reply_markup") == markup
        ):
            raise _bad(NOT_MODIFIED)
        self._check_rate(state, edit=True)
        changes = dict(caption)
        if markup:
            changes["reply_markup"] = markup
        return self._replace_message(state, msg, changes, ("caption", "caption_entities", "reply_markup"))

    def _api_editMessageReplyMarkup(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state, msg = self._edit_target(p)
        markup = self._check_markup(p.get("reply_markup"), inline_only=True)
        if msg.get("reply_markup") == markup:
            raise _bad(NOT_MODIFIED)
        self._check_rate(state, edit=True)
        return self._replace_message(state, msg, {"reply_markup": markup} if markup else {}, ("reply_markup",))

    def _delete_one(self, state: _ChatState, mid: Any) -> None:
        msg = state.messages.get(mid) if isinstance(mid, int) else None
        if msg is None:
            raise _bad("message to delete not found")
        from_id = msg.get("from", {}).get("id")
        if not state.is_private and from_id != self.bot_id and state.bot_status != "administrator":
            raise _bad("message can't be deleted")
        del state.messages[mid]

    def _api_deleteMessage(self, p: dict[str, Any], f: Any) -> bool:
        state = self._get_chat(p)
        self._delete_one(state, p.get("message_id"))
        return True

    def _api_deleteMessages(self, p: dict[str, Any], f: Any) -> bool:
        state = self._get_chat(p)
        ids = p.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message_ids must be a non-empty array of at most 100 identifiers")
        for mid in ids:
            with contextlib.suppress(ApiError):
                self._delete_one(state, mid)
        return True

    def _api_answerCallbackQuery(self, p: dict[str, Any], f: Any) -> bool:
        qid = str(p.get("callback_query_id") or "")
        entry = self._callbacks.get(qid)
        expired = (
            entry is not None
            and self.callback_query_ttl is not None
            and time.monotonic() - entry[1] > self.callback_query_ttl
        )
        if entry is None or entry[0] or expired:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = p.get("text")
        if text is not None and len(str(text)) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        entry[0] = True
        return True

    def _scope_key(self, p: dict[str, Any]) -> tuple[str, str]:
        scope = p.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or scope.get("type") not in (
            "default",
            "all_private_chats",
            "all_group_chats",
            "all_chat_administrators",
            "chat",
            "chat_administrators",
            "chat_member",
        ):
            raise _bad("can't parse BotCommandScope JSON object")
        scope = dict(scope)
        if "chat_id" in scope:
            scope["chat_id"] = self._resolve_chat_id(_decode_field("chat_id", scope["chat_id"]))
            if scope["chat_id"] not in self._chats:
                raise _bad("chat not found")
        elif scope["type"] in ("chat", "chat_administrators", "chat_member"):
            raise _bad("chat_id is empty")
        lang = p.get("language_code") or ""
        return json.dumps(scope, sort_keys=True), str(lang)

    def _api_setMyCommands(self, p: dict[str, Any], f: Any) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands")
        clean = []
        for c in commands:
            if not isinstance(c, dict):
                raise _bad("can't parse BotCommand JSON object")
            command = str(c.get("command", ""))
            description = str(c.get("description", ""))
            if not _BOT_COMMAND_RE.fullmatch(command):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": command, "description": description})
        key = self._scope_key(p)
        if clean:
            self._commands[key] = clean
        else:
            self._commands.pop(key, None)
        return True

    def _api_getMyCommands(self, p: dict[str, Any], f: Any) -> list[dict[str, Any]]:
        return list(self._commands.get(self._scope_key(p), []))

    def _api_deleteMyCommands(self, p: dict[str, Any], f: Any) -> bool:
        self._commands.pop(self._scope_key(p), None)
        return True

    def bot_commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, Any]]:
        """Commands currently set for ``scope`` (default scope when None)."""
        p: dict[str, Any] = {"language_code": language_code}
        if scope is not None:
            p["scope"] = scope
        return list(self._commands.get(self._scope_key(p), []))

    def _set_text_option(self, kind: str, p: dict[str, Any], limit: int) -> bool:
        value = str(p.get(kind) or "")
        if len(value) > limit:
            raise _bad(f"{kind} is too long")
        self._descriptions[(kind, str(p.get("language_code") or ""))] = value
        return True

    def _api_setMyDescription(self, p: dict[str, Any], f: Any) -> bool:
        return self._set_text_option("description", p, 512)

    def _api_setMyShortDescription(self, p: dict[str, Any], f: Any) -> bool:
        return self._set_text_option("short_description", p, 120)

    def _api_setMyName(self, p: dict[str, Any], f: Any) -> bool:
        return self._set_text_option("name", p, 64)

    def _api_getMyDescription(self, p: dict[str, Any], f: Any) -> dict[str, str]:
        return {"description": self._descriptions.get(("description", str(p.get("language_code") or "")), "")}

    def _api_getMyShortDescription(self, p: dict[str, Any], f: Any) -> dict[str, str]:
        key = ("short_description", str(p.get("language_code") or ""))
        return {"short_description": self._descriptions.get(key, "")}

    def _api_getMyName(self, p: dict[str, Any], f: Any) -> dict[str, str]:
        return {"name": self._descriptions.get(("name", str(p.get("language_code") or "")), self.bot_name)}

    def _api_getChat(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state = self._get_chat(p)
        info: dict[str, Any] = {
            **state.chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if state.pinned and state.pinned[-1] in state.messages:
            info["pinned_message"] = state.messages[state.pinned[-1]]
        return info

    def _api_getChatAdministrators(self, p: dict[str, Any], f: Any) -> list[dict[str, Any]]:
        state = self._get_chat(p)
        if state.is_private:
            raise _bad("there are no administrators in the private chat")
        out = []
        if state.creator is not None:
            out.append(self._member_dict(state, state.creator, "creator"))
        out.extend(self._member_dict(state, uid, "administrator") for uid in sorted(state.admins))
        if state.bot_status == "administrator":
            out.append(self._member_dict(state, self.bot_id, "administrator"))
        return out

    def _api_getChatMember(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state = self._get_chat(p)
        uid = p.get("user_id")
        if not isinstance(uid, int):
            raise _bad("user_id is empty" if uid in (None, "") else "invalid user_id specified")
        if uid != self.bot_id and uid not in self._users:
            raise _bad("user not found")
        return self._member_dict(state, uid)

    def _api_getChatMemberCount(self, p: dict[str, Any], f: Any) -> int:
        state = self._get_chat(p)
        if state.is_private:
            return 2
        people = set(state.members) | state.admins
        if state.creator is not None:
            people.add(state.creator)
        return len(people) + (1 if state.bot_status in ("member", "administrator") else 0)

    def _api_pinChatMessage(self, p: dict[str, Any], f: Any) -> bool:
        state = self._get_chat(p, send=True)
        if not state.is_private and state.bot_status != "administrator":
            raise _bad("not enough rights to manage pinned messages in the chat")
        mid = p.get("message_id")
        if not isinstance(mid, int) or mid not in state.messages:
            raise _bad("message to pin not found")
        if mid in state.pinned:
            state.pinned.remove(mid)
        state.pinned.append(mid)
        return True

    def _api_unpinChatMessage(self, p: dict[str, Any], f: Any) -> bool:
        state = self._get_chat(p, send=True)
        if not state.is_private and state.bot_status != "administrator":
            raise _bad("not enough rights to manage pinned messages in the chat")
        mid = p.get("message_id")
        if mid is None:
            if state.pinned:
                state.pinned.pop()
        elif mid in state.pinned:
            state.pinned.remove(mid)
        return True

    def _api_unpinAllChatMessages(self, p: dict[str, Any], f: Any) -> bool:
        state = self._get_chat(p, send=True)
        if not state.is_private and state.bot_status != "administrator":
            raise _bad("not enough rights to manage pinned messages in the chat")
        state.pinned.clear()
        return True

    def pinned_messages(self, chat_id: int) -> list[int]:
        return list(self._ensure_chat(chat_id).pinned)

    def _api_leaveChat(self, p: dict[str, Any], f: Any) -> bool:
        state = self._get_chat(p)
        if state.is_private:
            raise _bad("chat member status can't be changed in private chats")
        old = self._member_dict(state, self.bot_id)
        state.bot_status = "left"
        new = self._member_dict(state, self.bot_id, "left")
        self._member_update("my_chat_member", state, self.bot_user, old, new)
        return True

    def _source_message(self, p: dict[str, Any], what: str) -> dict[str, Any]:
        src_state = self._get_chat(p, name="from_chat_id")
        mid = p.get("message_id")
        msg = src_state.messages.get(mid) if isinstance(mid, int) else None
        if msg is None:
            raise _bad(f"message to {what} not found")
        if not any(k in msg for k in _COPYABLE):
            raise _bad(f"message can't be {what.replace('copy', 'copi')}ed")
        return msg

    def _api_copyMessage(self, p: dict[str, Any], f: Any) -> dict[str, int]:
        state = self._get_chat(p, send=True)
        src = self._source_message(p, "copy")
        markup = self._check_markup(p.get("reply_markup"))
        content = {k: src[k] for k in _COPYABLE if k in src}
        if "caption" in p and ("caption" in src or any(k in src for k in ("document", "photo"))):
            content.pop("caption", None)
            content.pop("caption_entities", None)
            content.update(self._caption(p))
        if markup:
            content["reply_markup"] = markup
        self._check_rate(state)
        msg = self._bot_message(state, content, p)
        return {"message_id": msg["message_id"]}

    def _api_forwardMessage(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        state = self._get_chat(p, send=True)
        src = self._source_message(p, "forward")
        self._check_rate(state)
        sender = src.get("from") or self.bot_user
        content = {
            "forward_origin": {"type": "user", "sender_user": sender, "date": src["date"]},
            **{k: src[k] for k in _COPYABLE if k in src},
        }
        return self._bot_message(state, content, {})

    def _api_sendChatAction(self, p: dict[str, Any], f: Any) -> bool:
        self._get_chat(p, send=True)
        if p.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True
