"""Segmentation: per-pixel softmax (or sigmoid) statistics summed over passes in rounds, closed
forms, the class areas over passes, and per-image Dice."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from app.engine.evaluation.segmentation import class_dice, foreground_dice, segmentation_report
from app.engine.evaluation.targets import mask_targets
from app.engine.predictor import PredictionRequest, Predictor, TaskSpec
from app.engine.sampler import MCSampler
from app.engine.stats.dense import dense_classification_stats
from app.engine.stats.segmentation import add_passes, segmentation_stats, sums_standard_error
from app.errors import InvalidInputError
from app.tasks import RowContext, build_task
from app.tasks import segmentation as segmentation_task
from app.tasks.segmentation import Segmentation, SegmentationRow
from tests.tasks.task_contract import FixedSampler, TaskCase, check_task_contract

LN2 = math.log(2.0)


def _case(classes: int = 3, passes: int = 40) -> TaskCase:
    raw = torch.randn(passes, 3, classes, 4, 5, generator=torch.Generator().manual_seed(0))
    return TaskCase(
        spec=TaskSpec("segmentation"),
        raw=raw,
        inputs=torch.arange(3 * 20.0).view(3, 1, 4, 5),
        output_shape=[classes, 4, 5],
        wrong_shapes=[[classes], [classes, 20], [1, classes, 4, 5], [0, 4, 5]],
        labels=[f"c{c}" for c in range(max(classes, 2))],
    )


def test_segmentation_keeps_the_contract() -> None:
    check_task_contract(_case())


def test_a_one_channel_output_is_a_sigmoid_over_background_and_foreground() -> None:
    task = check_task_contract(_case(classes=1))
    raw = torch.tensor([0.0, 2.0]).view(2, 1, 1, 1, 1)
    probs = task.values(raw)
    assert probs.shape == (2, 1, 2, 1, 1)
    assert probs[1, 0, :, 0, 0].tolist() == pytest.approx(
        [1 - 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-2))]
    )
    problem = task.output_problem([1, 4, 5], ["lesion"])
    assert problem is not None and "background and foreground" in problem


def test_two_disagreeing_passes_give_ln2_of_mutual_information_at_the_pixel() -> None:
    probs = torch.zeros(2, 1, 2, 1, 2, dtype=torch.float64)  # N=2, B=1, C=2, H=1, W=2
    probs[0, 0, 0, 0, 0] = probs[1, 0, 1, 0, 0] = 1.0  # pixel 0: passes disagree
    probs[:, 0, 1, 0, 1] = 1.0  # pixel 1: both say class 1
    stats = segmentation_stats(add_passes(None, probs), 0.9, 0.5, torch.zeros(1, 1, 1, 2))
    assert stats.mutual_information[0, 0].tolist() == pytest.approx([LN2, 0.0], abs=1e-7)
    assert stats.predictive_entropy[0, 0].tolist() == pytest.approx([LN2, 0.0], abs=1e-7)
    assert stats.expected_entropy[0, 0].tolist() == [0.0, 0.0]
    assert stats.mask[0, 0].tolist() == [0, 1]  # a tie goes to the first class
    assert float(stats.mean_mutual_information[0]) == pytest.approx(LN2 / 2)
    assert float(stats.foreground_mutual_information[0]) == pytest.approx(0.0)  # pixel 1 only
    assert float(stats.uncertain_share[0]) == 0.5


def test_areas_are_the_passes_own_masks_with_an_interval() -> None:
    # 5 passes over a 1 x 4 image: pass t puts class 1 on its first t pixels.
    probs = torch.zeros(5, 1, 2, 1, 4)
    for t in range(5):
        probs[t, 0, 1, 0, :t] = 0.9
        probs[t, 0, 0] = 1 - probs[t, 0, 1]
    stats = segmentation_stats(add_passes(None, probs), 0.5, 0.1, torch.zeros(1, 1, 1, 4))
    assert stats.area_mean[0].tolist() == pytest.approx([2.0, 2.0])
    # areas of class 1: 0, 1, 2, 3, 4; the 25% and 75% quantiles: 1 and 3
    assert stats.area_lower[0].tolist() == pytest.approx([1.0, 1.0])
    assert stats.area_upper[0].tolist() == pytest.approx([3.0, 3.0])
    # p̄ of class 1: (0 + .9 + 1.8 + 2.7 + 3.6) / 5 on pixel 0 ... only pixels 0, 1 reach 0.5
    assert stats.area[0].tolist() == [2, 2]


def test_sums_over_rounds_equal_the_direct_computation_on_all_passes() -> None:
    probs = torch.softmax(
        torch.randn(37, 2, 3, 4, 6, generator=torch.Generator().manual_seed(2)), 2
    )
    sums = None
    for start in range(0, 37, 10):
        sums = add_passes(sums, probs[start : start + 10])
    assert sums is not None and sums.passes == 37
    stats = segmentation_stats(sums, 0.9, 0.1, torch.zeros(2, 1, 4, 6))
    direct = dense_classification_stats(probs.movedim(2, -1).double())
    torch.testing.assert_close(stats.mean.double(), direct.mean.movedim(-1, 1), atol=1e-6, rtol=0)
    for name in ("predictive_entropy", "expected_entropy", "mutual_information"):
        torch.testing.assert_close(
            getattr(stats, name).double(), getattr(direct, name), atol=1e-6, rtol=0
        )
    assert torch.equal(stats.mask, direct.predicted_class)
    se = (probs.double().std(dim=0) / math.sqrt(37)).max()
    assert sums_standard_error(sums) == pytest.approx(float(se), rel=1e-6)  # float32 terms


def test_a_request_gives_the_same_bits_whatever_the_round_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = _case(passes=80)
    predictor = Predictor(FixedSampler(case.raw, case.inputs), case.spec)  # type: ignore[arg-type]
    request = PredictionRequest(case.inputs, 80, 0.9, seed=1)
    whole = predictor.predict(request)
    monkeypatch.setattr(segmentation_task, "ROUND_VALUES", 1)  # rounds of ROW_ALIGN passes
    rounds = predictor.predict(request)
    assert whole.n_samples == rounds.n_samples == 80
    for name in ("mean", "mutual_information", "area_mean", "area_upper"):
        torch.testing.assert_close(getattr(rounds.stats, name), getattr(whole.stats, name))


def test_adaptive_n_stops_after_the_round_that_meets_the_tolerance() -> None:
    case = _case(passes=200)
    predictor = Predictor(FixedSampler(case.raw, case.inputs), case.spec)  # type: ignore[arg-type]
    loose = predictor.predict(PredictionRequest(case.inputs, 200, 0.9, seed=1, tolerance=0.5))
    assert loose.n_samples == 16 and loose.converged
    tight = predictor.predict(PredictionRequest(case.inputs, 200, 0.9, seed=1, tolerance=1e-9))
    assert tight.n_samples == 200 and tight.converged is False


def test_held_values_grow_with_n_only_through_return_samples() -> None:
    task = Segmentation()
    shape = [2, 128, 128]
    assert task.held_values(1, 1000, shape, False) == task.held_values(1, 10_000, shape, False)
    assert task.held_values(1, 1000, shape, True) > task.held_values(1, 1000, shape, False)


def test_rows_carry_areas_and_maps_in_the_asked_format() -> None:
    case = _case(classes=2)
    predictor = Predictor(FixedSampler(case.raw, case.inputs), case.spec)  # type: ignore[arg-type]
    prediction = predictor.predict(PredictionRequest(case.inputs, 40, 0.9, seed=1))
    task = predictor.task
    rows = task.rows(prediction, RowContext(["bg", "lesion"], maps="json"))
    row = rows[0]
    assert isinstance(row, SegmentationRow) and row.maps is not None
    assert row.areas[1].label == "lesion" and row.areas[1].pixels == int(
        prediction.stats.area[0, 1]
    )
    assert row.maps.mask == prediction.stats.mask[0].tolist()
    bare = task.rows(prediction, RowContext(None, maps="none"))[0]
    assert isinstance(bare, SegmentationRow) and bare.maps is None


def test_dice_closed_forms() -> None:
    target = torch.tensor([[[0, 1, 1, 0]]])
    mask = torch.tensor([[[0, 1, 0, 0]]])
    assert foreground_dice(mask, target).tolist() == pytest.approx([2 * 1 / 3])
    assert class_dice(mask, target, 3)[0].tolist() == pytest.approx([2 * 2 / 5, 2 / 3, 1.0])
    empty = torch.zeros(1, 1, 4, dtype=torch.long)
    assert foreground_dice(empty, empty).tolist() == [1.0]  # nothing to find, nothing found


def test_the_report_scores_each_image_with_its_uncertainty() -> None:
    probs = torch.zeros(2, 2, 2, 1, 2)
    probs[:, 0, 1] = 1.0  # image 0: every pass says class 1 everywhere
    probs[0, 1, 1] = probs[1, 1, 0] = 1.0  # image 1: passes disagree everywhere
    report = segmentation_report(probs, torch.ones(2, 1, 2, dtype=torch.long))
    first, second = report.images
    assert first.foreground_dice == 1.0 and first.mean_mutual_information == 0.0
    assert second.foreground_dice == 0.0 and second.mean_mutual_information == pytest.approx(LN2)
    assert report.mean_foreground_dice == 0.5


def test_targets_are_masks_of_the_output_size_with_known_classes() -> None:
    task = build_task("segmentation")
    parsed = task.parse_targets([[[0, 1], [1, 1]]], None, [2, 2, 2])
    assert parsed.tolist() == [[[0, 1], [1, 1]]]
    for wrong in ([[0, 1]], [[0, 1], [1, 2]], [[0, 1], [1, 1.5]], "x", [[0, 1], [1, 2**70]]):
        with pytest.raises(InvalidInputError) as refused:
            mask_targets([[[0, 0], [0, 0]], wrong], (2, 2), 2)
        assert refused.value.field == "targets[1]"


def test_the_overlay_draws_the_contour_and_the_heatmap() -> None:
    from app.tasks.segmentation_overlay import CONTOUR_RGB, HEAT_RGB, contour, overlay

    mask = torch.zeros(5, 5, dtype=torch.long)
    mask[1:4, 1:4] = 1
    edge = contour(mask.numpy())
    assert edge.sum() == 8 and not edge[2, 2]  # the square's ring, not its centre
    mi = torch.zeros(5, 5)
    mi[0, 0] = LN2  # the largest MI of two classes: the full heat colour at opacity 1
    drawn = overlay(torch.zeros(1, 5, 5), mask, mi, 2, opacity=1.0)
    assert tuple(drawn[1, 1]) == CONTOUR_RGB and tuple(drawn[0, 0]) == HEAT_RGB
    assert tuple(drawn[2, 2]) == (0, 0, 0) and tuple(drawn[4, 4]) == (0, 0, 0)


def test_class_argmax_is_torch_argmax_with_the_first_class_on_ties() -> None:
    from app.engine.stats.segmentation import class_argmax

    probs = torch.randint(0, 3, (4, 2, 5, 3, 3), generator=torch.Generator().manual_seed(3))
    assert torch.equal(class_argmax(probs.float()), probs.float().argmax(dim=2))


def test_fused_requests_get_their_own_numbers_and_failures() -> None:
    case = _case(passes=48)
    predictor = Predictor(FixedSampler(case.raw, case.inputs), case.spec)  # type: ignore[arg-type]
    first = PredictionRequest(case.inputs[:1], 48, 0.9, seed=1)
    second = PredictionRequest(case.inputs[1:], 20, 0.8, seed=1)
    together = predictor.predict_each([first, second])
    for request, fused in zip((first, second), together, strict=True):
        alone = predictor.predict(request)
        assert not isinstance(fused, Exception) and fused.n_samples == request.n_samples
        for name in ("mean", "mutual_information", "area_lower", "area_upper"):
            assert torch.equal(getattr(fused.stats, name), getattr(alone.stats, name)), name
    broken = case.raw.clone()
    broken[:, 1] = float("nan")  # the second row's passes are not finite
    predictor = Predictor(FixedSampler(broken, case.inputs), case.spec)  # type: ignore[arg-type]
    outcomes = predictor.predict_each([first, second])
    assert not isinstance(outcomes[0], Exception)
    assert isinstance(outcomes[1], InvalidInputError)


def test_the_prefix_runs_once_per_request_over_its_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.registry.loading import load_model_folder
    from tests.segmentation_models import images, write_unet_folder

    folder = write_unet_folder(tmp_path, kwargs={"p": 0.3}, mc_dropout="head")
    model = load_model_folder(folder)
    sampler = model.predictor.sampler
    assert isinstance(sampler, MCSampler)
    calls: list[int] = []
    prefix = sampler.split.prefix

    def counted(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls.append(int(x.shape[0]))
        found: tuple[torch.Tensor, ...] = prefix(x)
        return found

    monkeypatch.setattr(sampler, "split", dataclasses.replace(sampler.split, prefix=counted))
    monkeypatch.setattr(segmentation_task, "ROUND_VALUES", 1)  # rounds of ROW_ALIGN passes
    x = images(3)
    first = PredictionRequest(x[:2], 48, 0.9, seed=3, return_samples=True)
    second = PredictionRequest(x[2:], 40, 0.9, seed=4, return_samples=True)
    fused = model.predictor.predict_each([first, second])
    assert calls == [2, 1]  # once per request, not per round (3 rounds each)
    for request, prediction in zip((first, second), fused, strict=True):
        assert not isinstance(prediction, Exception) and prediction.samples is not None
        passes = sampler.sample(request.inputs, request.n_samples, int(request.seed or 0))
        assert torch.equal(prediction.samples, torch.softmax(passes.float(), dim=2))


@pytest.mark.parametrize("call_rows", [4, 1])
def test_calls_of_fewer_rows_keep_a_requests_bits_alone_fused_and_in_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call_rows: int
) -> None:
    from app.engine import row_calls
    from app.registry.loading import load_model_folder
    from tests.segmentation_models import images, write_unet_folder

    folder = write_unet_folder(tmp_path, kwargs={"p": 0.3, "bottleneck_p": 0.2})
    model = load_model_folder(folder)
    sampler = model.predictor.sampler
    assert isinstance(sampler, MCSampler)
    x = images(4)
    sixteen = sampler.sample(x[:3], 40, seed=3)  # calls of ROW_ALIGN rows
    split = sampler.split
    assert sampler.call_bytes == row_calls.CALL_ACTIVATION_BYTES  # set by the dense task
    assert row_calls.call_rows(split, x[0], sampler.dropout_layers, sampler.call_bytes) == 16
    monkeypatch.setattr(sampler, "call_bytes", call_rows * split.row_bytes)
    assert row_calls.call_rows(split, x[0], sampler.dropout_layers, sampler.call_bytes) == call_rows
    # 3 rows: calls of 4 or 1 rows cut across samples
    first = PredictionRequest(x[:3], 40, 0.9, seed=3, return_samples=True)
    second = PredictionRequest(x[3:], 20, 0.9, seed=4, return_samples=True)
    alone = sampler.sample(first.inputs, 40, seed=3)
    torch.testing.assert_close(alone, sixteen, atol=1e-5, rtol=1e-5)  # the same masks
    monkeypatch.setattr(segmentation_task, "ROUND_VALUES", 1)  # rounds of ROW_ALIGN passes
    fused = model.predictor.predict_each([first, second])
    for request, prediction in zip((first, second), fused, strict=True):
        assert not isinstance(prediction, Exception) and prediction.samples is not None
        passes = sampler.sample(request.inputs, request.n_samples, int(request.seed or 0))
        assert torch.equal(prediction.samples, torch.softmax(passes.float(), dim=2))
    kept = fused[0].samples  # type: ignore[union-attr]
    assert kept is not None and torch.equal(torch.softmax(alone, dim=2), kept)
