import assert from "node:assert/strict";
import { test } from "node:test";
import { CallTracker, type CallRow } from "../../src/index.js";

const row = (version: number, status: CallRow["status"] = "ringing"): CallRow => ({
  id: "00000000-0000-4000-8000-000000000001",
  caller_id: "00000000-0000-4000-8000-000000000002",
  callee_id: "00000000-0000-4000-8000-000000000003",
  video: true,
  status,
  end_reason: status === "ended" ? "completed" : null,
  ended_by: null,
  created_at: "2026-01-01T12:00:00.000Z",
  ring_deadline: "2026-01-01T12:00:45.000Z",
  accepted_at: null,
  ended_at: null,
  updated_at: "2026-01-01T12:00:00.000Z",
  version,
});

test("only newer versions reach the app: late and repeated events are ignored", () => {
  const seen: number[] = [];
  const tracker = new CallTracker((r) => seen.push(r.version));
  assert.equal(tracker.offer(row(1)), true);
  assert.equal(tracker.offer(row(3, "ended")), true); // the re-read after a reconnect
  assert.equal(tracker.offer(row(2, "accepted")), false); // a late event
  assert.equal(tracker.offer(row(3, "ended")), false); // the same change twice
  assert.deepEqual(seen, [1, 3]);
  assert.equal(tracker.current?.status, "ended");
});
