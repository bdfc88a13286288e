"""A minimal attackmesh detector: reads findings, one JSON object per line, on stdin and streams
them to the enrichment service's IngestService.Ingest in acknowledged batches.

What the contract (proto/attackmesh/v1/ingest.proto) asks of a detector, and where it is done:
- a bearer token with the role `detector` on every stream (`Detector.metadata`);
- a stable event_id per finding, so a resent batch is recognised downstream (`detection`);
- several batches in flight, answered in order, one answer per batch (`Detector.stream`);
- DURABLE: done; its rejections name invalid events that resending will not fix (`answered`);
- RETRY: nothing of the batch was taken; send the same batch again after retry_after (`answered`);
- a broken stream: reconnect with backoff and resend every unacknowledged batch with the same
  batch ids and event ids (`Detector.run`).

    PYTHONPATH=gen python detector.py --target 127.0.0.1:50052 --token-file detector.token < findings.ndjson
"""

import argparse
import datetime
import gc
import hashlib
import json
import queue
import sys
import threading
import time

import grpc
from attackmesh.v1 import common_pb2, events_pb2, ingest_pb2, ingest_pb2_grpc

DETECTOR = "netmon-01"  # this detector instance, sent as source_service
BATCH_EVENTS = 100  # findings per batch (at most 10,000)
IN_FLIGHT = 4  # batches sent before the first of them must be answered
LINGER_S = 0.2  # how long a partial batch waits for more findings
MAX_BACKOFF_S = 5.0


def log(message):
    print(message, flush=True)


def detection(line):
    """One finding as a DetectionEvent. Its event_id is derived from the finding itself, so the
    same finding always carries the same id, however often it is sent."""
    finding = json.loads(line)
    event = events_pb2.DetectionEvent(
        event_id=f"{DETECTOR}:{hashlib.sha256(line.encode()).hexdigest()[:32]}",
        source_service=DETECTOR,
        detector_kind=common_pb2.DETECTOR_KIND_TRAFFIC_MONITOR,
        event_type=finding["kind"],
        source=common_pb2.Endpoint(ip=finding["src_ip"]),
        destination=common_pb2.Endpoint(ip=finding["dst_ip"], port=finding.get("dst_port", 0)),
        severity=common_pb2.SEVERITY_HIGH,
        description=finding["description"],
        technique_hints=finding.get("hints", []),
        original=line,
        original_format="ndjson",
    )
    event.timestamp.FromDatetime(datetime.datetime.fromisoformat(finding["time"]))
    return event


def read_findings(lines, findings):
    """Feeds non-empty input lines to `findings`; None marks the end of input."""
    for line in lines:
        if line.strip():
            findings.put(line.strip())
    findings.put(None)


class StreamEnded(Exception):
    """The server closed the stream while batches were still unanswered."""


class Detector:
    def __init__(self, target, token):
        self.target = target
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.findings = queue.Queue()
        self.resend = []  # batches to send again, oldest first
        self.unacked = {}  # batch_id -> batch sent on the current stream, not yet answered
        self.next_batch_id = 1
        self.ended = False  # the input has ended
        self.accepted = self.rejected = 0
        self.backoff = 0.2  # wait before the next reconnect

    def next_batch(self, wait):
        """A batch to send: a resend first, else up to BATCH_EVENTS new findings (waiting for the
        first one only when `wait`); None when there is nothing to send now."""
        if self.resend:
            return self.resend.pop(0)
        events = []
        deadline = None
        while not self.ended and len(events) < BATCH_EVENTS:
            try:
                if deadline is None:
                    line = self.findings.get(block=wait)
                    deadline = time.monotonic() + LINGER_S
                else:
                    line = self.findings.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                break
            if line is None:
                self.ended = True
            else:
                try:
                    events.append(detection(line))
                except (ValueError, KeyError, TypeError) as err:
                    log(f"skipped unreadable finding ({err!r}): {line[:80]}")
        if not events:
            return None
        batch = ingest_pb2.IngestRequest(batch_id=self.next_batch_id, events=events)
        self.next_batch_id += 1
        return batch

    def answered(self, answer):
        batch = self.unacked.pop(answer.batch_id)
        if answer.status == common_pb2.ACK_STATUS_DURABLE:
            self.accepted += answer.accepted
            self.rejected += answer.rejected
            for rejection in answer.rejections:
                problems = "; ".join(f"{v.field}: {v.description}" for v in rejection.violations)
                log(f"rejected {rejection.event_id} (batch {batch.batch_id}, index {rejection.index}): {problems}")
            log(f"durable batch {batch.batch_id}: {answer.accepted} accepted, {answer.rejected} rejected")
        else:  # ACK_STATUS_RETRY: nothing of this batch was taken
            wait = answer.retry_after.ToTimedelta().total_seconds() or 1.0
            log(f"retry batch {batch.batch_id} in {wait:.2f}s: {answer.message}")
            time.sleep(wait)
            self.resend.append(batch)

    def stream(self, outbox, answers):
        """Sends batches (at most IN_FLIGHT unanswered) and reads their answers until the input
        has ended and every batch is acknowledged."""
        while True:
            while len(self.unacked) < IN_FLIGHT:
                batch = self.next_batch(wait=not self.unacked)
                if batch is None:
                    break
                self.unacked[batch.batch_id] = batch
                outbox.put(batch)
            if not self.unacked:
                return
            answer = next(answers, None)
            if answer is None:
                raise StreamEnded()
            self.answered(answer)
            self.backoff = 0.2

    def run(self):
        while not (self.ended and not self.resend and not self.unacked):
            channel = grpc.insecure_channel(self.target)
            outbox = queue.Queue()
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            answers = stub.Ingest(iter(outbox.get, None), metadata=self.metadata)
            try:
                self.stream(outbox, answers)
            except (grpc.RpcError, StreamEnded) as err:
                # Whatever was not answered may or may not have been taken: resend all of it, with
                # the same ids, on a new stream (sinks recognise an event_id they already hold).
                self.resend = sorted(self.unacked.values(), key=lambda b: b.batch_id) + self.resend
                self.unacked.clear()
                why = err.code().name if isinstance(err, grpc.RpcError) else "closed by the server"
                log(f"reconnect in {self.backoff:.1f}s ({why}), {len(self.resend)} batches to resend")
                time.sleep(self.backoff)
                self.backoff = min(self.backoff * 2, MAX_BACKOFF_S)
            finally:
                outbox.put(None)
                # Every batch is answered or will be resent: end the call (a no-op once it has ended).
                answers.cancel()
                channel.close()
        # A gRPC call object takes its call's lock when it is garbage-collected. Left for the collector
        # at interpreter exit, when grpc's daemon threads are frozen and may hold that lock, it hangs
        # the exit: collect it now, while those threads still run.
        del answers
        gc.collect()
        log(f"done: {self.accepted} accepted, {self.rejected} rejected")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50052", help="enrichment's gRPC address")
    parser.add_argument("--token-file", required=True, help="file holding a detector token")
    args = parser.parse_args()
    with open(args.token_file) as f:
        token = f.read().strip()
    detector = Detector(args.target, token)
    threading.Thread(target=read_findings, args=(sys.stdin, detector.findings), daemon=True).start()
    detector.run()


if __name__ == "__main__":
    main()
