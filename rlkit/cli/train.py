"""Train an agent, ``python train.py --agent dqn --env Breakout``, or a classifier,
``python train.py --task cifar10 --net resnet --data-dir DIR``.

Every field of the agent's (or net's) config is a flag: see ``python train.py --agent dqn --env CartPole --help``
and ``python train.py --task mnist --net cnn --help``, which show the values that will run. Unset flags keep the
published defaults for the env's family (Atari, MuJoCo, classic control) or for the net; ``--print-config`` prints
them all. A run writes TensorBoard events, its resolved config, ``checkpoint.pt`` and ``eval.jsonl`` into its run
directory; ``--resume RUN_DIR`` continues it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from rlkit.cli import command, flag_owners
from rlkit.config import add_config_flags, apply_flags, config_to_dict
from rlkit.distributed import is_main, shutdown
from rlkit.errors import OneLineParser, UserError
from rlkit.hyperparams import RUN_KEYS, Resolved
from rlkit.jobs import Job, job_of, read_checkpoint, select_job
from rlkit.jobs.base import add_run_flags, new_run_dir
from rlkit.loop import Interrupted
from rlkit.runlock import RunLock

SELECTORS = ("agent", "env", "task", "net")
ALWAYS_OVERRIDABLE = ("resume", "device", "threads", "precision", "allreduce", "overlap", "no_progress", "print_config",
                      "stretch_schedules")


def build_parser(job: Job | None, names: dict[str, Any]) -> argparse.ArgumentParser:
    """The flags of ``job`` with its config's fields, whose help shows the values that will run; without a job,
    the selectors of every kind of run."""
    names_given = " ".join(f"--{k} {v}" for k, v in names.items() if k in SELECTORS and v)
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           hint=f"see {command('train')} {names_given} --help for the flags of this run".replace("  ", " "))
    run = parser.add_argument_group("run")
    if job is None:
        run.add_argument("--agent", help="train an agent (see --agent NAME --env ENV --help)")
        run.add_argument("--env", help="the agent's environment (for alphazero a board game: connect_four, tic_tac_toe)")
        run.add_argument("--task", help="train a classifier, GAN or video net on a data set (see --task T --net N --help)")
        run.add_argument("--net", help="the network for --task")
        add_run_flags(run, "steps")
        return parser
    job.add_flags(parser, run)
    add_run_flags(run, job.unit, job.eval_interval_default)
    what = names.get("agent") or names.get("net") or job.kind
    preset = job.preset(names)
    title = (f"{what} config (defaults shown are the values this run uses)" if preset is not None else
             f"{what} config (defaults shown are {what}'s before the env family's or net's preset; name the env or "
             "net to see the values that will run)")
    add_config_flags(parser, job.config_class(names), title, defaults=preset or job.base_config(names))
    return parser


def resumed(job: Job, checkpoint: dict[str, Any], args: argparse.Namespace) -> tuple[Any, Any, Path]:
    """The saved run's settings and config; a flag that would change what it is (not only how long it runs) is a
    one-line error rather than silently ignored."""
    if args.config_file:
        raise UserError("--config cannot be used with --resume: a resumed run keeps its saved config; drop --config "
                        "(or start a new run with it)")
    settings = job.settings_from(checkpoint)
    config = job.config_from(checkpoint, settings)
    config_fields = {f.name for f in dataclasses.fields(config)}
    for dest, value in vars(args).items():
        if value is None or value is False or dest in ALWAYS_OVERRIDABLE:
            continue
        if dest in job.resume_overrides:
            setattr(settings, dest, value)
            continue
        flag = "--env-wrapper" if dest == "env_wrappers" else "--" + dest.replace("_", "-")  # the one appended flag
        if dest not in config_fields and not hasattr(settings, dest):
            raise UserError(f"{flag} cannot be used with --resume: the run continues where it was saved; drop {flag}")
        saved = getattr(config, dest) if dest in config_fields else getattr(settings, dest)
        if value != saved and not (isinstance(saved, tuple) and tuple(value) == saved):
            raise UserError(f"{flag} {value} differs from the resumed run's {saved}: a resumed run keeps its "
                            f"settings and config; drop {flag} (or start a new run)")
    settings.device = args.device or "auto"
    settings.threads = args.threads or 0
    settings.precision = args.precision or settings.precision  # how to compute, not what: kept unless given
    settings.progress = not args.no_progress
    settings.allreduce = args.allreduce or settings.allreduce  # how to sum, not what is trained: kept unless given
    if getattr(args, "overlap", None):  # how to schedule acting, likewise
        settings.overlap = args.overlap
    job.resume(settings, args, checkpoint.get("loop", {}).get("steps", 0))
    run_dir = args.resume if args.resume.is_dir() else args.resume.parent
    return settings, config, run_dir


@dataclasses.dataclass
class Prepared:
    """A run ready to build: what ``train.py`` resolved from its command line."""

    job: Job
    settings: Any
    config: Any
    run_dir: Path
    checkpoint: dict[str, Any] | None
    args: argparse.Namespace
    resolved: Resolved
    """Where each value came from (``preset:other``, ``hyperparams/ppo.yml:CartPole-v1``, ``--config FILE``,
    ``flag``)."""


def prepare(argv: list[str]) -> Prepared:
    """Parse ``argv`` as ``train.py`` does and resolve the run's settings and config (nothing is built)."""
    pre = OneLineParser(add_help=False)
    for name in SELECTORS:
        pre.add_argument(f"--{name}")
    pre.add_argument("--resume", type=Path)
    pre.add_argument("--config", type=Path, action="append", dest="config_file")
    known = pre.parse_known_args(argv)[0]
    checkpoint = read_checkpoint(known.resume) if known.resume else None
    if checkpoint is not None:
        job = job_of(checkpoint)
        names = dataclasses.asdict(job.settings_from(checkpoint))
    elif any(getattr(known, name) for name in SELECTORS):
        if getattr(known, "env", None) and not (known.agent or known.task or known.net):
            raise UserError(f"--env {known.env} needs an agent to train on it: add --agent NAME (dqn, ppo, sac, ...; "
                            "train.py --help lists them)")
        job, names = select_job(known.agent, known.task, known.net), vars(known)
        names["config_files"] = known.config_file or []  # --help shows the values the files give
    else:
        build_parser(None, {}).parse_args(argv)  # --help works without a job
        select_job(None, None, None)  # raises: say what to train
    parser = build_parser(job, names)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if checkpoint is None and names.get("agent"):
            refuse_other_agents_flags(job, names, unknown)
        parser.parse_args(argv)  # the parser's own one-line error

    if checkpoint is not None:
        settings, config, run_dir = resumed(job, checkpoint, args)
        names = [*config_to_dict(config), *RUN_KEYS]
        resolved = Resolved(config, {}, {name: "--resume" for name in names}, ["--resume"])
    else:
        settings = job.new_settings(args)
        chosen = job.hyperparams({**dataclasses.asdict(settings), "config_files": args.config_file or []})
        config = apply_flags(chosen.config, args)
        run_dir = new_run_dir(args.run_dir, job.run_name(settings))
        flags = {name: "flag" for name in [*config_to_dict(config), *chosen.run]
                 if getattr(args, name, None) is not None}
        resolved = dataclasses.replace(chosen, config=config, sources={**chosen.sources, **flags},
                                       labels=[*chosen.labels, "flag"])
    return Prepared(job, settings, config, run_dir, checkpoint, args, resolved)


def refuse_other_agents_flags(job: Job, names: dict[str, Any], unknown: list[str]) -> None:
    """A config flag of other agents (``--recurrent`` for trpo) among the ``unknown`` arguments is named with the
    agents that take it, not as an unrecognized argument."""
    from rlkit.agents import AGENTS

    def parsers() -> dict[str, argparse.ArgumentParser]:
        built = {}
        for other in AGENTS:
            try:
                built[other] = build_parser(job, {**names, "agent": other})
            except UserError:  # an agent without a preset for this env's family
                continue
        return built

    found = flag_owners(unknown, parsers)
    if found is not None:
        flag, takers = found
        shown = (", ".join(takers[:6]) + " and others" if len(takers) > 6 else
                 " and ".join([", ".join(takers[:-1]), takers[-1]]) if len(takers) > 1 else takers[0])
        raise UserError(f"{flag} is a flag of {shown}, not of {names['agent']}: drop it ({command('train')} "
                        f"--agent {names['agent']} --env {names.get('env')} --help lists its flags)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run = prepare(argv)
    job, settings, config, run_dir, checkpoint = run.job, run.settings, run.config, run.run_dir, run.checkpoint
    if run.args.print_config:
        print(json.dumps({"job": job.kind, "settings": dataclasses.asdict(settings),
                          "config": config_to_dict(config), "sources": run.resolved.by_source()}, indent=2))
        return
    existed = run_dir.exists()
    lock = RunLock(run_dir) if is_main() else None  # one training per run directory (the first process holds it)
    try:
        if checkpoint is None:
            new_run_dir(run_dir, job.run_name(settings))  # again, now that no one else can be starting it
        train(job, settings, config, run_dir, checkpoint)
    finally:
        if lock is not None:
            lock.release()
            if not existed:
                remove_if_empty(run_dir)  # a run refused before it wrote anything leaves no directory behind
    shutdown()


def remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()  # only an empty directory goes
    except OSError:
        pass


def train(job: Job, settings: Any, config: Any, run_dir: Path, checkpoint: dict[str, Any] | None) -> None:
    if checkpoint is not None and is_main():
        print(f"resuming {run_dir} at step {checkpoint['loop']['steps']}")
    loop = job.build(settings, config, run_dir, resume=checkpoint)
    if is_main():
        print(f"training {job.describe(settings, loop)} -> {run_dir}")
        print(f"  tensorboard --logdir {run_dir.parent}   then   {command('eval')} {run_dir}")
    try:
        loop.run()
    except Interrupted as stop:
        sys.exit(stop.exit_code)  # 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP: what shells and schedulers expect
    except KeyboardInterrupt:
        sys.exit(130)
