// fetchAgoraToken and the renewal helper against a real `orchestrator serve` started by
// tests/integration/test_client_kit_server.py (real HTTP, real JWTs, the real database).
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import {
  createTokenRenewal,
  fetchAgoraToken,
  type AgoraToken,
  type KitError,
  type TokenRenewal,
} from "../../src/index.js";

interface Participant {
  readonly callId: string;
  readonly jwt: string;
}
interface ServerFixture {
  readonly baseUrl: string;
  readonly appId: string;
  readonly ttlSeconds: number;
  readonly ringingCaller: Participant;
  readonly acceptedCallee: Participant;
  readonly endedCaller: Participant;
  readonly stranger: Participant;
  readonly outPath: string;
}

const path = process.env["KIT_SERVER"];
if (!path) throw new Error("KIT_SERVER is not set: run through tests/integration/test_client_kit_server.py");
const fx = JSON.parse(readFileSync(path, "utf8")) as ServerFixture;
const server = (jwt: string) => ({ baseUrl: fx.baseUrl, accessToken: () => jwt });
const record: Record<string, unknown> = {};
const save = () => writeFileSync(fx.outPath, JSON.stringify(record, null, 2));

async function token(who: Participant): Promise<AgoraToken> {
  const result = await fetchAgoraToken(server(who.jwt), who.callId);
  assert.ok(result.ok, JSON.stringify(result));
  return result.value;
}

function waitFor<T>(what: string, ms: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      const value = probe();
      if (value !== undefined) resolve(value);
      else if (Date.now() > deadline) reject(new Error(`${what} within ${ms} ms`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

test("the caller of a ringing call and the callee of an accepted one get tokens", async () => {
  const before = Date.now();
  const caller = await token(fx.ringingCaller);
  assert.equal(caller.uid, 1);
  assert.equal(caller.channel, fx.ringingCaller.callId);
  assert.equal(caller.appId, fx.appId);
  assert.equal(caller.tokenVersion, "007");
  assert.ok(caller.token.startsWith("007"));
  const ttl = caller.expiresAt.getTime() - before;
  assert.ok(ttl > (fx.ttlSeconds - 3) * 1000 && ttl <= (fx.ttlSeconds + 1) * 1000, String(ttl));
  const callee = await token(fx.acceptedCallee);
  assert.equal(callee.uid, 2);
  record["first"] = { token: caller.token, expiresAt: caller.expiresAt.toISOString() };
  save();
});

test("errors come back typed by problem type", async () => {
  const ended = await fetchAgoraToken(server(fx.endedCaller.jwt), fx.endedCaller.callId);
  assert.ok(!ended.ok);
  assert.deepEqual(
    ended.error.source === "token-server" && [ended.error.type, ended.error.status, ended.error.retryable],
    ["call-ended", 409, false],
  );
  const stranger = await fetchAgoraToken(server(fx.stranger.jwt), fx.ringingCaller.callId);
  assert.ok(!stranger.ok);
  assert.equal(stranger.error.source === "token-server" && stranger.error.type, "not-found");
  const forged = await fetchAgoraToken(server(fx.ringingCaller.jwt + "x"), fx.ringingCaller.callId);
  assert.ok(!forged.ok);
  assert.equal(forged.error.source === "token-server" && forged.error.type, "unauthorized");
  const signedOut = await fetchAgoraToken({ baseUrl: fx.baseUrl, accessToken: () => null }, fx.ringingCaller.callId);
  assert.ok(!signedOut.ok);
  assert.equal(signedOut.error.source === "token-server" && signedOut.error.type, "unauthorized");
  const down = await fetchAgoraToken({ baseUrl: "http://127.0.0.1:9", accessToken: () => "x" }, fx.ringingCaller.callId);
  assert.ok(!down.ok);
  assert.equal(down.error.source, "network");
  assert.ok(!JSON.stringify(down.error).includes(fx.ringingCaller.jwt));
});

/** Stands in for react-native-agora's engine: keeps the handler, records renewToken. */
class EngineStandIn {
  readonly renewed: Array<{ token: string; at: number }> = [];
  renewToken(token: string): number {
    this.renewed.push({ token, at: Date.now() });
    return 0;
  }
}

function renewal(engine: EngineStandIn, initial: AgoraToken, leadSeconds: number, who = fx.ringingCaller) {
  const gaveUp: KitError[] = [];
  const helper: TokenRenewal = createTokenRenewal({
    engine,
    initial,
    leadSeconds,
    fetchToken: () => fetchAgoraToken(server(who.jwt), who.callId),
    onGiveUp: (e) => gaveUp.push(e),
  });
  return { helper, gaveUp };
}

test("fallback timer: a new token arrives before the old one's privileges expire", async () => {
  const first = await token(fx.ringingCaller);
  const engine = new EngineStandIn();
  // Short TTL: renew (ttl - 2) s before expiry, i.e. about 2 s from now.
  const { helper } = renewal(engine, first, fx.ttlSeconds - 2);
  try {
    const got = await waitFor("a renewal", 15_000, () => engine.renewed[0]);
    assert.ok(got.at < first.expiresAt.getTime(), "renewed before the old token expired");
    assert.notEqual(got.token, first.token);
    assert.equal(helper.current.token, got.token);
    assert.ok(helper.current.expiresAt.getTime() > first.expiresAt.getTime());
    record["timer"] = {
      old: first.token,
      oldExpiresAt: first.expiresAt.toISOString(),
      new: got.token,
      renewedAtMs: got.at,
    };
    save();
  } finally {
    helper.stop();
  }
});

test("onTokenPrivilegeWillExpire and onRequestToken drive a renewal from the server", async () => {
  const first = await token(fx.ringingCaller);
  const engine = new EngineStandIn();
  const { helper } = renewal(engine, first, 1); // timer far away: only the events renew
  try {
    helper.handlers.onTokenPrivilegeWillExpire({ channelId: first.channel, localUid: 1 }, first.token);
    const got = await waitFor("a renewal", 10_000, () => engine.renewed[0]);
    assert.notEqual(got.token, first.token);
    helper.handlers.onRequestToken({ channelId: first.channel, localUid: 1 });
    const again = await waitFor("a second renewal", 10_000, () => engine.renewed[1]);
    assert.equal(helper.current.token, again.token);
    record["event"] = { old: first.token, new: got.token, renewedAtMs: got.at };
    save();
  } finally {
    helper.stop();
  }
});

test("the helper gives up when the server says the call ended", async () => {
  const first = await token(fx.ringingCaller);
  const engine = new EngineStandIn();
  const { helper, gaveUp } = renewal(engine, first, 1, fx.endedCaller);
  const result = await helper.renewNow();
  assert.ok(!result.ok);
  assert.deepEqual(gaveUp.map((e) => e.source === "token-server" && e.type), ["call-ended"]);
  assert.deepEqual(engine.renewed, []);
});
