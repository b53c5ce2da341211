"""The README's pictures: in the repository, small, and made by the command the README names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PICTURES = ("report.png", "mining-progress.png", "workbench.png", "workbench-unknown.png")


def test_the_readme_shows_pictures_that_exist_and_names_the_command_that_makes_them():
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert sorted(Path(link).name for link in shown) == sorted(PICTURES)
    for link in shown:
        path = REPO / link
        assert path.is_file() and path.stat().st_size < 300_000, link
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 100
    assert "python docs/screenshots.py" in README and (REPO / "docs" / "screenshots.py").is_file()
    assert "python bench/doctor.py" in README and "| train step |" in README


@pytest.mark.slow
def test_the_screenshot_script_makes_the_pictures(tmp_path):
    if not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("headless Chromium is needed (apt-get install -y chromium)")
    pytest.importorskip("playwright", reason="Playwright's Python package drives the browser for the workbench")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run(
        [sys.executable, str(REPO / "docs" / "screenshots.py"), "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    for name in PICTURES:
        path = tmp_path / name
        assert path.stat().st_size < 300_000
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        assert pixels.std() > 10, f"{name} is (almost) one colour"
