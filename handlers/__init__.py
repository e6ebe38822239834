"""All routers, in the order they are tried. Each feature is one router; the fallback comes last.

Routers are built fresh on every call so that tests can build as many dispatchers as they like.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from handlers.common import OnLoop


def addressed_to_us(message: Message) -> bool:
    """Whether a message can concern any feature: anything in private, and commands in groups.

    Most group traffic is members talking to each other; letting it skip every command filter
    of every router keeps that traffic cheap (the roster still sees it, in the middlewares)."""
    if message.chat.type == "private" or (message.text or "").startswith("/"):
        return True
    replied = message.reply_to_message  # an answer to one of the bot's prompts
    return replied is not None and replied.from_user is not None and replied.from_user.is_bot


def build_root_router() -> Router:
    from handlers import (
        attendance,
        backup,
        broadcast,
        fallback,
        help,
        identity,
        lessons,
        meetings,
        membership,
        notices,
        organisation,
        privacy,
        ranking,
        reports,
        roster,
        schedules,
        settings,
        start,
        vanguard,
    )

    root = Router(name="root")
    features = Router(name="features")
    features.message.filter(OnLoop(F.func(addressed_to_us)))
    features.include_routers(
        start.build_router(),
        help.build_router(),
        settings.build_router(),
        organisation.build_router(),
        attendance.build_router(),  # a sign-in code in private, before identity's free-text answers
        meetings.build_router(),
        lessons.build_router(),
        backup.build_router(),
        ranking.build_router(),
        reports.build_router(),
        vanguard.build_router(),
        identity.build_router(),
        roster.build_router(),
        notices.build_router(),
        broadcast.build_router(),
        schedules.build_router(),
        privacy.build_router(),
        fallback.build_router(),
    )
    # Membership first: its service messages (joins, leaves, migrations) are not commands.
    root.include_routers(membership.build_router(), features)
    return root


def writing_buttons() -> frozenset[str]:
    """Buttons whose press always records something (a confirmation, an answer, a sign-in, 已学习):
    their updates go straight to a write transaction instead of first trying as a read."""
    from handlers import attendance, lessons, meetings, notices

    buttons = (
        notices.AckButton,
        meetings.RsvpButton,
        attendance.SignInButton,
        attendance.StudiedButton,
        lessons.StudyButton,
    )
    return frozenset(button.__prefix__ for button in buttons)
