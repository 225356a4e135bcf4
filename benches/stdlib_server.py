"""The same Personalize routes (:class:`hrnn.server.personalize.PersonalizeService`) behind the
standard library's ``http.server.ThreadingHTTPServer`` (HTTP/1.1 keep-alive, a thread per
connection): the transport hrnn.server.http was measured against (benches/bench_server.py
``--with-stdlib``).

Usage: python benches/stdlib_server.py MODEL_DIR [--event-log LOG]; prints ``URL http://...``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hrnn
from hrnn.server.http import Request
from hrnn.server.personalize import PersonalizeService


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--event-log", default=None)
    args = parser.parse_args(argv)
    rec = hrnn.Recommender.load(args.model_dir, event_log=args.event_log)
    service = PersonalizeService(rec)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Tuned: without TCP_NODELAY the body's separate write waits for the client's delayed ACK
        # (~40 ms per request on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            response = service(Request("POST", self.path, {}, body))
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"URL http://127.0.0.1:{server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    rec.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
