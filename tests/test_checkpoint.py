"""Checkpoints are written atomically, read safely, and the loop never loses one."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from rlkit.checkpoint import load_checkpoint, save_checkpoint
from rlkit.errors import UserError
from rlkit.loop import Interrupted, Loop, LoopConfig


def test_round_trip_with_weights_only(tmp_path):
    """Tensors, nested dicts, numpy RNG states (128-bit ints) survive a weights_only load."""
    import numpy as np

    rng_state = np.random.default_rng(3).bit_generator.state
    save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(3.0), "rng": rng_state, "n": 5})
    data = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(data["w"], torch.arange(3.0)) and data["rng"] == rng_state and data["n"] == 5
    assert data["format"] == "rlkit-checkpoint" and data["version"] == 2


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact and no temporary file behind."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"generation": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"generation": 2})
    assert load_checkpoint(path)["generation"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_code_in_a_checkpoint_is_refused(tmp_path, capsys):
    """A pickle that would call a function on load is refused with a one-line UserError, and nothing runs."""
    path = tmp_path / "evil.pt"
    torch.save({"format": "rlkit-checkpoint", "payload": RunsCodeWhenUnpickled()}, path)
    with pytest.raises(UserError, match="unsafe to load"):
        load_checkpoint(path)
    assert "this ran" not in capsys.readouterr().out


def test_newer_format_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {})
    data = torch.load(tmp_path / "c.pt", weights_only=True)
    data["version"] = 99
    torch.save(data, tmp_path / "c.pt")
    with pytest.raises(UserError, match="newer rlkit"):
        load_checkpoint(tmp_path / "c.pt")


class CountingLearner:
    def __init__(self):
        self.updates = 0

    def update(self, batch):
        self.updates += 1
        return {"losses/x": float(batch)}

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state):
        self.updates = state["updates"]


class CountingSource:
    """One step per call; a batch every other step; sends itself SIGINT (Ctrl-C) at ``interrupt_at``."""

    recent_returns = ()

    def __init__(self, interrupt_at=None):
        self.steps, self.interrupt_at = 0, interrupt_at

    def reset(self, seed=None):
        pass

    def close(self):
        pass

    def next(self):
        if self.steps == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        self.steps += 1
        return self.steps if self.steps % 2 == 0 else None

    def pop_finished(self):
        return []

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def make_loop(tmp_path, source, total=100, checkpoint_interval=30):
    config = LoopConfig(total_steps=total, checkpoint_interval=checkpoint_interval, log_interval=10, progress=False)
    return Loop(CountingLearner(), source, config, tmp_path, header={"kind": "test"})


def test_loop_checkpoints_on_schedule_and_at_the_end(tmp_path, monkeypatch):
    """Checkpoints at every multiple of the interval and at the end, with learner and source state."""
    saved_at = []
    loop = make_loop(tmp_path, CountingSource())
    original = loop.save
    monkeypatch.setattr(loop, "save", lambda: (saved_at.append(loop.source.steps), original()))
    loop.run()
    assert saved_at == [30, 60, 90, 100]
    data = load_checkpoint(tmp_path)
    assert data["loop"]["steps"] == 100 and data["learner"]["updates"] == 50 and data["kind"] == "test"


def test_interrupt_saves_and_resume_continues(tmp_path):
    """Ctrl-C writes a checkpoint; a new loop restored from it finishes the run with the same totals."""
    loop = make_loop(tmp_path, CountingSource(interrupt_at=45), checkpoint_interval=0)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    data = load_checkpoint(tmp_path)
    assert data["loop"]["steps"] == 46 and data["learner"]["updates"] == 23  # the iteration under way finished
    resumed = make_loop(tmp_path, CountingSource(), checkpoint_interval=0)
    resumed.restore(data)
    resumed.run()
    assert resumed.source.steps == 100 and resumed.learner.updates == 50


class SignallingLearner(CountingLearner):
    """Sends itself ``signum`` in the middle of update number ``at`` (half its work done), like a Ctrl-C would."""

    def __init__(self, at, signum=signal.SIGINT):
        super().__init__()
        self.at, self.signum = at, signum

    def update(self, batch):
        if self.updates + 1 == self.at:
            os.kill(os.getpid(), self.signum)
        return super().update(batch)


def test_signal_mid_update_saves_the_iteration_boundary_and_resume_equals_the_whole_run(tmp_path, capsys):
    """D19: Ctrl-C during an update finishes that iteration, then saves: steps and updates agree (the old code
    saved the source's step with the update not applied), and the resumed run ends as the uninterrupted one."""
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under `nohup ... &`
    config = LoopConfig(total_steps=100, checkpoint_interval=0, log_interval=10, progress=False)
    loop = Loop(SignallingLearner(at=20), CountingSource(), config, tmp_path, header={"kind": "test"})
    with pytest.raises(Interrupted) as stop:
        loop.run()
    assert stop.value.saved and stop.value.exit_code == 130
    data = load_checkpoint(tmp_path)
    assert data["loop"]["steps"] == 40 and data["learner"]["updates"] == 20
    assert "checkpoint saved; continue with --resume" in capsys.readouterr().out
    resumed = make_loop(tmp_path, CountingSource(), checkpoint_interval=0)
    resumed.restore(data)
    resumed.run()
    assert resumed.source.steps == 100 and resumed.learner.updates == 50
    assert signal.getsignal(signal.SIGINT) is before  # the loop's handlers are removed


def test_signal_during_a_checkpoint_write_keeps_that_checkpoint(tmp_path, capsys):
    """D7: a signal while the checkpoint (here its replay file) is written lets the write finish, and "checkpoint
    saved" names what is on disk (the old code aborted the write and still said it was saved)."""
    extra_at = []

    def save_extra(directory):
        extra_at.append(loop.source.steps)
        if loop.source.steps == 20:
            os.kill(os.getpid(), signal.SIGINT)
        (directory / "extra.bin").write_bytes(b"x")

    config = LoopConfig(total_steps=100, checkpoint_interval=10, log_interval=10, progress=False)
    loop = Loop(CountingLearner(), CountingSource(), config, tmp_path, header={"kind": "test"}, save_extra=save_extra)
    with pytest.raises(Interrupted):
        loop.run()
    assert load_checkpoint(tmp_path)["loop"]["steps"] == 20 and extra_at == [10, 20]
    assert "interrupted (SIGINT) at step 20: checkpoint saved" in capsys.readouterr().out


def test_a_failed_save_on_interrupt_does_not_claim_it_saved(tmp_path, capsys, monkeypatch):
    """D7: "checkpoint saved" only when it was; otherwise the line says from where a resume continues."""
    config = LoopConfig(total_steps=100, checkpoint_interval=10, log_interval=10, progress=False)
    loop = Loop(SignallingLearner(at=8), CountingSource(), config, tmp_path, header={"kind": "test"})
    real_save = torch.save

    def save(data, f, *args, **kwargs):
        if data["loop"]["steps"] == 16:
            raise OSError(28, "No space left on device")
        real_save(data, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(Interrupted) as stop:
        loop.run()
    out = capsys.readouterr().out
    assert not stop.value.saved and "checkpoint saved" not in out
    assert "could not be saved" in out and "continues from the checkpoint at step 10" in out
    assert load_checkpoint(tmp_path)["loop"]["steps"] == 10


def test_a_second_signal_leaves_at_once(tmp_path, capsys):
    """A second signal during the stop's save abandons it: the previous checkpoint stays, no temporary file."""
    def save_extra(directory):
        if loop.source.steps == 16:
            os.kill(os.getpid(), signal.SIGTERM)

    config = LoopConfig(total_steps=100, checkpoint_interval=10, log_interval=10, progress=False)
    loop = Loop(SignallingLearner(at=8, signum=signal.SIGTERM), CountingSource(), config, tmp_path,
                header={"kind": "test"}, save_extra=save_extra)
    with pytest.raises(Interrupted) as stop:
        loop.run()
    assert not stop.value.saved and stop.value.exit_code == 143
    assert "leaving without saving" in capsys.readouterr().out
    assert load_checkpoint(tmp_path)["loop"]["steps"] == 10
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name or p.name.startswith(".")]


class DivergingLearner(CountingLearner):
    """A weight that becomes ``value`` at update ``at``; its loss reports the weight when ``in_loss``."""

    def __init__(self, at, value=float("nan"), in_loss=True):
        super().__init__()
        self.at, self.value, self.in_loss = at, value, in_loss
        self.weight = torch.ones(3)

    def update(self, batch):
        super().update(batch)
        if self.updates == self.at:
            self.weight[1] = self.value
        loss = float(self.weight.sum()) if self.in_loss else 1.0
        return {"losses/loss": loss, "losses/explained_variance": float("nan")}  # the latter NaN by definition

    def state_dict(self):
        return {"updates": self.updates, "net": {"weight": self.weight.clone()}}

    def load_state_dict(self, state):
        self.updates, self.weight = state["updates"], state["net"]["weight"].clone()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, value):
    """D2: a NaN or infinite loss stops the run with one line naming the step and the metric; the checkpoint
    before it stays (the old code trained on and overwrote it with NaN weights)."""
    config = LoopConfig(total_steps=100, checkpoint_interval=10, log_interval=10, progress=False)
    loop = Loop(DivergingLearner(at=13, value=value), CountingSource(), config, tmp_path, header={"kind": "test"})
    with pytest.raises(UserError, match=r"diverged at step 26: losses/loss is (nan|inf);.* step 20") as error:
        loop.run()
    assert "\n" not in str(error.value)
    data = load_checkpoint(tmp_path)
    assert data["loop"]["steps"] == 20 and torch.isfinite(data["learner"]["net"]["weight"]).all()


def test_a_non_finite_weight_is_never_written_over_the_last_good_checkpoint(tmp_path):
    """D2: a weight gone NaN while the losses look finite is caught when saving: the old checkpoint stays."""
    config = LoopConfig(total_steps=100, checkpoint_interval=10, log_interval=10, progress=False)
    loop = Loop(DivergingLearner(at=13, in_loss=False), CountingSource(), config, tmp_path, header={"kind": "test"})
    with pytest.raises(UserError, match=r"diverged at step 30: learner.net.weight holds nan;.* step 20"):
        loop.run()
    data = load_checkpoint(tmp_path)
    assert data["loop"]["steps"] == 20 and torch.isfinite(data["learner"]["net"]["weight"]).all()


def test_checkpoint_file_mode_is_like_the_other_files(tmp_path):
    """D22: checkpoint.pt gets the umask's usual mode (0644), not mkstemp's 0600."""
    save_checkpoint(tmp_path / "checkpoint.pt", {})
    (tmp_path / "other.json").write_text("{}")
    assert (tmp_path / "checkpoint.pt").stat().st_mode & 0o777 == (tmp_path / "other.json").stat().st_mode & 0o777


class Killed(BaseException):
    """Stands for a SIGKILL at the moment it is raised: nothing after it runs."""


def test_replay_is_committed_after_the_checkpoint_so_never_newer(tmp_path, monkeypatch):
    """D18: a kill between writing replay and writing the checkpoint leaves replay as old as the checkpoint (the
    old code wrote replay.npz first, so it was 10 steps ahead of checkpoint.pt)."""
    import rlkit.loop

    def save_extra(directory):
        (directory / "replay.npz").write_text(str(loop.source.steps))

    config = LoopConfig(total_steps=100, checkpoint_interval=10, log_interval=10, progress=False)
    loop = Loop(CountingLearner(), CountingSource(), config, tmp_path, header={"kind": "test"}, save_extra=save_extra)
    real = rlkit.loop.save_checkpoint

    def save_then_die(path, payload):
        if payload["loop"]["steps"] == 20:
            raise Killed
        real(path, payload)

    monkeypatch.setattr(rlkit.loop, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        loop.run()
    assert load_checkpoint(tmp_path)["loop"]["steps"] == 10 and (tmp_path / "replay.npz").read_text() == "10"


def test_leftovers_of_a_killed_save_are_removed_when_a_run_starts(tmp_path):
    """D18: the temporary files a kill leaves have fixed names (one of each at most) and the next run in the
    directory removes them, including the randomly named ones older versions left to pile up."""
    leftovers = [".checkpoint.pt.tmp", ".checkpoint.pt.x1y2z3.tmp", "replay.npz.tmp.npz", ".saving/replay.npz"]
    for name in leftovers:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"half")
    make_loop(tmp_path, CountingSource(), total=4).run()
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name or p.name.startswith(".")]


def test_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """D14: a full disk while saving (replay or checkpoint) is one line naming the fix; the old checkpoint and
    replay stay and no temporary file is left (the old code left replay.npz.tmp.npz and a traceback)."""
    import numpy as np

    from rlkit.buffers.replay import ReplayBuffer

    buffer = ReplayBuffer(16, (3,), np.float32, num_envs=1, seed=0)
    for t in range(4):
        buffer.add(np.full((1, 3), t, np.float32), np.zeros(1, np.int64), np.ones(1), np.zeros(1, bool),
                   np.zeros(1, bool), np.full((1, 3), t + 1, np.float32))
    config = LoopConfig(total_steps=100, checkpoint_interval=10, log_interval=10, progress=False)
    loop = Loop(CountingLearner(), CountingSource(), config, tmp_path, header={"kind": "test"},
                save_extra=lambda directory: buffer.save(str(directory / "replay.npz")))
    real_savez = np.savez

    def savez(file, **arrays):
        if loop.source.steps == 20:
            file.write(b"partial")
            raise OSError(28, "No space left on device")
        real_savez(file, **arrays)

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(UserError, match=r"could not write a checkpoint in .*No space left on device.*free disk "
                                        r"space.*step 10 is intact") as error:
        loop.run()
    assert "\n" not in str(error.value)
    assert load_checkpoint(tmp_path)["loop"]["steps"] == 10
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("events")) == ["checkpoint.pt",
                                                                                            "replay.npz"]
    direct = tmp_path / "direct"
    direct.mkdir()
    with pytest.raises(OSError):
        buffer.save(str(direct / "replay.npz"))  # the buffer's own save cleans up too
    assert list(direct.iterdir()) == []


def test_flipped_bytes_are_refused_by_the_zip_checksum(tmp_path):
    """D15: bytes flipped inside a tensor's data are a one-line error (torch.load alone accepted them)."""
    save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(4096.0)})
    raw = bytearray((tmp_path / "c.pt").read_bytes())
    middle = len(raw) // 2
    for i in range(middle, middle + 64):
        raw[i] ^= 0xFF
    (tmp_path / "c.pt").write_bytes(raw)
    with pytest.raises(UserError, match=r"corrupt \(checksum mismatch in .*data/0\)") as error:
        load_checkpoint(tmp_path / "c.pt")
    assert "\n" not in str(error.value)
