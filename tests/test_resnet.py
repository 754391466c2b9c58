"""rlkit.nets.resnet, cnn and pretrained: torchvision-exact ResNet keys, loading weight files, freezing, the
course's CIFAR nets, and the ResNet encoder in DQN."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit.agents.dqn import DQN, DQNConfig
from rlkit.buffers import Batch
from rlkit.errors import UserError
from rlkit.nets import (
    BasicBlock, CifarResNet, DeepCNN, freeze, frozen_batchnorm_eval, load_pretrained, make_encoder, replace_head,
    resnet18, resnet34, resnet50,
)

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared/reference/torchvision_state_dict_keys.json"
FACTORIES = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


@pytest.fixture(scope="module")
def nets() -> dict[str, nn.Module]:
    """One ImageNet ResNet of each depth (building resnet50 takes a second: share them, copy before changing)."""
    torch.manual_seed(0)
    return {name: make() for name, make in FACTORIES.items()}


def shapes(model: nn.Module) -> list[tuple[str, list[int]]]:
    return [(key, list(value.shape)) for key, value in model.state_dict().items()]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def one_line_error(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# ------------------------------------------------------------------------------------- torchvision layout
def test_parameter_counts_and_keys_match_torchvision(nets):
    """Counts and keys torchvision 0.29 gives (checked without the reference file)."""
    assert count(nets["resnet18"]) == 11_689_512
    assert count(nets["resnet34"]) == 21_797_672
    assert count(nets["resnet50"]) == 25_557_032
    r18, r50 = shapes(nets["resnet18"]), shapes(nets["resnet50"])
    assert (len(r18), len(r50)) == (122, 320)
    assert r18[:7] == [("conv1.weight", [64, 3, 7, 7]), ("bn1.weight", [64]), ("bn1.bias", [64]),
                       ("bn1.running_mean", [64]), ("bn1.running_var", [64]), ("bn1.num_batches_tracked", []),
                       ("layer1.0.conv1.weight", [64, 64, 3, 3])]
    assert r18[-2:] == [("fc.weight", [1000, 512]), ("fc.bias", [1000])]
    assert dict(r18)["layer2.0.downsample.0.weight"] == [128, 64, 1, 1]
    assert dict(r18)["layer2.0.downsample.1.running_var"] == [128]
    assert dict(r50)["layer1.0.conv3.weight"] == [256, 64, 1, 1]
    assert dict(r50)["layer1.0.downsample.0.weight"] == [256, 64, 1, 1]
    assert dict(r50)["layer4.2.bn3.weight"] == [2048]
    assert r50[-2:] == [("fc.weight", [1000, 2048]), ("fc.bias", [1000])]
    # v1.5: the bottleneck strides on its 3x3 convolution, not on the first 1x1.
    block = nets["resnet50"].layer2[0]
    assert (block.conv1.stride, block.conv2.stride, block.downsample[0].stride) == ((1, 1), (2, 2), (2, 2))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_state_dict_equals_torchvision_reference(nets, name):
    """Every key, in torchvision's order, with its shape (so strict loading of published files works)."""
    if not REFERENCE.is_file():
        pytest.skip(f"reference file {REFERENCE} absent")
    reference = json.loads(REFERENCE.read_text())["models"][name]
    assert shapes(nets[name]) == list(reference.items())


def test_torchvision_initialization(nets):
    """Kaiming fan_out convolutions, BN at (1, 0); zero_init_residual zeroes each block's last BN."""
    net = nets["resnet50"]
    weight = net.layer3[0].conv1.weight  # 1x1 from 512 to 256 channels: fan_out 256, fan_in 512
    assert weight.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.05)
    assert torch.all(net.layer3[0].bn3.weight == 1) and torch.all(net.layer3[0].bn3.bias == 0)
    zeroed = resnet18(zero_init_residual=True)
    assert all(torch.all(block.bn2.weight == 0) for stage in (zeroed.layer1, zeroed.layer4) for block in stage)
    assert torch.all(zeroed.layer1[0].bn1.weight == 1)


def test_encoder_mode_and_head_replacement(nets):
    """num_classes=0 makes fc an Identity; replace_head puts a fresh Linear(out_features, n) there."""
    x = torch.randn(2, 3, 64, 64)
    encoder = resnet18(num_classes=0, in_channels=1).eval()
    assert isinstance(encoder.fc, nn.Identity) and encoder(x[:, :1]).shape == (2, 512)
    net = copy.deepcopy(nets["resnet50"]).eval()
    assert net.out_features == 2048 and net.features(x).shape == (2, 2048)
    head = replace_head(net, 7)
    assert net.fc is head and (head.in_features, head.out_features) == (2048, 7)
    assert net(x).shape == (2, 7)


def test_channels_last_keeps_the_function():
    """Channels-last weights (a speed-up on CPU) compute what the default layout computes."""
    torch.manual_seed(1)
    net = CifarResNet(num_classes=10).eval()
    plain = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    assert net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    with torch.no_grad():  # the same layers applied by hand in the default layout
        y = plain.dropout(plain.relu(plain.bn1(plain.conv1(x))))
        for name in plain.stage_names:
            y = getattr(plain, name)(y)
        expected = plain.fc(plain.pool(y).flatten(1))
    assert out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------- pretrained weights
def test_saved_state_dict_loads_and_gives_identical_outputs(nets, tmp_path):
    """A torch.save'd state_dict reproduces the net exactly: plain, wrapped as a DDP training checkpoint, or
    without the num_batches_tracked counters (torchvision's files from before PyTorch 0.4.1)."""
    source = nets["resnet18"].eval()
    x = torch.randn(2, 3, 64, 64)
    expected = source(x)
    plain, wrapped, old = tmp_path / "plain.pth", tmp_path / "wrapped.pt", tmp_path / "old.pth"
    state = source.state_dict()
    torch.save(state, plain)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    for path in (plain, wrapped, old):
        torch.manual_seed(123)
        target = resnet18()
        assert not torch.equal(target.conv1.weight, source.conv1.weight)
        assert load_pretrained(target, path) == []
        assert torch.equal(target.eval()(x), expected)


def test_skip_head_loads_the_body_and_keeps_a_fresh_head(nets, tmp_path):
    """A 1000-class file into a 100-class net: with skip=("fc.",) the body loads and fc stays as initialized;
    without it the error points at the head."""
    path = tmp_path / "imagenet.pth"
    torch.save(nets["resnet18"].state_dict(), path)
    net = resnet18(num_classes=100)
    fresh_fc = copy.deepcopy(net.fc.state_dict())
    with pytest.raises(UserError) as error:
        load_pretrained(net, path)
    message = one_line_error(error)
    assert "fc.weight file [1000, 512] model [100, 512]" in message and "skip" in message
    assert load_pretrained(net, path, skip=("fc.",)) == ["fc.weight", "fc.bias"]
    assert all(torch.equal(net.fc.state_dict()[k], v) for k, v in fresh_fc.items())
    assert torch.equal(net.layer4[1].conv2.weight, nets["resnet18"].layer4[1].conv2.weight)
    assert torch.equal(net.bn1.running_var, nets["resnet18"].bn1.running_var)


def test_wrong_or_unreadable_file_is_one_line_user_error(nets, tmp_path):
    """A resnet50 file into a resnet18 names file, model, keys with both shapes and the fix; so do bad files."""
    path = tmp_path / "r50.pth"
    torch.save(nets["resnet50"].state_dict(), path)
    with pytest.raises(UserError) as error:
        load_pretrained(resnet18(), path)
    message = one_line_error(error)
    assert str(path) in message and "resnet18" in message
    assert "layer1.0.conv1.weight file [64, 64, 1, 1] model [64, 64, 3, 3]" in message
    assert "pass a weight file saved from a resnet18" in message

    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    whole = tmp_path / "whole.pt"
    torch.save(nn.Linear(2, 2), whole)
    for bad, expected in ((tmp_path / "absent.pth", "no weight file"), (text, "not a torch.save file"),
                          (whole, "state_dict()")):
        with pytest.raises(UserError) as error:
            load_pretrained(resnet18(), bad)
        assert str(bad) in one_line_error(error) and expected in str(error.value)


# ------------------------------------------------------------------------------------- freezing
def cifar_step(net: nn.Module, optimizer: torch.optim.Optimizer, channels: int = 3) -> None:
    torch.manual_seed(2)
    images, labels = torch.randn(8, channels, 32, 32), torch.randint(0, 10, (8,))
    optimizer.zero_grad()
    nn.functional.cross_entropy(net(images), labels).backward()
    optimizer.step()


def test_freeze_trains_only_the_chosen_prefixes():
    """Only parameters under layer4 and fc keep requires_grad, and an optimizer step changes only them."""
    net = CifarResNet(num_classes=10)
    trainable = freeze(net, ("layer4", "fc."))
    assert trainable and all(name.startswith(("layer4.", "fc.")) for name in trainable)
    assert trainable == [n for n, p in net.named_parameters() if p.requires_grad]
    assert {n for n, _ in net.named_parameters()} - set(trainable) >= {"conv1.weight", "layer3.3.conv2.weight"}
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    cifar_step(net, torch.optim.Adam(net.parameters(), lr=0.1))  # every parameter handed to the optimizer
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(trainable)
    with pytest.raises(UserError) as error:
        freeze(net, ("layer9",))
    assert "layer9" in one_line_error(error) and "layer1, layer2, layer3, layer4" in str(error.value)


def test_frozen_batchnorm_keeps_its_running_statistics():
    """After model.train() and frozen_batchnorm_eval, a training step leaves frozen BN statistics alone (the
    trainable layer4's BN still updates)."""
    net = CifarResNet(num_classes=10)
    freeze(net, ("layer4", "fc"))
    net.train()
    frozen = frozen_batchnorm_eval(net)
    assert "bn1" in frozen and "layer3.3.bn2" in frozen and not any(n.startswith("layer4") for n in frozen)
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    cifar_step(net, torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1))
    for name, buffer in net.named_buffers():
        assert torch.equal(buffer, buffers[name]) != name.startswith("layer4"), name


# ------------------------------------------------------------------------------------- the course's nets
def test_cifar_resnet_has_the_assignment_layout():
    """Stem 3x3 conv of 32 channels + BN + ReLU + dropout; stages of 2, 4, 4, 2 basic blocks with 32, 64, 128,
    256 channels and strides 1, 2, 2, 2; global max pool; fc."""
    net = CifarResNet(num_classes=100, dropout=0.3)
    assert (net.conv1.kernel_size, net.conv1.out_channels, net.conv1.stride) == ((3, 3), 32, (1, 1))
    assert isinstance(net.bn1, nn.BatchNorm2d) and net.dropout.p == 0.3
    stages = [getattr(net, name) for name in net.stage_names]
    assert net.stage_names == ["layer1", "layer2", "layer3", "layer4"]
    assert [len(stage) for stage in stages] == [2, 4, 4, 2]
    assert all(isinstance(block, BasicBlock) for stage in stages for block in stage)
    assert [stage[-1].conv2.out_channels for stage in stages] == [32, 64, 128, 256]
    assert [stage[0].conv1.stride[0] for stage in stages] == [1, 2, 2, 2]
    assert all(block.conv1.stride == (1, 1) for stage in stages for block in stage[1:])
    assert [stage[0].downsample is not None for stage in stages] == [False, True, True, True]
    assert isinstance(net.pool, nn.AdaptiveMaxPool2d) and net.out_features == 256
    assert (net.fc.in_features, net.fc.out_features) == (256, 100)
    x = torch.randn(2, 3, 32, 32)  # the stem's dropout is the only randomness in training mode
    assert not torch.equal(net(x), net(x)) and torch.equal(net.eval()(x), net(x))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
def test_cifar_resnet_shapes(channels, size):
    net = CifarResNet(num_classes=10, in_channels=channels).eval()
    x = torch.randn(2, channels, size, size)
    assert net(x).shape == (2, 10) and net.features(x).shape == (2, 256)
    assert CifarResNet(num_classes=0, in_channels=channels, width=0.5)(x).shape == (2, 128)


@pytest.mark.parametrize("channels, size, flat", [(3, 32, 256 * 2 * 2), (1, 28, 256 * 1 * 1)])
def test_deep_cnn_shapes(channels, size, flat):
    """Eight 3x3 convs with BN, a pool every two, then 500, 500 and the head."""
    net = DeepCNN(num_classes=10, in_channels=channels, image_size=size)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 8
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 4
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.25] * 4 + [0.5] * 2
    assert [m.in_features for m in net.modules() if isinstance(m, nn.Linear)] == [flat, 500, 500]
    x = torch.randn(3, channels, size, size)
    assert net(x).shape == (3, 10) and net.features(x).shape == (3, 500) and net.out_features == 500
    assert DeepCNN(0, channels, size)(x).shape == (3, 500)


def test_deep_cnn_dropout_only_in_training():
    torch.manual_seed(3)
    net = DeepCNN(num_classes=10)
    x = torch.randn(4, 3, 32, 32)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in DeepCNN(batch_norm=False).modules())


# ------------------------------------------------------------------------------------- DQN with a ResNet torso
def test_make_encoder_resnet_takes_uint8_frames():
    encoder = make_encoder((4, 84, 84), "resnet")
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert encoder(frames).shape == (2, encoder.out_features)
    assert torch.equal(encoder(frames), encoder.net(frames.float() / 255))  # scaled inside, like the Nature CNN
    with pytest.raises(UserError, match="unknown encoder 'resnet50': use auto, nature-cnn, der-cnn, mlp, resnet, densenet"):
        make_encoder((4, 84, 84), "resnet50")
    with pytest.raises(UserError, match="needs image observations"):
        make_encoder((8,), "resnet")


def test_dqn_with_resnet_encoder_updates():
    """A DQN built with encoder="resnet" has the ResNet torso, acts, and an update moves its weights."""
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = DQN(DQNConfig(encoder="resnet", batch_size=4), obs_space, gym.spaces.Discrete(3), seed=0)
    assert isinstance(agent.q_net.encoder.net, CifarResNet)
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.integers(0, 256, (4, 4, 84, 84), dtype=np.uint8))
    assert agent.act(obs[:1].numpy(), explore=False).shape == (1,)
    batch = Batch(obs=obs, actions=torch.tensor([0, 1, 2, 0]), rewards=torch.ones(4), next_obs=obs.flip(0),
                  terminated=torch.zeros(4), discounts=torch.full((4,), 0.99), weights=torch.ones(4),
                  masks=torch.ones(4, 1), update_priorities=None)
    before = agent.q_net.encoder.net.conv1.weight.detach().clone()
    metrics = agent.update(batch)
    assert np.isfinite(metrics["losses/td_loss"])
    assert not torch.equal(agent.q_net.encoder.net.conv1.weight, before)


@pytest.mark.parametrize("size", [7, 28, 32])
def test_strided_1x1_shortcut_is_the_strided_convolution_and_trains(size):
    """The projection shortcut's 1x1/2 convolution computes what nn.Conv2d with stride 2 does, and its backward
    runs in channels-last with few channels (oneDNN's own kernel for it crashed the process on an AVX2-only CPU)."""
    from rlkit.nets.resnet import conv1x1

    conv = conv1x1(4, 8, stride=2).to(memory_format=torch.channels_last)
    x = torch.randn(4, 4, size, size).contiguous(memory_format=torch.channels_last)
    with torch.backends.mkldnn.flags(enabled=False):
        expected = torch.nn.functional.conv2d(x, conv.weight, stride=2)
    torch.testing.assert_close(conv(x), expected)
    conv(x.requires_grad_()).sum().backward()
    assert conv.weight.grad is not None and x.grad.shape == x.shape
