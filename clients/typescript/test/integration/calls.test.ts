// The calls API through the real supabase-js client, over real HTTP, against the real database
// (RLS, triggers, RPCs) behind tests/fakes/postgrest.py. Run by tests/integration/test_client_kit_api.py.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import {
  accept,
  ackRing,
  cancel,
  decline,
  endCall,
  hangUp,
  heartbeat,
  registerDevice,
  ringSummary,
  startCall,
  startHeartbeat,
  type CallsClient,
  type Database,
  type KitError,
} from "../../src/index.js";

interface ApiFixture {
  readonly url: string;
  readonly anonKey: string;
  /** name → { id, jwt } */
  readonly users: Record<string, { readonly id: string; readonly jwt: string }>;
  readonly newCallId: string;
}

const path = process.env["KIT_API"];
if (!path) throw new Error("KIT_API is not set: run through tests/integration/test_client_kit_api.py");
const fx = JSON.parse(readFileSync(path, "utf8")) as ApiFixture;
// The heartbeat part runs on its own: it needs call_heartbeat, which the wrapper checks for.
const part = process.env["KIT_API_PART"] === "heartbeat" ? "heartbeat" : "api";
const apiTest = part === "api" ? test : test.skip;
const heartbeatTest = part === "heartbeat" ? test : test.skip;

function as(name: string): CallsClient {
  const user = fx.users[name];
  assert.ok(user, name);
  // Node < 22 has no global WebSocket; React Native does. (Realtime is unused here.)
  return createClient<Database>(fx.url, fx.anonKey, {
    accessToken: async () => user.jwt,
    realtime: { transport: WebSocket as never },
  });
}
const id = (name: string): string => fx.users[name]!.id;

function code(error: KitError): string {
  return error.source === "database" ? error.code : error.source;
}

apiTest("start, accept, hang up: rows come back typed, version bumps every change", async () => {
  const alice = as("alice");
  const bob = as("bob");
  const started = await startCall(alice, { calleeId: id("bob"), video: false });
  assert.ok(started.ok, JSON.stringify(started));
  const call = started.value;
  assert.equal(call.status, "ringing");
  assert.equal(call.caller_id, id("alice"));
  assert.equal(call.video, false);
  assert.equal(call.version, 1);
  assert.ok(Date.parse(call.ring_deadline) > Date.parse(call.created_at));

  const second = await startCall(alice, { calleeId: id("carol") });
  assert.ok(!second.ok);
  assert.equal(code(second.error), "CA010"); // one open outgoing call per caller
  assert.equal(second.error.source === "database" && second.error.name, "caller_has_open_call");

  const stranger = await accept(as("mallory"), call.id);
  assert.ok(!stranger.ok);
  assert.equal(code(stranger.error), "P0002"); // RLS: not yours looks like unknown

  const accepted = await accept(bob, call.id);
  assert.ok(accepted.ok, JSON.stringify(accepted));
  assert.equal(accepted.value.status, "accepted");
  assert.equal(accepted.value.version, 2);

  const hung = await hangUp(alice, call.id);
  assert.ok(hung.ok, JSON.stringify(hung));
  assert.deepEqual([hung.value.status, hung.value.end_reason, hung.value.ended_by], ["ended", "completed", id("alice")]);

  const late = await decline(bob, call.id);
  assert.ok(!late.ok);
  assert.equal(code(late.error), "CA003"); // nothing changes on an ended call
});

apiTest("decline, cancel and endCall pick the transition the database allows", async () => {
  const one = await startCall(as("dave"), { calleeId: id("erin") });
  assert.ok(one.ok);
  const declined = await decline(as("erin"), one.value.id);
  assert.ok(declined.ok);
  assert.equal(declined.value.end_reason, "declined");

  const two = await startCall(as("dave"), { calleeId: id("erin") });
  assert.ok(two.ok);
  const wrongSide = await cancel(as("erin"), two.value.id); // the callee cannot cancel
  assert.ok(!wrongSide.ok);
  assert.equal(code(wrongSide.error), "CA001");
  const ended = await endCall(as("dave"), two.value, "caller");
  assert.ok(ended.ok);
  assert.equal(ended.value.end_reason, "cancelled");
});

apiTest("a retried start with the same id returns the same call", async () => {
  const frank = as("frank");
  const first = await startCall(frank, { calleeId: id("grace"), id: fx.newCallId });
  assert.ok(first.ok, JSON.stringify(first));
  assert.equal(first.value.id, fx.newCallId);
  const again = await startCall(frank, { calleeId: id("grace"), id: fx.newCallId });
  assert.ok(again.ok, JSON.stringify(again));
  assert.equal(again.value.id, fx.newCallId);
  assert.equal(again.value.version, first.value.version);
});

apiTest("devices, ring acks and the ring summary through the RPCs", async () => {
  const grace = as("grace");
  const device = await registerDevice(grace, { platform: "android", token: `fcm_${"a".repeat(40)}`, appId: "com.acme" });
  assert.ok(device.ok, JSON.stringify(device));
  assert.match(device.value, /^[0-9a-f-]{36}$/);
  const same = await registerDevice(grace, { platform: "android", token: `fcm_${"a".repeat(40)}` });
  assert.ok(same.ok);
  assert.equal(same.value, device.value); // an upsert, not a second row

  const acked = await ackRing(grace, fx.newCallId, device.value);
  assert.ok(acked.ok);
  assert.equal(acked.value, false); // no worker ran: no ring delivery to mark

  const summary = await ringSummary(as("frank"), fx.newCallId);
  assert.ok(summary.ok, JSON.stringify(summary));
  assert.deepEqual(summary.value, { devices: 0, sent: 0, acked: 0, failed: 0 });
  const nosy = await ringSummary(as("mallory"), fx.newCallId);
  assert.ok(!nosy.ok);
  assert.equal(code(nosy.error), "P0002");
});

heartbeatTest("heartbeat: the reply reports the call, and the loop stops when it ended", async () => {
  const heidi = as("heidi");
  const ivan = as("ivan");
  const started = await startCall(heidi, { calleeId: id("ivan") });
  assert.ok(started.ok);
  const accepted = await accept(ivan, started.value.id);
  assert.ok(accepted.ok);
  const beat = await heartbeat(heidi, started.value.id);
  assert.ok(beat.ok, JSON.stringify(beat));
  assert.deepEqual(beat.value, { status: "accepted", endReason: null, version: accepted.value.version });
  const nosy = await heartbeat(as("mallory"), started.value.id);
  assert.ok(!nosy.ok);
  assert.equal(code(nosy.error), "P0002");

  const ended = new Promise<string | null>((resolve) => {
    startHeartbeat(ivan, started.value.id, { intervalMs: 100, onEnded: (reason) => resolve(reason) });
  });
  assert.ok((await hangUp(heidi, started.value.id)).ok);
  assert.equal(await ended, "completed");
});
