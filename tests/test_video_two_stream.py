"""Two-stream video and per-frame features: Farneback optical flow against known shifts, its quantized storage
(``extract-flow``), the temporal ResNet's cross-modality initialization, flow transforms, the per-frame feature
files (``extract-features``) and the LSTM over them, each trained and evaluated end to end on a tiny UCF-101, and
``evaluate.py --fuse`` of a spatial and a temporal run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evaluate
import rlkit.data as V
import train
from rlkit.data import transforms as T
from rlkit.data.__main__ import main as data_main
from rlkit.data.features import FeatureReader, load_ucf101_features
from rlkit.data.flow import FlowReader, dequantize, farneback_flow, load_ucf101_flow, quantize, video_flow
from rlkit.errors import UserError
from rlkit.jobs import JOBS, NETS, read_checkpoint
from rlkit.jobs.video import evaluate_videos, fuse_scores
from rlkit.nets.pretrained import load_pretrained
from rlkit.nets.resnet import resnet18
from rlkit.nets.video import FeatureLSTM, cross_modality_weight, flow_resnet18, frame_resnet18

REFERENCES = [Path(__file__).resolve().parents[n] / "shared/reference/torchvision_state_dict_keys.json"
              for n in (1, 2, 3)]


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def textured(shape=(72, 88), seed=0) -> np.ndarray:
    """A smooth random gray image (Farneback fits local polynomials: it needs texture at a few pixels' scale)."""
    import cv2

    noise = np.random.default_rng(seed).random(shape).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return np.rint(255 * (smooth - smooth.min()) / (smooth.max() - smooth.min())).astype(np.uint8)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    """3 directions x 6 videos of 16 frames, 32x32: 12 training and 6 test videos. Read-only."""
    return V.make_tiny_ucf(tmp_path_factory.mktemp("ucf"), classes=3, videos_per_class=6, frames=16, size=32, seed=0,
                           motion="direction")


@pytest.fixture(scope="module")
def flow_dir(ucf, tmp_path_factory) -> Path:
    """The fixture's flow through the command line, lossless (png). Read-only."""
    out = tmp_path_factory.mktemp("flow")
    data_main(["extract-flow", "--data-dir", str(ucf), "--out", str(out), "--format", "png"])
    return out


# ---------------------------------------------------------------------------------------------------- flow
@pytest.mark.parametrize("shift", [(3, -2), (-1, 4), (0, 0)])
def test_flow_of_a_shifted_image_is_the_shift(shift):
    dx, dy = shift
    first = textured()
    second = np.roll(first, (dy, dx), axis=(0, 1))  # content moves dx right, dy down
    flow = farneback_flow(first, second)
    assert flow.shape == (72, 88, 2) and flow.dtype == np.float32
    inner = flow[12:-12, 12:-12].reshape(-1, 2)  # the wrapped border is not a shift
    np.testing.assert_allclose(inner.mean(0), [dx, dy], atol=0.05)
    np.testing.assert_allclose(np.median(inner, axis=0), [dx, dy], atol=0.05)
    rgb = np.repeat(first[..., None], 3, axis=2), np.repeat(second[..., None], 3, axis=2)
    np.testing.assert_allclose(farneback_flow(*rgb), flow)  # RGB frames are turned gray first


def test_quantization_by_hand():
    q = quantize(np.array([-25.0, -20.0, 0.0, 5.0, 20.0, 31.0]), bound=20)
    # (f + 20) * 255 / 40, rounded: 0, 0, 127.5 -> 128 (to even), 159.375 -> 159, 255, 255
    assert q.tolist() == [0, 0, 128, 159, 255, 255] and q.dtype == np.uint8
    step = 40 / 255
    np.testing.assert_allclose(dequantize(q.astype(np.float64), 20), [-20, -20, 128 * step - 20, 159 * step - 20, 20, 20])
    back = dequantize(quantize(np.linspace(-20, 20, 101), 20).astype(np.float64), 20)
    assert np.abs(back - np.linspace(-20, 20, 101)).max() <= 20 / 255 + 1e-9  # half a step


def test_extract_flow_writes_the_documented_layout(ucf, flow_dir):
    assert json.loads((flow_dir / "flow.json").read_text())["bound"] == 20.0
    videos = sorted((ucf / "UCF-101").glob("*/*.avi"))
    assert sorted(p.relative_to(flow_dir) for p in flow_dir.glob("*/*")) == \
        sorted(Path(v.parent.name) / v.stem for v in videos)
    folder = flow_dir / videos[0].parent.name / videos[0].stem
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"x_{i:06d}.png" for i in range(1, 16)] + [f"y_{i:06d}.png" for i in range(1, 16)])
    # Lossless: the files hold exactly the quantized Farneback flow of consecutive decoded frames.
    expected = video_flow(V.decode_video(videos[0]))  # (15, H, W, 2)
    fields = FlowReader().read(folder, lambda n: np.arange(n))
    assert FlowReader().count(folder) == 15 and fields.shape == (15, 2, 32, 32)
    assert torch.equal(fields, torch.from_numpy(expected).movedim(-1, -3))
    # Kept when run again; another bound is refused rather than mixed in.
    assert data_main(["extract-flow", "--data-dir", str(ucf), "--out", str(flow_dir)]) is None
    with pytest.raises(UserError, match="clipped at 20.0 px, not --bound 10") as error:
        data_main(["extract-flow", "--data-dir", str(ucf), "--out", str(flow_dir), "--bound", "10"])
    one_line(error)


def test_stored_flow_points_the_way_each_class_moves(ucf, flow_dir):
    data = load_ucf101_flow(ucf, "train", V.EvenClips(15, 1), 1, flow_dir)
    for index in range(len(data)):
        fields, label = data.get(index)
        flow = dequantize(fields[0].movedim(1, -1).double(), 20).reshape(-1, 2)  # (pixels, (x, y))
        moving = flow[flow.norm(dim=1) > 0.5].mean(0)
        dy, dx = V.direction_velocity(label, 3, 32 / 16)
        cosine = float(moving @ torch.tensor([dx, dy], dtype=torch.float64)) / (moving.norm().item() * np.hypot(dx, dy))
        assert cosine > 0.95, (index, moving, (dx, dy))


def test_flow_stacks_flip_and_channels_by_hand():
    stack = torch.tensor([[[[0.25, 0.5]], [[0.5, 1.0]]]])  # (L=1, 2, H=1, W=2): x then y
    flipped = T.FlowHorizontalFlip(p=1.0)(stack[None])[0]
    assert torch.allclose(flipped, torch.tensor([[[[0.5, 0.75]], [[1.0, 0.5]]]]))  # mirrored; x: 1 - x
    assert torch.equal(T.FlowHorizontalFlip(p=0.0)(stack[None])[0], stack)
    two = torch.arange(2 * 2 * 3 * 3, dtype=torch.uint8).reshape(1, 2, 2, 3, 3)  # (B, L, 2, H, W)
    train_t, eval_t = T.make_flow_transforms(3, augment=False)
    out = eval_t(two)
    assert out.shape == (1, 4, 3, 3)
    expected = (two.float() / 255 - 0.5) / 0.5
    assert torch.allclose(out, expected.reshape(1, 4, 3, 3))  # channels x1, y1, x2, y2
    assert not any(isinstance(t, T.BrightnessJitter) for t in T.make_flow_transforms(3)[0].transforms)


# ---------------------------------------------------------------------------------------------------- temporal net
def imagenet_resnet18_state() -> dict[str, torch.Tensor]:
    """A ResNet-18 state_dict in torchvision's layout (random weights), checked against the reference listing
    where that file is present."""
    torch.manual_seed(0)
    state = resnet18(num_classes=1000).state_dict()
    for path in REFERENCES:
        if path.is_file():
            reference = json.loads(path.read_text())["models"]["resnet18"]
            assert {k: list(v.shape) for k, v in state.items()} == reference
            break
    return state


def test_cross_modality_weight_by_hand():
    rgb = torch.tensor([[[[1.0]], [[2.0]], [[6.0]]], [[[-3.0]], [[0.0]], [[0.0]]]])  # (2, 3, 1, 1)
    flow = cross_modality_weight(rgb, 4)
    assert flow.shape == (2, 4, 1, 1)
    assert flow[0].flatten().tolist() == [3.0] * 4 and flow[1].flatten().tolist() == [-1.0] * 4


def test_temporal_net_starts_from_imagenet_by_cross_modality(tmp_path):
    state = imagenet_resnet18_state()
    weights = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, weights)
    net = flow_resnet18(num_classes=5, stack=10)
    assert net.conv1.weight.shape == (64, 20, 7, 7)
    load_pretrained(net, weights, skip=("fc.",))
    loaded = net.state_dict()
    for out_channel in range(64):
        mean = state["conv1.weight"][out_channel].mean(0)  # over R, G, B
        for channel in range(20):
            assert torch.allclose(loaded["conv1.weight"][out_channel, channel], mean)
    for key in ("bn1.running_var", "layer1.0.conv1.weight", "layer4.1.bn2.weight"):
        assert torch.equal(loaded[key], state[key]), key
    assert loaded["fc.weight"].shape == (5, 512)
    # A saved flow net of the same stack loads unchanged.
    own = tmp_path / "flow.pth"
    torch.save(loaded, own)
    again = flow_resnet18(num_classes=5, stack=10)
    load_pretrained(again, own)
    assert torch.equal(again.conv1.weight, net.conv1.weight)
    with pytest.raises(UserError, match="conv1.weight file \\[64, 20, 7, 7\\] model \\[64, 6, 7, 7\\]"):
        load_pretrained(flow_resnet18(num_classes=5, stack=3), own, skip=("fc.",))


def flow_args(data: Path, flow: Path, run: Path, *extra: str) -> list[str]:
    return ["--task", "ucf101", "--net", "flow-resnet18", "--data-dir", str(data), "--flow-dir", str(flow),
            "--run-dir", str(run), "--input-size", "32", "--batch-size", "4", "--flow-stack", "4", "--test-clips", "3",
            "--no-flip", "--no-progress", *extra]


@pytest.fixture(scope="module")
def flow_run(ucf, flow_dir, tmp_path_factory) -> Path:
    """flow-resnet18 on stacks of 4, 3 updates from an ImageNet-layout file (deleted before evaluation)."""
    folder = tmp_path_factory.mktemp("flow_run")
    weights = folder / "resnet18-imagenet.pth"
    torch.save(imagenet_resnet18_state(), weights)
    train.main(flow_args(ucf, flow_dir, folder / "run", "--max-steps", "3", "--eval-interval", "3",
                         "--pretrained", str(weights)))
    weights.unlink()
    return folder / "run"


def test_flow_run_trains_and_evaluates_from_its_checkpoint(flow_run, flow_dir, tmp_path):
    evals = [json.loads(line) for line in (flow_run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [3] and "eval/stack_accuracy" in evals[0]
    config = json.loads((flow_run / "config.json").read_text())["config"]
    assert config["flow_dir"] == str(flow_dir) and config["flow_stack"] == 4
    tuned = read_checkpoint(flow_run)["learner"]["model"]
    assert tuned["conv1.weight"].shape == (64, 8, 7, 7) and tuned["fc.weight"].shape == (3, 512)
    result = evaluate.main([str(flow_run), "--json", "--out", str(tmp_path)])
    assert result["net"] == "flow-resnet18" and result["videos"] == 6 and result["stacks_per_video"] == 3
    assert result["accuracy"]["top1"] == pytest.approx(evals[0]["eval/top1"])
    assert result["stack_accuracy"] == pytest.approx(evals[0]["eval/stack_accuracy"])
    # The scores are the sums of the log-probabilities of 3 evenly spaced stacks of 4 of the 15 fields.
    parts = JOBS["video"].rebuild(read_checkpoint(flow_run), "cpu").parts
    stacks, _ = parts.test.get(0)
    assert stacks.shape == (3, 4, 2, 32, 32)
    model = parts.learner.model.eval()
    with torch.no_grad():
        by_hand = F.log_softmax(model(parts.eval_transform(stacks[None])[0]), 1).sum(0)
    np.testing.assert_allclose(evaluate_videos(parts).scores[0], by_hand.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("extra,message", [
    ([], "flow-resnet18 reads precomputed flow: pass --flow-dir DIR"),
    (["--flow-dir", "FLOW", "--frames-dir", "x"], "--frames-dir feeds frame-resnet50"),
    (["--net", "frame-resnet18", "--flow-dir", "FLOW"], "--flow-dir feeds flow-resnet18, flow-resnet50; "
                                                         "frame-resnet18 reads frames: drop --flow-dir"),
    (["--net", "frame-resnet18", "--flow-stack", "3"], "--flow-stack shapes the flow-resnet18, flow-resnet50 nets"),
    (["--flow-dir", "FLOW", "--flow-stack", "0"], "--flow-stack must be positive"),
    (["--flow-dir", "DATA"], "flow.json not found"),
    (["--net", "feature-lstm"], "feature-lstm reads precomputed features: pass --features-dir DIR"),
])
def test_bad_input_is_one_clear_line(ucf, flow_dir, extra, message, tmp_path):
    extra = [str(flow_dir) if e == "FLOW" else str(ucf) if e == "DATA" else e for e in extra]
    argv = ["--task", "ucf101", "--net", "flow-resnet18", "--data-dir", str(ucf), "--run-dir", str(tmp_path / "r"),
            "--max-steps", "1", *extra]
    with pytest.raises(UserError) as error:
        train.main(argv)
    assert message in one_line(error)


# ---------------------------------------------------------------------------------------------------- fusion
def test_fusing_a_spatial_and_a_temporal_run(ucf, flow_run, flow_dir, tmp_path):
    spatial = tmp_path / "spatial"
    train.main(["--task", "ucf101", "--net", "frame-resnet18", "--data-dir", str(ucf), "--run-dir", str(spatial),
                "--input-size", "32", "--batch-size", "4", "--test-frames", "5", "--no-flip", "--max-steps", "2",
                "--no-progress"])
    result = evaluate.main([str(spatial), "--fuse", str(flow_run), "--fuse-weight", "0.4", "--flow-dir",
                            str(flow_dir), "--json", "--out", str(tmp_path)])
    assert result["fused"]["net"] == "flow-resnet18" and result["fused"]["weight"] == 0.4
    a = evaluate_videos(JOBS["video"].rebuild(read_checkpoint(spatial), "cpu").parts)
    b = evaluate_videos(JOBS["video"].rebuild(read_checkpoint(flow_run), "cpu").parts)
    assert a.videos == b.videos and (a.samples, b.samples) == (5, 3)
    expected = F.log_softmax(0.4 * F.log_softmax(torch.from_numpy(a.scores / 5), 1)
                             + 0.6 * F.log_softmax(torch.from_numpy(b.scores / 3), 1), 1)
    np.testing.assert_allclose(fuse_scores(a, b, 0.4), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert result["accuracy"]["top1"] == np.mean(expected.numpy().argmax(1) == a.labels)
    assert result["fused"]["other_top1"] == pytest.approx(float(np.mean(b.scores.argmax(1) == b.labels)))
    # --flow-dir reaches only the flow run: a folder without flow.json is refused for it.
    with pytest.raises(UserError, match="flow.json not found"):
        evaluate.main([str(spatial), "--fuse", str(flow_run), "--flow-dir", str(ucf), "--out", str(tmp_path)])


# ---------------------------------------------------------------------------------------------------- features
@pytest.fixture(scope="module")
def features_dir(ucf, tmp_path_factory) -> Path:
    """frame-resnet18 features (from a random ImageNet-layout file) of every fixture video. Read-only."""
    folder = tmp_path_factory.mktemp("features")
    weights = folder / "resnet18-imagenet.pth"
    torch.save(imagenet_resnet18_state(), weights)
    out = folder / "features"
    data_main(["extract-features", "--net", "frame-resnet18", "--weights", str(weights), "--data-dir", str(ucf),
               "--out", str(out), "--input-size", "32", "--batch-size", "5", "--stride", "2", "--device", "cpu"])
    return out


def test_extract_features_writes_each_frames_features(ucf, features_dir):
    meta = json.loads((features_dir / "features.json").read_text())
    assert meta["net"] == "frame-resnet18" and meta["dim"] == 512 and meta["stride"] == 2
    videos = sorted((ucf / "UCF-101").glob("*/*.avi"))
    assert sorted(p.relative_to(features_dir) for p in features_dir.glob("*/*.npy")) == \
        sorted(Path(v.parent.name) / f"{v.stem}.npy" for v in videos)
    stored = np.load(features_dir / videos[4].parent.name / f"{videos[4].stem}.npy")
    assert stored.shape == (8, 512) and stored.dtype == np.float32  # frames 1, 3, ..., 15 of 16
    net = frame_resnet18(num_classes=0)
    load_pretrained(net, Path(meta["weights"]), skip=("fc.",))
    frames = torch.from_numpy(V.decode_video(videos[4])[::2]).movedim(-1, -3)[None]
    with torch.no_grad():
        expected = net.eval().features(T.make_video_transforms(32, augment=False)[1](frames)[0])
    np.testing.assert_allclose(stored, expected.numpy(), rtol=1e-4, atol=1e-4)
    assert FeatureReader().count(features_dir / videos[4].parent.name / f"{videos[4].stem}.npy") == 8


def test_feature_lstm_trains_on_features_and_evaluates(ucf, features_dir, tmp_path):
    run = tmp_path / "run"
    train.main(["--task", "ucf101", "--net", "feature-lstm", "--data-dir", str(ucf), "--features-dir",
                str(features_dir), "--run-dir", str(run), "--batch-size", "4", "--clip-length", "5", "--test-clips",
                "2", "--lstm-hidden", "16", "--max-steps", "3", "--eval-interval", "3", "--no-progress"])
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    model = read_checkpoint(run)["learner"]["model"]
    assert model["core.rnn.weight_ih_l0"].shape == (64, 512) and model["fc.weight"].shape == (3, 16)
    result = evaluate.main([str(run), "--json", "--out", str(tmp_path)])
    assert result["sequences_per_video"] == 2 and result["accuracy"]["top1"] == pytest.approx(evals[0]["eval/top1"])
    # Each test video: 2 sequences of 5 feature rows (of 8), starting at rows 0 and 3.
    parts = JOBS["video"].rebuild(read_checkpoint(run), "cpu").parts
    sequences, _ = parts.test.get(0)
    rows = np.load(parts.test.sources[0])
    assert torch.equal(sequences, torch.from_numpy(rows[np.array([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]])]))
    with torch.no_grad():
        by_hand = F.log_softmax(parts.learner.model.eval()(sequences), 1).sum(0)
    np.testing.assert_allclose(evaluate_videos(parts).scores[0], by_hand.numpy(), rtol=1e-5, atol=1e-5)


def test_feature_lstm_reads_its_features_in_order():
    torch.manual_seed(0)
    net = FeatureLSTM(6, num_classes=4, hidden=5).eval()
    x = torch.randn(3, 7, 6)
    h = torch.zeros(1, 3, 5), torch.zeros(1, 3, 5)
    lstm = torch.nn.LSTM(6, 5)
    lstm.load_state_dict(net.core.rnn.state_dict())
    out, _ = lstm(x.transpose(0, 1), h)
    with torch.no_grad():
        assert torch.allclose(net(x), net.fc(out[-1]), atol=1e-6)
    with pytest.raises(ValueError, match=r"expected features \(B, T, 6\)"):
        net(torch.randn(3, 7, 5))


def test_feature_files_missing_and_non_frame_nets_are_one_line(ucf, features_dir, tmp_path):
    with pytest.raises(UserError, match="features.json not found") as error:
        load_ucf101_features(ucf, "test", V.EvenClips(4, 2), 1, tmp_path)
    one_line(error)
    with pytest.raises(UserError, match="r3d18 is not a frame net: extract features with one of frame-resnet50, "
                                        "frame-resnet18") as error:
        data_main(["extract-features", "--net", "r3d18", "--data-dir", str(ucf), "--out", str(tmp_path / "f")])
    one_line(error)
    assert {n for n, row in NETS.items() if getattr(row, "input", "") == "flow"} == {"flow-resnet18",
                                                                                    "flow-resnet50"}


def test_damaged_flow_and_feature_files_are_one_line(flow_dir, tmp_path):
    folder = tmp_path / "flow" / "Class" / "v_x"
    folder.mkdir(parents=True)
    image = next(flow_dir.glob("*/*/x_000001.png")).read_bytes()
    for name in ("x_000001.png", "x_000002.png", "y_000001.png"):
        (folder / name).write_bytes(image)
    with pytest.raises(UserError, match="holds 2 x_ and 1 y_ images: delete it and extract the flow again") as error:
        FlowReader().count(folder)
    one_line(error)
    (folder / "y_000002.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read flow image .*y_000002.png") as error:
        FlowReader().read(folder, lambda n: np.array([1]))
    one_line(error)
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read feature file") as error:
        FeatureReader().count(tmp_path / "bad.npy")
    one_line(error)
    np.save(tmp_path / "flat.npy", np.zeros(4, dtype=np.float32))
    with pytest.raises(UserError, match=r"holds shape \(4,\), not \(frames, dim\)"):
        FeatureReader().count(tmp_path / "flat.npy")


def test_flow_from_extracted_frames_equals_flow_from_the_videos(ucf, flow_dir, tmp_path):
    frames = tmp_path / "frames"
    V.extract_frames(ucf, frames, image_format="png")  # lossless: the decoded frames
    out = tmp_path / "flow"
    data_main(["extract-flow", "--data-dir", str(ucf), "--out", str(out), "--frames-dir", str(frames),
               "--format", "png"])
    for folder in sorted(flow_dir.glob("*/*"))[:3]:
        mine = out / folder.relative_to(flow_dir)
        assert torch.equal(FlowReader().read(mine, np.arange), FlowReader().read(folder, np.arange))
    first = next(frames.glob("*/*"))
    for file in first.iterdir():
        file.unlink()
    first.rmdir()
    with pytest.raises(UserError, match="frame folder .* not found: run `python -m rlkit.data extract-frames") as error:
        data_main(["extract-flow", "--data-dir", str(ucf), "--out", str(tmp_path / "again"), "--frames-dir",
                   str(frames)])
    one_line(error)


def test_features_of_a_fine_tuned_frame_net_run(ucf, tmp_path):
    run = tmp_path / "spatial"
    train.main(["--task", "ucf101", "--net", "frame-resnet18", "--data-dir", str(ucf), "--run-dir", str(run),
                "--input-size", "32", "--batch-size", "4", "--test-frames", "2", "--max-steps", "1", "--no-progress"])
    out = tmp_path / "features"
    data_main(["extract-features", "--net", "frame-resnet18", "--weights", str(run), "--data-dir", str(ucf),
               "--out", str(out), "--input-size", "32", "--stride", "8", "--device", "cpu"])
    net = frame_resnet18(num_classes=3)
    net.load_state_dict(read_checkpoint(run)["learner"]["model"])
    video = sorted((ucf / "UCF-101").glob("*/*.avi"))[0]
    frames = torch.from_numpy(V.decode_video(video)[::8]).movedim(-1, -3)[None]
    with torch.no_grad():
        expected = net.eval().features(T.make_video_transforms(32, augment=False)[1](frames)[0])
    stored = np.load(out / video.parent.name / f"{video.stem}.npy")
    assert stored.shape == (2, 512)
    np.testing.assert_allclose(stored, expected.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="is a frame-resnet18 run, not a frame-resnet50 video run") as error:
        data_main(["extract-features", "--net", "frame-resnet50", "--weights", str(run), "--data-dir", str(ucf),
                   "--out", str(tmp_path / "other")])
    one_line(error)
