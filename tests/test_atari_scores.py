"""rlkit.analysis.atari_scores on hand-computed values (normalization, the trimmed-mean rule, IQM, the stratified
bootstrap) and benchmarks/atari100k.py's plan and resume logic, which run no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlkit.analysis import atari_scores as scores
from rlkit.analysis.atari_scores import (
    ATARI_100K_GAMES,
    HUMAN_SCORES,
    PUBLISHED,
    RANDOM_SCORES,
    STATISTICS,
    aggregate,
    format_table,
    human_normalized,
    iqm,
    report,
    score_matrix,
    stratified_bootstrap_ci,
    trimmed_mean,
)



# ---------------------------------------------------------------------------------------------------- normalization
def test_tables_cover_the_26_games_in_order():
    assert len(ATARI_100K_GAMES) == 26 and ATARI_100K_GAMES[0] == "Alien" and ATARI_100K_GAMES[-1] == "UpNDown"
    assert list(RANDOM_SCORES) == list(HUMAN_SCORES) == list(ATARI_100K_GAMES)


def test_human_normalized_by_hand():
    assert human_normalized("Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalized("Breakout", 1.7) == pytest.approx(0.0)
    # Pong: (0 - (-20.7)) / (14.6 - (-20.7)) = 20.7 / 35.3
    assert human_normalized("Pong", 0.0) == pytest.approx(20.7 / 35.3)
    np.testing.assert_allclose(human_normalized("Pong", np.array([-20.7, 14.6])), [0.0, 1.0])


@pytest.mark.parametrize("name", ["breakout", "BREAKOUT", "ALE/Breakout-v5", "BreakoutNoFrameskip-v4"])
def test_game_names_are_accepted_in_each_form(name):
    assert human_normalized(name, 30.5) == pytest.approx(1.0)


def test_unknown_game_raises_naming_the_known_games():
    with pytest.raises(ValueError, match="Breakout") as error:
        human_normalized("SpaceInvaders", 100.0)
    assert "SpaceInvaders" in str(error.value)


# ---------------------------------------------------------------------------------------------------- aggregates
@pytest.mark.parametrize("values, expected", [
    ([1, 2, 3, 10, 50], 5.0),  # n=5: cut int(1.25) = 1 each end -> 2, 3, 10
    ([100, 0, 3, 1, 100, 0, 2], 21.2),  # n=7: cut int(1.75) = 1 -> 0, 1, 2, 3, 100
    ([60, -100, 0, 0, 100, 0, 9, 0, -50, 0], 1.5),  # n=10: cut int(2.5) = 2 -> 0, 0, 0, 0, 0, 9
])
def test_trimmed_mean_cuts_int_of_a_quarter_from_each_end(values, expected):
    assert trimmed_mean(np.array(values), 0.25) == pytest.approx(expected)
    assert iqm(np.array(values)) == pytest.approx(expected)


def test_iqm_pools_runs_and_tasks():
    # sorted: 1 2 3 4 5 6 7 100; cut int(0.25 * 8) = 2 each end -> 3 4 5 6, mean 4.5 (the plain mean is 16)
    table = np.array([[1, 5], [2, 6], [3, 7], [4, 100]])
    assert iqm(table) == pytest.approx(4.5)
    assert aggregate(table) == pytest.approx({"mean": 16.0, "median": 16.0, "iqm": 4.5})


def test_median_is_of_the_per_task_means():
    # per-task means over runs: 1, 2, 15 -> median 2; the median of all entries would be 2.5
    assert aggregate(np.array([[0, 1, 10], [2, 3, 20]]))["median"] == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------------- bootstrap
def test_a_column_of_equal_values_gives_a_zero_width_interval_for_its_mean():
    table = np.column_stack([np.full(5, 2.0), np.random.default_rng(0).normal(size=5)])
    assert stratified_bootstrap_ci(table, lambda x: x[..., 0].mean(-1)) == (2.0, 2.0)


@pytest.mark.parametrize("name", list(STATISTICS))
def test_equal_runs_in_every_task_give_the_point_estimate_as_both_ends(name):
    table = np.tile([0.1, 0.5, 2.0, -0.3], (5, 1))
    low, high = stratified_bootstrap_ci(table, STATISTICS[name])
    assert low == pytest.approx(high) and low == pytest.approx(float(STATISTICS[name](table)))


@pytest.mark.parametrize("name", list(STATISTICS))
def test_the_interval_contains_the_point_estimate(name):
    table = np.random.default_rng(3).gamma(1.0, size=(5, 26))
    low, high = stratified_bootstrap_ci(table, STATISTICS[name])
    assert low < float(STATISTICS[name](table)) < high


def test_the_seed_fixes_the_interval():
    table = np.random.default_rng(4).normal(size=(3, 10))
    first = stratified_bootstrap_ci(table, scores.iqm, seed=7)
    assert stratified_bootstrap_ci(table, scores.iqm, seed=7) == first
    assert stratified_bootstrap_ci(table, scores.iqm, seed=8) != first


def test_each_task_resamples_only_its_own_runs():
    table = np.array([[0.0, 10.0], [1.0, 11.0]])
    assert stratified_bootstrap_ci(table, lambda x: x[..., 1].min(-1)) == (10.0, 11.0)
    assert stratified_bootstrap_ci(table, lambda x: x[..., 0].max(-1)) == (0.0, 1.0)


def test_tasks_resample_independently_of_each_other():
    # every run sums to 1 over the two tasks: resampling whole runs would fix the mean at 0.5, drawing each task's
    # runs on its own does not
    low, high = stratified_bootstrap_ci(np.array([[0.0, 1.0], [1.0, 0.0]]), scores.mean_score)
    assert low < 0.5 < high


def test_percentile_interval_by_hand():
    # one task, runs 0 and 1: a replicate's mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4, so the 2.5th
    # percentile of 2000 replicates is 0 and the 97.5th is 1; a 40% interval (30th to 70th) lies inside the 0.5s
    runs = np.array([[0.0], [1.0]])
    assert stratified_bootstrap_ci(runs, scores.mean_score) == (0.0, 1.0)
    assert stratified_bootstrap_ci(runs, scores.mean_score, confidence=0.4) == (0.5, 0.5)


# ---------------------------------------------------------------------------------------------------- the report
def test_report_and_table():
    result = report({"Breakout": [1.7, 30.5], "ALE/Pong-v5": [-20.7, 14.6]})
    assert [row.game for row in result.games] == ["Breakout", "Pong"]
    assert result.games[0].raw_mean == pytest.approx(16.1) and result.games[1].normalized_mean == pytest.approx(0.5)
    assert result.aggregates["mean"].point == pytest.approx(0.5)
    table = format_table(result)
    assert "| Breakout | 2 | 16.1 | 0.500 |" in table and "| iqm | 0.500 |" in table
    assert "published" not in table


@pytest.mark.parametrize("agent, mean, median", [("DER", 0.285, 0.161), ("DrQ(eps)", 0.465, 0.313)])
def test_published_scores_give_the_aggregates_their_sources_print(agent, mean, median):
    # a mistyped game moves these: CURL's text gives DER's mean and median, BBF's Table A.1 DrQ(eps)'s
    published = PUBLISHED[agent].scores
    assert set(published) == set(ATARI_100K_GAMES)
    normalized = np.array([human_normalized(game, published[game]) for game in ATARI_100K_GAMES])
    assert normalized.mean() == pytest.approx(mean, abs=5e-4)
    assert np.median(normalized) == pytest.approx(median, abs=5e-4)


def test_table_sets_published_scores_beside_the_run():
    result = report({"Breakout": [1.7, 30.5], "Pong": [-20.7, -19.9]})  # Breakout 16.1, Pong -20.3
    table = format_table(result, [PUBLISHED["DER"], PUBLISHED["DrQ(eps)"]])
    assert "| game | runs | raw mean | normalized | DER | DER normalized | DrQ(eps) | DrQ(eps) normalized |" in table
    assert "| Breakout | 2 | 16.1 | 0.500 | 1.9 | 0.007 | 19.8 | 0.627 |" in table
    assert "At or above DER on 1 of 2 games." in table and "At or above DrQ(eps) on 0 of 2 games." in table
    assert "DER: van Hasselt et al. (2019)" in table


def test_score_matrix_needs_as_many_runs_in_every_game():
    with pytest.raises(ValueError, match="same number of runs"):
        score_matrix({"Breakout": [1.0, 2.0], "Pong": [0.0]})


# ---------------------------------------------------------------------------------------------------- the benchmark
@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("atari100k")


def run_lines(bench, capsys, monkeypatch, results: Path) -> list[str]:
    def no_training(run):
        raise AssertionError("the dry run started a run")

    monkeypatch.setattr(bench, "execute", no_training)
    bench.main(["Breakout", "pong", "--seeds", "1", "2", "--dry-run", "--results", str(results)])
    return [line for line in capsys.readouterr().out.splitlines() if "train.py" in line]


def test_dry_run_plans_every_game_and_seed(bench, capsys, monkeypatch, tmp_path):
    lines = run_lines(bench, capsys, monkeypatch, tmp_path / "results.jsonl")
    assert len(lines) == 4
    assert all(" ".join(bench.PRESET_FLAG) in line and "--no-progress" in line for line in lines)
    assert "--env Pong --seed 2" in lines[-1]


def test_a_finished_run_is_skipped(bench, capsys, monkeypatch, tmp_path):
    results = tmp_path / "results.jsonl"
    finished = {"agent": "rainbow", "game": "Pong", "seed": 2, "extra": "", "mean": -20.0}
    quick_try = {**finished, "game": "Breakout", "seed": 1, "extra": "--total-steps 2000"}
    results.write_text(json.dumps(finished) + "\n" + json.dumps(quick_try) + "\n")
    lines = run_lines(bench, capsys, monkeypatch, results)
    assert len(lines) == 3 and not any("--env Pong --seed 2" in line for line in lines)
    assert any("--env Breakout --seed 1" in line for line in lines)  # a run with other --extra does not count


def test_report_leaves_out_games_missing_a_seed(bench, capsys, tmp_path):
    entries = [{"agent": "rainbow", "game": game, "seed": seed, "extra": "", "mean": mean}
               for game, seed, mean in (("Breakout", 1, 1.7), ("Breakout", 2, 30.5), ("Pong", 1, 0.0))]
    bench.print_report(entries, ["Breakout", "Pong"], [1, 2], "rainbow", (), reps=100)
    out = capsys.readouterr().out
    assert "| Breakout | 2 | 16.1 | 0.500 |" in out and "left out (not every seed has run): Pong" in out
