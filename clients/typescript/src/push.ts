// One typed object for both push transports. iOS VoIP pushes (PushKit) carry the fields as
// JSON at the top level with their JSON types; FCM data messages carry every value as a
// string ("true", "3"). Both parse into CallPush, or into a reason why not.
import { type EndReason, isEndReason } from "./reasons.js";

export type PushKind = "ring" | "stop" | "missed";
const KINDS: readonly string[] = ["ring", "stop", "missed"];

export interface CallPush {
  readonly callId: string;
  readonly kind: PushKind;
  /** calls.version when the push was built: order pushes and Realtime rows by it. */
  readonly seq: number;
  /** Ring deadline for a ring; the push's lifetime for stop/missed. */
  readonly expiresAt: Date;
  readonly callerId: string | null;
  readonly callerName: string | null;
  readonly video: boolean;
  readonly endReason: EndReason | null;
}

export type ParsedPush =
  | { readonly ok: true; readonly push: CallPush }
  | { readonly ok: false; readonly reason: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// RFC 3339 UTC as the server writes it; anything else is refused rather than guessed.
const STAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/;

function text(value: unknown): string | null {
  return typeof value === "string" && value !== "" && value !== "None" ? value : null;
}

function integer(value: unknown): number | null {
  if (typeof value === "number") return Number.isSafeInteger(value) ? value : null;
  if (typeof value === "string" && /^\d{1,15}$/.test(value)) return Number(value);
  return null;
}

function flag(value: unknown): boolean | null {
  if (typeof value === "boolean") return value;
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  return null;
}

/** Parse either transport's fields (VoIP payload dictionary or FCM `data`). */
export function parseCallPush(fields: unknown): ParsedPush {
  if (typeof fields !== "object" || fields === null) return { ok: false, reason: "not an object" };
  const f = fields as Record<string, unknown>;
  const callId = text(f["call_id"]);
  if (callId === null || !UUID.test(callId)) return { ok: false, reason: "call_id" };
  const kind = text(f["kind"]);
  if (kind === null || !KINDS.includes(kind)) return { ok: false, reason: "kind" };
  const seq = integer(f["seq"]);
  if (seq === null) return { ok: false, reason: "seq" };
  const stamp = text(f["expires_at"]);
  const expiresAt = stamp !== null && STAMP.test(stamp) ? new Date(stamp) : null;
  if (expiresAt === null || Number.isNaN(expiresAt.getTime())) {
    return { ok: false, reason: "expires_at" };
  }
  const video = flag(f["video"]);
  if (video === null) return { ok: false, reason: "video" };
  const callerId = text(f["caller_id"]);
  const endReason = text(f["end_reason"]);
  return {
    ok: true,
    push: {
      callId: callId.toLowerCase(),
      kind: kind as PushKind,
      seq,
      expiresAt,
      callerId: callerId !== null && UUID.test(callerId) ? callerId.toLowerCase() : null,
      callerName: text(f["caller_name"]),
      video,
      endReason: isEndReason(endReason) ? endReason : null,
    },
  };
}

/** react-native-voip-push-notification's `notification` (the VoIP payload dictionary). */
export const parseVoipPush = (payload: unknown): ParsedPush => parseCallPush(payload);

/** @react-native-firebase/messaging's `remoteMessage.data` (all values strings). */
export const parseFcmData = (data: Readonly<Record<string, unknown>> | undefined): ParsedPush =>
  parseCallPush(data ?? null);

/**
 * A push that can no longer be acted on: its deadline/lifetime passed, or the app already
 * knows a newer version of the call (`knownVersion` from Realtime or an earlier push).
 * iOS still requires a CallKit report for a stale VoIP push: report it, then end it at once.
 */
export function isStale(push: CallPush, now: Date = new Date(), knownVersion?: number): boolean {
  if (push.expiresAt.getTime() <= now.getTime()) return true;
  return knownVersion !== undefined && push.seq < knownVersion;
}
