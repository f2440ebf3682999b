from __future__ import annotations

import pytest
import torch
from torch import Tensor, fx, nn

from app.engine.compiled import compile_graph, lowered_forward


class _Layers(nn.Module):
    """Every layer kind compile_graph lowers, plus one it must call as it is (GELU)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv1d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.conv3 = nn.Conv3d(1, 2, 2)
        self.bn1 = nn.BatchNorm1d(3)
        self.bn2 = nn.BatchNorm2d(4, affine=False)
        self.pool1 = nn.MaxPool1d(2)
        self.pool2 = nn.MaxPool2d(2, stride=1, ceil_mode=True)
        self.flat = nn.Flatten()
        self.relu = nn.ReLU()
        self.gelu = nn.GELU()
        self.fc = nn.Linear(3 * 4 + 4 * 3 * 3 + 2 * 2 * 2 * 2, 5)
        for bn in (self.bn1, self.bn2):
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.pool1(self.relu(self.bn1(self.conv1(x[:, :2, :8]))))
        b = self.conv2(x[:, :3, :8].reshape(-1, 3, 2, 4).repeat(1, 1, 4, 2))
        b = self.pool2(self.gelu(self.bn2(b)))
        c = self.conv3(x[:, :1, :27].reshape(-1, 1, 3, 3, 3))
        out: Tensor = self.fc(torch.cat([self.flat(a), self.flat(b), self.flat(c)], dim=1))
        return out


def test_compiled_graph_is_bit_identical_to_the_module() -> None:
    model = _Layers().eval()
    traced = fx.symbolic_trace(model)
    run = compile_graph(traced)
    x = torch.randn(5, 3, 27)
    with torch.inference_mode():
        assert torch.equal(run(x), model(x))
        assert torch.equal(run(x[:1]), model(x[:1]))


@pytest.mark.parametrize(
    "module",
    [
        nn.Linear(4, 3),
        nn.Conv2d(4, 2, 1),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Flatten(),
    ],
)
def test_lowered_forward_matches_forward_in_eval_and_is_refused_in_training(
    module: nn.Module,
) -> None:
    x = torch.randn(6, 4, 2, 2) if isinstance(module, nn.Conv2d) else torch.randn(6, 4)
    if isinstance(module, nn.MaxPool1d):
        x = x.unsqueeze(1)
    module.eval()
    lowered = lowered_forward(module)
    assert lowered is not None
    assert torch.equal(lowered(x), module(x))
    module.train()
    assert lowered_forward(module) is None


def test_layers_that_cannot_be_lowered_are_called_as_they_are() -> None:
    class MyLinear(nn.Linear):
        pass

    no_stats = nn.BatchNorm1d(3, track_running_stats=False).eval()
    for module in (MyLinear(2, 2).eval(), no_stats, nn.ReLU(inplace=True), nn.GELU()):
        assert lowered_forward(module) is None
    assert lowered_forward(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect").eval()) is None
    assert lowered_forward(nn.MaxPool2d(2, return_indices=True).eval()) is None


def test_a_module_with_hooks_keeps_them() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU()).eval()
    calls: list[str] = []
    model[0].register_forward_hook(lambda module, args, out: calls.append("hook"))
    run = compile_graph(fx.symbolic_trace(model))
    run(torch.randn(1, 2))
    assert calls == ["hook"]


def test_dropout_calls_go_to_the_applier_with_their_layer_index() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.ReLU(), nn.Dropout(0.1)).eval()
    seen: list[tuple[int, tuple[int, ...]]] = []

    class Applier:
        def apply(self, index: int, x: Tensor) -> Tensor:
            seen.append((index, tuple(x.shape)))
            return x * 0 + index

    run = compile_graph(fx.symbolic_trace(model), {"1": 0, "3": 7})
    out = run(Applier(), torch.randn(3, 2))
    assert seen == [(0, (3, 2)), (7, (3, 2))]
    assert torch.equal(out, torch.full((3, 2), 7.0))
