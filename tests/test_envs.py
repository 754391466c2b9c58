"""Behaviour of rlkit.envs: name resolution, make_env's Atari preprocessing on both backends, and EpisodeSignals
(reward clipping and life-loss terminals for training, raw whole-game statistics always, true final observations).

The Atari checks replay one recorded run per backend: a training env and an evaluation env, made with the same
seed and stepped with the same random actions until each of the two sub-envs has finished a game of Breakout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import pytest

from rlkit.envs import EpisodeSignals, make_env, resolve_env
from rlkit.errors import UserError

BREAKOUT_LIVES = 5


# ---------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    "name, env_id, family, game",
    [
        ("Breakout", "ALE/Breakout-v5", "atari", "breakout"),
        ("SpaceInvaders", "ALE/SpaceInvaders-v5", "atari", "space_invaders"),
        ("HalfCheetah", "HalfCheetah-v5", "mujoco", None),
        ("CartPole", "CartPole-v1", "other", None),
        ("ALE/Pong-v5", "ALE/Pong-v5", "atari", "pong"),
        ("CartPole-v0", "CartPole-v0", "other", None),
        ("Hopper-v4", "Hopper-v4", "mujoco", None),
        ("LunarLander", "LunarLander-v3", "other", None),  # Box2D: the 'other' family's presets
        ("LunarLanderContinuous", "LunarLanderContinuous-v3", "other", None),
        ("BipedalWalker", "BipedalWalker-v3", "other", None),
        ("BreakoutNoFrameskip-v4", "BreakoutNoFrameskip-v4", "atari", "breakout"),
        ("Blackjack-v1", "Blackjack-v1", "other", None),  # toy text, beside ALE's Blackjack
        ("ALE/Blackjack-v5", "ALE/Blackjack-v5", "atari", "blackjack"),
    ],
)
def test_resolve_env(name, env_id, family, game):
    """Short names resolve to the newest id (ALE namespace first) with family and ROM name; full ids pass through."""
    resolved = resolve_env(name)
    assert (resolved.env_id, resolved.family, resolved.game) == (env_id, family, game)


@pytest.mark.parametrize("name", ["Blackjack", "blackjack"])
def test_a_short_name_of_an_atari_game_and_another_env_is_refused(name):
    """'Blackjack' is ALE's game and gymnasium's toy text: it used to resolve silently to the Atari game (a tabular
    or PPO run then played Atari). Now it is a UserError naming both full ids."""
    with pytest.raises(UserError, match=r"names both the Atari game ALE/Blackjack-v5 and Blackjack-v1: give the full id"):
        resolve_env(name)


@pytest.mark.parametrize("name", ["CartPole", "Pendulum", "FrozenLake-v1"])
def test_sticky_actions_on_an_env_that_is_no_atari_game_are_refused(name):
    """--sticky-actions on CartPole was accepted and did nothing: only ALE has repeat_action_probability."""
    with pytest.raises(UserError, match=r"--sticky-actions repeats Atari actions .* is no Atari game: drop the flag"):
        make_env(name, num_envs=1, sticky_actions=True)


def test_resolve_env_unknown_name_suggests_close_matches():
    """An unknown name raises a UserError that names it and lists the closest known names."""
    with pytest.raises(UserError, match=r"unknown environment 'Breakot': did you mean .*\bBreakout\b"):
        resolve_env("Breakot")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_envs": 0}, "num_envs must be at least 1"),
        ({"backend": "cuda"}, "unknown env backend 'cuda'"),
        ({"backend": "ale", "render": True}, "cannot render"),
        ({"backend": "ale", "env_kwargs": {"mode": 4}}, "take env kwargs or apply wrappers: use --backend gymnasium"),
        ({"backend": "ale", "wrappers": [lambda env: env]}, "take env kwargs or apply wrappers"),
    ],
)
def test_make_env_rejects_bad_arguments(kwargs, message):
    """make_env turns bad arguments into UserErrors before building anything."""
    with pytest.raises(UserError, match=message):
        make_env("Breakout", **kwargs)


def test_atari_env_kwargs_and_wrappers_use_the_gymnasium_backend():
    """ale-py's native vector env takes neither: with them, 'auto' builds gymnasium's Atari, kwargs reaching ale-py
    (Breakout's game mode 4) and wrappers wrapping each sub-env."""
    wrapped = []
    env = make_env("Breakout", 2, env_kwargs={"mode": 4}, wrappers=[lambda e: wrapped.append(e) or e])
    assert isinstance(env.unwrapped, gym.vector.SyncVectorEnv) and len(wrapped) == 2
    assert env.single_observation_space.shape == (4, 84, 84)
    assert env.unwrapped.envs[0].unwrapped._game_mode == 4
    env.close()


# ---------------------------------------------------------------------------------------------- Atari runs
@dataclass
class Run:
    """One training env and one evaluation env stepped in lockstep (same seed, same actions)."""

    obs: list[np.ndarray] = field(default_factory=list)  # training env; obs[t + 1] follows step t
    rewards: list[np.ndarray] = field(default_factory=list)  # training (clipped)
    terminated: list[np.ndarray] = field(default_factory=list)  # training (life loss)
    infos: list[dict] = field(default_factory=list)  # training
    raw_rewards: list[np.ndarray] = field(default_factory=list)  # evaluation
    raw_terminated: list[np.ndarray] = field(default_factory=list)  # evaluation
    obs_match: list[bool] = field(default_factory=list)  # training obs == evaluation obs, per step


def play_breakout(backend: str, num_envs: int = 2, max_steps: int = 1000) -> Run:
    train = make_env("Breakout", num_envs, seed=0, training=True, backend=backend)
    evaluate = make_env("Breakout", num_envs, seed=0, training=False, backend=backend)
    rng = np.random.default_rng(0)
    run = Run()
    obs, _ = train.reset()
    raw_obs, _ = evaluate.reset()
    run.obs.append(obs)
    run.obs_match.append(np.array_equal(obs, raw_obs))
    finished = np.zeros(num_envs, dtype=bool)
    for _ in range(max_steps):
        actions = rng.integers(0, train.single_action_space.n, num_envs)
        obs, reward, terminated, _, info = train.step(actions)
        raw_obs, raw_reward, raw_terminated, _, _ = evaluate.step(actions)
        run.obs.append(obs)
        run.rewards.append(reward)
        run.terminated.append(terminated)
        run.infos.append(info)
        run.raw_rewards.append(raw_reward)
        run.raw_terminated.append(raw_terminated)
        run.obs_match.append(np.array_equal(obs, raw_obs))
        finished |= info["episode_done"]
        if finished.all():
            break
    train.close()
    evaluate.close()
    assert finished.all(), "random Breakout games should end well within max_steps"
    return run


@pytest.fixture(scope="module", params=["ale", "gymnasium"])
def run(request) -> Run:
    return play_breakout(request.param)


def steps(run: Run) -> range:
    return range(len(run.rewards))


def test_first_obs_is_zero_padded_uint8_stack(run):
    """The first observation is a (2, 4, 84, 84) uint8 stack whose 3 older frames are zero padding."""
    first = run.obs[0]
    assert first.shape == (2, 4, 84, 84) and first.dtype == np.uint8
    assert not first[:, :3].any()
    assert first[:, 3].reshape(2, -1).any(axis=1).all()


def test_training_and_evaluation_envs_see_the_same_game(run):
    """Same seed and actions: training and evaluation envs return identical observations at every step."""
    assert all(run.obs_match)


def test_training_rewards_are_clipped_raw_rewards(run):
    """Training rewards are sign(raw reward), as float32 in {-1, 0, 1}; some are nonzero."""
    rewards, raw = np.array(run.rewards), np.array(run.raw_rewards)
    assert rewards.dtype == np.float32
    np.testing.assert_array_equal(rewards, np.sign(raw))
    assert raw.any()


def test_life_loss_ends_training_episode_but_not_the_game(run):
    """Training: each lost life is terminated=True with episode_done False and the stack going on; a game has 5."""
    for e in range(2):
        life_losses = 0
        for t in steps(run):
            done = run.infos[t]["episode_done"][e]
            if run.terminated[t][e] and not done:
                life_losses += 1
                assert not run.raw_terminated[t][e]  # the evaluation env plays on
                assert run.infos[t]["lives"][e] == BREAKOUT_LIVES - life_losses
                np.testing.assert_array_equal(run.obs[t + 1][e, :3], run.obs[t][e, 1:])
            if done:
                assert run.terminated[t][e] and run.raw_terminated[t][e]
                assert life_losses == BREAKOUT_LIVES - 1
                break


def test_episode_done_marks_game_over_only(run):
    """info['episode_done'] is True exactly where the evaluation env's game ended."""
    done = np.array([info["episode_done"] for info in run.infos])
    np.testing.assert_array_equal(done, np.array(run.raw_terminated))


def test_episode_return_is_the_raw_game_score(run):
    """At game over, episode_return is the sum of raw (unclipped) rewards of that game and episode_length its steps;
    both are 0 where no game ended."""
    for e in range(2):
        t_end = next(t for t in steps(run) if run.infos[t]["episode_done"][e])
        raw_score = sum(float(run.raw_rewards[t][e]) for t in range(t_end + 1))
        assert run.infos[t_end]["episode_return"][e] == raw_score
        assert run.infos[t_end]["episode_length"][e] == t_end + 1
        assert all(run.infos[t]["episode_return"][e] == 0 and run.infos[t]["episode_length"][e] == 0
                   for t in range(t_end))


def test_final_obs_is_the_last_frame_stack_of_a_finished_game(run):
    """final_obs holds a finished game's true last stack (continuing the previous one); the returned obs is the
    new game's zero-padded stack; sub-envs still playing get final_obs == obs."""
    seen_game_over = False
    for t in steps(run):
        info, obs, previous = run.infos[t], run.obs[t + 1], run.obs[t]
        assert info["final_obs"].shape == obs.shape and info["final_obs"].dtype == np.uint8
        for e in range(2):
            if info["episode_done"][e]:
                seen_game_over = True
                np.testing.assert_array_equal(info["final_obs"][e, :3], previous[e, 1:])
                assert not obs[e, :3].any()  # the reset stack
                assert not np.array_equal(info["final_obs"][e], obs[e])
            else:
                np.testing.assert_array_equal(info["final_obs"][e], obs[e])
    assert seen_game_over


@pytest.mark.parametrize("backend", ["ale", "gymnasium"])
def test_large_raw_rewards_are_clipped_to_one(backend):
    """Space Invaders scores 5-30 per alien: training rewards are 1 where the raw reward is positive."""
    train = make_env("SpaceInvaders", 1, seed=0, backend=backend)
    evaluate = make_env("SpaceInvaders", 1, seed=0, training=False, backend=backend)
    train.reset()
    evaluate.reset()
    rng = np.random.default_rng(0)
    for _ in range(300):
        actions = rng.integers(0, train.single_action_space.n, 1)
        reward, raw = train.step(actions)[1], evaluate.step(actions)[1]
        np.testing.assert_array_equal(reward, np.sign(raw))
        if raw[0] > 1:
            break
    assert raw[0] >= 5 and reward[0] == 1.0


@pytest.mark.parametrize("sticky, probability", [(True, 0.25), (False, 0.0)])
def test_sticky_actions_set_repeat_probability(sticky, probability):
    """sticky_actions=True makes the emulator repeat the previous action with probability 0.25 (gymnasium backend)."""
    env = make_env("Breakout", 1, backend="gymnasium", sticky_actions=sticky)
    assert env.env.envs[0].unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(probability)
    env.close()


# ---------------------------------------------------------------------------------------------- CartPole
def test_cartpole_final_obs_is_the_state_before_autoreset():
    """With SAME_STEP autoreset, final_obs of a finished CartPole episode equals the last state a plain env reports
    for the same seed (sub-env i is seeded seed + i) and actions, while the returned obs is the next reset state."""
    env = make_env("CartPole", 3, seed=10)
    singles = [gym.make("CartPole-v1") for _ in range(3)]
    obs, _ = env.reset()
    for i, single in enumerate(singles):
        np.testing.assert_array_equal(obs[i], single.reset(seed=10 + i)[0])
    done_any = False
    for _ in range(100):  # always pushing left ends every episode within ~10 steps
        obs, _, terminated, _, info = env.step(np.zeros(3, dtype=np.int64))
        for i, single in enumerate(singles):
            if single is None:
                continue
            last, _, single_done, _, _ = single.step(0)
            assert terminated[i] == single_done == info["episode_done"][i]
            np.testing.assert_array_equal(info["final_obs"][i], last)
            if single_done:
                done_any = True
                singles[i] = None
                assert abs(last[2]) > 0.2  # the pole fell past 12 degrees...
                assert abs(obs[i][2]) <= 0.05  # ...and obs is a fresh reset state
            else:
                np.testing.assert_array_equal(obs[i], last)
        if all(single is None for single in singles):
            break
    assert done_any and all(single is None for single in singles)


def test_seed_makes_first_reset_repeatable():
    """Same seed: identical first observations; another seed: different ones (sub-env i of seed s is seed s + i)."""
    first = make_env("CartPole", 2, seed=0).reset()[0]
    np.testing.assert_array_equal(make_env("CartPole", 2, seed=0).reset()[0], first)
    other = make_env("CartPole", 2, seed=5).reset()[0]
    assert not np.array_equal(other[0], first[0]) and not np.array_equal(other[1], first[1])
    np.testing.assert_array_equal(make_env("CartPole", 2, seed=1).reset()[0][0], first[1])


def test_seed_makes_action_sampling_repeatable():
    """make_env's seed also seeds the action spaces: two envs with one seed sample the same random actions."""
    envs = [make_env("CartPole", 2, seed=3) for _ in range(2)]
    samples = [np.array([env.action_space.sample() for _ in range(20)]) for env in envs]
    np.testing.assert_array_equal(samples[0], samples[1])
    assert len(np.unique(samples[0])) == 2


# ---------------------------------------------------------------------------------------------- EpisodeSignals
class ScriptedVectorEnv(gym.vector.VectorEnv):
    """Two sub-envs replaying a script of (rewards, lives, terminated); obs is the step count, final_obs sparse."""

    # step:             1            2            3           4 (env 0: game over, its lives reset to 3)
    REWARDS = np.array([[2.5, 0.0], [-3.0, 0.5], [0.0, 0.0], [10.0, -0.2]])
    LIVES = np.array([[3, 3], [2, 3], [2, 3], [3, 3]])
    TERMINATED = np.array([[False, False], [False, False], [False, False], [True, False]])

    def __init__(self):
        self.num_envs = 2
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, 2)
        self.single_action_space = gym.spaces.Discrete(2)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, 2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((2, 1), np.float32), {"lives": np.array([3, 3])}

    def step(self, actions):
        self.t += 1
        i = self.t - 1
        obs = np.full((2, 1), self.t, np.float32)
        info = {"lives": self.LIVES[i]}
        if self.TERMINATED[i].any():
            info["final_obs"] = np.array([np.array([-1.0], np.float32) if done else None
                                          for done in self.TERMINATED[i]], dtype=object)
            obs[self.TERMINATED[i]] = 0.0  # autoreset in the same step
        return obs, self.REWARDS[i], self.TERMINATED[i], np.zeros(2, bool), info


def scripted_run(training: bool) -> list[tuple]:
    env = EpisodeSignals(ScriptedVectorEnv(), clip_rewards=training, life_loss_terminal=training)
    env.reset()
    return [env.step(np.zeros(2, np.int64)) for _ in range(4)]


def test_episode_signals_training_clips_and_ends_on_life_loss():
    """Training signals: rewards become their sign, a lost life (not a game over) sets terminated."""
    results = scripted_run(training=True)
    np.testing.assert_array_equal([r[1] for r in results], [[1, 0], [-1, 1], [0, 0], [1, -1]])
    np.testing.assert_array_equal([r[2] for r in results], [[False, False], [True, False], [False, False],
                                                             [True, False]])
    assert all(r[1].dtype == np.float32 for r in results)


def test_episode_signals_evaluation_passes_raw_signals():
    """Without training signals, rewards and terminated are the wrapped env's own."""
    results = scripted_run(training=False)
    np.testing.assert_array_equal([r[1] for r in results], ScriptedVectorEnv.REWARDS.astype(np.float32))
    np.testing.assert_array_equal([r[2] for r in results], ScriptedVectorEnv.TERMINATED)


@pytest.mark.parametrize("training", [True, False])
def test_episode_signals_report_raw_return_and_dense_final_obs(training):
    """Game over: episode_return is the raw score 2.5 - 3 + 0 + 10 = 9.5 over 4 steps, whatever the training
    signals; final_obs is dense: the true last obs of the finished env, the returned obs elsewhere."""
    results = scripted_run(training)
    infos = [r[4] for r in results]
    np.testing.assert_array_equal([info["episode_done"] for info in infos], ScriptedVectorEnv.TERMINATED)
    np.testing.assert_array_equal(infos[3]["episode_return"], [9.5, 0.0])
    np.testing.assert_array_equal(infos[3]["episode_length"], [4, 0])
    assert not any(info["episode_return"].any() for info in infos[:3])
    np.testing.assert_array_equal(infos[3]["final_obs"], [[-1.0], [4.0]])
    np.testing.assert_array_equal(infos[2]["final_obs"], results[2][0])


def test_channels_last_images_come_channels_first():
    """CarRacing's (96, 96, 3) frames crashed the CNN, which read them as 96 channels (the bug this fixes)."""
    import gymnasium as gym
    import numpy as np

    from rlkit.envs.custom import channels_first_images, is_channels_last_image

    class Camera(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (6, 5, 3), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, seed=None, options=None):
            return np.arange(90, dtype=np.uint8).reshape(6, 5, 3), {}

    env = channels_first_images(Camera())
    assert env.observation_space.shape == (3, 6, 5) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset()
    assert obs.shape == (3, 6, 5) and obs[2, 1, 0] == 1 * 15 + 0 * 3 + 2  # pixel (row 1, col 0), channel 2
    assert not is_channels_last_image(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))  # Atari stacks: as they are
    assert not is_channels_last_image(gym.spaces.Box(0, 1, (6, 5, 3), np.float32))
