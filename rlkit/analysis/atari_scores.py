"""Human-normalized scores on the Atari 100k benchmark and their aggregates with stratified-bootstrap intervals.

The 26 games are those of Kaiser et al. (2019, SimPLe). The random and human reference scores are the ones used by
rliable's Atari 100k data (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical
Precipice", github.com/google-research/rliable) and by Dopamine's ``labs/atari_100k``; they are originally the
random and human scores of Mnih et al. (2015) and Badia et al. (2020, Agent57).

The aggregates follow rliable: a score matrix is ``(runs, tasks)`` of normalized scores; the mean is over all
entries, the median is of the per-task means over runs, the interquartile mean (IQM) trims a quarter from each end
of all entries pooled, and an interval is the percentile interval of a stratified bootstrap (runs resampled within
each task).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ATARI_100K_GAMES: tuple[str, ...] = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout", "ChopperCommand",
    "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest", "UpNDown",
)

RANDOM_SCORES: dict[str, float] = {
    "Alien": 227.8, "Amidar": 5.8, "Assault": 222.4, "Asterix": 210.0, "BankHeist": 14.2, "BattleZone": 2360.0,
    "Boxing": 0.1, "Breakout": 1.7, "ChopperCommand": 811.0, "CrazyClimber": 10780.5, "DemonAttack": 152.1,
    "Freeway": 0.0, "Frostbite": 65.2, "Gopher": 257.6, "Hero": 1027.0, "Jamesbond": 29.0, "Kangaroo": 52.0,
    "Krull": 1598.0, "KungFuMaster": 258.5, "MsPacman": 307.3, "Pong": -20.7, "PrivateEye": 24.9, "Qbert": 163.9,
    "RoadRunner": 11.5, "Seaquest": 68.4, "UpNDown": 533.4,
}

HUMAN_SCORES: dict[str, float] = {
    "Alien": 7127.7, "Amidar": 1719.5, "Assault": 742.0, "Asterix": 8503.3, "BankHeist": 753.1,
    "BattleZone": 37187.5, "Boxing": 12.1, "Breakout": 30.5, "ChopperCommand": 7387.8, "CrazyClimber": 35829.4,
    "DemonAttack": 1971.0, "Freeway": 29.6, "Frostbite": 4334.7, "Gopher": 2412.5, "Hero": 30826.4,
    "Jamesbond": 302.8, "Kangaroo": 3035.0, "Krull": 2665.5, "KungFuMaster": 22736.3, "MsPacman": 6951.6,
    "Pong": 14.6, "PrivateEye": 69571.3, "Qbert": 13455.0, "RoadRunner": 7845.0, "Seaquest": 42054.7,
    "UpNDown": 11693.2,
}


@dataclass(frozen=True)
class PublishedScores:
    """One published agent's Atari 100k scores: the mean raw score per game, and where they were read."""

    agent: str
    source: str
    scores: dict[str, float]


PUBLISHED: dict[str, PublishedScores] = {published.agent: published for published in (
    PublishedScores(
        "DER", "van Hasselt et al. (2019)'s scores as printed in Srinivas et al. (2020, CURL, ICML), Table 2, column "
        "'Eff. Rainbow'; their human-normalized mean 0.285 and median 0.161 are the ones CURL's text gives",
        {"Alien": 739.9, "Amidar": 188.6, "Assault": 431.2, "Asterix": 470.8, "BankHeist": 51.0,
         "BattleZone": 10124.6, "Boxing": 0.2, "Breakout": 1.9, "ChopperCommand": 861.8, "CrazyClimber": 16185.3,
         "DemonAttack": 508.0, "Freeway": 27.9, "Frostbite": 866.8, "Gopher": 349.5, "Hero": 6857.0,
         "Jamesbond": 301.6, "Kangaroo": 779.3, "Krull": 2851.5, "KungFuMaster": 14346.1, "MsPacman": 1204.1,
         "Pong": -19.3, "PrivateEye": 97.8, "Qbert": 1152.9, "RoadRunner": 9600.0, "Seaquest": 354.1,
         "UpNDown": 2877.4}),
    PublishedScores(
        "DrQ(eps)", "Agarwal et al. (2021)'s 100 runs per game (rliable's atari_100k 'DrQ(eps).json'), the mean over "
        "the runs; their human-normalized mean 0.465, median 0.313 and IQM 0.280 are those of Schwarzer et al. "
        "(2023, BBF), Table A.1",
        {"Alien": 865.16, "Amidar": 137.83, "Assault": 579.6, "Asterix": 763.59, "BankHeist": 232.89,
         "BattleZone": 10165.3, "Boxing": 9.04, "Breakout": 19.76, "ChopperCommand": 844.57, "CrazyClimber": 21539.0,
         "DemonAttack": 1321.55, "Freeway": 20.26, "Frostbite": 1014.2, "Gopher": 621.56, "Hero": 4167.89,
         "Jamesbond": 349.1, "Kangaroo": 1088.38, "Krull": 4402.07, "KungFuMaster": 11467.41, "MsPacman": 1218.11,
         "Pong": -9.06, "PrivateEye": 3.53, "Qbert": 1810.73, "RoadRunner": 11211.43, "Seaquest": 352.28,
         "UpNDown": 4324.5}),
)}
"""Published per-game scores to set beside a run's (DER's has no per-run data, so both are per-game means)."""

# "breakout", "Breakout", "up_n_down" and "UpNDown" all name one game.
_BY_KEY = {game.lower(): game for game in ATARI_100K_GAMES}


def canonical_game(name: str) -> str:
    """The benchmark's name of a game given as ``Breakout`` (any case, underscores allowed), ``ALE/Breakout-v5``
    or ``BreakoutNoFrameskip-v4``.

    Raises:
        ValueError: the name is not one of the 26 games.
    """
    short = re.sub(r"(NoFrameskip)?(-v\d+)?$", "", name.removeprefix("ALE/"))
    game = _BY_KEY.get(short.replace("_", "").lower())
    if game is None:
        raise ValueError(f"unknown Atari 100k game {name!r}: pick from {', '.join(ATARI_100K_GAMES)}")
    return game


def human_normalized(game: str, score: float | np.ndarray) -> float | np.ndarray:
    """``(score - random) / (human - random)``: 0 plays like the random policy, 1 like the human reference."""
    game = canonical_game(game)
    random, human = RANDOM_SCORES[game], HUMAN_SCORES[game]
    normalized = (np.asarray(score, dtype=float) - random) / (human - random)
    return float(normalized) if normalized.ndim == 0 else normalized


# ---------------------------------------------------------------------------------------------------- aggregates
# Each statistic takes a (runs, tasks) matrix, or a stack (..., runs, tasks) of them, so the bootstrap can compute
# every replicate in one call.
def trimmed_mean(values: np.ndarray, proportion: float) -> np.ndarray:
    """Mean over the last axis after cutting ``int(proportion * n)`` values from each end (scipy's ``trim_mean``
    rule)."""
    values = np.sort(np.asarray(values, dtype=float), axis=-1)
    cut = int(proportion * values.shape[-1])
    return values[..., cut:values.shape[-1] - cut].mean(axis=-1)


def iqm(scores: np.ndarray) -> float | np.ndarray:
    """Interquartile mean of all entries of ``scores`` ``(..., runs, tasks)``, runs and tasks pooled (rliable's
    ``trim_mean(scores, 0.25, axis=None)``)."""
    scores = np.asarray(scores, dtype=float)
    pooled = scores.reshape(*scores.shape[:-2], -1) if scores.ndim >= 2 else scores
    return trimmed_mean(pooled, 0.25)


def mean_score(scores: np.ndarray) -> float | np.ndarray:
    """Mean over runs and tasks."""
    return np.asarray(scores, dtype=float).mean(axis=(-2, -1))


def median_score(scores: np.ndarray) -> float | np.ndarray:
    """Median over tasks of each task's mean over runs."""
    return np.median(np.asarray(scores, dtype=float).mean(axis=-2), axis=-1)


STATISTICS: dict[str, Callable[[np.ndarray], float | np.ndarray]] = {
    "mean": mean_score, "median": median_score, "iqm": iqm}


def aggregate(score_matrix: np.ndarray) -> dict[str, float]:
    """Mean, median and IQM of a ``(runs, tasks)`` matrix of normalized scores."""
    return {name: float(statistic(score_matrix)) for name, statistic in STATISTICS.items()}


def stratified_bootstrap_ci(score_matrix: np.ndarray, statistic: Callable[[np.ndarray], float | np.ndarray],
                            reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over ``reps`` stratified bootstrap replicates (rliable's): each
    replicate draws, for every task on its own, ``runs`` of that task's runs with replacement.

    ``statistic`` must accept a stack ``(reps, runs, tasks)`` and return ``(reps,)``, as those of
    :data:`STATISTICS` do.
    """
    scores = np.asarray(score_matrix, dtype=float)
    runs, tasks = scores.shape
    rows = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))
    resampled = np.take_along_axis(scores[None], rows, axis=1)  # column j of a replicate: draws from column j only
    replicates = np.asarray(statistic(resampled), dtype=float)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class GameScore:
    game: str
    runs: int
    raw_mean: float
    normalized_mean: float


@dataclass(frozen=True)
class Estimate:
    point: float
    low: float
    high: float


@dataclass(frozen=True)
class Report:
    games: list[GameScore]
    aggregates: dict[str, Estimate]
    """``mean``, ``median`` and ``iqm`` of the normalized scores, with their bootstrap intervals."""
    confidence: float


def score_matrix(raw: Mapping[str, Sequence[float]]) -> np.ndarray:
    """The ``(runs, tasks)`` matrix of normalized scores of ``{game: [raw score per seed]}``, games in the given
    order.

    Raises:
        ValueError: the games have different numbers of runs (the stratified bootstrap needs a full matrix).
    """
    counts = {game: len(scores) for game, scores in raw.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"every game needs the same number of runs, got {counts}")
    return np.stack([human_normalized(game, np.asarray(scores, dtype=float)) for game, scores in raw.items()],
                    axis=1)


def report(raw: Mapping[str, Sequence[float]], reps: int = 2000, confidence: float = 0.95,
           seed: int = 0) -> Report:
    """Per-game raw and normalized means of ``{game: [raw score per seed]}`` and the aggregates of them all."""
    matrix = score_matrix(raw)
    games = [GameScore(canonical_game(game), len(scores), float(np.mean(scores)), float(matrix[:, j].mean()))
             for j, (game, scores) in enumerate(raw.items())]
    aggregates = {name: Estimate(float(statistic(matrix)),
                                 *stratified_bootstrap_ci(matrix, statistic, reps, confidence, seed))
                  for name, statistic in STATISTICS.items()}
    return Report(games, aggregates, confidence)


def format_table(result: Report, published: Sequence[PublishedScores] = ()) -> str:
    """The report as markdown: the per-game table, a line per published agent saying on how many games the run is
    at or above it, and the aggregates. Each of ``published`` adds its raw and normalized score per game."""
    header = ["game", "runs", "raw mean", "normalized"]
    for theirs in published:
        header += [theirs.agent, f"{theirs.agent} normalized"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    at_or_above = {theirs.agent: [0, 0] for theirs in published}
    for row in result.games:
        cells = [row.game, str(row.runs), f"{row.raw_mean:.1f}", f"{row.normalized_mean:.3f}"]
        for theirs in published:
            score = theirs.scores.get(row.game)
            if score is None:
                cells += ["-", "-"]
                continue
            cells += [f"{score:.1f}", f"{human_normalized(row.game, score):.3f}"]
            at_or_above[theirs.agent][0] += row.raw_mean >= score
            at_or_above[theirs.agent][1] += 1
        lines.append("| " + " | ".join(cells) + " |")
    if published:
        lines.append("")
        lines += [f"At or above {agent} on {wins} of {games} games." for agent, (wins, games) in at_or_above.items()]
        lines += [f"{theirs.agent}: {theirs.source}." for theirs in published]
    percent = f"{100 * result.confidence:g}%"
    lines += ["", f"| aggregate ({len(result.games)} games) | point | {percent} interval |", "|---|---|---|"]
    for name, estimate in result.aggregates.items():
        lines.append(f"| {name} | {estimate.point:.3f} | [{estimate.low:.3f}, {estimate.high:.3f}] |")
    return "\n".join(lines)
