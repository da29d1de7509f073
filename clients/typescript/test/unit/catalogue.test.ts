import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ANSWERED_ELSEWHERE,
  CALLEE_END_CAUSES,
  CALLER_END_CAUSES,
  END_REASONS,
  PROBLEM_TYPES,
  SQLSTATES,
  callKeepEndReason,
  systemEndCause,
} from "../../src/index.js";
import { fixtures } from "../fixtures.js";

const catalogue = fixtures();

test("every end reason of the Python catalogue has a mapping on both sides", () => {
  assert.ok(catalogue.endReasons.length >= 9);
  const missing = catalogue.endReasons.filter(
    (r) => !(END_REASONS as readonly string[]).includes(r) || !(r in CALLEE_END_CAUSES) || !(r in CALLER_END_CAUSES),
  );
  assert.deepEqual(missing, [], `end reasons without a mapping: ${missing.join(", ")}`);
});

test("mapping values are real CXCallEndedReason and DisconnectCause codes", () => {
  for (const table of [CALLEE_END_CAUSES, CALLER_END_CAUSES]) {
    for (const [reason, cause] of Object.entries(table)) {
      assert.ok([1, 2, 3, 4, 5].includes(cause.ios), reason);
      assert.ok(cause.android >= 0 && cause.android <= 12, reason);
      assert.ok([1, 2, 3, 4, 6].includes(callKeepEndReason(cause, "android")), reason);
    }
  }
  assert.deepEqual(systemEndCause("missed", "callee"), { ios: 3, android: 5 });
  assert.deepEqual(systemEndCause("declined", "callee"), { ios: 5, android: 6 });
  assert.deepEqual(systemEndCause("busy", "caller"), { ios: 2, android: 7 });
  assert.equal(callKeepEndReason(systemEndCause("missed", "callee"), "android"), 6);
  assert.deepEqual(systemEndCause("a_reason_from_the_future", "callee"), CALLEE_END_CAUSES.failed);
  assert.deepEqual(ANSWERED_ELSEWHERE, { ios: 4, android: 11 });
  assert.equal(callKeepEndReason(ANSWERED_ELSEWHERE, "android"), 4);
});

test("every token-server problem type is named with its status", () => {
  const missing = Object.entries(catalogue.problemTypes).filter(
    ([slug, status]) => (PROBLEM_TYPES as Record<string, number>)[slug] !== status,
  );
  assert.deepEqual(missing, []);
});

test("every SQLSTATE the migrations raise is named", () => {
  const missing = catalogue.sqlstates.filter((code) => !(code in SQLSTATES));
  assert.deepEqual(missing, [], `SQLSTATEs without a name: ${missing.join(", ")}`);
});
