"""The encoders' reading of observations: uint8 bytes scaled to [0, 1], float values taken as given, and the choice
of ``auto`` (the Nature CNN for images it can convolve, an MLP over anything else), with the refusal of an image
encoder that cannot read the env's frames."""

from __future__ import annotations

import pytest
import torch

from rlkit.errors import UserError
from rlkit.nets import MLP, NatureCNN, make_encoder
from rlkit.nets.encoders import (DATA_EFFICIENT_CONVS, NATURE_CONVS, as_unit_scale, convolved_size, encoder_kind)


def test_bytes_are_divided_by_255_and_floats_taken_as_they_come():
    frames = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    torch.testing.assert_close(as_unit_scale(frames), torch.tensor([[0.0, 0.2, 1.0]]))
    values = torch.tensor([[0.5, -3.0, 7.0]], dtype=torch.float64)
    scaled = as_unit_scale(values)
    assert scaled.dtype == torch.float32 and scaled.tolist() == [[0.5, -3.0, 7.0]]
    assert frames.tolist() == [[0, 51, 255]]  # the caller's tensor is left alone


def test_the_nature_cnn_reads_float_images_as_given():
    """A float image is on the user's scale already: the convolutions see it as it is, not divided by 255."""
    torch.manual_seed(0)
    net = NatureCNN(3, 36, 36)
    images = torch.rand(2, 3, 36, 36)
    with torch.no_grad():
        torch.testing.assert_close(net(images), net.fc(net.convs(images)))
        frames = (images * 255).round().to(torch.uint8)
        torch.testing.assert_close(net(frames), net.fc(net.convs(frames.float() / 255)))


def test_an_mlp_reads_bytes_on_the_unit_scale():
    torch.manual_seed(0)
    mlp = MLP(3, (4,))
    bytes_in = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    torch.testing.assert_close(mlp(bytes_in), mlp(torch.tensor([[0.0, 0.2, 1.0]])))


@pytest.mark.parametrize("convs, least", [(NATURE_CONVS, 36), (DATA_EFFICIENT_CONVS, 25)])
def test_the_least_image_a_convolution_stack_reads_by_hand(convs, least):
    """Nature: 36 -> 8 -> 3 -> 1 pixels (kernels 8/4, 4/2, 3/1); data-efficient: 25 -> 5 -> 1 (5/5, 5/5)."""
    assert convolved_size(least, convs) == 1 and convolved_size(least - 1, convs) == 0
    assert convolved_size(84, NATURE_CONVS) == 7 and convolved_size(84, DATA_EFFICIENT_CONVS) == 3


@pytest.mark.parametrize("shape, kind", [((4, 84, 84), "nature-cnn"), ((3, 36, 36), "nature-cnn"),
                                         ((3, 35, 36), "mlp"), ((3, 7, 7), "mlp"), ((8,), "mlp"), ((4, 5), "mlp")])
def test_auto_picks_the_nature_cnn_only_for_images_it_can_convolve(shape, kind):
    assert encoder_kind(shape) == kind
    encoder = make_encoder(shape)
    assert isinstance(encoder, NatureCNN if kind == "nature-cnn" else MLP)
    assert encoder(torch.zeros(2, *shape, dtype=torch.uint8)).shape == (2, encoder.out_features)


@pytest.mark.parametrize("kind, least", [("nature-cnn", 36), ("der-cnn", 25)])
def test_a_convolution_stack_is_refused_for_images_too_small_for_it(kind, least):
    with pytest.raises(UserError, match=rf"the {kind} encoder needs images of at least {least}x{least} pixels, "
                                        r"this env's are 7x7: use --encoder mlp"):
        make_encoder((3, 7, 7), kind)
    assert encoder_kind((3, least, least), kind) == kind
