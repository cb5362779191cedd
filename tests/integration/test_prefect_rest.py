"""The REST adapter against a real HTTP server that answers like a Prefect server under SQLite contention."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from opsflow.adapters.prefect_rest import RETRY_AFTER_S, PrefectRest
from opsflow.errors import AdapterError


class Busy(BaseHTTPRequestHandler):
    """GET /api/flow_runs/<id>: 503 ``busy`` times (Prefect's "lost a race for SQLite, try again"), then the run."""

    busy = 0
    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        if type(self).calls <= type(self).busy:
            body, status = b'{"exception_message": "Service Unavailable"}', 503
        else:
            body, status = json.dumps({"id": "r1", "state": {"type": "COMPLETED", "name": "Completed"}}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api"
    httpd.shutdown()


def test_a_busy_answer_is_tried_again_until_the_server_answers(server: str) -> None:
    Busy.busy, Busy.calls = 3, 0
    with PrefectRest(server) as rest:
        assert rest.flow_run_end("r1") == "Completed: no message"
    assert Busy.calls == 4


def test_a_server_busy_for_longer_than_the_retries_is_an_adapter_error_naming_the_status(server: str) -> None:
    Busy.busy, Busy.calls = 100, 0
    with PrefectRest(server) as rest, pytest.raises(AdapterError, match="503"):
        rest.flow_run("r1")
    assert Busy.calls == len(RETRY_AFTER_S) + 1
