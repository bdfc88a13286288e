"""The demo's `ocsf.ndjson` checked against the OCSF 1.8.0 schema itself: the schema sources in
`../shared/data/ocsf-1.8.0` compiled with ocsf-lib (as the OCSF server does), then every finding
walked against the compiled Detection Finding class (2004) — required attributes present (those
of the profiles the finding declares included), every attribute known to its class or object (only
`unmapped` is free-form), primitive types with their ranges and patterns, enum values valid and
their caption siblings agreeing."""

import json
import re

import pytest
from ocsf.compile.compiler import Compilation
from ocsf.repository import read_repo

from conftest import shared_data


@pytest.fixture(scope="module")
def schema():
    return Compilation(read_repo(shared_data("ocsf-1.8.0"))).build()


PY_TYPES = {
    "string_t": str,
    "integer_t": int,
    "long_t": int,
    "float_t": (int, float),
    "boolean_t": bool,
}


class Checker:
    def __init__(self, schema, profiles):
        self.schema = schema
        self.profiles = set(profiles)
        self.errors = []

    def in_profile(self, attr):
        profile = attr.profile
        if profile is None:
            return True
        names = [profile] if isinstance(profile, str) else profile
        return any(p in self.profiles for p in names)

    def check_object(self, path, value, attributes):
        if not isinstance(value, dict):
            self.errors.append(f"{path}: expected an object, got {value!r}")
            return
        for name, attr in attributes.items():
            if attr.requirement == "required" and self.in_profile(attr) and name not in value:
                self.errors.append(f"{path}.{name}: required attribute missing")
        for name, item in value.items():
            attr = attributes.get(name)
            if attr is None:
                self.errors.append(f"{path}.{name}: not an attribute of this class or object")
                continue
            if not self.in_profile(attr):
                self.errors.append(f"{path}.{name}: belongs to profile {attr.profile}, not declared")
            if attr.is_array:
                if not isinstance(item, list):
                    self.errors.append(f"{path}.{name}: expected an array")
                    continue
                for n, element in enumerate(item):
                    self.check_value(f"{path}.{name}[{n}]", element, attr)
            else:
                self.check_value(f"{path}.{name}", item, attr)
            if attr.enum and attr.sibling and attr.sibling in value and str(item) != "99":
                caption = attr.enum[str(item)].caption if str(item) in attr.enum else None
                if value[attr.sibling] != caption:
                    self.errors.append(f"{path}.{attr.sibling}: {value[attr.sibling]!r} is not {caption!r}")

    def check_value(self, path, value, attr):
        if attr.type == "object":  # `unmapped`: free-form by definition
            if not isinstance(value, dict):
                self.errors.append(f"{path}: expected an object")
            return
        if attr.type in self.schema.objects:
            self.check_object(path, value, self.schema.objects[attr.type].attributes)
            return
        self.check_primitive(path, value, attr.type)
        if attr.enum and str(value) not in attr.enum:
            self.errors.append(f"{path}: {value!r} is not one of {sorted(attr.enum)}")

    def check_primitive(self, path, value, type_name):
        if type_name == "json_t":
            return
        t = self.schema.types.get(type_name)
        if t is None:
            self.errors.append(f"{path}: unknown type {type_name}")
            return
        base = t.type or type_name
        expected = PY_TYPES.get(base)
        if expected is None:
            self.errors.append(f"{path}: no check for type {type_name} ({base})")
            return
        if isinstance(value, bool) and base != "boolean_t" or not isinstance(value, expected):
            self.errors.append(f"{path}: {value!r} is not a {type_name}")
            return
        if t.regex and not re.search(t.regex, value):
            self.errors.append(f"{path}: {value!r} does not match the {type_name} pattern")
        if t.range and not t.range[0] <= value <= t.range[1]:
            self.errors.append(f"{path}: {value!r} is outside {t.range}")
        if t.max_len and len(value) > t.max_len:
            self.errors.append(f"{path}: longer than {t.max_len}")


def findings(demo):
    return [json.loads(line) for line in (demo / "ocsf.ndjson").read_text().splitlines()]


def test_every_demo_finding_is_a_valid_detection_finding(demo, schema):
    enriched = [json.loads(line) for line in (demo / "enriched.ndjson").read_text().splitlines()]
    docs = findings(demo)
    assert len(docs) == len(enriched)
    assert {d["finding_info"]["uid"] for d in docs} == {e["event_id"] for e in enriched}
    cls = schema.classes["detection_finding"]
    assert schema.version == "1.8.0" and cls.uid == 2004
    for doc in docs:
        assert (doc["class_uid"], doc["category_uid"]) == (2004, 2)
        assert doc["type_uid"] == 2004 * 100 + doc["activity_id"]
        assert doc["metadata"]["version"] == "1.8.0"
        checker = Checker(schema, doc["metadata"].get("profiles", []))
        checker.check_object("finding", doc, cls.attributes)
        assert not checker.errors, (doc["finding_info"]["uid"], checker.errors)


def test_findings_carry_attack_analytic_and_observables(demo):
    docs = findings(demo)
    attributed = [d for d in docs if d.get("attacks")]
    assert len(attributed) >= len(docs) // 2
    release = re.compile(r"^\d+\.\d+$")
    seen = set()
    for doc in attributed:
        assert doc["finding_info"]["attacks"] == doc["attacks"]
        for attack in doc["attacks"]:
            assert release.match(attack["version"]), attack
            technique = attack["technique"]
            assert re.fullmatch(r"T\d{4}", technique["uid"]) and technique["name"], attack
            if "sub_technique" in attack:
                sub = attack["sub_technique"]
                assert sub["uid"].startswith(technique["uid"] + ".") and sub["name"], attack
                seen.add(sub["uid"])
            seen.add(technique["uid"])
        assert doc["finding_info"]["analytic"]["name"]
        assert 0 <= doc["confidence_score"] <= 100
    assert any("." in t for t in seen), seen
    assert any(a.get("tactic", {}).get("uid", "").startswith("TA") for d in attributed for a in d["attacks"])
    observed = {o["type"] for d in docs for o in d.get("observables", [])}
    assert {"IP Address", "User Name"} <= observed, observed
