"""The exact softmax policy gradient of rlkit.analysis.mdp against finite differences and a hand-solved MDP, and
REINFORCE's per-episode estimates against it: unbiased with the gamma^t factor, biased without, and a baseline
that keeps the mean and cuts the variance."""

from __future__ import annotations

import numpy as np
import pytest

from rlkit.analysis.mdp import (TabularMDP, discounted_visitation, expected_return, optimal_return,
                                policy_evaluation, policy_gradient, reinforce_estimates, sample_episodes,
                                softmax_policy)
from rlkit.errors import UserError


def random_mdp(seed: int, n_states: int = 3, n_actions: int = 2, gamma: float = 0.9,
               positive_rewards: bool = False) -> TabularMDP:
    """Dirichlet rows over the states and the end (so each step ends the episode with some probability); rewards
    standard normal, or uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_states + 1), (n_states, n_actions))[..., :n_states]
    R = rng.random((n_states, n_actions)) if positive_rewards else rng.normal(size=(n_states, n_actions))
    return TabularMDP(P, R, rng.dirichlet(np.ones(n_states)), gamma)


def two_state_mdp() -> TabularMDP:
    """State 0: a0 moves to 1 (reward 1), a1 ends (0). State 1: a0 moves to 0 (0), a1 ends (2). Start in 0, gamma .5.

    Under the uniform policy (theta = 0): r_pi = (.5, 1), P_pi = [[0, .5], [.5, 0]], so
    V0 = .5 + .5 * .5 V1 and V1 = 1 + .5 * .5 V0, which give V0 = .75 / .9375 = 0.8 and V1 = 1 + .25 * .8 = 1.2;
    Q(0, .) = (1 + .5 * 1.2, 0) = (1.6, 0), Q(1, .) = (.5 * .8, 2) = (0.4, 2); J = V0 = 0.8.
    (I - .5 P_pi)^-1 = [[1, .25], [.25, 1]] / .9375, so d_gamma = its first row = (16/15, 4/15), and
    grad J(0, .) = 16/15 * .5 * (1.6 - .8, 0 - .8) = (6.4, -6.4) / 15, grad J(1, .) = 4/15 * .5 * (.4 - 1.2, 2 - 1.2)
    = (-1.6, 1.6) / 15.
    """
    P = np.zeros((2, 2, 2))
    P[0, 0, 1] = P[1, 0, 0] = 1.0
    return TabularMDP(P, np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([1.0, 0.0]), 0.5)


def test_policy_evaluation_of_a_hand_solved_two_state_mdp():
    mdp, theta = two_state_mdp(), np.zeros((2, 2))
    v, q = policy_evaluation(mdp, softmax_policy(theta))
    assert v.tolist() == pytest.approx([0.8, 1.2], abs=1e-12)
    np.testing.assert_allclose(q, [[1.6, 0.0], [0.4, 2.0]], rtol=0, atol=1e-12)
    assert expected_return(mdp, theta) == pytest.approx(0.8, abs=1e-12)
    assert discounted_visitation(mdp, softmax_policy(theta)).tolist() == pytest.approx([16 / 15, 4 / 15], abs=1e-12)
    np.testing.assert_allclose(policy_gradient(mdp, theta), [[6.4 / 15, -6.4 / 15], [-1.6 / 15, 1.6 / 15]], rtol=0,
                               atol=1e-12)
    # J* by value iteration: V*(1) = 2 (end), Q*(0, 0) = 1 + .5 * 2 = 2 beats ending at once (0).
    assert optimal_return(mdp) == pytest.approx(2.0, abs=1e-9)


def test_the_exact_gradient_equals_central_finite_differences_of_j():
    mdp = random_mdp(0, n_actions=3)
    theta = np.random.default_rng(1).normal(size=(3, 3))
    h, numeric = 1e-5, np.zeros_like(theta)
    for index in np.ndindex(theta.shape):
        step = np.zeros_like(theta)
        step[index] = h
        numeric[index] = (expected_return(mdp, theta + step) - expected_return(mdp, theta - step)) / (2 * h)
    assert np.abs(numeric).max() > 1e-2  # a gradient worth checking
    np.testing.assert_allclose(policy_gradient(mdp, theta), numeric, rtol=0, atol=1e-9)


def test_sampled_discounted_returns_average_to_j():
    mdp = random_mdp(2)
    theta = np.random.default_rng(3).normal(size=(3, 2))
    episodes = sample_episodes(mdp, softmax_policy(theta), 20_000, np.random.default_rng(4))
    discounts = mdp.gamma ** np.arange(len(episodes.rewards))[:, None]
    returns = (discounts * episodes.rewards * episodes.alive).sum(0)
    assert abs(returns.mean() - expected_return(mdp, theta)) < 4 * returns.std(ddof=1) / np.sqrt(len(returns))


def within_standard_errors(estimates: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per (s, a): |mean - target| in standard errors of the mean, from the samples themselves."""
    return np.abs(estimates.mean(0) - target) / (estimates.std(0, ddof=1) / np.sqrt(len(estimates)))


def test_the_mean_of_reinforce_estimates_is_within_four_standard_errors_of_the_exact_gradient():
    mdp = random_mdp(5)
    theta = np.random.default_rng(6).normal(size=(3, 2))
    g = reinforce_estimates(mdp, theta, 50_000, np.random.default_rng(7))
    assert g.shape == (50_000, 3, 2)
    assert within_standard_errors(g, policy_gradient(mdp, theta)).max() < 4


def test_without_the_gamma_t_factor_the_estimate_is_biased():
    # In the two-state MDP half the weight of state 1's score comes from later steps, so dropping gamma^t matters.
    mdp, theta = two_state_mdp(), np.zeros((2, 2))
    g = reinforce_estimates(mdp, theta, 20_000, np.random.default_rng(0), discount_weights=False)
    assert within_standard_errors(g, policy_gradient(mdp, theta)).max() > 10


@pytest.mark.parametrize("baseline", ["value", "running-mean"])
def test_a_baseline_leaves_the_mean_unchanged_and_reduces_the_variance(baseline):
    # Non-negative rewards: there V(s) reliably cuts the variance. It is not the variance-minimizing baseline, and
    # with rewards of both signs and a skewed policy it can raise it (random_mdp(8) with normal rewards does).
    mdp = random_mdp(8, positive_rewards=True)
    theta = np.random.default_rng(9).normal(size=(3, 2))
    # One seed for both: the same episodes, so the difference is what the baseline adds, episode by episode.
    plain = reinforce_estimates(mdp, theta, 20_000, np.random.default_rng(10))
    based = reinforce_estimates(mdp, theta, 20_000, np.random.default_rng(10), baseline=baseline)
    assert within_standard_errors(based - plain, np.zeros((3, 2))).max() < 4
    assert within_standard_errors(based, policy_gradient(mdp, theta)).max() < 4
    assert based.var(0).sum() < 0.8 * plain.var(0).sum()


def test_the_running_mean_baseline_uses_only_the_episodes_before():
    # A one-step bandit: action 0 pays 1, action 1 pays 3, both end the episode. At theta = 0 the score of action
    # a is onehot(a) - (.5, .5), so a plain estimate is r * (+-.5, -+.5) and gives back the reward it saw.
    mdp = TabularMDP(np.zeros((1, 2, 1)), np.array([[1.0, 3.0]]), np.array([1.0]), 0.9)
    plain = reinforce_estimates(mdp, np.zeros((1, 2)), 6, np.random.default_rng(0))[:, 0]
    based = reinforce_estimates(mdp, np.zeros((1, 2)), 6, np.random.default_rng(0), baseline="running-mean")[:, 0]
    rewards = 2 * np.abs(plain[:, 0])
    assert set(rewards) == {1.0, 3.0}
    before = np.concatenate([[0.0], np.cumsum(rewards)[:-1] / np.arange(1, 6)])  # 0 before the first episode
    np.testing.assert_allclose(based, plain * ((rewards - before) / rewards)[:, None], rtol=0, atol=1e-12)


def test_bad_input_is_refused_with_the_fix():
    P = np.zeros((2, 2, 2))
    P[:] = 0.7  # rows sum to 1.4
    with pytest.raises(UserError, match="at most 1"):
        TabularMDP(P, np.zeros((2, 2)), np.array([1.0, 0.0]), 0.9)
    with pytest.raises(UserError, match="probability distribution"):
        TabularMDP(P / 2, np.zeros((2, 2)), np.array([1.0, 1.0]), 0.9)
    with pytest.raises(UserError, match="running-mean"):
        reinforce_estimates(two_state_mdp(), np.zeros((2, 2)), 1, np.random.default_rng(0), baseline="mean")
    never_ends = TabularMDP(np.full((2, 2, 2), 0.5), np.zeros((2, 2)), np.array([1.0, 0.0]), 1.0)
    with pytest.raises(UserError, match="singular"):
        expected_return(never_ends, np.zeros((2, 2)))
    with pytest.raises(UserError, match="did not end in 50 steps"):
        sample_episodes(never_ends, np.full((2, 2), 0.5), 3, np.random.default_rng(0), max_steps=50)
