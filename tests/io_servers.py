"""Real servers for the file tests, on free loopback ports: a static HTTP server (the
standard library's) and moto's standalone S3 server (a subprocess)."""

import functools
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import require


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Files(SimpleHTTPRequestHandler):
    """Serves a folder; ``/status/<code>`` answers that status."""

    def do_GET(self):
        if self.path.startswith("/status/"):
            self.send_error(int(self.path.rsplit("/", 1)[1]))
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_files(tmp_path):
    """``(folder, base URL)``: files written in the folder are served at the URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Files, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def s3_server(tmp_path):
    """The storage options of s3fs for moto's S3 server, started for the test."""
    try:
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        require(False, f"S3 tests need moto[server] and s3fs: {exc}")
    port = free_port()
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "AWS_ACCESS_KEY_ID": "x"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                raise RuntimeError((tmp_path / "moto.log").read_text()) from None
            time.sleep(0.2)
    try:
        yield {"endpoint_url": url, "key": "testing", "secret": "testing",
               "skip_instance_cache": True, "client_kwargs": {"region_name": "us-east-1"}}
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
