"""The Helm chart and the binary agree: every container the chart renders, with each values file
under helm/attackmesh/ci/ and with the defaults, starts from a configuration that
`attackmesh serve <svc> --check-config` accepts, and every probe and test command line is one the
binary parses. The rendered ConfigMap, the Secrets' files and the environment are laid out in a
temporary directory exactly as the pod would see them (paths rewritten under that directory,
Secrets the chart does not own filled with dummies)."""

import functools
import hashlib
import os
import pathlib
import re
import subprocess
import tempfile
import time

import pytest
import yaml

from conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("TEST_ATTACKMESH_BIN", str(ROOT / "target" / "debug" / "attackmesh"))
CHART = ROOT / "helm" / "attackmesh"
HELM = ROOT / "target" / "tools" / "bin" / "helm"
CASES = ["defaults"] + sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
SERVICES = {"attribution", "enrichment", "siem-export", "intel", "correlation"}
# Values of environment variables whose Secrets the chart does not create, by variable name.
DUMMY_ENV = {"ATTACKMESH_INTEL__DB": "postgres://attackmesh:dummy@postgres.example:5432/attackmesh"}
DUMMY_DIGEST = hashlib.sha256(b"dummy-token").hexdigest()


@pytest.fixture(scope="session")
def helm():
    """helm, installed from the npm registry by the project's own script when missing."""
    if not HELM.exists():
        subprocess.run([str(ROOT / "scripts" / "install-helm-tools")], check=True)
    return HELM


def render(helm, case):
    args = [str(helm), "template", "am", str(CHART), "--namespace", "attackmesh"]
    if case != "defaults":
        args += ["-f", str(CHART / "ci" / case)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def secret_files(docs):
    """Files of the Secrets the chart renders, by Secret name."""
    return {d["metadata"]["name"]: d.get("stringData", {}) for d in docs if d["kind"] == "Secret"}


def under(root, path):
    return root / path.lstrip("/")


def rewrite(text, mounts, root):
    """Points every absolute path below a mount at the same path under `root`."""
    if not mounts:
        return text
    alternatives = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w/.-])(" + alternatives + r")(?=/|\b|$)")
    return pattern.sub(lambda m: str(under(root, m.group(1))), text)


@functools.lru_cache(maxsize=None)
def throwaway_pem():
    """A throwaway self-signed certificate and key (PEM), so TLS files parse like real ones."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="attackmesh-pem-"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
                    "-subj", "/CN=attackmesh-test", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return (d / "cert.pem").read_text(), (d / "key.pem").read_text()


def dummy_file(key):
    """Content for a key of a Secret the chart does not own."""
    if key.endswith((".yaml", ".yml")):  # token files: a list of digest entries
        return f"- name: dummy\n  role: detector\n  sha256: {DUMMY_DIGEST}\n"
    if key.endswith((".crt", ".pem")):
        return throwaway_pem()[0]
    if key.endswith(".key"):
        return throwaway_pem()[1]
    return "dummy\n"


def lay_out_pod(pod_spec, container, docs, root):
    """Writes the files of every volume `container` mounts under `root`; returns the mount paths."""
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = secret_files(docs)
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    mounts = []
    for m in container.get("volumeMounts", []):
        path = under(root, m["mountPath"])
        mounts.append(m["mountPath"])
        vol = volumes.get(m["name"], {})
        if "configMap" in vol or "secret" in vol:
            if "configMap" in vol:
                name = vol["configMap"]["name"]
                data = config_maps.get(name)
                if data is None:  # a ConfigMap the operator brings (e.g. rule packs)
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                items = vol["configMap"].get("items")
            else:
                name = vol["secret"]["secretName"]
                data = secrets.get(name)
                items = vol["secret"].get("items")
            keys = [i["key"] for i in items] if items else list((data or {}).keys())
            files = {k: (data[k] if data and k in data else dummy_file(k)) for k in keys}
            if "subPath" in m:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(files.get(m["subPath"], dummy_file(m["subPath"])))
                continue
            path.mkdir(parents=True, exist_ok=True)
            names = {i["key"]: i["path"] for i in items} if items else {k: k for k in keys}
            if not keys:  # a whole Secret the chart does not own: a few plausible keys
                names = {k: k for k in ("password", "token", "ca.crt")}
                files = {k: dummy_file(k) for k in names}
            for key, content in files.items():
                (path / names[key]).write_text(content)
        elif "projected" in vol:  # several Secrets' keys under one mount, in sub-directories
            path.mkdir(parents=True, exist_ok=True)
            for source in vol["projected"]["sources"]:
                secret = source.get("secret")
                if not secret:
                    continue
                data = secrets.get(secret["name"]) or {}
                for item in secret.get("items", []):
                    target = path / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data.get(item["key"], dummy_file(item["key"])))
        else:  # emptyDir or a claim template
            path.mkdir(parents=True, exist_ok=True)
    return mounts


def container_env(container, docs):
    secrets = secret_files(docs)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        ref = e["valueFrom"]["secretKeyRef"]
        owned = secrets.get(ref["name"], {})
        env[e["name"]] = owned.get(ref["key"], DUMMY_ENV.get(e["name"], "dummy-secret-value"))
    return env


def probe_commands(container):
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind, {})
        if "exec" in probe:
            yield kind, probe["exec"]["command"]


@pytest.mark.parametrize("case", CASES)
def test_every_rendered_service_config_is_accepted_by_the_binary(helm, case, tmp_path):
    docs = render(helm, case)
    found = set()
    for w in workloads(docs):
        spec = w["spec"]["template"]["spec"]
        for container in spec["containers"]:
            args = container["args"]
            assert args[0] == "serve" and args[1] in SERVICES, args
            found.add(args[1])
            root = tmp_path / w["metadata"]["name"]
            mounts = lay_out_pod(spec, container, docs, root)
            config = pathlib.Path(rewrite(args[args.index("--config") + 1], mounts, root))
            config.write_text(rewrite(config.read_text(), mounts, root))
            argv = [BIN] + [rewrite(a, mounts, root) for a in args] + ["--check-config"]
            run = subprocess.run(argv, env=container_env(container, docs), cwd=root,
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, (
                f"{case}: {w['metadata']['name']} rejected its config\n{run.stderr}\n{config.read_text()}")
            assert "configuration ok" in run.stdout
            for kind, command in probe_commands(container):
                assert command[0] == "/usr/local/bin/attackmesh", command
                check_health_command(command[1:], mounts, root, f"{case} {w['metadata']['name']} {kind}")
    assert found == SERVICES, f"{case}: rendered services {sorted(found)}"


def check_health_command(args, mounts, root, what):
    """A rendered `attackmesh health …` line parses, TLS files included; pointed at a closed port
    it reports the connection failure (exit 1) rather than a usage error (exit 2)."""
    assert args[0] == "health", what
    args = [rewrite(a, mounts, root) for a in args]
    args[args.index("--addr") + 1] = f"127.0.0.1:{free_port()}"
    args[args.index("--timeout") + 1] = "2s"
    run = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "cannot connect" in run.stderr, (what, run.returncode, run.stderr)


@pytest.mark.parametrize("case", CASES)
def test_helm_test_pod_checks_every_service_with_arguments_the_binary_parses(helm, case, tmp_path):
    docs = render(helm, case)
    pods = [d for d in docs if d["kind"] == "Pod"]
    assert len(pods) == 1, "one helm test pod"
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    containers = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    services = {c["args"][c["args"].index("--service") + 1] for c in containers}
    assert services == {"attackmesh.v1.AttributionService", "attackmesh.v1.IngestService",
                        "attackmesh.v1.ExportService", "attackmesh.v1.IntelService",
                        "attackmesh.v1.CorrelationService"}
    for c in containers:
        root = tmp_path / c["name"]
        mounts = lay_out_pod(pod["spec"], c, docs, root)
        check_health_command(c["args"], mounts, root, f"{case} {c['name']}")


def test_the_harness_sees_a_config_the_binary_rejects(helm, tmp_path):
    """The check above would catch a drift: an unknown key in a rendered config exits 64."""
    docs = render(helm, "defaults")
    w = next(d for d in workloads(docs) if d["kind"] == "Deployment")
    spec = w["spec"]["template"]["spec"]
    container = spec["containers"][0]
    mounts = lay_out_pod(spec, container, docs, tmp_path)
    config = under(tmp_path, "/etc/attackmesh/config.yaml")
    config.write_text(rewrite(config.read_text(), mounts, tmp_path) + "not_a_key: 1\n")
    run = subprocess.run([BIN, "serve", container["args"][1], "--config", str(config), "--check-config"],
                         env=container_env(container, docs), capture_output=True, text=True, timeout=60)
    assert run.returncode == 64, run.stderr
    assert "not_a_key" in run.stderr


def test_readiness_command_reports_serving_from_a_service_started_with_the_rendered_config(helm, tmp_path):
    """The attribution service, started from the chart's own rendered config (listen address moved
    to a free loopback port), answers the readiness check `attackmesh health` performs."""
    docs = render(helm, "defaults")
    w = next(d for d in workloads(docs) if d["spec"]["template"]["spec"]["containers"][0]["args"][1] == "attribution")
    spec = w["spec"]["template"]["spec"]
    container = spec["containers"][0]
    mounts = lay_out_pod(spec, container, docs, tmp_path)
    port = free_port()
    config = under(tmp_path, "/etc/attackmesh/config.yaml")
    text = rewrite(config.read_text(), mounts, tmp_path).replace("0.0.0.0:50051", f"127.0.0.1:{port}")
    config.write_text(text)
    service = container["readinessProbe"]["grpc"]["service"]
    log = tmp_path / "attribution.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([BIN, "serve", "attribution", "--config", str(config)],
                                env=container_env(container, docs), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            run = subprocess.run([BIN, "health", "--addr", f"127.0.0.1:{port}", "--service", service,
                                  "--timeout", "2s"], capture_output=True, text=True, timeout=30)
            if run.returncode == 0:
                assert run.stdout.strip() == "SERVING"
                break
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"never SERVING: {run.stderr}\n{log.read_text()}"
            time.sleep(0.3)
        unknown = subprocess.run([BIN, "health", "--addr", f"127.0.0.1:{port}", "--service", "no.such.Service"],
                                 capture_output=True, text=True, timeout=30)
        assert unknown.returncode == 1, unknown.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def schema_config_paths(schema, prefix=()):
    """Leaf key paths of a schema object (maps and lists of objects count as leaves)."""
    paths = set()
    for key, sub in schema.get("properties", {}).items():
        if "properties" in sub:
            paths |= schema_config_paths(sub, prefix + (key,))
        else:
            paths.add(prefix + (key,))
    return paths


def value_paths(values, prefix=()):
    paths = set()
    for key, sub in values.items():
        if isinstance(sub, dict) and sub:
            paths |= value_paths(sub, prefix + (key,))
        else:
            paths.add(prefix + (key,))
    return paths


def covered(path, given):
    return any(g[: len(path)] == path for g in given)


def test_every_config_key_the_schema_allows_is_exercised_against_the_binary():
    """values.schema.json may only allow config keys that ci/all-config-keys-values.yaml sets (and
    so the binary accepts, by the test above): a key renamed or dropped in the binary fails CI."""
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "ci" / "all-config-keys-values.yaml").read_text())
    missing = []
    for svc in ("attribution", "enrichment", "siemExport", "intel", "correlation"):
        allowed = schema_config_paths(schema["properties"][svc]["properties"]["config"])
        given = value_paths(values[svc]["config"])
        missing += [(svc,) + p for p in sorted(allowed) if not covered(p, given)]
    given = value_paths(values["telemetry"])
    missing += [("telemetry",) + p for p in sorted(schema_config_paths(schema["properties"]["telemetry"]))
                if not covered(p, given)]
    assert not missing, f"schema keys not exercised by ci/all-config-keys-values.yaml: {missing}"


def test_correlation_sends_campaign_alerts_to_siem_export_and_the_policy_lets_them_through(helm):
    docs = render(helm, "ha-values.yaml")  # network policies on
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    correlation = [yaml.safe_load(text) for data in config_maps.values() for text in data.values()
                   if isinstance(text, str) and "correlation:" in text and "listen:" in text]
    sections = [c["correlation"] for c in correlation if "correlation" in c.get("listen", {})]
    assert len(sections) == 1, sections
    export = sections[0]["export"]
    assert len(export["endpoints"]) == 1 and "siem-export-headless" in export["endpoints"][0], export
    assert export["token_file"].startswith("/etc/attackmesh/internal/"), export
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    corr = next(p for n, p in policies.items() if n.endswith("-correlation"))
    export_port = next(p for n, p in policies.items() if n.endswith("-siem-export"))
    egress_to = [(rule["to"][0].get("podSelector", {}).get("matchLabels", {}), rule["ports"][0]["port"])
                 for rule in corr["spec"]["egress"] if rule.get("to") and rule.get("ports")]
    assert any(labels.get("app.kubernetes.io/component") == "siem-export" for labels, _ in egress_to), egress_to
    ingress_from = [peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                    for rule in export_port["spec"]["ingress"] for peer in rule.get("from", [])]
    assert "correlation" in ingress_from, ingress_from
