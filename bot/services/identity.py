"""亮身份: the guided declaration form, the committee's verdict, and the identity card.

The form lives in ``identity_drafts`` so that a member can stop, come back after a restart and go on.
Each step either takes free text (validated here) or a choice offered as buttons; a choice that is
not on offer for the current step is refused, so stale or forged buttons change nothing.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import DomainError
from bot.services.text import is_blank
from storage import chats as chat_store
from storage import identity as identity_store
from storage import people as people_store
from storage.models import AuditLog, Identity, IdentityDraft, Unit

MEMBER_TYPES = ("full", "probationary", "activist", "masses")
CONTACT_VISIBILITY = ("committee", "members")
REJECT_PRESETS = ("incomplete", "name_mismatch", "not_member")

# step → (draft field, min length, max length); text steps only.
TEXT_STEPS: dict[str, tuple[str, int, int]] = {
    "name": ("real_name", 2, 32),
    "duty": ("duty_post", 2, 100),
    "pledge": ("pledge", 2, 200),
    "skills": ("skills", 1, 200),
    "times": ("available_times", 1, 100),
    "contact": ("contact", 3, 64),
    "floating_org": ("floating_org", 2, 100),
}
OPTIONAL_STEPS = frozenset({"skills", "times", "contact"})
STEPS = (
    "name",
    "unit",
    "type",
    "duty",
    "pledge",
    "skills",
    "times",
    "contact",
    "contact_vis",
    "floating",
    "floating_org",
    "confirm",
)
REASON_MAX = 200


@dataclass
class Draft:
    user_id: int
    chat_pk: int | None
    step: str
    data: dict = field(default_factory=dict)
    resumed: bool = False
    unit_options: list[Unit] = field(default_factory=list)


def _clean_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).strip()
    return re.sub(r"[ \t]+", " ", text)


def validate_text(step: str, text: str) -> str:
    """Check one free-text answer; DomainError says why it is refused (with the limits)."""
    _, low, high = TEXT_STEPS[step]
    value = _clean_text(text)
    if any(unicodedata.category(char) == "Cc" for char in value) or (step == "name" and "\n" in value):
        raise DomainError("identity.bad_characters")
    if not low <= len(value) <= high or (low and is_blank(value)):
        raise DomainError("identity.bad_length", low=low, high=high, got=len(value))
    if step == "name" and not any(char.isalpha() for char in value):
        raise DomainError("identity.bad_name")
    return value


async def unit_options(session: AsyncSession, chat_pk: int | None) -> list[Unit]:
    """The units a member of this group may belong to: the group's unit and every unit below it."""
    if chat_pk is None:
        return []
    chat = await chat_store.get_by_id(session, chat_pk)
    if chat is None or chat.unit_id is None:
        return []
    return await identity_store.unit_and_descendants(session, chat.unit_id)


def _draft_view(row: IdentityDraft, *, resumed: bool, options: list[Unit]) -> Draft:
    return Draft(row.user_id, row.chat_id, row.step, json.loads(row.data or "{}"), resumed, options)


async def open_form(session: AsyncSession, user_id: int, chat_pk: int | None, *, restart: bool = False) -> Draft:
    """Start the form, or resume the one in progress. A declared member starts from their answers."""
    row = await identity_store.get_draft(session, user_id)
    if row is not None and not restart and (chat_pk is None or row.chat_id == chat_pk):
        return _draft_view(row, resumed=True, options=await unit_options(session, row.chat_id))
    existing = await identity_store.get_identity(session, user_id)
    if chat_pk is None and existing is not None:
        chat_pk = existing.chat_id
    data = _answers_of(existing) if existing is not None else {}
    if row is None:
        row = IdentityDraft(user_id=user_id, chat_id=chat_pk, step="name", data=json.dumps(data, ensure_ascii=False))
        session.add(row)
    else:
        row.chat_id, row.step, row.data = chat_pk, "name", json.dumps(data, ensure_ascii=False)
    await session.flush()
    return _draft_view(row, resumed=False, options=await unit_options(session, chat_pk))


async def current_form(session: AsyncSession, user_id: int) -> Draft | None:
    row = await identity_store.get_draft(session, user_id)
    if row is None:
        return None
    return _draft_view(row, resumed=True, options=await unit_options(session, row.chat_id))


async def cancel_form(session: AsyncSession, user_id: int) -> bool:
    return await identity_store.delete_draft(session, user_id)


async def answer_text(session: AsyncSession, user_id: int, text: str) -> Draft:
    row = await _require_draft(session, user_id)
    if row.step not in TEXT_STEPS:
        raise DomainError("identity.use_buttons")
    data = json.loads(row.data or "{}")
    data[TEXT_STEPS[row.step][0]] = validate_text(row.step, text)
    return await _advance(session, row, data)


async def choose(session: AsyncSession, user_id: int, step: str, value: str) -> Draft:
    """A button on the form. ``step`` must be the step the form is at; ``value`` must be on offer."""
    row = await _require_draft(session, user_id)
    if step != row.step:
        raise DomainError("identity.stale_button")
    data = json.loads(row.data or "{}")
    if value == "keep" and step in TEXT_STEPS and data.get(TEXT_STEPS[step][0]):
        pass
    elif value == "skip" and step in OPTIONAL_STEPS:
        data[TEXT_STEPS[step][0]] = None
        if step == "contact":
            data["contact_public"] = False
    elif step == "unit":
        options = {str(unit.id) for unit in await unit_options(session, row.chat_id)}
        if value not in options:
            raise DomainError("identity.stale_button")
        data["unit_id"] = int(value)
    elif step == "type" and value in MEMBER_TYPES:
        data["member_type"] = value
    elif step == "contact_vis" and value in CONTACT_VISIBILITY:
        data["contact_public"] = value == "members"
    elif step == "floating" and value in ("yes", "no"):
        data["floating"] = value == "yes"
        if value == "no":
            data["floating_org"] = None
    else:
        raise DomainError("identity.stale_button")
    return await _advance(session, row, data)


async def _require_draft(session: AsyncSession, user_id: int) -> IdentityDraft:
    row = await identity_store.get_draft(session, user_id)
    if row is None:
        raise DomainError("identity.no_form")
    return row


async def _advance(session: AsyncSession, row: IdentityDraft, data: dict) -> Draft:
    options = await unit_options(session, row.chat_id)
    step = STEPS[STEPS.index(row.step) + 1]
    while _skipped(step, data, options):
        if step == "unit" and len(options) == 1:
            data["unit_id"] = options[0].id
        step = STEPS[STEPS.index(step) + 1]
    row.step, row.data = step, json.dumps(data, ensure_ascii=False)
    await session.flush()
    return _draft_view(row, resumed=False, options=options)


def _skipped(step: str, data: dict, options: list[Unit]) -> bool:
    if step == "unit":
        return len(options) <= 1
    if step == "contact_vis":
        return not data.get("contact")
    if step == "floating_org":
        return not data.get("floating")
    return False


async def submit(session: AsyncSession, user_id: int, now: datetime) -> Identity:
    """Turn the finished form into a declaration waiting for the committee."""
    row = await _require_draft(session, user_id)
    if row.step != "confirm":
        raise DomainError("identity.stale_button")
    data = json.loads(row.data or "{}")
    identity = await identity_store.get_identity(session, user_id)
    if identity is None:
        identity = Identity(user_id=user_id)
        session.add(identity)
    identity.chat_id = row.chat_id
    identity.unit_id = data.get("unit_id")
    for name in ("real_name", "member_type", "duty_post", "pledge", "skills", "available_times", "contact"):
        setattr(identity, name, data.get(name))
    identity.contact_public = bool(data.get("contact_public")) and bool(data.get("contact"))
    identity.floating = bool(data.get("floating"))
    identity.floating_org = data.get("floating_org") if identity.floating else None
    identity.status, identity.reject_reason = "pending", None
    identity.reviewed_by = identity.reviewed_at = None
    identity.submitted_at = now
    await identity_store.delete_draft(session, user_id)
    if row.chat_id is not None:
        # Declaring from a group's link puts the member on that group's roster, seen or not.
        await people_store.observe_member(session, row.chat_id, user_id, now)
    session.add(AuditLog(chat_id=row.chat_id, actor_id=user_id, action="identity_submitted"))
    await session.flush()
    return identity


def _answers_of(identity: Identity) -> dict:
    return {
        "real_name": identity.real_name,
        "unit_id": identity.unit_id,
        "member_type": identity.member_type,
        "duty_post": identity.duty_post,
        "pledge": identity.pledge,
        "skills": identity.skills,
        "available_times": identity.available_times,
        "contact": identity.contact,
        "contact_public": identity.contact_public,
        "floating": identity.floating,
        "floating_org": identity.floating_org,
    }


async def get_identity(session: AsyncSession, user_id: int) -> Identity | None:
    return await identity_store.get_identity(session, user_id)


async def review(
    session: AsyncSession, user_id: int, reviewer_id: int, *, approve: bool, reason: str | None, now: datetime
) -> Identity:
    """Verify or reject a pending declaration. Deciding twice is refused, so two reviewers cannot clash."""
    identity = await identity_store.get_identity(session, user_id)
    if identity is None:
        raise DomainError("identity.not_found")
    if identity.status != "pending":
        raise DomainError("identity.already_reviewed")
    if approve:
        identity.status, identity.reject_reason = "verified", None
    else:
        reason = _clean_text(reason or "")
        if not 1 <= len(reason) <= REASON_MAX:
            raise DomainError("identity.bad_reason", high=REASON_MAX)
        identity.status, identity.reject_reason = "rejected", reason
    identity.reviewed_by, identity.reviewed_at = reviewer_id, now
    session.add(
        AuditLog(
            chat_id=identity.chat_id,
            actor_id=reviewer_id,
            action="identity_verified" if approve else "identity_rejected",
            detail=str(user_id) if approve else f"{user_id}: {identity.reject_reason}",
        )
    )
    await session.flush()
    return identity


async def set_card_visible(session: AsyncSession, user_id: int, visible: bool) -> Identity:
    identity = await identity_store.get_identity(session, user_id)
    if identity is None or identity.status != "verified":
        raise DomainError("identity.not_verified")
    identity.show_card = visible
    await session.flush()
    return identity


async def expect_reject_reason(session: AsyncSession, reviewer_id: int, user_id: int) -> None:
    await identity_store.set_pending_input(session, reviewer_id, "reject_reason", str(user_id))


async def take_pending_input(session: AsyncSession, user_id: int) -> tuple[str, str] | None:
    pending = await identity_store.get_pending_input(session, user_id)
    if pending is None:
        return None
    await identity_store.clear_pending_input(session, user_id)
    return pending.kind, pending.ref


async def clear_pending_input(session: AsyncSession, user_id: int) -> None:
    await identity_store.clear_pending_input(session, user_id)


@dataclass(frozen=True)
class CardView:
    """What of an identity a given viewer may see."""

    identity: Identity
    unit_name: str | None
    show_contact: bool
    show_private: bool  # status, floating membership, rejection reason


async def card_for(
    session: AsyncSession, identity: Identity, *, viewer_is_committee: bool, viewer_is_self: bool
) -> CardView | None:
    """The committee and the member see everything; other members see a verified card only."""
    privileged = viewer_is_committee or viewer_is_self
    if not privileged and identity.status != "verified":
        return None
    unit = await session.get(Unit, identity.unit_id) if identity.unit_id else None
    return CardView(
        identity=identity,
        unit_name=unit.name if unit else None,
        show_contact=bool(identity.contact) and (privileged or identity.contact_public),
        show_private=privileged,
    )


async def pending_all(session: AsyncSession, limit: int = 200) -> list[Identity]:
    return await identity_store.pending_identities(session, None, limit=limit)
