"""Rainbow's parts in the DQN family, against hand-computed numbers: the C51 projection and loss, noisy layers,
DrQ's random shift, and the c51 / rainbow agents end to end."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import evaluate
import train
from rlkit.agents import AGENTS
from rlkit.agents.distributional import categorical_projection, cross_entropy, kl_divergence
from rlkit.agents.dqn import DQN
from rlkit.checkpoint import load_checkpoint
from rlkit.errors import UserError
from rlkit.jobs import JOBS
from rlkit.nets import NoisyLinear, noise_off, random_shift, reset_noise
from tests.test_dqn import make_batch

SUPPORT = torch.tensor([-1.0, 0.0, 1.0])  # 3 atoms, spacing 1


# ---------------------------------------------------------------------------------------------- C51 projection
def test_projection_by_hand():
    """Row 0: r = 0.5, discount 0.9: Tz = (-0.4, 0.5, 1.4 -> clipped to 1), at positions (0.6, 1.5, 2) on the
    support; atom 0 splits 0.2 as 0.4 / 0.6 between atoms 0 and 1, atom 1 splits 0.3 evenly between 1 and 2, atom 2
    fell outside the support and keeps 0.5 on atom 2: (0.08, 0.12 + 0.15, 0.15 + 0.5).
    Row 1: terminal (discount 0), r = -0.25: every atom lands on -0.25, position 0.75: (0.25, 0.75, 0)."""
    next_probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    target = categorical_projection(next_probs, torch.tensor([0.5, -0.25]), torch.tensor([0.9, 0.0]), SUPPORT)
    torch.testing.assert_close(target, torch.tensor([[0.08, 0.27, 0.65], [0.25, 0.75, 0.0]]))


def test_projection_keeps_an_atom_landing_on_a_support_point():
    """r = 1, discount 1 shifts every atom by exactly one spacing: the mass moves whole, the top two pile up."""
    target = categorical_projection(torch.tensor([[0.2, 0.3, 0.5]]), torch.tensor([1.0]), torch.tensor([1.0]),
                                    SUPPORT)
    torch.testing.assert_close(target, torch.tensor([[0.0, 0.2, 0.8]]))


def test_cross_entropy_and_kl_by_hand():
    target, probs = torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([[0.25, 0.5, 0.25]])
    ce = -(0.5 * math.log(0.25) + 0.5 * math.log(0.5))
    torch.testing.assert_close(cross_entropy(target, probs.log()), torch.tensor([ce]))
    torch.testing.assert_close(kl_divergence(target, probs.log()), torch.tensor([ce + 2 * 0.5 * math.log(0.5)]))


OBS_SPACE = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
ACTION_SPACE = gym.spaces.Discrete(2)


def c51_agent(**changes) -> DQN:
    """A C51 agent on 2-d obs with the 3-atom support and a linear head: logits = W s + b, (A * N) rows."""
    config = dataclasses.replace(JOBS["agent"].preset({"agent": "c51", "env": "CartPole"}),
                                 **{"hidden": (), "num_atoms": 3, "v_min": -1.0, "v_max": 1.0, **changes})
    return DQN(config, OBS_SPACE, ACTION_SPACE, total_steps=1000, seed=0)


def test_target_distribution_uses_the_greedy_next_action():
    """Zero weights: logits are the biases. Action 0's atoms (log 0.2, log 0.3, log 0.5) have mean 0.3, action 1's
    (log 0.5, log 0.3, log 0.2) mean -0.3: a* = 0, and row 0 of the hand projection above follows."""
    agent = c51_agent()
    with torch.no_grad():
        for net in (agent.q_net, agent.target_net):
            net.head.linear.weight.zero_()
            net.head.linear.bias.copy_(torch.tensor([0.2, 0.3, 0.5, 0.5, 0.3, 0.2]).log())
    batch = make_batch(obs=[[0.0, 0.0]], actions=[1], rewards=[0.5], discounts=[0.9])
    torch.testing.assert_close(agent.target_distribution(batch), torch.tensor([[0.08, 0.27, 0.65]]))
    torch.testing.assert_close(agent.q_net(torch.zeros(1, 2)), torch.tensor([[[0.3, -0.3]]]))


@pytest.mark.parametrize("double", [False, True])
def test_distributional_gradient_reaches_only_the_taken_action(double):
    agent = c51_agent(double=double)
    logits = []

    def keep(module, inputs, output):
        if output.requires_grad:
            output.retain_grad()
            logits.append(output)

    agent.q_net.head.register_forward_hook(keep)
    batch = make_batch(obs=[[1.0, 2.0], [0.5, -1.0]], actions=[1, 0], rewards=[0.5, -0.5], next_obs=[[0.0, 1.0]] * 2)
    agent.update(batch)
    (online,) = logits
    grad = online.grad.view(2, 2, 3)  # (B, A, N)
    assert grad[0, 1].abs().sum() > 0 and grad[1, 0].abs().sum() > 0
    assert torch.equal(grad[0, 0], torch.zeros(3)) and torch.equal(grad[1, 1], torch.zeros(3))


def test_prioritized_c51_priorities_are_the_kl():
    agent = c51_agent(prioritized=True)
    seen = []
    batch = make_batch(obs=[[1.0, 2.0], [0.5, -1.0]], actions=[1, 0], rewards=[0.5, -0.5],
                       update_priorities=seen.append)
    target = agent.target_distribution(batch)
    with torch.no_grad():
        log_probs = agent.q_net.log_probs(batch.obs)[torch.arange(2), batch.actions]
    agent.update(batch)
    torch.testing.assert_close(seen[0], kl_divergence(target, log_probs))


# ---------------------------------------------------------------------------------------------- noisy layers
def test_noisy_layer_initialization_and_factorised_noise():
    p, q, sigma_0 = 16, 3, 0.5
    layer = NoisyLinear(p, q, sigma_0)
    assert layer.weight_mu.abs().max() <= 1 / math.sqrt(p) and layer.bias_mu.abs().max() <= 1 / math.sqrt(p)
    torch.testing.assert_close(layer.weight_sigma, torch.full((q, p), sigma_0 / math.sqrt(p)))
    torch.testing.assert_close(layer.bias_sigma, torch.full((q,), sigma_0 / math.sqrt(p)))
    assert layer.eps_in.shape == (p,) and layer.eps_out.shape == (q,)  # p + q draws, not p * q
    x = torch.randn(4, p)
    f = lambda e: e.sign() * e.abs().sqrt()  # noqa: E731
    expected = x @ (layer.weight_mu + layer.weight_sigma * torch.outer(layer.eps_out, layer.eps_in)).T \
        + layer.bias_mu + layer.bias_sigma * layer.eps_out
    torch.testing.assert_close(layer(x), expected)
    raw = torch.Generator().manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    layer.reset_noise(gen)
    torch.testing.assert_close(layer.eps_in, f(torch.randn(p, generator=raw)))
    torch.testing.assert_close(layer.eps_out, f(torch.randn(q, generator=raw)))


def test_noise_is_resampled_when_asked_and_absent_in_evaluation():
    layer, x = NoisyLinear(8, 4), torch.randn(5, 8)
    first = layer(x)
    torch.testing.assert_close(layer(x), first)  # fixed until asked
    reset_noise(torch.nn.Sequential(layer))
    assert not torch.allclose(layer(x), first)
    mean = torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    with noise_off(layer):
        torch.testing.assert_close(layer(x), mean)
        reset_noise(layer)
        torch.testing.assert_close(layer(x), mean)
    assert layer.training
    layer.eval()
    torch.testing.assert_close(layer(x), mean)


def test_rainbow_acts_deterministically_in_evaluation_and_noisily_in_training():
    agent = DQN(dataclasses.replace(AGENTS["rainbow"].preset("other"), hidden=(8, 8), eval_epsilon=0.0),
                OBS_SPACE, gym.spaces.Discrete(4), total_steps=1000, seed=0)
    obs = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    evals = [agent.act(obs) for _ in range(3)]
    assert all(np.array_equal(e, evals[0]) for e in evals)
    explored = [agent.act(obs, explore=True) for _ in range(5)]
    assert any(not np.array_equal(e, explored[0]) for e in explored)  # new noise per action, no epsilon


# ---------------------------------------------------------------------------------------------- random shift
def test_random_shift_is_a_crop_of_the_border_padded_image():
    pad = 2
    images = torch.randint(0, 256, (16, 3, 9, 7), dtype=torch.uint8)
    shifted = random_shift(images, pad, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    padded = torch.nn.functional.pad(images.float(), (pad,) * 4, mode="replicate").to(torch.uint8)
    offsets = set()
    for i in range(len(images)):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(padded[i, :, dy:dy + 9, dx:dx + 7], shifted[i])]
        assert matches, f"image {i} is not a crop within {pad} pixels"
        offsets.add(matches[0])
    assert len(offsets) > 1  # one offset per image
    assert random_shift(images, 0) is images


def test_augment_shifts_online_and_target_inputs_independently():
    config = dataclasses.replace(AGENTS["dqn"].preset("atari"), augment="shift")
    agent = DQN(config, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), ACTION_SPACE, total_steps=1000, seed=0)
    frames = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    batch = make_batch(obs=[[0.0]] * 8, actions=[0] * 8, rewards=[0.0] * 8)._replace(obs=frames, next_obs=frames)
    shifted = agent.augmented(batch)
    assert not torch.equal(shifted.obs, frames) and not torch.equal(shifted.obs, shifted.next_obs)
    with pytest.raises(UserError, match="--augment"):
        DQN(dataclasses.replace(AGENTS["dqn"].preset("other"), augment="shift"), OBS_SPACE, ACTION_SPACE)


# ---------------------------------------------------------------------------------------------- presets
def test_rainbow_atari_preset_is_hessel_et_al_table_1():
    c = AGENTS["rainbow"].preset("atari")
    assert (c.distributional, c.noisy, c.dueling, c.double, c.prioritized) == (True,) * 5
    assert (c.n_step, c.num_atoms, c.v_min, c.v_max, c.noisy_std) == (3, 51, -10.0, 10.0, 0.5)
    assert (c.learning_rate, c.adam_eps, c.learning_starts, c.target_update_interval) == (6.25e-5, 1.5e-4, 20_000,
                                                                                       8_000)
    assert (c.priority_alpha, c.priority_beta, c.start_e, c.end_e) == (0.5, 0.4, 0.0, 0.0)


@pytest.mark.parametrize("option", [["--distributional"], ["--noisy"]])
def test_bootstrapped_heads_refuse_distributional_and_noisy(option):
    with pytest.raises(UserError, match="--bootstrapped"):
        train.main(["--agent", "bootstrapped-dqn", "--env", "CartPole", "--print-config", *option])


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("agent", ["c51", "rainbow"])
@pytest.mark.parametrize("env, extra", [
    ("CartPole", ["--total-steps", "600"]),
    ("Breakout", ["--total-steps", "300", "--buffer-size", "2000", "--learning-starts", "100"]),
])
def test_c51_and_rainbow_train_and_evaluate(tmp_path, agent, env, extra):
    run = tmp_path / "run"
    train.main(["--agent", agent, "--env", env, "--run-dir", str(run), "--eval-episodes", "0", "--no-progress",
                *extra])
    checkpoint = load_checkpoint(run)
    assert checkpoint["settings"]["agent"] == agent and checkpoint["learner"]["counters"]["updates"] > 0
    assert checkpoint["config"]["distributional"]
    assert evaluate.main([str(run), "--episodes", "1", "--json"])["episodes"] == 1


def test_der_cnn_is_van_hasselt_et_al_network_and_leaves_its_input_alone():
    from rlkit.nets import make_encoder

    encoder = make_encoder((4, 84, 84), "der-cnn", cnn_features=256)
    convs = [m for m in encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (5, 5), (5, 5)), (64, (5, 5), (5, 5))]
    assert encoder.fc[0].in_features == 64 * 3 * 3 and encoder.out_features == 256
    frames = torch.rand(2, 4, 84, 84) * 255  # float frames: scaling them must not write into the caller's tensor
    before = frames.clone()
    encoder(frames)
    assert torch.equal(frames, before)
