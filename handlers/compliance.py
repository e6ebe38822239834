"""The warning that a required meeting (三会一课) is due this period and not yet held or planned.

The monthly check in ``bot.services.attendance`` decides what is missing when it fires and plans one
outbox row per recipient; this renders such a row. It does not check again: the rows go out within
minutes of the check, and a warning that lists one meeting too many is harmless.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from aiogram.methods import SendMessage, TelegramMethod
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Translator
from handlers.common import quote

if TYPE_CHECKING:
    from bot.outbox import Envelope


def kind_name(t: Translator, kind: str) -> str:
    return t(f"compliance.kind.{kind}")


def period_name(t: Translator, period: str) -> str:
    return t(f"compliance.period.{period}")


async def render_compliance(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    if envelope.chat is None or not envelope.args.get("missing"):
        return None
    t = envelope.t
    lines = [t("compliance.title", group=quote(envelope.chat.title or ""))]
    for kind, period, ends in envelope.args["missing"]:
        # ``ends`` is the first day after the period, already a date in the group's time zone.
        deadline = date.fromisoformat(ends) - timedelta(days=1)
        lines.append(
            t(
                "compliance.line",
                kind=kind_name(t, kind),
                period=period_name(t, period),
                deadline=deadline.isoformat(),
            )
        )
    lines.append(t("compliance.hint"))
    return SendMessage(chat_id=envelope.recipient, text="\n".join(lines))
