"""`attackmesh siem …` content checked by the tools the SIEMs' own people use: every Kibana rule of
`siem elastic-rules` validates against Kibana 9.4's detection-rule API schema (from
`../shared/data/elastic-rule-api`), follows Elastic's own promotion rule (`external_alerts.toml`),
and promotes the demo's ECS alerts with exactly their techniques; the Splunk app of
`siem splunk-app` passes `splunk-appinspect --mode precert` and names the sourcetype the HEC
sink sends."""

import json
import pathlib
import re
import subprocess
import sys
import tarfile
import tomllib

import jsonschema
import pytest

from conftest import BIN, shared_data


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("elastic") / "rules.ndjson"
    run = subprocess.run([BIN, "siem", "elastic-rules", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return lines[:-1], lines[-1]


def test_every_rule_validates_against_the_kibana_9_4_rule_schema(rules_file):
    rules, summary = rules_file
    api = shared_data("elastic-rule-api") / "detection_rules/etc/api_schemas/9.4"
    schema = json.loads((api / "9.4.query.json").read_text())
    validator = jsonschema.Draft4Validator(schema)
    assert len(rules) >= 100
    assert summary["exported_count"] == summary["exported_rules_count"] == len(rules)
    assert summary["missing_rules_count"] == 0
    for rule in rules:
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(rule)]
        assert not errors, (rule["name"], errors)
    assert len({r["rule_id"] for r in rules}) == len(rules)
    assert len({r["name"] for r in rules}) == len(rules)


def test_rules_follow_elastics_promotion_rule(rules_file):
    rules, _ = rules_file
    promotion = tomllib.loads((shared_data("elastic-rule-api") / "external_alerts.toml").read_text())["rule"]
    for rule in rules:
        for key in ("type", "language", "rule_name_override", "timestamp_override", "risk_score_mapping",
                    "severity_mapping", "from", "interval", "max_signals"):
            assert rule[key] == promotion[key], (rule["name"], key)
        assert rule["query"].startswith("event.kind:alert and "), rule["query"]
        threat = rule["threat"]
        assert threat and all(t["framework"] == "MITRE ATT&CK" for t in threat), rule["name"]
        assert all(len(t["technique"]) == 1 for t in threat)


QUERY = re.compile(
    r'^event\.kind:alert and event\.dataset:attackmesh\.alerts and '
    r'(?:threat\.technique\.subtechnique\.id:"(?P<sub>T\d{4}\.\d{3})"'
    r'|threat\.technique\.id:"(?P<tech>T\d{4})" and not threat\.technique\.subtechnique\.id:(?P<tech2>T\d{4})\.\*)$'
)


def matches(rule, doc):
    """Evaluates the one KQL shape the rules use against an ECS document."""
    m = QUERY.match(rule["query"])
    assert m, rule["query"]
    if doc.get("event", {}).get("kind") != "alert" or doc["event"].get("dataset") != "attackmesh.alerts":
        return False
    technique = doc.get("threat", {}).get("technique", {})
    subs = technique.get("subtechnique", {}).get("id", [])
    if m["sub"]:
        return m["sub"] in subs
    assert m["tech"] == m["tech2"]
    return m["tech"] in technique.get("id", []) and not any(s.startswith(m["tech"] + ".") for s in subs)


def test_rules_promote_each_demo_alert_once_per_technique(rules_file, demo):
    rules, _ = rules_file
    by_id = {}
    for rule in rules:
        tech = rule["threat"][0]["technique"][0]
        by_id[(tech.get("subtechnique") or [tech])[0]["id"]] = rule
    docs = [json.loads(line) for line in (demo / "ecs.ndjson").read_text().splitlines()]
    promoted = 0
    for doc in docs:
        technique = doc.get("threat", {}).get("technique", {})
        subs = technique.get("subtechnique", {}).get("id", [])
        parents = [t for t in technique.get("id", []) if not any(s.startswith(t + ".") for s in subs)]
        expected = {t for t in subs + parents if t in by_id}
        fired = {tid for tid, rule in by_id.items() if matches(rule, doc)}
        assert fired == expected, (doc["event"]["id"], fired, expected)
        for tid in fired:
            # The alert shows the technique, with the name ECS gives its parent.
            tech = by_id[tid]["threat"][0]["technique"][0]
            assert tech["name"] in technique["name"], (tid, tech["name"], technique["name"])
        promoted += len(fired)
        # Severity and risk come from the document through the rules' mappings.
        assert str(doc["event"]["severity"]) in {m["value"] for m in rules[0]["severity_mapping"]}
        assert 0 <= doc["event"]["risk_score"] <= 100 and doc["event"]["ingested"]
    assert promoted >= len(docs) // 2


@pytest.fixture(scope="module")
def splunk_app(tmp_path_factory):
    out = tmp_path_factory.mktemp("splunk") / "attackmesh.tgz"
    run = subprocess.run([BIN, "siem", "splunk-app", "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def test_splunk_app_passes_appinspect_precert(splunk_app, tmp_path):
    report = tmp_path / "appinspect.json"
    exe = pathlib.Path(sys.executable).parent / "splunk-appinspect"
    run = subprocess.run(
        [str(exe), "inspect", str(splunk_app), "--mode", "precert", "--data-format", "json", "--output-file", str(report)],
        capture_output=True, text=True, timeout=300,
    )
    assert report.exists(), run.stdout + run.stderr
    result = json.loads(report.read_text())
    summary = result["summary"]
    problems = [
        (check["name"], check["result"], [m.get("message") for m in check.get("messages", [])])
        for group in result["reports"][0]["groups"] for check in group["checks"]
        if check["result"] in ("failure", "error", "future_failure", "warning")
    ]
    assert summary["failure"] == 0 and summary["error"] == 0, problems
    assert summary["success"] > 50, summary
    assert result["reports"][0]["app_package_id"] == "attackmesh"
    assert re.fullmatch(r"\d+\.\d+\.\d+", result["reports"][0]["app_version"])


def test_splunk_app_is_deterministic_and_names_the_hec_sourcetype(splunk_app, tmp_path, demo):
    again = tmp_path / "again.tgz"
    subprocess.run([BIN, "siem", "splunk-app", "--out", str(again)], check=True, capture_output=True, timeout=60)
    assert again.read_bytes() == splunk_app.read_bytes()
    with tarfile.open(splunk_app) as tar:
        names = tar.getnames()
        assert all(n == "attackmesh" or n.startswith("attackmesh/") for n in names), names
        props = tar.extractfile("attackmesh/default/props.conf").read().decode()
        tags = tar.extractfile("attackmesh/default/tags.conf").read().decode()
        searches = tar.extractfile("attackmesh/default/savedsearches.conf").read().decode()
    hec = [json.loads(line) for line in (demo / "hec.ndjson").read_text().splitlines()]
    assert {e["sourcetype"] for e in hec} == {"attackmesh:alert"}
    assert "[attackmesh:alert]" in props and "KV_MODE = json" in props
    assert "ids = enabled" in tags and "attack = enabled" in tags
    assert "action.risk = 1" in searches and "annotations.mitre_attack.mitre_technique_id" in searches
    # The fields the CIM aliases and the risk search read are in the events the HEC sink sends.
    event = next(e["event"] for e in hec if e["event"].get("mitre_attack"))
    for field in ("source_service", "event_type", "signature", "severity", "src", "annotations"):
        assert field in event, field
