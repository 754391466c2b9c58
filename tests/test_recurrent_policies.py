"""Recurrent PPO and A2C (``--recurrent lstm|gru``): memory reset at episode starts inside a rollout, sequence
minibatches, the sequence loss against stepping the net, saving, evaluation, and partially observed envs."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import evaluate
import train
from rlkit.agents import A2C, PPO, PPOConfig
from rlkit.agents.a2c import A2CConfig
from rlkit.buffers.rollout import RolloutBuffer, auto_sequence_length, minibatches
from rlkit.envs import make_env
from rlkit.envs.partial import MaskVelocity
from rlkit.errors import UserError
from rlkit.jobs.agent import evaluate_agent
from rlkit.sources import RolloutSource

from counter_envs import counter_env


def recurrent_ppo(env, cell: str = "lstm", **changes) -> PPO:
    config = dataclasses.replace(PPOConfig(), recurrent=cell, recurrent_hidden=8, hidden=(16,), num_steps=12,
                                 num_minibatches=2, update_epochs=1, normalize_obs=False, normalize_reward=False,
                                 **changes)
    torch.manual_seed(0)
    return PPO(config, env.single_observation_space, env.single_action_space, total_steps=10_000, seed=0)


def step_by_step(agent, obs, memory, starts):
    """The reference: the net run one step at a time on one sequence (rows ``(T, ...)``, memory of one sequence),
    the memory zeroed by hand before each step that starts an episode."""
    values, dists = [], []
    for t in range(len(obs)):
        if starts[t]:
            memory = torch.zeros_like(memory)
        dist, value, memory = agent.net(obs[t:t + 1], memory, torch.zeros(1))
        dists.append(dist)
        values.append(value)
    return dists, torch.cat(values)


# ---------------------------------------------------------------------------------------------- the rollout
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_memory_is_zeroed_exactly_at_episode_starts_inside_a_rollout(cell):
    """Counter sub-env 0 restarts every 3 steps, sub-env 1 every 4. The episode starts stored are those; the
    log-probs the rollout recorded while acting are those of the net run over each sequence from the stored memory
    with exactly those resets (ratio 1 before any update), and not those of a run without the resets."""
    env = counter_env()
    agent = recurrent_ppo(env, cell, sequence_length=12)
    source = RolloutSource(env, agent)
    source.next()
    buffer = source.buffer
    expected = torch.zeros(12, 2)
    expected[0::3, 0] = 1.0
    expected[0::4, 1] = 1.0
    torch.testing.assert_close(buffer.episode_starts, expected)
    torch.testing.assert_close(buffer.memory[0], agent.initial_memory(2))  # a fresh source starts from zeros
    batch = buffer.flat()
    with torch.no_grad():
        dist, values = agent.outputs(batch)
        torch.testing.assert_close(dist.log_prob(batch.actions), batch.log_probs)
        torch.testing.assert_close(values, batch.values)
        forgetful, _ = agent.outputs(batch._replace(episode_starts=torch.zeros_like(batch.episode_starts)))
    assert not torch.allclose(forgetful.log_prob(batch.actions), batch.log_probs, atol=1e-4)


def test_the_next_rollout_starts_from_the_memory_the_last_one_ended_with():
    env = counter_env()
    agent = recurrent_ppo(env, sequence_length=12)
    source = RolloutSource(env, agent)
    source.next()
    carried = source.memory.clone()
    assert carried.abs().sum() > 0
    batch = source.next()
    torch.testing.assert_close(source.buffer.memory[0], carried)
    with torch.no_grad():
        torch.testing.assert_close(agent.outputs(batch)[0].log_prob(batch.actions), batch.log_probs)


def test_sequence_minibatches_keep_time_order_and_their_stored_memory():
    """obs encodes (step, sub-env). Every minibatch is whole sequences: rows time-major, each column one sub-env's
    consecutive steps from a window start, its memory the one stored there; together they cover the rollout once."""
    steps, envs, length = 8, 3, 4
    buffer = RolloutBuffer(steps, envs, (2,), (), memory_shape=(2, 1, 5), sequence_length=length)
    for t in range(steps):
        obs = np.array([[t, n] for n in range(envs)], np.float32)
        memory = torch.full((2, 1, envs, 5), float(t)) + torch.arange(envs).view(1, 1, -1, 1) * 100
        buffer.add(obs, np.zeros(envs), torch.zeros(envs), torch.zeros(envs), np.zeros(envs), np.zeros(envs, bool),
                   np.zeros(envs, bool), memory=memory, episode_starts=np.array([t == 5, False, t == 2]))
    buffer.finish(torch.zeros(envs), 0.99, 0.95)
    seen = []
    for mb in minibatches(buffer.flat(), 8, torch.Generator().manual_seed(0)):
        sequences = mb.memory.shape[2]
        assert sequences == 2  # 8 rows of minibatch: two sequences of 4
        obs = mb.obs.view(length, sequences, 2)
        for s in range(sequences):
            t, n = obs[:, s, 0], obs[:, s, 1]
            assert (n == n[0]).all() and t[0] % length == 0
            torch.testing.assert_close(t, t[0] + torch.arange(length, dtype=torch.float32))
            assert float(mb.memory[0, 0, s, 0]) == t[0] + 100 * n[0]  # stored before the window's first step
            starts = mb.episode_starts.view(length, sequences)[:, s]
            torch.testing.assert_close(starts, ((t == 5) & (n == 0) | (t == 2) & (n == 2)).float())
            seen.append((int(t[0]), int(n[0])))
    assert sorted(seen) == [(t, n) for t in (0, 4) for n in range(envs)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_sequence_loss_equals_the_loss_of_stepping_the_net_one_step_at_a_time(cell):
    env = counter_env()
    agent = recurrent_ppo(env, cell, sequence_length=6)
    batch = RolloutSource(env, agent).next()
    for mb in minibatches(batch, 12, torch.Generator().manual_seed(1)):
        dist, values = agent.outputs(mb)
        sequences = mb.memory.shape[2]
        per_row = lambda x: x.view(-1, sequences, *x.shape[1:])  # noqa: E731
        obs, actions, starts = per_row(mb.obs), per_row(mb.actions), per_row(mb.episode_starts)
        reference_log_probs, reference_values = [], []
        for s in range(sequences):
            dists, v = step_by_step(agent, obs[:, s], mb.memory[:, :, s:s + 1], starts[:, s])
            reference_log_probs.append(torch.cat([d.log_prob(a[None]) for d, a in zip(dists, actions[:, s])]))
            reference_values.append(v)
        torch.testing.assert_close(per_row(dist.log_prob(mb.actions)), torch.stack(reference_log_probs, 1))
        torch.testing.assert_close(per_row(values), torch.stack(reference_values, 1))
        ratio = (dist.log_prob(mb.actions) - mb.log_probs).exp()
        loss = PPO.clipped_surrogate_loss(ratio, mb.advantages, 0.2)
        reference_ratio = (torch.stack(reference_log_probs, 1).reshape(-1) - mb.log_probs).exp()
        torch.testing.assert_close(loss, PPO.clipped_surrogate_loss(reference_ratio, mb.advantages, 0.2))


def test_automatic_sequence_length_gives_every_minibatch_a_sequence():
    assert auto_sequence_length(2048, 1, 32) == 64  # MuJoCo PPO: one env, 32 minibatches
    assert auto_sequence_length(16, 16, 4) == 16  # enough sub-envs: each one's whole rollout
    assert auto_sequence_length(128, 8, 4) == 128
    assert auto_sequence_length(100, 3, 8) == 25  # 3 windows per env, the longest divisor of 100 below 34
    assert auto_sequence_length(7, 1, 32) == 1
    with pytest.raises(UserError, match="--sequence-length 5 must divide --num-steps 12"):
        dataclasses.replace(PPOConfig(), num_steps=12, sequence_length=5)
    with pytest.raises(UserError, match="--recurrent"):
        dataclasses.replace(PPOConfig(), recurrent="rnn")


# ---------------------------------------------------------------------------------------------- learning steps
def test_recurrent_ppo_and_a2c_updates_change_the_cores_and_log_their_kl():
    env = counter_env()
    for agent in (recurrent_ppo(env, "gru"),
                  A2C(dataclasses.replace(A2CConfig(), recurrent="lstm", recurrent_hidden=8, hidden=(16,)),
                      env.single_observation_space, env.single_action_space, total_steps=1_000, seed=0)):
        before = [p.detach().clone() for p in agent.net.actor_core.parameters()]
        metrics = agent.update(RolloutSource(env, agent).next())
        assert all(np.isfinite(v) for v in metrics.values())
        assert any(not torch.equal(b, p) for b, p in zip(before, agent.net.actor_core.parameters()))
        assert ("losses/kl" in metrics) or ("losses/approx_kl" in metrics)


def test_save_and_load_keep_the_policys_outputs_on_a_sequence():
    env = counter_env()
    agent = recurrent_ppo(env)
    agent.update(RolloutSource(env, agent).next())
    clone = recurrent_ppo(env)
    clone.load_state_dict(agent.state_dict())
    obs = np.arange(10, dtype=np.float32).reshape(5, 2, 1)
    for policy in (agent, clone):
        policy.new_episodes(np.ones(2, dtype=bool))
    for step in obs:
        assert np.array_equal(agent.act(step), clone.act(step))
    torch.testing.assert_close(agent.eval_memory, clone.eval_memory)


def test_evaluation_forgets_each_game_so_two_evaluations_agree():
    """The memory of the last evaluation's games must not leak into the next one's first steps."""
    env = make_env("CartPole", 1, seed=0)
    agent = PPO(dataclasses.replace(PPOConfig(), recurrent="lstm", recurrent_hidden=8, hidden=(8,)),
                env.single_observation_space, env.single_action_space, total_steps=1_000, seed=0)
    first = evaluate_agent(agent, "CartPole", 3, seed=5, deterministic=False)
    agent.eval_memory += 1.0  # what a previous game would leave behind
    assert evaluate_agent(agent, "CartPole", 3, seed=5, deterministic=False) == first


# ---------------------------------------------------------------------------------------------- partially observed
def test_mask_velocity_zeroes_exactly_the_velocity_entries():
    env = MaskVelocity(gym.make("CartPole-v1"))
    obs, _ = env.reset(seed=0)
    raw, _ = env.env.reset(seed=0)
    assert obs[1] == 0 and obs[3] == 0 and obs[0] == raw[0] and obs[2] == raw[2] and raw[1] != 0
    pendulum = make_env("Pendulum", 2, seed=0, partially_observed=True)
    assert (pendulum.reset()[0][:, 2] == 0).all()
    with pytest.raises(UserError, match="HalfCheetah-v5 has none"):
        make_env("HalfCheetah", 1, partially_observed=True)


def test_cli_trains_and_evaluates_a_recurrent_policy_on_a_partially_observed_env(tmp_path, capsys):
    run = tmp_path / "run"
    train.main(["--agent", "ppo", "--env", "CartPole", "--recurrent", "gru", "--recurrent-hidden", "8",
                "--partially-observed", "--total-steps", "512", "--num-envs", "4", "--eval-episodes", "2",
                "--run-dir", str(run), "--no-progress"])
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["partially_observed"] is True and config["config"]["recurrent"] == "gru"
    capsys.readouterr()
    result = evaluate.main([str(run), "--episodes", "2", "--json"])
    assert result["episodes"] == 2 and np.isfinite(result["mean_return"])
    with pytest.raises(UserError, match="HalfCheetah-v5 has none"):  # train.py's entry point: one line, exit 2
        train.main(["--agent", "ppo", "--env", "HalfCheetah", "--partially-observed", "--total-steps", "64",
                    "--run-dir", str(tmp_path / "bad"), "--no-progress"])
