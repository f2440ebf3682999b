"""``mcdrop check-model DIR``: load a model folder the way the server does, sample it, and
report every problem found (exit status 1 if there is one)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from tqdm import tqdm

from app.commands._output import table
from app.dataplane.policy import local_request
from app.engine.predictor import Prediction
from app.errors import McdropError
from app.registry.auditing import Audit
from app.registry.card import read_card
from app.registry.loading import load_model_folder
from app.registry.served import LoadOptions, ServedModel
from app.registry.shift_file import shift_features_note

T = TypeVar("T")

PYTHON_CODE_NOTE = (
    "Python code that runs with the server's rights whenever the model loads: "
    "load only folders you trust"
)


@dataclass
class Report:
    """What a check found: facts to show, problems (fail) and warnings (do not fail)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check-model`` sub-command."""
    parser = commands.add_parser(
        "check-model", help="load a model folder, sample it and report every problem found"
    )
    parser.add_argument("folder", type=Path, help="model folder (with model.yaml)")
    parser.add_argument("--rows", type=int, default=8, help="rows of the sample run (default 8)")
    parser.add_argument("--n-samples", type=int, help="MC passes (the card's default if absent)")
    parser.add_argument("--runs", type=int, default=5, help="timed sample runs (default 5)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the folder; print the findings; 0 when no problem was found, 1 otherwise.
    Never a traceback: a check that raises is a reported problem naming the check."""
    report = Report()
    model = checked(report, "loading the folder", lambda: _load(args.folder, report))
    if model is not None:
        served = model
        description = checked(report, "describing the model", lambda: describe(served))
        if description is not None:
            print(description)
        n_samples = args.n_samples or served.card.n_samples.default
        rows, runs = max(1, args.rows), max(2, args.runs)
        checked(
            report,
            "the sample run",
            lambda: _sample_checks(served, rows, n_samples, runs, report),
        )
    for warning in report.warnings:
        print(f"warning: {warning}")
    if report.problems:
        print(f"\n{len(report.problems)} problem(s):")
        for problem in report.problems:
            print(f"  - {problem}")
        return 1
    print("\nOK: no problems found")
    return 0


def describe(model: ServedModel) -> str:
    """The model's card facts, dropout layers and prefix split as text."""
    card = model.card
    facts = [
        ["model", f"{card.name} v{card.version} ({card.task})"],
        ["folder", str(model.folder)],
        ["input", f"{model.input_kind.describe().summary} -> output {model.output_shape}"],
        ["n_samples", f"default {card.n_samples.default}, max {card.n_samples.max}"],
        ["load time", f"{model.load_seconds:.3f} s"],
        [
            "prefix",
            f"{model.split.prefix_fraction:.0%} of the model runs once per row "
            f"({model.split.reason})",
        ],
        ["shift", shift_features_note(model)],
    ]
    if model.audit is not None:
        facts.append(["audit", describe_audit(model.audit)])
    if card.architecture.file is not None:
        facts.append(["code", f"{card.architecture.file}: {PYTHON_CODE_NOTE}"])
    lines = [
        table(None, facts),
        "",
        table(
            ["dropout layer", "kind", "p"],
            [[layer.name, type(layer.module).__name__, layer.p] for layer in model.dropout_layers],
        ),
        "",
    ]
    unsampled = model.audit.unsampled if model.audit is not None else []
    if unsampled:
        rows = [
            [u.name or "(the model's forward)", u.kind, u.reason, "yes" if u.acknowledged else "NO"]
            for u in unsampled
        ]
        lines += [table(["not sampled", "kind", "why", "acknowledged"], rows), ""]
    return "\n".join(lines)


def describe_audit(audit: Audit) -> str:
    """The stochasticity audit in one line: its cost and the two variances compared."""
    report, gap = audit.report, audit.report.gap
    text = f"{report.seconds:.3f} s"
    if gap is not None:
        text += (
            f"; on the probe rows the model's own torch MC dropout has std "
            f"{gap.reference**0.5:.4g}, mcdrop's passes {gap.sampled**0.5:.4g} "
            f"({report.passes} passes each, z = {gap.z:.1f})"
        )
    if report.note is not None:
        text += f"; {report.note}"
    return text


def checked(report: Report, check: str, run_check: Callable[[], T]) -> T | None:
    """The check's result, or None with a problem naming the check: its message for a
    domain error, the exception's type and message for anything else (a bug in the model's
    code, or in ours, is a finding of the check, not a crash of the command)."""
    try:
        return run_check()
    except McdropError as exc:
        report.problems.append(f"{check}: {exc.message}")
    except Exception as exc:  # every failure is reported, none escapes
        report.problems.append(f"{check} failed: {type(exc).__name__}: {exc}")
    return None


def _load(folder: Path, report: Report) -> ServedModel | None:
    try:
        card = read_card(folder)
        model = load_model_folder(folder, LoadOptions())
    except McdropError as exc:
        report.problems.append(exc.message)
        return None
    if card.weights.file is not None and card.weights.sha256 is None:
        report.warnings.append("weights.sha256 missing in model.yaml: the file is not verified")
    report.problems.extend(model.warnings)
    return model


def _sample_checks(
    model: ServedModel, rows: int, n_samples: int, runs: int, report: Report
) -> None:
    inputs = model.input_kind.probe(rows)
    request = local_request(model, inputs, n_samples=n_samples, seed=0, return_samples=True)
    timings: list[float] = []
    results: list[Prediction] = []
    for _ in tqdm(range(runs), desc="sample runs", unit="run", file=sys.stderr, disable=None):
        started = time.perf_counter()
        results.append(model.predictor.predict(request))
        timings.append(time.perf_counter() - started)
    steady = statistics.median(timings[1:])
    print(
        f"sample run {rows} rows x {n_samples} passes: first {timings[0] * 1000:.1f} ms, "
        f"then median {steady * 1000:.1f} ms ({rows * n_samples / steady:,.0f} row-passes/s)"
    )
    _check_prediction(results, report)


def _check_prediction(results: list[Prediction], report: Report) -> None:
    first = results[0]
    values = [v for v in vars(first.stats).values() if isinstance(v, torch.Tensor)]
    if not all(torch.isfinite(v.double()).all() for v in values):
        report.problems.append("the sample run returned NaN or infinite statistics")
    samples = [result.samples for result in results if result.samples is not None]
    if torch.equal(samples[0].amin(0), samples[0].amax(0)):
        report.problems.append(
            "every MC pass gave the same output: dropout does not reach the output"
        )
    if any(not torch.equal(samples[0], other) for other in samples[1:]):
        report.problems.append(
            "the same seed gave different numbers: the model is not deterministic"
        )
