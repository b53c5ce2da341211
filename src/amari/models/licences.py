"""Model licences that forbid what amari does with a model's images.

amari's mining, scoring and evaluation compute face descriptors of every image a model makes, which is
biometric processing. A family whose licence forbids that (FLUX.1 [dev] and models derived from it,
recognised by their weights) is refused there, in one line that says why and what to use instead, unless
the user names the licence that lets them (`--biometric-licence TEXT`, `biometric_licence` in a study's
[study] table): that text is then logged, so the run records on what terms it went ahead.
"""

from __future__ import annotations

from amari.errors import LicenceError

ALTERNATIVES = "FLUX.1 [schnell] (Apache-2.0) or SDXL"
FLAG = "--biometric-licence"


def check_biometric_use(spec: str, permit: str | None, command: str) -> None:
    """Refuse `command` on the model `spec` when its family's licence forbids biometric processing and the
    user names no licence that permits it."""
    from amari.models.families.registry import guess

    family = guess(spec)
    if family.biometric_licence is None or (permit and permit.strip()):
        return
    raise LicenceError(
        f"{family.label} weights (their transformer has a guidance embedding) are under the "
        f"{family.biometric_licence}, which forbids using the model or its outputs for biometric processing, "
        f"and {command} computes face descriptors of its images: use {ALTERNATIVES}, or, if a licence you hold "
        f"permits it, name it with {FLAG} TEXT"
    )


def licence_note(spec: str, permit: str | None) -> str | None:
    """The line a run writes when it goes ahead on a model whose licence forbids biometric processing
    because the user named one that permits it; None for every other model."""
    if not (permit and permit.strip()):
        return None
    from amari.models.families.registry import guess

    family = guess(spec)
    if family.biometric_licence is None:
        return None
    return f"{family.label}: biometric processing under the licence you named: {permit.strip()}"
