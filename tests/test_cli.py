"""train.py and evaluate.py end to end: smoke runs, resume, determinism, and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
import train
from rlkit.errors import UserError
from rlkit.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = ["--agent", "dqn", "--env", "CartPole", "--no-progress", "--learning-starts", "500",
            "--train-frequency", "64", "--gradient-steps", "16", "--eval-episodes", "2"]


def run_cli(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_cartpole_train_then_evaluate(tmp_path, capsys):
    """A short CartPole run leaves a loadable checkpoint, TensorBoard events, config and evals."""
    run = tmp_path / "run"
    train.main([*CARTPOLE, "--total-steps", "2000", "--run-dir", str(run), "--eval-interval", "1000"])
    assert (run / "checkpoint.pt").exists() and (run / "config.json").exists()
    assert list(run.glob("events.out.tfevents.*"))
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [1000, 2000]  # the final evaluation is not repeated
    assert load_checkpoint(run)["loop"]["steps"] == 2000
    result = evaluate.main([str(run), "--episodes", "3", "--json"])
    assert result["episodes"] == 3 and len(result["returns"]) == 3
    assert result["mean_return"] == pytest.approx(np.mean(result["returns"]))
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["returns"] == result["returns"]


def test_evaluate_best_loads_the_best_evaluation(tmp_path, capsys):
    """best.pt is the checkpoint of the evaluation with the highest mean return; evaluate.py --best reads it."""
    run = tmp_path / "run"
    train.main([*CARTPOLE, "--total-steps", "2000", "--run-dir", str(run), "--eval-interval", "500"])
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    best_eval = max(evals, key=lambda e: e["eval/mean_return"])  # the first of equal ones: a tie is no improvement
    best = load_checkpoint(run / "best.pt")
    assert best["loop"]["steps"] == best["best"]["step"] == best_eval["step"]
    assert best["best"]["value"] == best_eval["eval/mean_return"]
    assert evaluate.main([str(run), "--best", "--episodes", "1", "--json"])["steps"] == best_eval["step"]
    (run / "best.pt").unlink()
    done = run_cli("evaluate.py", str(run), "--best")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no best.pt in" in done.stderr


def test_tensorboard_scalars(tmp_path):
    """The documented TensorBoard tags are written."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train.main([*CARTPOLE, "--total-steps", "2000", "--run-dir", str(run), "--eval-episodes", "1"])
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("charts/episodic_return", "charts/episodic_length", "losses/td_loss", "losses/q_values",
                "charts/epsilon", "time/sps", "eval/mean_return"):
        assert tag in tags, tag


def test_resume_continues_counters(tmp_path):
    """--resume picks up the step counter, the agent's counters and replay (with --save-buffer)."""
    run = tmp_path / "run"
    train.main([*CARTPOLE, "--total-steps", "1500", "--run-dir", str(run), "--save-buffer"])
    first = load_checkpoint(run)
    assert (run / "replay.npz").exists()
    train.main(["--resume", str(run), "--total-steps", "3000", "--no-progress"])
    second = load_checkpoint(run)
    assert second["loop"]["steps"] == 3000
    assert second["learner"]["counters"]["updates"] > first["learner"]["counters"]["updates"]
    assert second["source"]["episodes"] > first["source"]["episodes"]
    assert second["settings"]["seed"] == first["settings"]["seed"]


def test_same_seed_same_run(tmp_path):
    """Two runs with one seed give identical returns and identical weights."""
    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        train.main([*CARTPOLE, "--total-steps", "1500", "--run-dir", str(run), "--seed", "7"])
        runs.append(load_checkpoint(run))
    assert runs[0]["source"]["recent_returns"] == runs[1]["source"]["recent_returns"]
    for key, value in runs[0]["learner"]["q_net"].items():
        assert torch.equal(value, runs[1]["learner"]["q_net"][key]), key


def test_breakout_smoke(tmp_path):
    """A few hundred Breakout steps with the Atari preset (shrunk replay), then an evaluation of whole games."""
    run = tmp_path / "run"
    train.main(["--agent", "double-dqn", "--env", "Breakout", "--total-steps", "300", "--run-dir", str(run),
                "--buffer-size", "2000", "--learning-starts", "100", "--eval-episodes", "0", "--no-progress"])
    checkpoint = load_checkpoint(run)
    assert checkpoint["env_id"] == "ALE/Breakout-v5"
    assert checkpoint["config"]["learning_rate"] == 1e-4 and checkpoint["config"]["double"]
    assert checkpoint["learner"]["counters"]["updates"] == (300 - 100) // 4
    result = evaluate.main([str(run), "--episodes", "1", "--json", "--seed", "7"])
    # eval_epsilon draws random actions: the evaluation's own seeded numbers, so one seed is one game
    assert result["episodes"] == 1 and evaluate.main([str(run), "--episodes", "1", "--json", "--seed", "7"]) == result


def _record_one_game(tmp_path, name: str) -> tuple[dict, Path]:
    """A short CartPole run, and evaluate.py's result with one game recorded to ``tmp_path / name``."""
    run = tmp_path / "run"
    train.main([*CARTPOLE, "--total-steps", "600", "--run-dir", str(run), "--eval-episodes", "0"])
    video = tmp_path / name
    return evaluate.main([str(run), "--episodes", "1", "--video", str(video)]), video


def test_evaluate_video(tmp_path):
    """--video writes a playable MP4 of one game."""
    import av

    result, video = _record_one_game(tmp_path, "episode.mp4")
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    # CartPole pays 1 per step; the video holds the first frame and one per step, the last included (taken inside
    # the vector env, before its autoreset starts the next game).
    assert frames == int(result["video_return"]) + 1


def test_evaluate_video_as_a_gif(tmp_path):
    """--video game.gif was a traceback from FFmpeg ('gif' format does not support 'libx264'), after the whole
    evaluation had been played; it is now an animated GIF with the MP4's frames."""
    from PIL import Image, ImageSequence

    result, video = _record_one_game(tmp_path, "game.gif")
    with Image.open(video) as gif:
        # CartPole renders at 50 fps: 20 ms per frame; Pillow shows a repeated frame once, for longer
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
        assert gif.size == (600, 400) and sum(durations) == 20 * (int(result["video_return"]) + 1)


@pytest.mark.parametrize("name, message", [
    ("game.avi", "--video {tmp}/game.avi: name an .mp4 or .gif file (e.g. game.mp4)"),
    ("", "--video {tmp} is a folder: name a file in it"),
    ("run/checkpoint.pt/game.mp4", "--video {tmp}/run/checkpoint.pt/game.mp4 is under {tmp}/run/checkpoint.pt, "
                                   "which is a file"),
])
def test_a_video_name_that_cannot_be_written_is_refused_before_any_game(tmp_path, monkeypatch, name, message):
    import rlkit.jobs.agent

    run = tmp_path / "run"
    train.main([*CARTPOLE, "--total-steps", "100", "--learning-starts", "50", "--run-dir", str(run),
                "--eval-episodes", "0"])
    monkeypatch.setattr(rlkit.jobs.agent, "evaluate_agent", lambda *a, **k: pytest.fail("played before refusing"))
    with pytest.raises(UserError, match=re.escape(message.format(tmp=tmp_path))):
        evaluate.main([str(run), "--episodes", "1", "--video", str(tmp_path / name)])


@pytest.mark.parametrize("args, message", [
    (["train.py", "--agent", "dqm", "--env", "CartPole"], "unknown agent 'dqm': did you mean dqn"),
    (["train.py", "--agent", "dqn", "--env", "CartPol"], "unknown environment 'CartPol': did you mean CartPole"),
    (["train.py", "--agent", "dqn", "--env", "Pendulum"], "dqn needs a Discrete action space"),
    # Agents that share a class are named as the user named them (these said DDPG, DQN and TabularQ).
    (["train.py", "--agent", "td3", "--env", "CartPole"], "td3 needs a Box action space"),
    (["train.py", "--agent", "rainbow", "--env", "Pendulum"], "rainbow needs a Discrete action space"),
    (["train.py", "--agent", "sarsa", "--env", "CartPole"], "sarsa indexes a table by state"),
    (["evaluate.py", "/nonexistent/run"], "no checkpoint file"),
    (["evaluate.py", "/nonexistent/run", "--seed", "-3"], "--seed must be at least 0, got -3"),  # was numpy's traceback
    (["train.py", "--agent", "ppo", "--env", "CartPole", "--total-steps", "2.5"],
     "argument --total-steps: '2.5' is not a whole number (write e.g. 100000 or 1e5)"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--batch-size", "1e400"], "'1e400' is not a whole number"),
    (["train.py", "--agent", "ppo", "--env", "CartPole", "--save-buffer", "--total-steps", "256"],
     "--save-buffer saves the replay of the DQN family, DDPG, TD3 and SAC; ppo keeps none: drop --save-buffer"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--actor-chunk-steps", "10", "--total-steps", "256"],
     "--actor-chunk-steps tunes the actors that feed one learner under torchrun"),
    (["train.py", "--env", "CartPole"], "--env CartPole needs an agent to train on it: add --agent NAME"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "nosuch:X"],
     "--env-wrapper nosuch:X: cannot import nosuch"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "sys:exit"],
     "--env-wrapper sys:exit is a builtin_function_or_method, not a gym.Wrapper class or a Python function"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "Flatten"],
     "--env-wrapper 'Flatten' is not MODULE:NAME"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "gymnasium.wrappers:TimeLimit"],
     "--env-wrapper gymnasium.wrappers:TimeLimit cannot wrap an env (TimeLimit.__init__() missing 1 required "
     "positional argument: 'max_episode_steps'): it takes max_episode_steps: give them after its name, e.g. "
     "--env-wrapper gymnasium.wrappers:TimeLimit max_episode_steps=VALUE"),
    # A wrapper's arguments were not accepted at all; now each mistake in them is one line.
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "gymnasium.wrappers:TimeLimit", "steps=5"],
     "--env-wrapper gymnasium.wrappers:TimeLimit steps=5 cannot wrap an env (TimeLimit.__init__() got an "
     "unexpected keyword argument 'steps'): it takes max_episode_steps"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "gymnasium.wrappers:FlattenObservation",
      "x=1"], "it takes no arguments after the env: drop them"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "gymnasium.wrappers:TimeLimit",
      "max_episode_steps=0"], "--env-wrapper gymnasium.wrappers:TimeLimit max_episode_steps=0 was refused "
                              "(ValueError: Expect the `max_episode_steps` to be positive, actually: 0)"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "gymnasium.wrappers:TimeLimit",
      "max_episode_steps=2.5"], "max_episode_steps=2.5 was refused (TypeError: Expect the `max_episode_steps` to "
                                "be an integer"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--env-wrapper", "gymnasium.wrappers:TimeLimit",
      "max_episode_steps"], "--env-wrapper gymnasium.wrappers:TimeLimit 'max_episode_steps' is not KEY=VALUE: "
                            "write e.g. --env-wrapper gymnasium.wrappers:TimeLimit key=value"),
    # Another agent's config flag was 'unrecognized arguments'.
    (["train.py", "--agent", "trpo", "--env", "CartPole", "--recurrent", "lstm"],
     "--recurrent is a flag of a2c and ppo, not of trpo: drop it"),
    (["train.py", "--agent", "sac", "--env", "Pendulum", "--n-step=3"],
     "--n-step is a flag of dqn, double-dqn, dueling-dqn, bootstrapped-dqn, c51 and rainbow, not of sac"),
    (["train.py", "--agent", "dqn", "--env", "CartPole", "--bogus", "1"], "unrecognized arguments: --bogus 1"),
    # ALE's own RuntimeError, as a traceback: the game's modes and difficulties are listed instead.
    (["train.py", "--agent", "dqn", "--env", "Breakout", "--env-kwargs", "mode=1"],
     "--env-kwargs mode=1: ALE/Breakout-v5 has no such mode; its modes are 0, 4, 8, 12,"),
    (["train.py", "--agent", "dqn", "--env", "Breakout", "--env-kwargs", "difficulty=3"],
     "no such difficulty; its difficulties are 0, 1"),
    # Self-play runs in one process: these were accepted and did nothing.
    (["train.py", "--agent", "alphazero", "--env", "tic_tac_toe", "--distributed", "ddp"],
     "--distributed sets how processes under torchrun share the work, and alphazero self-play runs in one process"),
    (["train.py", "--agent", "alphazero", "--env", "tic_tac_toe", "--allreduce", "ring"], "drop --allreduce"),
    # An update cut the rollout into minibatches of one sample, as many as it had, not the 1000 asked for.
    (["train.py", "--agent", "ppo", "--env", "CartPole", "--num-minibatches", "1000"],
     "--num-minibatches 1000 is more than the 256 samples of a rollout (--num-steps 32 x --num-envs 8)"),
    (["train.py", "--agent", "ppo", "--env", "CartPole", "--recurrent", "lstm", "--num-envs", "3",
      "--sequence-length", "32", "--num-minibatches", "4"], "more than the 3 sequences of 32 steps of a rollout"),
    (["train.py", "--agent", "sac", "--env", "Pendulum", "--actor-sync-updates", "5", "--total-steps", "256"],
     "this run of sac has none: drop it"),
])
def test_errors_are_one_line(args, message):
    """Bad input: exit status 2, one line on stderr naming the problem, no traceback."""
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_refused_before_it_wrote_anything_leaves_no_directory(tmp_path, capsys):
    """A refused flag (here --save-buffer on PPO) used to leave an empty run directory behind, one per try."""
    run = tmp_path / "run"
    with pytest.raises(UserError, match="drop --save-buffer"):
        train.main(["--agent", "ppo", "--env", "CartPole", "--save-buffer", "--run-dir", str(run)])
    assert not run.exists()
    mine = tmp_path / "mine"
    mine.mkdir()  # a directory the user made stays
    with pytest.raises(UserError, match="drop --save-buffer"):
        train.main(["--agent", "ppo", "--env", "CartPole", "--save-buffer", "--run-dir", str(mine)])
    assert mine.is_dir()


def test_truncated_and_foreign_checkpoints(tmp_path):
    """A truncated file and a file that is not an rlkit checkpoint are refused in one line."""
    run = tmp_path / "run"
    train.main([*CARTPOLE, "--total-steps", "600", "--run-dir", str(run), "--eval-episodes", "0"])
    data = (run / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    for path, message in ((truncated, "truncated or corrupt"), (foreign, "not an rlkit checkpoint")):
        result = run_cli("evaluate.py", str(path))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_existing_run_dir_is_not_overwritten(tmp_path):
    """Starting a new run in a directory that holds one asks for --resume instead of overwriting."""
    run = tmp_path / "run"
    train.main([*CARTPOLE, "--total-steps", "600", "--run-dir", str(run), "--eval-episodes", "0"])
    result = run_cli("train.py", *CARTPOLE, "--total-steps", "600", "--run-dir", str(run))
    assert result.returncode == 2 and "--resume" in result.stderr


@pytest.mark.parametrize("written", ["100000", "1e5", "1_00_000", "1.0e5"])
def test_counts_are_read_as_sb3_and_rl_zoo_write_them(capsys, written):
    """Step budgets in scientific notation (SB3's ``learn(1e5)``, rl-zoo's ``n_timesteps: 1e5``) are whole numbers,
    for run flags and config fields alike."""
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", written, "--batch-size", written,
                "--print-config"])
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["settings"]["total_steps"] == 100_000 and resolved["config"]["batch_size"] == 100_000


def test_help_lists_config_fields():
    """--help with an agent shows every config field with its docstring."""
    result = run_cli("train.py", "--agent", "dqn", "--help")
    assert result.returncode == 0
    assert "--learning-rate" in result.stdout and "Adam learning rate" in result.stdout
    assert "--double, --no-double" in result.stdout


@pytest.mark.parametrize("agent, extra", [
    ("double-dqn", ["--num-envs", "4"]),
    ("dueling-dqn", ["--prioritized", "--n-step", "3"]),
    ("bootstrapped-dqn", ["--num-heads", "4", "--bootstrap-prob", "0.5"]),
])
def test_every_dqn_variant_and_option_trains_and_evaluates(tmp_path, agent, extra):
    """Each agent name and the replay options run through the CLI and the result evaluates."""
    run = tmp_path / "run"
    args = [*CARTPOLE, "--total-steps", "1200", "--run-dir", str(run), "--eval-episodes", "0", *extra]
    args[args.index("dqn")] = agent
    train.main(args)
    checkpoint = load_checkpoint(run)
    assert checkpoint["settings"]["agent"] == agent and checkpoint["learner"]["counters"]["updates"] > 0
    assert evaluate.main([str(run), "--episodes", "2", "--json"])["episodes"] == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    result = run_cli("train.py", *CARTPOLE, "--device", "cuda", "--total-steps", "100")
    assert result.returncode == 2 and "no CUDA GPU" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("agent", ["ppo", "a2c"])
def test_policy_gradient_on_atari(tmp_path, agent):
    """Actor-critic agents build the shared Nature-CNN network on Breakout, train a rollout and evaluate."""
    run = tmp_path / "run"
    train.main(["--agent", agent, "--env", "Breakout", "--total-steps", "64", "--num-envs", "4", "--num-steps", "16",
                "--run-dir", str(run), "--eval-episodes", "0", "--no-progress"])
    checkpoint = load_checkpoint(run)
    assert checkpoint["learner"]["counters"]["updates"] == 1
    assert any(key.startswith("actor_torso.convs") for key in checkpoint["learner"]["net"])
    # Sampled actions: an untrained argmax policy may never press FIRE and stall Breakout until its time limit.
    assert evaluate.main([str(run), "--episodes", "1", "--json", "--stochastic"])["episodes"] == 1


def test_the_evaluation_line_counts_one_episode_in_the_singular(tmp_path, capsys):
    run = tmp_path / "run"
    train.main(["--agent", "q-learning", "--env", "FrozenLake", "--total-steps", "50", "--eval-episodes", "0",
                "--no-progress", "--run-dir", str(run)])
    capsys.readouterr()
    evaluate.main([str(run), "--episodes", "1"])
    assert capsys.readouterr().out.rstrip().endswith(" over 1 episode")  # it said "over 1 episodes"
    evaluate.main([str(run), "--episodes", "2"])
    assert capsys.readouterr().out.rstrip().endswith(" over 2 episodes")


def test_close_names_finds_a_word_of_a_longer_name():
    """``--net mlp`` suggested nothing: difflib's ratio of 'mlp' to 'numpy-mlp' is below its cutoff."""
    from rlkit.errors import close_names
    nets = ["numpy-mlp", "numpy-cnn", "cnn", "resnet", "resnet18"]
    assert close_names("mlp", nets) == ["numpy-mlp"]
    assert close_names("resnt", nets) == ["resnet", "resnet18"]  # difflib's first, by ratio
    assert close_names("cnn", nets) == ["cnn", "numpy-cnn"]
    assert close_names("gan", nets) == []
    assert close_names("mlp", ["numpy-mlp", "torchy-mlp", "jaxxxx-mlp"], n=2) == ["numpy-mlp", "torchy-mlp"]


@pytest.mark.parametrize("agent, env", [("dqn", "CartPole"), ("sac", "Pendulum")])
def test_a_run_of_one_step_with_the_presets_warm_up_runs(tmp_path, agent, env):
    """The budget-aware warm-up was 1 step of a 1-step run, and the run was refused for a --learning-starts the
    user never set."""
    train.main(["--agent", agent, "--env", env, "--total-steps", "1", "--eval-episodes", "1",
                "--no-progress", "--run-dir", str(tmp_path / "run")])
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["loop"]["steps"] == 1


def test_evaluate_names_the_kind_a_flag_belongs_to_and_takes_threads(tmp_path, capsys):
    """``--episodes`` on a classifier run was 'unrecognized arguments'; evaluate.py had no --threads (a classifier's
    evaluation took every core, whatever ran beside it)."""
    from rlkit.data import make_tiny_dataset

    data = make_tiny_dataset("mnist", tmp_path / "mnist", train=32, test=16, seed=0)
    run = tmp_path / "run"
    train.main(["--task", "mnist", "--net", "numpy-mlp", "--data-dir", str(data), "--max-steps", "2",
                "--batch-size", "16", "--run-dir", str(run), "--no-progress"])
    with pytest.raises(UserError, match="^--episodes is a flag of agent runs, and this is a classifier run: see "):
        evaluate.main([str(run), "--episodes", "3"])
    before = torch.get_num_threads()
    try:
        assert evaluate.main([str(run), "--threads", "1", "--json"])["accuracy"] >= 0.0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UserError, match="--threads must be at least 0"):
        evaluate.main([str(run), "--threads", "-1"])


def test_visualize_names_an_agent_run_as_one(tmp_path):
    """It said "holds a agent run of net None"."""
    from rlkit.cli import visualize

    run = tmp_path / "run"
    train.main(["--agent", "q-learning", "--env", "FrozenLake", "--total-steps", "50", "--eval-episodes", "0",
                "--no-progress", "--run-dir", str(run)])
    with pytest.raises(UserError, match=f"^{run} holds an agent run; the visualizations read the GAN's"):
        visualize.load_run(run)
