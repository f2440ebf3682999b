"""Segmentation benchmark: a U-Net on 128 x 128 images, measured side by side in one run.

1. Speed, batch 1: one deterministic forward; the textbook loop of N forwards in training mode
   (norm layers frozen) with the same per-pixel statistics; mcdrop's prediction with dropout
   everywhere (``mc_dropout: all``), in the decoder's three levels (the encoder runs once per
   image) and ``head`` (the last decoder level only), N = 10, 30, 100. Target: decoder-only
   mcdrop >= 3x faster than the loop at N = 30.
2. Memory: the resident memory one prediction of 4 images adds, each N in a fresh process
   (the peak of /proc/self/statm polled every millisecond while it runs, less the resident
   memory before it), for mcdrop (passes summed round by round) and for holding every pass
   then computing the statistics (what a dense task without rounds would do). Target:
   mcdrop's flat in N.

    python -m bench.segmentation [--repeats 5] [--threads 1] [--size 128] [--width 16]

The U-Net is a Python-file model (the route a user's own network takes): four levels of two
3x3 convolutions with BatchNorm and ReLU, widths w, 2w, 4w, 8w, ``Dropout2d(0.2)`` after the
bottleneck and in each decoder level, two classes, random weights.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from app.engine.predictor import PredictionRequest
from app.engine.stats.dense import dense_classification_stats
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from app.registry.torch_loader import sha256_of
from bench.common import interleaved_times, load_options, markdown_table, median_seconds

UNET_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        )


    class UNet(nn.Module):
        def __init__(self, width=16, classes=2, p=0.2):
            super().__init__()
            widths = [width, 2 * width, 4 * width, 8 * width]
            self.down = nn.ModuleList(
                [block(cin, cout) for cin, cout in zip([1, *widths[:-2]], widths[:-1])]
            )
            self.bottleneck = block(widths[-2], widths[-1])
            self.bottleneck_drop = nn.Dropout2d(p)
            self.ups = nn.ModuleList(
                [nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in widths[:0:-1]]
            )
            self.decoders = nn.ModuleList([block(w, w // 2) for w in widths[:0:-1]])
            self.decoder_drops = nn.ModuleList([nn.Dropout2d(p) for _ in widths[1:]])
            self.out = nn.Conv2d(width, classes, 1)

        def forward(self, x):
            skips = []
            for level in self.down:
                x = level(x)
                skips.append(x)
                x = torch.nn.functional.max_pool2d(x, 2)
            x = self.bottleneck_drop(self.bottleneck(x))
            for up, decoder, drop, skip in zip(self.ups, self.decoders, self.decoder_drops,
                                               reversed(skips)):
                x = drop(decoder(torch.cat([up(x), skip], dim=1)))
            return self.out(x)
    """
)
SAMPLES = (10, 30, 100)
MODES: dict[str, Any] = {
    "all": "all",
    "decoder": ["decoder_drops.0", "decoder_drops.1", "decoder_drops.2"],
    "head": "head",
}
"""mc_dropout of each run: everywhere; the decoder's three levels (the encoder and bottleneck
once per image); ``head``, the last decoder level's dropout alone (only the 1x1 output
convolution per pass)."""


def write_unet(root: Path, name: str, width: int, size: int, mc_dropout: Any) -> Path:
    """A U-Net model folder with seeded random weights (safetensors)."""
    from safetensors.torch import save_file

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(UNET_SOURCE)
    namespace: dict[str, Any] = {}
    exec(compile(UNET_SOURCE, str(folder / "net.py"), "exec"), namespace)
    torch.manual_seed(0)
    network: nn.Module = namespace["UNet"](width=width)
    weights = folder / "w.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(weights))
    card = {
        "name": name,
        "task": "segmentation",
        "input": {"shape": [1, size, size]},
        "architecture": {"file": "net.py", "class": "UNet", "kwargs": {"width": width}},
        "weights": {"file": "w.safetensors", "sha256": sha256_of(weights)},
        "n_samples": {"default": 30, "max": 1000},
        "mc_dropout": mc_dropout,
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return folder


def textbook_loop(network: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """N forwards with dropout on (training mode, BatchNorm frozen), then the per-pixel
    statistics of the stacked passes; returns the MI map."""
    network.train()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.eval()
    with torch.inference_mode():
        probs = torch.stack([torch.softmax(network(x), dim=1) for _ in range(n)])
    network.eval()
    return dense_classification_stats(probs.movedim(2, -1)).mutual_information


def _interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs taken in turn within each repeat (one warm-up call
    each first), so that a ratio compares calls made moments apart on a shared machine."""
    for run in runs.values():
        run()
    times = interleaved_times(runs, repeats)
    return {name: statistics.median(found) for name, found in times.items()}


def speed_rows(models: dict[str, ServedModel], size: int, repeats: int) -> list[list[object]]:
    """Seconds of one forward, the loop and mcdrop (each mode) at each N, interleaved."""
    x = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(1))
    network = models["all"].module
    with torch.inference_mode():
        forward = median_seconds(lambda: network(x), repeats)
    rows: list[list[object]] = [["one forward", 1, forward, "", ""]]
    for n in SAMPLES:
        runs: dict[str, Callable[[], object]] = {"loop": partial(textbook_loop, network, x, n)}
        for mode, model in models.items():
            request = PredictionRequest(x, n, 0.9, seed=0)
            runs[f"mcdrop {mode}"] = partial(model.predictor.predict, request)
        times = _interleaved(runs, repeats)
        for name, seconds in times.items():
            rows.append([name, n, seconds, times["loop"] / seconds, seconds / forward])
    return rows


_CHILD = "--child"
"""First argument of the fresh process one memory measurement runs in."""


def _resident_bytes() -> int:
    """The process's resident memory now (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def _peak_during(run: Callable[[], object]) -> tuple[int, int]:
    """(resident bytes before ``run``, the most resident bytes while it ran), polled every
    millisecond by a thread (the process's high-water mark is the model load's, not this)."""
    before = _resident_bytes()
    peak = [before]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _resident_bytes())
            time.sleep(0.001)

    watcher = threading.Thread(target=poll)
    watcher.start()
    try:
        run()
    finally:
        done.set()
        watcher.join()
    return before, max(peak[0], _resident_bytes())


def child(folder: str, n: int, held: bool, size: int, rows: int) -> None:
    """One prediction in this fresh process; prints the resident memory it added (bytes)."""
    torch.set_num_threads(1)
    model = load_model_folder(Path(folder), load_options())
    x = torch.randn(rows, 1, size, size, generator=torch.Generator().manual_seed(1))

    def run(count: int) -> None:
        if held:  # every pass kept, then the statistics
            raw = model.predictor.sample_raw(x, count, seed=0)
            dense_classification_stats(torch.softmax(raw, dim=2).movedim(2, -1))
        else:
            model.predictor.predict(PredictionRequest(x, count, 0.9, seed=0))

    run(1)
    before, peak = _peak_during(lambda: run(n))
    print(json.dumps({"added": peak - before, "before": before}))


def memory_rows(folder: Path, size: int, rows: int) -> list[list[object]]:
    """Peak RSS added by one prediction of ``rows`` images at each N, fresh process each."""
    table: list[list[object]] = []
    for held in (False, True):
        for n in SAMPLES:
            command = [sys.executable, "-m", "bench.segmentation", _CHILD, str(folder), str(n)]
            command += [str(int(held)), str(size), str(rows)]
            found = json.loads(subprocess.run(command, capture_output=True, check=True).stdout)
            label = "all passes held" if held else "mcdrop (rounds)"
            table.append([label, n, found["added"] / 2**20, found["before"] / 2**20])
    return table


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == _CHILD:
        child(args[1], int(args[2]), bool(int(args[3])), int(args[4]), int(args[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--memory-rows", type=int, default=4, help="images per memory run")
    options = parser.parse_args(args)
    torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = {
            mode: write_unet(root, f"unet-{mode}", options.width, options.size, choice)
            for mode, choice in MODES.items()
        }
        models = {mode: load_model_folder(f, load_options()) for mode, f in folders.items()}
        for mode, model in models.items():
            print(f"{mode}: {model.split.reason} (prefix share {model.split.prefix_fraction})")
        print()
        header = ["run", "N", "seconds", "x faster than the loop", "x one forward"]
        print(markdown_table(header, speed_rows(models, options.size, options.repeats)))
        print()
        memory = memory_rows(folders["all"], options.size, options.memory_rows)
        print(f"memory, {options.memory_rows} images of {options.size} x {options.size}:")
        header = ["run", "N", "resident memory added (MiB)", "resident before (MiB)"]
        print(markdown_table(header, memory))
    print(
        f"\nmedian of {options.repeats} repeats, {options.threads} thread(s), torch "
        f"{torch.__version__}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
