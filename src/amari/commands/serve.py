"""amari serve --workspace DIR [--study DIR]: the browser workbench."""

from __future__ import annotations

HELP = "a browser workbench: watch a mining run, curate its folders, inspect a study"
DESCRIPTION = """\
Serves a local web page over a workspace (and, with --study, a study): each folder as a grid of
thumbnails sorted by sim-score, with each image's distance to the group's centroid and its nearest
members; moving an image with a click or a key (1, 2, 3 for the folders, Delete for the trash); the
miner's progress live while it runs in another process; the study's grids and report; and verify on an
image dropped onto the page.

A move is what moving the file by hand is: the miner records it as your curation at its next look. The
server never writes the miner's database. Deleted images go to WORKSPACE/trash/, which the page can
restore from and empty.

It listens on 127.0.0.1 and prints a URL with a random token, needed on every request: the token is
the only authentication. To use the workbench from another machine, keep 127.0.0.1 and open an SSH
tunnel (ssh -N -L 8765:127.0.0.1:8765 USER@HOST), then open the printed URL there. Needs the serve
extra: pip install 'amari[serve]'."""


def add_arguments(parser) -> None:
    from amari.config.options import add_options
    from amari.serve import ServeConfig

    parser.add_argument("--workspace", metavar="DIR", help="the miner's workspace (default: the study's mine/)")
    parser.add_argument("--study", metavar="DIR", help="a study folder: its grids, report and workspace")
    add_options(parser, ServeConfig)


def run(args) -> int:
    from amari import serve
    from amari.config.options import from_args
    from amari.errors import UsageError
    from amari.storage.layout import ServeLayout, StudyLayout, WorkspaceLayout

    if args.workspace is None and args.study is None:
        raise UsageError("give --workspace DIR (a miner's workspace), --study DIR, or both")
    study = StudyLayout(args.study) if args.study else None
    workspace = WorkspaceLayout(args.workspace) if args.workspace else study.workspace
    serve.run(from_args(serve.ServeConfig, args), ServeLayout(workspace, study), lambda text: print(text, flush=True))
    return 0
