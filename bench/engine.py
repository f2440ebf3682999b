"""Engine benchmark: the cost of N MC samples relative to one deterministic forward pass.

For each bundled model, N in {10, 100, 1000} and batch in {1, 32}, measured side by side in one
run (median of several repeats):
  forward  one deterministic forward of the batch (the baseline, ratio 1)
  loop     N forwards in a Python loop with dropout modules in train mode (the naive way)
  folded   mcdrop's sampler folding the N samples into the batch, whole model per sample
  prefix   mcdrop's sampler with the deterministic prefix run once (what the server uses)

    python bench/engine.py [--models digits-cnn ...] [--repeats 7] [--out docs]
                           [--samples 10 100 1000] [--batches 1 32]

The models run on the device of MCDROP_DEVICE (as for `mcdrop serve`; default: CUDA when
visible, else the CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.engine.dropout import find_dropout_layers
from app.engine.prefix import whole_model_split
from app.engine.sampler import MCSampler
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from bench.common import (
    MODELS,
    RESULTS,
    example_inputs,
    load_options,
    markdown_table,
    median_seconds,
)

SAMPLES = (10, 100, 1000)
BATCHES = (1, 32)


def naive_loop(module: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """The textbook MC dropout loop: dropout modules in train mode, N forwards."""
    layers = find_dropout_layers(module)
    for layer in layers:
        layer.module.train()
    try:
        with torch.inference_mode():
            return torch.stack([module(x) for _ in range(n)])
    finally:
        for layer in layers:
            layer.module.eval()


def bench_model(
    model: ServedModel,
    plain: nn.Module,
    repeats: int,
    samples: tuple[int, ...] = SAMPLES,
    batches: tuple[int, ...] = BATCHES,
) -> list[dict[str, Any]]:
    """``plain`` is the same model without mcdrop's hooks: the baseline forward and the loop."""
    module = plain
    device = next(module.parameters()).device
    prefix = model.predictor.sampler
    assert isinstance(prefix, MCSampler)
    folded = MCSampler(  # hooks on the whole model's dropout modules, no split
        model.module,
        model.dropout_layers,
        max_rows=prefix.max_rows,
        device=prefix.device,
        dtype=prefix.dtype,
        split=whole_model_split(model.module),
    )
    check = example_inputs(model.card.input.shape, 2)
    for sampler in (folded, prefix):  # both really sample (and agree to float rounding)
        assert bool(sampler.sample(check, 8, seed=0).var(dim=0).gt(0).any()), model.name
    expected = folded.sample(check, 8, 0)
    scale = float(expected.abs().max())  # regression outputs are in target units
    torch.testing.assert_close(prefix.sample(check, 8, 0), expected, rtol=1e-5, atol=1e-6 * scale)
    rows = []
    for batch in batches:
        x = example_inputs(model.card.input.shape, batch).to(device)

        def forward(x: torch.Tensor = x) -> object:
            with torch.inference_mode():
                return module(x)

        base = median_seconds(forward, repeats)
        for n in samples:
            timings = {
                "loop": median_seconds(partial(naive_loop, module, x, n), repeats),
                "folded": median_seconds(partial(folded.sample, x, n, seed=0), repeats),
                "prefix": median_seconds(partial(prefix.sample, x, n, seed=0), repeats),
            }
            rows.append(
                {"model": model.name, "batch": batch, "n": n, "forward_ms": base * 1e3}
                | {f"{k}_ms": v * 1e3 for k, v in timings.items()}
                | {f"{k}_x": v / base for k, v in timings.items()}
            )
            print(f"{model.name} batch={batch} N={n}: " + ", ".join(
                f"{k} {v / base:.1f}x" for k, v in timings.items()), flush=True)  # fmt: skip
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({str(r["model"]) for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for index, batch in enumerate(sorted({int(r["batch"]) for r in rows})):
            style = ("-", "--", ":")[index % 3]
            mine = [r for r in rows if r["model"] == name and r["batch"] == batch]
            ns = [r["n"] for r in mine]
            for method, color in (
                ("loop", "tab:red"),
                ("folded", "tab:blue"),
                ("prefix", "tab:green"),
            ):
                ax.plot(ns, [r[f"{method}_x"] for r in mine], style, color=color, marker="o",
                        label=f"{method}, batch {batch}")  # fmt: skip
        ax.set(xscale="log", yscale="log", title=name, xlabel="MC samples N",
               ylabel="time / one deterministic forward")  # fmt: skip
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["digits-cnn", "digits-mlp", "diabetes-mlp"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--samples", type=int, nargs="+", default=list(SAMPLES))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    args = parser.parse_args()
    options = load_options()
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, {options.device}")
    rows = []
    for name in args.models:
        plain = load_model_folder(MODELS / name, options)
        plain.predictor.sampler.close()
        served = load_model_folder(MODELS / name, options)
        sizes = tuple(args.samples), tuple(args.batches)
        rows += bench_model(served, plain.module, args.repeats, *sizes)
    header = ["model", "batch", "N", "forward (ms)", "loop", "folded", "prefix", "loop / prefix"]
    table = markdown_table(header, [
        [r["model"], r["batch"], r["n"], r["forward_ms"], f"{r['loop_x']:.1f}x",
         f"{r['folded_x']:.1f}x", f"{r['prefix_x']:.2f}x", f"{r['loop_x'] / r['prefix_x']:.0f}x"]
        for r in rows
    ])  # fmt: skip
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(rows, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "bench-engine.png")
    (RESULTS / "engine.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
