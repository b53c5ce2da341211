"""`amari serve`'s settings (light: the command line builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass

from amari.config.settings import Settings, check_positive, setting
from amari.errors import UsageError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServeConfig(Settings):
    """Where the workbench listens and how it shows images."""

    host: str = setting(
        LOOPBACK,
        "address to listen on; anything but loopback lets other machines reach the workbench (the token is "
        "its only protection: prefer an SSH tunnel)",
        metavar="ADDRESS",
    )
    port: int = setting(8765, "port to listen on; 0 picks a free one", metavar="N")
    thumbnail: int = setting(256, "side of the thumbnails in the galleries", metavar="PX")
    page_size: int = setting(240, "images per gallery page, best sim-score first", metavar="N")
    poll: float = setting(1.0, "seconds between looks at the workspace for the live panel", metavar="SECONDS")
    max_upload: int = setting(64, "largest image `verify` accepts from the page", metavar="MB")

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port must be in [0, 65535], not {self.port}")
        if not 32 <= self.thumbnail <= 1024:
            raise UsageError(f"thumbnail side must be in [32, 1024] pixels, not {self.thumbnail}")
        if not self.host.strip():
            raise UsageError("host must name an address, e.g. 127.0.0.1")
        check_positive(page_size=self.page_size, poll=self.poll, max_upload=self.max_upload)
