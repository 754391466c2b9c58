"""Distributional Q-learning's pieces (C51, Bellemare et al. 2017): the fixed support of returns, the projection of
the Bellman update onto it, and the loss."""

from __future__ import annotations

import torch


def categorical_projection(next_probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
                           support: torch.Tensor) -> torch.Tensor:
    """Project the distribution of ``r + discount * Z(s', a*)`` onto ``support`` (the paper's Algorithm 1).

    ``next_probs`` ``(B, N)`` are the probabilities of the N atoms ``support`` ``(N,)`` at the next state's chosen
    action; ``rewards`` and ``discounts`` ``(B,)`` (a discount of 0 at a terminal collapses the target onto r).
    Each shifted atom ``Tz = clip(r + discount * z, v_min, v_max)`` splits its probability between the two atoms
    around it, in proportion to its distance from each. Returns ``(B, N)`` target probabilities.
    """
    v_min, v_max, n = support[0], support[-1], len(support)
    delta = (v_max - v_min) / (n - 1)
    shifted = (rewards[:, None] + discounts[:, None] * support[None, :]).clamp(v_min, v_max)
    position = (shifted - v_min) / delta  # b_j in [0, N - 1]
    lower, upper = position.floor().long(), position.ceil().long()
    # An atom landing exactly on a support point (lower == upper) would give both neighbours weight 0: keep its
    # whole mass on that point.
    upper_weight = position - lower
    lower_weight = 1.0 - upper_weight
    target = torch.zeros_like(next_probs)
    target.scatter_add_(1, lower, next_probs * lower_weight)
    target.scatter_add_(1, upper, next_probs * upper_weight)
    return target


def cross_entropy(target_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """``-sum_i m_i log p_i`` per row: the C51 loss (the KL to the target up to the target's own entropy)."""
    return -(target_probs * log_probs).sum(-1)


def kl_divergence(target_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """``sum_i m_i (log m_i - log p_i)`` per row, with ``0 log 0 = 0``: Rainbow's replay priority."""
    log_target = torch.where(target_probs > 0, target_probs.log(), torch.zeros_like(target_probs))
    return (target_probs * (log_target - log_probs)).sum(-1)
