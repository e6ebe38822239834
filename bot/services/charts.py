"""The monthly report as one picture for the chat: a phone-width PNG (1080 px) that reads without zooming.

A group's picture has four panels (required meetings, attendance per meeting, acknowledgements per notice,
learning per day); a unit's has one row per branch. matplotlib is imported only when a picture is drawn,
so the bot's start-up does not pay for it, and each call draws on its own ``Figure`` rather than pyplot's
global one, so two reports drawn at once in worker threads do not draw over each other. Drawing takes a
fraction of a second of CPU: callers in the event loop should run it in a thread.

Every text uses Noto Sans CJK SC from the ``mplfonts`` package (servers rarely have a Chinese font), with
matplotlib's own DejaVu Sans behind it for symbols; characters neither has (emoji in a group's title) are
left out rather than drawn as empty boxes.
"""

from __future__ import annotations

import io
import threading
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from bot.services.ledger import Translate, kind_label, local_time, percent_label, period_label, report_zone
from bot.services.report_model import GroupReport, UnitReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"
FALLBACK_FAMILY = "DejaVu Sans"  # ships with matplotlib
WIDTH_INCHES = 7.2
DPI = 150  # 7.2 in × 150 = 1080 px, the width of most phone screens
GROUP_MIN_HEIGHT = 9.0  # 1350 px: the 4:5 portrait a chat shows uncropped
UNIT_MIN_HEIGHT = 5.0
MAX_BARS = 10  # meetings or notices drawn in a panel; the ledger has them all
MAX_GROUPS = 30  # branches drawn in a unit's picture; taller than this, a phone shrinks the text away
LABEL_WIDTH = 36  # a meeting's title, in Latin-letter widths (a Chinese character counts two)

TEXT = "#212121"
MUTED = "#757575"
GRID = "#E0E0E0"
ATTENDANCE = "#C62828"
ACKS = "#EF8F00"
LEARNING = "#1565C0"
MEMBERS = "#CFD8DC"
MET = "#2E7D32"
MISSED = "#BDBDBD"
MISSED_TEXT = "#C62828"


@dataclass(frozen=True)
class _Fonts:
    families: tuple[str, ...]
    glyphs: frozenset[int]  # code points one of the families can draw

    def props(self, size: float) -> FontProperties:
        from matplotlib.font_manager import FontProperties

        return FontProperties(family=list(self.families), size=size)

    def clean(self, text: str, width: int | None = None) -> str:
        """User text made drawable: one line, only characters the fonts have, shortened to ``width``,
        and a "$" that cannot start matplotlib's math mode."""
        text = " ".join("".join(char for char in text if ord(char) in self.glyphs or char.isspace()).split())
        if width is not None:
            text = _shorten(text, width)
        return text.replace("$", r"\$")


_FONT_LOCK = threading.Lock()


def _fonts() -> _Fonts:
    with _FONT_LOCK:
        return _load_fonts()


@cache
def _load_fonts() -> _Fonts:
    from matplotlib import font_manager

    # Only the font file is wanted: find_spec locates the package without running it (its helpers
    # exist to rewrite matplotlib's global settings, which other code in the process may rely on).
    spec = find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the mplfonts package (the Chinese font for report charts) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / CJK_FONT_FILE
    font_manager.fontManager.addfont(str(path))
    family = font_manager.FontProperties(fname=str(path)).get_name()
    fallback = font_manager.findfont(font_manager.FontProperties(family=FALLBACK_FAMILY), fallback_to_default=False)
    glyphs = set(font_manager.get_font(str(path)).get_charmap()) | set(font_manager.get_font(fallback).get_charmap())
    return _Fonts((family, FALLBACK_FAMILY), frozenset(glyphs))


def _shorten(text: str, width: int) -> str:
    used = 0
    for index, char in enumerate(text):
        used += 2 if unicodedata.east_asian_width(char) in "WF" else 1
        if used > width:
            return text[:index].rstrip() + "…"
    return text


# ------------------------------------------------------------------------------------------ entry point


def report_chart(report: GroupReport | UnitReport, t: Translate) -> bytes:
    """The report as a PNG image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fonts = _fonts()
    figure = _group_figure(report, t, fonts) if isinstance(report, GroupReport) else _unit_figure(report, t, fonts)
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _new_figure(height: float, ratios: list[float]) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_INCHES, height), dpi=DPI, layout="constrained")
    figure.get_layout_engine().set(h_pad=0.06, hspace=0.04)
    axes = figure.subplots(len(ratios), 1, gridspec_kw={"height_ratios": ratios}, squeeze=False)[:, 0]
    return figure, list(axes)


def _bold() -> list:
    """A heavier stroke: the shipped Chinese font has one weight, and asking for bold only logs a warning."""
    from matplotlib.patheffects import withStroke

    return [withStroke(linewidth=0.7, foreground=TEXT)]


def _edge_text(ax: Axes, x: float, y: float, text: str, down: float = 0, **options) -> None:
    """Text at the figure's edge (x in figure fractions) in a row of its own (y in the axes' fractions,
    moved ``down`` points): the panels below indent their axes, and the heading should not follow them."""
    from matplotlib.transforms import blended_transform_factory, offset_copy

    transform = blended_transform_factory(ax.figure.transFigure, ax.transAxes)
    if down:
        transform = offset_copy(transform, fig=ax.figure, y=-down, units="points")
    drawn = ax.text(x, y, text, transform=transform, **options)
    drawn.set_in_layout(False)  # or the layout would widen the margin to make room for it


def _header_height(lines: int) -> float:
    return 0.75 + 0.22 * lines


def _header(ax: Axes, title: str, lines: list[str], fonts: _Fonts) -> None:
    ax.set_axis_off()
    _edge_text(ax, 0.025, 1.0, title, va="top", color=TEXT, fontproperties=fonts.props(17), path_effects=_bold())
    _edge_text(ax, 0.025, 1.0, "\n".join(lines), down=34, va="top", color=MUTED, fontproperties=fonts.props(11))


def _footer(ax: Axes, report: GroupReport | UnitReport, t: Translate, fonts: _Fonts, extra: str | None) -> None:
    ax.set_axis_off()
    zone = report_zone(report)
    stamp = local_time(report.generated_at, zone).strftime("%Y-%m-%d %H:%M")
    text = t("reports.generated", time=stamp, zone=zone.key)
    _edge_text(ax, 0.025, 0.5, text, va="center", color=MUTED, fontproperties=fonts.props(9))
    if extra:
        _edge_text(ax, 0.975, 0.5, extra, va="center", ha="right", color=MUTED, fontproperties=fonts.props(9))


def _panel_title(ax: Axes, title: str, fonts: _Fonts) -> None:
    ax.set_title(title, loc="left", color=TEXT, fontproperties=fonts.props(12), path_effects=_bold())


def _empty(ax: Axes, title: str, message: str, fonts: _Fonts) -> None:
    ax.set_axis_off()
    _panel_title(ax, title, fonts)
    options = {"ha": "center", "va": "center", "color": MUTED, "fontproperties": fonts.props(12)}
    ax.text(0.5, 0.45, message, transform=ax.transAxes, **options)


def _style(ax: Axes, title: str, fonts: _Fonts) -> None:
    _panel_title(ax, title, fonts)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color(MUTED)
    ax.spines["bottom"].set_color(MUTED)
    ax.tick_params(colors=MUTED, length=0)
    ax.set_axisbelow(True)


def _percent_axis(ax: Axes, t: Translate, fonts: _Fonts) -> None:
    ticks = [0, 25, 50, 75, 100]
    ax.set_xlim(0, 128)  # room right of a full bar for its label
    ax.set_xticks(ticks, labels=[t("reports.percent", value=tick) for tick in ticks], fontproperties=fonts.props(9))
    ax.grid(axis="x", color=GRID, linewidth=0.8)


def _bar_rows(count: int) -> int:
    return max(1, min(count, MAX_BARS))


def _panel_height(rows: int) -> float:
    return 0.6 + 0.46 * rows


# ------------------------------------------------------------------------------------------ a group


def _group_figure(report: GroupReport, t: Translate, fonts: _Fonts) -> Figure:
    headline = t(
        "reports.headline",
        attendance=percent_label(report.attendance_rate, t),
        acks=percent_label(report.ack_rate, t),
        learning=percent_label(report.learning_participation, t),
    )
    lines = [headline]
    if report.required:
        lines.append(t("reports.headline_required", met=report.required_met, total=len(report.required)))
    rows = [_bar_rows(len(report.required)), _bar_rows(len(report.meetings)), _bar_rows(len(report.notices))]
    ratios = [_header_height(len(lines)), *(_panel_height(count) for count in rows), 2.4, 0.3]
    figure, (header, required, meetings, notices, learning, footer) = _new_figure(
        max(GROUP_MIN_HEIGHT, sum(ratios)), ratios
    )
    title = t("reports.chart_title", name=fonts.clean(report.title, 40), period=period_label(report, t))
    _header(header, title, lines, fonts)
    _required_panel(required, report, t, fonts)
    hidden = _meetings_panel(meetings, report, t, fonts) + _notices_panel(notices, report, t, fonts)
    _learning_panel(learning, report, t, fonts)
    _footer(footer, report, t, fonts, t("reports.more_rows", count=hidden) if hidden else None)
    return figure


def _day(day: date, t: Translate) -> str:
    return t("reports.day_short", month=day.month, day=day.day)


def _labelled_bars(
    ax: Axes,
    fonts: _Fonts,
    labels: list[str],
    values: list[float],
    colours: list[str] | str,
    notes: list[tuple[str, str]],  # (text, colour) right of each bar
    scale: float,  # the value a bar as wide as the panel's bar area shows
) -> None:
    """Horizontal bars, each with its label above it: labels get the panel's whole width, which a
    phone needs far more than a column of tick labels squeezing every bar to the right."""
    positions = list(range(len(labels)))
    ax.barh(positions, values, height=0.42, color=colours)
    # Texts sit over the month's dashed line and the grid, on a white ground, so both stay readable.
    on_white = {"bbox": {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"}, "zorder": 3}
    for position, label, value, (note, colour) in zip(positions, labels, values, notes, strict=True):
        ax.text(0, position - 0.25, label, va="bottom", color=TEXT, fontproperties=fonts.props(10), **on_white)
        ax.text(
            value + scale * 0.015,
            position,
            note,
            va="center",
            color=colour,
            fontproperties=fonts.props(9),
            **on_white,
        )
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_ylim(len(labels) - 0.55, -0.8)  # the first row on top, with room for its label


def _required_panel(ax: Axes, report: GroupReport, t: Translate, fonts: _Fonts) -> None:
    title = t("reports.chart_required")
    if not report.required:
        _empty(ax, title, t("reports.chart_empty_required"), fonts)
        return
    _style(ax, title, fonts)
    rows = report.required
    labels = [
        t(
            "reports.chart_required_label",
            kind=kind_label(row.kind, t),
            period=t(f"reports.required_period_{row.period}"),
        )
        for row in rows
    ]
    notes = [
        (t("reports.chart_required_met", held=row.held), MET)
        if row.met
        else (t("reports.chart_required_missed"), MISSED_TEXT)
        for row in rows
    ]
    most = max(max(row.held for row in rows), 1)
    colours = [MET if row.met else MISSED for row in rows]
    _labelled_bars(ax, fonts, labels, [row.held for row in rows], colours, notes, most)
    ticks = _count_ticks(most)
    ax.set_xticks(ticks, labels=[str(tick) for tick in ticks], fontproperties=fonts.props(9))
    ax.set_xlim(0, most * 1.35)
    ax.grid(axis="x", color=GRID, linewidth=0.8)


def _count_ticks(most: int) -> list[int]:
    """Whole numbers from 0 past ``most``, about four of them. Set by hand, not by a locator: ticks a
    locator makes at drawing time would take matplotlib's default font instead of ours."""
    step = max(1, -(-most // 4))
    return list(range(0, most + step, step))


def _rate_panel(
    ax: Axes,
    t: Translate,
    fonts: _Fonts,
    title: str,
    labels: list[str],
    figures: list[tuple[float | None, int, int]],  # (rate, done, due) per bar
    overall: float | None,
    colour: str,
) -> None:
    """A bar per meeting or notice, and the month's rate as a dashed line across them."""
    _style(ax, title, fonts)
    values = [100 * (rate or 0) for rate, _, _ in figures]
    notes = [
        (t("reports.chart_bar_label", rate=percent_label(rate, t), done=done, due=due), TEXT)
        for rate, done, due in figures
    ]
    _labelled_bars(ax, fonts, labels, values, colour, notes, 100)
    if overall is not None:
        ax.axvline(100 * overall, color=TEXT, linestyle="--", linewidth=1.1)
    _percent_axis(ax, t, fonts)


def _meetings_panel(ax: Axes, report: GroupReport, t: Translate, fonts: _Fonts) -> int:
    """Draws the latest meetings; returns how many were left out."""
    rows = sorted(report.meetings, key=lambda row: row.starts_at)
    overall = percent_label(report.attendance_rate, t)
    title = f"{t('reports.chart_attendance')} · {t('reports.chart_attendance_overall', rate=overall)}"
    if not rows:
        _empty(ax, t("reports.chart_attendance"), t("reports.chart_empty_meetings"), fonts)
        return 0
    shown = rows[-MAX_BARS:]
    zone = report_zone(report)
    labels = [
        t(
            "reports.chart_meeting_label",
            day=_day(local_time(row.starts_at, zone).date(), t),
            kind=kind_label(row.kind, t),
            title=fonts.clean(row.title, LABEL_WIDTH),
        )
        for row in shown
    ]
    figures = [(row.rate, row.present, row.expected) for row in shown]
    _rate_panel(ax, t, fonts, title, labels, figures, report.attendance_rate, ATTENDANCE)
    return len(rows) - len(shown)


def _notices_panel(ax: Axes, report: GroupReport, t: Translate, fonts: _Fonts) -> int:
    rows = sorted(report.notices, key=lambda row: row.posted_at)
    overall = percent_label(report.ack_rate, t)
    title = f"{t('reports.chart_acks')} · {t('reports.chart_acks_overall', rate=overall)}"
    if not rows:
        _empty(ax, t("reports.chart_acks"), t("reports.chart_empty_notices"), fonts)
        return 0
    shown = rows[-MAX_BARS:]
    zone = report_zone(report)
    labels = [
        t(
            "reports.chart_notice_label",
            day=_day(local_time(row.posted_at, zone).date(), t),
            excerpt=fonts.clean(row.excerpt, LABEL_WIDTH + 12),
        )
        for row in shown
    ]
    figures = [(row.rate, row.acked, row.expected) for row in shown]
    _rate_panel(ax, t, fonts, title, labels, figures, report.ack_rate, ACKS)
    return len(rows) - len(shown)


def _learning_panel(ax: Axes, report: GroupReport, t: Translate, fonts: _Fonts) -> None:
    active = sum(1 for member in report.members if member.lessons_studied)
    title = t(
        "reports.chart_learning",
        rate=percent_label(report.learning_participation, t),
        active=active,
        members=len(report.members),
    )
    if not report.lessons:
        _empty(ax, title, t("reports.chart_empty_lessons"), fonts)
        return
    _style(ax, title, fonts)
    rows = sorted(report.lessons, key=lambda row: row.pushed_on)
    positions = list(range(len(rows)))
    ax.bar(
        positions, [row.members for row in rows], width=0.8, color=MEMBERS, label=t("reports.chart_learning_members")
    )
    ax.bar(
        positions, [row.studied for row in rows], width=0.5, color=LEARNING, label=t("reports.chart_learning_studied")
    )
    step = max(1, -(-len(rows) // 10))  # at most about ten day labels
    ax.set_xticks(
        positions[::step], labels=[_day(row.pushed_on, t) for row in rows[::step]], fontproperties=fonts.props(9)
    )
    ax.set_xlim(-0.6, len(rows) - 0.4)
    most = max(max(row.members for row in rows), 1)
    ticks = [tick for tick in _count_ticks(most) if tick <= most]
    ax.set_yticks(ticks, labels=[str(tick) for tick in ticks], fontproperties=fonts.props(9))
    ax.set_ylim(0, most * 1.25)  # room for the legend above the bars
    ax.grid(axis="y", color=GRID, linewidth=0.8)
    ax.legend(loc="upper right", ncols=2, frameon=False, prop=fonts.props(9))


# ------------------------------------------------------------------------------------------ a unit


def _unit_figure(report: UnitReport, t: Translate, fonts: _Fonts) -> Figure:
    groups = report.groups[:MAX_GROUPS]
    body = 1.2 + 0.62 * len(groups) if groups else 1.5
    ratios = [_header_height(1), body, 0.3]
    figure, (header, chart, footer) = _new_figure(max(UNIT_MIN_HEIGHT, sum(ratios)), ratios)
    headline = t(
        "reports.unit_headline",
        groups=len(report.groups),
        attendance=percent_label(report.attendance_rate, t),
        acks=percent_label(report.ack_rate, t),
        learning=percent_label(report.learning_participation, t),
    )
    title = t("reports.chart_title", name=fonts.clean(report.unit_name, 40), period=period_label(report, t))
    _header(header, title, [headline], fonts)
    hidden = len(report.groups) - len(groups)
    _footer(footer, report, t, fonts, t("reports.more_rows", count=hidden) if hidden else None)
    if not groups:
        _empty(chart, "", t("reports.chart_empty_groups"), fonts)
        return figure
    _style(chart, "", fonts)
    series = [
        ("reports.chart_series_attendance", ATTENDANCE, [group.attendance_rate for group in groups]),
        ("reports.chart_series_acks", ACKS, [group.ack_rate for group in groups]),
        ("reports.chart_series_learning", LEARNING, [group.learning_participation for group in groups]),
    ]
    height = 0.26
    for offset, (key, colour, rates) in zip((-height, 0.0, height), series, strict=True):
        positions = [index + offset for index in range(len(groups))]
        chart.barh(positions, [100 * (rate or 0) for rate in rates], height=height * 0.92, color=colour, label=t(key))
        for position, rate in zip(positions, rates, strict=True):
            chart.text(
                100 * (rate or 0) + 1.5,
                position,
                percent_label(rate, t),
                va="center",
                color=TEXT,
                fontproperties=fonts.props(8),
            )
    labels = [fonts.clean(group.title, 18) for group in groups]
    chart.set_yticks(range(len(groups)), labels=labels, fontproperties=fonts.props(10))
    chart.set_ylim(len(groups) - 0.45, -0.8)  # the first branch on top, room above it for the legend
    _percent_axis(chart, t, fonts)
    chart.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3, frameon=False, prop=fonts.props(10))
    return figure
