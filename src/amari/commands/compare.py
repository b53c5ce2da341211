"""amari compare KNOWN_DIR UNKNOWN: face_recognition-compatible comparison."""

from __future__ import annotations

HELP = "compare faces with known people, as the face_recognition command-line tool does"
DESCRIPTION = """\
Compare every face in UNKNOWN (an image or a folder) with the known people in KNOWN_DIR (one image per
person, named by file stem). Prints one line per match, `path,name[,distance]`, `path,unknown_person`
when a face matches nobody, and `path,no_persons_found` when an image has no face: the same output as
`face_recognition`, with the same numbers (a name holding a comma or a line break is quoted as CSV
does). Face descriptors are cached, so a second run is fast. Unreadable files are reported on stderr
and skipped."""

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def add_arguments(parser) -> None:
    from amari.compare import CompareConfig
    from amari.config.options import add_options

    parser.add_argument(
        "known_people_folder",
        metavar="KNOWN_DIR",
        nargs="?",
        help="folder of images of known people, one person per image",
    )
    parser.add_argument("image_to_check", metavar="UNKNOWN", nargs="?", help="image or folder to check")
    add_options(parser, CompareConfig)


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
    from amari.config.options import from_args

    known, unknown, show = _resolve(args)
    compare.run(from_args(compare.CompareConfig, args, show_distance=show), known, unknown)
    return 0
