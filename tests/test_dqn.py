"""Behaviour of rlkit.agents.dqn.DQN (and the Q heads it is built from), against hand-computed numbers.

Most tests use ``hidden=()``: the MLP encoder is then a bare flatten and the Q network is linear,
``Q(s) = W s + b``, so every value, target, loss and gradient below can be worked out by hand.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlkit.agents.dqn as dqn_module
from rlkit.agents import AGENTS
from rlkit.agents.dqn import DQN
from rlkit.buffers import Batch
from rlkit.errors import UserError
from rlkit.jobs import JOBS
from rlkit.nets import DuelingQHead, NatureCNN

GAMMA = 0.9
OBS_SPACE = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
ACTION_SPACE = gym.spaces.Discrete(2)
TOTAL_STEPS = 1000  # with CartPole's values: epsilon decays over 0.16 * 1000 = 160 env steps
CARTPOLE = {"agent": "dqn", "env": "CartPole"}
"""The hand computations below use the values DQN runs with on CartPole (rlkit/hyperparams/dqn.yml)."""

# Hand-set linear Q functions, as nn.Linear weights (one row per action).
ONLINE_W = [[3.0, 0.0], [0.0, 1.0]]  # Q_online(s) = (3 s0, s1)
TARGET_W = [[1.0, 0.0], [0.0, 2.0]]  # Q_target(s) = (s0, 2 s1)
ZERO_B = [0.0, 0.0]


# ---------------------------------------------------------------------------------------------- helpers
def make_agent(seed: int = 0, **changes) -> DQN:
    """A DQN on 2-d vector obs and 2 actions: CartPole's values, gamma 0.9, a linear Q net unless changed."""
    config = dataclasses.replace(JOBS["agent"].preset(CARTPOLE), **{"gamma": GAMMA, "hidden": (), **changes})
    return DQN(config, OBS_SPACE, ACTION_SPACE, total_steps=TOTAL_STEPS, seed=seed)


@torch.no_grad()
def set_linear(net: torch.nn.Module, weight, bias) -> None:
    """Set a QHead network's output layer (weight rows are actions)."""
    net.head.linear.weight.copy_(torch.tensor(weight))
    net.head.linear.bias.copy_(torch.tensor(bias))


@torch.no_grad()
def set_heads(net: torch.nn.Module, weight, bias) -> None:
    """Set bootstrapped heads: weight (K, F, A), bias (K, A)."""
    layer = net.head.layers[-1]
    layer.weight.copy_(torch.tensor(weight))
    layer.bias.copy_(torch.tensor(bias))


def make_batch(obs, actions, rewards, *, next_obs=None, terminated=None, discounts=None, weights=None, masks=None,
               update_priorities=None) -> Batch:
    """A Batch of float32 tensors; unset fields: next_obs = obs, not terminated, discount gamma, weight 1, every row
    shown to the one head."""
    n = len(rewards)

    def f32(x, default):
        return torch.as_tensor(default if x is None else x, dtype=torch.float32)

    return Batch(
        obs=f32(obs, None), actions=torch.as_tensor(actions, dtype=torch.int64), rewards=f32(rewards, None),
        next_obs=f32(next_obs, obs), terminated=f32(terminated, [0.0] * n), discounts=f32(discounts, [GAMMA] * n),
        weights=f32(weights, [1.0] * n), masks=f32(masks, [[1.0]] * n),
        update_priorities=update_priorities,
    )


# Two terminal rows with known errors under ONLINE_W: Q(s0=(1,0), a=0) = 3 vs target 3.5 (error 0.5, small);
# Q(s1=(0,1), a=1) = 1 vs target 4 (error 3, large).
TWO_ROWS = dict(obs=[[1.0, 0.0], [0.0, 1.0]], actions=[0, 1], rewards=[3.5, 4.0], terminated=[1.0, 1.0])


@pytest.fixture
def no_step(monkeypatch):
    """Make update() only backpropagate (no optimizer step), so gradients can be read from the parameters."""

    def backward_only(optimizer, loss, params, max_grad_norm):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return 0.0

    monkeypatch.setattr(dqn_module, "optimizer_step", backward_only)


def make_linear_agent(**changes) -> DQN:
    """make_agent with the online net set to Q(s) = (3 s0, s1)."""
    agent = make_agent(**changes)
    set_linear(agent.q_net, ONLINE_W, ZERO_B)
    return agent


@pytest.fixture
def linear_agent() -> DQN:
    return make_linear_agent()


def grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


# ---------------------------------------------------------------------------------------------- TD targets
# Rows: (0) s' = (1, 1), r = 0.5: Q_target = (1, 2), Q_online = (3, 1): DQN bootstraps 2, double DQN Q_target[0] = 1.
#       (1) terminated, r = 1: no bootstrap.
#       (2) a 3-step return r = 2, discount 0.9^3, s' = (0.5, 1): Q_target = (0.5, 2), Q_online = (1.5, 1).
TD_BATCH = dict(
    obs=[[0.0, 0.0]] * 3, actions=[0, 1, 0], rewards=[0.5, 1.0, 2.0],
    next_obs=[[1.0, 1.0], [5.0, 5.0], [0.5, 1.0]], terminated=[0.0, 1.0, 0.0], discounts=[0.9, 0.9, 0.9**3],
)


@pytest.mark.parametrize(
    "double, expected",
    [
        (False, [0.5 + 0.9 * 2, 1.0, 2.0 + 0.729 * 2]),  # max_a' Q_target(s', a')
        (True, [0.5 + 0.9 * 1, 1.0, 2.0 + 0.729 * 0.5]),  # Q_target(s', argmax_a' Q_online(s', a'))
    ],
    ids=["dqn", "double"],
)
def test_td_target_hand_computed(double, expected):
    """td_target = r + gamma^m (1 - terminated) * bootstrap, with the plain max or the double-DQN argmax; (B, K = 1)."""
    agent = make_linear_agent(double=double)
    set_linear(agent.target_net, TARGET_W, ZERO_B)
    torch.testing.assert_close(agent.td_target(make_batch(**TD_BATCH)), torch.tensor(expected)[:, None])


def test_bootstrapped_td_target_per_head():
    """With bootstrapped heads the target is (B, K) and each head bootstraps from its own target head."""
    agent = make_agent(bootstrapped=True, num_heads=2)
    # head 0: Q_target(s) = (s0, 0); head 1: Q_target(s) = (0, 3 s1)  [weight layout (K, F, A)]
    set_heads(agent.target_net, [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 3.0]]], [[0.0, 0.0], [0.0, 0.0]])
    batch = make_batch(obs=[[0.0, 0.0]], actions=[0], rewards=[1.0], next_obs=[[2.0, 1.0]])
    torch.testing.assert_close(agent.td_target(batch), torch.tensor([[1.0 + 0.9 * 2, 1.0 + 0.9 * 3]]))


def test_bootstrapped_double_td_target_per_head():
    """Double targets per head, (B, K): online head k picks a' at s' = (2, 1), target head k values it.

    target head 0: Q = (s0, 0) = (2, 0); head 1: Q = (0, 3 s1) = (0, 3)  -> plain max: 2 and 3
    online head 0: Q = (0, s1) = (0, 1) picks a' = 1 -> 0; head 1: Q = (s0, 0) = (2, 0) picks a' = 0 -> 0
    """
    agent = make_agent(bootstrapped=True, num_heads=2, double=True)
    set_heads(agent.target_net, [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 3.0]]], [[0.0, 0.0], [0.0, 0.0]])
    set_heads(agent.q_net, [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]], [[0.0, 0.0], [0.0, 0.0]])
    batch = make_batch(obs=[[0.0, 0.0]] * 2, actions=[0, 1], rewards=[1.0, 0.5], next_obs=[[2.0, 1.0]] * 2,
                       terminated=[0.0, 1.0])
    torch.testing.assert_close(agent.td_target(batch), torch.tensor([[1.0, 1.0], [0.5, 0.5]]))
    agent.config.double = False
    torch.testing.assert_close(agent.td_target(batch), torch.tensor([[1.0 + 0.9 * 2, 1.0 + 0.9 * 3], [0.5, 0.5]]))


# ---------------------------------------------------------------------------------------------- update and loss
@pytest.mark.parametrize(
    "delta, expected",
    [
        (1.0, (0.5 * 0.5**2 + 1.0 * (3.0 - 0.5)) / 2),  # 0.125 (quadratic) and 2.5 (linear branch)
        (2.0, (0.5 * 0.5**2 + 2.0 * (3.0 - 1.0)) / 2),  # 0.125 and 4.0: delta sets where the loss turns linear
    ],
)
def test_update_reports_hand_computed_huber_loss(delta, expected):
    """losses/td_loss is the mean Huber loss (quadratic below delta, linear above) of the pre-update Q values."""
    metrics = make_linear_agent(huber_delta=delta).update(make_batch(**TWO_ROWS))
    assert metrics["losses/td_loss"] == pytest.approx(expected)
    assert metrics["losses/q_values"] == pytest.approx((3.0 + 1.0) / 2)


def test_update_moves_q_toward_target():
    """One Adam step (lr 0.1) moves each Q(s, a) by ~lr per parameter toward its target; the loss keeps falling."""
    agent = make_linear_agent(learning_rate=0.1)
    batch = make_batch(**TWO_ROWS)
    losses = [agent.update(batch)["losses/td_loss"]]
    with torch.no_grad():
        q = agent.q_net(batch.obs)
    # Adam's first step is lr * sign(grad): weight and bias of the taken action both grow by 0.1.
    torch.testing.assert_close(q[[0, 1], 0, [0, 1]], torch.tensor([3.2, 1.2]), atol=1e-5, rtol=0)
    losses += [agent.update(batch)["losses/td_loss"] for _ in range(4)]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert agent.updates == 5


def test_dueling_head_aggregation():
    """DuelingQHead computes V + A - mean_a A per row, and a constant added to every advantage changes nothing."""
    head = DuelingQHead(2, 3)
    with torch.no_grad():
        head.value.weight.copy_(torch.tensor([[1.0, 1.0]]))
        head.value.bias.fill_(0.5)
        head.advantage.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.advantage.bias.zero_()
    features = torch.tensor([[1.0, 2.0], [2.0, 0.0]])
    # row 0: V = 3.5, A = (1, 2, 3), mean 2; row 1: V = 2.5, A = (2, 0, 2), mean 4/3
    expected = torch.tensor([[2.5, 3.5, 4.5], [2.5 + 2 / 3, 2.5 - 4 / 3, 2.5 + 2 / 3]])
    torch.testing.assert_close(head(features), expected)
    with torch.no_grad():
        head.advantage.bias.add_(7.0)
    torch.testing.assert_close(head(features), expected)


def test_dueling_streams_with_hidden_layers_hand_computed():
    """Each stream has its own hidden layer: V(x) = 1 * relu(2 x) + 1, A(x) = (1, 3) * relu(x).

    x = 2: V = 5, A = (2, 6), mean 4 -> Q = (3, 7);  x = -1: V = 1, A = (0, 0) -> Q = (1, 1).
    """
    head = DuelingQHead(1, 2, hidden=1)
    with torch.no_grad():
        for stream, w1, w2, b2 in ((head.value, [[2.0]], [[1.0]], [1.0]), (head.advantage, [[1.0]], [[1.0], [3.0]],
                                                                            [0.0, 0.0])):
            stream[0].weight.copy_(torch.tensor(w1))
            stream[0].bias.zero_()
            stream[2].weight.copy_(torch.tensor(w2))
            stream[2].bias.copy_(torch.tensor(b2))
    torch.testing.assert_close(head(torch.tensor([[2.0], [-1.0]])), torch.tensor([[3.0, 7.0], [1.0, 1.0]]))


def test_dueling_streams_split_where_wang_et_al_split_them():
    """Images: the Nature CNN's convolutions, then a 512-unit layer per stream; vectors: the MLP but its last
    layer, then a layer of that width per stream. The Q network still gives (B, K = 1, A)."""
    images = DQN(dataclasses.replace(AGENTS["dueling-dqn"].preset("atari"), buffer_size=100),
                 gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6))
    head = images.q_net.head
    assert isinstance(images.q_net.encoder.fc, torch.nn.Identity) and isinstance(head, DuelingQHead)
    assert [m.out_features for m in head.value if isinstance(m, torch.nn.Linear)] == [512, 1]
    assert [m.out_features for m in head.advantage if isinstance(m, torch.nn.Linear)] == [512, 6]
    assert head.value[0].in_features == head.advantage[0].in_features == 64 * 7 * 7
    assert images.q_net(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 1, 6)

    vectors = make_agent(dueling=True, hidden=(16, 8)).q_net
    assert vectors.encoder.out_features == 16
    assert [m.out_features for m in vectors.head.advantage if isinstance(m, torch.nn.Linear)] == [8, 2]
    assert vectors(torch.zeros(3, 2)).shape == (3, 1, 2)


def test_bootstrapped_dueling_is_refused_with_one_line():
    with pytest.raises(UserError, match="bootstrapped DQN has no dueling head"):
        make_agent(bootstrapped=True, dueling=True)


def test_plain_dqn_keeps_its_parameter_names():
    """The names version-1 checkpoints hold (tests/data/v1/dqn.pt)."""
    assert list(make_agent(hidden=(16, 16)).q_net.state_dict()) == [
        "encoder.layers.1.weight", "encoder.layers.1.bias", "encoder.layers.3.weight", "encoder.layers.3.bias",
        "head.linear.weight", "head.linear.bias"]


# ---------------------------------------------------------------------------------------------- bootstrapped
HEADS_W = [[[3.0, 0.0], [0.0, 1.0]]] * 3  # every head Q(s) = (3 s0, s1)  [layout (K, F, A)]


def test_bootstrap_masks_reach_only_their_heads(no_step):
    """Head k's loss only sees rows whose mask shows them to k (divided by K); head 1, masked out, gets no gradient."""
    agent = make_agent(bootstrapped=True, num_heads=3)
    set_heads(agent.q_net, HEADS_W, [[0.0, 0.0]] * 3)
    batch = make_batch(**TWO_ROWS, masks=[[1, 0, 1], [1, 0, 0]])
    metrics = agent.update(batch)
    # row 0: heads 0, 2 each huber(0.5) = 0.125; row 1: head 0 huber(3) = 2.5; each row / K, then mean over rows
    assert metrics["losses/td_loss"] == pytest.approx(((0.125 + 0.125) / 3 + 2.5 / 3) / 2)
    weight_grad = agent.q_net.head.layers[-1].weight.grad
    # dL/dq = huber'(q - target) / K / B: row 0: -0.5 / 6 = -1/12; row 1: clipped -1 / 6
    torch.testing.assert_close(weight_grad[0], torch.tensor([[-1 / 12, 0.0], [0.0, -1 / 6]]))
    assert torch.equal(weight_grad[1], torch.zeros(2, 2))
    torch.testing.assert_close(weight_grad[2], torch.tensor([[-1 / 12, 0.0], [0.0, 0.0]]))
    assert torch.equal(agent.q_net.head.layers[-1].bias.grad[1], torch.zeros(2))


# At s = (1, 0): head 0 Q = (1, 0) -> action 0; head 1 Q = (0, 5) -> 1; head 2 Q = (0.2, 0) -> 0.
# Vote: action 0 (2 of 3 heads); mean Q = (0.4, 5/3): argmax 1.
VOTE_W = [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 5.0], [0.0, 0.0]], [[0.2, 0.0], [0.0, 0.0]]]
HEAD_ACTION = np.array([0, 1, 0])
S = np.array([[1.0, 0.0]], dtype=np.float32)


@pytest.fixture
def voting_agent() -> DQN:
    agent = make_agent(bootstrapped=True, num_heads=3, start_e=0.0, end_e=0.0)
    set_heads(agent.q_net, VOTE_W, [[0.0, 0.0]] * 3)
    return agent


def test_bootstrapped_explore_follows_the_episode_head(voting_agent):
    """episode_start draws a head per sub-env; act(explore) follows it until that sub-env's next episode start."""
    obs = np.repeat(S, 6, axis=0)
    voting_agent.episode_start(np.ones(6, dtype=bool))
    heads = voting_agent.active_heads.copy()
    assert heads.shape == (6,) and set(heads) <= {0, 1, 2}
    for _ in range(3):
        np.testing.assert_array_equal(voting_agent.act(obs, explore=True), HEAD_ACTION[heads])
    restart = np.array([True, False, False, False, False, False])
    drawn = set()
    for _ in range(30):
        voting_agent.episode_start(restart)
        np.testing.assert_array_equal(voting_agent.active_heads[1:], heads[1:])  # the others keep their head
        drawn.add(int(voting_agent.active_heads[0]))
        np.testing.assert_array_equal(voting_agent.act(obs, explore=True), HEAD_ACTION[voting_agent.active_heads])
    assert drawn == {0, 1, 2}


def test_bootstrapped_evaluation_is_majority_vote(voting_agent):
    """act(explore=False) with eval epsilon 0 returns the heads' majority vote, not the argmax of the mean Q."""
    with torch.no_grad():
        assert voting_agent.q_net(torch.as_tensor(S)).mean(1).argmax(-1).item() == 1
    np.testing.assert_array_equal(voting_agent.act(np.repeat(S, 4, axis=0)), [0, 0, 0, 0])


# ---------------------------------------------------------------------------------------------- epsilon
@pytest.mark.parametrize("steps, epsilon", [(0, 1.0), (40, 0.76), (80, 0.52), (160, 0.04), (1000, 0.04)])
def test_epsilon_schedule(steps, epsilon):
    """Epsilon falls linearly from start_e 1 to end_e 0.04 over 0.16 * 1000 env steps, then stays at 0.04."""
    agent = make_agent()
    agent.step = steps
    assert agent.epsilon == pytest.approx(epsilon)


def test_act_leaves_the_clock_and_the_schedule_alone(linear_agent):
    """Only the source moves ``step``: acting, exploring or not, changes neither it nor epsilon."""
    obs = np.zeros((5, 2), np.float32)
    linear_agent.step = 40
    linear_agent.act(obs, explore=True)
    linear_agent.act(obs)
    assert linear_agent.step == 40 and linear_agent.epsilon == pytest.approx(0.76)


def test_evaluation_draws_only_from_eval_rng(linear_agent):
    """act(explore=False) leaves the training generator alone; seed_evaluation makes evaluation repeat."""
    obs = np.zeros((500, 2), np.float32)
    linear_agent.config.eval_epsilon = 0.5
    state = linear_agent.rng.bit_generator.state
    linear_agent.seed_evaluation(3)
    first = linear_agent.act(obs)
    linear_agent.seed_evaluation(3)
    np.testing.assert_array_equal(linear_agent.act(obs), first)
    assert linear_agent.rng.bit_generator.state == state
    assert 0 < first.mean() < 1  # epsilon 0.5 did draw random actions


def test_act_is_epsilon_greedy(linear_agent):
    """At epsilon 1 actions are uniform; at 0.04 only ~2% differ from the greedy action; eval (epsilon 0) is greedy."""
    obs = np.tile([[1.0, 0.0]], (4000, 1)).astype(np.float32)  # greedy action 0: Q = (3, 0)
    assert linear_agent.act(obs, explore=True).mean() == pytest.approx(0.5, abs=0.03)
    linear_agent.step = 4000  # as the source would after this vector step: schedule over
    assert linear_agent.epsilon == pytest.approx(0.04)
    assert linear_agent.act(obs, explore=True).mean() == pytest.approx(0.02, abs=0.01)
    assert not linear_agent.act(obs).any()


# ---------------------------------------------------------------------------------------------- target network
def snapshot(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def params_equal(a: torch.nn.Module | list, b: torch.nn.Module | list) -> bool:
    as_list = lambda x: list(x.parameters()) if isinstance(x, torch.nn.Module) else x  # noqa: E731
    return all(torch.equal(x, y) for x, y in zip(as_list(a), as_list(b), strict=True))


def test_hard_target_sync_after_interval(linear_agent):
    """tau = 1: once target_update_interval (10) env steps have passed, update() first copies the online net to the
    target (before its own step, so a burst of updates shares one target, as in SB3), and not before."""
    batch = make_batch(**TWO_ROWS)
    initial = snapshot(linear_agent.target_net)
    linear_agent.update(batch)  # 0 env steps
    linear_agent.step = 9  # the source's clock
    linear_agent.update(batch)  # 9 env steps: no sync yet
    assert params_equal(linear_agent.target_net, initial)
    linear_agent.step = 10
    online = snapshot(linear_agent.q_net)
    assert not params_equal(online, initial)
    linear_agent.update(batch)  # 10 env steps: sync, then learn
    assert params_equal(linear_agent.target_net, online) and linear_agent.last_target_sync == 10
    linear_agent.update(batch)  # the next sync waits for 10 more env steps
    assert params_equal(linear_agent.target_net, online)
    assert not params_equal(linear_agent.q_net, online)


def test_soft_target_sync_moves_by_tau():
    """tau = 0.1: sync_target moves every target parameter by exactly 10% of its distance to the online one."""
    agent = make_agent(tau=0.1, hidden=(4,))
    agent.target_net.load_state_dict(make_agent(hidden=(4,)).q_net.state_dict())  # another random init
    online = [p.clone() for p in agent.q_net.parameters()]
    before = [p.clone() for p in agent.target_net.parameters()]
    agent.sync_target()
    for t0, o, t1 in zip(before, online, agent.target_net.parameters()):
        torch.testing.assert_close(t1, t0 + 0.1 * (o - t0))
    assert not params_equal(agent.q_net, agent.target_net)


# ---------------------------------------------------------------------------------------------- prioritized
def test_update_reports_abs_td_errors_as_priorities(linear_agent):
    """update() calls batch.update_priorities with |target - Q(s, a)| per row (errors -0.5 and 3 here)."""
    calls = []
    linear_agent.update(make_batch(**{**TWO_ROWS, "rewards": [2.5, 4.0]}, update_priorities=calls.append))
    assert len(calls) == 1
    torch.testing.assert_close(torch.as_tensor(calls[0]), torch.tensor([0.5, 3.0]))


def test_importance_weights_scale_the_loss(linear_agent, no_step):
    """The loss is mean(weight * huber): a weight-0 row adds nothing, so the gradient is half the one-row gradient."""
    metrics = linear_agent.update(make_batch(**TWO_ROWS, weights=[1.0, 0.0]))
    assert metrics["losses/td_loss"] == pytest.approx(0.125 / 2)
    weighted = grads(linear_agent.q_net)
    one_row = {k: v[:1] for k, v in TWO_ROWS.items()}
    linear_agent.update(make_batch(**one_row))
    for g_weighted, g_one in zip(weighted, grads(linear_agent.q_net)):
        torch.testing.assert_close(g_weighted, g_one / 2)
    assert weighted[0].abs().sum() > 0


# ---------------------------------------------------------------------------------------------- saving
@pytest.mark.parametrize("changes", [{}, {"bootstrapped": True, "num_heads": 3}], ids=["dqn", "bootstrapped"])
def test_state_dict_round_trip(tmp_path, changes):
    """state_dict -> torch.save -> torch.load(weights_only) -> load_state_dict restores nets, counters, rng, optimizer."""
    rng = np.random.default_rng(1)
    source = make_agent(seed=0, hidden=(8,), **changes)
    obs = rng.normal(size=(64, 2)).astype(np.float32)
    batch = make_batch(obs[:8], rng.integers(0, 2, 8), rng.normal(size=8),
                       masks=rng.integers(0, 2, (8, 3)) if changes else None)
    source.episode_start(np.ones(8, dtype=bool))
    source.act(obs[:8], explore=True)
    source.step = 8  # as the replay source would, having taken that vector step
    source.update(batch)
    source.update(batch)
    torch.save(source.state_dict(), tmp_path / "agent.pt")

    copy = make_agent(seed=99, hidden=(8,), **changes)
    copy.load_state_dict(torch.load(tmp_path / "agent.pt", weights_only=True))
    copy.step = source.step  # the step is the source's: a resumed source tells the agent
    np.testing.assert_array_equal(copy.act(obs), source.act(obs))
    assert (copy.updates, copy.last_target_sync) == (source.updates, source.last_target_sync)
    np.testing.assert_array_equal(copy.active_heads, source.active_heads)
    assert 0.0 < copy.epsilon < 1.0  # exploration still draws random actions: they must match too
    for _ in range(3):
        np.testing.assert_array_equal(copy.act(obs[:8], explore=True), source.act(obs[:8], explore=True))
    copy.update(batch)  # same Adam moments: the same next step
    source.update(batch)
    assert params_equal(copy.q_net, source.q_net) and params_equal(copy.target_net, source.target_net)


# ---------------------------------------------------------------------------------------------- spaces, images
def test_refuses_continuous_actions():
    """DQN on a Box action space raises a UserError that names the needed and the given space."""
    config = AGENTS["dqn"].preset("other")
    with pytest.raises(UserError, match=r"DQN needs a Discrete action space.*Box"):
        DQN(config, OBS_SPACE, gym.spaces.Box(-1.0, 1.0, (1,), np.float32))


def test_nature_cnn_scales_bytes_inside():
    """NatureCNN maps uint8 frames x through its layers as x / 255 (all-255 frames = float frames of ones)."""
    torch.manual_seed(0)
    net = NatureCNN(4, 84, 84)
    frames = torch.full((2, 4, 84, 84), 255, dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(net(frames), net.fc(net.convs(torch.ones(2, 4, 84, 84))))
        assert not torch.equal(net(frames), net.fc(net.convs(frames.float())))


def test_atari_update_from_replay_smoke():
    """A NatureCNN DQN runs one update on a uint8 (4, 84, 84) batch sampled from its own ReplayBuffer."""
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    config = dataclasses.replace(AGENTS["dqn"].preset("atari"), buffer_size=100, batch_size=8)
    agent = DQN(config, obs_space, gym.spaces.Discrete(4), seed=0)
    assert isinstance(agent.q_net.encoder, NatureCNN)
    buffer = agent.buffer_spec().build(num_envs=1, frame_stack=4, device="cpu", seed=0)
    rng = np.random.default_rng(0)
    obs = np.zeros((1, 4, 84, 84), np.uint8)
    obs[0, -1] = rng.integers(0, 256, (84, 84))
    for _ in range(20):
        next_obs = np.concatenate([obs[:, 1:], rng.integers(0, 256, (1, 1, 84, 84), dtype=np.uint8)], axis=1)
        buffer.add(obs, rng.integers(0, 4, 1), np.ones(1), np.zeros(1, bool), np.zeros(1, bool), next_obs)
        obs = next_obs
    batch = buffer.sample(config.batch_size)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (8, 4, 84, 84)
    before = [p.clone() for p in agent.q_net.parameters()]
    metrics = agent.update(batch)
    assert all(np.isfinite(v) for v in metrics.values())
    assert not all(torch.equal(a, b) for a, b in zip(before, agent.q_net.parameters()))
    assert agent.act(obs).shape == (1,)
