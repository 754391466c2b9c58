"""Behaviour of the policy-gradient agents (PPO, TRPO, REINFORCE, A2C) and what they share: losses against
hand-computed numbers, updates on fixed rollouts, acting, saving, and the command line end to end."""

from __future__ import annotations

import copy
import dataclasses
import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import evaluate
import rlkit.agents.trpo as trpo_module
import train
from rlkit.agents import AGENTS, A2C, PPO, PPOConfig, REINFORCE, REINFORCEConfig, TRPO, TRPOConfig
from rlkit.agents.dqn import DQN
from rlkit.agents.trpo import conjugate_gradient
from rlkit.buffers.rollout import RolloutBatch
from rlkit.checkpoint import load_checkpoint
from rlkit.envs import make_env
from rlkit.errors import UserError
from rlkit.nets import DiagGaussian, kl_divergence
from rlkit.sources import RolloutSource

from by_hand import returns_by_hand
from counter_envs import counter_env


VECTOR_OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


# ---------------------------------------------------------------------------------------------- helpers
def make_agent(agent_class, config, env_or_spaces, seed: int = 0):
    """An agent with reproducible initial weights (torch seeded before construction)."""
    obs_space, action_space = (env_or_spaces if isinstance(env_or_spaces, tuple)
                               else (env_or_spaces.single_observation_space, env_or_spaces.single_action_space))
    torch.manual_seed(seed)
    return agent_class(config, obs_space, action_space, total_steps=100_000, seed=seed)


def collect(agent, env) -> RolloutBatch:
    """One rollout of ``agent`` in ``env`` (a fresh RolloutSource), flattened with advantages computed."""
    source = RolloutSource(env, agent)
    return source.next()


def actor_params(agent) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.net.actor_parameters()]


def frozen_distribution(agent, obs):
    """The policy on ``obs`` as a snapshot that later parameter changes cannot alter."""
    with torch.no_grad():
        dist = agent.net.distribution(obs)
    if isinstance(dist, DiagGaussian):
        return DiagGaussian(dist.mean.clone(), dist.log_std.clone())
    return torch.distributions.Categorical(logits=dist.logits.clone())


def normalized(advantages: torch.Tensor) -> torch.Tensor:
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def count_optimizer_steps(optimizer: torch.optim.Optimizer) -> list[int]:
    """Wrap ``optimizer.step`` to count calls; returns the (one-element) counter."""
    counter, step = [0], optimizer.step

    def counting_step(*args, **kwargs):
        counter[0] += 1
        return step(*args, **kwargs)

    optimizer.step = counting_step
    return counter


# ---------------------------------------------------------------------------------------------- PPO losses
def test_ppo_clipped_surrogate_hand_values_and_gradients():
    """-mean(min(rA, clip(r)A)) by hand, and no gradient through the ratio where the clip is active."""
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.1], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, 2.0, -2.0])
    # r=0.5, A=1:   rA=0.5,  clip(r)A=0.8*1=0.8    -> min 0.5   (unclipped: d/dr = A = 1)
    # r=1.0, A=-1:  rA=-1,   clip(r)A=-1           -> min -1    (unclipped: d/dr = -1)
    # r=1.5, A=2:   rA=3,    clip(r)A=1.2*2=2.4    -> min 2.4   (clipped: d/dr = 0)
    # r=1.1, A=-2:  rA=-2.2, clip(r)A=1.1*-2=-2.2  -> min -2.2  (inside the range: d/dr = -2)
    # loss = -(0.5 - 1 + 2.4 - 2.2) / 4 = 0.075
    loss = PPO.clipped_surrogate_loss(ratio, advantages, 0.2)
    assert loss.item() == pytest.approx(0.075, abs=1e-7)
    loss.backward()
    torch.testing.assert_close(ratio.grad, torch.tensor([-0.25, 0.25, 0.0, 0.5]))


def test_ppo_clipped_surrogate_is_pessimistic_on_both_sides():
    """Clipping only removes incentives: r below 1-eps with A<0 is clipped (no gradient), r above 1+eps with
    A<0 is not (the unclipped term is the smaller one and keeps its gradient)."""
    ratio = torch.tensor([0.5, 1.5], requires_grad=True)
    advantages = torch.tensor([-1.0, -1.0])
    # r=0.5: rA=-0.5, clip(r)A=-0.8 -> min -0.8 (clipped); r=1.5: rA=-1.5, clip(r)A=-1.2 -> min -1.5 (unclipped)
    loss = PPO.clipped_surrogate_loss(ratio, advantages, 0.2)
    assert loss.item() == pytest.approx((0.8 + 1.5) / 2)
    loss.backward()
    torch.testing.assert_close(ratio.grad, torch.tensor([0.0, 0.5]))


@pytest.mark.parametrize("clip_vloss, expected", [
    # values [1, 2, 0, 1], old [0.5, 2.5, 0, 0], returns [2, 1, 0.3, 0.5], clip 0.2
    # unclipped squared errors: 1, 1, 0.09, 0.25
    # clipped V = old + clamp(V - old, +-0.2) = 0.7, 2.3, 0, 0.2 -> squared errors 1.69, 1.69, 0.09, 0.09
    (True, 0.5 * (1.69 + 1.69 + 0.09 + 0.25) / 4),   # elementwise max: 1.69, 1.69, 0.09, 0.25
    (False, 0.5 * (1 + 1 + 0.09 + 0.25) / 4),
])
def test_ppo_value_loss_hand_values(clip_vloss, expected):
    """0.5 E[(V-R)^2], or with clip_vloss the larger of that and the error of V clipped to V_old +- clip."""
    agent = make_agent(PPO, PPOConfig(clip_vloss=clip_vloss, clip_coef=0.2, hidden=(4,)), (VECTOR_OBS,
                       gym.spaces.Discrete(2)))
    loss = agent.value_loss(torch.tensor([1.0, 2.0, 0.0, 1.0]), torch.tensor([0.5, 2.5, 0.0, 0.0]),
                            torch.tensor([2.0, 1.0, 0.3, 0.5]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------- PPO update
PPO_SMALL = dataclasses.replace(AGENTS["ppo"].preset("other"), num_steps=16, num_minibatches=4, update_epochs=3)


@pytest.fixture(scope="module")
def cartpole_ppo_rollout() -> RolloutBatch:
    """16 steps x 2 CartPole envs collected by make_agent(PPO, PPO_SMALL) (seed 0)."""
    env = make_env("CartPole", 2, seed=0)
    batch = collect(make_agent(PPO, PPO_SMALL, env), env)
    env.close()
    return batch


def cartpole_ppo(**changes) -> PPO:
    """A PPO agent with the same initial weights as the one that collected cartpole_ppo_rollout."""
    return make_agent(PPO, dataclasses.replace(PPO_SMALL, **changes), make_env("CartPole", 1))


def test_ppo_update_metrics_and_step_count(cartpole_ppo_rollout):
    """One update: update_epochs x num_minibatches optimizer steps and the documented metrics; the rollout's
    log-probs are the collecting policy's, so the first minibatch starts at ratio 1."""
    agent = cartpole_ppo()
    with torch.no_grad():
        log_probs = agent.net.distribution(cartpole_ppo_rollout.obs).log_prob(cartpole_ppo_rollout.actions)
    torch.testing.assert_close(log_probs, cartpole_ppo_rollout.log_probs)
    steps = count_optimizer_steps(agent.optimizer)
    metrics = agent.update(cartpole_ppo_rollout)
    assert steps[0] == 3 * 4
    for key in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
                "losses/explained_variance", "charts/learning_rate"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert agent.updates == 1  # approx_kl and clipfrac by hand: test_ppo_approx_kl_and_clipfrac_by_hand


def test_ppo_approx_kl_and_clipfrac_by_hand(cartpole_ppo_rollout):
    """With one minibatch per epoch, epoch 1 sees the collecting policy (ratio 1: k3 KL 0, nothing clipped); a
    large step then moves the policy, and epoch 2's ratios r, recomputed here from the weights one epoch leaves,
    give k3 = mean((r - 1) - log r) and the share of |r - 1| > clip_coef. The update logs the mean over epochs."""
    rollout, changes = cartpole_ppo_rollout, {"num_minibatches": 1, "learning_rate": 0.05, "anneal_lr": False}
    one = cartpole_ppo(update_epochs=1, **changes)
    first = one.update(rollout)
    assert first["losses/approx_kl"] == pytest.approx(0, abs=1e-9) and first["losses/clipfrac"] == 0
    with torch.no_grad():
        log_ratio = one.net.distribution(rollout.obs).log_prob(rollout.actions) - rollout.log_probs
    kl = ((log_ratio.exp() - 1) - log_ratio).mean().item()
    clipped = ((log_ratio.exp() - 1).abs() > one.config.clip_coef).sum().item()
    assert 0 < clipped < len(log_ratio)  # the hand count is neither none nor all
    metrics = cartpole_ppo(update_epochs=2, **changes).update(rollout)
    assert metrics["losses/approx_kl"] == pytest.approx(kl / 2, rel=1e-4)
    assert metrics["losses/clipfrac"] == pytest.approx(clipped / len(log_ratio) / 2)


def test_ppo_target_kl_stops_after_first_epoch(cartpole_ppo_rollout):
    """A tiny target_kl ends the update after the first pass: exactly num_minibatches optimizer steps."""
    agent = cartpole_ppo(target_kl=1e-9)
    steps = count_optimizer_steps(agent.optimizer)
    agent.update(cartpole_ppo_rollout)
    assert steps[0] == 4


# ---------------------------------------------------------------------------------------------- TRPO
def test_conjugate_gradient_solves_spd_system():
    """CG solves a random 10x10 SPD system to 1e-5 with enough iterations, touching A only through A @ v."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(10, 10, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(10, dtype=torch.float64)
    b = torch.randn(10, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=50, tolerance=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), atol=1e-5, rtol=0)
    # Few iterations give only an approximation (the test can tell the difference).
    assert not torch.allclose(conjugate_gradient(lambda v: a @ v, b, iters=2), torch.linalg.solve(a, b), atol=1e-5)


TRPO_SMALL = dataclasses.replace(AGENTS["trpo"].preset("other"), num_steps=32, critic_epochs=2)


def trpo_rollout(env_name: str, **changes) -> tuple[TRPO, RolloutBatch]:
    """A fresh TRPO agent and a rollout (32 steps x 2 envs) it collected."""
    env = make_env(env_name, 2, seed=0)
    agent = make_agent(TRPO, dataclasses.replace(TRPO_SMALL, **changes), env)
    batch = collect(agent, env)
    env.close()
    return agent, batch


def test_trpo_fisher_vector_product_and_gradient_are_exact():
    """Inside the update, CG gets b = the policy gradient and v -> (F + damping I) v with F the Fisher matrix
    E_s[sum_a pi(a|s) g g^T], g = grad log pi(a|s), built here from explicit per-action gradients."""
    agent, batch = trpo_rollout("CartPole", hidden=(4,), cg_iters=60)
    params = agent.net.actor_parameters()
    captured = {}
    real_cg = trpo_module.conjugate_gradient

    def spy(matvec, b, iters, tolerance=1e-10):
        v = torch.randn(b.shape, generator=torch.Generator().manual_seed(1))
        captured.update(b=b.clone(), v=v, fv=matvec(v).detach())
        x = real_cg(matvec, b, iters, tolerance)
        captured.update(x=x, fx=matvec(x).detach())
        return x

    old = actor_params(agent)
    trpo_module.conjugate_gradient, saved = spy, trpo_module.conjugate_gradient
    try:
        # Explicit Jacobian of log pi(a|s) for every state and action, at the pre-update parameters.
        dist = agent.net.distribution(batch.obs)
        n, n_actions = dist.probs.shape
        rows = [[torch.cat([g.reshape(-1) for g in torch.autograd.grad(dist.logits[i, a], params,
                                                                     retain_graph=True)])
                 for a in range(n_actions)] for i in range(n)]
        jac = torch.stack([torch.stack(r) for r in rows])  # (n, A, P): Categorical logits are log-probs
        agent.update(batch)
    finally:
        trpo_module.conjugate_gradient = saved
    probs = dist.probs.detach()
    fisher = torch.einsum("na,nap,naq->pq", probs, jac, jac) / n
    damping = agent.config.cg_damping
    torch.testing.assert_close(captured["fv"], fisher @ captured["v"] + damping * captured["v"], rtol=1e-4,
                               atol=1e-6)
    adv = normalized(batch.advantages)
    gradient = (adv[:, None] * jac[torch.arange(n), batch.actions]).mean(0)  # at ratio 1: E[A grad log pi]
    torch.testing.assert_close(captured["b"], gradient, rtol=1e-4, atol=1e-6)
    # CG solved (F + damping I) x = b.
    residual = (captured["fx"] - captured["b"]).norm() / captured["b"].norm()
    assert residual < 1e-3
    assert any(not torch.equal(a, b) for a, b in zip(old, actor_params(agent)))  # the step was taken


@pytest.mark.parametrize("env_name", ["CartPole", "Pendulum"])
def test_trpo_step_stays_in_trust_region_and_improves(env_name):
    """After an update the true mean KL(old || new) on the rollout is <= max_kl, the reported KL is that KL, and
    an accepted step improved the surrogate E[pi/pi_old A] (the reported improvement)."""
    agent, batch = trpo_rollout(env_name)
    old = frozen_distribution(agent, batch.obs)
    metrics = agent.update(batch)
    new = frozen_distribution(agent, batch.obs)
    kl = kl_divergence(old, new).mean().item()
    assert metrics["losses/line_search_accepted"] == 1.0
    assert 0 < kl <= agent.config.max_kl + 1e-6
    assert metrics["losses/kl"] == pytest.approx(kl, rel=1e-4)
    adv = normalized(batch.advantages)
    before = (old.log_prob(batch.actions) - batch.log_probs).exp().mul(adv).mean()
    after = (new.log_prob(batch.actions) - batch.log_probs).exp().mul(adv).mean()
    assert after - before > 0
    assert metrics["losses/improvement"] == pytest.approx((after - before).item(), rel=1e-3)


def test_trpo_rejects_a_step_that_does_not_improve():
    """Zero advantages: no step improves the surrogate, so the line search rejects and the policy is exactly
    unchanged (the critic still trains)."""
    agent, batch = trpo_rollout("Pendulum")
    batch = batch._replace(advantages=torch.zeros_like(batch.advantages))
    before_actor = actor_params(agent)
    before_critic = [p.detach().clone() for p in agent.net.critic_parameters()]
    metrics = agent.update(batch)
    assert metrics["losses/line_search_accepted"] == 0.0
    assert metrics["losses/kl"] == 0.0 and metrics["losses/improvement"] == 0.0
    for a, b in zip(before_actor, actor_params(agent)):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before_critic, agent.net.critic_parameters()))


# ---------------------------------------------------------------------------------------------- REINFORCE
def reinforce_on_counter(**changes) -> tuple[REINFORCE, RolloutBatch]:
    """REINFORCE (gamma 0.5, no baseline unless changed) and a 10-step rollout of counter_env()."""
    config = dataclasses.replace(REINFORCEConfig(), num_steps=10, gamma=0.5, baseline=False, hidden=(8,),
                                 **changes)
    env = counter_env()
    agent = make_agent(REINFORCE, config, env)
    return agent, collect(agent, env)


def test_reinforce_without_baseline_advantages_are_reward_to_go():
    """baseline=False: advantage = return = discounted reward-to-go within the episode (no bootstrap, not even at
    a time limit); steps after each env's last episode end get weight 0."""
    _, batch = reinforce_on_counter()
    # env 0: episodes of 3 steps, rewards 1, 2, 3, terminated: G = 1 + 0.5*2 + 0.25*3 = 2.75, 2 + 1.5 = 3.5, 3
    # env 1: episodes of 4 steps, rewards 1..4, truncated: G = 1 + 1 + 0.75 + 0.5 = 3.25, 4.5, 5, 4
    env0 = [2.75, 3.5, 3.0] * 3          # steps 0-8; step 9 starts an episode that has not ended
    env1 = [3.25, 4.5, 5.0, 4.0] * 2     # steps 0-7; steps 8, 9 have not ended
    weights = batch.weights.reshape(10, 2)
    assert weights[:, 0].tolist() == [1.0] * 9 + [0.0]
    assert weights[:, 1].tolist() == [1.0] * 8 + [0.0, 0.0]
    advantages = batch.advantages.reshape(10, 2)
    assert advantages[:9, 0].tolist() == pytest.approx(env0)
    assert advantages[:8, 1].tolist() == pytest.approx(env1)
    torch.testing.assert_close(batch.returns, batch.advantages)
    assert batch.values.eq(0).all()


def test_reinforce_unfinished_steps_do_not_affect_the_update():
    """Changing the obs, actions and advantages of weight-0 steps leaves the update exactly the same; changing a
    counted step does not."""
    agent, batch = reinforce_on_counter()
    masked = batch.weights == 0
    twin, other = copy.deepcopy(agent), copy.deepcopy(agent)
    agent.update(batch)
    scrambled = batch._replace(obs=torch.where(masked[:, None], batch.obs + 7.0, batch.obs),
                               actions=torch.where(masked, 1 - batch.actions, batch.actions),
                               advantages=torch.where(masked, batch.advantages * -50.0, batch.advantages))
    twin.update(scrambled)
    for a, b in zip(agent.net.parameters(), twin.net.parameters()):
        assert torch.equal(a, b)
    changed = batch.advantages.clone()
    changed[0] += 10.0
    other.update(batch._replace(advantages=changed))
    assert any(not torch.equal(a, b) for a, b in zip(agent.net.actor_parameters(), other.net.actor_parameters()))


# ---------------------------------------------------------------------------------------------- A2C
def test_a2c_update_moves_policy_toward_positive_advantage():
    """One A2C step raises log pi of an action with positive advantage, lowers it for negative advantage, and
    moves V(s) toward the return."""
    config = dataclasses.replace(AGENTS["a2c"].preset("other"), hidden=(8,), learning_rate=0.01)
    agent = make_agent(A2C, config, (VECTOR_OBS, gym.spaces.Discrete(3)))
    obs = torch.tensor([[0.1, -0.2, 0.3]]).repeat(4, 1)
    actions = torch.tensor([0, 0, 1, 1])
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0])
    returns = torch.full((4,), 5.0)
    batch = RolloutBatch(obs, actions, torch.zeros(4), torch.zeros(4), advantages, returns, torch.ones(4))
    with torch.no_grad():
        before, value_before = agent.net.distribution(obs[:1]).log_prob(torch.arange(3)), agent.net.value(obs[:1])
    agent.update(batch)
    with torch.no_grad():
        after, value_after = agent.net.distribution(obs[:1]).log_prob(torch.arange(3)), agent.net.value(obs[:1])
    assert after[0] > before[0] and after[1] < before[1]
    assert abs(value_after.item() - 5.0) < abs(value_before.item() - 5.0)


# ---------------------------------------------------------------------------------------------- acting, saving
def test_save_load_gives_same_actions_with_obs_normalization():
    """state_dict -> torch.save -> torch.load(weights_only) -> load_state_dict reproduces deterministic actions,
    including the (non-trivial) observation statistics."""
    config = dataclasses.replace(AGENTS["ppo"].preset("mujoco"), num_steps=64, num_minibatches=4, update_epochs=2)
    assert config.normalize_obs
    env = make_env("Pendulum", 1, seed=0)
    agent = make_agent(PPO, config, env, seed=0)
    agent.update(collect(agent, env))
    env.close()
    assert agent.obs_norm.mean.abs().max() > 0.01 and agent.obs_norm.count > 60

    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = make_agent(PPO, config, env, seed=1)
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32) * [1, 1, 8]
    assert not np.allclose(restored.act(obs, explore=False), agent.act(obs, explore=False))
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.act(obs, explore=False), agent.act(obs, explore=False))
    assert torch.equal(restored.obs_norm.mean, agent.obs_norm.mean)
    assert torch.equal(restored.obs_norm.var, agent.obs_norm.var)
    assert restored.updates == agent.updates == 1


def test_continuous_actions_clipped_for_env_but_stored_unclipped():
    """With a huge std the env gets actions clipped to the Box bounds, while the rollout stores the unclipped
    samples whose log-probs were computed."""
    action_space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    agent = make_agent(PPO, PPOConfig(log_std_init=3.0, hidden=(8,)), (VECTOR_OBS, action_space))
    obs = np.zeros((64, 3), np.float32)
    torch.manual_seed(0)
    step = agent.policy_step(obs)
    actions = step.actions.numpy()
    assert (actions[:, 0] > 2).any() and (actions[:, 0] < -2).any() and (actions[:, 1] > 1).any()
    np.testing.assert_array_equal(step.env_actions, np.clip(actions, action_space.low, action_space.high))
    with torch.no_grad():
        dist = agent.net.distribution(step.obs)
    torch.testing.assert_close(step.log_probs, dist.log_prob(step.actions))
    assert not torch.allclose(step.log_probs, dist.log_prob(torch.as_tensor(step.env_actions)))
    explored = agent.act(obs, explore=True)
    assert action_space.contains(explored[0]) and (explored >= action_space.low).all()
    assert (explored <= action_space.high).all()


def test_evaluation_leaves_statistics_and_step_count_alone():
    """act(explore=False), deterministic or not, and value_of leave the observation statistics alone; training
    steps (policy_step, act(explore=True)) update them. None of them moves the step (the source's)."""
    agent = make_agent(PPO, PPOConfig(normalize_obs=True, hidden=(8,)), (VECTOR_OBS, gym.spaces.Discrete(2)))
    obs = np.random.default_rng(0).normal(3.0, 2.0, (5, 3)).astype(np.float32)
    agent.policy_step(obs)
    snapshot = {k: v.clone() for k, v in agent.obs_norm.state_dict().items()}
    agent.act(obs * 10, explore=False)
    agent.act(obs * 10, explore=False, deterministic=False)
    agent.value_of(obs * 10)
    for key, value in agent.obs_norm.state_dict().items():
        assert torch.equal(value, snapshot[key]), key
    agent.act(obs, explore=True)
    assert agent.obs_norm.count.item() == pytest.approx(10, abs=1e-3) and agent.step == 0


def test_learning_rate_anneals_with_the_sources_step():
    """anneal_lr: the learning rate of an update is lr * (1 - step / total_steps), step being what the rollout
    source told the agent (the env steps of the run so far, this rollout included)."""
    config = dataclasses.replace(AGENTS["a2c"].preset("other"), hidden=(8,), num_steps=5, anneal_lr=True,
                                 learning_rate=1e-3)
    env = make_env("CartPole", 2, seed=0)
    agent = make_agent(A2C, config, env)  # total_steps 100_000
    source = RolloutSource(env, agent)
    source.steps = 25_000 - 10  # as after a resume
    rollout = source.next()
    env.close()
    assert agent.step == source.steps == 25_000
    assert agent.update(rollout)["charts/learning_rate"] == pytest.approx(1e-3 * 0.75)
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.75)


def test_trpo_has_no_flags_it_would_ignore():
    """TRPO's policy step has no loss weights and its critic's Adam keeps torch's epsilon: no such fields, so no
    such flags (refused in one line naming the agents that have them: exit status 2 at the command line)."""
    assert not {f.name for f in dataclasses.fields(TRPOConfig)} & {"ent_coef", "vf_coef", "adam_eps"}
    for flag in ("--ent-coef", "--vf-coef", "--adam-eps"):
        with pytest.raises(UserError, match=f"^{flag} is a flag of .*, not of trpo: drop it"):
            train.main(["--agent", "trpo", "--env", "CartPole", flag, "0.1"])


def test_unsupported_action_space_names_the_fitting_agents():
    """A Tuple action space is refused with a UserError; a Box refused by DQN lists the agents for Box."""
    with pytest.raises(UserError, match=r"use an agent for Tuple actions \(none yet\)") as refused:
        PPO(PPOConfig(), VECTOR_OBS, gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Discrete(3)]))
    assert "PPO needs a Discrete, Box, MultiDiscrete or MultiBinary action space" in str(refused.value)
    with pytest.raises(UserError, match=r"use an agent for Box actions \(reinforce, a2c, ppo, trpo\b") as refused:
        DQN.check_spaces(VECTOR_OBS, gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    assert "dqn" not in str(refused.value).split("use an agent for")[1]


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.parametrize("env_name", ["CartPole", "Pendulum"])
@pytest.mark.parametrize("agent", ["reinforce", "a2c", "ppo", "trpo"])
def test_every_policy_agent_trains_and_evaluates(tmp_path, agent, env_name):
    """Each on-policy agent trains two rollouts through train.main and its run evaluates, mode and sampled."""
    run = tmp_path / "run"
    train.main(["--agent", agent, "--env", env_name, "--num-steps", "64", "--num-envs", "2", "--total-steps", "256",
                "--eval-episodes", "0", "--no-progress", "--run-dir", str(run)])
    checkpoint = load_checkpoint(run)
    assert checkpoint["settings"]["agent"] == agent and checkpoint["loop"]["steps"] == 256
    assert checkpoint["learner"]["counters"] == {"updates": 2}
    for extra in ([], ["--stochastic"]):
        result = evaluate.main([str(run), "--episodes", "2", "--json", "--seed", "7", *extra])
        assert result["episodes"] == 2 and len(result["returns"]) == 2 and np.isfinite(result["returns"]).all()
        if not extra:  # the mode policy's games, played again by hand in plain gymnasium envs
            assert result["returns"] == pytest.approx(returns_by_hand(run, 2, seed=7), rel=1e-6)


def test_ppo_halfcheetah_smoke(tmp_path):
    """PPO with the MuJoCo preset runs a few rollouts on HalfCheetah and its run evaluates."""
    run = tmp_path / "run"
    train.main(["--agent", "ppo", "--env", "HalfCheetah", "--num-steps", "128", "--total-steps", "300",
                "--num-minibatches", "4", "--update-epochs", "2", "--eval-episodes", "0", "--no-progress",
                "--run-dir", str(run)])
    checkpoint = load_checkpoint(run)
    assert checkpoint["env_id"] == "HalfCheetah-v5" and checkpoint["loop"]["steps"] == 384
    assert checkpoint["config"]["normalize_obs"] and checkpoint["learner"]["obs_norm"]["count"] > 384
    result = evaluate.main([str(run), "--episodes", "1", "--json"])
    assert result["episodes"] == 1 and np.isfinite(result["mean_return"])


@pytest.mark.parametrize("agent_class, config", [
    (A2C, AGENTS["a2c"].preset("other")), (REINFORCE, AGENTS["reinforce"].preset("other")),
])
@pytest.mark.parametrize("env_name", ["CartPole", "Pendulum"])
def test_a2c_and_reinforce_log_the_kl_of_their_update(agent_class, config, env_name):
    """losses/kl is KL(pi_before || pi_after) on the rollout's observations, computed from a snapshot taken before
    the update (a Gaussian's log std is a live parameter: the snapshot must copy it)."""
    env = make_env(env_name, 2, seed=0)
    config = dataclasses.replace(config, num_steps=208, learning_rate=1e-2)  # REINFORCE learns from ended episodes
    agent = make_agent(agent_class, config, env)
    rollout = collect(agent, env)
    env.close()
    before = frozen_distribution(agent, rollout.obs)
    metrics = agent.update(rollout)
    with torch.no_grad():
        kl = kl_divergence(before, agent.net.distribution(rollout.obs)).mean()
    assert metrics["losses/kl"] == pytest.approx(float(kl), rel=1e-4) and metrics["losses/kl"] > 0
