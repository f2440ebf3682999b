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


@pytest.mark.parametrize("value", ['["k1", "k2:admin"]', "k1, k2:admin", ' [ "k1" , "k2:admin" ] '])
def test_api_keys_as_a_json_list_or_a_comma_list(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCDROP_API_KEYS", value)
    assert load_settings(models_dir=BUNDLED_MODELS).api_keys == ["k1", "k2:admin"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('["k1", 2]', "api_keys: a JSON list of strings"),
        ('["k1"', "api_keys: not a JSON list"),
        ("k1,secret:root", "api_keys: entry 2 is not KEY or KEY:admin"),
    ],
)
def test_bad_api_keys_are_one_clear_line_from_serve(
    value: str, problem: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    monkeypatch.setenv("MCDROP_API_KEYS", value)
    assert main(["serve", "--models-dir", str(BUNDLED_MODELS)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err
    assert "secret" not in err and "Traceback" not in err


def test_required_keys_refuse_to_start_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    monkeypatch.setenv("MCDROP_REQUIRE_AUTH", "true")
    assert main(["serve", "--models-dir", str(BUNDLED_MODELS)]) == 2
    assert "require_auth is on but no key is set" in capsys.readouterr().err
    empty = tmp_path / "keys"
    empty.write_text("# no key yet\n")
    monkeypatch.setenv("MCDROP_API_KEY_FILE", str(empty))
    assert main(["serve", "--models-dir", str(BUNDLED_MODELS)]) == 2
    assert "holds no key" in capsys.readouterr().err
