"""Chaos: the whole pipeline as separate processes — `attackmesh serve attribution`,
`serve enrichment` and `serve siem-export` — with a real Elasticsearch-API peer (noida-db)
behind a fault-injecting proxy and a pausable network path, while a detector streams
detections over gRPC. During the stream every service is killed with SIGKILL and restarted in
turn, Elasticsearch answers 429/503/timeouts/partial bulk failures at random and refuses some
events for good, the network path to it stalls until the sink's disk queue reaches its bound.

Afterwards: every acknowledged event is in Elasticsearch (counted by event_id) or in the
dead-letter queue with a reason, Elasticsearch holds no duplicate, and nothing is lost. The
test prints the faults injected and the event counts. Bounded: about two minutes on 2 cores.
Seed with CHAOS_SEED to replay a run."""

import importlib
import json
import os
import queue
import random
import threading
import time
import urllib.request

import grpc

from conftest import Service, free_port, wait_until, write_tokens
from faults import ElasticFaultProxy, PausableTcpProxy
from test_siem_export_peers import start_noida

DETECTOR = "chaos-detector-token"
ADMIN = "chaos-admin-token"
ANALYST = "chaos-analyst-token"
EVENTS = 6000
BATCH = 100
INDEX = "attackmesh-chaos"
QUEUE_MAX = 1 << 20
BUDGET_S = 170


def http_json(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


class Detector(threading.Thread):
    """Streams every batch over Ingest until each one is acknowledged DURABLE, resending what a
    broken stream or a RETRY answer left unacknowledged (at least once, as a detector must)."""

    def __init__(self, port, batches, ingest_pb2_grpc, durable, deadline):
        super().__init__(daemon=True)
        self.port, self.batches, self.stub_cls, self.durable = port, batches, ingest_pb2_grpc, durable
        self.deadline = deadline
        self.acked = {}  # batch_id -> accepted count
        self.rejected = 0
        self.retries = 0
        self.reconnects = 0
        self.errors = []

    def run(self):
        meta = (("authorization", f"Bearer {DETECTOR}"),)
        while len(self.acked) < len(self.batches) and time.monotonic() < self.deadline:
            todo = [b for b in self.batches if b.batch_id not in self.acked]
            channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
            outbox = queue.Queue()
            stub = self.stub_cls.IngestServiceStub(channel)

            def requests():
                while True:
                    item = outbox.get()
                    if item is None:
                        return
                    yield item

            try:
                answers = stub.Ingest(requests(), metadata=meta, timeout=60)
                for batch in todo:
                    outbox.put(batch)
                    answer = next(answers)
                    if answer.status == self.durable:
                        self.acked[answer.batch_id] = answer.accepted
                        self.rejected += answer.rejected
                    else:
                        self.retries += 1
                        wait = answer.retry_after.seconds + answer.retry_after.nanos / 1e9
                        time.sleep(min(max(wait, 0.05), 2.0))
                        break
                outbox.put(None)
            except (grpc.RpcError, StopIteration):
                self.reconnects += 1
                time.sleep(0.2)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(e)
                return
            finally:
                outbox.put(None)
                channel.close()


def detections(events_pb2, common_pb2):
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.GetCurrentTime()
    batches = []
    for b in range(EVENTS // BATCH):
        events = []
        for i in range(b * BATCH, (b + 1) * BATCH):
            line = json.dumps({"event_type": "alert", "src_ip": "198.51.100.7", "dest_port": 22, "n": i})
            events.append(events_pb2.DetectionEvent(
                event_id=f"chaos-{i:06d}", timestamp=ts, source_service="suricata-edge-01",
                detector_kind=common_pb2.DETECTOR_KIND_TRAFFIC_MONITOR, event_type="suricata.alert",
                source=common_pb2.Endpoint(ip="198.51.100.7", port=40000 + i % 20000),
                destination=common_pb2.Endpoint(ip="10.0.0.5", port=22),
                severity=common_pb2.SEVERITY_MEDIUM, description="ET SCAN Potential SSH Scan",
                attributes={"alert.signature": "ET SCAN Potential SSH Scan", "proto": "TCP"},
                original=line, original_format="suricata-eve"))
        batches.append(importlib.import_module("attackmesh.v1.ingest_pb2").IngestRequest(batch_id=b + 1, events=events))
    return batches


def dead_letters(data_dir, sink):
    """Dead letters by event id, from the sink's `dead-*.ndjson` files (beside them: `FORMAT`)."""
    out = {}
    for path in sorted((data_dir / "dlq" / sink).glob("dead-*.ndjson")):
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                if entry.get("event_id"):
                    out.setdefault(entry["event_id"], entry.get("reason", ""))
    return out


def sink_status(port, export_pb2, export_pb2_grpc):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = export_pb2_grpc.ExportServiceStub(channel)
        answer = stub.GetSinkStatus(export_pb2.GetSinkStatusRequest(),
                                    metadata=(("authorization", f"Bearer {ANALYST}"),), timeout=5)
        return {s.name: s for s in answer.sinks}["elasticsearch"]
    finally:
        channel.close()


def es_ids(base):
    http_json("POST", f"{base}/{INDEX}/_refresh")
    count = http_json("GET", f"{base}/{INDEX}/_count")["count"]
    hits = http_json("POST", f"{base}/{INDEX}/_search?size={count + 10}",
                     {"query": {"match_all": {}}, "_source": False, "size": count + 10})["hits"]["hits"]
    return count, [h["_id"] for h in hits]


def test_chaos_loses_no_acknowledged_event(tmp_path, proto_stubs, capsys):
    started = time.monotonic()
    seed = int(os.environ.get("CHAOS_SEED", time.time()))
    rng = random.Random(seed)
    events_pb2, common_pb2 = proto_stubs["events_pb2"], proto_stubs["common_pb2"]
    ingest_pb2_grpc = importlib.import_module("attackmesh.v1.ingest_pb2_grpc")
    export_pb2 = importlib.import_module("attackmesh.v1.export_pb2")
    export_pb2_grpc = importlib.import_module("attackmesh.v1.export_pb2_grpc")
    durable = common_pb2.ACK_STATUS_DURABLE

    noida, noida_log, noida_port = start_noida(tmp_path)
    es = f"http://127.0.0.1:{noida_port}"
    wait_until(lambda: http_json("GET", es + "/").get("version"), noida, noida_log, "noida-db")
    poison = {f"chaos-{i:06d}" for i in rng.sample(range(EVENTS), 12)}
    faults = ElasticFaultProxy(noida_port, seed, poison=poison)
    path = PausableTcpProxy(faults.port)

    tokens = write_tokens(tmp_path / "tokens.yaml", {
        "chaos-detector": ("detector", DETECTOR), "chaos-ops": ("admin", ADMIN), "chaos-soc": ("analyst", ANALYST)})
    (tmp_path / "admin.token").write_text(ADMIN + "\n")
    ports = {name: free_port() for name in ("attribution", "enrichment", "siem_export")}
    export_data = tmp_path / "export-data"
    config = {
        "auth": {"token_files": [str(tokens)]},
        "telemetry": {"log_level": "info"},
        "shutdown_grace": "3s",
        "listen": {name: f"127.0.0.1:{port}" for name, port in ports.items()},
        "enrichment": {
            "data_dir": str(tmp_path / "enrichment-data"),
            "attribution": {"token_file": str(tmp_path / "admin.token")},
            "export": {"token_file": str(tmp_path / "admin.token")},
        },
        "siem_export": {
            "data_dir": str(export_data),
            "elasticsearch": {"url": f"http://127.0.0.1:{path.port}", "index": INDEX, "request_timeout": "2s"},
            "queue": {"max_bytes": QUEUE_MAX, "segment_bytes": 64 * 1024, "retry_after": "200ms"},
            "batch": {"max_events": 200},
            "retry": {"initial_backoff": "50ms", "max_backoff": "1s", "max_duration": "90s",
                      "request_timeout": "2s", "max_in_flight": 2},
        },
    }
    config_path = tmp_path / "chaos.json"
    config_path.write_text(json.dumps(config))
    services = {name.replace("_", "-"): Service(name.replace("_", "-"), config_path, tmp_path, port)
                for name, port in ports.items()}
    table = {}
    try:
        for name in ("attribution", "siem-export", "enrichment"):
            services[name].start()
        detector = Detector(ports["enrichment"], detections(events_pb2, common_pb2), ingest_pb2_grpc, durable,
                            deadline=started + BUDGET_S - 40)
        detector.start()
        total = len(detector.batches)

        def at(fraction):
            while len(detector.acked) < fraction * total and detector.is_alive():
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.1))

        # Kill -9 and restart each service in turn while the detector streams.
        at(0.1)
        services["attribution"].kill9()
        time.sleep(1.0)
        services["attribution"].start(wait=False)
        at(0.25)
        services["enrichment"].kill9()
        services["enrichment"].start()
        at(0.4)
        services["siem-export"].kill9()
        services["siem-export"].start()
        # Stall the network path to Elasticsearch until the queue reaches its bound.
        at(0.5)
        path.pause()
        paused_at = time.monotonic()
        retries_before = detector.retries
        peak = 0
        while time.monotonic() < paused_at + 25:
            peak = max(peak, sink_status(ports["siem_export"], export_pb2, export_pb2_grpc).queue_bytes)
            full = peak >= QUEUE_MAX * 0.9 and detector.retries > retries_before
            if full and time.monotonic() > paused_at + 5:
                break
            time.sleep(0.2)
        table["network path to ES paused (s)"] = round(time.monotonic() - paused_at, 1)
        table["RETRY answers while paused"] = detector.retries - retries_before
        table["queue peak bytes / bound"] = f"{peak} / {QUEUE_MAX}"
        path.resume()
        at(0.8)
        services["siem-export"].kill9()
        services["siem-export"].start()
        detector.join(timeout=max(1, started + BUDGET_S - 35 - time.monotonic()))
        assert not detector.is_alive(), "the detector could not get every batch acknowledged in time"
        assert not detector.errors, detector.errors

        # Let the sink drain, then stop injecting faults for the last stragglers.
        drain_by = time.monotonic() + 30
        faults.enabled = False
        while time.monotonic() < drain_by:
            if sink_status(ports["siem_export"], export_pb2, export_pb2_grpc).queue_depth == 0:
                break
            time.sleep(0.3)
        status = sink_status(ports["siem_export"], export_pb2, export_pb2_grpc)
        assert not faults.errors, faults.errors[:3]
        assert status.queue_depth == 0, f"elasticsearch queue did not drain: {status}"

        count, ids = es_ids(es)
        delivered = set(ids)
        dlq = dead_letters(export_data, "elasticsearch")
        sent = {e.event_id for b in detector.batches for e in b.events}
        acked = {e.event_id for b in detector.batches if b.batch_id in detector.acked for e in b.events}
        lost = acked - delivered - set(dlq)
        duplicates = count - len(delivered)
        unknown = delivered - sent

        for what, n in sorted(faults.counts.items()):
            table[f"ES {what}"] = n
        table["network pauses"] = path.pauses
        for name, svc in services.items():
            table[f"kill -9 {name}"] = svc.kills
        table["detector reconnects / RETRY answers"] = f"{detector.reconnects} / {detector.retries}"
        table["events sent"] = len(sent)
        table["events acknowledged"] = len(acked)
        table["events rejected"] = detector.rejected
        table["events delivered to ES"] = len(delivered & sent)
        table["events dead-lettered"] = len(set(dlq) & sent)
        table["ES documents / duplicates"] = f"{count} / {duplicates}"
        table["events lost"] = len(lost)
        table["elapsed (s)"] = round(time.monotonic() - started, 1)
        width = max(len(k) for k in table)
        with capsys.disabled():
            print(f"\nchaos (seed {seed}):")
            print("\n".join(f"  {k.ljust(width)}  {v}" for k, v in table.items()))

        assert acked == sent, f"{len(sent - acked)} events never acknowledged"
        assert not lost, f"acknowledged but neither delivered nor dead-lettered: {sorted(lost)[:20]}"
        assert duplicates == 0 and not unknown
        assert all(reason for reason in dlq.values()), "every dead letter carries a reason"
        assert poison <= set(dlq), "events Elasticsearch refused for good are dead-lettered"
        assert not (poison & delivered)
        assert all("400" in dlq[p] or "mapper_parsing" in dlq[p] for p in poison), [dlq[p] for p in poison]
        assert not (set(dlq) - poison), "only refused events are dead-lettered (retries outlast every fault)"
        assert sum(faults.counts.values()) > 0 and path.pauses == 1
        assert time.monotonic() - started < BUDGET_S + 10
    finally:
        for svc in services.values():
            svc.stop()
        path.close()
        faults.close()
        noida.kill()
        noida.wait(timeout=10)
