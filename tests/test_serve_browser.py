"""The workbench in a real browser: the system's headless Chromium, driven by Playwright (which downloads
no browser of its own here), one browser for the whole module.

Without Chromium or Playwright these tests skip, except in CI (CI=true), where a missing browser is a
failure that says how to install it. Waits are on conditions in the page (`wait_for_function`), with
a deadline, never on a clock.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from amari.storage.layout import ALMOST_SIM, SIM_GROUP, UNKNOWN_PERSON
from serving import TOKEN, copy_workspace, serving
from test_mine_run import amari, mine_args

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
WAIT_MS = 60_000


def missing(message: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright's Python package is needed to drive the browser (pip install -e '.[test]')")
    path = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    if path is None:
        missing(
            "headless Chromium is needed for the workbench's browser tests (Debian/Ubuntu: apt-get install -y chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.problems = []  # dialogs (a script that ran from a name) and errors of the page's own script
    opened.on("dialog", lambda dialog: (opened.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    opened.on("pageerror", lambda error: opened.problems.append(f"error: {error}"))
    yield opened
    context.close()


def tile_names(page) -> list[str]:
    return page.locator("#gallery .tile").evaluate_all("tiles => tiles.map(t => t.dataset.name)")


def wait_count(page, folder: str, count: int) -> None:
    page.wait_for_function(
        "([folder, count]) => document.querySelector(`[data-count='${folder}']`).textContent === String(count)",
        arg=[folder, count],
        timeout=WAIT_MS,
    )


def wait_gone(page, name: str) -> None:
    page.wait_for_function(
        "name => ![...document.querySelectorAll('#gallery .tile')].some(t => t.dataset.name === name)",
        arg=name,
        timeout=WAIT_MS,
    )


@pytest.mark.slow
def test_a_click_or_a_key_moves_an_image_the_grid_follows_and_a_drop_is_verified(page, mined, tmp_path, data_dir):
    from test_verify import make_images

    marked = make_images(data_dir, tmp_path) / "marked.jpg"  # amari's marks, then JPEG 90
    workspace = copy_workspace(mined, tmp_path / "ws")
    hostile = "<img src=x onerror=alert(1)>.png"
    first_member = sorted(p.name for p in (workspace / SIM_GROUP).iterdir())[0]
    shutil.copy(workspace / SIM_GROUP / first_member, workspace / UNKNOWN_PERSON / hostile)
    with serving(workspace) as server:
        page.goto(f"{server.base}/?token={TOKEN}")
        assert page.url == f"{server.base}/gallery/{SIM_GROUP}"  # the token left the address bar
        names = tile_names(page)
        assert sorted(names) == sorted(p.name for p in (workspace / SIM_GROUP).iterdir())
        clicked, keyed, trashed, by_hand = names[:4]
        page.evaluate("window.notReloaded = true")

        # A click on an image's move control: the file moves, the tile leaves, the counts follow.
        tile = page.locator("#gallery .tile").nth(0)
        tile.locator(f"button[data-move-to='{ALMOST_SIM}']").click()
        wait_gone(page, clicked)
        assert (workspace / ALMOST_SIM / clicked).is_file() and not (workspace / SIM_GROUP / clicked).exists()
        wait_count(page, ALMOST_SIM, 1)

        # A key on a focused image: 3 is the third folder, Delete the trash.
        page.locator("#gallery .tile").nth(0).focus()
        page.keyboard.press("3")
        wait_gone(page, keyed)
        assert (workspace / UNKNOWN_PERSON / keyed).is_file()
        page.locator("#gallery .tile").nth(0).focus()
        page.keyboard.press("Delete")
        wait_gone(page, trashed)
        assert (workspace / "trash" / SIM_GROUP / trashed).is_file()
        wait_count(page, "trash", 1)

        # A move made elsewhere (a file manager, another browser) reaches the open page without a reload.
        os.rename(workspace / SIM_GROUP / by_hand, workspace / ALMOST_SIM / by_hand)
        wait_gone(page, by_hand)
        wait_count(page, ALMOST_SIM, 2)
        assert page.evaluate("window.notReloaded") is True

        page.click(f"a[href='/gallery/{ALMOST_SIM}']")
        page.wait_for_url(f"**/gallery/{ALMOST_SIM}")
        assert sorted(tile_names(page)) == sorted([clicked, by_hand])

        # From the trash, back where it came from.
        page.goto(f"{server.base}/gallery/trash")
        page.locator("#gallery .tile button[data-restore]").click()
        wait_gone(page, trashed)
        assert (workspace / SIM_GROUP / trashed).is_file()

        # A hostile file name is shown as text and runs nothing.
        page.goto(f"{server.base}/gallery/{UNKNOWN_PERSON}")
        shown = page.locator("#gallery .tile .name").all_inner_texts()
        assert hostile in shown

        # An image dropped onto the verify page: the marks and the verdict.
        page.goto(f"{server.base}/verify")
        dropped = page.evaluate_handle(
            """bytes => {
                const data = new DataTransfer();
                data.items.add(new File([new Uint8Array(bytes)], "marked.jpg", {type: "image/jpeg"}));
                return data;
            }""",
            list(marked.read_bytes()),
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
        page.wait_for_function("() => !document.getElementById('verdict').hidden", timeout=WAIT_MS)
        assert page.inner_text("#verdict-name") == "marked.jpg"
        assert page.inner_text("#verdict-text") == "synthetic, made by amari"
    assert page.problems == []


@pytest.mark.slow
def test_the_live_panel_follows_a_miner_running_in_another_process(page, mined, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    astronauts = sum(1 for kind in mined.kinds.values() if kind == "astronaut")
    with serving(workspace) as server:
        page.goto(f"{server.base}/?token={TOKEN}")
        assert page.inner_text("[data-live=miner]") == "no miner has run here yet"
        assert page.locator("#gallery .tile").count() == 0
        page.evaluate("window.notReloaded = true")
        miner = subprocess.Popen(
            amari(*mine_args(workspace, mined.photos, mined.reference, "--watch", "--poll", "0.2")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            page.wait_for_function(
                "pid => document.querySelector('[data-live=miner]').textContent.startsWith(`running (pid ${pid})`)",
                arg=miner.pid,
                timeout=WAIT_MS,
            )
            # The group grows batch by batch in the panel, the counts and the grid, the page never reloaded.
            page.wait_for_function(
                "n => document.querySelectorAll('#gallery .tile').length >= n", arg=astronauts // 2, timeout=WAIT_MS
            )
            page.wait_for_function(
                "() => document.querySelector('[data-live=rates]').textContent.includes('judged/s')", timeout=WAIT_MS
            )
            assert page.locator("#live .recent li").count() > 0
            assert int(page.inner_text(f"[data-count='{SIM_GROUP}']")) >= astronauts // 2
            assert page.evaluate("window.notReloaded") is True
        finally:
            miner.send_signal(signal.SIGINT)
            miner.wait(timeout=60)
        page.wait_for_function(
            "() => document.querySelector('[data-live=miner]').textContent.startsWith('not running')",
            timeout=WAIT_MS,
        )
    assert miner.returncode == 130, miner.stderr.read()
    assert page.problems == []
