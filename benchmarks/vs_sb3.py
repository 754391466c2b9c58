"""rlkit against Stable-Baselines3 on one machine in one sitting: training steps/s of the same workloads with the
same hyperparameters, the two sides alternating, each side's spread over repeats.

    python benchmarks/vs_sb3.py                                    # every workload, 3 repeats, 25 s windows
    python benchmarks/vs_sb3.py --workloads dqn-breakout,ppo-halfcheetah --repeats 5 --json out.json
    python benchmarks/vs_sb3.py --dry-run                          # the plan only: installs and runs nothing

SB3 goes into a virtual environment of its own (``--venv``), never into rlkit's dependencies. The venv sees this
interpreter's packages (``--system-site-packages``) and every one of them is pinned as a constraint, so both sides
run the same torch, gymnasium, ale-py, mujoco and numpy, and pip cannot pull another torch (an unpinned one is a
multi-GB CUDA build).

Each measurement is a worker process (``--worker rlkit|sb3``, the SB3 one run by the venv's python) that trains
through the library's own ``learn()`` with a callback: the window opens at the first update boundary past the
warm-up (learning has started and a few updates ran) and closes at the first boundary ``--seconds`` later; the
worker then stops the run and prints one JSON line. Single runs use ``--threads`` torch threads on both sides (2,
or OMP_NUM_THREADS when set); the ``-x2`` workloads run two seeds at once, one thread each, and add their steps/s.

Throughput differs between machines and drifts between runs: compare only the ratios of one run, and keep the CPU
model and flags of the header with them (benchmarks/RESULTS.md).
"""

# Only the standard library at the top: the parent imports neither torch nor either library, the SB3 worker never
# imports rlkit, and the rlkit worker never imports SB3. Each worker imports its side inside its function.
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
SB3_VERSION = "2.9.2"  # accepts torch >= 2.8 and gymnasium < 2.0
DEFAULT_VENV = Path("~/.cache/rlkit-bench/sb3-venv").expanduser()
BUDGET = 2**30  # steps passed to learn(): never reached (the window stops the run), a whole number of rollouts


@dataclass(frozen=True)
class Workload:
    """One training configuration, spelled in each library's own names (the values are the same)."""

    name: str
    agent: str  # rlkit agent name; the SB3 class is its upper case
    env: str  # rlkit's short env name
    sb3_env: str  # the gymnasium id SB3 makes
    num_envs: int
    rlkit: dict[str, Any]  # rlkit.make options
    sb3: dict[str, Any]  # SB3 constructor arguments; "lin_X": X annealed linearly to 0 (rl-zoo's spelling)
    warmup_steps: int  # the window opens at the first update boundary at or past this step
    updates_per_step: float  # gradient steps per env step (to report updates/s)
    copies: int = 1  # processes side by side, seeds seed..seed+copies-1; the aggregate is their sum
    sb3_normalize: bool = False  # VecNormalize (obs and reward), as rlkit's normalize_obs/normalize_reward
    atari: bool = False


def dqn_breakout() -> Workload:
    # Epsilon held at 0.01: the measurement is of training after exploration ended (shared/MACHINE.md).
    shared = {"buffer_size": 100_000, "learning_starts": 1_000, "batch_size": 32, "gamma": 0.99,
              "learning_rate": 1e-4, "target_update_interval": 1_000, "gradient_steps": 1, "max_grad_norm": 10.0}
    return Workload(
        "dqn-breakout", "dqn", "Breakout", "BreakoutNoFrameskip-v4", num_envs=1,
        rlkit={**shared, "train_frequency": 4, "start_e": 0.01, "end_e": 0.01},
        sb3={**shared, "train_freq": 4, "exploration_initial_eps": 0.01, "exploration_final_eps": 0.01},
        warmup_steps=1_000 + 4 * 50, updates_per_step=1 / 4, atari=True)


def ppo(name: str, env: str, sb3_env: str, num_envs: int, num_steps: int, num_minibatches: int, epochs: int,
        copies: int = 1, atari: bool = False, normalize: bool = False, **common: Any) -> Workload:
    """A PPO workload: rlkit's CleanRL names against SB3's (batch_size = num_envs * num_steps / num_minibatches).
    Both clip the value loss with the policy's clip and anneal the learning rate linearly to 0."""
    lr, clip = common.pop("learning_rate"), common.pop("clip_coef")
    rollout = num_envs * num_steps
    return Workload(
        name, "ppo", env, sb3_env, num_envs, copies=copies, atari=atari, sb3_normalize=normalize,
        rlkit={**common, "num_steps": num_steps, "num_minibatches": num_minibatches, "update_epochs": epochs,
               "learning_rate": lr, "anneal_lr": True, "clip_coef": clip, "clip_vloss": True,
               "normalize_obs": normalize, "normalize_reward": normalize, **SB3_PPO_POLICY},
        sb3={**common, "n_steps": num_steps, "batch_size": rollout // num_minibatches, "n_epochs": epochs,
             "learning_rate": f"lin_{lr}", "clip_range": clip, "clip_range_vf": clip},
        warmup_steps=2 * rollout, updates_per_step=epochs * num_minibatches / rollout)


def sac(name: str, env: str, sb3_env: str, copies: int = 1) -> Workload:
    # One learning rate for every network, as SB3 has (rlkit's learning_rate sets policy_lr and q_lr).
    shared = {"buffer_size": 100_000, "learning_starts": 1_000, "batch_size": 256, "gamma": 0.99, "tau": 0.005,
              "learning_rate": 3e-4, "gradient_steps": 1}
    return Workload(name, "sac", env, sb3_env, num_envs=1, copies=copies,
                    rlkit={**shared, "train_frequency": 1, "autotune": True, "policy_frequency": 1, "alpha": 1.0,
                           "hidden": (256, 256)},  # SB3: the actor every step, ent_coef "auto" starts at 1
                    sb3={**shared, "train_freq": 1, "ent_coef": "auto"},
                    warmup_steps=1_000 + 50, updates_per_step=1.0)


SB3_PPO_POLICY = {"hidden": (64, 64), "activation": "tanh", "log_std_init": 0.0, "normalize_advantage": True,
                  "target_kl": 0.0}
"""SB3's MlpPolicy and PPO defaults in rlkit's names: set on the rlkit side, so that no value of a shipped per-env
file (rl-zoo's HalfCheetah entry has 256x256 ReLU nets) survives into a measurement (see :func:`check_same_config`)."""
PPO_COMMON = {"gamma": 0.99, "gae_lambda": 0.95, "vf_coef": 0.5, "max_grad_norm": 0.5}
WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    dqn_breakout(),
    ppo("ppo-breakout", "Breakout", "BreakoutNoFrameskip-v4", num_envs=8, num_steps=128, num_minibatches=4,
        epochs=4, atari=True, learning_rate=2.5e-4, clip_coef=0.1, ent_coef=0.01, **PPO_COMMON),
    sac("sac-halfcheetah", "HalfCheetah", "HalfCheetah-v5"),
    ppo("ppo-halfcheetah", "HalfCheetah", "HalfCheetah-v5", num_envs=1, num_steps=2048, num_minibatches=32,
        epochs=10, normalize=True, learning_rate=3e-4, clip_coef=0.2, ent_coef=0.0, **PPO_COMMON),
    sac("sac-pendulum-x2", "Pendulum", "Pendulum-v1", copies=2),
    # rl-zoo's tuned CartPole values (rlkit's classic-control preset)
    ppo("ppo-cartpole-x2", "CartPole", "CartPole-v1", num_envs=8, num_steps=32, num_minibatches=1, epochs=20,
        copies=2, learning_rate=1e-3, clip_coef=0.2, ent_coef=0.0, gamma=0.98, gae_lambda=0.8, vf_coef=0.5,
        max_grad_norm=0.5),
)}


# ---------------------------------------------------------------------------------------------------- the window
class Barrier:
    """Copies side by side open their windows together: each one, once warmed up, leaves a file in ``folder`` and
    waits (training on) until all ``parties`` have, so the windows overlap and the sum of their rates means
    something. Without it, a copy that started first would measure part of its window beside a copy still
    starting up."""

    def __init__(self, folder: Path, name: str, parties: int):
        self.folder, self.name, self.parties = folder, name, parties

    def arrive(self) -> None:
        (self.folder / f"ready-{self.name}").touch()

    def passed(self) -> bool:
        return len(list(self.folder.glob("ready-*"))) >= self.parties


class Window:
    """Steps/s between two update boundaries: the first at or past ``warmup_steps`` (and past ``barrier``) and the
    first ``seconds`` after it. Both libraries call :meth:`mark` at the same point of their cycle, right after a
    training phase."""

    def __init__(self, warmup_steps: int, seconds: float, barrier: Barrier | None = None):
        self.warmup_steps, self.seconds, self.barrier = warmup_steps, seconds, barrier
        self.start: tuple[int, float] | None = None
        self.end: tuple[int, float] | None = None
        self._arrived = False

    def mark(self, steps: int) -> bool:
        """Record a boundary at ``steps``; False once the window has closed (stop training)."""
        now = time.perf_counter()
        if self.end is not None:
            return False
        if self.start is None:
            if steps >= self.warmup_steps:
                if self.barrier is not None and not self._arrived:
                    self.barrier.arrive()
                    self._arrived = True
                if self.barrier is None or self.barrier.passed():
                    self.start = (steps, time.perf_counter())
        elif now - self.start[1] >= self.seconds:
            self.end = (steps, now)
            return False
        return True

    def result(self, workload: Workload) -> dict[str, float]:
        if self.start is None or self.end is None:
            raise RuntimeError("training stopped before the measurement window closed")
        steps, seconds = self.end[0] - self.start[0], self.end[1] - self.start[1]
        return {"steps_per_s": steps / seconds, "updates_per_s": steps / seconds * workload.updates_per_step,
                "window_steps": steps, "window_s": seconds}


# ---------------------------------------------------------------------------------------------------- workers
def run_rlkit(workload: Workload, window: Window, seed: int, threads: int) -> dict[str, Any]:
    """Train with rlkit's Python API until the window closes."""
    import torch

    import rlkit

    class WindowCallback(rlkit.Callback):
        def on_step(self, loop, step):  # after each turn of the source and its update: a boundary
            return window.mark(step)

    check_same_config(workload)
    with tempfile.TemporaryDirectory() as run_dir:
        model = rlkit.make(workload.agent, workload.env, seed=seed, num_envs=workload.num_envs, threads=threads,
                           eval_episodes=0, checkpoint_interval=BUDGET, **workload.rlkit)
        with model:
            model.learn(BUDGET, run_dir=run_dir, callbacks=[WindowCallback()])
    return {**window.result(workload), "threads": torch.get_num_threads(), "rlkit": rlkit.__version__,
            "torch": torch.__version__}


def check_same_config(workload: Workload) -> None:
    """Refuse a workload whose rlkit side would take a value from a shipped per-env file (rlkit/hyperparams): the
    two sides must run the hyperparameters the workload spells out, and SB3 never reads those files."""
    from rlkit.jobs import JOBS

    chosen = JOBS["agent"].hyperparams({"agent": workload.agent, "env": workload.env, "total_steps": BUDGET})
    given = {*workload.rlkit, "num_envs", "total_steps"}
    if "learning_rate" in given:  # rlkit.make's alias for every *_lr field
        given |= {name for name in chosen.sources if name.endswith("_lr")}
    left = sorted(name for name, source in chosen.sources.items()
                  if source.startswith("hyperparams/") and name not in given)
    if left:
        raise SystemExit(f"{workload.name}: the rlkit side would take {', '.join(left)} from a shipped per-env file; "
                         "set them in the workload to SB3's values")


def run_sb3(workload: Workload, window: Window, seed: int, threads: int) -> dict[str, Any]:
    """Train with SB3's ``learn()`` until the window closes (run by the venv's python)."""
    import gymnasium as gym
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    torch.set_num_threads(threads)

    class WindowCallback(BaseCallback):
        # A rollout starts right after the previous training phase (on- and off-policy alike): the boundary.
        def _on_rollout_start(self) -> None:
            self.keep_going = window.mark(self.num_timesteps)

        def _on_step(self) -> bool:
            return getattr(self, "keep_going", True)

    if workload.atari:
        import ale_py

        gym.register_envs(ale_py)
        # NoFrameskip-v4 + AtariWrapper (frame skip 4, max-pool, 84x84 gray, no-ops, fire on reset, life loss,
        # reward clipping) + a stack of 4: the same preprocessing as rlkit's ALE/Breakout-v5. Skip 4 happens once.
        env = VecFrameStack(make_atari_env(workload.sb3_env, n_envs=workload.num_envs, seed=seed), n_stack=4)
    else:
        env = make_vec_env(workload.sb3_env, n_envs=workload.num_envs, seed=seed)
        if workload.sb3_normalize:
            env = VecNormalize(env, gamma=workload.sb3["gamma"])
    options = {key: linear(float(value[4:])) if isinstance(value, str) and value.startswith("lin_") else value
               for key, value in workload.sb3.items()}
    algo = getattr(sb3, workload.agent.upper())
    model = algo("CnnPolicy" if workload.atari else "MlpPolicy", env, seed=seed, device="cpu", verbose=0,
                 **options)
    model.learn(BUDGET, callback=WindowCallback())
    env.close()
    return {**window.result(workload), "threads": torch.get_num_threads(), "sb3": sb3.__version__,
            "torch": torch.__version__}


def linear(initial: float):
    """SB3's schedule for ``initial`` annealed to 0 over the budget (progress_remaining goes 1 -> 0)."""
    return lambda progress_remaining: progress_remaining * initial


def worker_main(args: argparse.Namespace) -> None:
    workload = WORKLOADS[args.workload]
    warmup = workload.warmup_steps if args.warmup_steps is None else args.warmup_steps
    barrier = Barrier(args.barrier, str(args.seed), workload.copies) if args.barrier else None
    run = run_rlkit if args.worker == "rlkit" else run_sb3
    result = run(workload, Window(warmup, args.seconds, barrier), args.seed, args.threads)
    print(json.dumps({"side": args.worker, "workload": workload.name, "seed": args.seed, **result}), flush=True)


# ---------------------------------------------------------------------------------------------------- the parent
@dataclass
class Measurement:
    """One side of one workload in one repeat: ``copies`` worker processes started together."""

    repeat: int
    workload: Workload
    side: str
    commands: list[list[str]]
    env: dict[str, str]
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        return sum(r["steps_per_s"] for r in self.results)


def worker_command(python: str | Path, side: str, workload: Workload, seconds: float, seed: int, threads: int,
                   warmup_steps: int | None) -> list[str]:
    command = [str(python), str(SCRIPT), "--worker", side, "--workload", workload.name, "--seconds", str(seconds),
               "--seed", str(seed), "--threads", str(threads)]
    return command + (["--warmup-steps", str(warmup_steps)] if warmup_steps is not None else [])


def worker_env(side: str, threads: int) -> dict[str, str]:
    """What a worker's environment changes: its threads, and for rlkit this checkout ahead of any install."""
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if side == "rlkit":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


def build_plan(args: argparse.Namespace, workloads: list[Workload]) -> list[Measurement]:
    """Every measurement in the order it runs: each repeat runs every workload for both sides, and the side that
    goes first swaps every repeat, so that drift in the machine's speed does not favour one side."""
    python = {"rlkit": sys.executable, "sb3": args.venv / "bin" / "python"}
    plan = []
    for repeat in range(args.repeats):
        for workload in workloads:
            sides = ("rlkit", "sb3") if repeat % 2 == 0 else ("sb3", "rlkit")
            for side in sides:
                threads = 1 if workload.copies > 1 else args.threads  # side by side: a thread each, or they thrash
                commands = [worker_command(python[side], side, workload, args.seconds, args.seed + i, threads,
                                           args.warmup_steps) for i in range(workload.copies)]
                plan.append(Measurement(repeat, workload, side, commands, worker_env(side, threads)))
    return plan


def run_measurement(measurement: Measurement, timeout: float) -> None:
    """Start the workers together, wait for them all, and keep each one's JSON line."""
    env = {**os.environ, **measurement.env}
    with tempfile.TemporaryDirectory(prefix="vs-sb3-barrier-") as barrier:
        commands = [command + ["--barrier", barrier] if len(measurement.commands) > 1 else command
                    for command in measurement.commands]
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                    cwd=ROOT) for command in commands]
        try:
            for command, worker in zip(commands, workers):
                try:
                    out, err = worker.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    out, err = worker.communicate()
                lines = [line for line in out.splitlines() if line.startswith("{")]
                if worker.returncode != 0 or not lines:
                    raise SystemExit(f"worker failed (exit {worker.returncode}): {shlex.join(command)}\n"
                                     f"{err[-3000:]}")
                measurement.results.append(json.loads(lines[-1]))
        finally:
            for worker in workers:  # a copy left waiting at the barrier for one that failed
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()


def installed_pins() -> list[str]:
    """``name==version`` for every distribution this interpreter has: the venv's pip constraints, so that SB3's
    install adds packages and never replaces one (torch above all)."""
    pins: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            pins.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


SHOWN = ("stable-baselines3", "torch", "gymnasium", "ale-py", "mujoco", "numpy")
"""The versions the header prints (the env libraries set the env's share of every figure)."""


def venv_versions(python: Path, extra: tuple[str, ...] = ()) -> dict[str, str] | None:
    """The versions of :data:`SHOWN` and the ``extra`` distributions the venv's python runs, or None when it cannot
    import SB3 or lacks one of them."""
    names = (*SHOWN, *extra)
    code = ("import json, stable_baselines3; from importlib.metadata import version; "
            f"print(json.dumps({{name: version(name) for name in {names!r}}}))")
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def ensure_venv(venv: Path, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Create ``venv`` with SB3 and the ``extra`` requirements (``name==version``) installed (once; later runs reuse
    it) and return the versions it runs."""
    python = venv / "bin" / "python"
    wanted = {"stable-baselines3": SB3_VERSION, **dict(req.split("==") for req in extra)}
    versions = venv_versions(python, tuple(wanted)[1:])
    if versions is None or any(versions.get(name) != version for name, version in wanted.items()):
        print(f"installing {', '.join(f'{n}=={v}' for n, v in wanted.items())} into {venv}", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        if sys.prefix != sys.base_prefix:  # this python is a venv itself: --system-site-packages would miss it
            site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            paths = [p for p in sys.path if p.endswith("site-packages")]
            Path(site, "_rlkit_bench_parent.pth").write_text("\n".join(paths) + "\n")
        constraints = venv / "constraints.txt"
        constraints.write_text("\n".join(installed_pins()) + "\n")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *(f"{n}=={v}" for n, v in wanted.items()), "-c", str(constraints)], check=True)
        versions = venv_versions(python, tuple(wanted)[1:])
    ours = metadata.version("torch")
    if versions is None or versions["torch"] != ours:
        raise SystemExit(f"the SB3 venv {venv} runs torch {versions and versions['torch']}, not this interpreter's "
                         f"{ours}: remove it and run again")
    return versions


def cpu_description() -> dict[str, str]:
    """The CPU model and flags (lscpu, else /proc/cpuinfo): figures mean nothing without them."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        text = ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "Model name" not in fields and Path("/proc/cpuinfo").exists():
        info = {key.strip(): value for key, value in (line.split(":", 1) for line in
                Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)}
        fields = {"Model name": info.get("model name", ""), "Flags": info.get("flags", "")}
    return {"model": fields.get("Model name", "unknown").strip(), "cpus": str(os.cpu_count()),
            "flags": fields.get("Flags", "unknown").strip()}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def summarize(plan: list[Measurement], workloads: list[Workload]) -> list[dict[str, Any]]:
    """Per workload: each side's steps/s over the repeats, the ratio of medians and the per-repeat ratios."""
    rows = []
    for workload in workloads:
        done = [m for m in plan if m.workload is workload]
        side = {name: {m.repeat: m.steps_per_s for m in done if m.side == name} for name in ("rlkit", "sb3")}
        ratios = [side["rlkit"][r] / side["sb3"][r] for r in side["rlkit"]]
        rows.append({"workload": workload.name, "sb3": list(side["sb3"].values()),
                     "rlkit": list(side["rlkit"].values()), "ratios": ratios,
                     "ratio_of_medians": statistics.median(side["rlkit"].values())
                     / statistics.median(side["sb3"].values())})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| workload | SB3 steps/s median (min-max) | rlkit steps/s median (min-max) | rlkit/SB3 (per-repeat range) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['workload']} | {spread(row['sb3'])} | {spread(row['rlkit'])} | {row['ratio_of_medians']:.2f}x "
              f"({min(row['ratios']):.2f}-{max(row['ratios']):.2f}) |")


def print_plan(args: argparse.Namespace, workloads: list[Workload], plan: list[Measurement]) -> None:
    print(f"SB3 venv: {args.venv} ({'exists' if args.venv.exists() else 'would be created'}): "
          f"{sys.executable} -m venv --system-site-packages {args.venv}; "
          f"{args.venv / 'bin' / 'python'} -m pip install stable-baselines3=={SB3_VERSION} -c constraints.txt")
    pins = installed_pins()
    key = [p for p in pins if p.split("==")[0] in ("torch", "gymnasium", "ale-py", "mujoco", "numpy")]
    print(f"constraints: this interpreter's {len(pins)} distributions pinned, among them {', '.join(key)}")
    print(f"{len(workloads)} workloads x {args.repeats} repeats, {args.seconds:g} s windows, {args.threads} torch "
          "threads for single runs (1 each side by side), the side going first swapped every repeat")
    for workload in workloads:
        copies = (f"{workload.copies} seeds side by side (each also given --barrier DIR, a temporary folder: their "
                  "windows open together)" if workload.copies > 1 else "1 process")
        print(f"\n{workload.name}: {workload.agent.upper()} on {workload.env} (SB3: {workload.sb3_env}), "
              f"{workload.num_envs} env(s), {copies}, window after step {workload.warmup_steps}")
        print(f"  rlkit.make options: {json.dumps(workload.rlkit)}")
        print(f"  SB3 arguments:      {json.dumps(workload.sb3)}"
              + (" + VecNormalize" if workload.sb3_normalize else "")
              + (" + make_atari_env + VecFrameStack(4)" if workload.atari else ""))
        for measurement in plan:
            if measurement.workload is workload and measurement.repeat == 0:
                env = " ".join(f"{k}={shlex.quote(v)}" for k, v in measurement.env.items())
                for command in measurement.commands:
                    print(f"  {measurement.side} worker: {env} {shlex.join(command)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated, from: {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--seconds", type=float, default=25.0, help="length of each measurement window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 2),
                        help="torch threads of a single run (default: OMP_NUM_THREADS, else 2)")
    parser.add_argument("--warmup-steps", type=int, help="open the window at this step (default: per workload)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="SB3's virtual environment")
    parser.add_argument("--json", type=Path, help="also write every measurement and the summary here")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; install and run nothing")
    parser.add_argument("--worker", choices=("rlkit", "sb3"), help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)  # a folder shared by copies side by side
    args = parser.parse_args(argv)
    args.venv = args.venv.expanduser().resolve()
    if args.worker and args.workload not in WORKLOADS:
        parser.error(f"--worker needs --workload, one of {', '.join(WORKLOADS)}")
    if args.seconds <= 0 or args.repeats < 1 or args.threads < 1:
        parser.error("--seconds must be positive, --repeats and --threads at least 1")
    unknown = [name for name in args.workloads.split(",") if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}: pick from {', '.join(WORKLOADS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    workloads = [WORKLOADS[name] for name in args.workloads.split(",")]
    plan = build_plan(args, workloads)
    if args.dry_run:
        print_plan(args, workloads, plan)
        return
    versions = ensure_venv(args.venv)
    cpu = cpu_description()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"date: {started:%Y-%m-%d %H:%M} UTC")
    print(f"CPU: {cpu['model']}, {cpu['cpus']} CPUs")
    print(f"flags: {cpu['flags']}")
    print(f"Python {sys.version.split()[0]}, {', '.join(f'{k} {v}' for k, v in versions.items())}, rlkit from "
          f"{ROOT}; torch threads: {args.threads} for single runs, 1 each side by side; {args.seconds:g} s windows, "
          f"{args.repeats} repeat(s)", flush=True)
    timeout = 3 * args.seconds + 600  # a warm-up of a few thousand steps, start-up, the window
    for measurement in plan:
        run_measurement(measurement, timeout)
        print(f"  repeat {measurement.repeat + 1} {measurement.workload.name} {measurement.side}: "
              f"{measurement.steps_per_s:,.1f} steps/s", flush=True)
    rows = summarize(plan, workloads)
    print()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({
            "date": started.isoformat(), "cpu": cpu, "versions": versions, "threads": args.threads,
            "seconds": args.seconds, "repeats": args.repeats, "summary": rows,
            "measurements": [{"repeat": m.repeat, "workload": m.workload.name, "side": m.side,
                              "steps_per_s": m.steps_per_s, "workers": m.results} for m in plan]}, indent=1))


if __name__ == "__main__":
    main()
