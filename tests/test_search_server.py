"""The search page: its JSON endpoints and their bad inputs (FastAPI's test client), and the
page itself driven in headless Chromium (the system's browser, through Playwright)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from search_fixtures import indexed, media_dir

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from trimodal.search.index import Catalogue  # noqa: E402
from trimodal.search.query import QueryEngine  # noqa: E402
from trimodal.search.server import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    engine = QueryEngine(Catalogue.load(indexed(tmp_path_factory)))
    return create_app(engine, max_upload_mb=0.5)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


def test_queries_answer_with_results(client):
    info = client.get("/api/info").json()
    assert info == {"items": 6, "galleries": ["audio", "video"], "kind": "exact"}
    hits = client.get("/api/search", params={"text": "Guitar", "in": "audio", "k": 3}).json()[
        "hits"
    ]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    like = client.get("/api/like", params={"id": hits[0]["id"], "k": 2}).json()
    assert like["item"]["id"] == hits[0]["id"] and hits[0]["id"] not in {
        h["id"] for h in like["hits"]
    }
    assert client.get(f"/thumb/{hits[0]['id']}").content[:3] == b"\xff\xd8\xff"  # JPEG
    assert client.get(f"/preview/{hits[0]['id']}").content[:4] == b"RIFF"  # WAV
    media = client.get(f"/media/{hits[0]['id']}")
    assert media.status_code == 200 and media.content[4:8] == b"ftyp"
    assert [i["id"] for i in client.get("/api/items", params={"q": "00003"}).json()["items"]] == [
        "synth11_00003"
    ]


@pytest.mark.parametrize(
    "url, params, status, message",
    [
        ("/api/search", {"text": "  "}, 400, "empty query"),
        ("/api/search", {}, 400, "empty query"),
        ("/api/search", {"text": "x", "k": "many"}, 400, "bad k"),
        ("/api/search", {"text": "x", "k": 0}, 400, "k must be between"),
        ("/api/search", {"text": "x", "in": "text"}, 400, "no 'text' gallery"),
        ("/api/search", {"path": "/etc/passwd"}, 403, "outside the catalogue's directory"),
        ("/api/like", {"id": "nope"}, 404, "unknown item id 'nope'"),
        ("/api/like", {}, 400, "bad id"),
        ("/api/like", {"id": "synth11_00000", "audio": 0, "video": 0}, 400, "weights must be"),
        ("/thumb/nope", {}, 404, "unknown item id"),
        ("/media/..%2F..%2Fetc%2Fpasswd", {}, 404, "Not Found"),
        ("/static/../../etc/passwd", {}, 404, "Not Found"),
    ],
)
def test_bad_requests_get_a_clear_4xx(client, url, params, status, message):
    response = client.get(url, params=params)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_media_outside_the_root_is_not_served(tmp_path_factory):
    engine = QueryEngine(Catalogue.load(indexed(tmp_path_factory)))
    other = tmp_path_factory.mktemp("elsewhere")
    client = TestClient(create_app(engine, media_root=other), raise_server_exceptions=False)
    response = client.get("/media/synth11_00000")
    assert response.status_code == 403 and "outside" in response.json()["error"]


def test_uploads(client, tmp_path_factory):
    media = media_dir(tmp_path_factory)
    with (media / "synth11_00002.mp4").open("rb") as f:
        form = {"modality": "audio", "in": "audio"}
        ok = client.post("/api/upload", files={"file": ("mine.mp4", f)}, data=form)
    assert ok.status_code == 200, ok.text
    # A catalogue file uploaded again is embedded exactly as in the catalogue: itself first.
    best = ok.json()["hits"][0]
    assert best["id"] == "synth11_00002" and best["score"] == pytest.approx(1.0, abs=1e-5)
    bad = client.post("/api/upload", files={"file": ("x.mp4", (media / "broken.mp4").read_bytes())})
    assert (
        bad.status_code == 400
        and "cannot use x.mp4: no input could be embedded" in bad.json()["error"]
    )
    big = client.post("/api/upload", files={"file": ("big.mp4", b"\0" * 2_000_000)})
    assert big.status_code == 413 and "larger than" in big.json()["error"]
    empty = client.post("/api/upload", files={"file": ("e.mp4", b"")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    wrong = client.post("/api/upload", files={"file": ("m.mp4", b"x")}, data={"modality": "text"})
    assert wrong.status_code == 400 and "modality must be" in wrong.json()["error"]
    missing = client.post("/api/upload")
    assert missing.status_code == 400 and "bad file" in missing.json()["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(app):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(served):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(served + "/")
        page.wait_for_selector("#pick option", state="attached")
        yield page
        browser.close()


def test_the_page_in_headless_chromium(page, tmp_path_factory):
    from playwright.sync_api import expect

    expect(page.locator("#info")).to_contain_text("6 items · exact index")
    page.fill("#text", "Guitar")
    page.click("#text-go")
    expect(page.locator("li.hit")).to_have_count(6)
    expect(page.locator("#status")).to_contain_text("“Guitar” in video: 6 results")
    assert page.locator("li.hit img").first.evaluate("img => img.complete && img.naturalWidth > 0")
    first = page.locator("li.hit").first.get_attribute("data-id")
    page.locator("li.hit a.more").first.click()
    expect(page.locator("#status")).to_contain_text(f"more like {first}: 5 results")
    assert first not in page.locator("li.hit").evaluate_all("els => els.map(e => e.dataset.id)")
    media = media_dir(tmp_path_factory)
    page.set_input_files("#upload", str(media / "synth11_00004.mp4"))
    page.select_option("#upload-in", "audio")
    page.click("#upload-go")
    expect(page.locator("#status")).to_contain_text("audio of synth11_00004.mp4 in audio")
    expect(page.locator("li.hit").first).to_have_attribute("data-id", "synth11_00004")


def test_the_page_shows_bad_input(page, tmp_path_factory):
    from playwright.sync_api import expect

    page.fill("#text", "   ")
    page.click("#text-go")
    expect(page.locator("#error")).to_have_text("empty query: type a text")
    page.set_input_files("#upload", str(media_dir(tmp_path_factory) / "broken.mp4"))
    page.click("#upload-go")
    expect(page.locator("#error")).to_contain_text("cannot use broken.mp4")
    page.evaluate("location.hash = 'like=nope'")
    expect(page.locator("#error")).to_have_text("unknown item id 'nope'")
