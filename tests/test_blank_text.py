"""Text of only invisible characters is refused like empty text, wherever members name or write something."""

from __future__ import annotations

import pytest

from bot.services import identity, meetings, notices, organisation
from bot.services.errors import DomainError
from bot.services.lesson_files import parse_file
from bot.services.text import is_blank

INVISIBLE = ["\u200b", "\u200b\u200c\u200d", "\ufeff \u2060", "\u200e\u200f", " \u00a0\u3000"]


@pytest.mark.parametrize("text", INVISIBLE)
def test_invisible_text_is_refused_everywhere(text: str) -> None:
    assert is_blank(text)
    with pytest.raises(DomainError, match="notices.empty"):
        notices.validate_text(text, "text")
    with pytest.raises(DomainError, match="meetings.title_empty"):
        meetings.validate_title(text)
    with pytest.raises(DomainError, match="org.bad_name"):
        organisation.validate_name(text)
    with pytest.raises(DomainError, match="identity.bad_length"):
        identity.validate_text("skills", text)
    parsed = parse_file("lesson.md", f"---\ntitle: '{text}'\nsource: 学习强国\n---\n正文\n".encode())
    assert [problem.key for problem in parsed.problems] == ["lessons.title_missing"]


def test_real_text_with_joiners_and_direction_marks_is_kept() -> None:
    family = "👨\u200d👩\u200d👧 支部活动"  # joiners inside an emoji sequence
    assert not is_blank(family) and meetings.validate_title(family) == family
    assert notices.validate_text("\u200f请确认", "text") == "\u200f请确认"
    assert organisation.validate_name("第一党支部\u200b") == "第一党支部\u200b"
