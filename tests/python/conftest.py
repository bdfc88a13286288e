"""Fixtures shared by the Python peer tests: the attackmesh binary, one demo run, the shared data,
free ports, token files, waiting for a process to answer, restartable `attackmesh serve` processes,
a medallion TAXII server, and gRPC stubs generated from proto/ with grpcio-tools."""

import hashlib
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]
TAXII = "application/taxii+json;version=2.1"
MEDALLION_USER, MEDALLION_PASSWORD = "pusher", "medallion-secret"
BIN = os.environ.get("TEST_ATTACKMESH_BIN", str(ROOT / "target" / "debug" / "attackmesh"))
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(name):
    """`../shared/data/<name>`, or skips the test with a clear message when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The result folder of one `attackmesh demo` run, shared by every test that reads it."""
    out = tmp_path_factory.mktemp("demo") / "out"
    run = subprocess.run([BIN, "demo", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's ephemeral
    range: the ports it hands out by itself (to every outgoing connection) come from that range,
    so none of them takes this one before the process the test starts binds it."""
    try:
        first = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    if first < 11000:
        first = 32768
    while True:
        port = random.randrange(10000, first)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def write_tokens(path, tokens):
    """Writes a runtime token file: `tokens` maps name -> (role, secret); only digests are stored."""
    path.write_text("".join(
        f"- name: {name}\n  role: {role}\n  sha256: {hashlib.sha256(secret.encode()).hexdigest()}\n"
        for name, (role, secret) in tokens.items()
    ))
    return path


def wait_until(check, proc, log, what, timeout=90):
    """Polls `check()` until it returns truthy; fails early with the log when `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"{what} exited:\n{pathlib.Path(log).read_text()}"
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        assert time.monotonic() < deadline, f"{what} never came up:\n{pathlib.Path(log).read_text()}"
        time.sleep(0.2)


def stop(proc, log):
    """SIGTERM, then expect a clean exit."""
    proc.terminate()
    code = proc.wait(timeout=30)
    assert code == 0, pathlib.Path(log).read_text()


@pytest.fixture(scope="session")
def proto_stubs(tmp_path_factory):
    """The attackmesh.v1 Python modules generated from proto/ (importable as attackmesh.v1.*)."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("gen")
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}",
         f"--grpc_python_out={out}", *protos]
    )
    assert code == 0, "grpc_tools.protoc failed"
    sys.path.insert(0, str(out))
    import importlib

    return {name: importlib.import_module(f"attackmesh.v1.{name}")
            for name in ("common_pb2", "intel_pb2", "intel_pb2_grpc", "events_pb2")}


def spawn(args, env, log):
    """Starts a process with stdout and stderr going to `log`. Without `env`, it gets this
    environment minus `ATTACKMESH_…` variables, which attackmesh would read as configuration
    (test settings use the `TEST_` prefix for that reason)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATTACKMESH_")}
    return subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


class Service:
    """One `attackmesh serve <name>` process, restartable on the same config and data."""

    def __init__(self, name, config, tmp, port):
        self.name, self.config, self.tmp, self.port = name, config, tmp, port
        self.runs, self.kills, self.proc = 0, 0, None

    def start(self, wait=True):
        self.runs += 1
        self.log = self.tmp / f"{self.name}-{self.runs}.log"
        self.proc = spawn([BIN, "serve", self.name, "--config", str(self.config)], None, self.log)
        if wait:
            self.wait_serving()

    def wait_serving(self):
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        try:
            wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == serving,
                       self.proc, self.log, self.name, timeout=90)
        finally:
            channel.close()

    def kill9(self):
        self.kills += 1
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except Exception:  # noqa: BLE001 - best effort at the end
                self.proc.kill()


def start_medallion(d, collection):
    """Starts medallion (the OASIS TAXII 2.1 server, memory backend) in directory `d` with one
    writable collection `collection` and user MEDALLION_USER; returns `collection` (its URL),
    `proc` and `log`."""
    port = free_port()
    root = f"http://127.0.0.1:{port}/api1/"
    (d / "data.json").write_text(json.dumps({
        "/discovery": {"title": "partner TAXII", "description": "medallion", "default": root, "api_roots": [root]},
        "api1": {
            "information": {"title": "api1", "description": "", "versions": [TAXII], "max_content_length": 100_000_000},
            "status": [],
            "collections": [{
                "id": collection, "title": "from attackmesh", "description": "", "can_read": True, "can_write": True,
                "media_types": ["application/stix+json;version=2.1"], "objects": [], "manifest": [],
            }],
        },
    }))
    (d / "config.json").write_text(json.dumps({
        "backend": {"module": "medallion.backends.memory_backend", "module_class": "MemoryBackend",
                    "filename": str(d / "data.json")},
        "users": {MEDALLION_USER: MEDALLION_PASSWORD},
        "taxii": {"max_page_size": 100},
    }))
    exe = pathlib.Path(sys.executable).parent / "medallion"
    log = d / "medallion.log"
    proc = spawn([str(exe), "--host", "127.0.0.1", "--port", str(port), str(d / "config.json")], None, log)
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/taxii2/", auth=(MEDALLION_USER, MEDALLION_PASSWORD),
                                    headers={"Accept": TAXII}, timeout=2).ok, proc, log, "medallion")
    return {"collection": f"{root}collections/{collection}/", "proc": proc, "log": log}
