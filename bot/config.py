"""Settings from the environment and `.env`."""

from __future__ import annotations

import re
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TOKEN_PATTERN = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{5,}$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line meant for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = None
    bot_api_url: str = "https://api.telegram.org"
    database_url: str = "sqlite+aiosqlite:///./data/branch_assistant.db"
    timezone: str = "Asia/Shanghai"
    default_language: str = "zh"
    superuser_ids: Annotated[frozenset[int], NoDecode] = Field(default_factory=frozenset)
    log_level: str = "INFO"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080
    webhook_path: str = "/telegram/webhook"
    # Outbound limits; Telegram's published figures, with a margin on the global one.
    global_messages_per_second: float = 28.0
    group_messages_per_minute: int = 20
    private_messages_per_second: float = 1.0
    # Updates handled at once by polling; bounds memory under bursts.
    max_concurrent_updates: int = 64
    # Commands, answers to the bot and button presses per user: this many at once, then this many a
    # minute. Well above what a person taps (a form, a 代签 round), well below a script.
    throttle_burst: int = Field(default=20, ge=1)
    throttle_per_minute: float = Field(default=30.0, gt=0)

    @field_validator("superuser_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part for part in re.split(r"[,\s]+", value.strip()) if part]
            try:
                return frozenset(int(part) for part in parts)
            except ValueError as error:
                raise ValueError("SUPERUSER_IDS must be numbers separated by commas") from error
        if isinstance(value, int):
            return frozenset({value})
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown timezone {value!r}") from error
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        value = value.lower().split("-")[0]
        if value not in ("zh", "en"):
            raise ValueError("DEFAULT_LANGUAGE must be zh or en")
        return value

    @field_validator("bot_api_url", "webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")

    def token(self) -> str:
        """The bot token, checked for shape; raises ConfigError with a one-line reason."""
        if self.bot_token is None or not self.bot_token.get_secret_value().strip():
            raise ConfigError("BOT_TOKEN is not set (put it in the environment or in .env)")
        token = self.bot_token.get_secret_value().strip()
        if not TOKEN_PATTERN.match(token):
            raise ConfigError("BOT_TOKEN is malformed (expected digits, a colon and the secret: 123456:ABC…)")
        return token


def load_settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]).upper() or "settings"
        raise ConfigError(f"{field}: {first['msg']}") from None
