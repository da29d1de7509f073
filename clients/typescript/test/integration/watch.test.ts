// watchCall through the real supabase-js Realtime client against tests/fakes/realtime_server.py
// (Phoenix protocol over a real websocket, fed from the real calls table) with the re-read going
// to the PostgREST stand-in. Run by tests/integration/test_client_kit_watch.py.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import { cancel, startCall, watchCall, type CallRow, type CallsClient, type Database } from "../../src/index.js";

interface WatchFixture {
  readonly realtimeUrl: string;
  readonly restUrl: string;
  /** POST /lose-next-event, POST /cut: Realtime faults on demand. */
  readonly faultsUrl: string;
  readonly anonKey: string;
  readonly users: Record<string, { readonly id: string; readonly jwt: string }>;
}
const path = process.env["KIT_WATCH"];
if (!path) throw new Error("KIT_WATCH is not set: run through tests/integration/test_client_kit_watch.py");
const fx = JSON.parse(readFileSync(path, "utf8")) as WatchFixture;

function as(name: string): CallsClient {
  const user = fx.users[name]!;
  // REST goes to the PostgREST stand-in, Realtime to the fake Realtime server.
  const rewrite: typeof fetch = (input, init) =>
    fetch(String(input instanceof Request ? input.url : input).replace(fx.realtimeUrl, fx.restUrl), init);
  return createClient<Database>(fx.realtimeUrl, fx.anonKey, {
    accessToken: async () => user.jwt,
    global: { fetch: rewrite },
    realtime: { transport: WebSocket as never, vsn: "1.0.0" },
  });
}
const id = (name: string): string => fx.users[name]!.id;

function collector() {
  const rows: CallRow[] = [];
  const waitFor = (what: string, pred: (r: CallRow) => boolean, ms = 10_000) =>
    new Promise<CallRow>((resolve, reject) => {
      const deadline = Date.now() + ms;
      const tick = () => {
        const hit = rows.find(pred);
        if (hit) resolve(hit);
        else if (Date.now() > deadline) reject(new Error(`${what} within ${ms} ms; saw ${JSON.stringify(rows.map((r) => [r.version, r.status]))}`));
        else setTimeout(tick, 20);
      };
      tick();
    });
  return { rows, waitFor };
}

test("a change made before the subscription is caught by the re-read on subscribe", async () => {
  const started = await startCall(as("alice"), { calleeId: id("bob") });
  assert.ok(started.ok);
  assert.ok((await cancel(as("alice"), started.value.id)).ok); // the late-push case
  const bob = as("bob");
  const seen = collector();
  const watch = watchCall(bob, started.value.id, { onChange: (row) => seen.rows.push(row) });
  try {
    const row = await seen.waitFor("the ended row", (r) => r.status === "ended");
    assert.equal(row.end_reason, "cancelled");
    assert.equal(watch.current?.version, row.version);
  } finally {
    await watch.unsubscribe();
    await bob.removeAllChannels();
  }
});

test("a live change arrives as a Realtime event; repeats and other calls are ignored", async () => {
  const carol = as("carol");
  const dave = as("dave");
  const started = await startCall(carol, { calleeId: id("dave") });
  assert.ok(started.ok);
  const seen = collector();
  const watch = watchCall(dave, started.value.id, { onChange: (row) => seen.rows.push(row) });
  try {
    await seen.waitFor("the ringing row (re-read)", (r) => r.status === "ringing");
    // Another call's change goes through the same feed: it must not reach this watch.
    const other = await startCall(as("erin"), { calleeId: id("frank") });
    assert.ok(other.ok);
    assert.ok((await cancel(carol, started.value.id)).ok);
    const ended = await seen.waitFor("the ended row (event)", (r) => r.status === "ended");
    assert.equal(ended.end_reason, "cancelled");
    await watch.refresh(); // same version again: not handed to the app twice
    assert.deepEqual(seen.rows.map((r) => r.version), [1, 2]);
    assert.ok(seen.rows.every((r) => r.id === started.value.id));
  } finally {
    await watch.unsubscribe();
    await dave.removeAllChannels();
  }
});

test("a change lost by Realtime is recovered by the re-read after the reconnect", async () => {
  const grace = as("grace");
  const heidi = as("heidi");
  const started = await startCall(grace, { calleeId: id("heidi") });
  assert.ok(started.ok);
  const seen = collector();
  const watch = watchCall(heidi, started.value.id, { onChange: (row) => seen.rows.push(row) });
  try {
    await seen.waitFor("the ringing row", (r) => r.status === "ringing");
    await fetch(`${fx.faultsUrl}/lose-next-event`, { method: "POST" });
    assert.ok((await cancel(grace, started.value.id)).ok);
    // The event is gone for good (the wrapper checks the server dropped it): only a re-read
    // can bring the change now.
    assert.deepEqual(seen.rows.map((r) => r.status), ["ringing"]);
    await fetch(`${fx.faultsUrl}/cut`, { method: "POST" }); // supabase-js reconnects, rejoins
    const ended = await seen.waitFor("the ended row (re-read)", (r) => r.status === "ended", 20_000);
    assert.equal(ended.end_reason, "cancelled");
  } finally {
    await watch.unsubscribe();
    await heidi.removeAllChannels();
  }
});
