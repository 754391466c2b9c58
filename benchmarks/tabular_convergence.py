"""How fast tabular Q-learning's table approaches Q* on FrozenLake-v1 4x4 (slippery), per step-size schedule.

Q* comes from value iteration on the env's own transition table. The behaviour policy is uniformly random, as is
standard in convergence studies (Even-Dar & Mansour 2003): every (s, a) keeps being visited and the trajectory does
not depend on the table, so the schedules differ only in how they average the same stream of transitions. The
table learns through rlkit's own agent (``TabularQ.update``, rows in arrival order); episodes end only at a hole or
the goal (no time limit, which would make the MDP non-stationary).

    python benchmarks/tabular_convergence.py                 # 1M steps per schedule, a PNG next to this file
    python benchmarks/tabular_convergence.py --steps 20000 --no-plot
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlkit.agents.tabular import TabularConfig, TabularQ, TransitionBatch
from rlkit.analysis.mdp import toy_text_mdp, value_iteration

SCHEDULES = {"constant alpha=0.1": {"step_size": "constant", "alpha": 0.1}, "1/n": {"step_size": "1/n"},
             "1/n^0.6": {"step_size": "polynomial", "omega": 0.6}}


def random_walk(env: gym.Env, steps: int, seed: int) -> TransitionBatch:
    """``steps`` transitions of the uniformly random policy, restarting at each termination."""
    rng = np.random.default_rng(seed)
    n_states = env.observation_space.n
    states, actions, rewards, next_states, terminated = (np.zeros(steps, np.int64) for _ in range(5))
    s, _ = env.reset(seed=seed)
    for t in range(steps):
        a = int(rng.integers(env.action_space.n))
        s_next, r, done, _, _ = env.step(a)
        states[t], actions[t], rewards[t], next_states[t], terminated[t] = s, a, r, s_next, done
        s = env.reset()[0] if done else s_next
    eye = np.eye(n_states, dtype=np.float32)
    return TransitionBatch(eye[states], actions, rewards.astype(np.float64), eye[next_states],
                           terminated.astype(bool), np.full(steps, -1))


def chunk(batch: TransitionBatch, start: int, stop: int) -> TransitionBatch:
    return TransitionBatch(*(column[start:stop] for column in batch))


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per schedule")
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--every", type=int, default=1_000, help="steps between error measurements")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("tabular_convergence.png")))
    args = parser.parse_args(argv)

    env = gym.make("FrozenLake-v1").unwrapped  # slippery 4x4; unwrapped: no time limit
    P, R, _ = toy_text_mdp(env)
    q_star = value_iteration(P, R, args.gamma, tol=1e-12).numpy()
    walk = random_walk(env, args.steps, args.seed)
    obs_space = gym.spaces.Box(0.0, 1.0, (env.observation_space.n,), np.float32)

    marks = list(range(args.every, args.steps + 1, args.every))
    errors: dict[str, list[float]] = {}
    for name, changes in SCHEDULES.items():
        start = time.perf_counter()
        agent = TabularQ(TabularConfig(gamma=args.gamma, **changes), obs_space, env.action_space)
        errors[name], done = [], 0
        for mark in marks:
            agent.update(chunk(walk, done, mark))
            done = mark
            errors[name].append(float(np.abs(agent.q.numpy() - q_star).max()))
        print(f"{name}: {time.perf_counter() - start:.1f}s")

    shown = sorted({m for m in (1_000, 10_000, 100_000, 300_000, args.steps) if args.every <= m <= args.steps})
    print(f"\n||Q - Q*||_inf, Q-learning on FrozenLake-v1 4x4 (slippery), uniformly random behaviour, "
          f"gamma {args.gamma}, seed {args.seed}\n")
    print("| steps | " + " | ".join(SCHEDULES) + " |")
    print("|---:|" + "---:|" * len(SCHEDULES))
    for m in shown:
        i = min(range(len(marks)), key=lambda j: abs(marks[j] - m))
        print(f"| {marks[i]:,} | " + " | ".join(f"{errors[name][i]:.4f}" for name in SCHEDULES) + " |")

    if not args.no_plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot")
            return errors
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in SCHEDULES:
            ax.loglog(marks, errors[name], label=name)
        ax.set_xlabel("env steps")
        ax.set_ylabel(r"$\|Q - Q^*\|_\infty$")
        ax.set_title(f"Q-learning on FrozenLake 4x4, random behaviour, gamma {args.gamma}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        print(f"\nplot: {args.out}")
    return errors


if __name__ == "__main__":
    main()
