"""Generalized advantage estimation, the rollout buffer's weights and layout, and minibatching, against reference
loops written from the definitions and against hand-computed numbers."""

from __future__ import annotations

import pytest
import torch

from rlkit.buffers.rollout import RolloutBatch, RolloutBuffer, gae, minibatches


# ---------------------------------------------------------------------------------------------- reference
def reference_gae(rewards, values, terminated, truncated, last_values, final_values, gamma, lam):
    """A plain double loop over envs and (reversed) time, straight from the definition of GAE."""
    T, N = len(rewards), len(rewards[0])
    advantages = [[0.0] * N for _ in range(T)]
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            if terminated[t][n]:
                next_value = 0.0
            elif truncated[t][n]:
                next_value = final_values[t][n]
            elif t == T - 1:
                next_value = last_values[n]
            else:
                next_value = values[t + 1][n]
            delta = rewards[t][n] + gamma * next_value - values[t][n]
            episode_ends = terminated[t][n] or truncated[t][n]
            running = delta + (0.0 if episode_ends else gamma * lam * running)
            advantages[t][n] = running
    return torch.tensor(advantages, dtype=torch.float64)


def reference_discounted_return(rewards, values, terminated, truncated, last_values, final_values, gamma, t, n):
    """Lambda = 1 by hand: discounted rewards to the episode end (or the rollout end) plus the bootstrap there."""
    T = len(rewards)
    total, discount = 0.0, 1.0
    for k in range(t, T):
        total += discount * rewards[k][n]
        discount *= gamma
        if terminated[k][n]:
            return total
        if truncated[k][n]:
            return total + discount * final_values[k][n]
    return total + discount * last_values[n]


def random_rollout(T: int = 7, N: int = 3, seed: int = 0):
    """Random rewards/values and mutually exclusive terminated/truncated flags (gymnasium's convention here)."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=torch.float64)
    values = torch.randn(T, N, generator=g, dtype=torch.float64)
    final_values = torch.randn(T, N, generator=g, dtype=torch.float64)
    last_values = torch.randn(N, generator=g, dtype=torch.float64)
    kind = torch.randint(0, 5, (T, N), generator=g)  # 0: terminated, 1: truncated, else the episode goes on
    terminated, truncated = (kind == 0).double(), (kind == 1).double()
    # Make sure both kinds of episode end (and the end of the rollout mid-episode) occur.
    terminated[2, 0], truncated[2, 0] = 1.0, 0.0
    terminated[4, 1], truncated[4, 1] = 0.0, 1.0
    terminated[6, 2], truncated[6, 2] = 0.0, 0.0
    assert not (terminated * truncated).any()
    # float32 as in training (gae casts the flags to float32); the references below compute in float64.
    return tuple(x.float() for x in (rewards, values, terminated, truncated, last_values, final_values))


GAMMA_LAMBDAS = [(0.99, 0.95), (0.9, 0.0), (0.8, 1.0), (0.5, 0.5), (1.0, 1.0)]


# ---------------------------------------------------------------------------------------------- gae
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma, lam", GAMMA_LAMBDAS)
def test_gae_matches_reference_loop(seed, gamma, lam):
    """gae() equals the definitional double loop on random data with both kinds of episode end."""
    r, v, term, trunc, last, final = random_rollout(seed=seed)
    advantages, returns = gae(r, v, term, trunc, last, gamma, lam, final)
    expected = reference_gae(r.tolist(), v.tolist(), term.tolist(), trunc.tolist(), last.tolist(), final.tolist(),
                             gamma, lam)
    torch.testing.assert_close(advantages, expected.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(returns, (expected + v).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 3])
def test_gae_lambda_zero_is_one_step_td_error(seed):
    """lam = 0: each advantage is r + gamma V(next) - V(s), with V(next) = 0 / final value / next value."""
    r, v, term, trunc, last, final = random_rollout(seed=seed)
    gamma = 0.9
    advantages, _ = gae(r, v, term, trunc, last, gamma, 0.0, final)
    next_values = torch.cat([v[1:], last[None]])
    next_values = torch.where(trunc.bool(), final, next_values) * (1 - term)
    torch.testing.assert_close(advantages, r + gamma * next_values - v)


@pytest.mark.parametrize("seed", [0, 4])
def test_gae_lambda_one_is_discounted_return_minus_value(seed):
    """lam = 1: advantage = discounted rewards to the episode end + bootstrap there - V(s)."""
    r, v, term, trunc, last, final = random_rollout(seed=seed)
    gamma = 0.8
    advantages, returns = gae(r, v, term, trunc, last, gamma, 1.0, final)
    lists = (r.tolist(), v.tolist(), term.tolist(), trunc.tolist(), last.tolist(), final.tolist())
    for t in range(7):
        for n in range(3):
            g = reference_discounted_return(*lists, gamma, t, n)
            assert returns[t, n].item() == pytest.approx(g, abs=1e-5)
            assert advantages[t, n].item() == pytest.approx(g - v[t, n].item(), abs=1e-5)


def test_gae_hand_computed_termination_vs_truncation():
    """T=3, gamma=lam=0.5: after a truncation the bootstrap is final_values, after a termination 0."""
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [2.0]])
    last_values = torch.tensor([4.0])
    final_values = torch.tensor([[0.0], [6.0], [0.0]])

    # Step 1 truncated (true last obs worth 6), step 2 goes on into last_values = 4.
    #   delta2 = 3 + 0.5*4 - 2 = 3            A2 = 3
    #   delta1 = 2 + 0.5*6 - 1 = 4            A1 = 4          (episode ended: no 0.25*A2)
    #   delta0 = 1 + 0.5*1 - 0.5 = 1          A0 = 1 + 0.25*4 = 2
    adv, ret = gae(rewards, values, torch.zeros(3, 1), torch.tensor([[0.0], [1.0], [0.0]]), last_values, 0.5, 0.5,
                   final_values)
    assert adv.flatten().tolist() == [2.0, 4.0, 3.0]
    assert ret.flatten().tolist() == [2.5, 5.0, 5.0]

    # The same step terminated instead: the next value is 0 whatever final_values says.
    #   delta1 = 2 + 0 - 1 = 1                A1 = 1
    #   A0 = 1 + 0.25*1 = 1.25
    adv, _ = gae(rewards, values, torch.tensor([[0.0], [1.0], [0.0]]), torch.zeros(3, 1), last_values, 0.5, 0.5,
                 final_values)
    assert adv.flatten().tolist() == [1.25, 1.0, 3.0]

    # Truncated without final values given: the bootstrap is 0 (never values[t+1], the next episode's first obs).
    adv, _ = gae(rewards, values, torch.zeros(3, 1), torch.tensor([[0.0], [1.0], [0.0]]), last_values, 0.5, 0.5)
    assert adv.flatten().tolist() == [1.25, 1.0, 3.0]


def test_gae_accepts_bool_flags():
    """Boolean flags give the same result as 0/1 floats."""
    r, v, term, trunc, last, final = random_rollout(seed=5)
    floats = gae(r, v, term, trunc, last, 0.9, 0.7, final)
    bools = gae(r, v, term.bool(), trunc.bool(), last, 0.9, 0.7, final)
    torch.testing.assert_close(floats, bools)


# ---------------------------------------------------------------------------------------------- buffer
def filled_buffer(terminated, truncated, obs_dim: int = 2) -> RolloutBuffer:
    """A (T x N) buffer whose obs are (t, n) pairs, rewards 1, values 0; flags as given."""
    terminated, truncated = torch.tensor(terminated, dtype=torch.float32), torch.tensor(truncated, dtype=torch.float32)
    T, N = terminated.shape
    buffer = RolloutBuffer(T, N, (obs_dim,), ())
    for t in range(T):
        obs = torch.tensor([[t, n] for n in range(N)], dtype=torch.float32)
        buffer.add(obs, torch.arange(N) + 10 * t, torch.zeros(N), torch.zeros(N), torch.ones(N), terminated[t],
                   truncated[t])
    assert buffer.full
    return buffer


def test_finish_masks_steps_after_each_envs_last_episode_end():
    """mask_unfinished: weight 1 up to and including each env's last episode end in the rollout, 0 after."""
    terminated = [[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    truncated = [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]]
    buffer = filled_buffer(terminated, truncated)
    buffer.finish(torch.zeros(3), gamma=0.9, lam=1.0, mask_unfinished=True)
    # env 0 ends at t=1, env 1 at t=3 (truncation), env 2 never.
    expected = [[1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert buffer.weights.tolist() == expected

    # The next rollout starts with every weight back at 1.
    buffer.reset()
    assert buffer.step == 0 and buffer.weights.eq(1).all()


def test_finish_without_masking_counts_every_step():
    """Without mask_unfinished (GAE agents) every step has weight 1, episode ends or not."""
    buffer = filled_buffer([[0, 0], [1, 0], [0, 0]], [[0, 0], [0, 0], [0, 0]])
    buffer.finish(torch.zeros(2), gamma=0.9, lam=0.95)
    assert buffer.weights.eq(1).all()


def test_flat_is_time_major():
    """flat() row t*N + n is step t of env n, for every field."""
    buffer = filled_buffer([[0, 0], [0, 0], [0, 0]], [[0, 0], [0, 0], [0, 0]])
    buffer.finish(torch.zeros(2), gamma=0.5, lam=1.0)
    batch = buffer.flat()
    assert batch.obs.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]]
    assert batch.actions.tolist() == [0, 1, 10, 11, 20, 21]
    # rewards 1, values 0, no episode end, last values 0: returns 1 + 0.5 + 0.25, 1 + 0.5, 1 per step.
    assert batch.returns.tolist() == [1.75, 1.75, 1.5, 1.5, 1.0, 1.0]
    assert batch.advantages.tolist() == batch.returns.tolist()
    assert batch.weights.tolist() == [1.0] * 6


# ---------------------------------------------------------------------------------------------- minibatches
def numbered_batch(n: int) -> RolloutBatch:
    """A batch whose every field holds the row number (obs as a 2-wide row)."""
    rows = torch.arange(n, dtype=torch.float32)
    return RolloutBatch(torch.stack([rows, -rows], 1), rows.long(), rows, rows, rows, rows, rows)


@pytest.mark.parametrize("n, size", [(12, 4), (10, 3), (5, 5), (7, 100)])
def test_minibatches_cover_every_row_once(n, size):
    """One pass yields every row exactly once, in minibatches of the asked size (the last may be short), with the
    fields of a row kept together."""
    parts = list(minibatches(numbered_batch(n), size, torch.Generator().manual_seed(0)))
    assert [len(p.obs) for p in parts] == [min(size, n - s) for s in range(0, n, size)]
    rows = torch.cat([p.actions for p in parts])
    assert sorted(rows.tolist()) == list(range(n))
    for p in parts:
        for field in (p.obs[:, 0], -p.obs[:, 1], p.log_probs, p.values, p.advantages, p.returns, p.weights):
            assert field.tolist() == p.actions.float().tolist()


def test_minibatches_reproducible_with_seeded_generator():
    """The same seed gives the same order; the pass is shuffled (not the identity order)."""
    batch = numbered_batch(64)

    def order(seed: int) -> list[int]:
        return torch.cat([p.actions for p in minibatches(batch, 16, torch.Generator().manual_seed(seed))]).tolist()

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3) != list(range(64))
    # A generator carries on: two passes from one generator differ from each other.
    g = torch.Generator().manual_seed(3)
    first = torch.cat([p.actions for p in minibatches(batch, 16, g)]).tolist()
    second = torch.cat([p.actions for p in minibatches(batch, 16, g)]).tolist()
    assert first == order(3) and second != first
