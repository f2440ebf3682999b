"""A small Dockerfile reader for the tests: stages and their instructions, in order."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    """One instruction: keyword (upper case) and its arguments as written (continuations
    joined)."""

    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON-array form of CMD / HEALTHCHECK CMD / ENTRYPOINT arguments."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + len("CMD") :]
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value

    def env_pairs(self) -> dict[str, str]:
        """``ENV KEY=value ...`` as a mapping."""
        return dict(token.split("=", 1) for token in shlex.split(self.arguments))


@dataclass
class Stage:
    """``FROM image [AS name]`` and what follows it."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for instruction in self.all("ENV"):
            merged.update(instruction.env_pairs())
        return merged


def read_stages(path: Path) -> list[Stage]:
    """Every build stage of the Dockerfile at ``path``."""
    stages: list[Stage] = []
    for keyword, arguments in _instructions(path.read_text()):
        if keyword == "FROM":
            parts = arguments.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


def _instructions(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        found.append((keyword.upper(), arguments.strip()))
    return found
