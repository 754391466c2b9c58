"""--overlap on (rlkit/sources/overlap.py): the env steps between updates run in a thread during the update before
them, acting with weights one update old; the steps, the updates and replay are those of the plain source."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.agents import get_agent_spec
from rlkit.envs import make_env
from rlkit.errors import UserError
from rlkit.sources import ReplaySource
from rlkit.sources.overlap import OverlappedReplaySource


def _dqn(**changes):
    spec = get_agent_spec("dqn")
    config = dataclasses.replace(spec.preset("other"), learning_starts=50, batch_size=8, buffer_size=2_000,
                                 hidden=(8,), train_frequency=4, gradient_steps=1, **changes)
    torch.manual_seed(0)
    return spec.agent_class(config, gym.spaces.Box(-np.inf, np.inf, (4,)), gym.spaces.Discrete(2), device="cpu",
                            total_steps=1_000, seed=0)


def _train(source, agent, steps):
    """The loop's part: updates on every batch, until ``steps``; returns the step count each update saw."""
    at = []
    while source.steps < steps:
        batch = source.next()
        if batch is not None:
            at.append(agent.step)
            agent.update(batch)
    return at


def test_steps_updates_and_replay_are_the_plain_sources_when_actions_do_not_depend_on_weights():
    runs = []
    for overlap in (False, True):
        agent = _dqn(start_e=1.0, end_e=1.0)  # random actions: the weights behind them cannot matter
        env = make_env("CartPole", 2, seed=3)
        source = (OverlappedReplaySource(env, agent, _dqn(start_e=1.0, end_e=1.0), seed=0) if overlap
                  else ReplaySource(env, agent, seed=0))
        source.stop_at = 400
        at = _train(source, agent, 400)
        runs.append((at, source.buffer, agent.q_net.state_dict(), source.state_dict()))
        source.close()
    (at_plain, plain, weights_plain, state_plain), (at_overlap, overlapped, weights_overlap, state_overlap) = runs
    assert at_overlap == at_plain and len(at_plain) == (400 - 50) // 4 + 1
    for name in ("frames", "actions", "rewards", "terminated", "valid"):
        np.testing.assert_array_equal(getattr(overlapped, name), getattr(plain, name))
    for key, value in weights_plain.items():
        torch.testing.assert_close(weights_overlap[key], value)
    assert state_overlap["steps"] == state_plain["steps"] == 400


def test_the_acting_copy_holds_the_weights_of_the_update_before():
    agent, twin = _dqn(start_e=0.0, end_e=0.0), _dqn(start_e=0.0, end_e=0.0)
    source = OverlappedReplaySource(make_env("CartPole", 1, seed=0), agent, twin, seed=0)
    batches = 0
    while batches < 5:
        batch = source.next()
        if batch is None:
            continue
        batches += 1
        # while this update runs the thread acts with the weights it starts from ...
        for key, value in agent.q_net.state_dict().items():
            torch.testing.assert_close(twin.q_net.state_dict()[key], value)
        before = {key: value.clone() for key, value in agent.q_net.state_dict().items()}
        agent.update(batch)
        source.pop_finished()  # waits for the thread
        # ... and keeps them through it
        for key, value in before.items():
            torch.testing.assert_close(twin.q_net.state_dict()[key], value)
        assert any(not torch.equal(agent.q_net.state_dict()[key], value) for key, value in before.items())
    source.close()


class FailingEnv(gym.vector.VectorWrapper):
    def __init__(self, env, after: int):
        super().__init__(env)
        self.left = after

    def step(self, actions):
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("the env broke")
        return self.env.step(actions)


def test_an_error_in_the_thread_is_raised_in_the_loop():
    agent = _dqn()
    env = FailingEnv(make_env("CartPole", 1, seed=0), after=80)
    env.resolved = env.env.resolved
    source = OverlappedReplaySource(env, agent, _dqn(), seed=0)
    with pytest.raises(RuntimeError, match="the env broke"):
        _train(source, agent, 1_000)


def test_prioritized_replay_stays_consistent_while_the_thread_adds():
    agent = _dqn(prioritized=True)
    source = OverlappedReplaySource(make_env("CartPole", 2, seed=0), agent, _dqn(prioritized=True), seed=0)
    _train(source, agent, 600)
    tree = source.buffer.tree
    leaves = tree[np.arange(source.buffer.num_envs * source.buffer.slots)]
    assert tree.total == pytest.approx(leaves.sum())
    assert np.all(leaves[~source.buffer.valid.reshape(-1)] == 0)
    source.close()


def test_overlap_on_trains_to_the_exact_budget_and_resumes(tmp_path):
    import train
    from rlkit.checkpoint import load_checkpoint

    run = tmp_path / "run"
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "1000", "--learning-starts", "200",
                "--overlap", "on", "--run-dir", str(run), "--no-progress", "--eval-episodes", "1"])
    checkpoint = load_checkpoint(run)
    assert checkpoint["loop"]["steps"] == 1000 and checkpoint["settings"]["overlap"] == "on"
    train.main(["--resume", str(run), "--total-steps", "1500", "--overlap", "off", "--no-progress"])
    checkpoint = load_checkpoint(run)
    assert checkpoint["loop"]["steps"] == 1500 and checkpoint["settings"]["overlap"] == "off"


@pytest.mark.parametrize("agent", ["ppo", "q-learning"])
def test_overlap_is_refused_where_it_cannot_apply(tmp_path, agent):
    import train

    env = "FrozenLake" if agent == "q-learning" else "CartPole"
    with pytest.raises(UserError, match="drop --overlap"):
        train.main(["--agent", agent, "--env", env, "--total-steps", "2000", "--overlap", "on",
                    "--run-dir", str(tmp_path / "run"), "--no-progress"])
