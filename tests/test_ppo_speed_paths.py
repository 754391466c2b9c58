"""The fast acting and rollout paths of the policy-gradient agents change no number (issue 18).

Each CASE trains an agent for a few rollouts and updates from a fixed seed twice in this process: once with the
code as it is, once with the code paths the speed work replaced put back (the reference implementations below,
copied from commit 50e62e1 and monkeypatched onto the classes: RunningMeanStd.update through its torch path
(``_update_torch``, the code it had, which GPUs and torchrun still run) for every batch, MLP.forward
through nn.Sequential, policy_step through the torch distribution's sample() and log_prob(), DiagGaussian.std
recomputed on every use, np.clip, the rollout buffer's per-step tensor writes, the old GAE loop and the old
RewardScaler arithmetic). The collected rollouts, the metrics of every update and the final weights and
statistics must be the same bytes. Both runs use this machine's torch kernels, so the comparison holds on any
CPU, and a change that moves any action, loss or weight by one ulp fails it. (PPO.update's parameter list, once
per update instead of once per minibatch, is not put back: optimizer_step lists ``params`` first either way.)

The numpy fast paths of RunningMeanStd and the bulk discounts of GAE are also checked directly against the torch
arithmetic they replace, in process.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

import rlkit.buffers.rollout as rollout_module
from rlkit.agents import A2C, PPO, PPOConfig, REINFORCE, TRPO
from rlkit.agents.a2c import A2CConfig
from rlkit.agents.policy_gradient import PolicyAgent, PolicyStep
from rlkit.agents.reinforce import REINFORCEConfig
from rlkit.agents.trpo import TRPOConfig
from rlkit.buffers.rollout import RolloutBuffer
from rlkit.envs import make_env
from rlkit.nets import MLP, ActorCritic, CategoricalHead, DiagGaussian, GaussianHead, RunningMeanStd
from rlkit.sources import RolloutSource
from rlkit.sources.rollout import RewardScaler

# name -> (agent class, config, env, num_envs, rollouts)
CASES = {
    # The CartPole preset's shape (8 envs x 32 steps), shortened; raw observations and rewards.
    "ppo-cartpole": (PPO, PPOConfig(num_steps=32, update_epochs=4, num_minibatches=2, learning_rate=1e-3,
                                    gamma=0.98, gae_lambda=0.8, ent_coef=0.01, normalize_obs=False,
                                    normalize_reward=False), "CartPole", 8, 3),
    # The MuJoCo preset's path: obs and reward normalization, and a time limit (Pendulum's 200 steps) that
    # bootstraps from the final observation inside the rollouts.
    "ppo-pendulum": (PPO, PPOConfig(num_steps=128, update_epochs=3, num_minibatches=4, target_kl=0.05),
                     "Pendulum", 2, 3),
    # One env (the HalfCheetah preset's number): the statistics see one observation per step.
    "ppo-pendulum-1env": (PPO, PPOConfig(num_steps=256, update_epochs=2, num_minibatches=8), "Pendulum", 1, 2),
    "ppo-cartpole-normalized": (PPO, PPOConfig(num_steps=32, update_epochs=2, num_minibatches=4,
                                               normalize_obs=True, normalize_reward=True), "CartPole", 4, 2),
    "a2c-cartpole": (A2C, A2CConfig(num_steps=5), "CartPole", 4, 6),
    "reinforce-cartpole": (REINFORCE, REINFORCEConfig(num_steps=64), "CartPole", 2, 3),
    "trpo-pendulum": (TRPO, TRPOConfig(num_steps=128, normalize_obs=True, normalize_reward=True), "Pendulum", 2, 2),
}


# ---------------------------------------------------------------- the code paths before the speed work (50e62e1)

@torch.no_grad()
def reference_update(rms, batch: torch.Tensor) -> None:
    """RunningMeanStd.update as it was: its torch path for every batch (the fast path is numpy for one process)."""
    RunningMeanStd._update_torch(rms, batch.to(rms.mean.device, torch.float64).reshape(-1, *rms.mean.shape))


def reference_mlp_forward(self, obs: torch.Tensor) -> torch.Tensor:
    return self.layers(obs.float())  # nn.Sequential: nn.Flatten, then a Module call per layer


def reference_std(self) -> torch.Tensor:  # a plain property: exp() on every use
    return self.log_std.exp()


def reference_to_env(self, actions: torch.Tensor) -> np.ndarray:
    actions = actions.cpu().numpy()
    return np.clip(actions, self.action_low, self.action_high) if self.continuous else actions


@torch.no_grad()
def reference_policy_step(self, obs: np.ndarray, memory=None, episode_starts=None) -> PolicyStep:
    x = self._observe(obs, update_stats=True)
    dist, values = self.net(x)  # a torch Categorical or a DiagGaussian
    actions = dist.sample()
    return PolicyStep(x, actions, self._to_env(actions), dist.log_prob(actions), values)


def reference_gae(rewards, values, terminated, truncated, last_values, gamma, lam, final_values=None):
    terminated, truncated = terminated.float(), truncated.float()
    next_values = torch.cat([values[1:], last_values[None]], dim=0)
    if final_values is None:
        final_values = torch.zeros_like(values)
    next_values = torch.where(truncated.bool(), final_values, next_values)
    next_values = next_values * (1.0 - terminated)
    episode_goes_on = 1.0 - torch.maximum(terminated, truncated)
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * episode_goes_on[t] * running
        advantages[t] = running
    return advantages, advantages + values


def reference_buffer_add(self, obs, actions, log_probs, values, rewards, terminated, truncated,
                         final_values=None, memory=None, episode_starts=None) -> None:  # feed-forward: no memory
    t = self.step
    self.obs[t] = torch.as_tensor(obs, device=self.device)
    self.actions[t] = torch.as_tensor(actions, device=self.device)
    self.log_probs[t], self.values[t] = log_probs, values
    self.rewards[t] = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
    self.terminated[t] = torch.as_tensor(terminated, dtype=torch.float32, device=self.device)
    self.truncated[t] = torch.as_tensor(truncated, dtype=torch.float32, device=self.device)
    self.final_values[t] = 0.0 if final_values is None else final_values
    self.step += 1


def reference_buffer_finish(self, last_values, gamma, lam, mask_unfinished=False) -> None:
    self.advantages, self.returns = reference_gae(self.rewards, self.values, self.terminated, self.truncated,
                                                  last_values, gamma, lam, self.final_values)
    if mask_unfinished:
        ended = torch.maximum(self.terminated, self.truncated)
        self.weights = ended.flip(0).cummax(0).values.flip(0)


def reference_reward_scaler_call(self, rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
    self.returns = self.returns * self.gamma + rewards
    self.stats.update(torch.as_tensor(self.returns))
    self.returns[done] = 0.0
    scale = float(torch.sqrt(self.stats.var + self.stats.epsilon))
    return np.clip(rewards / scale, -self.clip, self.clip)


def _not_on_the_old_paths(*args, **kwargs):
    raise AssertionError("a fast path ran while the old code paths were patched in")


def old_code_paths(monkeypatch) -> None:
    """Put the code paths of 50e62e1 back (undone when the test ends); the new-only methods raise if reached."""
    for owner, name, old in [
        (RunningMeanStd, "update", reference_update),
        (RunningMeanStd, "_update_numpy", _not_on_the_old_paths),
        (MLP, "forward", reference_mlp_forward),
        (DiagGaussian, "std", property(reference_std)),
        (PolicyAgent, "_to_env", reference_to_env),
        (PolicyAgent, "policy_step", reference_policy_step),
        (ActorCritic, "sample", _not_on_the_old_paths),
        (CategoricalHead, "sample", _not_on_the_old_paths),
        (GaussianHead, "sample", _not_on_the_old_paths),
        (rollout_module, "gae", reference_gae),
        (RolloutBuffer, "add", reference_buffer_add),
        (RolloutBuffer, "finish", reference_buffer_finish),
        (RewardScaler, "__call__", reference_reward_scaler_call),
    ]:
        assert hasattr(owner, name), (owner, name)  # a renamed method would otherwise be patched in vain
        monkeypatch.setattr(owner, name, old)


# ---------------------------------------------------------------- fingerprints

def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = torch.as_tensor(t).detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:20]


def fingerprint(name: str) -> dict[str, list[str]]:
    """Per rollout: the digest of the collected batch and the update's metrics; the final weights' digest."""
    agent_class, config, env_name, num_envs, rollouts = CASES[name]
    config = dataclasses.replace(config)
    env = make_env(env_name, num_envs, seed=0)
    torch.manual_seed(0)
    agent = agent_class(config, env.single_observation_space, env.single_action_space, total_steps=2_000, seed=0)
    source = RolloutSource(env, agent)
    batches, metrics = [], []
    for _ in range(rollouts):
        batch = source.next()
        batches.append(_digest([field.clone() for field in batch if field is not None]))
        metrics.append(repr(sorted(agent.update(batch).items())))
    env.close()
    state = [p for p in agent.net.state_dict().values()]
    if agent.obs_norm is not None:
        state += list(agent.obs_norm.state_dict().values())
    if source.reward_scaler is not None:
        state += [source.reward_scaler.returns, *source.reward_scaler.stats.state_dict().values()]
    return {"rollouts": batches, "metrics": metrics, "weights": [_digest(state)]}


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_is_bit_identical_to_the_code_paths_before_the_speed_work(name, monkeypatch):
    new = fingerprint(name)
    with monkeypatch.context() as patched:
        old_code_paths(patched)
        old = fingerprint(name)
    assert new == old


# ---------------------------------------------------------------- the fast paths one by one

@pytest.mark.parametrize("shape", [(), (3,)])
@pytest.mark.parametrize("n", [1, 5])
def test_running_mean_std_numpy_path_equals_the_torch_arithmetic_bitwise(shape, n):
    fast, reference = RunningMeanStd(shape), RunningMeanStd(shape)
    gen = torch.Generator().manual_seed(n)
    for step in range(3000):
        batch = torch.randn((n, *shape), generator=gen, dtype=torch.float64) * 10 ** (step % 7 - 3) + step
        fast.update(batch if step % 2 else batch.float())
        reference_update(reference, batch if step % 2 else batch.float())
        for a, b in zip(fast.state_dict().values(), reference.state_dict().values()):
            assert torch.equal(a, b)


def test_running_mean_std_numpy_path_squares_like_torch():
    """numpy's scalar ``x ** 2`` goes through pow() and can be an ulp off torch's ``x.pow(2)`` (= x * x): scalar
    statistics (the reward scaler's, one env) hit it. Fresh statistics per value, so delta is the value itself."""
    values = torch.randn(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    values[0] = 1.9227996147605821  # np.float64(x) ** 2 != x * x (on the CPU this was found on)
    for value in values:
        fast, reference = RunningMeanStd(()), RunningMeanStd(())
        fast.update(value[None])
        reference_update(reference, value[None])
        assert torch.equal(fast.var, reference.var) and torch.equal(fast.mean, reference.mean)


@pytest.mark.parametrize("final_values", [False, True])
def test_gae_bulk_discounts_equal_the_old_loop_bitwise(final_values):
    gen = torch.Generator().manual_seed(int(final_values))
    t, n = 257, 6
    rewards, values = torch.randn(t, n, generator=gen), torch.randn(t, n, generator=gen)
    terminated = (torch.rand(t, n, generator=gen) < 0.05).float()
    truncated = (torch.rand(t, n, generator=gen) < 0.05).float() * (1 - terminated)
    last_values = torch.randn(n, generator=gen)
    finals = torch.randn(t, n, generator=gen) if final_values else None
    for gamma, lam in [(0.99, 0.95), (0.98, 0.8), (0.9, 1.0), (1.0, 1.0)]:
        got = rollout_module.gae(rewards, values, terminated, truncated, last_values, gamma, lam, finals)
        want = reference_gae(rewards, values, terminated, truncated, last_values, gamma, lam, finals)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
