"""``patch2image serve``: the HTTP API, its limits and errors, concurrency, and the page in headless Chromium.

The page test drives the system's Chromium over the DevTools protocol (``websocket-client``); without a
Chromium it skips. With ``PATCH2IMAGE_SCREENSHOT=1`` it saves the page as docs/serve.png.
"""

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from patch2image.data import read_image
from patch2image.errors import UserError
from patch2image.inference import Segmenter
from patch2image.postprocessing import overlay
from patch2image.serve import create_app
from patch2image.serve.app import STATIC, bind, display_name, startup_lines
from patch2image.weights import load_model, shipped_models

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # newer Starlette prefers httpx2 to httpx
    from starlette.testclient import TestClient

MODEL = "drive-light"  # the smallest shipped model
DOCS = Path(__file__).resolve().parents[1] / "docs"


# --------------------------------------------------------------------------- helpers and fixtures


@pytest.fixture(scope="module")
def client():
    app = create_app(default_model=MODEL)
    with TestClient(app) as test_client:
        yield test_client
    assert not app.state.serve.root.exists(), "the temporary folder must be removed when the app stops"


@pytest.fixture(scope="module")
def drive_photo(datasets) -> Path:
    return datasets / "DRIVE" / "test" / "images" / "01_test.tif"


def png_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def png_header(width: int, height: int) -> bytes:
    """A PNG that is only a header claiming ``width`` x ``height`` pixels (no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def post(client, name: str, data: bytes, **fields):
    return client.post("/api/segment", files={"image": (name, data)}, data={"model": MODEL, **fields})


def assert_one_line_error(response, status: int, name: str, root: Path) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "\n" not in message and message.startswith(f"{name}: "), message
    assert str(root) not in message, "the server's temporary paths must not leak into messages"
    return message


def library_probabilities(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, probabilities) as ``patch2image segment`` computes them."""
    model, metadata = load_model(MODEL)
    rgb = read_image(path)
    return rgb, Segmenter(model, metadata)(rgb)


# --------------------------------------------------------------------------- models and page


def test_models_lists_the_shipped_models(client):
    models = client.get("/api/models").json()
    assert [m["name"] for m in models] == [name for name, _ in shipped_models()]
    for m in models:
        assert m["task"] in ("vessels", "optic_disc") and m["dataset"] and 0 <= m["threshold"] <= 1
    config = client.get("/api/config").json()
    assert config["default_model"] == MODEL and config["max_upload_bytes"] == 50_000_000


def test_page_uses_nothing_but_this_server(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
        assert client.get(f"/static/{name}").status_code == 200


# --------------------------------------------------------------------------- segmenting a real photograph


def test_segment_a_drive_photograph(client, drive_photo):
    response = post(client, drive_photo.name, drive_photo.read_bytes())
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"]) == (565, 584)
    assert result["model"] == MODEL and result["threshold"] == 0.5 and result["seconds"] > 0
    assert set(result["urls"]) >= {"prob", "mask", "overlay", "zip"}

    prob = decode(client.get(result["urls"]["prob"]).content)
    mask = decode(client.get(result["urls"]["mask"]).content)
    over = decode(client.get(result["urls"]["overlay"]).content)
    for image in (prob, mask, over):
        assert image.size == (565, 584)
    assert prob.mode == "I;16" and mask.mode == "L" and over.mode == "RGB"

    # The same numbers as the library: probability x 65535, mask = probability >= threshold, the CLI's overlay.
    rgb, expected = library_probabilities(drive_photo)
    np.testing.assert_array_equal(np.asarray(prob), np.round(expected * 65535).astype(np.uint16))
    np.testing.assert_array_equal(np.asarray(mask), (expected >= 0.5).astype(np.uint8) * 255)
    np.testing.assert_array_equal(np.asarray(over), overlay(rgb, expected >= 0.5))
    assert client.get(result["urls"]["mask"]).headers["content-disposition"].endswith('filename="01_test_mask.png"')


def test_threshold_change_rethresholds_without_the_network(client, drive_photo):
    result = post(client, drive_photo.name, drive_photo.read_bytes(), threshold="0.7").json()
    assert result["threshold"] == 0.7
    prob = np.asarray(decode(client.get(result["urls"]["prob"]).content)) / 65535
    masks = {}
    for t in (0.3, 0.7):
        masks[t] = np.asarray(decode(client.get(f"{result['urls']['mask']}?threshold={t}").content)) > 0
        # Re-thresholded from the cached float map: within one 16-bit step of the 16-bit PNG's answer.
        assert np.all(masks[t][prob >= t + 1 / 65535]) and not np.any(masks[t][prob < t - 1 / 65535])
    assert masks[0.3].sum() > masks[0.7].sum() and np.all(masks[0.3] >= masks[0.7])
    default = np.asarray(decode(client.get(result["urls"]["mask"]).content)) > 0
    np.testing.assert_array_equal(default, masks[0.7])  # no ?threshold=: the request's threshold

    archive = zipfile.ZipFile(io.BytesIO(client.get(f"{result['urls']['zip']}?threshold=0.3").content))
    assert sorted(archive.namelist()) == [f"01_test_{k}" for k in ("info.json", "mask.png", "overlay.png", "prob.png")]
    assert json.loads(archive.read("01_test_info.json"))["threshold"] == 0.3
    np.testing.assert_array_equal(np.asarray(decode(archive.read("01_test_mask.png"))) > 0, masks[0.3])
    assert decode(archive.read("01_test_overlay.png")).size == (565, 584)

    bad = client.get(f"{result['urls']['mask']}?threshold=abc")
    assert_one_line_error(bad, 400, "01_test.tif", client.app.state.serve.root)


def test_large_photographs_get_a_smaller_preview_and_old_results_are_forgotten():
    """No dataset needed: a synthetic wide photograph, with a store that holds one result at a time."""
    app = create_app(models=[MODEL], max_stored_bytes=1)
    rgb = np.full((180, 1800, 3), 120, np.uint8)  # no field of view: segmented at its own size
    rgb[60:120, 200:1600, 0] = 200
    with TestClient(app) as small:
        first = post(small, "wide.png", png_bytes(rgb)).json()
        preview = small.get(first["urls"]["preview_prob"])
        assert (preview.headers["x-width"], preview.headers["x-height"]) == ("1600", "160")
        assert len(preview.content) == 1600 * 160 * 2
        assert decode(small.get(first["urls"]["preview"]).content).size == (1600, 160)
        assert decode(small.get(first["urls"]["photo"]).content).size == (1800, 180)
        second = post(small, "next.png", png_bytes(rgb[:, :900])).json()
        assert small.get(second["urls"]["mask"]).status_code == 200
        gone = small.get(first["urls"]["mask"])
        assert gone.status_code == 404 and "segment the photograph again" in gone.json()["error"]


# --------------------------------------------------------------------------- bad files and limits


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("empty.png", lambda: b"", "empty file (0 bytes)"),
        ("notes.txt", lambda: b"patient 12, left eye\n", "not an image that can be read (content is text"),
        ("cut.png", lambda: png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))[:300],
         "truncated or corrupt PNG file"),
        ("../../etc/sneaky.jpg", lambda: b"\xff\xd8\xff\xe0 not really", "truncated or corrupt JPEG file"),
    ],
)  # fmt: skip
def test_bad_files_give_one_line_errors_naming_the_file(client, name, make, expected):
    state = client.app.state.serve
    before = set(state.root.iterdir())
    message = assert_one_line_error(post(client, name, make()), 400, display_name(name), state.root)
    assert expected in message
    assert set(state.root.iterdir()) == before, "a failed photograph leaves nothing behind"


def test_other_bad_requests(client):
    root = client.app.state.serve.root
    photo = png_bytes(np.zeros((32, 32, 3), np.uint8))
    message = assert_one_line_error(post(client, "a.png", photo, model="nope"), 400, "a.png", root)
    assert "drive-light" in message
    assert_one_line_error(post(client, "a.png", photo, threshold="1.5"), 400, "a.png", root)
    response = client.post("/api/segment", data={"model": MODEL}, files={"other": ("a.png", photo)})
    assert response.status_code == 400 and "'image'" in response.json()["error"]
    assert client.post("/api/segment", content=b"x", headers={"content-type": "text/plain"}).status_code == 400


def test_upload_and_pixel_limits():
    app = create_app(models=[MODEL], max_upload_bytes=20_000, max_megapixels=0.01)
    root = app.state.serve.root
    noise = np.random.default_rng(1).integers(0, 255, (300, 300, 3), np.uint8)
    with TestClient(app) as limited:
        # Over the limit but within the multipart slack: refused after parsing.
        message = assert_one_line_error(post(limited, "big.png", png_bytes(noise[:50])), 413, "big.png", root)
        assert "MB is over this server's limit of 0.02 MB" in message
        # Far over the limit: refused while it arrives, still naming the file.
        message = assert_one_line_error(post(limited, "huge.png", png_bytes(noise)), 413, "huge.png", root)
        assert "over this server's limit of 0.02 MB" in message
        message = assert_one_line_error(
            post(limited, "wide.png", png_bytes(np.zeros((150, 150, 3), np.uint8))), 413, "wide.png", root
        )
        assert message == "wide.png: 150x150 = 0.0225 megapixels; this server accepts at most 0.01 megapixels"
    assert not root.exists()

    # The default limit (40 megapixels) is checked on the header, before any decoding; Pillow's bomb limit too.
    app = create_app(models=[MODEL])
    with TestClient(app) as default:
        root = app.state.serve.root
        message = assert_one_line_error(post(default, "tall.png", png_header(8000, 8000)), 413, "tall.png", root)
        assert "8000x8000 = 64 megapixels" in message and "at most 40 megapixels" in message
        message = assert_one_line_error(post(default, "bomb.png", png_header(30000, 30000)), 413, "bomb.png", root)
        assert "900 megapixels" in message
        # Noise seems to hold a field of view 47 pixels wide: the scale rule would enlarge it 11.6 times.
        noise = np.random.default_rng(2).integers(0, 255, (180, 1800, 3), np.uint8)
        message = assert_one_line_error(post(default, "noise.png", png_bytes(noise)), 413, "noise.png", root)
        assert "the model would segment it at 20796x2080" in message and "is it a fundus photograph?" in message


def test_results_are_addressed_only_by_random_ids(client):
    root = client.app.state.serve.root
    for path in ("/api/results/not-a-real-id-0000/mask.png", "/api/results/..%2F..%2Fetc/mask.png"):
        response = client.get(path)
        assert response.status_code == 404 and "error" in response.json()
    assert client.get("/api/zip?ids=AAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert all(p.is_dir() and len(p.name) >= 16 for p in root.iterdir())


def test_display_name_and_binding():
    assert display_name("C:\\Users\\x\\eye 1.tif") == "eye 1.tif"
    assert display_name("../../a\x00b.png") == "ab.png" and display_name("") == "upload"
    sock = bind("127.0.0.1", 0)
    try:
        with pytest.raises(UserError, match="cannot listen .*--port"):
            bind("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
    state = create_app(models=[MODEL]).state.serve
    try:
        assert not any(line.startswith("warning") for line in startup_lines("127.0.0.1", "http://x/", state))
        lines = startup_lines("0.0.0.0", "http://127.0.0.1:8000/", state)
        assert lines[0].startswith("patch2image serve: open http://127.0.0.1:8000/")
        assert lines[1].startswith("warning: listening on 0.0.0.0")
    finally:
        state.close()


# --------------------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def live_server():
    """The app under uvicorn in a thread, on a free loopback port: (url, state)."""
    import uvicorn

    app = create_app(default_model=MODEL, allowed_hosts=["127.0.0.1", "localhost"])
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.serve
    server.should_exit = True
    thread.join(20)
    sock.close()


def test_concurrent_requests_do_not_mix_results(live_server, datasets):
    import httpx

    url, _ = live_server
    images = datasets / "DRIVE" / "test" / "images"
    photos = {
        "a.png": read_image(images / "01_test.tif"),
        "b.png": read_image(images / "02_test.tif"),
        "c.png": read_image(images / "01_test.tif")[:, ::-1],
        "d.png": read_image(images / "03_test.tif")[100:500, 50:450],
    }
    uploads = {name: png_bytes(rgb[..., ::-1].copy()) for name, rgb in photos.items()}
    with httpx.Client(base_url=url, timeout=60) as http:

        def segment(name):
            response = http.post("/api/segment", files={"image": (name, uploads[name])}, data={"model": MODEL})
            result = response.json()
            return name, result, http.get(result["urls"]["prob"]).content

        with ThreadPoolExecutor(4) as pool:
            done = list(pool.map(segment, list(uploads) * 2))
        assert http.get("/api/models", headers={"host": "attacker.example"}).status_code == 400

    model, metadata = load_model(MODEL)
    expected = {
        name: np.round(Segmenter(model, metadata)(rgb) * 65535).astype(np.uint16) for name, rgb in photos.items()
    }
    assert len({result["id"] for _, result, _ in done}) == len(done)
    for name, result, prob in done:
        assert result["name"] == name and (result["height"], result["width"]) == photos[name].shape[:2]
        np.testing.assert_array_equal(np.asarray(decode(prob)), expected[name])


def test_run_server_prints_the_address_and_cleans_up_on_ctrl_c(tmp_path):
    code = "import sys; from patch2image.serve import run_server; sys.exit(run_server(port=0, models=['drive-light']))"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("patch2image serve: open http://127.0.0.1:"), first + process.stderr.read()
        url = first.split()[3]
        kept = process.stdout.readline()
        root = Path(kept.split("results are kept in ")[1].split(" until")[0])
        assert root.is_dir()
        with urllib.request.urlopen(f"{url}api/models", timeout=10) as response:
            assert json.load(response)[0]["name"] == MODEL
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped; temporary files removed" in out
    assert not root.exists()
    assert not list(tmp_path.iterdir()), "the server writes nothing in its working folder"


# --------------------------------------------------------------------------- the page in headless Chromium


def find_chromium() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for path in map(shutil.which, names) if path), None)


class DevTools:
    """A tiny Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def set_value(self, selector: str, value: str, event: str) -> None:
        """Set a form control's value as a person would: the page hears ``event``."""
        self.evaluate(
            f"(e => {{ e.value = {json.dumps(value)}; e.dispatchEvent(new Event('{event}')); }})"
            f"(document.querySelector({json.dumps(selector)}))"
        )

    def wait_for(self, expression: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still false after {timeout} s")
            time.sleep(0.1)


@pytest.fixture
def browser(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH (chromium, chromium-browser or google-chrome); .ci/run installs it with apt")
    pytest.importorskip("websocket", reason="websocket-client is needed to drive Chromium (pip install -e '.[test]')")
    profile = tmp_path / "chromium-profile"
    args = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--remote-debugging-port=0", f"--user-data-dir={profile}",
        "--window-size=1280,1000", "about:blank",
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{chromium} did not start its DevTools server")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        yield devtools
        devtools.ws.close()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_page_segments_dropped_photographs_in_chromium(live_server, drive_photo, browser, tmp_path):
    url, _ = live_server
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photograph\n")
    browser.call("Page.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
    browser.call("Page.navigate", url=url)
    browser.wait_for("document.body && document.body.dataset.ready === '1'")
    labels = browser.evaluate("[...document.querySelectorAll('#model option')].map(o => o.textContent)")
    assert len(labels) == len(shipped_models()) and all("vessels" in label or "optic disc" in label for label in labels)
    browser.set_value("#model", MODEL, "change")

    document = browser.call("DOM.getDocument")
    node = browser.call("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#file-input")
    browser.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(drive_photo), str(bad)])
    browser.wait_for("document.querySelectorAll('.card[data-state=done], .card[data-state=failed]').length === 2")

    assert browser.evaluate("document.querySelectorAll('.card.done').length") == 1
    progress = browser.evaluate("document.getElementById('progress-text').textContent")
    assert progress.startswith("1 of 2 photographs segmented, 1 failed"), progress  # a failure is not "done"
    error = browser.evaluate("document.querySelector('.card.failed .error').textContent")
    assert error.startswith("error: notes.txt: not an image that can be read"), error
    assert browser.evaluate("getComputedStyle(document.querySelector('.card.failed .images')).display") == "none"
    status = browser.evaluate("document.querySelector('.card.done .status').textContent")
    assert " s · drive-light" in status, status
    size = browser.evaluate(
        "(c => [c.width, c.height, document.querySelector('.card.done .photo').naturalWidth])"
        "(document.querySelector('.card.done canvas'))"
    )
    assert size == [565, 584, 565]
    if os.environ.get("PATCH2IMAGE_SCREENSHOT") == "1":
        height = browser.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=height, deviceScaleFactor=1, mobile=False)
        shot = browser.call("Page.captureScreenshot", format="png")
        import base64

        # 256 colours: a third of the size, no visible difference for a documentation picture.
        decode(base64.b64decode(shot["data"])).convert("RGB").quantize(256).save(DOCS / "serve.png", optimize=True)

    # The slider redraws in the page: more green at a lower threshold, and no new request to the network.
    tinted = (
        "(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 0; i < d.length; i += 4) if (d[i + 1] > d[i] + 60 && d[i + 1] > d[i + 2] + 60) n++; return n; })"
        "(document.querySelector('.card.done canvas'))"
    )
    posts = "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/segment')).length"
    before, posted = browser.evaluate(tinted), browser.evaluate(posts)
    browser.set_value("#threshold", "0.2", "input")
    browser.wait_for(f"{tinted} > {before}", timeout=10)
    assert browser.evaluate(posts) == posted == 2

    href = browser.evaluate("document.querySelector('.card.done .dl-overlay').href")
    assert href.endswith("?threshold=0.20")
    with urllib.request.urlopen(href, timeout=20) as response:
        downloaded = decode(response.read())
    assert downloaded.size == (565, 584) and downloaded.mode == "RGB"
    with urllib.request.urlopen(browser.evaluate("document.querySelector('.card.done .dl-zip').href")) as response:
        assert len(zipfile.ZipFile(io.BytesIO(response.read())).namelist()) == 4

    # The tint's opacity is the page's: at 0 the overlay is the photograph itself, untinted.
    browser.set_value("#opacity", "0", "input")
    browser.wait_for(f"{tinted} < {before}", timeout=10)
    # On a phone's width every control stays on the screen.
    browser.call("Emulation.setDeviceMetricsOverride", width=420, height=900, deviceScaleFactor=1, mobile=True)
    widest = "Math.max(...[...document.querySelectorAll('.controls .field')].map(f => f.getBoundingClientRect().right))"
    browser.wait_for(f"{widest} <= 420", timeout=10)


def test_an_optic_disc_result_gives_the_discs_centre_and_diameter_as_segment_does(drive_photo):
    from patch2image.segment import disc_measurement

    with TestClient(create_app(models=["idrid-mini-unet", MODEL])) as disc_client:
        data = drive_photo.read_bytes()
        response = disc_client.post(
            "/api/segment", files={"image": ("01_test.tif", data)}, data={"model": "idrid-mini-unet"}
        )
        result = response.json()
        mask = np.asarray(decode(disc_client.get(result["urls"]["mask"]).content)) > 0
        assert result["optic_disc"] == disc_measurement(mask) and result["optic_disc"]["diameter"] > 20
        at_09 = disc_client.get(f"{result['urls']['optic_disc']}?threshold=0.9").json()
        assert at_09["diameter"] < result["optic_disc"]["diameter"]  # a higher threshold, a smaller disc
        archive = zipfile.ZipFile(io.BytesIO(disc_client.get(f"{result['urls']['zip']}?threshold=0.9").content))
        assert json.loads(archive.read("01_test_info.json"))["optic_disc"] == at_09
        vessels = post(disc_client, "01_test.tif", data).json()
        assert vessels["optic_disc"] is None and "optic_disc" not in vessels["urls"]
