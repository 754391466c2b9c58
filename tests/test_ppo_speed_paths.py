"""The fast acting and rollout paths of the policy-gradient agents change no number (issue 18).

A few rollouts and updates of each agent with a fixed seed, fingerprinted: SHA-256 of the exact bytes of the
collected rollouts, the metrics, and the final weights and statistics. The pinned digests were recorded on the
code before the speed work (commit 50e62e1), so a change that moves any action, loss or weight by one ulp fails
here. The numpy fast paths of RunningMeanStd are also checked against the torch arithmetic they replace.

The digests depend on the float arithmetic of this machine's torch build (x86-64 CPU, one thread, torch 2.x);
on another CPU or torch version they may legitimately differ: re-record them there with the code before the
change (``python tests/test_ppo_speed_paths.py`` prints them).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from rlkit.agents import A2C, PPO, PPOConfig, REINFORCE, TRPO
from rlkit.agents.a2c import A2CConfig
from rlkit.agents.reinforce import REINFORCEConfig
from rlkit.agents.trpo import TRPOConfig
from rlkit.envs import make_env
from rlkit.sources import RolloutSource

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


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = torch.as_tensor(t).detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:20]


def fingerprint(name: str) -> dict[str, str]:
    agent_class, config, env_name, num_envs, rollouts = CASES[name]
    config = dataclasses.replace(config)
    env = make_env(env_name, num_envs, seed=0)
    torch.manual_seed(0)
    agent = agent_class(config, env.single_observation_space, env.single_action_space, total_steps=2_000, seed=0)
    source = RolloutSource(env, agent)
    batches, metrics = [], []
    for _ in range(rollouts):
        batch = source.next()
        batches += [field.clone() for field in batch]
        metrics.append(repr(sorted(agent.update(batch).items())))
    env.close()
    state = [p for p in agent.net.state_dict().values()]
    if agent.obs_norm is not None:
        state += list(agent.obs_norm.state_dict().values())
    if source.reward_scaler is not None:
        state += [source.reward_scaler.returns, *source.reward_scaler.stats.state_dict().values()]
    return {"rollouts": _digest(batches), "metrics": hashlib.sha256("".join(metrics).encode()).hexdigest()[:20],
            "weights": _digest(state), "param_sum": repr(float(sum(torch.as_tensor(p).double().sum() for p in state)))}


PINNED: dict[str, dict[str, str]] = {
    'a2c-cartpole': {'rollouts': 'e767a905fc11fea8dc88', 'metrics': '356f0c49669e8e460069', 'weights': '99983a02b88b5d6f5327', 'param_sum': '8.386662564487779'},
    'ppo-cartpole': {'rollouts': '74e8edd01c20b286ccea', 'metrics': '278c2042d66cfd35e55e', 'weights': 'd91954470e40f273c382', 'param_sum': '8.996446455399564'},
    'ppo-cartpole-normalized': {'rollouts': '8831e05740a137eedee3', 'metrics': 'faa2d616bcf2fbee7565', 'weights': 'e486835d88db267fd0b2', 'param_sum': '664.8828653859933'},
    'ppo-pendulum-1env': {'rollouts': '47e6eac9baacea283e5c', 'metrics': '72c23b0d83ee56f0488c', 'weights': 'a6d0c7889861946538f0', 'param_sum': '23270.034901171362'},
    'ppo-pendulum': {'rollouts': 'e0563b320386650a81be', 'metrics': '412596b2c0af264df568', 'weights': '07317eaa388333eff7a3', 'param_sum': '23440.75527248308'},
    'reinforce-cartpole': {'rollouts': '64d3778b1aacdd96fb41', 'metrics': '25cc5eff7780cbb9119e', 'weights': 'e690ecb95c13d0c8cb60', 'param_sum': '9.075209345435724'},
    'trpo-pendulum': {'rollouts': 'bcd59e257c5e89eeb619', 'metrics': 'c6ba0e5fcfa5f3517110', 'weights': '184821821606eab50c7d', 'param_sum': '14723.298874061802'},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_is_bit_identical_to_the_code_before_the_speed_work(name):
    assert fingerprint(name) == PINNED[name]


if __name__ == "__main__":
    torch.set_num_threads(1)
    print("PINNED = {")
    for case in sorted(CASES):
        print(f"    {case!r}: {fingerprint(case)!r},")
    print("}")


def reference_update(rms, batch: torch.Tensor) -> None:
    """RunningMeanStd.update as it was in torch before its numpy path (one process)."""
    batch = batch.to(torch.float64).reshape(-1, *rms.mean.shape)
    batch_mean, batch_var, n = batch.mean(0), batch.var(0, unbiased=False), batch.shape[0]
    delta, total = batch_mean - rms.mean, rms.count + n
    rms.mean += delta * n / total
    rms.var.copy_((rms.var * rms.count + batch_var * n + delta.pow(2) * rms.count * n / total) / total)
    rms.count.copy_(total)


@pytest.mark.parametrize("shape", [(), (3,)])
@pytest.mark.parametrize("n", [1, 5])
def test_running_mean_std_numpy_path_equals_the_torch_arithmetic_bitwise(shape, n):
    from rlkit.nets import RunningMeanStd

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
    from rlkit.nets import RunningMeanStd

    values = torch.randn(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    values[0] = 1.9227996147605821  # np.float64(x) ** 2 != x * x
    for value in values:
        fast, reference = RunningMeanStd(()), RunningMeanStd(())
        fast.update(value[None])
        reference_update(reference, value[None])
        assert torch.equal(fast.var, reference.var) and torch.equal(fast.mean, reference.mean)
