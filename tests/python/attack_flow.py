"""Validation of STIX objects against MITRE's Attack Flow 2.0.0 JSON Schema and the OASIS STIX 2.1
schemas it references, all read from the shared data (no network): `$ref`s to
raw.githubusercontent.com resolve to the local copies through a `referencing` registry."""

import json
import pathlib

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import ROOT

STIX_DIR = ROOT.parent / "shared" / "data" / "attack-flow" / "stix"
FLOW_TYPES = {"attack-flow", "attack-action", "attack-condition", "attack-operator", "attack-asset"}


def validator():
    """A validator for one Attack Flow object; skips the test when the shared data is absent."""
    schema_path = STIX_DIR / "attack-flow-schema-2.0.0.json"
    if not schema_path.is_file():
        pytest.skip(f"shared data not found at {STIX_DIR}")
    resources = []
    for path in sorted((STIX_DIR / "oasis-open").glob("*/*.json")):
        contents = json.loads(path.read_text())
        # The OASIS files name their dialect with an `http://…/schema#` URI `referencing` does
        # not recognise; they are draft 2020-12.
        resource = Resource(contents=contents, specification=DRAFT202012)
        resources.append((contents["$id"], resource))
        # The Attack Flow schema also names them by their `master` branch URL over https.
        alias = f"https://raw.githubusercontent.com/oasis-open/cti-stix2-json-schemas/master/schemas/{path.parent.name}/{path.name}"
        resources.append((alias, resource))
    schema = json.loads(schema_path.read_text())
    registry = Registry().with_resources(resources)
    return Draft202012Validator(schema, registry=registry)


def flow_errors(bundle):
    """Every schema error of the bundle's Attack Flow objects, as readable lines."""
    v = validator()
    errors = []
    for obj in bundle["objects"]:
        if obj["type"] in FLOW_TYPES:
            errors += [f"{obj['id']}: {e.message}" for e in v.iter_errors(obj)]
    return errors


def example_bundle():
    return json.loads((STIX_DIR / "attack-flow-example.json").read_text())
