"""Distributed actors for replay learners (rlkit/sources/actors.py): the frames-once chunks, the learner's replay
holding exactly the actors' transitions, weights reaching the actors, Ape-X's epsilons, and torchrun end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.agents import get_agent_spec
from rlkit.envs import make_env
from rlkit.sources.actors import Actor, ActorReplaySource, ChunkWriter, replay_steps

ROOT = Path(__file__).resolve().parents[1]


def stacked_stream(num_envs: int, steps: int, frame_stack: int, seed: int = 0):
    """Env steps as a frame-stacking env with resets makes them: (obs, actions, rewards, terminated, truncated,
    true next obs, next obs, info), with new games whose first stacks are zero-padded or not, and once a next
    observation that is not a shift of the last one."""
    rng = np.random.default_rng(seed)
    frame_shape = (3, 2) if frame_stack > 1 else (5,)

    def first_obs():
        if frame_stack == 1:
            return rng.normal(size=frame_shape).astype(np.float32)
        stack = rng.integers(0, 255, (frame_stack, *frame_shape)).astype(np.uint8)
        if rng.random() < 0.5:
            stack[:-1] = 0  # the zero padding of a game's first stack
        return stack

    obs = np.stack([first_obs() for _ in range(num_envs)])
    for t in range(steps):
        actions = rng.integers(0, 4, num_envs)
        rewards = rng.normal(size=num_envs).astype(np.float32)
        terminated = rng.random(num_envs) < 0.15
        truncated = ~terminated & (rng.random(num_envs) < 0.05)
        frames = (rng.integers(0, 255, (num_envs, *frame_shape)).astype(np.uint8) if frame_stack > 1
                  else rng.normal(size=(num_envs, *frame_shape)).astype(np.float32))
        true_next = (np.concatenate([obs[:, 1:], frames[:, None]], axis=1) if frame_stack > 1 else frames)
        if t == 3 and frame_stack > 1:
            true_next[0] = rng.integers(0, 255, true_next[0].shape)  # not a shift: must travel whole
        done = terminated | truncated
        next_obs = true_next.copy()
        for e in np.flatnonzero(done):
            next_obs[e] = first_obs()
        info = {"episode_done": done, "episode_return": rng.normal(size=num_envs),
                "episode_length": rng.integers(1, 100, num_envs)}
        yield obs, actions, rewards, terminated, truncated, true_next, next_obs, info
        obs = next_obs


@pytest.mark.parametrize("frame_stack", [1, 4])
def test_a_chunk_gives_back_every_step_exactly(frame_stack):
    steps = list(stacked_stream(3, 40, frame_stack))
    writer = ChunkWriter(steps[0][0], frame_stack)
    for _, actions, rewards, terminated, truncated, true_next, next_obs, info in steps:
        writer.add(actions, rewards, terminated, truncated, true_next, next_obs, info)
    decoded = list(replay_steps(writer.chunk, frame_stack))
    assert len(decoded) == len(steps)
    for (obs, actions, rewards, terminated, truncated, true_next, _, _), got in zip(steps, decoded):
        for want, have in zip((obs, actions, rewards, terminated, truncated, true_next), got):
            np.testing.assert_array_equal(have, want)
    if frame_stack > 1:  # frames once: a step carries one frame per sub-env, stacks only where they cannot be rebuilt
        whole = len(writer.chunk.whole_next) + len(writer.chunk.restarts)
        assert writer.chunk.frames[0].shape == (3, 3, 2)
        assert whole < sum(info["episode_done"].sum() for *_, info in steps) + 2
    expected = [(t, float(info["episode_return"][e]), int(info["episode_length"][e]))
                for t, (*_, info) in enumerate(steps) for e in np.flatnonzero(info["episode_done"])]
    assert writer.chunk.episodes == expected


class Recording(gym.vector.VectorWrapper):
    """Keeps every transition its env takes, as the actor sees it."""

    def __init__(self, env):
        super().__init__(env)
        self.transitions: list[tuple] = []
        self.obs = None

    def reset(self, **kwargs):
        self.obs, info = self.env.reset(**kwargs)
        return self.obs, info

    def step(self, actions):
        next_obs, rewards, terminated, truncated, info = self.env.step(actions)
        for e in range(self.num_envs):
            self.transitions.append((self.obs[e].tobytes(), int(actions[e]), float(rewards[e]),
                                     info["final_obs"][e].tobytes()))
        self.obs = next_obs
        return next_obs, rewards, terminated, truncated, info

    def __getattr__(self, name):
        return getattr(self.env, name)


def _dqn(seed=0):
    spec = get_agent_spec("dqn")
    config = spec.preset("other")
    import dataclasses

    config = dataclasses.replace(config, learning_starts=64, batch_size=16, buffer_size=10_000, hidden=(16,),
                                 train_frequency=4, gradient_steps=1, target_update_interval=50)
    torch.manual_seed(0)
    return spec.agent_class(config, gym.spaces.Box(-np.inf, np.inf, (4,)), gym.spaces.Discrete(2), device="cpu",
                            total_steps=2_000, seed=seed)


def test_the_learners_replay_holds_exactly_the_actors_transitions_and_weights_reach_them():
    learner = _dqn()
    source = ActorReplaySource(learner, actors=2, envs_per_actor=2, frame_stack=1, seed=0, sync_updates=10)
    actors, envs = [], []
    for index in range(2):
        env = Recording(make_env("CartPole", 2, seed=100 + index))
        envs.append(env)
        actors.append(Actor(_dqn(seed=index + 1), env, 1, index, 2, chunk_steps=10, seed=100 + index,
                            send=source.receive))
    threads = [threading.Thread(target=actor.run) for actor in actors]
    for thread in threads:
        thread.start()
    updates = 0
    while source.steps < 800:
        batch = source.next()
        if batch is not None:
            learner.update(batch)
            updates += 1
    queued = [index for index, _ in source.chunks]  # delivered, never put into replay
    source.close()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    # The ratio of one process: an update every train_frequency steps once warm-up is over.
    assert updates + source.pending_updates == pytest.approx((source.steps - 64) / 4, abs=1)
    # Replay holds every transition the actors took and sent, and only those.
    stored = []
    buffer = source.buffer
    for ring in range(buffer.num_envs):
        for slot in np.flatnonzero(buffer.valid[ring]):
            stored.append((buffer.frames[ring, slot].tobytes(), int(buffer.actions[ring, slot]),
                           float(buffer.rewards[ring, slot]), buffer.frames[ring, (slot + 1) % buffer.slots].tobytes()))
    taken = []
    for index, (actor, env) in enumerate(zip(actors, envs)):
        ingested = source.delivered[index] - queued.count(index)
        taken += env.transitions[:ingested * 10 * 2]  # chunks of 10 vector steps of 2 sub-envs
        assert actor.chunks_sent >= source.delivered[index]
    assert len(stored) == buffer.added == source.steps == len(taken)
    assert sorted(stored) == sorted(taken)

    # Weights reach the actors: every actor got the first weights and later ones, and acts with the learner's.
    assert source.version > 2 and all(sent >= 2 for sent in source.weights_sent)
    for actor in actors:
        assert actor.version >= 2
    last = actors[0]
    published = source.weights["q_net"] if last.version == source.version else None
    if published is not None:
        for key, value in last.agent.q_net.state_dict().items():
            torch.testing.assert_close(value, published[key])


@pytest.mark.parametrize("count", [1, 2, 8])
def test_each_dqn_actor_explores_with_its_apex_epsilon(count):
    epsilons = []
    for index in range(count):
        agent = _dqn()
        agent.use_actor_exploration(index, count)
        agent.step = 0  # the schedule would say 1.0 here
        epsilons.append(agent.epsilon)
    if count == 1:
        assert epsilons == [0.4]
    else:  # 0.4 ** (1 + 7 i / (N - 1)): from 0.4 down to 0.4 ** 8
        expected = [0.4 ** (1 + 7 * i / (count - 1)) for i in range(count)]
        np.testing.assert_allclose(epsilons, expected)
        assert epsilons[0] == pytest.approx(0.4) and epsilons[-1] == pytest.approx(0.4**8)


def _torchrun(args: list[str], tmp_path: Path, processes: int = 3) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(processes), str(ROOT / "train.py"), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("agent,env,steps", [("dqn", "CartPole", 1500), ("sac", "Pendulum", 600)])
def test_a_replay_learner_with_two_actors_trains_resumes_and_evaluates(tmp_path, agent, env, steps):
    from rlkit.checkpoint import load_checkpoint

    run = tmp_path / "run"
    common = ["--no-progress", "--eval-episodes", "1"]
    result = _torchrun(["--agent", agent, "--env", env, "--total-steps", str(steps // 2), "--learning-starts", "200",
                        "--batch-size", "32", "--run-dir", str(run), "--actor-chunk-steps", "20",
                        "--actor-sync-updates", "20", *common], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert load_checkpoint(run)["loop"]["steps"] >= steps // 2
    result = _torchrun(["--resume", str(run), "--total-steps", str(steps), *common], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checkpoint = load_checkpoint(run)
    assert checkpoint["loop"]["steps"] >= steps
    assert checkpoint["settings"]["actor_chunk_steps"] == 20
    report = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), str(run), "--episodes", "2", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    assert json.loads(report.stdout.strip().splitlines()[-1])["episodes"] == 2


def test_ring_allreduce_is_refused_for_a_learner_with_actors(tmp_path):
    result = _torchrun(["--agent", "dqn", "--env", "CartPole", "--total-steps", "500", "--allreduce", "ring",
                        "--run-dir", str(tmp_path / "run"), "--no-progress"], tmp_path, processes=2)
    assert result.returncode != 0
    assert "drop --allreduce" in result.stdout + result.stderr
    assert str(ROOT / "rlkit") not in result.stdout + result.stderr  # no traceback of ours (torchrun prints its own)


@pytest.mark.parametrize("flag", ["--actor-chunk-steps", "--actor-sync-updates"])
def test_actor_counts_below_one_are_refused(tmp_path, flag):
    import train
    from rlkit.errors import UserError

    with pytest.raises(UserError, match=f"{flag} must be at least 1"):
        train.main(["--agent", "dqn", "--env", "CartPole", flag, "0", "--run-dir", str(tmp_path / "run")])


def test_saved_replay_of_another_ring_count_is_refused_with_the_reason(tmp_path):
    from rlkit.buffers import ReplayBuffer
    from rlkit.errors import UserError

    four = ReplayBuffer(100, (3,), num_envs=4)
    four.save(str(tmp_path / "replay.npz"))
    with pytest.raises(UserError, match="4 sub-envs and this run feeds 2"):
        ReplayBuffer(100, (3,), num_envs=2).load(str(tmp_path / "replay.npz"))
