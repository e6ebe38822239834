"""Reading lesson files: Markdown with front matter, YAML, CSV (UTF-8 and the GBK that Excel writes);
every bad entry reported with its line; files that cannot be lessons refused outright."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bot.services.errors import DomainError
from bot.services.lesson_files import MAX_FILE_BYTES, parse_file

SAMPLE_PACKS = sorted((Path(__file__).resolve().parent.parent / "bot" / "lessons").glob("sample_pack*.md"))

GOOD_MD = """
---
title: 什么是"三会一课"
source: 《中国共产党支部工作条例（试行）》
tags: [三会一课, 组织生活]
date: 2026-12-01
quiz:
  question: '"三会一课"中的"一课"指的是什么？'
  options: [党课, 业务培训, 读书会]
  answer: 党课
---
"三会一课"是支部党员大会、支部委员会、党小组会和党课。

- 按时参加
- 认真记录
---
title: 亮身份
source: 支部工作手册
---
在群里亮身份、亮职责、亮承诺。
"""


def keys(parsed) -> list[tuple[int, str]]:
    return [(problem.line, problem.key) for problem in parsed.problems]


def test_markdown_with_front_matter() -> None:
    parsed = parse_file("lessons.md", GOOD_MD.encode())
    assert parsed.ok and keys(parsed) == []
    first, second = parsed.lessons
    assert (first.line, first.title, first.tags, first.push_on) == (
        2,
        '什么是"三会一课"',
        ("三会一课", "组织生活"),
        date(2026, 12, 1),
    )
    assert first.body.startswith('"三会一课"是') and first.body.endswith("- 认真记录")
    assert (first.question, first.options, first.answer) == (
        '"三会一课"中的"一课"指的是什么？',
        ("党课", "业务培训", "读书会"),
        0,
    )
    assert (second.line, second.title, second.question, second.answer) == (16, "亮身份", None, None)


def test_yaml_list_and_csv_in_either_encoding() -> None:
    yaml_text = """
lessons:
  - title: 党费
    body: 按月交纳。
    source: 党章
    quiz: {question: 多久交一次？, options: [每月, 每年], answer: A}
  - title: 谈心谈话
    body: 每年至少一次。
    source: 条例
"""
    parsed = parse_file("lessons.yml", yaml_text.encode())
    assert parsed.ok and [lesson.line for lesson in parsed.lessons] == [3, 7]
    assert parsed.lessons[0].answer == 0

    csv_text = (
        "标题,正文,来源,标签,题目,选项A,选项B,选项C,答案\n"
        "党小组,每月一次。,条例,组织生活、党小组,多久开一次？,每月,每年,每周,1\n"
    )
    for encoding in ("utf-8", "utf-8-sig", "gb18030"):
        parsed = parse_file("lessons.csv", csv_text.encode(encoding))
        assert parsed.ok, (encoding, keys(parsed))
        [lesson] = parsed.lessons
        assert (lesson.line, lesson.tags, lesson.options, lesson.answer) == (
            2,
            ("组织生活", "党小组"),
            ("每月", "每年", "每周"),
            0,
        )
    parsed = parse_file("x.csv", "title,body,source,options,answer,question\nA,B,C,甲|乙,乙,问\n".encode())
    assert parsed.ok and parsed.lessons[0].options == ("甲", "乙") and parsed.lessons[0].answer == 1


def test_every_bad_entry_is_reported_with_its_line() -> None:
    csv_text = (
        "title,body,source,question,options,answer,date\n"
        "好的一课,正文,来源,,,,\n"  # line 2: fine
        ",正文,来源,,,,\n"  # 3: no title
        "无来源,正文,,,,,\n"  # 4: no source
        "错答案,正文,来源,问？,甲|乙,丙,\n"  # 5: answer not an option
        "一个选项,正文,来源,问？,甲,甲,\n"  # 6: too few options
        "没题目,正文,来源,,甲|乙,甲,\n"  # 7: options without a question
        "坏日期,正文,来源,,,,12月1日\n"  # 8
        "好的一课,正文,来源,,,,\n" + "太长," + "长" * 3001 + ",来源,,,,\n"  # 9: same title as line 2  # 10
    )
    parsed = parse_file("lessons.csv", csv_text.encode())
    assert not parsed.ok
    assert keys(parsed) == [
        (3, "lessons.title_missing"),
        (4, "lessons.source_missing"),
        (5, "lessons.bad_answer"),
        (6, "lessons.bad_options"),
        (7, "lessons.quiz_incomplete"),
        (8, "lessons.bad_date"),
        (9, "lessons.duplicate_title"),
        (10, "lessons.too_long"),
    ]
    assert [lesson.line for lesson in parsed.lessons] == [2]  # what was good, for the report only

    broken = parse_file("lessons.md", b"---\ntitle: [unclosed\n---\nbody\n---\ntitle: x\nsource: y\n---\n")
    assert ("lessons.bad_yaml" in {p.key for p in broken.problems}) and (
        "lessons.body_missing" in {p.key for p in broken.problems}
    )
    assert keys(parse_file("lessons.md", b"no front matter")) == [(1, "lessons.md_no_front_matter")]
    assert keys(parse_file("lessons.yaml", b"title: not a list")) == [(1, "lessons.yaml_not_list")]
    assert keys(parse_file("lessons.csv", "正文,来源\n内容,出处\n".encode())) == [(1, "lessons.csv_no_header")]
    assert keys(parse_file("lessons.md", b"")) == [(1, "lessons.empty")]


@pytest.mark.parametrize(
    ("name", "data", "key"),
    [
        ("lessons.docx", b"PK\x03\x04", "lessons.wrong_format"),
        ("lessons", b"title", "lessons.wrong_format"),
        ("lessons.md", b"\xff\xfe\x00t\x00i", "lessons.not_text"),
        ("lessons.md", b"x" * (MAX_FILE_BYTES + 1), "lessons.file_too_big"),
    ],
)
def test_files_that_cannot_be_lessons_are_refused(name: str, data: bytes, key: str) -> None:
    with pytest.raises(DomainError) as refused:
        parse_file(name, data)
    assert refused.value.key == key


@pytest.mark.parametrize("pack", SAMPLE_PACKS, ids=lambda path: path.name)
def test_the_sample_packs_read_cleanly(pack: Path) -> None:
    parsed = parse_file(pack.name, pack.read_bytes())
    assert parsed.ok, keys(parsed)
    assert len(parsed.lessons) >= 14
    assert all(lesson.question and lesson.answer is not None for lesson in parsed.lessons)


def test_there_is_a_pack_in_each_language() -> None:
    assert [path.name for path in SAMPLE_PACKS] == ["sample_pack.en.md", "sample_pack.md"]


async def test_an_import_is_all_or_nothing_and_follows_the_library(db) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from bot.services import lessons as lesson_service
    from storage.models import Chat, Lesson

    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    async with db.transaction() as session:
        chat = Chat(telegram_id=-100777, type="supergroup", title="第一党支部")
        session.add(chat)
        await session.flush()
        chat_pk = chat.id
        assert await lesson_service.ensure_sample_pack(session, now) >= 14
        assert await lesson_service.ensure_sample_pack(session, now) == 0  # once

    bad = "title,body,source\n好课,正文,来源\n,缺标题,来源\n".encode()
    async with db.transaction() as session:
        report = await lesson_service.import_file(session, chat_pk, 2001, "lessons.csv", bad, now)
    assert (report.imported, report.readable, [(p.line, p.key) for p in report.problems]) == (
        0,
        1,
        [(3, "lessons.title_missing")],
    )
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Lesson).where(Lesson.chat_id == chat_pk)) == 0

    good = GOOD_MD.encode()
    async with db.transaction() as session:
        report = await lesson_service.import_file(session, chat_pk, 2001, "lessons.md", good, now)
    assert report.imported == 2 and not report.problems
    async with db.transaction() as session:  # the same titles again: refused, line by line
        again = await lesson_service.import_file(session, chat_pk, 2001, "lessons.md", good, now)
        assert [(p.line, p.key) for p in again.problems] == [(2, "lessons.title_exists"), (16, "lessons.title_exists")]
        library = await lesson_service.library(session, chat_pk)
    assert [lesson.title for lesson in library[:2]] == ['什么是"三会一课"', "亮身份"]  # the group's own first
    assert lesson_service.quiz_options(library[0]) == ["党课", "业务培训", "读书会"] and library[0].quiz_answer == 0
    assert all(lesson.chat_id is None for lesson in library[2:]) and len(library) >= 16


def test_a_yaml_alias_bomb_is_refused_quickly() -> None:
    import time

    levels = ["- title: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    names = "abcdefgh"
    for previous, name in zip(names, names[1:], strict=False):
        levels.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    levels += ["  body: *h", "  source: 来源"]
    started = time.monotonic()
    parsed = parse_file("bomb.yaml", "\n".join(levels).encode())
    assert time.monotonic() - started < 1.0
    assert [problem.key for problem in parsed.problems] == ["lessons.bad_yaml"] and not parsed.lessons  # no aliases


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.md", "---\ntitle: 课\nsource: 来源\ndate: 2026-02-30\n---\n正文"),
        ("a.yaml", "- {title: 课, body: 正文, source: 来源, quiz: {question: 问, options: 3, answer: ²}}"),
        ("a.yaml", "lessons: []\nlessons: [{title: 课}]"),
        ("a.yaml", "[" * 2000),
        ("a.csv", "title,body,source\n好课," + "长" * 150_000 + ",来源\n"),
        ("a.yaml", "- title: !!timestamp x\n  body: b\n  source: s"),
    ],
)
def test_malformed_files_get_a_report_not_a_crash(name: str, text: str) -> None:
    parsed = parse_file(name, text.encode())
    assert not parsed.ok and parsed.problems


def test_old_mac_line_endings_read() -> None:
    assert parse_file("a.csv", "title,body,source\r好课,正文,来源\r".encode()).ok


def test_a_comma_in_an_unquoted_csv_cell_is_reported() -> None:
    parsed = parse_file("a.csv", "title,body,source\n好课,第一点,第二点,《条例》\n".encode())
    assert [(problem.line, problem.key) for problem in parsed.problems] == [(2, "lessons.csv_extra_cells")]


async def test_a_lesson_dated_today_comes_first_and_none_comes_twice(db) -> None:
    from datetime import UTC, datetime

    from bot.services import lessons as lesson_service
    from storage import lessons as lesson_store
    from storage.models import Chat, LessonPush

    now = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    dated = (
        "---\ntitle: 今天的课\nsource: 来源\ndate: 2026-12-01\n---\n正文\n"
        "---\ntitle: 平常的课\nsource: 来源\n---\n正文\n"
    )
    async with db.transaction() as session:
        chat = Chat(telegram_id=-100778, type="supergroup", title="第二党支部")
        session.add(chat)
        await session.flush()
        await lesson_service.import_file(session, chat.id, 2001, "a.md", dated.encode(), now)
        first = await lesson_store.next_lesson(session, chat.id, date(2026, 11, 30))
        assert first.title == "平常的课"  # the dated one waits for its day
        on_the_day = await lesson_store.next_lesson(session, chat.id, date(2026, 12, 1))
        assert on_the_day.title == "今天的课"  # and on its day goes before the undated
        session.add(LessonPush(chat_id=chat.id, lesson_id=on_the_day.id, pushed_on=date(2026, 12, 1)))
        await session.flush()
        following = await lesson_store.next_lesson(session, chat.id, date(2026, 12, 2))
        assert following.title == "平常的课"
