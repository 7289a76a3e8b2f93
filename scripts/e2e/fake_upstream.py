#!/usr/bin/env python3
"""Stand-in for the LLM and embedding provider behind Open WebUI (stdlib only).

OpenAI-compatible: GET /v1/models, POST /v1/chat/completions (stream and not),
POST /v1/embeddings. The model answers "ECHO: " + the last user message, so a
test can prove that a document's text reached the model through retrieval.
Embeddings are a hashed bag of words: deterministic, and similar texts are
near, so retrieval really finds the document that shares a rare word.

usage: fake_upstream.py PORT [LOG_FILE]
"""
import hashlib
import json
import math
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIM = 256
MODELS = ["fake-model", "fake-embed"]
LOG = open(sys.argv[2], "a", buffering=1) if len(sys.argv) > 2 else None


def embed(text):
    vec = [0.0] * DIM
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
        vec[h % DIM] += 1.0 if (h >> 16) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def last_user(messages):
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
            return c or ""
    return ""


def answer_for(body):
    text = last_user(body.get("messages", []))
    # Open WebUI's retrieval query generation: answer with the user's own
    # question as the one search query.
    if '"queries"' in text or "search queries" in text.lower():
        m = re.findall(r"USER:\s*(.*?)(?:\n|</chat_history>)", text, re.S)
        q = m[-1].strip() if m else text[-500:]
        return json.dumps({"queries": [q]})
    return "ECHO: " + text


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "ferry-e2e"} for m in MODELS]})
        else:
            self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        # Test control: a model that finishes loading (appears in /models).
        if self.path == "/control/models":
            if body.get("add") and body["add"] not in MODELS:
                MODELS.append(body["add"])
            self.send_json(200, {"models": MODELS})
            return
        if LOG:
            LOG.write(json.dumps({"t": time.time(), "path": self.path, "body": body}) + "\n")
        if self.path.endswith("/embeddings"):
            inputs = body.get("input", [])
            if isinstance(inputs, str):
                inputs = [inputs]
            self.send_json(200, {"object": "list", "model": body.get("model"),
                                 "data": [{"object": "embedding", "index": i, "embedding": embed(t)}
                                          for i, t in enumerate(inputs)],
                                 "usage": {"prompt_tokens": 0, "total_tokens": 0}})
            return
        if not self.path.endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": "not found"}})
            return
        model = body.get("model", "fake-model")
        content = answer_for(body)
        usage = {"prompt_tokens": len(content.split()), "completion_tokens": len(content.split()),
                 "total_tokens": 2 * len(content.split())}
        if not body.get("stream"):
            self.send_json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                                 "model": model, "usage": usage,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        pieces = max(1, min(12, len(content) // 8))
        size = math.ceil(len(content) / pieces)
        for i in range(0, len(content), size):
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "choices": [{"index": 0, "delta": {"content": content[i:i + size]}}]}
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
            # Far enough apart that a busy Open WebUI still relays them apart.
            time.sleep(0.1)
        final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": model, "usage": usage,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
