"""Policy and value networks, action distributions, observation statistics and reward scaling, checked against
torch.distributions, numpy and hand-computed numbers."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

from rlkit.nets import (ActorCritic, CategoricalHead, DiagGaussian, GaussianHead, MultiCategorical, RunningMeanStd,
                        kl_divergence)
from rlkit.nets.policies import frozen
from rlkit.sources import RewardScaler

BOX_OBS = (5,)
BOX_ACTIONS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
DISCRETE_ACTIONS = gym.spaces.Discrete(4)


def random_gaussian(g: torch.Generator, batch: int = 6, dim: int = 3) -> tuple[DiagGaussian, Independent]:
    """The same random diagonal Gaussian as rlkit's DiagGaussian and as torch's Independent(Normal)."""
    mean = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    log_std = torch.randn(batch, dim, generator=g, dtype=torch.float64) * 0.5
    return DiagGaussian(mean, log_std), Independent(Normal(mean, log_std.exp()), 1)


def ids(params) -> set[int]:
    return {id(p) for p in params}


# ---------------------------------------------------------------------------------------------- DiagGaussian
@pytest.mark.parametrize("seed", [0, 1])
def test_diag_gaussian_log_prob_and_entropy_match_torch(seed):
    """log_prob (summed over action dims) and entropy equal Independent(Normal(mean, std), 1)'s."""
    g = torch.Generator().manual_seed(seed)
    ours, theirs = random_gaussian(g)
    actions = torch.randn(6, 3, generator=g, dtype=torch.float64) * 2
    torch.testing.assert_close(ours.log_prob(actions), theirs.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())
    assert ours.log_prob(actions).shape == (6,)


@pytest.mark.parametrize("seed", [0, 1])
def test_diag_gaussian_kl_matches_torch(seed):
    """kl(other) and kl_divergence(p, q) equal torch's KL(p || q) (which is asymmetric), and KL(p || p) = 0."""
    g = torch.Generator().manual_seed(seed)
    p, tp = random_gaussian(g)
    q, tq = random_gaussian(g)
    expected = torch.distributions.kl_divergence(tp, tq)
    torch.testing.assert_close(p.kl(q), expected)
    torch.testing.assert_close(kl_divergence(p, q), expected)
    assert not torch.allclose(q.kl(p), expected)
    torch.testing.assert_close(p.kl(p), torch.zeros(6, dtype=torch.float64))


def test_diag_gaussian_mode_is_mean_and_samples_have_its_moments():
    """mode is the mean; a broadcast (A,) log_std applies to every row; samples have that mean and std."""
    mean = torch.tensor([[1.0, -2.0]]).repeat(20000, 1)
    dist = DiagGaussian(mean, torch.log(torch.tensor([0.5, 2.0])))
    assert torch.equal(dist.mode, mean)
    torch.manual_seed(0)
    samples = dist.sample()
    torch.testing.assert_close(samples.mean(0), torch.tensor([1.0, -2.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.tensor([0.5, 2.0]), atol=0.05, rtol=0)


def test_categorical_kl_divergence_is_torchs():
    """kl_divergence on categorical distributions is torch's KL."""
    g = torch.Generator().manual_seed(0)
    p, q = Categorical(logits=torch.randn(4, 3, generator=g)), Categorical(logits=torch.randn(4, 3, generator=g))
    expected = (p.probs * (p.probs.log() - q.probs.log())).sum(-1)
    torch.testing.assert_close(kl_divergence(p, q), expected)


# ---------------------------------------------------------------------------------------------- MultiCategorical
def test_multi_categorical_sums_its_entries_by_hand():
    """Entries of 2 and 3 choices: log-prob, entropy and KL are the sums of the entries' own, computed here from
    the softmax of each block of logits."""
    logits = torch.tensor([[0.0, math.log(3.0), 0.0, 0.0, math.log(2.0)]])  # p = [1/4, 3/4], [1/4, 1/4, 1/2]
    dist = MultiCategorical(logits, (2, 3))
    p0, p1 = torch.tensor([0.25, 0.75]), torch.tensor([0.25, 0.25, 0.5])
    torch.testing.assert_close(dist.log_prob(torch.tensor([[1, 2]])), torch.tensor([math.log(0.75 * 0.5)]))
    torch.testing.assert_close(dist.log_prob(torch.tensor([[0, 0]])), torch.tensor([math.log(0.25 * 0.25)]))
    entropy = -(p0 * p0.log()).sum() - (p1 * p1.log()).sum()
    torch.testing.assert_close(dist.entropy(), entropy.unsqueeze(0))
    assert dist.mode.tolist() == [[1, 2]]
    uniform = MultiCategorical(torch.zeros(1, 5), (2, 3))
    kl = (p0 * (p0 / 0.5).log()).sum() + (p1 * (p1 * 3).log()).sum()
    torch.testing.assert_close(kl_divergence(dist, uniform), kl.unsqueeze(0))


def test_multi_categorical_samples_each_entry_from_its_own_block():
    """Sampled entries follow their own block's probabilities; frozen() keeps the numbers and drops the graph."""
    logits = torch.tensor([[0.0, math.log(3.0), 0.0, 0.0, math.log(2.0)]], requires_grad=True)
    dist = MultiCategorical(logits.expand(40000, 5), (2, 3))
    torch.manual_seed(0)
    samples = dist.sample()
    assert samples.shape == (40000, 2) and samples.dtype == torch.int64
    torch.testing.assert_close(samples[:, 0].float().mean(), torch.tensor(0.75), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.bincount(samples[:, 1], minlength=3) / 40000.0,
                               torch.tensor([0.25, 0.25, 0.5]), atol=0.01, rtol=0)
    still = frozen(dist)
    assert isinstance(still, MultiCategorical) and not still.logits.requires_grad
    torch.testing.assert_close(still.log_prob(samples), dist.log_prob(samples).detach())


@pytest.mark.parametrize("space, entries", [(gym.spaces.MultiDiscrete([2, 3]), 2),
                                            (gym.spaces.MultiDiscrete([[2, 2], [3, 4]]), 4),
                                            (gym.spaces.MultiBinary(3), 3)])
def test_actor_critic_has_one_categorical_per_entry_of_a_multi_action(space, entries):
    """MultiDiscrete and MultiBinary actions get one categorical per entry (flattened), near uniform at first."""
    net = ActorCritic(BOX_OBS, space, hidden=(8,))
    dist = net.distribution(torch.randn(4, 5))
    assert isinstance(dist, MultiCategorical) and len(dist.nvec) == entries
    assert dist.sample().shape == (4, entries)
    uniform = sum(math.log(n) for n in dist.nvec)
    torch.testing.assert_close(dist.entropy(), torch.full((4,), uniform), atol=0.01, rtol=0)


# ---------------------------------------------------------------------------------------------- heads
def test_gaussian_head_log_std_is_a_state_independent_parameter():
    """GaussianHead's log std is one learned parameter shared by all rows (initialised to log_std_init)."""
    head = GaussianHead(4, 2, log_std_init=-0.5)
    assert any(p is head.log_std for p in head.parameters())
    dist = head(torch.randn(7, 4))
    assert dist.mean.shape == (7, 2) and dist.log_std.shape == (7, 2)
    assert torch.equal(dist.log_std, torch.full((7, 2), -0.5))
    # It learns: a loss on the log std gives its parameter a gradient.
    dist.log_std.sum().backward()
    assert torch.equal(head.log_std.grad, torch.full((2,), 7.0))


def test_categorical_head_probabilities_sum_to_one():
    """CategoricalHead gives one distribution per row over n_actions, probabilities summing to 1."""
    dist = CategoricalHead(4, 5)(torch.randn(7, 4) * 10)
    assert isinstance(dist, Categorical) and dist.probs.shape == (7, 5)
    torch.testing.assert_close(dist.probs.sum(-1), torch.ones(7))


# ---------------------------------------------------------------------------------------------- ActorCritic
def test_actor_critic_shared_has_one_torso():
    """shared=True: one torso; the critic's parameters are its value head only, disjoint from the actor's."""
    net = ActorCritic(BOX_OBS, DISCRETE_ACTIONS, hidden=(8, 8), shared=True)
    assert net.critic_torso is net.actor_torso
    actor, critic = net.actor_parameters(), net.critic_parameters()
    assert not ids(actor) & ids(critic)
    assert ids(critic) == ids(net.value_head.parameters())
    assert ids(actor) | ids(critic) == ids(net.parameters())
    assert len(critic) == len(ids(critic))  # no duplicates


def test_actor_critic_separate_torsos():
    """shared=False: two torsos; actor = actor torso + policy head, critic = critic torso + value head."""
    net = ActorCritic(BOX_OBS, BOX_ACTIONS, hidden=(8, 8), shared=False)
    assert net.critic_torso is not net.actor_torso
    actor, critic = net.actor_parameters(), net.critic_parameters()
    assert not ids(actor) & ids(critic)
    assert ids(critic) == ids(net.critic_torso.parameters()) | ids(net.value_head.parameters())
    assert ids(actor) | ids(critic) == ids(net.parameters())
    obs = torch.randn(3, 5)
    dist, value = net(obs)
    torch.testing.assert_close(dist.mean, net.distribution(obs).mean)
    torch.testing.assert_close(value, net.value(obs))


def test_actor_critic_shared_forward_equals_separate_calls():
    """The shared forward (one torso pass) gives what distribution() and value() give."""
    net = ActorCritic(BOX_OBS, DISCRETE_ACTIONS, hidden=(8,), shared=True)
    obs = torch.randn(3, 5)
    dist, value = net(obs)
    torch.testing.assert_close(dist.logits, net.distribution(obs).logits)
    torch.testing.assert_close(value, net.value(obs))


def test_actor_critic_distribution_kind_follows_action_space():
    """A Box action space gives a DiagGaussian over its dimensions, a Discrete one a Categorical over its actions."""
    obs = torch.randn(4, 5)
    box = ActorCritic(BOX_OBS, BOX_ACTIONS, hidden=(8,), log_std_init=-1.0).distribution(obs)
    assert isinstance(box, DiagGaussian) and box.mean.shape == (4, 3)
    assert torch.equal(box.log_std, torch.full((4, 3), -1.0))
    discrete = ActorCritic(BOX_OBS, DISCRETE_ACTIONS, hidden=(8,)).distribution(obs)
    assert isinstance(discrete, Categorical) and discrete.probs.shape == (4, 4)
    value = ActorCritic(BOX_OBS, DISCRETE_ACTIONS, hidden=(8,)).value(obs)
    assert value.shape == (4,)


def test_actor_critic_policy_output_starts_small():
    """Policy output layer initialised with gain 0.01 and zero bias: logits/means near 0 at init, so the first
    policy is near uniform; the value layer is not shrunk."""
    torch.manual_seed(0)
    obs = torch.randn(256, 5) * 3
    discrete = ActorCritic(BOX_OBS, DISCRETE_ACTIONS)
    logits = discrete.policy_head.logits(discrete.actor_torso(obs))
    assert logits.std() < 0.05 and logits.abs().max() < 0.1
    torch.testing.assert_close(discrete.distribution(obs).probs, torch.full((256, 4), 0.25), atol=0.01, rtol=0)
    box = ActorCritic(BOX_OBS, BOX_ACTIONS)
    assert box.distribution(obs).mean.abs().max() < 0.1
    assert discrete.value(obs).std() > 0.1
    assert torch.equal(box.policy_head.mean.bias, torch.zeros(3))


# ---------------------------------------------------------------------------------------------- RunningMeanStd
def test_running_mean_std_matches_numpy_over_batches():
    """Updates over several batches give numpy's mean and (population) variance of their concatenation."""
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) * [1, 10, 0.1, 1] for n in (5, 17, 1, 40)]
    rms = RunningMeanStd((4,))
    for batch in batches:
        rms.update(torch.as_tensor(batch, dtype=torch.float32))
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-3)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-3)
    assert rms.count.item() == pytest.approx(len(data), abs=1e-3)


def test_running_mean_std_forward_standardizes_and_clips():
    """forward is (x - mean) / sqrt(var + eps), clipped at +-clip."""
    rms = RunningMeanStd((2,))
    with torch.no_grad():
        rms.mean.copy_(torch.tensor([1.0, -2.0]))
        rms.var.copy_(torch.tensor([4.0, 0.25]))
    x = torch.tensor([[3.0, -2.0], [1.0, -1.0], [100.0, -100.0]])
    expected = torch.tensor([[1.0, 0.0], [0.0, 2.0], [10.0, -10.0]])  # (3-1)/2, (-1+2)/0.5; 49.5 and -196 clipped
    torch.testing.assert_close(rms(x), expected, atol=1e-6, rtol=0)
    assert rms(x).dtype == torch.float32
    assert RunningMeanStd((2,), clip=1.0)(torch.tensor([[5.0, -5.0]])).tolist() == [[1.0, -1.0]]


def test_running_mean_std_state_dict_carries_statistics():
    """mean, var and count are buffers: they travel in state_dict."""
    rms = RunningMeanStd((3,))
    rms.update(torch.randn(10, 3) + 5)
    other = RunningMeanStd((3,))
    other.load_state_dict(rms.state_dict())
    assert set(rms.state_dict()) == {"mean", "var", "count"}
    assert torch.equal(other.mean, rms.mean) and torch.equal(other.var, rms.var)


# ---------------------------------------------------------------------------------------------- RewardScaler
def test_reward_scaler_divides_by_running_std_of_discounted_return():
    """Rewards are divided by the std of the running discounted returns seen so far (gamma 0.9), reproduced by
    hand; the return accumulator restarts after a done."""
    gamma = 0.9
    scaler = RewardScaler(num_envs=1, gamma=gamma)
    rewards = [1.0, 2.0, -1.0, 3.0, 0.5]
    dones = [False, True, False, False, True]
    # Discounted returns by hand: 1; 0.9 + 2 = 2.9 (done: restart); -1; -0.9 + 3 = 2.1; 1.89 + 0.5 = 2.39.
    returns_by_hand = [1.0, 2.9, -1.0, 2.1, 2.39]
    seen = []
    for reward, done, ret in zip(rewards, dones, returns_by_hand):
        out = scaler(np.array([reward]), np.array([done]))
        seen.append(ret)
        # Statistics start from mean 0, var 1 with a count of 1e-4 (as gymnasium's RunningMeanStd).
        count = 1e-4 + len(seen)
        mean = sum(seen) / count
        var = (1e-4 * (1.0 + mean ** 2) + sum((x - mean) ** 2 for x in seen)) / count
        expected = float(np.clip(reward / math.sqrt(var + 1e-8), -10, 10))  # the first step is clipped (std ~ 0)
        assert out[0] == pytest.approx(expected, rel=1e-6)
    assert scaler.returns.tolist() == [0.0]  # the last step was a done


def test_reward_scaler_keeps_envs_apart_and_clips():
    """Each env has its own return accumulator; scaled rewards are clipped at +-10."""
    scaler = RewardScaler(num_envs=2, gamma=0.5)
    scaler(np.array([1.0, 4.0]), np.array([True, False]))
    assert scaler.returns.tolist() == [0.0, 4.0]
    scaler(np.array([2.0, 2.0]), np.array([False, False]))
    assert scaler.returns.tolist() == [2.0, 4.0]
    tiny = RewardScaler(num_envs=1, gamma=0.9)
    for _ in range(200):
        tiny(np.array([0.0]), np.array([True]))  # returns all 0: the std shrinks towards 0
    # One return of r among 201: std ~ r * sqrt(200) / 201, so r / std ~ 14 -> clipped to 10 (and -10).
    assert tiny(np.array([1.0]), np.array([True]))[0] == 10.0
    assert tiny(np.array([-1.0]), np.array([True]))[0] == -10.0
