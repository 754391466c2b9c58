"""UCF-101 action recognition runs (``--task ucf101``, assignment 6) on the shared loop: a video net trained as a
classifier on single frames (``frame-resnet50``, ``frame-resnet18``), clips (``r3d18``, ``cnn-lstm``), stacks of
optical flow (``flow-resnet18``, ``flow-resnet50``: the temporal stream of a two-stream net) or sequences of
precomputed frame features (``feature-lstm``), and scored per video by summing the log-probabilities of evenly
spaced frames, clips, stacks or sequences.

The learner is :class:`rlkit.supervised.classifier.Classifier` (cross-entropy, the optimizer and schedule of the
config); what differs from an image run is the data (:mod:`rlkit.data.ucf101`), the nets
(:mod:`rlkit.nets.video`) and the per-video evaluation here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from rlkit.analysis.metrics import classification_report, save_confusion_png, topk_accuracy
from rlkit.data import transforms as T
from rlkit.data import ucf101 as V
from rlkit.data.features import load_ucf101_features
from rlkit.data.flow import load_ucf101_flow
from rlkit.errors import UserError
from rlkit.jobs.base import load_learner
from rlkit.jobs.catalog import NETS, VideoNet, check_pair, get_net
from rlkit.jobs.classifier import recalibrates
from rlkit.jobs.supervised import SupervisedJob, SupervisedSettings
from rlkit.jobs.upgrade import read_checkpoint
from rlkit.loop import Loop
from rlkit.nets.pretrained import freeze, head_name, load_pretrained
from rlkit.nets.video import fuse_log_probs, sum_log_probs
from rlkit.runtime import pick_device, prepare_process, seed_everything
from rlkit.sources.batches import VideoBatchSource
from rlkit.supervised.classifier import Classifier, ClassifierConfig, recalibrated_batch_norm


@dataclass
class VideoConfig(ClassifierConfig):
    """A video classifier's hyperparameters: the classifier's (optimizer, schedule, epochs, batch size in frames or
    clips, ``--pretrained``, ``--freeze-except``, ``--width``) and how videos are cut into samples. The defaults
    are the course's; each net's preset changes some."""

    # Fields of ClassifierConfig that mean something else here, redeclared for their --help.
    batch_size: int = 32
    """Frames (frame nets) or clips (clip nets) per update, one per video."""
    augment: bool = True
    """Per training video: a random crop of 70-100% of the frame area resized to --input-size, a horizontal flip
    (unless --no-flip) and brightness +-20%, the same on every frame of a clip (flow nets: the crop and the flip,
    which negates the x flow; feature-lstm: none)."""
    dropout: float = 0.2
    """cnn-lstm: dropout after the encoder's stem and on the LSTM's last state; feature-lstm: on the features and
    the LSTM's last output (the ResNets have none)."""
    width: float = 1.0
    """r3d18, resnet3d-50 and cnn-lstm: multiplies every channel count (1: the published widths; the frame nets
    keep theirs)."""
    input_size: int = 112
    """Side of the square frames the net sees: training crops 70-100% of each frame's area, evaluation resizes
    the whole frame (224 for the ImageNet frame nets, 112 for the clip nets)."""
    fold: int = 1
    """UCF-101's train/test split, 1, 2 or 3."""
    frames_dir: str = ""
    """Read frames from this folder of pre-extracted frames (<Class>/<video name>/*.jpg, written by python -m
    rlkit.data extract-frames) instead of decoding the videos ('' decodes)."""
    flip: bool = True
    """Mirror training videos at random (--no-flip where the label is a direction of motion)."""
    clip_length: int = 16
    """Frames per clip (r3d18, resnet3d-50, cnn-lstm); feature vectors per sequence (feature-lstm)."""
    flow_dir: str = ""
    """Flow nets: the folder of optical flow written by python -m rlkit.data extract-flow (<Class>/<video
    name>/x_000001.jpg, y_000001.jpg, ...)."""
    flow_stack: int = 10
    """Flow nets: consecutive flow fields per stack; the net's first layer takes twice as many channels."""
    features_dir: str = ""
    """feature-lstm: the folder of per-frame features written by python -m rlkit.data extract-features
    (<Class>/<video name>.npy)."""
    test_frames: int = 25
    """Frame nets: evenly spaced frames whose log-probabilities are summed per test video."""
    test_clips: int = 10
    """Clip, flow and feature nets: evenly spaced clips (stacks, sequences) whose log-probabilities are summed per
    test video."""
    eval_videos: int = 0
    """Evaluate during training on this many evenly spaced test videos (0: all of them; evaluate.py always uses
    all)."""
    lstm_hidden: int = 256
    """cnn-lstm: LSTM units."""
    lstm_grid: int = 1
    """cnn-lstm: pool each frame's feature map to a grid x grid of cells so the LSTM sees where things are (1:
    global pooling)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fold not in V.FOLDS:
            raise UserError(f"UCF-101 has train/test splits 1, 2 and 3, not --fold {self.fold}")
        defaults = ClassifierConfig()
        for name in ("augmentation", "crop_padding"):  # the image classifier's; a video run augments as --augment says
            if getattr(self, name) != getattr(defaults, name):
                raise UserError(f"--{name.replace('_', '-')} picks an image classifier's augmentation; video runs "
                                f"crop, flip and jitter as --augment describes: drop --{name.replace('_', '-')}")
        for name in ("input_size", "clip_length", "test_frames", "test_clips", "lstm_hidden", "lstm_grid",
                     "flow_stack"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")


# ---------------------------------------------------------------------------------------------------- jobs
@dataclass
class VideoParts:
    """Everything a video run is made of, for the loop and for evaluation."""

    learner: Classifier
    net: VideoNet
    train_transform: Any
    eval_transform: Any
    test: V.VideoDataset
    """The whole test split, sampled as at test time (evenly spaced frames or clips)."""
    device: torch.device
    batch_size: int
    """Frames or clips per forward pass (the training batch size)."""
    calibration: V.VideoDataset | None = None
    """Training videos sampled as at test time, through which evaluation re-estimates batch norm's statistics
    (:func:`calibration_videos`); None where nothing is re-estimated."""


def samplings(net: VideoNet, config: VideoConfig) -> tuple[V.Sampling, V.Sampling]:
    """(training, test) frame sampling: a random frame and evenly spaced ones, or a random clip (stack of flow
    fields, sequence of features) and evenly spaced ones."""
    if net.input == "flow":
        return V.RandomClip(config.flow_stack), V.EvenClips(config.flow_stack, config.test_clips)
    if net.clips:
        return V.RandomClip(config.clip_length), V.EvenClips(config.clip_length, config.test_clips)
    return V.RandomFrame(), V.EvenFrames(config.test_frames)


INPUT_FOLDERS = {"frames": "frames_dir", "flow": "flow_dir", "features": "features_dir"}
"""The config field naming where each kind of net input lives."""


def check_inputs(name: str, net: VideoNet, config: VideoConfig) -> None:
    """A flow or feature net needs its folder; a folder the net does not read is refused (one line each)."""
    own = INPUT_FOLDERS[net.input]
    for kind, field in INPUT_FOLDERS.items():
        flag = "--" + field.replace("_", "-")
        if field != own and getattr(config, field):
            users = ", ".join(n for n, row in NETS.items() if getattr(row, "input", None) == kind)
            raise UserError(f"{flag} feeds {users}; {name} reads {net.input}: drop {flag}")
    if net.input != "frames" and not getattr(config, own):
        command = {"flow": "extract-flow --data-dir DATA_DIR --out FLOW_DIR",
                   "features": "extract-features --net frame-resnet50 --data-dir DATA_DIR --out FEATURES_DIR"}
        raise UserError(f"{name} reads precomputed {net.input}: pass --{own.replace('_', '-')} DIR, written by "
                        f"`python -m rlkit.data {command[net.input]}`")


def load_split(settings: SupervisedSettings, config: VideoConfig, net: VideoNet, split: str, sampling: V.Sampling
               ) -> V.VideoDataset:
    """A split of what the net reads: videos or frame folders, flow folders or feature files."""
    if net.input == "flow":
        return load_ucf101_flow(settings.data_dir, split, sampling, config.fold, config.flow_dir)
    if net.input == "features":
        return load_ucf101_features(settings.data_dir, split, sampling, config.fold, config.features_dir)
    return V.load_ucf101(settings.data_dir, split, sampling, config.fold, config.frames_dir or None)


def make_transforms(net: VideoNet, config: VideoConfig) -> tuple[Any, Any]:
    """(training, evaluation) transforms of the net's input: frames and clips, flow stacks, or none for
    features."""
    if net.input == "features":
        return None, None
    if net.input == "flow":
        return T.make_flow_transforms(config.input_size, augment=config.augment, flip=config.flip)
    return T.make_video_transforms(config.input_size, net.stats, augment=config.augment, flip=config.flip,
                                   channels_first_clips=net.channels_first)


def build_parts(settings: SupervisedSettings, config: VideoConfig, train: V.VideoDataset | None = None
                ) -> VideoParts:
    """Read the test list (and size the schedule from ``train`` if given), build the net, load ``--pretrained``
    and freeze what ``--freeze-except`` leaves out."""
    net = get_net(settings.net)
    check_inputs(settings.net, net, config)
    test = load_split(settings, config, net, "test", samplings(net, config)[1])
    if train is not None and train.classes != test.classes:
        raise UserError(f"the train and test lists of {settings.data_dir} name different classes: re-download "
                        f"the split lists from {V.UCF101_URL}")
    model = net.build(config, len(test.classes))
    if config.pretrained:
        if not net.pretrained:
            loaders = ", ".join(n for n, row in NETS.items() if getattr(row, "pretrained", False))
            raise UserError(f"{settings.net} trains from scratch: drop --pretrained ({loaders} load weight files)")
        load_pretrained(model, config.pretrained, skip=(head_name(model) + ".",))
    if config.freeze_except:
        freeze(model, config.freeze_except)
    device = pick_device(settings.device)
    steps_per_epoch = len(train) // config.batch_size if train is not None else 1
    learner = Classifier(model.to(device), config, max(steps_per_epoch, 1), device)
    train_transform, eval_transform = make_transforms(net, config)
    calibration = None
    if recalibrates(learner, config):  # the training videos as the test samples them (read only if not given)
        at_test = samplings(net, config)[1]
        videos = train.with_sampling(at_test) if train is not None else load_split(settings, config, net, "train",
                                                                                  at_test)
        calibration = calibration_videos(videos, config)
    return VideoParts(learner, net, train_transform, eval_transform, test, device, config.batch_size, calibration)


def calibration_videos(train: V.VideoDataset, config: VideoConfig) -> V.VideoDataset:
    """The training videos (evenly spaced over the list, so every class has some) whose frames or clips, sampled and
    transformed as at test time, make ``--bn-recalibration`` batches of ``--batch-size``: the same ones at every
    evaluation, so evaluate.py gives the number training logged (as :func:`rlkit.jobs.classifier.calibration_batches`
    does for images)."""
    return evenly_spaced_videos(train, math.ceil(config.bn_recalibration * config.batch_size / train.sampling.count))


# ---------------------------------------------------------------------------------------------------- evaluation
def evenly_spaced_videos(data: V.VideoDataset, count: int) -> V.VideoDataset:
    """``count`` videos spread over the list (which is sorted by class, so every class keeps some); 0 or at least
    ``len(data)``: all of them."""
    if count <= 0 or count >= len(data):
        return data
    return data.subset(np.unique(np.rint(np.linspace(0, len(data) - 1, count)).astype(np.int64)))


class VideoScores(NamedTuple):
    """What :func:`evaluate_videos` measures."""

    scores: np.ndarray
    """Per video, the sum of its samples' log-probabilities ``(N, K)``."""
    labels: np.ndarray
    """``(N,)``."""
    samples: int
    """Frames or clips summed per video."""
    unit: str
    """frame, clip, stack (of flow fields) or sequence (of features)."""
    sample_accuracy: float
    """Top-1 accuracy of the single frames or clips."""
    sample_nll: float
    """Mean negative log-likelihood of the single frames or clips."""
    videos: tuple[str, ...] = ()
    """``Class/video name`` of each row."""

    def metrics(self) -> dict[str, float]:
        """``eval/top1``, ``eval/top5``, ``eval/top10`` per video, and the single samples' accuracy and NLL."""
        top = topk_accuracy(self.scores, self.labels, (1, 5, 10))
        return {**{f"eval/top{k}": v for k, v in top.items()},
                f"eval/{self.unit}_accuracy": self.sample_accuracy, "eval/nll": self.sample_nll}


@torch.no_grad()
def evaluate_videos(job: VideoParts, data: V.VideoDataset | None = None) -> VideoScores:
    """Score every video of ``data`` (default the job's test set): the sum over its evenly spaced frames or clips
    of their log-probabilities, the course's per-video prediction."""
    data = job.test if data is None else data
    samples = data.sampling.count  # EvenFrames or EvenClips
    # Each batch holds about one training batch of frames or clips; the forward passes take at most that many.
    videos_per_batch = max(1, job.batch_size // samples)
    scores, labels = [], []
    correct = nll = 0.0
    with test_mode_statistics(job):
        for x, y in V.iterate_videos(data, videos_per_batch, job.eval_transform, job.device):
            flat = x.flatten(0, 1)
            log_probs = torch.cat([job.learner.log_probs(part) for part in flat.split(job.batch_size)])
            log_probs = log_probs.unflatten(0, x.shape[:2])  # (B, samples, K)
            scores.append(sum_log_probs(log_probs).float().cpu())
            labels.append(y.cpu())
            correct += (log_probs.argmax(-1) == y[:, None]).sum().item()
            nll -= log_probs.gather(-1, y[:, None, None].expand(-1, samples, 1)).sum().item()
    count = len(data) * samples
    names = tuple(f"{source.parent.name}/{source.stem}" for source in data.sources)
    return VideoScores(torch.cat(scores).numpy(), torch.cat(labels).numpy(), samples,
                       job.net.unit, correct / count, nll / count, names)


def test_mode_statistics(job: VideoParts) -> contextlib.AbstractContextManager:
    """Batch norm's statistics re-estimated on the job's calibration videos (a net with dropout before batch norm,
    as cnn-lstm's ResNet stem), training's put back after."""
    if job.calibration is None:
        return contextlib.nullcontext()
    videos_per_batch = max(1, job.batch_size // job.calibration.sampling.count)
    batches = (part for x, _ in V.iterate_videos(job.calibration, videos_per_batch, job.eval_transform, job.device)
               for part in x.flatten(0, 1).split(job.batch_size))
    return recalibrated_batch_norm(job.learner.model, batches)


def fuse_scores(a: VideoScores, b: VideoScores, weight: float = 0.5) -> np.ndarray:
    """Two runs' per-video scores of the same test videos combined (assignment 6c): each divided by its number
    of frames or clips, so ``weight`` (on ``a``) is not swamped by the run that sums more samples, then
    :func:`rlkit.nets.video.fuse_log_probs`."""
    if a.videos != b.videos or a.scores.shape != b.scores.shape or not np.array_equal(a.labels, b.labels):
        raise UserError(f"the two runs were tested on different videos ({len(a.labels)} and {len(b.labels)} "
                        f"videos, {a.scores.shape[1]} and {b.scores.shape[1]} classes): fuse runs of the same "
                        f"task, fold and data")
    if not 0.0 <= weight <= 1.0:
        raise UserError(f"--fuse-weight must be in [0, 1], got {weight}")
    return fuse_log_probs(a.scores / a.samples, b.scores / b.samples, weight)


@dataclass
class TrainedVideoClassifier:
    parts: VideoParts
    settings: SupervisedSettings
    config: VideoConfig


class VideoJob(SupervisedJob):
    kind = "video"
    best_metric = "eval/top1"
    data_parallel = False

    def accepts(self, task: Any) -> bool:
        return task.videos

    def config_class(self, names: dict[str, Any]) -> type:
        return VideoConfig

    def new_settings(self, args: argparse.Namespace) -> SupervisedSettings:
        settings = super().new_settings(args)
        check_pair(settings.task, settings.net)
        return settings

    def build(self, settings: SupervisedSettings, config: VideoConfig, run_dir: Path,
              resume: dict[str, Any] | None = None) -> Loop:
        self.refuse_torchrun(settings)
        check_pair(settings.task, settings.net)
        prepare_process(settings.threads, large_convolutions=True)
        seed_everything(settings.seed)
        net = get_net(settings.net)
        check_inputs(settings.net, net, config)
        train = load_split(settings, config, net, "train", samplings(net, config)[0])
        parts = build_parts(settings, config, train)
        source = VideoBatchSource(train, config.batch_size, settings.seed, parts.train_transform, parts.device)
        during_training = evenly_spaced_videos(parts.test, config.eval_videos)
        return self.make_loop(parts.learner, source, settings, config, run_dir,
                              self.loop_config(settings, config, source.steps_per_epoch), resume,
                              lambda: evaluate_videos(parts, during_training).metrics())

    def rebuild(self, checkpoint: dict[str, Any], device: str = "auto", data_dir: str | None = None,
                frames_dir: str | None = None, flow_dir: str | None = None, features_dir: str | None = None,
                **overrides: Any) -> TrainedVideoClassifier:
        """``data_dir`` and the folder of what the net reads (``frames_dir``, ``flow_dir``, ``features_dir``)
        replace the run's own (``frames_dir=""`` decodes the videos); a folder of another kind of input is
        ignored, so one set of flags serves two fused runs."""
        settings = self.data_dir_of(self.settings_from(checkpoint), data_dir)
        settings.device = device
        config = self.config_from(checkpoint, settings)
        # The trained weights replace any pretrained file, which need not exist where the run is evaluated.
        changes: dict[str, Any] = {"pretrained": ""}
        field = INPUT_FOLDERS[get_net(settings.net).input]
        folder = {"frames_dir": frames_dir, "flow_dir": flow_dir, "features_dir": features_dir}[field]
        if folder is not None:
            changes[field] = folder
        parts = build_parts(settings, dataclasses.replace(config, **changes))
        load_learner(parts.learner, checkpoint)
        return TrainedVideoClassifier(parts, settings, config)

    def add_report_flags(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("video classifiers")
        group.add_argument("--data-dir", help="folder of the test set (default: the one the run trained on)")
        group.add_argument("--frames-dir", help="read pre-extracted frames from this folder ('' decodes the videos; "
                                                "default: what the run trained on)")
        group.add_argument("--flow-dir", help="flow nets: read optical flow from this folder (default: the run's)")
        group.add_argument("--features-dir", help="feature-lstm: read features from this folder (default: the "
                                                  "run's)")
        group.add_argument("--out", type=Path, metavar="DIR",
                           help="where report.json and confusion.png go (default: the run directory)")
        group.add_argument("--fuse", type=Path, metavar="RUN_DIR",
                           help="combine this run's per-video log-probabilities with another video run's (same fold)")
        group.add_argument("--fuse-weight", type=float, default=0.5,
                           help="weight of this run in the fusion, the rest on the other (default: 0.5)")

    def report(self, checkpoint: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
        folders = {"frames_dir": args.frames_dir, "flow_dir": args.flow_dir, "features_dir": args.features_dir}
        run = self.rebuild(checkpoint, args.device, args.data_dir, **folders)
        settings, config = run.settings, run.config
        own = evaluate_videos(run.parts)  # per-video sums of frame (or clip) log-probabilities
        scores, prefix = own.scores, ""
        result = {"task": settings.task, "net": settings.net, "steps": checkpoint["loop"]["steps"],
                  "fold": config.fold, "videos": len(own.labels), f"{own.unit}s_per_video": own.samples,
                  f"{own.unit}_accuracy": own.sample_accuracy}
        if args.fuse:
            other_checkpoint = read_checkpoint(args.fuse)
            if other_checkpoint.get("job") != self.kind:
                raise UserError(f"--fuse {args.fuse} is a {other_checkpoint.get('job')!r} run: fuse two video "
                                "classifier runs (--task ucf101)")
            other_run = self.rebuild(other_checkpoint, args.device, args.data_dir, **folders)
            other = evaluate_videos(other_run.parts)
            scores, prefix = fuse_scores(own, other, args.fuse_weight), "fused_"
            result["fused"] = {"with": str(args.fuse), "net": other_run.settings.net, "weight": args.fuse_weight,
                               "own_top1": own.metrics()["eval/top1"], "other_top1": other.metrics()["eval/top1"]}
        report = classification_report(scores, own.labels, run.parts.test.classes)
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
            print(f"single {own.unit}s: top-1 {own.sample_accuracy:.2%}; confusion matrix in "
                  f"{result['confusion_png']}, report in {result['report_json']}")
        return result


# ---------------------------------------------------------------------------------------------------- features
def frame_feature_extractor(net_name: str, weights: str = "", input_size: int = 224, device: str = "auto"
                            ) -> tuple[Any, Any, dict[str, Any], torch.device]:
    """What :func:`rlkit.data.features.extract_features` needs to encode frames with the frame net ``net_name``
    (``frame-resnet50``, ``frame-resnet18``; its head dropped): (encode, transform, meta, device). ``weights`` is a
    state_dict file (an ImageNet ResNet's) or the directory of a video run of that net (its fine-tuned weights),
    loaded without the head; without it the net is random."""
    net = get_net(net_name)
    if not isinstance(net, VideoNet) or net.clips or net.input != "frames":
        frame_nets = ", ".join(n for n, row in NETS.items() if isinstance(row, VideoNet) and not row.clips
                               and row.input == "frames")
        raise UserError(f"--net {net_name} is not a frame net: extract features with one of {frame_nets}")
    if input_size < 1:
        raise UserError(f"--input-size must be positive, got {input_size}")
    model = net.build(VideoConfig(), 0)
    if weights and Path(weights).is_dir():
        checkpoint = read_checkpoint(weights)
        trained = checkpoint.get("settings", {}).get("net")
        if checkpoint.get("job") != "video" or trained != net_name:
            raise UserError(f"--weights {weights} is a {trained or checkpoint.get('job')} run, not a {net_name} "
                            f"video run: pass --net {trained} or a weight file" if trained else
                            f"--weights {weights} is not a video run: pass a {net_name} run or a weight file")
        head = head_name(model) + "."
        model.load_state_dict({k: v for k, v in checkpoint["learner"]["model"].items() if not k.startswith(head)})
    elif weights:
        load_pretrained(model, weights, skip=(head_name(model) + ".",))
    where = pick_device(device)
    model = model.to(where).eval()
    transform = T.make_video_transforms(input_size, net.stats, augment=False)[1]
    meta = {"net": net_name, "weights": str(weights), "input_size": input_size}
    return model.features, transform, meta, where
