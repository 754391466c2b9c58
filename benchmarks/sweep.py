"""rlkit's defaults against Stable-Baselines3's defaults: every agent on every env of the families it supports, at a
short and a medium budget per family, several seeds, each run as a new user types it (no flag but the budget and the
seed). Prints mean final evaluation returns with their spread, wins/ties/losses and each side's wall time.

    python benchmarks/sweep.py                                     # every cell; resumes where results.jsonl stops
    python benchmarks/sweep.py --families classic --budgets short --max-minutes 90
    python benchmarks/sweep.py --report --markdown                 # the table of what has run, for RESULTS.md
    python benchmarks/sweep.py --dry-run                           # the plan only: installs and runs nothing

A cell is (agent, env, budget). Each seed of a cell is two runs side by side, one per library, each a process with
one torch thread (``--jobs`` runs at a time, two by default):

- rlkit: ``train.py --agent A --env E --total-steps N --seed S`` (plus ``--no-progress --threads 1``); its score is
  the final evaluation in ``eval.jsonl`` (10 games, deterministic actions).
- SB3: ``Class("MlpPolicy", env_id, seed=S).learn(N)`` with every other argument at SB3's default (TRPO from
  sb3-contrib), then the same 10 games played with ``predict(deterministic=True)`` on the same env seeds. SB3 goes
  into a virtual environment of its own (``--venv``, shared with vs_sb3.py), never into rlkit's dependencies.

Every finished run is appended to ``--results`` at once, so a sweep stopped anywhere (``--max-minutes``, Ctrl-C, the
end of a session) continues where it stopped. An rlkit run is keyed by the fingerprint of the resolved config that
``--print-config`` shows: when the defaults change, the runs they made are stale and run again (a field added
later, at the value that means "as before", changes no digest: ``INERT_CONFIG``).

The verdict of a cell compares the seeds' mean returns: a tie when they differ by no more than the larger of the two
sides' standard deviations over seeds, else a win or a loss. A cell "learns" when rlkit's mean is above the random
policy's mean by more than the random policy's own standard deviation over games (100 games, computed once per env).
"""

# Only the standard library at the top: the parent imports neither library; each worker imports its own side.
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent))
import runner  # train.py on one thread, its evaluations back
import vs_sb3  # noqa: E402  (the shared SB3 venv and the machine's description)

DEFAULT_RESULTS = SCRIPT.parent / "sweep" / "results.jsonl"
SB3_EXTRA = ("sb3-contrib==2.9.2",)  # TRPO
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 10_000  # rlkit's evaluation seeds (rlkit.jobs.agent.EVAL_SEED_OFFSET): SB3 plays the same games
RANDOM_EPISODES = 100


@dataclass(frozen=True)
class Env:
    id: str
    family: str
    actions: str  # "discrete" or "box"


# Families as the issue names them; budgets are whole numbers of rollouts for rlkit's and SB3's on-policy defaults
# (8 x 32 and 2048 steps), so neither side runs steps the other does not.
ENVS: tuple[Env, ...] = (
    Env("CartPole-v1", "classic", "discrete"), Env("Acrobot-v1", "classic", "discrete"),
    Env("MountainCar-v0", "classic", "discrete"), Env("Pendulum-v1", "classic", "box"),
    Env("MountainCarContinuous-v0", "classic", "box"),
    # CliffWalking has no time limit (a policy walking into the edge plays forever) and SB3 takes no Tuple
    # observations (Blackjack): neither makes a comparable cell.
    Env("FrozenLake-v1", "toy-text", "discrete"), Env("Taxi-v4", "toy-text", "discrete"),
    Env("LunarLander-v3", "box2d", "discrete"), Env("LunarLanderContinuous-v3", "box2d", "box"),
    Env("BipedalWalker-v3", "box2d", "box"),
    Env("InvertedPendulum-v5", "mujoco", "box"), Env("InvertedDoublePendulum-v5", "mujoco", "box"),
    Env("Reacher-v5", "mujoco", "box"), Env("Swimmer-v5", "mujoco", "box"), Env("Hopper-v5", "mujoco", "box"),
    Env("HalfCheetah-v5", "mujoco", "box"), Env("Walker2d-v5", "mujoco", "box"), Env("Ant-v5", "mujoco", "box"),
)
FAMILIES = ("classic", "toy-text", "box2d", "mujoco")
BUDGETS: dict[str, dict[str, int]] = {
    "classic": {"short": 20_480, "medium": 102_400},
    "toy-text": {"short": 20_480, "medium": 102_400},
    "box2d": {"short": 51_200, "medium": 204_800},
    "mujoco": {"short": 51_200, "medium": 204_800},
}
# rlkit agent -> (SB3 class, its package, the action spaces it takes); None: no SB3 peer (the cell checks learning).
PEERS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "dqn": ("DQN", "stable_baselines3", ("discrete",)),
    "ppo": ("PPO", "stable_baselines3", ("discrete", "box")),
    "a2c": ("A2C", "stable_baselines3", ("discrete", "box")),
    "trpo": ("TRPO", "sb3_contrib", ("discrete", "box")),
    "sac": ("SAC", "stable_baselines3", ("box",)),
    "td3": ("TD3", "stable_baselines3", ("box",)),
    "ddpg": ("DDPG", "stable_baselines3", ("box",)),
    "double-dqn": (None, "", ("discrete",)), "dueling-dqn": (None, "", ("discrete",)),
    "reinforce": (None, "", ("discrete", "box")), "a3c": (None, "", ("discrete", "box")),
}
WITH_PEER = tuple(name for name, (cls, _, _) in PEERS.items() if cls)


@dataclass(frozen=True)
class Run:
    agent: str
    env: Env
    budget_name: str
    budget: int
    seed: int
    side: str  # "rlkit" or "sb3"

    @property
    def cell(self) -> tuple[str, str, int]:
        return (self.agent, self.env.id, self.budget)


# ---------------------------------------------------------------------------------------------------- the workers
def play(predict, env_id: str, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` games, game ``i`` on a fresh env reset with ``seed + i`` (the SB3 worker's
    evaluation, and the random policy's)."""
    import gymnasium as gym

    returns = []
    env = gym.make(env_id)
    limit = env.spec.max_episode_steps or 100_000
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        env.action_space.seed(seed + i)
        total = 0.0
        for _ in range(limit):
            action = predict(obs, env)
            if isinstance(env.action_space, gym.spaces.Discrete):
                action = int(action)  # SB3's predict gives a 0-d array, which toy text's tables cannot index
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        returns.append(total)
    env.close()
    return returns


def sb3_worker(agent: str, env_id: str, steps: int, seed: int) -> dict[str, Any]:
    import importlib

    import torch

    torch.set_num_threads(1)
    class_name, package, _ = PEERS[agent]
    model_class = getattr(importlib.import_module(package), class_name)
    model = model_class("MlpPolicy", env_id, seed=seed, device="cpu", verbose=0)
    model.learn(steps)
    returns = play(lambda obs, env: model.predict(obs, deterministic=True)[0], env_id, EVAL_EPISODES,
                   seed + EVAL_SEED_OFFSET)
    return {"returns": returns, "steps": int(model.num_timesteps)}


def random_worker(env_id: str) -> dict[str, Any]:
    return {"returns": play(lambda obs, env: env.action_space.sample(), env_id, RANDOM_EPISODES, 0)}


def rlkit_arguments(agent: str, env_id: str, steps: int, seed: int) -> list[str]:
    """train.py's arguments for a cell's run: rlkit's defaults, only the budget and the seed given."""
    return ["--agent", agent, "--env", env_id, "--total-steps", str(steps), "--seed", str(seed)]


SCHEDULING = ("seed", "progress", "threads", "device", "checkpoint_interval", "actor_chunk_steps", "actor_sync_updates")
"""Run settings that change how a run is scheduled, not what it learns: never in the fingerprint."""
INERT_SETTINGS: dict[str, Any] = {"overlap": "off", "precision": "fp32", "partially_observed": False,
                                  "allreduce": "builtin", "preset": ""}
INERT_CONFIG: dict[str, Any] = {
    "recurrent": "none", "recurrent_hidden": 64, "sequence_length": 0,  # PPO/A2C before recurrent policies
    "distributional": False, "num_atoms": 51, "v_min": -10.0, "v_max": 10.0, "noisy": False, "noisy_std": 0.5,
    "augment": "none", "augment_pad": 4, "cnn_hidden": 512, "adam_eps": 1e-8,  # the DQN family before Rainbow
}
"""Fields added after stored runs were made, at the values that reproduce those runs (checked by diffing each
stored run's ``--print-config`` at its commit against today's). A field holding its value here is left out of the
fingerprint, so adding a field does not make every stored run stale; leaving out a fixed value keeps the digest
one-to-one. Never change a value here: add a field with the value that means "as before"."""


LEGACY_INERT = ("overlap", "precision")
"""The inert settings the fingerprint of runs stored before :data:`INERT_CONFIG` existed left out (every other
field of their time was in their digest)."""


def _digest(resolved: dict[str, Any], inert_settings: dict[str, Any], inert_config: dict[str, Any]) -> str:
    settings = {k: v for k, v in resolved["settings"].items()
                if k not in SCHEDULING and not (k in inert_settings and v == inert_settings[k])}
    config = {k: v for k, v in resolved["config"].items() if not (k in inert_config and v == inert_config[k])}
    text = json.dumps({"settings": settings, "config": config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprints(resolved: dict[str, Any]) -> tuple[str, str]:
    """Digests of everything in a ``--print-config`` that changes what a run learns (not its seed or threads): the
    one new runs record (the inert fields left out), then the legacy one (only :data:`LEGACY_INERT` left out) that
    runs stored since those fields existed carry. A stored run whose digest is either ran this config."""
    legacy = {k: INERT_SETTINGS[k] for k in LEGACY_INERT}
    return _digest(resolved, INERT_SETTINGS, INERT_CONFIG), _digest(resolved, legacy, {})


def rlkit_fingerprint(agent: str, env_id: str, steps: int) -> tuple[str, str]:
    """:func:`fingerprints` of a cell's resolved config, as ``train.py --print-config`` shows it."""
    done = subprocess.run(runner.command([*rlkit_arguments(agent, env_id, steps, 0), "--print-config"]),
                          capture_output=True, text=True, cwd=ROOT, env=runner.single_thread_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{agent} on {env_id}: --print-config failed: {done.stderr.strip()[-300:]}")
    return fingerprints(json.loads(done.stdout))


def fingerprints_of(plan: list[Run], jobs: int) -> dict[tuple[str, str, int], tuple[str, ...]]:
    """:func:`rlkit_fingerprint` of every cell of ``plan``, ``jobs`` at a time (each is a process of a few
    seconds: a whole plan's would take minutes one by one)."""
    cells = list(dict.fromkeys(run.cell for run in plan))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return dict(zip(cells, pool.map(lambda cell: rlkit_fingerprint(*cell), cells)))


def run_rlkit(run: Run, timeout: float) -> dict[str, Any]:
    final = runner.train(rlkit_arguments(run.agent, run.env.id, run.budget, run.seed) + ["--threads", "1"],
                         timeout=timeout)[-1]
    return {"mean": final["eval/mean_return"], "std": final["eval/std_return"], "steps": final["step"]}


def run_sb3(run: Run, python: Path, timeout: float) -> dict[str, Any]:
    command = [str(python), str(SCRIPT), "--worker", "sb3", "--agent", run.agent, "--env", run.env.id,
               "--steps", str(run.budget), "--seed", str(run.seed)]
    done = subprocess.run(command, env=runner.single_thread_env(), capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "mean": statistics.fmean(result["returns"])}


def random_baseline(env_id: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--worker", "random", "--env", env_id], cwd=ROOT,
                          env=runner.single_thread_env(), capture_output=True, text=True, check=True, timeout=600)
    returns = json.loads(done.stdout.strip().splitlines()[-1])["returns"]
    return {"side": "random", "env": env_id, "returns": returns, "mean": statistics.fmean(returns),
            "std": statistics.pstdev(returns)}


# ---------------------------------------------------------------------------------------------------- the plan
def supported(agent: str, env: Env) -> bool:
    return env.actions in PEERS[agent][2]


def build_plan(agents: list[str], families: list[str], budgets: list[str], seeds: list[int],
               envs: list[str] | None) -> list[Run]:
    """Every run, cheapest cells first (family by family, short budget before medium); each seed's two sides
    next to each other so they run side by side."""
    plan = []
    for budget_name in budgets:
        for family in families:
            for env in (e for e in ENVS if e.family == family and (envs is None or e.id in envs)):
                for agent in (a for a in agents if supported(a, env)):
                    for seed in seeds:
                        sides = ("rlkit", "sb3") if PEERS[agent][0] else ("rlkit",)
                        plan += [Run(agent, env, budget_name, BUDGETS[family][budget_name], seed, side)
                                 for side in sides]
    return plan


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_done(run: Run, results: list[dict[str, Any]], fingerprints: dict[tuple[str, str, int], tuple[str, ...]],
            sb3_version: str | None) -> bool:
    for r in results:
        if (r.get("side"), r.get("agent"), r.get("env"), r.get("budget"), r.get("seed")) != \
                (run.side, run.agent, run.env.id, run.budget, run.seed):
            continue
        if run.side == "rlkit" and r.get("fingerprint") in fingerprints.get(run.cell, ()):
            return True
        if run.side == "sb3" and (sb3_version is None or r.get("sb3") == sb3_version):
            return True
    return False


# ---------------------------------------------------------------------------------------------------- the report
def verdict(ours: list[float], theirs: list[float]) -> str:
    """win / tie / loss of the seeds' means, a tie within the larger standard deviation over seeds."""
    if not ours or not theirs:
        return "-"
    spread = max(statistics.stdev(ours) if len(ours) > 1 else 0.0,
                 statistics.stdev(theirs) if len(theirs) > 1 else 0.0)
    gap = statistics.fmean(ours) - statistics.fmean(theirs)
    if abs(gap) <= spread:
        return "tie"
    return "win" if gap > 0 else "loss"


def learns(ours: list[float], random: dict[str, Any] | None) -> str:
    if not ours or random is None:
        return "-"
    return "yes" if statistics.fmean(ours) > random["mean"] + random["std"] else "NO"


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {sd:.1f} ({len(values)})"


def current(results: list[dict[str, Any]], fingerprints: dict[tuple[str, str, int], tuple[str, ...]] | None
            ) -> list[dict]:
    """The runs that still stand: rlkit runs of the current defaults (when fingerprints are known), the newest
    record of each (side, cell, seed)."""
    latest: dict[tuple, dict] = {}
    for r in results:
        if r.get("side") not in ("rlkit", "sb3"):
            continue
        cell = (r["agent"], r["env"], r["budget"])
        if r["side"] == "rlkit" and fingerprints is not None and cell in fingerprints \
                and r.get("fingerprint") not in fingerprints[cell]:
            continue
        latest[(r["side"], *cell, r["seed"])] = r
    return list(latest.values())


def summarize(results: list[dict[str, Any]], plan: list[Run],
              fingerprints: dict[tuple[str, str, int], tuple[str, ...]] | None = None) -> list[dict[str, Any]]:
    standing = current(results, fingerprints)
    randoms = {r["env"]: r for r in results if r.get("side") == "random"}
    rows, seen = [], set()
    for run in plan:
        if run.cell in seen:
            continue
        seen.add(run.cell)
        runs = [r for r in standing if (r["agent"], r["env"], r["budget"]) == run.cell]
        side = {name: [r["mean"] for r in runs if r["side"] == name] for name in ("rlkit", "sb3")}
        wall = {name: [r["wall_s"] for r in runs if r["side"] == name] for name in ("rlkit", "sb3")}
        planned = {name: sum(1 for r in plan if r.cell == run.cell and r.side == name) for name in ("rlkit", "sb3")}
        rows.append({"agent": run.agent, "env": run.env.id, "budget": run.budget, "planned": planned,
                     "rlkit": side["rlkit"],
                     "sb3": side["sb3"], "random": randoms.get(run.env.id, {}).get("mean"),
                     "verdict": verdict(side["rlkit"], side["sb3"]) if PEERS[run.agent][0] else "no peer",
                     "learns": learns(side["rlkit"], randoms.get(run.env.id)),
                     "wall_rlkit": statistics.fmean(wall["rlkit"]) if wall["rlkit"] else None,
                     "wall_sb3": statistics.fmean(wall["sb3"]) if wall["sb3"] else None})
    return rows


def print_report(rows: list[dict[str, Any]], markdown: bool) -> None:
    header = ["agent", "env", "steps", "rlkit", "SB3", "random", "verdict", "learns", "wall s rlkit/SB3"]
    lines = []
    for row in rows:
        if not row["rlkit"] and not row["sb3"]:
            continue
        wall = "/".join("-" if w is None else f"{w:.0f}" for w in (row["wall_rlkit"], row["wall_sb3"]))
        random = "-" if row["random"] is None else f"{row['random']:.1f}"
        lines.append([row["agent"], row["env"], f"{row['budget']:,}", mean_sd(row["rlkit"]), mean_sd(row["sb3"]),
                      random, row["verdict"], row["learns"], wall])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)] if lines else []
        for line in [header, *lines]:
            print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    counts = {v: sum(row["verdict"] == v for row in rows) for v in ("win", "tie", "loss")}
    learned = sum(row["learns"] == "yes" for row in rows)
    judged = sum(row["learns"] in ("yes", "NO") for row in rows)
    unrun = [row for row in rows if not row["rlkit"] or (PEERS[row["agent"]][0] and not row["sb3"])]
    # Run on both sides, but with fewer seeds than planned on one (a sweep stopped by --max-minutes).
    short = [row for row in rows if row not in unrun and
             (len(row["rlkit"]) < row["planned"]["rlkit"] or len(row["sb3"]) < row["planned"]["sb3"])]
    print(f"\nwins {counts['win']}, ties {counts['tie']}, losses {counts['loss']}; learns on {learned} of {judged} "
          f"cells; {len(unrun)} of {len(rows)} cells not run, {len(short)} run with fewer seeds than planned")
    if unrun:
        print("not run: " + ", ".join(f"{r['agent']}/{r['env']}/{r['budget']}" for r in unrun))
    if short:
        print("fewer seeds: " + ", ".join(f"{r['agent']}/{r['env']}/{r['budget']} ({len(r['rlkit'])} rlkit, "
                                          f"{len(r['sb3'])} SB3 of {r['planned']['rlkit']})" for r in short))


# ---------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default=",".join(WITH_PEER),
                        help=f"comma-separated, from {', '.join(PEERS)}, or 'all' (default: those with an SB3 "
                             "peer)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, from {', '.join(FAMILIES)}")
    parser.add_argument("--envs", help="comma-separated gymnasium ids: only these envs of the families")
    parser.add_argument("--budgets", default="short,medium", help="short, medium or both")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N per cell")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--max-minutes", type=float, help="start no run after this many minutes (running ones end)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the runs so far, one JSON per line")
    parser.add_argument("--venv", type=Path, default=vs_sb3.DEFAULT_VENV, help="SB3's virtual environment")
    parser.add_argument("--report", action="store_true", help="print the table of the results so far; run nothing")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; install and run nothing")
    parser.add_argument("--worker", choices=("sb3", "random"), help=argparse.SUPPRESS)
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    parser.add_argument("--env", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.agents = list(PEERS) if args.agents == "all" else args.agents.split(",")
    args.families, args.budgets = args.families.split(","), args.budgets.split(",")
    args.envs = args.envs.split(",") if args.envs else None
    for name, given, known in (("agent", args.agents, PEERS), ("family", args.families, FAMILIES),
                               ("budget", args.budgets, ("short", "medium")),
                               ("env", args.envs or [], [e.id for e in ENVS])):
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"unknown {name}(s) {', '.join(unknown)}: pick from {', '.join(known)}")
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be at least 1")
    args.venv = args.venv.expanduser().resolve()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker == "sb3":
        print(json.dumps(sb3_worker(args.agent, args.env, args.steps, args.seed)))
        return
    if args.worker == "random":
        print(json.dumps(random_worker(args.env)))
        return
    plan = build_plan(args.agents, args.families, args.budgets, list(range(1, args.seeds + 1)), args.envs)
    results = load_results(args.results)
    if args.report:  # against the current defaults: runs of other configs are stale
        fingerprints = fingerprints_of(plan, args.jobs)
        print_report(summarize(results, plan, fingerprints), args.markdown)
        return
    if args.dry_run:
        cells = len({run.cell for run in plan})
        print(f"SB3 venv: {args.venv} ({'exists' if args.venv.exists() else 'would be created'}): stable-baselines3=="
              f"{vs_sb3.SB3_VERSION} {' '.join(SB3_EXTRA)}")
        print(f"{cells} cells, {len(plan)} runs, {args.jobs} at a time; results: {args.results}")
        for run in plan:
            print(f"{run.side} {run.agent} {run.env.id} {run.budget_name}={run.budget} seed {run.seed}")
        return
    versions = vs_sb3.ensure_venv(args.venv, SB3_EXTRA)
    cpu = vs_sb3.cpu_description()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; rlkit {commit}; "
          f"{', '.join(f'{k} {v}' for k, v in versions.items())}")
    print(f"CPU: {cpu['model']}, {cpu['cpus']} CPUs\nflags: {cpu['flags']}", flush=True)
    fingerprints = fingerprints_of(plan, args.jobs)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def record(entry: dict[str, Any]) -> None:
        with lock, args.results.open("a") as out:
            out.write(json.dumps(entry) + "\n")
            results.append(entry)

    for env_id in dict.fromkeys(run.env.id for run in plan):
        if not any(r.get("side") == "random" and r["env"] == env_id for r in results):
            record(random_baseline(env_id))
    todo = [run for run in plan if not is_done(run, results, fingerprints, versions["stable-baselines3"])]
    print(f"{len(plan) - len(todo)} of {len(plan)} runs already in {args.results}; {len(todo)} to go", flush=True)
    started = time.monotonic()
    python = args.venv / "bin" / "python"
    timeout = 4 * 3600

    def execute(run: Run) -> None:
        if args.max_minutes is not None and time.monotonic() - started > 60 * args.max_minutes:
            return
        began = time.monotonic()
        try:
            result = run_rlkit(run, timeout) if run.side == "rlkit" else run_sb3(run, python, timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            print(f"FAILED {run.side} {run.agent} {run.env.id} {run.budget} seed {run.seed}: {error}", flush=True)
            return
        wall = time.monotonic() - began
        entry = {"side": run.side, "agent": run.agent, "env": run.env.id, "budget": run.budget, "seed": run.seed,
                 **result, "wall_s": round(wall, 1), "cpu": cpu["model"],
                 "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"}
        entry.update({"fingerprint": fingerprints[run.cell][0], "commit": commit} if run.side == "rlkit"
                     else {"sb3": versions["stable-baselines3"]})
        record(entry)
        print(f"{run.side:5} {run.agent:5} {run.env.id:26} {run.budget:>7,} seed {run.seed}: "
              f"{result['mean']:9.1f} in {wall:5.0f} s", flush=True)

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(execute, todo))
    print()
    print_report(summarize(results, plan, fingerprints), args.markdown)


if __name__ == "__main__":
    main()
