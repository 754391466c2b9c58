"""Supervised jobs through the shared loop and the two command lines, on tiny data sets in the official formats."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import evaluate
import train
from rlkit.checkpoint import load_checkpoint
from rlkit.data import make_tiny_dataset
from rlkit.errors import UserError
from rlkit.jobs import JOBS, job_of
from rlkit.jobs.classifier import evaluate_classifier
from rlkit.sources.batches import ImageBatchSource
from rlkit.jobs.supervised import SupervisedSettings
from rlkit.supervised.classifier import Classifier, ClassifierConfig, learning_rate_at

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return make_tiny_dataset("mnist", tmp_path_factory.mktemp("mnist"), train=256, test=64, seed=0)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    return make_tiny_dataset("fashion-mnist", tmp_path_factory.mktemp("fashion"), train=256, test=64, seed=1)


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory) -> Path:
    return make_tiny_dataset("cifar10", tmp_path_factory.mktemp("cifar10"), train=256, test=64, seed=2)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory) -> Path:
    return make_tiny_dataset("cifar100", tmp_path_factory.mktemp("cifar100"), train=128, test=40, seed=0)


def preset(net: str):
    return JOBS["classifier"].preset({"net": net})


def make_supervised_run(settings, config, run_dir, resume=None):
    return JOBS["classifier"].build(settings, config, run_dir, resume)


def _settings(task: str, net: str, data_dir: Path, **kwargs) -> SupervisedSettings:
    return SupervisedSettings(task=task, net=net, data_dir=str(data_dir), device="cpu", progress=False, **kwargs)


def test_learning_rate_schedules_by_hand():
    step = ClassifierConfig(learning_rate=0.01, schedule="step", step_epochs=5, gamma=0.1, epochs=10)
    assert [learning_rate_at(step, e) for e in (0, 4.99, 5, 9.5)] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    cosine = ClassifierConfig(learning_rate=1.0, schedule="cosine", epochs=4)
    assert [learning_rate_at(cosine, e) for e in (0, 1, 2, 4)] == pytest.approx([1, (1 + math.sqrt(0.5)) / 2, 0.5, 0])
    assert learning_rate_at(ClassifierConfig(learning_rate=3e-4), 17.0) == 3e-4


def test_bad_optimizer_or_schedule_names_the_choices():
    with pytest.raises(UserError, match="adam, rmsprop, sgd"):
        ClassifierConfig(optimizer="adagrad")
    with pytest.raises(UserError, match="constant, step, multistep, cosine"):
        ClassifierConfig(schedule="linear")
    with pytest.raises(UserError, match="crop, resized-crop-jitter"):
        ClassifierConfig(augmentation="mixup")
    with pytest.raises(UserError, match="increasing positive epochs"):
        ClassifierConfig(milestones=(75, 50))


def test_multistep_schedule_divides_at_each_milestone():
    from rlkit.supervised.classifier import learning_rate_at

    config = ClassifierConfig(learning_rate=1e-4, schedule="multistep", milestones=(50, 75), gamma=0.1)
    rates = [learning_rate_at(config, epoch) for epoch in (0, 49.9, 50, 74.9, 75, 99)]
    assert rates == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6])


def test_color_jitter_keeps_luma_under_a_hue_turn_and_is_the_identity_at_zero():
    from rlkit.data import transforms as T

    x = torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4  # far from 0 and 1
    torch.testing.assert_close(T.ColorJitter(0, 0, 0, 0)(x), x)
    turned = T.ColorJitter(0, 0, 0, 0.1)(x, torch.Generator().manual_seed(1))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert not ((turned == 0) | (turned == 1)).any()  # nothing clipped, so the luma must be exactly kept
    torch.testing.assert_close((turned * luma).sum(1), (x * luma).sum(1))
    assert not torch.allclose(turned, x)
    brighter = T.ColorJitter(0.5, 0, 0, 0)(x, torch.Generator().manual_seed(2))
    ratio = (brighter / x).flatten(1)
    torch.testing.assert_close(ratio.min(1).values, ratio.max(1).values)  # one factor per image
    assert ((ratio[:, 0] >= 0.5) & (ratio[:, 0] <= 1.5)).all()
    gray = torch.rand(2, 1, 4, 4)
    assert T.ColorJitter()(gray).shape == gray.shape


def test_batch_source_covers_each_epoch_once_and_is_a_function_of_the_step(mnist_dir):
    from rlkit.data import load_dataset

    data = load_dataset("mnist", mnist_dir, "train")
    identity = lambda x, generator=None: x  # noqa: E731
    source = ImageBatchSource(data, 32, seed=3, transform=identity, device=torch.device("cpu"))
    seen = torch.cat([source.next()[1] for _ in range(source.steps_per_epoch)])
    assert source.steps_per_epoch == 8
    assert sorted(seen.tolist()) == sorted(data.labels.tolist())  # every image exactly once (256 = 8 x 32)
    tenth = source.next()
    again = ImageBatchSource(data, 32, seed=3, transform=identity, device=torch.device("cpu"))
    again.load_state_dict({"steps": 8})
    assert torch.equal(again.next()[0], tenth[0])
    shards = [ImageBatchSource(data, 32, 3, identity, torch.device("cpu"), rank=r, world_size=2) for r in range(2)]
    rows = [torch.cat([s.next()[1] for _ in range(s.steps_per_epoch)]) for s in shards]
    assert sorted(torch.cat(rows).tolist()) == sorted(data.labels.tolist())  # ranks split the epoch


@pytest.mark.parametrize("net,task,data", [  # the command lines of the course's assignments 1-4
    ("numpy-mlp", "mnist", "mnist_dir"), ("numpy-cnn", "mnist", "mnist_dir"), ("cnn", "cifar10", "cifar10_dir"),
    ("resnet", "cifar100", "cifar_dir"), ("resnet18", "cifar100", "cifar_dir"), ("resnet", "fashion-mnist", "fashion_dir"),
])
def test_a_few_updates_lower_the_test_loss(net, task, data, request, tmp_path):
    data_dir = request.getfixturevalue(data)
    overrides = {"numpy-mlp": {}, "numpy-cnn": {"conv_channels": 4}, "cnn": {"width": 0.125},
                 "resnet": {"width": 0.125}, "resnet18": {"input_size": 0}}[net]
    config = preset(net)
    config = type(config)(**{**vars(config), "batch_size": 16, "epochs": 6, **overrides})
    loop = make_supervised_run(_settings(task, net, data_dir, eval_interval=10_000), config, tmp_path / "run")
    job_eval = loop.evaluate_fn
    before = job_eval()["eval/nll"]
    loop.config.total_steps = 48
    loop.run()
    after = job_eval()["eval/nll"]
    assert after < before - 0.05, (before, after)
    lines = [json.loads(line) for line in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 48 and lines[-1]["eval/accuracy"] <= lines[-1]["eval/top5_accuracy"]
    assert lines[-1]["eval/nll"] == pytest.approx(after)  # the loop's last evaluation is of the final weights


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(mnist_dir, tmp_path):
    config = ClassifierConfig(**{**vars(preset("cnn")), "width": 0.125, "batch_size": 32, "epochs": 1})
    whole = make_supervised_run(_settings("mnist", "cnn", mnist_dir), config, tmp_path / "whole")
    whole.run()
    steps = [json.loads(line)["step"] for line in (tmp_path / "whole" / "eval.jsonl").read_text().splitlines()]
    assert steps == [8]  # the epoch's evaluation is also the final one: not run twice
    first = make_supervised_run(_settings("mnist", "cnn", mnist_dir, max_steps=3), config, tmp_path / "part")
    first.run()
    checkpoint = load_checkpoint(tmp_path / "part")
    second = make_supervised_run(_settings("mnist", "cnn", mnist_dir), config, tmp_path / "part", resume=checkpoint)
    second.run()
    a, b = whole.learner.model.state_dict(), second.learner.model.state_dict()
    assert whole.source.steps == second.source.steps == 8
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_mc_dropout_differs_from_the_scaling_rule_and_repeats_with_a_seed(mnist_dir):
    config = ClassifierConfig(**{**vars(preset("cnn")), "width": 0.125, "dropout": 0.5})
    learner, test, _, eval_transform = JOBS["classifier"].parts(_settings("mnist", "cnn", mnist_dir), config, 1)
    run = lambda samples, seed: evaluate_classifier(learner, test, eval_transform, learner.device,  # noqa: E731
                                                    mc_samples=samples, seed=seed)["eval/nll"]
    scaling = run(0, 0)
    assert run(0, 5) == scaling  # no randomness without MC samples
    mc = run(8, 1)
    assert mc != pytest.approx(scaling, abs=1e-6)
    assert run(8, 1) == mc and run(8, 2) != mc


def test_mc_dropout_averages_probabilities_not_logits():
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    learner = Classifier(model, ClassifierConfig(), 1, torch.device("cpu"))
    x = torch.tensor([[2.0, 0.0]])
    torch.manual_seed(0)
    masks = [torch.nn.functional.dropout(torch.ones(1, 2), 0.5, True) for _ in range(50)]
    torch.manual_seed(0)
    log_p = learner.log_probs(x, mc_samples=50)
    expected = torch.stack([torch.softmax(model[1](x * m), 1) for m in masks]).mean(0).log()
    assert torch.allclose(log_p, expected, atol=1e-6)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_train_and_evaluate_command_lines(mnist_dir, tmp_path):
    run = tmp_path / "run"
    train.main(["--task", "mnist", "--net", "numpy-mlp", "--data-dir", str(mnist_dir), "--max-steps", "12",
                "--batch-size", "16", "--run-dir", str(run), "--no-progress"])
    assert json.loads((run / "config.json").read_text())["config"]["batch_size"] == 16
    result = evaluate.main([str(run), "--json"])
    logged = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert result["steps"] == 12 and result["images"] == 64 and logged["step"] == 12
    assert result["accuracy"] == logged["eval/accuracy"]  # rebuilt from the checkpoint, it scores as it trained
    train.main(["--resume", str(run), "--max-steps", "20", "--no-progress"])
    assert load_checkpoint(run)["loop"]["steps"] == 20
    with pytest.raises(UserError, match="needs a net with dropout"):
        evaluate.main([str(run), "--mc-samples", "4"])


def test_help_lists_tasks_nets_and_config_flags():
    out = _cli("train.py", "--task", "mnist", "--help")
    assert out.returncode == 0
    for text in ("numpy-mlp", "resnet18", "--data-dir", "--max-steps", "--freeze-except", "--learning-rate"):
        assert text in out.stdout


@pytest.mark.parametrize("args,message", [
    (["--task", "mnist", "--net", "resnet", "--data-dir", "/nonexistent/mnist"], "download"),
    (["--task", "mnits", "--net", "resnet"], "did you mean mnist"),
    (["--task", "mnist", "--net", "resnet99"], "use one of"),
    (["--task", "mnist"], "--net is required"),
    (["--task", "mnist", "--agent", "dqn"], "pass one of them"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    out = _cli("train.py", *args, "--run-dir", str(tmp_path / "r"), "--no-progress")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_numpy_net_refuses_torch_only_options(mnist_dir, tmp_path):
    out = _cli("train.py", "--task", "mnist", "--net", "numpy-cnn", "--optimizer", "adam", "--data-dir",
               str(mnist_dir), "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "plain SGD" in out.stderr


def test_fine_tuning_loads_a_pretrained_file_replaces_the_head_and_freezes(cifar_dir, tmp_path):
    from rlkit.nets.resnet import resnet18

    torch.manual_seed(0)
    imagenet = resnet18(num_classes=1000)
    weights = tmp_path / "resnet18.pth"
    torch.save(imagenet.state_dict(), weights)
    run = tmp_path / "run"
    train.main(["--task", "cifar100", "--net", "resnet18", "--data-dir", str(cifar_dir), "--pretrained", str(weights),
                "--freeze-except", "layer4", "fc", "--input-size", "32", "--batch-size", "8", "--max-steps", "2",
                "--run-dir", str(run), "--no-progress"])
    tuned = load_checkpoint(run)["learner"]["model"]
    original = imagenet.state_dict()
    assert tuned["fc.weight"].shape == (100, 512)
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer3.1.bn2.weight", "layer3.1.bn2.running_mean"):
        assert torch.equal(tuned[key], original[key]), key  # frozen, batch-norm statistics included
    assert not torch.equal(tuned["layer4.1.conv2.weight"], original["layer4.1.conv2.weight"])
    evaluate.main([str(run), "--json"])  # the run evaluates without the pretrained file
    weights.unlink()
    evaluate.main([str(run), "--json"])


def test_a_mismatched_pretrained_file_is_one_line(cifar_dir, tmp_path):
    torch.save({"conv1.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    out = _cli("train.py", "--task", "cifar100", "--net", "resnet18", "--data-dir", str(cifar_dir), "--pretrained",
               str(tmp_path / "bad.pth"), "--run-dir", str(tmp_path / "r"), "--max-steps", "1")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "bad.pth" in out.stderr


def test_an_agent_checkpoint_is_not_taken_for_a_classifier(tmp_path):
    agent_settings = {"agent": "dqn", "env": "CartPole", "total_steps": 100}
    assert job_of({"job": "agent", "settings": agent_settings}).kind == "agent"
    with pytest.raises(UserError, match="do not fit SupervisedSettings"):
        JOBS["classifier"].rebuild({"job": "agent", "settings": agent_settings})
    with pytest.raises(UserError, match="unknown kind of run"):
        job_of({"job": "supervised"})


def test_discriminator_classifier_pads_digits_to_32(mnist_dir, tmp_path):
    run = tmp_path / "run"
    train.main(["--task", "mnist", "--net", "discriminator", "--width", "0.05", "--data-dir", str(mnist_dir),
                "--batch-size", "16", "--max-steps", "3", "--run-dir", str(run), "--no-progress"])
    model = load_checkpoint(run)["learner"]["model"]
    assert model["discriminator.blocks.0.norm.weight"].shape == (10, 32, 32)  # LayerNorm over the padded image
    assert evaluate.main([str(run), "--json"])["images"] == 64


def test_acgan_trains_samples_and_is_judged_by_a_classifier_run(mnist_dir, tmp_path):
    judge = tmp_path / "judge"
    train.main(["--task", "mnist", "--net", "numpy-mlp", "--data-dir", str(mnist_dir), "--max-steps", "40",
                "--batch-size", "16", "--run-dir", str(judge), "--no-progress"])
    run = tmp_path / "gan"
    train.main(["--task", "mnist", "--net", "acgan", "--width", "8", "--batch-size", "16", "--data-dir",
                str(mnist_dir), "--max-steps", "4", "--eval-interval", "2", "--judge", str(judge), "--run-dir",
                str(run), "--no-progress"])
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4]
    assert all("eval/class_conditional_accuracy" in e and "eval/critic_class_accuracy" in e for e in evals)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["00000002.png", "00000004.png"]
    checkpoint = load_checkpoint(run)
    assert set(checkpoint["learner"]) >= {"generator", "discriminator", "critic_optimizer", "generator_optimizer"}
    result = evaluate.main([str(run), "--judge", str(judge), "--json", "--samples", str(tmp_path / "s.png"),
                            "--seed", "0"])
    assert len(result["per_class"]) == 10 and (tmp_path / "s.png").exists()
    # Rebuilt from the checkpoint, with the noise seed the run's evaluations use (0): the last evaluation again.
    assert result["class_conditional_accuracy"] == evals[-1]["eval/class_conditional_accuracy"]
    assert result["critic_class_accuracy"] == evals[-1]["eval/critic_class_accuracy"]
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (10 * 34 + 2, 10 * 34 + 2)  # a 32x32 sample per class, 10 rows
    with Image.open(run / "samples.gif") as gif:  # the generator's progress, one frame per evaluation
        assert gif.n_frames == 2 and gif.size == (10 * 34 + 2, 10 * 34 + 2)
    train.main(["--resume", str(run), "--max-steps", "6", "--no-progress"])
    assert load_checkpoint(run)["learner"]["updates"] == 6
    with Image.open(run / "samples.gif") as gif:  # rebuilt from the grids: the resumed run's frame added
        assert gif.n_frames == 3


def test_compile_takes_the_same_step_as_eager_and_keeps_the_checkpoint_keys():
    """--compile (torch.compile, Inductor) computes the same update as eager PyTorch, on a net without dropout."""
    import copy

    from rlkit.nets.resnet import CifarResNet

    torch.manual_seed(0)
    eager_net = CifarResNet(num_classes=10, in_channels=1, dropout=0.0, width=0.125)
    compiled_net = copy.deepcopy(eager_net)
    images, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    eager = Classifier(eager_net, ClassifierConfig(dropout=0.0), 1, torch.device("cpu"))
    compiled = Classifier(compiled_net, ClassifierConfig(dropout=0.0, compile=True), 1, torch.device("cpu"))
    assert compiled.train_model is not compiled.model  # the compiled wrapper trains, the module is saved
    first, second = eager.update((images, labels)), compiled.update((images, labels))
    assert second["losses/loss"] == pytest.approx(first["losses/loss"], rel=1e-5)
    for p, q in zip(eager_net.parameters(), compiled_net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert list(compiled.state_dict()["model"]) == list(eager.state_dict()["model"])


def test_compile_reaches_the_learner_and_numpy_nets_refuse_it(mnist_dir):
    from rlkit.jobs import JOBS
    from rlkit.jobs.supervised import SupervisedSettings

    settings = SupervisedSettings(task="mnist", net="resnet", data_dir=str(mnist_dir), device="cpu")
    learner = JOBS["classifier"].parts(settings, ClassifierConfig(compile=True, width=0.125), 1)[0]
    assert isinstance(learner.train_model, torch._dynamo.eval_frame.OptimizedModule)
    numpy_settings = SupervisedSettings(task="mnist", net="numpy-mlp", data_dir=str(mnist_dir), device="cpu")
    with pytest.raises(UserError, match="drop --compile"):
        JOBS["classifier"].parts(numpy_settings, ClassifierConfig(compile=True, optimizer="sgd"), 1)


def test_recalibrated_batch_norm_takes_the_test_mode_statistics_by_hand_and_puts_training_s_back():
    """Within the block each batch-norm layer holds the average of its per-batch mean and unbiased variance, as the
    net computes them with dropout off; after it, training's statistics, momentum and mode come back."""
    from rlkit.supervised.classifier import recalibrated_batch_norm

    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(3))
    model[1].running_mean.fill_(7.0)
    model[1].running_var.fill_(9.0)
    model.train()
    batches = [torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]])]
    with recalibrated_batch_norm(model, batches):
        # means (2, 2, 2) and (2, 2, 2); unbiased variances (2, 0, 2) and (8, 8, 8)
        assert model[1].running_mean.tolist() == [2.0, 2.0, 2.0]
        assert model[1].running_var.tolist() == [5.0, 4.0, 5.0]
        assert not model.training and not model[1].training
    assert model[1].running_mean.tolist() == [7.0] * 3 and model[1].running_var.tolist() == [9.0] * 3
    assert model[1].momentum == 0.1 and model.training


def test_recalibration_leaves_nets_without_dropout_and_frozen_batch_norm_alone():
    from rlkit.supervised.classifier import recalibrated_batch_norm

    plain = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    frozen = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3))
    frozen[1].requires_grad_(False)
    for model in (plain, frozen):
        with recalibrated_batch_norm(model, [torch.randn(4, 3) * 5 + 3]):
            assert model[1].running_mean.tolist() == [0.0] * 3  # the fresh layer's statistics, untouched
    with recalibrated_batch_norm(frozen, [torch.full((2, 3), 1.0), torch.full((2, 3), 3.0)]):
        # the trained layer after it is re-estimated (on the frozen one's output: x / sqrt(1 + eps))
        assert frozen[2].running_mean.tolist() == pytest.approx([2.0 / (1 + 1e-5) ** 0.5] * 3)


def test_evaluation_uses_batch_norm_statistics_of_the_net_as_it_runs_at_test_time(fashion_dir, tmp_path):
    """The course's ResNet (dropout in its stem, batch norm after it, a global max pool) fitted its training
    batches and scored near chance on the test set with the running statistics training kept (seed 3 of the
    Fashion-MNIST benchmark: 19.7% in eval mode, 89.8% with dropout's variance accounted for). Evaluation now
    scores the net with the statistics torch.optim.swa_utils.update_bn computes with dropout off, and evaluate.py
    gives the number training logged."""
    import copy

    run = tmp_path / "run"
    train.main(["--task", "fashion-mnist", "--net", "resnet", "--data-dir", str(fashion_dir), "--width", "0.125",
                "--batch-size", "32", "--max-steps", "6", "--bn-recalibration", "3", "--run-dir", str(run),
                "--no-progress", "--device", "cpu"])
    checkpoint = load_checkpoint(run)
    rebuilt = JOBS["classifier"].rebuild(checkpoint, "cpu")
    assert [len(batch) for batch in rebuilt.calibration] == [32, 32, 32]
    reference = copy.deepcopy(rebuilt.learner.model)
    for module in reference.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    torch.optim.swa_utils.update_bn([rebuilt.eval_transform(batch) for batch in rebuilt.calibration], reference)
    reference.eval()
    with torch.no_grad():
        logits = reference(rebuilt.eval_transform(torch.from_numpy(rebuilt.test.images)))
    expected = (logits.argmax(1).numpy() == rebuilt.test.labels).mean()
    result = evaluate.main([str(run), "--json"])
    assert result["accuracy"] == pytest.approx(expected)
    assert result["accuracy"] == json.loads((run / "eval.jsonl").read_text().splitlines()[-1])["eval/accuracy"]
    stats = {k: v for k, v in rebuilt.learner.model.state_dict().items() if "running" in k}
    assert all(torch.equal(v, checkpoint["learner"]["model"][k]) for k, v in stats.items())  # training's, kept
    plain = evaluate_classifier(rebuilt.learner, rebuilt.test, rebuilt.eval_transform, rebuilt.learner.device)
    assert plain["eval/nll"] != pytest.approx(result["nll"], abs=1e-6)  # the recalibration changes the scores
