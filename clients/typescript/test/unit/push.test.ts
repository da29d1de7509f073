import assert from "node:assert/strict";
import { test } from "node:test";
import { createDedupeStore, isStale, parseCallPush, parseFcmData, parseVoipPush, pushKey } from "../../src/index.js";
import { fixtures } from "../fixtures.js";

const { pushes } = fixtures();

test("fixtures cover both transports and every kind each one carries", () => {
  const seen = new Set(pushes.map((p) => `${p.transport}:${String(p.expected["kind"])}`));
  assert.deepEqual([...seen].sort(), ["apns:missed", "apns:ring", "fcm:missed", "fcm:ring", "fcm:stop"]);
  // FCM data really is all strings: the parser has something to convert.
  for (const p of pushes.filter((p) => p.transport === "fcm")) {
    for (const value of Object.values(p.fields)) assert.equal(typeof value, "string", p.name);
  }
});

for (const fixture of pushes) {
  test(`parses the server's ${fixture.name}`, () => {
    const parse = fixture.transport === "apns" ? parseVoipPush : parseFcmData;
    const parsed = parse(fixture.fields);
    assert.ok(parsed.ok, parsed.ok ? "" : parsed.reason);
    const e = fixture.expected;
    assert.equal(parsed.push.callId, e["call_id"]);
    assert.equal(parsed.push.kind, e["kind"]);
    assert.equal(parsed.push.seq, e["seq"]);
    assert.equal(typeof parsed.push.seq, "number");
    assert.equal(parsed.push.expiresAt.toISOString(), e["expires_at"]);
    assert.equal(parsed.push.callerId, e["caller_id"] === "" ? null : e["caller_id"]);
    assert.equal(parsed.push.callerName, e["caller_name"] === "" ? null : e["caller_name"]);
    assert.equal(parsed.push.video, e["video"]);
    assert.equal(typeof parsed.push.video, "boolean");
    assert.equal(parsed.push.endReason, e["end_reason"] ?? null);
  });
}

test("malformed pushes are refused with the field that is wrong", () => {
  const good = pushes.find((p) => p.transport === "fcm")!.fields;
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ ...good, call_id: "not-a-uuid" }, "call_id"],
    [{ ...good, kind: "ring2" }, "kind"],
    [{ ...good, seq: "1.5" }, "seq"],
    [{ ...good, seq: "-1" }, "seq"],
    [{ ...good, expires_at: "2026-01-01 12:00:00" }, "expires_at"],
    [{ ...good, expires_at: "2026-13-45T99:00:00.000Z" }, "expires_at"],
    [{ ...good, video: "yes" }, "video"],
  ];
  for (const [fields, reason] of cases) {
    const parsed = parseCallPush(fields);
    assert.equal(parsed.ok, false);
    assert.equal(parsed.ok ? "" : parsed.reason, reason);
  }
  assert.equal(parseFcmData(undefined).ok, false);
  assert.equal(parseVoipPush("x").ok, false);
});

test("isStale: past the deadline, or older than a version the app already has", () => {
  const parsed = parseCallPush(pushes.find((p) => p.transport === "apns")!.fields);
  assert.ok(parsed.ok);
  const push = parsed.push;
  const at = push.expiresAt.getTime();
  assert.equal(isStale(push, new Date(at - 1)), false);
  assert.equal(isStale(push, new Date(at)), true); // due means deadline <= now, like the DB
  assert.equal(isStale(push, new Date(at + 1)), true);
  assert.equal(isStale(push, new Date(at - 1000), push.seq), false);
  assert.equal(isStale(push, new Date(at - 1000), push.seq + 1), true);
});

test("dedupe: one per (call_id, kind, seq), bounded, restorable", () => {
  const parsed = parseCallPush(pushes.find((p) => p.transport === "fcm")!.fields);
  assert.ok(parsed.ok);
  const push = parsed.push;
  const now = new Date(push.expiresAt.getTime() - 5000);
  const store = createDedupeStore({ capacity: 3, graceMs: 1000 });
  assert.equal(store.firstSeen(push, now), true);
  assert.equal(store.firstSeen(push, now), false);
  assert.equal(store.firstSeen({ ...push, seq: push.seq + 1 }, now), true);
  assert.equal(store.firstSeen({ ...push, kind: push.kind === "stop" ? "ring" : "stop" }, now), true);
  assert.equal(pushKey(push), `${push.callId}:${push.kind}:${push.seq}`);
  // Capacity: a fourth key drops the oldest.
  assert.equal(store.firstSeen({ ...push, seq: push.seq + 2 }, now), true);
  assert.equal(store.size, 3);
  assert.equal(store.has(push), false);
  // Survives a restart through snapshot/restore.
  const again = createDedupeStore({ restore: store.snapshot() });
  assert.equal(again.firstSeen({ ...push, seq: push.seq + 2 }, now), false);
  // Forgets keys once the push expired plus the grace period.
  const later = new Date(push.expiresAt.getTime() + 1001);
  assert.equal(store.firstSeen({ ...push, seq: push.seq + 1 }, later), true);
  assert.equal(store.size, 1);
});
