"""The live panel's numbers: what the miner publishes, what its database holds, what the folders hold.

A running miner replaces WORKSPACE/progress.json at each step (its rates, queues and last event); its
database has the state, the batches and every decision; the folders have the images. Nothing here
asks the miner for anything or slows it: the server looks at files, at most once per poll, and
computes a record only when one of them changed.
"""

from __future__ import annotations

import hashlib
import os

from amari.serve.gallery import Galleries, image_names, trash_folders
from amari.storage import status
from amari.storage.layout import SIM_GROUP, WorkspaceLayout

RECENT = 12  # decisions the panel lists


class Live:
    def __init__(self, layout: WorkspaceLayout, galleries: Galleries):
        self.layout, self.galleries = layout, galleries

    def signature(self) -> tuple:
        """Changes when anything the panel shows may have changed."""
        try:
            info = os.stat(self.layout.progress)
            published = (info.st_size, info.st_mtime_ns)
        except OSError:
            published = None
        return (published, self.galleries.version())

    def record(self) -> dict:
        """Everything the panel shows, as plain JSON values, with `lines`: the same, as the page words it."""
        published = status.read(self.layout.progress) or {}
        running = status.alive(published)
        view = self.galleries.view
        state = view.state()
        counts = {folder: len(image_names(self.layout.root / folder)) for folder in self.galleries.folders}
        trash = sum(len(image_names(self.layout.root / folder)) for folder in trash_folders(self.layout))
        recent = [
            {
                "name": v.name,
                "folder": v.folder,
                "verdict": v.verdict,
                "reason": v.reason,
                "score": v.score,
                "batch": v.batch,
            }
            for v in view.recent(RECENT)
        ]
        record = {
            "running": running,
            "pid": published.get("pid") if running else None,
            "event": published.get("event"),
            "source": published.get("source"),
            "batch": state.batch,
            "avg": state.avg,
            "hi": state.hi,
            "target": published.get("target") or None,
            "folders": counts,
            "trash": trash,
            "judged": published.get("judged", 0),
            "joined": published.get("joined", 0),
            "acceptance": published.get("acceptance"),
            "generated_per_s": published.get("generated_per_s"),
            "judged_per_s": published.get("judged_per_s"),
            "queued": published.get("queued"),
            "ready": published.get("ready"),
            "working": published.get("working"),
            "generator_wait": published.get("generator_wait"),
            "updated": published.get("updated"),
            "recent": recent,
            "version": hashlib.sha256(repr(self.galleries.version()).encode()).hexdigest()[:16],
        }
        record["lines"] = _lines(record, published)
        return record


def _lines(record: dict, published: dict) -> dict[str, str]:
    """The panel's words, made once here for the page and its updates alike."""
    if record["running"]:
        miner = f"running (pid {record['pid']}): {record['event'] or 'starting'}"
    elif published:
        miner = f"not running; the last run ended: {published.get('event') or 'unknown'}"
    elif record["batch"]:
        miner = "not running"
    else:
        miner = "no miner has run here yet"
    counts = record["folders"]
    group = f"{counts.get(SIM_GROUP, 0)} images, average {record['avg']:.4f}, bound {record['hi']:.4f}"
    if record["target"]:
        group += f", target {record['target']}"
    others = ", ".join(f"{folder} {n}" for folder, n in counts.items() if folder != SIM_GROUP)
    lines = {
        "miner": miner,
        "batch": str(record["batch"]),
        "group": group,
        "folders": f"{others}, trash {record['trash']}",
        "accepted": "—",
        "rates": "—",
        "queues": "—",
    }
    if record["running"] and record["judged"]:
        lines["accepted"] = f"{record['acceptance']:.0%} of {record['judged']} judged in this run"
    if record["running"] and record["generated_per_s"] is not None:
        lines["rates"] = f"{record['generated_per_s']:.2f} generated/s, {record['judged_per_s']:.2f} judged/s"
        lines["queues"] = (
            f"queued {record['queued']} (ready {record['ready']}), under way {record['working']}, "
            f"generator waited {record['generator_wait']:.0%}"
        )
    return lines
