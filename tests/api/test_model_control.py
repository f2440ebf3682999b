"""The model repository is not a way in: model control off by default, names checked before
the disk, folders kept inside ``models_dir``, load errors only for callers with a key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import TINY_NET_SOURCE, tiny_state, write_model

MARKER = "mcdrop-test-marker"
EVIL_NET = (
    TINY_NET_SOURCE + f"\nimport pathlib\npathlib.Path(__file__).with_name('{MARKER}').touch()\n"
)


def _plant(folder: Path) -> Path:
    """A model folder whose net.py leaves a marker file beside itself when it is imported."""
    write_model(folder.parent, folder.name, task="regression", state=tiny_state())
    (folder / "net.py").write_text(EVIL_NET)
    return folder / MARKER


def test_load_and_unload_are_off_by_default(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    folder = model_factory("tiny")
    client = client_for(folder.parent)
    for action in ("load", "unload"):
        refused = client.post(f"/v2/repository/models/tiny/{action}")
        assert refused.status_code == 403
        assert "model_control: explicit" in refused.json()["error"]
    assert client.get("/v2/models/tiny/ready").status_code == 200


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("%2e%2e", 422),  # the route sees "..": the parent of models/
        ("%2E%2E", 422),
        (".hidden", 422),
        ("x" * 5000, 422),
        ("-dash", 422),
        ("a b", 422),
        ("..", 404),  # the client or router resolves these paths: no route matches
        ("a%2Fb", 404),
    ],
)
def test_a_bad_name_is_refused_before_the_disk(
    tmp_path: Path, client_for: Callable[..., TestClient], name: str, status: int
) -> None:
    """``..`` would be the parent of models/: its net.py must never run."""
    models = tmp_path / "root" / "models"
    marker = _plant(tmp_path / "root")
    write_model(models, "good")
    client = client_for(models, model_control="explicit")
    response = client.post(f"/v2/repository/models/{name}/load")
    assert response.status_code == status, response.text
    assert not marker.exists()
    if status == 422:
        assert response.json()["error"].startswith("name: not a model name")


def test_a_symlink_leading_outside_is_not_served(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    models = tmp_path / "models"
    write_model(models, "inside")
    marker = _plant(tmp_path / "elsewhere" / "outside")
    (models / "outside").symlink_to(tmp_path / "elsewhere" / "outside")
    write_model(models / "store", "v3", card={"name": "latest"})
    (models / "latest").symlink_to(models / "store" / "v3")  # inside models_dir: followed
    client = client_for(models, model_control="explicit")
    assert not marker.exists()
    names = {m["name"]: m["ready"] for m in client.get("/v1/models").json()["models"]}
    assert names == {"inside": True, "latest": True, "outside": False}
    again = client.post("/v2/repository/models/outside/load")
    assert again.status_code == 503 and "outside models_dir" in again.json()["error"]
    assert not marker.exists()


def test_explicit_control_without_an_admin_key_is_logged(
    model_factory: Callable[..., Path],
    client_for: Callable[..., TestClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = model_factory("tiny")
    with caplog.at_level(logging.WARNING, logger="app.main"):
        client_for(folder.parent, model_control="explicit", api_keys=["user"])
    assert "no admin API key" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app.main"):
        client_for(folder.parent, model_control="explicit", api_keys=["boss:admin"])
    assert "no admin API key" not in caplog.text


def test_model_readiness_hides_the_reason_without_a_key(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    model_factory("broken", kwargs={"p": 0.0})
    client = client_for(model_factory("good").parent, api_keys=["k"])
    anonymous = client.get("/v2/models/broken/ready")
    assert anonymous.status_code == 503 and anonymous.json() == {"name": "broken", "ready": False}
    for header in ({"x-api-key": " k "}, {"authorization": "Bearer k"}):
        keyed = client.get("/v2/models/broken/ready", headers=header)
        assert keyed.status_code == 503 and "p = 0" in keyed.json()["reason"]
    assert client.get("/v2/models/good/ready").status_code == 200


def test_the_schema_follows_auth_health(client_for: Callable[..., TestClient]) -> None:
    open_docs = client_for(api_keys=["k"])
    assert open_docs.get("/openapi.json").status_code == 200
    assert open_docs.get("/docs").status_code == 200
    closed = client_for(api_keys=["k"], auth_health=True)
    assert closed.get("/openapi.json").status_code == 401
    assert closed.get("/docs").status_code == 404
    schema = closed.get("/openapi.json", headers={"x-api-key": "k"})
    assert schema.status_code == 200 and "/v2/health/live" in schema.json()["paths"]


def test_fuzzed_names_never_reach_outside_models_dir(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    """Any text as a name, percent-encoded: a 4xx (or a load of a real folder), never a 5xx,
    never the parent's code."""
    models = tmp_path / "root" / "models"
    marker = _plant(tmp_path / "root")
    write_model(models, "good")
    client = client_for(models, model_control="explicit")
    alphabet = st.sampled_from(["", ".", "..", "/", "%", "2e", "\\", "a", "-", "_", "~", "\x00"])
    texts = st.one_of(st.text(max_size=40), st.lists(alphabet, max_size=12).map("".join))

    @given(name=texts)
    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    def probe(name: str) -> None:
        encoded = quote(name, safe="") or "%20"
        for target in (encoded, encoded.replace(".", "%2e"), quote(name, safe="/.") or "%20"):
            response = client.post(f"/v2/repository/models/{target}/load")
            assert response.status_code < 500, (target, response.text)
            assert response.status_code != 200 or response.json()["name"] == "good"
        assert not marker.exists()

    probe()
