"""Video action recognition through the two command lines (``--task ucf101``): every video net trains a few steps
on a tiny generated UCF-101 and evaluate.py rebuilds it from its checkpoint alone, writing the report and the
confusion heat map; resume, pretrained files, frame folders, fusion and the one-line errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import evaluate
import rlkit.data as V
import train
from rlkit.cli.train import build_parser
from rlkit.data import transforms as T
from rlkit.errors import UserError
from rlkit.jobs import JOBS, NETS, TASKS, read_checkpoint
from rlkit.jobs.video import (
    evaluate_videos,
    evenly_spaced_videos,
    fuse_scores,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"frame-resnet18": [], "frame-resnet50": ["--freeze-except", "layer4", "fc"], "r3d18": ["--width", "0.125"],
         "cnn-lstm": ["--width", "0.125", "--lstm-hidden", "16"],
         "resnet3d-50": ["--width", "0.125", "--input-size", "32", "--batch-size", "4"]}
"""Per net, the flags that make it quick on a CPU (the frame nets keep their published widths; ResNet-50 trains
only its last stage and head, the assignment's recipe)."""


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    """3 classes x 6 videos of 16 frames, 32x32: 12 training and 6 test videos per split. Read-only."""
    return V.make_tiny_ucf(tmp_path_factory.mktemp("ucf"), classes=3, videos_per_class=6, frames=16, size=32, seed=0)


def train_args(net: str, data: Path, run: Path, *extra: str) -> list[str]:
    return ["--task", "ucf101", "--net", net, "--data-dir", str(data), "--run-dir", str(run), "--input-size", "32",
            "--batch-size", "4", "--clip-length", "8", "--test-frames", "4", "--test-clips", "2", "--no-progress",
            *SMALL[net], *extra]


@pytest.fixture(scope="module")
def imagenet50() -> dict[str, torch.Tensor]:
    """The state_dict of an ImageNet-shaped ResNet-50 (1000 classes), random weights."""
    from rlkit.nets.resnet import resnet50

    torch.manual_seed(0)
    return resnet50(num_classes=1000).state_dict()


@pytest.fixture(scope="module")
def runs(ucf, imagenet50, tmp_path_factory) -> dict[str, Path]:
    """Each video net trained 3 updates (evaluated at 2 and 3), frame-resnet50 from ``imagenet50``'s file, which
    is deleted before anything is evaluated. Read-only: copy a run before continuing it."""
    folder = tmp_path_factory.mktemp("runs")
    weights = folder / "resnet50-imagenet.pth"
    torch.save(imagenet50, weights)
    for net in SMALL:
        pretrained = ["--pretrained", str(weights)] if net == "frame-resnet50" else []
        train.main(train_args(net, ucf, folder / net, "--max-steps", "3", "--eval-interval", "2", *pretrained))
    weights.unlink()
    return {net: folder / net for net in SMALL}


def video_job_from_checkpoint(checkpoint, device="auto"):
    trained = JOBS["video"].rebuild(checkpoint, device)
    return trained.parts, trained.settings, trained.config


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_registries_agree():
    assert {name for name, row in NETS.items() if row.job == "video"} == {"frame-resnet50", "frame-resnet18", "r3d18",
                                                                          "cnn-lstm", "resnet3d-50", "flow-resnet18",
                                                                          "flow-resnet50", "feature-lstm"}
    assert TASKS["ucf101"].videos and not any(info.videos for name, info in TASKS.items() if name != "ucf101")
    help_text = build_parser(JOBS["video"], {"task": "ucf101"}).format_help()
    for text in ("--fold", "--frames-dir", "--no-flip", "--clip-length", "--test-frames", "--test-clips",
                 "--lstm-grid", "--learning-rate", "--freeze-except", "frame-resnet50", "r3d18", "cnn-lstm"):
        assert text in help_text


@pytest.mark.parametrize("net", list(SMALL))
def test_each_net_trains_evaluates_per_video_and_writes_the_report(runs, net, tmp_path):
    run = runs[net]
    unit = "clip" if NETS[net].clips else "frame"
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 3]
    assert set(evals[-1]) == {"step", "wall_time", "eval_seconds", "eval/top1", "eval/top5", "eval/top10", f"eval/{unit}_accuracy",
                              "eval/nll"}
    assert 0 <= evals[-1]["eval/top1"] <= evals[-1]["eval/top5"] <= evals[-1]["eval/top10"] == 1.0  # 3 classes
    header = json.loads((run / "config.json").read_text())
    assert header["settings"]["net"] == net and header["config"]["fold"] == 1 and header["config"]["flip"] is True

    out = tmp_path / "report"
    result = evaluate.main([str(run), "--json", "--out", str(out)])
    # Rebuilt from the checkpoint alone, the net scores the test videos as the loop's last evaluation did.
    assert result["accuracy"]["top1"] == pytest.approx(evals[-1]["eval/top1"])
    assert result[f"{unit}_accuracy"] == pytest.approx(evals[-1][f"eval/{unit}_accuracy"])
    assert result["videos"] == 6 and result[f"{unit}s_per_video"] == (2 if unit == "clip" else 4)
    assert np.sum(result["confusion_matrix"]) == 6 and len(result["best"]) == len(result["worst"]) == 3
    assert json.loads((out / "report.json").read_text())["confusion_matrix"] == result["confusion_matrix"]
    with Image.open(out / "confusion.png") as image:
        assert image.format == "PNG" and image.width == image.height > 3 * 40  # 40-pixel cells and class names


def test_frame_resnet50_starts_from_imagenet_weights_with_a_new_head(runs, imagenet50):
    tuned = read_checkpoint(runs["frame-resnet50"])["learner"]["model"]
    assert tuned["fc.weight"].shape == (3, 2048) and set(tuned) == set(imagenet50)  # torchvision's keys
    for key in ("conv1.weight", "layer3.5.conv3.weight", "layer3.5.bn3.running_var"):
        assert torch.equal(tuned[key], imagenet50[key]), key  # frozen, batch-norm statistics included
    assert not torch.equal(tuned["layer4.2.conv3.weight"], imagenet50["layer4.2.conv3.weight"])


def test_evaluation_sums_the_log_probabilities_of_evenly_spaced_frames(runs):
    job, _, config = video_job_from_checkpoint(read_checkpoint(runs["frame-resnet18"]), "cpu")
    scores = evaluate_videos(job)
    model = job.learner.model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(len(job.test)):
            frames, label = job.test.get(i)  # (4, C, H, W): frames 2, 6, 10, 14 of 16
            log_probs = F.log_softmax(model(job.eval_transform(frames[None])[0]), dim=1)
            np.testing.assert_allclose(scores.scores[i], log_probs.sum(0).numpy(), rtol=1e-4, atol=1e-4)
            correct += (log_probs.argmax(1) == label).sum().item()
    assert scores.sample_accuracy == correct / (4 * len(job.test)) and scores.unit == "frame"
    assert scores.videos[0] == "Scene01/v_Scene01_g01_c01"


def test_cnn_lstm_is_scored_with_batch_norm_statistics_of_the_net_as_it_runs_at_test_time(ucf, tmp_path):
    """cnn-lstm's ResNet has dropout in its stem and batch norm after it, and was scored with the statistics training
    keeps, estimated with dropout on (the defect the image classifiers had: 19.7% for a net worth 89.7%). Its
    evaluation now uses the statistics torch.optim.swa_utils.update_bn computes with dropout off on training
    videos sampled as at test time; evaluate.py gives the number training logged; training's statistics stay."""
    import copy

    run = tmp_path / "run"
    train.main(train_args("cnn-lstm", ucf, run, "--max-steps", "3", "--dropout", "0.5", "--bn-recalibration", "3"))
    checkpoint = read_checkpoint(run)
    job, _, _ = video_job_from_checkpoint(checkpoint, "cpu")
    # 3 batches of 4 clips at 2 clips a video: 6 of the 12 training videos, spread over the classes.
    assert len(job.calibration) == 6 and len({source.parent.name for source in job.calibration.sources}) == 3
    test_videos = {source.name for source in job.test.sources}
    assert not test_videos & {source.name for source in job.calibration.sources}  # training videos only
    clips = torch.cat([job.eval_transform(job.calibration.get(i)[0][None]).flatten(0, 1)
                       for i in range(len(job.calibration))])
    reference = copy.deepcopy(job.learner.model)
    for module in reference.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    torch.optim.swa_utils.update_bn(list(clips.split(4)), reference)
    reference.eval()
    with torch.no_grad():
        expected = [F.log_softmax(reference(job.eval_transform(job.test.get(i)[0][None]).flatten(0, 1)), 1).sum(0)
                    for i in range(len(job.test))]
    scores = evaluate_videos(job)
    np.testing.assert_allclose(scores.scores, torch.stack(expected).numpy(), rtol=1e-4, atol=1e-4)
    result = evaluate.main([str(run), "--json"])
    logged = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert logged["eval/nll"] == pytest.approx(scores.sample_nll)  # training logged the recalibrated scores
    assert result["accuracy"]["top1"] == logged["eval/top1"] and result["clip_accuracy"] == logged["eval/clip_accuracy"]
    stats = {k: v for k, v in job.learner.model.state_dict().items() if "running" in k}
    assert stats and all(torch.equal(v, checkpoint["learner"]["model"][k]) for k, v in stats.items())
    plain = dataclasses.replace(job, calibration=None)
    assert evaluate_videos(plain).sample_nll != pytest.approx(scores.sample_nll, abs=1e-6)  # it changes the scores


def test_video_nets_without_dropout_before_batch_norm_are_not_recalibrated(runs):
    for net in ("frame-resnet18", "r3d18"):
        job, _, _ = video_job_from_checkpoint(read_checkpoint(runs[net]), "cpu")
        assert job.calibration is None, net


def test_resume_continues_as_the_uninterrupted_run(ucf, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    train.main(train_args("cnn-lstm", ucf, whole, "--max-steps", "4", "--dropout", "0.5"))
    train.main(train_args("cnn-lstm", ucf, part, "--max-steps", "2", "--dropout", "0.5"))
    train.main(["--resume", str(part), "--max-steps", "4", "--no-progress"])
    a, b = read_checkpoint(whole), read_checkpoint(part)
    assert a["loop"]["steps"] == b["loop"]["steps"] == 4
    for key, value in a["learner"]["model"].items():
        assert torch.equal(value, b["learner"]["model"][key]), key
    steps = [json.loads(line)["step"] for line in (part / "eval.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4]  # 12 videos in batches of 4: an epoch is 3 updates


def test_r3d18_fine_tunes_a_kinetics_file_with_frozen_layers(ucf, tmp_path):
    from rlkit.nets.video import r3d_18

    torch.manual_seed(0)
    kinetics = r3d_18(width=0.125)  # the 400-class head of the published file, at a CPU-sized width
    weights = tmp_path / "r3d_18-kinetics.pth"
    torch.save(kinetics.state_dict(), weights)
    run = tmp_path / "run"
    train.main(train_args("r3d18", ucf, run, "--pretrained", str(weights), "--freeze-except", "layer4", "fc",
                          "--max-steps", "2", "--eval-interval", "100"))
    tuned, original = read_checkpoint(run)["learner"]["model"], kinetics.state_dict()
    assert tuned["fc.weight"].shape == (3, 64)
    for key in ("stem.0.weight", "layer3.1.conv2.0.weight", "layer3.1.conv2.1.running_mean"):
        assert torch.equal(tuned[key], original[key]), key  # frozen, batch-norm statistics included
    assert not torch.equal(tuned["layer4.1.conv2.0.weight"], original["layer4.1.conv2.0.weight"])
    weights.unlink()  # the run evaluates without the weight file
    assert evaluate.main([str(run), "--json", "--out", str(tmp_path)])["steps"] == 2


def test_frame_folders_and_no_flip(ucf, tmp_path):
    frames = tmp_path / "frames"
    V.extract_frames(ucf, frames, image_format="png")  # lossless: the frames equal the decoded ones
    run = tmp_path / "run"
    train.main(train_args("frame-resnet18", ucf, run, "--frames-dir", str(frames), "--no-flip", "--max-steps", "2"))
    job, _, config = video_job_from_checkpoint(read_checkpoint(run), "cpu")
    assert config.frames_dir == str(frames) and job.test.sources[0].is_dir() and not config.flip
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in job.train_transform.transforms)
    from_frames = evaluate.main([str(run), "--json", "--out", str(tmp_path / "a")])
    from_videos = evaluate.main([str(run), "--json", "--out", str(tmp_path / "b"), "--frames-dir", ""])
    assert from_frames["confusion_matrix"] == from_videos["confusion_matrix"]
    assert from_frames["frame_accuracy"] == pytest.approx(from_videos["frame_accuracy"])


def test_fusing_two_runs(runs, tmp_path):
    result = evaluate.main([str(runs["frame-resnet18"]), "--fuse", str(runs["cnn-lstm"]), "--fuse-weight", "0.3",
                            "--json", "--out", str(tmp_path)])
    assert result["fused"]["net"] == "cnn-lstm" and result["fused"]["weight"] == 0.3
    assert (tmp_path / "fused_confusion.png").is_file() and (tmp_path / "fused_report.json").is_file()
    frame_job, _, _ = video_job_from_checkpoint(read_checkpoint(runs["frame-resnet18"]), "cpu")
    lstm_job, _, _ = video_job_from_checkpoint(read_checkpoint(runs["cnn-lstm"]), "cpu")
    a, b = evaluate_videos(frame_job), evaluate_videos(lstm_job)
    fused = fuse_scores(a, b, 0.3)
    expected = F.log_softmax(0.3 * F.log_softmax(torch.from_numpy(a.scores / 4), 1)
                             + 0.7 * F.log_softmax(torch.from_numpy(b.scores / 2), 1), 1)  # 4 frames, 2 clips
    np.testing.assert_allclose(fused, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert result["accuracy"]["top1"] == np.mean(fused.argmax(1) == a.labels)
    fewer = evaluate_videos(lstm_job, evenly_spaced_videos(lstm_job.test, 3))
    assert sorted(fewer.labels.tolist()) == [0, 1, 2]  # spread over the class-sorted list
    with pytest.raises(UserError, match="different videos") as error:
        fuse_scores(a, fewer)
    one_line(error)


@pytest.mark.parametrize("args,message", [
    (["--net", "numpy-mlp"], "--task ucf101 classifies videos and --net numpy-mlp images: use one of frame-resnet50"),
    (["--net", "r3d18", "--task", "cifar10"], "--net r3d18 classifies videos: use --task ucf101"),
    (["--net", "r3d18", "--fold", "4"], "splits 1, 2 and 3"),
    (["--net", "cnn-lstm", "--pretrained", "x.pth"], "cnn-lstm trains from scratch"),
    (["--net", "frame-resnet50", "--width", "0.5"], "drop --width"),
])
def test_bad_input_is_one_clear_line(ucf, args, message, tmp_path):
    argv = ["--task", "ucf101", "--data-dir", str(ucf), "--run-dir", str(tmp_path / "r"), *args]
    with pytest.raises(UserError) as error:
        train.main(argv)
    assert message in one_line(error)


def test_missing_data_dir_is_one_line_with_exit_status_2(tmp_path):
    out = subprocess.run([sys.executable, "train.py", "--task", "ucf101", "--net", "r3d18", "--data-dir",
                          str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "r")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "ucfTrainTestlist/classInd.txt not found" in lines[0] and V.UCF101_URL in lines[0]


def test_fuse_needs_two_video_runs(runs, tmp_path):
    with pytest.raises(UserError, match="do not fit SupervisedSettings") as error:
        video_job_from_checkpoint({"job": "agent", "settings": {"agent": "dqn", "env": "CartPole", "total_steps": 1}})
    one_line(error)
    shutil.copytree(runs["r3d18"], tmp_path / "copy")
    with pytest.raises(UserError, match=r"--fuse-weight must be in \[0, 1\]"):
        evaluate.main([str(tmp_path / "copy"), "--fuse", str(runs["cnn-lstm"]), "--fuse-weight", "2"])
