import assert from "node:assert/strict";
import { test } from "node:test";
import { PROBLEM_BASE, describeError, fromPostgrestError, fromProblem } from "../../src/index.js";

test("PostgREST errors become database errors keyed by SQLSTATE", () => {
  const e = fromPostgrestError({ code: "CA010", message: "the caller already has an open call" });
  assert.deepEqual(e, {
    source: "database",
    code: "CA010",
    name: "caller_has_open_call",
    sqlstate: "CA010",
    message: "the caller already has an open call",
    retryable: false,
  });
  const invalid = fromPostgrestError({ code: "CA031", message: "invalid push token" });
  assert.equal(invalid.source === "database" && invalid.name, "invalid_push_token");
  const limited = fromPostgrestError({ code: "CA012", message: "slow down" });
  assert.equal(limited.retryable, true);
  const other = fromPostgrestError({ code: "XX000", message: "boom" });
  assert.equal(other.source === "database" && other.code, "other");
  assert.equal(other.source === "database" && other.sqlstate, "XX000");
  // supabase-js reports a failed fetch with an empty code.
  assert.deepEqual(fromPostgrestError({ code: "", message: "TypeError: fetch failed" }), {
    source: "network",
    message: "TypeError: fetch failed",
    retryable: true,
  });
});

test("problem documents become token-server errors keyed by type", () => {
  const e = fromProblem(429, { type: `${PROBLEM_BASE}rate-limited`, title: "Too many requests", status: 429 }, "7");
  assert.equal(e.source, "token-server");
  if (e.source !== "token-server") return;
  assert.equal(e.type, "rate-limited");
  assert.equal(e.retryAfterSeconds, 7);
  assert.equal(e.retryable, true);
  const ended = fromProblem(409, { type: `${PROBLEM_BASE}call-ended`, title: "Call has ended" }, null);
  assert.equal(ended.source === "token-server" && ended.type, "call-ended");
  assert.equal(ended.retryable, false);
  const notAccepted = fromProblem(409, { type: `${PROBLEM_BASE}call-not-accepted` }, null);
  assert.equal(notAccepted.source === "token-server" && notAccepted.type, "call-not-accepted");
  const foreign = fromProblem(502, "<html>bad gateway</html>", "Wed, 21 Oct 2015 07:28:00 GMT");
  assert.deepEqual(
    foreign.source === "token-server" && [foreign.type, foreign.retryable, foreign.retryAfterSeconds, foreign.title],
    ["other", true, null, "HTTP 502"],
  );
});

test("describeError gives one readable line per source", () => {
  assert.equal(describeError(fromPostgrestError({ code: "CA004", message: "too late" })), "CA004 ring_deadline_passed: too late");
  assert.equal(describeError(fromProblem(409, { type: `${PROBLEM_BASE}call-ended`, title: "Call has ended" }, null)), "409 call-ended: Call has ended");
  assert.equal(describeError(fromPostgrestError({ code: "", message: "fetch failed" })), "network: fetch failed");
});
