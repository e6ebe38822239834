"""Reading a lesson file: Markdown with a front-matter block per lesson, YAML (a list of lessons) or CSV
(one lesson a row, as exported from Excel). Every entry is checked, and each problem is reported with
the line it starts on, so that the committee can mend the file; the caller saves nothing unless the
whole file is good.

Markdown::

    ---
    title: 什么是"三会一课"
    source: 《中国共产党支部工作条例（试行）》
    tags: [三会一课, 组织生活]
    date: 2026-12-01            # optional: push on this day
    quiz:                       # optional
      question: '"三会一课"中的"一课"指的是什么？'  # quoted: it starts with a quote
      options: [党课, 业务培训, 读书会]
      answer: 党课               # the option itself, its letter (A) or its number (1)
    ---
    正文……

YAML: a list of mappings with the same keys and ``body`` (or ``{lessons: [...]}``). CSV: a header row
with ``title, body, source, tags, date, question, options, answer`` (Chinese names too: 标题, 正文,
来源, 标签, 日期, 题目, 选项, 答案; options separated by "|", or columns 选项A, 选项B, …).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml

from bot.services.errors import DomainError
from bot.services.text import is_blank

MAX_FILE_BYTES = 512 * 1024
MAX_LESSONS = 500
TITLE_LENGTH, BODY_LENGTH, SOURCE_LENGTH = 60, 3000, 200
QUESTION_LENGTH, OPTION_LENGTH = 300, 100  # Telegram's limits for a quiz poll
MIN_OPTIONS, MAX_OPTIONS = 2, 10
MAX_TAGS, TAG_LENGTH = 5, 20
FORMATS = {".md": "markdown", ".markdown": "markdown", ".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}

# What a field may be called, in either language: name → field.
FIELD_NAMES = {
    "title": "title",
    "标题": "title",
    "body": "body",
    "text": "body",
    "正文": "body",
    "内容": "body",
    "source": "source",
    "来源": "source",
    "出处": "source",
    "tags": "tags",
    "标签": "tags",
    "date": "date",
    "日期": "date",
    "question": "question",
    "quiz_question": "question",
    "题目": "question",
    "options": "options",
    "选项": "options",
    "answer": "answer",
    "答案": "answer",
    "quiz": "quiz",
    "测验": "quiz",
}


class _Loader(yaml.SafeLoader):
    """YAML as lesson files need it: no aliases (a few hundred bytes of them can expand into gigabytes),
    and no guessing of types: "yes", "1.50" and "2026-02-30" stay text, checked as such."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", self.peek_event().start_mark)
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:null")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader, with less


def _compose(text: str) -> Any:
    return yaml.compose(text, Loader=_Loader)


_OPTION_COLUMN = re.compile(r"^(?:option_?|选项)\s*([a-j])$", re.IGNORECASE)
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a cell may be as large as the file allows
_LIST_SEPARATORS = re.compile(r"[|｜]")
_TAG_SEPARATORS = re.compile(r"[,，、;；]")


@dataclass(frozen=True)
class LessonDraft:
    line: int  # where the entry starts in the file
    title: str
    body: str
    source: str
    tags: tuple[str, ...] = ()
    push_on: date | None = None
    question: str | None = None
    options: tuple[str, ...] = ()
    answer: int | None = None  # index into options


@dataclass(frozen=True)
class Problem:
    line: int
    key: str  # a locale key under "lessons."
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Parsed:
    lessons: list[LessonDraft]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return bool(self.lessons) and not self.problems


def format_of(filename: str) -> str:
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    kind = FORMATS.get(suffix)
    if kind is None:
        raise DomainError("lessons.wrong_format")
    return kind


def _decode(data: bytes, kind: str) -> str:
    # Excel in China saves CSV as GB18030 (GBK) unless told otherwise.
    for encoding in ("utf-8-sig", "gb18030") if kind == "csv" else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DomainError("lessons.not_text")


def parse_file(filename: str, data: bytes) -> Parsed:
    """The lessons of a file and the problems found in it. A file that cannot be read at all (too
    big, not a lesson format, not text) is refused with a ``DomainError``."""
    if len(data) > MAX_FILE_BYTES:
        raise DomainError("lessons.file_too_big", limit=MAX_FILE_BYTES // 1024)
    kind = format_of(filename)
    text = _decode(data, kind)
    problems: list[Problem] = []
    reader = {"markdown": _markdown_entries, "yaml": _yaml_entries, "csv": _csv_entries}[kind]
    try:
        entries = reader(text, problems)
    except Exception:  # noqa: BLE001
        # Whatever else a malformed file trips on, it is the file's fault: say so, do not fail.
        return Parsed([], [Problem(1, f"lessons.unreadable_{kind}")])
    if not entries and not problems:
        problems.append(Problem(1, "lessons.empty"))
    if len(entries) > MAX_LESSONS:
        problems.append(Problem(entries[MAX_LESSONS][0], "lessons.too_many", {"limit": MAX_LESSONS}))
        entries = entries[:MAX_LESSONS]
    lessons, titles = [], {}
    for line, raw in entries:
        try:
            draft = draft_of(line, raw, problems)
        except Exception:  # noqa: BLE001 - an entry of an unexpected shape is the file's fault
            problems.append(Problem(line, "lessons.bad_entry"))
            continue
        if draft is None:
            continue
        if draft.title in titles:
            problems.append(Problem(line, "lessons.duplicate_title", {"first": titles[draft.title]}))
            continue
        titles[draft.title] = line
        lessons.append(draft)
    return Parsed(lessons, sorted(problems, key=lambda problem: problem.line))


# ------------------------------------------------------------------------------------------ formats


def _markdown_entries(text: str, problems: list[Problem]) -> list[tuple[int, dict]]:
    lines = text.splitlines()
    entries = []
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index < len(lines) and lines[index].strip() != "---":
        problems.append(Problem(index + 1, "lessons.md_no_front_matter"))
        return []
    while index < len(lines):
        start = index  # a line "---"
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() == "---"), None)
        if end is None:
            problems.append(Problem(start + 1, "lessons.md_unclosed"))
            break
        following = next((i for i in range(end + 1, len(lines)) if lines[i].strip() == "---"), len(lines))
        try:
            meta = _load("\n".join(lines[start + 1 : end])) or {}
        except Exception as error:  # noqa: BLE001 - PyYAML raises more than YAMLError on malformed tags
            mark = getattr(error, "problem_mark", None)
            problems.append(Problem(start + 2 + (mark.line if mark else 0), "lessons.bad_yaml"))
            index = following
            continue
        if not isinstance(meta, dict):
            problems.append(Problem(start + 1, "lessons.bad_entry"))
        else:
            entries.append((start + 1, {**meta, "body": "\n".join(lines[end + 1 : following]).strip()}))
        index = following
    return entries


def _yaml_entries(text: str, problems: list[Problem]) -> list[tuple[int, dict]]:
    try:
        root = _compose(text)
        data = _load(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as error:
        mark = getattr(error, "problem_mark", None)
        problems.append(Problem((mark.line + 1) if mark else 1, "lessons.bad_yaml"))
        return []
    if isinstance(data, dict) and "lessons" in data and isinstance(root, yaml.MappingNode):
        data = data["lessons"]
        root = next((value for key, value in root.value if key.value == "lessons"), None)
    if not isinstance(data, list) or not isinstance(root, yaml.SequenceNode) or len(root.value) != len(data):
        problems.append(Problem(1, "lessons.yaml_not_list"))
        return []
    entries = []
    for node, item in zip(root.value, data, strict=True):
        line = node.start_mark.line + 1
        if isinstance(item, dict):
            entries.append((line, item))
        else:
            problems.append(Problem(line, "lessons.bad_entry"))
    return entries


def _csv_entries(text: str, problems: list[Problem]) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    columns = []
    for name in header:
        name = name.strip().lower()
        option = _OPTION_COLUMN.match(name)
        columns.append(f"option:{option.group(1).lower()}" if option else FIELD_NAMES.get(name, ""))
    if "title" not in columns:
        problems.append(Problem(1, "lessons.csv_no_header"))
        return []
    entries, line = [], reader.line_num + 1
    for row in reader:
        if len(row) > len(columns) and any(cell.strip() for cell in row[len(columns) :]):
            problems.append(Problem(line, "lessons.csv_extra_cells"))  # a comma in a cell that was not quoted
        elif any(cell.strip() for cell in row):
            raw: dict[str, Any] = {}
            lettered = []
            for column, cell in zip(columns, row, strict=False):
                if column.startswith("option:"):
                    if cell.strip():
                        lettered.append((column, cell))
                elif column:
                    raw[column] = cell
            if lettered:
                raw["options"] = [cell for _, cell in sorted(lettered)]
            elif isinstance(raw.get("options"), str):
                raw["options"] = [part for part in _LIST_SEPARATORS.split(raw["options"]) if part.strip()]
            entries.append((line, raw))
        line = reader.line_num + 1
    return entries


# ------------------------------------------------------------------------------------------ checking


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


_SCALARS = (str, int, float, date)


def _flat(value: Any) -> bool:
    """A scalar, or a list of scalars: all a lesson's fields may be. (YAML aliases can nest a small
    file into an enormous structure; it is refused before anything turns it into text.)"""
    return (
        value is None
        or isinstance(value, _SCALARS)
        or (isinstance(value, list) and len(value) <= 50 and all(isinstance(item, _SCALARS) for item in value))
    )


def draft_of(line: int, raw: dict, problems: list[Problem]) -> LessonDraft | None:
    fields = {FIELD_NAMES.get(str(key).strip().lower(), str(key)): value for key, value in raw.items()}
    quiz = fields.get("quiz")
    known = [value for name, value in fields.items() if name in FIELD_NAMES.values() and name != "quiz"]
    if isinstance(quiz, dict):
        known += list(quiz.values())
    elif quiz is not None:
        known.append(quiz)
    if not all(_flat(value) for value in known):
        problems.append(Problem(line, "lessons.bad_entry"))
        return None
    items = (item for value in known for item in (value if isinstance(value, list) else [value]))
    if any("\x00" in _text(item) for item in items):  # a YAML "\0" or JSON "\u0000": PostgreSQL cannot store it
        problems.append(Problem(line, "lessons.nul_character"))
        return None
    found: list[Problem] = []

    def bounded(name: str, limit: int) -> str:
        value = _text(fields.get(name))
        if is_blank(value):
            found.append(Problem(line, f"lessons.{name}_missing"))
        elif len(value) > limit:
            found.append(Problem(line, "lessons.too_long", {"field": name, "limit": limit, "length": len(value)}))
        return value

    title = bounded("title", TITLE_LENGTH)
    body = bounded("body", BODY_LENGTH)
    source = bounded("source", SOURCE_LENGTH)
    tags = _tags(fields.get("tags"), line, found)
    push_on = _date(fields.get("date"), line, found)
    quiz = fields.get("quiz")
    if isinstance(quiz, dict):
        quiz = {FIELD_NAMES.get(str(key).strip().lower(), str(key)): value for key, value in quiz.items()}
        question, options, answer = quiz.get("question"), quiz.get("options"), quiz.get("answer")
    elif quiz not in (None, ""):
        found.append(Problem(line, "lessons.bad_quiz"))
        question = options = answer = None
    else:
        question, options, answer = fields.get("question"), fields.get("options"), fields.get("answer")
    quiz_parts = _quiz(question, options, answer, line, found)
    problems.extend(found)
    if found:
        return None
    return LessonDraft(line, title, body, source, tags, push_on, *quiz_parts)


def _tags(value: Any, line: int, found: list[Problem]) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    items = value if isinstance(value, list) else _TAG_SEPARATORS.split(str(value))
    tags = tuple(dict.fromkeys(_text(item) for item in items if _text(item)))
    if len(tags) > MAX_TAGS or any(len(tag) > TAG_LENGTH for tag in tags):
        found.append(Problem(line, "lessons.bad_tags", {"limit": MAX_TAGS, "length": TAG_LENGTH}))
    return tags


def _date(value: Any, line: int, found: list[Problem]) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(_text(value).replace("/", "-"))
    except ValueError:
        found.append(Problem(line, "lessons.bad_date", {"value": _text(value)[:20]}))
        return None


def _quiz(
    question: Any, options: Any, answer: Any, line: int, found: list[Problem]
) -> tuple[str | None, tuple[str, ...], int | None]:
    question = _text(question)
    if isinstance(options, str):
        options = [part for part in _LIST_SEPARATORS.split(options) if part.strip()]
    elif options is not None and not isinstance(options, list):
        options = [options]
    options = tuple(_text(option) for option in options or () if _text(option))
    answer = _text(answer)
    if not question:
        if options or answer:
            found.append(Problem(line, "lessons.quiz_incomplete"))
        return None, (), None
    if len(question) > QUESTION_LENGTH:
        found.append(
            Problem(line, "lessons.too_long", {"field": "question", "limit": QUESTION_LENGTH, "length": len(question)})
        )
    if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS or len(set(options)) != len(options):
        found.append(Problem(line, "lessons.bad_options", {"low": MIN_OPTIONS, "high": MAX_OPTIONS}))
        return question, options, None
    if any(len(option) > OPTION_LENGTH for option in options):
        found.append(
            Problem(
                line, "lessons.too_long", {"field": "options", "limit": OPTION_LENGTH, "length": max(map(len, options))}
            )
        )
    index = _answer_index(answer, options)
    if index is None:
        found.append(Problem(line, "lessons.bad_answer", {"value": answer[:40]}))
    return question, options, index


def _answer_index(answer: str, options: tuple[str, ...]) -> int | None:
    """The answer as the option itself, its letter (A, b) or its number (1-based)."""
    if answer in options:
        return options.index(answer)
    if len(answer) == 1 and answer.upper() in "ABCDEFGHIJ"[: len(options)]:
        return "ABCDEFGHIJ".index(answer.upper())
    if answer.isascii() and answer.isdigit() and 1 <= int(answer) <= len(options):
        return int(answer) - 1
    return None
