"""Recurrent cores and the row-by-row sequence classifier."""

from __future__ import annotations

import pytest
import torch

from rlkit.nets.recurrent import CELLS, RecurrentCore, SequenceClassifier


def step_by_step(core: RecurrentCore, x: torch.Tensor, state: torch.Tensor, starts: torch.Tensor):
    """The reference: one step at a time, the state zeroed by hand before every step that starts an episode."""
    outputs = []
    for t in range(x.shape[0]):
        state = torch.where(starts[t].view(1, 1, -1, 1).bool(), torch.zeros_like(state), state)
        out, state = core(x[t:t + 1], state)
        outputs.append(out)
    return torch.cat(outputs), state


@pytest.mark.parametrize("cell", CELLS)
def test_core_with_resets_equals_stepping_one_step_at_a_time(cell):
    torch.manual_seed(0)
    core = RecurrentCore(3, 5, cell, num_layers=2)
    x = torch.randn(7, 4, 3)
    state = torch.randn_like(core.initial_state(4))
    starts = torch.zeros(7, 4)
    starts[0, 1] = starts[3, 0] = starts[3, 2] = starts[5, 3] = 1.0
    out, final = core(x, state, starts)
    ref_out, ref_final = step_by_step(core, x, state, starts)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(final, ref_final)


@pytest.mark.parametrize("cell", CELLS)
def test_state_is_zeroed_exactly_at_an_episode_start(cell):
    """After a reset at step t, a sequence's outputs are those of a fresh run from t: nothing leaks across."""
    torch.manual_seed(1)
    core = RecurrentCore(2, 4, cell)
    x = torch.randn(6, 2, 2)
    starts = torch.zeros(6, 2)
    starts[3, 0] = 1.0
    out, _ = core(x, torch.randn_like(core.initial_state(2)), starts)
    fresh, _ = core(x[3:, :1], core.initial_state(1))
    torch.testing.assert_close(out[3:, :1], fresh)
    without_reset, _ = core(x, core.initial_state(2) + 1.0)  # the other sequence, and a run without the reset, differ
    assert not torch.allclose(without_reset[3:, :1], fresh)


def test_state_layout_is_one_tensor_per_kind():
    assert RecurrentCore(3, 8, "lstm", 2).initial_state(5).shape == (2, 2, 5, 8)
    assert RecurrentCore(3, 8, "gru", 2).initial_state(5).shape == (1, 2, 5, 8)
    with pytest.raises(ValueError, match="lstm, gru"):
        RecurrentCore(3, 8, "rnn")


@pytest.mark.parametrize("cell", CELLS)
def test_sequence_classifier_reads_rows_in_order_and_its_gradient_is_exact(cell):
    torch.manual_seed(2)
    net = SequenceClassifier(3, in_channels=1, image_size=4, hidden=5, cell=cell).double()
    images = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    assert net(images).shape == (2, 3)
    # The rows are the time steps: the logits are the head on the core's last output over the rows in order.
    out, _ = net.core(images[:, 0].transpose(0, 1), net.core.initial_state(2))
    torch.testing.assert_close(net(images), net.fc(out[-1]))
    assert not torch.allclose(net(images.flip(2)), net(images))  # reading the rows backwards is another sequence
    assert torch.autograd.gradcheck(lambda x: net(x), (images.requires_grad_(),))
