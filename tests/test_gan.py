"""Assignment 5: the GAN networks, WGAN-GP's penalty by hand, the ACGAN learner (steps, save/load), image grids,
the class-conditional accuracy, and the gradient visualizations with their command line."""

from __future__ import annotations

import copy
import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rlkit.analysis import visualize
from rlkit.cli import visualize as visualize_cli
from rlkit.analysis.images import grid_array, save_grid
from rlkit.checkpoint import save_checkpoint
from rlkit.data import ArrayDataset, make_tiny_dataset
from rlkit.data import transforms as T
from rlkit.errors import UserError
from rlkit.jobs import JOBS
from rlkit.jobs.classifier import evaluate_classifier
from rlkit.jobs.supervised import SupervisedSettings
from rlkit.nets.gan import DISCRIMINATOR_STRIDES, Discriminator, DiscriminatorAsClassifier, Generator
from rlkit.supervised.classifier import Classifier, ClassifierConfig
from rlkit.supervised.gan import (
    ACGAN,
    ACGANConfig,
    class_conditional_accuracy,
    gradient_penalty,
    make_noise,
    save_samples,
)

TINY = dict(width=8, noise_dim=16, num_classes=3, batch_size=4)


# ---------------------------------------------------------------------------------------------------- penalty
def test_gradient_penalty_of_a_linear_critic_is_norm_minus_one_squared():
    torch.manual_seed(0)
    w = torch.randn(3 * 4 * 4, requires_grad=True)
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    penalty = gradient_penalty(lambda x: x.flatten(1) @ w, real, fake, torch.Generator().manual_seed(1))
    norm = w.detach().norm()
    assert penalty.item() == pytest.approx((norm.item() - 1) ** 2, rel=1e-5)
    # create_graph: the penalty is differentiable in the critic's weights, d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|.
    (grad,) = torch.autograd.grad(penalty, w)
    torch.testing.assert_close(grad, 2 * (norm - 1) * w.detach() / norm)


def test_gradient_penalty_of_a_quadratic_critic_by_hand():
    # D(x) = |x|^2 / 2 has gradient x, so the penalty is the mean of (|x_hat_i| - 1)^2 at the interpolates.
    torch.manual_seed(0)
    real, fake = torch.randn(6, 2, 3, 3), 3 * torch.randn(6, 2, 3, 3)
    penalty = gradient_penalty(lambda x: 0.5 * x.flatten(1).pow(2).sum(1), real, fake, torch.Generator().manual_seed(7))
    eps = torch.rand(6, generator=torch.Generator().manual_seed(7)).view(6, 1, 1, 1)  # one eps per sample
    assert len(set(eps.flatten().tolist())) == 6
    x_hat = eps * real + (1 - eps) * fake
    expected = ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------- networks
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_images_are_in_tanh_range_and_shape(channels):
    torch.manual_seed(0)
    net = Generator(noise_dim=12, out_channels=channels, width=8)
    with torch.no_grad():
        net.out.bias.fill_(5.0)  # far outside [-1, 1] before the tanh
        images = net(100 * torch.randn(3, 12))
    assert images.shape == (3, channels, 32, 32)
    assert images.max() <= 1.0 and images.min() > 0.9
    # The assignment's layout: three doublings by 4x4 transposed convolutions, 3x3 convolutions between them.
    kinds = [type(block[0]).__name__ for block in net.blocks]
    assert kinds == ["ConvTranspose2d", "Conv2d", "Conv2d", "Conv2d", "ConvTranspose2d", "Conv2d", "ConvTranspose2d"]


@pytest.mark.parametrize("channels, size, last_side", [(3, 32, 4), (1, 28, 4)])
def test_discriminator_layout_and_output_shapes(channels, size, last_side):
    net = Discriminator(num_classes=7, in_channels=channels, image_size=size, width=8)
    assert [block.conv.stride[0] for block in net.blocks] == [1, 2, 1, 2, 1, 1, 1, 2] == list(DISCRIMINATOR_STRIDES)
    assert all(block.conv.kernel_size == (3, 3) and block.conv.padding == (1, 1) for block in net.blocks)
    x = torch.randn(2, channels, size, size)
    features = net.features(x, range(1, 9))
    for index, block in enumerate(net.blocks, start=1):
        assert tuple(features[index].shape[1:]) == tuple(block.norm.normalized_shape)  # LayerNorm over (C, H, W)
    assert features[8].shape[-1] == last_side
    critic, logits = net(x)
    assert critic.shape == (2,) and logits.shape == (2, 7)
    assert net(x[:1])[0].shape == (1,)
    torch.testing.assert_close(DiscriminatorAsClassifier(net)(x), logits)


def test_make_noise_puts_the_one_hot_first():
    labels = torch.tensor([2, 0, 1, 2])
    z = make_noise(labels, 20, 3, torch.Generator().manual_seed(0))
    assert z.shape == (4, 20)
    torch.testing.assert_close(z[:, :3], torch.eye(3)[labels])
    assert z[:, 3:].std() > 0.5  # the rest is Gaussian noise
    torch.testing.assert_close(make_noise(labels, 20, 3, torch.Generator().manual_seed(0)), z)
    with pytest.raises(ValueError):
        make_noise(labels, 2, 3)


# ---------------------------------------------------------------------------------------------------- ACGAN
def _batch(seed: int = 0, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g) * 2 - 1, torch.randint(3, (n,), generator=g)


def _params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _changed(before: list[torch.Tensor], net: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("critic_steps", [1, 2])
def test_acgan_update_steps_the_generator_every_critic_steps(critic_steps):
    learner = ACGAN(ACGANConfig(critic_steps=critic_steps, **TINY), in_channels=3, image_size=16, seed=0)
    d0, g0 = _params(learner.discriminator), _params(learner.generator)
    metrics = learner.update(_batch())
    assert _changed(d0, learner.discriminator)
    # critic_steps=2: the first update is a critic step only; the generator moves after the second.
    assert _changed(g0, learner.generator) == (critic_steps == 1)
    assert ("losses/generator" in metrics) == (critic_steps == 1)
    assert {"losses/critic", "losses/gradient_penalty", "charts/wasserstein_estimate",
            "charts/real_class_accuracy"} <= set(metrics)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    if critic_steps == 2:
        g1 = _params(learner.generator)
        assert "losses/generator" in learner.update(_batch(1))
        assert _changed(g1, learner.generator)


@pytest.mark.parametrize("fake_class_loss", [True, False])
def test_acgan_losses_by_hand(fake_class_loss):
    """The critic's and the generator's loss recomputed from copies of the networks and of the random generator
    (draw order: fake labels, noise, penalty eps; then the generator step's labels and noise)."""
    config = ACGANConfig(gp_weight=3.0, class_weight=2.0, generator_class_weight=0.5, fake_class_loss=fake_class_loss,
                         **TINY)
    learner = ACGAN(config, 3, 16, seed=0)
    learner.update(_batch(0))  # so the nets are not at their initialization
    D, G = copy.deepcopy(learner.discriminator), copy.deepcopy(learner.generator)
    rng = torch.Generator().manual_seed(0)
    rng.set_state(learner.rng.get_state())
    real, labels = _batch(1)
    metrics = learner.update((real, labels))

    fake_labels = torch.randint(3, (4,), generator=rng)
    with torch.no_grad():
        fake = G(make_noise(fake_labels, 16, 3, rng))
    (real_score, real_logits), (fake_score, fake_logits) = D(real), D(fake)
    penalty = gradient_penalty(lambda x: D(x)[0], real, fake, rng)
    class_loss = F.cross_entropy(real_logits, labels) + fake_class_loss * F.cross_entropy(fake_logits, fake_labels)
    critic = fake_score.mean() - real_score.mean() + 2.0 * class_loss + 3.0 * penalty
    assert metrics["losses/critic"] == pytest.approx(critic.item(), rel=1e-4)
    assert metrics["losses/gradient_penalty"] == pytest.approx(penalty.item(), rel=1e-4)
    assert metrics["charts/wasserstein_estimate"] == pytest.approx((real_score.mean() - fake_score.mean()).item(),
                                                                   rel=1e-4, abs=1e-6)
    # The generator step sees the critic after its step and the generator before its own.
    gen_labels = torch.randint(3, (4,), generator=rng)
    score, logits = learner.discriminator(G(make_noise(gen_labels, 16, 3, rng)))
    generator = -score.mean() + 0.5 * F.cross_entropy(logits, gen_labels)
    assert metrics["losses/generator"] == pytest.approx(generator.item(), rel=1e-4)


def test_acgan_state_dict_round_trip_continues_identically(tmp_path):
    config = ACGANConfig(**TINY)
    original = ACGAN(config, 3, 16, seed=0)
    original.update(_batch(0))
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = ACGAN(config, 3, 16, seed=123)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for name in ("critic_optimizer", "generator_optimizer"):
        a, b = getattr(original, name).state_dict()["state"], getattr(restored, name).state_dict()["state"]
        assert a.keys() == b.keys() and len(a) > 0
        for key in a:
            for slot in a[key]:
                assert torch.equal(a[key][slot], b[key][slot])
    assert original.update(_batch(1)) == restored.update(_batch(1))
    for net in ("discriminator", "generator"):
        for p, q in zip(getattr(original, net).state_dict().values(), getattr(restored, net).state_dict().values()):
            assert torch.equal(p, q)
    # Samples come from batch norm's running statistics: an image does not depend on the rest of its batch.
    labels = torch.tensor([2, 0, 1])
    one = restored.sample(labels[:1], torch.Generator().manual_seed(5))
    torch.testing.assert_close(restored.sample(labels, torch.Generator().manual_seed(5))[:1], one)
    assert restored.generator.training
    # Samples and the auxiliary classifier through evaluate_classifier's interface.
    path = save_samples(restored, tmp_path / "samples.png", per_class=2)
    assert Image.open(path).size == (3 * 18 + 2, 2 * 18 + 2)
    data = ArrayDataset(np.zeros((5, 3, 16, 16), np.uint8), np.array([0, 1, 2, 0, 1]), ("a", "b", "c"))
    to_gan_range = T.Compose([T.to_float, T.Normalize((0.5,) * 3, (0.5,) * 3)])
    metrics = evaluate_classifier(restored, data, to_gan_range, torch.device("cpu"))
    predicted = restored.log_probs(to_gan_range(torch.from_numpy(data.images))).argmax(1).numpy()
    assert metrics["eval/accuracy"] == np.mean(predicted == data.labels)  # counted by hand


# ---------------------------------------------------------------------------------------------------- grids
def test_save_grid_writes_a_png_of_the_right_size(tmp_path):
    images = torch.zeros(5, 1, 6, 7)
    images[1] = 1.0  # the second tile white in [0, 1]
    path = save_grid(tmp_path / "sub" / "grid.png", images, nrow=3, padding=2)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (3 * (7 + 2) + 2, 2 * (6 + 2) + 2) and png.mode == "RGB"
        pixels = np.asarray(png)
    assert (pixels[2:8, 11:18] == 255).all() and (pixels[2:8, 2:9] == 0).all()
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left behind
    # [-1, 1] images: -1 is black, 0 mid-gray, 1 white.
    gray = grid_array(torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1, 1), nrow=3, padding=0)
    assert gray.shape == (1, 3, 3) and gray.dtype == np.uint8 and gray[0, :, 0].tolist() == [0, 128, 255]


# ---------------------------------------------------------------------------------------------------- quality
class _OneHotImages(nn.Module):
    """A "generator" whose images are its noise's leading entries, so the class is readable off them."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :self.classes, None, None]


def test_class_conditional_accuracy_of_a_perfect_and_a_constant_classifier():
    net = _OneHotImages(4)
    overall, per_class = class_conditional_accuracy(net, lambda x: x.flatten(1), 4, per_class=7, noise_dim=10)
    assert overall == 1.0 and per_class == [1.0] * 4
    overall, per_class = class_conditional_accuracy(net, lambda x: torch.eye(4)[[0] * len(x)], 4, per_class=7,
                                                    noise_dim=10, batch_size=5)
    assert per_class == [1.0, 0.0, 0.0, 0.0] and overall == 0.25


# ---------------------------------------------------------------------------------------------------- visualizations
@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny discriminator trained as a classifier by the shared Classifier learner (assignment 5a) until it
    fits its batch: 4 classes of 1x8x8 images, each a brightness pattern plus noise, in [0, 1]."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(4, 1, 8, 8, generator=g)
    labels = torch.arange(32) % 4
    images = (templates[labels] + 0.05 * torch.randn(32, 1, 8, 8, generator=g)).clamp(0, 1)
    model = DiscriminatorAsClassifier(Discriminator(num_classes=4, in_channels=1, image_size=8, width=8))
    learner = Classifier(model, ClassifierConfig(learning_rate=3e-3, augment=False), 1, torch.device("cpu"))
    for _ in range(60):
        metrics = learner.update((images, labels))
    assert metrics["charts/accuracy"] == 1.0
    return model.eval(), images, labels


def test_perturbation_lowers_accuracy_within_the_epsilon_ball(trained):
    model, images, labels = trained
    result = visualize.perturb(model, images, labels, epsilon=0.25, steps=10)
    assert result.accuracy_before == 1.0 and result.accuracy_after <= 0.25  # chance with 4 classes
    assert (result.images - images).abs().max() <= 0.25 + 1e-6
    assert result.images.min() >= 0 and result.images.max() <= 1
    fgsm = visualize.perturb(model, images, labels, epsilon=0.25)
    assert fgsm.accuracy_after < 1.0
    # FGSM moves every pixel by exactly epsilon, unless the valid range stops it.
    moved = ((fgsm.images - images).abs() - 0.25).abs() < 1e-6
    assert (moved | (fgsm.images == 0) | (fgsm.images == 1)).all()


def test_class_max_raises_the_target_logit_and_feature_max_the_activation(trained):
    model, images, _ = trained
    classes = torch.arange(4)
    result = visualize.class_max(model, images.mean(0), classes, steps=30, lr=0.05)
    assert (result.after > result.before).all()
    assert result.images.shape == (4, 1, 8, 8) and result.images.min() >= 0 and result.images.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(model(result.images)[classes, classes], result.after)
    features = visualize.feature_max(lambda x: model.features(x, [2])[2], images.mean(0), [0, 1, 2], steps=20)
    assert (features.after > features.before).all()


def test_visualize_command_line_on_a_discriminator_run(tmp_path, capsys):
    data_dir = make_tiny_dataset("cifar10", tmp_path / "data", train=10, test=20, seed=0)
    torch.manual_seed(0)
    run = tmp_path / "run"
    settings = {"task": "cifar10", "net": "discriminator", "data_dir": str(data_dir), "device": "cpu"}
    header = {"job": "classifier", "config": {"width": 4 / 196}, "settings": settings}
    learner = JOBS["classifier"].parts(SupervisedSettings(**settings), ClassifierConfig(width=4 / 196), 1)[0]
    model = learner.model.eval()
    assert model.discriminator.blocks[0].conv.out_channels == 4
    save_checkpoint(run / "checkpoint.pt", {**header, "learner": learner.state_dict()})
    # The rebuilt model takes [0, 1] pixels and normalizes them as the run's training did.
    loaded = visualize_cli.load_run(run, "cpu")
    pixels = loaded.images[:3].float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in T.STATS["cifar10"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(pixels), model((pixels - mean) / std))
    result = visualize_cli.main(["perturb", str(run), "--images", "6", "--device", "cpu", "--steps", "2"])
    assert Image.open(result["path"]).size == (10 * 34 + 2, 2 * 34 + 2)  # 3 x 6 tiles of 32 + 2 in rows of 10
    result = visualize_cli.main(["class-max", str(run), "--device", "cpu", "--steps", "3"])
    assert result["logit_after"] > result["logit_before"]
    result = visualize_cli.main(["feature-max", str(run), "--device", "cpu", "--steps", "2", "--channels", "2",
                             "--layers", "1", "8"])
    assert [Path(p).name for p in result["paths"]] == ["feature_max_layer1.png", "feature_max_layer8.png"]
    assert "accuracy on 6 test images" in capsys.readouterr().out
    save_checkpoint(tmp_path / "other" / "checkpoint.pt", {**header, "settings": {**settings, "net": "resnet"},
                                                           "learner": {}})
    with pytest.raises(UserError, match="discriminator"):
        visualize_cli.main(["class-max", str(tmp_path / "other")])
    with pytest.raises(UserError, match="--layers"):
        visualize_cli.main(["feature-max", str(run), "--device", "cpu", "--layers", "9"])


def test_visualizations_read_an_acgan_runs_critic_and_push_noise_toward_classes(tmp_path, capsys):
    """The discriminator trained with the generator: its class head on [-1, 1] images of the padded test set."""
    data_dir = make_tiny_dataset("mnist", tmp_path / "data", train=10, test=20, seed=0)
    torch.manual_seed(0)
    run = tmp_path / "run"
    settings = {"task": "mnist", "net": "acgan", "data_dir": str(data_dir), "device": "cpu"}
    config = ACGANConfig(width=4, noise_dim=16, epochs=1)
    learner = JOBS["gan"].parts(SupervisedSettings(**settings), config)[0]
    save_checkpoint(run / "checkpoint.pt", {"job": "gan", "config": dataclasses.asdict(config), "settings": settings,
                                           "learner": learner.state_dict()})
    loaded = visualize_cli.load_run(run, "cpu")
    assert loaded.images.shape[-2:] == (32, 32)  # 28x28 digits padded as the GAN trained on them
    pixels = loaded.images[:3].float() / 255
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(pixels), learner.discriminator(pixels * 2 - 1)[1])
    result = visualize_cli.main(["perturb", str(run), "--images", "10", "--device", "cpu", "--steps", "5",
                                 "--epsilon", "0.5", "--from-noise"])
    assert result["target_accuracy_after"] > result["target_accuracy_before"]
    assert Path(result["path"]).name == "perturb_noise.png"
    assert "noise images given their target class" in capsys.readouterr().out
    result = visualize_cli.main(["class-max", str(run), "--device", "cpu", "--steps", "3"])
    assert result["logit_after"] > result["logit_before"]
