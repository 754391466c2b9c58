"""Train an agent, ``python train.py --agent dqn --env Breakout``, or a classifier,
``python train.py --task cifar10 --net resnet --data-dir DIR``.

Every field of the agent's (or classifier's) config is a flag: see ``python train.py --agent dqn --help`` and
``python train.py --task mnist --help``. Unset flags keep the published defaults for the env's family (Atari, MuJoCo,
classic control) or for the net. A run writes TensorBoard events, its resolved config, ``checkpoint.pt`` and
``eval.jsonl`` into its run directory; ``--resume RUN_DIR`` continues it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rlkit.agents import AGENTS, get_agent_spec
from rlkit.checkpoint import CHECKPOINT_NAME, load_checkpoint
from rlkit.config import add_config_flags, apply_flags, config_from_dict
from rlkit.distributed import exit_without_teardown, is_main, launched_by_torchrun, shutdown
from rlkit.envs import resolve_env
from rlkit.errors import UserError, run_command
from rlkit.rl import RunSettings, make_training_run
from rlkit.supervised.classifier import ClassifierConfig
from rlkit.supervised.tasks import (
    NETS, TASKS, SupervisedSettings, config_class, default_data_dir, get_net, make_supervised_run, preset,
)
from rlkit.supervised.video_task import VideoConfig, check_video_pair


def build_parser(agent: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="agents: " + "; ".join(f"{name}: {spec.help}" for name, spec in AGENTS.items()),
    )
    run = parser.add_argument_group("run")
    run.add_argument("--agent", help=f"algorithm: {', '.join(AGENTS)}")
    run.add_argument("--env", help="short name (Breakout, CartPole, HalfCheetah) or a gymnasium id")
    run.add_argument("--task", help=f"train a classifier instead: {', '.join(TASKS)} (see --task mnist --help)")
    run.add_argument("--total-steps", type=int, help="env steps to train for (default: 10M Atari, 1M MuJoCo, 100k other)")
    run.add_argument("--seed", type=int, default=1, help="seeds the agent, replay and envs (default: 1)")
    run.add_argument("--num-envs", type=int,
                     help="sub-environments stepped together (default: the agent's preset, e.g. 8 for PPO on Atari)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto: a GPU if there is one)")
    run.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/ENV__AGENT__SEED__TIME)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    run.add_argument("--save-buffer", action="store_true",
                     help="also save replay at each checkpoint (large: ~7 kB per Atari transition) so a resume "
                          "continues with it")
    run.add_argument("--sticky-actions", action="store_true",
                     help="Atari: repeat the previous action with probability 0.25 (Machado et al. 2018)")
    run.add_argument("--eval-interval", type=int, help="steps between evaluations (default: total/10)")
    run.add_argument("--eval-episodes", type=int, default=10, help="games per evaluation; 0 disables (default: 10)")
    run.add_argument("--checkpoint-interval", type=int, help="steps between checkpoints (default: total/20, at most 100k)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if agent is not None:
        spec = get_agent_spec(agent)
        add_config_flags(parser, spec.agent_class.config_class,
                         f"{agent} config (defaults shown are the class's; the env family's preset may change some, "
                         "and the run's config.json records what was used)")
    return parser


def build_supervised_parser(net: str | None, task: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="nets: " + "; ".join(f"{name}: {spec.help}" for name, spec in NETS.items()),
    )
    run = parser.add_argument_group("run")
    run.add_argument("--task", help=f"data set to classify: {', '.join(TASKS)}")
    run.add_argument("--net", help=f"network: {', '.join(NETS)}")
    run.add_argument("--data-dir", help="folder holding the data set's official files (default: data/DATASET); "
                                        "fetch them with python -m rlkit.supervised.data download DATASET")
    run.add_argument("--max-steps", type=int, default=0, help="stop after this many updates, e.g. for a smoke run "
                                                               "(default: 0, train every epoch)")
    run.add_argument("--seed", type=int, default=1, help="seeds initialization, shuffling and augmentation (default: 1)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto: a GPU if there is one)")
    run.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/TASK__NET__SEED__TIME)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    run.add_argument("--eval-interval", type=int, default=0, help="updates between test evaluations (default: 0, "
                                                                   "every epoch)")
    run.add_argument("--checkpoint-interval", type=int, default=0, help="updates between checkpoints (default: 0, "
                                                                         "every epoch)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--judge", metavar="RUN_DIR", default="",
                     help="GAN runs: a classifier run (same task) that scores each class's samples at every evaluation")
    video = get_net(net).video if net else task in TASKS and TASKS[task].video
    cls = config_class(net) if net else VideoConfig if video else ClassifierConfig
    kind = "GAN" if net and get_net(net).gan else "video classifier" if video else "classifier"
    add_config_flags(parser, cls, f"{kind} config (defaults shown are the class's; each net's recipe changes some, "
                                  "and the run's config.json records what was used)")
    return parser


def supervised_main(argv: list[str], checkpoint: dict | None) -> None:
    net_name = checkpoint["net"] if checkpoint else None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--net")
    pre.add_argument("--task")
    known = pre.parse_known_args(argv)[0]
    net_name = net_name or known.net
    if checkpoint is None and known.task and net_name:
        check_video_pair(known.task, net_name)  # before parsing: else --fold on an image net ends in usage text
    args = build_supervised_parser(net_name, known.task).parse_args(argv)
    if checkpoint is not None:
        settings = SupervisedSettings(**checkpoint["settings"])
        for flag, value in (("task", args.task), ("net", args.net)):
            if value is not None and value != getattr(settings, flag):
                raise UserError(f"--{flag} {value} differs from the resumed run's {getattr(settings, flag)}: drop it")
        settings.device, settings.progress = args.device, not args.no_progress
        settings.max_steps = args.max_steps or settings.max_steps
        if args.data_dir:
            settings.data_dir = args.data_dir
        config = config_from_dict(config_class(settings.net), checkpoint["config"])
        run_dir = args.resume if args.resume.is_dir() else args.resume.parent
        if is_main():
            print(f"resuming {run_dir} at step {checkpoint['loop']['steps']}")
    else:
        if args.net is None:
            raise UserError(f"--net is required with --task: one of {', '.join(NETS)}")
        config = apply_flags(preset(args.net), args)
        settings = SupervisedSettings(
            task=args.task, net=args.net, data_dir=args.data_dir or default_data_dir(args.task), seed=args.seed,
            device=args.device, max_steps=args.max_steps, eval_interval=args.eval_interval,
            checkpoint_interval=args.checkpoint_interval, progress=not args.no_progress, judge=args.judge,
        )
        run_dir = new_run_dir(args.run_dir, f"{args.task}__{args.net}__{args.seed}")
    loop = make_supervised_run(settings, config, run_dir, resume=checkpoint)
    run_loop(loop, f"{settings.net} on {settings.task} for {loop.config.total_steps} updates", run_dir)


def new_run_dir(chosen: Path | None, name: str) -> Path:
    """``chosen``, or ``runs/NAME__TIME``; refuses a folder that already holds a run."""
    run_dir = chosen or Path("runs") / f"{name.replace('/', '-')}__{int(time.time())}"
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"{run_dir} already holds a run: continue it with --resume {run_dir} or pick another --run-dir")
    return run_dir


def run_loop(loop, what: str, run_dir: Path) -> None:
    if is_main():
        print(f"training {what} -> {run_dir}")
        print(f"  tensorboard --logdir {run_dir.parent}   then   python evaluate.py {run_dir}")
    try:
        loop.run()
    except KeyboardInterrupt:
        sys.exit(130)
    shutdown()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--agent")
    pre.add_argument("--task")
    pre.add_argument("--resume", type=Path)
    known, _ = pre.parse_known_args(argv)
    checkpoint = load_checkpoint(known.resume) if known.resume else None
    if (checkpoint.get("kind") == "supervised") if checkpoint else known.task is not None:
        if known.agent is not None:
            raise UserError("--agent and --task are two kinds of run: pass one of them")
        return supervised_main(argv, checkpoint)
    agent_name = checkpoint["agent"] if checkpoint else known.agent
    args = build_parser(agent_name).parse_args(argv)

    if checkpoint is not None:
        settings = RunSettings(**checkpoint["settings"])
        for flag, value in (("agent", args.agent), ("env", args.env)):
            if value is not None and value != getattr(settings, flag):
                raise UserError(f"--{flag} {value} differs from the resumed run's {getattr(settings, flag)}: drop it")
        if args.total_steps is not None:
            settings.total_steps = args.total_steps
        settings.device, settings.progress = args.device, not args.no_progress
        spec = get_agent_spec(settings.agent)
        config = config_from_dict(spec.agent_class.config_class, checkpoint["agent_config"])
        run_dir = args.resume if args.resume.is_dir() else args.resume.parent
        if is_main():
            print(f"resuming {run_dir} at step {checkpoint['loop']['steps']}")
    else:
        if args.agent is None or args.env is None:
            raise UserError("--agent and --env are required (or --resume RUN_DIR): e.g. --agent dqn --env CartPole")
        spec = get_agent_spec(args.agent)
        family = resolve_env(args.env).family
        config = apply_flags(spec.preset(family), args)
        total = args.total_steps or spec.run_defaults(family).total_steps
        settings = RunSettings(
            agent=args.agent, env=args.env, total_steps=total, seed=args.seed,
            num_envs=args.num_envs or spec.run_defaults(family).num_envs,
            device=args.device, sticky_actions=args.sticky_actions,
            eval_interval=args.eval_interval if args.eval_interval is not None else max(total // 10, 1),
            eval_episodes=args.eval_episodes,
            checkpoint_interval=(args.checkpoint_interval if args.checkpoint_interval is not None
                                 else min(max(total // 20, 1_000), 100_000)),
            save_buffer=args.save_buffer, progress=not args.no_progress,
        )
        run_dir = new_run_dir(args.run_dir, f"{args.env}__{args.agent}__{args.seed}")

    loop = make_training_run(settings, config, run_dir, resume=checkpoint)
    run_loop(loop, f"{settings.agent} on {settings.env} for {settings.total_steps} steps", run_dir)


if __name__ == "__main__":
    run_command(main)
    if launched_by_torchrun():
        exit_without_teardown()  # saved and shut down: gloo's exit-time destructors could still fail the run
