// The call lifecycle over supabase-js: inserts/updates of public.calls (the database enforces
// who may do what) and the client RPCs. Every function returns a Result, never throws.
import type { SupabaseClient } from "@supabase/supabase-js";
import type { Database, Tables } from "./database.types.js";
import { fail, fromPostgrestError, ok, protocolError, type Result } from "./errors.js";
import { isEndReason, type CallStatus, type EndReason, type Role } from "./reasons.js";

export type CallsClient = SupabaseClient<Database>;
export type CallRow = Tables<"calls">;
type CallInsert = Database["public"]["Tables"]["calls"]["Insert"];

export interface StartCallOptions {
  readonly calleeId: string;
  readonly video?: boolean;
  /** Your own UUID (e.g. the CallKit call UUID): a retried start returns the same call. */
  readonly id?: string;
}

interface PgError {
  readonly code?: string | null;
  readonly message?: string | null;
}

async function readCall(client: CallsClient, callId: string): Promise<Result<CallRow>> {
  const { data, error } = await client.from("calls").select("*").eq("id", callId).maybeSingle();
  if (error) return fail(fromPostgrestError(error));
  return data ? ok(data) : fail(notFound());
}

// RLS hides calls the user is not part of: an empty answer means "unknown or not yours".
const notFound = () => fromPostgrestError({ code: "P0002", message: "call not found" });

export async function startCall(
  client: CallsClient,
  options: StartCallOptions,
): Promise<Result<CallRow>> {
  const row: Pick<CallInsert, "id" | "callee_id" | "video"> = {
    callee_id: options.calleeId,
    video: options.video ?? true,
  };
  if (options.id !== undefined) row.id = options.id;
  // The generator marks created_at, ring_deadline, updated_at and version as required (NOT
  // NULL without a column default); the insert trigger sets them, and a client may not.
  const { data, error } = await client
    .from("calls")
    .insert(row as CallInsert)
    .select("*")
    .single();
  if (error) {
    // Same id again (a retry after a lost answer): the insert trigger refuses it as a second
    // open call (CA010) or the key as a duplicate; if the call with that id is ours, it's it.
    if ((error.code === "CA010" || error.code === "23505") && options.id !== undefined) {
      const existing = await readCall(client, options.id);
      if (existing.ok) return existing;
    }
    return fail(fromPostgrestError(error as PgError));
  }
  return ok(data);
}

async function transition(
  client: CallsClient,
  callId: string,
  status: CallStatus,
  endReason: EndReason | null,
): Promise<Result<CallRow>> {
  const patch: Database["public"]["Tables"]["calls"]["Update"] =
    endReason === null ? { status } : { status, end_reason: endReason };
  const { data, error } = await client
    .from("calls")
    .update(patch)
    .eq("id", callId)
    .select("*")
    .maybeSingle();
  if (error) return fail(fromPostgrestError(error));
  return data ? ok(data) : fail(notFound());
}

/** Callee: ringing → accepted (CA004 after the ring deadline). */
export const accept = (client: CallsClient, callId: string) =>
  transition(client, callId, "accepted", null);
/** Callee: ringing → ended/declined. */
export const decline = (client: CallsClient, callId: string) =>
  transition(client, callId, "ended", "declined");
/** Callee: ringing → ended/busy (this device is in another call). */
export const reportBusy = (client: CallsClient, callId: string) =>
  transition(client, callId, "ended", "busy");
/** Caller: ringing → ended/cancelled. */
export const cancel = (client: CallsClient, callId: string) =>
  transition(client, callId, "ended", "cancelled");
/** Either participant: accepted → ended/completed. */
export const hangUp = (client: CallsClient, callId: string) =>
  transition(client, callId, "ended", "completed");

/** The red button: cancel, decline or hang up depending on the call's status and your role. */
export function endCall(
  client: CallsClient,
  call: Pick<CallRow, "id" | "status">,
  role: Role,
): Promise<Result<CallRow>> {
  if (call.status === "accepted") return hangUp(client, call.id);
  return role === "caller" ? cancel(client, call.id) : decline(client, call.id);
}

export interface DeviceRegistration {
  readonly platform: "ios" | "android";
  /** APNs alert token (iOS) or FCM registration token (Android). */
  readonly token: string;
  /** iOS PushKit token: without it an iPhone cannot ring. */
  readonly voipToken?: string;
  readonly appId?: string;
  readonly apnsEnvironment?: "production" | "sandbox";
}

/** Upserts this device (moving a token another account registered before); → device id. */
export async function registerDevice(
  client: CallsClient,
  device: DeviceRegistration,
): Promise<Result<string>> {
  const args: Database["public"]["Functions"]["register_push_device"]["Args"] = {
    platform: device.platform,
    token: device.token,
  };
  if (device.voipToken !== undefined) args.voip_token = device.voipToken;
  if (device.appId !== undefined) args.app_id = device.appId;
  if (device.apnsEnvironment !== undefined) args.apns_environment = device.apnsEnvironment;
  const { data, error } = await client.rpc("register_push_device", args);
  if (error) return fail(fromPostgrestError(error));
  return typeof data === "string" ? ok(data) : fail(protocolError("device id missing"));
}

/** Callee: this device showed the ring (the caller's ringSummary counts it as acked). */
export async function ackRing(
  client: CallsClient,
  callId: string,
  deviceId: string,
): Promise<Result<boolean>> {
  const { data, error } = await client.rpc("ack_ring", { call_id: callId, device_id: deviceId });
  if (error) return fail(fromPostgrestError(error));
  return ok(data === true);
}

export interface RingSummary {
  readonly devices: number;
  readonly sent: number;
  readonly acked: number;
  readonly failed: number;
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

/** Caller: how far the ring got ("Ringing…" once `sent` or `acked` is above 0). */
export async function ringSummary(
  client: CallsClient,
  callId: string,
): Promise<Result<RingSummary>> {
  const { data, error } = await client.rpc("call_ring_summary", { call_id: callId });
  if (error) return fail(fromPostgrestError(error));
  const d = (typeof data === "object" && data !== null ? data : {}) as Record<string, unknown>;
  const { devices, sent, acked, failed } = d;
  if (isCount(devices) && isCount(sent) && isCount(acked) && isCount(failed)) {
    return ok({ devices, sent, acked, failed });
  }
  return fail(protocolError("unexpected ring summary"));
}

export interface HeartbeatReply {
  readonly status: CallStatus;
  readonly endReason: EndReason | null;
  readonly version: number;
}

/** One presence beat (`call_heartbeat`); the reply says whether the call still runs. */
export async function heartbeat(
  client: CallsClient,
  callId: string,
): Promise<Result<HeartbeatReply>> {
  // call_heartbeat arrives with the presence migration; until database.types.ts is
  // regenerated from it the name is not in the generated Functions, hence the widening.
  const rpc = client.rpc.bind(client) as unknown as (
    fn: string,
    args: Record<string, unknown>,
  ) => PromiseLike<{ data: unknown; error: PgError | null }>;
  const { data, error } = await rpc("call_heartbeat", { call_id: callId });
  if (error) return fail(fromPostgrestError(error));
  const d = (typeof data === "object" && data !== null ? data : {}) as Record<string, unknown>;
  const status = d["status"];
  if (
    (status === "ringing" || status === "accepted" || status === "ended") &&
    isCount(d["version"])
  ) {
    const reason = d["end_reason"];
    return ok({
      status,
      endReason: isEndReason(reason) ? reason : null, // a newer server's reason maps to failed
      version: d["version"],
    });
  }
  return fail(protocolError("unexpected heartbeat reply"));
}
