import { fromBinary, toJson, type DescMessage } from "@bufbuild/protobuf";
import { EnvelopeSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { nodeCrypto } from "../adapters/node-crypto.ts";
import { SIGNATURE_BYTES } from "../security/crypto-provider.ts";
import { senderKeyInfo } from "../security/datagram-guard.ts";
import { encodeBase64 } from "../security/options.ts";
import { readSealed } from "../security/sealed-datagram.ts";
import { wireRegistry } from "../wire/registry.ts";
import { validateEnvelope } from "../wire/codec.ts";
import { ClearHeaderReader, plainEnvelope } from "../wire/frames.ts";

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
 * Opens a sealed datagram with a key's secret (whatever id the datagram names) and decodes what it
 * holds: the seal's clear fields, and the envelope inside, checked by the protocol's rules. No replay
 * window and no clock: a lone datagram is judged on its bytes alone. A signed datagram's signature is
 * checked against the signer key it carries.
 */
export function inspectSealed(bytes: Uint8Array, secret: Uint8Array, cluster?: string): InspectResult {
  const messageType = EnvelopeSchema.typeName;
  let claimed: string;
  try {
    claimed = fromBinary(EnvelopeSchema, bytes).cluster;
  } catch (error) {
    return { messageType, ok: false, error: { code: "DECODE_FAILED", detail: (error as Error).message } };
  }
  const context = { cluster: cluster ?? claimed };
  const read = readSealed(bytes, context, new ClearHeaderReader(context.cluster));
  if (!read.ok) return { messageType, ok: false, error: { code: read.reason, detail: read.detail } };
  const sealed = read.sealed;
  const seal = {
    keyId: sealed.keyId,
    mode: sealed.mode ?? "unknown",
    counter: sealed.counter,
    ...(sealed.receiverId.length > 0 ? { receiverId: encodeBase64(sealed.receiverId) } : {}),
    ...(sealed.signerKey.length > 0 ? { signerKey: encodeBase64(sealed.signerKey) } : {}),
  };
  if (sealed.mode === undefined) return { messageType, ok: false, json: { seal }, error: { code: "WRONG_MODE", detail: "an unknown seal mode" } };
  const key = nodeCrypto.deriveKey(sealed.mode, secret, senderKeyInfo(sealed.mode, sealed.keyId, sealed.senderId, sealed.incarnation, context.cluster));
  let body = nodeCrypto.open(key, sealed.mode, sealed.counter, sealed.aad, sealed.payload);
  if (body === undefined) return { messageType, ok: false, json: { seal }, error: { code: "AUTH_FAILED", detail: `the datagram does not open with this secret under key ${sealed.keyId}` } };
  let signature: string | undefined;
  if (sealed.signerKey.length > 0) {
    const signed = body.subarray(0, body.length - SIGNATURE_BYTES);
    const data = new Uint8Array(sealed.aad.length + signed.length);
    data.set(sealed.aad);
    data.set(signed, sealed.aad.length);
    const valid = body.length > SIGNATURE_BYTES && nodeCrypto.verify(nodeCrypto.verifyKey(sealed.signerKey), data, body.subarray(signed.length));
    signature = valid ? "valid" : "invalid";
    body = signed;
    if (!valid) return { messageType, ok: false, json: { seal: { ...seal, signature } }, error: { code: "AUTH_FAILED", detail: "the signature does not verify" } };
  }
  const opened = inspectBytes(plainEnvelope(sealed.header, body), messageType, context.cluster);
  const json = { seal: signature === undefined ? seal : { ...seal, signature }, envelope: opened.json };
  return opened.error === undefined ? { messageType, ok: true, json } : { messageType, ok: false, json, error: opened.error };
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
