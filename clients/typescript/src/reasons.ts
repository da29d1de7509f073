// End reasons of the contract and how a phone shows each one: CallKit's CXCallEndedReason on
// iOS (what `RNCallKeep.reportEndCallWithUUID(uuid, reason)` takes) and Android Telecom's
// DisconnectCause. Plain data, so the app decides how to use it.

export const END_REASONS = [
  "completed",
  "declined",
  "cancelled",
  "missed",
  "busy",
  "unreachable",
  "failed",
  "max_duration",
  "glare",
  "connection_lost",
] as const;
export type EndReason = (typeof END_REASONS)[number];
export type CallStatus = "ringing" | "accepted" | "ended";
export type Role = "caller" | "callee";

export const isEndReason = (value: unknown): value is EndReason =>
  typeof value === "string" && (END_REASONS as readonly string[]).includes(value);

/** CXCallEndedReason raw values (CallKit). */
export const CXCallEndedReason = {
  failed: 1,
  remoteEnded: 2,
  unanswered: 3,
  answeredElsewhere: 4,
  declinedElsewhere: 5,
} as const;
export type CXCallEndedReasonValue = (typeof CXCallEndedReason)[keyof typeof CXCallEndedReason];

/** android.telecom.DisconnectCause codes. */
export const DisconnectCause = {
  UNKNOWN: 0,
  ERROR: 1,
  LOCAL: 2,
  REMOTE: 3,
  CANCELED: 4,
  MISSED: 5,
  REJECTED: 6,
  BUSY: 7,
  RESTRICTED: 8,
  OTHER: 9,
  ANSWERED_ELSEWHERE: 11,
} as const;
export type DisconnectCauseValue = (typeof DisconnectCause)[keyof typeof DisconnectCause];

export interface SystemEndCause {
  readonly ios: CXCallEndedReasonValue;
  readonly android: DisconnectCauseValue;
}

const cause = (ios: CXCallEndedReasonValue, android: DisconnectCauseValue): SystemEndCause => ({
  ios,
  android,
});
const C = CXCallEndedReason;
const D = DisconnectCause;

/**
 * What the *callee's* phone reports when the call ends without this device ending it.
 * `declined`/`busy` on the callee side come from another of the callee's devices (or that
 * device's busy report): CallKit's "elsewhere" reasons keep them out of the Recents as missed.
 */
export const CALLEE_END_CAUSES: Readonly<Record<EndReason, SystemEndCause>> = {
  completed: cause(C.remoteEnded, D.REMOTE),
  declined: cause(C.declinedElsewhere, D.REJECTED),
  cancelled: cause(C.unanswered, D.MISSED),
  missed: cause(C.unanswered, D.MISSED),
  busy: cause(C.answeredElsewhere, D.ANSWERED_ELSEWHERE),
  unreachable: cause(C.failed, D.ERROR),
  failed: cause(C.failed, D.ERROR),
  max_duration: cause(C.remoteEnded, D.REMOTE),
  glare: cause(C.answeredElsewhere, D.ANSWERED_ELSEWHERE),
  connection_lost: cause(C.failed, D.ERROR),
};

/** What the *caller's* phone reports for its outgoing call. */
export const CALLER_END_CAUSES: Readonly<Record<EndReason, SystemEndCause>> = {
  completed: cause(C.remoteEnded, D.REMOTE),
  declined: cause(C.remoteEnded, D.REJECTED),
  cancelled: cause(C.remoteEnded, D.LOCAL),
  missed: cause(C.unanswered, D.REMOTE),
  busy: cause(C.remoteEnded, D.BUSY),
  unreachable: cause(C.unanswered, D.ERROR),
  failed: cause(C.failed, D.ERROR),
  max_duration: cause(C.remoteEnded, D.REMOTE),
  // Glare merges the two calls: the survivor (the other direction) carries on.
  glare: cause(C.answeredElsewhere, D.ANSWERED_ELSEWHERE),
  connection_lost: cause(C.failed, D.ERROR),
};

/**
 * The callee answered on another of their devices: the call is `accepted`, not ended, yet this
 * device must stop ringing (Realtime shows `accepted`; Android's stop push has no end_reason).
 */
export const ANSWERED_ELSEWHERE: SystemEndCause = cause(C.answeredElsewhere, D.ANSWERED_ELSEWHERE);

/** Reason → system cause for this side; an unknown reason (newer server) is `failed`. */
export function systemEndCause(reason: string | null, role: Role): SystemEndCause {
  const table = role === "caller" ? CALLER_END_CAUSES : CALLEE_END_CAUSES;
  return isEndReason(reason) ? table[reason] : table.failed;
}

/**
 * The number react-native-callkeep's `reportEndCallWithUUID(uuid, reason)` wants. On iOS it is
 * the CXCallEndedReason; on Android callkeep translates its own codes (1 ERROR, 2 REMOTE,
 * 3 BUSY, 4 ANSWERED_ELSEWHERE, 6 MISSED) into a DisconnectCause, so we pick the nearest.
 */
export function callKeepEndReason(cause: SystemEndCause, platform: "ios" | "android"): number {
  if (platform === "ios") return cause.ios;
  switch (cause.android) {
    case D.ERROR:
      return 1;
    case D.BUSY:
      return 3;
    case D.ANSWERED_ELSEWHERE:
      return 4;
    case D.MISSED:
      return 6;
    default:
      return 2; // REMOTE: callkeep has no code for REJECTED, LOCAL or CANCELED
  }
}
