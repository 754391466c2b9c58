"""Continuous-control off-policy agents (DDPG, TD3, SAC) and their networks: TD targets and log-probabilities
against hand-computed numbers, target-network and delayed updates, action bounds, save/load, and the CLI."""

from __future__ import annotations

import dataclasses
import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import evaluate
import train
from rlkit.agents import AGENTS
from rlkit.buffers import Batch
from rlkit.checkpoint import load_checkpoint
from rlkit.envs import make_env
from rlkit.errors import UserError
from rlkit.nets.continuous import QEnsemble, SquashedGaussianActor, tanh_log_det
from rlkit.nets.encoders import NatureCNN

from by_hand import returns_by_hand

OBS_SPACE = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
CONTINUOUS_AGENTS = ["ddpg", "td3", "sac"]


# ---------------------------------------------------------------------------------------------- helpers
def make_agent(name: str, seed: int = 0, **changes):
    """Agent ``name`` with its classic-control preset, small networks and ``changes``; torch seeded first."""
    spec = AGENTS[name]
    config = dataclasses.replace(spec.preset("other"), hidden=(16, 16), **changes)
    torch.manual_seed(seed)
    return spec.agent_class(config, OBS_SPACE, ACTION_SPACE, total_steps=10_000, seed=seed)


def explore(agent, obs: np.ndarray) -> np.ndarray:
    """act(explore=True), then count the vector step as a source does (only sources move ``agent.step``)."""
    actions = agent.act(obs, explore=True)
    agent.step += len(obs)
    return actions


def make_batch(rewards, terminated, discounts, next_obs=None, obs_dim: int = 2, act_dim: int = 1) -> Batch:
    """A Batch with the given rewards, flags and discounts; obs, actions (and next_obs if not given) random."""
    n = len(rewards)
    g = torch.Generator().manual_seed(n)
    next_obs = torch.randn(n, obs_dim, generator=g) if next_obs is None else torch.as_tensor(next_obs)
    return Batch(obs=torch.randn(n, obs_dim, generator=g), actions=torch.rand(n, act_dim, generator=g) * 2 - 1,
                 rewards=torch.tensor(rewards, dtype=torch.float32), next_obs=next_obs,
                 terminated=torch.tensor(terminated, dtype=torch.float32),
                 discounts=torch.tensor(discounts, dtype=torch.float32), weights=torch.ones(n), masks=None,
                 update_priorities=None)


def random_batch(n: int = 16, seed: int = 0) -> Batch:
    """A random minibatch of 2-d observations and 1-d actions, some transitions terminal."""
    g = torch.Generator().manual_seed(seed)
    terminated = (torch.rand(n, generator=g) < 0.25).float()
    return make_batch(torch.randn(n, generator=g).tolist(), terminated.tolist(), [0.99] * n)


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def targets_of(agent) -> list[nn.Module]:
    return [getattr(agent, name) for name in ("actor_target", "critic_target") if hasattr(agent, name)]


def onlines_of(agent) -> list[nn.Module]:
    return [agent.actor, agent.critic] if hasattr(agent, "actor_target") else [agent.critic]


def fixed_noise(values):
    """A stand-in for torch.randn_like returning ``values`` (shaped like its argument)."""
    return lambda like: torch.tensor(values, dtype=like.dtype).reshape(like.shape)


# ---------------------------------------------------------------------------------------------- TD targets
def test_td3_target_by_hand(monkeypatch):
    """TD3: min over twin target critics, noise clipped to +-0.5, noisy action clipped to [-1, 1], no bootstrap
    from terminated rows, discounts multiply the bootstrap."""
    agent = make_agent("td3")
    assert agent.config.target_policy_noise == 0.2 and agent.config.target_noise_clip == 0.5
    next_obs = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]])
    batch = make_batch([1.0, 0.5, 0.2, -1.0], [0.0, 0.0, 0.0, 1.0], [0.99, 0.9801, 0.99, 0.99], next_obs=next_obs)
    seen = {}

    def actor_target(obs):
        seen["actor_obs"] = obs
        return torch.tensor([[0.9], [-0.2], [0.1], [-0.95]])

    def critic_target(obs, actions):
        seen["critic_obs"], seen["actions"] = obs, actions.clone()
        q1 = 10 * actions[:, 0] + 1
        q2 = torch.tensor([20.0, 3.0, 0.0, -5.0])
        return torch.stack([q1, q2], dim=1)

    monkeypatch.setattr(agent, "actor_target", actor_target)
    monkeypatch.setattr(agent, "critic_target", critic_target)
    monkeypatch.setattr(torch, "randn_like", fixed_noise([1.0, 5.0, -5.0, -1.0]))
    target = agent.td_target(batch)
    # noise = 0.2 * eps = [0.2, 1.0, -1.0, -0.2] -> clipped to +-0.5: [0.2, 0.5, -0.5, -0.2]
    # a' + noise = [1.1, 0.3, -0.4, -1.15] -> clipped to [-1, 1]: [1.0, 0.3, -0.4, -1.0]
    torch.testing.assert_close(seen["actions"], torch.tensor([[1.0], [0.3], [-0.4], [-1.0]]))
    assert seen["actor_obs"] is next_obs and seen["critic_obs"] is next_obs
    # Q1 = 10 a + 1 = [11, 4, -3, -9], Q2 = [20, 3, 0, -5] -> min [11 (Q1), 3 (Q2), -3 (Q1), -9]
    # target = r + discount * (1 - terminated) * min = [1 + 0.99 * 11, 0.5 + 0.9801 * 3, 0.2 - 0.99 * 3, -1]
    torch.testing.assert_close(target, torch.tensor([11.89, 3.4403, -2.77, -1.0]))


def test_ddpg_target_by_hand(monkeypatch):
    """DDPG: r + discount * (1 - terminated) * Q'(s', mu'(s')) with one critic and no smoothing noise."""
    agent = make_agent("ddpg")
    assert agent.critic.num_critics == 1 and agent.config.target_policy_noise == 0
    batch = make_batch([1.0, 0.5, -1.0], [0.0, 0.0, 1.0], [0.98, 0.9604, 0.98])
    seen = {}

    def critic_target(obs, actions):
        seen["actions"] = actions.clone()
        return 10 * actions + 1  # (B, 1)

    monkeypatch.setattr(agent, "actor_target", lambda obs: torch.tensor([[0.9], [-0.2], [0.5]]))
    monkeypatch.setattr(agent, "critic_target", critic_target)
    monkeypatch.setattr(torch, "randn_like", lambda like: pytest.fail("DDPG must not smooth its target action"))
    target = agent.td_target(batch)
    torch.testing.assert_close(seen["actions"], torch.tensor([[0.9], [-0.2], [0.5]]))
    # Q' = [10, -1, 6]; target = [1 + 0.98 * 10, 0.5 + 0.9604 * -1, -1 (terminated)]
    torch.testing.assert_close(target, torch.tensor([10.8, -0.4604, -1.0]))


def test_sac_soft_target_by_hand(monkeypatch):
    """SAC: r + discount * (1 - terminated) * (min_k Q'_k(s', a') - alpha log pi(a'|s')), a' from the policy."""
    agent = make_agent("sac")
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.5))
    next_obs = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    batch = make_batch([1.0, 0.5, -1.0], [0.0, 0.0, 1.0], [0.99, 0.9801, 0.99], next_obs=next_obs)
    next_actions = torch.tensor([[0.5], [-0.3], [0.1]])
    seen = {}

    def actor(obs, deterministic=False):
        seen["actor_obs"], seen["deterministic"] = obs, deterministic
        return next_actions, torch.tensor([-1.0, 0.5, 2.0])

    def critic_target(obs, actions):
        seen["actions"] = actions
        return torch.tensor([[2.0, 3.0], [4.0, 1.0], [7.0, 8.0]])

    monkeypatch.setattr(agent, "actor", actor)
    monkeypatch.setattr(agent, "critic_target", critic_target)
    target = agent.td_target(batch)
    assert seen["actor_obs"] is next_obs and not seen["deterministic"] and seen["actions"] is next_actions
    # soft value = min Q' - 0.5 log pi = [2 + 0.5, 1 - 0.25, (terminated)]
    # target = [1 + 0.99 * 2.5, 0.5 + 0.9801 * 0.75, -1]
    torch.testing.assert_close(target, torch.tensor([3.475, 1.235075, -1.0]))


# ---------------------------------------------------------------------------------------------- squashed Gaussian
def gaussian_actor(mean: float) -> SquashedGaussianActor:
    """A 1-d squashed Gaussian actor whose mean is ``mean`` and log std -1.5 for every observation
    (zero weights; a zero log-std pre-activation maps to the middle of [-5, 2])."""
    actor = SquashedGaussianActor(2, 1, hidden=(4,))
    with torch.no_grad():
        for layer in (actor.mean, actor.log_std):
            layer.weight.zero_()
        actor.mean.bias.fill_(mean)
        actor.log_std.bias.zero_()
    return actor


def test_squashed_gaussian_log_prob_is_change_of_variables(monkeypatch):
    """log pi(tanh(u)) = log N(u; mean, std) - log |d tanh/du|, the derivative taken by finite differences."""
    mean, std = 1.0, math.exp(-1.5)
    eps = torch.tensor([[-1.2], [0.4], [2.0], [8.0]])
    monkeypatch.setattr(torch, "randn_like", lambda like: eps.clone())
    actions, log_probs = gaussian_actor(mean)(torch.zeros(4, 2))
    u = mean + std * eps[:, 0].double()  # the reference in float64
    torch.testing.assert_close(actions[:, 0].double(), torch.tanh(u))
    h = 1e-6
    derivative = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)
    gaussian = -0.5 * ((u - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(log_probs.double(), gaussian - torch.log(derivative), atol=1e-5, rtol=1e-5)


def test_squashed_gaussian_deterministic_is_tanh_of_mean():
    """deterministic=True: a = tanh(mean) and log pi at u = mean: -log std - log sqrt(2 pi) - log(1 - tanh^2)."""
    actions, log_probs = gaussian_actor(0.7)(torch.zeros(3, 2), deterministic=True)
    torch.testing.assert_close(actions, torch.full((3, 1), math.tanh(0.7)))
    expected = 1.5 - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(0.7) ** 2)
    torch.testing.assert_close(log_probs, torch.full((3,), expected))


def test_tanh_log_det_exact_and_finite_when_saturated():
    """tanh_log_det(u) = log(1 - tanh(u)^2) for moderate u; at u = +-20 (float32) it stays finite at
    2 log 2 - 40 where the naive formula gives -inf."""
    u = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(tanh_log_det(u), torch.log(1 - torch.tanh(u) ** 2))
    saturated = torch.tensor([-20.0, 20.0])
    assert torch.isinf(torch.log(1 - torch.tanh(saturated) ** 2)).all()
    torch.testing.assert_close(tanh_log_det(saturated), torch.full((2,), 2 * math.log(2) - 40))


# ---------------------------------------------------------------------------------------------- action bounds
@pytest.mark.parametrize("name", CONTINUOUS_AGENTS)
def test_actions_stay_in_bounds(name):
    """act(explore=True) before and after learning_starts (DDPG/TD3 with exploration noise 5) and
    act(explore=False) return float32 actions of shape (n, 1) inside [-1, 1]."""
    changes = {"learning_starts": 8} | ({} if name == "sac" else {"exploration_noise": 5.0})
    agent = make_agent(name, **changes)
    agent.update(random_batch())
    obs = np.random.default_rng(0).normal(0.0, 30.0, (4, 2)).astype(np.float32)
    explored = [explore(agent, obs) for _ in range(6)]  # steps 0-3, 4-7 random; 8..23 the policy
    evaluated = [agent.act(obs), agent.act(obs, deterministic=False)]
    for actions in explored + evaluated:
        assert actions.dtype == np.float32 and actions.shape == (4, 1)
        assert (actions >= -1).all() and (actions <= 1).all()
    if name != "sac":  # noise of std 5 pushes actions out of range: they are clipped onto the bounds
        assert (np.abs(np.concatenate(explored[2:])) == 1).any()
        np.testing.assert_array_equal(evaluated[0], evaluated[1])  # deterministic=False changes nothing


@pytest.mark.parametrize("name", CONTINUOUS_AGENTS)
def test_exploration_policy(name):
    """Until learning_starts env steps: uniform actions from the agent's generator; then DDPG/TD3 take
    clip(mu(s) + N(0, noise)) and SAC a sample of pi (not tanh of its mean, which evaluation takes)."""
    agent = make_agent(name, learning_starts=8, **({} if name == "sac" else {"exploration_noise": 0.3}))
    obs = np.random.default_rng(1).normal(size=(4, 2)).astype(np.float32)
    reference = np.random.default_rng(0)  # make_agent seeds the agent's generator with 0
    for _ in range(2):  # steps 0-3, 4-7
        np.testing.assert_array_equal(explore(agent, obs), reference.uniform(-1, 1, (4, 1)).astype(np.float32))
    with torch.no_grad():
        mode = agent.actor(torch.as_tensor(obs), **({"deterministic": True} if name == "sac" else {}))
    mode = (mode[0] if name == "sac" else mode).numpy()
    np.testing.assert_allclose(agent.act(obs), mode, rtol=1e-6)
    torch.manual_seed(2)
    explored = explore(agent, obs)  # steps 8-11
    if name == "sac":
        torch.manual_seed(2)
        with torch.no_grad():
            sample = agent.actor(torch.as_tensor(obs))[0].numpy()
        np.testing.assert_array_equal(explored, sample)
        assert not np.allclose(explored, mode)
    else:
        np.testing.assert_allclose(explored, np.clip(mode + reference.normal(0.0, 0.3, (4, 1)), -1, 1), rtol=1e-6)


def test_make_env_rescales_pendulum_actions():
    """make_env("Pendulum") exposes [-1, 1] actions and maps them linearly to the env's [-2, 2] torque."""
    env = make_env("Pendulum", 1, seed=0)
    raw = gym.make("Pendulum-v1")
    assert (env.single_action_space.low == -1).all() and (env.single_action_space.high == 1).all()
    assert (raw.action_space.low == -2).all() and (raw.action_space.high == 2).all()
    obs, _ = env.reset()
    raw_obs, _ = raw.reset(seed=0)
    np.testing.assert_allclose(obs[0], raw_obs)
    for action in (1.0, -0.5, 0.25):
        obs, reward, *_ = env.step(np.array([[action]], np.float32))
        raw_obs, raw_reward, *_ = raw.step(np.array([2 * action], np.float32))
        np.testing.assert_allclose(obs[0], raw_obs, rtol=1e-6)
        assert reward[0] == pytest.approx(raw_reward, rel=1e-6)
    env.close()
    raw.close()


# ---------------------------------------------------------------------------------------------- updates
def assert_polyak(agent, before: list[list[torch.Tensor]], tau: float) -> None:
    """Every target parameter equals (1 - tau) * its value in ``before`` + tau * the online parameter now."""
    for target, online, old in zip(targets_of(agent), onlines_of(agent), before, strict=True):
        for t, o, b in zip(target.parameters(), online.parameters(), old, strict=True):
            torch.testing.assert_close(t, (1 - tau) * b + tau * o.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, polyak_on", [("ddpg", [1, 2]), ("td3", [2, 4]), ("sac", [1, 2])])
def test_targets_move_by_tau(name, polyak_on):
    """After an update that moves targets, target = (1 - tau) old target + tau new online (SAC and DDPG every
    update, TD3 on its actor steps); on TD3's other steps the targets stay put."""
    tau = 0.3
    agent = make_agent(name, tau=tau)
    batch = random_batch()
    for call in range(1, max(polyak_on) + 1):
        before = [snapshot(target) for target in targets_of(agent)]
        agent.update(batch)
        if call in polyak_on:
            assert_polyak(agent, before, tau)
            assert not same(before[0], snapshot(targets_of(agent)[0]))
        else:
            assert all(same(old, snapshot(t)) for old, t in zip(before, targets_of(agent), strict=True))


@pytest.mark.parametrize("name, actor_steps", [("td3", [False, True, False, True]), ("ddpg", [True] * 4)])
def test_delayed_actor_updates(name, actor_steps):
    """TD3 (policy_frequency 2) changes actor and targets on update calls 2 and 4 only, DDPG on every call; the
    critic learns on every call."""
    agent = make_agent(name)
    batch = random_batch()
    for call, actor_step in enumerate(actor_steps, start=1):
        actor, critic = snapshot(agent.actor), snapshot(agent.critic)
        targets = snapshot(agent.actor_target) + snapshot(agent.critic_target)
        metrics = agent.update(batch)
        assert agent.updates == call
        assert not same(critic, snapshot(agent.critic)), call
        assert same(actor, snapshot(agent.actor)) != actor_step, call
        assert same(targets, snapshot(agent.actor_target) + snapshot(agent.critic_target)) != actor_step, call
        assert ("losses/actor_loss" in metrics) == actor_step, call


def test_td3_critic_loss_is_summed_mse_to_target():
    """The TD3 critic loss is the sum over both critics of the mean squared error to td_target."""
    agent = make_agent("td3")
    batch = random_batch()
    torch.manual_seed(3)
    with torch.no_grad():
        expected = (agent.critic(batch.obs, batch.actions) - agent.td_target(batch)[:, None]).pow(2).mean(0).sum()
    torch.manual_seed(3)  # the same smoothing noise inside update
    assert agent.update(batch)["losses/critic_loss"] == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("scale, rises", [(-10.0, True), (10.0, False)])
def test_sac_autotune_moves_alpha_toward_target_entropy(scale, rises):
    """Autotune: one Adam step of size policy_lr on log alpha, up when the entropy is below the target (+10),
    down when above (-10)."""
    agent = make_agent("sac", target_entropy_scale=scale)
    assert agent.target_entropy == -scale
    metrics = agent.update(random_batch())
    assert (metrics["losses/entropy"] < agent.target_entropy) == rises
    change = agent.log_alpha.item() - math.log(0.2)
    assert change == pytest.approx(agent.config.policy_lr if rises else -agent.config.policy_lr, rel=1e-3)
    assert metrics["losses/alpha"] == pytest.approx(agent.alpha)


def test_sac_fixed_alpha_stays():
    """autotune=False: no alpha optimizer and alpha stays exactly at its configured value."""
    agent = make_agent("sac", autotune=False, alpha=0.3)
    assert agent.alpha_optimizer is None
    for _ in range(3):
        metrics = agent.update(random_batch())
    assert agent.log_alpha.item() == pytest.approx(math.log(0.3), abs=1e-7)
    assert metrics["losses/alpha"] == pytest.approx(0.3) and "losses/alpha_loss" not in metrics


# ---------------------------------------------------------------------------------------------- twin critics
def test_q_ensemble_columns_are_independent_critics():
    """QEnsemble(num_critics=2) column k equals an MLP built by hand from ParallelLinear slice k."""
    torch.manual_seed(0)
    ensemble = QEnsemble(3, 2, hidden=(5, 4), num_critics=2)
    obs, actions = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1
    out = ensemble(obs, actions)
    assert out.shape == (6, 2)
    parallel = [layer for layer in ensemble.layers if not isinstance(layer, nn.ReLU)]
    for k in range(2):
        layers: list[nn.Module] = []
        for layer in parallel:
            linear = nn.Linear(*layer.weight.shape[1:])
            with torch.no_grad():
                linear.weight.copy_(layer.weight[k].T)
                linear.bias.copy_(layer.bias[k])
            layers += [linear, nn.ReLU()]
        critic = nn.Sequential(*layers[:-1])
        torch.testing.assert_close(out[:, k], critic(torch.cat([obs, actions], dim=1))[:, 0])
    assert not torch.allclose(out[:, 0], out[:, 1])


def test_q_ensemble_on_images_shares_one_cnn():
    """On (C, H, W) uint8 images every critic reads the same Nature CNN features: column k equals critic k's
    MLP applied to [cnn(obs), a]; a vector ensemble has no CNN."""
    torch.manual_seed(0)
    ensemble = QEnsemble((3, 36, 36), 2, hidden=(5,), num_critics=2)
    assert isinstance(ensemble.encoder, NatureCNN) and QEnsemble(3, 2).encoder is None
    obs = torch.randint(0, 256, (4, 3, 36, 36), dtype=torch.uint8)
    actions = torch.rand(4, 2) * 2 - 1
    features = torch.cat([ensemble.encoder(obs), actions], dim=1)
    first, _, last = ensemble.layers
    for k in range(2):
        hidden = torch.relu(features @ first.weight[k] + first.bias[k])
        torch.testing.assert_close(ensemble(obs, actions)[:, k], (hidden @ last.weight[k] + last.bias[k])[:, 0])


# ---------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("name", CONTINUOUS_AGENTS)
def test_save_load_round_trip(name):
    """state_dict -> torch.save -> torch.load(weights_only=True) -> a fresh agent: same deterministic actions,
    counters, exploration and next update (optimizer state); SAC's log alpha restored."""
    agent = make_agent(name, learning_starts=4)
    obs = np.random.default_rng(1).normal(size=(2, 2)).astype(np.float32)
    for _ in range(5):
        explore(agent, obs)
    batch = random_batch()
    for _ in range(3):
        agent.update(batch)
    file = io.BytesIO()
    torch.save(agent.state_dict(), file)
    file.seek(0)
    state = torch.load(file, weights_only=True)

    fresh = make_agent(name, seed=1, learning_starts=4)
    assert not np.array_equal(fresh.act(obs), agent.act(obs))
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.act(obs), agent.act(obs))
    assert fresh.updates == agent.updates == 3
    fresh.step = agent.step  # the step is the source's: a resumed source tells the agent
    if name == "sac":
        assert fresh.log_alpha.item() == agent.log_alpha.item()
        assert agent.log_alpha.item() != pytest.approx(math.log(0.2))  # autotune moved it: a real check
    explored = []
    for learner in (agent, fresh):  # same noise for both: exploration and the update must then agree
        torch.manual_seed(5)
        explored.append(learner.act(obs, explore=True))
        learner.update(batch)
    np.testing.assert_array_equal(explored[0], explored[1])
    assert same(snapshot(fresh.actor), snapshot(agent.actor)) and same(snapshot(fresh.critic), snapshot(agent.critic))
    if name == "sac":
        assert fresh.log_alpha.item() == agent.log_alpha.item()


@pytest.mark.parametrize("name", CONTINUOUS_AGENTS)
def test_discrete_actions_refused(name):
    """A Discrete action space is refused with a UserError naming the agents for discrete actions."""
    spec = AGENTS[name]
    with pytest.raises(UserError, match="needs a Box action space") as refused:
        spec.agent_class(spec.preset("other"), OBS_SPACE, gym.spaces.Discrete(3))
    fitting = str(refused.value).split("use an agent for Discrete actions")[1]
    assert "dqn" in fitting and "ddpg" not in fitting and "sac" not in fitting


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.parametrize("env_name, env_id, steps, hidden", [
    ("Pendulum", "Pendulum-v1", 400, None), ("HalfCheetah", "HalfCheetah-v5", 300, [256, 256]),
])
@pytest.mark.parametrize("agent", CONTINUOUS_AGENTS)
def test_every_continuous_agent_trains_and_evaluates(tmp_path, agent, env_name, env_id, steps, hidden):
    """Each agent trains through train.main (updates from step 200 on, one per step) and its run evaluates;
    SAC also with --stochastic."""
    run = tmp_path / "run"
    train.main(["--agent", agent, "--env", env_name, "--total-steps", str(steps), "--learning-starts", "200",
                "--batch-size", "64", "--buffer-size", "10000", "--eval-episodes", "0", "--no-progress",
                "--run-dir", str(run)])
    checkpoint = load_checkpoint(run)
    assert checkpoint["settings"]["agent"] == agent and checkpoint["env_id"] == env_id and checkpoint["loop"]["steps"] == steps
    assert checkpoint["learner"]["counters"] == {"updates": steps - 200 + 1}
    if hidden is not None:  # the shipped HalfCheetah-v5 entries: rl-baselines3-zoo gives DDPG and TD3 400-300 nets
        assert checkpoint["config"]["hidden"] == (hidden if agent == "sac" else [400, 300])
    if agent == "td3":
        assert checkpoint["config"]["twin_critics"] and checkpoint["config"]["policy_frequency"] == 2
    results = [evaluate.main([str(run), "--episodes", "1", "--json", "--seed", "7"])]
    if agent == "sac":
        results.append(evaluate.main([str(run), "--episodes", "1", "--json", "--seed", "7", "--stochastic"]))
        assert results[0]["returns"] != results[1]["returns"]  # sampled actions differ from tanh(mean)
    for result in results:
        assert result["agent"] == agent and result["episodes"] == 1 and np.isfinite(result["mean_return"])
    if env_name == "Pendulum":  # the deterministic policy's game, played again by hand in a plain gymnasium env
        assert results[0]["returns"] == pytest.approx(returns_by_hand(run, 1, seed=7), rel=1e-6)


@pytest.mark.parametrize("agent", CONTINUOUS_AGENTS)
def test_continuous_agents_learn_from_pixels_through_a_cnn(tmp_path, agent):
    """Channels-last uint8 frames (as CarRacing's) reach DDPG, TD3 and SAC as (C, H, W) images: actor and critic
    each read them through a Nature CNN (not an MLP over raw pixels), replay keeps them as uint8 (what the memory
    check counts), and the run trains and evaluates through the CLI."""
    run = tmp_path / "run"
    train.main(["--agent", agent, "--env", "custom_env_module:TinyPixels-v0", "--total-steps", "60",
                "--learning-starts", "40", "--batch-size", "8", "--buffer-size", "100", "--eval-episodes", "0",
                "--no-progress", "--run-dir", str(run)])
    checkpoint = load_checkpoint(run)
    assert checkpoint["learner"]["counters"] == {"updates": 21}
    for net in ("actor", "critic"):
        assert checkpoint["learner"][net]["encoder.convs.0.weight"].shape == (32, 3, 8, 8)
    spec = AGENTS[agent]
    env = make_env("custom_env_module:TinyPixels-v0", 1, seed=0)
    learner = spec.agent_class(spec.preset("other"), env.single_observation_space, env.single_action_space)
    replay = learner.buffer_spec()
    assert replay.obs_shape == (3, 36, 36) and replay.obs_dtype == np.uint8
    result = evaluate.main([str(run), "--episodes", "1", "--json"])
    assert result["episodes"] == 1 and -10 <= result["mean_return"] <= 0


@pytest.mark.parametrize("agent", CONTINUOUS_AGENTS)
def test_continuous_agents_flatten_images_too_small_for_the_cnn(tmp_path, agent):
    """7x7 frames (a grid world's view) would crash the Nature CNN: actor and critic read them flattened, as bytes
    on the unit scale, and replay keeps them as uint8."""
    run = tmp_path / "run"
    train.main(["--agent", agent, "--env", "custom_env_module:TinyPixels-v0", "--env-kwargs", "size=7",
                "--total-steps", "60", "--learning-starts", "40", "--batch-size", "8", "--buffer-size", "100",
                "--eval-episodes", "0", "--no-progress", "--run-dir", str(run)])
    checkpoint = load_checkpoint(run)
    assert checkpoint["learner"]["counters"] == {"updates": 21}
    for net in ("actor", "critic"):
        assert not any(key.startswith("encoder.") for key in checkpoint["learner"][net])
    spec = AGENTS[agent]
    env = make_env("custom_env_module:TinyPixels-v0", 1, seed=0, env_kwargs={"size": 7})
    learner = spec.agent_class(spec.preset("other"), env.single_observation_space, env.single_action_space)
    assert learner.buffer_spec().obs_dtype == np.uint8
    critic = learner.critic if hasattr(learner, "critic") else learner.critics
    frames = torch.full((2, 3, 7, 7), 255, dtype=torch.uint8)
    actions = torch.zeros(2, 1)
    torch.testing.assert_close(critic(frames, actions), critic(torch.ones(2, 3, 7, 7), actions))
    result = evaluate.main([str(run), "--episodes", "1", "--json"])
    assert result["episodes"] == 1 and -10 <= result["mean_return"] <= 0



@pytest.mark.parametrize("low, high", [(-np.inf, np.inf), ([0.0, -np.inf], [1.0, 5.0])])
@pytest.mark.parametrize("agent", CONTINUOUS_AGENTS)
def test_squashing_agents_refuse_actions_without_finite_bounds(agent, low, high):
    """tanh's [-1, 1] is mapped onto the bounds; without them DDPG, TD3 and SAC acted in [-1, 1] alone, silently."""
    spec = AGENTS[agent]
    actions = gym.spaces.Box(np.broadcast_to(np.float32(low), (2,)), np.broadcast_to(np.float32(high), (2,)),
                             dtype=np.float32)
    with pytest.raises(UserError, match="has no finite bounds: give its action_space the range .* or use ppo"):
        spec.agent_class(spec.preset("other"), gym.spaces.Box(-1.0, 1.0, (3,), np.float32), actions)
