"""The Prometheus exposition: names operators expect, checked by real parsers, and summed over
several worker processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import MULTIPROC_ENV, build_metrics, prepare_multiprocess_dir

EXPECTED_FAMILIES = {
    "mcdrop_requests": "counter",
    "mcdrop_request_duration_seconds": "histogram",
    "mcdrop_queue_wait_seconds": "histogram",
    "mcdrop_batch_rows": "histogram",
    "mcdrop_samples_per_request": "histogram",
    "mcdrop_rows_per_request": "histogram",
    "mcdrop_inflight_requests": "gauge",
    "mcdrop_model_ready": "gauge",
    "mcdrop_model_load_seconds": "gauge",
    "mcdrop_predictive_entropy": "histogram",
    "mcdrop_mutual_information": "histogram",
    "mcdrop_regression_std": "histogram",
}


def _exposition_after_traffic(client: TestClient) -> str:
    digits = {"inputs": [[0] * 64], "n_samples": 10, "seed": 0}
    assert client.post("/v1/models/digits-mlp/predict", json=digits).status_code == 200
    diabetes = {"inputs": [[0.0] * 10], "n_samples": 10, "seed": 0}
    assert client.post("/v1/models/diabetes-mlp/predict", json=diabetes).status_code == 200
    text: str = client.get("/metrics").text
    return text


def test_every_family_has_the_expected_type_and_unit_suffixes(demo_client: TestClient) -> None:
    text = _exposition_after_traffic(demo_client)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    types = {name: families[name].type for name in EXPECTED_FAMILIES if name in families}
    assert types == EXPECTED_FAMILIES
    names = {sample.name for family in families.values() for sample in family.samples}
    assert "mcdrop_requests_total" in names
    assert {"mcdrop_regression_std_count", "mcdrop_mutual_information_bucket"} <= names
    for family in families.values():
        if family.type == "counter" and family.samples:
            assert any(s.name == f"{family.name}_total" for s in family.samples)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_exposition(demo_client: TestClient) -> None:
    text = _exposition_after_traffic(demo_client)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint complaint either


_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.metrics import build_metrics

    metrics = build_metrics(multiprocess_dir=Path(sys.argv[1]))
    count = int(sys.argv[2])
    for _ in range(count):
        metrics.requests.labels("m", "v2_infer", "success").inc()
        metrics.request_duration.labels("m", "v2_infer").observe(0.02)
    metrics.model_ready.labels("m").set(1)
    metrics.inflight_requests.labels("m").set(count)
    print(metrics.render()[0].decode())
    if sys.argv[3:] == ["stop"]:
        metrics.close()
    """
)


def _value(text: str, sample_name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name:
                return float(sample.value)
    raise AssertionError(f"{sample_name} not in the exposition")


def test_two_processes_are_summed_through_the_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "restored after the test")
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left over by an earlier run")
    prepare_multiprocess_dir(folder)  # wipes stale files, exports the variable to children
    assert not (folder / "counter_1.db").exists()
    own_views = []
    for count, how in ((3, "run"), (4, "stop")):
        child = subprocess.run(
            [sys.executable, "-c", _WORKER, str(folder), str(count), how],
            capture_output=True,
            text=True,
            check=True,
        )
        own_views.append(child.stdout)
    # Each worker's own scrape already sees what the workers before it wrote.
    assert _value(own_views[0], "mcdrop_requests_total") == 3
    assert _value(own_views[1], "mcdrop_requests_total") == 7
    combined = build_metrics(multiprocess_dir=folder).render()[0].decode()
    assert _value(combined, "mcdrop_requests_total") == 7
    assert _value(combined, "mcdrop_request_duration_seconds_count") == 7
    assert _value(own_views[1], "mcdrop_inflight_requests") == 7  # livesum while both live
    # The second worker stopped cleanly (Metrics.close): its live gauges are gone.
    assert _value(combined, "mcdrop_inflight_requests") == 3
    assert _value(combined, "mcdrop_model_ready") == 1
