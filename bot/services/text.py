"""Free text that members type: when it says nothing."""

from __future__ import annotations

import unicodedata


def is_blank(text: str | None) -> bool:
    """True when nothing in the text would show: only white space and invisible format characters
    (zero-width space and joiners, direction marks, a byte-order mark). ``strip()`` alone lets a title of
    zero-width spaces through, and the group then sees an empty line. Such characters inside a real
    text (an emoji sequence, a right-to-left name) are left alone."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text or "")
