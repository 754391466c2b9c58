"""rlkit.nets.densenet: DenseNet-BC's layout and parameter counts by hand, torchvision's DenseNet-121 keys, loading
its weight files (old key names included), forward shapes, and the densenet encoder and catalog rows."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rlkit.errors import UserError
from rlkit.jobs.catalog import get_net
from rlkit.nets import load_pretrained, make_encoder, replace_head
from rlkit.nets.densenet import DenseBlock, DenseNet, densenet121, densenet_bc_cifar
from rlkit.nets.encoders import ENCODERS
from rlkit.supervised.classifier import ClassifierConfig


@pytest.fixture(scope="module")
def net121() -> DenseNet:
    """One DenseNet-121, shared (copy or rebuild before changing it)."""
    torch.manual_seed(0)
    return densenet121()


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layers_of(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def bn(prefix: str, channels: int) -> list[tuple[str, list[int]]]:
    return [(f"{prefix}.{name}", [channels]) for name in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{prefix}.num_batches_tracked", [])]


def torchvision_densenet121_layout() -> list[tuple[str, list[int]]]:
    """torchvision's densenet121 state_dict keys and shapes, in order, written out from its model definition
    (torchvision/models/densenet.py: growth 32, bn_size 4, blocks (6, 12, 24, 16), 64 stem channels; transitions
    keep half the channels) rather than from rlkit's code. The shared reference file has no DenseNet."""
    keys = [("features.conv0.weight", [64, 3, 7, 7]), *bn("features.norm0", 64)]
    channels = 64
    for b, layers in enumerate((6, 12, 24, 16), start=1):
        for i in range(layers):
            prefix = f"features.denseblock{b}.denselayer{i + 1}"
            keys += [*bn(f"{prefix}.norm1", channels + 32 * i),
                     (f"{prefix}.conv1.weight", [128, channels + 32 * i, 1, 1]),
                     *bn(f"{prefix}.norm2", 128),
                     (f"{prefix}.conv2.weight", [32, 128, 3, 3])]
        channels += 32 * layers
        if b < 4:
            keys += [*bn(f"features.transition{b}.norm", channels),
                     (f"features.transition{b}.conv.weight", [channels // 2, channels, 1, 1])]
            channels //= 2
    return keys + [*bn("features.norm5", channels), ("classifier.weight", [1000, 1024]), ("classifier.bias", [1000])]


def random_state(layout: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {key: (torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(shape, generator=gen))
            for key, shape in layout}


# ------------------------------------------------------------------------------------- DenseNet-BC layout
def test_bc_100_12_has_three_blocks_of_16_layers_and_about_0_8m_parameters():
    """DenseNet-BC-100-12 with 10 classes: 769,162 parameters (the paper's table: 0.8M)."""
    model = densenet_bc_cifar(depth=100, growth=12, num_classes=10)
    blocks = [m for m in model.features.children() if isinstance(m, DenseBlock)]
    assert [len(block) for block in blocks] == [16, 16, 16]
    # Depth counts the weighted layers: stem + 2 per dense layer + 2 transitions, and the classifier.
    assert layers_of(model, nn.Conv2d) == 1 + 3 * 16 * 2 + 2 == 99
    assert layers_of(model, nn.Linear) == 1
    assert 750_000 <= count(model) <= 850_000
    assert count(model) == 769_162
    # 24 stem channels; 24 + 16 * 12 = 216 -> 108; 108 + 192 = 300 -> 150; 150 + 192 = 342 before the classifier.
    assert model.features.conv0.weight.shape == (24, 3, 3, 3)
    assert model.features.transition1.conv.weight.shape == (108, 216, 1, 1)
    assert model.features.transition2.conv.weight.shape == (150, 300, 1, 1)
    assert model.out_features == 342 and model.classifier.weight.shape == (10, 342)


def test_tiny_bc_layer_and_parameter_counts_by_hand():
    model = densenet_bc_cifar(depth=10, growth=4, num_classes=10, in_channels=3)
    # (10 - 4) / 6 = 1 layer per block: 1 stem conv + 3 blocks x 1 layer x 2 convs + 2 transitions = 9 convs.
    assert layers_of(model, nn.Conv2d) == 9
    # By hand (a norm of C channels: 2C parameters; k = 4, bottleneck 4k = 16 channels):
    #   conv0 3 -> 8 (2k), 3x3:                                    8*3*9               =  216
    #   block1 (8 in):  norm1 16 + conv1 8*16 + norm2 32 + conv2 16*4*9 = 16+128+32+576 =  752  -> 12 channels
    #   transition1:    norm 24 + conv 12*6                                             =   96  ->  6
    #   block2 (6 in):  12 + 6*16 + 32 + 576                                            =  716  -> 10
    #   transition2:    norm 20 + conv 10*5                                             =   70  ->  5
    #   block3 (5 in):  10 + 5*16 + 32 + 576                                            =  698  ->  9
    #   norm5 18, classifier 9*10 + 10 = 100                                            =  118
    #   total 216 + 752 + 96 + 716 + 70 + 698 + 118                                     = 2666
    assert count(model) == 2666
    assert model.out_features == 9
    # A transition keeps floor(theta * m) channels: growth 3 gives 6 + 3 = 9 channels -> 4.
    assert densenet_bc_cifar(depth=10, growth=3).features.transition1.conv.weight.shape == (4, 9, 1, 1)


def test_dense_block_concatenates_each_layer_onto_its_input():
    torch.manual_seed(0)
    block = DenseBlock(2, 3, growth=2, bn_size=4).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        out = block(x)
        first = block.denselayer1(x)
        second = block.denselayer2(torch.cat([x, first], 1))
    assert out.shape == (2, 3 + 2 * 2, 5, 5)
    torch.testing.assert_close(out, torch.cat([x, first, second], 1))


def test_depth_that_is_not_6n_plus_4_is_a_user_error():
    for depth in (7, 50, 101):
        with pytest.raises(UserError, match="6n \\+ 4"):
            densenet_bc_cifar(depth=depth)


# ------------------------------------------------------------------------------------- torchvision layout
def test_densenet121_keys_and_shapes_are_torchvision_s(net121):
    """727 tensors, 7,978,856 parameters (torchvision's documented count for densenet121)."""
    mine = [(key, list(value.shape)) for key, value in net121.state_dict().items()]
    assert mine == torchvision_densenet121_layout()
    assert len(mine) == 727 and count(net121) == 7_978_856
    shapes = dict(mine)
    assert shapes["features.denseblock4.denselayer16.conv2.weight"] == [32, 128, 3, 3]
    assert shapes["features.norm5.weight"] == [1024]
    assert shapes["classifier.weight"] == [1000, 1024]
    assert net121.features.pool0.stride == 2 and net121.features.conv0.stride == (2, 2)
    assert all(m.bias is None for m in net121.modules() if isinstance(m, nn.Conv2d))


def test_torchvision_initialization(net121):
    norms = [m for m in net121.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert torch.all(net121.classifier.bias == 0)
    # Kaiming normal with fan_in: std sqrt(2 / fan_in); this conv has 128 * 9 = 1152 inputs, 36,864 weights.
    weight = net121.features.denseblock3.denselayer1.conv2.weight
    assert weight.std().item() == pytest.approx(math.sqrt(2 / 1152), rel=0.05)


def test_torchvision_state_dict_loads_strictly(net121, tmp_path):
    state = random_state(torchvision_densenet121_layout())
    model = densenet121()
    model.load_state_dict(state, strict=True)
    path = tmp_path / "densenet121.pth"
    torch.save(state, path)
    assert load_pretrained(model, path) == []
    key = "features.denseblock2.denselayer3.conv1.weight"
    assert torch.equal(model.state_dict()[key], state[key])


def test_published_file_with_old_key_names_loads(tmp_path):
    """torchvision's published files name layer modules "norm.1", "conv.2" and have no num_batches_tracked; a
    fresh head of another size keeps its own initialization when skipped."""
    state = random_state(torchvision_densenet121_layout())
    old = {key.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): value
           for key, value in state.items() if not key.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    path = tmp_path / "densenet121-old.pth"
    torch.save(old, path)
    model = densenet121(num_classes=10)
    head = model.classifier.weight.clone()
    assert load_pretrained(model, path, skip=("classifier.",)) == ["classifier.weight", "classifier.bias"]
    own = model.state_dict()
    for key in ("features.denseblock1.denselayer1.norm1.weight", "features.denseblock4.denselayer16.conv2.weight"):
        assert torch.equal(own[key], state[key])
    assert torch.equal(model.classifier.weight, head)


def test_unskipped_head_of_another_size_names_the_classifier(tmp_path):
    path = tmp_path / "densenet121.pth"
    torch.save(random_state(torchvision_densenet121_layout()), path)
    with pytest.raises(UserError, match=r"skip=\('classifier.',\)"):
        load_pretrained(densenet121(num_classes=10), path)


def test_replace_head_uses_the_classifier():
    model = densenet_bc_cifar(depth=10, growth=4)
    head = replace_head(model, 3)
    assert model.classifier is head and head.weight.shape == (3, 9)
    assert not hasattr(model, "fc")


# ------------------------------------------------------------------------------------- forward
@torch.no_grad()
def test_forward_shapes(net121):
    bc = densenet_bc_cifar(depth=100, growth=12, num_classes=10).eval()
    assert bc(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    gray = densenet_bc_cifar(depth=10, growth=4, num_classes=10, in_channels=1).eval()
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # 64x64 stands in for 224x224 (same layers, 1/12 of the compute): 16 -> 8 -> 4 -> 2 pixels after the stem.
    assert net121.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert densenet121(num_classes=0).eval().encode(torch.randn(1, 3, 64, 64)).shape == (1, 1024)


# ------------------------------------------------------------------------------------- encoder and catalog
def test_make_encoder_densenet_takes_uint8_frames():
    assert "densenet" in ENCODERS
    torch.manual_seed(0)
    encoder = make_encoder((4, 84, 84), "densenet")
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        out = encoder(frames)
        assert out.shape == (2, encoder.out_features)
        torch.testing.assert_close(out, encoder.net(frames.float() / 255.0))  # scaled inside
    assert not any(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())
    with pytest.raises(UserError, match="image observations"):
        make_encoder((8,), "densenet")


def test_catalog_rows_build_the_nets():
    config = ClassifierConfig(depth=10, growth=4)
    small = get_net("densenet").build(config, 1, 28, 10)
    assert isinstance(small, DenseNet) and small.features.conv0.weight.shape == (8, 1, 3, 3)
    assert count(small) == 2666 - 2 * 8 * 9  # the hand count of a 3-channel stem, less 2 input channels
    row = get_net("densenet121")
    assert row.in_channels == 3 and row.preset["input_size"] == 224
    assert row.build(ClassifierConfig(), 3, 224, 10).classifier.weight.shape == (10, 1024)
