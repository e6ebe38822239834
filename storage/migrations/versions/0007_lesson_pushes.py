"""lesson pushes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lesson_pushes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chat_id", sa.Integer(), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("pushed_on", sa.Date(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("poll_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name=op.f("fk_lesson_pushes_chat_id_chats"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"], ["lessons.id"], name=op.f("fk_lesson_pushes_lesson_id_lessons"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_pushes")),
    )
    with op.batch_alter_table("lesson_pushes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lesson_pushes_poll_id"), ["poll_id"], unique=False)
        batch_op.create_index("uq_lesson_pushes_chat_day", ["chat_id", "pushed_on"], unique=True)
        batch_op.create_index("uq_lesson_pushes_chat_lesson", ["chat_id", "lesson_id"], unique=True)

    op.create_table(
        "lesson_studies",
        sa.Column("push_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("studied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["push_id"], ["lesson_pushes.id"], name=op.f("fk_lesson_studies_push_id_lesson_pushes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_lesson_studies_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("push_id", "user_id", name=op.f("pk_lesson_studies")),
    )
    with op.batch_alter_table("lesson_studies", schema=None) as batch_op:
        batch_op.create_index("ix_lesson_studies_user", ["user_id"], unique=False)

    op.create_table(
        "quiz_answers",
        sa.Column("push_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("option", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["push_id"], ["lesson_pushes.id"], name=op.f("fk_quiz_answers_push_id_lesson_pushes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_quiz_answers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("push_id", "user_id", name=op.f("pk_quiz_answers")),
    )


def downgrade() -> None:
    op.drop_table("quiz_answers")
    with op.batch_alter_table("lesson_studies", schema=None) as batch_op:
        batch_op.drop_index("ix_lesson_studies_user")

    op.drop_table("lesson_studies")
    with op.batch_alter_table("lesson_pushes", schema=None) as batch_op:
        batch_op.drop_index("uq_lesson_pushes_chat_lesson")
        batch_op.drop_index("uq_lesson_pushes_chat_day")
        batch_op.drop_index(batch_op.f("ix_lesson_pushes_poll_id"))

    op.drop_table("lesson_pushes")
