"""Recurrent PPO on velocity-masked CartPole and Pendulum: rlkit's ``--recurrent lstm`` against rlkit's plain PPO
and against sb3-contrib's RecurrentPPO, at the same budget, seeds and hyperparameters.

    python benchmarks/recurrent_ppo.py                       # 2 envs x 3 methods x 3 seeds, two runs at a time
    python benchmarks/recurrent_ppo.py --envs CartPole --seeds 1 --steps 20000    # a quick look

The hyperparameters are rl-baselines3-zoo's ``ppo_lstm.yml`` values for CartPoleNoVel-v1 and PendulumNoVel-v1
(an LSTM of 64 for the actor and one for the critic, a ReLU layer of 64 after it, observations normalized), on both
sides, except what rlkit does not have: the clip range stays 0.2 instead of annealing (CartPole) and gSDE is off
(Pendulum), on both sides. The masking is rlkit's ``--partially-observed`` wrapper on both sides (the zoo's
velocity entries). Every run evaluates 10 deterministic games every 10k steps, carrying the LSTM state through each
game. sb3-contrib runs in the scratch virtual environment of ``vs_sb3.py`` (``sb3-contrib`` added to it).

Each finished run is appended to ``benchmarks/recurrent/results.jsonl``, so an interrupted benchmark resumes; the
table (final evaluation, mean and spread over seeds, and the wall time) is printed and the curves are drawn into
``benchmarks/recurrent_ppo.png``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent))
import runner  # train.py on one thread, its evaluations back

RESULTS = SCRIPT.parent / "recurrent" / "results.jsonl"
PLOT = SCRIPT.parent / "recurrent_ppo.png"
SB3_CONTRIB = "sb3-contrib==2.9.2"
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 10_000  # rlkit's (rlkit.jobs.agent.EVAL_SEED_OFFSET): both sides play the same games

# env -> (gymnasium id, the zoo's values as SB3 keywords, rlkit flags for the same values beyond rlkit's own file)
ENVS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "CartPole": ("CartPole-v1",
                 {"n_envs": 8, "n_steps": 32, "batch_size": 256, "n_epochs": 20, "gamma": 0.98, "gae_lambda": 0.8,
                  "learning_rate": "lin_0.001", "clip_range": 0.2, "ent_coef": 0.0},
                 # rlkit/hyperparams/ppo.yml's CartPole-v1 is the zoo's ppo.yml set: the same numbers
                 ["--num-envs", "8", "--num-steps", "32", "--num-minibatches", "1", "--update-epochs", "20",
                  "--gamma", "0.98", "--gae-lambda", "0.8", "--learning-rate", "0.001", "--anneal-lr",
                  "--clip-coef", "0.2", "--ent-coef", "0.0"]),
    "Pendulum": ("Pendulum-v1",
                 {"n_envs": 4, "n_steps": 1024, "batch_size": 64, "n_epochs": 10, "gamma": 0.9, "gae_lambda": 0.95,
                  "learning_rate": 0.001, "clip_range": 0.2, "ent_coef": 0.0},
                 ["--num-envs", "4", "--num-steps", "1024", "--num-minibatches", "64", "--update-epochs", "10",
                  "--gamma", "0.9", "--gae-lambda", "0.95", "--learning-rate", "0.001", "--no-anneal-lr",
                  "--clip-coef", "0.2", "--ent-coef", "0.0"]),
}
SHARED_RLKIT = ["--normalize-obs", "--no-normalize-reward", "--no-clip-vloss", "--hidden", "64", "--activation",
                "relu", "--max-grad-norm", "0.5", "--vf-coef", "0.5"]
METHODS = ("rlkit-lstm", "rlkit-ppo", "sb3-lstm")
"""rlkit recurrent, rlkit feed-forward (the same values without memory), sb3-contrib's RecurrentPPO."""


# ---------------------------------------------------------------------------------------------------- rlkit
def run_rlkit(env: str, method: str, seed: int, steps: int, interval: int) -> dict[str, Any]:
    env_id, _, flags = ENVS[env]
    memory = ["--recurrent", "lstm", "--recurrent-hidden", "64"] if method == "rlkit-lstm" else []
    arguments = ["--agent", "ppo", "--env", env_id, "--partially-observed", "--total-steps", str(steps), "--seed",
                 str(seed), "--eval-interval", str(interval), "--eval-episodes", str(EVAL_EPISODES), "--threads", "1",
                 *flags, *SHARED_RLKIT, *memory]
    start = time.perf_counter()
    records = runner.train(arguments, label=f"{env} {method} seed {seed}")
    wall = time.perf_counter() - start
    curve = [(r["step"], r["eval/mean_return"]) for r in records]
    return {"curve": curve, "final": curve[-1][1], "wall_s": wall}


# ---------------------------------------------------------------------------------------------------- sb3-contrib
def play_recurrent(model: Any, normalize: Any, env_id: str, seed: int) -> float:
    """The mean return of ``EVAL_EPISODES`` deterministic games (game ``i`` reset with ``seed + i``), the LSTM
    state carried through each game and reset at its start, observations normalized with the frozen statistics."""
    import gymnasium as gym
    import numpy as np

    from rlkit.envs.partial import MaskVelocity

    returns = []
    for i in range(EVAL_EPISODES):
        env = MaskVelocity(gym.make(env_id))
        obs, _ = env.reset(seed=seed + i)
        state, start, total, done = None, np.ones((1,), dtype=bool), 0.0, False
        while not done:
            action, state = model.predict(normalize.normalize_obs(obs[None]), state=state, episode_start=start,
                                          deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total, start, done = total + float(reward), np.zeros((1,), dtype=bool), terminated or truncated
        returns.append(total)
        env.close()
    return statistics.fmean(returns)


def sb3_worker(env: str, seed: int, steps: int, interval: int) -> dict[str, Any]:
    """Runs in the SB3 virtual environment: RecurrentPPO with the zoo's values, evaluated every ``interval``."""
    import gymnasium as gym
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from rlkit.envs.partial import MaskVelocity

    torch.set_num_threads(1)
    env_id, values, _ = ENVS[env]
    values = dict(values)
    n_envs = values.pop("n_envs")
    lr = values.pop("learning_rate")
    learning_rate = (lambda progress: progress * float(lr[4:])) if isinstance(lr, str) else lr
    vec = VecNormalize(make_vec_env(lambda: MaskVelocity(gym.make(env_id)), n_envs=n_envs, seed=seed),
                       norm_obs=True, norm_reward=False)
    policy_kwargs = {"ortho_init": False, "activation_fn": torch.nn.ReLU, "lstm_hidden_size": 64,
                     "enable_critic_lstm": True, "net_arch": {"pi": [64], "vf": [64]}}
    model = RecurrentPPO("MlpLstmPolicy", vec, learning_rate=learning_rate, policy_kwargs=policy_kwargs, seed=seed,
                         device="cpu", verbose=0, **values)
    curve: list[tuple[int, float]] = []

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps // interval > len(curve):
                curve.append((self.num_timesteps, play_recurrent(model, vec, env_id, seed + EVAL_SEED_OFFSET)))
            return True

    start = time.perf_counter()
    model.learn(steps, callback=Evaluate())
    final = play_recurrent(model, vec, env_id, seed + EVAL_SEED_OFFSET)
    if not curve or curve[-1][0] != model.num_timesteps:
        curve.append((int(model.num_timesteps), final))
    return {"curve": curve, "final": final, "wall_s": time.perf_counter() - start}


def run_sb3(env: str, seed: int, steps: int, interval: int, python: Path) -> dict[str, Any]:
    command = [str(python), str(SCRIPT), "--worker", "--envs", env, "--seeds", str(seed), "--steps", str(steps),
               "--interval", str(interval)]
    done = subprocess.run(command, env=runner.single_thread_env(), capture_output=True, text=True, check=False,
                          cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(f"{env} sb3-lstm seed {seed}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------- report
def summarize(results: list[dict[str, Any]], envs: list[str]) -> str:
    lines = ["| env (velocities masked) | method | final evaluation, mean ± sd over seeds | seeds | wall per run |",
             "|---|---|---|---|---|"]
    for env in envs:
        for method in METHODS:
            runs = [r for r in results if r["env"] == env and r["method"] == method]
            if not runs:
                continue
            finals = [r["final"] for r in runs]
            sd = statistics.pstdev(finals) if len(finals) > 1 else 0.0
            lines.append(f"| {env} | {method} | {statistics.fmean(finals):.1f} ± {sd:.1f} "
                         f"({', '.join(f'{x:.0f}' for x in finals)}) | {len(runs)} | "
                         f"{statistics.fmean(r['wall_s'] for r in runs) / 60:.1f} min |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], envs: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for method in METHODS:
            runs = [r for r in results if r["env"] == env and r["method"] == method]
            if not runs:
                continue
            length = min(len(r["curve"]) for r in runs)
            steps = np.array([step for step, _ in runs[0]["curve"][:length]])
            values = np.array([[value for _, value in r["curve"][:length]] for r in runs])
            mean, sd = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=f"{method} ({len(runs)} seeds)")
            ax.fill_between(steps, mean - sd, mean + sd, alpha=0.2)
        ax.set_title(f"{env}, velocities masked")
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=80)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="CartPole,Pendulum", help="comma-separated: CartPole, Pendulum")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per run (the zoo's budget)")
    parser.add_argument("--interval", type=int, default=10_000, help="env steps between evaluations")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one torch thread each")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    envs, seeds = args.envs.split(","), [int(s) for s in args.seeds.split(",")]
    if args.worker:
        print(json.dumps(sb3_worker(envs[0], seeds[0], args.steps, args.interval)))
        return
    methods = args.methods.split(",")
    python = None
    if "sb3-lstm" in methods:
        sys.path.insert(0, str(SCRIPT.parent))
        import vs_sb3

        venv = Path.home() / ".cache" / "rlkit-bench" / "sb3-venv"
        versions = vs_sb3.ensure_venv(venv, (SB3_CONTRIB,))
        python = venv / "bin" / "python"
        print(f"sb3-contrib {versions['sb3-contrib']}, SB3 {versions['stable-baselines3']}", flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    results = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    done = {(r["env"], r["method"], r["seed"], r["steps"]) for r in results}
    plan = [(env, method, seed) for seed in seeds for env in envs for method in methods
            if (env, method, seed, args.steps) not in done]
    print(f"{len(plan)} runs to do, {args.jobs} at a time", flush=True)

    def execute(run: tuple[str, str, int]) -> dict[str, Any]:
        env, method, seed = run
        if method == "sb3-lstm":
            outcome = run_sb3(env, seed, args.steps, args.interval, python)
        else:
            outcome = run_rlkit(env, method, seed, args.steps, args.interval)
        return {"env": env, "method": method, "seed": seed, "steps": args.steps, **outcome,
                "date": time.strftime("%Y-%m-%d")}

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for entry in pool.map(execute, plan):
            with RESULTS.open("a") as file:
                file.write(json.dumps(entry) + "\n")
            results.append(entry)
            print(f"{entry['env']} {entry['method']} seed {entry['seed']}: final {entry['final']:.1f} "
                  f"({entry['wall_s'] / 60:.1f} min)", flush=True)
    ran = [r for r in results if r["steps"] == args.steps]
    print(summarize(ran, envs))
    plot(ran, envs)


if __name__ == "__main__":
    main()
