"""`amari select`'s settings: which training groups, picked how (light: no numpy)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from amari.config.settings import Settings, check_cpus, convert, setting
from amari.errors import UsageError
from amari.faces.settings import FaceSettings

SELECT_MODES = ("score", "diverse")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a folder name on every file system


@dataclass(frozen=True)
class GroupSpec:
    name: str
    images: int | None = None  # None: every member

    @property
    def count(self) -> int | None:
        return self.images


STUDY_GROUPS = (GroupSpec("a_312"), GroupSpec("b_11", 11), GroupSpec("c_4", 4))


def parse_groups(text: str) -> tuple[GroupSpec, ...]:
    """`a_312=all,b_11=11,c_4=4` → group specs; names become folder names, so they are checked."""
    specs, seen = [], set()
    for part in (p.strip() for p in text.split(",")):
        name, sep, count_text = part.partition("=")
        name, count_text = name.strip(), count_text.strip().lower()
        if not sep or not name or not count_text:
            raise UsageError(f"group {part!r} is not NAME=COUNT or NAME=all (e.g. a_312=all,b_11=11)")
        if not NAME.match(name):
            raise UsageError(f"group name {name!r} must be letters, digits, '_', '-' or '.' (a folder name)")
        if name.lower() in seen:
            raise UsageError(f"group {name!r} is named twice")
        seen.add(name.lower())
        if count_text == "all":
            count = None
        elif count_text.isdigit() and int(count_text) > 0:
            count = int(count_text)
        else:
            raise UsageError(f"group {name!r}: count must be a positive whole number or 'all', not {count_text!r}")
        specs.append(GroupSpec(name, count))
    return tuple(specs)


def groups_table(value, where: str, base: Path) -> tuple[GroupSpec, ...]:
    """[[select.groups]] tables: name, and images (a number, or "all")."""
    if not isinstance(value, list):
        raise UsageError(f"{where} must be a list of tables ([[select.groups]] with name and images)")
    groups = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise UsageError(f"{where}[{i}] must be a table with name and images")
        item = dict(item)
        if item.get("images") == "all":
            item.pop("images")
        elif item.get("images") is not None and (
            isinstance(item["images"], bool) or not isinstance(item["images"], int)
        ):
            raise UsageError(f'{where}[{i}].images must be a whole number or "all", not {item["images"]!r}')
        unknown = sorted(set(item) - {"name", "images"})
        if unknown or "name" not in item:
            raise UsageError(
                f"{where}[{i}] must be a table with name and images"
                + (f" (unknown key(s) {', '.join(unknown)})" if unknown else "")
            )
        groups.append(GroupSpec(convert(item["name"], str, f"{where}[{i}].name", base), item.get("images")))
    return tuple(groups)


@dataclass(frozen=True)
class SelectConfig(Settings):
    groups: tuple[GroupSpec, ...] = setting(
        STUDY_GROUPS,
        "groups to write, e.g. a_312=all,b_11=11,c_4=4 (COUNT: a number or 'all')",
        metavar="NAME=COUNT,...",
        cli_type=parse_groups,
        toml_type=groups_table,
    )
    by: str = setting(
        "score", "score: best sim-scores first; diverse: spread over head pose and content", choices=SELECT_MODES
    )
    tolerance: float = setting(0.40, "--by diverse picks only members with a sim-score at most this", study=True)
    pose_weight: float = setting(0.5, "share of head pose (vs image content) in the diversity distance")
    cpus: int = setting(1, "processes for face detection; -1 means all cores", runtime=True)
    force: bool = setting(False, "replace group folders that already exist", toml=False)
    faces: FaceSettings = setting(FaceSettings(), "how faces are found", cli=False)

    def check(self):
        if not self.groups:
            raise UsageError("no training groups: give --groups NAME=COUNT,... ([[select.groups]] tables in a study)")
        names = [g.name for g in self.groups]
        for group in self.groups:
            if not NAME.match(group.name):
                raise UsageError(f"group name {group.name!r} must be letters, digits, '_', '-' or '.'")
            if group.images is not None and group.images <= 0:
                raise UsageError(f"group {group.name}: images must be positive, not {group.images}")
        if len({n.lower() for n in names}) != len(names):
            raise UsageError("two groups have the same name")
        if self.by not in SELECT_MODES:
            raise UsageError(f"unknown selection {self.by!r}: use one of {', '.join(SELECT_MODES)}")
        if not 0 < self.tolerance <= 2:
            raise UsageError(f"tolerance must be in (0, 2], not {self.tolerance}")
        if not 0 <= self.pose_weight <= 1:
            raise UsageError(f"pose weight must be in [0, 1], not {self.pose_weight}")
        check_cpus(self.cpus)
