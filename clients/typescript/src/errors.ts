// Every failure comes back as a typed value (never a thrown exception): database errors keyed
// by the SQLSTATEs our migrations raise, token-server errors keyed by their problem type.

/** SQLSTATEs the schema raises on purpose, with a stable name for app code. */
export const SQLSTATES = {
  CA001: "illegal_transition",
  CA002: "column_set_by_database",
  CA003: "call_ended",
  CA004: "ring_deadline_passed",
  CA005: "bad_initial_status",
  CA006: "invalid_participants",
  CA010: "caller_has_open_call",
  CA011: "caller_in_call",
  CA012: "call_rate_limited",
  CA020: "append_only",
  CA031: "invalid_push_token",
  CA100: "foreign_calls_table", // migrations only: public.calls exists and is not ours
  "42501": "not_allowed",
  P0002: "not_found",
  "22023": "invalid_argument",
  "23505": "duplicate",
} as const;
export type SqlState = keyof typeof SQLSTATES;
export type DatabaseErrorName = (typeof SQLSTATES)[SqlState];

export const PROBLEM_BASE = "https://call-orchestrator.dev/problems/";
/** Token-server problem types (RFC 9457 `type` = PROBLEM_BASE + slug) and their status. */
export const PROBLEM_TYPES = {
  "bad-request": 400,
  unauthorized: 401,
  "origin-not-allowed": 403,
  "not-found": 404,
  "method-not-allowed": 405,
  "request-timeout": 408,
  "call-ended": 409,
  "call-not-accepted": 409,
  "payload-too-large": 413,
  "rate-limited": 429,
  internal: 500,
  "dependency-unavailable": 503,
} as const;
export type ProblemType = keyof typeof PROBLEM_TYPES;

export interface DatabaseError {
  readonly source: "database";
  /** One of SQLSTATES, or "other" for a code the kit does not name (see `sqlstate`). */
  readonly code: SqlState | "other";
  readonly name: DatabaseErrorName | "other";
  readonly sqlstate: string;
  readonly message: string;
  readonly retryable: boolean;
}

export interface TokenServerError {
  readonly source: "token-server";
  readonly type: ProblemType | "other";
  readonly status: number;
  readonly title: string;
  readonly detail: string | null;
  /** From `Retry-After` (429) when the server sent one. */
  readonly retryAfterSeconds: number | null;
  readonly retryable: boolean;
}

export interface NetworkError {
  readonly source: "network";
  readonly message: string;
  readonly retryable: true;
}

/** The server answered something the contract does not describe. */
export interface ProtocolError {
  readonly source: "protocol";
  readonly message: string;
  readonly retryable: false;
}

export type KitError = DatabaseError | TokenServerError | NetworkError | ProtocolError;

export type Result<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: KitError };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T>(error: KitError): Result<T> => ({ ok: false, error });

// Waiting helps with these; the others need a different request.
const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set(["CA012", "40001", "40P01", "57014"]);
const RETRYABLE_PROBLEMS: ReadonlySet<string> = new Set([
  "request-timeout",
  "rate-limited",
  "internal",
  "dependency-unavailable",
]);

const isSqlState = (code: string): code is SqlState => Object.hasOwn(SQLSTATES, code);
const isProblemType = (slug: string): slug is ProblemType => Object.hasOwn(PROBLEM_TYPES, slug);

export function networkError(message: string): NetworkError {
  return { source: "network", message, retryable: true };
}

export function protocolError(message: string): ProtocolError {
  return { source: "protocol", message, retryable: false };
}

/** A supabase-js `PostgrestError` (or anything shaped like one) as a KitError. */
export function fromPostgrestError(error: {
  readonly code?: string | null;
  readonly message?: string | null;
}): KitError {
  const sqlstate = error.code ?? "";
  const message = error.message ?? "";
  // supabase-js reports a failed fetch with an empty code: nothing reached the database.
  if (sqlstate === "") return networkError(message || "request failed");
  const code = isSqlState(sqlstate) ? sqlstate : "other";
  return {
    source: "database",
    code,
    name: code === "other" ? "other" : SQLSTATES[code],
    sqlstate,
    message,
    retryable: RETRYABLE_SQLSTATES.has(sqlstate),
  };
}

/** An RFC 9457 problem document from the token server as a KitError. */
export function fromProblem(status: number, body: unknown, retryAfter: string | null): KitError {
  const doc = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const uri = typeof doc["type"] === "string" ? doc["type"] : "";
  const slug = uri.startsWith(PROBLEM_BASE) ? uri.slice(PROBLEM_BASE.length) : "";
  const type = isProblemType(slug) ? slug : "other";
  const seconds = retryAfter !== null && /^\d+$/.test(retryAfter) ? Number(retryAfter) : null;
  return {
    source: "token-server",
    type,
    status,
    title: typeof doc["title"] === "string" ? doc["title"] : `HTTP ${status}`,
    detail: typeof doc["detail"] === "string" ? doc["detail"] : null,
    retryAfterSeconds: seconds,
    retryable: type === "other" ? status >= 500 : RETRYABLE_PROBLEMS.has(type),
  };
}

/** One line for logs and toasts; never contains tokens (the kit never puts them in errors). */
export function describeError(error: KitError): string {
  switch (error.source) {
    case "database":
      return `${error.sqlstate} ${error.name}: ${error.message}`;
    case "token-server":
      return `${error.status} ${error.type}: ${error.detail ?? error.title}`;
    default:
      return `${error.source}: ${error.message}`;
  }
}
