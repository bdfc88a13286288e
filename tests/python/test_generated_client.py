"""A detector author's view: generate a Python client from proto/ with grpcio-tools and call a
running attackmesh service with it (health, authenticated RPCs, refused tokens and roles)."""

import hashlib
import os
import pathlib
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

from conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("TEST_ATTACKMESH_BIN", str(ROOT / "target" / "debug" / "attackmesh"))
TOKENS = {"analyst": "analyst-secret-token", "detector": "detector-secret-token"}


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}",
         f"--grpc_python_out={out}", f"--pyi_out={out}", *protos]
    )
    assert code == 0, "grpc_tools.protoc failed"
    sys.path.insert(0, str(out))
    from attackmesh.v1 import attribution_pb2, attribution_pb2_grpc, common_pb2, events_pb2

    return attribution_pb2, attribution_pb2_grpc, common_pb2, events_pb2


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("srv")
    entries = "".join(
        f"- name: py-{role}\n  role: {role}\n  sha256: {hashlib.sha256(tok.encode()).hexdigest()}\n"
        for role, tok in TOKENS.items()
    )
    (d / "tokens.yaml").write_text(entries)
    port = free_port()
    env = dict(os.environ)
    env.update({
        "ATTACKMESH_AUTH__TOKEN_FILES": f"[{d / 'tokens.yaml'}]",
        "ATTACKMESH_LISTEN__ATTRIBUTION": f"127.0.0.1:{port}",
        "ATTACKMESH_TELEMETRY__LOG_LEVEL": "warn",
    })
    proc = subprocess.Popen([BIN, "serve", "attribution"], env=env, stderr=open(d / "stderr.log", "w"))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (d / "stderr.log").read_text()
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                break
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "service never became SERVING"
        time.sleep(0.2)
    yield channel
    proc.terminate()
    assert proc.wait(timeout=30) == 0, (d / "stderr.log").read_text()


def auth(role):
    return (("authorization", f"Bearer {TOKENS[role]}"),)


def test_health_reports_each_service(server):
    health = health_pb2_grpc.HealthStub(server)
    status = health.Check(health_pb2.HealthCheckRequest(service="attackmesh.v1.AttributionService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_authenticated_lookup(server, stubs):
    attribution_pb2, attribution_pb2_grpc, _, _ = stubs
    client = attribution_pb2_grpc.AttributionServiceStub(server)
    info = client.GetKnowledgeBaseInfo(attribution_pb2.GetKnowledgeBaseInfoRequest(), metadata=auth("analyst"))
    assert info.attack_version == "18.1"
    assert info.techniques > 200 and info.subtechniques > 400
    got = client.GetTechnique(attribution_pb2.GetTechniqueRequest(id="T1110.001"), metadata=auth("analyst"))
    assert got.technique.name == "Password Guessing"
    assert "TA0006" in [t.id for t in got.technique.tactics]


def test_wrong_token_is_unauthenticated(server, stubs):
    attribution_pb2, attribution_pb2_grpc, _, _ = stubs
    client = attribution_pb2_grpc.AttributionServiceStub(server)
    with pytest.raises(grpc.RpcError) as err:
        client.GetKnowledgeBaseInfo(
            attribution_pb2.GetKnowledgeBaseInfoRequest(), metadata=(("authorization", "Bearer nope"),)
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_detector_may_not_use_analyst_rpcs(server, stubs):
    attribution_pb2, attribution_pb2_grpc, _, _ = stubs
    client = attribution_pb2_grpc.AttributionServiceStub(server)
    with pytest.raises(grpc.RpcError) as err:
        client.GetTechnique(attribution_pb2.GetTechniqueRequest(id="T1046"), metadata=auth("detector"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_map_patterns_speaks_attack(server, stubs):
    attribution_pb2, attribution_pb2_grpc, _, _ = stubs
    client = attribution_pb2_grpc.AttributionServiceStub(server)
    resp = client.MapPatterns(
        attribution_pb2.MapPatternsRequest(patterns=["ET SCAN Potential SSH Scan"]), metadata=auth("analyst")
    )
    ids = [t.id for t in resp.mappings[0].techniques]
    assert "T1046" in ids, ids
