// The heartbeat loop of an accepted call (PRESENCE_SOURCE includes `heartbeat`): one beat at
// once, then every PRESENCE_TIMEOUT_SECONDS / 3. The reply doubles as a poll of the call, so a
// call that ended while Realtime was silent still ends on the phone.
import { heartbeat, type CallsClient, type HeartbeatReply } from "./calls.js";
import type { KitError } from "./errors.js";
import type { EndReason } from "./reasons.js";
import { type Clock, systemClock } from "./timers.js";

export interface HeartbeatOptions {
  /** Default 10 000 ms: a third of the default PRESENCE_TIMEOUT_SECONDS (30). */
  readonly intervalMs?: number;
  readonly onEnded?: (reason: EndReason | null, reply: HeartbeatReply) => void;
  /** Every failed beat; the loop carries on unless the error says the call is not ours. */
  readonly onError?: (error: KitError) => void;
  readonly clock?: Clock;
}

export interface HeartbeatLoop {
  stop(): void;
  readonly running: boolean;
}

export function startHeartbeat(
  client: CallsClient,
  callId: string,
  options: HeartbeatOptions = {},
): HeartbeatLoop {
  const clock = options.clock ?? systemClock;
  const interval = options.intervalMs ?? 10_000;
  let running = true;
  let timer: unknown = null;
  const stop = (): void => {
    running = false;
    if (timer !== null) clock.clearTimeout(timer);
    timer = null;
  };
  const beat = async (): Promise<void> => {
    timer = null;
    const result = await heartbeat(client, callId);
    if (!running) return;
    if (result.ok) {
      if (result.value.status === "ended") {
        stop();
        options.onEnded?.(result.value.endReason, result.value);
        return;
      }
    } else {
      options.onError?.(result.error);
      if (result.error.source === "database" && result.error.code === "P0002") {
        stop(); // not a participant (or no such call): beating on is pointless
        return;
      }
    }
    timer = clock.setTimeout(() => void beat(), interval);
  };
  void beat();
  return {
    stop,
    get running() {
      return running;
    },
  };
}
