"""rlkit.optim: the one optimizer step, Polyak averaging and the linear schedule, on hand-computed numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlkit.optim import linear_schedule, optimizer_step, polyak_update


def test_optimizer_step_clips_the_global_norm_and_steps():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = torch.optim.SGD([w], lr=1.0)
    # d/dw (w . [3, 4]) = [3, 4]: norm 5, clipped to 1 -> [0.6, 0.8]
    norm = optimizer_step(optimizer, (w * torch.tensor([3.0, 4.0])).sum(), [w], max_grad_norm=1.0)
    assert norm == pytest.approx(5.0)
    torch.testing.assert_close(w.detach(), torch.tensor([2.4, 3.2]))
    # Gradients do not accumulate over calls; no clipping below the threshold.
    norm = optimizer_step(optimizer, (w * torch.tensor([3.0, 4.0])).sum(), [w], max_grad_norm=10.0)
    assert norm == pytest.approx(5.0)
    torch.testing.assert_close(w.detach(), torch.tensor([-0.6, -0.8]))


def test_only_params_leaves_other_gradients_alone():
    a, b = nn.Parameter(torch.tensor(2.0)), nn.Parameter(torch.tensor(3.0))
    optimizer_step(torch.optim.SGD([a], lr=0.5), a * b, [a], only_params=True)
    assert b.grad is None and a.item() == pytest.approx(2.0 - 0.5 * 3.0)


def test_apply_to_steps_the_shared_parameters_with_the_copy_gradients():
    """Hogwild (A3C): the loss is taken on a worker's copy; the shared parameters move, the copy does not."""
    shared = nn.Parameter(torch.tensor([1.0, 1.0]))
    local = nn.Parameter(torch.tensor([2.0, 0.0]))
    optimizer = torch.optim.SGD([shared], lr=0.1)
    for _ in range(2):  # the second call must not add the first call's gradient
        norm = optimizer_step(optimizer, local.pow(2).sum() / 2, [local], apply_to=[shared])  # grad = local
        assert norm == pytest.approx(2.0)
    torch.testing.assert_close(shared.detach(), torch.tensor([1.0 - 0.4, 1.0]))
    torch.testing.assert_close(local.detach(), torch.tensor([2.0, 0.0]))


def test_polyak_update_moves_the_target_by_tau():
    target, online = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        target.weight.fill_(1.0), online.weight.fill_(3.0)
    polyak_update(target, online, 0.25)
    assert target.weight.item() == pytest.approx(1.5)


def test_linear_schedule():
    assert [linear_schedule(1.0, 0.0, 4, t) for t in (0, 1, 4, 8)] == [1.0, 0.75, 0.0, 0.0]
    assert linear_schedule(1.0, 0.2, 0, 0) == 0.2
