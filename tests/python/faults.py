"""Fault injectors for the chaos suite, all on 127.0.0.1:

- `PausableTcpProxy`: relays TCP to an upstream and can stall the path (connections stay open,
  bytes stop flowing, new connections wait), like a partitioned network or a hung load balancer.
- `ElasticFaultProxy`: an HTTP proxy in front of a real Elasticsearch-API peer that answers
  `_bulk` requests with faults at random: whole-request 429 and 503, timeouts (before or after
  the peer applied the request), partial bulk failures (some items held back and answered 429 or
  503 per item, the rest forwarded), and permanent per-item 400s for chosen "poison" ids.

Every injected fault is counted, so the test can print what it did."""

import collections
import gzip
import http.client
import json
import random
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PausableTcpProxy:
    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.running = threading.Event()
        self.running.set()
        self.closed = False
        self.pauses = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self):
        self.pauses += 1
        self.running.clear()

    def resume(self):
        self.running.set()

    def close(self):
        self.closed = True
        self.running.set()
        self.sock.close()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        self.running.wait()
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.running.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _bulk_pairs(body):
    """(action line, source line) pairs of a `_bulk` body, with each item's `_id`."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    pairs = []
    i = 0
    while i < len(lines):
        action = json.loads(lines[i])
        op = next(iter(action))
        if op == "delete":
            pairs.append((op, action[op].get("_id"), [lines[i]]))
            i += 1
        else:
            pairs.append((op, action[op].get("_id"), lines[i:i + 2]))
            i += 2
    return pairs


class ElasticFaultProxy:
    """Forwards to `upstream_port`; `_bulk` requests meet faults with probability `rate` while
    `enabled`. Ids in `poison` are always refused with a permanent per-item 400."""

    def __init__(self, upstream_port, seed, rate=0.35, timeout_sleep=3.0, poison=()):
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.rate = rate
        self.timeout_sleep = timeout_sleep
        self.poison = set(poison)
        self.enabled = True
        self.counts = collections.Counter()
        self.errors = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                try:
                    self._handle_inner()
                except OSError:
                    # The sink gave up (its request timeout) and closed the connection.
                    self.close_connection = True
                except Exception:  # noqa: BLE001 - a proxy bug must show, not hang the sink
                    proxy.errors.append(traceback.format_exc())
                    self.close_connection = True

            def _handle_inner(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("content-length", "content-encoding", "accept-encoding", "host", "connection")}
                if "/_bulk" in self.path and self.command in ("POST", "PUT"):
                    status, payload = proxy._bulk(self.path, headers, body)
                else:
                    status, payload = proxy._forward(self.command, self.path, headers, body)
                if status is None:
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def _roll(self):
        with self.lock:
            return self.rng.random()

    def _forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _bulk(self, path, headers, body):
        pairs = _bulk_pairs(body)
        poisoned = [i for i, (_, _id, _) in enumerate(pairs) if _id in self.poison]
        roll = self._roll() if self.enabled else 1.0
        r = self.rate
        if roll < r * 0.25:
            self._count("bulk answered 429")
            return 429, json.dumps({"error": {"type": "es_rejected_execution_exception",
                                              "reason": "rejected execution (queue capacity 200)"},
                                    "status": 429}).encode()
        if roll < r * 0.4:
            self._count("bulk answered 503")
            return 503, json.dumps({"error": {"type": "unavailable_shards_exception",
                                              "reason": "primary shard is not active"}, "status": 503}).encode()
        if roll < r * 0.5:
            self._count("bulk timed out before applying")
            time.sleep(self.timeout_sleep)
            return None, b""
        if roll < r * 0.6:
            # Elasticsearch applied what it could (never the poison items, which it refuses
            # whenever it sees them), and the answer is lost.
            self._count("bulk timed out after applying")
            applied = b"".join(line + b"\n" for i, pair in enumerate(pairs) if i not in poisoned for line in pair[2])
            if applied:
                self._forward("POST", path, headers, applied)
            time.sleep(self.timeout_sleep)
            return None, b""
        held = set(poisoned)
        transient = {}
        if roll < r:
            # Partial failure: hold back a random third of the items with per-item 429/503.
            for i in range(len(pairs)):
                if i not in held and self._roll() < 0.33:
                    transient[i] = 429 if self._roll() < 0.5 else 503
            if transient:
                self._count("bulk partially failed")
                self._count("items failed transiently", len(transient))
        if poisoned:
            self._count("items refused for good (400)", len(poisoned))
        forward = [i for i in range(len(pairs)) if i not in held and i not in transient]
        answers = {}
        took = 0
        if forward:
            sub = b"".join(line + b"\n" for i in forward for line in pairs[i][2])
            status, payload = self._forward("POST", path, headers, sub)
            if status != 200:
                return status, payload
            result = json.loads(payload)
            took = result.get("took", 0)
            for i, item in zip(forward, result["items"]):
                answers[i] = item
        for i, code in transient.items():
            op, _id, _ = pairs[i]
            kind = "es_rejected_execution_exception" if code == 429 else "unavailable_shards_exception"
            answers[i] = {op: {"_id": _id, "status": code, "error": {"type": kind, "reason": "injected"}}}
        for i in poisoned:
            op, _id, _ = pairs[i]
            answers[i] = {op: {"_id": _id, "status": 400, "error": {
                "type": "mapper_parsing_exception", "reason": "failed to parse field [event.original]"}}}
        items = [answers[i] for i in range(len(pairs))]
        errors = any(next(iter(item.values())).get("status", 200) >= 300 for item in items)
        return 200, json.dumps({"took": took, "errors": errors, "items": items}).encode()
