import { fromBinary } from "@bufbuild/protobuf";
import { type Envelope, EnvelopeSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { SealMode as WireSealMode } from "../../gen/activeblaze/v1/security_pb.ts";
import { type EnvelopeContext, type Refusal, validateHeader } from "../wire/codec.ts";
import { sameBytes } from "../wire/bytes.ts";
import { type ClearHeaderReader, encodeEnvelopeHeader } from "../wire/frames.ts";
import { MAX_DATAGRAM_BYTES, MEMBER_ID_BYTES } from "../wire/limits.ts";
import { ByteCursor, varintSize, writeVarint } from "../wire/varint.ts";
import { web } from "../web.ts";
import { KEY_BYTES, type SealMode } from "./crypto-provider.ts";

/**
 * The layout of a sealed datagram: the envelope's header fields, then `Envelope.sealed` (field 96) as
 * the last field, holding the key id, mode, counter, signer key and, last of all, the payload:
 *
 *   [version][minor][cluster][sender id][incarnation] [96: [key id][mode][counter][signer key][receiver id] [15: payload]]
 *   └──────────────────────────────────── associated data ───────────────────────────────────────────┘ └─ payload ─┘
 *
 * The associated data is every byte before the payload, so the clear header, the key id, the mode and
 * the counter are all authenticated, and a port computes it without re-encoding anything: the datagram
 * without its last `payload.length` bytes.
 */

/** Field 96 (Envelope.sealed) with wire type 2, as a varint. */
const TAG_SEALED = [0x82, 0x06] as const;
const TAG_PAYLOAD = (15 << 3) | 2;
const SEALED_FIELD = 96;
/** Body fields of an envelope are numbered from 16 (envelope.proto). */
const FIRST_BODY_FIELD = 16;

/** A sealed datagram, read but not opened. */
export interface SealedDatagram {
  /** The header fields' bytes: a plain envelope is these followed by the opened body. */
  readonly header: Uint8Array;
  readonly senderId: Uint8Array;
  readonly incarnation: number;
  readonly keyId: number;
  /** Undefined for a mode number this build does not know. */
  readonly mode: SealMode | undefined;
  readonly counter: number;
  /** Insider mode's Ed25519 public key; empty otherwise. */
  readonly signerKey: Uint8Array;
  /** The member a datagram to one member is for; empty when it does not say. */
  readonly receiverId: Uint8Array;
  /** Every byte before the payload. */
  readonly aad: Uint8Array;
  readonly payload: Uint8Array;
}

export type SealedRead = { readonly ok: true; readonly sealed: SealedDatagram } | ({ readonly ok: false } & Refusal);

export function wireModeOf(mode: SealMode): WireSealMode {
  return mode === "encrypt" ? WireSealMode.AES_256_GCM : WireSealMode.HMAC_SHA_256;
}

function modeOf(wire: number): SealMode | undefined {
  return wire === WireSealMode.AES_256_GCM ? "encrypt" : wire === WireSealMode.HMAC_SHA_256 ? "authenticate" : undefined;
}

/** The fields of the seal a sender writes, besides its header. */
export interface SealFields {
  readonly keyId: number;
  readonly mode: SealMode;
  readonly counter: number;
  /** Insider mode's public key, or empty. */
  readonly signerKey: Uint8Array;
  /** For a datagram to one member: its id, or empty. */
  readonly receiverId: Uint8Array;
}

/** The bytes a seal adds to a datagram whose body is `bodyLength` bytes, besides the payload's own. */
export function sealedPrefixSize(header: Uint8Array, fields: SealFields, payloadLength: number): number {
  const inner = sealedInnerSize(fields, payloadLength);
  return header.length + TAG_SEALED.length + varintSize(inner) + inner - payloadLength;
}

function sealedInnerSize(fields: SealFields, payloadLength: number): number {
  return (
    1 + varintSize(fields.keyId) +
    2 +
    1 + varintSize(fields.counter) +
    (fields.signerKey.length === 0 ? 0 : 2 + fields.signerKey.length) +
    (fields.receiverId.length === 0 ? 0 : 2 + fields.receiverId.length) +
    1 + varintSize(payloadLength) + payloadLength
  );
}

/**
 * Writes a sealed datagram's associated data (everything before the payload) into `out`, which has
 * room for it and `payloadLength` more bytes; returns where the payload goes.
 */
export function writeSealedPrefix(out: Uint8Array, header: Uint8Array, fields: SealFields, payloadLength: number): number {
  out.set(header);
  let pos = header.length;
  out[pos++] = TAG_SEALED[0];
  out[pos++] = TAG_SEALED[1];
  pos = writeVarint(out, pos, sealedInnerSize(fields, payloadLength));
  out[pos++] = 1 << 3;
  pos = writeVarint(out, pos, fields.keyId);
  out[pos++] = 2 << 3;
  out[pos++] = wireModeOf(fields.mode);
  out[pos++] = 3 << 3;
  pos = writeVarint(out, pos, fields.counter);
  if (fields.signerKey.length > 0) {
    out[pos++] = (4 << 3) | 2;
    out[pos++] = fields.signerKey.length;
    out.set(fields.signerKey, pos);
    pos += fields.signerKey.length;
  }
  if (fields.receiverId.length > 0) {
    out[pos++] = (5 << 3) | 2;
    out[pos++] = fields.receiverId.length;
    out.set(fields.receiverId, pos);
    pos += fields.receiverId.length;
  }
  out[pos++] = TAG_PAYLOAD;
  return writeVarint(out, pos, payloadLength);
}

/**
 * Reads a datagram as a sealed one, with the receiver's checks in their order (size, decoding,
 * version, cluster, sender id, then UNSEALED, then the seal's own fields), its clear header through
 * `headers` (the receiver's: it remembers the last one). Never throws.
 */
export function readSealed(bytes: Uint8Array, context: EnvelopeContext, headers: ClearHeaderReader): SealedRead {
  const maxBytes = context.maxDatagramBytes ?? MAX_DATAGRAM_BYTES;
  if (bytes.length > maxBytes) {
    return { ok: false, reason: "OVERSIZE", detail: `datagram of ${bytes.length} bytes exceeds the limit of ${maxBytes}` };
  }
  return readCanonical(bytes, headers) ?? readGenerated(bytes, context);
}

// The layout members write, read by hand; undefined for anything else (the generated decoder decides).
function readCanonical(bytes: Uint8Array, headers: ClearHeaderReader): SealedRead | undefined {
  const header = headers.read(bytes);
  if (header === undefined) return undefined;
  const cursor = new ByteCursor(bytes, header.end, bytes.length);
  if (cursor.varint() !== ((SEALED_FIELD << 3) | 2)) return undefined;
  const end = cursor.delimitedEnd();
  if (cursor.failed || end !== bytes.length) return undefined;
  return readSeal(bytes, header.bytes, cursor.pos, header.senderId, header.incarnation);
}

function readSeal(bytes: Uint8Array, header: Uint8Array, start: number, senderId: Uint8Array, incarnation: number): SealedRead | undefined {
  const cursor = new ByteCursor(bytes, start, bytes.length);
  let keyId = 0;
  let mode = 0;
  let counter = 0;
  let signerKey: Uint8Array = NO_BYTES;
  let receiverId: Uint8Array = NO_BYTES;
  let seen = 0;
  while (cursor.pos < cursor.end) {
    const tag = cursor.varint();
    const field = tag >>> 3;
    if (field > 15 || seen & (1 << field)) return undefined;
    seen |= 1 << field;
    switch (tag) {
      case (1 << 3) | 0:
        keyId = cursor.varint();
        break;
      case (2 << 3) | 0:
        mode = cursor.varint();
        break;
      case (3 << 3) | 0:
        counter = cursor.varint();
        break;
      case (4 << 3) | 2:
        signerKey = cursor.delimitedBytes();
        break;
      case (5 << 3) | 2:
        receiverId = cursor.delimitedBytes();
        break;
      case TAG_PAYLOAD: {
        const end = cursor.delimitedEnd();
        if (cursor.failed || end !== bytes.length) return undefined;
        // uint32 and enum fields past their range are the generated decoder's to judge; so is counter 0.
        if (keyId > 0xffff_ffff || mode > 0x7fff_ffff || counter === 0) return undefined;
        const sealed: SealedDatagram = {
          header,
          senderId,
          incarnation,
          keyId,
          mode: modeOf(mode),
          counter,
          signerKey,
          receiverId,
          aad: bytes.subarray(0, cursor.pos),
          payload: bytes.subarray(cursor.pos),
        };
        return { ok: true, sealed };
      }
      default:
        return undefined;
    }
    if (cursor.failed) return undefined;
  }
  return undefined;
}

function readGenerated(bytes: Uint8Array, context: EnvelopeContext): SealedRead {
  let envelope: Envelope;
  try {
    envelope = fromBinary(EnvelopeSchema, bytes);
  } catch (error) {
    return { ok: false, reason: "DECODE_FAILED", detail: error instanceof Error ? error.message : String(error) };
  }
  const refusal = validateHeader(envelope, context);
  if (refusal !== undefined) return { ok: false, ...refusal };
  if (envelope.body.case !== "sealed") return { ok: false, reason: "UNSEALED", detail: `a datagram that is not sealed (${envelope.body.case ?? "no body"})` };
  const seal = envelope.body.value;
  const payload = seal.payload;
  const payloadStart = bytes.length - payload.length;
  if (!sameBytes(bytes, payloadStart, bytes.length, payload)) {
    return { ok: false, reason: "INVALID_FIELD", detail: "sealed.payload is not the datagram's last field" };
  }
  if (envelope.incarnation > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, reason: "INVALID_FIELD", detail: "incarnation beyond 2^53 - 1" };
  if (seal.counter === 0n || seal.counter > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { ok: false, reason: "INVALID_FIELD", detail: `sealed.counter ${seal.counter} is outside 1 to 2^53 - 1` };
  }
  const incarnation = Number(envelope.incarnation);
  const sealed: SealedDatagram = {
    header: encodeEnvelopeHeader(envelope.cluster, envelope.senderId, incarnation),
    senderId: envelope.senderId,
    incarnation,
    keyId: seal.keyId,
    mode: modeOf(seal.mode),
    counter: Number(seal.counter),
    signerKey: seal.signerKey,
    receiverId: seal.receiverId,
    aad: bytes.subarray(0, payloadStart),
    payload: bytes.subarray(payloadStart),
  };
  return { ok: true, sealed };
}

/**
 * True when an opened body is exactly one envelope body field (a Bundle or one message; never another
 * seal), so that header ‖ body is an envelope whose header nothing inside the seal can override.
 */
export function isOneBodyField(body: Uint8Array): boolean {
  const cursor = new ByteCursor(body, 0, body.length);
  const tag = cursor.varint();
  if (cursor.failed || (tag & 7) !== 2) return false;
  const field = Math.floor(tag / 8);
  if (field < FIRST_BODY_FIELD || field === SEALED_FIELD) return false;
  const end = cursor.delimitedEnd();
  return !cursor.failed && end === body.length;
}

/** Insider mode: the signer key is the sender's (its first 16 bytes are the member id). */
export function signerMatches(signerKey: Uint8Array, senderId: Uint8Array): boolean {
  return signerKey.length === KEY_BYTES && sameBytes(signerKey, 0, MEMBER_ID_BYTES, senderId);
}

const NO_BYTES = new Uint8Array(0);
export const encodeUtf8 = (text: string): Uint8Array => new web.TextEncoder().encode(text);
