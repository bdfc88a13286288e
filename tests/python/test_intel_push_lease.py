"""One pusher per remote collection: two `attackmesh serve intel` replicas share a PostgreSQL
database (scripts/with-postgres) and push one local collection to one real medallion. Only the
replica holding the push lease pushes; when it is killed (SIGKILL, no goodbye) the other takes
over from the shared cursor. Every object version reaches medallion, and the replicas together
deliver each exactly once: none was pushed by both."""

import json
import os
import re
import signal
import time
import uuid

import grpc
import pytest
import requests

from conftest import (BIN, MEDALLION_PASSWORD, MEDALLION_USER, TAXII, free_port, spawn, start_medallion, stop,
                      wait_until, write_tokens)

TOKENS = {"lease-admin": ("admin", "lease-admin-secret")}


@pytest.fixture()
def postgres_url():
    url = os.environ.get("TEST_POSTGRES_URL", "")
    if not url:
        assert os.environ.get("TEST_REQUIRE_POSTGRES") != "1", "TEST_REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is unset"
        pytest.skip("PostgreSQL push-lease test NOT RUN: set TEST_POSTGRES_URL (scripts/with-postgres does)")
    return url


def start_replica(d, name, db, collection, target, remote_url):
    d.mkdir()
    write_tokens(d / "tokens.yaml", TOKENS)
    (d / "medallion.pw").write_text(MEDALLION_PASSWORD + "\n")
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    config = {
        "auth": {"token_files": [str(d / "tokens.yaml")]},
        "telemetry": {"log_level": "info"},
        "listen": {"intel": f"127.0.0.1:{grpc_port}", "metrics": f"127.0.0.1:{metrics_port}"},
        "intel": {
            "http_listen": f"127.0.0.1:{http_port}",
            "data_dir": str(d / "data"),
            "db": db,
            "collections": [{"id": collection, "title": "For the partner", "read": ["*"], "write": ["*"]}],
            "push": [{
                "name": target, "url": remote_url, "collection": collection,
                "username": MEDALLION_USER, "password_file": str(d / "medallion.pw"),
                "interval": "100ms", "batch": 3,
            }],
        },
    }
    (d / "config.json").write_text(json.dumps(config))
    log = d / "intel.log"
    proc = spawn([BIN, "serve", "intel", "--config", str(d / "config.json")], None, log)
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_until(lambda: requests.get(metrics, timeout=2).ok, proc, log, name)
    return {"name": name, "proc": proc, "log": log, "metrics": metrics,
            "channel": grpc.insecure_channel(f"127.0.0.1:{grpc_port}"), "taxii": f"http://127.0.0.1:{http_port}"}


def delivered(replica, target):
    """Objects this replica delivered to `target` (its push counter)."""
    text = requests.get(replica["metrics"], timeout=5).text
    lines = [ln for ln in text.splitlines()
             if ln.startswith("attackmesh_intel_push_delivered_objects") and f'"{target}"' in ln]
    return sum(int(float(re.split(r"\s+", ln)[-1])) for ln in lines)


def share(replica, proto_stubs, collection, values):
    pb, common = proto_stubs["intel_pb2"], proto_stubs["common_pb2"]
    client = proto_stubs["intel_pb2_grpc"].IntelServiceStub(replica["channel"])
    request = pb.ShareIndicatorsRequest(
        collection_id=collection,
        indicators=[common.Indicator(type=common.INDICATOR_TYPE_IPV4, value=v) for v in values],
        technique_ids=["T1110.001"], confidence=0.7, source_service="py-soc",
    )
    metadata = (("authorization", f"Bearer {TOKENS['lease-admin'][1]}"),)
    client.ShareIndicators(request, metadata=metadata, timeout=30)


def versions(url, auth=None, headers=None):
    """`id@version` of every object version in a TAXII collection (following `next`)."""
    out, params = set(), {"match[version]": "all", "limit": "100"}
    while True:
        body = requests.get(f"{url}objects/", params=params, auth=auth, headers={"Accept": TAXII, **(headers or {})},
                            timeout=10).json()
        out.update(o["id"] + "@" + o.get("modified", o.get("created", "")) for o in body.get("objects", []))
        if not body.get("more"):
            return out
        params["next"] = body["next"]


def test_one_replica_pushes_and_another_takes_over_when_it_is_killed(tmp_path, postgres_url, proto_stubs):
    remote_id, collection, target = str(uuid.uuid4()), str(uuid.uuid4()), f"partner-{uuid.uuid4().hex[:8]}"
    (tmp_path / "medallion").mkdir()
    medallion = start_medallion(tmp_path / "medallion", remote_id)
    replicas = [start_replica(tmp_path / n, n, postgres_url, collection, target, medallion["collection"])
                for n in ("replica-a", "replica-b")]
    bearer = {"Authorization": f"Bearer {TOKENS['lease-admin'][1]}"}
    remote_auth = (MEDALLION_USER, MEDALLION_PASSWORD)

    def wait_pushed(replica, what):
        """Waits until medallion holds every version of the collection (as `replica` serves it)."""
        want = versions(f"{replica['taxii']}/intel/collections/{collection}/", headers=bearer)
        deadline = time.monotonic() + 60
        while not want <= versions(medallion["collection"], auth=remote_auth):
            assert time.monotonic() < deadline, f"{what}: not everything reached medallion"
            time.sleep(0.2)
        return want

    try:
        share(replicas[0], proto_stubs, collection, ["203.0.113.10", "203.0.113.11", "203.0.113.12"])
        first = wait_pushed(replicas[0], "before the kill")
        counts = [delivered(r, target) for r in replicas]
        assert sorted(counts) == [0, len(first)], f"exactly one replica pushed, each version once: {counts}"
        leader, standby = (replicas[0], replicas[1]) if counts[0] else (replicas[1], replicas[0])

        leader["proc"].send_signal(signal.SIGKILL)
        leader["proc"].wait(timeout=30)
        share(standby, proto_stubs, collection, ["203.0.113.20", "203.0.113.21"])
        both = wait_pushed(standby, "after the kill")
        assert len(both) > len(first)
        assert delivered(standby, target) == len(both) - len(first), "the standby sent only what was new"
        assert "holds the push lease" in standby["log"].read_text()
    finally:
        for r in replicas:
            if r["proc"].poll() is None:
                stop(r["proc"], r["log"])
        medallion["proc"].terminate()
        medallion["proc"].wait(timeout=30)
