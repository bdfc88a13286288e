"""The siem-export service against real Elasticsearch-API implementations nobody here wrote:
noida-db (reports Elasticsearch 8.15) and osmem-server (reports OpenSearch 3.8). Events go in
through the Export RPC of `attackmesh serve siem-export` with a client generated from proto/,
and must come out searchable by ATT&CK technique, once per event however often they are sent."""

import json
import os
import pathlib
import subprocess
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import BIN, free_port, spawn, stop, wait_until, write_tokens

ADMIN = "siem-export-admin-token"
EVENTS = 40


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def start_noida(tmp):
    port = free_port()
    data = tmp / "noida-data"
    data.mkdir()
    log = tmp / "noida.log"
    import noida_db

    # The server binary itself (the `noida-db` console script only launches it and would leave
    # it running when killed).
    exe = pathlib.Path(noida_db.__file__).parent / "noida-db"
    proc = spawn([str(exe), "start", "--data-dir", str(data), "--only", "elasticsearch",
                  "--elasticsearch-port", str(port)], None, log)
    return proc, log, port


def start_osmem(tmp):
    import osmem_server

    port = free_port()
    exe = pathlib.Path(osmem_server.__file__).parent / "bin" / "osmem-server"
    log = tmp / "osmem.log"
    proc = spawn([str(exe), "-addr", f"127.0.0.1:{port}", "-no-ja", "-no-stdin-watch"], None, log)
    return proc, log, port


@pytest.fixture(params=["noida-db", "osmem-server"])
def peer(request, tmp_path):
    """A running Elasticsearch-API peer: (name, base URL)."""
    start = start_noida if request.param == "noida-db" else start_osmem
    proc, log, port = start(tmp_path)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http("GET", base + "/").get("version"), proc, log, request.param)
    yield request.param, base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def export_service(peer, tmp_path, proto_stubs):
    """`attackmesh serve siem-export` writing to the peer: (channel, index, peer URL, process, log)."""
    name, base = peer
    index = f"attackmesh-test-{name}"
    tokens = write_tokens(tmp_path / "tokens.yaml", {"enrichment": ("admin", ADMIN)})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTACKMESH_")}
    env.update({
        "ATTACKMESH_AUTH__TOKEN_FILES": f"[{tokens}]",
        "ATTACKMESH_LISTEN__SIEM_EXPORT": f"127.0.0.1:{port}",
        "ATTACKMESH_TELEMETRY__LOG_LEVEL": "info",
        "ATTACKMESH_ELASTICSEARCH_URL": base,
        "ATTACKMESH_SIEM_EXPORT__ELASTICSEARCH__INDEX": index,
        "ATTACKMESH_SIEM_EXPORT__DATA_DIR": str(tmp_path / "export-data"),
    })
    log = tmp_path / "siem-export.log"
    proc = spawn([BIN, "serve", "siem-export"], env, log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == serving,
               proc, log, "siem-export")
    yield channel, index, base, proc, log
    channel.close()
    stop(proc, log)


def enriched(events_pb2, common_pb2, i):
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.GetCurrentTime()
    tactic = common_pb2.Tactic(id="TA0006", name="Credential Access", shortname="credential-access")
    technique = common_pb2.TechniqueDetail(
        id="T1110.001", name="Password Guessing", tactics=[tactic], confidence=0.8,
        url="https://attack.mitre.org/techniques/T1110/001/")
    return events_pb2.EnrichedEvent(
        event_id=f"peer-{i:05d}", timestamp=ts, source_service="cowrie-01",
        detector_kind=common_pb2.DETECTOR_KIND_DECOY, event_type="cowrie.login.failed",
        source=common_pb2.Endpoint(ip="203.0.113.9", port=40000 + i, user="root"),
        destination=common_pb2.Endpoint(ip="10.0.0.2", port=22, hostname="honeypot"),
        severity=common_pb2.SEVERITY_HIGH, description="SSH login attempt root/123456",
        technique_ids=["T1110.001"], confidence_score=0.8,
        metadata=common_pb2.EnrichmentMetadata(techniques=[technique], rule_pack_version="test"),
        attack_version="18.1", attribution_status=common_pb2.ATTRIBUTION_STATUS_OK,
        enriched_at=ts, revision=1)


def export(channel, export_pb2, export_pb2_grpc, batch):
    client = export_pb2_grpc.ExportServiceStub(channel)
    answers = list(client.Export(iter([batch]), metadata=(("authorization", f"Bearer {ADMIN}"),), timeout=30))
    assert len(answers) == 1
    return answers[0]


def delivered(channel, export_pb2, export_pb2_grpc):
    client = export_pb2_grpc.ExportServiceStub(channel)
    status = client.GetSinkStatus(export_pb2.GetSinkStatusRequest(), metadata=(("authorization", f"Bearer {ADMIN}"),))
    return {s.name: s for s in status.sinks}["elasticsearch"]


def search(base, index, technique):
    body = {"query": {"term": {"threat.technique.subtechnique.id": technique}}, "size": 1000}
    return http("POST", f"{base}/{index}/_search", body)["hits"]["hits"]


def test_events_are_searchable_by_technique_and_a_resend_leaves_one_document_each(export_service, proto_stubs):
    import importlib

    channel, index, base, proc, log = export_service
    export_pb2 = importlib.import_module("attackmesh.v1.export_pb2")
    export_pb2_grpc = importlib.import_module("attackmesh.v1.export_pb2_grpc")
    events_pb2, common_pb2 = proto_stubs["events_pb2"], proto_stubs["common_pb2"]
    batch = export_pb2.ExportRequest(
        batch_id=1, events=[enriched(events_pb2, common_pb2, i) for i in range(EVENTS)],
        trace_context={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    answer = export(channel, export_pb2, export_pb2_grpc, batch)
    assert answer.status == common_pb2.ACK_STATUS_DURABLE, answer
    assert answer.accepted == EVENTS and not answer.rejections

    def all_searchable():
        return len(search(base, index, "T1110.001")) == EVENTS

    wait_until(all_searchable, proc, log, "documents searchable", timeout=60)
    hits = search(base, index, "T1110.001")
    doc = hits[0]["_source"]
    assert doc["threat"]["technique"]["id"] == ["T1110"]
    assert doc["threat"]["tactic"]["id"] == ["TA0006"]
    assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 73
    assert sorted(h["_id"] for h in hits) == [f"peer-{i:05d}" for i in range(EVENTS)]

    # The same batch again, as an upstream would resend it after a lost acknowledgement.
    batch.batch_id = 2
    answer = export(channel, export_pb2, export_pb2_grpc, batch)
    assert answer.status == common_pb2.ACK_STATUS_DURABLE, answer
    wait_until(lambda: delivered(channel, export_pb2, export_pb2_grpc).delivered == 2 * EVENTS,
               proc, log, "resend delivered", timeout=60)
    status = delivered(channel, export_pb2, export_pb2_grpc)
    assert status.healthy and status.dead_lettered == 0 and status.queue_depth == 0, status
    count = http("GET", f"{base}/{index}/_count")["count"]
    assert count == EVENTS, f"{count} documents for {EVENTS} events sent twice"


