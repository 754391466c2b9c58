"""Faults a run must survive: interrupts, kills at any moment, numerical blow-ups, a second training on the same
directory, damaged files. Each test names the defect of issue 17 it covers (D1...)."""

from __future__ import annotations

import dataclasses

from rlkit.agents import get_agent_spec
from rlkit.envs import make_env
from rlkit.sources import make_rl_source


def dqn_source(**changes):
    spec = get_agent_spec("dqn")
    config = dataclasses.replace(spec.preset("other"), hidden=(8,), learning_starts=64, train_frequency=32,
                                 gradient_steps=16, batch_size=8, **changes)
    env = make_env("CartPole", 1)
    agent = spec.agent_class(config, env.single_observation_space, env.single_action_space, total_steps=1000, seed=0)
    env.close()
    return make_rl_source(agent, "CartPole", 1, seed=0, sticky_actions=False, total_steps=1000)


def test_resume_without_replay_refills_before_sampling():
    """D1: a checkpoint taken mid training phase (updates still due) resumed without saved replay steps the env
    until replay is ready again instead of sampling an empty buffer."""
    source = dqn_source()
    source.reset(seed=0)
    while source.pending_updates < 2:  # stop inside a training phase: updates due, as a Ctrl-C usually finds it
        source.next()
    state = source.state_dict()
    source.close()

    resumed = dqn_source()
    resumed.load_state_dict(state)
    resumed.reset(seed=1)
    batches = []
    while not batches:
        batch = resumed.next()  # old code: RuntimeError, replay holds no complete transition
        if batch is not None:
            batches.append(batch)
    assert resumed.buffer.added >= 64  # refilled to learning_starts before the first sample
    resumed.close()
