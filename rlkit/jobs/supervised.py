"""What the three supervised kinds of run share: ``--task`` and ``--net`` select them, they train for epochs of
a data set, and evaluate and checkpoint once per epoch unless told otherwise."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rlkit.config import NON_NEGATIVE, read_only_with, refuse_unread_flags, require_all, whole_number
from rlkit.distributed import check_allreduce, check_distributed, is_parameter_server, launched_by_torchrun
from rlkit.errors import UserError
from rlkit.jobs.base import Job
from rlkit.jobs.catalog import NETS, TASKS, check_shape_flags, get_net, get_task, nets_of
from rlkit.loop import LoopConfig
from rlkit.runtime import check_run_dir, pick_device
from rlkit.supervised.classifier import ClassifierConfig


@dataclass
class SupervisedSettings:
    """What a supervised run needs beyond the learner's config."""

    task: str
    net: str
    data_dir: str
    seed: int = 1
    device: str = "auto"
    max_steps: int = 0
    """Stop after this many updates (0: train all epochs)."""
    eval_interval: int = 0
    """Updates between test evaluations (0: once per epoch)."""
    checkpoint_interval: int = 0
    """Updates between checkpoints (0: once per epoch)."""
    progress: bool = True
    threads: int = 0
    """Torch threads; 0: auto (see :func:`rlkit.runtime.set_threads`)."""
    precision: str = "fp32"
    """What the updates compute in (:data:`rlkit.runtime.PRECISIONS`, ``--precision``)."""
    judge: str = ""
    """GAN runs: a classifier run whose net scores the generated samples of each class at every evaluation."""
    allreduce: str = "builtin"
    """Under torchrun: how the processes sum gradients and metrics, builtin or ring
    (:data:`rlkit.distributed.ALLREDUCES`); a single process ignores it."""

    distributed: str = "ddp"
    """Under torchrun: ddp (data-parallel), ps-sync or ps-async (a parameter server on rank 0 and workers on the
    other ranks; :data:`rlkit.distributed.DISTRIBUTED`)."""

    def __post_init__(self) -> None:
        check_allreduce(self.allreduce)
        check_distributed(self.distributed)


def default_data_dir(task: str) -> str:
    return str(Path("data") / get_task(task).dataset)


LBFGS_LEARNING_RATE = 1.0
"""--optimizer lbfgs without --learning-rate: torch.optim.LBFGS's default step."""


def check_augmentation_flags(args: argparse.Namespace, preset: Any) -> None:
    """Refuse, in one line, an augmentation flag that the run's augmentation would ignore: ``--crop-padding`` or
    ``--augmentation`` without augmentation (``--no-augment``, or a net that trains without it), and
    ``--crop-padding`` with a crop that is not padded."""
    given = [name for name in ("crop_padding", "augmentation") if getattr(args, name, None) is not None]
    if not given:
        return
    augment = args.augment if getattr(args, "augment", None) is not None else getattr(preset, "augment", True)
    flag = "--" + given[0].replace("_", "-")
    if not augment:
        why = "--no-augment turns off" if getattr(args, "augment", None) is False else \
            f"{args.net} trains without (add --augment to use it)"
        raise UserError(f"{flag} sets the training augmentation, which {why}: drop {flag}")
    augmentation = getattr(args, "augmentation", None) or getattr(preset, "augmentation", "crop")
    if "crop_padding" in given and augmentation != "crop":
        raise UserError(f"--crop-padding pads the random crop of --augmentation crop; {augmentation} crops without "
                        "padding: drop --crop-padding")


class SupervisedJob(Job):
    """``--task DATASET --net NET``: the flags, settings and loop schedule of every supervised kind."""

    settings_class = SupervisedSettings
    resume_overrides = ("max_steps", "data_dir", "eval_interval", "checkpoint_interval")
    unit = "updates"
    eval_interval_default = "0: once per epoch"
    data_parallel: ClassVar[bool] = True
    """Trains under torchrun (DDP); GAN and video runs do not yet."""

    def refuse_torchrun(self, settings: SupervisedSettings) -> None:
        if is_parameter_server(settings.distributed):
            raise UserError(f"--distributed {settings.distributed} trains classifiers only ({self.kind} jobs run in "
                            "one process): drop --distributed")
        if not self.data_parallel and launched_by_torchrun():
            raise UserError(f"{settings.net} runs in one process for now ({self.kind} jobs are not data-parallel "
                            "yet): start it without torchrun")

    def add_flags(self, parser: argparse.ArgumentParser, run: argparse._ArgumentGroup) -> None:
        nets = nets_of(self.kind)
        parser.epilog = "nets: " + "; ".join(f"{name}: {NETS[name].help}" for name in nets)
        run.add_argument("--task", help=f"data set: {', '.join(t for t, info in TASKS.items() if self.accepts(info))}")
        run.add_argument("--net", help=f"network: {', '.join(nets)}")
        run.add_argument("--data-dir", help="folder holding the data set's official files (default: data/DATASET); "
                                            "fetch them with python -m rlkit.data download DATASET")
        run.add_argument("--max-steps", type=whole_number, help="stop after this many updates, e.g. for a smoke run "
                                                       "(default: 0, train every epoch)")

    def accepts(self, task: Any) -> bool:
        """Whether this kind of run trains on ``task`` (image or video data)."""
        return not task.videos

    def preset(self, names: dict[str, Any]) -> Any | None:
        if not names.get("net"):
            return None
        return self.config_class(names)(**get_net(names["net"]).preset)

    def new_settings(self, args: argparse.Namespace) -> SupervisedSettings:
        if args.task is None:
            raise UserError(f"--task is required with --net: one of "
                            f"{', '.join(t for t, info in TASKS.items() if self.accepts(info))}")
        if args.net is None:
            raise UserError(f"--net is required with --task: one of {', '.join(nets_of(self.kind))}")
        # 0 keeps its documented meaning (every epoch, once per epoch); a negative count is refused
        require_all((flag, value, NON_NEGATIVE) for flag, value in (
            ("--seed", args.seed), ("--max-steps", args.max_steps), ("--eval-interval", args.eval_interval),
            ("--checkpoint-interval", args.checkpoint_interval), ("--threads", args.threads)) if value is not None)
        get_net(args.net)  # an unknown net is named as such before its flags are judged
        if getattr(args, "optimizer", None) == "hessian-free" and args.learning_rate is not None:
            raise UserError("--optimizer hessian-free takes no learning rate (CG, its damping and its line search "
                            "size each step): drop --learning-rate")
        if getattr(args, "optimizer", None) == "lbfgs" and args.learning_rate is None:
            args.learning_rate = LBFGS_LEARNING_RATE  # its line search's first trial step, not Adam's 1e-3
        check_shape_flags(args.net, args)
        preset = self.preset({"net": args.net})
        check_augmentation_flags(args, preset)
        if isinstance(preset, ClassifierConfig):  # a flag of another optimizer or schedule
            refuse_unread_flags(args, read_only_with(type(preset)),
                                lambda field: getattr(args, field, None) or getattr(preset, field))
        pick_device(args.device or "auto")
        check_run_dir(args.run_dir)
        return SupervisedSettings(
            task=args.task, net=args.net, data_dir=args.data_dir or default_data_dir(args.task),
            seed=1 if args.seed is None else args.seed, device=args.device or "auto", max_steps=args.max_steps or 0,
            eval_interval=args.eval_interval or 0, checkpoint_interval=args.checkpoint_interval or 0,
            progress=not args.no_progress, threads=args.threads or 0,
            precision=args.precision or "fp32", allreduce=args.allreduce or "builtin",
            distributed=args.distributed or "ddp",
        )

    def resume(self, settings: SupervisedSettings, args: argparse.Namespace, steps_taken: int) -> None:
        if settings.max_steps and settings.max_steps < steps_taken:
            raise UserError(f"--max-steps {settings.max_steps} is below the {steps_taken} updates the run has taken: "
                            "pass a larger one to extend it")

    def run_name(self, settings: SupervisedSettings) -> str:
        return f"{settings.task}__{settings.net}__{settings.seed}"

    def describe(self, settings: SupervisedSettings, loop: Any) -> str:
        return f"{settings.net} on {settings.task} for {loop.config.total_steps} updates"

    def loop_config(self, settings: SupervisedSettings, config: Any, steps_per_epoch: int,
                    eval_interval: int = 0) -> LoopConfig:
        """``config.epochs`` passes (or ``settings.max_steps`` updates); evaluation and checkpoints once per epoch
        unless the settings (or the job's ``eval_interval``) say otherwise."""
        total = config.epochs * steps_per_epoch
        if settings.max_steps:
            total = min(total, settings.max_steps)
        return LoopConfig(total, settings.eval_interval or eval_interval or steps_per_epoch,
                          settings.checkpoint_interval or steps_per_epoch,
                          log_interval=max(1, min(100, steps_per_epoch // 4)), progress=settings.progress)

    def data_dir_of(self, settings: SupervisedSettings, data_dir: str | None) -> SupervisedSettings:
        if data_dir is not None:
            settings.data_dir = data_dir
        return settings
