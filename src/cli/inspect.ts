import { fromBinary, toJson, type DescMessage } from "@bufbuild/protobuf";
import { EnvelopeSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { wireRegistry } from "../wire/registry.ts";
import { validateEnvelope } from "../wire/codec.ts";

/** Parses hex (whitespace, `0x` and `:` separators allowed) into bytes; undefined if it is not hex. */
export function parseHex(text: string): Uint8Array | undefined {
  const digits = text.replace(/0x/gi, "").replace(/[\s:]/g, "");
  if (digits.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(digits)) return undefined;
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

export interface InspectResult {
  readonly messageType: string;
  readonly ok: boolean;
  /** The decoded message in ProtoJSON, when it decoded. */
  readonly json?: unknown;
  /** For a refusal: its code and detail. */
  readonly error?: { readonly code: string; readonly detail: string };
}

/**
 * Decodes bytes as `messageType` (default `activeblaze.v1.Envelope`). An envelope is also checked by
 * the protocol's rules, against `cluster` when given (otherwise the envelope's own cluster is assumed).
 */
export function inspectBytes(bytes: Uint8Array, messageType = "activeblaze.v1.Envelope", cluster?: string): InspectResult {
  const schema: DescMessage | undefined = wireRegistry.getMessage(messageType);
  if (schema === undefined) {
    return { messageType, ok: false, error: { code: "UNKNOWN_TYPE", detail: `no message type ${messageType}` } };
  }
  let message;
  try {
    message = fromBinary(schema, bytes);
  } catch (error) {
    return { messageType, ok: false, error: { code: "DECODE_FAILED", detail: (error as Error).message } };
  }
  const json = toJson(schema, message, { registry: wireRegistry });
  if (schema.typeName === EnvelopeSchema.typeName) {
    const envelope = fromBinary(EnvelopeSchema, bytes);
    const refusal = validateEnvelope(envelope, { cluster: cluster ?? envelope.cluster });
    if (refusal !== undefined) {
      return { messageType, ok: false, json, error: { code: refusal.reason, detail: refusal.detail } };
    }
  }
  return { messageType, ok: true, json };
}

/**
 * ProtoJSON with member ids (16-byte fields named `id` or `…Id`) in hex, as the API and logs show
 * them, instead of base64.
 */
export function idsInHex(json: unknown): unknown {
  if (Array.isArray(json)) return json.map(idsInHex);
  if (json === null || typeof json !== "object") return json;
  return Object.fromEntries(
    Object.entries(json).map(([key, value]) => {
      if ((key === "id" || key.endsWith("Id")) && typeof value === "string") {
        const bytes = base64Bytes(value);
        if (bytes?.length === 16) return [key, Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")];
      }
      return [key, idsInHex(value)];
    }),
  );
}

function base64Bytes(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) return undefined;
  try {
    return Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}
