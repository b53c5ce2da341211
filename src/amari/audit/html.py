"""The audit's page: each match side by side, the identities' nearest gallery faces, the pairs.

Nothing is copied into the page: a member's image and a gallery photo are linked by paths relative to
the page (the gallery face is cut out of its photo by the browser), so the page shows them while the
workspace and the gallery stay where they were, and holds no picture of a real person itself.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import quote

from amari.audit.config import AuditConfig

THUMB = 128

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.notice { background: #fff4d6; border: 1px solid #e0c060; padding: 0.6em 1em; }
.flagged { background: #fde2e2; border: 1px solid #c33; padding: 0.6em 1em; }
table { border-collapse: collapse; margin: 0.8em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: middle; }
td.flag { color: #a00; font-weight: bold; } td.warn { color: #a60; }
.face { width: 128px; height: 128px; background-repeat: no-repeat; background-color: #eee; }
img.member { width: 128px; height: 128px; object-fit: cover; }
"""

_NOTICE = (
    "A flag means a gallery face is within dlib's same-person threshold of an identity: treat the identity "
    "as a real person's face and do not publish it. A clean audit only says that no face of this gallery "
    "is that near: people outside the gallery, and faces the detector did not find, were not checked."
)


def _link(path: Path, page_folder: Path) -> str:
    return quote(Path(os.path.relpath(Path(path).resolve(), page_folder.resolve())).as_posix())


def _member_cell(path: Path | None, page_folder: Path) -> str:
    if path is None:
        return "<td>centroid</td>"
    return f'<td><img class="member" src="{_link(path, page_folder)}" alt="{html.escape(path.name)}"></td>'


def _gallery_cell(result, face: int, page_folder: Path) -> str:
    """The gallery face cut out of its photo by CSS, or its name when the gallery folder is not known."""
    gallery = result.gallery
    name = gallery.names[face]
    if gallery.root is None:
        return f"<td>{html.escape(name)}</td>"
    top, right, bottom, left = (int(v) for v in gallery.boxes[face])
    width, height = (int(v) for v in gallery.sizes[face])
    side = max(right - left, bottom - top, 1) * 1.6
    scale = THUMB / side
    x = (left + right) / 2 * scale - THUMB / 2
    y = (top + bottom) / 2 * scale - THUMB / 2
    style = (
        f"background-image:url('{_link(gallery.root / name, page_folder)}');"
        f"background-size:{width * scale:.1f}px {height * scale:.1f}px;background-position:{-x:.1f}px {-y:.1f}px"
    )
    return f'<td><div class="face" role="img" aria-label="{html.escape(name)}" style="{style}"></div></td>'


def render_page(result, config: AuditConfig) -> str:
    page_folder = result.layout.root
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>amari audit</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>amari audit</h1>",
        f"<p>{len(result.identities)} identities against {len(result.gallery)} faces of "
        f"{result.gallery.photos or 'the'} gallery photos ({result.search} search). Flag: distance "
        f"&le; {config.threshold:g}; warning: up to {config.band:g}.</p>",
        f"<p class='notice'>{_NOTICE}</p>",
    ]
    if result.flagged:
        flagged = sorted({row.identity for row in result.flags} | {p[0] for p in result.pairs if p[3] == "flag"})
        parts.append(f"<p class='flagged'>Flagged: {html.escape(', '.join(flagged))}</p>")
    for identity in result.identities:
        rows = [row for row in result.rows if row.identity == identity.name]
        parts.append(f"<h2>{html.escape(identity.name)}</h2>")
        nearest = ", ".join(f"{html.escape(result.gallery.names[m.face])} ({m.distance:.4f})" for m in identity.nearest)
        parts.append(f"<p>{len(identity.members)} members. Nearest gallery faces to the centroid: {nearest}.</p>")
        if not rows:
            parts.append("<p>No gallery face within the warning band.</p>")
            continue
        parts.append("<table><tr><th>member</th><th>gallery</th><th>names</th><th>distance</th><th>level</th></tr>")
        for row in sorted(rows, key=lambda r: (r.distance, r.member)):
            parts.append(
                "<tr>"
                + _member_cell(row.path, page_folder)
                + _gallery_cell(result, row.face, page_folder)
                + f"<td>{html.escape(row.member)}<br>{html.escape(row.gallery)}</td>"
                + f"<td>{row.distance:.4f}</td><td class='{row.level}'>{row.level}</td></tr>"
            )
        parts.append("</table>")
    if result.pairs:
        parts.append("<h2>Identities too near each other</h2><table>")
        parts.append("<tr><th>identity</th><th>other</th><th>centroid distance</th><th>level</th></tr>")
        for a, b, distance, level in result.pairs:
            parts.append(
                f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{distance:.4f}</td>"
                f"<td class='{level}'>{level}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
