// A minimal attackmesh detector: reads findings, one JSON object per line, on stdin and streams
// them to the enrichment service's IngestService.Ingest in acknowledged batches, over gRPC
// (HTTP/2) with @connectrpc/connect-node.
//
// What the contract (proto/attackmesh/v1/ingest.proto) asks of a detector, and where it is done:
// - a bearer token with the role `detector` on every stream (`connect`);
// - a stable event_id per finding, so a resent batch is recognised downstream (`detection`);
// - several batches in flight, answered in order, one answer per batch (`stream`);
// - DURABLE: done; its rejections name invalid events that resending will not fix (`answered`);
// - RETRY: nothing of the batch was taken; send the same batch again after retry_after (`answered`);
// - a broken stream: reconnect with backoff and resend every unacknowledged batch with the same
//   batch ids and event ids (`main`).
//
//   npm run generate && npm run build
//   node dist/detector.js --target 127.0.0.1:50052 --token-file detector.token < findings.ndjson

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { AckStatus, DetectorKind, EndpointSchema, Severity } from "./gen/attackmesh/v1/common_pb.js";
import { type DetectionEvent, DetectionEventSchema } from "./gen/attackmesh/v1/events_pb.js";
import {
  type IngestRequest,
  IngestRequestSchema,
  type IngestResponse,
  IngestService,
} from "./gen/attackmesh/v1/ingest_pb.js";

const DETECTOR = "netmon-01"; // this detector instance, sent as source_service
const BATCH_EVENTS = 100; // findings per batch (at most 10,000)
const IN_FLIGHT = 4; // batches sent before the first of them must be answered
const LINGER_MS = 200; // how long a partial batch waits for more findings
const MAX_BACKOFF_MS = 5000;

const log = (message: string) => console.log(message);

/** One finding as a DetectionEvent. Its event_id is derived from the finding itself, so the
 * same finding always carries the same id, however often it is sent. */
function detection(line: string): DetectionEvent {
  const finding = JSON.parse(line);
  return create(DetectionEventSchema, {
    eventId: `${DETECTOR}:${createHash("sha256").update(line).digest("hex").slice(0, 32)}`,
    timestamp: timestampFromDate(new Date(finding.time)),
    sourceService: DETECTOR,
    detectorKind: DetectorKind.TRAFFIC_MONITOR,
    eventType: finding.kind,
    source: create(EndpointSchema, { ip: finding.src_ip }),
    destination: create(EndpointSchema, { ip: finding.dst_ip, port: finding.dst_port ?? 0 }),
    severity: Severity.HIGH,
    description: finding.description,
    techniqueHints: finding.hints ?? [],
    original: line,
    originalFormat: "ndjson",
  });
}

/** Values pushed by one side and awaited by the other; also the request stream of a call. */
class Queue<T> {
  private items: T[] = [];
  private wake = () => {};
  closed = false;

  get empty() {
    return this.items.length === 0;
  }
  push(item: T) {
    this.items.push(item);
    this.wake();
  }
  close() {
    this.closed = true;
    this.wake();
  }
  /** The next item; undefined once closed and empty, or when none came within `ms`. */
  async take(ms?: number): Promise<T | undefined> {
    if (this.empty && !this.closed) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        if (ms !== undefined) timer = setTimeout(resolve, ms);
      });
      clearTimeout(timer);
    }
    return this.items.shift();
  }
  async *[Symbol.asyncIterator]() {
    for (let item = await this.take(); item !== undefined; item = await this.take()) yield item;
  }
}

/** The server closed the stream while batches were still unanswered. */
class StreamEnded extends Error {}

const findings = new Queue<string>();
const resend: IngestRequest[] = []; // batches to send again, oldest first
const unacked = new Map<bigint, IngestRequest>(); // sent on the current stream, not yet answered
let nextBatchId = 1n;
let accepted = 0;
let rejected = 0;
let backoffMs = 200; // wait before the next reconnect

const ended = () => findings.closed && findings.empty;

/** A batch to send: a resend first, else up to BATCH_EVENTS new findings (waiting for the first
 * one only when `wait`); undefined when there is nothing to send now. */
async function nextBatch(wait: boolean): Promise<IngestRequest | undefined> {
  const again = resend.shift();
  if (again) return again;
  const events: DetectionEvent[] = [];
  let deadline: number | undefined;
  while (events.length < BATCH_EVENTS) {
    const ms = deadline === undefined ? (wait ? undefined : 0) : Math.max(deadline - Date.now(), 1);
    const line = await findings.take(ms);
    if (line === undefined) break;
    deadline ??= Date.now() + LINGER_MS;
    try {
      events.push(detection(line));
    } catch (err) {
      log(`skipped unreadable finding (${err}): ${line.slice(0, 80)}`);
    }
  }
  if (events.length === 0) return undefined;
  return create(IngestRequestSchema, { batchId: nextBatchId++, events });
}

async function answered(answer: IngestResponse) {
  const batch = unacked.get(answer.batchId)!;
  unacked.delete(answer.batchId);
  if (answer.status === AckStatus.DURABLE) {
    accepted += answer.accepted;
    rejected += answer.rejected;
    for (const rejection of answer.rejections) {
      const problems = rejection.violations.map((v) => `${v.field}: ${v.description}`).join("; ");
      log(`rejected ${rejection.eventId} (batch ${batch.batchId}, index ${rejection.index}): ${problems}`);
    }
    log(`durable batch ${batch.batchId}: ${answer.accepted} accepted, ${answer.rejected} rejected`);
  } else {
    // ACK_STATUS_RETRY: nothing of this batch was taken.
    const waitMs = answer.retryAfter ? durationMs(answer.retryAfter) : 0;
    log(`retry batch ${batch.batchId} in ${((waitMs || 1000) / 1000).toFixed(2)}s: ${answer.message}`);
    await sleep(waitMs || 1000);
    resend.push(batch);
  }
}

/** Sends batches (at most IN_FLIGHT unanswered) and reads their answers until the input has
 * ended and every batch is acknowledged. */
async function stream(outbox: Queue<IngestRequest>, answers: AsyncIterator<IngestResponse>) {
  for (;;) {
    while (unacked.size < IN_FLIGHT) {
      const batch = await nextBatch(unacked.size === 0);
      if (!batch) break;
      unacked.set(batch.batchId, batch);
      outbox.push(batch);
    }
    if (unacked.size === 0) return;
    const next = await answers.next();
    if (next.done) throw new StreamEnded();
    await answered(next.value);
    backoffMs = 200;
  }
}

async function main() {
  const { values } = parseArgs({
    options: { target: { type: "string", default: "127.0.0.1:50052" }, "token-file": { type: "string" } },
  });
  if (!values["token-file"]) throw new Error("--token-file is required");
  const token = readFileSync(values["token-file"], "utf8").trim();
  const input = createInterface({ input: process.stdin });
  input.on("line", (line) => line.trim() && findings.push(line.trim()));
  input.on("close", () => findings.close());

  const transport = createGrpcTransport({ baseUrl: `http://${values.target}` });
  const client = createClient(IngestService, transport);
  while (!(ended() && resend.length === 0 && unacked.size === 0)) {
    const outbox = new Queue<IngestRequest>();
    const call = client.ingest(outbox, { headers: { authorization: `Bearer ${token}` } });
    try {
      await stream(outbox, call[Symbol.asyncIterator]());
    } catch (err) {
      if (!(err instanceof ConnectError || err instanceof StreamEnded)) throw err;
      // Whatever was not answered may or may not have been taken: resend all of it, with the
      // same ids, on a new stream (sinks recognise an event_id they already hold).
      resend.unshift(...[...unacked.values()].sort((a, b) => (a.batchId < b.batchId ? -1 : 1)));
      unacked.clear();
      const why = err instanceof ConnectError ? Code[err.code] : "closed by the server";
      log(`reconnect in ${(backoffMs / 1000).toFixed(1)}s (${why}), ${resend.length} batches to resend`);
      await sleep(backoffMs);
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    } finally {
      outbox.close();
    }
  }
  log(`done: ${accepted} accepted, ${rejected} rejected`);
}

await main();
