"""Tabular Q-learning and SARSA: TD updates and step sizes by hand, the queue's once-each-in-order delivery, value
iteration against a hand-solved MDP, and the agents through train.py and evaluate.py."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import evaluate
import train
from rlkit.agents.tabular import TabularConfig, TabularQ, TransitionQueue, step_size
from rlkit.analysis.mdp import toy_text_mdp, value_iteration
from rlkit.envs.custom import OneHotBox, discrete_parts
from rlkit.errors import UserError
from rlkit.jobs import read_checkpoint

ONE_HOT = np.eye(2, dtype=np.float32)  # row s: the observation of state s


def two_state_agent(**changes) -> TabularQ:
    config = TabularConfig(**{"gamma": 0.5, "alpha": 0.5, **changes})
    return TabularQ(config, gym.spaces.Box(0.0, 1.0, (2,), np.float32), gym.spaces.Discrete(2), seed=0)


def add(queue: TransitionQueue, s: int, a: int, r: float, s_next: int, terminated: bool = False,
        truncated: bool = False) -> None:
    queue.add(ONE_HOT[[s]], np.array([a]), np.array([r]), np.array([terminated]), np.array([truncated]),
              ONE_HOT[[s_next]])


def test_q_learning_update_by_hand():
    agent, queue = two_state_agent(), TransitionQueue(1, on_policy=False)
    add(queue, 0, 0, 1.0, 1)        # Q[0,0] = 0 + .5 (1 + .5 max Q[1] = 0 - 0)             = 0.5
    add(queue, 1, 1, 2.0, 0)        # Q[1,1] = 0 + .5 (2 + .5 max Q[0] = .5*.5 - 0)          = 1.125
    add(queue, 0, 1, 0.0, 1)        # Q[0,1] = 0 + .5 (0 + .5 max Q[1] = .5*1.125 - 0)       = 0.28125
    add(queue, 0, 0, 1.0, 1, True)  # Q[0,0] = .5 + .5 (1 - .5), terminated: no bootstrap    = 0.75
    agent.update(queue.sample(1))  # one batch, applied in arrival order (row 2 reads row 1's entry)
    assert agent.q.tolist() == [[0.75, 0.28125], [0.0, 1.125]]
    assert agent.visits.tolist() == [[2, 1], [0, 1]]


def test_sarsa_bootstraps_from_the_next_action_taken_not_the_max():
    agent, queue = two_state_agent(on_policy=True), TransitionQueue(1, on_policy=True)
    agent.q[1] = torch.tensor([0.0, 4.0])  # max Q[1] = 4, but the action taken in state 1 is 0
    add(queue, 0, 0, 1.0, 1)
    assert len(queue) == 0  # waits for the action chosen in state 1
    add(queue, 1, 0, 2.0, 0)
    agent.update(queue.sample(1))  # Q[0,0] = 0 + .5 (1 + .5 Q[1,0] = 0 - 0) = 0.5 (Q-learning: 1.5)
    assert agent.q[0, 0] == 0.5
    add(queue, 0, 1, 3.0, 1, terminated=True)  # releases (1, 0) with a' = 1, then the terminal step
    agent.update(queue.sample(1))
    # Q[1,0] = 0 + .5 (2 + .5 Q[0,1] = 0, read before the terminal row updates it) = 1.0
    # Q[0,1] = 0 + .5 (3 - 0), terminated                                          = 1.5
    assert agent.q.tolist() == [[0.5, 1.5], [1.0, 4.0]]


def test_sarsa_after_a_truncation_bootstraps_from_the_epsilon_greedy_mean():
    agent, queue = two_state_agent(on_policy=True, start_e=0.5, end_e=0.5), TransitionQueue(1, on_policy=True)
    agent.q[1] = torch.tensor([0.0, 4.0])
    add(queue, 0, 0, 1.0, 1, truncated=True)  # released at once: the next action starts another episode
    agent.update(queue.sample(1))
    # E[Q[1, a']] = .5 * mean(0, 4) + .5 * 4 = 3; Q[0,0] = .5 (1 + .5 * 3) = 1.25
    assert agent.q[0, 0] == 1.25


def test_the_queue_hands_out_each_transition_once_in_arrival_order():
    queue = TransitionQueue(2, on_policy=False)
    for t in range(3):  # two sub-envs; the reward numbers the transitions 0..5
        queue.add(ONE_HOT[[0, 1]], np.array([0, 1]), np.array([2 * t, 2 * t + 1]), np.zeros(2, bool),
                  np.zeros(2, bool), ONE_HOT[[1, 0]])
    assert queue.sample(1).rewards.tolist() == [0, 1, 2, 3, 4, 5]
    assert len(queue) == 0


def test_step_sizes_by_hand():
    assert [step_size("1/n", 0.1, 0.6, n) for n in (1, 2, 4)] == [1.0, 0.5, 0.25]
    # 2^-0.6 = 0.659754, 4^-0.6 = 0.435275
    assert [step_size("polynomial", 0.1, 0.6, n) for n in (1, 2, 4)] == pytest.approx([1.0, 0.659754, 0.435275],
                                                                                       abs=1e-6)
    assert [step_size("constant", 0.1, 0.6, n) for n in (1, 2, 4)] == [0.1, 0.1, 0.1]


def test_one_over_n_makes_the_entry_the_mean_of_its_targets():
    agent, queue = two_state_agent(step_size="1/n"), TransitionQueue(1, on_policy=False)
    for r in (1.0, 2.0, 6.0):
        add(queue, 0, 0, r, 1, terminated=True)
    agent.update(queue.sample(1))
    assert agent.q[0, 0] == 3.0  # (1 + 2 + 6) / 3


def test_value_iteration_matches_a_hand_solved_mdp():
    # State 0: a0 stays (reward 1), a1 moves to 1 (0). State 1: a0 stays (2), a1 moves to 0 (0). gamma 0.9.
    # V*(1) = 2 / (1 - .9) = 20; Q*(0,1) = .9 * 20 = 18 > staying in 0 (1 / .1 = 10), so V*(0) = 18;
    # Q*(0,0) = 1 + .9 * 18 = 17.2, Q*(1,0) = 2 + .9 * 20 = 20, Q*(1,1) = .9 * 18 = 16.2.
    P = torch.zeros(2, 2, 2, dtype=torch.float64)
    P[0, 0, 0] = P[0, 1, 1] = P[1, 0, 1] = P[1, 1, 0] = 1.0
    R = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    q = value_iteration(P, R, 0.9, tol=1e-12)
    assert q.flatten().tolist() == pytest.approx([17.2, 18.0, 20.0, 16.2], abs=1e-9)


def test_toy_text_mdp_of_deterministic_frozen_lake():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    P, R, terminal = toy_text_mdp(env)
    q = value_iteration(P, R, 0.9)
    # The goal is 6 moves from the start and pays 1 on arrival: V*(0) = .9^5; from 14 moving right ends there.
    assert q[0].max().item() == pytest.approx(0.9**5)
    assert q[14, 2].item() == pytest.approx(1.0) and bool(terminal[14, 2, 15])
    assert P.sum(-1).max().item() == pytest.approx(1.0)


FROZEN_LAKE = ["--env", "FrozenLake-v1", "--env-kwargs", "is_slippery=false", "--seed", "1", "--no-progress"]


@pytest.mark.parametrize("agent", ["q-learning", "sarsa"])
def test_train_through_the_cli_solves_deterministic_frozen_lake(agent, tmp_path):
    run = tmp_path / "run"
    train.main(["--agent", agent, *FROZEN_LAKE, "--total-steps", "3000", "--eval-interval", "3000",
                "--run-dir", str(run)])
    result = evaluate.main([str(run), "--json", "--episodes", "3"])
    assert result["agent"] == agent and result["mean_return"] == 1.0
    learner = read_checkpoint(run)["learner"]
    # Every env step reached exactly one update; SARSA may hold back the last one (waiting for its next action).
    held_back = 0 if agent == "q-learning" else 1
    assert 3000 - held_back <= learner["counters"]["updates"] == learner["visits"].sum().item() <= 3000


def test_every_step_is_learnt_once_with_several_envs_and_sparse_updates(tmp_path):
    run = tmp_path / "run"
    train.main(["--agent", "q-learning", *FROZEN_LAKE, "--total-steps", "400", "--num-envs", "2",
                "--train-frequency", "4", "--learning-starts", "40", "--run-dir", str(run)])
    learner = read_checkpoint(run)["learner"]
    # The source counts toward --train-frequency from step 40 on: updates at steps 42, 46, ..., 398, each learning
    # every transition since the one before (the first: the 42 of the warm-up). Steps 399-400 wait for step 402.
    assert learner["counters"]["updates"] == learner["visits"].sum().item() == 398


def test_checkpoint_round_trip_keeps_the_table_and_the_counts(tmp_path):
    agent = two_state_agent()
    agent.q.copy_(torch.tensor([[1.5, -2.0], [0.25, 3.0]]))
    agent.visits.copy_(torch.tensor([[3, 0], [1, 7]]))
    agent.updates = 11
    path = tmp_path / "state.pt"
    torch.save(agent.state_dict(), path)
    other = two_state_agent()
    other.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(other.q, agent.q) and torch.equal(other.visits, agent.visits) and other.updates == 11
    obs = ONE_HOT[[0, 1]]
    assert other.act(obs).tolist() == agent.act(obs).tolist() == [0, 1]  # the greedy actions


def test_an_env_without_discrete_observations_is_refused(tmp_path):
    with pytest.raises(UserError, match="one-hot codes of a Discrete observation space.*such as dqn"):
        train.main(["--agent", "q-learning", "--env", "CartPole", "--total-steps", "100", "--no-progress",
                    "--run-dir", str(tmp_path / "run")])


def test_a_tuple_of_discrete_spaces_numbers_its_states_in_mixed_radix():
    """make_env's codes of Tuple(Discrete(3), MultiBinary(2), Discrete(2, start=1)) carry their layout; the table
    has 3 x 2 x 2 x 2 = 24 rows and state (2, [1, 0], 2) is row ((2 * 2 + 1) * 2 + 0) * 2 + (2 - 1) = 21."""
    space = gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.MultiBinary(2), gym.spaces.Discrete(2, start=1)))
    box = OneHotBox(discrete_parts(space))
    assert box.parts == ((3, 3), (1, 2), (1, 2), (2, 2)) and box.shape == (7,)
    code = gym.spaces.flatten(space, (2, np.array([1, 0], np.int8), 2)).astype(np.float32)
    agent = TabularQ(TabularConfig(), box, gym.spaces.Discrete(2), seed=0)
    assert agent.q.shape == (24, 2)
    assert agent.states(np.stack([code, gym.spaces.flatten(space, (0, np.array([0, 0], np.int8), 1))])).tolist() \
        == [21, 0]
    with pytest.raises(UserError, match="one-hot codes of discrete observations"):
        agent.states(np.ones((1, 7), np.float32))


def test_a_table_too_large_is_refused():
    """Tuple(Discrete(10_000) x 3): 10^12 states is refused in one line, before any table is allocated."""
    box = OneHotBox([(10_000, 10_000)] * 3)
    with pytest.raises(UserError, match="would need a table of 1,000,000,000,000 states x 2 actions"):
        TabularQ(TabularConfig(), box, gym.spaces.Discrete(2), seed=0)


def test_blackjack_trains_and_evaluates_through_the_cli(tmp_path):
    """Blackjack-v1's Tuple observation (player sum, dealer card, usable ace): 32 x 11 x 2 = 704 table rows; the
    run learns from every step and evaluates (the old code refused its codes at the first step)."""
    run = tmp_path / "run"
    train.main(["--agent", "q-learning", "--env", "Blackjack-v1", "--total-steps", "3000", "--seed", "1",
                "--no-progress", "--eval-episodes", "5", "--run-dir", str(run)])
    learner = read_checkpoint(run)["learner"]
    assert learner["q"].shape == (704, 2) and learner["counters"]["updates"] == learner["visits"].sum().item() == 3000
    result = evaluate.main([str(run), "--json", "--episodes", "20"])
    assert result["episodes"] == 20 and -1 <= result["mean_return"] <= 1
