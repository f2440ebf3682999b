"""The sampler contract of :mod:`app.engine.sampling`, as one check any sampler can run.

A new sampler (a new model kind) passes ``check_sampler_contract(sampler, inputs)`` in its own
tests; the checks would fail if it ignored ``first_sample`` or let a neighbour change a job.
"""

from __future__ import annotations

import torch
from torch import Tensor

from app.engine.sampling import ROW_ALIGN, SampleJob, Sampler

ROUNDS = ((0, 2 * ROW_ALIGN), (2 * ROW_ALIGN, 3 * ROW_ALIGN), (3 * ROW_ALIGN, 7 * ROW_ALIGN))
"""Adaptive-style rounds: a first round, then continuations at multiples of ROW_ALIGN."""


def check_sampler_contract(sampler: Sampler, inputs: Tensor, seed: int = 3) -> None:
    """Rounds continue one run exactly, every pass is a new draw, neighbours change nothing.

    ``inputs`` (B, *input_shape) should give distinct outputs for distinct dropout masks (a
    model with enough dropout units that two passes almost never share every mask).
    """
    end = ROUNDS[-1][1]
    whole = sampler.sample(inputs, end, seed)
    assert whole.shape[:2] == (end, inputs.shape[0])
    rounds = [
        sampler.sample_jobs([SampleJob(inputs, stop - start, seed, first_sample=start)])[0]
        for start, stop in ROUNDS
    ]
    assert torch.equal(torch.cat(rounds), whole), "rounds must continue the run exactly"
    distinct = torch.unique(whole.flatten(1), dim=0).shape[0]
    assert distinct == end, f"only {distinct} of {end} passes are distinct"
    neighbour = SampleJob(inputs[:1] * 2.0, 7, seed + 1)
    start = ROUNDS[1][0]
    fused = sampler.sample_jobs([neighbour, SampleJob(inputs, end - start, seed, start)])[1]
    assert torch.equal(fused, whole[start:]), "a neighbour job changed this job's passes"
    other_seed = sampler.sample(inputs, ROW_ALIGN, seed + 1)
    assert not torch.equal(other_seed, whole[:ROW_ALIGN]), "the seed must choose the passes"
