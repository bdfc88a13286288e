"""The live ATT&CK matrix page in a real browser: `attackmesh demo --serve` runs the pipeline,
headless Chromium (Debian's `chromium`) opens `/ui/#token=…`, and the rendered DOM must mark
every technique the demo observed (with the number of events that carried it) and no other;
a screenshot of the page is saved under target/. The campaign the demo builds opens in its panel
(by URL) with its entity, its tactics in kill-chain order and its Attack Flow graph."""

import collections
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, ROOT

CHROMIUM = shutil.which("chromium")
SCREENSHOT = ROOT / "target" / "ui-matrix.png"
CELL = re.compile(r'<div[^>]*\bdata-technique="([^"]+)"[^>]*\bdata-count="(\d+)"')


def chromium(*args, timeout=120):
    """Runs headless Chromium with a fresh profile and the flags this machine needs."""
    profile = tempfile.mkdtemp(prefix="attackmesh-chromium-")
    try:
        run = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-4000:]
    return run.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if CHROMIUM is None:
        assert os.environ.get("TEST_REQUIRE_CHROMIUM") != "1", "chromium is not installed (.ci/run installs it)"
        pytest.skip("chromium not installed: apt-get install -y chromium")
    out = tmp_path_factory.mktemp("ui") / "out"
    proc = subprocess.Popen([BIN, "demo", "--serve", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None or not lines.empty(), "demo exited:\n" + "".join(seen)
            assert time.monotonic() < deadline, "no `ui:` line:\n" + "".join(seen)
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            match = re.match(r"ui: (\S+) token: (\S+)$", line.strip())
            if match:
                break
        yield match.group(1), match.group(2), out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def observed(out):
    """Events per technique in the detections the demo delivered (latest revision of each)."""
    latest = {}
    for line in (out / "enriched.ndjson").read_text().splitlines():
        event = json.loads(line)
        if event.get("campaign"):
            continue  # a campaign alert sums up detections; it is not one
        if event["event_id"] not in latest or event.get("revision", 0) >= latest[event["event_id"]].get("revision", 0):
            latest[event["event_id"]] = event
    counts = collections.Counter()
    for event in latest.values():
        for technique in set(event.get("technique_ids", [])):
            counts[technique] += 1
    return counts


def test_without_a_token_the_page_asks_for_one_and_shows_no_data(demo):
    url, _, _ = demo
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "api/counts", timeout=10)
    assert refused.value.code == 401
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", url)
    assert re.search(r'<form id="login" class="login">', dom), dom[:2000]
    assert not CELL.search(dom), "cells without a token"


def test_the_matrix_marks_exactly_what_the_demo_observed(demo):
    url, token, out = demo
    want = observed(out)
    assert want, "the demo observed no technique"
    page = f"{url}#token={token}"
    dom = chromium("--virtual-time-budget=20000", "--dump-dom", page)
    assert 'data-ready="true"' in dom, dom[:3000]
    cells = CELL.findall(dom)
    assert len(cells) > 600, f"only {len(cells)} technique cells"
    by_id = collections.defaultdict(set)
    for technique, count in cells:
        by_id[technique].add(int(count))
    for technique, n in want.items():
        assert technique in by_id, f"{technique} has no cell"
        assert by_id[technique] == {n}, f"{technique}: cells say {by_id[technique]}, the demo observed {n}"
    unobserved = sorted(t for t in by_id if t not in want)
    assert "T1486" in unobserved, "the demo never encrypts data for impact"
    for technique in unobserved:
        assert by_id[technique] == {0}, f"{technique} marked but never observed"
    assert re.search(r'data-technique="[^"]+"[^>]*tabindex="0"|tabindex="0"[^>]*data-technique=', dom), \
        "cells are not focusable"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    chromium("--virtual-time-budget=20000", "--window-size=1600,1000", "--hide-scrollbars",
             f"--screenshot={SCREENSHOT}", page)
    assert SCREENSHOT.stat().st_size > 10_000
    print(f"\nscreenshot of the live matrix: {SCREENSHOT}")


def campaigns(out):
    """The latest revision of each campaign the demo delivered, by campaign id."""
    latest = {}
    for line in (out / "enriched.ndjson").read_text().splitlines():
        c = json.loads(line).get("campaign")
        if c and c.get("revision", 0) >= latest.get(c["campaign_id"], {}).get("revision", 0):
            latest[c["campaign_id"]] = c
    return latest


KILLCHAIN = re.compile(r'<ol[^>]*id="campaign-killchain"[^>]*>(.*?)</ol>', re.S)


def test_the_campaign_panel_shows_the_intruder_and_its_kill_chain(demo):
    url, token, out = demo
    found = campaigns(out)
    assert len(found) == 1, f"the demo should make one campaign, made {len(found)}"
    (cid, c), = found.items()
    assert c["entities"][0]["value"] == "203.0.113.45"
    tactics = [t["name"] for t in c["tactics"]]
    assert len(tactics) >= 3, tactics

    # Opened by URL, as a link from an alert would.
    page = f"{url}?campaign={cid}#token={token}"
    dom = chromium("--virtual-time-budget=20000", "--dump-dom", page)
    assert f'data-campaign="{cid}"' in dom, dom[:3000]
    title = re.search(r'<h2 id="details-title"[^>]*>([^<]*)</h2>', dom)
    assert title and title.group(1) == "Campaign of 203.0.113.45", title and title.group(0)
    chain = KILLCHAIN.search(dom)
    assert chain, "no kill-chain line"
    shown = re.findall(r"<li[^>]*>([^<]*)</li>", chain.group(1))
    assert shown == tactics, f"kill chain {shown}, campaign says {tactics}"
    # The same tactics, in the matrix's column order (kill-chain order).
    columns = re.findall(r'<section class="tactic"[^>]*aria-label="([^"]+)"', dom)
    assert [t for t in columns if t in tactics] == tactics, "tactics out of kill-chain order"
    # The Attack Flow: one focusable step per technique, and an arrow between neighbours.
    steps = re.findall(r'<g class="step" tabindex="0"[^>]*data-technique="([^"]+)"', dom)
    assert steps == [t["id"] for t in c["techniques"]], steps
    assert len(re.findall(r'<line [^>]*marker-end="url\(#arrow\)"', dom)) == len(steps) - 1
    assert re.search(r"Evidence (none|weak|strong): ", dom), "candidate groups without their evidence wording"

    shot = ROOT / "target" / "ui-campaign.png"
    chromium("--virtual-time-budget=20000", "--window-size=1600,1400", "--hide-scrollbars", f"--screenshot={shot}", page)
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot of the campaign panel: {shot}")
