"""Every kind of run, in one registry: ``train.py`` and ``evaluate.py`` look a job up here and call it.

A new kind of run (self-play, distributed actors) is one module with a :class:`Job` subclass and one row below.
"""

from __future__ import annotations

from typing import Any

from rlkit.agents import SELF_PLAY_AGENTS
from rlkit.errors import UserError
from rlkit.jobs.agent import AgentJob
from rlkit.jobs.base import Job
from rlkit.jobs.catalog import NETS, TASKS, check_pair, get_net, get_task
from rlkit.jobs.classifier import ClassifierJob
from rlkit.jobs.gan import GANJob
from rlkit.jobs.selfplay import SelfPlayJob
from rlkit.jobs.upgrade import read_checkpoint, upgrade
from rlkit.jobs.video import VideoJob

JOBS: dict[str, Job] = {job.kind: job for job in (AgentJob(), ClassifierJob(), GANJob(), VideoJob(), SelfPlayJob())}


def select_job(agent: str | None, task: str | None, net: str | None) -> Job:
    """The job that ``--agent`` or ``--task``/``--net`` names."""
    if agent is not None:
        if task is not None or net is not None:
            raise UserError("--agent and --task/--net are two kinds of run: pass one of them")
        return JOBS["selfplay" if agent in SELF_PLAY_AGENTS else "agent"]
    if net is not None:
        kind = get_net(net).job
        if task is not None:
            check_pair(task, net)
        return JOBS[kind]
    if task is not None:
        return JOBS["video" if get_task(task).videos else "classifier"]
    raise UserError("say what to train: --agent NAME --env ENV, or --task DATASET --net NET (or --resume RUN_DIR)")


def job_of(checkpoint: dict[str, Any]) -> Job:
    """The job that wrote ``checkpoint`` (upgraded to the current format first: see :func:`upgrade`)."""
    kind = checkpoint.get("job")
    if kind not in JOBS:
        raise UserError(f"this checkpoint names an unknown kind of run {kind!r}: pass one written by train.py "
                        f"({', '.join(JOBS)})")
    return JOBS[kind]


def load_run(path: Any, map_location: str = "cpu") -> tuple[Job, dict[str, Any]]:
    """The job and the checkpoint (in the current format) of a run directory or checkpoint file."""
    checkpoint = read_checkpoint(path, map_location)
    return job_of(checkpoint), checkpoint


__all__ = ["JOBS", "Job", "NETS", "TASKS", "check_pair", "get_net", "get_task", "job_of", "load_run", "read_checkpoint",
           "select_job", "upgrade"]
