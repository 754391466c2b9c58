"""Evaluate a saved run: ``python evaluate.py RUN_DIR_OR_CHECKPOINT``.

For an agent: rebuilds the agent and its environment from the checkpoint alone and plays whole games in the
evaluation setting (raw scores, no reward clipping, a lost life does not end the game); prints the mean ± std of the
raw returns. For a classifier: prints its top-1 and top-5 accuracy on the task's test set (``--mc-samples N`` for
Monte Carlo dropout instead of the standard scaling rule). For a video classifier (UCF-101): top-1/5/10 per video,
the best and worst classes and the most confused pairs, written with the confusion matrix to ``report.json`` and
``confusion.png`` in the run directory (``--fuse RUN_DIR`` combines two runs' per-video scores).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rlkit.analysis.metrics import classification_report, save_confusion_png
from rlkit.checkpoint import load_checkpoint
from rlkit.errors import UserError, run_command
from rlkit.rl import agent_from_checkpoint, evaluate_agent
from rlkit.supervised.gan import class_conditional_accuracy, save_samples
from rlkit.supervised.gan_task import gan_from_checkpoint, make_judge
from rlkit.supervised.tasks import evaluate_classifier, get_net, job_from_checkpoint
from rlkit.supervised.video_task import evaluate_videos, fuse_scores, video_job_from_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, metavar="RUN_DIR_OR_CHECKPOINT", help="a run directory or its checkpoint.pt")
    parser.add_argument("--episodes", type=int, default=10, help="games to play (default: 10)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the evaluation envs (default: 12345)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--stochastic", action="store_true",
                        help="sample actions from the policy instead of taking its mode (mean or argmax)")
    parser.add_argument("--video", type=Path, metavar="FILE.mp4", help="also record one game to this MP4 file")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    supervised = parser.add_argument_group("classifiers")
    supervised.add_argument("--data-dir", help="folder of the test set (default: the one the run trained on)")
    supervised.add_argument("--judge", metavar="RUN_DIR",
                            help="GAN runs: a classifier run whose net scores 100 generated images of each class")
    supervised.add_argument("--samples", type=Path, metavar="FILE.png",
                            help="GAN runs: write a grid of samples, one column per class (default: RUN_DIR/samples.png)")
    supervised.add_argument("--mc-samples", type=int, default=0,
                            help="Monte Carlo dropout: average this many dropout masks per image (default: 0, the "
                                 "scaling rule: dropout off)")
    video = parser.add_argument_group("video classifiers")
    video.add_argument("--frames-dir", help="read pre-extracted frames from this folder ('' decodes the videos; "
                                            "default: what the run trained on)")
    video.add_argument("--out", type=Path, metavar="DIR",
                       help="where report.json and confusion.png go (default: the run directory)")
    video.add_argument("--fuse", type=Path, metavar="RUN_DIR",
                       help="combine this run's per-video log-probabilities with another video run's (same fold)")
    video.add_argument("--fuse-weight", type=float, default=0.5,
                       help="weight of this run in the fusion, the rest on the other (default: 0.5)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    checkpoint = load_checkpoint(args.path)
    if checkpoint.get("kind") == "supervised":
        return evaluate_supervised(checkpoint, args)
    agent, settings = agent_from_checkpoint(checkpoint, args.device)
    deterministic = not args.stochastic
    returns = evaluate_agent(agent, settings.env, args.episodes, args.seed, settings.sticky_actions,
                             deterministic=deterministic)
    result = {
        "agent": settings.agent, "env": settings.env, "steps": checkpoint["loop"]["steps"],
        "episodes": len(returns), "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
        "returns": returns,
    }
    if args.video is not None:
        result["video"] = str(args.video)
        result["video_return"] = evaluate_agent(agent, settings.env, 1, args.seed, settings.sticky_actions, args.video,
                                                deterministic=deterministic)[0]
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{settings.agent} on {settings.env} after {result['steps']} steps: "
              f"{result['mean_return']:.2f} ± {result['std_return']:.2f} over {len(returns)} episodes")
        if args.video is not None:
            print(f"video of one game (return {result['video_return']:.1f}) written to {args.video}")
    return result


def evaluate_gan(checkpoint: dict, args: argparse.Namespace) -> dict:
    learner, test, eval_transform, settings = gan_from_checkpoint(checkpoint, args.device, args.data_dir)
    metrics = evaluate_classifier(learner, test, eval_transform, learner.device)
    run_dir = args.path if args.path.is_dir() else args.path.parent
    grid = save_samples(learner, args.samples or run_dir / "samples.png")
    result = {"task": settings.task, "net": settings.net, "steps": checkpoint["loop"]["steps"],
              "critic_class_accuracy": metrics["eval/accuracy"], "samples": str(grid)}
    if args.judge:
        judge = make_judge(args.judge, learner.device, test.images.shape[1])
        overall, per_class = class_conditional_accuracy(learner.generator, judge, learner.config.num_classes,
                                                        noise_dim=learner.config.noise_dim, seed=args.seed,
                                                        device=learner.device)
        result.update(class_conditional_accuracy=overall, per_class=per_class)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{settings.net} on {settings.task} after {result['steps']} updates: the critic's class head scores "
              f"{100 * result['critic_class_accuracy']:.2f}% on the test set; samples in {grid}")
        if args.judge:
            print(f"class-conditional accuracy of generated images (judge {args.judge}): "
                  f"{100 * result['class_conditional_accuracy']:.2f}%")
    return result


def evaluate_video(checkpoint: dict, args: argparse.Namespace) -> dict:
    if args.mc_samples:
        raise UserError("--mc-samples is for image classifiers: drop it for a video run")
    job, settings, config = video_job_from_checkpoint(checkpoint, args.device, args.data_dir, args.frames_dir)
    own = evaluate_videos(job)  # per-video sums of frame (or clip) log-probabilities
    scores, prefix = own.scores, ""
    result = {"task": settings.task, "net": settings.net, "steps": checkpoint["loop"]["steps"], "fold": config.fold,
              "videos": len(own.labels), f"{own.unit}s_per_video": own.samples,
              f"{own.unit}_accuracy": own.sample_accuracy}
    if args.fuse:
        other_job, other_settings, _ = video_job_from_checkpoint(load_checkpoint(args.fuse), args.device,
                                                                 args.data_dir, args.frames_dir)
        other = evaluate_videos(other_job)
        scores, prefix = fuse_scores(own, other, args.fuse_weight), "fused_"
        result["fused"] = {"with": str(args.fuse), "net": other_settings.net, "weight": args.fuse_weight,
                           "own_top1": own.metrics()["eval/top1"], "other_top1": other.metrics()["eval/top1"]}
    report = classification_report(scores, own.labels, job.test.classes)
    out = args.out or (args.path if args.path.is_dir() else args.path.parent)
    result.update(report.to_dict())
    result["confusion_png"] = str(save_confusion_png(out / f"{prefix}confusion.png", report.matrix,
                                                     report.class_names))
    result["report_json"] = str(out / f"{prefix}report.json")
    Path(result["report_json"]).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        fused = (f", fused with {result['fused']['net']} ({args.fuse}, whose top-1 is "
                 f"{result['fused']['other_top1']:.2%}; this run alone {result['fused']['own_top1']:.2%})"
                 if args.fuse else "")
        print(f"{settings.net} on {settings.task} split {config.fold} after {result['steps']} updates, "
              f"{len(own.labels)} test videos of {own.samples} {own.unit}s each{fused}")
        print(report.format())
        print(f"single {own.unit}s: top-1 {own.sample_accuracy:.2%}; confusion matrix in {result['confusion_png']}, "
              f"report in {result['report_json']}")
    return result


def has_dropout(learner) -> bool:
    model = getattr(learner, "model", None)  # NumPy learners have no torch model and no dropout
    return model is not None and any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in model.modules())


def evaluate_supervised(checkpoint: dict, args: argparse.Namespace) -> dict:
    if get_net(checkpoint["net"]).video:
        return evaluate_video(checkpoint, args)
    if args.fuse:
        raise UserError("--fuse combines two video classifier runs (--task ucf101)")
    if get_net(checkpoint["net"]).gan:
        return evaluate_gan(checkpoint, args)
    if args.mc_samples < 0:
        raise UserError(f"--mc-samples must be 0 or more, got {args.mc_samples}")
    job, settings, _ = job_from_checkpoint(checkpoint, args.device, args.data_dir)
    if args.mc_samples and not has_dropout(job.learner):
        raise UserError(f"--mc-samples needs a net with dropout; {settings.net} has none: drop --mc-samples")
    metrics = evaluate_classifier(job.learner, job.test, job.eval_transform, job.device, mc_samples=args.mc_samples,
                                  seed=args.seed)
    result = {"task": settings.task, "net": settings.net, "steps": checkpoint["loop"]["steps"],
              "images": len(job.test.labels), "mc_samples": args.mc_samples,
              **{key.removeprefix("eval/"): value for key, value in metrics.items()}}
    if args.json:
        print(json.dumps(result))
    else:
        how = f"Monte Carlo dropout, {args.mc_samples} samples" if args.mc_samples else "dropout scaling rule"
        print(f"{settings.net} on {settings.task} after {result['steps']} updates ({how}): test accuracy "
              f"{100 * result['accuracy']:.2f}%, top-5 {100 * result['top5_accuracy']:.2f}% "
              f"over {result['images']} images")
    return result


if __name__ == "__main__":
    run_command(main)
