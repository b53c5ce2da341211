"""amari compare KNOWN_DIR UNKNOWN: face_recognition-compatible comparison."""

from __future__ import annotations

HELP = "compare faces with known people, as the face_recognition command-line tool does"
DESCRIPTION = """\
Compare every face in UNKNOWN (an image or a folder) with the known people in KNOWN_DIR (one image per
person, named by file stem). Prints one line per match, `path,name[,distance]`, `path,unknown_person`
when a face matches nobody, and `path,no_persons_found` when an image has no face: the same output as
`face_recognition`, with the same numbers. Face descriptors are cached, so a second run is fast.
Unreadable files are reported on stderr and skipped."""

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def add_arguments(parser) -> None:
    parser.add_argument("known_people_folder", metavar="KNOWN_DIR", nargs="?",
                        help="folder of images of known people, one person per image")
    parser.add_argument("image_to_check", metavar="UNKNOWN", nargs="?", help="image or folder to check")
    parser.add_argument("--tolerance", type=float, default=0.6,
                        help="largest distance that counts as a match (default 0.6; lower is stricter)")
    parser.add_argument("--show-distance", nargs="?", const=True, default=False, metavar="BOOL",
                        help="also print the face distance (a bare flag, or true/false as face_recognition takes)")
    parser.add_argument("--detector", choices=("hog", "cnn"), default="hog",
                        help="dlib face detector: hog (default, fast) or cnn (slower, finds turned faces)")
    parser.add_argument("--upsample", type=int, default=1, help="times to upsample before detection (default 1)")
    parser.add_argument("--jitters", type=int, default=1, help="re-samples per face descriptor (default 1)")
    parser.add_argument("--cpus", type=int, default=1, help="processes to use; -1 means all cores (default 1)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")


def _resolve(args):
    from amari.errors import UsageError

    positionals = [p for p in (args.known_people_folder, args.image_to_check) if p is not None]
    show = args.show_distance
    if isinstance(show, str):
        word = show.lower()
        if word in _TRUE or word in _FALSE:
            show = word in _TRUE
        else:  # `--show-distance KNOWN UNKNOWN`: the flag took a path
            positionals.insert(0, show)
            show = True
    if len(positionals) != 2:
        raise UsageError("expected KNOWN_DIR and UNKNOWN (an image or a folder)")
    return positionals[0], positionals[1], bool(show)


def run(args) -> int:
    from amari import compare

    known, unknown, show = _resolve(args)
    config = compare.CompareConfig(tolerance=args.tolerance, show_distance=show, detector=args.detector,
                                   upsample=args.upsample, jitters=args.jitters, cpus=args.cpus,
                                   use_cache=not args.no_cache)
    compare.run(known, unknown, config)
    return 0
