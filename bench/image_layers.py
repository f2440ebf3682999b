"""The Docker image's layer sizes without a Docker engine: every step of the Dockerfile replayed
into scratch folders (as tests/deploy/test_docker.py does), each layer measured as the bytes its
step adds (files' apparent sizes, as an uncompressed layer holds them).

    python -m bench.image_layers [--dockerfile Dockerfile] [--keep]

The base image's own layers (python:3.11-slim) and the user's home (``useradd``, not replayed)
are not measured; a step that deletes files adds only whiteouts (the files stay in the layers
below), which is why the runtime stage copies the build stage's venv instead of inheriting them.
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


Files = dict[Path, tuple[int, int]]
"""path -> (size, modification time in ns) of every file under the image's folders"""


def snapshot(paths: dict[str, Path]) -> Files:
    """Every file under the stand-in folders, links counted as themselves."""
    files: Files = {}
    for top in paths.values():
        for root, _, names in os.walk(top):
            for name in names:
                status = (Path(root) / name).lstat()
                files[Path(root) / name] = (status.st_size, status.st_mtime_ns)
    return files


def added_bytes(before: Files, after: Files) -> int:
    """What a layer holds: the files a step created or changed (deletions add only
    whiteouts)."""
    return sum(size for path, (size, mtime) in after.items() if before.get(path) != (size, mtime))


Layer = tuple[str, str, float]
"""(stage, step, MB the step adds)"""


def measure(stages: list[Stage], scratch: Path) -> list[Layer]:
    """Every stage's layers; the runtime stage's copy of another stage counts that stage's
    folder whole, as ``COPY --from`` does."""
    paths = {"/opt/venv": scratch / "venv"}
    for stage in stages:
        for workdir in stage.all("WORKDIR"):
            paths[workdir.arguments] = scratch / workdir.arguments.strip("/").replace("/", "_")
    rows: list[Layer] = []
    for stage in stages:
        name = stage.name or "runtime (final)"
        if stage.name is None:  # a clean base: only the build stage's venv is carried over
            for key, folder in paths.items():
                if key != "/opt/venv":
                    shutil.rmtree(folder, ignore_errors=True)
        state = [snapshot(paths)]

        def after(instruction: Instruction, name: str = name, state: list[Files] = state) -> None:
            step = f"{instruction.keyword} {instruction.arguments}"
            if instruction.keyword == "COPY" and instruction.arguments.startswith("--from="):
                source = paths[instruction.arguments.split()[1]]
                copied = snapshot({"source": source})
                rows.append((name, step, sum(size for size, _ in copied.values()) / MB))
            elif instruction.keyword in ("RUN", "COPY") and not step.startswith("RUN useradd "):
                now = snapshot(paths)
                rows.append((name, step[:90], added_bytes(state[0], now) / MB))
                state[0] = now

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
