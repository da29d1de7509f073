// The server may, after a crash, send one push twice; apps dedupe on (call_id, kind, seq).
// The store is bounded and forgets keys once the push has expired anyway.
import type { CallPush } from "./push.js";

export const pushKey = (push: Pick<CallPush, "callId" | "kind" | "seq">): string =>
  `${push.callId}:${push.kind}:${push.seq}`;

export interface DedupeStore {
  /** True the first time this (call_id, kind, seq) is offered, false for every repeat. */
  firstSeen(push: CallPush, now?: Date): boolean;
  has(push: Pick<CallPush, "callId" | "kind" | "seq">): boolean;
  /** Entries as [key, expiry ms], to persist across app launches (e.g. AsyncStorage). */
  snapshot(): Array<[string, number]>;
  readonly size: number;
}

export interface DedupeOptions {
  /** Most keys kept (oldest dropped first). */
  readonly capacity?: number;
  /** Keep a key at least this long after the push's expiry (clock skew between phone and DB). */
  readonly graceMs?: number;
  readonly restore?: ReadonlyArray<readonly [string, number]>;
}

export function createDedupeStore(options: DedupeOptions = {}): DedupeStore {
  const capacity = options.capacity ?? 512;
  const graceMs = options.graceMs ?? 10 * 60_000;
  // Map keeps insertion order: the first entry is the oldest.
  const entries = new Map<string, number>(options.restore ?? []);
  const sweep = (nowMs: number): void => {
    for (const [key, until] of entries) if (until <= nowMs) entries.delete(key);
    while (entries.size > capacity) {
      const oldest = entries.keys().next();
      if (oldest.done === true) break;
      entries.delete(oldest.value);
    }
  };
  return {
    firstSeen(push, now = new Date()) {
      const nowMs = now.getTime();
      sweep(nowMs);
      const key = pushKey(push);
      if (entries.has(key)) return false;
      entries.set(key, Math.max(push.expiresAt.getTime(), nowMs) + graceMs);
      sweep(nowMs);
      return true;
    },
    has: (push) => entries.has(pushKey(push)),
    snapshot: () => [...entries],
    get size() {
      return entries.size;
    },
  };
}
