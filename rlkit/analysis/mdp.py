"""Exact solutions of small tabular MDPs: value iteration, the (P, R) tensors of gymnasium's toy-text envs, and
the exact policy gradient of a tabular softmax policy next to REINFORCE's sampled estimate of it."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from rlkit.errors import UserError


def value_iteration(P: torch.Tensor, R: torch.Tensor, gamma: float, tol: float = 1e-10,
                    max_iterations: int = 100_000) -> torch.Tensor:
    """Q* of the MDP with transitions ``P[s, a, s']`` and expected rewards ``R[s, a]``, (S, A).

    Iterates ``Q <- R + gamma P max_a' Q`` until successive tables differ by less than ``tol`` in max norm; the
    Bellman operator is a gamma-contraction, so the answer is then within ``tol * gamma / (1 - gamma)`` of Q*.
    """
    q = torch.zeros_like(R, dtype=torch.float64)
    P, R = P.double(), R.double()
    for _ in range(max_iterations):
        new_q = R + gamma * P @ q.max(-1).values  # (S, A, S') @ (S',) -> (S, A)
        if (new_q - q).abs().max() < tol:
            return new_q
        q = new_q
    raise RuntimeError(f"value iteration did not reach tol {tol} in {max_iterations} iterations")


def toy_text_mdp(env: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(P, R, terminal)`` of a toy-text env (FrozenLake, Taxi, CliffWalking) from its ``env.unwrapped.P``, the
    dict ``P[s][a] = [(prob, s', reward, terminated), ...]``.

    A transition that terminates leads to an absorbing state: its row of P points nowhere (all zeros), so
    nothing is bootstrapped past it, as the TD targets do with ``(1 - terminated)``. ``terminal[s, a, s']`` marks
    the terminating transitions.
    """
    table = env.unwrapped.P
    n_states, n_actions = len(table), len(table[0])
    P = torch.zeros(n_states, n_actions, n_states, dtype=torch.float64)
    R = torch.zeros(n_states, n_actions, dtype=torch.float64)
    terminal = torch.zeros(n_states, n_actions, n_states, dtype=torch.bool)
    for s, actions in table.items():
        for a, outcomes in actions.items():
            for prob, next_state, reward, terminated in outcomes:
                R[s, a] += prob * reward
                if terminated:
                    terminal[s, a, next_state] = True
                else:
                    P[s, a, next_state] += prob
    return P, R, terminal


# --- Policy gradient on an explicit MDP -------------------------------------------------------------------------
# Conventions as in toy_text_mdp: the probability a row of P is missing is the probability the episode ends, in an
# absorbing state worth 0 that is not listed. (I - gamma P_pi) is then invertible whenever gamma < 1 or the policy
# ends its episodes with probability 1.

BASELINES = ("none", "value", "running-mean")


class TabularMDP:
    """A small MDP given by its arrays, float64 numpy.

    ``P[s, a, s']`` the transition probabilities, each row summing to at most 1 (the rest: the episode ends);
    ``R[s, a]`` the reward of taking ``a`` in ``s``; ``mu0[s]`` the start distribution; ``gamma`` the discount.
    """

    def __init__(self, P: np.ndarray, R: np.ndarray, mu0: np.ndarray, gamma: float) -> None:
        self.P, self.R, self.mu0 = (np.asarray(x, dtype=np.float64) for x in (P, R, mu0))
        self.gamma = float(gamma)
        n_states, n_actions = self.R.shape if self.R.ndim == 2 else (0, 0)
        if self.R.ndim != 2 or self.P.shape != (n_states, n_actions, n_states) or self.mu0.shape != (n_states,):
            raise UserError(f"MDP shapes P {self.P.shape}, R {self.R.shape}, mu0 {self.mu0.shape}: give P as "
                            "(S, A, S), R as (S, A) and mu0 as (S,)")
        if (self.P < 0).any() or (self.P.sum(-1) > 1 + 1e-9).any():
            raise UserError("each row P[s, a] must be non-negative and sum to at most 1 (the rest is the end)")
        if (self.mu0 < 0).any() or abs(self.mu0.sum() - 1) > 1e-9:
            raise UserError("mu0 must be a probability distribution over the states: non-negative, summing to 1")
        if not 0 <= self.gamma <= 1:
            raise UserError(f"gamma {self.gamma} must be in [0, 1]")

    @property
    def n_states(self) -> int:
        """Number of listed (non-terminal) states."""
        return self.R.shape[0]

    @property
    def n_actions(self) -> int:
        """Number of actions in every state."""
        return self.R.shape[1]


def softmax_policy(theta: np.ndarray) -> np.ndarray:
    """The tabular softmax policy ``pi(a|s)`` proportional to ``exp theta[s, a]``, (S, A)."""
    z = np.exp(theta - theta.max(-1, keepdims=True))  # shifted: exp never overflows
    return z / z.sum(-1, keepdims=True)


def _resolvent(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    """``I - gamma P_pi``, (S, S), with ``P_pi[s, s'] = sum_a pi(a|s) P[s, a, s']``."""
    return np.eye(mdp.n_states) - mdp.gamma * np.einsum("sa,sat->st", pi, mdp.P)


def _solve(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(matrix, vector)
    except np.linalg.LinAlgError:
        raise UserError("I - gamma P_pi is singular: with gamma 1 every policy must end its episodes "
                        "(give some P[s, a] rows less than 1), or use gamma < 1") from None


def policy_evaluation(mdp: TabularMDP, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(V, Q)`` of the policy ``pi`` (S, A): ``V = (I - gamma P_pi)^-1 r_pi`` (S,), ``Q = R + gamma P V`` (S, A)."""
    v = _solve(_resolvent(mdp, pi), (pi * mdp.R).sum(-1))
    return v, mdp.R + mdp.gamma * mdp.P @ v


def expected_return(mdp: TabularMDP, theta: np.ndarray) -> float:
    """``J(theta) = mu0 . V``, the expected discounted return of the softmax policy of ``theta``."""
    return float(mdp.mu0 @ policy_evaluation(mdp, softmax_policy(theta))[0])


def discounted_visitation(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    """``d_gamma = mu0^T (I - gamma P_pi)^-1``, (S,): ``sum_t gamma^t Pr(s_t = s)``, unnormalized (it sums to the
    expected discounted episode length, not 1)."""
    return _solve(_resolvent(mdp, pi).T, mdp.mu0)


def policy_gradient(mdp: TabularMDP, theta: np.ndarray) -> np.ndarray:
    """The exact ``grad_theta J`` (S, A) of the softmax policy, by the policy gradient theorem:
    ``d_gamma(s) pi(a|s) (Q(s, a) - V(s))`` (Sutton et al. 2000; the softmax's score is ``1[a] - pi(.|s)``)."""
    pi = softmax_policy(theta)
    v, q = policy_evaluation(mdp, pi)
    return discounted_visitation(mdp, pi)[:, None] * pi * (q - v[:, None])


class Episodes(NamedTuple):
    """Episodes sampled side by side, time-major (T, N), T the longest; steps after an episode's end are padding."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    alive: np.ndarray
    """True at the steps an episode actually took."""


def sample_episodes(mdp: TabularMDP, pi: np.ndarray, n_episodes: int, rng: np.random.Generator,
                    max_steps: int = 10_000) -> Episodes:
    """``n_episodes`` independent episodes of ``pi`` (S, A) from ``mu0`` until each ends, all stepped together."""
    end = np.clip(1 - mdp.P.sum(-1, keepdims=True), 0, None)
    cum_next = np.concatenate([mdp.P, end], -1).cumsum(-1)  # (S, A, S + 1); outcome S is the end
    cum_pi = pi.cumsum(-1)
    s = np.minimum((rng.random(n_episodes)[:, None] > mdp.mu0.cumsum()).sum(-1), mdp.n_states - 1)
    alive = np.ones(n_episodes, bool)
    steps: list[tuple[np.ndarray, ...]] = []
    while alive.any():
        if len(steps) == max_steps:
            raise UserError(f"some episodes did not end in {max_steps} steps: make the end reachable from every "
                            "state under this policy, or raise max_steps")
        # Inverse-CDF draws; the minimum guards against a cumulative sum that rounds to just under 1.
        a = np.minimum((rng.random(n_episodes)[:, None] > cum_pi[s]).sum(-1), mdp.n_actions - 1)
        outcome = np.minimum((rng.random(n_episodes)[:, None] > cum_next[s, a]).sum(-1), mdp.n_states)
        steps.append((s, a, np.where(alive, mdp.R[s, a], 0.0), alive))
        alive = alive & (outcome < mdp.n_states)
        s = np.where(alive, outcome, 0)
    return Episodes(*(np.stack(column) for column in zip(*steps)))


def reinforce_estimates(mdp: TabularMDP, theta: np.ndarray, n_episodes: int, rng: np.random.Generator,
                        baseline: str = "none", discount_weights: bool = True,
                        max_steps: int = 10_000) -> np.ndarray:
    """One REINFORCE estimate of ``grad_theta J`` per episode, (N, S, A) (Williams 1992):

        g = sum_t gamma^t (G_t - b(s_t)) grad_theta log pi(a_t|s_t),   G_t = sum_{k >= t} gamma^(k - t) r_k.

    With the ``gamma^t`` factor each ``g`` is an unbiased estimate of the exact gradient of the discounted ``J``;
    ``discount_weights=False`` drops it, as many implementations do, which gives a biased estimate (of a vector
    that is not the gradient of any function, Nota & Thomas 2020): kept to show that bias.

    ``baseline``: ``none``; ``value``, the exact ``V(s)`` of the policy; or ``running-mean``, per state the mean
    of the returns ``G_t`` seen there in the episodes before this one (0 before the first). Neither depends on the
    episode it is subtracted from, so the estimate stays unbiased while its variance falls.
    """
    if baseline not in BASELINES:
        raise UserError(f"unknown baseline {baseline!r}: use one of {', '.join(BASELINES)}")
    pi = softmax_policy(theta)
    ep = sample_episodes(mdp, pi, n_episodes, rng, max_steps)
    n_steps, n_states, n_actions = len(ep.rewards), mdp.n_states, mdp.n_actions
    returns = np.zeros_like(ep.rewards)
    later = np.zeros(n_episodes)
    for t in reversed(range(n_steps)):  # padding rewards are 0, so G_t of the steps taken is unaffected
        returns[t] = later = ep.rewards[t] + mdp.gamma * later
    episode = np.broadcast_to(np.arange(n_episodes), ep.states.shape)[ep.alive]
    s, a, g = ep.states[ep.alive], ep.actions[ep.alive], returns[ep.alive]
    if baseline == "value":
        g = g - policy_evaluation(mdp, pi)[0][s]
    elif baseline == "running-mean":
        # Per episode and state: the sum and count of the returns seen; exclusive cumulative sums over episodes.
        sums = np.bincount(episode * n_states + s, g, n_episodes * n_states).reshape(n_episodes, n_states)
        counts = np.bincount(episode * n_states + s, None, n_episodes * n_states).reshape(n_episodes, n_states)
        before_sums, before_counts = sums.cumsum(0) - sums, counts.cumsum(0) - counts
        means = np.divide(before_sums, before_counts, out=np.zeros_like(before_sums), where=before_counts > 0)
        g = g - means[episode, s]
    if discount_weights:
        g = g * (mdp.gamma ** np.nonzero(ep.alive)[0])  # the time index of each step taken
    # grad_theta[s, .] log pi(a|s) = onehot(a) - pi(.|s): the onehot part, then the pi part, summed per episode.
    estimates = np.bincount((episode * n_states + s) * n_actions + a, g, n_episodes * n_states * n_actions)
    weight = np.bincount(episode * n_states + s, g, n_episodes * n_states)
    return estimates.reshape(n_episodes, n_states, n_actions) - weight.reshape(n_episodes, n_states, 1) * pi


def optimal_return(mdp: TabularMDP) -> float:
    """``J* = mu0 . max_a Q*(s, a)``, by value iteration."""
    q_star = value_iteration(torch.from_numpy(mdp.P), torch.from_numpy(mdp.R), mdp.gamma, tol=1e-13)
    return float(mdp.mu0 @ q_star.max(-1).values.numpy())
