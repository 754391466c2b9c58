"""Your own envs: ``module:EnvId`` through train.py and evaluate.py, ``--env-kwargs`` reaching the env (and saved with
the run), ``make_env(wrappers=...)``, the one-line refusal of Dict observations, ``--capture-video``'s MP4s and
TensorBoard GIFs, and the Box2D envs.

The env is ``tests/custom_env_module.py``'s ``Tiny-v0``: games of exactly ``length`` steps paying ``action + bonus``
per step, each instance recording the kwargs it was built with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import FlattenObservation, TransformReward

import custom_env_module
import evaluate
import rlkit
import train
from rlkit.agents import AGENTS, get_agent_spec
from rlkit.checkpoint import load_checkpoint
from rlkit.envs import make_env, parse_env_kwargs, resolve_env
from rlkit.errors import UserError, run_command
from rlkit.jobs import agent as agent_job
from rlkit.jobs import load_run
from rlkit.video import count_frames

ROOT = Path(__file__).resolve().parents[1]
TINY = "custom_env_module:Tiny-v0"
KWARGS = ["length=7", "bonus=0.5", "label=moon"]
BUILT_WITH = {"length": 7, "bonus": 0.5, "label": "moon"}
TINY_RUN = ["--agent", "ppo", "--env", TINY, "--total-steps", "128", "--num-envs", "2", "--eval-episodes", "2",
            "--eval-interval", "64", "--no-progress", "--seed", "3"]
"""Two PPO rollouts of 32 steps x 2 envs; an evaluation after each."""


def one_line_error(capsys, main, argv: list[str]) -> str:
    """Run a command line's ``main`` as its script does; assert exit status 2 and return its one stderr line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda: main(argv))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def video_run(tmp_path_factory) -> Path:
    """A run of Tiny-v0 with env kwargs and --capture-video; CREATED holds what its envs were built with."""
    run = tmp_path_factory.mktemp("custom") / "run"
    custom_env_module.CREATED.clear()
    train.main([*TINY_RUN, "--env-kwargs", *KWARGS, "--capture-video", "--run-dir", str(run)])
    return run


# ---------------------------------------------------------------------------------------------- module:EnvId
def test_resolve_module_env_imports_the_module():
    """module:EnvId imports the module and resolves the id it registered (short names work after the colon)."""
    assert resolve_env(TINY).env_id == "Tiny-v0"
    assert resolve_env("custom_env_module:Tiny").env_id == "Tiny-v0"
    assert resolve_env(TINY).family == "other"
    with pytest.raises(UserError, match="unknown environment 'Nope-v0' after importing 'custom_env_module'"):
        resolve_env("custom_env_module:Nope-v0")


def test_module_env_is_found_in_the_current_folder(tmp_path, monkeypatch):
    """A module beside the user (the current folder) is imported even where the command does not put that folder
    on the path (the ``rlkit`` console script)."""
    (tmp_path / "cwd_envs.py").write_text("import gymnasium as gym\n"
                                          "gym.register(id='CwdTiny-v0', entry_point='custom_env_module:Tiny')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_envs", raising=False)
    try:
        env = make_env("cwd_envs:CwdTiny-v0", 1)
        assert env.resolved.env_id == "CwdTiny-v0" and sys.path[-1] == str(tmp_path)
        env.close()
    finally:
        gym.registry.pop("CwdTiny-v0", None)


def test_module_env_trains_with_its_kwargs_and_saves_them(video_run):
    """Every env the run built (spaces, memory check, training, evaluation, videos) got --env-kwargs, parsed as JSON
    with strings as the fallback, and the checkpoint and config.json hold them."""
    made = custom_env_module.CREATED
    assert len(made) >= 4 and all(kwargs == BUILT_WITH for kwargs in made)
    checkpoint = load_checkpoint(video_run / "checkpoint.pt")
    assert checkpoint["settings"]["env"] == TINY and checkpoint["settings"]["env_kwargs"] == BUILT_WITH
    assert json.loads((video_run / "config.json").read_text())["settings"]["env_kwargs"] == BUILT_WITH
    # Each game is 7 steps paying action + 0.5: a whole number plus 3.5, between 3.5 and 10.5.
    for line in (video_run / "eval.jsonl").read_text().splitlines():
        mean = json.loads(line)["eval/mean_return"]
        assert 3.5 <= mean <= 10.5 and (2 * mean) % 1 == 0  # 2 games: a mean of whole halves


def test_evaluate_rebuilds_the_env_with_the_saved_kwargs(video_run):
    """evaluate.py, in this process and in a fresh one (which must import the module itself), plays the saved
    env: 7-step games paying action + 0.5."""
    custom_env_module.CREATED.clear()
    result = evaluate.main([str(video_run), "--episodes", "3", "--json"])
    assert custom_env_module.CREATED and all(kwargs == BUILT_WITH for kwargs in custom_env_module.CREATED)
    assert all(3.5 <= r <= 10.5 and (r - 3.5) % 1 == 0 for r in result["returns"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    fresh = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), str(video_run), "--episodes", "3", "--json"],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout.strip().splitlines()[-1])["returns"] == result["returns"]


def test_evaluation_plays_to_a_time_limit_given_as_an_env_kwarg(video_run, capsys):
    """max_episode_steps=80 (gym.make's own kwarg) lifts Tiny-v0's registered 50-step limit: evaluation plays the
    80 steps (each paying action + 1) instead of stopping the game at its cap of 51."""
    job, checkpoint = load_run(video_run)
    agent, _ = job.rebuild(checkpoint)
    capsys.readouterr()
    returns = agent_job.evaluate_agent(agent, TINY, 2, seed=0, env_kwargs={"length": 100, "bonus": 1.0,
                                                                           "max_episode_steps": 80})
    assert all(80 <= r <= 160 and r % 1 == 0 for r in returns)
    assert "still running" not in capsys.readouterr().err


def test_resume_keeps_the_env_kwargs(video_run, capsys):
    """A resumed run refuses other --env-kwargs in one line and accepts the same ones."""
    line = one_line_error(capsys, train.main, ["--resume", str(video_run), "--env-kwargs", "length=8"])
    assert line.startswith("error: --env-kwargs") and "differs from the resumed run's" in line
    train.main(["--resume", str(video_run), "--env-kwargs", *KWARGS, "--print-config"])
    assert json.loads(capsys.readouterr().out)["settings"]["env_kwargs"] == BUILT_WITH


@pytest.mark.parametrize("argv, message", [
    (["--env-kwargs", "lenght=7"], "--env-kwargs lenght=7: Tiny-v0 has no keyword argument 'lenght' (it takes "
                                   "length, bonus, label): drop or rename it"),
    (["--env-kwargs", "length"], "--env-kwargs 'length' is not KEY=VALUE"),
    (["--env-kwargs", "render_mode=human"], "--env-kwargs render_mode=... is set by rlkit"),
])
def test_bad_env_kwargs_are_one_line(capsys, tmp_path, argv, message):
    """A kwarg the env's constructor does not take, a malformed pair, a reserved name: exit 2, one line."""
    line = one_line_error(capsys, train.main, [*TINY_RUN, "--run-dir", str(tmp_path / "run"), *argv])
    assert message in line


def test_missing_module_is_one_line(capsys, tmp_path):
    """A module that cannot be imported: exit 2, one line naming it and the fix."""
    line = one_line_error(capsys, train.main, ["--agent", "ppo", "--env", "no_such_envs:Foo-v0",
                                               "--run-dir", str(tmp_path / "run")])
    assert "no module named 'no_such_envs'" in line and "PYTHONPATH" in line


def test_parse_env_kwargs_reads_json_values_else_strings():
    """Values are JSON (numbers, booleans, null, lists, objects) and plain strings otherwise."""
    assert parse_env_kwargs(["gravity=-5.0", "continuous=true", "map_name=8x8", "sizes=[1, 2]", "seed=null",
                             "opts={\"a\": 1}", "name="]) == {
        "gravity": -5.0, "continuous": True, "map_name": "8x8", "sizes": [1, 2], "seed": None, "opts": {"a": 1},
        "name": ""}
    with pytest.raises(UserError, match="gives gravity twice"):
        parse_env_kwargs(["gravity=1", "gravity=2"])
    # Python's spellings, as gymnasium's docs write them: "False" was a non-empty string, so true
    assert parse_env_kwargs(["is_slippery=False", "b=True", "c=None", 'd="False"']) == {
        "is_slippery": False, "b": True, "c": None, "d": "False"}


def test_frozen_lake_without_slipping_is_solved_when_asked_the_python_way(tmp_path, capsys):
    """--env-kwargs is_slippery=False made a slippery lake: a greedy table evaluated below 1 on a lake where the
    shortest path always arrives."""
    run = tmp_path / "run"
    train.main(["--agent", "q-learning", "--env", "FrozenLake", "--env-kwargs", "is_slippery=False",
                "--total-steps", "5000", "--eval-episodes", "5", "--no-progress", "--run-dir", str(run)])
    capsys.readouterr()
    assert evaluate.main([str(run), "--episodes", "10", "--json"])["returns"] == [1.0] * 10
    with pytest.raises(UserError, match=r"FrozenLake-v1 refused --env-kwargs map_name=\"5x5\" \(KeyError"):
        make_env("FrozenLake", 1, env_kwargs={"map_name": "5x5"})  # was a KeyError traceback


def test_old_checkpoints_load_without_env_kwargs():
    """A checkpoint written before env_kwargs and capture_video existed loads with neither."""
    job, checkpoint = load_run(ROOT / "tests" / "data" / "v1" / "dqn.pt")
    assert "env_kwargs" not in checkpoint["settings"]
    settings = job.settings_from(checkpoint)
    assert settings.env_kwargs == {} and settings.capture_video is False


# ---------------------------------------------------------------------------------------------- spaces, wrappers
def test_dict_observations_are_refused_naming_the_wrapper(capsys, tmp_path):
    """make_env, the agents and train.py refuse Dict observations in one line naming FlattenObservation."""
    with pytest.raises(UserError, match=r"TinyDict-v0 has Dict observations .*gymnasium\.wrappers\.FlattenObservation"
                                        r" \(giving a Box of shape \(4,\)\): in Python make_env\(\.\.\., wrappers="):
        make_env("custom_env_module:TinyDict-v0")
    dict_space = gym.make("TinyDict-v0").observation_space
    with pytest.raises(UserError, match="FlattenObservation"):
        get_agent_spec("ppo").agent_class.check_spaces(dict_space, gym.spaces.Discrete(2))
    argv = [*TINY_RUN, "--env", "custom_env_module:TinyDict-v0", "--run-dir", str(tmp_path / "run")]
    assert "FlattenObservation" in one_line_error(capsys, train.main, argv)


def test_discrete_observations_come_one_hot():
    """Toy text's Discrete states and Blackjack's Tuple of Discretes reach the agents as float32 one-hot codes,
    the final observation of a finished game included (the old code refused them)."""
    env = make_env("FrozenLake-v1", 2, seed=0, env_kwargs={"is_slippery": False})
    assert env.single_observation_space == gym.spaces.Box(0.0, 1.0, (16,), np.float32)
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs.tolist() == [[1.0] + [0.0] * 15] * 2  # both start in state 0
    obs, *_ = env.step(np.array([2, 1]))  # right -> state 1, down -> state 4
    assert np.flatnonzero(obs[0]).tolist() == [1] and np.flatnonzero(obs[1]).tolist() == [4]
    env.close()
    blackjack = make_env("Blackjack-v1", 1, seed=0)
    assert blackjack.single_observation_space.shape == (32 + 11 + 2,)
    obs, _ = blackjack.reset()
    assert obs.sum() == 3.0  # one code per part: the player's sum, the dealer's card, the usable ace
    blackjack.close()


def test_a_toy_text_env_trains_and_evaluates(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train.main(["--agent", "dqn", "--env", "FrozenLake-v1", "--total-steps", "200", "--learning-starts", "50",
                "--run-dir", str(run_dir), "--no-progress", "--eval-episodes", "2"])
    evaluate.main([str(run_dir), "--episodes", "2"])
    assert "dqn on FrozenLake-v1 after 200 steps" in capsys.readouterr().out


def test_wrappers_apply_to_each_sub_env():
    """make_env(wrappers=[...]) wraps every sub-env, a class or a function env -> env, in order: the Dict env
    flattened (Discrete 'phase' one-hot, then 't') and rewards scaled by 10."""
    env = make_env("custom_env_module:TinyDict-v0", 2, seed=0,
                   wrappers=[FlattenObservation, lambda e: TransformReward(e, lambda r: 10 * r)])
    assert env.single_observation_space.shape == (4,)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [[1, 0, 0, 0], [1, 0, 0, 0]])
    obs, rewards, _, _, _ = env.step(np.array([1, 0]))
    np.testing.assert_array_equal(obs, [[0, 1, 0, 1], [0, 1, 0, 1]])
    np.testing.assert_array_equal(rewards, [10.0, 0.0])
    agent = get_agent_spec("ppo").agent_class  # and an agent takes the flattened space
    agent.check_spaces(env.single_observation_space, env.single_action_space)
    env.close()


# ---------------------------------------------------------------------------------------------- --capture-video
def test_capture_video_writes_one_playable_mp4_per_evaluation(video_run):
    """One MP4 per evaluation (steps 64 and 128); each decodes (PyAV) to the recorded 7-step game's 8 frames: the
    first observation's and one per step, the last included."""
    videos = sorted((video_run / "videos").iterdir())
    assert [v.name for v in videos] == ["step_128.mp4", "step_64.mp4"]
    assert [count_frames(v) for v in videos] == [BUILT_WITH["length"] + 1] * 2


def test_capture_video_shows_a_gif_in_tensorboard(video_run):
    """TensorBoard gets each evaluation's game as an animated GIF (an image summary) at the evaluation's step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(video_run), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("videos/evaluation")
    assert [image.step for image in images] == [64, 128]
    assert all(image.encoded_image_string.startswith(b"GIF89a") and (image.width, image.height) == (18, 12)
               for image in images)


def test_capture_video_does_not_change_training(video_run, tmp_path):
    """The same run without --capture-video learns exactly the same weights and evaluates the same."""
    plain = tmp_path / "plain"
    train.main([*TINY_RUN, "--env-kwargs", *KWARGS, "--run-dir", str(plain)])
    with_video, without = (tensors(load_checkpoint(run / "checkpoint.pt")["learner"]) for run in (video_run, plain))
    assert with_video.keys() == without.keys() and len(with_video) > 4
    for name, tensor in with_video.items():
        assert torch.equal(tensor, without[name]), name
    def evaluations(run):  # all but the clock
        return [{**json.loads(line), "wall_time": 0, "eval_seconds": 0} for line in (run / "eval.jsonl").read_text().splitlines()]

    assert evaluations(video_run) == evaluations(plain)
    assert not (plain / "videos").exists()


def tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested state dict, by its path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    return {path: t for key, value in items for path, t in tensors(value, f"{prefix}/{key}").items()}


def test_capture_video_needs_evaluations(capsys, tmp_path):
    """--capture-video without evaluations would record nothing: refused in one line."""
    line = one_line_error(capsys, train.main, [*TINY_RUN, "--capture-video", "--eval-episodes", "0",
                                               "--run-dir", str(tmp_path / "run")])
    assert "--capture-video records a game at each evaluation" in line


# ---------------------------------------------------------------------------------------------- Box2D
def test_an_env_without_render_mode_is_made_and_refused_for_video(capsys, tmp_path):
    """A user's env whose constructor takes no ``render_mode`` (TinyPixels-v0) is made, trains and evaluates: rlkit
    passes render_mode only when it films. With --capture-video it is one line naming the fix, exit 2."""
    pixels = "custom_env_module:TinyPixels-v0"
    env = make_env(pixels, 2, seed=0)
    assert env.reset(seed=0)[0].shape == (2, 3, 36, 36)
    env.close()
    run = tmp_path / "run"
    short = ["--agent", "ppo", "--env", pixels, "--total-steps", "64", "--num-envs", "2", "--num-steps", "32"]
    train.main([*short, "--eval-episodes", "1", "--no-progress", "--run-dir", str(run)])
    assert evaluate.main([str(run), "--episodes", "1", "--json"])["episodes"] == 1
    line = one_line_error(capsys, train.main, [*short, "--capture-video", "--run-dir", str(tmp_path / "video")])
    assert "takes no render_mode" in line and "--capture-video" in line


def test_discrete_actions_that_start_elsewhere_are_chosen_from_zero():
    env = make_env("custom_env_module:TinyShifted-v0", num_envs=1, seed=0)
    assert env.single_action_space == gym.spaces.Discrete(3)
    env.reset(seed=0)
    rewards = [env.step(np.array([choice]))[1][0] for choice in (0, 1, 2)]
    assert rewards == [-1.0, 0.0, 1.0]  # choice k reaches the env as k - 1
    env.close()


@pytest.mark.parametrize("agent", ["dqn", "ppo"])
def test_an_agent_learns_discrete_actions_that_start_elsewhere(tmp_path, capsys, agent):
    run = tmp_path / agent
    train.main(["--agent", agent, "--env", "custom_env_module:TinyShifted-v0", "--total-steps", "3000",
                "--env-kwargs", "length=10", "--eval-episodes", "2", "--no-progress", "--seed", "1",
                "--run-dir", str(run)])
    capsys.readouterr()
    evaluate.main([str(run), "--episodes", "2"])
    assert ": 10.00 ± 0.00 over 2 episodes" in capsys.readouterr().out  # +1 on each of the 10 steps


MULTI_ACTION_AGENTS = [name for name, spec in AGENTS.items()
                       if gym.spaces.MultiDiscrete in spec.agent_class.action_spaces]


def test_the_policy_gradient_agents_take_multi_actions():
    assert set(MULTI_ACTION_AGENTS) == {"reinforce", "a2c", "ppo", "trpo", "a3c"}


@pytest.mark.parametrize("agent, env, best", [*((agent, "TinyMulti-v0", 20) for agent in MULTI_ACTION_AGENTS),
                                              ("ppo", "TinyBits-v0", 30)])  # the heads are one code for both
def test_an_agent_learns_multi_discrete_and_multi_binary_actions(tmp_path, capsys, agent, env, best):
    """One categorical per entry: the best policy plays each entry's best value on each of the 10 steps; a
    uniform one earns half of that or less."""
    run = tmp_path / agent
    train.main(["--agent", agent, "--env", f"custom_env_module:{env}", "--total-steps", "5000",
                "--env-kwargs", "length=10", "--eval-episodes", "2", "--no-progress", "--seed", "1",
                "--run-dir", str(run)])
    capsys.readouterr()
    evaluate.main([str(run), "--episodes", "2", "--json"])
    assert json.loads(capsys.readouterr().out)["mean_return"] >= 0.9 * best


def test_a_recurrent_policy_learns_multi_discrete_actions(tmp_path, capsys):
    run = tmp_path / "lstm"
    train.main(["--agent", "ppo", "--recurrent", "lstm", "--env", "custom_env_module:TinyMulti-v0",
                "--total-steps", "3000", "--env-kwargs", "length=10", "--eval-episodes", "2", "--no-progress",
                "--seed", "1", "--run-dir", str(run)])
    capsys.readouterr()
    evaluate.main([str(run), "--episodes", "2"])
    assert ": 20.00 ± 0.00 over 2 episodes" in capsys.readouterr().out


def test_a_reward_of_one_entry_is_a_number_and_a_vector_of_rewards_is_refused(tmp_path, capsys):
    """Both failed in gymnasium's vector env with "setting an array element with a sequence" (a traceback)."""
    run = tmp_path / "run"
    train.main(["--agent", "dqn", "--env", "custom_env_module:TinyArrayReward-v0", "--total-steps", "600",
                "--env-kwargs", "length=5", "--eval-episodes", "2", "--no-progress", "--run-dir", str(run)])
    capsys.readouterr()
    assert evaluate.main([str(run), "--episodes", "2", "--json"])["mean_return"] == 5.0  # +1 a step for action 1
    with pytest.raises(UserError, match=r"TinyArrayReward-v0 returned a reward of shape \(2,\): a reward is one "
                                        "number per step; sum or weigh the objectives"):
        train.main(["--agent", "ppo", "--env", "custom_env_module:TinyArrayReward-v0", "--total-steps", "256",
                    "--env-kwargs", "reward_entries=2", "--no-progress", "--run-dir", str(tmp_path / "two")])


@pytest.mark.parametrize("wrong_from", [0, 3])
def test_an_observation_its_space_does_not_hold_is_one_line(tmp_path, wrong_from):
    """A (3,) observation from an env whose space says (2,) was numpy's "Output array is the wrong shape", raised
    inside gymnasium's vector env, as a traceback (at reset or at any later step)."""
    with pytest.raises(UserError, match=r"TinyMisshapen-v0 returned an observation that its observation space "
                                        r"Box\(0.0, 100.0, \(2,\), float32\) does not hold \(Output array"):
        train.main(["--agent", "ppo", "--env", "custom_env_module:TinyMisshapen-v0", "--total-steps", "256",
                    "--env-kwargs", f"wrong_from={wrong_from}", "--no-progress", "--run-dir", str(tmp_path / "run")])


@pytest.mark.parametrize("agent", ["dqn", "a3c"])  # a3c: the wrapper travels to its worker processes
def test_env_wrapper_flag_wraps_every_env_and_is_saved_with_the_run(tmp_path, capsys, agent):
    """A Dict observation space needed a module that registers the flattened env; rl-zoo's env_wrapper names the
    wrapper instead. evaluate.py, --resume and rlkit.load rebuild the wrapped env from the run alone."""
    run = tmp_path / "run"
    wrapper = ["--env-wrapper", "gymnasium.wrappers:FlattenObservation"]
    train.main(["--agent", agent, "--env", "custom_env_module:TinyDict-v0", *wrapper, "--total-steps", "400",
                "--eval-episodes", "1", "--no-progress", "--run-dir", str(run)])
    capsys.readouterr()
    assert evaluate.main([str(run), "--episodes", "1", "--json"])["episodes"] == 1
    model = rlkit.load(run)
    assert model.predict({"t": np.array([1.0], np.float32), "phase": 2}) in (0, 1)
    with pytest.raises(UserError, match="--env-wrapper \\['x:Y'\\] differs from the resumed run's"):
        train.main(["--resume", str(run), "--total-steps", "500", "--env-wrapper", "x:Y"])
    train.main(["--resume", str(run), "--total-steps", "500", "--no-progress"])


def test_env_wrapper_arguments_follow_its_name_and_are_saved_with_the_run(tmp_path, capsys):
    """rl-zoo's env_wrapper takes arguments ({name: {kwargs}}); --env-wrapper took a bare name, so TimeLimit or
    ClipReward could not be used. Five steps of CartPole's reward of 1 clipped to 0.5 return exactly 2.5."""
    run = tmp_path / "run"
    train.main(["--agent", "ppo", "--env", "CartPole", "--total-steps", "256", "--eval-episodes", "1",
                "--env-wrapper", "gymnasium.wrappers:TimeLimit", "max_episode_steps=5",
                "--env-wrapper", "gymnasium.wrappers:ClipReward", "min_reward=0", "max_reward=0.5",
                "--no-progress", "--run-dir", str(run)])
    saved = json.loads((run / "config.json").read_text())["settings"]["env_wrappers"]
    assert saved == [{"gymnasium.wrappers:TimeLimit": {"max_episode_steps": 5}},
                     {"gymnasium.wrappers:ClipReward": {"min_reward": 0, "max_reward": 0.5}}]
    capsys.readouterr()
    assert evaluate.main([str(run), "--episodes", "2", "--json"])["mean_return"] == 2.5
    train.main(["--resume", str(run), "--total-steps", "512", "--no-progress"])
    assert rlkit.load(run).evaluate(1) == [2.5]
    model = rlkit.make("ppo", "CartPole", env_wrappers=[{"gymnasium.wrappers:TimeLimit": {"max_episode_steps": 3}}])
    assert model.evaluate(1) == [3.0]
    model.close()


BOX_ACTION_AGENTS = [name for name, spec in AGENTS.items() if gym.spaces.Box in spec.agent_class.action_spaces]


def test_box_actions_that_are_not_a_vector_are_chosen_flat_and_reshaped_for_the_env():
    from rlkit.envs.custom import FlatBoxActions, flat_box_actions

    env = flat_box_actions(gym.make("custom_env_module:TinyMatrixActions-v0"))
    assert isinstance(env, FlatBoxActions) and env.action_space == gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert env.action(np.array([0.5, -0.5, 0.25, 0.0])).tolist() == custom_env_module.MATRIX_TARGET.tolist()
    env.reset(seed=0)
    assert env.step(np.array([0.5, -0.5, 0.25, 0.0], np.float32))[1] == 0.0  # the target, row by row
    scalar = flat_box_actions(gym.make("custom_env_module:TinyScalarActions-v0"))
    assert scalar.action_space.shape == (1,) and scalar.action(np.array([0.5])).shape == ()
    vector = gym.make("custom_env_module:TinyPixels-v0")
    assert flat_box_actions(vector) is vector  # a vector of actions stays as it is


@pytest.mark.parametrize("agent", BOX_ACTION_AGENTS)
@pytest.mark.parametrize("env", ["TinyMatrixActions-v0", "TinyScalarActions-v0"])
def test_every_box_agent_acts_in_matrix_and_scalar_actions(tmp_path, capsys, agent, env):
    """A (2, 2) or () Box of actions crashed every continuous agent (a critic's concatenation, a Gaussian's
    broadcast); the env here refuses any action not of its own shape."""
    run = tmp_path / agent
    train.main(["--agent", agent, "--env", f"custom_env_module:{env}", "--total-steps", "256", "--eval-episodes",
                "1", "--no-progress", "--run-dir", str(run), *(["--learning-starts", "64"] if agent in
                                                                ("ddpg", "td3", "sac") else [])])
    capsys.readouterr()
    assert evaluate.main([str(run), "--episodes", "1", "--json"])["mean_return"] <= 0.0


def test_sac_learns_a_matrix_of_actions(tmp_path):
    model = rlkit.make("sac", "custom_env_module:TinyMatrixActions-v0", eval_episodes=1, seed=1)
    model.learn(1000, run_dir=tmp_path / "run")
    action = model.predict(np.zeros(2, np.float32))
    assert action.shape == (2, 2) and np.abs(action - custom_env_module.MATRIX_TARGET).max() < 0.1
    model.close()


@pytest.mark.parametrize("agent, steps, extra", [("dqn", 3000, []), ("ppo", 5000, []),
                                                ("ppo", 3000, ["--recurrent", "lstm"])])
def test_an_agent_learns_from_images_too_small_for_the_cnn(tmp_path, capsys, agent, steps, extra):
    """7x7 frames crashed the Nature CNN's first convolution: ``auto`` now reads them with an MLP (a recurrent
    policy's core reads them flattened)."""
    run = tmp_path / agent
    train.main(["--agent", agent, *extra, "--env", "custom_env_module:TinyGrid-v0", "--total-steps", str(steps),
                "--eval-episodes", "2", "--no-progress", "--seed", "1", "--run-dir", str(run)])
    capsys.readouterr()
    evaluate.main([str(run), "--episodes", "2", "--json", "--best"])
    assert json.loads(capsys.readouterr().out)["mean_return"] == 10.0  # action 1 on each of the 10 steps


@pytest.mark.parametrize("agent, broken", [("dqn", "reward"), ("dqn", "observation"), ("ppo", "reward"),
                                           ("ppo", "observation"), ("a3c", "reward")])
def test_a_non_finite_env_output_is_one_line_naming_it(capsys, tmp_path, agent, broken):
    """A NaN from the env crashed PPO with a torch traceback and read as 'training diverged: lower the learning
    rate' for DQN; it is now refused where it arises, naming the env, the output and the step (an A3C worker
    reports it the same way, without a traceback)."""
    line = one_line_error(capsys, train.main, [
        "--agent", agent, "--env", "custom_env_module:TinyBroken-v0", "--env-kwargs", f"broken={broken}",
        "--total-steps", "512", "--no-progress", "--run-dir", str(tmp_path / "run")])
    assert (f"TinyBroken-v0 returned a non-finite {broken} (nan) at step 3 of an episode (sub-env 0): an agent "
            "cannot learn from it") in line
    assert line.endswith("no checkpoint was written")  # A3C's said "(its traceback is printed above)"


def test_a_non_finite_env_output_keeps_the_last_checkpoint(capsys, tmp_path):
    run = tmp_path / "run"
    line = one_line_error(capsys, train.main, [
        "--agent", "ppo", "--env", "custom_env_module:TinyBroken-v0", "--env-kwargs", "episode=100", "length=5",
        "--num-envs", "1", "--num-steps", "64", "--total-steps", "1024", "--checkpoint-interval", "128",
        "--eval-episodes", "0", "--no-progress", "--run-dir", str(run)])
    assert "returned a non-finite reward (nan) at step 3 of an episode" in line
    saved = load_checkpoint(run)["loop"]["steps"]
    assert saved == 384 and line.endswith(f"--resume {run} continues from the checkpoint at step {saved}")


def test_lunar_lander_continuous_builds_and_steps():
    """LunarLanderContinuous-v3 (Box2D) builds with make_env; its actions are [-1, 1] (its own bounds, so they reach
    the env unchanged); env kwargs reach the Box2D world."""
    seen: list[np.ndarray] = []

    class Actions(gym.ActionWrapper):
        def action(self, action):
            seen.append(np.array(action))
            return action

    env = make_env("LunarLanderContinuous", 2, seed=0, env_kwargs={"gravity": -5.0}, wrappers=[Actions])
    assert env.resolved.env_id == "LunarLanderContinuous-v3" and env.resolved.family == "other"
    assert env.single_action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert env.single_observation_space.shape == (8,)
    world = env.unwrapped.envs[0].unwrapped.world
    assert tuple(world.gravity) == (0.0, -5.0)
    env.reset()
    actions = np.array([[1.0, -1.0], [-1.0, 0.5]], np.float32)
    for _ in range(5):
        obs, rewards, _, _, _ = env.step(actions)
    assert obs.shape == (2, 8) and np.isfinite(rewards).all()
    np.testing.assert_array_equal(seen[-1], actions[1])
    env.close()


def test_pendulum_actions_are_mapped_to_its_bounds():
    """Normalized actions in [-1, 1] reach an env with other bounds scaled (Pendulum: [-2, 2])."""
    seen: list[np.ndarray] = []

    class Actions(gym.ActionWrapper):
        def action(self, action):
            seen.append(np.array(action))
            return action

    env = make_env("Pendulum", 1, seed=0, wrappers=[Actions])
    env.reset()
    env.step(np.array([[0.5]], np.float32))
    np.testing.assert_allclose(seen[-1], [1.0])
    env.close()
