"""Intel as TAXII partners meet it: indicators shared over gRPC are served by `attackmesh serve
intel` over TAXII 2.1 to taxii2-client (discovery -> API root -> collections -> paged objects),
every object passes stix2-validator and stix2-patterns, and the push reaches a real medallion
server from which the objects can be read back. What writers post is refused object by object
exactly where stix2-validator refuses it (and where attackmesh is stricter on purpose), and a
writer cannot version attackmesh's own indicators."""

import json
import pathlib
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stix2patterns.validator import run_validator
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import Collection, Server, as_pages

from conftest import (BIN, MEDALLION_PASSWORD, MEDALLION_USER, TAXII, free_port, spawn, start_medallion, stop,
                      wait_until, write_tokens)

TOKENS = {
    "py-admin": ("admin", "py-admin-secret"),
    "py-analyst": ("analyst", "py-analyst-secret"),
    "py-reader": ("analyst", "py-reader-secret"),
}
SHARED = str(uuid.uuid4())
PARTNER = str(uuid.uuid4())
SCRATCH = str(uuid.uuid4())
REMOTE = str(uuid.uuid4())


@pytest.fixture(scope="session")
def medallion(tmp_path_factory):
    server = start_medallion(tmp_path_factory.mktemp("medallion"), REMOTE)
    yield server
    server["proc"].terminate()
    server["proc"].wait(timeout=30)


@pytest.fixture(scope="session")
def intel(tmp_path_factory, medallion):
    d = tmp_path_factory.mktemp("intel")
    write_tokens(d / "tokens.yaml", TOKENS)
    (d / "medallion.pw").write_text(MEDALLION_PASSWORD + "\n")
    grpc_port, http_port = free_port(), free_port()
    config = {
        "auth": {"token_files": [str(d / "tokens.yaml")]},
        "telemetry": {"log_level": "warn"},
        "listen": {"intel": f"127.0.0.1:{grpc_port}"},
        "intel": {
            "http_listen": f"127.0.0.1:{http_port}",
            "data_dir": str(d / "data"),
            "page_size": 5,
            "max_page_size": 50,
            "max_body_bytes": 256 * 1024,
            "collections": [
                {"id": SHARED, "title": "Shared indicators", "read": ["*"], "write": ["py-analyst"]},
                {"id": PARTNER, "title": "For the partner", "read": ["py-analyst"], "write": ["py-analyst"]},
                {"id": SCRATCH, "title": "Written by hand", "read": ["*"], "write": ["py-analyst"]},
            ],
            "default_collection": SHARED,
            "push": [{
                "name": "medallion", "url": medallion["collection"], "collection": PARTNER,
                "username": MEDALLION_USER, "password_file": str(d / "medallion.pw"),
                "interval": "200ms", "batch": 7,
            }],
        },
    }
    (d / "config.json").write_text(json.dumps(config))
    log = d / "intel.log"
    proc = spawn([BIN, "serve", "intel", "--config", str(d / "config.json")], None, log)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == serving, proc, log, "intel")
    yield {"channel": channel, "base": f"http://127.0.0.1:{http_port}", "log": log}
    stop(proc, log)


def bearer(name):
    return (("authorization", f"Bearer {TOKENS[name][1]}"),)


def share(intel, proto_stubs, collection, indicators, technique_ids=(), description=""):
    pb, common = proto_stubs["intel_pb2"], proto_stubs["common_pb2"]
    client = proto_stubs["intel_pb2_grpc"].IntelServiceStub(intel["channel"])
    request = pb.ShareIndicatorsRequest(
        collection_id=collection,
        indicators=[common.Indicator(type=getattr(common, f"INDICATOR_TYPE_{t}"), value=v) for t, v in indicators],
        technique_ids=list(technique_ids), description=description, confidence=0.7, source_service="py-soc",
    )
    return client.ShareIndicators(request, metadata=bearer("py-analyst"), timeout=30)


EVERY_KIND = [
    ("IPV4", "203.0.113.77"), ("IPV4", "198.51.100.0/24"), ("IPV6", "2001:db8::7"), ("DOMAIN", "evil.example"),
    ("URL", "http://evil.example/it's\\here"), ("FILE_MD5", "d41d8cd98f00b204e9800998ecf8427e"),
    ("FILE_SHA1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    ("FILE_SHA256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("FILE_NAME", "o'brien.exe"), ("EMAIL", "ops@evil.example"), ("USER_ACCOUNT", "root"),
    ("PROCESS_COMMAND_LINE", "crontab -l; echo 'x' > /tmp/a\\b"), ("MAC", "AA-BB-CC-00-11-22"),
    ("X509_SHA1", "0123456789abcdef0123456789abcdef01234567"),
]


@pytest.fixture(scope="session")
def shared(intel, proto_stubs):
    """Indicators of every kind shared twice (attributed, then with explicit techniques)."""
    common = proto_stubs["common_pb2"]
    first = share(intel, proto_stubs, "", EVERY_KIND, description="analyst found cron persistence on a web host")
    second = share(intel, proto_stubs, SHARED, EVERY_KIND[:4], technique_ids=["T1110.001", "T1046"])
    partner = share(intel, proto_stubs, PARTNER, EVERY_KIND, technique_ids=["T1053.003"])
    return {"first": first, "second": second, "partner": partner, "ok": common.ATTRIBUTION_STATUS_OK}


def taxii_server(intel, who="py-reader"):
    return Server(f"{intel['base']}/taxii2/", user=who, password=TOKENS[who][1])


def walk(collection, per_request, **filters):
    ids = []
    for envelope in as_pages(collection.get_objects, per_request=per_request, **filters):
        ids.extend(o["id"] + "@" + o.get("modified", o.get("created", "")) for o in envelope.get("objects", []))
    return ids


def test_share_attributes_and_links_techniques(shared):
    first, second = shared["first"], shared["second"]
    assert first.attribution_status == shared["ok"]
    assert "T1053.003" in first.technique_ids, first.technique_ids
    assert len(first.object_ids) == len(EVERY_KIND)
    assert second.technique_ids == ["T1110.001", "T1046"]
    assert set(second.object_ids) <= set(first.object_ids), "the same observable is the same object"


def test_taxii2_client_walks_every_object_exactly_once(intel, shared):
    server = taxii_server(intel)
    assert server.title
    api_root = server.api_roots[0]
    assert api_root.versions == [TAXII]
    collections = {c.id: c for c in api_root.collections}
    assert SHARED in collections and PARTNER not in collections, "py-reader may not see the partner collection"
    collection = collections[SHARED]
    assert collection.can_read and not collection.can_write
    paged = walk(collection, 3)
    assert len(paged) == len(set(paged)), "an object came twice"
    manifest = [m["id"] + "@" + m["version"] for m in collection.get_manifest(limit=50)["objects"]]
    assert sorted(paged) == sorted(manifest)
    kinds = {p.split("--")[0] for p in paged}
    assert {"identity", "marking-definition", "indicator", "relationship"} <= kinds
    every = walk(collection, 4, version="all")
    assert len(every) > len(paged), "indicators updated by the second share have two versions"
    assert len(every) == len(set(every))
    indicators = walk(collection, 50, type="indicator")
    assert len(indicators) == len(EVERY_KIND)
    last_added = collection.get_objects(limit=1).get("objects")
    assert last_added


def test_added_after_is_exclusive_over_taxii(intel, shared):
    url = f"{intel['base']}/intel/collections/{SHARED}/objects/"
    auth = ("py-reader", TOKENS["py-reader"][1])
    first = requests.get(url, params={"limit": 1}, auth=auth, headers={"Accept": TAXII}, timeout=10)
    added = first.headers["X-TAXII-Date-Added-Last"]
    after = requests.get(url, params={"added_after": added, "limit": 50}, auth=auth, headers={"Accept": TAXII},
                         timeout=10).json()
    first_id = first.json()["objects"][0]["id"]
    assert first_id not in [o["id"] for o in after["objects"]]


def all_objects(intel):
    server = taxii_server(intel, "py-analyst")
    objects = []
    for collection in server.api_roots[0].collections:
        for envelope in as_pages(collection.get_objects, per_request=50, version="all"):
            objects.extend(envelope.get("objects", []))
    return objects


def test_every_object_passes_stix2_validator(intel, shared, tmp_path):
    objects = all_objects(intel)
    assert len(objects) > 20
    options = ValidationOptions(version="2.1")
    for obj in objects:
        result = validate_instance(obj, options)
        assert result.is_valid, (obj, [str(e) for e in result.errors])
        if obj["type"] == "indicator":
            errors = run_validator(obj["pattern"], stix_version="2.1")
            assert errors == [], (obj["pattern"], errors)
    latest = {}
    for obj in objects:
        if obj["id"] not in latest or obj.get("modified", "") > latest[obj["id"]].get("modified", ""):
            latest[obj["id"]] = obj
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": list(latest.values())}))
    exe = pathlib.Path(sys.executable).parent / "stix2_validator"
    run = subprocess.run([str(exe), "--version", "2.1", str(bundle)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[X]" not in run.stdout, run.stdout
    patterns = [o["pattern"] for o in latest.values() if o["type"] == "indicator"]
    assert any("file:hashes.'SHA-256'" in p for p in patterns)
    assert any("\\'" in p for p in patterns), "quotes are escaped"


def test_push_reaches_medallion(intel, shared, medallion):
    server = taxii_server(intel, "py-analyst")
    ours = {c.id: c for c in server.api_roots[0].collections}[PARTNER]
    want = {o["id"] + "@" + o.get("modified", o.get("created", "")) for o in
            (x for e in as_pages(ours.get_objects, per_request=50, version="all") for x in e.get("objects", []))}
    remote = Collection(medallion["collection"], user=MEDALLION_USER, password=MEDALLION_PASSWORD)
    deadline = time.monotonic() + 60
    while True:
        got = set()
        for envelope in as_pages(remote.get_objects, per_request=100, version="all"):
            got.update(o["id"] + "@" + o.get("modified", o.get("created", "")) for o in envelope.get("objects", []))
        if want <= got:
            break
        assert time.monotonic() < deadline, (
            f"missing on medallion: {sorted(want - got)[:5]}\n{pathlib.Path(intel['log']).read_text()[-3000:]}")
        time.sleep(0.5)
    indicator = next(o for e in as_pages(remote.get_objects, per_request=100, type="indicator")
                     for o in e.get("objects", []))
    assert "mitre_attack:T1053.003" in indicator["labels"]
    assert "medallion-secret" not in pathlib.Path(intel["log"]).read_text()


def test_taxii_refuses_bad_requests(intel, shared):
    url = f"{intel['base']}/intel/collections/{SHARED}/objects/"
    reader = ("py-reader", TOKENS["py-reader"][1])
    envelope = json.dumps({"objects": []})
    wrong = requests.get(url, auth=("py-reader", "wrong"), headers={"Accept": TAXII}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["http_status"] == "401"
    forbidden = requests.post(url, data=envelope, auth=reader, timeout=10,
                              headers={"Accept": TAXII, "Content-Type": TAXII})
    assert forbidden.status_code == 403
    assert requests.get(url, auth=reader, headers={"Accept": "application/json"}, timeout=10).status_code == 406
    writer = ("py-analyst", TOKENS["py-analyst"][1])
    big = json.dumps({"objects": [{"type": "note", "id": f"note--{uuid.uuid4()}", "content": "x" * 1000}] * 400})
    too_big = requests.post(url, data=big, auth=writer, timeout=10, headers={"Accept": TAXII, "Content-Type": TAXII})
    assert too_big.status_code == 413


def post_objects(intel, objects, collection=SCRATCH, who="py-analyst"):
    url = f"{intel['base']}/intel/collections/{collection}/objects/"
    resp = requests.post(url, data=json.dumps({"objects": objects}), auth=(who, TOKENS[who][1]), timeout=10,
                         headers={"Accept": TAXII, "Content-Type": TAXII})
    assert resp.status_code == 202, resp.text
    return resp.json()


def stix_id(kind):
    return f"{kind}--{uuid.uuid4()}"


def indicator(**changes):
    """A valid indicator with `changes` applied (None removes a property)."""
    obj = {"type": "indicator", "spec_version": "2.1", "id": stix_id("indicator"),
           "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
           "pattern": "[ipv4-addr:value = '192.0.2.1']", "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"}
    for key, value in changes.items():
        if value is None:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def hand_written_objects():
    """What careless and hostile writers post: valid objects and the invalid ones a probe found."""
    relationship = {"type": "relationship", "spec_version": "2.1", "id": stix_id("relationship"),
                    "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
                    "relationship_type": "indicates", "source_ref": stix_id("indicator"),
                    "target_ref": "attack-pattern--e3a12395-188d-4051-9a16-ea8e14d07b88"}
    without_target = dict(relationship, id=stix_id("relationship"))
    del without_target["target_ref"]
    return [
        indicator(),
        indicator(description="a C2 address", labels=["c2"], confidence=40,
                  modified="2026-02-01T00:00:00.123456Z"),
        {"type": "indicator", "spec_version": "2.1", "id": stix_id("indicator")},
        indicator(created="yesterday"),
        indicator(modified="2025-12-31T00:00:00.000Z"),
        indicator(created="0000-01-01T00:00:00.000Z", modified="0000-01-01T00:00:00.000Z"),
        indicator(created="2026-01-01T00:00:00Z", modified="2026-01-01T00:00:00Z"),
        indicator(modified="2026-01-01T02:00:00.000+02:00"),
        indicator(modified="2026-02-30T00:00:00.000Z"),
        indicator(pattern=None),
        indicator(pattern="ipv4-addr:value = '192.0.2.1'"),
        indicator(valid_until="2025-01-01T00:00:00Z"),
        indicator(confidence=101),
        indicator(labels=[]),
        indicator(Name="upper case"),
        relationship,
        without_target,
        {"type": "malware", "spec_version": "2.1", "id": stix_id("malware"), "created": "2026-01-01T00:00:00.000Z",
         "modified": "2026-01-01T00:00:00.000Z", "is_family": True},
        {"type": "ipv4-addr", "id": stix_id("ipv4-addr"), "value": "192.0.2.1"},
        {"type": "ipv4-addr", "id": stix_id("ipv4-addr")},
    ]


# Valid for stix2-validator, refused on purpose: STIX 2.0 objects, a creator that is not an
# identity (STIX 2.1 says created_by_ref MUST name one), a version dated years ahead.
STRICTER = [
    indicator(spec_version="2.0"),
    indicator(created_by_ref=stix_id("indicator")),
    indicator(modified="9999-12-31T23:59:59.999Z"),
]


def test_posted_objects_are_refused_exactly_when_stix2_validator_refuses(intel):
    objects = hand_written_objects()
    options = ValidationOptions(version="2.1")
    invalid = {o["id"] for o in objects if not validate_instance(o, options).is_valid}
    assert 0 < len(invalid) < len(objects)
    stricter = [dict(o, id=stix_id("indicator")) for o in STRICTER]
    assert all(validate_instance(o, options).is_valid for o in stricter)
    invalid |= {o["id"] for o in stricter}
    objects += stricter
    status = post_objects(intel, objects)
    refused = {f["id"] for f in status["failures"]}
    assert refused == invalid, (sorted(refused - invalid), sorted(invalid - refused), status["failures"])
    assert status["success_count"] == len(objects) - len(invalid)
    stored = {o["id"] for e in as_pages(Collection(f"{intel['base']}/intel/collections/{SCRATCH}/",
                                                   user="py-reader", password=TOKENS["py-reader"][1]).get_objects,
                                        per_request=50, version="all") for o in e.get("objects", [])}
    assert stored.isdisjoint(invalid)


def test_far_future_versions_are_refused_at_write(intel):
    far = indicator(modified="9999-12-31T23:59:59.999Z")
    status = post_objects(intel, [far, indicator()])
    assert [f["id"] for f in status["failures"]] == [far["id"]], status
    assert status["success_count"] == 1


def test_writers_cannot_version_attackmesh_indicators(intel, proto_stubs):
    share(intel, proto_stubs, SCRATCH, [("IPV4", "198.51.100.77")], technique_ids=["T1046"])
    objects = Collection(f"{intel['base']}/intel/collections/{SCRATCH}/", user="py-reader",
                         password=TOKENS["py-reader"][1]).get_objects(type="indicator")["objects"]
    ours = next(o for o in objects if o["pattern"] == "[ipv4-addr:value = '198.51.100.77']")
    forged = {k: v for k, v in ours.items() if k not in ("created_by_ref", "object_marking_refs")}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert now > ours["modified"]
    forged.update(modified=now, pattern="[ipv4-addr:value = '203.0.113.66']", name="forged")
    claimed = dict(ours, labels=["mitre_attack:T1486"])
    status = post_objects(intel, [forged, claimed])
    assert status["failure_count"] == 2 and status["success_count"] == 0, status
    latest = Collection(f"{intel['base']}/intel/collections/{SCRATCH}/", user="py-reader",
                        password=TOKENS["py-reader"][1]).get_object(ours["id"])["objects"][0]
    assert latest == ours
