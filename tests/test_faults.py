"""Faults a run must survive: interrupts, kills at any moment, numerical blow-ups, a second training on the same
directory, damaged files. Each test names the defect of issue 17 it covers (D1...)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlkit.agents import get_agent_spec
from rlkit.checkpoint import load_checkpoint
from rlkit.envs import make_env
from rlkit.errors import UserError, run_command
from rlkit.sources import make_rl_source

ROOT = str(Path(__file__).resolve().parents[1])


def dqn_source(**changes):
    spec = get_agent_spec("dqn")
    config = dataclasses.replace(spec.preset("other"), hidden=(8,), learning_starts=64, train_frequency=32,
                                 gradient_steps=16, batch_size=8, **changes)
    env = make_env("CartPole", 1)
    agent = spec.agent_class(config, env.single_observation_space, env.single_action_space, total_steps=1000, seed=0)
    env.close()
    return make_rl_source(agent, "CartPole", 1, seed=0, sticky_actions=False, total_steps=1000)


def test_resume_without_replay_refills_before_sampling():
    """D1: a checkpoint taken mid training phase (updates still due) resumed without saved replay steps the env
    until replay is ready again instead of sampling an empty buffer."""
    source = dqn_source()
    source.reset(seed=0)
    while source.pending_updates < 2:  # stop inside a training phase: updates due, as a Ctrl-C usually finds it
        source.next()
    state = source.state_dict()
    source.close()

    resumed = dqn_source()
    resumed.load_state_dict(state)
    resumed.reset(seed=1)
    batches = []
    while not batches:
        batch = resumed.next()  # old code: RuntimeError, replay holds no complete transition
        if batch is not None:
            batches.append(batch)
    assert resumed.buffer.added >= 64  # refilled to learning_starts before the first sample
    resumed.close()


CARTPOLE = ["--agent", "dqn", "--env", "CartPole", "--hidden", "8", "--learning-starts", "100", "--eval-episodes", "0",
            "--no-progress"]


def test_a_second_training_on_a_run_directory_is_refused(tmp_path, capsys):
    """D10: while one process owns a run directory, a second training there (new or resumed) is one line; the old
    code let both write one directory (checkpoints lost, eval.jsonl interleaved)."""
    from rlkit.cli import train
    from rlkit.runlock import RunLock

    run = tmp_path / "run"
    with RunLock(run):
        with pytest.raises(UserError, match=r"in use by another training \(pid \d+ on .*\): wait for it to end or "
                                            r"pick another --run-dir") as error:
            train.main([*CARTPOLE, "--total-steps", "200", "--run-dir", str(run)])
        assert "\n" not in str(error.value)
    assert not (run / "lock").exists()  # released: nothing left behind


def test_a_stale_lock_of_a_killed_training_is_taken_over(tmp_path):
    """D10: a lock left by a process killed with SIGKILL does not block the directory: the next training takes it
    over, and releases it when it ends."""
    from rlkit.cli import train

    run = tmp_path / "run"
    script = (f"import time; from rlkit.runlock import RunLock; lock = RunLock({str(run)!r}); "
              "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert (run / "lock").exists()
    train.main([*CARTPOLE, "--total-steps", "200", "--run-dir", str(run)])
    assert load_checkpoint(run)["loop"]["steps"] == 200 and not (run / "lock").exists()


# ---------------------------------------------------------------------------------------------------- signals
@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    from rlkit.data import make_tiny_dataset

    return make_tiny_dataset("mnist", tmp_path_factory.mktemp("mnist"), train=256, test=64, seed=0)


def numpy_mlp(mnist_dir, run_dir):
    return ["--task", "mnist", "--net", "numpy-mlp", "--data-dir", str(mnist_dir), "--max-steps", "24",
            "--batch-size", "16", "--checkpoint-interval", "8", "--run-dir", str(run_dir), "--no-progress"]


@pytest.fixture(scope="module")
def whole_run(mnist_dir, tmp_path_factory):
    from rlkit.cli import train

    run = tmp_path_factory.mktemp("whole")
    train.main(numpy_mlp(mnist_dir, run))
    return load_checkpoint(run)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
@pytest.mark.parametrize("moment", ["update", "write"])
def test_a_signal_saves_an_iteration_boundary_and_the_resumed_run_equals_the_whole_one(
        mnist_dir, whole_run, tmp_path, monkeypatch, capsys, signum, moment):
    """D5, D7, D19: SIGTERM, SIGINT or SIGHUP in the middle of an update (the learner's counter advanced, its
    weights not yet) or of a checkpoint write lets that finish, saves the boundary state, prints the resume command
    and exits 128 + the signal; resuming gives exactly the weights of the uninterrupted run (the old code saved
    the torn update, or died on SIGTERM without saving)."""
    import rlkit.checkpoint
    from rlkit.cli import train
    from rlkit.supervised.numpy_nn import NumpyClassifier

    if moment == "update":
        real_update = NumpyClassifier.update
        calls = []

        def update(self, batch):
            calls.append(1)
            if len(calls) == 11:
                os.kill(os.getpid(), signum)
            return real_update(self, batch)

        monkeypatch.setattr(NumpyClassifier, "update", update)
    else:
        real_save = torch.save

        def save(data, f, *args, **kwargs):
            if data["loop"]["steps"] == 16 and Path(f.name).name == ".checkpoint.pt.tmp":  # not best.pt's write
                os.kill(os.getpid(), signum)
            real_save(data, f, *args, **kwargs)

        monkeypatch.setattr(rlkit.checkpoint.torch, "save", save)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        train.main(numpy_mlp(mnist_dir, run))
    assert stop.value.code == 128 + signum
    monkeypatch.undo()
    saved = load_checkpoint(run)
    assert saved["loop"]["steps"] == saved["learner"]["updates"] == (11 if moment == "update" else 16)
    assert f"checkpoint saved; continue with --resume {run}" in capsys.readouterr().out
    train.main(["--resume", str(run), "--no-progress"])
    resumed = load_checkpoint(run)
    assert resumed["loop"]["steps"] == whole_run["loop"]["steps"] == 24
    expected = whole_run["learner"]["classifier"]

    def same(a, b):
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b

    assert same(resumed["learner"]["classifier"], expected)


# ---------------------------------------------------------------------------------------------------- SIGKILL
KILLS = 20
FAULT_TOTAL = 3000
FAULT_RUN = ["--agent", "dqn", "--env", "CartPole", "--hidden", "8", "--total-steps", str(FAULT_TOTAL),
             "--learning-starts", "100", "--train-frequency", "16", "--gradient-steps", "4", "--buffer-size", "4000",
             "--checkpoint-interval", "150", "--eval-episodes", "0", "--save-buffer", "--no-progress"]
MAY_BE_LEFT = {".checkpoint.pt.tmp", ".saving"}
"""What a kill may leave: one file and one folder of fixed names (removed by the next run), never a pile."""
RUN_FILES = {"checkpoint.pt", "replay.npz", "config.json", "lock"}


def test_sigkill_at_random_moments_never_loses_the_run(tmp_path):
    """D14, D18 and the fault-injection suite: a DQN run with --save-buffer is killed with SIGKILL 20 times at
    random moments, a third of them inside a checkpoint write (slowed down to be hit). After each kill the directory
    holds a loadable checkpoint (once one was written), replay no newer than it, and only fixed-name leftovers; the
    next start resumes it, and the last reaches the total with nothing left over."""
    out = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=240, check=False,
                         env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["killed"] == KILLS and report["final_steps"] == FAULT_TOTAL
    assert report["checkpoints_loadable"] == report["checkpoints_seen"] >= KILLS // 2


def _drive(root: Path) -> None:
    """Runs in its own process (imports once, then forks each training so 20 of them fit in seconds)."""
    import random
    import time

    import numpy as np
    import torch.utils.tensorboard  # imported once here rather than in each child

    from rlkit.cli import train
    from rlkit.errors import run_command

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo: seconds
    run, markers = root / "run", root / "markers"
    markers.mkdir()
    rng = random.Random(17)

    def child(argv: list[str], slow: bool) -> None:
        log = os.open(root / "children.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 1)
        os.dup2(log, 2)
        if slow:  # widen the windows inside a checkpoint write (after the data, before each rename) to hit them
            real_fsync, real_replace = os.fsync, os.replace

            def fsync(fd):
                (markers / str(os.getpid())).touch()
                time.sleep(0.1)
                real_fsync(fd)

            def replace(a, b):
                time.sleep(0.03)
                real_replace(a, b)

            os.fsync, os.replace = fsync, replace
        code = 0
        try:
            run_command(lambda: train.main(argv))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: BLE001 - anything else is a failure the parent reports from the log
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)

    def argv() -> list[str]:
        return ["--resume", str(run), "--no-progress"] if (run / "checkpoint.pt").exists() else \
            [*FAULT_RUN, "--run-dir", str(run)]

    def check(after: str) -> bool:
        names = {p.name for p in run.iterdir()} if run.exists() else set()
        odd = {n for n in names - RUN_FILES - MAY_BE_LEFT if not n.startswith("events.out.tfevents")}
        assert not odd, f"{after}: unexpected files {odd}"
        counts["leftovers"] += bool(names & MAY_BE_LEFT)
        if "checkpoint.pt" not in names:
            assert "replay.npz" not in names, f"{after}: replay without a checkpoint"
            return False
        checkpoint = load_checkpoint(run)  # raises if it is not loadable
        if "replay.npz" in names:
            with np.load(run / "replay.npz") as replay:
                added = int(replay["scalars"][1])
            assert added <= checkpoint["source"]["steps"], f"{after}: replay ({added}) newer than the checkpoint"
            assert (run / "replay.npz").stat().st_mtime_ns <= (run / "checkpoint.pt").stat().st_mtime_ns, after
        return True

    counts = {"leftovers": 0}
    killed = seen = loadable = in_write = 0
    for i in range(KILLS):
        during_write = i % 3 == 0
        for marker in markers.iterdir():
            marker.unlink()
        pid = os.fork()
        if pid == 0:
            child(argv(), slow=True)
        if during_write:
            deadline = time.monotonic() + 20
            while not any(markers.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.12))
        else:
            time.sleep(rng.uniform(0.05, 0.8))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, (root / "children.log").read_text()[-3000:]
        killed += 1
        in_write += during_write
        if check(f"after kill {i + 1}"):
            seen += 1
            loadable += 1
    pid = os.fork()
    if pid == 0:
        child(argv(), slow=False)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (root / "children.log").read_text()[-3000:]
    check("after the last resume")
    names = {p.name for p in run.iterdir()}
    assert not names & MAY_BE_LEFT and "lock" not in names, names
    final = load_checkpoint(run)["loop"]["steps"]
    print(json.dumps({"killed": killed, "killed_in_write": in_write, "checkpoints_seen": seen,
                      "checkpoints_loadable": loadable, "kills_leaving_temporary_files": counts["leftovers"],
                      "final_steps": final}))


if __name__ == "__main__":
    _drive(Path(sys.argv[1]))


# ---------------------------------------------------------------------------------------------------- torchrun
class _Steps:
    recent_returns = ()

    def __init__(self):
        self.steps = 0

    def next(self):
        self.steps += 1
        return self.steps

    def pop_finished(self):
        return []

    def reset(self, seed=None):
        pass

    def close(self):
        pass

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class _SignalledOnOneRank:
    """Only the second process gets SIGTERM, during its fifth update."""

    def __init__(self, rank):
        self.rank, self.updates = rank, 0

    def update(self, batch):
        self.updates += 1
        if self.rank == 1 and self.updates == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state):
        self.updates = state["updates"]


def _rank_process(rank: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from rlkit.distributed import exit_without_teardown, init_distributed, shutdown
    from rlkit.loop import Interrupted, Loop, LoopConfig

    init_distributed(torch.device("cpu"))
    try:
        loop = Loop(_SignalledOnOneRank(rank), _Steps(), LoopConfig(total_steps=40, progress=False),
                    Path(tmp) / "run", header={"kind": "test"})
        try:
            loop.run()
            outcome = [0, loop.source.steps]
        except Interrupted as stop:
            outcome = [stop.exit_code, loop.source.steps]
        (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(outcome))
    finally:
        shutdown()
    exit_without_teardown()


def test_under_torchrun_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path):
    """Build item 1: a signal reaching one process first stops all of them at the same iteration, after the first
    one saved (the old code let that one die while the others ran on, or hung in their next collective)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_process, args=(port, str(tmp_path)), nprocs=2, join=True)
    outcomes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert outcomes == [[143, 5], [143, 5]]
    assert load_checkpoint(tmp_path / "run")["loop"]["steps"] == 5


# ---------------------------------------------------------------------------------------------------- a source lost
class _LostWithASignal(_Steps):
    """A parameter server's source as torchrun leaves it: a worker died (``failure()`` names it) and torchrun's stop
    signal arrives during the step after, before :meth:`next` took the loss from its queue."""

    def __init__(self):
        super().__init__()
        self.lost: str | None = None
        self.handler_while_closing = None

    def next(self):
        if self.steps == 3:
            self.lost = "parameter-server worker 2 (rank 2) died at step 3 (eof)"
            os.kill(os.getpid(), signal.SIGTERM)
        return super().next()

    def failure(self):
        return self.lost

    def close(self):
        self.handler_while_closing = signal.getsignal(signal.SIGTERM)


def test_a_stop_signal_that_came_with_a_lost_source_reports_the_loss_with_a_checkpoint(tmp_path, capsys):
    """The server of `--distributed ps-sync` whose worker was killed said "interrupted (SIGTERM)" (torchrun's reply
    to the death) instead of naming the worker; and it restored the default SIGTERM handler before closing its
    source, so a signal while closing killed it before it said anything."""
    from rlkit.errors import SourceLost
    from rlkit.loop import Loop, LoopConfig

    source = _LostWithASignal()
    loop = Loop(_SignalledOnOneRank(0), source, LoopConfig(total_steps=40, progress=False), tmp_path / "run",
                header={"kind": "test"})
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SourceLost, match=r"^parameter-server worker 2 \(rank 2\) died at step 3 \(eof\); checkpoint "
                                         r"saved: --resume .* continues from step 4$") as ended:
        loop.run()
    # Said before the loop gave the signals back (torchrun's SIGTERM must not silence it), and only once.
    assert ended.value.reported and capsys.readouterr().err == f"error: {ended.value}\n"
    with pytest.raises(SystemExit):
        run_command(lambda: (_ for _ in ()).throw(ended.value))
    assert capsys.readouterr().err == ""
    assert load_checkpoint(tmp_path / "run")["loop"]["steps"] == 4  # the step in progress when the signal came
    assert source.handler_while_closing == loop._on_signal  # closing still under the loop's handler
    assert signal.getsignal(signal.SIGTERM) == before  # and the caller's handler back after


@pytest.mark.parametrize("ending, code, said", [
    ("raise UserError('no such thing: drop --thing')", 2, "error: no such thing: drop --thing"),
    ("sys.exit(143)", 143, ""),
    ("raise RuntimeError('a crash')", 1, "RuntimeError: a crash"),
    ("pass", 0, ""),
])
def test_under_torchrun_train_leaves_with_its_status_and_without_teardown(ending, code, said):
    """Under torchrun a failed run (its error printed, its checkpoint saved) went through the interpreter's
    teardown, where RPC threads still talking to a dead peer aborted it (SIGABRT) or hung it, so torchrun reported
    the abort. Every ending now leaves without teardown (the atexit line never prints) and keeps its status."""
    program = ("import atexit, sys; from rlkit.distributed import run_and_leave; "
               "from rlkit.errors import UserError, run_command; atexit.register(lambda: print('teardown ran')); "
               f"\ndef main():\n    print('ran', flush=False)\n    {ending}\n"
               "run_and_leave(lambda: run_command(main))")
    for world, torn_down in (("2", False), ("1", True)):
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                              env={**os.environ, "WORLD_SIZE": world}, timeout=60)
        assert done.returncode == code, done.stderr
        assert done.stdout.startswith("ran")  # flushed before leaving
        assert ("teardown ran" in done.stdout) == torn_down, (world, done.stdout)
        assert said in done.stderr
        if code == 2:
            assert done.stderr.strip() == said  # one line, no traceback


def test_a_peer_gone_at_the_rpc_groups_shutdown_is_one_line(monkeypatch):
    """A parameter-server worker told to stop, whose server then left first (it had saved and exited), printed
    torch's shutdown traceback: the graceful shutdown's all-gather failed on the closed connection."""
    from torch.distributed import rpc

    from rlkit import distributed

    def gone(*args, **kwargs):
        raise RuntimeError("eof (this error originated at tensorpipe/transport/shm/connection_impl.cc:259)")

    monkeypatch.setattr(rpc, "shutdown", gone)
    monkeypatch.setattr(distributed, "_rpc_joined", True)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UserError, match=r"^process 1 lost another process while leaving the RPC group \(eof\): the "
                                        r"first process's message says why the run stopped$"):
        distributed.shutdown()
    assert not distributed._rpc_joined  # not tried again


@pytest.mark.parametrize("entry", ["train.py", "rlkit train"])
def test_train_py_and_rlkit_train_leave_through_run_and_leave(entry):
    """Both ways in reach the same ending under torchrun: a refused flag is one line, status 2, no teardown."""
    root = Path(__file__).resolve().parents[1]
    start = (f"import runpy; sys.argv = ['train.py', '--agent', 'nosuch', '--env', 'CartPole']; "
             f"runpy.run_path({str(root / 'train.py')!r}, run_name='__main__')" if entry == "train.py" else
             "from rlkit.cli.main import main; main(['train', '--agent', 'nosuch', '--env', 'CartPole'])")
    program = f"import atexit, sys; atexit.register(lambda: print('teardown ran')); {start}"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WORLD_SIZE": "2", "PYTHONPATH": str(root)})
    assert done.returncode == 2 and "teardown ran" not in done.stdout, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
