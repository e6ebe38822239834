"""The monthly report as files a branch secretary can hand in: an Excel 台账 (汇总 first, then 会议, 出勤,
通知, 学习, 花名册) and the same tables as CSV files. Pure functions from ``report_model`` to bytes.

A unit's report (the park committee's view) has one summary row per branch and a total row; its other
sheets hold every branch's rows one under another with the branch in the first column, so a committee
with fifty branches gets six sheets it can filter, not three hundred.

Excel has no time zones: times are written as the group's wall-clock time, and the zone is on the
summary. Totals and overall rates are computed here rather than as formulas, so anything that reads the
file back (openpyxl, a script, a CSV import) sees the values.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.services.meetings import KINDS
from bot.services.report_model import GroupReport, MemberRow, UnitReport, ratio

Translate = Callable[..., str]
Cell = str | int | float | datetime | date | None

# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"): user text
# (a title, a name, a notice) must never be able to do that on the secretary's computer.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Control characters XML 1.0 forbids: openpyxl refuses to write them, so they are dropped everywhere.
# What XML (and so an .xlsx) cannot hold: C0 controls, lone surrogates and the two non-characters.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_FILE_FORBIDDEN = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
SHEET_NAME_LIMIT = 31
PERCENT_FORMAT = "0.0%"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
DATE_FORMAT = "yyyy-mm-dd"
MAX_COLUMN_WIDTH = 50
HEADER_FILL = "DDE4EE"
MARK_FILL = "FFF2CC"


# ------------------------------------------------------------------------------------------ shared labels


def report_zone(report: GroupReport | UnitReport) -> ZoneInfo:
    """The group's zone; for a unit, the zone most of its groups keep (a unit has none of its own)."""
    if isinstance(report, GroupReport):
        return ZoneInfo(report.timezone)
    zones = Counter(group.timezone for group in report.groups)
    return ZoneInfo(zones.most_common(1)[0][0]) if zones else ZoneInfo("UTC")


def local_time(moment: datetime, zone: ZoneInfo) -> datetime:
    """Wall-clock time in ``zone`` without tzinfo, as Excel stores it."""
    return moment.astimezone(zone).replace(tzinfo=None)


def period_label(report: GroupReport | UnitReport, t: Translate) -> str:
    """ "2027年3月", or "2027年3月1–20日" while the month is still under way (the figures stop at that day)."""
    month = report.month
    today = report.generated_at.astimezone(report_zone(report)).date()
    if month <= today < _next_month(month):
        return t("reports.period_so_far", year=month.year, month=month.month, day=today.day)
    return t("reports.period_month", year=month.year, month=month.month)


def percent_label(rate: float | None, t: Translate) -> str:
    return t("reports.none") if rate is None else t("reports.percent", value=_half_up(100 * rate))


def _half_up(value: float) -> int:
    # round() rounds halves to even: 62.5 % would show as 62 % next to 63.5 % shown as 64 %.
    return int(value + 0.5 + 1e-9)


def _next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


def kind_label(kind: str, t: Translate) -> str:
    return t(f"meetings.kind_{kind}")


def member_type_label(member_type: str | None, t: Translate) -> str:
    return t(f"identity.type.{member_type}") if member_type else t("reports.member_type_unknown")


def section_label(section: str, t: Translate) -> str:
    return t(f"reports.section_{section}")


def safe_text(text: str) -> str:
    """User text made harmless for a spreadsheet: no control characters, and a leading quote before
    anything a spreadsheet would run as a formula."""
    text = _ILLEGAL.sub("", text)
    return "'" + text if text.startswith(_FORMULA_START) else text


# ------------------------------------------------------------------------------------------ the tables


@dataclass(frozen=True)
class Rate:
    """A 0..1 share: a number with a percent format in Excel, "85.0%" in CSV, "—" when nothing was due."""

    value: float | None


@dataclass
class Table:
    key: str  # the catalog's reports.table_<key>, and the CSV file's name
    headers: list[str]
    rows: list[list[Cell | Rate]]
    total: list[Cell | Rate] | None = None
    marked: set[int] = field(default_factory=set)  # rows to highlight (members not yet declared)


@dataclass
class Sheet:
    key: str  # the catalog's reports.sheet_<key>
    tables: list[Table]
    title: str | None = None  # a heading line above the first table (the summary's)
    frozen_columns: int = 0  # the branch column stays in view in a unit's sheets


def _totalled(t: Translate, with_group: bool, cells: list[Cell | Rate]) -> list[Cell | Rate]:
    """The total row: its label goes in the first column, the branch column when there is one."""
    label = t("reports.total")
    return [label, None, *cells] if with_group else [label, *cells]


def _table(
    key: str,
    t: Translate,
    headers: list[str],
    groups: list[GroupReport],
    with_group: bool,
    rows_of: Callable[[GroupReport], Iterable[list[Cell | Rate]]],
    total: list[Cell | Rate] | None = None,
    marked_of: Callable[[GroupReport], Iterable[bool]] | None = None,
) -> Table:
    """One table over one group, or over a unit's groups with the group's title in front of each row.
    ``total`` holds the total row's cells after the label column."""
    table = Table(key, [t("reports.col_group"), *headers] if with_group else headers, [])
    for group in groups:
        marks = list(marked_of(group)) if marked_of else []
        for index, row in enumerate(rows_of(group)):
            if marks and marks[index]:
                table.marked.add(len(table.rows))
            table.rows.append([group.title, *row] if with_group else row)
    if total is not None:
        table.total = _totalled(t, with_group, total)
    return table


def _meetings(t: Translate, groups: list[GroupReport], with_group: bool) -> Table:
    headers = ["col_time", "col_kind", "col_title", "col_expected", "col_present", "col_late", "col_leave"]
    headers += ["col_absent", "col_meeting_rate"]
    rows = [row for group in groups for row in group.meetings]

    def rows_of(group: GroupReport) -> Iterable[list[Cell | Rate]]:
        zone = ZoneInfo(group.timezone)
        for row in group.meetings:
            yield [
                local_time(row.starts_at, zone),
                kind_label(row.kind, t),
                row.title,
                row.expected,
                row.present,
                row.late,
                row.leave,
                row.absent,
                Rate(row.rate),
            ]

    present, expected = sum(row.present for row in rows), sum(row.expected for row in rows)
    sums = [sum(row.late for row in rows), sum(row.leave for row in rows), sum(row.absent for row in rows)]
    total = [None, None, expected, present, *sums, Rate(ratio(present, expected))]
    return _table("meetings", t, _headers(t, headers), groups, with_group, rows_of, total)


def _attendance(t: Translate, groups: list[GroupReport], with_group: bool) -> Table:
    headers = ["col_name", "col_section", "col_member_type", "col_expected", "col_present", "col_late"]
    headers += ["col_leave", "col_attendance_rate"]
    members = [member for group in groups for member in group.members]

    def rows_of(group: GroupReport) -> Iterable[list[Cell | Rate]]:
        for member in group.members:
            yield [
                member.name,
                section_label(member.section, t),
                member_type_label(member.member_type, t),
                member.meetings_expected,
                member.meetings_present,
                member.meetings_late,
                member.meetings_leave,
                Rate(member.attendance_rate),
            ]

    expected = sum(member.meetings_expected for member in members)
    present = sum(member.meetings_present for member in members)
    leave = sum(member.meetings_leave for member in members)
    late = sum(member.meetings_late for member in members)
    total = [None, None, expected, present, late, leave, Rate(ratio(present, expected))]
    return _table("attendance", t, _headers(t, headers), groups, with_group, rows_of, total)


def _notices(t: Translate, groups: list[GroupReport], with_group: bool) -> Table:
    headers = ["col_posted", "col_excerpt", "col_ack_due", "col_acked", "col_ack_rate"]
    rows = [row for group in groups for row in group.notices]

    def rows_of(group: GroupReport) -> Iterable[list[Cell | Rate]]:
        zone = ZoneInfo(group.timezone)
        for row in group.notices:
            yield [local_time(row.posted_at, zone), row.excerpt, row.expected, row.acked, Rate(row.rate)]

    expected, acked = sum(row.expected for row in rows), sum(row.acked for row in rows)
    total = [None, expected, acked, Rate(ratio(acked, expected))]
    return _table("notices", t, _headers(t, headers), groups, with_group, rows_of, total)


def _notice_members(t: Translate, groups: list[GroupReport], with_group: bool) -> Table:
    headers = ["col_name", "col_ack_due", "col_acked", "col_ack_rate"]
    members = [member for group in groups for member in group.members]

    def rows_of(group: GroupReport) -> Iterable[list[Cell | Rate]]:
        for member in group.members:
            yield [member.name, member.notices_due, member.notices_acked, Rate(member.ack_rate)]

    due, acked = sum(member.notices_due for member in members), sum(member.notices_acked for member in members)
    total = [due, acked, Rate(ratio(acked, due))]
    return _table("notice_members", t, _headers(t, headers), groups, with_group, rows_of, total)


def _lessons(t: Translate, groups: list[GroupReport], with_group: bool) -> Table:
    headers = ["col_day", "col_lesson", "col_members", "col_studied", "col_quiz_answered", "col_quiz_correct"]
    headers += ["col_study_rate"]
    rows = [row for group in groups for row in group.lessons]

    def rows_of(group: GroupReport) -> Iterable[list[Cell | Rate]]:
        for row in group.lessons:
            yield [
                row.pushed_on,
                row.title,
                row.members,
                row.studied,
                row.quiz_answered,
                row.quiz_correct,
                Rate(row.rate),
            ]

    members, studied = sum(row.members for row in rows), sum(row.studied for row in rows)
    answered, correct = sum(row.quiz_answered for row in rows), sum(row.quiz_correct for row in rows)
    # The total counts member-days: a member who could study on 20 days counts 20 times.
    total = [None, members, studied, answered, correct, Rate(ratio(studied, members))]
    return _table("lessons", t, _headers(t, headers), groups, with_group, rows_of, total)


def _learning_members(t: Translate, groups: list[GroupReport], with_group: bool) -> Table:
    headers = ["col_name", "col_lessons_due", "col_studied", "col_study_rate", "col_points"]
    members = [member for group in groups for member in group.members]

    def rows_of(group: GroupReport) -> Iterable[list[Cell | Rate]]:
        for member in group.members:
            yield [member.name, member.lessons_due, member.lessons_studied, Rate(member.study_rate), member.points]

    due, studied = sum(member.lessons_due for member in members), sum(member.lessons_studied for member in members)
    total = [due, studied, Rate(ratio(studied, due)), sum(member.points for member in members)]
    return _table("learning_members", t, _headers(t, headers), groups, with_group, rows_of, total)


def _top_learners(t: Translate, groups: list[GroupReport], with_group: bool) -> Table:
    headers = _headers(t, ["col_rank", "col_name", "col_points"])

    def rows_of(group: GroupReport) -> Iterable[list[Cell | Rate]]:
        return ([learner.rank, learner.name, learner.points] for learner in group.top_learners)

    return _table("top_learners", t, headers, groups, with_group, rows_of)


def _roster(t: Translate, groups: list[GroupReport], with_group: bool) -> Table:
    headers = _headers(t, ["col_number", "col_name", "col_section", "col_member_type", "col_note"])

    def rows_of(group: GroupReport) -> Iterable[list[Cell | Rate]]:
        for number, member in enumerate(group.members, 1):
            note = t("reports.note_undeclared") if _undeclared(member) else None
            yield [
                number,
                member.name,
                section_label(member.section, t),
                member_type_label(member.member_type, t),
                note,
            ]

    def marked_of(group: GroupReport) -> Iterable[bool]:
        return (_undeclared(member) for member in group.members)

    return _table("roster", t, headers, groups, with_group, rows_of, marked_of=marked_of)


def _undeclared(member: MemberRow) -> bool:
    return member.section == "undeclared"


def _headers(t: Translate, keys: list[str]) -> list[str]:
    return [t(f"reports.{key}") for key in keys]


def _kinds(t: Translate, report: GroupReport) -> Table:
    """Meetings held by type this month, and each required type against its period (三会一课)."""
    held = Counter(row.kind for row in report.meetings)
    order = {kind: index for index, kind in enumerate(KINDS)}
    rows: list[list[Cell | Rate]] = []
    for required in sorted(report.required, key=lambda row: order.get(row.kind, len(order))):
        rows.append(
            [
                kind_label(required.kind, t),
                held[required.kind],
                t(f"reports.required_period_{required.period}"),
                required.first_day,
                required.end_day - timedelta(days=1),
                required.held,
                t("reports.yes") if required.met else t("reports.no"),
            ]
        )
    required_kinds = {row.kind for row in report.required}
    for kind in sorted(held.keys() - required_kinds, key=lambda kind: order.get(kind, len(order))):
        rows.append([kind_label(kind, t), held[kind], t("reports.not_required"), None, None, None, None])
    met = t("reports.value_required", met=report.required_met, total=len(report.required))
    total = [len(report.meetings), None, None, None, sum(row.held for row in report.required), met]
    headers = ["col_kind", "col_held_month", "col_period", "col_period_start", "col_period_end"]
    headers += ["col_held_period", "col_met"]
    return Table("kinds", _headers(t, headers), rows, _totalled(t, False, total))


def _group_summary(t: Translate, report: GroupReport) -> Table:
    zone = ZoneInfo(report.timezone)
    items: list[tuple[str, Cell | Rate]] = [
        ("item_group", report.title),
        ("item_unit", report.unit_name or t("reports.none")),
        ("item_month", period_label(report, t)),
        ("item_timezone", report.timezone),
        ("item_generated", local_time(report.generated_at, zone)),
        ("item_meetings", len(report.meetings)),
        ("item_attendance", Rate(report.attendance_rate)),
        ("item_notices", len(report.notices)),
        ("item_acks", Rate(report.ack_rate)),
        ("item_lessons", len(report.lessons)),
        ("item_learning", Rate(report.learning_participation)),
        ("item_members", len(report.members)),
        ("item_undeclared", len(report.undeclared)),
        ("item_required", t("reports.value_required", met=report.required_met, total=len(report.required))),
    ]
    return _items(t, items)


def _unit_summary(t: Translate, report: UnitReport) -> Table:
    groups = report.groups
    met, required = sum(group.required_met for group in groups), sum(len(group.required) for group in groups)
    items: list[tuple[str, Cell | Rate]] = [
        ("item_unit", report.unit_name),
        ("item_month", period_label(report, t)),
        ("item_timezone", report_zone(report).key),
        ("item_generated", local_time(report.generated_at, report_zone(report))),
        ("item_groups", len(groups)),
        ("item_meetings", sum(len(group.meetings) for group in groups)),
        ("item_attendance", Rate(report.attendance_rate)),
        ("item_notices", sum(len(group.notices) for group in groups)),
        ("item_acks", Rate(report.ack_rate)),
        ("item_lessons", sum(len(group.lessons) for group in groups)),
        ("item_learning", Rate(report.learning_participation)),
        ("item_members", sum(len(group.members) for group in groups)),
        ("item_undeclared", sum(len(group.undeclared) for group in groups)),
        ("item_required", t("reports.value_required", met=met, total=required)),
    ]
    return _items(t, items)


def _items(t: Translate, items: list[tuple[str, Cell | Rate]]) -> Table:
    return Table(
        "summary", _headers(t, ["col_item", "col_value"]), [[t(f"reports.{key}"), value] for key, value in items]
    )


def _groups(t: Translate, report: UnitReport) -> Table:
    """One row per branch, with what a park committee compares, and the unit's totals."""
    headers = ["col_group", "col_unit", "col_meetings", "col_required_met", "col_required_total", "col_expected"]
    headers += ["col_present", "col_leave", "col_attendance_rate", "col_notices", "col_ack_due", "col_acked"]
    headers += ["col_ack_rate", "col_lessons", "col_members", "col_learners", "col_learning_rate", "col_undeclared"]
    rows: list[list[Cell | Rate]] = []
    sums = Counter[str]()
    for group in report.groups:
        figures = {
            "meetings": len(group.meetings),
            "required_met": group.required_met,
            "required": len(group.required),
            "expected": sum(row.expected for row in group.meetings),
            "present": sum(row.present for row in group.meetings),
            "leave": sum(row.leave for row in group.meetings),
            "notices": len(group.notices),
            "due": sum(row.expected for row in group.notices),
            "acked": sum(row.acked for row in group.notices),
            "lessons": len(group.lessons),
            "members": len(group.members),
            "learners": sum(1 for member in group.members if member.lessons_studied),
            "undeclared": len(group.undeclared),
        }
        sums.update(figures)
        rates = (group.attendance_rate, group.ack_rate, group.learning_participation)
        rows.append([group.title, group.unit_name or t("reports.none"), *_unit_cells(figures, rates)])
    rates = (report.attendance_rate, report.ack_rate, report.learning_participation)
    total = _totalled(t, True, _unit_cells(sums, rates))
    return Table("groups", _headers(t, headers), rows, total)


def _unit_cells(figures: dict[str, int], rates: tuple[float | None, ...]) -> list[Cell | Rate]:
    attendance, acks, learning = (Rate(rate) for rate in rates)
    return [
        figures.get("meetings", 0),
        figures.get("required_met", 0),
        figures.get("required", 0),
        figures.get("expected", 0),
        figures.get("present", 0),
        figures.get("leave", 0),
        attendance,
        figures.get("notices", 0),
        figures.get("due", 0),
        figures.get("acked", 0),
        acks,
        figures.get("lessons", 0),
        figures.get("members", 0),
        figures.get("learners", 0),
        learning,
        figures.get("undeclared", 0),
    ]


def sheets(report: GroupReport | UnitReport, t: Translate) -> list[Sheet]:
    """The ledger's layout, shared by the workbook and the CSV files."""
    if isinstance(report, GroupReport):
        groups, with_group = [report], False
        title = t("reports.ledger_title", name=report.title, period=period_label(report, t))
        summary = Sheet("summary", [_group_summary(t, report), _kinds(t, report)], title)
    else:
        groups, with_group = report.groups, True
        title = t("reports.unit_ledger_title", name=report.unit_name, period=period_label(report, t))
        summary = Sheet("summary", [_unit_summary(t, report), _groups(t, report)], title)
    frozen = 1 if with_group else 0
    return [
        summary,
        Sheet("meetings", [_meetings(t, groups, with_group)], frozen_columns=frozen),
        Sheet("attendance", [_attendance(t, groups, with_group)], frozen_columns=frozen),
        Sheet(
            "notices", [_notices(t, groups, with_group), _notice_members(t, groups, with_group)], frozen_columns=frozen
        ),
        Sheet(
            "learning",
            [
                _lessons(t, groups, with_group),
                _learning_members(t, groups, with_group),
                _top_learners(t, groups, with_group),
            ],
            frozen_columns=frozen,
        ),
        Sheet("roster", [_roster(t, groups, with_group)], frozen_columns=frozen),
    ]


# ------------------------------------------------------------------------------------------ the files


def workbook(report: GroupReport | UnitReport, t: Translate) -> bytes:
    """The 台账 as an .xlsx file."""
    # Imported here so that the bot's start-up does not pay for openpyxl.
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    none = t("reports.none")
    book = Workbook()
    book.remove(book.active)
    used: set[str] = set()
    bold = Font(bold=True)
    header_fill = PatternFill("solid", fgColor=HEADER_FILL)
    mark_fill = PatternFill("solid", fgColor=MARK_FILL)
    line = Side(style="thin", color="808080")
    alignments = {"right": Alignment(horizontal="right"), "wrap": Alignment(wrap_text=True, vertical="top")}
    for sheet in sheets(report, t):
        ws = book.create_sheet(sheet_name(t(f"reports.sheet_{sheet.key}"), used))
        widths: dict[int, int] = {}
        row = 1
        if sheet.title:
            ws.cell(row, 1, safe_text(sheet.title)).font = Font(bold=True, size=14)
            row += 2
        for index, table in enumerate(sheet.tables):
            if index or sheet.title:
                ws.cell(row, 1, safe_text(t(f"reports.table_{table.key}"))).font = Font(bold=True, size=12)
                row += 1
            header_row = row
            for column, header in enumerate(table.headers, 1):
                cell = ws.cell(row, column, safe_text(header))
                cell.font = bold
                cell.fill = header_fill
                cell.border = Border(bottom=line)
                cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
                widths[column] = max(widths.get(column, 0), _width(header))
            row += 1
            for number, values in enumerate(table.rows):
                for column, value in enumerate(values, 1):
                    cell = ws.cell(row, column)
                    if align := _put(cell, value, none):
                        cell.alignment = alignments[align]
                    if number in table.marked:
                        cell.fill = mark_fill
                    widths[column] = max(widths.get(column, 0), _width(_text(value, none)))
                row += 1
            last_row = row - 1
            if table.total:
                for column, value in enumerate(table.total, 1):
                    cell = ws.cell(row, column)
                    if align := _put(cell, value, none):
                        cell.alignment = alignments[align]
                    cell.font = bold
                    cell.border = Border(top=line)
                    widths[column] = max(widths.get(column, 0), _width(_text(value, none)))
                row += 1
            if index == 0 and not sheet.title:
                ws.freeze_panes = ws.cell(header_row + 1, sheet.frozen_columns + 1).coordinate
                ws.print_title_rows = f"{header_row}:{header_row}"
                if table.rows:
                    # The filter leaves the total row out, so sorting never moves it among the members.
                    ws.auto_filter.ref = f"A{header_row}:{get_column_letter(len(table.headers))}{last_row}"
            row += 1
        for column, width in widths.items():
            ws.column_dimensions[get_column_letter(column)].width = min(width + 2, MAX_COLUMN_WIDTH)
        # Handed in on paper: landscape A4, as wide as the page, as many pages down as it takes.
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _put(cell, value: Cell | Rate, none: str) -> str | None:
    """Writes the value with its number format; says how the cell should be aligned, if not as usual."""
    if isinstance(value, Rate):
        if value.value is None:
            cell.value = none
            return "right"  # in line with the percentages around it
        cell.value = value.value
        cell.number_format = PERCENT_FORMAT
    elif isinstance(value, datetime):
        cell.value = value
        cell.number_format = DATETIME_FORMAT
    elif isinstance(value, date):
        cell.value = value
        cell.number_format = DATE_FORMAT
    elif isinstance(value, str):
        cell.value = safe_text(value)
        if _width(value) > MAX_COLUMN_WIDTH:
            return "wrap"
    else:
        cell.value = value
    return None


def _text(value: Cell | Rate, none: str) -> str:
    """A cell as CSV text: what Excel shows for it, and what it reads back as the same value."""
    if isinstance(value, Rate):
        return none if value.value is None else f"{100 * value.value:.1f}%"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return safe_text(value)
    return "" if value is None else str(value)


def _width(text: str) -> int:
    """Columns a text takes in a spreadsheet: a Chinese character is about two Latin letters wide."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def sheet_name(text: str, used: set[str]) -> str:
    """A valid sheet name (at most 31 characters, none of []:*?/\\, no quote at either end), unique in
    the workbook ignoring case as Excel does."""
    name = _SHEET_FORBIDDEN.sub("", _ILLEGAL.sub("", text)).strip().strip("'")[:SHEET_NAME_LIMIT] or "Sheet"
    candidate, number = name, 2
    while candidate.lower() in used:
        suffix = f" ({number})"
        candidate = name[: SHEET_NAME_LIMIT - len(suffix)] + suffix
        number += 1
    used.add(candidate.lower())
    return candidate


def csv_files(report: GroupReport | UnitReport, t: Translate) -> dict[str, bytes]:
    """Every table of the ledger as a CSV file, numbered in the workbook's order. UTF-8 with a byte-order
    mark: without one, Excel on Chinese Windows reads the file as GBK and garbles every name."""
    none = t("reports.none")
    files: dict[str, bytes] = {}
    tables = [table for sheet in sheets(report, t) for table in sheet.tables]
    for number, table in enumerate(tables, 1):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([safe_text(header) for header in table.headers])
        for values in [*table.rows, *([table.total] if table.total else [])]:
            writer.writerow([_text(value, none) for value in values])
        title = _FILE_FORBIDDEN.sub("", t(f"reports.table_{table.key}")).strip() or table.key
        files[f"{number:02d}-{title}.csv"] = buffer.getvalue().encode("utf-8-sig")
    return files


def csv_zip(report: GroupReport | UnitReport, t: Translate) -> bytes:
    """The CSV files in one .zip (a chat takes one document per message)."""
    stamp = local_time(report.generated_at, report_zone(report)).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in csv_files(report, t).items():
            # The report's own time, not the moment of zipping: the same report gives the same file.
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()
