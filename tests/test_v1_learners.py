"""The learner states of the version-1 checkpoints in tests/data/v1/ (written before the job contract) load into
agents rebuilt from their saved config and act as they did: the expected actions below were recorded with the
code that wrote those files (commit 601da95), on the same fixed observations."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.agents import get_agent_spec
from rlkit.config import config_from_dict

V1 = Path(__file__).parent / "data" / "v1"
SPACES = {
    "CartPole-v1": (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2)),
    # make_env rescales Pendulum's torque to [-1, 1]: agents only see the normalized space.
    "Pendulum-v1": (gym.spaces.Box(-np.inf, np.inf, (3,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)),
}
EXPECTED_ACTIONS = {
    "dqn": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
    "ppo": [1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0],
    "sac": [[-0.11708994209766388], [-0.21714314818382263], [-0.04645979031920433], [0.026512108743190765],
            [-0.07298462837934494], [-0.1862039417028427], [-0.07422018051147461], [-0.17384584248065948],
            [-0.16729454696178436], [0.004649743437767029], [-0.10961645841598511], [-0.06300676614046097]],
}
DQN_Q_VALUES = [[1.49414, 1.83813], [1.49913, 1.8828], [1.17305, 1.5152], [1.65021, 2.24346], [1.20569, 1.61462],
                [0.75492, 0.897], [1.78808, 2.36456], [1.21808, 1.6311], [0.89941, 0.89986], [1.53549, 1.82532],
                [0.99669, 1.36419], [0.99121, 0.91582]]


def load_v1_agent(name: str, env_id: str):
    checkpoint = torch.load(V1 / f"{name}.pt", weights_only=True)
    spec = get_agent_spec(name)
    config = config_from_dict(spec.agent_class.config_class, checkpoint["agent_config"])
    obs_space, action_space = SPACES[env_id]
    agent = spec.agent_class(config, obs_space, action_space, device="cpu", seed=0)
    agent.load_state_dict(checkpoint["learner"])
    return agent


def fixed_observations(obs_dim: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-2.5, 2.5, (12, obs_dim)).astype(np.float32)


@pytest.mark.parametrize("name, env_id", [("dqn", "CartPole-v1"), ("ppo", "CartPole-v1"), ("sac", "Pendulum-v1")])
def test_v1_learner_state_loads_and_acts_as_recorded(name, env_id):
    agent = load_v1_agent(name, env_id)
    obs = fixed_observations(SPACES[env_id][0].shape[0])
    actions = agent.act(obs, explore=False, deterministic=True)
    np.testing.assert_allclose(np.asarray(actions, dtype=np.float64), EXPECTED_ACTIONS[name], rtol=0, atol=1e-6)


def test_v1_dqn_q_values_are_unchanged():
    agent = load_v1_agent("dqn", "CartPole-v1")
    with torch.no_grad():
        q = agent.q_net(torch.as_tensor(fixed_observations(4)))  # (B, K = 1, A)
    np.testing.assert_allclose(q.reshape(12, 2).numpy(), DQN_Q_VALUES, atol=1e-5)
