"""Exact solutions of small tabular MDPs: value iteration, and the (P, R) tensors of gymnasium's toy-text envs."""

from __future__ import annotations

from typing import Any

import torch


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
