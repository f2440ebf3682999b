from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import load_settings
from tests.support import BUNDLED_MODELS


def test_precedence_overrides_then_env_then_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("port: 9100\nmax_rows_per_request: 7\nlog_level: warning\n")
    monkeypatch.setenv("MCDROP_MAX_ROWS_PER_REQUEST", "11")
    settings = load_settings(config, log_level="debug")
    assert settings.port == 9100  # file
    assert settings.max_rows_per_request == 11  # env beats file
    assert settings.log_level == "debug"  # override beats both
    assert settings.max_sample_rows == 16384  # default


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("port: 9200\n")
    monkeypatch.setenv("MCDROP_CONFIG", str(config))
    assert load_settings().port == 9200


def test_repository_default_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert load_settings().port == 8080


def test_bad_values_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="port"):
        load_settings(port=0)
    config = tmp_path / "typo.yaml"
    config.write_text("prot: 1\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(config)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.yaml")


def test_fastapi_opentelemetry_bridge_follows_the_setting() -> None:
    from app.main import create_app

    off = create_app(load_settings(models_dir=BUNDLED_MODELS))
    on = create_app(load_settings(models_dir=BUNDLED_MODELS, opentelemetry=True))
    assert not off._native_telemetry.enabled()  # no per-request provider check
    assert on._telemetry["tracing"] and on._telemetry["metrics"] and on._telemetry["logs"]
