from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from app.engine.dropout import find_dropout_layers
from app.engine.prefix import fx_split
from app.engine.sampler import MCSampler, plan_chunks
from app.engine.sampling import SampleJob
from app.engine.scripted import ScriptedSampler
from tests.support import small_mlp


def _sampler(model: nn.Module, max_rows: int = 10_000, split: bool = False) -> MCSampler:
    """Hooks on the whole model, or (split=True) the fx prefix split the server uses."""
    layers = find_dropout_layers(model)
    if not split:
        return MCSampler(model, layers, max_rows=max_rows)
    in_features = next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features
    model_split = fx_split(model, layers, torch.randn(3, in_features))
    assert model_split.applies_dropout, model_split.reason
    return MCSampler(model, layers, max_rows=max_rows, split=model_split)


class _TwoDropouts(nn.Module):
    """Dropout on the prefix output and again deeper, plus a skip that crosses the split."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Linear(3, 8)
        self.drop1 = nn.Dropout(0.3)
        self.mid = nn.Linear(8, 8)
        self.drop2 = nn.Dropout(0.6)
        self.out = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.body(x))
        out: Tensor = self.out(self.drop2(torch.relu(self.mid(self.drop1(h)))) + h)
        return out


def _models() -> list[nn.Module]:
    return [small_mlp(), _TwoDropouts().eval()]


SPLIT = pytest.mark.parametrize("split", [False, True], ids=["hooks", "fx-split"])


def _job(rows: int, n: int, seed: int = 0) -> SampleJob:
    return SampleJob(torch.zeros(rows, 3), n, seed)


def test_plan_chunks_packs_aligned_pieces_under_the_row_limit() -> None:
    chunks = plan_chunks([_job(3, 40), _job(2, 4)], max_rows=64)
    spans = [[(p.job, p.t0, p.t1, p.padded_rows) for p in chunk] for chunk in chunks]
    # 64 rows hold 21 samples of 3 rows; chunks break at multiples of 16 samples
    assert spans == [[(0, 0, 16, 48)], [(0, 16, 32, 48)], [(0, 32, 40, 32), (1, 0, 4, 16)]]
    assert all(sum(p.padded_rows for p in chunk) <= 64 for chunk in chunks)


def test_plan_chunks_starts_at_the_first_sample() -> None:
    job = SampleJob(torch.zeros(1, 3), n_samples=20, seed=0, first_sample=32)
    assert [(p.t0, p.t1) for c in plan_chunks([job], 1000) for p in c] == [(32, 52)]


def test_plan_chunks_never_plans_past_the_last_sample() -> None:
    chunks = plan_chunks([_job(1, 20)], max_rows=7)  # fewer rows than ROW_ALIGN fit a chunk
    assert [(p.t0, p.t1) for c in chunks for p in c] == [(0, 7), (7, 14), (14, 20)]


def test_plan_chunks_runs_a_row_wider_than_the_limit_one_sample_at_a_time() -> None:
    chunks = plan_chunks([_job(10, 3)], max_rows=4)
    assert [[(p.t0, p.t1) for p in chunk] for chunk in chunks] == [[(0, 1)], [(1, 2)], [(2, 3)]]


def test_output_shape_and_variance_with_dropout() -> None:
    x = torch.randn(4, 3)
    out = _sampler(small_mlp()).sample(x, 30, seed=1)
    assert out.shape == (30, 4, 2)
    assert (out.var(dim=0) > 0).all()


@SPLIT
def test_variance_is_zero_when_p_is_forced_to_zero(split: bool) -> None:
    model = small_mlp()
    sampler = _sampler(model, split=split)
    for layer in sampler.dropout_layers:
        layer.module.p = 0.0  # type: ignore[assignment]
    x = torch.randn(4, 3)
    out = sampler.sample(x, 30, seed=1)
    assert torch.equal(out.var(dim=0), torch.zeros(4, 2))
    with torch.no_grad():
        torch.testing.assert_close(out[0], model(x))


@SPLIT
def test_same_seed_same_numbers_other_seed_other_numbers(split: bool) -> None:
    sampler = _sampler(small_mlp(), split=split)
    x = torch.randn(4, 3)
    assert torch.equal(sampler.sample(x, 20, seed=5), sampler.sample(x, 20, seed=5))
    assert not torch.equal(sampler.sample(x, 20, seed=5), sampler.sample(x, 20, seed=6))


@SPLIT
@pytest.mark.parametrize("rows", [1, 2, 5])
def test_chunked_sampling_equals_unchunked_under_the_same_seed(split: bool, rows: int) -> None:
    x = torch.randn(rows, 3)
    for model in _models():
        whole = _sampler(model, max_rows=100_000, split=split).sample(x, 200, seed=3)
        for max_rows in (1, 7, 64, 80, 333):
            chunked = _sampler(model, max_rows=max_rows, split=split).sample(x, 200, seed=3)
            assert torch.equal(chunked, whole), max_rows


@SPLIT
@pytest.mark.parametrize("rows", [1, 4, 3])
def test_results_do_not_depend_on_other_jobs(split: bool, rows: int) -> None:
    for model in _models():
        sampler = _sampler(model, max_rows=50, split=split)
        x = torch.randn(rows, 3)
        alone = sampler.sample(x, 40, seed=9)
        jobs = [_job(7, 13, seed=1), SampleJob(x, 40, 9), _job(1, 3, seed=2)]
        assert torch.equal(sampler.sample_jobs(jobs)[1], alone)
        assert torch.equal(sampler.sample(x, 10, seed=9), alone[:10])
        assert torch.equal(_sampler(model, split=split).sample(x, 40, seed=9), alone)


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_split_and_hooks_sample_the_same_masks(rows: int) -> None:
    """The fx suffix (masks applied while repeating the prefix output) and the hooks on the
    whole model draw the same masks: equal up to float rounding of the prefix's row count."""
    x = torch.randn(rows, 3)
    for model in _models():
        hooked = _sampler(model).sample(x, 37, seed=2)
        split = _sampler(model, split=True).sample(x, 37, seed=2)
        torch.testing.assert_close(split, hooked, rtol=1e-6, atol=1e-6)


def test_batchnorm_running_stats_and_eval_mode_survive_sampling() -> None:
    model = small_mlp(batchnorm=True)
    bn = list(model.children())[1]
    assert isinstance(bn, nn.BatchNorm1d)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sampler = _sampler(model, max_rows=64)
    for seed in range(3):
        sampler.sample(torch.randn(8, 3) * 5 + 2, 50, seed)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m.training for m in model.modules())


def test_hooks_are_inert_outside_a_run_and_removed_on_close() -> None:
    model = small_mlp()
    x = torch.randn(4, 3)
    with torch.no_grad():
        plain = model(x)
        sampler = _sampler(model)
        assert torch.equal(model(x), plain)
        sampler.sample(x, 5, 0)
        assert torch.equal(model(x), plain)
        sampler.close()
        assert not any(m._forward_hooks for m in model.modules())


def test_channel_dropout_after_a_prefix_masks_whole_channels_per_sample() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Dropout2d(0.5), nn.Flatten()).eval()
    layers = find_dropout_layers(model)
    split = fx_split(model, layers, torch.randn(3, 2, 5, 5))
    assert split.prefix_fraction == 1.0 and split.dropout_inputs == frozenset({0})
    sampler = MCSampler(model, layers, max_rows=10_000, split=split)
    x = torch.randn(2, 2, 5, 5)
    out = sampler.sample(x, 24, seed=1).view(24, 2, 4, 25)
    with torch.no_grad():
        plain = model(x).view(2, 4, 25)
    kept = (out != 0).all(-1)
    assert torch.equal(kept[:, 0], kept[:, 1]) and kept.any() and not kept.all()
    expected = torch.where(kept[..., None], plain * 2.0, 0.0)  # kept channels scaled by 1/(1-p)
    torch.testing.assert_close(out, expected)
    alone = sampler.sample(x[:1], 24, seed=1)
    fused = sampler.sample_jobs([SampleJob(x[1:], 5, 0), SampleJob(x[:1], 24, 1)])[1]
    assert torch.equal(alone, fused)


@pytest.mark.parametrize("dropout", [nn.AlphaDropout(0.3), nn.FeatureAlphaDropout(0.3)])
def test_alpha_dropout_after_a_prefix_samples_like_the_hooked_model(dropout: nn.Module) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 8), nn.SELU(), dropout, nn.Linear(8, 2)).eval()
    x = torch.randn(3, 3)
    split = _sampler(model, split=True)
    sampled = split.sample(x, 40, seed=4)
    torch.testing.assert_close(sampled, _sampler(model).sample(x, 40, seed=4))
    assert (sampled.var(0) > 0).all()
    fused = split.sample_jobs([SampleJob(x[:1], 7, 0), SampleJob(x, 40, 4)])[1]
    assert torch.equal(fused, sampled)


def test_channel_dropout_zeroes_whole_channels() -> None:
    model = nn.Sequential(nn.Dropout2d(0.5)).eval()
    out = _sampler(model).sample(torch.ones(2, 6, 3, 3), 8, seed=0)
    per_channel = out.flatten(3)  # (N, B, C, H*W)
    assert torch.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    assert torch.equal(out[:, 0], out[:, 1])  # one mask per sample, shared by the rows


def test_scripted_sampler_is_seeded_and_chunk_invariant_within_blocks() -> None:
    scripted = torch.jit.script(small_mlp())
    layers = find_dropout_layers(scripted)
    x = torch.randn(3, 3)
    a = ScriptedSampler(scripted, layers, max_rows=10_000).sample(x, 100, seed=4)
    b = ScriptedSampler(scripted, layers, max_rows=10_000).sample(x, 100, seed=4)
    assert a.shape == (100, 3, 2) and torch.equal(a, b)
    assert (a.var(0) > 0).all()
    assert not any(layer.module.training for layer in layers)
