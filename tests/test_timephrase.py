"""The time phrase parser: what each phrase means, when rules run, and how failures are explained."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cn2an
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.i18n import Translator, catalog
from bot.services.timephrase import PhraseError, Rule, is_workday, parse, workdays_covered
from handlers.timephrases import describe, explain_failure

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)  # a Monday morning
ZH, EN = Translator("zh"), Translator("en")


def read(text: str, now: datetime = NOW, zone: ZoneInfo = SHANGHAI) -> Rule:
    return parse(text, now=now, zone=zone)


def once(day: date, hour: int, minute: int = 0) -> Rule:
    return Rule(kind="once", date=day, hour=hour, minute=minute)


def local(runs: list[datetime], zone: ZoneInfo = SHANGHAI) -> list[str]:
    return [run.astimezone(zone).strftime("%Y-%m-%d %H:%M") for run in runs]


# ------------------------------------------------------------------------------------------ meanings

ONE_OFFS = {
    "明天下午3点": once(date(2026, 11, 24), 15),
    "12月5日 19:30": once(date(2026, 12, 5), 19, 30),
    "12月5号 19:30": once(date(2026, 12, 5), 19, 30),
    "2026-12-05 19:30": once(date(2026, 12, 5), 19, 30),
    "2026/12/5 19:30": once(date(2026, 12, 5), 19, 30),
    "2026-12-05T19:30": once(date(2026, 12, 5), 19, 30),
    "2026年12月5日 晚上7点半": once(date(2026, 12, 5), 19, 30),
    "下周一 9:00": once(date(2026, 11, 30), 9),
    "tomorrow 15:00": once(date(2026, 11, 24), 15),
    "tomorrow 3pm": once(date(2026, 11, 24), 15),
    "next monday 9:30am": once(date(2026, 11, 30), 9, 30),
    "next friday 5pm": once(date(2026, 12, 4), 17),  # next week's Friday, not this week's
    "friday 5pm": once(date(2026, 11, 27), 17),
    "周五 14:00": once(date(2026, 11, 27), 14),
    "星期五 14:00": once(date(2026, 11, 27), 14),
    "礼拜五 14:00": once(date(2026, 11, 27), 14),
    "周一 9:00": once(date(2026, 11, 30), 9),  # today is Monday, but 9:00 has passed
    "周一 11:00": once(date(2026, 11, 23), 11),  # ... and 11:00 has not
    "monday 11:00": once(date(2026, 11, 23), 11),
    "这周一 9:00": once(date(2026, 11, 23), 9),  # this week's, even though past: callers decide
    "本周日 10点": once(date(2026, 11, 29), 10),
    "周天 10点": once(date(2026, 11, 29), 10),
    "后天上午十点": once(date(2026, 11, 25), 10),
    "大后天 9:00": once(date(2026, 11, 26), 9),
    "今晚8点": once(date(2026, 11, 23), 20),
    "明早8点": once(date(2026, 11, 24), 8),
    "tonight at 8": once(date(2026, 11, 23), 20),
    "the day after tomorrow at 9": once(date(2026, 11, 25), 9),
    "15:00": once(date(2026, 11, 23), 15),  # a time alone: today while it is ahead
    "9:00": once(date(2026, 11, 24), 9),  # ... else tomorrow
    "下午3点": once(date(2026, 11, 23), 15),
    "1月1日 8:00": once(date(2027, 1, 1), 8),  # no year: the next one that is ahead
    "11月23日 9:00": once(date(2027, 11, 23), 9),
    "11月23日 11:00": once(date(2026, 11, 23), 11),
    "2月29日 9点": once(date(2028, 2, 29), 9),
    "5号 9点": once(date(2026, 12, 5), 9),
    "31号 9点": once(date(2026, 12, 31), 9),
    "dec 5 19:30": once(date(2026, 12, 5), 19, 30),
    "5th december 2027 8am": once(date(2027, 12, 5), 8),
}

RECURRING = {
    "每天 20:00": Rule(kind="daily", hour=20),
    "每日20点": Rule(kind="daily", hour=20),
    "每晚8点": Rule(kind="daily", hour=20),
    "每周三晚上7点半": Rule(kind="weekly", weekdays=(2,), hour=19, minute=30),
    "每周一、三、五 8:00": Rule(kind="weekly", weekdays=(0, 2, 4), hour=8),
    "每周一三五 8点": Rule(kind="weekly", weekdays=(0, 2, 4), hour=8),
    "每周一、周三 19:30": Rule(kind="weekly", weekdays=(0, 2), hour=19, minute=30),
    "每周一至周五 8:00": Rule(kind="weekly", weekdays=(0, 1, 2, 3, 4), hour=8),
    "每周末 10点": Rule(kind="weekly", weekdays=(5, 6), hour=10),
    "每周三十点": Rule(kind="weekly", weekdays=(2,), hour=10),  # 每周三 十点
    "每周一二十点": Rule(kind="weekly", weekdays=(0,), hour=20),  # 每周一 二十点
    "每星期天上午十点": Rule(kind="weekly", weekdays=(6,), hour=10),
    "每月5日 09:00": Rule(kind="monthly_day", day=5, hour=9),
    "每月5号上午9点": Rule(kind="monthly_day", day=5, hour=9),
    "每个月的15号 8点": Rule(kind="monthly_day", day=15, hour=8),
    "每月最后一天 17:00": Rule(kind="monthly_day", day=-1, hour=17),
    "每月最后一个周五 14:00": Rule(kind="monthly_nth", nth=-1, weekdays=(4,), hour=14),
    "每个月的最后一个星期五下午两点": Rule(kind="monthly_nth", nth=-1, weekdays=(4,), hour=14),
    "每月第一个周一 9:00": Rule(kind="monthly_nth", nth=1, weekdays=(0,), hour=9),
    "工作日 08:00": Rule(kind="workdays", hour=8),
    "每个工作日早上8点": Rule(kind="workdays", hour=8),
    "every day 20:00": Rule(kind="daily", hour=20),
    "daily 8am": Rule(kind="daily", hour=8),
    "every day at 8": Rule(kind="daily", hour=8),
    "every Monday 20:00": Rule(kind="weekly", weekdays=(0,), hour=20),
    "every mon, wed 7:30pm": Rule(kind="weekly", weekdays=(0, 2), hour=19, minute=30),
    "mondays and fridays 9am": Rule(kind="weekly", weekdays=(0, 4), hour=9),
    "every weekday 08:00": Rule(kind="weekly", weekdays=(0, 1, 2, 3, 4), hour=8),  # Monday–Friday
    "every workday 08:00": Rule(kind="workdays", hour=8),  # China's official working days
    "every working day 08:00": Rule(kind="workdays", hour=8),
    "workdays 08:00": Rule(kind="workdays", hour=8),
    "every month on day 5 09:00": Rule(kind="monthly_day", day=5, hour=9),
    "monthly on the 5th at 9am": Rule(kind="monthly_day", day=5, hour=9),
    "every month on the last day 09:00": Rule(kind="monthly_day", day=-1, hour=9),
    "every month on the last Friday 14:00": Rule(kind="monthly_nth", nth=-1, weekdays=(4,), hour=14),
    "every month on the 2nd Monday 14:00": Rule(kind="monthly_nth", nth=2, weekdays=(0,), hour=14),
    "cron 0 9 * * 1-5": Rule(kind="cron", cron="0 9 * * 1-5"),
    "0 9 * * 1-5": Rule(kind="cron", cron="0 9 * * 1-5"),
    "cron  0 9 * *   MON-FRI": Rule(kind="cron", cron="0 9 * * mon-fri"),
}


@pytest.mark.parametrize(("phrase", "expected"), [*ONE_OFFS.items(), *RECURRING.items()])
def test_phrase_means(phrase: str, expected: Rule) -> None:
    rule = read(phrase)
    assert rule == expected
    assert rule.recurring == (expected.kind != "once")
    assert read(rule.canonical(), now=datetime(2000, 1, 1, tzinfo=UTC), zone=ZoneInfo("UTC")) == rule


@pytest.mark.parametrize(
    ("phrase", "hour", "minute"),
    [
        ("19:30", 19, 30),
        ("19：30", 19, 30),  # full width
        ("１９：３０", 19, 30),
        ("7点", 7, 0),
        ("7点半", 7, 30),
        ("7点15分", 7, 15),
        ("7点一刻", 7, 15),
        ("7点三刻", 7, 45),
        ("7时", 7, 0),
        ("7点整", 7, 0),
        ("下午3点", 15, 0),
        ("下午15:00", 15, 0),
        ("中午12点", 12, 0),
        ("中午1点", 13, 0),
        ("凌晨1点", 1, 0),
        ("凌晨12点", 0, 0),
        ("早上8点", 8, 0),
        ("傍晚6点", 18, 0),
        ("晚上7点半", 19, 30),
        ("3pm", 15, 0),
        ("3:30 pm", 15, 30),
        ("3 p.m.", 15, 0),
        ("noon", 12, 0),
        ("12am", 0, 0),
        ("12pm", 12, 0),
        ("8 o'clock", 8, 0),
        ("8 in the evening", 20, 0),
        ("十九点三十", 19, 30),
        ("两点一刻", 2, 15),
        ("七点零五", 7, 5),
        ("七点五分", 7, 5),
        ("零点", 0, 0),
        ("23:59", 23, 59),
    ],
)
def test_time_of_day(phrase: str, hour: int, minute: int) -> None:
    rule = read(phrase)
    assert (rule.kind, rule.hour, rule.minute) == ("once", hour, minute)


@pytest.mark.parametrize(
    ("arabic", "chinese"),
    [
        ("每周三晚上7点半", "每周三晚上七点半"),
        ("每月5号上午9点", "每月五号上午九点"),
        ("每月15日 20:00", "每月十五日 二十点"),
        ("每月第1个周一 9点", "每月第一个周一 九点"),
        ("每周1、3、5 8:00", "每周一、三、五 八点"),
        ("12月5日 19:30", "十二月五日 十九点三十"),
        ("2026年12月5日 19:30", "二〇二六年十二月五日 十九点三十分"),
        ("后天上午10点", "后天上午十点"),
        ("每天 2:15", "每天两点一刻"),
    ],
)
def test_chinese_numerals_agree_with_arabic(arabic: str, chinese: str) -> None:
    assert read(arabic) == read(chinese)


@pytest.mark.parametrize(
    ("phrase", "key", "value"),
    [
        ("", "timephrase.empty", ""),
        ("   ", "timephrase.empty", ""),
        ("明天", "timephrase.no_time", "明天"),
        ("每周三", "timephrase.no_time", "每周三"),
        ("2月30日 9点", "timephrase.bad_date", "2月30日"),
        ("2026-02-30 9:00", "timephrase.bad_date", "2026-02-30"),
        ("每月32号 9点", "timephrase.bad_date", "每月32号"),
        ("每月第五个周一 9点", "timephrase.bad_nth", "每月第五个周一"),
        ("25点", "timephrase.bad_time", "25点"),
        ("明天 19:60", "timephrase.bad_time", "19:60"),
        ("13pm", "timephrase.bad_time", "13pm"),
        ("上午15点", "timephrase.bad_time", "上午15点"),
        ("七点五", "timephrase.bad_time", "七点五"),  # 7:05 or 7:50? needs 分
        ("晚上12点", "timephrase.ambiguous_midnight", "晚上12点"),
        ("明天 midnight", "timephrase.ambiguous_midnight", "midnight"),
        ("cron 0 0 31 2 *", "timephrase.bad_cron", "cron 0 0 31 2 *"),
        ("cron 0 9 * *", "timephrase.bad_cron", "cron 0 9 * *"),
        ("0 25 * * *", "timephrase.bad_cron", "0 25 * * *"),
        ("每两周 9点", "timephrase.not_understood", "每两周 9点"),
        ("每天 明天 8点", "timephrase.not_understood", "每天 明天 8点"),
        ("8点 9点", "timephrase.not_understood", "8点 9点"),
    ],
)
def test_refusals_name_the_trouble(phrase: str, key: str, value: str) -> None:
    with pytest.raises(PhraseError) as caught:
        read(phrase)
    assert caught.value.key == key
    assert caught.value.params["value"] == value


def test_refusal_tells_what_was_understood_and_what_not() -> None:
    with pytest.raises(PhraseError) as caught:
        read("每周八 25点")
    assert caught.value.understood == (("repeat", "每周"),)
    assert caught.value.leftover == "八 25点"

    with pytest.raises(PhraseError) as caught:
        read("下下下周")
    assert caught.value.understood == (("date", "下周"),)
    assert caught.value.leftover == "下下"

    with pytest.raises(PhraseError) as caught:
        read("明天下午3点 blah")
    assert caught.value.understood == (("date", "明天"), ("time", "下午3点"))
    assert caught.value.leftover == "blah"


def test_explain_failure_shows_understood_leftover_and_examples() -> None:
    with pytest.raises(PhraseError) as caught:
        read("每周八 25点")
    zh = explain_failure(caught.value, ZH)
    assert "重复「每周」" in zh and "「八 25点」" in zh and "每月最后一个周五" in zh
    en = explain_failure(caught.value, EN)
    assert "repeat “每周”" in en and "“八 25点”" in en and "every Wednesday 19:30" in en

    with pytest.raises(PhraseError) as caught:
        read("下下下周 <b>")
    text = explain_failure(caught.value, ZH)
    assert "日期「下周」" in text and "&lt;b&gt;" in text and "<b>" not in text


# ------------------------------------------------------------------------------------------ runs


def test_daily_and_strictly_after() -> None:
    rule = read("每天 20:00")
    first = rule.next_after(NOW, SHANGHAI)
    assert first == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert first.tzinfo == UTC
    assert rule.next_after(first, SHANGHAI) == first + timedelta(days=1)  # strictly after
    assert rule.next_after(first - timedelta(microseconds=1), SHANGHAI) == first


def test_weekly_monthly_runs() -> None:
    assert local(read("每周一、三 19:30").upcoming(NOW, SHANGHAI, 4)) == [
        "2026-11-23 19:30",
        "2026-11-25 19:30",
        "2026-11-30 19:30",
        "2026-12-02 19:30",
    ]
    assert local(read("每月最后一个周五 14:00").upcoming(NOW, SHANGHAI, 4)) == [
        "2026-11-27 14:00",
        "2026-12-25 14:00",
        "2027-01-29 14:00",
        "2027-02-26 14:00",
    ]
    assert local(read("每月31日 9:00").upcoming(NOW, SHANGHAI, 4)) == [  # months without a 31st are skipped
        "2026-12-31 09:00",
        "2027-01-31 09:00",
        "2027-03-31 09:00",
        "2027-05-31 09:00",
    ]
    assert local(read("每月最后一天 17:00").upcoming(NOW, SHANGHAI, 3)) == [
        "2026-11-30 17:00",
        "2026-12-31 17:00",
        "2027-01-31 17:00",
    ]


def test_once_runs_once() -> None:
    rule = read("明天下午3点")
    run = rule.next_after(NOW, SHANGHAI)
    assert run == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    assert rule.next_after(run, SHANGHAI) is None
    assert rule.upcoming(NOW, SHANGHAI, 5) == [run]


def test_workdays_follow_the_holiday_calendar() -> None:
    assert workdays_covered(2026) and not workdays_covered(2027)
    assert not is_workday(date(2026, 10, 1))  # National Day
    assert is_workday(date(2026, 10, 10))  # a Saturday worked in exchange
    assert is_workday(date(2027, 1, 1))  # 2027 is not published yet: Monday–Friday
    assert not is_workday(date(2027, 1, 2))

    rule = read("工作日 08:00")
    runs = rule.upcoming(datetime(2026, 9, 19, tzinfo=SHANGHAI), SHANGHAI, 12)
    assert local(runs) == [
        "2026-09-20 08:00",  # Sunday, worked before the holidays
        "2026-09-21 08:00",
        "2026-09-22 08:00",
        "2026-09-23 08:00",
        "2026-09-24 08:00",  # 09-25 is the Mid-Autumn Festival
        "2026-09-28 08:00",
        "2026-09-29 08:00",
        "2026-09-30 08:00",  # 10-01 to 10-07: National Day holidays
        "2026-10-08 08:00",
        "2026-10-09 08:00",
        "2026-10-10 08:00",  # Saturday, worked
        "2026-10-12 08:00",
    ]
    assert not rule.uses_workday_fallback(runs, SHANGHAI)


def test_workdays_fall_back_to_monday_to_friday() -> None:
    rule = read("每个工作日早上8点")
    runs = rule.upcoming(datetime(2026, 12, 30, 9, tzinfo=SHANGHAI), SHANGHAI, 4)
    assert local(runs) == ["2026-12-31 08:00", "2027-01-01 08:00", "2027-01-04 08:00", "2027-01-05 08:00"]
    assert rule.uses_workday_fallback(runs, SHANGHAI)
    assert not rule.uses_workday_fallback(runs[:1], SHANGHAI)
    assert not read("每天 08:00").uses_workday_fallback(runs, SHANGHAI)


def test_cron_uses_crontab_weekday_numbers() -> None:
    weekdays = read("0 9 * * 1-5").upcoming(NOW, SHANGHAI, 6)
    assert local(weekdays) == [
        "2026-11-24 09:00",
        "2026-11-25 09:00",
        "2026-11-26 09:00",
        "2026-11-27 09:00",
        "2026-11-30 09:00",
        "2026-12-01 09:00",
    ]
    for sunday in ("0 9 * * 0", "0 9 * * 7", "0 9 * * sun"):
        assert local(read(sunday).upcoming(NOW, SHANGHAI, 1)) == ["2026-11-29 09:00"]
    # Day of month and day of week both given: either one matches, as in crontab.
    assert local(read("0 9 1 * 1").upcoming(NOW, SHANGHAI, 3)) == [
        "2026-11-30 09:00",
        "2026-12-01 09:00",
        "2026-12-07 09:00",
    ]
    assert len(read("*/15 9-17 * * 1-5").upcoming(NOW, SHANGHAI, 5)) == 5


def _one_per_day(runs: list[datetime], zone: ZoneInfo) -> None:
    assert all(earlier < later for earlier, later in zip(runs, runs[1:], strict=False))
    days = [run.astimezone(zone).date() for run in runs]
    assert len(set(days)) == len(days)


@pytest.mark.parametrize("start", [datetime(2026, 3, 5, 12), datetime(2026, 10, 29, 12)])
def test_daylight_saving_keeps_wall_time(start: datetime) -> None:
    start = start.replace(tzinfo=NEW_YORK)
    runs = read("每天 09:00", zone=NEW_YORK).upcoming(start, NEW_YORK, 6)
    assert [run.astimezone(NEW_YORK).strftime("%H:%M") for run in runs] == ["09:00"] * 6
    _one_per_day(runs, NEW_YORK)
    for phrase in ("每天 02:30", "每天 01:30", "cron 30 1 * * *", "工作日 01:30"):
        runs = read(phrase, zone=NEW_YORK).upcoming(start, NEW_YORK, 6)
        assert len(runs) == 6, phrase
        _one_per_day(runs, NEW_YORK)


def test_daylight_saving_edges() -> None:
    spring = read("每天 02:30", zone=NEW_YORK).upcoming(datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), NEW_YORK, 2)
    # 02:30 does not exist on 2026-03-08; it runs at the offset from before the change.
    assert local(spring, NEW_YORK) == ["2026-03-08 03:30", "2026-03-09 02:30"]
    fall = read("每天 01:30", zone=NEW_YORK).upcoming(datetime(2026, 10, 31, 12, tzinfo=NEW_YORK), NEW_YORK, 2)
    # 01:30 happens twice on 2026-11-01; it runs at the first.
    assert [run.isoformat() for run in fall] == ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]


def test_rules_are_normalised_and_checked() -> None:
    assert Rule(kind="weekly", weekdays=(2, 0, 2)) == Rule(kind="weekly", weekdays=(0, 2))
    assert Rule(kind="cron", cron=" 0  9 * * MON ") == Rule(kind="cron", cron="0 9 * * mon")
    for bad in (
        {"kind": "hourly"},
        {"kind": "daily", "hour": 24},
        {"kind": "once"},
        {"kind": "weekly"},
        {"kind": "monthly_day", "day": 0},
        {"kind": "monthly_nth", "nth": 5, "weekdays": (0,)},
        {"kind": "cron", "cron": "0 9 *"},
    ):
        with pytest.raises(ValueError):
            Rule(**bad)


def test_describe() -> None:
    expectations = {
        "每周三 19:30": ("每周三 19:30", "every Wednesday 19:30"),
        "每月5日 09:00": ("每月5日 09:00", "every month on day 5 09:00"),
        "每月最后一个周五 14:00": ("每月最后一个周五 14:00", "every month on the last Friday 14:00"),
        "每月第二个周一 14:00": ("每月第二个周一 14:00", "every month on the second Monday 14:00"),
        "每月最后一天 17:00": ("每月最后一天 17:00", "every month on the last day 17:00"),
        "工作日 08:00": ("工作日 08:00", "workdays (China) 08:00"),
        "每天 20:00": ("每天 20:00", "every day 20:00"),
        "每周一、三 20:00": ("每周一、周三 20:00", "every Monday, Wednesday 20:00"),
        "2026-12-05 19:30": ("2026-12-05 19:30", "2026-12-05 19:30"),
        "cron 0 9 * * 1-5": ("cron 0 9 * * 1-5", "cron 0 9 * * 1-5"),
    }
    for phrase, (zh, en) in expectations.items():
        rule = read(phrase)
        assert (describe(rule, ZH), describe(rule, EN)) == (zh, en)
    assert describe(Rule(kind="weekly", weekdays=(2,)), ZH, time=False) == "每周三"


def test_every_timephrase_key_exists_in_both_catalogs() -> None:
    files = ("bot/services/timephrase.py", "handlers/timephrases.py", "tests/test_timephrase.py")
    keys = {
        key for name in files for key in re.findall(r"[\"'](timephrase\.[a-z_.0-9]+)[\"']", (ROOT / name).read_text())
    }
    assert len(keys) > 30
    for language in ("zh", "en"):
        assert not sorted(keys - catalog(language).keys()), language
    # handlers render weekdays with timephrase.weekday_short_<0..6>
    assert all(f"timephrase.weekday_short_{day}" in catalog("en") for day in range(7))


# ------------------------------------------------------------------------------------------ properties

GRAMMAR_CHARACTERS = list("每周星期一二三四五六日天月号第个最后下本今明晚早午点时半刻分:-/,、 0123456789") + [
    "every ",
    "mon",
    "day",
    "pm",
    "cron ",
    "*",
    "next ",
    "工作日",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(GRAMMAR_CHARACTERS), max_size=12).map("".join)))
def test_parse_refuses_only_with_phrase_error(text: str) -> None:
    try:
        rule = read(text)
    except PhraseError as error:
        assert error.key.startswith("timephrase.")
        assert all(role in ("repeat", "date", "time") for role, _ in error.understood)
        return
    assert rule.kind in ("once", "daily", "workdays", "weekly", "monthly_day", "monthly_nth", "cron")
    assert read(rule.canonical(), now=datetime(2000, 1, 1, tzinfo=UTC), zone=ZoneInfo("UTC")) == rule


# --- a grammar of valid phrases


def zh_number(number: int) -> str:
    return cn2an.an2cn(number)


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


ZH_WEEKDAY_CHARS = ("一", "二", "三", "四", "五", "六", "日")
EN_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@st.composite
def zh_clock(draw) -> tuple[str, int, int]:
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    if draw(st.booleans()):
        return draw(st.sampled_from([f"{hour}:{minute:02d}", f"{hour:02d}:{minute:02d}"])), hour, minute
    said = hour
    period = ""
    if hour >= 13 and draw(st.booleans()):
        period, said = draw(st.sampled_from(["下午", "晚上"])), hour - 12
    elif hour == 12 and draw(st.booleans()):
        period = "中午"
    elif 1 <= hour <= 11 and draw(st.booleans()):
        period = draw(st.sampled_from(["上午", "早上", "凌晨"]))
    hour_text = draw(st.sampled_from([str(said), zh_number(said)] + (["两"] if said == 2 else [])))
    minute_texts = [f"{minute}分", f"{zh_number(minute) if minute >= 10 else '零' + zh_number(minute)}分"]
    minute_texts += {0: ["", "整"], 15: ["一刻"], 30: ["半"], 45: ["三刻"]}.get(minute, [])
    if minute >= 10:
        minute_texts += [str(minute), zh_number(minute)]
    return (
        f"{period}{hour_text}{draw(st.sampled_from(['点', '时']))}{draw(st.sampled_from(minute_texts))}",
        hour,
        minute,
    )


@st.composite
def en_clock(draw) -> tuple[str, int, int]:
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    twelve, suffix = hour % 12 or 12, draw(st.sampled_from(["am", "AM", " am", "a.m."]))
    if hour >= 12:
        suffix = suffix.replace("a", "p").replace("A", "P")
    forms = [f"{hour}:{minute:02d}", f"at {hour:02d}:{minute:02d}", f"{twelve}:{minute:02d}{suffix}"]
    if minute == 0:
        forms += [f"{twelve}{suffix}", f"at {twelve}{suffix}"] + (["noon"] if hour == 12 else [])
    return draw(st.sampled_from(forms)), hour, minute


def zh_weekday(draw, day: int, *, arabic: bool) -> str:
    if arabic:
        return str(day + 1)
    return "天" if day == 6 and draw(st.booleans()) else ZH_WEEKDAY_CHARS[day]


@st.composite
def zh_repeat(draw) -> tuple[str, dict]:
    choice = draw(st.sampled_from(["daily", "workdays", "weekly", "monthly_day", "last_day", "monthly_nth"]))
    if choice == "daily":
        return draw(st.sampled_from(["每天", "每日", "天天"])), {"kind": "daily"}
    if choice == "workdays":
        return draw(st.sampled_from(["工作日", "每个工作日"])), {"kind": "workdays"}
    if choice == "weekly":
        days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True))
        arabic = draw(st.booleans())
        separator = draw(st.sampled_from(["、", ",", "和"] + ([] if arabic else [""])))
        items = [zh_weekday(draw, day, arabic=arabic) for day in days]
        items = [items[0]] + [draw(st.sampled_from(["", "周"])) + item for item in items[1:]]
        word = draw(st.sampled_from(["每周", "每星期", "每礼拜", "每个星期"]))
        return word + separator.join(items), {"kind": "weekly", "weekdays": tuple(sorted(days))}
    if choice == "monthly_day":
        day = draw(st.integers(1, 31))
        text = draw(st.sampled_from([str(day), zh_number(day)])) + draw(st.sampled_from(["日", "号"]))
        return draw(st.sampled_from(["每月", "每个月", "每月的"])) + text, {"kind": "monthly_day", "day": day}
    if choice == "last_day":
        return "每月最后一天", {"kind": "monthly_day", "day": -1}
    nth = draw(st.sampled_from([1, 2, 3, 4, -1]))
    weekday = draw(st.integers(0, 6))
    position = "最后一个" if nth == -1 else "第" + draw(st.sampled_from([str(nth), zh_number(nth)])) + "个"
    week = draw(st.sampled_from(["周", "星期"]))
    value = {"kind": "monthly_nth", "nth": nth, "weekdays": (weekday,)}
    return f"每月{position}{week}{zh_weekday(draw, weekday, arabic=False)}", value


@st.composite
def en_repeat(draw) -> tuple[str, dict]:
    choice = draw(st.sampled_from(["daily", "workdays", "weekly", "weekdays", "monthly_day", "last_day", "nth"]))
    if choice == "daily":
        return draw(st.sampled_from(["every day", "daily", "Every Day"])), {"kind": "daily"}
    if choice == "workdays":
        return draw(st.sampled_from(["workdays", "every workday", "every working day"])), {"kind": "workdays"}
    if choice == "weekdays":
        return draw(st.sampled_from(["weekdays", "every weekday"])), {"kind": "weekly", "weekdays": (0, 1, 2, 3, 4)}
    if choice == "weekly":
        days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True))
        spellings = [(name, name[:3].upper(), name.title()) for name in (EN_WEEKDAYS[day] for day in days)]
        names = [draw(st.sampled_from(spelling)) for spelling in spellings]
        separator = draw(st.sampled_from([", ", " and ", ",", " "]))
        return "every " + separator.join(names), {"kind": "weekly", "weekdays": tuple(sorted(days))}
    if choice == "monthly_day":
        day = draw(st.integers(1, 31))
        text = draw(
            st.sampled_from(
                [f"every month on day {day}", f"every month on the {ordinal(day)}", f"monthly on the {ordinal(day)}"]
            )
        )
        return text, {"kind": "monthly_day", "day": day}
    if choice == "last_day":
        return "every month on the last day", {"kind": "monthly_day", "day": -1}
    nth = draw(st.sampled_from([1, 2, 3, 4, -1]))
    weekday = draw(st.integers(0, 6))
    words = {1: ["first", "1st"], 2: ["second", "2nd"], 3: ["third", "3rd"], 4: ["fourth", "4th"], -1: ["last"]}
    text = f"every month on the {draw(st.sampled_from(words[nth]))} {EN_WEEKDAYS[weekday]}"
    return text, {"kind": "monthly_nth", "nth": nth, "weekdays": (weekday,)}


@st.composite
def zh_date(draw) -> str:
    day = draw(st.dates(date(2026, 1, 1), date(2030, 12, 31)))
    forms = [
        f"{day:%Y-%m-%d}",
        f"{day.year}/{day.month}/{day.day}",
        f"{day.year}年{day.month}月{day.day}日",
        f"{''.join(zh_number(int(digit)) for digit in str(day.year))}年{zh_number(day.month)}月{zh_number(day.day)}号",
        f"{day.month}月{day.day}日",
        f"{day.day}号",
    ]
    forms += ["今天", "明天", "后天", "大后天"]
    weekday = draw(st.integers(0, 6))
    prefix = draw(st.sampled_from(["", "下", "本", "这"])) + draw(st.sampled_from(["周", "星期", "礼拜"]))
    forms.append(prefix + zh_weekday(draw, weekday, arabic=draw(st.booleans())))
    return draw(st.sampled_from(forms))


@st.composite
def en_date(draw) -> str:
    day = draw(st.dates(date(2026, 1, 1), date(2030, 12, 31)))
    weekday = draw(st.sampled_from(EN_WEEKDAYS))
    forms = [
        "today",
        "tomorrow",
        "the day after tomorrow",
        weekday,
        weekday[:3],
        f"next {weekday}",
        f"{day:%Y-%m-%d}",
        f"{day:%b} {day.day}",
        f"{day:%B} {ordinal(day.day)}, {day.year}",
        f"{day.day} {day:%b}",
    ]
    return draw(st.sampled_from(forms))


def join(*parts: str, spaced: bool) -> str:
    """Parts side by side; Chinese may run them together, except number against number."""
    numeric = set("0123456789零〇一二两三四五六七八九十")
    text = parts[0]
    for part in parts[1:]:
        glue = " " if spaced or (text[-1] in numeric and part[0] in numeric) else ""
        text += glue + part
    return text


@st.composite
def valid_phrase(draw) -> tuple[str, dict]:
    chinese = draw(st.booleans())
    clock, hour, minute = draw(zh_clock() if chinese else en_clock())
    kind = draw(st.sampled_from(["repeat", "date", "time", "cron"]))
    expected: dict = {"hour": hour, "minute": minute}
    if kind == "cron":
        expression = draw(st.sampled_from(["0 9 * * 1-5", "30 8 1,15 * *", "*/30 9-17 * * mon-fri", "0 0 * * 0"]))
        return draw(st.sampled_from(["cron ", ""])) + expression, {"kind": "cron", "cron": expression}
    if kind == "time":
        return clock, {"kind": "once", **expected}
    if kind == "repeat":
        text, value = draw(zh_repeat() if chinese else en_repeat())
        expected |= value
    else:
        text = draw(zh_date() if chinese else en_date())
        expected["kind"] = "once"
    parts = [text, clock] if draw(st.booleans()) or not chinese else [clock, text]
    return join(*parts, spaced=not chinese or draw(st.booleans())), expected


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_phrase(), st.sampled_from([SHANGHAI, NEW_YORK, ZoneInfo("UTC")]))
def test_generated_phrases_round_trip(generated: tuple[str, dict], zone: ZoneInfo) -> None:
    phrase, expected = generated
    rule = read(phrase, zone=zone)
    assert {name: getattr(rule, name) for name in expected} == expected, phrase
    again = read(rule.canonical(), now=datetime(2001, 2, 3, tzinfo=UTC), zone=ZoneInfo("Asia/Tokyo"))
    assert again == rule, phrase
    start = NOW - timedelta(days=400)
    assert again.upcoming(start, zone, 5) == rule.upcoming(start, zone, 5)
    for translator in (ZH, EN):
        for with_time in (True, False):
            text = describe(rule, translator, time=with_time)
            assert text and "timephrase." not in text
