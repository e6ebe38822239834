"""Tables. Times are stored in UTC; ids that come from Telegram are BigInteger.

A chat has a surrogate primary key so that a group migrated to a supergroup (which gets a new
Telegram id) keeps every record that points at it: only ``chats.telegram_id`` changes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    previous_telegram_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    type: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    bot_is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Quiet hours as "HH:MM"; both empty means no quiet hours.
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"), index=True)
    # Minutes before a meeting that reminders go out, e.g. "1440,60"; None: the default (1 day and 1 hour).
    meeting_reminders: Mapped[str | None] = mapped_column(String(64))
    # How often each meeting type must be held, e.g. "general=quarter,committee=month"; None: the default.
    meeting_rules: Mapped[str | None] = mapped_column(String(200))
    # The 先锋指数 weights, e.g. "attendance=40,acks=20,learning=30,identity=10"; None: the default.
    vanguard_weights: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    language_code: Mapped[str | None] = mapped_column(String(16))
    # True once the user has opened a private chat with the bot: only then may it message them.
    started_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    # The member asked not to be named on leaderboards (their rank is shown without a name).
    rank_hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ChatMember(Base):
    """Who the bot has seen in a chat: the roster's first source, since Telegram gives no member list."""

    __tablename__ = "chat_members"

    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="member")  # member | left
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_chat_members_user", "user_id"),)


class ChatRole(Base):
    """A role held in a chat. ``source`` says whether Telegram's admin list or a person granted it."""

    __tablename__ = "chat_roles"

    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)  # telegram_admin | granted
    role: Mapped[str] = mapped_column(String(16))  # committee | secretary
    granted_by: Mapped[int | None] = mapped_column(BigInteger)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProcessedUpdate(Base):
    """Every update handled, written in the same transaction as its effects."""

    __tablename__ = "processed_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="SET NULL"), index=True)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Unit(Base):
    """A unit of the organisation tree: 综合党委 / 联合党委 → 支部 → 党小组."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # committee | branch | group
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UnitRole(Base):
    """A role held on a unit; it applies to every group bound to that unit or to a unit below it."""

    __tablename__ = "unit_roles"

    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # committee | secretary
    granted_by: Mapped[int | None] = mapped_column(BigInteger)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Identity(Base):
    """A member's 亮身份 declaration, as submitted, with the committee's verdict."""

    __tablename__ = "identities"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="SET NULL"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"), index=True)
    real_name: Mapped[str] = mapped_column(String(32))
    member_type: Mapped[str] = mapped_column(String(16))  # full | probationary | activist | masses
    duty_post: Mapped[str] = mapped_column(String(100))
    pledge: Mapped[str] = mapped_column(String(200))
    skills: Mapped[str | None] = mapped_column(String(200))
    available_times: Mapped[str | None] = mapped_column(String(100))
    contact: Mapped[str | None] = mapped_column(String(64))
    contact_public: Mapped[bool] = mapped_column(Boolean, default=False)
    floating: Mapped[bool] = mapped_column(Boolean, default=False)
    floating_org: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | verified | rejected
    reject_reason: Mapped[str | None] = mapped_column(String(200))
    reviewed_by: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    show_card: Mapped[bool] = mapped_column(Boolean, default=False)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class IdentityDraft(Base):
    """A 亮身份 form in progress; kept in the database so that it survives restarts and can be resumed."""

    __tablename__ = "identity_drafts"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="SET NULL"))
    step: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text, default="{}")  # JSON of the answers so far
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PendingInput(Base):
    """A free-text answer the bot waits for in a private chat (e.g. the reason for a rejection)."""

    __tablename__ = "pending_inputs"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notice(Base):
    """A notice as its author wrote it: posted to one group, or broadcast to every group below a unit."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    origin_chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="SET NULL"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))  # set for a broadcast
    kind: Mapped[str] = mapped_column(String(16))  # text | photo | document
    text: Mapped[str] = mapped_column(Text, default="")  # the text, or the caption of a photo or document
    file_id: Mapped[str | None] = mapped_column(String(255))
    pin: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | published | cancelled
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when it goes out; None: at once
    # The message that shows the draft, then the broadcast's progress (chat id as Telegram knows it).
    panel_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    panel_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # every post sent or given up


class NoticePost(Base):
    """A notice in one group: its message there, its confirmations, its nudges."""

    __tablename__ = "notice_posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"))
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    shown_acks: Mapped[int] = mapped_column(Integer, default=0)  # the count the message shows now
    nudges: Mapped[int] = mapped_column(Integer, default=0)
    last_nudge_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("uq_notice_posts_notice_chat", "notice_id", "chat_id", unique=True),)


class NoticeAck(Base):
    """A member's "✅ 收到" on a notice in one group: one row, however often they tap."""

    __tablename__ = "notice_acks"

    post_id: Mapped[int] = mapped_column(ForeignKey("notice_posts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    acked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_notice_acks_user", "user_id"),)


class OutboxMessage(Base):
    """One message the bot sends on its own initiative, to one chat, written before it is sent.

    ``dedupe_key`` makes planning the same message twice a no-op; ``status`` moves pending → sending →
    sent | failed | skipped. A row found in ``sending`` at start-up was interrupted by a crash: whether
    Telegram got it cannot be known, so it becomes ``unknown`` and is not sent again.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # which renderer builds the message
    args: Mapped[str] = mapped_column(Text, default="{}")  # JSON of primitive arguments for the renderer
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)  # set: a private message to this user
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_outbox_status_not_before", "status", "not_before"),)


class Schedule(Base):
    """Something the bot does on a timetable in one group (a recurring announcement, say).

    The rule is kept as its canonical phrase (``bot.services.timephrase.Rule.canonical``) and read in the
    group's time zone of the moment, so a change of time zone moves the runs still to come. ``next_run_at``
    is the truth about what is due: the in-process timer is only rebuilt from it.
    """

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="announcement")
    rule: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text, default="")
    with_ack: Mapped[bool] = mapped_column(Boolean, default=False)  # posts carry the "✅ 收到" button
    quiet_ok: Mapped[bool] = mapped_column(Boolean, default=False)  # the committee allowed posts in quiet hours
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | active | paused | deleted
    replaces_id: Mapped[int | None] = mapped_column(Integer)  # a draft that edits this schedule when confirmed
    ref: Mapped[str | None] = mapped_column(String(64), index=True)  # what it belongs to, e.g. "meeting:12"
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_schedules_status_next_run", "status", "next_run_at"),)


class Meeting(Base):
    """A meeting of the branch (三会一课, 主题党日, 组织生活会): its details, its post, its sign-in.

    ``status`` moves draft → scheduled → closed (sign-in over, summary out), or to cancelled. The timed
    steps (reminders, opening and closing sign-in) are one-off schedules whose ``ref`` is "meeting:<id>".
    """

    __tablename__ = "meetings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # general | committee | group | lecture | theme_day | life | other
    title: Mapped[str] = mapped_column(String(100), default="")
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # sign-in closes then
    place: Mapped[str] = mapped_column(String(255), default="")  # a room, or an online link
    agenda: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | scheduled | closed | cancelled
    step: Mapped[str | None] = mapped_column(String(16))  # a guided draft: the detail asked for next
    checkin_mode: Mapped[str] = mapped_column(String(8), default="both")  # button | code | both
    checkin_code: Mapped[str | None] = mapped_column(String(8))
    late_minutes: Mapped[int] = mapped_column(Integer, default=15)
    checkin_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checkin_closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=0)  # each edit bumps it (calendar SEQUENCE)
    message_id: Mapped[int | None] = mapped_column(BigInteger)  # the post in the group
    signin_message_id: Mapped[int | None] = mapped_column(BigInteger)
    shown_counts: Mapped[str] = mapped_column(String(32), default="")  # what the post shows now
    minutes_kind: Mapped[str | None] = mapped_column(String(16))  # text | document | photo
    minutes_text: Mapped[str | None] = mapped_column(Text)
    minutes_file_id: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_meetings_chat_starts", "chat_id", "starts_at"),)


class MeetingAnswer(Base):
    """A member's 参加 / 请假 / 待定; one row per member, changed in place until the meeting starts."""

    __tablename__ = "meeting_answers"

    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    answer: Mapped[str] = mapped_column(String(8))  # yes | leave | maybe
    reason: Mapped[str | None] = mapped_column(String(200))  # of a leave
    # A leave: awaiting (its reason) → pending (the committee's decision) → approved | rejected.
    leave_status: Mapped[str | None] = mapped_column(String(16))
    reviewed_by: Mapped[int | None] = mapped_column(BigInteger)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MeetingSignIn(Base):
    """A member's sign-in at a meeting: one row, however it was made."""

    __tablename__ = "meeting_sign_ins"

    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(8))  # button | code | proxy
    proxy_by: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(200))


class MeetingMakeup(Base):
    """补学: the materials of a meeting sent to one who missed it, and when they marked them studied."""

    __tablename__ = "meeting_makeups"

    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(8))  # absent | leave
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    studied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Lesson(Base):
    """A lesson of the 每日党课 library: a group's own (imported by its committee) or, with no group,
    one of the sample pack that every group starts with."""

    __tablename__ = "lessons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)  # the order lessons are pushed in
    title: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200))
    tags: Mapped[str] = mapped_column(String(200), default="")  # comma-separated
    push_on: Mapped[date | None] = mapped_column(Date)  # pushed on this day, if given
    quiz_question: Mapped[str | None] = mapped_column(String(300))
    quiz_options: Mapped[str | None] = mapped_column(Text)  # JSON list
    quiz_answer: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | removed
    # The sample pack's lessons are in each language the bot speaks; a group gets the pack in its own.
    language: Mapped[str | None] = mapped_column(String(8))
    imported_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_lessons_chat_position", "chat_id", "position"),)


class LessonPush(Base):
    """A lesson pushed to a group on a day: at most one a day, and each lesson once per group."""

    __tablename__ = "lesson_pushes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    pushed_on: Mapped[date] = mapped_column(Date)  # the group's local day
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    poll_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("uq_lesson_pushes_chat_lesson", "chat_id", "lesson_id", unique=True),
        Index("uq_lesson_pushes_chat_day", "chat_id", "pushed_on", unique=True),
    )


class LessonSkip(Base):
    """A sample-pack lesson a group's committee removed from its own library (the pack is shared)."""

    __tablename__ = "lesson_skips"

    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True)
    skipped_by: Mapped[int | None] = mapped_column(BigInteger)
    skipped_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LessonStudy(Base):
    """A member's "已学" on a pushed lesson: one row, however often they tap."""

    __tablename__ = "lesson_studies"

    push_id: Mapped[int] = mapped_column(ForeignKey("lesson_pushes.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    studied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_lesson_studies_user", "user_id"),)


class QuizAnswer(Base):
    """A member's answer to a pushed lesson's quiz poll (Telegram lets a quiz be answered once)."""

    __tablename__ = "quiz_answers"

    push_id: Mapped[int] = mapped_column(ForeignKey("lesson_pushes.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    option: Mapped[int] = mapped_column(Integer)
    correct: Mapped[bool] = mapped_column(Boolean)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
