"""The data command line: ``python -m rlkit.data COMMAND ...``.

    python -m rlkit.data download cifar10 --data-dir data/cifar10      # official files, MD5-checked
    python -m rlkit.data verify mnist --data-dir data/mnist            # compare with the official MD5s
    python -m rlkit.data extract-frames --data-dir data/ucf101 --out data/ucf101-frames
    python -m rlkit.data extract-flow --data-dir data/ucf101 --out data/ucf101-flow          # Farneback, OpenCV
    python -m rlkit.data extract-features --net frame-resnet50 --weights resnet50-0676ba61.pth \
        --data-dir data/ucf101 --out data/ucf101-features
    python -m rlkit.data make-tiny ucf101 --out /tmp/ucf --motion direction
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rlkit.data.features import extract_features
from rlkit.data.fixtures import MOTIONS, make_tiny_dataset, make_tiny_ucf
from rlkit.data.flow import FLOW_BOUND, extract_flow
from rlkit.data.registry import DATASETS, DOWNLOAD_COMMAND, download, verify
from rlkit.data.ucf101 import VIDEO_FOLDER, extract_frames
from rlkit.errors import UserError, run_command
# The command line sits above the nets: extract-features runs a catalog net (rlkit.jobs imports rlkit.data, never
# this module).
from rlkit.jobs.video import frame_feature_extractor
from rlkit.config import whole_number

TINY_SETS = (*DATASETS, "ucf101")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m rlkit.data",
        description="Download and check the official files of an image data set, prepare UCF-101's videos, or write "
                    "tiny data sets in the official formats.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, text in (
        ("download", "fetch the official files (skipping valid ones), check their MD5 and extract CIFAR archives"),
        ("verify", "compare the files in --data-dir with the official MD5s; exit status 2 if any is missing or "
                   "changed"),
    ):
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("name", choices=list(DATASETS), metavar="NAME", help=f"one of {', '.join(DATASETS)}")
        sub.add_argument("--data-dir", default=None, help="folder of the files (default: data/NAME); for CIFAR the "
                         "folder that holds cifar-10-batches-py/ or cifar-100-python/")

    text = "decode every UCF-101 video into a folder of numbered frames"
    extract = commands.add_parser("extract-frames", help=text, description=text)
    extract.add_argument("--data-dir", required=True, help=f"the folder holding {VIDEO_FOLDER}/ (or the class folders)")
    extract.add_argument("--out", required=True, help="where the frame folders go (<Class>/<video name>/)")
    extract.add_argument("--format", default="jpg", choices=("jpg", "png"), help="jpg (small) or png (lossless)")
    extract.add_argument("--quality", type=whole_number, default=95, help="JPEG quality")

    text = "compute dense optical flow (Farneback, OpenCV) between consecutive frames of every UCF-101 video"
    flow = commands.add_parser("extract-flow", help=text, description=text + ": <Class>/<video name>/x_000001.jpg "
                               "and y_000001.jpg per frame pair, clipped to +-BOUND px and quantized to 0-255, the "
                               "bound in flow.json")
    flow.add_argument("--data-dir", required=True, help=f"the folder holding {VIDEO_FOLDER}/ (or the class folders)")
    flow.add_argument("--out", required=True, help="where the flow folders go (<Class>/<video name>/)")
    flow.add_argument("--frames-dir", help="read frames extracted by extract-frames instead of decoding the videos")
    flow.add_argument("--bound", type=float, default=FLOW_BOUND, help=f"clip flow to +-BOUND pixels (default: "
                      f"{FLOW_BOUND:g})")
    flow.add_argument("--format", default="jpg", choices=("jpg", "png"), help="jpg (small) or png (lossless)")
    flow.add_argument("--quality", type=whole_number, default=95, help="JPEG quality")

    text = "encode every frame of every UCF-101 video with a frame net into one feature array per video"
    features = commands.add_parser("extract-features", help=text, description=text + ": <Class>/<video name>.npy "
                                   "of float32 (frames, dim), and features.json")
    features.add_argument("--net", required=True, help="the frame net: frame-resnet50 or frame-resnet18")
    features.add_argument("--weights", default="", help="a state_dict file for it, e.g. torchvision's ImageNet "
                          "resnet50-0676ba61.pth, or the directory of a video run of that net (its fine-tuned "
                          "weights); the head is skipped (default: random weights)")
    features.add_argument("--data-dir", required=True, help=f"the folder holding {VIDEO_FOLDER}/ (or the class "
                          "folders)")
    features.add_argument("--out", required=True, help="where the feature files go (<Class>/<video name>.npy)")
    features.add_argument("--frames-dir", help="read frames extracted by extract-frames instead of decoding")
    features.add_argument("--input-size", type=whole_number, default=224, help="frames are resized to this square "
                          "(default: 224)")
    features.add_argument("--stride", type=whole_number, default=1, help="encode every STRIDE-th frame (default: 1)")
    features.add_argument("--batch-size", type=whole_number, default=64, help="frames per forward pass (default: 64)")
    features.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")

    text = "write a tiny learnable data set in the official layout and format of NAME"
    tiny = commands.add_parser("make-tiny", help=text, description=text)
    tiny.add_argument("name", choices=TINY_SETS, metavar="NAME", help=f"one of {', '.join(TINY_SETS)}")
    tiny.add_argument("--out", required=True, help="the data set's folder")
    tiny.add_argument("--seed", type=whole_number, default=0, help="random seed")
    tiny.add_argument("--train", type=whole_number, default=200, help="training images (image sets)")
    tiny.add_argument("--test", type=whole_number, default=100, help="test images (image sets)")
    tiny.add_argument("--classes", type=whole_number, default=4, help="number of classes (ucf101)")
    tiny.add_argument("--videos-per-class", type=whole_number, default=12, help="videos per class (ucf101)")
    tiny.add_argument("--frames", type=whole_number, default=16, help="frames per video (ucf101)")
    tiny.add_argument("--size", type=whole_number, default=32, help="frame side in pixels, even (ucf101)")
    tiny.add_argument("--motion", default="appearance", choices=MOTIONS, help="what tells the classes apart (ucf101)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one subcommand; problems the user can fix are :class:`UserError` (one line, exit status 2)."""
    args = build_parser().parse_args(argv)
    if args.command == "extract-frames":
        count = extract_frames(args.data_dir, args.out, args.format, args.quality)
        print(f"extracted {count} videos into {args.out}")
    elif args.command == "extract-flow":
        count = extract_flow(args.data_dir, args.out, args.bound, args.format, args.quality, args.frames_dir)
        print(f"computed the optical flow of {count} videos into {args.out}")
    elif args.command == "extract-features":
        encode, transform, meta, device = frame_feature_extractor(args.net, args.weights, args.input_size,
                                                                  args.device)
        count = extract_features(args.data_dir, args.out, encode, transform, meta, args.batch_size, args.stride,
                                 args.frames_dir, device)
        print(f"encoded the frames of {count} videos with {args.net} into {args.out}")
    elif args.command == "make-tiny":
        if args.name == "ucf101":
            make_tiny_ucf(args.out, args.classes, args.videos_per_class, args.frames, args.size, args.seed,
                          args.motion)
            print(f"wrote a tiny UCF-101 ({args.motion}) into {args.out}")
        else:
            make_tiny_dataset(args.name, args.out, args.train, args.test, args.seed)
            print(f"wrote a tiny {args.name} into {args.out}")
    else:
        data_dir = Path(args.data_dir) if args.data_dir else Path("data") / args.name
        if args.command == "download":
            print(f"{args.name} is ready in {download(args.name, data_dir)}")
        else:
            _verify(args.name, data_dir)


def _verify(name: str, data_dir: Path) -> None:
    problems = verify(name, data_dir)
    for problem in problems:
        print(problem)
    if problems:
        command = DOWNLOAD_COMMAND.format(name=name, data_dir=data_dir)
        raise UserError(f"{len(problems)} file(s) of {name} in {data_dir} are missing or changed: "
                        f"delete the changed ones and run `{command}`")
    print(f"{name}: every file in {data_dir} matches its official MD5")


if __name__ == "__main__":
    run_command(main)
