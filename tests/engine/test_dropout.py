from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.engine.dropout import (
    MaskKind,
    apply_mask,
    find_dropout_layers,
    is_traced_dropout,
    mask_shape,
    require_active_dropout,
    warn_functional_dropout,
)
from app.errors import ModelLoadError


class _CustomDropout(nn.Dropout2d):
    pass


def test_finds_every_dropout_kind_with_its_mask_kind() -> None:
    model = nn.Sequential(
        nn.Dropout(0.1),
        nn.Dropout1d(0.2),
        nn.Dropout2d(0.3),
        nn.Dropout3d(0.4),
        nn.AlphaDropout(0.5),
        nn.FeatureAlphaDropout(0.6),
        _CustomDropout(0.7),
        nn.BatchNorm1d(3),
    )
    layers = find_dropout_layers(model)
    assert [layer.name for layer in layers] == ["0", "1", "2", "3", "4", "5", "6"]
    assert [layer.p for layer in layers] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    kinds = [layer.mask_kind for layer in layers]
    assert kinds == [MaskKind.ELEMENT] + [MaskKind.CHANNEL] * 3 + [
        MaskKind.ELEMENT,
        MaskKind.CHANNEL,
        MaskKind.CHANNEL,
    ]
    assert [layer.alpha for layer in layers] == [False] * 4 + [True, True, False]


def test_finds_dropout_inside_torchscript() -> None:
    scripted = torch.jit.script(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.25)))
    layers = find_dropout_layers(scripted)
    assert [(layer.name, layer.p) for layer in layers] == [("1", 0.25)]


def test_refuses_models_without_usable_dropout() -> None:
    with pytest.raises(ModelLoadError, match="no dropout module"):
        require_active_dropout(find_dropout_layers(nn.Linear(2, 2)), "m")
    zero = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0))
    with pytest.raises(ModelLoadError, match="p = 0"):
        require_active_dropout(find_dropout_layers(zero), "m")


class _FunctionalNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.5, training=self.training)


def test_warns_about_functional_dropout(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        found = warn_functional_dropout(nn.Sequential(_FunctionalNet()), "m")
    assert found == [f"{__name__}._FunctionalNet"]
    assert "functional dropout" in caplog.text
    assert warn_functional_dropout(nn.Sequential(nn.Dropout(0.5)), "m") == []


def test_mask_shape_per_kind() -> None:
    assert mask_shape(MaskKind.ELEMENT, torch.Size([4, 5, 6])) == (4, 5, 6)
    assert mask_shape(MaskKind.CHANNEL, torch.Size([4, 5, 6])) == (4, 1, 1)
    assert mask_shape(MaskKind.CHANNEL, torch.Size([4])) == (4,)


def test_apply_mask_scales_kept_units_by_inverse_keep_probability() -> None:
    x = torch.full((1, 1, 4), 3.0)
    keep = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    assert torch.equal(apply_mask(x, keep, 0.5, alpha=False), torch.tensor([[[6.0, 0, 6.0, 0]]]))


def test_alpha_mask_matches_torch_formula_and_keeps_moments() -> None:
    p = 0.2
    alpha_prime = 1.7580993408473766
    a = (1.0 / ((alpha_prime**2 * p + 1) * (1 - p))) ** 0.5
    x = torch.tensor([[[2.0, 2.0]]])
    out = apply_mask(x, torch.tensor([[[1.0, 0.0]]]), p, alpha=True)
    expected = torch.tensor(
        [[[a * 2.0 + alpha_prime * a * p, -alpha_prime * a + alpha_prime * a * p]]]
    )
    torch.testing.assert_close(out, expected)
    torch.manual_seed(0)
    z = torch.randn(1, 1, 400_000)
    keep = (torch.rand_like(z) >= p).float()
    dropped = apply_mask(z, keep, p, alpha=True)
    assert abs(dropped.mean().item()) < 0.01 and abs(dropped.std().item() - 1.0) < 0.01


def _traced_and_scripted() -> tuple[nn.Module, nn.Module]:
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 2)).eval()
    example = torch.randn(3, 2)
    return torch.jit.trace(model, example), torch.jit.script(model)  # type: ignore[no-untyped-call]


def test_traced_dropout_is_refused_with_the_reason() -> None:
    traced, scripted = _traced_and_scripted()
    traced_layers, scripted_layers = find_dropout_layers(traced), find_dropout_layers(scripted)
    assert [is_traced_dropout(layer.module) for layer in traced_layers] == [True]
    assert [is_traced_dropout(layer.module) for layer in scripted_layers] == [False]
    with pytest.raises(ModelLoadError, match=r"traced with torch\.jit\.trace: dropout is fixed"):
        require_active_dropout(traced_layers, "traced")
    require_active_dropout(scripted_layers, "scripted")
