"""The Python API (rlkit.make / learn / save / load / predict) through the same job and loop as train.py."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import evaluate
import rlkit
from rlkit.checkpoint import load_checkpoint
from rlkit.errors import UserError

TINY_SAC = dict(learning_starts=100, batch_size=32, hidden=(16, 16), eval_episodes=1, buffer_size=2_000)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = rlkit.make("sac", "Pendulum", learning_rate=1e-3, **TINY_SAC)
    model.learn(300, run_dir=tmp_path_factory.mktemp("api") / "run")
    yield model
    model.close()


def test_make_takes_presets_flags_and_one_learning_rate_for_all():
    model = rlkit.make("sac", "Pendulum", learning_rate=1e-3, q_lr=5e-4, seed=3)
    assert (model.config.policy_lr, model.config.q_lr, model.settings.seed) == (1e-3, 5e-4, 3)
    preset = rlkit.make("sac", "Pendulum")
    assert preset.config == rlkit.jobs.JOBS["agent"].preset({"agent": "sac", "env": "Pendulum"})


@pytest.mark.parametrize("options, message", [
    ({"learnig_starts": 5}, "unknown option 'learnig_starts': did you mean learning_starts"),
    ({"batch_size": 0}, "--batch-size"),
    ({"run_dir": "x"}, "unknown option 'run_dir'"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(UserError, match=message):
        rlkit.make("sac", "Pendulum", **options)


def test_learn_save_load_predict_in_env_units(trained, tmp_path):
    assert trained.steps == 300
    obs, _ = gym.make("Pendulum-v1").reset(seed=0)
    action = trained.predict(obs)
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0
    # by hand: the agent acts in [-1, 1], Pendulum's torque is in [-2, 2]
    normalized = trained.agent.act(obs[None].astype(np.float32), explore=False)[0]
    assert action == pytest.approx(np.clip(2.0 * normalized, -2, 2), abs=1e-6)
    batch = trained.predict(np.stack([obs, obs, obs]))
    assert batch.shape == (3, 1) and np.allclose(batch, action)

    path = trained.save(tmp_path / "pendulum.pt")
    loaded = rlkit.load(path)
    assert loaded.steps == 300 and loaded.predict(obs) == pytest.approx(action)
    result = evaluate.main([str(path), "--episodes", "1", "--json"])  # evaluate.py reads what save() wrote
    assert result["steps"] == 300 and result["agent"] == "sac"


def test_mapping_to_env_units_is_the_inverse_of_make_envs_rescaling(trained):
    assert trained._in_env_units(np.array([[-1.0], [0.0], [0.5], [1.5]])).ravel().tolist() == [-2, 0, 1, 2]


def test_predict_refuses_a_wrong_shape(trained):
    with pytest.raises(UserError, match=r"observation of shape \(3,\) or a batch"):
        trained.predict(np.zeros(4))


def test_predict_refuses_a_non_finite_observation(trained):
    """A NaN observation reached the actor and came back as NaN torque (a categorical policy: torch's traceback)."""
    with pytest.raises(UserError, match=r"non-finite values \(nan\)"):
        trained.predict(np.array([1.0, np.nan, 0.0]))
    with pytest.raises(UserError, match=r"non-finite values \(inf\)"):
        trained.predict(np.array([[1.0, 0.0, 0.0], [np.inf, 0.0, 0.0]]))


@pytest.mark.parametrize("call, message", [
    (lambda model: model.learn(1.5), "learn needs a whole number of steps of at least 1, got 1.5"),
    (lambda model: model.learn(True), "got True"),
    (lambda model: model.evaluate(2.5), "evaluate needs a whole number of episodes of at least 1, got 2.5"),
])
def test_learn_and_evaluate_refuse_counts_that_are_not_whole(trained, call, message):
    with pytest.raises(UserError, match=message):  # learn(1.5) said "needs a positive number"; evaluate(2.5) ran
        call(trained)


def test_save_into_a_directory_is_refused_before_anything_is_built(tmp_path):
    model = rlkit.make("sac", "Pendulum", **TINY_SAC)
    with pytest.raises(UserError, match=f"{tmp_path} is a directory: .* e.g. {tmp_path / 'model.pt'}"):
        model.save(tmp_path)  # was IsADirectoryError, after building a run in a temporary directory
    assert model._loop is None


@pytest.mark.parametrize("env, message", [
    (gym.make("CartPole-v1"), "takes the env by name, got a TimeLimit: pass 'CartPole-v1'"),
    (5, "got a int: register your env with gymnasium.register"),
])
def test_make_refuses_an_env_object_and_names_its_id(env, message):
    with pytest.raises(UserError, match=message):  # was "argument of type 'TimeLimit' is not iterable"
        rlkit.make("ppo", env)


def test_learn_again_continues_with_the_same_replay(trained):
    replay = trained._loop.source.buffer
    size = len(replay)
    trained.learn(100)
    assert trained.steps == 400 and trained._loop.source.buffer is replay and len(replay) == size + 100
    assert load_checkpoint(trained.run_dir)["loop"]["steps"] == 400


class StopAt(rlkit.Callback):
    def __init__(self, step):
        self.step, self.seen = step, []

    def on_step(self, loop, step):
        self.seen.append(step)
        return step < self.step


def test_a_callback_stops_learning_early_and_the_run_is_saved(tmp_path):
    model = rlkit.make("dqn", "CartPole", learning_starts=50, eval_episodes=1, hidden=(8,))
    stop = StopAt(120)
    model.learn(1_000, run_dir=tmp_path / "run", callbacks=[stop])
    assert model.steps == 120 and stop.seen[-1] == 120
    assert load_checkpoint(tmp_path / "run")["loop"]["steps"] == 120
    model.close()


def test_load_refuses_a_run_that_is_not_an_agent(tmp_path):
    from rlkit.cli import train
    from rlkit.data import make_tiny_dataset

    data = make_tiny_dataset("mnist", tmp_path / "mnist", train=32, test=16, seed=0)
    train.main(["--task", "mnist", "--net", "numpy-mlp", "--data-dir", str(data), "--max-steps", "2",
                "--batch-size", "16", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    with pytest.raises(UserError, match="holds a classifier run"):
        rlkit.load(tmp_path / "run")


def test_env_kwargs_and_wrappers_reach_every_env_of_the_run(tmp_path):
    import custom_env_module
    from gymnasium.wrappers import FlattenObservation

    custom_env_module.CREATED.clear()
    model = rlkit.make("dqn", "custom_env_module:TinyDict-v0", wrappers=[FlattenObservation],
                       env_kwargs={"length": 7, "bonus": 0.5}, learning_starts=20, eval_episodes=1, hidden=(8,))
    model.learn(60, run_dir=tmp_path / "run")
    assert custom_env_module.CREATED and all(k == {"length": 7, "bonus": 0.5, "label": ""}
                                             for k in custom_env_module.CREATED)
    ones = model.evaluate(1)[0] - 7 * 0.5  # a game of 7 steps: 0.5 each, plus 1 for each action 1
    assert ones in range(8)
    flat = FlattenObservation(gym.make("custom_env_module:TinyDict-v0")).observation_space
    assert model.predict(np.zeros(flat.shape, np.float32)) in (0, 1)
    model.close()
    with pytest.raises(UserError, match="FlattenObservation"):  # not saved: load needs them again
        rlkit.load(tmp_path / "run")
    assert rlkit.load(tmp_path / "run", wrappers=[FlattenObservation]).steps == 60


def test_make_reads_hyperparameter_files_as_config_does(tmp_path):
    file = tmp_path / "mine.yml"
    file.write_text("batch_size: 48\nCartPole-v1:\n  gamma: 0.95\n")
    model = rlkit.make("dqn", "CartPole", config=file, gamma=0.9)
    assert (model.config.batch_size, model.config.gamma) == (48, 0.9)  # the file, then the option over it
    shipped = rlkit.make("dqn", "Acrobot")
    from rlkit.cli.train import prepare

    assert shipped.config == prepare(["--agent", "dqn", "--env", "Acrobot"]).config  # the env's shipped file


@pytest.mark.parametrize("env, best", [("TinyShifted-v0", 1), ("TinyMulti-v0", [1, 3])])
def test_predict_gives_discrete_actions_that_start_elsewhere_in_the_envs_units(tmp_path, env, best):
    """Agents count choices from 0; predict adds the env's start back (Discrete(3, start=-1): -1, 0, 1;
    MultiDiscrete([2, 3], start=[0, 1])), so its actions go into the env as they are."""
    import custom_env_module  # noqa: F401 - registers the envs

    model = rlkit.make("ppo", f"custom_env_module:{env}", env_kwargs={"length": 10}, seed=1, eval_episodes=1)
    model.learn(5000, run_dir=tmp_path / "run")
    game = gym.make(env, length=10)
    obs, _ = game.reset(seed=0)
    action = model.predict(obs)
    assert np.asarray(action).tolist() == best and game.action_space.contains(action)
    game.step(action)  # TinyShifted and TinyMulti refuse an action outside their space


def test_predict_takes_the_envs_own_observations_as_training_transformed_them():
    """SB3's predict takes what env.step returned; rlkit's took only what the agent reads, so FrozenLake's state
    number (one-hot coded for the agent) and CarRacing-like channels-last frames were refused."""
    import custom_env_module  # noqa: F401 - registers the envs
    from gymnasium.wrappers import FlattenObservation

    lake = rlkit.make("dqn", "FrozenLake", hidden=(8,))
    codes = np.eye(16, dtype=np.float32)
    by_hand = lake.agent.act(codes, explore=False)
    assert lake.predict(5) == by_hand[5] and lake.predict(np.int64(9)) == by_hand[9]
    assert lake.predict(np.array([5, 9, 15])).tolist() == by_hand[[5, 9, 15]].tolist()
    assert lake.predict(codes[5]) == by_hand[5]  # what the agent reads is taken as it is
    with pytest.raises(UserError, match=r"outside the env's Discrete\(16\)"):
        lake.predict(16)

    grid = rlkit.make("dqn", "custom_env_module:TinyGrid-v0", hidden=(8,))
    frames = np.random.default_rng(0).integers(0, 256, (4, 7, 7, 3), dtype=np.uint8)
    by_hand = grid.agent.act(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)), explore=False)
    assert grid.predict(frames).tolist() == by_hand.tolist() and grid.predict(frames[2]) == by_hand[2]

    model = rlkit.make("dqn", "custom_env_module:TinyDict-v0", wrappers=[FlattenObservation], hidden=(8,))
    obs = {"t": np.array([3.0], np.float32), "phase": 1}
    flat = np.array([[0, 1, 0, 3]], np.float32)  # gymnasium flattens a Dict in sorted key order: phase, t
    assert model.predict(obs) == model.agent.act(flat, explore=False)[0]
    assert model.predict([obs, obs]).tolist() == [model.predict(obs)] * 2
    assert model.predict({"t": np.array([3.0]), "phase": 1}) == model.predict(obs)  # float64 for a float32 Box
    with pytest.raises(UserError, match="an observation the env's Dict.* does not hold"):
        model.predict({"t": np.zeros(1)})  # a Dict without its phase


def test_an_env_with_scalar_observations_trains_and_predicts(tmp_path):
    """A Box of shape () crashed every agent's first layer (a batch of scalars has no feature axis): it is now a
    vector of one entry."""
    import custom_env_module  # noqa: F401 - registers the envs

    model = rlkit.make("ppo", "custom_env_module:TinyScalar-v0", num_steps=64, eval_episodes=1)
    model.learn(128, run_dir=tmp_path / "run")
    assert model.agent.obs_space.shape == (1,)
    expected = model.agent.act(np.array([[3.0]], np.float32), explore=False)[0]
    assert model.predict(np.float32(3.0)) == expected and model.predict(3.0) == expected
    assert model.predict(np.array([3.0, 3.0], np.float32)).tolist() == [expected] * 2
    model.close()


def test_predict_with_a_recurrent_policy_forgets_the_game_before_at_episode_start():
    """SB3's RecurrentPPO.predict takes episode_start; rlkit's predict carried the memory into the next game."""
    model = rlkit.make("ppo", "Pendulum", recurrent="lstm", num_steps=32)
    first, second = np.array([1.0, 0.0, 0.5], np.float32), np.array([0.0, 1.0, -2.0], np.float32)
    fresh = model.predict(second)  # the first call starts from a zero memory
    model.predict(first)
    carried = model.predict(second)  # the memory of 'fresh' and 'first' goes in
    assert not np.allclose(carried, fresh)
    model.predict(first)
    assert np.allclose(model.predict(second, episode_start=True), fresh)
    pair = model.predict(np.stack([first, second]), episode_start=[True, True])
    assert np.allclose(pair[1], fresh)
    assert np.allclose(model.predict(np.stack([second, second]), episode_start=[False, True])[1], fresh)
