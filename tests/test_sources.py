"""rlkit.sources: the agent declares its source kind and storage, make_rl_source builds them; episode
bookkeeping; every source has what the loop calls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rlkit.agents import AGENTS, get_agent_spec
from rlkit.envs import make_env
from rlkit.sources import SOURCE_KINDS, A3CSource, Episodes, ReplaySource, RolloutSource, Source, make_rl_source
from rlkit.sources.batches import ImageBatchSource, VideoBatchSource

PROTOCOL = [name for name in dir(Source) if not name.startswith("_")] + ["steps", "recent_returns"]


@pytest.mark.parametrize("name", AGENTS)
def test_every_agent_declares_a_known_source_kind(name):
    assert AGENTS[name].agent_class.source_kind in SOURCE_KINDS


@pytest.mark.parametrize("source_class", [ReplaySource, RolloutSource, A3CSource, ImageBatchSource, VideoBatchSource])
def test_every_source_has_what_the_loop_calls(source_class):
    methods = ["next", "pop_finished", "reset", "close", "state_dict", "load_state_dict"]
    assert set(methods) <= set(PROTOCOL)
    for method in methods:
        assert callable(getattr(source_class, method)), method


def build(name: str, env_name: str, num_envs: int = 2, **changes):
    spec = get_agent_spec(name)
    config = dataclasses.replace(spec.preset("other"), hidden=(8,), **changes)
    env = make_env(env_name, 1)
    agent = spec.agent_class(config, env.single_observation_space, env.single_action_space, total_steps=1000, seed=0)
    env.close()
    return agent, make_rl_source(agent, env_name, num_envs, seed=0, sticky_actions=False, total_steps=1000)


def test_make_rl_source_builds_replay_from_the_agents_spec():
    agent, source = build("dqn", "CartPole", buffer_size=500, learning_starts=4, train_frequency=2, gradient_steps=1)
    assert isinstance(source, ReplaySource) and source.buffer.num_envs == 2
    assert source.buffer.slots == 250 and source.buffer.actions.dtype == np.uint8
    assert source.next() is None  # 2 env steps: not yet learning_starts
    assert source.next() is not None and agent.step == source.steps == 4  # told before the batch
    source.close()


def test_make_rl_source_builds_a_rollout_from_the_agents_spec():
    agent, source = build("ppo", "CartPole", num_steps=3)
    assert isinstance(source, RolloutSource)
    rollout = source.next()
    assert rollout.obs.shape == (6, 4) and agent.step == source.steps == 6
    source.close()


def test_episodes_keep_counts_recent_returns_and_unlogged_games():
    episodes = Episodes(recent=2)
    info = {"episode_done": np.array([True, False, True]), "episode_return": np.array([1.0, 7.0, 3.0]),
            "episode_length": np.array([10, 70, 30])}
    episodes.record(12, info)
    episodes.add(15, 5.0, 50)
    assert episodes.count == 3 and list(episodes.recent_returns) == [3.0, 5.0]
    assert episodes.pop_finished() == [(12, 1.0, 10), (12, 3.0, 30), (15, 5.0, 50)]
    assert episodes.pop_finished() == []
    restored = Episodes(recent=2)
    restored.load_state_dict(episodes.state_dict())
    assert restored.count == 3 and list(restored.recent_returns) == [3.0, 5.0]


@pytest.mark.parametrize("name, changes", [
    ("dqn", {"learning_starts": 200, "train_frequency": 16, "gradient_steps": 4, "eval_epsilon": 0.5}),
    ("ppo", {"num_steps": 64}),
])
def test_evaluating_does_not_change_training(tmp_path, name, changes):
    """One clock and a separate evaluation RNG: a run that evaluates every 200 steps learns exactly the weights
    of one that only evaluates at the end (DQN evaluating with epsilon 0.5, PPO sampling actions in training)."""
    import torch

    from rlkit.jobs.agent import AgentJob, AgentSettings

    weights = []
    for interval in (200, 0):
        config = dataclasses.replace(get_agent_spec(name).preset("other"), hidden=(16,), **changes)
        settings = AgentSettings(name, "CartPole", total_steps=1024, num_envs=2, eval_interval=interval,
                                 eval_episodes=2, progress=False)
        loop = AgentJob().build(settings, config, tmp_path / f"{name}{interval}")
        loop.run()
        net = loop.learner.q_net if name == "dqn" else loop.learner.net
        weights.append([p.detach().clone() for p in net.parameters()])
    assert (tmp_path / f"{name}200" / "eval.jsonl").read_text().count("\n") > 3
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_a_reset_restarts_the_reward_scalers_running_returns_but_keeps_its_statistics():
    """Issue 17 item 4: a resumed run plays new games, so the discounted return each sub-env accumulates restarts."""
    agent, source = build("ppo", "CartPole", num_steps=8, normalize_reward=True)
    source.next()
    scaler = source.reward_scaler
    count = float(scaler.stats.count)
    assert (scaler.returns != 0).any()
    source.reset(seed=3)
    assert (scaler.returns == 0).all() and float(scaler.stats.count) == count
