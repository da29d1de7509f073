import assert from "node:assert/strict";
import { test } from "node:test";
import {
  PROBLEM_BASE,
  createTokenRenewal,
  fail,
  fromProblem,
  networkError,
  ok,
  type AgoraToken,
  type Result,
} from "../../src/index.js";
import { ManualClock, settle } from "../clock.js";

const T0 = Date.parse("2026-01-01T12:00:00.000Z");
const token = (n: number, expiresAt: number): AgoraToken => ({
  appId: "a".repeat(32),
  channel: "00000000-0000-4000-8000-000000000001",
  uid: 1,
  token: `token-${n}`,
  tokenVersion: "007",
  expiresAt: new Date(expiresAt),
});

function harness(answers: Array<Result<AgoraToken>>, leadSeconds = 25) {
  const clock = new ManualClock(T0);
  const renewed: string[] = [];
  const gaveUp: string[] = [];
  let fetches = 0;
  const renewal = createTokenRenewal({
    engine: { renewToken: (t) => (renewed.push(t), 0) },
    fetchToken: async () => {
      fetches++;
      return answers.shift() ?? fail(networkError("no more answers"));
    },
    initial: token(0, T0 + 60_000),
    leadSeconds,
    retryDelaysMs: [1000, 2000],
    onGiveUp: (e) => gaveUp.push(e.source === "token-server" ? e.type : e.source),
    clock,
  });
  return { clock, renewal, renewed, gaveUp, fetches: () => fetches };
}

test("onTokenPrivilegeWillExpire renews at once and hands the token to the engine", async () => {
  const h = harness([ok(token(1, T0 + 120_000))]);
  h.renewal.handlers.onTokenPrivilegeWillExpire({}, "token-0");
  await settle();
  assert.deepEqual(h.renewed, ["token-1"]);
  assert.equal(h.renewal.current.token, "token-1");
  // The fallback timer moved to the new token's expiry.
  assert.deepEqual(h.clock.pending, [T0 + 120_000 - 25_000]);
});

test("onRequestToken (already expired) renews too", async () => {
  const h = harness([ok(token(1, T0 + 120_000))]);
  h.renewal.handlers.onRequestToken({});
  await settle();
  assert.deepEqual(h.renewed, ["token-1"]);
});

test("without any event the fallback timer renews leadSeconds before expiry", async () => {
  const h = harness([ok(token(1, T0 + 120_000))]);
  await h.clock.advanceTo(T0 + 34_999);
  assert.equal(h.fetches(), 0);
  await h.clock.advanceTo(T0 + 35_000);
  assert.deepEqual(h.renewed, ["token-1"]);
});

test("concurrent triggers share one request", async () => {
  const h = harness([ok(token(1, T0 + 120_000)), ok(token(2, T0 + 180_000))]);
  h.renewal.handlers.onTokenPrivilegeWillExpire({}, "token-0");
  h.renewal.handlers.onRequestToken({});
  await h.renewal.renewNow();
  await settle();
  assert.equal(h.fetches(), 1);
  assert.deepEqual(h.renewed, ["token-1"]);
});

test("transient failures retry while the old token is valid, honouring Retry-After", async () => {
  const limited = fromProblem(429, { type: `${PROBLEM_BASE}rate-limited` }, "3");
  const h = harness([fail(networkError("offline")), fail(limited), ok(token(1, T0 + 120_000))]);
  h.renewal.handlers.onTokenPrivilegeWillExpire({}, "token-0");
  await settle();
  assert.deepEqual(h.clock.pending, [T0 + 1000]);
  await h.clock.advanceTo(T0 + 1000);
  assert.deepEqual(h.clock.pending, [T0 + 1000 + 3000]); // Retry-After beats the 2 s step
  await h.clock.advanceTo(T0 + 4000);
  assert.deepEqual(h.renewed, ["token-1"]);
  assert.equal(h.fetches(), 3);
});

test("no retry scheduled past the old token's expiry", async () => {
  const h = harness([fail(networkError("offline"))]);
  await h.clock.advanceTo(T0 + 59_500);
  await h.renewal.renewNow();
  assert.deepEqual(h.clock.pending, []);
  assert.deepEqual(h.gaveUp, []);
});

test("a call that ended stops the helper and reports it", async () => {
  const ended = fromProblem(409, { type: `${PROBLEM_BASE}call-ended` }, null);
  const h = harness([fail(ended)]);
  await h.renewal.renewNow();
  assert.deepEqual(h.gaveUp, ["call-ended"]);
  assert.deepEqual(h.clock.pending, []);
  h.renewal.handlers.onRequestToken({});
  await settle();
  assert.deepEqual(h.renewed, []);
});

test("stop() cancels the timer", async () => {
  const h = harness([ok(token(1, T0 + 120_000))]);
  h.renewal.stop();
  await h.clock.advanceTo(T0 + 60_000);
  assert.equal(h.fetches(), 0);
});
