import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type Envelope,
  EnvelopeSchema,
  type Frame,
} from "../../gen/activeblaze/v1/envelope_pb.ts";
import type { DropReason } from "./drop-reason.ts";
import { unsafeIntegerIn } from "./safe-integers.ts";
import { utf8Length } from "./varint.ts";
import {
  MAX_CLUSTER_NAME_BYTES,
  MAX_DATAGRAM_BYTES,
  MAX_FRAGMENT_COUNT,
  MAX_NAME_BYTES,
  MEMBER_ID_BYTES,
  PROTOCOL_MINOR_VERSION,
  PROTOCOL_VERSION,
} from "./limits.ts";

/** Envelope.body's field numbers start here (see envelope.proto). */
const FIRST_BODY_FIELD = 16;

/** What a receiver checks an envelope against. */
export interface EnvelopeContext {
  /** The receiver's cluster name; envelopes of other clusters are refused. */
  readonly cluster: string;
  /** Largest datagram accepted, in bytes. Default 65,507. */
  readonly maxDatagramBytes?: number;
}

/** A refusal: the reason (a stable code) and a readable detail. */
export interface Refusal {
  readonly reason: DropReason;
  readonly detail: string;
}

export type DecodeResult =
  | { readonly ok: true; readonly envelope: Envelope }
  | ({ readonly ok: false } & Refusal);

/** The body kinds an Envelope can carry, as their `case` names. */
export type BodyCase = NonNullable<Envelope["body"]["case"]>;
/** A body without its envelope: what protocol layers send and receive. */
export type Body = Exclude<Envelope["body"], { case: undefined }>;

/**
 * Decodes and validates one datagram. Never throws: bytes that are not a valid envelope for this
 * receiver come back as a refusal with its reason, for the caller to count and drop.
 */
export function decodeEnvelope(bytes: Uint8Array, context: EnvelopeContext): DecodeResult {
  const maxBytes = context.maxDatagramBytes ?? MAX_DATAGRAM_BYTES;
  if (bytes.length > maxBytes) {
    return refuse("OVERSIZE", `datagram of ${bytes.length} bytes exceeds the limit of ${maxBytes}`);
  }
  let envelope: Envelope;
  try {
    envelope = fromBinary(EnvelopeSchema, bytes);
  } catch (error) {
    return refuse("DECODE_FAILED", error instanceof Error ? error.message : String(error));
  }
  const refusal = validateEnvelope(envelope, context);
  return refusal === undefined ? { ok: true, envelope } : { ok: false, ...refusal };
}

/**
 * The protocol's checks on a decoded envelope, in a fixed order (version, cluster, sender, body), so
 * every port reports the same reason for the same bytes. Returns undefined when the envelope is valid.
 */
export function validateEnvelope(envelope: Envelope, context: EnvelopeContext): Refusal | undefined {
  const refusal = validateHeader(envelope, context) ?? validateBody(envelope);
  if (refusal !== undefined) return refusal;
  // Last, so that every other refusal keeps its reason: the rule for numbers (safe-integers.ts).
  const unsafe = unsafeIntegerIn(EnvelopeSchema, envelope);
  return unsafe === undefined ? undefined : { reason: "INVALID_FIELD", detail: unsafe };
}

/** The checks on an envelope's header (version, cluster, sender id), for plain and sealed datagrams alike. */
export function validateHeader(envelope: Envelope, context: EnvelopeContext): Refusal | undefined {
  if (envelope.version === 0) return { reason: "MISSING_FIELD", detail: "envelope has no version" };
  if (envelope.version !== PROTOCOL_VERSION) {
    return {
      reason: "UNSUPPORTED_VERSION",
      detail: `protocol version ${envelope.version} is not supported (this build speaks ${PROTOCOL_VERSION})`,
    };
  }
  if (exceedsUtf8Bytes(envelope.cluster, MAX_CLUSTER_NAME_BYTES)) {
    return { reason: "OVERSIZE", detail: `cluster name exceeds ${MAX_CLUSTER_NAME_BYTES} bytes` };
  }
  if (envelope.cluster !== context.cluster) {
    return {
      reason: "WRONG_CLUSTER",
      detail: `envelope is for cluster "${envelope.cluster}", not "${context.cluster}"`,
    };
  }
  if (envelope.senderId.length === 0) return { reason: "MISSING_FIELD", detail: "envelope has no sender id" };
  if (envelope.senderId.length !== MEMBER_ID_BYTES) {
    return {
      reason: "INVALID_FIELD",
      detail: `sender id is ${envelope.senderId.length} bytes, not ${MEMBER_ID_BYTES}`,
    };
  }
  return undefined;
}

function validateBody(envelope: Envelope): Refusal | undefined {
  const body = envelope.body;
  switch (body.case) {
    case undefined: {
      // A body kind added in a later minor version arrives as an unknown field of the oneof's range.
      const unknown = envelope.$unknown?.find((field) => field.no >= FIRST_BODY_FIELD);
      return {
        reason: "MISSING_FIELD",
        detail: unknown === undefined ? "envelope has no body" : `envelope body of unknown kind (field ${unknown.no})`,
      };
    }
    case "sealed":
      // Opened by the security layer before this point; reaching here, the receiver holds no keys.
      return { reason: "UNKNOWN_KEY", detail: `sealed datagram (key ${body.value.keyId}), and this member has no keys` };
    case "data":
      return validateData(body.value, "data");
    case "bundle":
      return validateBundle(body.value.frames);
    default:
      return undefined;
  }
}

function validateBundle(frames: readonly Frame[]): Refusal | undefined {
  for (let i = 0; i < frames.length; i++) {
    const kind = frames[i]!.kind;
    if (kind.case === undefined) {
      return { reason: "MISSING_FIELD", detail: `bundle.frames[${i}] has no message` };
    }
    if (kind.case === "data") {
      const refusal = validateData(kind.value, `bundle.frames[${i}].data`);
      if (refusal !== undefined) return refusal;
    }
  }
  return undefined;
}

/** The fields of a Data message the protocol checks. */
export interface CheckedDataFields {
  readonly destination: string;
  readonly targetId: Uint8Array;
  readonly fragmentIndex: number;
  readonly fragmentCount: number;
}

/** The protocol's checks on one Data message; `path` names it in the refusal's detail. */
export function validateData(data: CheckedDataFields, path: string): Refusal | undefined {
  if (exceedsUtf8Bytes(data.destination, MAX_NAME_BYTES)) {
    return { reason: "OVERSIZE", detail: `${path}.destination exceeds ${MAX_NAME_BYTES} bytes` };
  }
  if (data.targetId.length !== 0 && data.targetId.length !== MEMBER_ID_BYTES) {
    return { reason: "INVALID_FIELD", detail: `${path}.target_id is ${data.targetId.length} bytes` };
  }
  if (data.fragmentCount > MAX_FRAGMENT_COUNT) {
    return { reason: "OVERSIZE", detail: `${path}.fragment_count exceeds ${MAX_FRAGMENT_COUNT}` };
  }
  if (data.fragmentCount === 0 ? data.fragmentIndex !== 0 : data.fragmentIndex >= data.fragmentCount) {
    return {
      reason: "INVALID_FIELD",
      detail: `${path}.fragment_index ${data.fragmentIndex} is outside fragment_count ${data.fragmentCount}`,
    };
  }
  return undefined;
}

/** The sender's fields of every envelope it writes. */
export interface EnvelopeHeader {
  readonly cluster: string;
  readonly senderId: Uint8Array;
  readonly incarnation: bigint;
}

/** Builds an envelope of the current protocol version around one body. */
export function createEnvelope(header: EnvelopeHeader, body: Body): Envelope {
  return create(EnvelopeSchema, {
    version: PROTOCOL_VERSION,
    minorVersion: PROTOCOL_MINOR_VERSION,
    cluster: header.cluster,
    senderId: header.senderId,
    incarnation: header.incarnation,
    body,
  });
}

/** Encodes an envelope to the bytes of one datagram. */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  return toBinary(EnvelopeSchema, envelope);
}

function refuse(reason: DropReason, detail: string): DecodeResult {
  return { ok: false, reason, detail };
}

// UTF-8 takes at most 3 bytes per UTF-16 code unit, so most strings are decided without encoding.
function exceedsUtf8Bytes(text: string, limit: number): boolean {
  if (text.length * 3 <= limit) return false;
  if (text.length > limit) return true;
  return utf8Length(text) > limit;
}
