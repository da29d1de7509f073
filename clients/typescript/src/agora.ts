// POST /v1/calls/{call_id}/agora-token on the token server, with the user's Supabase access
// token. The answer's `expires_at` is both the token's and its privileges' expiry.
import {
  fail,
  fromProblem,
  networkError,
  ok,
  PROBLEM_BASE,
  protocolError,
  type Result,
} from "./errors.js";

export interface AgoraToken {
  readonly appId: string;
  /** The call id. */
  readonly channel: string;
  /** 1 = caller, 2 = callee. */
  readonly uid: number;
  readonly token: string;
  readonly tokenVersion: string;
  readonly expiresAt: Date;
}

export interface TokenServerOptions {
  /** e.g. "https://calls.example.com" (no trailing path). */
  readonly baseUrl: string;
  /** The current Supabase access token (supabase-js refreshes it: ask each time). */
  readonly accessToken: () => string | null | undefined | Promise<string | null | undefined>;
  readonly fetch?: typeof fetch;
  readonly timeoutMs?: number;
}

function parseToken(body: unknown): AgoraToken | null {
  if (typeof body !== "object" || body === null) return null;
  const b = body as Record<string, unknown>;
  const { app_id, channel, uid, token, token_version, expires_at } = b;
  if (
    typeof app_id !== "string" ||
    typeof channel !== "string" ||
    typeof uid !== "number" ||
    typeof token !== "string" ||
    typeof token_version !== "string" ||
    typeof expires_at !== "string"
  ) {
    return null;
  }
  const expiresAt = new Date(expires_at);
  if (Number.isNaN(expiresAt.getTime())) return null;
  return { appId: app_id, channel, uid, token, tokenVersion: token_version, expiresAt };
}

export async function fetchAgoraToken(
  options: TokenServerOptions,
  callId: string,
): Promise<Result<AgoraToken>> {
  const doFetch = options.fetch ?? fetch;
  const jwt = await options.accessToken();
  if (!jwt) return fail(fromProblem(401, { type: `${PROBLEM_BASE}unauthorized`, title: "Signed out" }, null));
  const url = `${options.baseUrl.replace(/\/+$/, "")}/v1/calls/${encodeURIComponent(callId)}/agora-token`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), options.timeoutMs ?? 10_000);
  try {
    const response = await doFetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${jwt}`, Accept: "application/json" },
      signal: abort.signal,
    });
    const body: unknown = await response.json().catch(() => null);
    if (!response.ok) {
      return fail(fromProblem(response.status, body, response.headers.get("Retry-After")));
    }
    const token = parseToken(body);
    return token ? ok(token) : fail(protocolError("unexpected token response"));
  } catch (error) {
    // Never echo the request (it carries the access token): only the failure's kind.
    const name = error instanceof Error ? error.name : "Error";
    return fail(networkError(name === "AbortError" ? "token request timed out" : "token request failed"));
  } finally {
    clearTimeout(timer);
  }
}
