"""Budget-aware warm-up (issue 19): a preset's learning_starts fitted to a shorter run, the published value kept at
and above its budget, and the user's own values never touched."""

from __future__ import annotations

import json

import pytest
import yaml

import train
from rlkit.agents import AGENTS, WARMUP_FIELDS
from rlkit.errors import UserError
from rlkit.hyperparams import HYPERPARAMS_DIR, budgeted_warmup
from rlkit.jobs import JOBS

FAMILY_ENV = {"atari": "Breakout", "mujoco": "InvertedPendulum", "other": "FrozenLake"}
"""An env of each family that no shipped file names: its values are the family preset's."""


@pytest.mark.parametrize("published, budget, total, expected", [
    (80_000, 10_000_000, 10_000_000, 80_000),  # the published budget: the published value
    (80_000, 10_000_000, 20_000_000, 80_000),  # above it: never more than published
    (80_000, 10_000_000, 1_000_000, 50_000),  # 5% of the run
    (80_000, 10_000_000, 100_000, 5_000),
    (80_000, 10_000_000, 10, 1),
    (10_000, 20_000, 10_000, 5_000),  # the preset's share (50%) is larger than 5%: kept
    (1_000, 50_000, 600, 30),
    (0, 100_000, 1_000, 0),
    (25_000, 1_000_000, 1, 0),  # below the run: 5% of one step rounded up was 1, and train.py refused the run
])
def test_budgeted_warmup_by_hand(published, budget, total, expected):
    assert budgeted_warmup(published, budget, total) == expected


def print_config(capsys, *argv):
    train.main([*argv, "--print-config"])
    return json.loads(capsys.readouterr().out)


def shipped_entries():
    for path in sorted(HYPERPARAMS_DIR.glob("*.yml")):
        for env, values in yaml.safe_load(path.read_text()).items():
            if isinstance(values, dict) and "learning_starts" in values:
                agents = [name for name, spec in AGENTS.items() if spec.hyperparams_file == path.stem]
                yield agents[0], env, values


@pytest.mark.parametrize("agent", [name for name, spec in AGENTS.items()
                                   if any(hasattr(spec.preset(f), "learning_starts") for f in spec.families)])
def test_every_preset_keeps_its_published_warmup_at_its_budget_and_fits_short_runs(agent):
    spec = AGENTS[agent]
    for family in spec.families:
        env = FAMILY_ENV[family]
        published = spec.preset(family).learning_starts
        chosen = JOBS["agent"].hyperparams({"agent": agent, "env": env})
        assert chosen.config.learning_starts == JOBS["agent"].hyperparams(
            {"agent": agent, "env": env, "total_steps": chosen.run["total_steps"]}).config.learning_starts
        assert chosen.sources["learning_starts"].startswith("preset:")
        assert chosen.config.learning_starts == published, family
        for total in (1_000, 10_000, 100_000):
            short = JOBS["agent"].hyperparams({"agent": agent, "env": env, "total_steps": total}).config
            assert short.learning_starts <= max(0.05 * total + 1, published * total / chosen.run["total_steps"] + 1)
            assert short.learning_starts < total  # a default run always updates


@pytest.mark.parametrize("agent, env, values", list(shipped_entries()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_shipped_entry_keeps_its_warmup_at_its_budget(agent, env, values):
    at_budget = JOBS["agent"].hyperparams({"agent": agent, "env": env, "total_steps": values["total_steps"]})
    assert at_budget.config.learning_starts == values["learning_starts"]
    half = JOBS["agent"].hyperparams({"agent": agent, "env": env, "total_steps": values["total_steps"] // 2})
    assert half.config.learning_starts == min(values["learning_starts"],
                                              -(-max(0.05, values["learning_starts"] / values["total_steps"])
                                                * (values["total_steps"] // 2) // 1))


def test_print_config_shows_the_budgeted_value_and_where_it_came_from(capsys):
    shown = print_config(capsys, "--agent", "dqn", "--env", "Breakout", "--total-steps", "100000")
    assert shown["config"]["learning_starts"] == 5_000
    [label] = [label for label, names in shown["sources"].items() if "learning_starts" in names]
    assert label.startswith("budget: learning_starts 80000 of preset:atari is for 10000000 steps; 5000 for 100000")


def test_a_flag_or_a_config_file_is_never_budgeted(capsys, tmp_path):
    flag = print_config(capsys, "--agent", "dqn", "--env", "Breakout", "--total-steps", "100000",
                        "--learning-starts", "80000")
    assert flag["config"]["learning_starts"] == 80_000
    file = tmp_path / "mine.yml"
    file.write_text("learning_starts: 60000\n")
    mine = print_config(capsys, "--agent", "dqn", "--env", "Breakout", "--total-steps", "100000", "--config", str(file))
    assert mine["config"]["learning_starts"] == 60_000


def test_a_resumed_run_keeps_its_warmup(tmp_path, capsys):
    run = tmp_path / "run"
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "400", "--eval-episodes", "0", "--hidden", "8",
                "--run-dir", str(run), "--no-progress"])
    first = json.loads((run / "config.json").read_text())["config"]["learning_starts"]
    assert first <= 20  # 5% of 400
    capsys.readouterr()
    shown = print_config(capsys, "--resume", str(run), "--total-steps", "100000")
    assert shown["config"]["learning_starts"] == first


def test_warmup_fields_are_real_fields():
    assert all(any(hasattr(spec.preset(f), name) for spec in AGENTS.values() for f in spec.families)
               for name in WARMUP_FIELDS)


FAMILY_ENVS = {"atari": ["Breakout"], "mujoco": ["InvertedPendulum", "HalfCheetah"],
               "other": ["FrozenLake", "CartPole", "Pendulum", "Taxi"]}
"""Per family an env that no shipped file names (its family preset) and envs that have one."""


@pytest.mark.parametrize("agent, family", [(a, f) for a, spec in AGENTS.items() for f in spec.families])
def test_every_agents_defaults_for_every_family_pass_the_run_checks_at_any_budget(agent, family):
    """What a user gets with no flag but the budget is a valid config and a run that updates (check_run raises
    otherwise), from a 2,000-step try to the preset's own budget."""
    from rlkit.cli.train import prepare
    from rlkit.envs import resolve_env
    from rlkit.jobs.agent import check_run

    spec, checked = AGENTS[agent], 0
    for env in FAMILY_ENVS[family]:
        assert resolve_env(env).family == family
        for total in (2_000, 20_000, spec.run_defaults(family).total_steps):
            try:
                prepared = prepare(["--agent", agent, "--env", env, "--total-steps", str(total)])
            except UserError as error:  # an agent that does not take this env's action space says so
                assert "action space" in str(error), (env, total, error)
                continue
            check_run(prepared.settings, prepared.config, memory=False)
            checked += 1
    assert checked
