"""The client guide's detectors (examples/clients/, included verbatim in docs/clients.md), each
generated from proto/ the way the guide says and run as a detector author would run it, against
the pipeline as separate processes (`serve attribution`, `serve siem-export` with a file sink,
`serve enrichment` with a rate limit on the detector, so some batches are answered RETRY).

Findings reach the detector on stdin in three parts: after the first is acknowledged, the second
goes out and enrichment is killed (SIGKILL) as soon as its first batch is acknowledged, then
restarted; the third part follows. Afterwards the file sink holds every valid finding exactly
once, the invalid one is reported as rejected by the detector and is absent from the sink, and
the detector reconnected and saw RETRY answers. The guide must show these files verbatim."""

import importlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import grpc
import pytest

from conftest import ROOT, Service, free_port, wait_until, write_tokens

DETECTOR_TOKEN = "clients-detector-token"
ADMIN = "clients-admin-token"
ANALYST = "clients-analyst-token"
PART = 600  # findings per part; three parts
INVALID = 250  # the finding (in part one) with an address that is not one
TS_DIR = ROOT / "examples" / "clients" / "typescript"
PY_DIR = ROOT / "examples" / "clients" / "python"


def findings(start, count):
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    lines = []
    for i in range(start, start + count):
        src = "not-an-ip" if i == INVALID else f"198.51.{100 + i // 250}.{1 + i % 250}"
        lines.append(json.dumps({
            "time": now, "kind": "ssh_brute_force", "src_ip": src, "dst_ip": "10.20.0.15", "dst_port": 22,
            "description": f"{40 + i % 60} failed SSH logins in 60s", "hints": ["T1110.001"], "n": i}))
    return lines


@pytest.fixture
def pipeline(tmp_path):
    tokens = write_tokens(tmp_path / "tokens.yaml", {
        "netmon-01": ("detector", DETECTOR_TOKEN), "ops": ("admin", ADMIN), "soc": ("analyst", ANALYST)})
    (tmp_path / "admin.token").write_text(ADMIN + "\n")
    (tmp_path / "detector.token").write_text(DETECTOR_TOKEN + "\n")
    ports = {name: free_port() for name in ("attribution", "enrichment", "siem_export")}
    sink = tmp_path / "alerts.ndjson"
    config = {
        "auth": {"token_files": [str(tokens)]},
        "telemetry": {"log_level": "info"},
        "shutdown_grace": "1s",
        "listen": {name: f"127.0.0.1:{port}" for name, port in ports.items()},
        "enrichment": {
            "data_dir": str(tmp_path / "enrichment-data"),
            "attribution": {"token_file": str(tmp_path / "admin.token")},
            "export": {"token_file": str(tmp_path / "admin.token")},
            # A detector faster than this is answered RETRY with a retry_after.
            "rate_limits": {"detectors": {"netmon-01": {"events_per_second": 1000, "burst": 200}}},
        },
        "siem_export": {"data_dir": str(tmp_path / "export-data"), "file": {"path": str(sink)}},
    }
    (tmp_path / "pipeline.json").write_text(json.dumps(config))
    services = {name: Service(name, tmp_path / "pipeline.json", tmp_path, ports[name.replace("-", "_")])
                for name in ("attribution", "siem-export", "enrichment")}
    try:
        for svc in services.values():
            svc.start()
        yield {"services": services, "ports": ports, "sink": sink, "token_file": tmp_path / "detector.token"}
    finally:
        for svc in services.values():
            svc.stop()


class Output:
    """The detector's stdout, line by line, read as it comes."""

    def __init__(self, proc):
        self.lines, self.cond = [], threading.Condition()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def answered(self):
        """Findings answered DURABLE so far (accepted + rejected)."""
        counts = [re.search(r": (\d+) accepted, (\d+) rejected", l) for l in self.lines if l.startswith("durable")]
        return sum(int(m[1]) + int(m[2]) for m in counts if m)

    def wait(self, predicate, proc, what, timeout=90):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                assert proc.poll() is None, f"detector exited before {what}:\n" + "\n".join(self.lines[-30:])
                assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + "\n".join(self.lines[-30:])
                self.cond.wait(timeout=0.5)


def sink_idle(port, proto_stubs):
    export_pb2 = importlib.import_module("attackmesh.v1.export_pb2")
    export_pb2_grpc = importlib.import_module("attackmesh.v1.export_pb2_grpc")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        status = export_pb2_grpc.ExportServiceStub(channel).GetSinkStatus(
            export_pb2.GetSinkStatusRequest(), metadata=(("authorization", f"Bearer {ANALYST}"),), timeout=5)
    return all(s.queue_depth == 0 for s in status.sinks)


def stream_through_restart(cmd, cwd, env, pipeline, proto_stubs, tmp_path):
    """Runs the detector `cmd` over the three parts with the enrichment restart between them and
    checks the file sink; returns the detector's output lines."""
    enrichment = pipeline["services"]["enrichment"]
    cmd = [*cmd, "--target", f"127.0.0.1:{pipeline['ports']['enrichment']}", "--token-file",
           str(pipeline["token_file"])]
    stderr = tmp_path / "detector.stderr"
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=open(stderr, "w"), text=True)
    out = Output(proc)
    parts = [findings(0, PART), findings(PART, PART), findings(2 * PART, PART)]
    try:
        proc.stdin.write("\n".join(parts[0]) + "\n")
        proc.stdin.flush()
        out.wait(lambda: out.answered() >= PART, proc, "the first part to be acknowledged")
        proc.stdin.write("\n".join(parts[1]) + "\n")
        proc.stdin.flush()
        out.wait(lambda: out.answered() > PART, proc, "a batch of the second part to be acknowledged")
        enrichment.kill9()
        enrichment.start()
        proc.stdin.write("\n".join(parts[2]) + "\n")
        proc.stdin.close()
        try:
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            # Where it hangs: a Python detector, started with -X faulthandler, writes the stack of
            # every thread to its stderr on SIGABRT.
            proc.send_signal(signal.SIGABRT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            raise AssertionError("the detector did not finish within 180 s after the restart; its last lines:\n"
                                 + "\n".join(out.lines[-30:]) + "\n" + stderr.read_text()) from None
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = out.lines
    assert code == 0, "\n".join(lines[-30:]) + "\n" + stderr.read_text()

    sent = [line for part in parts for line in part]
    invalid = sent[INVALID]
    valid = set(sent) - {invalid}
    sink = pipeline["sink"]

    def delivered():
        return [json.loads(l) for l in sink.read_text().splitlines()] if sink.exists() else []

    wait_until(lambda: len(delivered()) >= len(valid) and sink_idle(pipeline["ports"]["siem_export"], proto_stubs),
               pipeline["services"]["siem-export"].proc, pipeline["services"]["siem-export"].log,
               "the file sink to hold every event", timeout=60)
    events = delivered()
    originals = [e["original"] for e in events]
    ids = [e["event_id"] for e in events]
    assert len(originals) == len(set(originals)) == len(ids) == len(set(ids)), "an event was delivered twice"
    assert set(originals) == valid, "every valid finding is in the sink"

    rejected = [l for l in lines if l.startswith("rejected ")]
    assert len(rejected) == 1 and "source.ip" in rejected[0], rejected
    rejected_id = rejected[0].split()[1]
    assert rejected_id.startswith("netmon-01:") and rejected_id not in ids
    assert lines[-1] == f"done: {len(valid)} accepted, 1 rejected", lines[-1]
    assert enrichment.runs == 2
    assert any(l.startswith("reconnect ") for l in lines), "the detector reconnected after the restart"
    assert any(l.startswith("retry ") for l in lines), "the rate limit answered RETRY"
    return lines


def tool_env():
    """This environment with the test's Python (grpcio-tools, buf) first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTACKMESH_")}
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_python_detector_delivers_every_event_once_through_a_restart(pipeline, proto_stubs, tmp_path):
    env = tool_env()
    gen = tmp_path / "gen"
    subprocess.run([PY_DIR / "generate.sh", gen], env=env, check=True)
    env["PYTHONPATH"] = str(gen)
    stream_through_restart([sys.executable, "-X", "faulthandler", PY_DIR / "detector.py"], PY_DIR, env, pipeline,
                           proto_stubs, tmp_path)


def test_typescript_detector_delivers_every_event_once_through_a_restart(pipeline, proto_stubs, tmp_path):
    assert (TS_DIR / "node_modules").is_dir(), f"run `npm ci` in {TS_DIR} first (scripts/test does)"
    env = tool_env()
    subprocess.run(["npm", "run", "--silent", "generate"], cwd=TS_DIR, env=env, check=True)
    subprocess.run(["npm", "run", "--silent", "build"], cwd=TS_DIR, env=env, check=True)
    stream_through_restart(["node", "dist/detector.js"], TS_DIR, env, pipeline, proto_stubs, tmp_path)


def test_client_guide_shows_the_files_the_tests_run():
    check = subprocess.run([sys.executable, ROOT / "scripts" / "client-guide", "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
