"""Telegram text formatting, parsed the way the Bot API server (tdlib) does it.

``parse_text(text, parse_mode)`` returns ``(plain_text, entities)`` with entity offsets/lengths in UTF-16
code units, or raises :class:`ParseError` with tdlib's message (the Bot API prefixes it with
``"Bad Request: can't parse entities: "``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["ParseError", "parse_text", "utf16_len", "strip_entities"]


class ParseError(ValueError):
    pass


def utf16_len(s: str) -> int:
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le")) // 2


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


# --------------------------------------------------------------------------------------------- HTML

_HTML_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_SPECIAL = re.compile(r"[<&]")
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_NAME_TOKEN = re.compile(r"[A-Za-z0-9.\-]*")
_TD_SPACE = frozenset(" \t\r\n\f\v")


def _decode_html_entity(src: str, i: int) -> tuple[str, int] | None:
    """``src[i] == '&'``. Returns (decoded char, index after the entity) or None (keep '&' literally)."""
    n = len(src)
    j = i + 1
    if j < n and src[j] == "#":
        j += 1
        if j < n and src[j] in "xX":
            j += 1
            start = j
            while j < n and src[j] in _HEX:
                j += 1
            digits, base = src[start:j], 16
        else:
            start = j
            while j < n and src[j] in _DIGITS:
                j += 1
            digits, base = src[start:j], 10
        if not digits or len(digits) > 10:
            return None
        code = int(digits, base)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        ch = chr(code)
    else:
        start = j
        while j < n and src[j].isascii() and src[j].isalpha():
            j += 1
        found = _NAMED_ENTITIES.get(src[start:j])
        if found is None:
            return None
        ch = found
    if j < n and src[j] == ";":
        j += 1
    return ch, j


def _decode_html_entities(s: str) -> str:
    if "&" not in s:
        return s
    out: list[str] = []
    i = 0
    while i < len(s):
        if s[i] == "&":
            dec = _decode_html_entity(s, i)
            if dec is not None:
                out.append(dec[0])
                i = dec[1]
                continue
        out.append(s[i])
        i += 1
    return "".join(out)


class _Frame:
    __slots__ = ("tag", "type", "start", "attrs", "language")

    def __init__(self, tag: str, etype: str, start: int, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.type = etype
        self.start = start
        self.attrs = attrs
        self.language: str | None = None


def parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    pos16 = 0
    stack: list[_Frame] = []
    entities: list[dict[str, Any]] = []
    n = len(src)
    i = 0
    while i < n:
        m = _HTML_SPECIAL.search(src, i)
        if m is None:
            chunk = src[i:]
            out.append(chunk)
            pos16 += utf16_len(chunk)
            break
        j = m.start()
        if j > i:
            chunk = src[i:j]
            out.append(chunk)
            pos16 += utf16_len(chunk)
        i = j
        if src[i] == "&":
            dec = _decode_html_entity(src, i)
            if dec is None:
                out.append("&")
                pos16 += 1
                i += 1
            else:
                out.append(dec[0])
                pos16 += utf16_len(dec[0])
                i = dec[1]
            continue

        begin = i
        i += 1
        if i < n and src[i] == "/":
            # end tag
            if not stack:
                raise ParseError(f"Unexpected end tag at byte offset {_byte_offset(src, begin)}")
            i += 1
            j = i
            while j < n and src[j] not in _TD_SPACE and src[j] != ">":
                j += 1
            end_name = src[i:j].lower()
            while j < n and src[j] in _TD_SPACE:
                j += 1
            if j >= n or src[j] != ">":
                raise ParseError(f"Unclosed end tag at byte offset {_byte_offset(src, begin)}")
            frame = stack[-1]
            if end_name and end_name != frame.tag:
                raise ParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(src, begin)}, "
                    f'expected "</{frame.tag}>", found "</{end_name}>"'
                )
            stack.pop()
            i = j + 1
            _close_html_entity(frame, pos16, stack, entities)
            continue

        # start tag
        j = i
        while j < n and src[j] not in _TD_SPACE and src[j] != ">":
            j += 1
        if j >= n:
            raise ParseError(f"Unclosed start tag at byte offset {_byte_offset(src, begin)}")
        tag = src[i:j].lower()
        if tag not in _HTML_TAGS:
            raise ParseError(f'Unsupported start tag "{tag}" at byte offset {_byte_offset(src, begin)}')
        i = j
        attrs: dict[str, str] = {}
        while True:
            while i < n and src[i] in _TD_SPACE:
                i += 1
            if i >= n:
                raise ParseError(f'Unclosed start tag "{tag}" at byte offset {_byte_offset(src, begin)}')
            if src[i] == ">":
                break
            name_start = i
            while i < n and src[i] not in _TD_SPACE and src[i] not in "=>":
                i += 1
            name = src[name_start:i].lower()
            if not name:
                raise ParseError(f'Empty attribute name in the tag "{tag}" at byte offset {_byte_offset(src, begin)}')
            while i < n and src[i] in _TD_SPACE:
                i += 1
            if i >= n or src[i] != "=":
                if tag == "blockquote" and name == "expandable":
                    attrs[name] = ""
                    continue
                raise ParseError(
                    f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                    f"at byte offset {_byte_offset(src, begin)}"
                )
            i += 1
            while i < n and src[i] in _TD_SPACE:
                i += 1
            if i >= n:
                raise ParseError(f'Unclosed start tag "{tag}" at byte offset {_byte_offset(src, begin)}')
            if src[i] in "'\"":
                quote = src[i]
                end = src.find(quote, i + 1)
                if end < 0:
                    raise ParseError(f"Unclosed start tag at byte offset {_byte_offset(src, begin)}")
                value = _decode_html_entities(src[i + 1 : end])
                i = end + 1
            else:
                tm = _NAME_TOKEN.match(src, i)
                assert tm is not None
                value = tm.group().lower()
                i = tm.end()
                if i < n and src[i] not in _TD_SPACE and src[i] != ">":
                    raise ParseError(f"Unexpected end of name token at byte offset {_byte_offset(src, i)}")
            attrs[name] = value
        i += 1  # '>'
        if tag == "span" and attrs.get("class") != "tg-spoiler":
            raise ParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(src, begin)}')
        stack.append(_Frame(tag, _HTML_TAGS[tag], pos16, attrs))

    if stack:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    return "".join(out), entities


def _close_html_entity(frame: _Frame, pos16: int, stack: list[_Frame], entities: list[dict[str, Any]]) -> None:
    length = pos16 - frame.start
    etype = frame.type
    if etype == "code" and stack and stack[-1].tag == "pre":
        cls = frame.attrs.get("class", "")
        if cls.startswith("language-"):
            stack[-1].language = cls[len("language-") :]
            return
    if length <= 0:
        return
    entity: dict[str, Any] = {"type": etype, "offset": frame.start, "length": length}
    if etype == "text_link":
        href = frame.attrs.get("href", "").strip()
        if not href:
            return
        if href.startswith("tg://user?id="):
            entity = {"type": "text_mention", "offset": frame.start, "length": length}
            try:
                entity["user"] = {"id": int(href[len("tg://user?id=") :]), "is_bot": False, "first_name": ""}
            except ValueError:
                return
        else:
            entity["url"] = href
    elif etype == "pre" and frame.language:
        entity["language"] = frame.language
    elif etype == "blockquote" and "expandable" in frame.attrs:
        entity["type"] = "expandable_blockquote"
    elif etype == "custom_emoji":
        emoji_id = frame.attrs.get("emoji-id")
        if not emoji_id:
            return
        entity["custom_emoji_id"] = emoji_id
    entities.append(entity)


# ---------------------------------------------------------------------------------------- MarkdownV2

_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
}


def parse_markdown_v2(src: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, int, int]] = []  # (type, start16, byte offset of the opening)
    entities: list[dict[str, Any]] = []
    n = len(src)
    i = 0

    def emit(s: str) -> None:
        nonlocal pos16
        out.append(s)
        pos16 += utf16_len(s)

    def toggle(etype: str, width: int) -> None:
        nonlocal i
        if stack and stack[-1][0] == etype:
            _, start, _ = stack.pop()
            if pos16 > start:
                entities.append({"type": etype, "offset": start, "length": pos16 - start})
        else:
            stack.append((etype, pos16, _byte_offset(src, i)))
        i += width

    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and 0 < ord(src[i + 1]) < 127:
            emit(src[i + 1])
            i += 2
            continue
        top = stack[-1][0] if stack else None
        if top == "code":
            if c == "`":
                toggle("code", 1)
            else:
                emit(c)
                i += 1
            continue
        if top == "pre":
            if src.startswith("```", i):
                toggle("pre", 3)
            else:
                emit(c)
                i += 1
            continue
        if c not in _MDV2_RESERVED:
            emit(c)
            i += 1
            continue
        if c == "*":
            toggle("bold", 1)
        elif c == "_":
            if src.startswith("__", i) and not (top == "italic" and not src.startswith("___", i)):
                toggle("underline", 2)
            else:
                toggle("italic", 1)
        elif c == "~":
            toggle("strikethrough", 1)
        elif c == "|" and src.startswith("||", i):
            toggle("spoiler", 2)
        elif c == "`":
            if src.startswith("```", i):
                stack.append(("pre", pos16, _byte_offset(src, i)))
                i += 3
                nl = src.find("\n", i)
                if nl >= 0 and nl > i and not any(ch in _TD_SPACE for ch in src[i:nl]):
                    i = nl + 1  # language line
            else:
                stack.append(("code", pos16, _byte_offset(src, i)))
                i += 1
        elif c == "[":
            stack.append(("text_link", pos16, _byte_offset(src, i)))
            i += 1
        elif c == "!" and src.startswith("![", i):
            stack.append(("text_link", pos16, _byte_offset(src, i)))
            i += 2
        elif c == "]" and top == "text_link":
            _, start, _ = stack.pop()
            i += 1
            url = ""
            if i < n and src[i] == "(":
                i += 1
                buf: list[str] = []
                while i < n and src[i] != ")":
                    if src[i] == "\\" and i + 1 < n and src[i + 1] in ")\\":
                        buf.append(src[i + 1])
                        i += 2
                        continue
                    buf.append(src[i])
                    i += 1
                if i >= n:
                    raise ParseError(f"Can't find end of a url at byte offset {_byte_offset(src, i)}")
                i += 1
                url = "".join(buf)
            if url and pos16 > start:
                entities.append({"type": "text_link", "offset": start, "length": pos16 - start, "url": url})
        elif c == ">" and (i == 0 or src[i - 1] == "\n"):
            i += 1  # blockquote marker (no entity emitted by the emulator)
        else:
            raise ParseError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")

    if stack:
        etype, _, byte_off = stack[-1]
        raise ParseError(f"Can't find end of {_MDV2_NAMES.get(etype, etype)} entity at byte offset {byte_off}")
    return "".join(out), entities


# ----------------------------------------------------------------------------------- legacy Markdown

_LEGACY = {"*": "bold", "_": "italic", "`": "code", "[": "text_link"}


def parse_markdown(src: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    pos16 = 0
    entities: list[dict[str, Any]] = []
    n = len(src)
    i = 0
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.append(src[i + 1])
            pos16 += 1
            i += 2
            continue
        if c not in _LEGACY:
            out.append(c)
            pos16 += utf16_len(c)
            i += 1
            continue
        begin = i
        if src.startswith("```", i):
            end = src.find("```", i + 3)
            if end < 0:
                raise ParseError(f"Can't find end of the entity starting at byte offset {_byte_offset(src, begin)}")
            inner = src[i + 3 : end]
            etype, i = "pre", end + 3
        else:
            close = "]" if c == "[" else c
            end = src.find(close, i + 1)
            if end < 0:
                raise ParseError(f"Can't find end of the entity starting at byte offset {_byte_offset(src, begin)}")
            inner = src[i + 1 : end]
            etype, i = _LEGACY[c], end + 1
        url = None
        if etype == "text_link" and i < n and src[i] == "(":
            end = src.find(")", i)
            if end < 0:
                raise ParseError(f"Can't find end of the entity starting at byte offset {_byte_offset(src, begin)}")
            url = src[i + 1 : end]
            i = end + 1
        length = utf16_len(inner)
        if length:
            entity: dict[str, Any] = {"type": etype, "offset": pos16, "length": length}
            if etype == "text_link":
                if url:
                    entity["url"] = url
                    entities.append(entity)
            else:
                entities.append(entity)
        out.append(inner)
        pos16 += length
    return "".join(out), entities


# -------------------------------------------------------------------------------------------- common


def strip_entities(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Trim leading/trailing whitespace like Telegram does, shifting/clipping entities."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    if not stripped:
        return "", []
    left16 = utf16_len(text[: len(text) - len(text.lstrip())])
    total16 = utf16_len(stripped)
    fixed: list[dict[str, Any]] = []
    for e in entities:
        start = max(e["offset"] - left16, 0)
        end = min(e["offset"] + e["length"] - left16, total16)
        if end > start:
            fixed.append({**e, "offset": start, "length": end - start})
    return stripped, fixed


def parse_text(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """Parse ``text`` with ``parse_mode`` (None → plain). Raises ParseError / KeyError-free ValueError."""
    if not parse_mode:
        return strip_entities(text, [])
    mode = parse_mode.lower()
    if mode == "html":
        plain, entities = parse_html(text)
    elif mode == "markdownv2":
        plain, entities = parse_markdown_v2(text)
    elif mode == "markdown":
        plain, entities = parse_markdown(text)
    else:
        raise LookupError(parse_mode)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return strip_entities(plain, entities)
