"""amari score IMAGE... --group DIR: sim-scores against a group."""

from __future__ import annotations

HELP = "sim-score of images against a group (mean face distance; 0 = same face)"
DESCRIPTION = """\
For each image (or every image in a folder), find its largest face and print its mean distance to the
largest face of every image in the group folder: the study's sim-score (<= 0.40 counts as the same
person), or `no face found`. Descriptors are cached by file content."""


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="images or folders to score")
    parser.add_argument("--group", required=True, metavar="DIR", help="folder of the group's images")
    parser.add_argument("--csv", metavar="OUT", help="also write path,sim_score,faces,face_found,error to a CSV")
    parser.add_argument("--detector", choices=("hog", "cnn"), default="hog", help="dlib face detector (default hog)")
    parser.add_argument("--upsample", type=int, default=1, help="times to upsample before detection (default 1)")
    parser.add_argument("--jitters", type=int, default=1, help="re-samples per face descriptor (default 1)")
    parser.add_argument("--cpus", type=int, default=1, help="processes to use; -1 means all cores")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")


def run(args) -> int:
    import sys

    from amari import score
    from amari.faces import FaceSettings

    settings = FaceSettings(detector=args.detector, upsample=args.upsample, jitters=args.jitters)
    results = score.run(args.images, args.group, settings, csv_out=args.csv, cpus=args.cpus,
                        use_cache=not args.no_cache)
    for result in results:
        if result.error:
            print(f"WARNING: cannot read {result.path}: {result.error}. Skipped.", file=sys.stderr)
        else:
            print(f"{result.path},{result.label}")
    return 1 if results and all(r.error for r in results) else 0
