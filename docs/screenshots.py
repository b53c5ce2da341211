"""The README's pictures, made from a real run: the demo study's report, the miner's progress panel and
the workbench.

    python docs/screenshots.py [--keep DIR] [--out FOLDER]

Runs the offline demo study (`amari study --demo`, a few minutes on a CPU) in a temporary folder, or in
DIR with --keep, then renders in headless Chromium (Debian: apt-get install chromium):

  docs/images/report.png            the top of the demo's HTML report: header, notice, charts
  docs/images/mining-progress.png   the panel `amari mine` shows on a terminal, after the demo's mining
  docs/images/workbench.png         `amari serve`: the sim-group's gallery and the live panel
  docs/images/workbench-unknown.png the same on unknown-person: other people, scored against the group

For the workbench, a second workspace is mined beside the demo from 36 real photos of the sample's six
people (`amari.testing.photos.face_photos`), the demo's person to mine among them, and served with the
demo's study, for real on a loopback port, driven by Playwright's Python package with the system's
Chromium (the test extra installs it). Each picture is shrunk to a palette of colours so that it stays
under 300 KB.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

IMAGES = Path(__file__).resolve().parent / "images"
MAX_BYTES = 300_000
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("headless Chromium is needed (Debian/Ubuntu: apt-get install -y chromium)")


def screenshot(url: str, out: Path, width: int, height: int, profile: Path) -> Image.Image:
    """A headless Chromium screenshot of `url` at width × height CSS pixels, in a fresh profile."""
    command = [
        browser(),
        *BROWSER_FLAGS,
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--virtual-time-budget=10000",
        f"--screenshot={out}",
        url,
    ]
    subprocess.run(command, capture_output=True, timeout=180, check=True)
    with Image.open(out) as image:
        return image.convert("RGB")


def trim(image: Image.Image, margin: int = 16) -> Image.Image:
    """Cut the plain border around the content and put back an even `margin` of the page's colour."""
    colour = image.getpixel((0, 0))
    box = ImageChops.difference(image, Image.new("RGB", image.size, colour)).getbbox()
    if box is None:
        return image
    content = image.crop(box)
    framed = Image.new("RGB", (content.width + 2 * margin, content.height + 2 * margin), colour)
    framed.paste(content, (margin, margin))
    return framed


def save_small(image: Image.Image, path: Path, width: int) -> Path:
    """Resize to `width` and store with an adaptive palette, fewer colours until it fits MAX_BYTES."""
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    for colours in (256, 128, 64, 32):
        buffer = io.BytesIO()
        image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, format="PNG", optimize=True
        )
        if buffer.tell() <= MAX_BYTES:
            break
    path.write_bytes(buffer.getvalue())
    print(f"{path}: {image.width}×{image.height}, {buffer.tell() / 1000:.0f} kB")
    return path


def run_demo(folder: Path):
    """The demo study, its mining step run here so that its progress panel can be kept."""
    from amari import mine
    from amari.study.config import load_study
    from amari.study.demo import write_demo
    from amari.study.run import run_study
    from amari.study.stages import mining_source

    config = load_study(write_demo(folder))
    progress = mine.MiningProgress(enabled=False)  # keeps the snapshot the terminal panel shows, prints nothing
    mine.run(config.mine, config.layout.workspace, mining_source(config.mine), progress)
    # The panel names the source folder as the README's command does (amari-demo/...), not by this machine's path.
    progress.update(source=progress.snapshot.source.replace(f"{folder.parent}{os.sep}", ""))
    outcome = run_study(config, log=print)
    return outcome.report, progress, config.layout


def panel_page(progress, folder: Path) -> tuple[Path, int, int]:
    """The progress panel drawn by rich as a terminal window (SVG) on a page of its own."""
    from rich.console import Console

    console = Console(record=True, width=84, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(progress.panel())
    svg = console.export_svg(title="amari mine")
    width, height = (float(v) for v in svg.split('viewBox="0 0 ', 1)[1].split('"', 1)[0].split())
    page = folder / "mining-progress.html"
    page.write_text(
        f'<!DOCTYPE html><html><body style="margin:0;background:#fff">{svg}</body></html>', encoding="utf-8"
    )
    return page, int(width) + 2, int(height) + 2


def mine_photos(folder: Path):
    """A workspace mined from 36 real photos of six people, the demo's person to mine among them."""
    from amari import mine
    from amari.storage.layout import WorkspaceLayout
    from amari.study.demo import IDENTITY, SAMPLE, SAMPLE_FACES, face_crop
    from amari.testing.photos import face_photos

    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for index, rgb in enumerate(face_photos(36, side=256, seed=5)):
        Image.fromarray(rgb).save(photos / f"photo-{index:02d}.png")
    reference = folder / "reference.png"
    with Image.open(SAMPLE) as sample:
        face_crop(sample.convert("RGB"), SAMPLE_FACES[IDENTITY]).save(reference)
    layout = WorkspaceLayout(folder / "workspace")
    config = mine.MineConfig(source=f"folder:{photos}", reference=(reference,))
    print(mine.run(config, layout, mine.FolderSource(photos)).summary())
    return layout


def workbench_pictures(study, folder: Path, out: Path) -> None:
    """`amari serve` in a real browser: two galleries of a freshly mined workspace, with the live panel."""
    import threading

    from playwright.sync_api import sync_playwright

    from amari.serve import ServeConfig, Server
    from amari.storage.layout import SIM_GROUP, UNKNOWN_PERSON, ServeLayout

    server = Server(ServeConfig(port=0), ServeLayout(mine_photos(folder), study))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=browser(), args=list(BROWSER_FLAGS))
            page = chromium.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
            page.goto(server.url)
            for folder, name in ((SIM_GROUP, "workbench.png"), (UNKNOWN_PERSON, "workbench-unknown.png")):
                page.goto(f"{server.base}/gallery/{folder}")
                page.wait_for_function("() => [...document.images].every(image => image.complete)")
                shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
                save_small(trim(shot), out / name, 1000)
            chromium.close()
    finally:
        server.stop()
        thread.join(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, metavar="DIR", help="run the demo in DIR and keep it")
    parser.add_argument("--out", type=Path, default=IMAGES, metavar="FOLDER", help="where the PNGs go (docs/images)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amari-screenshots-") as name:
        scratch = Path(name)
        report, progress, study = run_demo((args.keep or scratch / "amari-demo").resolve())
        shot = screenshot(report.as_uri(), scratch / "report.png", 1280, 1500, scratch / "profile-report")
        save_small(trim(shot), args.out / "report.png", 1000)
        page, width, height = panel_page(progress, scratch)
        shot = screenshot(page.as_uri(), scratch / "panel.png", width, height, scratch / "profile-panel")
        save_small(trim(shot), args.out / "mining-progress.png", 900)
        workbench_pictures(study, (args.keep or scratch / "amari-demo").resolve() / "workbench", args.out)


if __name__ == "__main__":
    main()
