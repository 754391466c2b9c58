"""benchmarks/alphazero_connect_four.py's time budget: it stops the run once the training time passes the budget,
and copies the checkpoint once per snapshot period (the points of the curve), never twice for one period."""

from __future__ import annotations

from pathlib import Path

import pytest



@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("alphazero_connect_four")


class FakeLoop:
    """The parts of the loop the callback reads: training time so far, save() and the run directory."""

    def __init__(self, run_dir: Path, wall_time: float):
        self.run_dir, self.wall_time, self.now, self.saves = run_dir, wall_time, 0.0, 0

    def _elapsed(self) -> float:
        return self.now

    def save(self) -> bool:
        self.saves += 1
        (self.run_dir / "checkpoint.pt").write_text(f"state after {self.wall_time + self.now:g} s")
        return True


def test_snapshots_once_per_period_and_stops_past_the_budget(bench, tmp_path):
    loop = FakeLoop(tmp_path, wall_time=100.0)  # resumed: 100 s trained before this process
    budget = bench.TimeBudget(seconds=700, snapshot_seconds=300, folder=tmp_path / "snapshots")
    keep_going = []
    for now in [0, 150, 199, 200, 250, 499, 500, 590, 599, 600, 650]:
        loop.now = now
        keep_going.append(budget.on_step(loop, step=0))
    assert keep_going == [True] * 9 + [False, False]  # 100 + 600 s reaches the 700 s budget
    snapshots = sorted(path.name for path in (tmp_path / "snapshots").iterdir())
    assert snapshots == ["trained_00300s.pt", "trained_00600s.pt"]
    assert (tmp_path / "snapshots" / "trained_00300s.pt").read_text() == "state after 300 s"  # the first step past
    assert (tmp_path / "snapshots" / "trained_00600s.pt").read_text() == "state after 600 s"
    assert loop.saves == 2  # no save beyond the two periods, none at the stopping step (the loop saves that)


def test_no_snapshots_when_the_period_is_zero(bench, tmp_path):
    loop = FakeLoop(tmp_path, wall_time=0.0)
    budget = bench.TimeBudget(seconds=60, snapshot_seconds=0, folder=tmp_path / "snapshots")
    loop.now = 59
    assert budget.on_step(loop, step=0)
    assert not (tmp_path / "snapshots").exists() and loop.saves == 0
