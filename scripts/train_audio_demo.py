"""Train the bundled audio demo, ``spoken-digits``: keyword spotting of the spoken words "zero"
to "nine" with a small GRU over log-mel frames.

The corpus is synthetic speech, generated deterministically with Debian's ``espeak-ng`` (needed
only here, never to serve or test): every word in a fixed list of voices (accents times voice
variants), at seeded speeds and pitches; each clip is decoded and resampled by the server's own
decoder (:func:`app.engine.audio.decode_audio`), then copied with seeded gain, background noise
and leading silence, and turned into the card's log-mel frames by the server's own feature step.
Two accents and four voice variants are held out for the test set and the shipped samples, so
the test accuracy is on voices the model never heard.

The frames' dropout is time-locked (one mask per clip and band, Gal & Ghahramani 2016): trained
with a locked mask, served with ``mc_dropout.share`` (the card), so the MC passes sample what
training used; the GRU's inter-layer dropout is torch's, sampled by mcdrop as recurrent dropout.

Also writes the README's samples (``--samples``, default ``docs/audio/``): two digits, a word
outside the vocabulary and noise, in held-out voices.

Usage: ``python scripts/train_audio_demo.py [--out models] [--samples docs/audio]`` (a few
minutes on one CPU thread).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from train_demo_models import write_weights_and_card

from app.architectures import build_bundled
from app.engine.audio import decode_audio, encode_wav
from app.inputs.audio_features import card_features
from app.registry.card_inputs import AudioInputSpec

NAME = "spoken-digits"
SCRIPT = "scripts/train_audio_demo.py"
SEED = 0
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SAMPLE_RATE = 16_000
INPUT: dict[str, object] = {
    "type": "audio",
    "sample_rate": SAMPLE_RATE,
    "max_seconds": 2.0,
    "features": {"log_mel": {"n_mels": 40, "win_ms": 25, "hop_ms": 10}},
    "lengths": True,
}
TRAIN_ACCENTS = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029"]
TRAIN_VARIANTS = ["", "+m1", "+m3", "+m5", "+f1", "+f2", "+f3", "+klatt"]
TEST_ACCENTS = ["en-gb-x-gbcwmd", "en-us-nyc"]
TEST_VARIANTS = ["+m2", "+m7", "+f4", "+klatt3"]
SPEEDS = (115, 195)
"""Words per minute, drawn uniformly (espeak-ng's default is 175)."""
PITCHES = (20, 80)
CLIPS_PER_VOICE = 2
COPIES = 3
"""Augmented copies of each training clip, besides the clean one."""
KWARGS: dict[str, object] = {"n_mels": 40, "num_classes": 10, "channels": 64, "hidden": 64}
KWARGS |= {"num_layers": 2, "p_frames": 0.1, "p": 0.3}
SAMPLES = {
    "seven.wav": ("seven", "en-us-nyc+m2", 150, 50),
    "three.wav": ("three", "en-gb-x-gbcwmd+f4", 160, 60),
    "hello.wav": ("hello", "en-us-nyc+m2", 150, 50),
}
"""The README's clips: file -> (text, voice, speed, pitch); ``noise.wav`` is seeded noise."""
EVAL_PASSES = 50


def speak(text: str, voice: str, speed: int, pitch: int) -> bytes:
    """espeak-ng's WAV (22050 Hz mono) of ``text``; deterministic for given arguments."""
    command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    return subprocess.run(command, check=True, capture_output=True).stdout


def corpus(accents: list[str], variants: list[str], seed: int) -> list[tuple[bytes, int]]:
    """(WAV, word index) for every word, voice and seeded (speed, pitch) draw."""
    rng = np.random.default_rng(seed)
    clips = []
    for voice in (a + v for a, v in itertools.product(accents, variants)):
        for label, word in enumerate(WORDS):
            for _ in range(CLIPS_PER_VOICE):
                speed, pitch = int(rng.integers(*SPEEDS)), int(rng.integers(*PITCHES))
                clips.append((speak(word, voice, speed, pitch), label))
    return clips


def augment(wave: np.ndarray, rng: np.random.Generator, limit: int) -> np.ndarray:
    """Seeded gain (-12..0 dB), leading silence (0..0.3 s) and white or brown noise (SNR
    5..35 dB), at most ``limit`` samples."""
    lead = np.zeros(int(rng.uniform(0, 0.3) * SAMPLE_RATE), np.float32)
    shifted = np.concatenate([lead, wave * 10 ** (rng.uniform(-12, 0) / 20)])[:limit]
    noise = rng.standard_normal((shifted.shape[0],))
    if rng.random() < 0.5:
        walk = np.cumsum(noise)
        noise = walk - np.convolve(walk, np.full(64, 1 / 64), mode="same")
    power = float(np.mean(shifted**2)) + 1e-12
    noise = noise * float(
        np.sqrt(power / 10 ** (rng.uniform(5, 35) / 10) / (np.mean(noise**2) + 1e-12))
    )
    augmented: np.ndarray = np.clip(shifted + noise, -1, 1).astype(np.float32)
    return augmented


def frames_of(
    clips: list[tuple[bytes, int]], copies: int, seed: int
) -> tuple[list[Tensor], Tensor]:
    """Log-mel frames of each clip through the server's decoder and feature step, and of
    ``copies`` augmented versions of it; with their labels."""
    spec = AudioInputSpec.model_validate(INPUT)
    features, rng = card_features(spec), np.random.default_rng(seed)
    limit = int(spec.max_seconds * spec.sample_rate)
    rows, labels = [], []
    for data, label in clips:
        wave = decode_audio(data, spec.sample_rate, 60.0, "corpus")[:limit]
        for copy in range(copies + 1):
            version = wave if copy == 0 else augment(wave, rng, limit)
            rows.append(torch.from_numpy(features.compute(version)))
            labels.append(label)
    return rows, torch.tensor(labels)


class LockedDropout(nn.Module):
    """Training's frames dropout: one mask per clip and band over time (dimension 1)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        keep = torch.bernoulli(torch.full((x.shape[0], 1, x.shape[2]), 1 - self.p))
        return x * keep / (1 - self.p)


def batch(rows: list[Tensor], pad: float) -> tuple[Tensor, Tensor]:
    """(B, T, n_mels) padded with ``pad`` to the longest row, and the lengths (B,)."""
    lengths = torch.tensor([row.shape[0] for row in rows])
    padded = torch.full((len(rows), int(lengths.max()), rows[0].shape[1]), pad)
    for index, row in enumerate(rows):
        padded[index, : row.shape[0]] = row
    return padded, lengths


def fit(model: nn.Module, rows: list[Tensor], labels: Tensor, pad: float, epochs: int) -> None:
    """AdamW with cosine decay over seeded shuffled mini-batches of 64; frames dropout locked."""
    frames_dropout = model.drop_frames
    assert isinstance(frames_dropout, nn.Dropout)
    model.drop_frames = LockedDropout(frames_dropout.p)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(rows) // 64)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for epoch in range(epochs):
        order, total = torch.randperm(len(rows), generator=generator), 0.0
        for start in range(0, len(rows), 64):
            index = order[start : start + 64]
            x, lengths = batch([rows[i] for i in index], pad)
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(x, lengths), labels[index])
            torch.autograd.backward(loss)
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        print(f"  epoch {epoch + 1}: loss {total / len(rows):.3f}")
    model.drop_frames = frames_dropout
    model.eval()


def mc_accuracy(model: nn.Module, rows: list[Tensor], labels: Tensor, pad: float) -> float:
    """Accuracy of the mean softmax over MC passes (every dropout on, frames mask per step:
    a close stand-in for the served passes, only to report the held-out accuracy)."""
    x, lengths = batch(rows, pad)
    torch.manual_seed(SEED)
    model.train()
    with torch.no_grad():
        probs = torch.stack([model(x, lengths).softmax(-1) for _ in range(EVAL_PASSES)]).mean(0)
    model.eval()
    return float((probs.argmax(-1) == labels).float().mean())


def train(epochs: int) -> tuple[nn.Module, dict[str, object]]:
    """The trained model and its card (without the weights' checksum)."""
    started = time.perf_counter()
    train_rows, train_labels = frames_of(corpus(TRAIN_ACCENTS, TRAIN_VARIANTS, SEED), COPIES, 1)
    test_rows, test_labels = frames_of(corpus(TEST_ACCENTS, TEST_VARIANTS, SEED + 1), 1, 2)
    print(f"{NAME}: {len(train_rows)} training clips, {len(test_rows)} held-out")
    values = torch.cat(train_rows)
    mean, std = round(float(values.mean()), 4), round(float(values.std()), 4)
    pad = card_features(AudioInputSpec.model_validate(INPUT)).pad
    kwargs = {**KWARGS, "mean": mean, "std": std}
    torch.manual_seed(SEED)
    model = build_bundled("keyword_gru", kwargs)
    fit(model, train_rows, train_labels, pad, epochs)
    accuracy = mc_accuracy(model, test_rows, test_labels, pad)
    print(f"{NAME}: held-out MC accuracy {accuracy:.4f} in {time.perf_counter() - started:.0f} s")
    card: dict[str, object] = {
        "name": NAME,
        "version": "1",
        "task": "classification",
        "description": "Spoken digits zero..nine (synthetic espeak-ng speech): GRU on log-mel.",
        "input": INPUT,
        "labels": WORDS,
        "architecture": {"bundled": "keyword_gru", "kwargs": kwargs},
        "mc_dropout": {"sites": "all", "share": {"drop_frames": [1]}},
        "n_samples": {"default": 100, "max": 1000},
        "training": {
            "script": SCRIPT,
            "corpus": "espeak-ng 1.51, synthetic",
            "held_out_accuracy": round(accuracy, 4),
            "n_test": len(test_rows),
            "test_voices": [a + v for a, v in itertools.product(TEST_ACCENTS, TEST_VARIANTS)],
        },
    }
    return model, card


def write_model(out_dir: Path, model: nn.Module, card: dict[str, object]) -> None:
    """``out_dir/spoken-digits/model.safetensors`` and its ``model.yaml``."""
    write_weights_and_card(out_dir / NAME, model, card)


def write_samples(folder: Path) -> None:
    """The README's clips at the model's rate: digits and a word in held-out voices, noise."""
    folder.mkdir(parents=True, exist_ok=True)
    for file, (text, voice, speed, pitch) in SAMPLES.items():
        wave = decode_audio(speak(text, voice, speed, pitch), SAMPLE_RATE, 60.0, file)
        (folder / file).write_bytes(encode_wav(wave, SAMPLE_RATE))
    noise = np.random.default_rng(SEED).uniform(-0.3, 0.3, SAMPLE_RATE).astype(np.float32)
    (folder / "noise.wav").write_bytes(encode_wav(noise, SAMPLE_RATE))


def main(argv: list[str] | None = None) -> None:
    """Parse flags, generate the corpus, train, write the model and the samples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--samples", type=Path, default=Path("docs/audio"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, card = train(args.epochs)
    write_model(args.out, model, card)
    write_samples(args.samples)


if __name__ == "__main__":
    main()
