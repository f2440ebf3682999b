"""The web page's routes: assets, the card hints, the `ui` switch, API keys, size and contrast."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.ui import ASSETS_DIR
from tests.support import REPO_ROOT

Factory = Callable[..., Path]
ClientFor = Callable[..., TestClient]
ASSET_BUDGET_BYTES = 300 * 1024
RULE = {"score": "mutual_information", "threshold": 0.2, "in_distribution_share": 0.95}


def _referenced_assets(client: TestClient) -> set[str]:
    """Every /ui/ file the two pages and their scripts load, followed transitively."""
    found: set[str] = set()
    queue = [client.get("/").text, client.get("/ui/monitor").text]
    while queue:
        text = queue.pop()
        names = set(re.findall(r'"/ui/([\w.-]+\.(?:js|css))"', text))
        names |= set(re.findall(r'from "\./([\w.-]+\.js)"', text))
        for name in names - found:
            found.add(name)
            queue.append(client.get(f"/ui/{name}").text)
    return found


def test_the_page_and_every_asset_it_loads_are_served(demo_client: TestClient) -> None:
    page = demo_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/app.js">' in page.text
    assets = _referenced_assets(demo_client)
    assert {"app.js", "api.js", "charts.js", "inputs.js", "monitor.js", "ui.css"} <= assets
    for name in assets:
        response = demo_client.get(f"/ui/{name}")
        expected = "text/css" if name.endswith(".css") else "text/javascript"
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(expected), name
        assert response.content == (ASSETS_DIR / name).read_bytes()


def test_head_of_the_page_answers_like_get_without_a_body(demo_client: TestClient) -> None:
    head, get = demo_client.head("/"), demo_client.get("/")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]


def test_nothing_is_loaded_from_another_origin() -> None:
    loads = (
        r"""(?:src|href)=["'](?!/[^/]|#|data:)|url\((?!["']?data:)|@import"""
        r"""|from "(?!\./)|fetch\((?!path)"""
    )
    for path in ASSETS_DIR.iterdir():
        text = path.read_text()
        assert "//fonts." not in text and "cdn" not in text.lower(), path.name
        assert not re.search(loads, text), path.name


def test_unknown_and_traversing_asset_names_are_404(demo_client: TestClient) -> None:
    for path in ("/ui/nope.js", "/ui/..%2Fapi%2Fui.py", "/ui/%2e%2e%2fconfig.py", "/ui/ui.py"):
        response = demo_client.get(path)
        assert response.status_code == 404, path
        assert "error" in response.json()


def test_card_hints_carry_what_the_form_needs(demo_client: TestClient) -> None:
    diabetes = demo_client.get("/ui/models/diabetes-mlp/card").json()
    assert "feature_names" not in diabetes  # the model's metadata carries them
    info = demo_client.get("/v1/models/diabetes-mlp").json()
    assert info["feature_names"] == ["age", "sex", "bmi", "bp"] + [f"s{i}" for i in range(1, 7)]
    assert diabetes["regression"] == {"tau": 0.000417, "variance_head": False}
    digits = demo_client.get("/ui/models/digits-cnn/card").json()
    assert digits["value_range"] == [0, 16] and digits["input"]["shape"] == [1, 8, 8]
    assert digits["abstention"] is None and "architecture" not in digits
    assert demo_client.get("/ui/models/nope/card").status_code == 404


def test_card_hints_include_the_abstention_rule(
    model_factory: Factory, client_for: ClientFor
) -> None:
    folder = model_factory(card={"abstention": RULE})
    hints = client_for(folder.parent).get("/ui/models/tiny/card").json()
    assert hints["abstention"]["threshold"] == 0.2
    assert hints["abstention"]["score"] == "mutual_information"


def test_ui_false_turns_every_page_route_off(client_for: ClientFor) -> None:
    client = client_for(ui=False)
    for path in ("/", "/ui/monitor", "/ui/app.js", "/ui/models/digits-mlp/card"):
        assert client.get(path).status_code == 404, path
    assert client.get("/v1/models").status_code == 200


def test_the_page_loads_without_a_key_but_its_data_needs_one(client_for: ClientFor) -> None:
    client = client_for(api_keys=["s3cret"])
    assert client.get("/").status_code == 200
    assert client.get("/ui/app.js").status_code == 200
    assert client.get("/ui/models/digits-mlp/card").status_code == 401
    wrong = client.get("/ui/models/digits-mlp/card", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/ui/models/digits-mlp/card", headers={"authorization": "Bearer s3cret"})
    assert right.status_code == 200 and right.json()["value_range"] == [0, 16]


def test_the_page_assets_stay_under_the_size_budget() -> None:
    total = sum(path.stat().st_size for path in ASSETS_DIR.iterdir())
    assert total < ASSET_BUDGET_BYTES


def test_package_data_ships_every_asset() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["app"]
    for path in ASSETS_DIR.iterdir():
        relative = path.relative_to(ASSETS_DIR.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_of_a_known_pair() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


@pytest.mark.parametrize(
    ("foreground", "background", "minimum"),
    [
        ("fg", "bg", 4.5),
        ("fg", "panel", 4.5),
        ("muted", "bg", 4.5),
        ("muted", "panel", 4.5),
        ("accent", "bg", 4.5),
        ("accent", "panel", 4.5),
        ("on-badge", "accent", 4.5),
        ("on-badge", "abstain", 4.5),
        ("on-badge", "ok", 4.5),
        ("best", "bg", 3.0),
        ("aleatoric", "bg", 3.0),
        ("epistemic", "bg", 3.0),
        ("best", "band", 3.0),
        ("conformal", "bg", 3.0),
        ("conformal", "band", 3.0),
        *(("fg", f"tag-{k}", 4.5) for k in range(6)),  # token words on their label's colour
    ],
)
def test_text_and_chart_colours_meet_wcag_contrast(
    foreground: str, background: str, minimum: float
) -> None:
    css = (ASSETS_DIR / "ui.css").read_text()
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6});", css))
    assert contrast(colours[foreground], colours[background]) >= minimum
