"""Text benchmark: MC dropout on a BERT-style classifier (random weights, built here).

BERT with 4 layers, hidden 256, 4 heads, sequence length 128 (every text fills it), batch 1
and 8, N in {10, 30, 100}; measured side by side in one run (medians of several repeats):
  forward  one deterministic forward of the batch (the baseline, ratio 1)
  loop     the textbook way: model.train(), N forwards (transformers' own dropout, attention
           dropout included, default attention implementation)
  all      mcdrop, every dropout sampled (attention included), N samples folded into the batch
  head     mcdrop ``mc_dropout: head``: the encoder once, the classifier head N times
mcdrop's runs go through an inference thread as in the server; forward and loop run in the
main thread, as a user's script would.

    python -m bench.text [--repeats 5] [--samples 10 30 100] [--batches 1 8] [--cpu-time]
                         [--threads 1]

The models run on the device of MCDROP_DEVICE (as for `mcdrop serve`).

On a shared, loaded machine wall time mostly measures the wait for a core; ``--cpu-time
--threads 1`` measures the work (process CPU time, one thread so no spin-waiting is counted).
The process keeps freed memory for reuse as the server does (``allocator_retain_mib``), so the
loop and mcdrop both run on warm pages.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from app.dataplane.worker import InferenceThread
from app.engine.allocator import retain_freed_memory
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

LENGTH = 128


def write_folder(root: Path) -> Path:
    """A save_pretrained BERT (4 x 256, random weights) with a one-word tokenizer."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    vocab.update({f"w{i}": i + 4 for i in range(996)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", model_max_length=LENGTH
    )
    settings: dict[str, Any] = {"num_labels": 4, "max_position_embeddings": LENGTH}
    config = transformers.BertConfig(
        vocab_size=1000,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        **settings,
    )
    torch.manual_seed(0)
    model: Any = transformers.BertForSequenceClassification(config)
    model.eval()
    model.save_pretrained(root)
    fast.save_pretrained(root)
    return root


def load(root: Path, mode: str) -> ServedModel:
    card = {
        "name": f"bert-{mode}",
        "task": "classification",
        "input": {"type": "text", "max_length": LENGTH},
        "architecture": {"huggingface": "."},
        "mc_dropout": mode,
    }
    (root / "model.yaml").write_text(yaml.safe_dump(card))
    return load_model_folder(root, load_options())


def _forward(model: nn.Module, arguments: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        logits: torch.Tensor = model(**arguments).logits
        return logits


def textbook_loop(model: nn.Module, arguments: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    return training_mode_passes(model, lambda: model(**arguments).logits, n)


def run(
    repeats: int, samples: list[int], batches: list[int], clock: Callable[[], float]
) -> list[dict[str, Any]]:
    import transformers

    inference = InferenceThread()  # mcdrop samples on the server's inference thread
    root = write_folder(Path(tempfile.mkdtemp(prefix="mcdrop-bench-text-")))
    served = {mode: load(root, mode) for mode in ("all", "head")}
    plain: Any = transformers.BertForSequenceClassification.from_pretrained(root)
    plain.eval()
    device = next(served["all"].module.parameters()).device
    plain.to(device)
    results = []
    for batch in batches:
        texts = [" ".join(f"w{(b * 7 + i) % 996}" for i in range(LENGTH - 2)) for b in range(batch)]
        x = served["all"].rows_to_tensor(texts, max_rows=batch)
        assert x.shape == (batch, 3, LENGTH)
        arguments = {"input_ids": x[:, 0].to(device), "attention_mask": x[:, 1].to(device)}
        for n in samples:
            runs: dict[str, Callable[[], object]] = {
                "forward": partial(_forward, plain, arguments),
                "loop": partial(textbook_loop, plain, arguments, n),
            }
            for mode, model in served.items():
                sample = partial(model.predictor.sampler.sample_jobs, [SampleJob(x, n, 0)])
                runs[mode] = partial(on_thread, inference, sample)
            ratios = interleaved_ratios(runs, repeats, clock, warm_up=n == samples[0])
            row = {"batch": batch, "n": n, "forward_ms": ratios.pop("forward_s") * 1e3, **ratios}
            results.append(row)
            print(row, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--cpu-time", action="store_true", help="process CPU time instead of wall time"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--allocator-default",
        action="store_true",
        help="leave glibc's allocator settings as they are (allocator_retain_mib: 0)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.allocator_default:
        retain_freed_memory(2**30)  # as `mcdrop serve` does (allocator_retain_mib)
    torch.manual_seed(0)
    clock = time.process_time if args.cpu_time else time.perf_counter
    results = run(args.repeats, args.samples, args.batches, clock)
    print(
        f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; times relative to one forward of the batch\n"
    )
    print(
        markdown_table(
            ["batch", "N", "forward (ms)", "loop", "mcdrop all", "mcdrop head", "loop / all"],
            [
                [
                    r["batch"],
                    r["n"],
                    r["forward_ms"],
                    r["loop"],
                    r["all"],
                    r["head"],
                    r["loop"] / r["all"],
                ]
                for r in results
            ],
        )
    )


if __name__ == "__main__":
    main()
