"""All routers, in the order they are tried. Each feature is one router; the fallback comes last.

Routers are built fresh on every call so that tests can build as many dispatchers as they like.
"""

from __future__ import annotations

from aiogram import Router


def build_root_router() -> Router:
    from handlers import fallback, help, identity, membership, organisation, privacy, roster, settings, start

    root = Router(name="root")
    root.include_routers(
        membership.build_router(),
        start.build_router(),
        help.build_router(),
        settings.build_router(),
        organisation.build_router(),
        identity.build_router(),
        roster.build_router(),
        privacy.build_router(),
        fallback.build_router(),
    )
    return root
