"""Behaviour of rlkit.buffers.replay.ReplayBuffer and rlkit.buffers.sum_tree.SumTree.

Every check compares sampled transitions with what a small fake env really returned. The fake env's frames encode
(env, game, step), so a stack rebuilt from the wrong slots, or mixing two games, cannot go unnoticed; each step
carries a unique id (in the reward, or in the action where the reward is needed for n-step sums) that leads back
to the transition that was added.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from rlkit.buffers.replay import Batch, ReplayBuffer
from rlkit.buffers.sum_tree import SumTree

K = 4  # frame stack of the fake Atari-like env
FRAME_SHAPE = (2, 3)


# ---------------------------------------------------------------------------------------------- fake env
def frame(e: int, g: int, t: int) -> np.ndarray:
    """A (2, 3) uint8 frame that encodes (env e, game g, step t); never all zeros."""
    return np.array([[e + 1, g % 256, g // 256 + 1], [t % 256, t // 256 + 1, 255]], dtype=np.uint8)


def frame_game(f: np.ndarray) -> int:
    return int(f[0, 1]) + 256 * (int(f[0, 2]) - 1)


class Transition(NamedTuple):
    id: int
    env: int
    game: int
    t: int  # step index in the game of ``obs`` (0 = the reset observation)
    obs: np.ndarray
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    next_obs: np.ndarray  # the true next observation (the final one when the game ended)


class FakeVecEnv:
    """``num_envs`` independent games of random length (1..max_len) ending by termination or truncation.

    Observations stack the last ``k`` frames, zero-padded at the start of a game as ale-py does, or, with
    ``vector=True``, are float32 vectors of shape (3,). ``step`` follows gymnasium's SAME_STEP autoreset: it returns
    the true next observation (the final one of a finished game) and the next step starts from the reset one.
    ``games`` scripts (length, "term" | "trunc") per env; once a script runs out the game never ends.
    """

    def __init__(self, num_envs=1, k=K, seed=0, max_len=12, vector=False, games=None, padding="zero"):
        self.num_envs, self.k, self.max_len, self.vector = num_envs, k, max_len, vector
        self.padding = padding  # "zero" (ale-py) or "repeat" (gymnasium's default: copies of the first frame)
        self.rng = np.random.default_rng(seed)
        self.scripts = [list(s) for s in games] if games is not None else None
        self.game, self.t = [0] * num_envs, [0] * num_envs
        self.length, self.ending = [0] * num_envs, [""] * num_envs
        self.next_id = 1
        self.by_id: dict[int, Transition] = {}
        for e in range(num_envs):
            self._new_game(e)
        self.obs = np.stack([self.observe(e, 0, 0) for e in range(num_envs)])

    def _new_game(self, e):
        if self.scripts is None:
            self.length[e] = int(self.rng.integers(1, self.max_len + 1))
            self.ending[e] = "term" if self.rng.random() < 0.5 else "trunc"
        elif self.scripts[e]:
            self.length[e], self.ending[e] = self.scripts[e].pop(0)
        else:
            self.length[e], self.ending[e] = 10**9, ""

    def observe(self, e, g, t) -> np.ndarray:
        """The observation of env ``e`` at step ``t`` of game ``g``."""
        if self.vector:
            return np.array([e + 1, g + 0.5, t + 0.25], dtype=np.float32)
        pad = np.zeros(FRAME_SHAPE, np.uint8) if self.padding == "zero" else frame(e, g, 0)
        return np.stack([frame(e, g, i) if i >= 0 else pad for i in range(t - self.k + 1, t + 1)])

    def step(self, actions=None, rewards=None):
        """One step of every env, as the arguments of ``ReplayBuffer.add``."""
        n = self.num_envs
        ids = np.arange(self.next_id, self.next_id + n)
        self.next_id += n
        obs = self.obs.copy()
        actions = self.rng.integers(0, 18, n).astype(np.uint8) if actions is None else np.asarray(actions)
        rewards = ids.astype(np.float32) if rewards is None else np.asarray(rewards, np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        next_obs = np.empty_like(obs)
        for e in range(n):
            g, t = self.game[e], self.t[e]
            next_obs[e] = self.observe(e, g, t + 1)
            done = t + 1 == self.length[e]
            terminated[e] = done and self.ending[e] == "term"
            truncated[e] = done and self.ending[e] == "trunc"
            self.by_id[int(ids[e])] = Transition(int(ids[e]), e, g, t, obs[e], actions[e], float(rewards[e]),
                                                 bool(terminated[e]), bool(truncated[e]), next_obs[e].copy())
            if done:
                self.game[e], self.t[e] = g + 1, 0
                self._new_game(e)
                self.obs[e] = self.observe(e, g + 1, 0)
            else:
                self.t[e] = t + 1
                self.obs[e] = next_obs[e]
        return obs, actions, rewards, terminated, truncated, next_obs


class SlotModel:
    """Which transitions the documented layout keeps: per env ring of ``slots`` frames; a new game (zero-padded by
    FakeStackEnv) pushes only its newest frame, every step then pushes its next frame; a transition survives while
    the ``k`` slots its stack is read from do."""

    def __init__(self, num_envs, slots, k):
        self.slots, self.k = slots, k
        self.pushes = [0] * num_envs
        self.where: dict[int, tuple[int, int]] = {}  # id -> (env, push index of its obs' newest frame)

    def record(self, tr: Transition):
        e = tr.env
        if tr.t == 0:
            self.pushes[e] += 1
        self.where[tr.id] = (e, self.pushes[e] - 1)
        self.pushes[e] += 1

    def valid_ids(self) -> set[int]:
        return {i for i, (e, p) in self.where.items() if p >= self.pushes[e] - self.slots + self.k - 1}


# ---------------------------------------------------------------------------------------------- helpers
def fill(buf, env, steps, model=None):
    """Add ``steps`` steps of ``env``; after each, ``len(buf)`` must match the model (if any)."""
    for _ in range(steps):
        buf.add(*env.step())
        assert len(buf) <= buf.num_envs * buf.slots
        if model is not None:
            for i in range(env.next_id - env.num_envs, env.next_id):
                model.record(env.by_id[i])
            assert len(buf) == len(model.valid_ids())


def batch_ids(batch: Batch) -> np.ndarray:
    return batch.rewards.numpy().astype(np.int64)


def assert_matches_added(batch: Batch, by_id: dict[int, Transition], gamma=0.99) -> list[Transition]:
    """Each sampled row equals, field for field, the transition whose id is in its reward (n = 1)."""
    added = [by_id[i] for i in batch_ids(batch)]
    np.testing.assert_array_equal(batch.obs.numpy(), np.stack([tr.obs for tr in added]))
    np.testing.assert_array_equal(batch.next_obs.numpy(), np.stack([tr.next_obs for tr in added]))
    np.testing.assert_array_equal(batch.actions.numpy(), np.array([tr.action for tr in added], dtype=np.int64))
    np.testing.assert_array_equal(batch.rewards.numpy(), np.array([tr.reward for tr in added], np.float32))
    np.testing.assert_array_equal(batch.terminated.numpy(), np.array([tr.terminated for tr in added], np.float32))
    np.testing.assert_array_equal(batch.discounts.numpy(), np.full(len(added), gamma, np.float32))
    return added


def assert_one_game(stack: np.ndarray):
    """A stack's non-zero frames all come from one game, with zero padding only in front."""
    nonzero = [bool(f.any()) for f in stack]
    first = nonzero.index(True)
    assert all(nonzero[first:]), stack
    assert len({frame_game(f) for f in stack[first:]}) == 1, stack


def assert_batches_equal(a: Batch, b: Batch):
    for name in Batch._fields:
        if name == "update_priorities":
            continue
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None, name
        else:
            assert torch.equal(x, y), name


def atari_like(capacity, num_envs=1, **kw):
    return ReplayBuffer(capacity, (K, *FRAME_SHAPE), np.uint8, (), np.uint8, num_envs=num_envs, frame_stack=K,
                        gamma=0.99, seed=kw.pop("seed", 0), **kw)


# ---------------------------------------------------------------------------------------------- tests
def test_frame_stacks_rebuild_exactly_what_the_env_returned():
    """Sampled obs/next_obs/action/reward/terminated equal the added transitions; stacks never mix games, game
    starts keep the env's zero padding, and a finished game's next_obs is its true final observation."""
    env = FakeVecEnv(seed=1)
    buf = atari_like(2000, seed=1)
    fill(buf, env, 300)
    assert len(buf) == 300  # nothing overwritten yet

    batch = buf.sample(4000)
    added = assert_matches_added(batch, env.by_id)
    assert set(batch_ids(batch)) == set(env.by_id)  # every added transition can be sampled
    for obs, nxt, tr in zip(batch.obs.numpy(), batch.next_obs.numpy(), added):
        assert_one_game(obs)
        assert_one_game(nxt)
        assert frame_game(obs[-1]) == frame_game(nxt[-1]) == tr.game
        if tr.t == 0:
            assert not obs[: K - 1].any() and obs[-1].any()  # zero padding at a game start, as the env gave it
        if tr.terminated or tr.truncated:  # the final observation, not the next game's reset observation
            np.testing.assert_array_equal(nxt[-1], frame(0, tr.game, tr.t + 1))
    kinds = {("start" if tr.t == 0 else "mid", tr.terminated, tr.truncated) for tr in added}
    assert {("start", False, False), ("mid", True, False), ("mid", False, True)} <= kinds
    assert any(tr.t == 0 and (tr.terminated or tr.truncated) for tr in added)  # one-step games


def test_non_zero_padding_is_stored_and_rebuilt_exactly():
    """When a game's first stack is padded with copies of its first frame (not zeros), the padding is stored as
    history slots and rebuilt exactly, also after the ring wraps; no stack mixes two games."""
    env = FakeVecEnv(seed=4, padding="repeat")
    buf = atari_like(60, seed=4)
    for _ in range(20):
        fill(buf, env, 25)
        batch = buf.sample(256)
        added = assert_matches_added(batch, env.by_id)
        for obs, tr in zip(batch.obs.numpy(), added):
            assert {frame_game(f) for f in obs} == {tr.game}
            if tr.t == 0:
                assert all(np.array_equal(f, obs[-1]) for f in obs)
    assert any(tr.t == 0 for tr in added)


def test_ring_wrap_keeps_only_recent_transitions_intact():
    """With capacity 40 and far more steps, len(buf) follows the slot layout exactly, never exceeds capacity, and
    every sample is an intact recent transition."""
    env = FakeVecEnv(seed=2)
    buf = atari_like(40, seed=2)
    model = SlotModel(1, 40, K)
    for _ in range(10):
        fill(buf, env, 50, model)
        batch = buf.sample(512)
        assert_matches_added(batch, env.by_id)
        ids = set(batch_ids(batch))
        assert ids == model.valid_ids()
        assert min(ids) > env.next_id - 1 - 40
        for obs in batch.obs.numpy():
            assert_one_game(obs)


def test_sub_envs_keep_independent_games():
    """Three sub-envs with their own games and their own rings: samples are exact and come from every env."""
    env = FakeVecEnv(num_envs=3, seed=3)
    buf = atari_like(3 * 50, num_envs=3, seed=3)
    model = SlotModel(3, 50, K)
    fill(buf, env, 120, model)
    batch = buf.sample(3000)
    added = assert_matches_added(batch, env.by_id)
    assert set(batch_ids(batch)) == model.valid_ids()
    assert {tr.env for tr in added} == {0, 1, 2}
    for obs, nxt, tr in zip(batch.obs.numpy(), batch.next_obs.numpy(), added):
        assert_one_game(obs)
        assert {int(f[0, 0]) - 1 for f in np.concatenate([obs, nxt]) if f.any()} == {tr.env}


def test_vector_observations():
    """frame_stack=1 float32 (3,) observations, two sub-envs, ring wrap: samples equal the added transitions."""
    env = FakeVecEnv(num_envs=2, seed=4, vector=True)
    buf = ReplayBuffer(60, (3,), np.float32, num_envs=2, gamma=0.9, seed=4)
    model = SlotModel(2, 30, 1)
    fill(buf, env, 100, model)
    batch = buf.sample(2000)
    added = assert_matches_added(batch, env.by_id, gamma=0.9)
    assert set(batch_ids(batch)) == model.valid_ids()
    assert batch.obs.dtype == torch.float32 and batch.obs.shape == (2000, 3)
    assert any(tr.truncated for tr in added) and any(tr.terminated for tr in added)


def next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


@pytest.mark.parametrize("options", [{}, {"prioritized": True, "bootstrap_heads": 10}])
def test_bytes_per_atari_transition(options):
    """Atari storage: one 84x84 frame + 1 action + 4 reward + 4 flag bytes a slot (7,065 bytes), plus 10 mask bytes
    and the sum tree's 2 * next_pow2(capacity) float64 nodes when asked for; always <= 7,200 bytes."""
    capacity = 100_000
    buf = ReplayBuffer(capacity, (4, 84, 84), np.uint8, (), np.uint8, frame_stack=4, **options)
    expected = capacity * (84 * 84 + 1 + 4 + 4)
    if options:
        assert next_pow2(capacity) == 131_072
        expected += capacity * 10 + 2 * next_pow2(capacity) * 8
    assert buf.nbytes == expected
    assert buf.nbytes / capacity <= 7200


# n = 3, gamma = 0.5. Game 0: rewards 1..5, terminated after 5 steps. Game 1: rewards 10..40, truncated after 4.
# Game 2: rewards 100..300 so far, still running. Key: (game, step t of obs) -> (n-step reward, m, terminated).
N_STEP_EXPECTED = {
    (0, 0): (1 + 0.5 * 2 + 0.25 * 3, 3, 0),  # 2.75: mid-game, full horizon
    (0, 1): (2 + 0.5 * 3 + 0.25 * 4, 3, 0),  # 4.5
    (0, 2): (3 + 0.5 * 4 + 0.25 * 5, 3, 1),  # 6.25: the 3rd step terminates
    (0, 3): (4 + 0.5 * 5, 2, 1),  # 6.5: one step before termination
    (0, 4): (5.0, 1, 1),
    (1, 0): (10 + 0.5 * 20 + 0.25 * 30, 3, 0),  # 27.5
    (1, 1): (20 + 0.5 * 30 + 0.25 * 40, 3, 0),  # 45: ends on the truncation, bootstraps from the final obs
    (1, 2): (30 + 0.5 * 40, 2, 0),  # 50
    (1, 3): (40.0, 1, 0),
    (2, 0): (100 + 0.5 * 200 + 0.25 * 300, 3, 0),  # 275
    (2, 1): (200 + 0.5 * 300, 2, 0),  # 350: stops at the newest data
    (2, 2): (300.0, 1, 0),
}


def test_n_step_returns():
    """n=3, gamma=0.5: hand-computed reward sums, m, discounts gamma**m, terminated of the last included step, and
    next_obs = the observation m steps later (the true final one at a game's end)."""
    env = FakeVecEnv(seed=5, games=[[(5, "term"), (4, "trunc")]])
    buf = ReplayBuffer(64, (K, *FRAME_SHAPE), np.uint8, (), np.int64, frame_stack=K, n_step=3, gamma=0.5, seed=5)
    rewards = [1, 2, 3, 4, 5, 10, 20, 30, 40, 100, 200, 300]
    for i, r in enumerate(rewards):
        buf.add(*env.step(actions=[i], rewards=[r]))
    by_action = {int(tr.action): tr for tr in env.by_id.values()}

    batch = buf.sample(500)
    seen = set()
    for i, a in enumerate(batch.actions.numpy()):
        tr = by_action[int(a)]
        reward, m, terminated = N_STEP_EXPECTED[tr.game, tr.t]
        seen.add((tr.game, tr.t))
        assert batch.rewards[i].item() == reward
        assert batch.discounts[i].item() == 0.5**m
        assert batch.terminated[i].item() == terminated
        np.testing.assert_array_equal(batch.obs[i].numpy(), tr.obs)
        np.testing.assert_array_equal(batch.next_obs[i].numpy(), env.observe(0, tr.game, tr.t + m))
    assert seen == set(N_STEP_EXPECTED)


def test_n_step_stops_at_game_end_when_reset_repeats_the_final_obs():
    """A reset observation equal to the final one shares its slot; n-step sums still stop at the truncation and the
    termination instead of running into the next game (vector obs, n=3, gamma=0.5, id in the action)."""
    buf = ReplayBuffer(32, (1,), np.float32, n_step=3, gamma=0.5, seed=10)
    o = [np.array([[float(i)]], np.float32) for i in range(6)]
    no, yes = np.array([False]), np.array([True])
    buf.add(o[0], [0], [1.0], no, no, o[1])  # game 0
    buf.add(o[1], [1], [2.0], no, yes, o[2])  # truncated; game 1 resets to o[2] again
    buf.add(o[2], [2], [4.0], no, no, o[3])
    buf.add(o[3], [3], [8.0], yes, no, o[4])  # terminated; game 2 resets to o[4] again
    buf.add(o[4], [4], [16.0], no, no, o[5])
    expected = {  # action: (n-step reward, m, terminated, next obs)
        0: (1 + 0.5 * 2, 2, 0, 2), 1: (2.0, 1, 0, 2), 2: (4 + 0.5 * 8, 2, 1, 4), 3: (8.0, 1, 1, 4), 4: (16.0, 1, 0, 5)
    }
    batch = buf.sample(200)
    for i, a in enumerate(batch.actions.tolist()):
        reward, m, terminated, nxt = expected[a]
        assert batch.obs[i].item() == a
        assert (batch.rewards[i].item(), batch.discounts[i].item(), batch.terminated[i].item()) == (
            reward, 0.5**m, terminated)
        assert batch.next_obs[i].item() == nxt
    assert set(batch.actions.tolist()) == set(expected)


def test_sum_tree_set_total_find():
    """Leaves 1, 0, 2, 0, 3 (rounded up to 8 leaves): total 6, prefix-sum search, zero leaves never found."""
    tree = SumTree(5)
    assert tree.size == 8 and tree.nodes.shape == (16,)
    tree.set(np.arange(5), np.array([1.0, 0.0, 2.0, 0.0, 3.0]))
    assert tree.total == 6.0
    np.testing.assert_array_equal(tree[np.arange(5)], [1, 0, 2, 0, 3])
    values = np.array([0.0, 0.999, 1.0, 2.5, 2.999, 3.0, 5.999, 6.0])
    np.testing.assert_array_equal(tree.find(values), [0, 0, 2, 2, 2, 4, 4, 4])
    found = tree.find(np.random.default_rng(0).random(10_000) * tree.total)
    assert set(found) == {0, 2, 4}

    tree.set(4, 0.5)  # update one leaf: ancestors follow
    tree.set(np.array([2, 2]), np.array([7.0, 4.0]))  # duplicates: the last value wins
    assert tree.total == 5.5
    np.testing.assert_array_equal(tree.find(np.array([0.5, 1.0, 4.999, 5.0, 5.4])), [0, 2, 2, 4, 4])
    tree.set(np.array([], dtype=np.int64), np.array([]))  # nothing to set: a no-op
    assert tree.total == 5.5


def prioritized_line(beta, beta_steps=0, num_envs=1, steps=10):
    """A vector-obs buffer with one endless game per env, alpha 0.5 and no priority epsilon."""
    env = FakeVecEnv(num_envs=num_envs, seed=6, vector=True, games=[[]] * num_envs)
    buf = ReplayBuffer(64, (3,), np.float32, num_envs=num_envs, prioritized=True, alpha=0.5, beta=beta,
                       beta_steps=beta_steps, priority_eps=0.0, seed=6)
    fill(buf, env, steps)
    return env, buf


def make_one_three_times_likelier(buf, favourite):
    """|TD| 9 for the transition with reward id ``favourite``, 1 for the others: priorities 3 and 1 (alpha 0.5)."""
    flat = np.flatnonzero(buf.valid)
    ids = buf.rewards.reshape(-1)[flat].astype(np.int64)
    buf.update_priorities(flat, np.where(ids == favourite, 9.0, 1.0))


def test_prioritized_sampling_proportions_and_weights():
    """Priority 3 vs 1 gives 3x the samples; weights are (N P(i))^-beta over the batch maximum."""
    _, buf = prioritized_line(beta=0.4)
    make_one_three_times_likelier(buf, favourite=4)
    assert buf.tree.total == pytest.approx(12.0)
    counts = np.zeros(11)
    for _ in range(200):
        batch = buf.sample(64)
        ids = batch_ids(batch)
        np.add.at(counts, ids, 1)
        probs = np.where(ids == 4, 3.0, 1.0) / 12.0
        expected = (10 * probs) ** -0.4
        np.testing.assert_allclose(batch.weights.numpy(), expected / expected.max(), rtol=1e-6)
        np.testing.assert_allclose(batch.weights.numpy(), np.where(ids == 4, 3.0**-0.4, 1.0), rtol=1e-6)
    freq = counts[1:] / counts.sum()
    assert freq[3] == pytest.approx(3 / 12, abs=0.01)
    np.testing.assert_allclose(np.delete(freq, 3), 1 / 12, atol=0.01)
    assert counts[4] / counts[7] == pytest.approx(3.0, rel=0.1)


def test_beta_anneals_linearly_to_one():
    """beta grows from beta0 to 1 over beta_steps added transitions (all sub-envs count), then stays at 1, and the
    weights use the current beta."""
    env, buf = prioritized_line(beta=0.4, beta_steps=100, num_envs=2, steps=0)
    assert buf.beta == pytest.approx(0.4)
    for adds, beta in [(10, 0.52), (15, 0.7), (25, 1.0), (10, 1.0)]:  # 20, 50, 100, 120 transitions
        fill(buf, env, adds)
        assert buf.beta == pytest.approx(beta)
    favourite = env.next_id - 1  # the newest transition: still stored
    make_one_three_times_likelier(buf, favourite)
    batch = buf.sample(64)
    ids = batch_ids(batch)
    assert favourite in ids and len(buf) == 62  # two rings of 32 slots, each with its newest frame not a start
    np.testing.assert_allclose(batch.weights.numpy(), np.where(ids == favourite, 1 / 3, 1.0), rtol=1e-6)


def test_prioritized_ring_wrap_and_stale_priority_updates():
    """Under ring wrap the sum tree holds weight exactly on valid transitions, prioritized samples are intact
    transitions, and priority updates for slots no longer holding a transition are ignored (even all of them)."""
    env = FakeVecEnv(num_envs=2, seed=7)
    buf = atari_like(80, num_envs=2, prioritized=True, seed=7)
    leaves = np.arange(buf.num_envs * buf.slots)
    for _ in range(6):
        fill(buf, env, 25)
        np.testing.assert_array_equal(buf.tree[leaves] > 0, buf.valid.reshape(-1))
        assert buf.tree.total == pytest.approx(buf.tree[leaves].sum())

        stale = np.flatnonzero(~buf.valid.reshape(-1))
        nodes = buf.tree.nodes.copy()
        buf.update_priorities(stale, np.full(len(stale), 5.0))
        buf.update_priorities(stale[:3], torch.full((3,), 5.0))
        np.testing.assert_array_equal(buf.tree.nodes, nodes)
        some = np.concatenate([stale[:2], np.flatnonzero(buf.valid)[:2]])
        buf.update_priorities(some, np.full(4, 4.0))
        np.testing.assert_allclose(buf.tree[some], [0, 0, (4 + 1e-6) ** 0.6, (4 + 1e-6) ** 0.6])  # alpha 0.6, eps 1e-6

        batch = buf.sample(256)
        assert_matches_added(batch, env.by_id)
        batch.update_priorities(torch.arange(256, dtype=torch.float32) / 64)
        np.testing.assert_array_equal(buf.tree[leaves] > 0, buf.valid.reshape(-1))


def test_bootstrap_masks():
    """Masks are Bernoulli(0.3) per head and transition, and a batch returns the stored masks of its rows."""
    env = FakeVecEnv(seed=8, vector=True)
    buf = ReplayBuffer(4000, (3,), np.float32, bootstrap_heads=5, bootstrap_prob=0.3, seed=8)
    fill(buf, env, 2000)
    stored = buf.masks[buf.valid]  # (2000, 5)
    assert stored.shape == (2000, 5)
    assert stored.mean() == pytest.approx(0.3, abs=0.02)
    np.testing.assert_allclose(stored.mean(axis=0), 0.3, atol=0.04)
    by_id = dict(zip(buf.rewards[buf.valid].astype(np.int64), stored))

    batch = buf.sample(256)
    assert_matches_added(batch, env.by_id)
    assert batch.masks.dtype == torch.float32 and batch.masks.shape == (256, 5)
    np.testing.assert_array_equal(batch.masks.numpy(), np.stack([by_id[i] for i in batch_ids(batch)]))


def test_state_dict_and_file_round_trip(tmp_path):
    """A buffer restored from state_dict() or from a saved .npz samples identical batches and keeps going
    identically (continuity of the current games included), given the same rng state."""
    env = FakeVecEnv(num_envs=2, seed=9)
    steps = [env.step() for _ in range(110)]

    def make():
        return atari_like(120, num_envs=2, n_step=3, prioritized=True, beta_steps=500, bootstrap_heads=3, seed=9)

    buf = make()
    for step in steps[:80]:
        buf.add(*step)
    batch = buf.sample(16)
    batch.update_priorities(torch.linspace(0.1, 3.0, 16))

    path = tmp_path / "replay.npz"
    buf.save(str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["replay.npz"]
    from_state, from_file = make(), make()
    from_state.load_state_dict(buf.state_dict())
    from_file.load(str(path))

    for copy in (from_state, from_file):
        assert len(copy) == len(buf) and copy.beta == buf.beta
        state = buf.rng.bit_generator.state
        copy.rng.bit_generator.state = state
        assert_batches_equal(buf.sample(64), copy.sample(64))
        buf.rng.bit_generator.state = state
    for copy in (buf, from_state, from_file):
        copy.rng.bit_generator.state = np.random.default_rng(99).bit_generator.state
        for step in steps[80:]:
            copy.add(*step)
    assert len(from_state) == len(from_file) == len(buf)
    for copy in (from_state, from_file):
        np.testing.assert_array_equal(copy.frames, buf.frames)
        np.testing.assert_array_equal(copy.masks, buf.masks)
        np.testing.assert_array_equal(copy.tree.nodes, buf.tree.nodes)
        state = buf.rng.bit_generator.state
        copy.rng.bit_generator.state = state
        assert_batches_equal(buf.sample(64), copy.sample(64))
        buf.rng.bit_generator.state = state
