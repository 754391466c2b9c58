"""Replay memory for Atari: bytes per stored transition, and process RSS after filling N real transitions.

    python benchmarks/replay_memory.py --env Breakout --transitions 200000

Fills a replay buffer of exactly ``--transitions`` capacity with random-policy Breakout steps (real frames, so every
page is touched) and prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rlkit.buffers import ReplayBuffer
from rlkit.envs import make_env


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Breakout")
    parser.add_argument("--transitions", type=int, default=200_000)
    parser.add_argument("--num-envs", type=int, default=8)
    args = parser.parse_args()

    env = make_env(args.env, args.num_envs, seed=0)
    rss_before = rss_bytes()
    buffer = ReplayBuffer(args.transitions, env.single_observation_space.shape, np.uint8, (), np.uint8,
                          num_envs=args.num_envs, frame_stack=4, seed=0)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    start = time.time()
    while buffer.added < args.transitions:
        actions = rng.integers(0, env.single_action_space.n, args.num_envs)
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        buffer.add(obs, actions, rewards, terminated, truncated, info["final_obs"])
        obs = next_obs
    result = {
        "env": args.env,
        "capacity": args.transitions,
        "bytes_per_transition": buffer.nbytes / args.transitions,
        "buffer_nbytes": buffer.nbytes,
        "rss_growth_bytes": rss_bytes() - rss_before,
        "rss_total_bytes": rss_bytes(),
        "sampleable_transitions": len(buffer),
        "fill_seconds": round(time.time() - start, 1),
        "sb3_default_bytes_per_transition": 2 * 4 * 84 * 84 + 8 + 4 + 2,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
