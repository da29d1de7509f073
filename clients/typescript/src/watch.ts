// Realtime on one call row. postgres_changes is at-most-once (nothing is replayed after a
// reconnect), so every (re)subscribe re-reads the row, and an event is applied only when its
// `version` is newer than what we have: late or repeated events never move the UI backwards.
import type { RealtimePostgresChangesPayload } from "@supabase/supabase-js";
import type { CallRow, CallsClient } from "./calls.js";
import { fromPostgrestError, networkError, type KitError } from "./errors.js";

/** Keeps the newest row by `version`; `offer` says whether the row was applied. */
export class CallTracker {
  #row: CallRow | null = null;
  constructor(private readonly onChange: (row: CallRow) => void) {}
  get current(): CallRow | null {
    return this.#row;
  }
  offer(row: CallRow): boolean {
    if (this.#row !== null && row.version <= this.#row.version) return false;
    this.#row = row;
    this.onChange(row);
    return true;
  }
}

export interface WatchOptions {
  readonly onChange: (row: CallRow) => void;
  readonly onError?: (error: KitError) => void;
}

export interface CallWatch {
  readonly current: CallRow | null;
  /** Re-read the row now (e.g. when the app returns to the foreground). */
  refresh(): Promise<void>;
  unsubscribe(): Promise<void>;
}

export function watchCall(client: CallsClient, callId: string, options: WatchOptions): CallWatch {
  const tracker = new CallTracker(options.onChange);
  const refresh = async (): Promise<void> => {
    const { data, error } = await client.from("calls").select("*").eq("id", callId).maybeSingle();
    if (error) options.onError?.(fromPostgrestError(error));
    else if (data) tracker.offer(data);
  };
  const channel = client
    .channel(`call-${callId}`)
    .on(
      "postgres_changes",
      { event: "UPDATE", schema: "public", table: "calls", filter: `id=eq.${callId}` },
      (payload: RealtimePostgresChangesPayload<CallRow>) => {
        const row = payload.new;
        if ("id" in row && "version" in row && row.id === callId) tracker.offer(row as CallRow);
      },
    )
    // The subscription is live only after "Subscribed to PostgreSQL": reconcile then too.
    .on("system", {}, (payload: { extension?: string; status?: string }) => {
      if (payload.extension === "postgres_changes" && payload.status === "ok") void refresh();
    })
    .subscribe((status, err) => {
      if (status === "SUBSCRIBED") void refresh();
      else if (status === "CHANNEL_ERROR" || status === "TIMED_OUT") {
        options.onError?.(networkError(err?.message ?? `realtime ${status.toLowerCase()}`));
      }
    });
  return {
    get current() {
      return tracker.current;
    },
    refresh,
    async unsubscribe() {
      await client.removeChannel(channel);
    },
  };
}
