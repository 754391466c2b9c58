"""Evaluation that always ends (D3, the step cap, Atari's evaluation epsilon), optimizer states checked against
their parameters on loading (D4), and evaluate.py's warning on non-finite weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import evaluate
import train
from rlkit.agents import AGENTS
from rlkit.data import make_tiny_dataset
from counter_envs import Counter
from rlkit.envs import EpisodeSignals, make_env, resolve_env
from rlkit.errors import UserError
from rlkit.jobs import agent as agent_job

ROOT = Path(__file__).resolve().parent.parent


class Scripted:
    """The little of an agent that evaluation uses: acts ``action`` (NaN for Box spaces) and counts its calls; raises
    once it has acted ``limit`` times, so an evaluation that would never end fails instead of hanging."""

    def __init__(self, action, limit: int = 10_000, config=None):
        self.action, self.limit, self.calls = action, limit, 0
        self.device, self.config = torch.device("cpu"), config or object()

    def seed_evaluation(self, seed: int) -> None:
        pass

    def act(self, obs, explore=False, deterministic=True):
        self.calls += 1
        if self.calls > self.limit:
            raise AssertionError(f"evaluation still running after {self.limit} steps")
        return np.repeat(np.asarray(self.action)[None], len(obs), axis=0)


@pytest.fixture
def deadline():
    """Fails the test (instead of hanging the suite) if it runs past 60 s: the defects here are endless loops."""
    def expired(signum, frame):
        raise TimeoutError("still running after 60 s: evaluation does not end")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def build(agent: str, env: str):
    spaces = make_env(env, 1, training=False)
    spec = AGENTS[agent]
    config = spec.preset(resolve_env(env).family)
    built = spec.agent_class(config, spaces.single_observation_space, spaces.single_action_space, device="cpu",
                             total_steps=1000, seed=0)
    spaces.close()
    return built


# ---------------------------------------------------------------------------------------------- D3, item 9
def test_a_nan_return_is_reported_and_evaluation_ends():
    """D3: a diverged Box agent (NaN actions, so NaN rewards) plays its games to Pendulum's 200-step limit; the NaN
    returns are reported, not taken for games still running (the old sentinel looped forever)."""
    agent = Scripted([np.nan], limit=2_000)
    returns = agent_job.evaluate_agent(agent, "Pendulum", episodes=3, seed=0)
    assert len(returns) == 3 and all(np.isnan(r) for r in returns)
    assert agent.calls == 200


def test_a_nan_td3_evaluates_through_train_and_evaluate(tmp_path, capsys, deadline):
    """D3 end to end: TD3 with NaN weights evaluates (NaN mean) instead of hanging."""
    run = tmp_path / "run"
    train.main(["--agent", "td3", "--env", "Pendulum", "--total-steps", "200", "--learning-starts", "100",
                "--eval-episodes", "0", "--no-progress", "--run-dir", str(run)])
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    for tensor in checkpoint["learner"]["actor"].values():
        tensor.fill_(float("nan"))
    torch.save(checkpoint, run / "checkpoint.pt")
    capsys.readouterr()
    result = evaluate.main([str(run), "--episodes", "2", "--json"])
    assert result["episodes"] == 2 and np.isnan(result["mean_return"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite" in err[0] and "actor." in err[0]  # the warning (next test)


def test_the_step_cap_follows_the_env_limit():
    """Item 9: the cap is the env's own limit (gymnasium's max_episode_steps; Atari's 108k frames = 27k agent steps,
    plus the no-op starts), so it never cuts a game the env itself would let run."""
    assert agent_job.evaluation_step_cap(resolve_env("CartPole")) == 501
    assert agent_job.evaluation_step_cap(resolve_env("Pendulum")) == 201
    assert 27_000 < agent_job.evaluation_step_cap(resolve_env("Breakout")) <= 27_100


def test_a_game_past_the_cap_counts_with_its_return_so_far(monkeypatch, capsys):
    """Item 9: whatever the env does, evaluation stops at the cap; the unfinished games count with the raw return
    they had, and one line on stderr says so."""
    monkeypatch.setattr(agent_job, "evaluation_step_cap", lambda resolved: 30, raising=False)
    agent = Scripted([0.0])
    returns = agent_job.evaluate_agent(agent, "Pendulum", episodes=2, seed=0)
    assert agent.calls == 30
    env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -np.ones(1, np.float32), np.ones(1, np.float32))
    for i, value in enumerate(returns):
        env.reset(seed=i)
        assert value == pytest.approx(sum(float(env.step(np.zeros(1, np.float32))[1]) for _ in range(30)))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 of 2 games" in err[0] and "30 steps" in err[0]


def test_a_game_past_the_default_cap_says_the_env_has_no_limit_and_how_to_give_one(monkeypatch, capsys):
    """CliffWalking declares no time limit: a policy that walks into the wall (up, from the start) plays to the
    default cap, paying -1 a step. The line said "the env's own limit", which it is not, and gave no way out."""
    monkeypatch.setattr(agent_job, "DEFAULT_EVAL_STEP_CAP", 20)
    assert agent_job.evaluate_agent(Scripted(0), "CliffWalking", episodes=1, seed=0) == [-20.0]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "after 20 steps (CliffWalking declares no time limit" in err[0], err
    assert "--env-kwargs max_episode_steps=N" in err[0] and "own limit)" not in err[0]


def test_atari_evaluation_has_an_epsilon_for_every_agent():
    """Item 9: on Atari evaluation takes a random action with probability 0.05 for agents without their own
    eval_epsilon (policy-gradient agents); the DQN family keeps its own; other envs get none."""
    assert agent_job.evaluation_epsilon(build("ppo", "CartPole"), resolve_env("CartPole")) == 0.0
    ppo = Scripted(0, config=AGENTS["ppo"].preset("atari"))
    assert agent_job.evaluation_epsilon(ppo, resolve_env("Breakout")) == 0.05
    dqn = Scripted(0, config=AGENTS["dqn"].preset("atari"))
    assert agent_job.evaluation_epsilon(dqn, resolve_env("Breakout")) == 0.0  # DQN's act() applies its own 0.05


def test_a_policy_that_never_fires_ends_its_breakout_game():
    """Item 9: a policy that always plays NOOP never serves again after losing a life; without the evaluation
    epsilon each game runs to the 27k-step cap. With it a game ends within a few thousand steps."""
    ppo = Scripted(0, limit=8_000, config=AGENTS["ppo"].preset("atari"))
    returns = agent_job.evaluate_agent(ppo, "Breakout", episodes=1, seed=0)
    assert len(returns) == 1 and ppo.calls < 8_000


def counters(lengths):
    """make_env's stand-in: sub-env i plays deterministic games of ``lengths[i]`` steps (rewards 1, 2, 3, ...)."""
    def make(name, n, **kwargs):
        vec = gym.vector.SyncVectorEnv([lambda length=length: Counter(length, False) for length in lengths[:n]],
                                       autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        return EpisodeSignals(vec)
    return make


def test_a_long_game_holds_up_only_its_own_sub_env(monkeypatch):
    """Sub-env 0 plays 12-step games, the others 2-step ones. Of 8 games on 4 sub-envs, the short ones go on in
    sub-envs 1-3 while the long one runs: 12 steps in all, one long game counted. (Batches of 4 that each wait for
    their slowest game took 24 steps and counted two long games.)"""
    monkeypatch.setattr(agent_job, "make_env", counters([12, 2, 2, 2]))
    agent = Scripted(0)
    returns = agent_job.evaluate_agent(agent, "CartPole", episodes=8, seed=0, max_envs=4)
    assert sorted(returns) == [3.0] * 7 + [78.0]  # 1 + 2 and 1 + ... + 12
    assert agent.calls == 12


def test_games_past_the_cap_free_no_sub_env_and_the_rest_start_afresh(monkeypatch, capsys):
    """Both sub-envs' games run past the cap of 5: they count with their return so far (15), and the third game
    is played on a new env, so evaluation ends with 3 returns after 10 steps and says so once."""
    monkeypatch.setattr(agent_job, "make_env", counters([100, 100]))
    monkeypatch.setattr(agent_job, "evaluation_step_cap", lambda resolved: 5)
    agent = Scripted(0)
    assert agent_job.evaluate_agent(agent, "CartPole", episodes=3, seed=0, max_envs=2) == [15.0] * 3
    assert agent.calls == 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 of 3 games" in err[0] and "5 steps" in err[0]


# ---------------------------------------------------------------------------------------------- D4
def small_dqn_run(tmp_path):
    run = tmp_path / "run"
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "400", "--learning-starts", "100",
                "--eval-episodes", "0", "--no-progress", "--run-dir", str(run)])
    return run


def shorten_exp_avg(run, shape=(1,)):
    """The issue's crafted file: Adam's exp_avg of every parameter replaced by a tensor of ``shape``; it still
    loads with weights_only=True."""
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    state = checkpoint["learner"]["optimizer"]["state"]
    assert state, "no optimizer state: the run took no update"
    for s in state.values():
        s["exp_avg"] = torch.zeros(shape)
    torch.save(checkpoint, run / "checkpoint.pt")


def test_wrong_shaped_optimizer_state_is_refused_before_any_step(tmp_path):
    """D4: --resume of a checkpoint whose Adam state is shorter than its parameters exits 2 with one line naming
    the state (the old code handed it to the fused kernel: a segfault, rc 139). Run in a child process, since the
    old behaviour kills the interpreter."""
    run = small_dqn_run(tmp_path)
    shorten_exp_avg(run)
    done = subprocess.run([sys.executable, "train.py", "--resume", str(run), "--total-steps", "800", "--no-progress"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and "optimizer state does not fit" in lines[0] and "exp_avg" in lines[0]


@pytest.mark.parametrize("shape", [(7,), (), (64, 4, 1)])
def test_load_learner_checks_every_optimizer_state_shape(tmp_path, shape):
    """D4: the one check every job's checkpoint load goes through (load_learner, as evaluate.py's rebuild uses)."""
    run = small_dqn_run(tmp_path)
    shorten_exp_avg(run, shape)
    with pytest.raises(UserError, match=r"optimizer state does not fit its parameters \(exp_avg of parameter 0"):
        evaluate.main([str(run), "--episodes", "1"])


def test_a_fitting_optimizer_state_passes_the_check(tmp_path):
    """The check accepts what train.py writes (resume continues)."""
    run = small_dqn_run(tmp_path)
    train.main(["--resume", str(run), "--total-steps", "500", "--no-progress"])


# ---------------------------------------------------------------------------------------------- evaluate.py's warning
@pytest.mark.parametrize("net", ["cnn", "numpy-mlp"])
def test_evaluate_warns_once_on_non_finite_classifier_weights(tmp_path, capsys, net):
    """evaluate.py on a classifier whose weights hold an inf prints one warning line on stderr naming the tensor;
    a healthy checkpoint prints none."""
    data = make_tiny_dataset("mnist", tmp_path / "mnist", train=64, test=32, seed=0)
    run = tmp_path / "run"
    train.main(["--task", "mnist", "--net", net, "--data-dir", str(data), "--max-steps", "4", "--batch-size", "16",
                "--no-progress", "--run-dir", str(run)])
    capsys.readouterr()
    evaluate.main([str(run), "--json"])
    assert "warning" not in capsys.readouterr().err
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    name = poison_first_weight(checkpoint["learner"])
    torch.save(checkpoint, run / "checkpoint.pt")
    evaluate.main([str(run), "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and name in err[0]


def poison_first_weight(state, prefix=""):
    """Set the first floating-point weight (not optimizer state) of a learner state to inf; returns its name."""
    for key, value in state.items():
        if "optim" in str(key):
            continue
        if isinstance(value, dict) and (found := poison_first_weight(value, f"{prefix}{key}.")):
            return found
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value.view(-1)[0] = float("inf")
            return f"{prefix}{key}"
    return None
