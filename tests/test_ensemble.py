"""``evaluate.py RUN1 RUN2 ... --ensemble``: the mean of classifier runs' class probabilities."""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
import train
from rlkit.data.fixtures import make_tiny_dataset
from rlkit.errors import UserError
from rlkit.jobs import load_run
from rlkit.jobs.classifier import class_probabilities, probability_scores
from rlkit.supervised.classifier import recalibrated_batch_norm


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ensemble")
    data = make_tiny_dataset("mnist", root / "mnist", train=128, test=40, seed=0)
    fashion = make_tiny_dataset("fashion-mnist", root / "fashion", train=64, test=40, seed=1)
    made = {}
    for name, seed, net in (("a", 1, "cnn"), ("b", 2, "cnn"), ("c", 3, "numpy-mlp")):
        made[name] = root / name
        train.main(["--task", "mnist", "--net", net, "--data-dir", str(data), "--max-steps", "6", "--batch-size",
                    "16", "--seed", str(seed), "--run-dir", str(made[name]), "--no-progress", *(
                        ["--width", "0.125"] if net == "cnn" else [])])
    made["copy"] = root / "copy"
    shutil.copytree(made["a"], made["copy"])
    made["fashion"] = root / "fashion-run"
    train.main(["--task", "fashion-mnist", "--net", "numpy-mlp", "--data-dir", str(fashion), "--max-steps", "2",
                "--batch-size", "16", "--run-dir", str(made["fashion"]), "--no-progress"])
    return made


def test_the_ensemble_of_two_identical_runs_equals_either(runs):
    alone = evaluate.main([str(runs["a"]), "--json"])
    both = evaluate.main([str(runs["a"]), str(runs["copy"]), "--ensemble", "--json"])
    for key in ("accuracy", "top5_accuracy", "nll"):
        assert both["ensemble"][key] == pytest.approx(alone[key], abs=1e-6)
        assert both["members"][0][key] == both["members"][1][key] == both["ensemble"][key]


def test_the_ensemble_is_the_mean_of_the_members_probabilities(runs):
    result = evaluate.main([str(runs["a"]), str(runs["b"]), str(runs["c"]), "--ensemble", "--json"])
    probs, labels = [], None
    for name in ("a", "b", "c"):
        job, checkpoint = load_run(runs[name])
        trained = job.rebuild(checkpoint, "cpu")
        # by hand: softmax of the net's logits on the normalized test images, batch norm's statistics those of
        # the net at test time (the cnn has dropout before batch norm)
        calibration = [trained.eval_transform(batch) for batch in trained.calibration or []]
        model = getattr(trained.learner, "model", None)
        with torch.no_grad(), (recalibrated_batch_norm(model, calibration) if calibration else nullcontext()):
            x = trained.eval_transform(torch.from_numpy(trained.test.images))
            probs.append(np.exp(trained.learner.log_probs(x).double().numpy()))
        labels = trained.test.labels.astype(np.int64)
        np.testing.assert_allclose(class_probabilities(trained.learner, trained.test, trained.eval_transform,
                                                       trained.device, calibration=trained.calibration), probs[-1],
                                   rtol=1e-6, atol=1e-9)
    mean = np.mean(probs, axis=0)
    assert result["ensemble"]["accuracy"] == pytest.approx(float((mean.argmax(1) == labels).mean()))
    assert result["ensemble"]["nll"] == pytest.approx(float(-np.log(mean[np.arange(len(labels)), labels]).mean()))
    assert [m["net"] for m in result["members"]] == ["cnn", "cnn", "numpy-mlp"]
    assert result["members"][2]["accuracy"] == pytest.approx(probability_scores(probs[2], labels)["accuracy"])


def test_probability_scores_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    scores = probability_scores(probs, np.array([0, 1]))
    assert scores["accuracy"] == 0.5 and scores["top5_accuracy"] == 1.0
    assert scores["nll"] == pytest.approx(-(np.log(0.7) + np.log(0.3)) / 2)


@pytest.mark.parametrize("extra, message", [
    (["copy"], "add --ensemble"),
    (["--ensemble"], "two or more run directories"),
    (["fashion", "--ensemble"], "one task"),
])
def test_refusals_are_one_line(runs, extra, message):
    argv = [str(runs["a"]), *(str(runs[e]) if e in runs else e for e in extra)]
    with pytest.raises(UserError, match=message):
        evaluate.main(argv)
