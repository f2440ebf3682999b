"""The Docker image's layer sizes without a Docker engine: every step of the Dockerfile replayed
into scratch folders (as tests/deploy/test_docker.py does), each layer measured as the bytes its
step adds (files' apparent sizes, as an uncompressed layer holds them).

    python -m bench.image_layers [--dockerfile Dockerfile] [--keep]

The base image's own layers (python:3.11-slim) are not measured here; a step that only deletes
files adds no bytes (in an image it would add whiteouts and leave the files below), which is
why the runtime stage copies the build stage's venv instead of inheriting its layers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from bench.common import REPO, markdown_table
from tests.deploy.dockerfile import Instruction, Stage, read_stages, replay, stage_env

MB = 1e6


def apparent_size(path: Path) -> int:
    """Bytes of every file under ``path`` (links counted as themselves)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(
        (Path(root) / name).lstat().st_size for root, _, names in os.walk(path) for name in names
    )


Layer = tuple[str, str, float]
"""(stage, step, MB the step adds)"""


def measure(stages: list[Stage], scratch: Path) -> list[Layer]:
    """Every stage's layers, the runtime stage's copies included."""
    paths = {"/opt/venv": scratch / "venv"}
    for stage in stages:
        for workdir in stage.all("WORKDIR"):
            paths[workdir.arguments] = scratch / workdir.arguments.strip("/").replace("/", "_")
    rows: list[Layer] = []
    for stage in stages:
        name = stage.name or "runtime (final)"
        total = [sum(apparent_size(p) for p in paths.values())]

        def after(instruction: Instruction, name: str = name, total: list[int] = total) -> None:
            now = sum(apparent_size(p) for p in paths.values())
            if instruction.keyword in ("RUN", "COPY"):
                step = f"{instruction.keyword} {instruction.arguments}"
                rows.append((name, step[:90], max(now - total[0], 0) / MB))
            total[0] = now

        if stage.name is None:  # the runtime stage starts from a clean base: its own copies
            for copy in stage.all("COPY"):
                if copy.arguments.startswith("--from="):
                    source = copy.arguments.split()[1]
                    rows.append((name, f"COPY {copy.arguments}", apparent_size(paths[source]) / MB))
            kept = {k: v for k, v in paths.items() if k != "/opt/venv"}
            for folder in kept.values():
                shutil.rmtree(folder, ignore_errors=True)
            total[0] = sum(apparent_size(p) for p in paths.values())
        replay(stage, REPO, paths, _pip_env(stage, paths), after)
    return rows


def _pip_env(stage: Stage, paths: dict[str, Path]) -> dict[str, str]:
    env = stage_env(stage, paths)
    env.pop("PIP_NO_CACHE_DIR", None)  # this machine's pip cache: the bytes installed are alike
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dockerfile", type=Path, default=REPO / "Dockerfile")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mcdrop-layers-"))
    try:
        rows = measure(read_stages(args.dockerfile), scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    final = [r for r in rows if r[0] == "runtime (final)"]
    rows.append(("runtime (final)", "all its measured layers", sum(r[2] for r in final)))
    print(markdown_table(["stage", "step", "MB"], rows))


if __name__ == "__main__":
    main()
