"""Every handler and filter of the production routers runs on the event loop.

aiogram runs a handler or filter that is not a coroutine function in a worker thread: a magic filter
(``F.chat.type == "private"``) registered bare made each check a thread hop, which cost a third of
the bot's inbound throughput (bench.throughput: ratio 0.67 with them, 0.94 without)."""

from __future__ import annotations

from aiogram import Router

from handlers import build_root_router


def off_the_loop(router: Router) -> list[str]:
    found = []
    for event, observer in router.observers.items():
        for filter_ in observer._handler.filters or []:
            if not filter_.awaitable:
                found.append(f"{router.name}.{event} router filter {filter_.callback!r}")
        for handler in observer.handlers:
            if not handler.awaitable:
                found.append(f"{router.name}.{event} handler {handler.callback!r}")
            found += [
                f"{router.name}.{event} filter {filter_.callback!r} of {handler.callback.__name__}"
                for filter_ in handler.filters or []
                if not filter_.awaitable
            ]
    for sub_router in router.sub_routers:
        found += off_the_loop(sub_router)
    return found


def test_no_handler_or_filter_runs_in_a_worker_thread() -> None:
    assert off_the_loop(build_root_router()) == []
