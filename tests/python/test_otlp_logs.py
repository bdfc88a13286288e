"""OpenTelemetry logs into attackmesh, sent by the OpenTelemetry Python SDK's own OTLP log
exporters (gRPC and HTTP/protobuf) — an independent implementation of OTLP.

1. `serve all`: Falco-shaped records (as falcosidekick's OTLP logs output writes them) and generic
   security records, logged inside a span, reach the file sink attributed; a record with a bad
   field is counted in `partial_success` over gRPC and over HTTP.
2. Separate processes: while both exporters send, siem-export is killed with SIGKILL and
   restarted. Every record whose export the SDK saw acknowledged is in the file sink exactly once.
"""

import json
import threading
import time
import urllib.request

import grpc
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from conftest import BIN, free_port, spawn, stop, wait_until, write_tokens
from test_chaos import Service

DETECTOR = "otlp-detector-token"
FALCO_RULE = "Terminal shell in container"


class Collect(LogRecordProcessor):
    """Keeps what a logger emits, so the test decides when a batch is exported and sees the
    exporter's verdict on it (the SDK's batch processor would hide it)."""

    def __init__(self):
        self.records = []

    def on_emit(self, log_record):
        self.records.append(ReadableLogRecord(log_record=log_record.log_record, resource=log_record.resource,
                                              instrumentation_scope=log_record.instrumentation_scope,
                                              limits=log_record.limits))

    def take(self):
        taken, self.records = self.records, []
        return taken

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def logger(service, scope):
    collect = Collect()
    provider = LoggerProvider(resource=Resource.create({"service.name": service, "host.name": "node-7"}))
    provider.add_log_record_processor(collect)
    return provider.get_logger(scope), collect


def falco_alert(log, tag):
    """One alert the way falcosidekick's OTLP logs output logs it (output as body, INFO level,
    Falco's fields as string attributes, Go's time format)."""
    now = time.gmtime()
    log.emit(body=f"Shell spawned in a container otlp-falco-{tag}", severity_number=SeverityNumber.INFO,
             severity_text="INFO",
             attributes={"priority": "Warning", "source": "syscall", "rule": FALCO_RULE, "hostname": "node-7",
                         "tags": "container,mitre_execution,T1059",
                         "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", now) + f".{time.time_ns() % 10**9:09d} +0000 UTC"})


def security_event(log, body):
    log.emit(body=body, severity_number=SeverityNumber.ERROR, event_name="auth.bruteforce",
             attributes={"security_rule.name": "SSH brute force",
                         "security_rule.reference": "https://attack.mitre.org/techniques/T1110/001/",
                         "source.address": "203.0.113.9", "user.name": "root"})


def sink_lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(path, bodies, proc, log, timeout=90):
    """Waits until the sink holds an event for every body; returns the sink's events."""
    def found():
        held = {e["description"] for e in sink_lines(path)}
        return bodies <= held
    wait_until(found, proc, log, "file sink", timeout=timeout)
    return sink_lines(path)


def bad_record_request():
    """A good record and one whose severity_number OTLP does not define."""
    now = time.time_ns()
    records = [logs_pb2.LogRecord(time_unix_nano=now, body=common_pb2.AnyValue(string_value="fine")),
               logs_pb2.LogRecord(time_unix_nano=now, severity_number=99,
                                  body=common_pb2.AnyValue(string_value="bad severity"))]
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        scope_logs=[logs_pb2.ScopeLogs(log_records=records)])])


def config(tmp_path, ports, http_port):
    tokens = write_tokens(tmp_path / "tokens.yaml", {"otlp-detector": ("detector", DETECTOR),
                                                     "otlp-ops": ("admin", "otlp-admin-token")})
    (tmp_path / "admin.token").write_text("otlp-admin-token\n")
    return {
        "auth": {"token_files": [str(tokens)]},
        "telemetry": {"log_level": "info"},
        "shutdown_grace": "3s",
        "listen": {name: f"127.0.0.1:{port}" for name, port in ports.items()},
        "enrichment": {
            "data_dir": str(tmp_path / "enrichment-data"),
            "http_listen": f"127.0.0.1:{http_port}",
            "attribution": {"token_file": str(tmp_path / "admin.token")},
            "export": {"token_file": str(tmp_path / "admin.token")},
        },
        "siem_export": {"data_dir": str(tmp_path / "export-data"), "file": {"path": str(tmp_path / "sink.ndjson")}},
        "intel": {"data_dir": str(tmp_path / "intel-data")},
        "correlation": {"data_dir": str(tmp_path / "correlation-data")},
    }


def test_sdk_exporters_to_serve_all(tmp_path):
    # Every address `serve all` binds comes from free_port(): a default port may be taken.
    ports = {name: free_port() for name in ("attribution", "enrichment", "siem_export", "intel", "correlation")}
    http_port = free_port()
    cfg = config(tmp_path, ports, http_port)
    cfg["intel"]["http_listen"] = f"127.0.0.1:{free_port()}"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    log_path = tmp_path / "serve-all.log"
    proc = spawn([BIN, "serve", "all", "--config", str(tmp_path / "config.json")], None, log_path)
    enrichment = Service("enrichment", None, tmp_path, ports["enrichment"])
    enrichment.proc, enrichment.log = proc, log_path
    try:
        enrichment.wait_serving()
        headers = {"authorization": f"Bearer {DETECTOR}"}
        grpc_exporter = GrpcLogExporter(endpoint=f"127.0.0.1:{ports['enrichment']}", insecure=True,
                                        headers=headers, timeout=30)
        http_exporter = HttpLogExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/logs", headers=headers,
                                        timeout=30)
        falco, falco_records = logger("falco", "falco")
        detector, detector_records = logger("authwatch", "authwatch.rules")
        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("detect") as span:
            falco_alert(falco, 1)
            security_event(detector, "brute force over grpc")
            trace_id = span.get_span_context().trace_id
        assert grpc_exporter.export(falco_records.take() + detector_records.take()) == LogRecordExportResult.SUCCESS
        falco_alert(falco, 2)
        security_event(detector, "brute force over http")
        assert http_exporter.export(falco_records.take() + detector_records.take()) == LogRecordExportResult.SUCCESS

        bodies = {"Shell spawned in a container otlp-falco-1", "Shell spawned in a container otlp-falco-2",
                  "brute force over grpc", "brute force over http"}
        events = {e["description"]: e for e in wait_for(tmp_path / "sink.ndjson", bodies, proc, log_path)}
        for n in (1, 2):
            alert = events[f"Shell spawned in a container otlp-falco-{n}"]
            assert alert["event_type"] == "falco.alert" and alert["original_format"] == "falco", alert
            assert alert["source_service"] == "falco:node-7"
            assert alert["severity"] == "SEVERITY_MEDIUM", "Falco's priority, not the log level"
            assert "T1059" in alert["technique_ids"], alert["technique_ids"]
        brute = events["brute force over grpc"]
        assert brute["event_type"] == "auth.bruteforce" and brute["source_service"] == "authwatch"
        assert brute["destination"]["hostname"] == "node-7"
        assert "T1110.001" in brute["technique_ids"], brute["technique_ids"]
        assert brute["submitted_by"] == "otlp-detector"
        assert trace_id != 0

        # A record with a bad field is counted in partial_success, over gRPC and over HTTP.
        channel = grpc.insecure_channel(f"127.0.0.1:{ports['enrichment']}")
        answer = logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            bad_record_request(), metadata=[("authorization", f"Bearer {DETECTOR}")], timeout=30)
        channel.close()
        assert answer.partial_success.rejected_log_records == 1
        assert "logRecords[1]" in answer.partial_success.error_message
        assert "severity_number" in answer.partial_success.error_message
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/logs", method="POST",
                                     data=bad_record_request().SerializeToString(),
                                     headers={**headers, "content-type": "application/x-protobuf"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = logs_service_pb2.ExportLogsServiceResponse.FromString(resp.read())
        assert answer.partial_success.rejected_log_records == 1
        grpc_exporter.shutdown()
        http_exporter.shutdown()
    finally:
        stop(proc, log_path)


class Sender(threading.Thread):
    """Exports numbered records in batches with one SDK exporter, remembering the acknowledged.

    After `hold_after` batches it waits for `resume`, so a fault can be injected while it still
    has batches to send, however fast the pipeline acknowledges.
    """

    def __init__(self, name, exporter, batches, size, hold_after):
        super().__init__(daemon=True)
        self.name, self.exporter, self.batches, self.size = name, exporter, batches, size
        self.hold_after, self.held, self.resume = hold_after, threading.Event(), threading.Event()
        self.acked, self.failed = set(), 0
        self.log, self.records = logger(f"{name}-detector", name)

    def run(self):
        for b in range(self.batches):
            if b == self.hold_after:
                self.held.set()
                self.resume.wait(timeout=240)
            bodies = [f"{self.name}-{b:03d}-{i:02d}" for i in range(self.size)]
            falco_alert(self.log, f"{self.name}-{b:03d}")
            for body in bodies:
                security_event(self.log, body)
            batch = self.records.take()
            if self.exporter.export(batch) == LogRecordExportResult.SUCCESS:
                self.acked.update(str(r.log_record.body) for r in batch)
            else:
                self.failed += 1


def test_acknowledged_records_survive_a_siem_export_kill(tmp_path):
    ports = {name: free_port() for name in ("attribution", "enrichment", "siem_export")}
    http_port = free_port()
    cfg = config(tmp_path, ports, http_port)
    del cfg["intel"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    services = {name.replace("_", "-"): Service(name.replace("_", "-"), tmp_path / "config.json", tmp_path, port)
                for name, port in ports.items()}
    headers = {"authorization": f"Bearer {DETECTOR}"}
    try:
        for name in ("attribution", "siem-export", "enrichment"):
            services[name].start()
        senders = [
            Sender("grpc", GrpcLogExporter(endpoint=f"127.0.0.1:{ports['enrichment']}", insecure=True,
                                           headers=headers, timeout=60), batches=30, size=10, hold_after=3),
            Sender("http", HttpLogExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/logs", headers=headers,
                                           timeout=60), batches=30, size=10, hold_after=3),
        ]
        for sender in senders:
            sender.start()
        export = services["siem-export"]
        wait_until(lambda: all(s.held.is_set() and len(s.acked) >= 30 for s in senders), export.proc, export.log,
                   "first acks")
        export.kill9()
        at_kill = sum(len(s.acked) for s in senders)
        assert any(s.is_alive() for s in senders), "the kill came after the last export"
        for sender in senders:  # the rest is exported into the outage and after it
            sender.resume.set()
        time.sleep(1)  # an outage, not a wait for a server
        export.start()
        for sender in senders:
            sender.join(timeout=240)
            assert not sender.is_alive(), f"{sender.name} sender hung"
        acked = set().union(*(s.acked for s in senders))
        assert acked, "nothing was acknowledged"
        sink = tmp_path / "sink.ndjson"
        enrichment = services["enrichment"]
        events = wait_for(sink, acked, enrichment.proc, enrichment.log, timeout=120)
        copies = {}
        for e in events:
            key = (e["event_id"], e["revision"])
            copies[key] = copies.get(key, 0) + 1
        assert all(n == 1 for n in copies.values()), [k for k, n in copies.items() if n > 1][:5]
        written = [e["description"] for e in events]
        for body in acked:
            assert body in written
        print(f"acknowledged {len(acked)} records ({at_kill} before the kill); failed exports: "
              f"{ {s.name: s.failed for s in senders} }; sink lines: {len(events)}; siem-export kills: {export.kills}")
    finally:
        for name in ("enrichment", "siem-export", "attribution"):
            services[name].stop()
