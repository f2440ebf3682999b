"""A small Dockerfile reader for the tests: stages and their instructions, in order, and a
replay of a stage's steps outside Docker (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"
"""Dropped from replayed RUN lines: this machine reaches PyPI only (its pip configuration finds
the same pinned CPU torch)."""


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


def localize(text: str, paths: dict[str, Path]) -> str:
    """``text`` with every absolute image path of ``paths`` replaced by its stand-in folder."""
    for prefix in sorted(paths, key=len, reverse=True):
        text = re.sub(
            rf"(?<![^\s=:'\"]){re.escape(prefix)}(?![^/\s:'\"])", str(paths[prefix]), text
        )
    return text


def stage_env(stage: Stage, paths: dict[str, Path]) -> dict[str, str]:
    """This process's environment (less mcdrop's own settings) with the stage's ENV applied."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MCDROP_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    for key, value in stage.env().items():
        env[key] = localize(value, paths).replace("$PATH", env.get("PATH", ""))
    return env


def replay(
    stage: Stage,
    source: Path,
    paths: dict[str, Path],
    env: dict[str, str],
    after: Callable[[Instruction], None] | None = None,
) -> None:
    """Run the stage's WORKDIR, COPY (from ``source``, the build context) and RUN steps in
    order, image paths moved to ``paths``; ``after`` is called after each step. Creating the
    image's user and copying from another stage are left to the caller."""
    workdir = Path.cwd()
    for instruction in stage.instructions:
        arguments = instruction.arguments
        if instruction.keyword == "WORKDIR":
            workdir = paths[arguments]
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY" and not arguments.startswith("--from="):
            *sources, target = arguments.split()
            for name in sources:
                destination = workdir / target / (Path(name).name if target.endswith("/") else "")
                if (source / name).is_dir():
                    shutil.copytree(source / name, destination, dirs_exist_ok=True)
                else:
                    shutil.copy(source / name, destination)
        elif instruction.keyword == "RUN" and not arguments.startswith("useradd "):
            command = localize(arguments, paths).replace(CPU_INDEX, "")
            subprocess.run(["bash", "-c", command], cwd=workdir, env=env, check=True)
        if after is not None:
            after(instruction)
