"""Every family amari knows, and which one a model is: the weights decide, never the model's name.

    family = detect("stabilityai/stable-diffusion-xl-base-1.0")   # SDXL, from its configs
    family = detect("flux1-dev.safetensors")                        # FLUX.1 [dev], from its keys

`detect` raises `ModelError` for a model it cannot read or does not know; `family_of` returns None for a
hub id that cannot be read yet (offline and not in the cache), where callers use the default family and
loading later says what is missing. Detection reads only JSON files and safetensors headers, once per
model and process.
"""

from __future__ import annotations

from pathlib import Path

from amari.models.families.base import Family, refuse
from amari.models.families.flux import FLUX_DEV, FLUX_SCHNELL
from amari.models.families.sd1 import SD1
from amari.models.families.sd2 import SD2
from amari.models.families.sdxl import SDXL

FAMILIES: tuple[Family, ...] = (SD1, SD2, SDXL, FLUX_SCHNELL, FLUX_DEV)
DEFAULT = SD1  # the 2022 study's
_EVIDENCE: dict[tuple, object] = {}


def by_name(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(name)


def identify(evidence, what: str) -> Family:
    """The one family whose rules the evidence satisfies."""
    found = [family for family in FAMILIES if family.matches(evidence)]
    if len(found) != 1:
        raise refuse(what, evidence)
    return found[0]


def _key(kind: str, location: str) -> tuple:
    if kind == "hub":
        return (kind, location)
    path = Path(location)
    stamp = path / "model_index.json" if kind == "folder" else path
    try:
        return (kind, location, stamp.stat().st_mtime_ns)
    except OSError:
        return (kind, location, None)


def evidence_of(spec: str):
    """What the model's files say (`amari.models.families.evidence`), read once per model and process;
    None for a hub id that cannot be read yet."""
    from amari.models.diffusion import model_source
    from amari.models.families import evidence as read

    kind, location = model_source(spec)
    key = _key(kind, location)
    if key not in _EVIDENCE:
        if kind == "hub":
            _EVIDENCE[key] = read.hub_evidence(location)
        elif kind == "folder":
            _EVIDENCE[key] = read.folder_evidence(location)
        else:
            _EVIDENCE[key] = read.file_evidence(location)
    return _EVIDENCE[key]


def family_of(spec: str) -> Family | None:
    """The family of a hub id, diffusers folder or checkpoint file; None when a hub id cannot be read yet."""
    evidence = evidence_of(spec)
    return None if evidence is None else identify(evidence, Path(spec).name)


def known(spec: str) -> Family | None:
    """The family when the model can be read now, else None: for checks that must not guess."""
    from amari.errors import ModelError

    try:
        return family_of(spec)
    except ModelError:
        return None


def guess(spec: str) -> Family:
    """The family, for defaults chosen before a model loads: the default family when the model cannot be
    read (yet), since loading it will then say why."""
    return known(spec) or DEFAULT


def detect(spec: str) -> Family:
    """The family of a model, or the default family when a hub id cannot be read yet."""
    return family_of(spec) or DEFAULT


def native_size(spec: str) -> int:
    """The model's native image side, read from its configs (the family's default when they cannot be read)."""
    from amari.errors import ModelError

    family = guess(spec)
    try:
        evidence = evidence_of(spec)
    except ModelError:
        evidence = None
    return family.defaults.size if evidence is None else family.native_size_of(evidence)
