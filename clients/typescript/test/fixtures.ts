// Fixtures written by the pytest wrapper from the Python side (payload builders, catalogue),
// so the kit is tested against what the server really produces. No fallback: without the
// file the tests fail, they never pass on data of their own.
import { readFileSync } from "node:fs";

export interface PushFixture {
  readonly name: string;
  readonly transport: "apns" | "fcm";
  /** VoIP payload dictionary (apns) or FCM `message.data` (fcm), exactly as sent. */
  readonly fields: Record<string, unknown>;
  /** PushMessage.common_fields(): the typed values the server meant. */
  readonly expected: Record<string, string | number | boolean>;
}

export interface Fixtures {
  readonly endReasons: string[];
  readonly problemTypes: Record<string, number>;
  readonly sqlstates: string[];
  readonly pushes: PushFixture[];
}

export function fixtures(): Fixtures {
  const path = process.env["KIT_FIXTURES"];
  if (!path) throw new Error("KIT_FIXTURES is not set: run through tests/integration/test_client_kit.py");
  return JSON.parse(readFileSync(path, "utf8")) as Fixtures;
}
