"""Every command the bot knows, who may use it and where; /help and setMyCommands are built from this."""

from __future__ import annotations

from dataclasses import dataclass

from bot.services.roles import Role

PRIVATE = "private"
GROUP = "group"


@dataclass(frozen=True)
class CommandSpec:
    name: str
    where: tuple[str, ...]
    min_role: Role = Role.MEMBER


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", (PRIVATE,)),
    CommandSpec("help", (PRIVATE, GROUP)),
    CommandSpec("sync", (GROUP,)),
    CommandSpec("settings", (GROUP,), Role.COMMITTEE),
    CommandSpec("units", (PRIVATE, GROUP), Role.COMMITTEE),
    CommandSpec("unit", (PRIVATE, GROUP), Role.COMMITTEE),
    CommandSpec("bind", (GROUP,), Role.COMMITTEE),
    CommandSpec("unbind", (GROUP,), Role.COMMITTEE),
    CommandSpec("grant", (GROUP,), Role.SECRETARY),
    CommandSpec("revoke", (GROUP,), Role.SECRETARY),
    CommandSpec("declare", (PRIVATE, GROUP)),
    CommandSpec("whois", (GROUP,)),
    CommandSpec("roster", (GROUP,), Role.COMMITTEE),
    CommandSpec("notice", (GROUP,), Role.COMMITTEE),
    CommandSpec("notices", (GROUP,), Role.COMMITTEE),
    CommandSpec("schedule", (GROUP,), Role.COMMITTEE),
    CommandSpec("schedules", (GROUP,), Role.COMMITTEE),
    CommandSpec("meeting", (GROUP,), Role.COMMITTEE),
    CommandSpec("meetings", (GROUP,)),
    CommandSpec("lessons", (GROUP,), Role.COMMITTEE),
    CommandSpec("lesson", (PRIVATE,)),
    CommandSpec("backup", (GROUP,), Role.COMMITTEE),
    CommandSpec("restore", (GROUP,), Role.COMMITTEE),
    CommandSpec("vanguard", (GROUP,), Role.COMMITTEE),
    CommandSpec("rank", (GROUP,)),
    CommandSpec("me", (PRIVATE, GROUP)),
    CommandSpec("report", (GROUP,), Role.COMMITTEE),
    CommandSpec("broadcast", (PRIVATE, GROUP), Role.COMMITTEE),
    CommandSpec("review", (PRIVATE,)),
    CommandSpec("mydata", (PRIVATE,)),
    CommandSpec("forgetme", (PRIVATE,)),
)


def commands_for(where: str, role: Role) -> list[CommandSpec]:
    return [spec for spec in COMMANDS if where in spec.where and role >= spec.min_role]
