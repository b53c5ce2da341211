"""Curation: what the user does to a workspace, seen and recorded.

References seed the group. Between batches the folders are reconciled with the database: the user
may move, rename, delete or drop files in sim-group/, almost-sim/ and unknown-person/ at any time, and
each change becomes a recorded decision. A file taken out of the group never comes back by itself; a
file dropped into it joins (or, without a face, goes to unknown-person/); a deleted file is remembered
so that the same content is never mined again.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from amari.errors import ImageError, UsageError
from amari.faces import descriptors as face_lib
from amari.faces.embeddings import FaceEncoder
from amari.mine.records import Commit, Decision, ImageRow, NewImage, Relocation
from amari.mine.workspace import DELETED, Workspace, file_identity
from amari.storage.layout import SIM_GROUP, UNKNOWN_PERSON, IdentityFolders, is_group_folder


def seed_references(workspace: Workspace, encoder: FaceEncoder, references: tuple[Path, ...]) -> None:
    """Copy reference images into the group, once per content; a bad reference stops before any copy."""
    change = Commit(batch=workspace.state().batch)
    seen: set[str] = set()
    for path in map(Path, references):
        try:
            digest, size, mtime_ns = file_identity(path)
            found = encoder.faces(path)
        except ImageError as exc:
            raise UsageError(f"reference image {exc}") from None
        if not found:
            raise UsageError(f"reference image {path}: no face found")
        if digest in seen or workspace.image_by_hash(digest) is not None:
            continue  # seeded by an earlier run (or given twice): a rerun of the same command changes nothing
        seen.add(digest)
        change.new_images.append(
            NewImage(
                path,
                SIM_GROUP,
                digest,
                size,
                mtime_ns,
                len(found),
                face_lib.largest(found).descriptor,
                None,
                "reference",
                op="copy",
            )
        )
        change.decisions.append(Decision(digest, SIM_GROUP, "reference"))
    workspace.commit(change)


def reconcile(workspace: Workspace, encoder: FaceEncoder) -> list[str]:
    """Bring the database in line with what the user did to the three folders; returns what was noticed.

    Moved or renamed files are found by content. A file taken out of the group is marked so that the
    miner never puts it back; one put into the group joins it (or, without a face, goes to
    unknown-person); a deleted file is remembered so that the same content is never mined again.

    Only the folders that may have changed are listed (`amari.mine.folderwatch`): a pass over folders
    nobody touched costs a few `stat` calls, however many files they hold.
    """
    workspace.ensure_folders()  # the user may have deleted one
    looked = workspace.watch.due()
    if not looked:
        return []
    try:
        notes = _reconcile_folders(workspace, encoder, looked)
    except BaseException:
        workspace.watch.forget()  # the database may not hold what the listing found: list again next time
        raise
    return notes


def _reconcile_folders(workspace: Workspace, encoder: FaceEncoder, looked: dict[str, os.stat_result]) -> list[str]:
    rows = workspace.known_files(*looked)
    by_place = {(r["folder"], r["name"]): r for r in rows}
    claimed: set[int] = set()
    unmatched: list[tuple[str, Path]] = []
    for folder in looked:
        for name, stat in sorted(workspace.file_stats(folder).items()):
            row = by_place.get((folder, name))
            if row is not None and (row["size"], row["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
                claimed.add(row["id"])
            elif (folder, name, stat.st_size, stat.st_mtime_ns) not in workspace.ignored_copies:
                unmatched.append((folder, workspace.root / folder / name))
    if not unmatched and len(claimed) == len(rows):
        workspace.watch.listed(looked)
        return []

    places: dict[str, list[tuple[str, Path, int, int]]] = {}
    for folder, path in unmatched:
        try:
            digest, size, mtime_ns = file_identity(path)
        except ImageError:
            continue
        places.setdefault(digest, []).append((folder, path, size, mtime_ns))

    unclaimed = [workspace.image_by_hash(r["content_hash"]) for r in rows if r["id"] not in claimed]
    unclaimed += _moved_from_unlisted(workspace, looked, places)
    change, notes = Commit(batch=workspace.batch_number()), []
    for row in unclaimed:
        _follow_user(workspace, change, notes, row, places.pop(row.content_hash, None))
    for digest, found in places.items():
        _adopt_user_file(workspace, encoder, change, notes, digest, found)
        for folder, path, size, mtime_ns in found[1:]:
            workspace.ignored_copies.add((folder, path.name, size, mtime_ns))
            notes.append(f"{folder}/{path.name} is a copy of {found[0][0]}/{found[0][1].name}; the copy is ignored")
    workspace.watch.listed(looked)  # before the commit, so that its own moves leave the folders known
    workspace.commit(change)
    return notes


def _moved_from_unlisted(workspace: Workspace, looked: dict, places: dict) -> list[ImageRow]:
    """Images placed in folders not listed now whose content turned up in a listed one and whose file is
    gone: moved. A move out of a folder changes that folder's time, so this matters only when the change
    hid in the instant of one of the miner's own moves into that folder."""
    rows = [workspace.image_by_hash(digest) for digest in places]
    return [
        row
        for row in rows
        if row is not None
        and row.folder in workspace.folders
        and row.folder not in looked
        and not os.path.lexists(workspace.root / row.folder / row.name)
    ]


def _follow_user(workspace: Workspace, change: Commit, notes: list[str], row: ImageRow, found) -> None:
    """A known image is not where the database put it: moved, renamed, touched or deleted."""
    if not found:
        change.user_changes.append(
            (row.id, {"folder": DELETED, "user_removed": int(row.user_removed or is_group_folder(row.folder))})
        )
        change.decisions.append(Decision(row.content_hash, DELETED, f"deleted by the user from {row.folder}/"))
        return
    folder, path, size, mtime_ns = found[0]
    for other_folder, other, other_size, other_mtime in found[1:]:
        workspace.ignored_copies.add((other_folder, other.name, other_size, other_mtime))
        notes.append(f"{other_folder}/{other.name} is a copy of {folder}/{path.name}; the copy is ignored")
    removed = row.user_removed
    if folder != row.folder:
        removed = not is_group_folder(folder) and (row.user_removed or is_group_folder(row.folder))
    change.user_changes.append(
        (
            row.id,
            {"folder": folder, "name": path.name, "size": size, "mtime_ns": mtime_ns, "user_removed": int(removed)},
        )
    )
    if folder != row.folder:
        change.decisions.append(Decision(row.content_hash, folder, f"moved by the user from {row.folder}/"))
        if is_group_folder(folder) and row.descriptor is None:
            change.relocations.append(Relocation(row.id, UNKNOWN_PERSON))
            change.decisions.append(Decision(row.content_hash, UNKNOWN_PERSON, "no face found"))
            notes.append(f"{path.name}: no face found, so it cannot join the group")


def _adopt_user_file(
    workspace: Workspace, encoder: FaceEncoder, change: Commit, notes: list[str], digest: str, found
) -> None:
    """A file the database does not place: new to the workspace, or restored after a deletion."""
    folder, path, size, mtime_ns = found[0]
    known = workspace.image_by_hash(digest)
    if known is not None and known.folder != DELETED:
        workspace.ignored_copies.add((folder, path.name, size, mtime_ns))
        notes.append(f"{folder}/{path.name} is a copy of {known.relpath}; the copy is ignored")
        return
    if known is not None:
        change.user_changes.append(
            (
                known.id,
                {
                    "folder": folder,
                    "name": path.name,
                    "size": size,
                    "mtime_ns": mtime_ns,
                    "user_removed": int(not is_group_folder(folder) and known.user_removed),
                },
            )
        )
        change.decisions.append(Decision(digest, folder, "restored by the user"))
        if is_group_folder(folder) and known.descriptor is None:
            change.relocations.append(Relocation(known.id, UNKNOWN_PERSON))
            change.decisions.append(Decision(digest, UNKNOWN_PERSON, "no face found"))
        return
    try:
        faces = encoder.faces(path)
        face, error = face_lib.largest(faces), None
    except ImageError as exc:
        faces, face, error = None, None, exc.reason
    target, op = folder, "none"
    if is_group_folder(folder) and face is None:
        target, op = UNKNOWN_PERSON, "move"
        notes.append(f"{path.name}: {'unreadable' if error else 'no face found'}, so it cannot join the group")
    score = _score_against_group(workspace, face, digest, target) if is_group_folder(target) else None
    change.new_images.append(
        NewImage(
            path,
            target,
            digest,
            size,
            mtime_ns,
            None if faces is None else len(faces),
            None if face is None else face.descriptor,
            error,
            "user",
            op=op,
        )
    )
    change.decisions.append(
        Decision(digest, target, f"added by the user to {folder}/", score, _bound_of(workspace, folder))
    )


def _bound_of(workspace: Workspace, folder: str) -> float | None:
    """The upper bound in force for the identity a folder belongs to (None: no identity's folder)."""
    if not workspace.many:
        return workspace.state().hi
    identity = IdentityFolders.of(folder)
    live = {i.number: i.state.hi for i in workspace.identities().live()}
    return live.get(identity.number) if identity is not None else None


def _score_against_group(workspace: Workspace, face, digest: str, folder: str) -> float | None:
    group = [r.descriptor for r in workspace.images(folder) if r.descriptor is not None and r.content_hash != digest]
    if face is None or not group:
        return None
    score = face_lib.sim_score(face.descriptor, np.array(group))
    return score if math.isfinite(score) else None
