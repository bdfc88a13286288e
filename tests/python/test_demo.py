"""`attackmesh demo`'s result files, checked by the peers partners would use on them: the STIX
bundle exported from the intel collection passes stix2-validator and every indicator pattern
passes stix2-patterns; the ECS documents carry the ECS fields Elastic Security's detection views
read."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from stix2patterns.validator import run_validator
from stix2validator import ValidationOptions, validate_instance

from conftest import BIN


def test_stix_bundle_passes_stix2_validator(demo):
    bundle = json.loads((demo / "stix-bundle.json").read_text())
    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert len(indicators) >= 5
    options = ValidationOptions(version="2.1")
    for obj in bundle["objects"]:
        result = validate_instance(obj, options)
        assert result.is_valid, (obj, [str(e) for e in result.errors])
    for indicator in indicators:
        assert run_validator(indicator["pattern"], stix_version="2.1") == [], indicator["pattern"]
        assert any(label.startswith("mitre_attack:T") for label in indicator.get("labels", [])), indicator
    exe = pathlib.Path(sys.executable).parent / "stix2_validator"
    run = subprocess.run([str(exe), "--version", "2.1", str(demo / "stix-bundle.json")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[X]" not in run.stdout, run.stdout


def test_ecs_documents_carry_threat_fields(demo):
    enriched = [json.loads(line) for line in (demo / "enriched.ndjson").read_text().splitlines()]
    docs = [json.loads(line) for line in (demo / "ecs.ndjson").read_text().splitlines()]
    assert len(docs) == len(enriched)
    for doc in docs:
        assert doc["ecs"]["version"].startswith("9."), doc["ecs"]
        assert doc["event"]["kind"] == "alert"
        assert doc["@timestamp"]
    attributed = [d for d in docs if d.get("threat", {}).get("technique")]
    assert attributed, "no document names a technique"
    for doc in attributed:
        assert doc["threat"]["framework"] == "MITRE ATT&CK"
        assert all(t.startswith("T") for t in doc["threat"]["technique"]["id"])


def test_hec_events_are_envelopes(demo):
    events = [json.loads(line) for line in (demo / "hec.ndjson").read_text().splitlines()]
    assert events
    for event in events:
        assert isinstance(event["time"], (int, float))
        assert event["sourcetype"]
        assert event["event"]["event_id"]


def test_seed_variables_send_the_demo_to_elasticsearch(tmp_path):
    """The seed's ATTACKMESH_ELASTICSEARCH_URL makes the demo deliver to a real Elasticsearch-API
    server too (noida-db), one document per detection, searchable by ATT&CK technique."""
    from test_siem_export_peers import http, start_noida
    from conftest import wait_until

    proc, log, port = start_noida(tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http("GET", base + "/").get("version"), proc, log, "noida-db")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATTACKMESH_")}
        env["ATTACKMESH_ELASTICSEARCH_URL"] = base
        env["ATTACKMESH_ELASTICSEARCH_USERNAME"] = "elastic"
        env["ATTACKMESH_ELASTICSEARCH_PASSWORD"] = "demo-password-not-checked"
        out = tmp_path / "out"
        run = subprocess.run([BIN, "demo", "--out", str(out)], capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "elasticsearch" in run.stdout
        assert "demo-password-not-checked" not in run.stdout + run.stderr
        ids = {json.loads(line)["event_id"] for line in (out / "enriched.ndjson").read_text().splitlines()}
        http("POST", f"{base}/attackmesh-alerts/_refresh")
        hits = http("POST", f"{base}/attackmesh-alerts/_search", {"query": {"match_all": {}}, "size": 1000})["hits"]["hits"]
        assert {h["_id"] for h in hits} == ids
        brute = http("POST", f"{base}/attackmesh-alerts/_search",
                     {"query": {"term": {"threat.technique.id": "T1110"}}, "size": 1000})["hits"]["hits"]
        assert brute, "no document is searchable by technique T1110"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mitre_example_flow_validates_and_a_broken_one_does_not():
    """The schema check itself: MITRE's example passes; an action without a name or with a
    technique_ref that is not an attack-pattern fails."""
    from attack_flow import example_bundle, flow_errors

    bundle = example_bundle()
    assert flow_errors(bundle) == []
    action = next(o for o in bundle["objects"] if o["type"] == "attack-action")
    del action["name"]
    action["technique_ref"] = "malware--40f5caa0-4cb7-4117-89fc-d421bb493df3"
    errors = flow_errors(bundle)
    assert any("'name' is a required property" in e for e in errors), errors
    assert any("attack-pattern--" in e for e in errors), errors


def test_demo_intrusion_is_one_campaign_with_a_valid_attack_flow(demo):
    from attack_flow import flow_errors

    campaigns = [json.loads(line) for line in (demo / "campaigns.ndjson").read_text().splitlines()]
    assert len(campaigns) == 1, campaigns
    campaign = campaigns[0]
    assert campaign["entities"][0]["value"] == "203.0.113.45"
    assert [d["source_service"] for d in campaign["detectors"]] == ["netmon-edge", "decoy-ssh-01", "ueba-core"]
    assert campaign["status"] == "CAMPAIGN_STATUS_OPEN"
    assert int(campaign["revision"]) >= 1

    flow = json.loads((demo / "attack-flow.json").read_text())
    assert flow_errors(flow) == []
    flows = [o for o in flow["objects"] if o["type"] == "attack-flow"]
    assert len(flows) == 1 and flows[0]["scope"] == "incident"
    actions = [o for o in flow["objects"] if o["type"] == "attack-action"]
    assert [a["technique_id"] for a in actions] == [t["id"] for t in campaign["techniques"]]
    starts = [a["execution_start"] for a in actions]
    assert starts == sorted(starts), "actions in observed order"
    assert all(a["technique_ref"].startswith("attack-pattern--") for a in actions)
    assets = {o["id"] for o in flow["objects"] if o["type"] == "attack-asset"}
    assert assets and all(set(a.get("asset_refs", [])) <= assets for a in actions)


def test_demo_campaign_reaches_every_sink(demo):
    campaign = json.loads((demo / "campaigns.ndjson").read_text().splitlines()[0])
    cid = campaign["campaign_id"]
    docs = [json.loads(line) for line in (demo / "ecs.ndjson").read_text().splitlines()]
    alert = [d for d in docs if d.get("attackmesh", {}).get("campaign", {}).get("id") == cid]
    assert len(alert) == 1 and alert[0]["event"]["kind"] == "alert"
    assert "203.0.113.45" in alert[0]["related"]["ip"]
    hec = [json.loads(line)["event"] for line in (demo / "hec.ndjson").read_text().splitlines()]
    rba = [e for e in hec if e["event_id"] == cid]
    assert len(rba) == 1 and rba[0]["threat_object"][0] == "203.0.113.45" and rba[0]["risk_score"] > 100
    bundle = json.loads((demo / "stix-bundle.json").read_text())
    stix = [o for o in bundle["objects"] if o["id"] == cid]
    assert len(stix) == 1 and stix[0]["type"] == "campaign"
    uses = [o for o in bundle["objects"] if o["type"] == "relationship" and o["source_ref"] == cid]
    assert {o["relationship_type"] for o in uses} <= {"uses", "attributed-to"} and uses


def test_intel_flow_writes_the_campaign_flow_from_campaigns_ndjson(demo, tmp_path):
    from attack_flow import flow_errors

    cid = json.loads((demo / "campaigns.ndjson").read_text().splitlines()[0])["campaign_id"]
    out = tmp_path / "flow.json"
    args = [BIN, "intel", "flow", "--campaign", cid[:18], "--campaigns", str(demo / "campaigns.ndjson"), "--out", str(out)]
    run = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    flow = json.loads(out.read_text())
    assert flow == json.loads((demo / "attack-flow.json").read_text())
    assert flow_errors(flow) == []
    missing = subprocess.run(args[:4] + ["campaign--nope"] + args[5:], capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no campaign campaign--nope" in missing.stderr
