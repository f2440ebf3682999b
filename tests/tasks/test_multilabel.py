"""Multi-label: a sigmoid per label, binary entropies per label, closed-form answers."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.evaluation.multilabel import label_f1, multilabel_report
from app.engine.evaluation.targets import label_set_targets
from app.engine.predictor import TaskSpec
from app.engine.stats.multilabel import binary_entropy, multilabel_stats
from app.errors import InvalidInputError
from app.tasks import RowContext
from app.tasks.multilabel import MultilabelRow
from tests.tasks.task_contract import TaskCase, check_task_contract, predict

LN2 = math.log(2.0)


def _case(threshold: float = 0.5) -> TaskCase:
    raw = torch.randn(40, 3, 4, generator=torch.Generator().manual_seed(0))
    return TaskCase(
        spec=TaskSpec("multilabel", threshold=threshold),
        raw=raw,
        inputs=torch.arange(6.0).view(3, 2),
        output_shape=[4],
        wrong_shapes=[[4, 2], [2, 32, 32], [3]],
        labels=["a", "b", "c", "d"],
    )


def test_multilabel_keeps_the_contract() -> None:
    check_task_contract(_case())


def test_two_passes_at_zero_and_one_give_ln2_of_mutual_information_per_label() -> None:
    probs = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]], dtype=torch.float64)  # N=2, B=1, K=2
    stats = multilabel_stats(probs, 0.9, 0.5)
    assert stats.mutual_information[0].tolist() == pytest.approx([LN2, LN2], abs=1e-15)
    assert stats.predictive_entropy[0].tolist() == pytest.approx([LN2, LN2], abs=1e-15)
    assert stats.expected_entropy.tolist() == [[0.0, 0.0]]
    assert stats.std.tolist() == [[0.5, 0.5]]
    assert stats.predicted.tolist() == [[True, True]]  # p̄ = 0.5 reaches a 0.5 threshold


def test_agreeing_passes_have_no_mutual_information_and_their_own_entropy() -> None:
    probs = torch.full((5, 1, 2), 0.3, dtype=torch.float64)
    probs[..., 1] = 0.9
    stats = multilabel_stats(probs, 0.9, 0.5)
    assert stats.mutual_information.tolist() == [[0.0, 0.0]]
    h = [-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in (0.3, 0.9)]
    assert stats.predictive_entropy[0].tolist() == pytest.approx(h, abs=1e-15)
    assert stats.expected_entropy[0].tolist() == pytest.approx(h, abs=1e-15)
    assert stats.predicted.tolist() == [[False, True]]


def test_binary_entropy_is_zero_at_certainty_and_ln2_at_a_half() -> None:
    assert binary_entropy(torch.tensor([0.0, 1.0, 0.5])).tolist() == pytest.approx([0, 0, LN2])


def test_rows_are_sigmoid_means_with_the_labels_at_or_over_the_threshold() -> None:
    case = _case(threshold=0.6)
    prediction = predict(case)
    rows = prediction_rows(case, prediction)
    mean = torch.sigmoid(case.raw).mean(0)
    for row, expected in zip(rows, mean.tolist(), strict=True):
        assert row.mean == pytest.approx(expected, rel=1e-6)
        assert row.predicted_labels == [
            label for label, p in zip("abcd", row.mean, strict=True) if p >= 0.6
        ]
        assert row.threshold == 0.6
        assert len(row.mutual_information) == len(row.predictive_entropy) == 4


def prediction_rows(case: TaskCase, prediction: object) -> list[MultilabelRow]:
    task = check_task_contract(case)
    rows = task.rows(prediction, RowContext(case.labels))  # type: ignore[arg-type]
    assert all(isinstance(row, MultilabelRow) for row in rows)
    return rows  # type: ignore[return-value]


def test_targets_are_label_sets_by_name_or_index_and_errors_name_the_entry() -> None:
    parsed = label_set_targets([["b"], [], [0, "c"]], ["a", "b", "c"], 3)
    assert parsed.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 1]]
    with pytest.raises(InvalidInputError) as refused:
        label_set_targets([["a"], "b"], ["a", "b", "c"], 3)
    assert refused.value.field == "targets[1]"
    with pytest.raises(InvalidInputError) as unknown:
        label_set_targets([["z"]], ["a", "b", "c"], 3)
    assert unknown.value.field == "targets[0]"


def test_evaluation_gives_per_label_brier_ece_and_macro_f1() -> None:
    # Two rows, two labels, one pass each: p̄ = the pass.
    probs = torch.tensor([[[0.8, 0.4], [0.2, 0.7]]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    report = multilabel_report(probs, targets, 0.5)
    assert report.brier == pytest.approx([(0.2**2 + 0.2**2) / 2, (0.6**2 + 0.7**2) / 2])
    # label 0: predicted {row 0}, true {row 0}: F1 1; label 1: predicted {row 1}, true {row 0}
    assert report.f1 == [1.0, 0.0]
    assert report.macro_f1 == 0.5
    assert report.exact_match == 0.0  # row 0 misses label 1, row 1 has a label too many
    # label 0: bins hold p 0.8 (true) and 0.2 (false): |1 - 0.8| and |0 - 0.2|, each half
    assert report.ece == pytest.approx([0.2, (0.6 + 0.7) / 2])


def test_f1_of_a_label_neither_present_nor_predicted_is_zero() -> None:
    none = torch.zeros(3, 1, dtype=torch.bool)
    assert label_f1(none, none).tolist() == [0.0]
