"""``patch2image serve`` against other web pages and slow or careless clients.

Each case is a refusal or a limit: a cross-site POST, a Host that is not this computer (on every loopback
address, IPv6 included), a connection that sends nothing, headers or a body sent a byte at a time, more
connections than the cap, a ZIP that repeats ids or outgrows the storage limit, an upload dropped half
way, SIGTERM, and a temporary folder left by a server killed outright. The slow clients are raw sockets
with a deadline of their own, against a server whose limits are a second or two, so no test can hang.
"""

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from patch2image.segment import _started
from patch2image.serve import ServeState, create_app
from patch2image.serve.app import bind
from patch2image.serve.guard import Limits, allowed_hosts, host_name, server_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

MODEL = "drive-light"
CLIENT_DEADLINE = 15.0  # seconds any raw client below waits at most, whatever the server does


def photo_png() -> bytes:
    """A small synthetic photograph without a field of view: segmented at its own size, fast."""
    rgb = np.full((120, 160, 3), 120, np.uint8)
    rgb[40:80, 20:140, 0] = 200
    ok, data = cv2.imencode(".png", rgb)
    assert ok
    return data.tobytes()


def post(client, headers=None):
    return client.post(
        "/api/segment", files={"image": ("eye.png", photo_png())}, data={"model": MODEL}, headers=headers or {}
    )


# --------------------------------------------------------------------------- other sites


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(models=[MODEL])) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example.com"},
        {"origin": "null"},  # a sandboxed frame or a file:// page
        {"origin": "http://testserver.evil.example.com"},
        {"referer": "http://evil.example.com/page.html"},
        {"origin": "https://testserver:8443"},  # same name, another port: another site
    ],
)
def test_a_cross_site_post_is_refused(client, headers):
    response = post(client, headers)
    assert response.status_code == 403, response.text
    message = response.json()["error"]
    assert "another web page" in message and "\n" not in message


def test_the_servers_own_page_and_clients_without_origin_are_answered(client):
    assert post(client, {"origin": "http://testserver"}).status_code == 200
    assert post(client, {"referer": "http://testserver/"}).status_code == 200
    assert post(client).status_code == 200  # curl, scripts: no Origin, no Referer
    # Reading is not changing: a GET from elsewhere is answered (the browser keeps its answer from that page).
    assert client.get("/api/models", headers={"origin": "http://evil.example.com"}).status_code == 200


@pytest.mark.parametrize("bound", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_every_loopback_address_gets_the_host_check(bound):
    hosts = allowed_hosts(bound)
    assert hosts is not None and {"localhost", "127.0.0.1", "::1"} <= hosts
    assert host_name("[::1]:8000") == "::1" and host_name("127.0.0.1:8000") == "127.0.0.1"
    assert host_name("evil.example.com") == "evil.example.com"
    with TestClient(create_app(models=[MODEL], allowed_hosts=hosts)) as guarded:
        refused = guarded.get("/api/models", headers={"host": "evil.example.com:8000"})
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/json"  # the API's documented JSON error
        assert refused.json()["error"].startswith("Host evil.example.com:8000: ")
        for host in ("[::1]:8000", "127.0.0.1:8000", "localhost:8000"):
            assert guarded.get("/api/models", headers={"host": host}).status_code == 200, host


def test_addresses_beyond_this_computer_get_no_host_check():
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("::") is None and allowed_hosts("192.168.1.5") is None


def _start_server(tmp_path: Path, host: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    code = (
        "import sys; from patch2image.serve import run_server; "
        f"sys.exit(run_server(host={host!r}, port=0, models=[{MODEL!r}]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    first = process.stdout.readline()
    assert first.startswith("patch2image serve: open http://"), first + process.stderr.read()
    return process, first.split()[3]


def _stop(process: subprocess.Popen) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return out, err


def _get(url: str, host: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=CLIENT_DEADLINE) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_serving_on_ipv6_loopback_checks_the_host(tmp_path):
    try:
        socket.socket(socket.AF_INET6).close()
        bind("::1", 0).close()
    except Exception:
        pytest.skip("no IPv6 loopback here")
    process, url = _start_server(tmp_path, "::1")
    try:
        assert url.startswith("http://[::1]:")
        status, body = _get(f"{url}api/models", host="evil.example.com")
        assert status == 400 and body["error"].startswith("Host evil.example.com: ")
        status, body = _get(f"{url}api/models")
        assert status == 200 and body[0]["name"] == MODEL
    finally:
        process.send_signal(signal.SIGINT)
        _stop(process)


# --------------------------------------------------------------------------- slow clients


TIGHT = Limits(idle_timeout=1.0, header_timeout=1.5, body_timeout=1.5, min_body_rate=1000.0, max_connections=4)


@pytest.fixture(scope="module")
def tight_server():
    """The app under uvicorn, in a thread, with limits of a second or two: (port, state, its log lines)."""
    import uvicorn

    lines: list[str] = []
    state = ServeState([MODEL], log=lines.append)
    app = create_app(state, allowed_hosts=allowed_hosts("127.0.0.1"), limits=TIGHT)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(server_config(app, TIGHT))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield sock.getsockname()[1], state, lines
    server.should_exit = True
    thread.join(20)
    sock.close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=CLIENT_DEADLINE)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout bounds each read)."""
    data = b""
    deadline = time.monotonic() + CLIENT_DEADLINE
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open; got {data[:200]!r}")


def _trickle(sock: socket.socket, data: bytes, every: float = 0.2) -> bytes:
    """Send ``data`` a byte at a time until the server answers or closes; what it answered."""
    sock.settimeout(every)
    deadline = time.monotonic() + CLIENT_DEADLINE
    for byte in data:
        assert time.monotonic() < deadline, "the server never cut the slow client off"
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return b""
        sock.settimeout(CLIENT_DEADLINE)
        return answer + (_read_until_closed(sock) if answer else b"")
    sock.settimeout(CLIENT_DEADLINE)
    return _read_until_closed(sock)


def test_a_silent_connection_is_closed(tight_server):
    port, _, _ = tight_server
    with _connect(port) as sock:
        assert _read_until_closed(sock) == b""


def test_headers_sent_a_byte_at_a_time_are_cut_off(tight_server):
    port, _, _ = tight_server
    request = b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Padding: " + b"a" * 500 + b"\r\n\r\n"
    with _connect(port) as sock:
        answer = _trickle(sock, request)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"].startswith("request: the headers took over")


def _upload_head(length: int) -> bytes:
    return (
        b"POST /api/segment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n" + f"Content-Length: {length}\r\n\r\n".encode()
    )


BODY_START = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="slow.png"\r\n\r\n'


def test_a_body_sent_a_byte_at_a_time_is_cut_off(tight_server):
    port, _, lines = tight_server
    with _connect(port) as sock:
        sock.sendall(_upload_head(100_000))
        answer = _trickle(sock, BODY_START + b"\x89PNG" * 1000)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert "the body arrived too slowly" in json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert _wait_for(lambda: any("too slow" in line for line in lines)), lines


def test_a_stalled_body_is_cut_off(tight_server):
    port, _, _ = tight_server
    with _connect(port) as sock:
        sock.sendall(_upload_head(100_000) + BODY_START + b"\x89PNG")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"no byte for 1.5 s" in answer, answer[:300]


def test_connections_past_the_cap_are_refused(tight_server):
    port, _, _ = tight_server
    held = [_connect(port) for _ in range(TIGHT.max_connections)]
    try:
        time.sleep(0.2)  # the server has accepted them
        with _connect(port) as extra:
            answer = _read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"at most 4 connections" in answer, answer[:200]
    finally:
        for sock in held:
            sock.close()
    assert _wait_for(lambda: _get(f"http://127.0.0.1:{port}/api/models")[0] == 200)


def _wait_for(condition, seconds: float = CLIENT_DEADLINE) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_an_upload_dropped_half_way_is_one_log_line(tight_server):
    port, _, lines = tight_server
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("uvicorn.error").addHandler(handler)
    before = len(lines)
    try:
        with _connect(port) as sock:
            sock.sendall(_upload_head(1_000_000) + BODY_START + b"\x89PNG" * 2000)
        assert _wait_for(lambda: len(lines) > before)
        time.sleep(0.3)  # time for a traceback, if one were coming
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    new = lines[before:]
    assert len(new) == 1 and "stopped before the request was complete" in new[0], new
    assert "\n" not in new[0] and "closed the connection" in new[0]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], [r.getMessage() for r in records]


# --------------------------------------------------------------------------- ZIPs


def test_zip_deduplicates_ids_and_counts_against_the_storage_limit():
    app = create_app(models=[MODEL])
    state = app.state.serve
    with TestClient(app) as test_client:
        result = post(test_client).json()
        once = zipfile.ZipFile(io.BytesIO(test_client.get("/api/zip", params={"ids": result["id"]}).content))
        repeated = test_client.get("/api/zip", params={"ids": ",".join([result["id"]] * 1000)})
        assert repeated.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(repeated.content)).namelist()
        assert names == once.namelist() and len(names) == len(set(names)) >= 4  # one result's files, once
        assert state.zip_bytes == 0

        state.max_stored_bytes = state.stored_bytes + 1000  # the ZIP's bytes no longer fit beside the results
        for url in (f"/api/zip?ids={result['id']}", result["urls"]["zip"]):
            refused = test_client.get(url)
            assert refused.status_code == 413, refused.text
            assert "over this server's storage limit" in refused.json()["error"]
        assert state.zip_bytes == 0 and not [p for p in state.root.iterdir() if p.is_file()]


# --------------------------------------------------------------------------- stopping and starting


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_sigterm_says_stopped_and_a_killed_servers_folder_is_removed_at_start(tmp_path):
    stale = tmp_path / f"patch2image-serve-{_dead_pid()}-1-abcdefgh"
    (stale / "sometoken0123456789").mkdir(parents=True)
    (stale / "sometoken0123456789" / "prob.npy").write_bytes(b"x" * 1000)
    in_use = tmp_path / f"patch2image-serve-{os.getpid()}-{_started(os.getpid()) or 0}-ijklmnop"
    in_use.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    process, url = _start_server(work, "127.0.0.1", env={"TMPDIR": str(tmp_path)})
    try:
        root = Path(process.stdout.readline().split("results are kept in ")[1].split(" until")[0])
        assert not stale.exists(), "the folder of a server that is gone is removed at start"
        assert in_use.is_dir(), "the folder of a running server is left alone"
        assert root.parent == tmp_path and root.is_dir()
        assert _get(f"{url}api/models")[0] == 200
        process.send_signal(signal.SIGTERM)
        out, err = _stop(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "patch2image serve: stopped; temporary files removed" in out
    assert "Traceback" not in err
    assert not root.exists()
