"""`amari audit`: are any of a workspace's identities a real person of the gallery?

1. The identities: each identity-NN/sim-group/ of a workspace of several, or its one sim-group/; each
   member's largest face (from the workspace's own descriptor cache where it has them) and the centroid.
2. The gallery: a folder of real photos embedded with the same face pipeline, or an index file.
3. For the centroid and every member, every gallery face within the threshold plus the margin: a
   `flag` at or below the threshold (dlib's same-person rule), a `warn` above it; and the nearest
   gallery faces to each centroid and member, whatever their distance.
4. Identities against each other: centroids nearer than the separation are not distinct (`flag`),
   within the margin above it a `warn`.
5. audit.csv, identities.csv, summary.json and a page with each match side by side.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amari.audit.config import AuditConfig
from amari.audit.gallery import Gallery, open_gallery
from amari.audit.search import Match
from amari.errors import UsageError, WorkspaceError
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.faces.group import FaceGroup
from amari.progress import warn
from amari.storage.files import atomic_open, write_atomic
from amari.storage.images import image_files
from amari.storage.layout import AuditLayout, WorkspaceLayout, identity_name

FLAG, WARN = "flag", "warn"
CENTROID = "centroid"
AUDIT_COLUMNS = ("identity", "member", "gallery", "distance", "level")
PAIR_COLUMNS = ("identity", "other", "distance", "level")


@dataclass
class AuditedIdentity:
    name: str  # identity-01, or sim-group for a workspace of one identity
    folder: Path
    members: list[Path]
    descriptors: np.ndarray
    centroid: np.ndarray
    nearest: list[Match] = field(default_factory=list)  # the gallery faces nearest the centroid
    member_nearest: list[Match | None] = field(default_factory=list)  # each member's nearest gallery face


@dataclass(frozen=True)
class Row:
    identity: str
    member: str  # a member's file name, or "centroid"
    gallery: str  # the face's photo, relative to the gallery folder
    distance: float
    level: str  # flag | warn
    face: int = -1  # the gallery row (for the page)
    path: Path | None = None  # the member's file (None: the centroid)


@dataclass
class AuditResult:
    identities: list[AuditedIdentity]
    rows: list[Row]
    pairs: list[tuple[str, str, float, str]]  # identity, other, distance, level
    gallery: Gallery
    layout: AuditLayout
    search: str  # exact | ivf

    @property
    def flags(self) -> list[Row]:
        return [row for row in self.rows if row.level == FLAG]

    @property
    def flagged(self) -> bool:
        return bool(self.flags) or any(level == FLAG for *_, level in self.pairs)

    def summary(self) -> str:
        flagged = sorted({row.identity for row in self.flags})
        close = [f"{a} and {b} ({d:.4f})" for a, b, d, level in self.pairs if level == FLAG]
        lines = [
            f"audited {len(self.identities)} identities against {len(self.gallery)} gallery faces "
            f"({self.search} search): {len(self.flags)} flags, {len(self.rows) - len(self.flags)} warnings"
        ]
        if flagged:
            lines.append(f"FLAGGED (a real person of the gallery): {', '.join(flagged)}")
        if close:
            lines.append(f"FLAGGED (not distinct): {'; '.join(close)}")
        lines.append(f"report: {self.layout.html}")
        return "\n".join(lines)


def run(config: AuditConfig, workspace: WorkspaceLayout, out: AuditLayout | None = None) -> AuditResult:
    """Audit every identity of a miner's workspace against the configured gallery."""
    if config.gallery is None:
        raise UsageError("the audit needs a gallery: --gallery DIR_OR_INDEX")
    out = out or workspace.audit
    # 1. The identities, before the gallery: a wrong workspace fails before minutes of embedding.
    identities = load_identities(workspace, config)
    # 2. The gallery and its search.
    gallery = open_gallery(config.gallery, config.faces, config.cpus, config.use_cache)
    search = gallery.searcher(config.exact_limit, config.recall)
    # 3. Each identity's matches within the band, and its nearest gallery faces.
    rows: list[Row] = []
    for identity in identities:
        queries = np.vstack([identity.centroid[None], identity.descriptors])
        labels = [CENTROID] + [path.name for path in identity.members]
        within, nearest = search.query(queries, config.band, config.nearest)
        for match in within:
            level = FLAG if match.distance <= config.threshold else WARN
            path = None if match.query == 0 else identity.members[match.query - 1]
            name = gallery.names[match.face]
            rows.append(Row(identity.name, labels[match.query], name, match.distance, level, match.face, path))
        identity.nearest = nearest[0]
        identity.member_nearest = [found[0] if found else None for found in nearest[1:]]
    # 4. Identities against each other.
    pairs = identity_pairs(identities, config)
    # 5. The files.
    result = AuditResult(identities, rows, pairs, gallery, out, search.kind)
    write_outputs(result, config)
    return result


def load_identities(workspace: WorkspaceLayout, config: AuditConfig) -> list[AuditedIdentity]:
    """Each identity folder's members and centroid (their largest faces)."""
    root = workspace.root
    if not root.is_dir():
        raise WorkspaceError(f"workspace not found: {root}")
    numbers = workspace.identities()
    folders = [(identity_name(n), workspace.identity_folders(n)[0]) for n in numbers]
    if not folders and workspace.sim_group.is_dir():
        folders = [(workspace.sim_group.name, workspace.sim_group)]
    if not folders:
        raise WorkspaceError(f"{root} holds no identity: is it a miner workspace?")
    encoder = FaceEncoder(config.faces, _MemberCache(workspace.database))
    identities = []
    for name, folder in folders:
        paths = image_files(folder) if folder.is_dir() else []
        group = FaceGroup.load(paths, encoder, cpus=config.cpus)
        if not group:
            warn(f"{name} has no member with a face: not audited")
            continue
        descriptors = group.descriptors
        identities.append(AuditedIdentity(name, folder, group.paths, descriptors, descriptors.mean(axis=0)))
    if not identities:
        raise WorkspaceError(f"no identity of {root} has a member with a face")
    return identities


def identity_pairs(identities: list[AuditedIdentity], config: AuditConfig) -> list[tuple[str, str, float, str]]:
    pairs = []
    for i, first in enumerate(identities):
        for second in identities[i + 1 :]:
            distance = float(np.linalg.norm(first.centroid - second.centroid))
            if distance < config.separation:
                pairs.append((first.name, second.name, distance, FLAG))
            elif distance < config.separation + config.margin:
                pairs.append((first.name, second.name, distance, WARN))
    return pairs


class _MemberCache:
    """Members' faces from the workspace's own descriptor cache (read only) where it has them, else
    from amari's cache folder: the miner already ran dlib on every image it judged."""

    def __init__(self, database: Path):
        self.workspace = None
        if database.is_file():
            try:
                connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)
                self.workspace = EmbeddingCache(connection=connection)
            except sqlite3.Error:
                self.workspace = None  # an older or damaged database: dlib runs again, nothing is lost
        self.shared = EmbeddingCache()

    def get(self, digest: str, settings_key: str):
        found = self.workspace.get(digest, settings_key) if self.workspace is not None else None
        return found if found is not None else self.shared.get(digest, settings_key)

    def put(self, digest: str, settings_key: str, faces, size) -> None:
        self.shared.put(digest, settings_key, faces, size)


def write_outputs(result: AuditResult, config: AuditConfig) -> None:
    from amari.audit.html import render_page

    out = result.layout
    out.root.mkdir(parents=True, exist_ok=True)
    with atomic_open(out.csv, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(AUDIT_COLUMNS)
        for row in sorted(result.rows, key=lambda r: (r.identity, r.distance, r.member, r.gallery)):
            writer.writerow([row.identity, row.member, row.gallery, f"{row.distance:.6f}", row.level])
    with atomic_open(out.identities_csv, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PAIR_COLUMNS)
        writer.writerows([a, b, f"{d:.6f}", level] for a, b, d, level in result.pairs)
    write_atomic(out.summary, json.dumps(summary_json(result, config), indent=2) + "\n")
    write_atomic(out.html, render_page(result, config))


def summary_json(result: AuditResult, config: AuditConfig) -> dict:
    names = result.gallery.names
    return {
        "flagged": result.flagged,
        "gallery_faces": len(result.gallery),
        "gallery_photos": result.gallery.photos,
        "search": result.search,
        "threshold": config.threshold,
        "margin": config.margin,
        "separation": config.separation,
        "identities": [
            {
                "identity": identity.name,
                "members": len(identity.members),
                "flags": sum(r.level == FLAG for r in result.rows if r.identity == identity.name),
                "warnings": sum(r.level == WARN for r in result.rows if r.identity == identity.name),
                "nearest": [{"gallery": names[m.face], "distance": round(m.distance, 6)} for m in identity.nearest],
            }
            for identity in result.identities
        ],
        "pairs": [{"identity": a, "other": b, "distance": round(d, 6), "level": lv} for a, b, d, lv in result.pairs],
    }


def read_summary(folder: Path) -> dict | None:
    """An audit folder's summary.json (for the study's report); None when there is none."""
    try:
        return json.loads((AuditLayout(Path(folder)).summary).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_rows(folder: Path) -> list[dict[str, str]]:
    """An audit folder's audit.csv rows, as written."""
    try:
        with open(AuditLayout(Path(folder)).csv, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []
