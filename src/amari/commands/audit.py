"""amari audit --gallery DIR_OR_INDEX --workspace WS | --study DIR; amari audit --build-index DIR --out INDEX."""

from __future__ import annotations

HELP = "leakage audit: is any mined identity a real person of a gallery of photos?"
DESCRIPTION = """\
Finds every face of a gallery of real photos with the same face pipeline as the miner and compares
each identity of a workspace (its centroid and every member) with them. A gallery face within
--threshold (dlib's same-person threshold, 0.6) flags the identity; within --margin above it, a
warning. Identities whose centroids are nearer than --separation are flagged as not distinct.

Writes OUT/audit.csv (identity, member, gallery, distance, level: one row per match within the band),
OUT/identities.csv, OUT/summary.json and OUT/index.html (each match side by side; the page links to
the photos where they are and copies none). OUT is WS/audit/ or STUDY/audit/ unless --out says.
Exits with status 3 when a flag is raised, so a pipeline can stop on it.

A gallery of real people's photos is personal data (biometric data once its faces are described):
hold one only with the right to, see docs/identities.md. --build-index DIR --out INDEX.npz embeds a
gallery once into an index file (descriptors and names, never the photos), which --gallery takes."""


def add_arguments(parser) -> None:
    from amari.audit import AuditConfig
    from amari.config.options import add_options

    target = parser.add_mutually_exclusive_group()
    target.add_argument("--workspace", metavar="WS", help="the miner's workspace to audit")
    target.add_argument("--study", metavar="DIR", help="a study's folder: its miner's workspace is audited")
    target.add_argument("--build-index", metavar="DIR", help="embed the gallery folder DIR into an index file (--out)")
    parser.add_argument(
        "--out", metavar="PATH", help="where the audit is written (default: WS/audit), or the index file to write"
    )
    add_options(parser, AuditConfig)


def run(args) -> int:
    import sys
    from pathlib import Path

    from amari import audit
    from amari.config.options import from_args
    from amari.errors import LeakageFound, UsageError
    from amari.storage.layout import AuditLayout, StudyLayout, WorkspaceLayout

    config = from_args(audit.AuditConfig, args)
    if args.build_index:
        if not args.out:
            raise UsageError("--build-index DIR needs --out INDEX.npz")
        gallery = audit.open_gallery(Path(args.build_index), config.faces, config.cpus, config.use_cache)
        path = audit.save_index(gallery, Path(args.out), config.exact_limit, config.recall)
        print(f"{path}: {len(gallery)} faces of {gallery.photos} photos ({gallery.search.kind} search)")
        return 0
    if not (args.workspace or args.study):
        raise UsageError("give --workspace WS or --study DIR to audit (or --build-index DIR)")
    if args.study:
        study = StudyLayout(Path(args.study))
        workspace, out = study.workspace, study.audit
    else:
        workspace = WorkspaceLayout(Path(args.workspace))
        out = workspace.audit
    result = audit.run(config, workspace, AuditLayout(Path(args.out)) if args.out else out)
    print(result.summary())
    if result.flagged:
        print("amari audit: a flag was raised (see the report)", file=sys.stderr)
        return LeakageFound.exit_code
    return 0
