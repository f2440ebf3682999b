"""What the install paths install: the extras of pyproject.toml resolved through their
self-references, ``make``'s planned commands, and the distributions a venv holds."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from tests.support import REPO_ROOT

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_requirements(extra: str) -> tuple[set[str], set[str]]:
    """(the extras ``extra`` names, itself included; the distribution names they require
    directly), following ``mcdrop[...]`` self-references."""
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    seen, names, pending = set(), set(), [extra]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for requirement in extras[current]:
            match = _NAME.match(requirement)
            assert match is not None, requirement
            name = normalized(match.group())
            if name == "mcdrop":
                inner = re.search(r"\[([^\]]+)\]", requirement)
                assert inner is not None, requirement
                pending += [e.strip() for e in inner.group(1).split(",")]
            else:
                names.add(name)
    return seen, names


def dev_only() -> set[str]:
    """What the dev extra requires that serving does not."""
    return extra_requirements("dev")[1] - extra_requirements("serve")[1]


def make_plan(target: str, venv: Path) -> list[str]:
    """The commands ``make TARGET`` would run (``make -n``) with its venv at ``venv``."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(REPO_ROOT), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def installed_extras(commands: list[str]) -> list[str]:
    """The extras of the ``pip install -e ".[...]"`` commands among ``commands``, in order."""
    return [
        extra
        for command in commands
        for group in re.findall(r'-e "\.\[([\w,]+)\]"', command)
        for extra in group.split(",")
    ]


def distributions(venv: Path) -> set[str]:
    """The (normalized) names of the distributions installed in ``venv``; needs no pip."""
    listing = "import importlib.metadata as m; print(*(d.name for d in m.distributions()))"
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", listing], capture_output=True, text=True, check=True
    )
    return {normalized(name) for name in result.stdout.split()}
