"""`amari select`: training groups of chosen sizes from a miner workspace's sim-group.

Every member of `WORKSPACE/sim-group/` gets the miner's group-analysis score: the mean distance of its
largest face to every member's largest face, itself included. A group is then either the best scores
first (`by="score"`, the study's choice) or a diverse pick (`by="diverse"`): among the members whose
score stays within the tolerance, a farthest-point walk over head pose (from dlib's 68 landmarks) and
image content (a small colour thumbnail), starting from the best-scored member, so a small group
covers several poses and settings instead of many near-copies of one picture.

Each group becomes `OUT/<name>/`: copies of its images (file names kept) and `manifest.csv`, a folder
`amari train` takes as it is.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from amari.errors import UsageError, WorkspaceError
from amari.faces import descriptors as face_lib
from amari.faces.descriptors import Face, FaceSettings
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.faces.group import FaceGroup
from amari.select.config import GroupSpec, SelectConfig
from amari.storage.images import image_files, load_rgb, shrink_to
from amari.storage.layout import FOLDER_MANIFEST, JUDGED_FOLDERS, SelectLayout

MANIFEST = FOLDER_MANIFEST

_THUMBNAIL_SIDE = 12  # coarse enough to see layout and colour, blind to the face's details


@dataclass(frozen=True)
class Member:
    path: Path
    face: Face
    score: float


@dataclass(frozen=True)
class Pick:
    member: Member
    yaw: float | None = None  # degrees, diverse picks only


@dataclass
class SelectResult:
    members: list[Member]
    groups: dict[str, list[Pick]] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why): unreadable, no face


# -- scores -----------------------------------------------------------------------------------------


def group_scores(descriptors: np.ndarray) -> np.ndarray:
    """Each member's mean distance to every member, itself included (distance 0)."""
    return face_lib.distance_matrix(descriptors).mean(axis=1)


def score_members(
    paths: list[Path], encoder: FaceEncoder, cpus: int = 1, on_progress: Callable[[Path], None] | None = None
) -> tuple[list[Member], list[tuple[Path, str]]]:
    """Members (largest face, score) of the images that have a face; the rest as (path, why)."""
    group = FaceGroup.load(paths, encoder, cpus=cpus, on_progress=on_progress)
    if not group:
        return [], group.skipped
    scores = group.self_scores()
    return [Member(m.path, m.face, float(s)) for m, s in zip(group.members, scores)], group.skipped


def by_score(members: list[Member]) -> list[Member]:
    """Best (lowest) score first; equal scores in file-name order, so the order is reproducible."""
    return sorted(members, key=lambda m: (m.score, m.path.name, str(m.path)))


# -- diversity --------------------------------------------------------------------------------------


def normalise_block(features: np.ndarray) -> np.ndarray:
    """Scale a feature block so its typical distance between two rows is about 1."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    centred = features - features.mean(axis=0)
    spread = np.sqrt((centred**2).sum(axis=1).mean())
    return centred / spread if spread > 1e-12 else centred


def farthest_point_order(features: np.ndarray, scores: np.ndarray, count: int) -> list[int]:
    """`count` row indices: the best score first, then each time the row farthest from those chosen.

    Ties in distance go to the better score, so the walk is deterministic.
    """
    n = len(features)
    if not 0 < count <= n:
        raise ValueError(f"cannot pick {count} of {n}")
    features = np.asarray(features, dtype=np.float64).reshape(n, -1)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(n), scores))  # rank by score, then index
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    chosen = [int(order[0])]
    nearest = np.linalg.norm(features - features[chosen[0]], axis=1)
    for _ in range(count - 1):
        candidates = np.where(np.isin(np.arange(n), chosen), -np.inf, nearest)
        best = candidates.max()
        pick = int(min(np.flatnonzero(candidates == best), key=lambda i: rank[i]))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[pick], axis=1))
    return chosen


def member_view(member: Member, settings: FaceSettings) -> tuple[float, float, np.ndarray]:
    """(yaw, pitch, thumbnail) of a member: its pose from 68 landmarks and a small colour layout."""
    from amari.faces.pose import estimate_pose

    image = load_rgb(member.path)
    if settings.max_side:  # face boxes were found on the shrunk image
        image = shrink_to(image, settings.max_side)
    points = face_lib.landmarks(image, [member.face.box], points=68)[0]
    pose = estimate_pose(points)
    thumbnail = Image.fromarray(image).resize((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE), Image.Resampling.BOX)
    return pose.yaw, pose.pitch, np.asarray(thumbnail, dtype=np.float64).ravel() / 255.0


def diversity_features(poses: np.ndarray, thumbnails: np.ndarray, pose_weight: float) -> np.ndarray:
    """Pose and content blocks, each normalised, weighted so `pose_weight` is pose's share."""
    return np.hstack(
        [np.sqrt(pose_weight) * normalise_block(poses), np.sqrt(1.0 - pose_weight) * normalise_block(thumbnails)]
    )


# -- writing ----------------------------------------------------------------------------------------


def output_names(picks: list[Pick]) -> list[str]:
    """The members' own file names; a name met twice (from sub-folders) gets its folder as prefix."""
    names, used = [], set()
    for pick in picks:
        name = pick.member.path.name
        if name.lower() in used:
            name = f"{pick.member.path.parent.name}__{name}"
        while name.lower() in used:
            name = f"_{name}"
        used.add(name.lower())
        names.append(name)
    return names


def write_group(out: Path, name: str, picks: list[Pick], workspace: Path, force: bool) -> Path:
    """Copy the picks and their manifest into `out/name`, built aside and moved into place at once."""
    final = out / name
    staging = out / f".{name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    with_yaw = any(p.yaw is not None for p in picks)
    rows = []
    for pick, file_name in zip(picks, output_names(picks)):
        shutil.copy2(pick.member.path, staging / file_name)
        row = [file_name, _relative(pick.member.path, workspace), f"{pick.member.score:.6f}"]
        rows.append(row + ([f"{pick.yaw:.2f}"] if with_yaw else []))
    with open(staging / MANIFEST, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "source", "score"] + (["yaw"] if with_yaw else []))
        writer.writerows(rows)
    if final.exists():
        if not force:  # checked up front too; this guards a folder that appeared meanwhile
            raise UsageError(f"{final} already exists; use --force to replace it")
        old = out / f".{name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old)
    else:
        os.replace(staging, final)
    return final


def _relative(path: Path, workspace: Path) -> str:
    try:
        return path.resolve().relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- the stage --------------------------------------------------------------------------------------


def check_paths(layout: SelectLayout, config: SelectConfig) -> Path:
    """The sim-group folder, once the workspace and output are known to be usable."""
    workspace, out = layout.workspace.root, layout.out
    sim_group = layout.workspace.sim_group
    if not sim_group.is_dir():
        inner = sim_group.relative_to(workspace).as_posix()
        raise WorkspaceError(f"{workspace} has no {inner}/ folder: is it a miner workspace?")
    out_real = out.resolve()
    identity = () if layout.workspace.identity is None else (sim_group.parent.name,)
    for folder in JUDGED_FOLDERS + identity:
        inner = (workspace / folder).resolve()
        if out_real == inner or inner in out_real.parents:
            raise UsageError(f"--out {out} is inside the workspace's {folder}/ folder; choose another folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    for spec in config.groups:
        target = out / spec.name
        if target.exists() and (not target.is_dir() or any(target.iterdir())) and not config.force:
            raise UsageError(f"{target} already exists; use --force to replace it")
    return sim_group


def check_counts(groups: tuple[GroupSpec, ...], available: int, label: str) -> None:
    for spec in groups:
        if spec.count is not None and spec.count > available:
            raise UsageError(f"group {spec.name} asks for {spec.count} images but only {available} {label}")


def pick_groups(
    members: list[Member], config: SelectConfig, views: dict[Path, tuple[float, float, np.ndarray]] | None
) -> dict[str, list[Pick]]:
    """Group name → picks. `all` is every member, best score first, in either mode.

    Both walks are greedy, so a smaller group is always the start of a larger one.
    """
    ranked = by_score(members)
    longest = max((g.count for g in config.groups if g.count is not None), default=0)
    walk = ranked
    if views is not None and longest:
        pool = [m for m in ranked if m.score <= config.tolerance]
        features = diversity_features(
            np.array([views[m.path][:2] for m in pool]), np.array([views[m.path][2] for m in pool]), config.pose_weight
        )
        walk = [pool[i] for i in farthest_point_order(features, np.array([m.score for m in pool]), longest)]
    groups = {}
    for spec in config.groups:
        if spec.count is None:
            chosen = ranked
        else:
            chosen = walk[: spec.count]
        groups[spec.name] = [Pick(m, views[m.path][0] if views is not None else None) for m in chosen]
    return groups


def run(
    config: SelectConfig,
    layout: SelectLayout,
    encoder: FaceEncoder | None = None,
    on_progress: Callable[[str, Path], None] | None = None,
) -> SelectResult:
    """Score the sim-group, pick every group, and write them under `layout.out`."""
    progress = on_progress or (lambda _step, _path: None)
    # 1. Check everything that needs no face before any slow work or any writing.
    sim_group = check_paths(layout, config)
    paths = image_files(sim_group)
    if not paths:
        raise WorkspaceError(f"{sim_group} holds no images")
    check_counts(config.groups, len(paths), f"images are in {sim_group}")
    # 2. Score the members as the miner's group analysis does.
    encoder = encoder or FaceEncoder(config.faces, EmbeddingCache())
    members, skipped = score_members(paths, encoder, config.cpus, lambda p: progress("faces", p))
    result = SelectResult(members=members, skipped=skipped)
    if not members:
        raise WorkspaceError(f"no image in {sim_group} has a face that can be scored")
    check_counts(config.groups, len(members), "sim-group members have a face")
    # 3. Diverse picks need each candidate's pose and look.
    views = None
    if config.by == "diverse":
        pool = [m for m in members if m.score <= config.tolerance]
        check_counts(config.groups, len(pool), f"members have a sim-score within the tolerance {config.tolerance:.2f}")
        needs_view = members if any(g.count is None for g in config.groups) else pool
        views = {}
        for member in needs_view:
            views[member.path] = member_view(member, config.faces)
            progress("pose", member.path)
    # 4. Pick, then write each group folder whole.
    result.groups = pick_groups(members, config, views)
    layout.out.mkdir(parents=True, exist_ok=True)
    for name, picks in result.groups.items():
        write_group(layout.out, name, picks, layout.workspace.root, config.force)
    return result
