"""A3C: a worker segment's returns by hand, the worker update against torch's RMSprop on a hand-written loss, the
shared optimizer, and the worker processes end to end (training, evaluation, failures, Ctrl-C and resume).

The process tests start real spawned workers (about two seconds each to import torch), so they share few runs."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from torch.distributions import Categorical

import evaluate
import train
from rlkit.agents import AGENTS, A3C, A3CConfig
from rlkit.agents.a3c import SharedRMSprop
from rlkit.checkpoint import load_checkpoint
from rlkit.envs import EpisodeSignals, make_env
from rlkit.errors import UserError
from rlkit.jobs.agent import AgentJob, AgentSettings
from rlkit.nets import kl_divergence
from rlkit.sources.async_ import MP, A3CSource, WorkerReport, collect_segment, run_worker

from by_hand import returns_by_hand
from counter_envs import COUNTER_OBS, counter_env


class KnownValues(torch.nn.Module):
    """V(s) = 10 + s and a uniform policy: values a hand computation can use."""

    def distribution(self, obs):
        return Categorical(logits=torch.zeros(len(obs), 2))

    def value(self, obs):
        return 10.0 + obs[:, 0]


def small_agent(**changes) -> A3C:
    torch.manual_seed(0)
    config = dataclasses.replace(A3CConfig(), hidden=(8,), gamma=0.5, **changes)
    return A3C(config, COUNTER_OBS, gym.spaces.Discrete(2), total_steps=1_000)


# ---------------------------------------------------------------------------------------------- segment targets
@pytest.mark.parametrize("lam, expected_returns", [
    # gamma 0.5, V(s) = 10 + s. Sub-env 0 plays obs 0 1 2 | 0 1 with rewards 1 2 3 (terminated) | 1 2, then obs 2:
    #   lambda 1 (n-step): 1 + .5*2 + .25*3 = 2.75, 2 + .5*3 = 3.5, 3 (no bootstrap), 1 + .5*(2 + .5*V(2)=12) = 5, 8
    # Sub-env 1 plays obs 0 1 2 3 | 0 with rewards 1 2 3 4 (truncated: bootstrap V(4) = 14) | 1, then obs 1:
    #   4 + .5*14 = 11, 3 + .5*11 = 8.5, 2 + .5*8.5 = 6.25, 1 + .5*6.25 = 4.125; 1 + .5*V(1)=11 -> 6.5
    (1.0, [[2.75, 4.125], [3.5, 6.25], [3.0, 8.5], [5.0, 11.0], [8.0, 6.5]]),
    # lambda 0 (one-step TD): r + .5 V(next) with V(next) = 0 after the termination, V(final obs 4) = 14 after the
    # time limit: sub-env 0: 1 + 5.5, 2 + 6, 3, 1 + 5.5, 2 + 6; sub-env 1: 1 + 5.5, 2 + 6, 3 + 6.5, 4 + 7, 1 + 5.5
    (0.0, [[6.5, 6.5], [8.0, 8.0], [3.0, 9.5], [6.5, 11.0], [8.0, 6.5]]),
])
def test_segment_returns_by_hand(lam, expected_returns):
    """A 5-step segment across a termination and a time limit: n-step (lambda 1) and TD (lambda 0) targets, no
    bootstrap through the termination, a bootstrap from the true last observation at the time limit."""
    env = counter_env()
    obs, _ = env.reset(seed=0)
    net = KnownValues()
    segment, obs, ended = collect_segment(env, net, obs, 5)
    assert segment.obs.shape == (5, 2, 1) and segment.actions.shape == (5, 2)
    assert segment.terminated[:, 0].tolist() == [0, 0, 1, 0, 0] and segment.truncated[:, 1].tolist() == [0, 0, 0, 1, 0]
    assert segment.final_values[3, 1] == 14.0 and segment.last_values.tolist() == [12.0, 11.0]
    assert sorted(ended) == [(6.0, 3), (10.0, 4)]  # raw returns 1+2+3 and 1+2+3+4
    assert obs[:, 0].tolist() == [2.0, 1.0]
    agent = small_agent(gae_lambda=lam)
    values = net.value(segment.obs.flatten(0, 1)).view(5, 2)
    advantages, returns = agent.targets(segment, values)
    torch.testing.assert_close(returns, torch.tensor(expected_returns))
    torch.testing.assert_close(advantages, returns - values)


# ---------------------------------------------------------------------------------------------- the update
def hand_loss(net, segment, gamma: float, ent_coef: float, vf_coef: float) -> torch.Tensor:
    """The A3C loss with n-step returns written as a plain loop: sums over time, means over sub-envs."""
    dist, values = net(segment.obs.flatten(0, 1))
    T, N = segment.rewards.shape
    values = values.view(T, N)
    log_prob = dist.log_prob(segment.actions.flatten(0, 1)).view(T, N)
    entropy = dist.entropy().view(T, N)
    loss = torch.zeros(())
    for n in range(N):
        R = segment.last_values[n]
        for t in reversed(range(T)):
            if segment.terminated[t, n]:
                R = torch.tensor(0.0)
            elif segment.truncated[t, n]:
                R = segment.final_values[t, n]
            R = segment.rewards[t, n] + gamma * R
            advantage = R - values[t, n].detach()
            loss = loss + (-advantage * log_prob[t, n] + vf_coef * (R - values[t, n]) ** 2
                           - ent_coef * entropy[t, n]) / N
    return loss


@pytest.mark.parametrize("max_grad_norm", [0.0, 0.05])
def test_learn_equals_torch_rmsprop_on_the_hand_loss(max_grad_norm):
    """Two worker updates move the shared net exactly as torch's RMSprop (alpha 0.99, eps 0.1) moves a private copy
    on the hand-written loss (clipped to max_grad_norm when set); the local copy only supplies gradients."""
    agent = small_agent(gae_lambda=1.0, max_grad_norm=max_grad_norm, anneal_lr=False)
    reference = copy.deepcopy(agent.net)
    optimizer = torch.optim.RMSprop(reference.parameters(), lr=5e-4, alpha=0.99, eps=0.1)
    env = counter_env()
    obs, _ = env.reset(seed=0)
    local = copy.deepcopy(agent.net)
    for _ in range(2):
        local.load_state_dict(agent.net.state_dict())
        segment, obs, _ = collect_segment(env, local, obs, 5)
        before = [p.detach().clone() for p in local.parameters()]
        metrics = agent.learn(local, segment)
        optimizer.zero_grad()
        hand_loss(reference, segment, 0.5, 0.01, 0.5).backward()
        norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_grad_norm or float("inf"))
        optimizer.step()
        assert metrics["losses/grad_norm"] == pytest.approx(float(norm), rel=1e-5)
        with torch.no_grad():  # the KL from the copy that collected the segment to the shared net after the step
            flat = segment.obs.flatten(0, 1)
            kl = kl_divergence(local.distribution(flat), reference.distribution(flat)).mean()
        assert metrics["losses/kl"] == pytest.approx(float(kl), rel=1e-4, abs=1e-9)
        for shared, ref, local_p, old in zip(agent.net.parameters(), reference.parameters(), local.parameters(),
                                             before):
            torch.testing.assert_close(shared, ref, rtol=1e-5, atol=1e-7)
            assert torch.equal(local_p, old)  # the update steps the shared net, never the local copy
    assert max_grad_norm == 0 or norm > max_grad_norm  # the clipped case did clip
    assert any(not torch.equal(a, b) for a, b in zip(agent.net.parameters(), small_agent().net.parameters()))


def test_learn_anneals_the_learning_rate_by_the_step_its_worker_set():
    """The worker sets agent.step to the global count before learn(): lr * (1 - step / total_steps)."""
    agent = small_agent(anneal_lr=True)  # total_steps 1000
    env = counter_env()
    obs, _ = env.reset(seed=0)
    local = copy.deepcopy(agent.net)
    segment, _, _ = collect_segment(env, local, obs, 5)
    agent.step = 250
    assert agent.learn(local, segment)["charts/learning_rate"] == pytest.approx(5e-4 * 0.75)
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 * 0.75)


class ListQueue(list):
    put = list.append


def counter_env_fn(name, num_envs, seed=None, sticky_actions=False):
    return counter_env()


def test_worker_loop_in_process_matches_its_steps_done_by_hand():
    """The worker loop, run in this process: from a budget of 18 env steps it claims a segment of 5 steps x 2
    sub-envs, then one of 4 (what is left), syncs its local copy before each, and its result equals the same steps
    done by hand; one final report holds both updates, the 18 steps and the 5 games (3-step games end at steps 3,
    6, 9; 4-step games at 4, 8)."""
    agent, reference = small_agent(anneal_lr=False), small_agent(anneal_lr=False)
    messages, counter = ListQueue(), MP.Value("q", 0)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        run_worker(0, agent, counter_env_fn, "Counter", 2, 0, False, 18, counter, messages, threading.Event(), 1e9)
    finally:
        signal.signal(signal.SIGINT, sigint)  # the worker ignores Ctrl-C; this process must not
    assert counter.value == 18 and len(messages) == 1
    report = messages[0]
    assert (report.rank, report.updates, report.steps) == (0, 2, 18)
    assert sorted(e[1:] for e in report.episodes) == [(6.0, 3)] * 3 + [(10.0, 4)] * 2
    assert set(report.metrics) >= {"losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/grad_norm"}

    torch.manual_seed(0)  # the worker's seed * 1000 + rank
    env = counter_env()
    obs, _ = env.reset()
    local = copy.deepcopy(reference.net)
    for num_steps in (5, 4):
        local.load_state_dict(reference.net.state_dict())
        segment, obs, _ = collect_segment(env, local, obs, num_steps)
        reference.learn(local, segment)
    for a, b in zip(agent.net.parameters(), reference.net.parameters()):
        assert torch.equal(a, b)


def test_update_averages_worker_metrics_over_their_updates():
    """The loop's update() only aggregates: metrics weighted by each report's updates, updates summed."""
    agent = small_agent()
    metrics = agent.update([WorkerReport(0, 3, 15, {"losses/value_loss": 1.0}, []),
                            WorkerReport(1, 1, 5, {"losses/value_loss": 5.0}, [(20, 9.0, 9)])])
    assert metrics == {"losses/value_loss": 2.0}  # (3 * 1 + 1 * 5) / 4
    assert agent.updates == 4
    assert agent.update([WorkerReport(0, 0, 0, {}, [])]) == {} and agent.updates == 4


def test_shared_rmsprop_matches_torch_and_keeps_its_state_shared():
    """Same steps as torch.optim.RMSprop on the same gradients; every state tensor exists before the first step
    and lives in shared memory, also after load_state_dict."""
    g = torch.Generator().manual_seed(0)
    shared_param = torch.nn.Parameter(torch.randn(3, 4, generator=g))
    plain_param = torch.nn.Parameter(shared_param.detach().clone())
    shared = SharedRMSprop([shared_param], lr=0.01, alpha=0.99, eps=0.1)
    plain = torch.optim.RMSprop([plain_param], lr=0.01, alpha=0.99, eps=0.1)
    state = shared.state[shared_param]
    assert state["square_avg"].is_shared() and state["step"].is_shared()
    for _ in range(3):
        grad = torch.randn(3, 4, generator=g)
        shared_param.grad, plain_param.grad = grad.clone(), grad.clone()
        shared.step()
        plain.step()
    torch.testing.assert_close(shared_param, plain_param, rtol=0, atol=0)
    torch.testing.assert_close(state["square_avg"], plain.state[plain_param]["square_avg"], rtol=0, atol=0)
    assert state["step"].item() == 3
    shared.load_state_dict(plain.state_dict())
    assert all(t.is_shared() for t in shared.state[shared_param].values())


def test_state_dict_round_trip_stays_shared():
    """Loading a checkpoint's state copies into the shared tensors (workers started later see it) and gives the
    same greedy actions and optimizer statistics."""
    trained = small_agent(anneal_lr=False)
    env = counter_env()
    obs, _ = env.reset(seed=0)
    local = copy.deepcopy(trained.net)
    segment, obs, _ = collect_segment(env, local, obs, 5)
    trained.learn(local, segment)
    fresh = small_agent()
    fresh.load_state_dict(trained.state_dict())
    assert all(p.is_shared() for p in fresh.net.parameters())
    assert all(t.is_shared() for state in fresh.optimizer.state.values() for t in state.values())
    for p, q in zip(fresh.optimizer.param_groups[0]["params"], trained.optimizer.param_groups[0]["params"]):
        assert torch.equal(fresh.optimizer.state[p]["square_avg"], trained.optimizer.state[q]["square_avg"])
    probe = np.linspace(0, 5, 20, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(fresh.act(probe), trained.act(probe))
    torch.testing.assert_close(fresh.net.value(torch.as_tensor(probe)), trained.net.value(torch.as_tensor(probe)))


def test_unsupported_options_do_not_exist():
    """A3C has no observation or reward normalization and no Adam: those fields (and flags) do not exist."""
    fields = {f.name for f in dataclasses.fields(A3CConfig)}
    assert not fields & {"normalize_obs", "normalize_reward", "adam_eps"}
    with pytest.raises(UserError, match="--normalize-obs is a flag of reinforce, a2c, ppo and trpo, not of a3c"):
        train.main(["--agent", "a3c", "--env", "CartPole", "--normalize-obs"])
    with pytest.raises(UserError, match="--num-workers must be at least 1"):
        small_agent(num_workers=0)


# ---------------------------------------------------------------------------------------------- worker processes
def test_a3c_trains_checkpoints_and_evaluates(tmp_path, monkeypatch):
    """Two workers play 1000 CartPole steps through train.main: every claimed segment is one update, the shared
    optimizer's statistics are the workers', and the run evaluates from its checkpoint alone.

    D20: the evaluation schedule of A3C is documented, not step-exact (A3CSource): the loop evaluates when the count
    of reported steps crosses a multiple of the interval, and the workers do not wait for it, so the 500 evaluation
    lands anywhere in [500, 1000) or is merged into the final one. The test asserts that, and holds the main loop
    up after its first reports until the workers have finished the budget (the issue's forced failure, made
    certain by waiting on the workers rather than on a clock): the case the old assertion missed."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    stalled, next_reports = [], A3CSource.next

    def stalled_next(self):
        reports = next_reports(self)
        if reports and not stalled and self.steps < 500:
            stalled.append(self.steps)
            deadline = time.monotonic() + 60
            while any(p.exitcode is None for p in self.workers) and time.monotonic() < deadline:
                time.sleep(0.05)  # the workers play the rest of the budget while the main loop is held up
        return reports

    monkeypatch.setattr(A3CSource, "next", stalled_next)
    run = tmp_path / "run"
    train.main(["--agent", "a3c", "--env", "CartPole", "--num-workers", "2", "--total-steps", "1000",
                "--eval-interval", "500", "--eval-episodes", "2", "--no-progress", "--run-dir", str(run)])
    checkpoint = load_checkpoint(run)
    assert checkpoint["settings"]["agent"] == "a3c" and checkpoint["config"]["num_workers"] == 2
    assert checkpoint["loop"]["steps"] == 1000
    assert checkpoint["learner"]["counters"] == {"updates": 1000 // 5}
    assert checkpoint["source"]["episodes"] > 0
    state = checkpoint["learner"]["optimizers"]["optimizer"]["state"]
    assert all(s["square_avg"].abs().sum() > 0 and s["step"] > 0 for s in state.values())
    torch.manual_seed(1)  # the run's seed: the initial weights
    env = make_env("CartPole", 1)
    initial = A3C(A3CConfig(), env.single_observation_space, env.single_action_space).net.state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in checkpoint["learner"]["net"].items())
    evals = [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()]
    assert evals[-1] == 1000 and 1 <= len(evals) <= 2 and evals == sorted(set(evals))
    assert all(step % 5 == 0 and step >= 500 for step in evals)  # reported counts: whole segments, past the interval
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "charts/episodic_return",
                "eval/mean_return"):
        assert tag in tags, tag
    result = evaluate.main([str(run), "--episodes", "2", "--json", "--seed", "7"])
    assert result["agent"] == "a3c" and result["episodes"] == 2
    assert result["returns"] == returns_by_hand(run, 2, seed=7)  # the mode policy's games, played by hand


class Exploding(gym.Wrapper):
    """Fails on its 8th step: raises, or ends the process without a word."""

    def __init__(self, env, how: str):
        super().__init__(env)
        self.how, self.t = how, 0

    def step(self, action):
        self.t += 1
        if self.t == 8:
            if self.how == "raise":
                raise RuntimeError("boom at step 8")
            os._exit(3)
        return self.env.step(action)


def exploding_cartpole_raise(name, num_envs, seed=None, sticky_actions=False):
    """make_env for the failure test: worker 1 (seed 1) raises in its 8th step."""
    return _exploding(num_envs, seed, "raise")


def exploding_cartpole_exit(name, num_envs, seed=None, sticky_actions=False):
    """make_env for the failure test: worker 1 (seed 1) exits with status 3 in its 8th step."""
    return _exploding(num_envs, seed, "exit")


def _exploding(num_envs, seed, how):
    vec = gym.vector.SyncVectorEnv(
        [lambda: Exploding(gym.make("CartPole-v1"), how) if seed == 1 else gym.make("CartPole-v1")] * num_envs,
        autoreset_mode=AutoresetMode.SAME_STEP)
    return EpisodeSignals(vec, seed=seed)


@pytest.mark.parametrize("env_fn, message", [
    (exploding_cartpole_raise, "A3C worker 1 failed: RuntimeError: boom at step 8"),
    (exploding_cartpole_exit, "A3C worker 1 died (exit code 3)"),
])
def test_failing_worker_is_reported_and_every_worker_stops(env_fn, message):
    """A worker that raises (or vanishes) makes next() raise a UserError naming it, with the exception's text, and
    leaves no worker running."""
    env = make_env("CartPole", 1)
    agent = A3C(A3CConfig(), env.single_observation_space, env.single_action_space, total_steps=10**9)
    source = A3CSource(agent, "CartPole", total_steps=10**9, seed=0, env_fn=env_fn)
    deadline = time.monotonic() + 60
    with pytest.raises(UserError) as error:
        while time.monotonic() < deadline:
            source.next()
    assert message in str(error.value)
    assert len(source.workers) == 2 and all(not p.is_alive() and p.exitcode is not None for p in source.workers)
    source.close()  # the loop closes again in its finally: harmless


def test_state_dict_is_a_copy_of_the_shared_tensors():
    """Workers keep stepping the shared net and RMSprop statistics while the loop writes a checkpoint: a view of
    them changed mid-write and the file failed its CRC check (CI, test_ctrl_c_stops_workers_saves_and_resumes)."""
    env = make_env("CartPole-v1", seed=0)
    agent = A3C(A3CConfig(num_workers=1), env.single_observation_space, env.single_action_space)
    state = agent.state_dict()
    shared = {t.untyped_storage().data_ptr() for t in agent.net.state_dict().values()}
    shared |= {v.untyped_storage().data_ptr() for s in agent.optimizer.state.values() for v in s.values()}
    saved = [t for t in (*state["net"].values(), *(v for s in state["optimizers"]["optimizer"]["state"].values()
                                                    for v in s.values()))]
    assert saved and not {t.untyped_storage().data_ptr() for t in saved} & shared
    with torch.no_grad():
        next(agent.net.parameters()).add_(1.0)  # a worker's step after the copy...
    first = next(iter(state["net"]))
    assert not torch.equal(state["net"][first], agent.net.state_dict()[first])  # ...does not reach the checkpoint


def test_ctrl_c_stops_workers_saves_and_resumes(tmp_path):
    """Ctrl-C reaches the workers too (they ignore it); the loop saves, close() stops every worker cleanly, the
    checkpoint loads with weights_only, and --resume continues the counters."""
    run = tmp_path / "run"
    settings = AgentSettings(agent="a3c", env="CartPole", total_steps=100_000, eval_interval=300, eval_episodes=1,
                           progress=False)
    loop = AgentJob().build(settings, AGENTS["a3c"].preset("other"), run)
    workers = []

    def interrupt() -> dict[str, float]:
        workers.extend(loop.source.workers)
        for process in workers:
            os.kill(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends to the whole process group
        time.sleep(0.3)
        assert all(p.is_alive() for p in workers)
        raise KeyboardInterrupt

    loop.evaluate_fn = interrupt
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert len(workers) == 2 and all(p.exitcode == 0 for p in workers)  # stopped by the event, not killed
    saved = load_checkpoint(run)
    steps = saved["source"]["steps"]
    assert 300 <= steps < 100_000 and steps % 5 == 0 and saved["learner"]["counters"]["updates"] > 0
    assert evaluate.main([str(run), "--episodes", "1", "--json"])["steps"] == saved["loop"]["steps"]
    train.main(["--resume", str(run), "--total-steps", str(steps + 250), "--no-progress"])
    resumed = load_checkpoint(run)
    assert resumed["loop"]["steps"] == resumed["source"]["steps"] == steps + 250
    assert resumed["learner"]["counters"]["updates"] == saved["learner"]["counters"]["updates"] + 250 // 5
    assert resumed["source"]["episodes"] >= saved["source"]["episodes"]


CHILD = """
import sys, time
from rlkit.agents import A3C, A3CConfig
from rlkit.envs import make_env
from rlkit.sources.async_ import A3CSource
env = make_env("CartPole", 1)
agent = A3C(A3CConfig(), env.single_observation_space, env.single_action_space, total_steps=10**9)
source = A3CSource(agent, "CartPole", total_steps=10**9, seed=0)
while source.next() is None:  # the workers run and report
    pass
print(" ".join(str(p.pid) for p in source.workers), flush=True)
time.sleep(600)
"""


def running(pid: int) -> bool:
    """Alive and not a zombie (a dead worker of a still-running forkserver stays a zombie until reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads worker states from /proc")
def test_workers_end_when_the_main_process_is_killed(tmp_path):
    """D6: SIGKILL of the main process (no close(), no stop event) ends its A3C workers within seconds, instead of
    leaving them training for the rest of the budget."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, cwd=root,
                             env={**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"})
    try:
        pids = [int(pid) for pid in child.stdout.readline().split()]
        assert len(pids) == 2 and all(running(pid) for pid in pids)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 20
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in pids if running(pid)]
    for pid in alive:  # the old code's workers: end them so they do not outlive the test
        os.kill(pid, signal.SIGKILL)
    assert not alive
