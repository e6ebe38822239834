"""The report's renderers: the chart image, the Excel 台账 and the CSV files, from hand-built reports whose
figures are worked out by hand (a month of three meetings, five members one of them undeclared, notices,
lessons), an empty month and a unit of two branches."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import struct
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from bot.i18n import Translator
from bot.services import ledger
from bot.services.charts import report_chart
from bot.services.ledger import csv_files, csv_zip, safe_text, sheet_name, workbook
from bot.services.meetings import KINDS
from bot.services.report_model import (
    GroupReport,
    Learner,
    LessonRow,
    MeetingRow,
    MemberRow,
    NoticeRow,
    RequiredRow,
    UnitReport,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZH, EN = Translator("zh"), Translator("en")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def shanghai(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def member(user_id: int, name: str, section: str, member_type: str | None, **figures: int) -> MemberRow:
    base = dict.fromkeys(
        (
            "meetings_expected",
            "meetings_present",
            "meetings_late",
            "meetings_leave",
            "notices_due",
            "notices_acked",
            "lessons_due",
            "lessons_studied",
            "points",
        ),
        0,
    )
    return MemberRow(user_id, name, section, member_type, **(base | figures))


def march_report(title: str = "第一党支部", *, injected: bool = False) -> GroupReport:
    """March 2027, reported on 1 April. Meetings: 支委会 5/5 present (1 late); 党课 4 of 5 present, 1 on
    leave; 党小组会 3 of 4 (1 absent). Overall attendance: 12 present / 14 expected
    (those on leave were expected, as each meeting's summary counts)."""
    notice_text = '=HYPERLINK("http://x")' if injected else "关于开展三月主题党日活动的通知"
    return GroupReport(
        chat_pk=1,
        title=title,
        unit_name="园区综合党委",
        month=date(2027, 3, 1),
        timezone="Asia/Shanghai",
        generated_at=shanghai(4, 1, 9, 30),
        required=[
            RequiredRow("committee", "month", date(2027, 3, 1), date(2027, 4, 1), held=1),
            RequiredRow("group", "month", date(2027, 3, 1), date(2027, 4, 1), held=1),
            RequiredRow("general", "quarter", date(2027, 1, 1), date(2027, 4, 1), held=0),
            RequiredRow("lecture", "quarter", date(2027, 1, 1), date(2027, 4, 1), held=2),
        ],
        meetings=[
            MeetingRow(11, "committee", "三月支委会", shanghai(3, 5, 19, 30), 5, on_time=4, late=1, leave=0, absent=0),
            MeetingRow(12, "lecture", "学习党章第一章", shanghai(3, 12, 20), 5, on_time=4, late=0, leave=1, absent=0),
            MeetingRow(13, "group", "+1 党小组学习", shanghai(3, 26, 19), 4, on_time=3, late=0, leave=0, absent=1),
        ],
        members=[
            member(
                101,
                "李建国",
                "verified",
                "full",
                meetings_expected=3,
                meetings_present=3,
                notices_due=2,
                notices_acked=2,
                lessons_due=3,
                lessons_studied=3,
                points=18,
            ),
            member(
                102,
                "张三",
                "verified",
                "probationary",
                meetings_expected=3,
                meetings_present=3,
                meetings_late=1,
                notices_due=2,
                notices_acked=2,
                lessons_due=3,
                lessons_studied=2,
                points=11,
            ),
            member(
                103,
                "王五",
                "pending",
                "activist",
                meetings_expected=3,
                meetings_present=2,
                meetings_leave=1,
                notices_due=2,
                notices_acked=1,
                lessons_due=3,
                lessons_studied=1,
                points=4,
            ),
            member(
                104,
                "赵六",
                "verified",
                "full",
                meetings_expected=3,
                meetings_present=2,
                notices_due=2,
                notices_acked=1,
                lessons_due=3,
            ),
            member(
                105,
                "@小刘" if injected else "小刘",
                "undeclared",
                None,
                meetings_expected=2,
                meetings_present=2,
                notices_due=2,
                lessons_due=3,
            ),
        ],  # fmt: skip
        notices=[
            NoticeRow(21, shanghai(3, 2, 9), notice_text, expected=5, acked=4),
            NoticeRow(22, shanghai(3, 20, 18, 5), "请各位党员按时缴纳三月党费", expected=5, acked=2),
        ],
        lessons=[
            LessonRow(31, date(2027, 3, 1), "党章总纲", members=5, studied=3, quiz_answered=3, quiz_correct=2),
            LessonRow(32, date(2027, 3, 2), "党员的权利和义务", members=5, studied=2, quiz_answered=2, quiz_correct=2),
            LessonRow(33, date(2027, 3, 3), "民主集中制", members=5, studied=1, quiz_answered=1, quiz_correct=0),
        ],
        top_learners=[Learner(1, "李建国", 18), Learner(2, "张三", 11), Learner(3, "（未署名）", 4)],
    )


def empty_report() -> GroupReport:
    return GroupReport(
        chat_pk=2,
        title="第二党支部",
        unit_name=None,
        month=date(2027, 3, 1),
        timezone="Asia/Shanghai",
        generated_at=shanghai(3, 20, 12),
    )


def unit_report() -> UnitReport:
    return UnitReport(
        unit_name="园区综合党委",
        month=date(2027, 3, 1),
        generated_at=shanghai(4, 1, 9, 30),
        groups=[march_report(), empty_report()],
    )


# ------------------------------------------------------------------------------------------ the chart


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def decoded(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def distinct_colours(data: bytes) -> int:
    image = decoded(data)
    return len(image.getcolors(maxcolors=1 << 24))


@pytest.fixture
def glyphs_must_exist(caplog):
    """matplotlib only warns when a font lacks a character (and draws an empty box), and only logs when
    it cannot find a font or a weight and takes another: make both fail the test."""
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="matplotlib"):
        warnings.filterwarnings("error", message=r"(?s).*[Gg]lyph.*missing")
        yield
    font_messages = [record.getMessage() for record in caplog.records if record.name.startswith("matplotlib")]
    assert not font_messages


def test_a_missing_glyph_would_fail_these_tests(glyphs_must_exist) -> None:
    """The guard above works: a character neither font has, drawn as it is, raises (the chart leaves such
    characters out of user text)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from bot.services.charts import _fonts

    figure = Figure()
    FigureCanvasAgg(figure)
    figure.text(0.5, 0.5, "党 \N{THAI CHARACTER KO KAI}", fontproperties=_fonts().props(12))
    with pytest.raises(UserWarning, match="missing"):
        figure.savefig(io.BytesIO(), format="png")


def test_group_chart_is_a_phone_sized_png_with_content(glyphs_must_exist) -> None:
    data = report_chart(march_report(), ZH)
    width, height = png_size(data)
    assert width == 1080
    assert 1350 <= height <= 2600
    from PIL import ImageStat

    stat = ImageStat.Stat(decoded(data))
    assert min(stat.stddev) > 20  # not a blank page
    assert distinct_colours(data) > 200  # antialiased text and four colours of bars

    blank = report_chart(empty_report(), ZH)
    assert png_size(blank)[0] == 1080
    assert distinct_colours(data) > distinct_colours(blank)


def test_chinese_text_renders_with_the_shipped_font(glyphs_must_exist) -> None:
    """Two titles that differ in one character draw differently: as empty boxes they would be the same."""
    one = report_chart(march_report("第一党支部"), ZH)
    two = report_chart(march_report("第二党支部"), ZH)
    title_strip = (0, 0, 1080, 90)
    assert decoded(one).crop(title_strip).tobytes() != decoded(two).crop(title_strip).tobytes()

    from matplotlib.font_manager import FontProperties, findfont, get_font

    from bot.services.charts import _fonts

    fonts = _fonts()
    assert fonts.families[0] == "Noto Sans CJK SC"
    # The family resolves to the font shipped with mplfonts, not to a system font without Chinese.
    path = findfont(FontProperties(family=list(fonts.families)), fallback_to_default=False)
    assert path.endswith("NotoSansCJKsc-Regular.otf")
    assert all(get_font(path).get_char_index(ord(char)) for char in "第一党支部会议到会率✓×")


def test_every_chart_label_draws_without_missing_glyphs(glyphs_must_exist) -> None:
    for t in (ZH, EN):
        report_chart(march_report(), t)
        report_chart(empty_report(), t)
        report_chart(unit_report(), t)
        report_chart(UnitReport("空单位", date(2027, 3, 1), shanghai(3, 20, 12)), t)


def test_user_text_cannot_break_the_chart(glyphs_must_exist) -> None:
    """A flag and Thai (no font here has them), a "$" pair that would start math mode, a very long title."""
    report = march_report("🇨🇳 第一支部 \N{THAI CHARACTER KO KAI} $x$ " + "很长的名字" * 30)
    data = report_chart(report, ZH)
    assert png_size(data)[0] == 1080


def test_many_meetings_and_groups_stay_readable(glyphs_must_exist) -> None:
    base = march_report()
    meetings = [
        MeetingRow(100 + day, "other", f"会议{day}", shanghai(3, day, 19), 5, on_time=day % 6, late=0, leave=0,
                   absent=5 - day % 6)
        for day in range(1, 26)
    ]  # fmt: skip
    busy = dataclasses.replace(base, meetings=meetings)
    width, height = png_size(report_chart(busy, ZH))
    assert width == 1080 and height <= 3000

    groups = [march_report(f"第{number}党支部") for number in range(1, 46)]
    width, height = png_size(report_chart(UnitReport("园区综合党委", date(2027, 3, 1), shanghai(4, 1, 9), groups), EN))
    assert width == 1080 and height <= 4000


def test_unit_chart(glyphs_must_exist) -> None:
    data = report_chart(unit_report(), ZH)
    width, height = png_size(data)
    assert width == 1080 and height >= 700
    assert distinct_colours(data) > 100


# ------------------------------------------------------------------------------------------ the workbook


def load(data: bytes):
    from openpyxl import load_workbook

    return load_workbook(io.BytesIO(data))


def rows_of(sheet) -> list[list]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def find_row(sheet, first: object) -> int:
    for row in sheet.iter_rows():
        if row[0].value == first:
            return row[0].row
    raise AssertionError(f"no row starting with {first!r}")


def test_workbook_sheets_headers_and_figures() -> None:
    book = load(workbook(march_report(), ZH))
    assert book.sheetnames == ["汇总", "会议", "出勤", "通知", "学习", "花名册"]

    summary = book["汇总"]
    assert summary["A1"].value == "「第一党支部」2027年3月 工作台账"
    assert summary["A1"].font.b
    items = {row[0]: row[1] for row in rows_of(summary) if row[0] and row[1] is not None}
    assert items["支部（群）"] == "第一党支部"
    assert items["所属单位"] == "园区综合党委"
    assert items["月份"] == "2027年3月"
    assert items["时区"] == "Asia/Shanghai"
    assert items["生成时间"] == datetime(2027, 4, 1, 9, 30)
    assert items["会议次数"] == 3
    assert items["到会率"] == pytest.approx(12 / 14)
    assert items["通知确认率"] == pytest.approx(6 / 10)
    assert items["学习参与率"] == pytest.approx(3 / 5)
    assert items["未亮身份人数"] == 1
    assert items["规定会议达标"] == "3/4"
    rate_cell = summary.cell(find_row(summary, "到会率"), 2)
    assert rate_cell.number_format == "0.0%"

    kinds_title = find_row(summary, "会议召开情况")
    assert [cell.value for cell in summary[kinds_title + 1]][:2] == ["会议类型", "本月召开"]
    kinds = rows_of(summary)[kinds_title + 1 : kinds_title + 6]
    # Required types in the order of meetings.KINDS, with their period and whether they were held.
    assert kinds[0] == ["支部党员大会", 0, "每季度", datetime(2027, 1, 1), datetime(2027, 3, 31), 0, "否"]
    assert kinds[1] == ["支部委员会", 1, "每月", datetime(2027, 3, 1), datetime(2027, 3, 31), 1, "是"]
    assert kinds[2][:2] == ["党小组会", 1] and kinds[3][:2] == ["党课", 1]
    assert kinds[4] == ["合计", 3, None, None, None, 4, "3/4"]

    meetings = book["会议"]
    header = [cell.value for cell in meetings[1]]
    assert header == ["时间", "会议类型", "会议名称", "应到", "到会", "迟到", "请假", "缺席", "到会率"]
    assert all(cell.font.b for cell in meetings[1])
    assert meetings.freeze_panes == "A2"
    first = [cell.value for cell in meetings[2]]
    assert first[:8] == [datetime(2027, 3, 5, 19, 30), "支部委员会", "三月支委会", 5, 5, 1, 0, 0]
    assert first[8] == pytest.approx(1.0) and meetings["I2"].number_format == "0.0%"
    assert meetings["A2"].is_date and meetings["A2"].number_format == "yyyy-mm-dd hh:mm"
    total = [cell.value for cell in meetings[5]]
    assert total[:8] == ["合计", None, None, 14, 12, 1, 1, 1]
    assert total[8] == pytest.approx(12 / 14)  # 到会率 is present / expected, as on each meeting's row
    assert meetings["D5"].font.b
    assert meetings.column_dimensions["C"].width >= 12

    attendance = book["出勤"]
    assert [cell.value for cell in attendance[1]] == [
        "姓名",
        "亮身份",
        "身份类别",
        "应到",
        "到会",
        "迟到",
        "请假",
        "到会率",
    ]
    wang = [cell.value for cell in attendance[4]]
    assert wang[:7] == ["王五", "待审核", "入党积极分子", 3, 2, 0, 1]
    assert wang[7] == pytest.approx(2 / 3)  # 2 present of 3 expected (one on leave)
    liu = [cell.value for cell in attendance[6]]
    assert liu[:3] == ["小刘", "未亮身份", "未填写"]
    total = [cell.value for cell in attendance[7]]
    assert total[:7] == ["合计", None, None, 14, 12, 1, 1] and total[7] == pytest.approx(12 / 14)

    notices = book["通知"]
    assert [cell.value for cell in notices[1]] == ["发布时间", "通知内容", "应确认", "已确认", "确认率"]
    assert [cell.value for cell in notices[2]][:4] == [datetime(2027, 3, 2, 9), "关于开展三月主题党日活动的通知", 5, 4]
    total = [cell.value for cell in notices[4]]
    assert total[:4] == ["合计", None, 10, 6] and total[4] == pytest.approx(0.6)
    by_member = find_row(notices, "通知确认（按成员）")
    assert notices.cell(by_member, 1).font.b
    assert [cell.value for cell in notices[by_member + 1]][:5] == ["姓名", "应确认", "已确认", "确认率", None]
    assert [cell.value for cell in notices[by_member + 2]][:3] == ["李建国", 2, 2]
    liu = [cell.value for cell in notices[by_member + 6]]
    assert liu[:3] == ["小刘", 2, 0] and liu[3] == 0
    assert notices.cell(by_member + 7, 1).value == "合计"

    learning = book["学习"]
    assert [cell.value for cell in learning[1]] == ["日期", "课程", "成员数", "已学", "答题", "答对", "学习率"]
    assert learning["A2"].value == datetime(2027, 3, 1) and learning["A2"].number_format == "yyyy-mm-dd"
    total = [cell.value for cell in learning[5]]
    assert total[:6] == ["合计", None, 15, 6, 6, 4] and total[6] == pytest.approx(6 / 15)
    per_member = find_row(learning, "学习（按成员）")
    assert [cell.value for cell in learning[per_member + 1]][:6] == ["姓名", "应学", "已学", "学习率", "积分", None]
    assert [cell.value for cell in learning[per_member + 7]][:3] == ["合计", 15, 6]
    assert learning.cell(per_member + 7, 5).value == 33
    top = find_row(learning, "学习达人榜")
    assert [cell.value for cell in learning[top + 2]][:4] == [1, "李建国", 18, None]
    assert [cell.value for cell in learning[top + 4]][:4] == [3, "（未署名）", 4, None]

    roster = book["花名册"]
    assert [cell.value for cell in roster[1]] == ["序号", "姓名", "亮身份", "身份类别", "备注"]
    assert [cell.value for cell in roster[2]] == [1, "李建国", "已认证", "正式党员", None]
    undeclared = [cell.value for cell in roster[6]]
    assert undeclared[:3] == [5, "小刘", "未亮身份"] and undeclared[4] == "未亮身份，请提醒登记"
    assert roster["B6"].fill.fgColor.rgb.endswith("FFF2CC")
    assert not roster["B5"].fill.fgColor.rgb.endswith("FFF2CC")


def test_none_rates_are_a_dash_and_the_empty_month_still_has_every_sheet() -> None:
    book = load(workbook(empty_report(), ZH))
    assert book.sheetnames == ["汇总", "会议", "出勤", "通知", "学习", "花名册"]
    items = {row[0]: row[1] for row in rows_of(book["汇总"]) if row[0] and row[1] is not None}
    assert items["月份"] == "2027年3月1–20日"  # generated on 20 March: the figures stop there
    assert items["到会率"] == "—"
    assert items["所属单位"] == "—"
    assert items["规定会议达标"] == "0/0"
    meetings = rows_of(book["会议"])
    assert meetings[1][:8] == ["合计", None, None, 0, 0, 0, 0, 0] and meetings[1][8] == "—"


def test_english_workbook() -> None:
    book = load(workbook(march_report(), EN))
    assert book.sheetnames == ["Summary", "Meetings", "Attendance", "Notices", "Learning", "Roster"]
    assert [cell.value for cell in book["Meetings"][1]][:3] == ["Time", "Meeting type", "Title"]
    assert book["Meetings"]["B2"].value == "Committee meeting"
    assert book["Roster"]["D2"].value == "Full member"
    items = {row[0]: row[1] for row in rows_of(book["Summary"]) if row[0] and row[1] is not None}
    assert items["Month"] == "3/2027"


def test_unit_workbook_has_a_row_per_branch_and_totals() -> None:
    book = load(workbook(unit_report(), ZH))
    assert book.sheetnames == ["汇总", "会议", "出勤", "通知", "学习", "花名册"]
    summary = book["汇总"]
    assert summary["A1"].value == "「园区综合党委」2027年3月 各支部工作台账"
    items = {row[0]: row[1] for row in rows_of(summary) if row[0] and row[1] is not None}
    assert items["群数"] == 2
    assert items["到会率"] == pytest.approx(12 / 14)
    assert items["学习参与率"] == pytest.approx(3 / 5)  # the empty branch pushed no lesson: not counted

    header = find_row(summary, "各支部") + 1
    assert [cell.value for cell in summary[header]][:9] == [
        "支部（群）",
        "所属单位",
        "会议次数",
        "规定会议达标",
        "规定会议项数",
        "应到",
        "到会",
        "请假",
        "到会率",
    ]
    first = [cell.value for cell in summary[header + 1]]
    assert first[:8] == ["第一党支部", "园区综合党委", 3, 3, 4, 14, 12, 1]
    assert first[8] == pytest.approx(12 / 14)
    assert first[9:12] == [2, 10, 6] and first[12] == pytest.approx(0.6)
    assert first[13:16] == [3, 5, 3] and first[16] == pytest.approx(0.6) and first[17] == 1
    second = [cell.value for cell in summary[header + 2]]
    assert second[:3] == ["第二党支部", "—", 0] and second[8] == "—"
    total = [cell.value for cell in summary[header + 3]]
    assert total[:8] == ["合计", None, 3, 3, 4, 14, 12, 1]
    assert total[13:16] == [3, 5, 3] and total[17] == 1

    meetings = book["会议"]
    assert meetings["A1"].value == "支部（群）" and meetings.freeze_panes == "B2"
    assert meetings["A2"].value == "第一党支部" and meetings["B2"].value == datetime(2027, 3, 5, 19, 30)
    assert meetings["A5"].value == "合计" and meetings["E5"].value == 14
    roster = rows_of(book["花名册"])
    assert roster[0] == ["支部（群）", "序号", "姓名", "亮身份", "身份类别", "备注"]
    assert len(roster) == 6


def test_sheet_names_are_always_valid() -> None:
    used: set[str] = set()
    assert sheet_name("a/b:c*d?e[f]g\\h", used) == "abcdefgh"
    assert sheet_name("x" * 40, used) == "x" * 31
    # Excel compares sheet names ignoring case: the second one gets a number, still within 31 characters.
    assert sheet_name("X" * 40, used) == "X" * 27 + " (2)"
    assert sheet_name("'quoted'", used) == "quoted"
    assert sheet_name("???", used) == "Sheet"


# ------------------------------------------------------------------------------------------ CSV and injection


def parsed(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # Excel needs the mark to read UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_csv_files_match_the_sheets() -> None:
    files = csv_files(march_report(), ZH)
    assert list(files) == [
        "01-汇总.csv",
        "02-会议召开情况.csv",
        "03-会议.csv",
        "04-出勤.csv",
        "05-通知.csv",
        "06-通知确认（按成员）.csv",
        "07-党课.csv",
        "08-学习（按成员）.csv",
        "09-学习达人榜.csv",
        "10-花名册.csv",
    ]
    meetings = parsed(files["03-会议.csv"])
    assert meetings[0] == ["时间", "会议类型", "会议名称", "应到", "到会", "迟到", "请假", "缺席", "到会率"]
    assert meetings[1] == ["2027-03-05 19:30", "支部委员会", "三月支委会", "5", "5", "1", "0", "0", "100.0%"]
    assert meetings[-1] == ["合计", "", "", "14", "12", "1", "1", "1", "85.7%"]
    # The same rows as the sheet, cell by cell.
    sheet = rows_of(load(workbook(march_report(), ZH))["会议"])
    assert len(sheet) == len(meetings)
    assert [row[1:8] for row in meetings[1:]] == [["" if v is None else str(v) for v in row[1:8]] for row in sheet[1:]]
    summary = dict(parsed(files["01-汇总.csv"])[1:])
    assert summary["到会率"] == "85.7%"
    assert summary["生成时间"] == "2027-04-01 09:30"

    archive = zipfile.ZipFile(io.BytesIO(csv_zip(march_report(), ZH)))
    assert archive.namelist() == list(files)
    assert archive.read("10-花名册.csv") == files["10-花名册.csv"]
    assert archive.getinfo("03-会议.csv").date_time == (2027, 4, 1, 9, 30, 0)


def test_english_csv_names() -> None:
    assert list(csv_files(unit_report(), EN))[:2] == ["01-Summary.csv", "02-Branches.csv"]


def test_formula_injection_is_neutralised_in_csv_and_excel() -> None:
    assert safe_text("=1+1") == "'=1+1"
    assert safe_text("+86 138") == "'+86 138"
    assert safe_text("-5") == "'-5"
    assert safe_text("@SUM(A1)") == "'@SUM(A1)"
    assert safe_text("\tx") == "'\tx"
    assert safe_text("\r=x") == "'\r=x"
    assert safe_text("党费\x00\x07") == "党费"  # control characters Excel's XML cannot hold
    assert safe_text("一=二") == "一=二"

    report = march_report("=cmd|' /C calc'!A0", injected=True)
    book = load(workbook(report, ZH))
    assert book["汇总"]["A1"].value.startswith("「")
    items = {row[0]: row[1] for row in rows_of(book["汇总"]) if row[0] and row[1] is not None}
    assert items["支部（群）"] == "'=cmd|' /C calc'!A0"
    assert book["会议"]["C4"].value == "'+1 党小组学习"
    assert book["通知"]["B2"].value == '\'=HYPERLINK("http://x")'
    assert book["通知"]["B2"].data_type == "s"  # text, not a formula
    assert book["花名册"]["B6"].value == "'@小刘"

    files = csv_files(report, ZH)
    notices = parsed(files["05-通知.csv"])
    assert notices[1][1] == '\'=HYPERLINK("http://x")'
    assert parsed(files["10-花名册.csv"])[5][1] == "'@小刘"
    for data in files.values():
        for row in parsed(data):
            assert not any(cell.startswith(("=", "+", "@")) for cell in row), row


def test_every_catalog_key_the_renderers_build_exists() -> None:
    """Keys put together at run time (meeting types, sections, periods, tables) are not seen by the
    test that scans the code for literal keys."""
    for t in (ZH, EN):
        for kind in KINDS:
            assert t.has(f"meetings.kind_{kind}"), kind
        for section in ("verified", "pending", "rejected", "undeclared"):
            assert t.has(f"reports.section_{section}"), section
        for member_type in ("full", "probationary", "activist", "masses"):
            assert t.has(f"identity.type.{member_type}"), member_type
        for period in ("month", "quarter", "year"):
            assert t.has(f"reports.required_period_{period}"), period
        for report in (march_report(), unit_report()):
            for sheet in ledger.sheets(report, t):
                assert t.has(f"reports.sheet_{sheet.key}")
                for table in sheet.tables:
                    assert t.has(f"reports.table_{table.key}")


def test_no_missing_key_is_logged(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="bot.i18n"):
        for t in (ZH, EN):
            for report in (march_report(), empty_report(), unit_report()):
                workbook(report, t)
                csv_files(report, t)
                report_chart(report, t)
    assert not caplog.records, [record.getMessage() for record in caplog.records]


def test_charts_drawn_at_once_in_threads_do_not_mix() -> None:
    """Handlers draw in worker threads: each call has its own Figure, so concurrent calls give exactly
    what one call alone gives."""
    reports = [march_report("第一党支部"), unit_report(), empty_report(), march_report("第二党支部")]
    alone = [report_chart(report, ZH) for report in reports]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda report: report_chart(report, ZH), reports * 2))
    assert together == alone * 2


def test_render_times() -> None:
    """Loosely: how long a month's files take, the first time (imports, the font) and after (printed
    with -s, never asserted)."""
    report = march_report()
    for name, render in (("chart", report_chart), ("workbook", workbook), ("csv zip", csv_zip)):
        times = []
        for _ in range(2):
            start = time.perf_counter()
            render(report, ZH)
            times.append(f"{1000 * (time.perf_counter() - start):.0f} ms")
        print(f"{name}: {' then '.join(times)}")


def member_row(user_id, name, **figures) -> MemberRow:
    base = dict.fromkeys(
        (
            "meetings_expected",
            "meetings_present",
            "meetings_late",
            "meetings_leave",
            "notices_due",
            "notices_acked",
            "lessons_due",
            "lessons_studied",
            "points",
        ),
        0,
    )
    return MemberRow(user_id, name, "verified", "full", **(base | figures))


def one_meeting_one_leave(**extra) -> GroupReport:
    """One meeting, two expected: 甲 present, 乙 on approved leave. 到会率 everywhere else: 1/2."""
    return GroupReport(
        chat_pk=1,
        title="支部",
        unit_name=None,
        month=date(2026, 11, 1),
        timezone="Asia/Shanghai",
        generated_at=datetime(2026, 12, 2, tzinfo=UTC),
        meetings=[MeetingRow(1, "general", "党员大会", datetime(2026, 11, 10, 12, tzinfo=UTC), 2, 1, 0, 1, 0)],
        members=[
            member_row(1, "甲", meetings_expected=1, meetings_present=1),
            member_row(2, "乙", meetings_expected=1, meetings_leave=1),
        ],
        **extra,
    )


def sheet_rows(sheet) -> list[list]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_the_attendance_sheets_total_rate_is_the_rate_of_its_rows_and_of_the_summary() -> None:
    report = one_meeting_one_leave()
    assert report.attendance_rate == 0.5
    book = openpyxl.load_workbook(io.BytesIO(workbook(report, ZH)))
    summary = {row[0]: row[1] for row in sheet_rows(book["汇总"]) if row and row[0]}
    meetings_total = sheet_rows(book["会议"])[-1]
    attendance = sheet_rows(book["出勤"])
    assert summary["到会率"] == 0.5 and meetings_total[-1] == 0.5
    assert [row[-1] for row in attendance[1:3]] == [1.0, 0.0]  # each member: present / expected
    assert attendance[-1][0] == "合计" and attendance[-1][-1] == 0.5, attendance[-1]
    csv_total = csv_files(report, ZH)["04-出勤.csv"].decode("utf-8-sig").strip().splitlines()[-1]
    assert csv_total.endswith("50.0%"), csv_total


def test_a_lesson_title_with_a_noncharacter_still_makes_a_workbook_that_opens() -> None:
    # Lesson titles come from the committee's imported file: U+FFFE/U+FFFF are valid UTF-8 but not XML 1.0.
    report = one_meeting_one_leave(lessons=[LessonRow(1, date(2026, 11, 3), "第一课\uffff", 2, 1, 0, 0)])
    data = workbook(report, ZH)
    openpyxl.load_workbook(io.BytesIO(data))


def test_learning_participation_counts_only_members_who_had_a_lesson_to_study() -> None:
    # Lessons ran 1–5 November; three members joined on the 20th, when no lesson was pushed any more.
    early = [member_row(i, f"老{i}", lessons_due=5, lessons_studied=5 if i < 2 else 0) for i in range(2)]
    late = [member_row(10 + i, f"新{i}") for i in range(3)]  # lessons_due == 0
    report = GroupReport(
        chat_pk=1,
        title="支部",
        unit_name=None,
        month=date(2026, 11, 1),
        timezone="Asia/Shanghai",
        generated_at=datetime(2026, 12, 2, tzinfo=UTC),
        members=early + late,
        lessons=[LessonRow(i, date(2026, 11, 1 + i), "课", 2, 2, 0, 0) for i in range(5)],
    )
    # Every lesson row says 2 of 2 studied (100 %): participation is of those who had a lesson to study.
    assert report.learning_participation == 1.0
