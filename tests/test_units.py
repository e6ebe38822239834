"""Small pure pieces: locale catalogs, settings parsing, text splitting, the rate limiter's pacing."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings
from bot.delivery import RateLimiter, split_text
from bot.i18n import Translator, catalog, language_for_user

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_zh_and_en_catalogs_have_the_same_keys_and_placeholders() -> None:
    zh, en = catalog("zh"), catalog("en")
    assert set(zh) == set(en)
    for key in zh:
        assert set(PLACEHOLDER.findall(zh[key])) == set(PLACEHOLDER.findall(en[key])), key
        assert zh[key].strip() and en[key].strip(), key


def test_every_locale_key_used_in_code_exists() -> None:
    used: set[str] = set()
    for path in [*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py")]:
        used |= set(
            re.findall(
                r"""(?:t|refuse_message|refuse_callback|DomainError)\([^"']*["']([a-z_]+\.[a-z_.]+)["']""",
                path.read_text(),
            )
        )
    missing = sorted(key for key in used if key not in catalog("zh"))
    assert not missing, missing


def test_language_choice() -> None:
    assert language_for_user("zh-hans", "zh") == "zh"
    assert language_for_user("en", "zh") == "en"
    assert language_for_user("ru", "zh") == "en"  # English is the second language
    assert language_for_user(None, "zh") == "zh"
    assert Translator("en")("sync.done", count=3) == "✅ Synced: 3 committee members in this group."


def test_settings_parse_ids_and_refuse_bad_values(monkeypatch) -> None:
    monkeypatch.setenv("SUPERUSER_IDS", "1, 22 333")
    monkeypatch.setenv("BOT_TOKEN", "123456:ABCdef_-xyz")
    settings = Settings(_env_file=None)
    assert settings.superuser_ids == frozenset({1, 22, 333})
    assert settings.token() == "123456:ABCdef_-xyz"
    monkeypatch.setenv("TIMEZONE", "Moon/Base")
    with pytest.raises(ConfigError, match="TIMEZONE"):
        load_settings()
    monkeypatch.setenv("TIMEZONE", "Asia/Shanghai")
    monkeypatch.setenv("BOT_TOKEN", "not-a-token")
    with pytest.raises(ConfigError, match="malformed"):
        load_settings().token()


def test_long_text_is_split_at_line_breaks_within_the_limit() -> None:
    text = "\n".join(f"第{i}行 " + "字" * 50 for i in range(300))
    parts = split_text(text)
    assert all(0 < len(part) <= 4096 for part in parts)
    assert "\n".join(parts) == text
    assert split_text("x" * 9000) == ["x" * 4096, "x" * 4096, "x" * 808]


class FakeTime:
    """A monotonic clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_rate_limiter_keeps_group_private_and_global_limits() -> None:
    fake = FakeTime()
    limiter = RateLimiter(
        global_per_second=30, group_per_minute=20, private_per_second=1, clock=fake.clock, sleep=fake.sleep
    )

    stamps: list[float] = []
    for _ in range(25):
        await limiter.acquire(-100)
        stamps.append(fake.now)
    # 20 in the first minute, the 21st only when the first leaves the 60 s window.
    assert stamps[19] - stamps[0] < 1.0
    assert stamps[20] - stamps[0] >= 60.0

    fake.now += 120
    private: list[float] = []
    for _ in range(3):
        await limiter.acquire(42)
        private.append(fake.now)
    assert private[1] - private[0] >= 1.0 and private[2] - private[1] >= 1.0

    fake.now += 120
    start = fake.now
    for chat in range(-1000, -1090, -1):  # 90 different groups
        await limiter.acquire(chat)
    assert fake.now - start >= 89 / 30 - 1e-9


def test_services_and_storage_never_import_aiogram() -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "lint-imports", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
