"""How often a parameter-server run whose worker is killed ends as it should: the server names the dead worker, saves,
and leaves with its own status (not SIGABRT, not a silent SIGTERM), and the other worker leaves with one line.

    python benchmarks/ps_worker_death.py --runs 12 --load --out /tmp/ps_death

Each run starts ``torchrun --nproc-per-node 3 train.py --distributed ps-sync`` on a tiny Fashion-MNIST set in the
official format (generated), waits for its first checkpoint, SIGKILLs rank 2 and reads torchrun's report. ``--load``
keeps two busy processes running beside it, as a full test suite does: the races it exposes need a loaded machine.
Each run's whole output is kept under ``--out``."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlkit.checkpoint import CHECKPOINT_NAME  # noqa: E402
from rlkit.data import make_tiny_dataset  # noqa: E402

TRAIN = ["--task", "fashion-mnist", "--net", "cnn", "--width", "0.125", "--batch-size", "16", "--dropout", "0",
         "--no-progress", "--distributed", "ps-sync", "--epochs", "5000", "--checkpoint-interval", "2"]


def rank_pid(root: int, rank: int) -> int | None:
    """The pid of the descendant of ``root`` (torchrun) that runs ``rank``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            if f"RANK={rank}".encode() in (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0"):
                return pid
        except OSError:
            continue
    return None


def one_run(data: Path, run: Path) -> tuple[str, dict[str, str]]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3",
               str(ROOT / "train.py"), *TRAIN, "--data-dir", str(data), "--run-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT_NAME).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = rank_pid(process.pid, 2)
    if worker is None or process.poll() is not None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        return out, {}
    os.kill(worker, signal.SIGKILL)
    try:
        out, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    return out, exit_statuses(out)


def exit_statuses(out: str) -> dict[str, str]:
    """Rank -> exit status, as torchrun's failure report prints them ("-6" for SIGABRT)."""
    return dict(re.findall(r"rank\s*: (\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*: (-?\d+)", out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--load", action="store_true", help="two busy processes beside the runs")
    parser.add_argument("--out", type=Path, required=True, help="a folder for the runs and their outputs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    if not data.exists():
        make_tiny_dataset("fashion-mnist", data, train=128, test=32, seed=0)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 if args.load else 0)]
    good = 0
    try:
        for i in range(args.runs):
            out, statuses = one_run(data, args.out / f"run{i}")
            (args.out / f"out{i}.txt").write_text(out)
            named = "parameter-server worker 2 (rank 2) died" in out
            clean = named and statuses.get("0") in ("2", "-15") and statuses.get("1") == "2"
            good += clean
            print(json.dumps({"run": i, "named": named, "server": statuses.get("0"), "worker1": statuses.get("1"),
                              "as_it_should": clean}), flush=True)
    finally:
        for hog in hogs:
            hog.kill()
    print(f"{good}/{args.runs} runs ended as they should")


if __name__ == "__main__":
    main()
