"""A stand-in for a remote airport registry, served by the demo itself (no network).

``GET /airports/<IATA>`` answers the airport's row of ``airports.csv`` as JSON after
``delay`` seconds, as a remote API would take its time; 404 for an unknown code. It
listens on 127.0.0.1 (a free port), in threads of the demo's process.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .dataset import airport_rows


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default (5) makes a burst of connections wait for a retry


class Registry:
    """The server, running while the block runs; ``url`` is its base URL."""

    def __init__(self, delay: float = 0.02):
        rows = {row["iata"]: row for row in airport_rows()}
        delay_seconds = delay

        class Answer(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per client thread
            # Headers and body leave in two writes: without this, Nagle's algorithm holds
            # the body until the client's delayed ACK (40 ms) of the headers.
            disable_nagle_algorithm = True

            def do_GET(self):
                time.sleep(delay_seconds)
                row = rows.get(self.path.rpartition("/")[2])
                body = json.dumps(row).encode() if row else b"{}"
                self.send_response(200 if row else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass  # the demo prints its own account

        self.server = _Server(("127.0.0.1", 0), Answer)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Registry:
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
