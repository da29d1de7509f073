// Keeps an Agora engine's token fresh. The SDK says when: onTokenPrivilegeWillExpire (30 s
// before privilege expiry) and onRequestToken (already expired). A fallback timer renews
// `leadSeconds` before `expiresAt` in case an event is missed (app in the background, event
// handler registered late). Renewals are single-flight and retried until the old token expires.
import type { AgoraToken } from "./agora.js";
import type { KitError, Result } from "./errors.js";
import { type Clock, systemClock } from "./timers.js";

/** The part of react-native-agora's IRtcEngine the helper uses. */
export interface TokenRenewalEngine {
  renewToken(token: string): number;
}

export interface TokenRenewalOptions {
  readonly engine: TokenRenewalEngine;
  /** Usually `() => fetchAgoraToken(server, callId)`. */
  readonly fetchToken: () => Promise<Result<AgoraToken>>;
  /** The token the engine joined with. */
  readonly initial: AgoraToken;
  /** Fallback timer: renew this long before expiry (default 25 s, after the SDK's 30 s event). */
  readonly leadSeconds?: number;
  /** Waits between failed attempts (the last one repeats) while the old token is valid. */
  readonly retryDelaysMs?: readonly number[];
  readonly onRenewed?: (token: AgoraToken) => void;
  /** The call ended, or is no longer ours: leave the channel. */
  readonly onGiveUp?: (error: KitError) => void;
  readonly clock?: Clock;
}

export interface TokenRenewal {
  /** Pass to `engine.registerEventHandler(...)` (alongside your own handler). */
  readonly handlers: {
    onTokenPrivilegeWillExpire(connection: unknown, token: string): void;
    onRequestToken(connection: unknown): void;
  };
  renewNow(): Promise<Result<AgoraToken>>;
  readonly current: AgoraToken;
  stop(): void;
}

// Waiting does not fix these: the call ended or the user has no business in it.
const FINAL = new Set(["call-ended", "not-found", "call-not-accepted"]);
const isFinal = (e: KitError): boolean => e.source === "token-server" && FINAL.has(e.type);

export function createTokenRenewal(options: TokenRenewalOptions): TokenRenewal {
  const clock = options.clock ?? systemClock;
  const leadMs = (options.leadSeconds ?? 25) * 1000;
  const delays = options.retryDelaysMs ?? [1000, 2000, 5000];
  let current = options.initial;
  let stopped = false;
  let timer: unknown = null;
  let inflight: Promise<Result<AgoraToken>> | null = null;

  const schedule = (ms: number, attempt: number): void => {
    if (timer !== null) clock.clearTimeout(timer);
    timer = stopped ? null : clock.setTimeout(() => void run(attempt), Math.max(0, ms));
  };
  const scheduleForExpiry = (): void =>
    schedule(current.expiresAt.getTime() - leadMs - clock.now(), 0);

  const attemptOnce = async (attempt: number): Promise<Result<AgoraToken>> => {
    const result = await options.fetchToken();
    if (stopped) return result;
    if (result.ok) {
      current = result.value;
      options.engine.renewToken(current.token);
      options.onRenewed?.(current);
      scheduleForExpiry();
    } else if (isFinal(result.error)) {
      stop();
      options.onGiveUp?.(result.error);
    } else {
      const wait = delays[Math.min(attempt, delays.length - 1)] ?? 1000;
      const retryAfter = result.error.source === "token-server" ? result.error.retryAfterSeconds : null;
      // Retry while it can still help; afterwards onRequestToken will ask again.
      const next = Math.max(wait, (retryAfter ?? 0) * 1000);
      if (clock.now() + next < current.expiresAt.getTime()) schedule(next, attempt + 1);
    }
    return result;
  };

  const run = (attempt: number): Promise<Result<AgoraToken>> => {
    if (inflight === null) {
      inflight = attemptOnce(attempt).finally(() => {
        inflight = null;
      });
    }
    return inflight;
  };

  const stop = (): void => {
    stopped = true;
    if (timer !== null) clock.clearTimeout(timer);
    timer = null;
  };

  scheduleForExpiry();
  return {
    handlers: {
      onTokenPrivilegeWillExpire: () => void run(0),
      onRequestToken: () => void run(0),
    },
    renewNow: () => run(0),
    get current() {
      return current;
    },
    stop,
  };
}
