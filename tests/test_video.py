"""Video recognition (assignment 6): UCF-101's layout read back from generated AVI files, frame folders, frame
sampling, video augmentation, the batch source, 3D ResNets with torchvision's keys, per-frame and CNN + LSTM
models, per-video scores and their fusion, the classification report and its heat map, and the moving-direction
data set whose single frames carry no label."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import rlkit.data as V
from rlkit.analysis import metrics as M
from rlkit.data import transforms as T
from rlkit.errors import UserError
from rlkit.nets.pretrained import freeze, load_pretrained
from rlkit.nets.resnet import CifarResNet, resnet18
from rlkit.nets.video import (
    CNNLSTM, Conv2Plus1D, Conv3DSimple, FrameClassifier, VideoResNet, frame_resnet18, fuse_log_probs, midplanes,
    r2plus1d_18, r2plus1d_stem, r3d_18, sum_log_probs, video_log_probs,
)
from rlkit.sources.batches import VideoBatchSource

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared/reference/torchvision_state_dict_keys.json"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """3 classes x 6 videos of 16 frames, 32x32, mpeg4 in AVI (groups 1, 5, 9, 13, 17, 21). Read-only: copy it
    before changing anything."""
    return V.make_tiny_ucf(tmp_path_factory.mktemp("ucf"), classes=3, videos_per_class=6, frames=16, size=32, seed=0)


def whole_video(path: Path) -> torch.Tensor:
    return torch.from_numpy(V.decode_video(path)).permute(0, 3, 1, 2)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def group(name: str) -> int:
    return int(re.search(r"_g(\d\d)_c\d\d\.avi$", name).group(1))


# ---------------------------------------------------------------------------------------------------- layout
def test_generated_set_is_ucf_layout_with_real_avi_files(tiny):
    videos = sorted((tiny / "UCF-101").glob("*/*.avi"))
    assert len(videos) == 18 and videos[0].relative_to(tiny).as_posix() == "UCF-101/Scene01/v_Scene01_g01_c01.avi"
    with av.open(str(videos[0])) as container:
        stream = container.streams.video[0]
        assert (container.format.name, stream.codec_context.name, stream.frames) == ("avi", "mpeg4", 16)
    lists = tiny / "ucfTrainTestlist"
    assert (lists / "classInd.txt").read_bytes() == b"1 Scene01\r\n2 Scene02\r\n3 Scene03\r\n"
    assert (lists / "trainlist01.txt").read_bytes().startswith(b"Scene01/v_Scene01_g09_c01.avi 1\r\n")
    assert (lists / "testlist01.txt").read_bytes().startswith(b"Scene01/v_Scene01_g01_c01.avi\r\nScene01/v_Scene01_g05")


def test_splits_partition_the_videos_by_group_with_zero_based_labels(tiny):
    classes = V.read_class_index(tiny)
    assert classes == ("Scene01", "Scene02", "Scene03")
    every = sorted(p.relative_to(tiny / "UCF-101").as_posix() for p in (tiny / "UCF-101").glob("*/*.avi"))
    for fold, test_groups in ((1, {1, 5}), (2, {9, 13}), (3, {17, 21})):
        train, test = V.read_split(tiny, "train", fold), V.read_split(tiny, "test", fold)
        assert (len(train), len(test)) == (12, 6)
        assert sorted(e.name for e in train.videos + test.videos) == every
        assert {group(e.name) for e in test.videos} == test_groups
        assert not {group(e.name) for e in train.videos} & test_groups
        for entry in train.videos + test.videos:
            assert entry.label == classes.index(entry.name.split("/")[0])
    assert V.read_split(tiny, "test", 1).videos[:3] == (("Scene01/v_Scene01_g01_c01.avi", 0),
                                                         ("Scene01/v_Scene01_g05_c01.avi", 0),
                                                         ("Scene02/v_Scene02_g01_c01.avi", 1))


def test_hand_written_lists_labels_and_mismatch(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n\r\n")
    # UCF-101's own quirk: folder HandstandPushups, files v_HandStandPushups_...
    (lists / "trainlist01.txt").write_text("HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n"
                                           "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n")
    (lists / "testlist01.txt").write_text("handstandpushups/v_HandStandPushups_g01_c01.avi\r\n")
    assert V.read_split(tmp_path, "train").videos == (("HandstandPushups/v_HandStandPushups_g08_c01.avi", 1),
                                                      ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0))
    assert V.read_split(tmp_path, "test").videos[0].label == 1
    (lists / "trainlist02.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\r\n")
    with pytest.raises(UserError, match="label 2 disagrees with folder ApplyEyeMakeup") as error:
        V.read_split(tmp_path, "train", 2)
    one_line(error)


def test_class_folders_may_sit_in_the_root(tiny, tmp_path):
    root = tmp_path / "flat"
    shutil.copytree(tiny / "ucfTrainTestlist", root / "ucfTrainTestlist")
    for folder in (tiny / "UCF-101").iterdir():
        shutil.copytree(folder, root / folder.name)
    data = V.load_ucf101(root, "test", V.EvenFrames(4))
    assert data.sources[0] == root / "Scene01" / "v_Scene01_g01_c01.avi"
    assert torch.equal(data.get(0)[0], V.load_ucf101(tiny, "test", V.EvenFrames(4)).get(0)[0])


# ---------------------------------------------------------------------------------------------------- errors
def test_missing_video_is_a_one_line_error_naming_it(tiny, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny, root)
    (root / "UCF-101/Scene02/v_Scene02_g13_c01.avi").unlink()
    V.load_ucf101(root, "test", V.RandomFrame())  # split 1 does not list it
    with pytest.raises(UserError) as error:
        V.load_ucf101(root, "train", V.RandomFrame())
    message = one_line(error)
    assert str(root / "UCF-101/Scene02/v_Scene02_g13_c01.avi") in message
    assert V.UCF101_URL in message and "UCF-101/<Class>/<video>.avi" in message
    broken = root / "UCF-101/Scene01/v_Scene01_g01_c01.avi"
    broken.write_bytes(b"RIFF but not a video")
    with pytest.raises(UserError, match="re-download it") as error:
        V.load_ucf101(root, "test", V.RandomFrame()).get(0)
    assert str(broken) in one_line(error)


def test_missing_lists_and_frame_folders_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(UserError) as error:
        V.load_ucf101(tmp_path, "train", V.RandomFrame())
    message = one_line(error)
    assert str(tmp_path / "ucfTrainTestlist" / "classInd.txt") in message and V.UCF101_URL in message
    with pytest.raises(UserError) as error:
        V.load_ucf101(tiny, "test", V.RandomFrame(), frames_dir=tmp_path / "frames")
    message = one_line(error)
    assert str(tmp_path / "frames" / "Scene01" / "v_Scene01_g01_c01") in message
    assert f"python -m rlkit.data extract-frames --data-dir {tiny} --out {tmp_path / 'frames'}" in message
    with pytest.raises(UserError, match="splits 1, 2 and 3"):
        V.read_split(tiny, "train", 4)


# ---------------------------------------------------------------------------------------------------- sampling
def test_sampling_indices():
    generator = torch.Generator().manual_seed(0)
    assert V.evenly_spaced(16, 4).tolist() == [2, 6, 10, 14]
    assert V.evenly_spaced(3, 5).tolist() == [0, 0, 1, 2, 2]
    assert V.EvenClips(16, 3).indices(40)[:, 0].tolist() == [0, 12, 24]
    assert V.EvenClips(4, 2, step=2).indices(20).tolist() == [[0, 2, 4, 6], [13, 15, 17, 19]]
    assert V.RandomClip(16).indices(10, generator).tolist() == list(range(10)) + [9] * 6  # short: last frame repeats
    starts = {int(V.RandomClip(8, step=2).indices(30, generator)[0]) for _ in range(300)}
    assert starts == set(range(16))  # every start whose clip fits (30 - 15 + 1 of them), and no other
    assert {int(V.RandomFrame().indices(5, generator)) for _ in range(100)} == set(range(5))


def test_samples_have_the_sampling_shape_and_the_right_frames(tiny):
    data = V.load_ucf101(tiny, "train", V.RandomClip(16))
    assert len(data) == 12 and [data.num_frames(i) for i in (0, 11)] == [16, 16]
    every = whole_video(data.sources[0])
    clip, label = data.get(0, torch.Generator().manual_seed(0))
    assert clip.shape == (16, 3, 32, 32) and clip.dtype == torch.uint8 and label == 0
    assert torch.equal(clip, every)  # a 16-frame clip of a 16-frame video is all of it
    clip = data.with_sampling(V.RandomClip(4, step=3)).get(0, torch.Generator().manual_seed(1))[0]
    assert any(torch.equal(clip, every[s:s + 12:3]) for s in range(7))
    assert torch.equal(data.with_sampling(V.EvenFrames(4)).get(0)[0], every[[2, 6, 10, 14]])
    clips = data.with_sampling(V.EvenClips(8, 3)).get(0)[0]
    assert clips.shape == (3, 8, 3, 32, 32) and torch.equal(clips[1], every[4:12])
    frame = data.with_sampling(V.RandomFrame()).get(5, torch.Generator().manual_seed(2))[0]
    assert frame.shape == (3, 32, 32) and any(torch.equal(frame, f) for f in whole_video(data.sources[5]))
    small = V.VideoDataset(data.sources, data.labels, data.classes, V.EvenFrames(2), size=(24, 20))
    assert small.get(3)[0].shape == (2, 3, 24, 20)


def test_frame_files_in_numeric_order_and_reads_past_the_end(tiny, tmp_path):
    for number in (10, 2, 1):
        Image.new("RGB", (4, 2), (number, 0, 0)).save(tmp_path / f"img{number}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    assert [p.name for p in V.list_frame_files(tmp_path)] == ["img1.png", "img2.png", "img10.png"]
    frames, count = V.read_frame_folder(tmp_path, lambda n: np.array([[2, 0]]))
    assert count == 3 and frames.shape == (1, 2, 2, 4, 3) and frames[0, :, 0, 0, 0].tolist() == [10, 1]
    path = tiny / "UCF-101/Scene01/v_Scene01_g01_c01.avi"
    frames, count = V.read_video(path, lambda n: np.array([n - 1, n + 5]))  # a header promising too many frames
    last = V.decode_video(path)[-1]
    assert count == 16 and np.array_equal(frames[0], last) and np.array_equal(frames[1], last)


def test_frame_folders_give_the_decoded_frames(tiny, tmp_path):
    """PNG frames are exactly the decoded ones; JPEG (quality 95) differs by under 2 levels of 255 on average
    (about 1 here, at most 17 on a pixel)."""
    assert V.extract_frames(tiny, tmp_path / "png", "png") == 18
    assert V.extract_frames(tiny, tmp_path / "png", "png") == 0  # already there: resumes with nothing left
    assert not list((tmp_path / "png").glob("*/.*"))  # no temporary folders left behind
    V.extract_frames(tiny, tmp_path / "jpg", "jpg")
    videos = V.load_ucf101(tiny, "test", V.RandomClip(8), fold=2)
    for kind, tolerance in (("png", 0.0), ("jpg", 2.0)):
        folders = V.load_ucf101(tiny, "test", V.RandomClip(8), fold=2, frames_dir=tmp_path / kind)
        assert folders.sources[0] == tmp_path / kind / "Scene01" / "v_Scene01_g09_c01"
        assert np.array_equal(folders.labels, videos.labels)
        for i in range(len(videos)):
            assert folders.num_frames(i) == videos.num_frames(i) == 16
            a = videos.get(i, torch.Generator().manual_seed(i))[0].float()
            b = folders.get(i, torch.Generator().manual_seed(i))[0].float()
            assert (a - b).abs().mean() <= tolerance
            if kind == "jpg":
                assert (a - b).abs().mean() > 0  # lossy: the tolerance is used, the comparison is not vacuous


# ---------------------------------------------------------------------------------------------------- augmentation
def test_random_resized_crop_windows_and_one_window_per_video():
    crop = T.RandomResizedCrop(16)
    top, left, h, w = crop.boxes(2000, 64, 64, torch.Generator().manual_seed(0))
    share = (h * w).float() / (64 * 64)
    assert 0.68 <= share.min() < 0.71 and 0.98 < share.max() <= 1.0  # 70-100%, give or take whole pixels
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 64).all()
    fits = (h < 64) & (w < 64)  # the others had to span the frame to keep their area
    ratio = w[fits].float() / h[fits]
    assert 0.73 < ratio.min() < 0.77 and 1.3 < ratio.max() < 1.37 and not fits.all()  # 3/4 to 4/3, rounded
    _, _, h, w = crop.boxes(2000, 48, 64, torch.Generator().manual_seed(0))
    assert (h * w).min() >= 0.68 * 48 * 64 and (h <= 48).all() and (w <= 64).all()

    frame = torch.rand(4, 1, 3, 48, 64)
    clip = frame.expand(4, 5, 3, 48, 64)  # 5 identical frames per video
    out = crop(clip, torch.Generator().manual_seed(1))
    assert out.shape == (4, 5, 3, 16, 16)
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same window on every frame
    top, left, h, w = crop.boxes(4, 48, 64, torch.Generator().manual_seed(1))
    expected = F.interpolate(frame[2, :, :, top[2]:top[2] + h[2], left[2]:left[2] + w[2]], size=(16, 16),
                             mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(out[2, :1], expected)
    assert torch.equal(crop(clip, torch.Generator().manual_seed(1)), out)
    assert not torch.equal(crop(clip, torch.Generator().manual_seed(2)), out)


def test_flip_and_brightness_act_per_video():
    x = torch.rand(64, 3, 3, 8, 8) * 0.5
    flipped = T.RandomHorizontalFlip()(x, torch.Generator().manual_seed(0))
    chosen = [torch.equal(flipped[b], x[b].flip(-1)) for b in range(64)]
    assert all(c or torch.equal(flipped[b], x[b]) for b, c in enumerate(chosen)) and 16 < sum(chosen) < 48
    brighter = T.BrightnessJitter(0.2)(x, torch.Generator().manual_seed(0))
    factor = brighter / x
    per_video = factor.flatten(1)
    assert torch.allclose(per_video, per_video[:, :1].expand_as(per_video), atol=1e-5)
    assert 0.8 <= per_video.min() < 0.85 and 1.15 < per_video.max() <= 1.2


def test_video_pipelines_and_clip_layout():
    uint8 = torch.randint(0, 256, (2, 8, 3, 24, 32), dtype=torch.uint8)
    train, evaluate = T.make_video_transforms(16, T.KINETICS_STATS, channels_first_clips=True)
    assert train(uint8, torch.Generator().manual_seed(0)).shape == (2, 3, 8, 16, 16)
    out = evaluate(uint8)
    assert out.shape == (2, 3, 8, 16, 16)
    mean, std = (torch.tensor(s).view(3, 1, 1) for s in T.KINETICS_STATS)
    resized = F.interpolate(uint8[1].float() / 255, size=(16, 16), mode="bilinear", antialias=True)
    torch.testing.assert_close(out[1].transpose(0, 1), (resized - mean) / std)
    no_flip, _ = T.make_video_transforms(16, flip=False)
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in no_flip.transforms)


def test_batch_source_is_reproducible_and_resumes(tiny):
    data = V.load_ucf101(tiny, "train", V.RandomFrame())
    train, _ = T.make_video_transforms(24)

    def batches(source, count):
        return [source.next() for _ in range(count)]

    first = batches(VideoBatchSource(data, 4, seed=3, transform=train), 4)
    again = VideoBatchSource(data, 4, seed=3, transform=train)
    second = batches(again, 2)
    resumed = VideoBatchSource(data, 4, seed=3, transform=train)
    resumed.load_state_dict(again.state_dict())
    second += batches(resumed, 2)
    for (x1, y1), (x2, y2) in zip(first, second):
        assert x1.shape == (4, 3, 24, 24) and torch.equal(x1, x2) and torch.equal(y1, y2)
    epoch = torch.cat([y for _, y in first[:3]])  # 12 videos, 3 batches of 4: one epoch sees each once
    assert sorted(epoch.tolist()) == sorted(data.labels.tolist())
    assert not torch.equal(first[0][0], first[3][0])
    assert [y.tolist() for _, y in V.iterate_videos(data, 5)] == [data.labels[:5].tolist(),
                                                                  data.labels[5:10].tolist(),
                                                                  data.labels[10:].tolist()]


# ---------------------------------------------------------------------------------------------------- 3D ResNets
def shapes(model: nn.Module) -> list[tuple[str, list[int]]]:
    return [(key, list(value.shape)) for key, value in model.state_dict().items()]


@pytest.fixture(scope="module")
def video_nets() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"r3d_18": r3d_18(), "r2plus1d_18": r2plus1d_18()}


def test_video_resnet_parameter_counts_and_keys(video_nets):
    """torchvision 0.29's numbers (33,371,472 also summed from the reference file's shapes), checked without it."""
    assert sum(p.numel() for p in video_nets["r3d_18"].parameters()) == 33_371_472
    assert sum(p.numel() for p in video_nets["r2plus1d_18"].parameters()) == 31_505_325
    r3d, r21 = shapes(video_nets["r3d_18"]), shapes(video_nets["r2plus1d_18"])
    assert (len(r3d), len(r21)) == (122, 224)
    assert r3d[:7] == [("stem.0.weight", [64, 3, 3, 7, 7]), ("stem.1.weight", [64]), ("stem.1.bias", [64]),
                       ("stem.1.running_mean", [64]), ("stem.1.running_var", [64]), ("stem.1.num_batches_tracked", []),
                       ("layer1.0.conv1.0.weight", [64, 64, 3, 3, 3])]
    assert dict(r3d)["layer2.0.downsample.0.weight"] == [128, 64, 1, 1, 1]
    assert r3d[-2:] == [("fc.weight", [400, 512]), ("fc.bias", [400])]
    assert dict(r21)["stem.3.weight"] == [64, 45, 3, 1, 1]
    assert dict(r21)["layer2.0.conv2.0.0.weight"] == [230, 128, 1, 3, 3]  # both convs use the first's midplanes
    assert [midplanes(i, o) for i, o in ((64, 64), (64, 128), (128, 128), (256, 512))] == [144, 230, 288, 921]


@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18"])
def test_video_resnet_state_dict_equals_torchvision_reference(video_nets, name):
    if not REFERENCE.is_file():
        pytest.skip(f"reference file {REFERENCE} absent")
    reference = json.loads(REFERENCE.read_text())["models"][name]
    assert shapes(video_nets[name]) == list(reference.items())
    if name == "r3d_18":
        parameters = [k for k in reference if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        assert sum(math.prod(reference[k]) for k in parameters) == 33_371_472


def test_video_resnet_shapes_and_strides():
    torch.manual_seed(0)
    clips = torch.randn(2, 3, 8, 32, 32)
    for net in (VideoResNet(Conv3DSimple, num_classes=5, width=0.125),
                VideoResNet(Conv2Plus1D, r2plus1d_stem, num_classes=5, width=0.125)):
        assert net(clips).shape == (2, 5) and net.features(clips).shape == (2, net.out_features) == (2, 64)
        stem_out = net.stem(clips)
        assert stem_out.shape[2:] == (8, 16, 16)  # the stem keeps time and halves space
        assert net.layer2(net.layer1(stem_out)).shape[2:] == (4, 8, 8)  # later stages halve both
    encoder = VideoResNet(Conv3DSimple, num_classes=0, width=0.125)
    assert isinstance(encoder.fc, nn.Identity) and encoder(clips).shape == (2, 64)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        encoder(clips[:, :, 0])


def test_kinetics_style_file_loads_with_a_new_head(tmp_path):
    torch.manual_seed(0)
    kinetics = VideoResNet(Conv3DSimple, num_classes=400, width=0.25)
    torch.save(kinetics.state_dict(), tmp_path / "r3d.pth")
    ucf = VideoResNet(Conv3DSimple, num_classes=101, width=0.25)
    assert load_pretrained(ucf, tmp_path / "r3d.pth", skip=("fc.",)) == ["fc.weight", "fc.bias"]
    assert torch.equal(ucf.layer4[1].conv2[0].weight, kinetics.layer4[1].conv2[0].weight)
    with pytest.raises(UserError, match="skip the head"):
        load_pretrained(VideoResNet(Conv3DSimple, num_classes=101, width=0.25), tmp_path / "r3d.pth")


# ---------------------------------------------------------------------------------------------------- 2D and LSTM
def test_frame_classifier_keeps_imagenet_keys_and_scores_each_frame(tmp_path):
    torch.manual_seed(0)
    imagenet = resnet18()
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    model = frame_resnet18(num_classes=7)
    assert [k for k in model.state_dict() if not k.startswith("fc.")] == [
        k for k in imagenet.state_dict() if not k.startswith("fc.")]
    load_pretrained(model, tmp_path / "resnet18.pth", skip=("fc.",))
    assert torch.equal(model.layer3[0].conv1.weight, imagenet.layer3[0].conv1.weight)
    trainable = freeze(model, ("layer4", "fc"))
    assert trainable[0].startswith("layer4.") and trainable[-1] == "fc.bias"
    model.eval()
    video = torch.randn(2, 3, 3, 32, 32)
    per_frame = model(video)
    assert per_frame.shape == (2, 3, 7) and model(video[:, 0]).shape == (2, 7)
    torch.testing.assert_close(per_frame[1, 2], model(video[1, 2:3])[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.video_log_probs(video), F.log_softmax(per_frame, -1).sum(1))


def test_cnn_lstm_shapes_and_grid_pooling():
    torch.manual_seed(0)
    clips = torch.randn(2, 4, 3, 32, 32)
    model = CNNLSTM(6, CifarResNet(num_classes=0, width=0.25), hidden=16)
    assert model(clips).shape == (2, 6) and model.features(clips).shape == (2, 16)
    assert model.frame_features(clips).shape == (2, 4, 64)
    grid = CNNLSTM(6, CifarResNet(num_classes=0, width=0.25), hidden=16, grid=2)
    assert grid.encoder.out_features == 4 * 64 and grid.frame_features(clips).shape == (2, 4, 256)
    assert grid(clips).shape == (2, 6)
    assert CNNLSTM(6, FrameClassifier(CifarResNet(num_classes=0, width=0.25), 0), hidden=8)(clips).shape == (2, 6)
    model.eval()
    _, (hidden, _) = model.lstm(torch.stack([model.encoder.features(clip) for clip in clips]))
    torch.testing.assert_close(model(clips), model.fc(hidden[-1]))  # the state after the last frame, all frames in
    changed = clips.clone()
    changed[:, 0] = 0
    assert not torch.allclose(model(changed), model(clips))  # the first frame counts too


# ---------------------------------------------------------------------------------------------------- video scores
def test_sum_of_log_probs_by_hand():
    """Frames 1 and 2 say 0.8 / 0.2, frame 3 says 0.05 / 0.95: the product favours class 1
    (0.8 * 0.8 * 0.05 = 0.032 < 0.2 * 0.2 * 0.95 = 0.038) where the mean probability (0.55) and the vote favour 0."""
    probs = torch.tensor([[[0.8, 0.2], [0.8, 0.2], [0.05, 0.95]]])
    logits = probs.log() + torch.tensor([[[3.0], [-1.0], [0.5]]])  # any per-frame shift: logits, not log-probs
    scores = sum_log_probs(logits)
    torch.testing.assert_close(scores, torch.tensor([[math.log(0.032), math.log(0.038)]]))
    assert scores.argmax(1).item() == 1 and probs.mean(1).argmax(1).item() == 0
    two_videos = torch.cat([logits, logits.flip(-1)])
    for chunk in (0, 2):
        torch.testing.assert_close(video_log_probs(nn.Identity(), two_videos, chunk=chunk),
                                   torch.cat([scores, scores.flip(-1)]))


def test_fuse_log_probs_by_hand():
    """Equal weights: sqrt(0.9 * 0.2) : sqrt(0.1 * 0.8) = 0.3 : 0.2, i.e. 0.6 / 0.4."""
    a, b = torch.tensor([[0.9, 0.1]]).log(), torch.tensor([[0.2, 0.8]]).log()
    torch.testing.assert_close(fuse_log_probs(a, b), torch.tensor([[0.6, 0.4]]).log())
    torch.testing.assert_close(fuse_log_probs(a + 7.0, 3 * b.exp().log(), weight=1.0), a)
    fused = fuse_log_probs(a.numpy(), b.numpy(), weight=0.0)
    assert isinstance(fused, np.ndarray) and np.allclose(fused, b.numpy())


# ---------------------------------------------------------------------------------------------------- metrics
SCORES = np.array([[4, 3, 2, 1],    # true A: ranked A first
                   [1, 4, 3, 2],    # true A: predicted B, A ranked 4th
                   [3, 4, 1, 2],    # true B: right
                   [4, 1, 3, 2],    # true C: predicted A, C 2nd
                   [1, 2, 4, 3],    # true D: predicted C, D 2nd
                   [1, 2, 4, 3]],   # true D: predicted C, D 2nd
                  dtype=np.float64)
LABELS = np.array([0, 0, 1, 2, 3, 3])
NAMES = ("A", "B", "C", "D")


def test_report_on_a_hand_made_confusion():
    assert M.ranked(np.array([[1.0, 2.0, 2.0, 0.0]])).tolist() == [[1, 2, 0, 3]]  # ties: the lower class first
    assert M.topk_accuracy(SCORES, LABELS, ks=(1, 2, 3, 4, 10)) == {1: 2 / 6, 2: 5 / 6, 3: 5 / 6, 4: 1.0, 10: 1.0}
    report = M.classification_report(SCORES, LABELS, NAMES, ks=(1, 2), n=2)
    assert report.matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 2, 0]]
    assert M.per_class_accuracy(report.matrix).tolist() == [0.5, 1.0, 0.0, 0.0]
    assert report.best == [("B", 1.0), ("A", 0.5)]
    assert report.worst == [("C", 0.0), ("D", 0.0)]
    assert M.most_confused(report.matrix, NAMES) == [("D", "C", 1.0, 2), ("C", "A", 1.0, 1), ("A", "B", 0.5, 1)]
    assert report.confused == M.most_confused(report.matrix, NAMES)[:2]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["accuracy"] == {"top1": 2 / 6, "top2": 5 / 6} and data["confusion_matrix"][3] == [0, 0, 2, 0]
    assert "D -> C 100% (2)" in report.format()
    empty_class = M.confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 0]), 3)  # no true z
    assert np.isnan(M.per_class_accuracy(empty_class)[2]) and M.best_and_worst(empty_class, "xyz")[1] == [
        ("y", 0.0), ("x", 0.5)]


def test_confusion_png_is_a_heat_map_written_atomically(tmp_path):
    matrix = M.confusion_matrix(LABELS, M.ranked(SCORES)[:, 0], 4)
    path = M.save_confusion_png(tmp_path / "out" / "confusion.png", matrix, NAMES, cell=20)
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]
    image = np.asarray(Image.open(path).convert("RGB"))
    margin = image.shape[1] - 4 * 20
    assert image.shape == (margin + 80, margin + 80, 3) and margin > 0

    def cell(true: int, predicted: int) -> list[int]:
        return image[margin + 20 * true + 10, margin + 20 * predicted + 10].tolist()

    assert cell(1, 1) == cell(3, 2) == M.heat_colours(np.array(1.0)).tolist() == [40, 0, 40]  # all of a row
    assert cell(1, 0) == [255, 255, 255]  # none
    assert cell(0, 1) == M.heat_colours(np.array(0.5)).tolist() != cell(1, 1)
    bare = M.save_confusion_png(tmp_path / "bare.png", matrix, cell=3)
    assert Image.open(bare).size == (12, 12)


# ---------------------------------------------------------------------------------------------------- direction set
def class_frames(root: Path) -> dict[int, torch.Tensor]:
    """Every frame of every video, float in [0, 1], per class: (videos, T, C, H, W)."""
    frames: dict[int, list[torch.Tensor]] = {}
    for split in ("train", "test"):
        data = V.load_ucf101(root, split, V.EvenFrames(16))
        for i in range(len(data)):
            video, label = data.get(i)
            frames.setdefault(label, []).append(video.float() / 255)
    return {label: torch.stack(videos) for label, videos in sorted(frames.items())}


def mean_frame_spread(frames: dict[int, torch.Tensor]) -> float:
    """How far the class mean frames lie from the overall mean, relative to how far single frames do."""
    means = torch.stack([v.mean((0, 1)) for v in frames.values()])
    overall = means.mean(0)
    singles = torch.cat([v.flatten(0, 1) for v in frames.values()])
    return float((means - overall).pow(2).mean((1, 2, 3)).sqrt().max() / (singles - overall).pow(2).mean().sqrt())


def blob_velocity(video: torch.Tensor) -> tuple[float, float]:
    """Mean (rows, columns) per frame of the bright blob, from its circular centroid (the frame wraps around)."""
    gray = video.mean(1)
    weight = (gray - gray.flatten(1).median(1).values[:, None, None]).abs()
    centre = []
    for axis, size in ((1, gray.shape[1]), (2, gray.shape[2])):
        angle = 2 * math.pi * torch.arange(size) / size
        w = weight.sum(3 - axis)  # weight along the other axis summed out
        centre.append(torch.atan2((w * angle.sin()).sum(1), (w * angle.cos()).sum(1)) * size / (2 * math.pi))
    steps = [((c[1:] - c[:-1] + s / 2) % s - s / 2).mean().item() for c, s in zip(centre, gray.shape[1:])]
    return steps[0], steps[1]


def test_direction_set_single_frames_carry_no_label_but_motion_does(tmp_path):
    direction = class_frames(V.make_tiny_ucf(tmp_path / "d", classes=4, videos_per_class=8, frames=16, size=32,
                                             seed=3, motion="direction"))
    appearance = class_frames(V.make_tiny_ucf(tmp_path / "a", classes=4, videos_per_class=8, frames=16, size=32,
                                              seed=3, motion="appearance"))
    # The class means differ by sampling noise only; with classes told apart by their look they differ a lot.
    assert mean_frame_spread(direction) < 0.15
    assert mean_frame_spread(appearance) > 0.5
    for label, videos in direction.items():
        expected = V.direction_velocity(label, 4, 2.0)  # 32 pixels / 16 frames
        for video in videos:
            rows, columns = blob_velocity(video)
            assert abs(rows - expected[0]) < 0.3 and abs(columns - expected[1]) < 0.3
    assert len({V.direction_velocity(k, 4, 2.0) for k in range(4)}) == 4
    assert V.read_class_index(tmp_path / "d") == ("MoveRight", "MoveUp", "MoveLeft", "MoveDown")
    np.testing.assert_allclose(V.direction_velocity(1, 4, 2.0), (-2.0, 0.0), atol=1e-12)  # up: rows decrease
    np.testing.assert_allclose(V.direction_velocity(1, 8, 2.0), (-math.sqrt(2), math.sqrt(2)))  # up and right


def hara_resnet50_layout() -> dict[str, tuple[int, ...]]:
    """The keys and shapes of Hara et al.'s ``resnet-50-kinetics.pth`` ``state_dict``, written from their 2017
    models/resnet.py (conv1 7x7x7 to 64; bottlenecks of 3, 4, 6, 3 blocks at 64, 128, 256, 512 planes, expansion 4,
    shortcut type B on each stage's first block; fc 2048 -> 400), as DataParallel saved it (``module.``) with
    PyTorch 0.3's BatchNorm (no ``num_batches_tracked``)."""
    layout: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7, 7)}

    def bn(name: str, channels: int) -> None:
        for part in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.{part}"] = (channels,)

    bn("bn1", 64)
    in_planes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            layout[f"{prefix}.conv1.weight"] = (planes, in_planes, 1, 1, 1)
            bn(f"{prefix}.bn1", planes)
            layout[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3, 3)
            bn(f"{prefix}.bn2", planes)
            layout[f"{prefix}.conv3.weight"] = (planes * 4, planes, 1, 1, 1)
            bn(f"{prefix}.bn3", planes * 4)
            if block == 0:
                layout[f"{prefix}.downsample.0.weight"] = (planes * 4, in_planes, 1, 1, 1)
                bn(f"{prefix}.downsample.1", planes * 4)
            in_planes = planes * 4
    layout["fc.weight"], layout["fc.bias"] = (400, 2048), (400,)
    return {f"module.{key}": shape for key, shape in layout.items()}


def test_resnet3d_50_loads_a_file_in_hara_et_als_layout_strictly(tmp_path):
    from rlkit.nets.video import resnet3d_50

    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) for key, shape in hara_resnet50_layout().items()}
    path = tmp_path / "resnet-50-kinetics.pth"
    torch.save({"epoch": 200, "arch": "resnet-50", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}},
               path)
    model = resnet3d_50(num_classes=101)
    assert load_pretrained(model, path, skip=("fc.",)) == ["fc.weight", "fc.bias"]
    torch.testing.assert_close(model.layer4[0].conv2.weight, state["module.layer4.0.conv2.weight"])
    torch.testing.assert_close(model.bn1.running_var, state["module.bn1.running_var"])
    full = resnet3d_50()
    load_pretrained(full, path)  # with the Kinetics head too: every key and shape, nothing left over
    assert len(full.state_dict()) == len(state) + sum(1 for k in full.state_dict() if k.endswith("num_batches_tracked"))
    del state["module.layer3.5.bn2.running_mean"]
    torch.save({"arch": "resnet-50", "state_dict": state}, path)
    with pytest.raises(UserError, match="layer3.5.bn2.running_mean"):
        load_pretrained(resnet3d_50(), path)


def test_resnet3d_50_preset_is_the_courses_recipe():
    from rlkit.jobs.catalog import NETS
    from rlkit.nets.video import HARA_MEAN, HARA_STD, resnet3d_50

    row = NETS["resnet3d-50"]
    assert row.preset["clip_length"] == 16 and row.preset["input_size"] == 224
    assert row.preset["freeze_except"] == ("layer4.0", "fc") and row.channels_first
    frames = torch.full((1, 3, 1, 1), 0.5)  # 127.5 on their 0-255 scale, minus ActivityNet's mean, std 1
    normalized = (frames - torch.tensor(HARA_MEAN).view(1, 3, 1, 1)) / torch.tensor(HARA_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(normalized.flatten(), torch.tensor([127.5 - 114.7748, 127.5 - 107.7354, 127.5 - 99.4750]))
    model = resnet3d_50(num_classes=101, width=0.125).eval()
    freeze(model, row.preset["freeze_except"])
    trainable = {name.split(".")[0] + "." + name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4.0", "fc.weight", "fc.bias"} and model(torch.randn(1, 3, 16, 64, 64)).shape == (1, 101)
