"""Locale catalogs (bot/locales/<lang>/<feature>.toml, one file per feature) and language choice.

Groups speak the group's language; private chats the user's Telegram language when it is one we
have, else the default. Placeholders use str.format names: {count}, {name}.
"""

from __future__ import annotations

import logging
import tomllib
from functools import cache
from pathlib import Path

LOCALES_DIR = Path(__file__).parent / "locales"
SUPPORTED_LANGUAGES = ("zh", "en")

log = logging.getLogger(__name__)


def _flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@cache
def catalog(language: str) -> dict[str, str]:
    messages: dict[str, str] = {}
    for path in sorted((LOCALES_DIR / language).glob("*.toml")):
        with path.open("rb") as file:
            part = _flatten(tomllib.load(file))
        clash = messages.keys() & part.keys()
        if clash:
            raise ValueError(f"{path.name} repeats locale keys {sorted(clash)}")
        messages.update(part)
    return messages


def normalize_language(code: str | None) -> str | None:
    if not code:
        return None
    base = code.lower().replace("_", "-").split("-")[0]
    return base if base in SUPPORTED_LANGUAGES else None


def language_for_user(language_code: str | None, default: str) -> str:
    """Chinese speakers get zh; anyone whose Telegram speaks another language gets English."""
    if not language_code:
        return default
    return normalize_language(language_code) or "en"


class Translator:
    __slots__ = ("language", "_messages")

    def __init__(self, language: str) -> None:
        self.language = language if language in SUPPORTED_LANGUAGES else SUPPORTED_LANGUAGES[0]
        self._messages = catalog(self.language)

    def __call__(self, key: str, /, **params: object) -> str:
        template = self._messages.get(key)
        if template is None:
            log.error("missing locale key %s for %s", key, self.language)
            return key
        return template.format(**params) if params else template

    def has(self, key: str) -> bool:
        return key in self._messages
