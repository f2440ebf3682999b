"""Audio benchmark: MC dropout on a Wav2Vec2-style classifier and on the spoken-digits GRU.

Models (batch 1, one clip of 1 s at 16 kHz, a tone in noise):
  wav2vec2  Wav2Vec2ForSequenceClassification, random weights built here: wav2vec2-base's conv
            feature encoder (7 convs, 512 channels, 320 samples a frame: 49 frames), 4 encoder
            layers of hidden 256 (4 heads, feed-forward 1024), LayerDrop 0.1, SpecAugment off;
            saved with its feature extractor and served from the folder
  gru       the bundled ``models/spoken-digits`` (log-mel 40 bands -> Conv1d -> 2-layer GRU)
Runs, side by side in one process (medians over rounds of each run / the forward's time in the
same round, as ``bench/text.py``):
  forward   one deterministic forward (the baseline, ratio 1)
  loop      the textbook way: model.train(), N forwards (the model's own dropout)
  all       mcdrop, every dropout sampled, N samples folded into the batch
  head      mcdrop ``mc_dropout: head`` (wav2vec2: the last encoder layer's output dropout and
            LayerDrop, as these classifiers have no dropout after the encoder; everything
            before it runs once; gru: the dropout before the classifier)
  decode    decoding the WAV and computing the features (``AudioKind.rows``), apart, as a
            fraction of one forward

    python -m bench.audio [--repeats 5] [--samples 10 30 100] [--cpu-time] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from app.dataplane.worker import InferenceThread
from app.engine.allocator import retain_freed_memory
from app.engine.audio import encode_wav
from app.engine.sampling import SampleJob
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from bench.common import (
    interleaved_ratios,
    load_options,
    markdown_table,
    on_thread,
    training_mode_passes,
)

RATE = 16_000
DEMO = Path(__file__).resolve().parents[1] / "models" / "spoken-digits"
MIN_SECONDS = 0.05
"""Each measurement lasts at least this long (a 2 ms GRU forward is called 25 times over)."""


def clip(seconds: float = 1.0) -> bytes:
    """One WAV clip: a 440 Hz tone in a little noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    noise = 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return encode_wav((0.4 * np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32), RATE)


def write_wav2vec2(root: Path) -> Any:
    """A save_pretrained Wav2Vec2 classifier (4 x 256, base conv encoder) and its extractor."""
    import transformers

    labels: dict[str, Any] = {"num_labels": 10}
    config = transformers.Wav2Vec2Config(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        classifier_proj_size=256,
        mask_time_prob=0.0,  # SpecAugment: mcdrop leaves it off; the loop must too
        **labels,
    )
    torch.manual_seed(0)
    model: Any = transformers.Wav2Vec2ForSequenceClassification(config)
    model.eval()
    model.save_pretrained(root)
    extractor = transformers.Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]
        sampling_rate=RATE, do_normalize=True, return_attention_mask=False
    )
    extractor.save_pretrained(root)
    return model


def card_folder(root: Path, source: Path | None, card: dict[str, Any], mode: str) -> Path:
    """A model folder ``root/mode``: ``source``'s files (or a Hugging Face folder's) and its
    card with ``mc_dropout: mode``."""
    folder = root / mode
    if source is not None:
        shutil.copytree(source, folder)
        card = yaml.safe_load((source / "model.yaml").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    card = {**card, "name": f"{card['name']}-{mode}", "mc_dropout": mode}
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    return folder


def _forward(call: Callable[[], torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return call()


def bench_model(
    name: str,
    served: dict[str, ServedModel],
    plain: tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]],
    samples: list[int],
    repeats: int,
    clock: Callable[[], float],
) -> list[dict[str, Any]]:
    """Ratios of every run to one forward, for each N; decode + features apart."""
    inference = InferenceThread()
    wav = [clip()]
    kind = served["all"].input_kind
    x = kind.rows(wav, 1)
    module, call = plain
    rows_x = x.to(torch.float32)
    results = []
    for n in samples:
        runs: dict[str, Callable[[], object]] = {
            "forward": partial(_forward, partial(call, rows_x)),
            "loop": partial(training_mode_passes, module, partial(call, rows_x), n),
            "decode": partial(kind.rows, wav, 1),
        }
        for mode, model in served.items():
            sample = partial(model.predictor.sampler.sample_jobs, [SampleJob(x, n, 0)])
            runs[mode] = partial(on_thread, inference, sample)
        ratios = interleaved_ratios(
            runs, repeats, clock, warm_up=n == samples[0], min_seconds=MIN_SECONDS
        )
        row = {"model": name, "n": n, "forward_ms": ratios.pop("forward_s") * 1e3, **ratios}
        results.append(row)
        print(row, flush=True)
    inference.shutdown()
    return results


def run(repeats: int, samples: list[int], clock: Callable[[], float]) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="mcdrop-bench-audio-"))
    hf = root / "wav2vec2"
    plain_hf = write_wav2vec2(hf)
    card = {
        "name": "wav2vec2",
        "task": "classification",
        "input": {"type": "audio", "sample_rate": RATE, "max_seconds": 1.0},
        "architecture": {"huggingface": "."},
    }
    served_hf = {}
    for mode in ("all", "head"):
        folder = card_folder(root / "cards", None, card, mode)
        for item in hf.iterdir():
            shutil.copy(item, folder / item.name)
        served_hf[mode] = load_model_folder(folder, load_options())
    results = bench_model(
        "wav2vec2",
        served_hf,
        (plain_hf, lambda x: plain_hf(input_values=x).logits),
        samples,
        repeats,
        clock,
    )
    served_gru = {
        mode: load_model_folder(card_folder(root / "demo", DEMO, {}, mode), load_options())
        for mode in ("all", "head")
    }
    gru = served_gru["all"].module
    results += bench_model("gru", served_gru, (gru, gru), samples, repeats, clock)
    shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument(
        "--cpu-time", action="store_true", help="process CPU time instead of wall time"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory(2**30)  # as `mcdrop serve` does (allocator_retain_mib)
    clock = time.process_time if args.cpu_time else time.perf_counter
    results = run(args.repeats, args.samples, clock)
    print(
        f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; times relative to one forward of one 1 s clip\n"
    )
    print(
        markdown_table(
            [
                "model",
                "N",
                "forward (ms)",
                "loop",
                "mcdrop all",
                "mcdrop head",
                "loop / all",
                "decode + features",
            ],
            [
                [
                    r["model"],
                    r["n"],
                    r["forward_ms"],
                    r["loop"],
                    r["all"],
                    r["head"],
                    r["loop"] / r["all"],
                    r["decode"],
                ]
                for r in results
            ],
        )
    )


if __name__ == "__main__":
    main()
