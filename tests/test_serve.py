"""`amari serve` over HTTP: every security rule, curation as a hand move, galleries, live events, the study.

Requests go through Starlette's TestClient where a client's URL handling does not matter, and to the
real server on a loopback port (`serving`) where it does: raw request lines for traversal, a streaming
connection for the events, the command itself in a subprocess for the URL it prints and where it listens.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amari.cli import main
from amari.serve import ServeConfig, create_app, exposure_warning
from amari.storage.layout import ALMOST_SIM, SIM_GROUP, UNKNOWN_PERSON
from serving import BEARER, TOKEN, copy_workspace, layout, raw_get, read_event, serving
from test_mine_run import mine_args, snapshot

starlette_testclient = pytest.importorskip(
    "starlette.testclient", reason="the serve extra (pip install 'amari[serve]')"
)

HOST = "127.0.0.1:8765"
SAME_ORIGIN = {"Origin": f"http://{HOST}", "Sec-Fetch-Site": "same-origin"}


def client_for(workspace: Path, study: Path | None = None, **settings):
    app = create_app(ServeConfig(**settings), layout(workspace, study), TOKEN)
    return starlette_testclient.TestClient(app, base_url=f"http://{HOST}", follow_redirects=False)


@pytest.fixture()
def workspace(mined, tmp_path) -> Path:
    return copy_workspace(mined, tmp_path / "ws")


def members(workspace: Path) -> list[str]:
    return sorted(p.name for p in (workspace / SIM_GROUP).iterdir())


def csrf_of(page: str) -> str:
    return page.split('name="amari-csrf" content="', 1)[1].split('"', 1)[0]


# -- the token ------------------------------------------------------------------------------------

GETS = (
    "/",
    f"/gallery/{SIM_GROUP}",
    "/gallery/trash",
    "/verify",
    "/study",
    f"/api/images?folder={SIM_GROUP}",
    "/api/status",
    "/api/events",
    "/static/workbench.js",
    "/thumbs/sim-group/reference.png",
    "/files/sim-group/reference.png",
    "/no-such-page",
)
POSTS = ("/api/move", "/api/restore", "/api/trash/empty", "/api/verify")


def test_every_page_and_api_call_needs_the_token(workspace):
    before = members(workspace)
    with client_for(workspace) as client:
        for path in GETS:
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403, path
            assert client.get(path, headers={"Cookie": f"amari-0={TOKEN}"}).status_code == 401, path  # not its cookie
        for path in POSTS:
            body = {"name": "ref.png", "to": ALMOST_SIM}
            assert client.post(path, json=body).status_code == 401, path
            assert client.post(path, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 403, path
            assert client.post(f"{path}?token={TOKEN}", json=body).status_code == 401, path  # no token in a URL
        assert members(workspace) == before

        for path in GETS[1:3] + GETS[5:7] + GETS[8:]:
            expected = 404 if path == "/no-such-page" else 200
            assert client.get(path, headers=BEARER).status_code == expected, path


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_address_bar(workspace):
    with client_for(workspace) as client:
        first = client.get(f"/gallery/{SIM_GROUP}?token={TOKEN}&page=1")
        assert first.status_code == 303 and first.headers["location"] == f"/gallery/{SIM_GROUP}?page=1"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN in cookie
        page = client.get(f"/gallery/{SIM_GROUP}")  # the cookie alone, from now on
        assert page.status_code == 200
        assert all(name in page.text for name in members(workspace))
        headers = page.headers
        assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"


def test_changes_need_post_and_the_same_origin(workspace):
    name = members(workspace)[0]
    move = {"name": name, "to": ALMOST_SIM}
    with client_for(workspace) as client:
        csrf = csrf_of(client.get(f"/gallery/{SIM_GROUP}?token={TOKEN}", follow_redirects=True).text)
        assert client.get("/api/move", headers=BEARER).status_code == 405
        refused = [
            {},  # the cookie alone: no CSRF token
            {"x-amari-csrf": "0" * 32},
            {"x-amari-csrf": csrf, "Origin": "http://evil.example"},
            {"x-amari-csrf": csrf, "Origin": "null"},
            {"x-amari-csrf": csrf, "Sec-Fetch-Site": "cross-site"},
            {"x-amari-csrf": csrf, "Sec-Fetch-Site": "same-site"},  # a sibling sub-domain is another origin
            {**BEARER, "Origin": "http://evil.example"},  # a script's token does not make another site's page safe
        ]
        for headers in refused:
            answer = client.post("/api/move", json=move, headers=headers)
            assert answer.status_code == 403, headers
            assert (workspace / SIM_GROUP / name).is_file()
        done = client.post("/api/move", json=move, headers={"x-amari-csrf": csrf, **SAME_ORIGIN})
        assert done.status_code == 200, done.text
        assert done.json()["moved"] == {"name": name, "from": SIM_GROUP, "to": ALMOST_SIM, "new_name": name}
        assert (workspace / ALMOST_SIM / name).is_file() and not (workspace / SIM_GROUP / name).exists()
        back = client.post("/api/move", json={"name": name, "to": SIM_GROUP}, headers=BEARER)  # a script
        assert back.status_code == 200 and (workspace / SIM_GROUP / name).is_file()


def test_only_images_of_the_workspace_are_served(workspace, tmp_path):
    member = members(workspace)[0]
    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(secret)
    (workspace / SIM_GROUP / "link.png").symlink_to(secret)
    (workspace / UNKNOWN_PERSON / "outside").symlink_to(tmp_path, target_is_directory=True)
    (workspace / SIM_GROUP / ".hidden.png").write_bytes(secret.read_bytes())
    refused = [
        "/files/sim-group/../../secret.png",
        "/files/sim-group/..%2f..%2fsecret.png",
        "/files/sim-group/%2e%2e/%2e%2e/secret.png",
        "/files/%2e%2e/secret.png",
        "/files/sim-group/%252e%252e%252f%252e%252e%252fsecret.png",
        "/files/sim-group/..%5c..%5csecret.png",
        "/files//" + str(secret).lstrip("/"),
        "/files/" + str(secret).replace("/", "%2f"),
        "/files/sim-group/link.png",
        "/thumbs/sim-group/link.png",
        "/files/unknown-person/outside/secret.png",
        "/files/sim-group/.hidden.png",
        "/files/mine.sqlite",
        "/files/sim-group/%00.png",
        "/files/archive.csv",
        "/files/results/secret.png",  # no study here
        "/files/trash/../../secret.png",
        "/thumbs/..%2fsecret.png",
    ]
    with serving(workspace) as server:
        for target in refused:
            status, body = raw_get(server.port, target)
            assert status in (400, 404), (target, status)
            assert secret.read_bytes() not in body, target
        status, body = raw_get(server.port, f"/files/sim-group/{member}")
        assert status == 200 and body == (workspace / SIM_GROUP / member).read_bytes()
        status, body = raw_get(server.port, f"/api/images?folder={SIM_GROUP}")
        assert "link.png" not in {image["name"] for image in json.loads(body)["images"]}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", f"//evil.example/x?token={TOKEN}")  # the redirect stays on this server
        assert conn.getresponse().headers["location"] == "/evil.example/x"
        conn.close()


def test_names_are_escaped_in_pages(workspace):
    hostile = "<img src=x onerror=alert(1)>.png"
    shutil.copy(workspace / SIM_GROUP / members(workspace)[0], workspace / UNKNOWN_PERSON / hostile)
    with client_for(workspace) as client:
        page = client.get(f"/gallery/{UNKNOWN_PERSON}", headers=BEARER).text
        assert hostile not in page and "&lt;img src=x onerror=alert(1)&gt;.png" in page
        listed = client.get(f"/api/images?folder={UNKNOWN_PERSON}", headers=BEARER).json()["images"]
        assert hostile in {image["name"] for image in listed}


# -- curation ---------------------------------------------------------------------------------------


def records(workspace: Path) -> dict:
    """What the miner's database says, without clock times (as `test_mine_run.snapshot`)."""
    return {key: value for key, value in snapshot(workspace).items() if key != "files"}


def image_row(workspace: Path, name: str) -> dict:
    import sqlite3

    conn = sqlite3.connect(workspace / "mine.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        row = dict(conn.execute("SELECT * FROM images WHERE name = ?", (name,)).fetchone())
        row["reasons"] = [
            r[0]
            for r in conn.execute(
                "SELECT reason FROM decisions WHERE image_id = ? ORDER BY id", (row["id"],)
            ).fetchall()
        ]
    finally:
        conn.close()
    return row


def database_content(workspace: Path) -> tuple[str, str]:
    """Hashes of the miner's database and of what its write-ahead log holds (a reader may create an
    empty log and its index: SQLite's WAL mode reads through them)."""
    database, log = workspace / "mine.sqlite", workspace / "mine.sqlite-wal"
    content = log.read_bytes() if log.exists() else b""
    return hashlib.sha256(database.read_bytes()).hexdigest(), hashlib.sha256(content).hexdigest()


def test_a_move_is_a_hand_move_and_the_miner_records_it_as_curation(mined, tmp_path):
    by_api, by_hand = copy_workspace(mined, tmp_path / "api"), copy_workspace(mined, tmp_path / "hand")
    moved, deleted = [n for n in members(by_api) if n != "reference.png"][:2]
    database = database_content(by_api)
    with client_for(by_api) as client:
        for body in ({"name": moved, "to": ALMOST_SIM}, {"name": deleted, "to": "trash"}):
            assert client.post("/api/move", json=body, headers=BEARER).status_code == 200
        trash_listing = client.get("/api/images?folder=trash", headers=BEARER).json()["images"]
    assert [(image["folder"], image["name"]) for image in trash_listing] == [(f"trash/{SIM_GROUP}", deleted)]
    assert database_content(by_api) == database  # the database stays the miner's
    os.rename(by_hand / SIM_GROUP / moved, by_hand / ALMOST_SIM / moved)
    (by_hand / SIM_GROUP / deleted).unlink()
    api_stat, hand_stat = (os.stat(ws / ALMOST_SIM / moved) for ws in (by_api, by_hand))
    assert (api_stat.st_size, api_stat.st_mtime_ns) == (hand_stat.st_size, hand_stat.st_mtime_ns)

    for ws in (by_api, by_hand):
        assert main(mine_args(ws, mined.photos, mined.reference)) == 0
    assert records(by_api) == records(by_hand)
    row = image_row(by_api, moved)
    assert (row["folder"], row["user_removed"]) == (ALMOST_SIM, 1)
    assert row["reasons"][-1] == f"moved by the user from {SIM_GROUP}/"
    row = image_row(by_api, deleted)
    assert (row["folder"], row["user_removed"]) == ("deleted", 1)

    with client_for(by_api) as client:  # back from the trash: the miner sees the user's restore
        restored = client.post("/api/restore", json={"name": deleted, "from": f"trash/{SIM_GROUP}"}, headers=BEARER)
        assert restored.status_code == 200 and (by_api / SIM_GROUP / deleted).is_file()
        conflict = client.post("/api/move", json={"name": deleted, "to": SIM_GROUP}, headers=BEARER)
        assert conflict.status_code == 400  # already there
    assert main(mine_args(by_api, mined.photos, mined.reference)) == 0
    row = image_row(by_api, deleted)
    assert row["folder"] == SIM_GROUP and row["reasons"][-1] == "restored by the user"


def test_refused_moves_say_why_and_change_nothing(workspace):
    name = members(workspace)[0]
    shutil.copy(workspace / SIM_GROUP / name, workspace / UNKNOWN_PERSON / name)
    before = sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*"))
    cases = [
        ({"name": name, "to": ALMOST_SIM}, 409),  # in two folders: which one?
        ({"name": name, "to": UNKNOWN_PERSON, "from": SIM_GROUP}, 409),  # the target holds that name
        ({"name": "../mine.sqlite", "to": ALMOST_SIM, "from": SIM_GROUP}, 400),
        ({"name": "nothing.png", "to": ALMOST_SIM}, 404),
        ({"name": name, "to": "../elsewhere", "from": SIM_GROUP}, 400),
        ({"name": name, "to": "incoming", "from": SIM_GROUP}, 400),
        ({"name": name, "to": ALMOST_SIM, "from": "incoming"}, 400),
        ({"name": ["x"], "to": ALMOST_SIM}, 400),
    ]
    with client_for(workspace) as client:
        for body, status in cases:
            answer = client.post("/api/move", json=body, headers=BEARER)
            assert answer.status_code == status, (body, answer.text)
            assert answer.json()["error"]
        assert client.post("/api/move", content=b"{not json", headers=BEARER).status_code == 400
        assert client.post("/api/restore", json={"name": name, "from": "trash/x"}, headers=BEARER).status_code == 404
    assert sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*")) == before


def test_the_trash_empties_for_good(workspace):
    doomed = members(workspace)[:2]
    with client_for(workspace) as client:
        for name in doomed:
            client.post("/api/move", json={"name": name, "to": "trash"}, headers=BEARER)
        assert client.get("/gallery/trash", headers=BEARER).text.count('class="tile"') == 2
        assert client.post("/api/trash/empty", headers=BEARER).json() == {"deleted": 2}
        assert client.get("/api/images?folder=trash", headers=BEARER).json()["images"] == []
    assert not any((workspace / "trash").rglob("*.png"))


# -- galleries ------------------------------------------------------------------------------------


def test_galleries_list_every_image_sorted_by_its_score_against_the_group(workspace):
    import sqlite3

    conn = sqlite3.connect(workspace / "mine.sqlite")
    found = {
        (folder, name): np.frombuffer(blob, np.float64)
        for folder, name, blob in conn.execute("SELECT folder, name, descriptor FROM images WHERE descriptor NOT NULL")
    }
    conn.close()
    group = np.array([d for (folder, _), d in found.items() if folder == SIM_GROUP])
    with client_for(workspace) as client:
        for folder in (SIM_GROUP, UNKNOWN_PERSON):
            images = client.get(f"/api/images?folder={folder}", headers=BEARER).json()["images"]
            assert sorted(i["name"] for i in images) == sorted(p.name for p in (workspace / folder).iterdir())
            scored = [i for i in images if i["score"] is not None]
            assert [i["score"] for i in scored] == sorted(i["score"] for i in scored)
            assert all(i["score"] is None for i in images[len(scored) :])  # no face: last
            for image in scored:
                descriptor = found[(folder, image["name"])]
                distances = np.sqrt(((group - descriptor) ** 2).sum(axis=1))  # the member's own 0 included
                assert image["score"] == pytest.approx(distances.mean(), abs=1e-9)
                assert image["centroid_distance"] == pytest.approx(np.linalg.norm(descriptor - group.mean(0)))
                nearest = [d for d in np.sort(distances) if folder != SIM_GROUP or d > 0][:3]
                assert [n["distance"] for n in image["nearest"]] == pytest.approx(nearest)
        unknown = client.get(f"/gallery/{UNKNOWN_PERSON}", headers=BEARER).text
        assert unknown.count("no face found") >= 2  # the faceless photos (the broken files: no score)

        # Moved by hand since the miner looked: still known (by name and size), scored against the group
        # as the folder is now. A file the miner never saw: listed, not scored.
        leaving = members(workspace)[0]
        os.rename(workspace / SIM_GROUP / leaving, workspace / ALMOST_SIM / leaving)
        shutil.copy(workspace / SIM_GROUP / members(workspace)[0], workspace / SIM_GROUP / "dropped.png")
        rest = np.array([d for (folder, name), d in found.items() if folder == SIM_GROUP and name != leaving])
        almost = client.get(f"/api/images?folder={ALMOST_SIM}", headers=BEARER).json()["images"]
        moved = next(i for i in almost if i["name"] == leaving)
        distances = np.sqrt(((rest - found[(SIM_GROUP, leaving)]) ** 2).sum(axis=1))
        assert moved["judged"] and moved["score"] == pytest.approx(distances.mean(), abs=1e-9)
        group = client.get(f"/api/images?folder={SIM_GROUP}", headers=BEARER).json()["images"]
        assert group[-1]["name"] == "dropped.png" and not group[-1]["judged"] and group[-1]["score"] is None


def test_thumbnails_are_made_once_in_the_cache_and_never_in_the_workspace(workspace, isolated_state):
    def listing():
        return {str(p.relative_to(workspace)): p.stat().st_mtime_ns for p in workspace.rglob("*")}

    before = listing()
    cache = isolated_state / "cache" / "thumbnails"
    with client_for(workspace, thumbnail=64) as client:
        for name in members(workspace):
            answer = client.get(f"/thumbs/{SIM_GROUP}/{name}", headers=BEARER)
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        made = {p: p.stat().st_mtime_ns for p in cache.rglob("*.jpg")}
        assert len(made) == len(members(workspace))
        with Image.open(next(iter(made))) as thumb:
            assert max(thumb.size) == 64
        for name in members(workspace):
            client.get(f"/thumbs/{SIM_GROUP}/{name}", headers=BEARER)
        assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.jpg")} == made  # not made again
        broken = next(p.name for p in (workspace / UNKNOWN_PERSON).iterdir() if "broken" in p.name)
        assert client.get(f"/thumbs/{UNKNOWN_PERSON}/{broken}", headers=BEARER).status_code == 404
    assert listing() == before


# -- live -------------------------------------------------------------------------------------------


def test_events_follow_the_folders_without_asking(workspace):
    with serving(workspace) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        conn.request("GET", "/api/events", headers=BEARER)
        response = conn.getresponse()
        assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
        name, first = read_event(response)
        assert name == "progress" and not first["running"]
        assert first["folders"][SIM_GROUP] == len(members(workspace)) and "html" not in first
        assert first["lines"]["miner"].startswith("not running")
        assert {item["verdict"] for item in first["recent"]} <= {SIM_GROUP, ALMOST_SIM, UNKNOWN_PERSON}
        moving = members(workspace)[0]
        os.rename(workspace / SIM_GROUP / moving, workspace / ALMOST_SIM / moving)  # by hand, elsewhere
        _, second = read_event(response)
        assert second["folders"][SIM_GROUP] == first["folders"][SIM_GROUP] - 1
        assert second["folders"][ALMOST_SIM] == first["folders"][ALMOST_SIM] + 1
        assert second["version"] != first["version"]
        conn.close()


# -- the command --------------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, from the kernel's tables (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.slow
def test_the_command_prints_a_url_with_a_token_and_listens_on_loopback_only(workspace):
    process = subprocess.Popen(
        [sys.executable, "-m", "amari", "serve", "--workspace", str(workspace), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = ""
        while "?token=" not in url:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            url = line.strip()
        base, token = url.split("/?token=")
        assert base.startswith("http://127.0.0.1:") and len(token) >= 32
        port = int(base.rsplit(":", 1)[1])
        if os.path.exists("/proc/net/tcp"):
            assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing else
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/?token={token}")
        first = conn.getresponse()
        first.read()
        cookie = first.headers["set-cookie"].split(";", 1)[0]
        conn.request("GET", f"/gallery/{SIM_GROUP}", headers={"Cookie": cookie})
        page = conn.getresponse().read().decode()
        assert all(name in page for name in members(workspace))
        conn.request("GET", f"/gallery/{SIM_GROUP}")
        refused = conn.getresponse()
        assert refused.status == 401 and members(workspace)[0] not in refused.read().decode()
        conn.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0, process.stderr.read()


def test_the_command_says_what_is_wrong(tmp_path, capsys):
    assert main(["serve"]) == 2
    assert "--workspace" in capsys.readouterr().err
    assert main(["serve", "--workspace", str(tmp_path / "nowhere")]) == 2
    assert "no workspace" in capsys.readouterr().err
    assert main(["serve", "--workspace", str(tmp_path), "--port", "70000"]) == 2
    assert "port" in capsys.readouterr().err
    with serving(tmp_path) as server:  # a port in use
        assert main(["serve", "--workspace", str(tmp_path), "--port", str(server.port)]) == 2
        assert "choose another --port" in capsys.readouterr().err


def test_other_hosts_are_warned_about_and_loopback_is_not():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_warning(host, 8765) is None
    for host in ("0.0.0.0", "192.168.1.20", "myhost.example"):
        warning = exposure_warning(host, 8765)
        assert "token is its only protection" in warning and "ssh -N -L 8765:127.0.0.1:8765" in warning
    assert ServeConfig().host == "127.0.0.1"


# -- the study ------------------------------------------------------------------------------------------


@pytest.fixture()
def study(tmp_path, t1_people, workspace):
    """A study folder: the mined workspace as its mine/, an evaluated grid of real face crops, and a report
    page (a stand-in: the page is served as `amari report` wrote it, whatever it holds; the screenshot
    script serves the demo study's real one)."""
    from test_report import make_results

    root = tmp_path / "study"
    (root / "results" / "report").mkdir(parents=True)
    synthetic = make_results(root / "results", t1_people)
    (root / "results" / "report" / "index.html").write_text("<h1>amari study report: test</h1>")
    shutil.move(workspace, root / "mine")
    return root, synthetic


def test_the_study_shows_each_methods_grid_and_its_report(study):
    root, synthetic = study
    with client_for(root / "mine", root) as client:
        page = client.get("/study", headers=BEARER).text
        for cell in synthetic.cells:
            assert f"/thumbs/results/{cell.image}" in page
        scored = [c for c in synthetic.cells if c.sim_score is not None]
        assert all(f"{c.sim_score:.4f}" in page for c in scored)
        assert page.count("no face found") == len(synthetic.cells) - len(scored)
        cell = synthetic.cells[0]
        image = client.get(f"/files/results/{cell.image}", headers=BEARER)
        assert image.status_code == 200 and image.content == (root / "results" / cell.image).read_bytes()
        report = client.get("/study/report", headers=BEARER)
        assert report.status_code == 200 and "amari study report" in report.text
        assert report.headers["content-security-policy"].startswith("sandbox allow-scripts")


def test_verify_takes_a_dropped_image(workspace, data_dir, tmp_path):
    from test_verify import make_images

    folder = make_images(data_dir, tmp_path)
    with client_for(workspace, max_upload=1) as client:
        headers = {**BEARER, "x-filename": "marked%20copy.png"}
        found = client.post("/api/verify", content=(folder / "marked.png").read_bytes(), headers=headers).json()
        assert found["verdict"] == "synthetic, made by amari" and found["path"] == "marked copy.png"
        assert "watermark" in found["marks"] and str(tmp_path) not in json.dumps(found)
        plain = client.post("/api/verify", content=(folder / "plain.png").read_bytes(), headers=BEARER).json()
        assert plain["verdict"] == "no amari provenance found"
        assert client.post("/api/verify", content=b"not an image", headers=BEARER).status_code == 422
        assert client.post("/api/verify", content=b"\0" * (1024 * 1024 + 1), headers=BEARER).status_code == 413


def test_the_server_reads_the_database_and_never_writes_it(workspace):
    database = database_content(workspace)
    started = time.time()
    with client_for(workspace) as client:
        for path in GETS[1:3] + GETS[5:7]:
            client.get(path, headers=BEARER)
        client.post("/api/move", json={"name": members(workspace)[0], "to": ALMOST_SIM}, headers=BEARER)
        client.get(f"/gallery/{ALMOST_SIM}", headers=BEARER)
    assert database_content(workspace) == database
    assert os.stat(workspace / "mine.sqlite").st_mtime < started
