"""The refinement loop's own settings (light: the command line builds its options from it). The mining,
training and training-image settings are the study's [mine], [train] and [prepare] tables."""

from __future__ import annotations

import re
from dataclasses import dataclass

from amari.config.settings import Settings, check_positive, setting
from amari.errors import UsageError
from amari.train import METHODS

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class RefineConfig(Settings):
    """Rounds of mining with the identity learned so far, then training on the group, until a round's fresh
    candidates agree with the group or the rounds run out."""

    rounds: int = setting(3, "rounds at most (a study: 0 leaves refinement out)", metavar="R")
    batches: int = setting(8, "mining batches per round", metavar="N")
    method: str = setting(
        "ti", "what each round learns: ti, lora or pivotal (train's settings otherwise)", choices=METHODS
    )
    scratch: bool = setting(False, "train every round from the init word, not from the round before's files")
    steps: int = setting(500, "training steps per round", metavar="N")
    target_acceptance: float = setting(
        0.5, "done when a round's candidates join the group at least this often ...", metavar="SHARE"
    )
    target_distance: float = setting(
        0.40, "... and their mean sim-score against the group is at most this", metavar="D"
    )
    name: str = setting(
        "amari",
        "the identity's name: round R's files are NAME-rR, the word mining prompts use and A1111 knows them by",
    )

    def check(self) -> None:
        if self.rounds < 0:
            raise UsageError(f"rounds must be >= 0, not {self.rounds}")
        check_positive(batches=self.batches, steps=self.steps, target_distance=self.target_distance)
        if not 0 < self.target_acceptance <= 1:
            raise UsageError(f"target_acceptance must be in (0, 1], not {self.target_acceptance}")
        if not _NAME.match(self.name):
            raise UsageError(f"name {self.name!r}: lower-case letters, digits, '_' and '-' (CLIP lower-cases prompts)")

    def identity(self, number: int) -> str:
        """The name of round `number`'s identity: its files and its word in prompts."""
        return f"{self.name}-r{number}"
