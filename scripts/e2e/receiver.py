#!/usr/bin/env python3
"""A webhook receiver for the e2e tests and the demo, independent of ferry:
verifies each request with the Standard Webhooks reference library
(`standardwebhooks` from PyPI) and appends one JSON line per request to LOG:
{"path", "webhook_id", "timestamp", "verified", "error", "body"}.

A path that starts with /flakyN/ (N seconds) answers 500 to everything
sent there during the N seconds after its first request, then as usual:
a receiver that is down for a while.

usage: receiver.py PORT LOG SECRET
"""
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

port, log_path, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
verifier = Webhook(secret)
lock = threading.Lock()
first_seen = {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            verifier.verify(body, headers)
            verified, error = True, None
        except Exception as e:  # noqa: BLE001 — any failure is "not verified"
            verified, error = False, f"{type(e).__name__}: {e}"
        status = 200 if verified else 401
        flaky = re.match(r"^/flaky(\d+)/", self.path)
        if flaky:
            with lock:
                start = first_seen.setdefault(flaky.group(0), time.monotonic())
            if time.monotonic() - start < int(flaky.group(1)):
                status = 500
        line = {
            "status": status,
            "path": self.path,
            "webhook_id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "verified": verified,
            "error": error,
            "body": body.decode("utf-8", "replace"),
        }
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"bad signature" if status == 401 else b"down")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
