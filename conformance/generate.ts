// Generates the language-neutral conformance vectors, conformance/vectors/v1/<area>.json, from the
// declarative case tables below.
//
//   npx tsx conformance/generate.ts          write the files
//   npx tsx conformance/generate.ts --check  regenerate in memory; exit 1 listing files that differ
//
// Every case declares its result; generation fails unless this implementation (decoder plus, for
// Envelopes, protocol validation with the receiver context) does exactly that, so a wrong table entry
// cannot reach the files. Expected values are this implementation's decoding in canonical ProtoJSON.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary, toJson } from "@bufbuild/protobuf";
import { isReflectMessage, reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import {
  BatchOpSchema,
  ChangeKind,
  EntryChangeSchema,
  EntrySchema,
  LockOpSchema,
  LockStateSchema,
  PutOpSchema,
  RemoveOpSchema,
  RenewLeaseOpSchema,
  SnapshotEntriesSchema,
  StateResult,
  StateRequestSchema,
  UnlockOpSchema,
} from "../gen/activeblaze/v1/cluster_pb.ts";
import { MemberRefSchema, ViewIdSchema } from "../gen/activeblaze/v1/common_pb.ts";
import { BundleSchema, EnvelopeSchema, FrameSchema } from "../gen/activeblaze/v1/envelope_pb.ts";
import { FecParitySchema } from "../gen/activeblaze/v1/fec_pb.ts";
import { MemberInfoSchema } from "../gen/activeblaze/v1/membership_pb.ts";
import { BlazeMessageSchema, ValueListSchema, ValueSchema } from "../gen/activeblaze/v1/message_pb.ts";
import {
  ConsumerRegistrationSchema,
  DeliveryMode,
  DestinationKind,
  MessagingBatchSchema,
  MessagingHeadersSchema,
  MessagingMessageSchema,
  QueueAssignmentSchema,
} from "../gen/activeblaze/v1/messaging_pb.ts";
import {
  Addressing,
  DataSchema,
  DigestEntrySchema,
  PayloadFormat,
  SeqRangeSchema,
  Stream,
} from "../gen/activeblaze/v1/reliable_pb.ts";
import { KeyAction, KeyUpdateAckSchema, KeyUpdateSchema } from "../gen/activeblaze/v1/security_pb.ts";
import { RelayFrameSchema, RelayStream } from "../gen/activeblaze/v1/relay_pb.ts";
import { RingIdSchema, TotemMemberStateSchema, TotemPhase } from "../gen/activeblaze/v1/totem_pb.ts";
import { nodeCrypto } from "../src/adapters/node-crypto.ts";
import type { IdentityKeys, SealMode } from "../src/security/crypto-provider.ts";
import { sealDatagram, senderKeyInfo } from "../src/security/datagram-guard.ts";
import { DEFAULT_SECURITY_OPTIONS, encodeBase64 } from "../src/security/options.ts";
import { encodeEnvelopeHeader } from "../src/wire/frames.ts";
import type { DropReason } from "../src/wire/drop-reason.ts";
import {
  MAX_CLUSTER_NAME_BYTES,
  MAX_DATAGRAM_BYTES,
  MAX_FRAGMENT_COUNT,
  MAX_NAME_BYTES,
  PROTOCOL_NAME,
} from "../src/wire/limits.ts";
import {
  bytesToHex,
  CONTEXT_CLUSTER,
  outcomeOf,
  reencode,
  type SealedReceiver,
  type TestGroup,
  type VectorFile,
  type VectorTest,
  VECTORS_DIR,
} from "./runner.ts";

export const SCHEMA_FILE = "vectors.schema.json";
const GENERATOR_NAME = "activeblaze/conformance/generate.ts";

// ---------------------------------------------------------------------------------------------------
// Flags: every flag a test carries is described in its file's `notes`.

const NOTES = {
  ReceiverContext:
    `The receiver's cluster is "${CONTEXT_CLUSTER}" and it accepts datagrams of up to ${MAX_DATAGRAM_BYTES} bytes: decode the bytes as an activeblaze.v1.Envelope, then apply the protocol checks in their order (datagram size, version, cluster, sender id, body, Data and Bundle rules; see conformance/README.md).`,
  EdgeValue:
    "Boundary values: zero, the largest or smallest value of the field's type, or a field at a protocol limit.",
  ExplicitPresence:
    "A field with explicit presence (proto3 optional, or a oneof member) set to its default value: it is on the wire and in ProtoJSON, and differs from the field being absent.",
  Unicode: "Text beyond ASCII: emoji (4-byte UTF-8), CJK, combining marks, U+0000, U+FEFF or U+10FFFF.",
  LargeBytes: "A bytes field of 4 KiB or more, holding the bytes 0x00, 0x01, ..., 0xff repeated.",
  FloatSpecial:
    "NaN, an infinity, negative zero or a subnormal. Compare floating-point values by identity: NaN equals NaN, -0 differs from +0. A NaN with payload bits need not re-encode to the same bits.",
  MapOrder:
    "A map with several entries. Entry order on the wire carries no meaning and encoders may write another order, so the test has roundtrip false.",
  NonCanonicalEncoding:
    "Valid protobuf that a conforming encoder does not write (an overlong varint, a default value written out, fields out of order, map entry fields out of order or missing); the decoder accepts it and re-encoding gives other bytes.",
  DuplicateField:
    "A non-repeated field appears more than once: the last scalar wins, message fields merge, the last oneof member wins.",
  IntegerTruncation:
    "A varint wider than its field: int32, uint32 and enum fields keep the low 32 bits, a bool is true for any non-zero value.",
  UnknownField:
    "Fields this schema does not define, as a later minor version may add: the decoder accepts them and may keep or drop them; message equality ignores them.",
  UnknownEnum:
    "An enum number the schema does not define: proto3 enums are open, the number is kept and ProtoJSON writes it as a number.",
  UnknownGroup:
    "An unknown field with the deprecated group wire types (3 and 4). Most decoders skip it; a decoder may refuse it.",
  VarintOverflow:
    "A 10-byte varint whose last byte sets bits above bit 63. Some decoders refuse it; others drop the excess bits.",
  Truncated: "The bytes end inside a tag, a varint or a length-delimited field.",
  BadVarint: "A varint longer than 10 bytes.",
  BadTag: "A tag with wire type 6 or 7, field number 0, a field number above 2^29 - 1, or an end-group tag without a start.",
  LengthOverrun: "A length prefix reaching past the end of the bytes or of the enclosing message.",
  InvalidUtf8: "A string field whose bytes are not valid UTF-8 (proto3 strings must be).",
  Version: "The envelope's major or minor version number.",
  Limit: `A size limit: datagrams of at most ${MAX_DATAGRAM_BYTES} bytes, names of at most ${MAX_NAME_BYTES} UTF-8 bytes, at most ${MAX_FRAGMENT_COUNT} fragments.`,
  Fragmentation: "Data fragment numbering: fragment_index < fragment_count, or both 0 for an unfragmented message.",
  SafeInteger:
    "The protocol's rule for numbers: every 64-bit integer in an envelope (sequence numbers, counters, incarnations, epochs, tokens, durations, nonces) is at most 2^53 - 1, so every receiver holds it exactly. A larger one is refused with INVALID_FIELD, after every other check.",
  CheckOrder:
    "Several checks fail; the expected code is the first failing one in the protocol's check order (see conformance/README.md).",
  Sealed:
    "A sealed datagram: open it as the group's `security` receiver does (conformance/README.md, \"Sealed datagrams\"): the seal's checks in their order, the tag, the replay window, then the protocol checks on the opened envelope. `expected` is the opened envelope; with `roundtrip`, sealing it again as its sender (the key id, counter, receiver id and signer key of `hex`) gives `hex`.",
  History: "The receiver opened the datagrams of `history` first, in order (each of them opens); they fill its replay windows.",
  Tampered: "A sealed datagram with bytes changed or cut after sealing: the header, the seal's fields, the ciphertext or the tag.",
  Insider: "Insider mode: every datagram carries its sender's Ed25519 public key (whose first 16 bytes are the sender id) and a signature; the receiver has a key pair of its own and trusts only the listed members.",
  RelayRules:
    "A frame between bridged sites (activeblaze/relay), not a datagram: decode the bytes as an activeblaze.v1.RelayFrame, then apply the bridge's checks in their order (see conformance/README.md): version 1, every 64-bit integer at most 2^53 - 1, a kind, and the rules of relay.proto (site names, 16-byte member ids, streams, 1 <= floor <= seq).",
} as const;

type Flag = keyof typeof NOTES;

// ---------------------------------------------------------------------------------------------------
// Case tables: types and the helpers that build raw bytes.

type Expectation =
  /** roundtrip: false when re-encoding the decoded message need not reproduce the bytes; a flag says why. */
  | { result: "valid"; roundtrip?: false }
  | { result: "invalid"; error: DropReason }
  | { result: "acceptable" };

type Case<Desc extends DescMessage> = { name: string; comment: string; flags: Flag[]; history?: Uint8Array[] } & (
  | { init: MessageInitShape<Desc> }
  | { bytes: Uint8Array }
) &
  Expectation;

interface GroupTable {
  schema: DescMessage;
  /** For sealed datagrams: the receiver that opens them. */
  security?: SealedReceiver;
  cases: Case<DescMessage>[];
}

interface AreaTable {
  area: string;
  groups: GroupTable[];
}

function group<Desc extends DescMessage>(schema: Desc, cases: Case<Desc>[]): GroupTable {
  return { schema, cases: cases as Case<DescMessage>[] };
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_I32 = 5;

/** Canonical (shortest) varint of a non-negative integer below 2^64. */
function varint(value: number | bigint): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

/** A varint padded with continuation bytes to `length` bytes: valid protobuf, never written by encoders. */
function overlongVarint(value: number | bigint, length: number): number[] {
  const out = varint(value);
  while (out.length < length) {
    out[out.length - 1]! |= 0x80;
    out.push(0);
  }
  return out;
}

function tag(field: number, wireType: number): number[] {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

function varintField(field: number, value: number | bigint): number[] {
  return [...tag(field, WIRE_VARINT), ...varint(value)];
}

function lenField(field: number, content: ArrayLike<number>): number[] {
  return [...tag(field, WIRE_LEN), ...varint(content.length), ...Array.from(content)];
}

function concat(...parts: ArrayLike<number>[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((part) => Array.from(part)));
}

function encode<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>): Uint8Array {
  return toBinary(schema, create(schema, init));
}

function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** `length` bytes of the pattern 0x00, 0x01, ..., 0xff, 0x00, ... */
function pattern(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => i & 0xff);
}

function filled(length: number, byte: number): Uint8Array {
  return new Uint8Array(length).fill(byte);
}

// ---------------------------------------------------------------------------------------------------
// Sample values shared by the tables.

const U32_MAX = 4_294_967_295;
const U64_MAX = 18_446_744_073_709_551_615n;
/** 2^53 − 1: the largest number an envelope may carry (src/wire/safe-integers.ts). */
const WIRE_MAX = 9_007_199_254_740_991n;
/** Body kinds defined in the first schema but never sent, now reserved: field number and name. */
const RETIRED_KINDS: ReadonlyArray<readonly [number, string]> = [
  [21, "stability"],
  [22, "credit"],
  [40, "election"],
];
const I32_MIN = -2_147_483_648;
const I32_MAX = 2_147_483_647;
const I64_MIN = -9_223_372_036_854_775_808n;
const I64_MAX = 9_223_372_036_854_775_807n;
const FLOAT_MAX = 3.4028234663852886e38;
const FLOAT_MIN_NORMAL = 1.1754943508222875e-38;
const FLOAT_MIN_SUBNORMAL = 1.401298464324817e-45;
const KIB4 = 4096;

const ID_A = Uint8Array.from({ length: 16 }, (_, i) => 0x01 + i);
const ID_B = Uint8Array.from({ length: 16 }, (_, i) => 0xb0 + i);
const ID_C = Uint8Array.from({ length: 16 }, (_, i) => 0xc0 + i);

const EMOJI = "😀🚀";
const CJK = "中文字符";
const COMBINING = "e\u0301a\u0300\u0302";
const MIXED_TEXT = `héllo wörld ${EMOJI} ${CJK} ${COMBINING}`;

const REF_A = { id: ID_A, incarnation: 7n };
const REF_B = { id: ID_B, incarnation: 2n };
const REF_C = { id: ID_C, incarnation: 1n };
const MEMBER_A = {
  id: ID_A,
  incarnation: 7n,
  name: "alpha",
  weight: 10,
  metadata: { zone: "eu-west-1a" },
  groups: ["orders"],
  host: "10.0.0.1",
  port: 7800,
  startTimeMs: 1_700_000_000_000n,
};
const MEMBER_B = {
  id: ID_B,
  incarnation: 2n,
  name: "beta",
  weight: 20,
  groups: ["orders", "prices"],
  host: "10.0.0.2",
  port: 7801,
  startTimeMs: 1_700_000_000_500n,
};
const VIEW_ID = { coordinatorId: ID_B, counter: 4n };
const VIEW = { group: "orders", id: VIEW_ID, members: [MEMBER_B, MEMBER_A], coordinator: REF_B };
const DIGEST_A = { memberId: ID_A, incarnation: 7n, delivered: 41n, received: 42n };
const DIGEST_B = { memberId: ID_B, incarnation: 2n, delivered: 9n, received: 9n };
const RING = { representativeId: ID_A, ringSeq: 12n };
const ENTRY = {
  key: "config/timeout",
  value: utf8("30s"),
  version: 3n,
  owner: REF_A,
  ttlRemainingMs: 60_000n,
};
const LOCKED_ENTRY = {
  key: "leader",
  version: 1n,
  owner: REF_B,
  lock: { holder: REF_B, fencingToken: 17n, leaseRemainingMs: 9_500n, releaseOnExit: true },
};
const BLAZE_MESSAGE = {
  fields: { symbol: { kind: { case: "stringValue", value: "ACME" } } },
} as const;

type EnvelopeInit = MessageInitShape<typeof EnvelopeSchema>;
/** A set Frame.kind: one of the 27 kinds with its message. */
type FrameKindInit = Extract<MessageInitShape<typeof FrameSchema>["kind"], { case: string }>;

/** The header fields of an envelope. */
interface HeaderInit {
  version?: number;
  minorVersion?: number;
  cluster?: string;
  senderId?: Uint8Array;
  incarnation?: bigint;
}

/** An envelope as CONTEXT_CLUSTER's receiver accepts it, around one body. */
function env(body: EnvelopeInit["body"], header: HeaderInit = {}): EnvelopeInit {
  return { version: 1, cluster: CONTEXT_CLUSTER, senderId: ID_A, incarnation: 7n, ...header, body };
}

/** One typical message of every Frame kind (every Envelope body kind but bundle), in field-number order. */
const FRAME_SAMPLES: FrameKindInit[] = [
  {
    case: "data",
    value: { seq: 1n, addressing: Addressing.TOPIC, destination: "prices", payload: utf8("hello") },
  },
  {
    case: "nack",
    value: {
      stream: Stream.MULTICAST,
      originId: ID_B,
      originIncarnation: 2n,
      missing: [
        { first: 5n, last: 7n },
        { first: 10n, last: 10n },
      ],
    },
  },
  {
    case: "ack",
    value: {
      stream: Stream.UNICAST,
      originId: ID_B,
      originIncarnation: 2n,
      cumulative: 41n,
      received: [{ first: 43n, last: 45n }],
    },
  },
  { case: "heartbeat", value: { highestSeq: 41n, intervalMs: 500, digest: [DIGEST_A, DIGEST_B], group: "orders" } },
  { case: "discovery", value: { member: MEMBER_A, group: "orders" } },
  {
    case: "discoveryResponse",
    value: {
      member: MEMBER_B,
      group: "orders",
      viewId: VIEW_ID,
      coordinator: REF_B,
      coordinatorHost: "10.0.0.2",
      coordinatorPort: 7801,
    },
  },
  { case: "join", value: { member: MEMBER_A, group: "orders" } },
  { case: "joinResponse", value: { group: "orders", view: VIEW, digest: [DIGEST_A, DIGEST_B] } },
  { case: "leave", value: { group: "orders" } },
  { case: "view", value: VIEW },
  { case: "viewAck", value: { group: "orders", viewId: VIEW_ID } },
  { case: "suspect", value: { group: "orders", suspects: [REF_C] } },
  { case: "ping", value: { nonce: 0x0012_3456_789a_bcden, group: "orders" } },
  { case: "pong", value: { nonce: 0x0012_3456_789a_bcden, group: "orders" } },
  {
    case: "stateRequest",
    value: {
      requestId: 1001n,
      group: "orders",
      op: { case: "put", value: { key: "config/timeout", value: utf8("30s"), ttlMs: 60_000n } },
    },
  },
  {
    case: "stateResponse",
    value: { requestId: 1001n, result: StateResult.OK, epoch: 5n, index: 42n, coordinator: REF_B },
  },
  {
    case: "stateUpdate",
    value: {
      epoch: 5n,
      index: 42n,
      group: "orders",
      requestId: 1001n,
      requester: REF_A,
      changes: [{ kind: ChangeKind.INSERT, entry: ENTRY }],
      coordinatorId: ID_B,
    },
  },
  {
    case: "stateSnapshot",
    value: { epoch: 5n, index: 42n, group: "orders", chunk: 0, chunkCount: 1, entries: [ENTRY], nextFencingToken: 18n },
  },
  { case: "syncComplete", value: { epoch: 5n, index: 42n, group: "orders", entryCount: 1n } },
  {
    case: "stateAck",
    value: { group: "orders", epoch: 5n, index: 42n, nextFencingToken: 18n, acceptedEpoch: 5n, ready: true },
  },
  {
    case: "totemToken",
    value: { ring: RING, tokenSeq: 100n, seq: 500n, aru: 498n, aruId: ID_C, fcc: 12, backlog: 3, nextId: ID_B },
  },
  { case: "totemJoin", value: { ring: RING, procSet: [REF_A, REF_B], highestRingSeq: 12n } },
  {
    case: "totemCommit",
    value: {
      ring: { representativeId: ID_A, ringSeq: 16n },
      members: [
        { member: REF_A, oldRing: RING, oldAru: 498n, highDelivered: 497n, received: true },
        { member: REF_B, oldRing: RING, oldAru: 498n, highDelivered: 498n, received: true, highReceived: 499n },
      ],
    },
  },
  {
    case: "totemRelay",
    value: {
      origin: REF_B,
      ring: RING,
      data: { seq: 40n, addressing: Addressing.TOPIC, destination: "ledger", payload: utf8("debit 10"), globalSeq: 501n, ringSeq: 12n },
    },
  },
  {
    case: "fecParity",
    value: { stream: Stream.MULTICAST, blockFirstSeq: 33n, k: 8, m: 2, parity: pattern(64), lengthParity: pattern(2) },
  },
  { case: "keyUpdate", value: { nonce: 0x0012_3456_789a_bcden, action: KeyAction.CHECK, keyId: 2 } },
  { case: "keyUpdateAck", value: { nonce: 0x0012_3456_789a_bcden } },
  { case: "diagnosticsRequest", value: { nonce: 0x0000_0abc_def0_1234n } },
  {
    case: "diagnosticsReply",
    value: {
      nonce: 0x0000_0abc_def0_1234n,
      name: "alpha",
      software: "node 20.20.2, activeblaze 0.1.0",
      reliability: "nack",
      state: "started",
      uptimeMs: 61_000n,
      groups: [{ group: "orders", viewId: VIEW_ID, members: [MEMBER_B, MEMBER_A], coordinator: REF_B }],
      peers: [{ member: REF_B, host: "10.0.0.2", port: 7801, silentMs: 120n }],
      peerCount: 1,
      totals: { "datagrams.received": 1_204n },
      levels: { peers: 1n },
    },
  },
];

function sample(kind: FrameKindInit["case"]): FrameKindInit {
  const found = FRAME_SAMPLES.find((s) => s.case === kind);
  if (found === undefined) throw new Error(`no sample for ${kind}`);
  return found;
}

function kebab(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** An envelope carrying Data whose encoding is exactly `size` bytes. */
function envelopeOfSize(size: number): EnvelopeInit {
  const withPayload = (length: number) =>
    env({ case: "data", value: { seq: 9n, addressing: Addressing.TOPIC, destination: "bulk", payload: pattern(length) } });
  let length = size;
  for (let encoded = encode(EnvelopeSchema, withPayload(length)).length; encoded !== size; ) {
    length -= encoded - size;
    encoded = encode(EnvelopeSchema, withPayload(length)).length;
  }
  return withPayload(length);
}

// Raw envelope parts for hand-built bytes: a valid header and a small valid body.
const RAW_HEADER = [...varintField(1, 1), ...lenField(3, utf8(CONTEXT_CLUSTER)), ...lenField(4, ID_A)];
const RAW_PING = lenField(38, []);

// ---------------------------------------------------------------------------------------------------
// The tables, one per area.

const ENVELOPE: AreaTable = {
  area: "envelope",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "envelope/header/minimal",
        comment: "The smallest valid envelope: version, cluster, sender id and an empty Ping body.",
        flags: ["EdgeValue"],
        init: env({ case: "ping", value: {} }, { incarnation: 0n }),
        result: "valid",
      },
      {
        name: "envelope/header/incarnation-max",
        comment: "Incarnation at the largest number an envelope carries (2^53 − 1).",
        flags: ["EdgeValue"],
        init: env(sample("heartbeat"), { incarnation: WIRE_MAX }),
        result: "valid",
      },
      {
        name: "envelope/header/sender-id-zero-bytes",
        comment: "A sender id of 16 zero bytes is present (non-empty) and valid.",
        flags: ["EdgeValue"],
        init: env(sample("heartbeat"), { senderId: filled(16, 0) }),
        result: "valid",
      },
      {
        name: "envelope/header/sender-id-ff-bytes",
        comment: "A sender id of 16 0xff bytes.",
        flags: ["EdgeValue"],
        init: env(sample("heartbeat"), { senderId: filled(16, 0xff) }),
        result: "valid",
      },
      {
        name: "envelope/version/minor-one",
        comment: "A newer minor version is informational and never refused.",
        flags: ["Version"],
        init: env(sample("data"), { minorVersion: 1 }),
        result: "valid",
      },
      {
        name: "envelope/version/minor-max",
        comment: "Minor version at the largest uint32 is still accepted.",
        flags: ["Version", "EdgeValue"],
        init: env(sample("data"), { minorVersion: U32_MAX }),
        result: "valid",
      },
      ...["bundle" as const, ...FRAME_SAMPLES.map((s) => s.case)].map(
        (kind): Case<typeof EnvelopeSchema> => ({
          name: `envelope/body/${kebab(kind)}`,
          comment: `An envelope whose body is a typical ${kebab(kind).replaceAll("-", "_")}.`,
          flags: [],
          init: env(
            kind === "bundle"
              ? { case: "bundle", value: { frames: [{ kind: sample("data") }, { kind: sample("ack") }] } }
              : sample(kind),
          ),
          result: "valid",
        }),
      ),
      {
        name: "envelope/limits/datagram-at-max",
        comment: `A datagram of exactly ${MAX_DATAGRAM_BYTES} bytes, the largest accepted.`,
        flags: ["Limit", "EdgeValue", "LargeBytes"],
        init: envelopeOfSize(MAX_DATAGRAM_BYTES),
        result: "valid",
      },
      {
        name: "envelope/encoding/overlong-varint",
        comment: "Version 1 written as the two-byte varint 0x81 0x00.",
        flags: ["NonCanonicalEncoding"],
        bytes: concat(tag(1, WIRE_VARINT), overlongVarint(1, 2), RAW_HEADER.slice(2), RAW_PING),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "envelope/encoding/ten-byte-varint",
        comment: "Incarnation 5 padded to the longest varint, 10 bytes.",
        flags: ["NonCanonicalEncoding"],
        bytes: concat(RAW_HEADER, tag(5, WIRE_VARINT), overlongVarint(5, 10), RAW_PING),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "envelope/encoding/explicit-zero-overlong",
        comment: "Incarnation 0 written out as 0x80 0x00: a default written explicitly, overlong; decodes as absent.",
        flags: ["NonCanonicalEncoding"],
        bytes: concat(RAW_HEADER, tag(5, WIRE_VARINT), overlongVarint(0, 2), RAW_PING),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "envelope/encoding/overlong-length",
        comment: "The cluster's length prefix (11) written as the two-byte varint 0x8b 0x00.",
        flags: ["NonCanonicalEncoding"],
        bytes: concat(
          varintField(1, 1),
          tag(3, WIRE_LEN),
          overlongVarint(CONTEXT_CLUSTER.length, 2),
          utf8(CONTEXT_CLUSTER),
          lenField(4, ID_A),
          RAW_PING,
        ),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "envelope/encoding/fields-out-of-order",
        comment: "The body first, then the header fields in reverse field-number order.",
        flags: ["NonCanonicalEncoding"],
        bytes: concat(RAW_PING, lenField(4, ID_A), lenField(3, utf8(CONTEXT_CLUSTER)), varintField(1, 1)),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "envelope/encoding/duplicate-scalar",
        comment: "Incarnation appears twice (5, then 9): the last value, 9, wins.",
        flags: ["DuplicateField"],
        bytes: concat(RAW_HEADER, varintField(5, 5), varintField(5, 9), RAW_PING),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "envelope/encoding/duplicate-message-merges",
        comment: "The data body appears twice (seq and destination, then payload): the two merge into one Data.",
        flags: ["DuplicateField"],
        bytes: concat(
          RAW_HEADER,
          lenField(16, [...varintField(1, 5), ...lenField(3, utf8("prices"))]),
          lenField(16, lenField(11, utf8("merged"))),
        ),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "envelope/encoding/oneof-last-wins",
        comment: "A ping body followed by a pong body: the last member of the oneof wins, the body is a Pong.",
        flags: ["DuplicateField"],
        bytes: concat(RAW_HEADER, lenField(38, varintField(1, 1)), lenField(39, varintField(1, 2))),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "envelope/encoding/uint32-wide-varint",
        comment: "Minor version written as 2^32 + 3: a uint32 field keeps the low 32 bits, 3.",
        flags: ["IntegerTruncation", "Version"],
        bytes: concat(RAW_HEADER, varintField(2, 2n ** 32n + 3n), RAW_PING),
        result: "valid",
        roundtrip: false,
      },
    ]),
  ],
};

const BUNDLE: AreaTable = {
  area: "bundle",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "bundle/frames/every-kind",
        comment: "One bundle holding a frame of every Frame kind, in field-number order.",
        flags: [],
        init: env({ case: "bundle", value: { frames: FRAME_SAMPLES.map((kind) => ({ kind })) } }),
        result: "valid",
      },
      {
        name: "bundle/frames/empty",
        comment: "A bundle with no frames is valid (nothing to deliver).",
        flags: ["EdgeValue"],
        init: env({ case: "bundle", value: {} }),
        result: "valid",
      },
      {
        name: "bundle/frames/data-run",
        comment: "Several small Data messages with consecutive sequence numbers, as bundling sends them.",
        flags: [],
        init: env({
          case: "bundle",
          value: {
            frames: [1n, 2n, 3n, 4n].map((seq) => ({
              kind: {
                case: "data" as const,
                value: { seq, addressing: Addressing.TOPIC, destination: "ticks", payload: utf8(`tick ${seq}`) },
              },
            })),
          },
        }),
        result: "valid",
      },
      {
        name: "bundle/frames/fragments",
        comment: "The last two fragments of a message in one bundle.",
        flags: ["Fragmentation"],
        init: env({
          case: "bundle",
          value: {
            frames: [1, 2].map((fragmentIndex) => ({
              kind: {
                case: "data" as const,
                value: {
                  seq: 20n + BigInt(fragmentIndex),
                  addressing: Addressing.TOPIC,
                  destination: "files",
                  fragmentIndex,
                  fragmentCount: 3,
                  messageLength: 300,
                  payload: pattern(100),
                },
              },
            })),
          },
        }),
        result: "valid",
      },
      {
        name: "bundle/frames/repeated-kind-and-control",
        comment: "Data, an Ack, a Heartbeat and another Data: kinds repeat and mix freely.",
        flags: [],
        init: env({
          case: "bundle",
          value: {
            frames: [
              { kind: sample("data") },
              { kind: sample("ack") },
              { kind: sample("heartbeat") },
              { kind: { case: "data", value: { seq: 2n, addressing: Addressing.TOPIC, destination: "prices" } } },
            ],
          },
        }),
        result: "valid",
      },
    ]),
    group(BundleSchema, [
      {
        name: "bundle/bare/two-frames",
        comment: "A Bundle on its own: a Data frame and a Ping frame.",
        flags: [],
        init: { frames: [{ kind: sample("data") }, { kind: sample("ping") }] },
        result: "valid",
      },
    ]),
    group(
      FrameSchema,
      FRAME_SAMPLES.map((kind) => ({
        name: `bundle/frame/${kebab(kind.case)}`,
        comment: `A Frame holding a typical ${kebab(kind.case).replaceAll("-", "_")}: its bytes equal the body of an envelope carrying it.`,
        flags: [],
        init: { kind },
        result: "valid",
      })),
    ),
  ],
};

function data(value: MessageInitShape<typeof DataSchema>): EnvelopeInit {
  return env({ case: "data", value });
}

const MULTICAST: AreaTable = {
  area: "multicast",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "multicast/data/topic",
        comment: "A sequenced message to a topic.",
        flags: [],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "prices", payload: utf8("ACME 101.25") }),
        result: "valid",
      },
      {
        name: "multicast/data/member-default-inbox",
        comment: "To one member's default inbox: destination is empty, target_id names the member.",
        flags: [],
        init: data({ seq: 1n, addressing: Addressing.MEMBER, targetId: ID_B, payload: utf8("hi") }),
        result: "valid",
      },
      {
        name: "multicast/data/member-incarnation",
        comment: "A point-to-point message on a stream opened to the receiver's incarnation 3; the sender holds nothing below 4.",
        flags: [],
        init: data({ seq: 5n, addressing: Addressing.MEMBER, targetId: ID_B, targetIncarnation: 3n, streamFloor: 4n, payload: utf8("hi") }),
        result: "valid",
      },
      {
        name: "multicast/data/member-named-inbox",
        comment: "To one member's named inbox.",
        flags: [],
        init: data({ seq: 2n, addressing: Addressing.MEMBER, destination: "rpc", targetId: ID_B, payload: utf8("hi") }),
        result: "valid",
      },
      {
        name: "multicast/data/queue",
        comment: "To one consumer of a queue.",
        flags: [],
        init: data({ seq: 3n, addressing: Addressing.QUEUE, destination: "jobs", payload: utf8("job 1") }),
        result: "valid",
      },
      {
        name: "multicast/data/request",
        comment: "A request to a member: request_id is set and a reply is expected.",
        flags: [],
        init: data({
          seq: 4n,
          addressing: Addressing.MEMBER,
          destination: "rpc",
          targetId: ID_B,
          requestId: 77n,
          format: PayloadFormat.BLAZE_MESSAGE,
          payload: encode(BlazeMessageSchema, BLAZE_MESSAGE),
        }),
        result: "valid",
      },
      {
        name: "multicast/data/reply",
        comment: "The reply to request 77, sent to the requester.",
        flags: [],
        init: data({ seq: 9n, addressing: Addressing.REPLY, targetId: ID_B, requestId: 77n, payload: utf8("ok") }),
        result: "valid",
      },
      {
        name: "multicast/data/queue-ack",
        comment: "A consumer acknowledges queue message 31.",
        flags: [],
        init: data({ seq: 10n, addressing: Addressing.QUEUE_ACK, destination: "jobs", requestId: 31n }),
        result: "valid",
      },
      {
        name: "multicast/data/queue-request",
        comment: "A request through a queue: one consumer answers with a reply, which also acknowledges it.",
        flags: [],
        init: data({ seq: 11n, addressing: Addressing.QUEUE_REQUEST, destination: "jobs", requestId: 32n, targetId: ID_B, payload: utf8("work") }),
        result: "valid",
      },
      {
        name: "multicast/data/request-id-max",
        comment: "Request id at the largest number an envelope carries (2^53 − 1).",
        flags: ["EdgeValue"],
        init: data({ seq: 5n, addressing: Addressing.MEMBER, targetId: ID_B, requestId: WIRE_MAX }),
        result: "valid",
      },
      {
        name: "multicast/data/unsequenced",
        comment: "Sequence number 0 (best effort) with addressing unspecified: both default, both omitted.",
        flags: ["EdgeValue"],
        init: data({ destination: "telemetry", payload: utf8("t=21.5") }),
        result: "valid",
      },
      {
        name: "multicast/data/empty",
        comment: "A Data with every field at its default: the body is present and empty.",
        flags: ["EdgeValue"],
        init: data({}),
        result: "valid",
      },
      {
        name: "multicast/data/out-of-band",
        comment: "An out-of-band message, delivered without waiting for earlier ones.",
        flags: [],
        init: data({ seq: 6n, addressing: Addressing.TOPIC, destination: "alerts", outOfBand: true, payload: utf8("!") }),
        result: "valid",
      },
      {
        name: "multicast/data/blaze-message-payload",
        comment: "A payload that is an encoded BlazeMessage.",
        flags: [],
        init: data({
          seq: 7n,
          addressing: Addressing.TOPIC,
          destination: "prices",
          format: PayloadFormat.BLAZE_MESSAGE,
          payload: encode(BlazeMessageSchema, BLAZE_MESSAGE),
        }),
        result: "valid",
      },
      {
        name: "multicast/data/seq-max",
        comment: "Sequence number at the largest number an envelope carries (2^53 − 1).",
        flags: ["EdgeValue"],
        init: data({ seq: WIRE_MAX, addressing: Addressing.TOPIC, destination: "prices" }),
        result: "valid",
      },
      {
        name: "multicast/data/payload-4k",
        comment: "A 4 KiB payload.",
        flags: ["LargeBytes"],
        init: data({ seq: 8n, addressing: Addressing.TOPIC, destination: "bulk", payload: pattern(KIB4) }),
        result: "valid",
      },
      {
        name: "multicast/data/destination-at-limit",
        comment: `A destination of exactly ${MAX_NAME_BYTES} bytes.`,
        flags: ["Limit", "EdgeValue"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "t".repeat(MAX_NAME_BYTES) }),
        result: "valid",
      },
      {
        name: "multicast/data/destination-unicode-at-limit",
        comment: `A destination of 85 three-byte characters, exactly ${MAX_NAME_BYTES} UTF-8 bytes.`,
        flags: ["Limit", "Unicode", "EdgeValue"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "中".repeat(85) }),
        result: "valid",
      },
      {
        name: "multicast/data/destination-unicode",
        comment: "A topic name mixing accents, emoji, CJK and combining marks.",
        flags: ["Unicode"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: MIXED_TEXT }),
        result: "valid",
      },
      {
        name: "multicast/data/unknown-addressing",
        comment: "Addressing 99, not defined by this schema: the number is kept.",
        flags: ["UnknownEnum"],
        init: data({ seq: 1n, addressing: 99 as Addressing, destination: "future" }),
        result: "valid",
      },
      {
        name: "multicast/data/fragment-first",
        comment: "The first of three fragments, with the whole message's length.",
        flags: ["Fragmentation"],
        init: data({
          seq: 20n,
          addressing: Addressing.TOPIC,
          destination: "files",
          fragmentCount: 3,
          messageLength: 300,
          payload: pattern(100),
        }),
        result: "valid",
      },
      {
        name: "multicast/data/fragment-last",
        comment: "The last of three fragments.",
        flags: ["Fragmentation"],
        init: data({
          seq: 22n,
          addressing: Addressing.TOPIC,
          destination: "files",
          fragmentIndex: 2,
          fragmentCount: 3,
          messageLength: 300,
          payload: pattern(100),
        }),
        result: "valid",
      },
      {
        name: "multicast/data/fragment-count-max",
        comment: `The last fragment of a message split into the most fragments allowed, ${MAX_FRAGMENT_COUNT}.`,
        flags: ["Fragmentation", "Limit", "EdgeValue"],
        init: data({
          seq: 100_000n,
          addressing: Addressing.TOPIC,
          destination: "files",
          fragmentIndex: MAX_FRAGMENT_COUNT - 1,
          fragmentCount: MAX_FRAGMENT_COUNT,
          messageLength: U32_MAX,
          payload: pattern(16),
        }),
        result: "valid",
      },
      {
        name: "multicast/data/fragment-to-member",
        comment: "A fragment of a point-to-point message, out of band.",
        flags: ["Fragmentation"],
        init: data({
          seq: 3n,
          addressing: Addressing.MEMBER,
          targetId: ID_B,
          outOfBand: true,
          fragmentIndex: 1,
          fragmentCount: 2,
          messageLength: 120,
          payload: pattern(60),
        }),
        result: "valid",
      },
      {
        name: "multicast/nack/multicast",
        comment: "A multicast NACK for two ranges of a sender's stream.",
        flags: [],
        init: env(sample("nack")),
        result: "valid",
      },
      {
        name: "multicast/nack/shared",
        comment: "A multicast NACK from a receiver whose losses are mostly shared: the sender repairs it to the whole group.",
        flags: [],
        init: env({ case: "nack", value: { stream: Stream.MULTICAST, originId: ID_B, originIncarnation: 2n, missing: [{ first: 5n, last: 7n }], shared: true } }),
        result: "valid",
      },
      {
        name: "multicast/nack/unicast-max-range",
        comment: "A unicast NACK whose range is the single largest sequence number.",
        flags: ["EdgeValue"],
        init: env({
          case: "nack",
          value: { stream: Stream.UNICAST, originId: ID_C, originIncarnation: WIRE_MAX, missing: [{ first: WIRE_MAX, last: WIRE_MAX }] },
        }),
        result: "valid",
      },
      {
        name: "multicast/ack/cumulative",
        comment: "A cumulative acknowledgement without selective ranges.",
        flags: [],
        init: env({ case: "ack", value: { stream: Stream.MULTICAST, originId: ID_B, originIncarnation: 2n, cumulative: 41n } }),
        result: "valid",
      },
      {
        name: "multicast/ack/selective",
        comment: "A cumulative acknowledgement of 0 with selective ranges above it.",
        flags: ["EdgeValue"],
        init: env({
          case: "ack",
          value: {
            stream: Stream.UNICAST,
            originId: ID_B,
            originIncarnation: 2n,
            received: [
              { first: 2n, last: 4n },
              { first: 6n, last: 6n },
            ],
          },
        }),
        result: "valid",
      },
      {
        name: "multicast/heartbeat/with-digest",
        comment: "A heartbeat with a two-member stability digest.",
        flags: [],
        init: env(sample("heartbeat")),
        result: "valid",
      },
      {
        name: "multicast/heartbeat/group-member",
        comment: "A group member's heartbeat: its view, the queues it consumes, the oldest message it can still resend.",
        flags: [],
        init: env({
          case: "heartbeat",
          value: { highestSeq: 90n, lowestSeq: 12n, intervalMs: 1000, group: "orders", queues: ["jobs", "émails"], viewId: { coordinatorId: ID_B, counter: 7n } },
        }),
        result: "valid",
      },
      {
        name: "multicast/heartbeat/plain-channel",
        comment: "A heartbeat for a plain channel: no group, no digest.",
        flags: [],
        init: env({ case: "heartbeat", value: { highestSeq: 3n, intervalMs: 1000 } }),
        result: "valid",
      },
      {
        name: "multicast/heartbeat/max",
        comment: "Highest sequence and interval at their largest values (2^53 − 1 for 64-bit numbers).",
        flags: ["EdgeValue"],
        init: env({ case: "heartbeat", value: { highestSeq: WIRE_MAX, intervalMs: U32_MAX } }),
        result: "valid",
      },
    ]),
    group(SeqRangeSchema, [
      {
        name: "multicast/seq-range/zero",
        comment: "The range 0..0: both fields default, the encoding is empty.",
        flags: ["EdgeValue"],
        init: {},
        result: "valid",
      },
      {
        name: "multicast/seq-range/max",
        comment: "The range 1..2^64-1.",
        flags: ["EdgeValue"],
        init: { first: 1n, last: U64_MAX },
        result: "valid",
      },
    ]),
    group(DigestEntrySchema, [
      {
        name: "multicast/digest-entry/typical",
        comment: "One sender's delivered and received sequence numbers.",
        flags: [],
        init: DIGEST_A,
        result: "valid",
      },
      {
        name: "multicast/digest-entry/max",
        comment: "Every number at the largest uint64.",
        flags: ["EdgeValue"],
        init: { memberId: ID_C, incarnation: U64_MAX, delivered: U64_MAX, received: U64_MAX },
        result: "valid",
      },
    ]),
  ],
};

const MEMBERSHIP: AreaTable = {
  area: "membership",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "membership/discovery/group",
        comment: "A member looks for the group 'orders'.",
        flags: [],
        init: env(sample("discovery")),
        result: "valid",
      },
      {
        name: "membership/discovery/any-group",
        comment: "A discovery without a group or member details beyond its id.",
        flags: ["EdgeValue"],
        init: env({ case: "discovery", value: { member: { id: ID_A } } }),
        result: "valid",
      },
      {
        name: "membership/discovery-response/typical",
        comment: "A member answers a discovery with the view id and the coordinator's address.",
        flags: [],
        init: env(sample("discoveryResponse")),
        result: "valid",
      },
      {
        name: "membership/join/typical",
        comment: "A member asks to join 'orders'.",
        flags: [],
        init: env(sample("join")),
        result: "valid",
      },
      {
        name: "membership/join-response/accepted",
        comment: "The coordinator admits the joiner: the new view and the digest of every sender's stream.",
        flags: [],
        init: env(sample("joinResponse")),
        result: "valid",
      },
      {
        name: "membership/join-response/rejected",
        comment: "The coordinator refuses the join and says why.",
        flags: [],
        init: env({ case: "joinResponse", value: { group: "orders", rejectReason: "member name already in use" } }),
        result: "valid",
      },
      {
        name: "membership/leave/typical",
        comment: "A member leaves 'orders'.",
        flags: [],
        init: env(sample("leave")),
        result: "valid",
      },
      {
        name: "membership/view/two-members",
        comment: "A view of two members, the coordinator first.",
        flags: [],
        init: env(sample("view")),
        result: "valid",
      },
      {
        name: "membership/view/merged",
        comment: "A view that merges two partitions, naming the views it merged.",
        flags: [],
        init: env({
          case: "view",
          value: {
            ...VIEW,
            id: { coordinatorId: ID_B, counter: 9n },
            merged: [VIEW_ID, { coordinatorId: ID_C, counter: 3n }],
          },
        }),
        result: "valid",
      },
      {
        name: "membership/view/counter-max",
        comment: "A single-member view whose counter is the largest number an envelope carries (2^53 − 1).",
        flags: ["EdgeValue"],
        init: env({
          case: "view",
          value: { group: "orders", id: { coordinatorId: ID_A, counter: WIRE_MAX }, members: [MEMBER_A], coordinator: REF_A },
        }),
        result: "valid",
      },
      {
        name: "membership/view-ack/typical",
        comment: "A member acknowledges installing view 4.",
        flags: [],
        init: env(sample("viewAck")),
        result: "valid",
      },
      {
        name: "membership/suspect/several",
        comment: "A member suspects two others.",
        flags: [],
        init: env({ case: "suspect", value: { group: "orders", suspects: [REF_B, REF_C] } }),
        result: "valid",
      },
      {
        name: "membership/ping/typical",
        comment: "A ping with a 53-bit nonce.",
        flags: [],
        init: env(sample("ping")),
        result: "valid",
      },
      {
        name: "membership/ping/nonce-max",
        comment: "A ping whose nonce is the largest number an envelope carries (2^53 − 1).",
        flags: ["EdgeValue"],
        init: env({ case: "ping", value: { nonce: WIRE_MAX } }),
        result: "valid",
      },
      {
        name: "membership/pong/typical",
        comment: "The pong echoing the ping's nonce.",
        flags: [],
        init: env(sample("pong")),
        result: "valid",
      },
    ]),
    group(MemberInfoSchema, [
      {
        name: "membership/member-info/typical",
        comment: "A member's details with one metadata entry.",
        flags: [],
        init: MEMBER_A,
        result: "valid",
      },
      {
        name: "membership/member-info/empty",
        comment: "Every field at its default: the encoding is empty.",
        flags: ["EdgeValue"],
        init: {},
        result: "valid",
      },
      {
        name: "membership/member-info/metadata-several",
        comment: "Several metadata entries.",
        flags: ["MapOrder"],
        init: { id: ID_A, metadata: { zone: "eu-west-1a", rack: "r12", role: "primary", empty: "" } },
        result: "valid",
      },
      {
        name: "membership/member-info/metadata-unicode",
        comment: "A metadata entry with a non-ASCII key and value.",
        flags: ["Unicode"],
        init: { id: ID_A, metadata: { [CJK]: MIXED_TEXT } },
        result: "valid",
      },
      {
        name: "membership/member-info/metadata-empty-key",
        comment: "A metadata entry whose key and value are both empty strings.",
        flags: ["EdgeValue"],
        init: { id: ID_A, metadata: { "": "" } },
        result: "valid",
      },
      {
        name: "membership/member-info/extremes",
        comment: "Weight at the largest int32, port at the largest uint32, start time at the largest uint64.",
        flags: ["EdgeValue"],
        init: { id: ID_A, incarnation: U64_MAX, weight: I32_MAX, port: U32_MAX, startTimeMs: U64_MAX },
        result: "valid",
      },
      {
        name: "membership/member-info/negative-weight",
        comment: "Weight -1: a negative int32 takes a 10-byte varint.",
        flags: ["EdgeValue"],
        init: { id: ID_A, weight: -1 },
        result: "valid",
      },
      {
        name: "membership/member-info/unicode-name-and-groups",
        comment: "A non-ASCII member name and group names.",
        flags: ["Unicode"],
        init: { id: ID_B, name: MIXED_TEXT, groups: [EMOJI, CJK, COMBINING] },
        result: "valid",
      },
    ]),
    group(ViewIdSchema, [
      {
        name: "membership/view-id/typical",
        comment: "A view id: the installing coordinator and a counter.",
        flags: [],
        init: VIEW_ID,
        result: "valid",
      },
    ]),
    group(MemberRefSchema, [
      {
        name: "membership/member-ref/typical",
        comment: "A member's id and incarnation.",
        flags: [],
        init: REF_A,
        result: "valid",
      },
      {
        name: "membership/member-ref/incarnation-max",
        comment: "Incarnation at the largest uint64.",
        flags: ["EdgeValue"],
        init: { id: ID_C, incarnation: U64_MAX },
        result: "valid",
      },
    ]),
  ],
};

/** A state-map request from member A to the coordinator of "orders". */
function stateRequest(requestId: bigint, op: MessageInitShape<typeof StateRequestSchema>["op"]): EnvelopeInit {
  return env({ case: "stateRequest", value: { requestId, group: "orders", op } });
}

const STATE_MAP: AreaTable = {
  area: "state-map",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "state-map/request/put",
        comment: "A put with a BlazeMessage value, a time to live and remove-on-exit.",
        flags: [],
        init: stateRequest(1001n, {
          case: "put",
          value: {
            key: "session/42",
            value: encode(BlazeMessageSchema, BLAZE_MESSAGE),
            format: PayloadFormat.BLAZE_MESSAGE,
            ttlMs: 30_000n,
            removeOnExit: true,
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/request/put-if-version-zero",
        comment: "Compare-and-set with if_version present and 0: put only if the key is absent.",
        flags: ["ExplicitPresence"],
        init: stateRequest(1002n, { case: "put", value: { key: "leader", value: utf8("alpha"), ifVersion: 0n } }),
        result: "valid",
      },
      {
        name: "state-map/request/put-if-version",
        comment: "Compare-and-set against version 5, with a fencing token.",
        flags: [],
        init: stateRequest(1003n, {
          case: "put",
          value: { key: "config/timeout", value: utf8("45s"), ifVersion: 5n, fencingToken: 17n },
        }),
        result: "valid",
      },
      {
        name: "state-map/request/put-empty-value",
        comment: "A put of an empty value (no if_version: an unconditional write).",
        flags: ["EdgeValue"],
        init: stateRequest(1004n, { case: "put", value: { key: "flag" } }),
        result: "valid",
      },
      {
        name: "state-map/request/put-large-value",
        comment: "A put of a 4 KiB value.",
        flags: ["LargeBytes"],
        init: stateRequest(1005n, { case: "put", value: { key: "blob", value: pattern(KIB4) } }),
        result: "valid",
      },
      {
        name: "state-map/request/put-unicode-key",
        comment: "A put whose key is non-ASCII.",
        flags: ["Unicode"],
        init: stateRequest(1006n, { case: "put", value: { key: MIXED_TEXT, value: utf8(EMOJI) } }),
        result: "valid",
      },
      {
        name: "state-map/request/remove",
        comment: "An unconditional remove.",
        flags: [],
        init: stateRequest(1007n, { case: "remove", value: { key: "session/42" } }),
        result: "valid",
      },
      {
        name: "state-map/request/remove-if-version-zero",
        comment: "A remove with if_version present and 0.",
        flags: ["ExplicitPresence"],
        init: stateRequest(1008n, { case: "remove", value: { key: "session/42", ifVersion: 0n, fencingToken: 3n } }),
        result: "valid",
      },
      {
        name: "state-map/request/batch",
        comment: "An atomic batch of two puts and one remove.",
        flags: [],
        init: stateRequest(1009n, {
          case: "batch",
          value: {
            puts: [
              { key: "a", value: utf8("1") },
              { key: "b", value: utf8("2"), ifVersion: 0n },
            ],
            removes: [{ key: "c", ifVersion: 4n }],
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/request/batch-empty",
        comment: "An empty batch: the op is set though the BatchOp has no fields.",
        flags: ["EdgeValue"],
        init: stateRequest(1010n, { case: "batch", value: {} }),
        result: "valid",
      },
      {
        name: "state-map/request/clear",
        comment: "Clear the map: an empty ClearOp.",
        flags: [],
        init: stateRequest(1011n, { case: "clear", value: {} }),
        result: "valid",
      },
      {
        name: "state-map/request/lock",
        comment: "A lock request (see locks.json for more).",
        flags: [],
        init: stateRequest(1012n, { case: "lock", value: { key: "leader", leaseMs: 10_000n, waitMs: 5_000n } }),
        result: "valid",
      },
      {
        name: "state-map/request/unlock",
        comment: "An unlock request with the holder's fencing token.",
        flags: [],
        init: stateRequest(1013n, { case: "unlock", value: { key: "leader", fencingToken: 17n } }),
        result: "valid",
      },
      {
        name: "state-map/request/renew-lease",
        comment: "A lease renewal.",
        flags: [],
        init: stateRequest(1014n, { case: "renewLease", value: { key: "leader", fencingToken: 17n, leaseMs: 10_000n } }),
        result: "valid",
      },
      {
        name: "state-map/request/cancel",
        comment: "Withdraws lock request 1012 still queued for the lock on \"leader\".",
        flags: [],
        init: stateRequest(1015n, { case: "cancel", value: { key: "leader", lockRequestId: 1012n } }),
        result: "valid",
      },
      {
        name: "state-map/request/pull",
        comment: "A coordinator taking over asks a replica further along for what follows position (5, B, 40).",
        flags: [],
        init: stateRequest(0n, { case: "pull", value: { epoch: 5n, epochCoordinatorId: ID_B, index: 40n } }),
        result: "valid",
      },
      {
        name: "state-map/request/prepare",
        comment: "A coordinator about to start term 6 in view (B, 4) asks a member to promise it and say where it stands.",
        flags: [],
        init: stateRequest(0n, { case: "prepare", value: { epoch: 6n, view: VIEW_ID } }),
        result: "valid",
      },
      {
        name: "state-map/request/request-id-max",
        comment: "Request id at the largest number an envelope carries (2^53 − 1), with no op: the coordinator answers INVALID, the wire accepts it.",
        flags: ["EdgeValue"],
        init: env({ case: "stateRequest", value: { requestId: WIRE_MAX, group: "orders" } }),
        result: "valid",
      },
      {
        name: "state-map/response/ok-with-previous",
        comment: "A successful put returning the entry as it was before.",
        flags: [],
        init: env({
          case: "stateResponse",
          value: { requestId: 1003n, result: StateResult.OK, epoch: 5n, index: 43n, previous: [ENTRY], coordinator: REF_B },
        }),
        result: "valid",
      },
      ...(
        [
          [StateResult.VERSION_MISMATCH, "version-mismatch", "entry is at version 6"],
          [StateResult.NO_QUORUM, "no-quorum", "2 of 5 members reachable"],
          [StateResult.NOT_FOUND, "not-found", ""],
          [StateResult.INVALID, "invalid", "request has no operation"],
          [StateResult.TOO_LARGE, "too-large", "the update would take 70000 bytes, more than one datagram carries"],
        ] as const
      ).map(
        ([result, slug, message]): Case<typeof EnvelopeSchema> => ({
          name: `state-map/response/${slug}`,
          comment: `A refused request: ${StateResult[result]}.`,
          flags: [],
          init: env({ case: "stateResponse", value: { requestId: 1003n, result, message, epoch: 5n, index: 43n } }),
          result: "valid",
        }),
      ),
      {
        name: "state-map/response/not-coordinator",
        comment: "The receiver is not the coordinator and names the one to retry at.",
        flags: [],
        init: env({
          case: "stateResponse",
          value: { requestId: 1003n, result: StateResult.NOT_COORDINATOR, epoch: 6n, coordinator: REF_C },
        }),
        result: "valid",
      },
      {
        name: "state-map/update/insert",
        comment: "An applied insert, replicated to every member.",
        flags: [],
        init: env(sample("stateUpdate")),
        result: "valid",
      },
      {
        name: "state-map/update/batch",
        comment: "One update carrying the changes of a batch: update, insert and remove.",
        flags: [],
        init: env({
          case: "stateUpdate",
          value: {
            epoch: 5n,
            index: 44n,
            group: "orders",
            requestId: 1009n,
            requester: REF_A,
            changes: [
              { kind: ChangeKind.UPDATE, entry: { key: "a", value: utf8("1"), version: 2n, owner: REF_A } },
              { kind: ChangeKind.INSERT, entry: { key: "b", value: utf8("2"), version: 1n, owner: REF_A } },
              { kind: ChangeKind.REMOVE, entry: { key: "c", value: utf8("old"), version: 4n, owner: REF_B } },
            ],
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/update/batched-requests",
        comment: "Two requests ordered in one step of the map's order: the first's changes in the update, the second's in `batch`.",
        flags: [],
        init: env({
          case: "stateUpdate",
          value: {
            epoch: 5n,
            index: 46n,
            group: "orders",
            requestId: 1010n,
            requester: REF_A,
            changes: [{ kind: ChangeKind.INSERT, entry: { key: "x", value: utf8("1"), version: 1n, owner: REF_A } }],
            coordinatorId: ID_B,
            batch: [{ requestId: 2001n, requester: REF_B, changes: [{ kind: ChangeKind.UPDATE, entry: { key: "y", value: utf8("2"), version: 3n, owner: REF_B } }] }],
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/update/clear",
        comment: "A clear(): one change without an entry removes every entry, whatever the map's size.",
        flags: [],
        init: env({ case: "stateUpdate", value: { epoch: 5n, index: 47n, group: "orders", requestId: 1011n, requester: REF_A, changes: [{ kind: ChangeKind.CLEAR }] } }),
        result: "valid",
      },
      {
        name: "state-map/update/remove-expired",
        comment: "An entry removed because its time to live ran out (request id 0, no requester).",
        flags: [],
        init: env({
          case: "stateUpdate",
          value: { epoch: 5n, index: 45n, group: "orders", changes: [{ kind: ChangeKind.REMOVE, entry: ENTRY, expired: true }] },
        }),
        result: "valid",
      },
      {
        name: "state-map/update/announce-term-begun",
        comment: "The coordinator announces its last index and a lease probe, and that its term has begun: every member of the term accepted it.",
        flags: [],
        init: env({ case: "stateUpdate", value: { epoch: 9n, index: 42n, group: "orders", coordinatorId: ID_A, leaseProbe: 7n, announce: true, termBegun: true } }),
        result: "valid",
      },
      {
        name: "state-map/update/index-max",
        comment: "Epoch and index at the largest number an envelope carries (2^53 − 1).",
        flags: ["EdgeValue"],
        init: env({ case: "stateUpdate", value: { epoch: WIRE_MAX, index: WIRE_MAX, group: "orders" } }),
        result: "valid",
      },
      {
        name: "state-map/snapshot/single-chunk",
        comment: "A one-chunk snapshot with one entry.",
        flags: [],
        init: env(sample("stateSnapshot")),
        result: "valid",
      },
      {
        name: "state-map/snapshot/middle-chunk",
        comment: "Chunk 2 of 5 with two entries, one of them locked.",
        flags: [],
        init: env({
          case: "stateSnapshot",
          value: { epoch: 5n, index: 42n, group: "orders", chunk: 2, chunkCount: 5, entries: [ENTRY, LOCKED_ENTRY] },
        }),
        result: "valid",
      },
      {
        name: "state-map/snapshot/entry-block",
        comment: "Chunk 2 of 5 with its two entries in one entry block (an encoded SnapshotEntries), as a member that reads them is sent.",
        flags: [],
        init: env({
          case: "stateSnapshot",
          value: { epoch: 5n, index: 42n, group: "orders", chunk: 2, chunkCount: 5, entryBlock: encode(SnapshotEntriesSchema, { entries: [ENTRY, LOCKED_ENTRY] }) },
        }),
        result: "valid",
      },
      {
        name: "state-map/snapshot/empty-map",
        comment: "The snapshot of an empty map: chunk 0 of 1, no entries.",
        flags: ["EdgeValue"],
        init: env({ case: "stateSnapshot", value: { epoch: 1n, group: "orders", chunkCount: 1 } }),
        result: "valid",
      },
      {
        name: "state-map/snapshot/locks-and-applied-requests",
        comment: "The last chunk: a lock on a key with no entry, and a remembered request (its response's previous entry and token).",
        flags: [],
        init: env({
          case: "stateSnapshot",
          value: {
            epoch: 5n,
            index: 42n,
            group: "orders",
            chunk: 4,
            chunkCount: 5,
            nextFencingToken: 18n,
            locks: [{ key: "leader", lock: { holder: REF_B, fencingToken: 17n, leaseRemainingMs: 9_500n, releaseOnExit: true } }],
            applied: [{ requester: REF_A, requestId: 1001n, index: 41n, previous: [ENTRY], fencingToken: 0n }],
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/sync-complete/quorum",
        comment: "The end of a sync in quorum mode: the members among which the state was agreed.",
        flags: [],
        init: env({
          case: "syncComplete",
          value: {
            epoch: 6n,
            index: 42n,
            group: "orders",
            entryCount: 1n,
            agreed: [REF_A, REF_B, REF_C],
            nextFencingToken: 18n,
            epochCoordinatorId: ID_B,
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/ack/position-for-view",
        comment: "A replica reports its position to the coordinator of a new view.",
        flags: [],
        init: env({
          case: "stateAck",
          value: {
            group: "orders",
            epoch: 5n,
            index: 42n,
            view: VIEW_ID,
            nextFencingToken: 18n,
            acceptedEpoch: 5n,
            ready: true,
            epochCoordinatorId: ID_B,
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/sync-complete/prior-terms",
        comment: "A term started while the latest term counted on was not known to have begun: the terms that may still hold the agreed set, newest first.",
        flags: [],
        init: env({
          case: "syncComplete",
          value: {
            epoch: 9n,
            index: 42n,
            group: "orders",
            entryCount: 1n,
            agreed: [REF_A, REF_B],
            nextFencingToken: 18n,
            epochCoordinatorId: ID_A,
            prior: [
              { epoch: 8n, coordinatorId: ID_A, members: [REF_A, REF_B, REF_C] },
              { epoch: 6n, coordinatorId: ID_B, members: [REF_A, REF_B, REF_C] },
            ],
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/ack/accepted-term-begun",
        comment: "A replica answers a new view's coordinator: the term it accepted (with its prior terms) is known to have begun; its term memory reaches back to its incarnation 2 (memory_since).",
        flags: [],
        init: env({
          case: "stateAck",
          value: {
            group: "orders",
            epoch: 9n,
            index: 42n,
            view: VIEW_ID,
            nextFencingToken: 18n,
            acceptedEpoch: 9n,
            ready: true,
            epochCoordinatorId: ID_A,
            acceptedCoordinatorId: ID_A,
            agreed: [REF_A, REF_B],
            promisedEpoch: 10n,
            promisedCoordinatorId: ID_B,
            acceptedBegun: true,
            acceptedPrior: [{ epoch: 8n, coordinatorId: ID_A, members: [REF_A, REF_B, REF_C] }],
            memorySince: 2n,
          },
        }),
        result: "valid",
      },
      {
        name: "state-map/ack/empty-replica",
        comment: "A replica that never synced: everything at its default but the group.",
        flags: ["EdgeValue"],
        init: env({ case: "stateAck", value: { group: "orders" } }),
        result: "valid",
      },
      {
        name: "state-map/sync-complete/typical",
        comment: "The end of a snapshot.",
        flags: [],
        init: env(sample("syncComplete")),
        result: "valid",
      },
      {
        name: "state-map/sync-complete/empty-map",
        comment: "The end of a snapshot of an empty map: everything at its default but the group.",
        flags: ["EdgeValue"],
        init: env({ case: "syncComplete", value: { group: "orders" } }),
        result: "valid",
      },
    ]),
    group(EntrySchema, [
      {
        name: "state-map/entry/typical",
        comment: "An entry with owner, version and time to live.",
        flags: [],
        init: ENTRY,
        result: "valid",
      },
      {
        name: "state-map/entry/locked",
        comment: "An entry holding a lock.",
        flags: [],
        init: LOCKED_ENTRY,
        result: "valid",
      },
      {
        name: "state-map/entry/empty",
        comment: "Every field at its default.",
        flags: ["EdgeValue"],
        init: {},
        result: "valid",
      },
      {
        name: "state-map/entry/extremes",
        comment: "Version and time to live at the largest uint64, a BlazeMessage value, remove-on-exit.",
        flags: ["EdgeValue"],
        init: {
          key: "k",
          value: encode(BlazeMessageSchema, BLAZE_MESSAGE),
          format: PayloadFormat.BLAZE_MESSAGE,
          version: U64_MAX,
          owner: REF_C,
          removeOnExit: true,
          ttlRemainingMs: U64_MAX,
        },
        result: "valid",
      },
    ]),
    group(SnapshotEntriesSchema, [
      {
        name: "state-map/snapshot-entries/two",
        comment: "A snapshot chunk's entry block (StateSnapshot.entry_block): two entries, one of them locked.",
        flags: [],
        init: { entries: [ENTRY, LOCKED_ENTRY] },
        result: "valid",
      },
    ]),
    group(EntryChangeSchema, [
      {
        name: "state-map/entry-change/update",
        comment: "One change: an updated entry.",
        flags: [],
        init: { kind: ChangeKind.UPDATE, entry: ENTRY },
        result: "valid",
      },
    ]),
    group(PutOpSchema, [
      {
        name: "state-map/put-op/if-version-zero",
        comment: "if_version present with value 0: it is written (0x30 0x00) and appears in ProtoJSON as \"0\".",
        flags: ["ExplicitPresence"],
        init: { key: "k", ifVersion: 0n },
        result: "valid",
      },
      {
        name: "state-map/put-op/if-version-absent",
        comment: "if_version absent: the same message without it, one field shorter.",
        flags: [],
        init: { key: "k" },
        result: "valid",
      },
      {
        name: "state-map/put-op/if-version-max",
        comment: "if_version and ttl at the largest uint64.",
        flags: ["EdgeValue"],
        init: { key: "k", ifVersion: U64_MAX, ttlMs: U64_MAX, fencingToken: U64_MAX },
        result: "valid",
      },
    ]),
    group(RemoveOpSchema, [
      {
        name: "state-map/remove-op/if-version-zero",
        comment: "A remove with if_version present and 0.",
        flags: ["ExplicitPresence"],
        init: { key: "k", ifVersion: 0n },
        result: "valid",
      },
    ]),
    group(BatchOpSchema, [
      {
        name: "state-map/batch-op/typical",
        comment: "A batch of one put and one remove.",
        flags: [],
        init: { puts: [{ key: "a", value: utf8("1") }], removes: [{ key: "b" }] },
        result: "valid",
      },
    ]),
  ],
};

const LOCKS: AreaTable = {
  area: "locks",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "locks/request/lock-with-lease",
        comment: "Lock with a 10 s lease, waiting up to 5 s, released when the holder leaves.",
        flags: [],
        init: stateRequest(2001n, {
          case: "lock",
          value: { key: "leader", leaseMs: 10_000n, waitMs: 5_000n, releaseOnExit: true },
        }),
        result: "valid",
      },
      {
        name: "locks/request/try-lock",
        comment: "tryLock: no wait, no lease (held until released); only the key is on the wire.",
        flags: ["EdgeValue"],
        init: stateRequest(2002n, { case: "lock", value: { key: "leader" } }),
        result: "valid",
      },
      {
        name: "locks/request/lock-max",
        comment: "Lease and wait at the largest number an envelope carries (2^53 − 1).",
        flags: ["EdgeValue"],
        init: stateRequest(2003n, { case: "lock", value: { key: "leader", leaseMs: WIRE_MAX, waitMs: WIRE_MAX } }),
        result: "valid",
      },
      {
        name: "locks/request/unlock",
        comment: "Unlock with the holder's fencing token.",
        flags: [],
        init: stateRequest(2004n, { case: "unlock", value: { key: "leader", fencingToken: 17n } }),
        result: "valid",
      },
      {
        name: "locks/request/unlock-token-max",
        comment: "Unlock with the largest number an envelope carries (2^53 − 1) fencing token.",
        flags: ["EdgeValue"],
        init: stateRequest(2005n, { case: "unlock", value: { key: "leader", fencingToken: WIRE_MAX } }),
        result: "valid",
      },
      {
        name: "locks/request/renew-lease",
        comment: "Renew the lease for another 10 s.",
        flags: [],
        init: stateRequest(2006n, { case: "renewLease", value: { key: "leader", fencingToken: 17n, leaseMs: 10_000n } }),
        result: "valid",
      },
      {
        name: "locks/request/unicode-key",
        comment: "Lock a key with non-ASCII characters.",
        flags: ["Unicode"],
        init: stateRequest(2007n, { case: "lock", value: { key: `${CJK}/${EMOJI}` } }),
        result: "valid",
      },
      {
        name: "locks/response/granted",
        comment: "The lock is granted with fencing token 17.",
        flags: [],
        init: env({
          case: "stateResponse",
          value: { requestId: 2001n, result: StateResult.OK, epoch: 5n, index: 50n, fencingToken: 17n, coordinator: REF_B },
        }),
        result: "valid",
      },
      {
        name: "locks/response/locked",
        comment: "tryLock failed: another member holds the lock.",
        flags: [],
        init: env({ case: "stateResponse", value: { requestId: 2002n, result: StateResult.LOCKED, epoch: 5n } }),
        result: "valid",
      },
      {
        name: "locks/response/stale-token",
        comment: "An unlock with an old fencing token is refused.",
        flags: [],
        init: env({
          case: "stateResponse",
          value: { requestId: 2004n, result: StateResult.STALE_TOKEN, message: "token 16 < 17", epoch: 5n },
        }),
        result: "valid",
      },
      {
        name: "locks/update/lock-granted",
        comment: "A grant replicated as a LOCK change carrying the lock state.",
        flags: [],
        init: env({
          case: "stateUpdate",
          value: {
            epoch: 5n,
            index: 50n,
            group: "orders",
            requestId: 2001n,
            requester: REF_B,
            changes: [{ kind: ChangeKind.LOCK, entry: LOCKED_ENTRY }],
          },
        }),
        result: "valid",
      },
      {
        name: "locks/update/unlocked",
        comment: "A release replicated as an UNLOCK change.",
        flags: [],
        init: env({
          case: "stateUpdate",
          value: {
            epoch: 5n,
            index: 51n,
            group: "orders",
            requestId: 2004n,
            requester: REF_B,
            changes: [{ kind: ChangeKind.UNLOCK, entry: { key: "leader", version: 1n, owner: REF_B } }],
          },
        }),
        result: "valid",
      },
      {
        name: "locks/update/lease-expired",
        comment: "The lease ran out: an UNLOCK change with expired set, request id 0.",
        flags: [],
        init: env({
          case: "stateUpdate",
          value: {
            epoch: 5n,
            index: 52n,
            group: "orders",
            changes: [{ kind: ChangeKind.UNLOCK, entry: { key: "leader", version: 1n, owner: REF_B }, expired: true }],
          },
        }),
        result: "valid",
      },
      {
        name: "locks/snapshot/next-fencing-token",
        comment: "A snapshot with a locked entry and the next fencing token to hand out.",
        flags: [],
        init: env({
          case: "stateSnapshot",
          value: { epoch: 5n, index: 52n, group: "orders", chunkCount: 1, entries: [LOCKED_ENTRY], nextFencingToken: 18n },
        }),
        result: "valid",
      },
    ]),
    group(LockOpSchema, [
      {
        name: "locks/lock-op/typical",
        comment: "A LockOp on its own.",
        flags: [],
        init: { key: "leader", leaseMs: 10_000n, waitMs: 5_000n, releaseOnExit: true },
        result: "valid",
      },
    ]),
    group(UnlockOpSchema, [
      {
        name: "locks/unlock-op/typical",
        comment: "An UnlockOp on its own.",
        flags: [],
        init: { key: "leader", fencingToken: 17n },
        result: "valid",
      },
    ]),
    group(RenewLeaseOpSchema, [
      {
        name: "locks/renew-lease-op/typical",
        comment: "A RenewLeaseOp on its own.",
        flags: [],
        init: { key: "leader", fencingToken: 17n, leaseMs: 10_000n },
        result: "valid",
      },
    ]),
    group(LockStateSchema, [
      {
        name: "locks/lock-state/typical",
        comment: "A held lock with lease left.",
        flags: [],
        init: { holder: REF_B, fencingToken: 17n, leaseRemainingMs: 9_500n, releaseOnExit: true },
        result: "valid",
      },
      {
        name: "locks/lock-state/max",
        comment: "Fencing token and lease at the largest uint64.",
        flags: ["EdgeValue"],
        init: { holder: REF_C, fencingToken: U64_MAX, leaseRemainingMs: U64_MAX },
        result: "valid",
      },
    ]),
  ],
};

const TOTEM: AreaTable = {
  area: "totem",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "totem/token/typical",
        comment: "A token pass with flow-control counts.",
        flags: [],
        init: env(sample("totemToken")),
        result: "valid",
      },
      {
        name: "totem/token/retransmit",
        comment: "A token carrying retransmission requests.",
        flags: [],
        init: env({
          case: "totemToken",
          value: {
            ring: RING,
            tokenSeq: 101n,
            seq: 510n,
            aru: 502n,
            aruId: ID_B,
            retransmit: [
              { first: 503n, last: 505n },
              { first: 509n, last: 509n },
            ],
            nextId: ID_C,
          },
        }),
        result: "valid",
      },
      {
        name: "totem/token/max",
        comment: "Sequence numbers and counters at their largest values (2^53 − 1 for 64-bit numbers).",
        flags: ["EdgeValue"],
        init: env({
          case: "totemToken",
          value: {
            ring: { representativeId: ID_C, ringSeq: WIRE_MAX },
            tokenSeq: WIRE_MAX,
            seq: WIRE_MAX,
            aru: WIRE_MAX,
            fcc: U32_MAX,
            backlog: U32_MAX,
          },
        }),
        result: "valid",
      },
      {
        name: "totem/token/recovery",
        comment: "A token of a ring in recovery: a member still carries old-ring messages.",
        flags: [],
        init: env({
          case: "totemToken",
          value: { ring: RING, tokenSeq: 3n, seq: 20n, aru: 18n, aruId: ID_B, recoveryPending: true, nextId: ID_C },
        }),
        result: "valid",
      },
      {
        name: "totem/token/install",
        comment: "The representative's token telling members to install the ring.",
        flags: [],
        init: env({
          case: "totemToken",
          value: { ring: RING, tokenSeq: 9n, seq: 40n, aru: 40n, nextId: ID_B, phase: TotemPhase.INSTALL },
        }),
        result: "valid",
      },
      {
        name: "totem/token/operational",
        comment: "A token of an operational ring.",
        flags: [],
        init: env({
          case: "totemToken",
          value: { ring: RING, tokenSeq: 10n, seq: 41n, aru: 41n, fcc: 1, nextId: ID_C, phase: TotemPhase.OPERATIONAL },
        }),
        result: "valid",
      },
      {
        name: "totem/relay/retransmit",
        comment: "A message of ring 12 multicast again by a member other than its originator.",
        flags: [],
        init: env(sample("totemRelay")),
        result: "valid",
      },
      {
        name: "totem/relay/carrier",
        comment: "A message of old ring 12 carried on new ring 16 during recovery, at place 3 there.",
        flags: [],
        init: env({
          case: "totemRelay",
          value: {
            origin: REF_C,
            ring: RING,
            data: { seq: 9n, addressing: Addressing.TOPIC, destination: "ledger", payload: utf8("credit 3"), globalSeq: 497n, ringSeq: 12n, safe: true },
            carrierRing: { representativeId: ID_A, ringSeq: 16n },
            carrierSeq: 3n,
          },
        }),
        result: "valid",
      },
      {
        name: "totem/join/announce",
        comment: "An operational ring's representative announcing its ring, so that another ring merges with it.",
        flags: [],
        init: env({ case: "totemJoin", value: { ring: RING, procSet: [REF_A, REF_B], highestRingSeq: 12n, announce: true } }),
        result: "valid",
      },
      {
        name: "totem/join/typical",
        comment: "A join message with a failed member.",
        flags: [],
        init: env({
          case: "totemJoin",
          value: { ring: RING, procSet: [REF_A, REF_B], failSet: [REF_C], highestRingSeq: 12n },
        }),
        result: "valid",
      },
      {
        name: "totem/commit/typical",
        comment: "The commit token installing ring 16.",
        flags: [],
        init: env(sample("totemCommit")),
        result: "valid",
      },
      {
        name: "totem/data/agreed",
        comment: "Totally ordered Data: global and ring sequence numbers, agreed delivery.",
        flags: [],
        init: data({
          seq: 40n,
          addressing: Addressing.TOPIC,
          destination: "ledger",
          payload: utf8("debit 10"),
          globalSeq: 501n,
          ringSeq: 12n,
        }),
        result: "valid",
      },
      {
        name: "totem/data/safe",
        comment: "Totally ordered Data with safe delivery.",
        flags: [],
        init: data({
          seq: 41n,
          addressing: Addressing.TOPIC,
          destination: "ledger",
          payload: utf8("credit 10"),
          globalSeq: 502n,
          ringSeq: 12n,
          safe: true,
        }),
        result: "valid",
      },
      {
        name: "totem/data/global-seq-max",
        comment: "Global and ring sequence numbers at the largest number an envelope carries (2^53 − 1).",
        flags: ["EdgeValue"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "ledger", globalSeq: WIRE_MAX, ringSeq: WIRE_MAX, safe: true }),
        result: "valid",
      },
    ]),
    group(RingIdSchema, [
      {
        name: "totem/ring-id/typical",
        comment: "A ring id on its own.",
        flags: [],
        init: RING,
        result: "valid",
      },
    ]),
    group(TotemMemberStateSchema, [
      {
        name: "totem/member-state/not-received",
        comment: "A member state whose old ring's messages were not all received.",
        flags: [],
        init: { member: REF_C, oldRing: RING, oldAru: 490n, highDelivered: 488n },
        result: "valid",
      },
    ]),
  ],
};

const FEC: AreaTable = {
  area: "fec",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "fec/parity/typical",
        comment: "The first parity packet of an 8+2 block.",
        flags: [],
        init: env(sample("fecParity")),
        result: "valid",
      },
      {
        name: "fec/parity/last-index",
        comment: "The last parity packet (index m - 1) of a unicast block.",
        flags: [],
        init: env({
          case: "fecParity",
          value: { stream: Stream.UNICAST, blockFirstSeq: 1n, k: 4, m: 3, parityIndex: 2, parity: pattern(32), lengthParity: pattern(2) },
        }),
        result: "valid",
      },
      {
        name: "fec/parity/large",
        comment: "Parity over 4 KiB source packets.",
        flags: ["LargeBytes"],
        init: env({
          case: "fecParity",
          value: { stream: Stream.MULTICAST, blockFirstSeq: 1000n, k: 16, m: 4, parityIndex: 1, parity: pattern(KIB4), lengthParity: pattern(2) },
        }),
        result: "valid",
      },
      {
        name: "fec/parity/interleaved",
        comment: "A parity packet of an interleaved block: sources 200, 232, 264, … (stride 32).",
        flags: [],
        init: env({
          case: "fecParity",
          value: { stream: Stream.MULTICAST, blockFirstSeq: 200n, k: 8, m: 2, parityIndex: 1, parity: pattern(48), lengthParity: pattern(2), stride: 32 },
        }),
        result: "valid",
      },
      {
        name: "fec/parity/max",
        comment: "Block start at the largest number an envelope carries (2^53 − 1) and counts and stride at the largest uint32; empty parity.",
        flags: ["EdgeValue"],
        init: env({ case: "fecParity", value: { blockFirstSeq: WIRE_MAX, k: U32_MAX, m: U32_MAX, parityIndex: U32_MAX, stride: U32_MAX } }),
        result: "valid",
      },
    ]),
    group(FecParitySchema, [
      {
        name: "fec/fec-parity/bare",
        comment: "A FecParity on its own.",
        flags: [],
        init: { stream: Stream.MULTICAST, blockFirstSeq: 33n, k: 8, m: 2, parity: pattern(16), lengthParity: pattern(2) },
        result: "valid",
      },
    ]),
  ],
};

const DIAGNOSTICS: AreaTable = {
  area: "diagnostics",
  groups: [
    group(EnvelopeSchema, [
      {
        name: "diagnostics/request/typical",
        comment: "A probe asks a member to describe itself.",
        flags: [],
        init: env(sample("diagnosticsRequest")),
        result: "valid",
      },
      {
        name: "diagnostics/request/entries",
        comment: "A probe asks for the replicated map's entries too.",
        flags: [],
        init: env({ case: "diagnosticsRequest", value: { nonce: 9n, includeEntries: true } }),
        result: "valid",
      },
      {
        name: "diagnostics/reply/typical",
        comment: "A member of one group with one peer describes itself.",
        flags: [],
        init: env(sample("diagnosticsReply")),
        result: "valid",
      },
      {
        name: "diagnostics/reply/cluster-member",
        comment: "A cluster member: counters by name, its map with a lock and an entry, recent events, lists cut short.",
        flags: ["MapOrder", "EdgeValue"],
        init: env({
          case: "diagnosticsReply",
          value: {
            nonce: 9n,
            name: "bravo",
            software: "deno 2.9.6, activeblaze 0.1.0",
            reliability: "totem",
            state: "started",
            uptimeMs: 3_600_000n,
            groups: [
              { group: "orders", viewId: VIEW_ID, members: [MEMBER_B, MEMBER_A], coordinator: REF_B },
              { group: "joining" },
            ],
            peers: [
              { member: REF_A, host: "10.0.0.1", port: 7800, silentMs: 3n },
              { member: REF_C, host: "fd00::3", port: 7802 },
            ],
            peerCount: 9,
            totals: { "messages.sent": 10_000n, "datagrams.dropped/WRONG_CLUSTER": 12n, "errors/listener": 0n, retransmissions: WIRE_MAX },
            levels: { peers: 9n, "queue.depth/state": 2n, "map.entries": 1n },
            stateMap: {
              group: "orders",
              master: REF_B,
              epoch: 5n,
              ready: true,
              entryCount: 1,
              locks: [{ key: "printer", holder: REF_A, fencingToken: 17n, leaseMs: 10_000n }],
              lockCount: 1,
              entries: [{ key: "color", version: 3n, owner: REF_A, size: 14, preview: 'BlazeMessage { text: "red" }' }],
            },
            events: [
              { atMs: 1_764_741_600_000n, kind: "join", group: "orders", member: REF_A, message: "member alpha joined group \"orders\"" },
              { atMs: 1_764_741_601_000n, kind: "stalled", message: "this member's event loop stalled for 2400 ms" },
            ],
            truncated: true,
          },
        }),
        result: "valid",
      },
      {
        name: "diagnostics/reply/total-2-pow-53",
        comment: "A total of 2^53, one past the largest number an envelope carries.",
        flags: ["SafeInteger", "EdgeValue"],
        init: env({ case: "diagnosticsReply", value: { nonce: 1n, totals: { retransmissions: 2n ** 53n } } }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      {
        name: "diagnostics/request/nonce-2-pow-53",
        comment: "A request's nonce of 2^53, one past the largest number an envelope carries.",
        flags: ["SafeInteger", "EdgeValue"],
        init: env({ case: "diagnosticsRequest", value: { nonce: 2n ** 53n } }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
    ]),
  ],
};

type ValueKindInit = Extract<MessageInitShape<typeof ValueSchema>["kind"], { case: string }>;

/** A Value vector from its kind. */
function value(
  name: string,
  comment: string,
  kind: ValueKindInit,
  flags: Flag[] = [],
): Case<typeof ValueSchema> {
  return { name: `message/value/${name}`, comment, flags, init: { kind }, result: "valid" };
}

const MESSAGE: AreaTable = {
  area: "message",
  groups: [
    group(BlazeMessageSchema, [
      {
        name: "message/blaze/empty",
        comment: "An empty message: zero bytes.",
        flags: ["EdgeValue"],
        init: {},
        result: "valid",
      },
      {
        name: "message/blaze/single-field",
        comment: "One field.",
        flags: [],
        init: BLAZE_MESSAGE,
        result: "valid",
      },
      {
        name: "message/blaze/every-kind",
        comment: "One field of every value kind.",
        flags: ["MapOrder"],
        init: {
          fields: {
            flag: { kind: { case: "boolValue", value: true } },
            count: { kind: { case: "int32Value", value: -5 } },
            total: { kind: { case: "int64Value", value: 9_000_000_000n } },
            ratio: { kind: { case: "floatValue", value: 0.5 } },
            price: { kind: { case: "doubleValue", value: 101.25 } },
            symbol: { kind: { case: "stringValue", value: "ACME" } },
            raw: { kind: { case: "bytesValue", value: pattern(8) } },
            nested: { kind: { case: "mapValue", value: BLAZE_MESSAGE } },
            tags: { kind: { case: "listValue", value: { values: [{ kind: { case: "stringValue", value: "a" } }] } } },
          },
        },
        result: "valid",
      },
      {
        name: "message/blaze/nested-maps",
        comment: "Maps nested three deep, one entry each.",
        flags: [],
        init: {
          fields: {
            outer: {
              kind: {
                case: "mapValue",
                value: { fields: { middle: { kind: { case: "mapValue", value: BLAZE_MESSAGE } } } },
              },
            },
          },
        },
        result: "valid",
      },
      {
        name: "message/blaze/nested-maps-several",
        comment: "Nested maps with several entries at each level.",
        flags: ["MapOrder"],
        init: {
          fields: {
            a: {
              kind: {
                case: "mapValue",
                value: {
                  fields: { x: { kind: { case: "int32Value", value: 1 } }, y: { kind: { case: "int32Value", value: 2 } } },
                },
              },
            },
            b: { kind: { case: "mapValue", value: {} } },
          },
        },
        result: "valid",
      },
      {
        name: "message/blaze/unicode-keys",
        comment: "Keys with emoji, CJK and combining marks.",
        flags: ["Unicode", "MapOrder"],
        init: {
          fields: {
            [EMOJI]: { kind: { case: "stringValue", value: EMOJI } },
            [CJK]: { kind: { case: "stringValue", value: CJK } },
            [COMBINING]: { kind: { case: "stringValue", value: COMBINING } },
          },
        },
        result: "valid",
      },
      {
        name: "message/blaze/unicode-key",
        comment: "One key mixing scripts.",
        flags: ["Unicode"],
        init: { fields: { [MIXED_TEXT]: { kind: { case: "boolValue", value: true } } } },
        result: "valid",
      },
      {
        name: "message/blaze/empty-key",
        comment: "The empty string is a valid key.",
        flags: ["EdgeValue"],
        init: { fields: { "": { kind: { case: "stringValue", value: "" } } } },
        result: "valid",
      },
      {
        name: "message/blaze/integer-like-keys",
        comment: "Keys that look like integers (\"10\", \"9\") beside others; JavaScript objects reorder such keys.",
        flags: ["MapOrder"],
        init: {
          fields: {
            b: { kind: { case: "int32Value", value: 2 } },
            "10": { kind: { case: "int32Value", value: 10 } },
            "9": { kind: { case: "int32Value", value: 9 } },
          },
        },
        result: "valid",
      },
      {
        name: "message/blaze/long-key",
        comment: "A key of 1,000 characters (BlazeMessage keys have no length limit on the wire).",
        flags: ["EdgeValue"],
        init: { fields: { ["k".repeat(1000)]: { kind: { case: "int32Value", value: 1 } } } },
        result: "valid",
      },
      {
        name: "message/blaze/entry-without-key-and-value",
        comment: "A map entry with neither key nor value: key \"\" and an empty Value (an encoder writes both).",
        flags: ["NonCanonicalEncoding"],
        bytes: concat(lenField(1, [])),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "message/blaze/entry-without-value",
        comment: "A map entry with a key but no value: the value is an empty Value.",
        flags: ["NonCanonicalEncoding"],
        bytes: concat(lenField(1, lenField(1, utf8("k")))),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "message/blaze/entry-value-before-key",
        comment: "A map entry whose value field comes before its key.",
        flags: ["NonCanonicalEncoding"],
        bytes: concat(lenField(1, [...lenField(2, varintField(1, 1)), ...lenField(1, utf8("a"))])),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "message/blaze/duplicate-key",
        comment: "The key \"a\" twice (int32 1, then int32 2): the last entry wins.",
        flags: ["DuplicateField"],
        bytes: concat(
          lenField(1, [...lenField(1, utf8("a")), ...lenField(2, varintField(2, 1))]),
          lenField(1, [...lenField(1, utf8("a")), ...lenField(2, varintField(2, 2))]),
        ),
        result: "valid",
        roundtrip: false,
      },
    ]),
    group(ValueSchema, [
      {
        name: "message/value/empty",
        comment: "A Value with no kind set: zero bytes.",
        flags: ["EdgeValue"],
        init: {},
        result: "valid",
      },
      value("bool-true", "true.", { case: "boolValue", value: true }),
      value("bool-false", "false in a oneof is present: 0x08 0x00.", { case: "boolValue", value: false }, [
        "ExplicitPresence",
      ]),
      value("int32-zero", "0 in a oneof is present.", { case: "int32Value", value: 0 }, ["ExplicitPresence"]),
      value("int32-max", "The largest int32.", { case: "int32Value", value: I32_MAX }, ["EdgeValue"]),
      value("int32-min", "The smallest int32: a 10-byte varint.", { case: "int32Value", value: I32_MIN }, ["EdgeValue"]),
      value("int32-minus-one", "-1: a 10-byte varint.", { case: "int32Value", value: -1 }, ["EdgeValue"]),
      value("int64-zero", "0 in a oneof is present.", { case: "int64Value", value: 0n }, ["ExplicitPresence"]),
      value("int64-max", "The largest int64.", { case: "int64Value", value: I64_MAX }, ["EdgeValue"]),
      value("int64-min", "The smallest int64.", { case: "int64Value", value: I64_MIN }, ["EdgeValue"]),
      value("int64-beyond-double", "2^53 + 1, which a double cannot hold.", { case: "int64Value", value: 2n ** 53n + 1n }, [
        "EdgeValue",
      ]),
      value("float-zero", "+0.0 in a oneof is present.", { case: "floatValue", value: 0 }, ["ExplicitPresence"]),
      value("float-negative-zero", "-0.0 (bits 0x80000000).", { case: "floatValue", value: -0 }, ["FloatSpecial"]),
      value("float-one-tenth", "0.1 rounded to float32.", { case: "floatValue", value: Math.fround(0.1) }),
      value("float-max", "The largest finite float32.", { case: "floatValue", value: FLOAT_MAX }, ["EdgeValue"]),
      value("float-min-normal", "The smallest normal float32.", { case: "floatValue", value: FLOAT_MIN_NORMAL }, [
        "EdgeValue",
      ]),
      value("float-min-subnormal", "The smallest positive float32.", { case: "floatValue", value: FLOAT_MIN_SUBNORMAL }, [
        "FloatSpecial",
      ]),
      value("float-infinity", "+Infinity.", { case: "floatValue", value: Infinity }, ["FloatSpecial"]),
      value("float-negative-infinity", "-Infinity.", { case: "floatValue", value: -Infinity }, ["FloatSpecial"]),
      value("float-nan", "NaN (bits 0x7fc00000).", { case: "floatValue", value: NaN }, ["FloatSpecial"]),
      {
        name: "message/value/float-nan-payload",
        comment: "A NaN with payload bits (0x7fc00001): it decodes as NaN; an encoder may write another NaN.",
        flags: ["FloatSpecial"],
        bytes: concat(tag(4, WIRE_I32), [0x01, 0x00, 0xc0, 0x7f]),
        result: "valid",
        roundtrip: false,
      },
      value("double-zero", "+0.0 in a oneof is present.", { case: "doubleValue", value: 0 }, ["ExplicitPresence"]),
      value("double-negative-zero", "-0.0.", { case: "doubleValue", value: -0 }, ["FloatSpecial"]),
      value("double-one-tenth", "0.1.", { case: "doubleValue", value: 0.1 }),
      value("double-max", "The largest finite double.", { case: "doubleValue", value: Number.MAX_VALUE }, ["EdgeValue"]),
      value("double-min-subnormal", "The smallest positive double.", { case: "doubleValue", value: Number.MIN_VALUE }, [
        "FloatSpecial",
      ]),
      value("double-infinity", "+Infinity.", { case: "doubleValue", value: Infinity }, ["FloatSpecial"]),
      value("double-negative-infinity", "-Infinity.", { case: "doubleValue", value: -Infinity }, ["FloatSpecial"]),
      value("double-nan", "NaN.", { case: "doubleValue", value: NaN }, ["FloatSpecial"]),
      value("string-empty", "The empty string in a oneof is present.", { case: "stringValue", value: "" }, [
        "ExplicitPresence",
      ]),
      value("string-ascii", "Plain ASCII.", { case: "stringValue", value: "hello, world" }),
      value("string-emoji", "Emoji: 4-byte UTF-8, surrogate pairs in UTF-16.", { case: "stringValue", value: EMOJI }, [
        "Unicode",
      ]),
      value("string-cjk", "CJK: 3-byte UTF-8.", { case: "stringValue", value: CJK }, ["Unicode"]),
      value("string-combining", "Combining marks, not normalized.", { case: "stringValue", value: COMBINING }, [
        "Unicode",
      ]),
      value("string-nul", "U+0000 inside a string.", { case: "stringValue", value: "a\u0000b" }, ["Unicode"]),
      value("string-bom", "A leading U+FEFF is text, not a byte-order mark.", { case: "stringValue", value: "\ufeffbom" }, [
        "Unicode",
      ]),
      value("string-max-code-point", "U+10FFFF, the last code point.", { case: "stringValue", value: "\u{10ffff}" }, [
        "Unicode",
        "EdgeValue",
      ]),
      value("bytes-empty", "Empty bytes in a oneof are present.", { case: "bytesValue", value: new Uint8Array() }, [
        "ExplicitPresence",
      ]),
      value("bytes-every-value", "The 256 byte values, in order.", { case: "bytesValue", value: pattern(256) }),
      value("bytes-4k", "4 KiB of bytes.", { case: "bytesValue", value: pattern(KIB4) }, ["LargeBytes"]),
      value("map-empty", "An empty nested map is present.", { case: "mapValue", value: {} }, ["ExplicitPresence"]),
      value("map-nested", "A nested map with one entry.", { case: "mapValue", value: BLAZE_MESSAGE }),
      value("list-empty", "An empty list is present.", { case: "listValue", value: {} }, ["ExplicitPresence"]),
      value("list-mixed", "A list mixing kinds, an empty Value among them.", {
        case: "listValue",
        value: {
          values: [
            { kind: { case: "int32Value", value: 1 } },
            { kind: { case: "stringValue", value: "two" } },
            {},
            { kind: { case: "doubleValue", value: 3.5 } },
            { kind: { case: "boolValue", value: false } },
          ],
        },
      }),
      value("list-nested", "Lists in a list, and a map in a list.", {
        case: "listValue",
        value: {
          values: [
            { kind: { case: "listValue", value: { values: [{ kind: { case: "int64Value", value: I64_MIN } }] } } },
            { kind: { case: "listValue", value: {} } },
            { kind: { case: "mapValue", value: BLAZE_MESSAGE } },
          ],
        },
      }),
      {
        name: "message/value/bool-two",
        comment: "A bool written as varint 2 is true.",
        flags: ["IntegerTruncation"],
        bytes: concat(varintField(1, 2)),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "message/value/int32-five-byte-negative",
        comment: "int32 -1 written as the 5-byte varint 0xffffffff (as some encoders do): still -1.",
        flags: ["IntegerTruncation"],
        bytes: concat(varintField(2, 0xffff_ffffn)),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "message/value/int32-wide-varint",
        comment: "int32 written as 2^32 + 5: the low 32 bits, 5.",
        flags: ["IntegerTruncation"],
        bytes: concat(varintField(2, 2n ** 32n + 5n)),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "message/value/oneof-last-wins",
        comment: "int32 1, then string \"x\": the last oneof member wins.",
        flags: ["DuplicateField"],
        bytes: concat(varintField(2, 1), lenField(6, utf8("x"))),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "message/value/nested-map-merges",
        comment: "map_value twice: the two BlazeMessages merge into one with both keys.",
        flags: ["DuplicateField", "MapOrder"],
        bytes: concat(
          lenField(8, lenField(1, [...lenField(1, utf8("a")), ...lenField(2, varintField(1, 1))])),
          lenField(8, lenField(1, [...lenField(1, utf8("b")), ...lenField(2, varintField(1, 1))])),
        ),
        result: "valid",
        roundtrip: false,
      },
    ]),
    group(ValueListSchema, [
      {
        name: "message/value-list/empty",
        comment: "An empty list: zero bytes.",
        flags: ["EdgeValue"],
        init: {},
        result: "valid",
      },
      {
        name: "message/value-list/strings",
        comment: "A list of three strings.",
        flags: ["Unicode"],
        init: { values: [EMOJI, CJK, COMBINING].map((s) => ({ kind: { case: "stringValue" as const, value: s } })) },
        result: "valid",
      },
    ]),
  ],
};

/** A raw envelope: the valid header, then `rest`. */
function rawEnvelope(...rest: ArrayLike<number>[]): Uint8Array {
  return concat(RAW_HEADER, ...rest);
}

const VALID_ENVELOPE = encode(EnvelopeSchema, env(sample("data")));

/** Envelopes carrying one number past the protocol's limit (2^53 − 1), each in another place. */
function beyondWireMax(): Case<typeof EnvelopeSchema>[] {
  const places: ReadonlyArray<readonly [string, string, (n: bigint) => EnvelopeInit]> = [
    ["incarnation", "the envelope's incarnation", (n) => env(sample("heartbeat"), { incarnation: n })],
    ["data-seq", "a Data sequence number", (n) => data({ seq: n, addressing: Addressing.TOPIC, destination: "prices" })],
    ["data-stream-floor", "a point-to-point stream floor", (n) => data({ seq: 5n, addressing: Addressing.MEMBER, targetId: ID_B, targetIncarnation: 1n, streamFloor: n })],
    ["heartbeat-highest", "a heartbeat's highest sequence number", (n) => env({ case: "heartbeat", value: { highestSeq: n, intervalMs: 1000 } })],
    ["heartbeat-lowest", "a heartbeat's lowest sequence number", (n) => env({ case: "heartbeat", value: { highestSeq: 10n, lowestSeq: n } })],
    ["heartbeat-digest", "a digest entry inside a heartbeat", (n) => env({ case: "heartbeat", value: { highestSeq: 10n, digest: [{ memberId: ID_C, incarnation: 1n, delivered: n, received: 1n }] } })],
    ["nack-range", "a NACK's missing range", (n) => env({ case: "nack", value: { stream: Stream.MULTICAST, originId: ID_C, originIncarnation: 1n, missing: [{ first: 1n, last: n }] } })],
    ["view-counter", "a view's counter", (n) => env({ case: "view", value: { group: "orders", id: { coordinatorId: ID_A, counter: n }, members: [MEMBER_A], coordinator: REF_A } })],
    ["member-start-time", "a member's start time inside a join", (n) => env({ case: "join", value: { group: "orders", member: { ...MEMBER_A, startTimeMs: n } } })],
    ["ping-nonce", "a ping's nonce", (n) => env({ case: "ping", value: { nonce: n, group: "orders" } })],
    ["state-update-index", "a state update's log index", (n) => env({ case: "stateUpdate", value: { epoch: 1n, index: n, group: "orders" } })],
    ["lock-lease", "a lock request's lease", (n) => stateRequest(2003n, { case: "lock", value: { key: "leader", leaseMs: n } })],
    ["totem-aru", "a Totem token's all-received mark", (n) => env({ case: "totemToken", value: { ring: { representativeId: ID_C, ringSeq: 1n }, tokenSeq: 1n, seq: 1n, aru: n } })],
    ["fec-block", "a parity packet's block start", (n) => env({ case: "fecParity", value: { blockFirstSeq: n, k: 4, m: 1, parityIndex: 0 } })],
  ];
  const cases: Case<typeof EnvelopeSchema>[] = [];
  for (const [name, what, build] of places) {
    cases.push({
      name: `invalid/number/${name}-2-pow-53`,
      comment: `${what[0]!.toUpperCase()}${what.slice(1)} is 2^53, one past the largest number an envelope carries.`,
      flags: ["SafeInteger", "EdgeValue"],
      init: build(2n ** 53n),
      result: "invalid",
      error: "INVALID_FIELD",
    });
  }
  for (const [name, what, build] of places.slice(0, 4)) {
    cases.push({
      name: `invalid/number/${name}-u64-max`,
      comment: `${what[0]!.toUpperCase()}${what.slice(1)} is the largest uint64.`,
      flags: ["SafeInteger", "EdgeValue"],
      init: build(U64_MAX),
      result: "invalid",
      error: "INVALID_FIELD",
    });
  }
  return cases;
}

const INVALID: AreaTable = {
  area: "invalid",
  groups: [
    group(EnvelopeSchema, [
      // Bytes no protobuf decoder may accept.
      {
        name: "invalid/decode/truncated-last-byte",
        comment: "A valid envelope without its last byte: the body ends early.",
        flags: ["Truncated"],
        bytes: VALID_ENVELOPE.subarray(0, VALID_ENVELOPE.length - 1),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/truncated-varint",
        comment: "The bytes end inside a varint (0x81 continues).",
        flags: ["Truncated"],
        bytes: concat(tag(1, WIRE_VARINT), [0x81]),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/truncated-tag",
        comment: "The bytes end inside a two-byte tag (field 16).",
        flags: ["Truncated"],
        bytes: rawEnvelope([0x82]),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/truncated-fixed32",
        comment: "A fixed32 field with only 3 of its 4 bytes.",
        flags: ["Truncated"],
        bytes: rawEnvelope(RAW_PING, tag(7, WIRE_I32), [1, 2, 3]),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/bad-varint",
        comment: "Incarnation followed by 11 bytes of 0xff and 0x01: a varint longer than 10 bytes.",
        flags: ["BadVarint"],
        bytes: rawEnvelope(tag(5, WIRE_VARINT), filled(11, 0xff), [0x01], RAW_PING),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/wire-type-6",
        comment: "A tag with wire type 6 on the version field.",
        flags: ["BadTag"],
        bytes: concat(tag(1, 6), [0x01], RAW_HEADER.slice(2), RAW_PING),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/wire-type-7",
        comment: "A tag with wire type 7 on an unknown field: it cannot be skipped.",
        flags: ["BadTag"],
        bytes: rawEnvelope(RAW_PING, tag(15, 7), [0x01]),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/field-number-zero",
        comment: "A tag with field number 0.",
        flags: ["BadTag"],
        bytes: rawEnvelope(RAW_PING, tag(0, WIRE_VARINT), [0x01]),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/field-number-too-large",
        comment: "A tag with field number 2^29, one past the largest.",
        flags: ["BadTag"],
        bytes: rawEnvelope(RAW_PING, tag(2 ** 29, WIRE_VARINT), [0x01]),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/end-group-without-start",
        comment: "An end-group tag with no group open.",
        flags: ["BadTag"],
        bytes: rawEnvelope(RAW_PING, tag(15, WIRE_END_GROUP)),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/unclosed-group",
        comment: "A start-group tag whose group never ends.",
        flags: ["BadTag", "Truncated"],
        bytes: rawEnvelope(RAW_PING, tag(15, WIRE_START_GROUP), varintField(1, 1)),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/length-past-end",
        comment: "The cluster's length prefix says 100 bytes; 11 follow.",
        flags: ["LengthOverrun"],
        bytes: concat(varintField(1, 1), tag(3, WIRE_LEN), varint(100), utf8(CONTEXT_CLUSTER)),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/length-huge",
        comment: "A length prefix of 2^32 - 1.",
        flags: ["LengthOverrun"],
        bytes: rawEnvelope(tag(16, WIRE_LEN), varint(U32_MAX), [0x08, 0x01]),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/nested-length-past-end",
        comment: "Inside a 4-byte Data body, the destination claims 5 bytes: past the end of the Data, though not of the datagram.",
        flags: ["LengthOverrun"],
        bytes: rawEnvelope(lenField(16, [...tag(3, WIRE_LEN), 5, 0x61, 0x62]), lenField(11, utf8("xyz"))),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/utf8-invalid-byte",
        comment: "The cluster is the single byte 0xff.",
        flags: ["InvalidUtf8"],
        bytes: concat(varintField(1, 1), lenField(3, [0xff]), lenField(4, ID_A), RAW_PING),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/utf8-overlong",
        comment: "A destination holding the overlong encoding 0xc0 0x80 of U+0000.",
        flags: ["InvalidUtf8"],
        bytes: rawEnvelope(lenField(16, lenField(3, [0x61, 0xc0, 0x80]))),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/utf8-surrogate",
        comment: "A group name holding an encoded UTF-16 surrogate (0xed 0xa0 0x80).",
        flags: ["InvalidUtf8"],
        bytes: rawEnvelope(lenField(34, lenField(1, [0xed, 0xa0, 0x80]))),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/utf8-above-max-code-point",
        comment: "A member name holding 0xf4 0x90 0x80 0x80, above U+10FFFF.",
        flags: ["InvalidUtf8"],
        bytes: rawEnvelope(lenField(30, lenField(1, lenField(3, [0xf4, 0x90, 0x80, 0x80])))),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/decode/utf8-truncated-sequence",
        comment: "A string ending in the middle of a 3-byte sequence (0xe2 0x82).",
        flags: ["InvalidUtf8"],
        bytes: rawEnvelope(lenField(16, lenField(3, [0x61, 0xe2, 0x82]))),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      // Valid protobuf the protocol refuses.
      {
        name: "invalid/version/empty-datagram",
        comment: "Zero bytes decode as an envelope with nothing set: the version is missing.",
        flags: ["Version"],
        bytes: new Uint8Array(),
        result: "invalid",
        error: "MISSING_FIELD",
      },
      {
        name: "invalid/version/absent",
        comment: "No version field.",
        flags: ["Version"],
        init: env(sample("data"), { version: 0 }),
        result: "invalid",
        error: "MISSING_FIELD",
      },
      {
        name: "invalid/version/explicit-zero",
        comment: "Version written as 0 (0x08 0x00): the same as absent.",
        flags: ["Version", "NonCanonicalEncoding"],
        bytes: concat(varintField(1, 0), RAW_HEADER.slice(2), RAW_PING),
        result: "invalid",
        error: "MISSING_FIELD",
      },
      {
        name: "invalid/version/two",
        comment: "Major version 2.",
        flags: ["Version"],
        init: env(sample("data"), { version: 2 }),
        result: "invalid",
        error: "UNSUPPORTED_VERSION",
      },
      {
        name: "invalid/version/max",
        comment: "Major version at the largest uint32.",
        flags: ["Version", "EdgeValue"],
        init: env(sample("data"), { version: U32_MAX }),
        result: "invalid",
        error: "UNSUPPORTED_VERSION",
      },
      {
        name: "invalid/version/wide-varint-truncates-to-two",
        comment: "Version written as 2^32 + 2: the uint32 keeps 2, which is unsupported.",
        flags: ["Version", "IntegerTruncation"],
        bytes: concat(varintField(1, 2n ** 32n + 2n), RAW_HEADER.slice(2), RAW_PING),
        result: "invalid",
        error: "UNSUPPORTED_VERSION",
      },
      {
        name: "invalid/cluster/other",
        comment: "An envelope of another cluster.",
        flags: [],
        init: env(sample("data"), { cluster: "production" }),
        result: "invalid",
        error: "WRONG_CLUSTER",
      },
      {
        name: "invalid/cluster/empty",
        comment: "No cluster name: the empty cluster is not \"conformance\".",
        flags: ["EdgeValue"],
        init: env(sample("data"), { cluster: "" }),
        result: "invalid",
        error: "WRONG_CLUSTER",
      },
      {
        name: "invalid/cluster/case-differs",
        comment: "\"Conformance\": cluster names compare byte for byte.",
        flags: [],
        init: env(sample("data"), { cluster: "Conformance" }),
        result: "invalid",
        error: "WRONG_CLUSTER",
      },
      {
        name: "invalid/cluster/trailing-nul",
        comment: "\"conformance\" followed by U+0000.",
        flags: ["Unicode"],
        init: env(sample("data"), { cluster: `${CONTEXT_CLUSTER}\u0000` }),
        result: "invalid",
        error: "WRONG_CLUSTER",
      },
      {
        name: "invalid/cluster/at-limit",
        comment: `A cluster name of exactly ${MAX_CLUSTER_NAME_BYTES} bytes passes the size check and then is the wrong cluster.`,
        flags: ["Limit", "EdgeValue", "CheckOrder"],
        init: env(sample("data"), { cluster: "c".repeat(MAX_CLUSTER_NAME_BYTES) }),
        result: "invalid",
        error: "WRONG_CLUSTER",
      },
      {
        name: "invalid/cluster/over-limit",
        comment: `A cluster name of ${MAX_CLUSTER_NAME_BYTES + 1} bytes.`,
        flags: ["Limit"],
        init: env(sample("data"), { cluster: "c".repeat(MAX_CLUSTER_NAME_BYTES + 1) }),
        result: "invalid",
        error: "OVERSIZE",
      },
      {
        name: "invalid/cluster/over-limit-multibyte",
        comment: `64 emoji: 128 UTF-16 code units but ${MAX_CLUSTER_NAME_BYTES + 1} UTF-8 bytes; limits count UTF-8 bytes.`,
        flags: ["Limit", "Unicode"],
        init: env(sample("data"), { cluster: "😀".repeat(64) }),
        result: "invalid",
        error: "OVERSIZE",
      },
      {
        name: "invalid/sender/absent",
        comment: "No sender id.",
        flags: [],
        init: env(sample("data"), { senderId: new Uint8Array() }),
        result: "invalid",
        error: "MISSING_FIELD",
      },
      {
        name: "invalid/sender/too-short",
        comment: "A sender id of 15 bytes.",
        flags: ["EdgeValue"],
        init: env(sample("data"), { senderId: ID_A.subarray(0, 15) }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      {
        name: "invalid/sender/too-long",
        comment: "A sender id of 17 bytes.",
        flags: ["EdgeValue"],
        init: env(sample("data"), { senderId: concat(ID_A, [0x11]) }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      {
        name: "invalid/body/absent",
        comment: "A valid header and no body.",
        flags: [],
        init: env(undefined),
        result: "invalid",
        error: "MISSING_FIELD",
      },
      ...RETIRED_KINDS.map(([field, kind]) => ({
        name: `invalid/body/retired-${kind}`,
        comment: `The only body is field ${field} (${kind}), a kind that no release sent, retired and reserved: for this version the body is missing.`,
        flags: ["UnknownField"] as Flag[],
        bytes: rawEnvelope(lenField(field, varintField(1, 1))),
        result: "invalid" as const,
        error: "MISSING_FIELD" as const,
      })),
      {
        name: "invalid/body/unknown-kind",
        comment: "The only body is field 70, a kind a later minor version might add: for this version the body is missing.",
        flags: ["UnknownField"],
        bytes: rawEnvelope(lenField(70, varintField(1, 1))),
        result: "invalid",
        error: "MISSING_FIELD",
      },
      {
        name: "invalid/size/datagram-over-max",
        comment: `A well-formed envelope of ${MAX_DATAGRAM_BYTES + 1} bytes, one over the limit; the size is checked before decoding.`,
        flags: ["Limit", "LargeBytes"],
        init: envelopeOfSize(MAX_DATAGRAM_BYTES + 1),
        result: "invalid",
        error: "OVERSIZE",
      },
      {
        name: "invalid/data/fragment-index-equals-count",
        comment: "fragment_index 3 of fragment_count 3.",
        flags: ["Fragmentation"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "files", fragmentIndex: 3, fragmentCount: 3 }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      {
        name: "invalid/data/fragment-index-beyond-count",
        comment: "fragment_index 7 of fragment_count 2.",
        flags: ["Fragmentation"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "files", fragmentIndex: 7, fragmentCount: 2 }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      {
        name: "invalid/data/fragment-index-without-count",
        comment: "fragment_index 1 with fragment_count 0 (unfragmented).",
        flags: ["Fragmentation"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "files", fragmentIndex: 1 }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      {
        name: "invalid/data/fragment-count-over-limit",
        comment: `fragment_count ${MAX_FRAGMENT_COUNT + 1}, one over the limit.`,
        flags: ["Fragmentation", "Limit"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "files", fragmentCount: MAX_FRAGMENT_COUNT + 1 }),
        result: "invalid",
        error: "OVERSIZE",
      },
      {
        name: "invalid/data/destination-over-limit",
        comment: `A destination of ${MAX_NAME_BYTES + 1} bytes.`,
        flags: ["Limit"],
        init: data({ seq: 1n, addressing: Addressing.TOPIC, destination: "t".repeat(MAX_NAME_BYTES + 1) }),
        result: "invalid",
        error: "OVERSIZE",
      },
      {
        name: "invalid/data/target-id-wrong-length",
        comment: "A target id of 15 bytes (a target id is empty or 16 bytes).",
        flags: [],
        init: data({ seq: 1n, addressing: Addressing.MEMBER, targetId: ID_B.subarray(0, 15) }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      {
        name: "invalid/bundle/frame-without-kind",
        comment: "A bundle whose second frame is empty.",
        flags: [],
        init: env({ case: "bundle", value: { frames: [{ kind: sample("ack") }, {}] } }),
        result: "invalid",
        error: "MISSING_FIELD",
      },
      {
        name: "invalid/bundle/frame-unknown-kind",
        comment: "A bundle frame holding only field 70, a kind this version does not know: the frame has no kind.",
        flags: ["UnknownField"],
        bytes: rawEnvelope(lenField(17, lenField(1, lenField(70, varintField(1, 1))))),
        result: "invalid",
        error: "MISSING_FIELD",
      },
      {
        name: "invalid/bundle/data-bad-fragment",
        comment: "Bundled Data is checked like a Data body: the second frame's fragment_index equals its count.",
        flags: ["Fragmentation"],
        init: env({
          case: "bundle",
          value: {
            frames: [
              { kind: sample("data") },
              { kind: { case: "data", value: { seq: 2n, addressing: Addressing.TOPIC, fragmentIndex: 2, fragmentCount: 2 } } },
            ],
          },
        }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      ...beyondWireMax(),
      {
        name: "invalid/order/version-before-cluster",
        comment: "Version 2 and another cluster: the version is checked first.",
        flags: ["CheckOrder", "Version"],
        init: env(sample("data"), { version: 2, cluster: "production" }),
        result: "invalid",
        error: "UNSUPPORTED_VERSION",
      },
      {
        name: "invalid/order/cluster-before-sender",
        comment: "Another cluster and no sender id: the cluster is checked first.",
        flags: ["CheckOrder"],
        init: env(sample("data"), { cluster: "production", senderId: new Uint8Array() }),
        result: "invalid",
        error: "WRONG_CLUSTER",
      },
      {
        name: "invalid/order/sender-before-body",
        comment: "A 3-byte sender id and no body: the sender id is checked first.",
        flags: ["CheckOrder"],
        init: env(undefined, { senderId: ID_A.subarray(0, 3) }),
        result: "invalid",
        error: "INVALID_FIELD",
      },
      {
        name: "invalid/order/decode-before-version",
        comment: "Version 2 followed by truncated bytes: decoding fails before any protocol check.",
        flags: ["CheckOrder", "Truncated"],
        bytes: concat(varintField(1, 2), tag(3, WIRE_LEN), varint(50)),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      // Bytes every decoder must accept though they are not what this version writes.
      {
        name: "invalid/unknown/future-minor-field",
        comment: "Minor version 1 with field 6, which this schema does not define: accepted.",
        flags: ["UnknownField", "Version"],
        bytes: rawEnvelope(varintField(2, 1), varintField(6, 42), RAW_PING),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "invalid/unknown/length-delimited-field",
        comment: "An unknown length-delimited field 1000 after the body.",
        flags: ["UnknownField"],
        bytes: rawEnvelope(RAW_PING, lenField(1000, utf8("future"))),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "invalid/unknown/fixed-width-fields",
        comment: "Unknown fixed32 (field 7) and fixed64 (field 8) fields.",
        flags: ["UnknownField"],
        bytes: rawEnvelope(tag(7, WIRE_I32), [1, 2, 3, 4], tag(8, WIRE_I64), [1, 2, 3, 4, 5, 6, 7, 8], RAW_PING),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "invalid/unknown/max-field-number",
        comment: "An unknown field with the largest field number, 2^29 - 1.",
        flags: ["UnknownField", "EdgeValue"],
        bytes: rawEnvelope(RAW_PING, varintField(2 ** 29 - 1, 1)),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "invalid/unknown/nested-field",
        comment: "An unknown field 99 inside a Data body.",
        flags: ["UnknownField"],
        bytes: rawEnvelope(lenField(16, [...varintField(1, 1), ...lenField(3, utf8("prices")), ...varintField(99, 7)])),
        result: "valid",
        roundtrip: false,
      },
      // Bytes a decoder may accept or refuse.
      {
        name: "invalid/unknown/group",
        comment: "An unknown group (field 15, start and end tags around a varint) after the body.",
        flags: ["UnknownGroup"],
        bytes: rawEnvelope(RAW_PING, tag(15, WIRE_START_GROUP), varintField(1, 5), tag(15, WIRE_END_GROUP)),
        result: "acceptable",
      },
      {
        name: "invalid/varint/tenth-byte-overflow",
        comment: "Minor version (uint32) written as 0xff x 9, 0x7f: bits above 63. A decoder that keeps the low 32 bits reads 2^32 - 1.",
        flags: ["VarintOverflow"],
        bytes: rawEnvelope(tag(2, WIRE_VARINT), filled(9, 0xff), [0x7f], RAW_PING),
        result: "acceptable",
      },
    ]),
    group(BlazeMessageSchema, [
      {
        name: "invalid/message/key-invalid-utf8",
        comment: "A map key holding the byte 0xfe.",
        flags: ["InvalidUtf8"],
        bytes: concat(lenField(1, [...lenField(1, [0x61, 0xfe]), ...lenField(2, varintField(1, 1))])),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/message/nested-string-invalid-utf8",
        comment: "A string value two maps deep holding a lone continuation byte 0x80.",
        flags: ["InvalidUtf8"],
        bytes: concat(
          lenField(1, [
            ...lenField(1, utf8("outer")),
            ...lenField(2, lenField(8, lenField(1, [...lenField(1, utf8("inner")), ...lenField(2, lenField(6, [0x80]))]))),
          ]),
        ),
        result: "invalid",
        error: "DECODE_FAILED",
      },
      {
        name: "invalid/message/truncated-fixed64",
        comment: "A double value with only 7 of its 8 bytes.",
        flags: ["Truncated"],
        bytes: concat(lenField(1, [...lenField(1, utf8("x")), ...lenField(2, [...tag(5, WIRE_I64), 0, 0, 0, 0, 0, 0, 0])])),
        result: "invalid",
        error: "DECODE_FAILED",
      },
    ]),
  ],
};

const ORDERS_QUEUE = { kind: DestinationKind.QUEUE, name: "orders" };
const PRICES_TOPIC = { kind: DestinationKind.TOPIC, name: "prices.eu.acme" };
const REPLY_QUEUE = { kind: DestinationKind.TEMPORARY_QUEUE, name: "0102030405060708090a0b0c0d0e0f10/1/1" };
const HEADERS = {
  destination: ORDERS_QUEUE,
  messageId: "ID:0102030405060708090a0b0c0d0e0f10:1:42",
  timestampMs: 1_767_225_600_000n,
  correlationId: "order-7",
  replyTo: REPLY_QUEUE,
  type: "NewOrder",
  deliveryMode: DeliveryMode.NON_PERSISTENT,
  priority: 7,
  timeToLiveMs: 30_000n,
};

const MESSAGING: AreaTable = {
  area: "messaging",
  groups: [
    group(MessagingBatchSchema, [
      {
        name: "messaging/batch/one-text-message",
        comment: "One TextMessage to a topic, headers as a producer sets them by default: the common payload of the messaging topic.",
        flags: [],
        init: {
          messages: [
            {
              headers: { destination: PRICES_TOPIC, messageId: "ID:0102030405060708090a0b0c0d0e0f10:1:1", timestampMs: 1_767_225_600_000n, deliveryMode: DeliveryMode.NON_PERSISTENT },
              body: { case: "text", value: "12.50" },
            },
          ],
        },
        result: "valid",
      },
      {
        name: "messaging/batch/transaction",
        comment: "A committed transaction's three messages to topics, delivered all or none, in this order.",
        flags: [],
        init: {
          messages: [
            { headers: { destination: PRICES_TOPIC, messageId: "ID:0102030405060708090a0b0c0d0e0f10:2:1" }, body: { case: "text", value: "a" } },
            { headers: { destination: { kind: DestinationKind.TOPIC, name: "news" }, messageId: "ID:0102030405060708090a0b0c0d0e0f10:2:2" }, body: { case: "bytes", value: pattern(4) } },
            { headers: { destination: PRICES_TOPIC, messageId: "ID:0102030405060708090a0b0c0d0e0f10:2:3" } },
          ],
        },
        result: "valid",
      },
      {
        name: "messaging/batch/empty",
        comment: "No messages: zero bytes (nothing to deliver).",
        flags: ["EdgeValue"],
        init: {},
        result: "valid",
      },
      {
        name: "messaging/batch/truncated",
        comment: "A message's length prefix reaches past the end.",
        flags: ["LengthOverrun"],
        bytes: concat(tag(1, WIRE_LEN), varint(40), lenField(1, lenField(2, utf8("ID:x")))),
        result: "invalid",
        error: "DECODE_FAILED",
      },
    ]),
    group(MessagingMessageSchema, [
      {
        name: "messaging/message/every-header",
        comment: "Every header set, with a TextMessage body.",
        flags: [],
        init: { headers: { ...HEADERS, deliveryDelayMs: 250n }, body: { case: "text", value: "buy 10 ACME" } },
        result: "valid",
      },
      {
        name: "messaging/message/no-body",
        comment: "A plain Message: headers only.",
        flags: [],
        init: { headers: { destination: ORDERS_QUEUE, messageId: "ID:0102030405060708090a0b0c0d0e0f10:1:2" } },
        result: "valid",
      },
      {
        name: "messaging/message/empty-text",
        comment: "A TextMessage whose text is empty: the oneof member is on the wire, unlike a message without body.",
        flags: ["ExplicitPresence"],
        init: { headers: { destination: ORDERS_QUEUE }, body: { case: "text", value: "" } },
        result: "valid",
      },
      {
        name: "messaging/message/bytes-body",
        comment: "A BytesMessage of 4 KiB.",
        flags: ["LargeBytes"],
        init: { headers: { destination: ORDERS_QUEUE }, body: { case: "bytes", value: pattern(KIB4) } },
        result: "valid",
      },
      {
        name: "messaging/message/map-body",
        comment: "A MapMessage: the body is a BlazeMessage.",
        flags: [],
        init: { headers: { destination: ORDERS_QUEUE }, body: { case: "map", value: BLAZE_MESSAGE } },
        result: "valid",
      },
      {
        name: "messaging/message/object-body",
        comment: "An ObjectMessage: the object as JSON text.",
        flags: [],
        init: { headers: { destination: ORDERS_QUEUE }, body: { case: "json", value: '{"sku":"A-1","qty":3}' } },
        result: "valid",
      },
      {
        name: "messaging/message/stream-body",
        comment: "A StreamMessage: values of several kinds, in order.",
        flags: [],
        init: {
          headers: { destination: ORDERS_QUEUE },
          body: {
            case: "stream",
            value: { values: [{ kind: { case: "stringValue", value: "ACME" } }, { kind: { case: "int32Value", value: 10 } }, { kind: { case: "boolValue", value: true } }] },
          },
        },
        result: "valid",
      },
      {
        name: "messaging/message/unicode-text",
        comment: "A text body beyond ASCII.",
        flags: ["Unicode"],
        init: { headers: { destination: ORDERS_QUEUE }, body: { case: "text", value: MIXED_TEXT } },
        result: "valid",
      },
      {
        name: "messaging/message/two-bodies",
        comment: "A text body, then a bytes body: the last oneof member wins.",
        flags: ["DuplicateField"],
        bytes: concat(lenField(2, utf8("first")), lenField(3, [1, 2])),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "messaging/message/unknown-field",
        comment: "A field a later minor version may add (number 15): skipped.",
        flags: ["UnknownField"],
        bytes: concat(lenField(2, utf8("hi")), varintField(15, 1)),
        result: "valid",
        roundtrip: false,
      },
      {
        name: "messaging/message/invalid-utf8-text",
        comment: "A text body that is not UTF-8.",
        flags: ["InvalidUtf8"],
        bytes: concat(lenField(2, [0xc3, 0x28])),
        result: "invalid",
        error: "DECODE_FAILED",
      },
    ]),
    group(MessagingHeadersSchema, [
      {
        name: "messaging/headers/default-priority-absent",
        comment: "No priority on the wire: JMSPriority 4.",
        flags: [],
        init: { messageId: "ID:a" },
        result: "valid",
      },
      {
        name: "messaging/headers/priority-zero",
        comment: "JMSPriority 0 is written (explicit presence): it differs from an absent priority (4).",
        flags: ["ExplicitPresence", "EdgeValue"],
        init: { priority: 0 },
        result: "valid",
      },
      {
        name: "messaging/headers/priority-nine",
        comment: "The highest JMSPriority.",
        flags: ["EdgeValue"],
        init: { priority: 9 },
        result: "valid",
      },
      {
        name: "messaging/headers/relative-time-to-live",
        comment: "Time to live and delivery delay are relative durations in ms (no clock skew between members).",
        flags: [],
        init: { timeToLiveMs: 60_000n, deliveryDelayMs: 1_000n },
        result: "valid",
      },
      {
        name: "messaging/headers/property-of-every-type",
        comment: "One property of each JMS type: boolean, int, long, float, double, String.",
        flags: ["MapOrder"],
        init: {
          properties: {
            urgent: { kind: { case: "boolValue", value: true } },
            quantity: { kind: { case: "intValue", value: -3 } },
            total: { kind: { case: "longValue", value: -9_000_000_000n } },
            ratio: { kind: { case: "floatValue", value: 0.25 } },
            price: { kind: { case: "doubleValue", value: 101.5 } },
            region: { kind: { case: "stringValue", value: "EU" } },
          },
        },
        result: "valid",
      },
      {
        name: "messaging/headers/long-property-extremes",
        comment: "A long property at the smallest int64: ten bytes on the wire.",
        flags: ["EdgeValue"],
        init: { properties: { min: { kind: { case: "longValue", value: I64_MIN } } } },
        result: "valid",
      },
      {
        name: "messaging/headers/unicode-property",
        comment: "A property name and value beyond ASCII.",
        flags: ["Unicode"],
        init: { properties: { [CJK]: { kind: { case: "stringValue", value: EMOJI } } } },
        result: "valid",
      },
      {
        name: "messaging/headers/temporary-topic",
        comment: "JMSDestination a temporary topic: only its owner's context consumes from it.",
        flags: [],
        init: { destination: { kind: DestinationKind.TEMPORARY_TOPIC, name: "0102030405060708090a0b0c0d0e0f10/1/2" } },
        result: "valid",
      },
      {
        name: "messaging/headers/persistent",
        comment: "JMSDeliveryMode PERSISTENT decodes (a later version or another port may send it); this version refuses to send it.",
        flags: [],
        init: { deliveryMode: DeliveryMode.PERSISTENT },
        result: "valid",
      },
      {
        name: "messaging/headers/temporary-reply-to",
        comment: "JMSReplyTo a temporary queue: the owner's member id leads the name.",
        flags: [],
        init: { replyTo: REPLY_QUEUE, correlationId: "c-1" },
        result: "valid",
      },
    ]),
    group(QueueAssignmentSchema, [
      {
        name: "messaging/assignment/first-delivery",
        comment: "Two queue messages given to consumer 3 of a member at once: their first delivery.",
        flags: [],
        init: { consumer: "0102030405060708090a0b0c0d0e0f10/3", deliveryCount: 1, messageIds: ["ID:0102030405060708090a0b0c0d0e0f10:1:7", "ID:0102030405060708090a0b0c0d0e0f10:1:8"] },
        result: "valid",
      },
      {
        name: "messaging/assignment/given-back",
        comment: "A message given back after two deliveries (rollback): no consumer, waiting for the next one.",
        flags: [],
        init: { deliveryCount: 2, messageIds: ["ID:0102030405060708090a0b0c0d0e0f10:1:7"] },
        result: "valid",
      },
    ]),
    group(ConsumerRegistrationSchema, [
      {
        name: "messaging/registration/queue-consumer",
        comment: "A queue consumer with a selector and a prefetch of 10.",
        flags: [],
        init: { destination: ORDERS_QUEUE, selector: "region = 'EU' AND qty > 5", prefetch: 10 },
        result: "valid",
      },
      {
        name: "messaging/registration/shared-subscription",
        comment: "A shared subscription named \"billing\" on a wildcard topic.",
        flags: [],
        init: { destination: { kind: DestinationKind.TOPIC, name: "orders.>" }, prefetch: 1000, subscription: "billing" },
        result: "valid",
      },
    ]),
  ],
};

// ---------------------------------------------------------------------------------------------------
// Sealed datagrams: published test keys, receivers and senders.

const TEST_KEY_1 = Uint8Array.from({ length: 32 }, (_, i) => i);
const TEST_KEY_2 = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
const NOT_TEST_KEY_1 = Uint8Array.from({ length: 32 }, (_, i) => 0xff - i);
/** Test identities: Ed25519 key pairs from fixed private keys (signatures are deterministic). */
function testIdentity(first: number): IdentityKeys {
  const privateKey = Uint8Array.from({ length: 32 }, (_, i) => first + i);
  return { privateKey, publicKey: nodeCrypto.publicKeyOf(privateKey) };
}
const SIGNER_S = testIdentity(0x20);
const SIGNER_X = testIdentity(0x40);
const RECEIVER_R = testIdentity(0x60);
const NOW_MS = 1_700_000_000_000;

const secretOf = (keyId: number) => (keyId === 2 ? TEST_KEY_2 : TEST_KEY_1);
const b64 = encodeBase64;

function receiver(mode: SealMode, extra: Partial<SealedReceiver> = {}): SealedReceiver {
  return {
    mode,
    keys: [
      { id: 1, secret: b64(TEST_KEY_1) },
      { id: 2, secret: b64(TEST_KEY_2) },
    ],
    receiverId: b64(ID_B),
    nowMs: NOW_MS,
    incarnationSkewMs: DEFAULT_SECURITY_OPTIONS.incarnationSkewMs,
    replayWindow: DEFAULT_SECURITY_OPTIONS.replayWindow,
    ...extra,
  };
}

interface SealSpec {
  readonly counter: number | bigint;
  readonly keyId?: number;
  readonly mode?: SealMode | number;
  readonly secret?: Uint8Array;
  readonly receiverId?: Uint8Array;
  readonly signer?: IdentityKeys;
  /** Signs with this private key instead of the signer's own. */
  readonly signWith?: IdentityKeys;
}

/** Seals an envelope as its sender does (the header must be canonical: version, cluster, sender id, incarnation). */
function sealEnvelope(init: EnvelopeInit, spec: SealSpec): Uint8Array {
  const plain = encode(EnvelopeSchema, init);
  const incarnation = Number(init.incarnation ?? 0n);
  const header = encodeEnvelopeHeader(init.cluster ?? "", init.senderId ?? new Uint8Array(0), incarnation);
  if (bytesToHex(plain.subarray(0, header.length)) !== bytesToHex(header)) throw new Error("sealEnvelope: not a canonical header");
  const keyId = spec.keyId ?? 1;
  const mode: SealMode = typeof spec.mode === "string" ? spec.mode : "encrypt";
  const key = nodeCrypto.deriveKey(mode, spec.secret ?? secretOf(keyId), senderKeyInfo(mode, keyId, init.senderId!, incarnation, init.cluster!));
  const signer = spec.signer;
  const signingKey = signer === undefined ? undefined : nodeCrypto.signingKey((spec.signWith ?? signer).privateKey);
  const counter = typeof spec.counter === "bigint" ? Number(spec.counter) : spec.counter;
  const fields = { keyId, mode, counter, signerKey: signer?.publicKey ?? new Uint8Array(0), receiverId: spec.receiverId ?? new Uint8Array(0) };
  const sealed = sealDatagram(nodeCrypto, header, plain.subarray(header.length), fields, key, signingKey);
  if (typeof spec.mode !== "number" && typeof spec.counter !== "bigint") return sealed;
  // A mode or counter no sender writes: the seal's fields rewritten (the tag then no longer matches).
  const envelope = fromBinary(EnvelopeSchema, sealed);
  const seal = envelope.body.value as { mode: number; counter: bigint };
  if (typeof spec.mode === "number") seal.mode = spec.mode;
  if (typeof spec.counter === "bigint") seal.counter = spec.counter;
  return toBinary(EnvelopeSchema, envelope);
}

/** The sealed datagram with `edit` applied to its decoded form, encoded again. */
function editSealed(sealed: Uint8Array, edit: (seal: { keyId: number; counter: bigint; payload: Uint8Array }, envelope: { incarnation: bigint }) => void): Uint8Array {
  const envelope = fromBinary(EnvelopeSchema, sealed);
  edit(envelope.body.value as { keyId: number; counter: bigint; payload: Uint8Array }, envelope);
  return toBinary(EnvelopeSchema, envelope);
}

function flipped(bytes: Uint8Array, at: number): Uint8Array {
  const copy = bytes.slice();
  copy[at < 0 ? copy.length + at : at]! ^= 0x01;
  return copy;
}

/** A sealed payload whose opened body is given raw: the sender's steps, whatever the body holds. */
function sealRawBody(body: Uint8Array, counter: number): Uint8Array {
  const header = encodeEnvelopeHeader(CONTEXT_CLUSTER, ID_A, 7);
  const key = nodeCrypto.deriveKey("encrypt", TEST_KEY_1, senderKeyInfo("encrypt", 1, ID_A, 7, CONTEXT_CLUSTER));
  return sealDatagram(nodeCrypto, header, body, { keyId: 1, mode: "encrypt", counter, signerKey: new Uint8Array(0), receiverId: new Uint8Array(0) }, key, undefined);
}

const SEALED_BUNDLE = env({ case: "bundle", value: { frames: [{ kind: sample("heartbeat") }, { kind: sample("data") }] } });
const SEALED_ACK = env(sample("ack"));
const FIRST = sealEnvelope(SEALED_BUNDLE, { counter: 1 });
const TO_RECEIVER = sealEnvelope(SEALED_ACK, { counter: 2, receiverId: ID_B });
const fromSigner = (signer: IdentityKeys) => ({ senderId: signer.publicKey.slice(0, 16) });

const SEALED: AreaTable = {
  area: "sealed",
  groups: [
    {
      schema: EnvelopeSchema,
      security: receiver("encrypt"),
      cases: [
        { name: "sealed/aes-gcm/bundle", comment: "A bundle (a heartbeat and a message) to the group: counter 1, key 1.", flags: ["Sealed"], bytes: FIRST, result: "valid" },
        { name: "sealed/aes-gcm/one-message", comment: "A body of one message (a ping), as a member answers at once.", flags: ["Sealed"], bytes: sealEnvelope(env(sample("ping")), { counter: 3 }), result: "valid" },
        { name: "sealed/aes-gcm/to-the-receiver", comment: "A datagram to one member (an even counter) naming the receiver.", flags: ["Sealed"], bytes: TO_RECEIVER, result: "valid" },
        { name: "sealed/aes-gcm/second-key", comment: "Sealed with key 2 of the receiver's ring.", flags: ["Sealed"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 1, keyId: 2 }), result: "valid" },
        { name: "sealed/aes-gcm/reordered", comment: "Counter 5 after counter 9: late, but within the replay window and not seen.", flags: ["Sealed", "History"], history: [sealEnvelope(SEALED_BUNDLE, { counter: 9 })], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 5 }), result: "valid" },
        { name: "sealed/aes-gcm/new-incarnation", comment: "Incarnation 8 after incarnation 7: a new sender, counters start again.", flags: ["Sealed", "History"], history: [FIRST], bytes: sealEnvelope({ ...SEALED_BUNDLE, incarnation: 8n }, { counter: 1 }), result: "valid" },
        { name: "sealed/aes-gcm/largest-counter", comment: "Counter 2^53 - 1, the largest.", flags: ["Sealed", "EdgeValue"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: Number.MAX_SAFE_INTEGER }), result: "valid" },
        { name: "sealed/aes-gcm/wrong-secret", comment: "Sealed under key id 1 with another secret.", flags: ["Sealed"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 1, secret: NOT_TEST_KEY_1 }), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/aes-gcm/unknown-key", comment: "Sealed with key 3, which the receiver does not hold.", flags: ["Sealed"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 1, keyId: 3, secret: TEST_KEY_1 }), result: "invalid", error: "UNKNOWN_KEY" },
        { name: "sealed/aes-gcm/tampered-ciphertext", comment: "One bit of the ciphertext changed.", flags: ["Sealed", "Tampered"], bytes: flipped(FIRST, -20), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/aes-gcm/tampered-tag", comment: "One bit of the tag changed.", flags: ["Sealed", "Tampered"], bytes: flipped(FIRST, -1), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/aes-gcm/tampered-incarnation", comment: "The clear header's incarnation changed (it is associated data, and names the key).", flags: ["Sealed", "Tampered"], bytes: editSealed(FIRST, (_, envelope) => (envelope.incarnation = 6n)), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/aes-gcm/tampered-counter", comment: "The counter changed from 1 to 3 (associated data, and the nonce).", flags: ["Sealed", "Tampered"], bytes: editSealed(FIRST, (seal) => (seal.counter = 3n)), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/aes-gcm/truncated-tag", comment: "The payload one byte short, its length written to match.", flags: ["Sealed", "Tampered"], bytes: editSealed(FIRST, (seal) => (seal.payload = seal.payload.subarray(0, seal.payload.length - 1))), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/aes-gcm/payload-shorter-than-tag", comment: "A payload of 10 bytes: less than a tag.", flags: ["Sealed", "Tampered", "EdgeValue"], bytes: editSealed(FIRST, (seal) => (seal.payload = seal.payload.subarray(0, 10))), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/aes-gcm/truncated-datagram", comment: "The datagram cut inside the payload: no longer protobuf.", flags: ["Sealed", "Tampered", "Truncated"], bytes: FIRST.subarray(0, FIRST.length - 5), result: "invalid", error: "DECODE_FAILED" },
        { name: "sealed/aes-gcm/replayed", comment: "The same datagram twice.", flags: ["Sealed", "History"], history: [FIRST], bytes: FIRST, result: "invalid", error: "REPLAYED" },
        { name: "sealed/aes-gcm/replayed-to-one-member", comment: "A datagram to one member, twice.", flags: ["Sealed", "History"], history: [TO_RECEIVER], bytes: TO_RECEIVER, result: "invalid", error: "REPLAYED" },
        { name: "sealed/aes-gcm/too-old", comment: `Counter 1 after counter ${2 * 5000 + 1}: the group sequence moved more than ${DEFAULT_SECURITY_OPTIONS.replayWindow} past it.`, flags: ["Sealed", "History"], history: [sealEnvelope(SEALED_BUNDLE, { counter: 2 * 5000 + 1 })], bytes: FIRST, result: "invalid", error: "REPLAYED" },
        { name: "sealed/aes-gcm/older-incarnation", comment: "Incarnation 7 after incarnation 8 was heard.", flags: ["Sealed", "History"], history: [sealEnvelope({ ...SEALED_BUNDLE, incarnation: 8n }, { counter: 1 })], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 11 }), result: "invalid", error: "REPLAYED" },
        { name: "sealed/aes-gcm/to-another-member", comment: "A datagram to another member (its receiver id is not the receiver's).", flags: ["Sealed"], bytes: sealEnvelope(SEALED_ACK, { counter: 2, receiverId: ID_C }), result: "invalid", error: "REPLAYED" },
        { name: "sealed/aes-gcm/unsealed", comment: "A plain envelope to a receiver with keys.", flags: ["Sealed"], init: SEALED_BUNDLE, result: "invalid", error: "UNSEALED" },
        { name: "sealed/aes-gcm/hmac-sealed", comment: "Sealed with HMAC-SHA-256 to an AES-256-GCM receiver.", flags: ["Sealed"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 1, mode: "authenticate" }), result: "invalid", error: "WRONG_MODE" },
        { name: "sealed/aes-gcm/unknown-mode", comment: "A seal mode number this version does not define.", flags: ["Sealed", "UnknownEnum"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 1, mode: 7 }), result: "invalid", error: "WRONG_MODE" },
        { name: "sealed/aes-gcm/signed", comment: "Signed (insider mode) to a receiver without identities.", flags: ["Sealed", "Insider"], bytes: sealEnvelope(env(sample("ping"), fromSigner(SIGNER_S)), { counter: 1, signer: SIGNER_S }), result: "invalid", error: "WRONG_MODE" },
        { name: "sealed/aes-gcm/future-incarnation", comment: "An incarnation more than incarnationSkewMs ahead of the receiver's clock.", flags: ["Sealed", "EdgeValue"], bytes: sealEnvelope({ ...SEALED_BUNDLE, incarnation: BigInt(NOW_MS + DEFAULT_SECURITY_OPTIONS.incarnationSkewMs + 1) }, { counter: 1 }), result: "invalid", error: "FUTURE_INCARNATION" },
        { name: "sealed/aes-gcm/counter-zero", comment: "Counter 0: counters start at 1.", flags: ["Sealed", "EdgeValue"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 0n }), result: "invalid", error: "INVALID_FIELD" },
        { name: "sealed/aes-gcm/counter-2-pow-53", comment: "Counter 2^53, past the largest number an envelope carries.", flags: ["Sealed", "SafeInteger", "EdgeValue"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 2n ** 53n }), result: "invalid", error: "INVALID_FIELD" },
        { name: "sealed/aes-gcm/payload-not-last", comment: "An unknown field after the payload: the payload must end the datagram.", flags: ["Sealed", "UnknownField"], bytes: concat(FIRST.subarray(0, FIRST.length), varintField(9, 1)), result: "invalid", error: "INVALID_FIELD" },
        { name: "sealed/aes-gcm/wrong-cluster", comment: "Sealed for another cluster: refused before the seal is looked at.", flags: ["Sealed", "CheckOrder"], bytes: sealEnvelope({ ...SEALED_BUNDLE, cluster: "elsewhere" }, { counter: 1, secret: NOT_TEST_KEY_1 }), result: "invalid", error: "WRONG_CLUSTER" },
        { name: "sealed/aes-gcm/header-inside", comment: "The opened payload holds a sender id field before the body: a seal holds one body field only.", flags: ["Sealed"], bytes: sealRawBody(concat(lenField(4, ID_C), encode(EnvelopeSchema, { body: sample("ping") })), 1), result: "invalid", error: "INVALID_FIELD" },
        { name: "sealed/aes-gcm/seal-inside", comment: "The opened payload is itself a seal.", flags: ["Sealed"], bytes: sealRawBody(FIRST.subarray(encodeEnvelopeHeader(CONTEXT_CLUSTER, ID_A, 7).length), 1), result: "invalid", error: "INVALID_FIELD" },
        { name: "sealed/aes-gcm/bad-data-inside", comment: "The opened envelope breaks a protocol rule (a fragment index past its count): checked after opening.", flags: ["Sealed", "Fragmentation"], bytes: sealEnvelope(data({ seq: 1n, addressing: Addressing.TOPIC, destination: "prices", fragmentIndex: 3, fragmentCount: 2 }), { counter: 1 }), result: "invalid", error: "INVALID_FIELD" },
      ],
    },
    {
      schema: EnvelopeSchema,
      security: receiver("authenticate"),
      cases: [
        { name: "sealed/hmac/bundle", comment: "HMAC-SHA-256: the body travels readable, then a 16-byte tag.", flags: ["Sealed"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 1, mode: "authenticate" }), result: "valid" },
        { name: "sealed/hmac/to-the-receiver", comment: "A datagram to one member naming the receiver.", flags: ["Sealed"], bytes: sealEnvelope(SEALED_ACK, { counter: 2, mode: "authenticate", receiverId: ID_B }), result: "valid" },
        { name: "sealed/hmac/tampered-body", comment: "One bit of the readable body changed.", flags: ["Sealed", "Tampered"], bytes: flipped(sealEnvelope(SEALED_BUNDLE, { counter: 1, mode: "authenticate" }), -30), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/hmac/truncated-tag", comment: "The payload one byte short, its length written to match.", flags: ["Sealed", "Tampered"], bytes: editSealed(sealEnvelope(SEALED_BUNDLE, { counter: 1, mode: "authenticate" }), (seal) => (seal.payload = seal.payload.subarray(0, seal.payload.length - 1))), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/hmac/wrong-secret", comment: "Sealed under key id 1 with another secret.", flags: ["Sealed"], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 1, mode: "authenticate", secret: NOT_TEST_KEY_1 }), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/hmac/replayed", comment: "The same datagram twice.", flags: ["Sealed", "History"], history: [sealEnvelope(SEALED_BUNDLE, { counter: 1, mode: "authenticate" })], bytes: sealEnvelope(SEALED_BUNDLE, { counter: 1, mode: "authenticate" }), result: "invalid", error: "REPLAYED" },
        { name: "sealed/hmac/aes-sealed", comment: "Sealed with AES-256-GCM to an HMAC-SHA-256 receiver.", flags: ["Sealed"], bytes: FIRST, result: "invalid", error: "WRONG_MODE" },
      ],
    },
    {
      schema: EnvelopeSchema,
      security: receiver("encrypt", {
        receiverId: b64(RECEIVER_R.publicKey.slice(0, 16)),
        identity: { publicKey: b64(RECEIVER_R.publicKey), privateKey: b64(RECEIVER_R.privateKey) },
        trustedMembers: [b64(SIGNER_S.publicKey), b64(RECEIVER_R.publicKey)],
        signers: [SIGNER_S, SIGNER_X].map((signer) => ({ publicKey: b64(signer.publicKey), privateKey: b64(signer.privateKey) })),
      }),
      cases: [
        { name: "sealed/insider/signed", comment: "Signed by its sender S, whose public key's first 16 bytes are its id.", flags: ["Sealed", "Insider"], bytes: sealEnvelope(env(sample("stateRequest"), fromSigner(SIGNER_S)), { counter: 1, signer: SIGNER_S }), result: "valid" },
        { name: "sealed/insider/not-the-senders-key", comment: "S's key on a datagram in another member's name.", flags: ["Sealed", "Insider"], bytes: sealEnvelope(env(sample("stateRequest")), { counter: 1, signer: SIGNER_S }), result: "invalid", error: "UNTRUSTED_SIGNER" },
        { name: "sealed/insider/untrusted", comment: "Signed by X, who is not among the trusted members.", flags: ["Sealed", "Insider"], bytes: sealEnvelope(env(sample("ping"), fromSigner(SIGNER_X)), { counter: 1, signer: SIGNER_X }), result: "invalid", error: "UNTRUSTED_SIGNER" },
        { name: "sealed/insider/signed-by-another", comment: "S's id and key, signed with X's private key (X holds the cluster key).", flags: ["Sealed", "Insider"], bytes: sealEnvelope(env(sample("ping"), fromSigner(SIGNER_S)), { counter: 1, signer: SIGNER_S, signWith: SIGNER_X }), result: "invalid", error: "AUTH_FAILED" },
        { name: "sealed/insider/unsigned", comment: "Not signed, to an insider-mode receiver.", flags: ["Sealed", "Insider"], bytes: sealEnvelope(env(sample("ping"), fromSigner(SIGNER_S)), { counter: 1 }), result: "invalid", error: "WRONG_MODE" },
      ],
    },
    group(KeyUpdateSchema, [
      { name: "sealed/key-update/use", comment: "Use key 2 from now on.", flags: [], init: { nonce: 77n, action: KeyAction.USE, keyId: 2 }, result: "valid" },
      { name: "sealed/key-update/retire", comment: "Forget key 1.", flags: [], init: { nonce: 78n, action: KeyAction.RETIRE, keyId: 1 }, result: "valid" },
    ]),
    group(KeyUpdateAckSchema, [
      { name: "sealed/key-update-ack/refused", comment: "A peer that could not do what was asked, saying why.", flags: [], init: { nonce: 78n, refusal: "key 1 is this member's primary key" }, result: "valid" },
    ]),
  ],
};

// ---------------------------------------------------------------------------------------------------
// Frames between bridged sites: not datagrams, the payloads of NATS messages and of "$relay" group messages.

const SITE_EU = { site: "eu", id: ID_A, incarnation: 7n, name: "alpha" };
const SITE_US = { site: "us", id: ID_B, incarnation: 2n, name: "beta" };
const SITE_US_GATEWAY = { site: "us", id: ID_C, incarnation: 1n, name: "gamma" };
const TOPIC_MESSAGE = { origin: SITE_EU, stream: RelayStream.TOPIC, seq: 5n, floor: 3n, destination: "prices", format: PayloadFormat.BLAZE_MESSAGE, payload: utf8("bid=12.5") };
const DIRECT_MESSAGE = { origin: SITE_EU, stream: RelayStream.DIRECT, seq: 1n, floor: 1n, destination: "orders", target: SITE_US, requestId: 9n, payload: utf8("ping") };
const ANNOUNCE_US = { site: "us", gateway: SITE_US_GATEWAY, members: [SITE_US_GATEWAY, SITE_US], intervalMs: 1000n };

const MAP_ENTRY = { key: "orders/17", time: 1_764_770_000_000n, site: "eu", format: PayloadFormat.UNSPECIFIED, value: utf8("open") };
const MAP_TOMBSTONE = { key: "orders/18", time: 1_764_770_000_001n, site: "us", removed: true };
const DIGEST_HASHES = Array.from({ length: 128 }, (_, i) => (i * 0x9e3779b1) >>> 0);

type RelayInit = MessageInitShape<typeof RelayFrameSchema>;

function relayCase(name: string, comment: string, init: RelayInit, flags: Flag[] = []): Case<typeof RelayFrameSchema> {
  return { name: `relay/${name}`, comment, flags: ["RelayRules", ...flags], init, result: "valid" };
}

function refusedRelay(name: string, comment: string, init: RelayInit | Uint8Array, error: DropReason, flags: Flag[] = []): Case<typeof RelayFrameSchema> {
  const body = init instanceof Uint8Array ? { bytes: init } : { init };
  return { name: `relay/invalid/${name}`, comment, flags: ["RelayRules", ...flags], ...body, result: "invalid", error };
}

const RELAY: AreaTable = {
  area: "relay",
  groups: [
    group(RelayFrameSchema, [
      relayCase("message/topic", "A message on a relayed topic: the 5th of its origin's topic stream, which still holds it from the 3rd.", { version: 1, kind: { case: "message", value: TOPIC_MESSAGE } }),
      relayCase("message/topic-resend", "A topic message an origin sends its gateway again, for two sites only.", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, sites: ["us", "ap-south"] } } }),
      relayCase("message/direct-request", "A request to a member of another site: a direct stream's first message, with the origin's call id.", { version: 1, kind: { case: "message", value: DIRECT_MESSAGE } }),
      relayCase("message/direct-reply", "The reply, in the direct stream from the target back to the origin.", {
        version: 1,
        kind: { case: "message", value: { ...DIRECT_MESSAGE, origin: SITE_US, target: SITE_EU, destination: "", reply: true } },
      }),
      relayCase("message/max", "Numbers at the largest an envelope carries (2^53 - 1).", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, seq: WIRE_MAX, floor: WIRE_MAX } } }, ["EdgeValue"]),
      relayCase("ack", "A site's gateway acknowledges a topic stream and a direct stream of an origin of the other site.", {
        version: 1,
        kind: {
          case: "ack",
          value: {
            site: "us",
            gatewayId: ID_C,
            positions: [
              { origin: SITE_EU, stream: RelayStream.TOPIC, seq: 41n },
              { origin: SITE_EU, stream: RelayStream.DIRECT, targetId: ID_B, seq: 3n },
            ],
          },
        },
      }),
      relayCase("report/complete", "A member's complete report to a new gateway: every stream it follows.", {
        version: 1,
        kind: { case: "report", value: { positions: [{ origin: SITE_EU, stream: RelayStream.TOPIC, seq: 40n }], complete: true } },
      }),
      relayCase("refusal", "A gateway refuses a direct message for a member its site does not have.", {
        version: 1,
        kind: { case: "refusal", value: { site: "us", position: { origin: SITE_EU, stream: RelayStream.DIRECT, targetId: ID_C, seq: 1n } } },
      }),
      relayCase("site-announce", "A gateway announces its site: itself and the site's members.", { version: 1, kind: { case: "siteAnnounce", value: ANNOUNCE_US } }),
      relayCase("site-table", "A gateway tells its members the other sites that are up.", { version: 1, kind: { case: "siteTable", value: { sites: [ANNOUNCE_US] } } }),
      relayCase("map-entries", "A site's gateway sends another site entries of its map: a write and a removal (a tombstone, no value), each with its stamp.", {
        version: 1,
        kind: { case: "mapEntries", value: { site: "eu", entries: [MAP_ENTRY, MAP_TOMBSTONE] } },
      }),
      relayCase("map-digest", "A digest of a site's map: two hashes for each of its 64 buckets.", { version: 1, kind: { case: "mapDigest", value: { site: "us", hashes: DIGEST_HASHES } } }),
      relayCase("map-digest/reply", "The digest a site answers a digest with.", { version: 1, kind: { case: "mapDigest", value: { site: "eu", hashes: DIGEST_HASHES, reply: true } } }),
      refusedRelay("no-version", "A frame without a version.", { kind: { case: "siteTable", value: {} } }, "MISSING_FIELD"),
      refusedRelay("version-2", "A frame of a bridge protocol version this one does not speak.", { version: 2, kind: { case: "siteTable", value: {} } }, "UNSUPPORTED_VERSION"),
      refusedRelay("no-kind", "A frame with a version and nothing else.", { version: 1 }, "MISSING_FIELD"),
      refusedRelay("seq-unsafe", "A message numbered past 2^53 - 1.", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, seq: WIRE_MAX + 1n } } }, "INVALID_FIELD", ["SafeInteger"]),
      refusedRelay("seq-zero", "A message numbered 0 (streams count from 1).", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, seq: 0n, floor: 0n } } }, "INVALID_FIELD", ["EdgeValue"]),
      refusedRelay("floor-above-seq", "A message whose origin claims to hold nothing below a number above its own.", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, floor: 6n } } }, "INVALID_FIELD"),
      refusedRelay("no-stream", "A message of no stream kind.", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, stream: RelayStream.UNSPECIFIED } } }, "INVALID_FIELD"),
      refusedRelay("direct-without-target", "A direct message that names no target.", { version: 1, kind: { case: "message", value: { ...DIRECT_MESSAGE, target: undefined } } }, "MISSING_FIELD"),
      refusedRelay("no-origin", "A message without its origin.", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, origin: undefined } } }, "MISSING_FIELD"),
      refusedRelay("short-member-id", "An origin whose member id has 3 bytes.", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, origin: { ...SITE_EU, id: Uint8Array.of(1, 2, 3) } } } }, "INVALID_FIELD"),
      refusedRelay("bad-site-name", "A site name that is no NATS subject token.", { version: 1, kind: { case: "message", value: { ...TOPIC_MESSAGE, origin: { ...SITE_EU, site: "eu.west" } } } }, "INVALID_FIELD"),
      refusedRelay("announce-foreign-member", "An announcement listing a member of another site.", { version: 1, kind: { case: "siteAnnounce", value: { ...ANNOUNCE_US, members: [SITE_EU] } } }, "INVALID_FIELD"),
      refusedRelay("map-entry-time-zero", "A copied entry without a stamp time.", { version: 1, kind: { case: "mapEntries", value: { site: "eu", entries: [{ ...MAP_ENTRY, time: 0n }] } } }, "INVALID_FIELD", ["EdgeValue"]),
      refusedRelay("map-entry-bad-site", "A copied entry stamped with no site name.", { version: 1, kind: { case: "mapEntries", value: { site: "eu", entries: [{ ...MAP_ENTRY, site: "" }] } } }, "INVALID_FIELD"),
      refusedRelay("map-tombstone-value", "A removal that carries a value.", { version: 1, kind: { case: "mapEntries", value: { site: "us", entries: [{ ...MAP_TOMBSTONE, value: utf8("x") }] } } }, "INVALID_FIELD"),
      refusedRelay("map-entry-long-key", "A copied entry whose key is over 255 UTF-8 bytes.", { version: 1, kind: { case: "mapEntries", value: { site: "eu", entries: [{ ...MAP_ENTRY, key: "k".repeat(256) }] } } }, "OVERSIZE"),
      refusedRelay("map-digest-short", "A digest of 63 buckets.", { version: 1, kind: { case: "mapDigest", value: { site: "us", hashes: DIGEST_HASHES.slice(0, 126) } } }, "INVALID_FIELD"),
      refusedRelay("truncated", "A frame cut inside its message.", encode(RelayFrameSchema, { version: 1, kind: { case: "message", value: TOPIC_MESSAGE } }).slice(0, 12), "DECODE_FAILED", ["Truncated"]),
    ]),
  ],
};

export const AREAS: readonly AreaTable[] = [ENVELOPE, BUNDLE, MULTICAST, MEMBERSHIP, STATE_MAP, LOCKS, TOTEM, FEC, DIAGNOSTICS, MESSAGE, MESSAGING, INVALID, SEALED, RELAY];

// ---------------------------------------------------------------------------------------------------
// From tables to files.

/** Canonical ProtoJSON, spelled out: protobuf-es's defaults. */
const PROTO_JSON = { alwaysEmitImplicit: false, enumAsInteger: false, useProtoFieldName: false } as const;

/**
 * Flags of bytes whose re-encoding depends on the implementation: this one keeps unknown fields and NaN
 * payload bits, others may drop them. Such cases declare roundtrip false even where this one reproduces
 * the bytes.
 */
const ENCODING_MAY_DIFFER: readonly Flag[] = ["UnknownField", "FloatSpecial"];

/** Every vector file, by file name, as the exact text to commit. Throws if a table entry is wrong. */
export function generateVectorFiles(): Map<string, string> {
  const version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
    .version;
  const names = new Set<string>();
  const files = new Map<string, string>();
  for (const table of AREAS) {
    const used = new Set<Flag>();
    let tcId = 0;
    const testGroups: TestGroup[] = table.groups.map(({ schema, security, cases }) => ({
      messageType: schema.typeName,
      ...(security === undefined ? {} : { security }),
      tests: cases.map((c) => {
        if (!c.name.startsWith(`${table.area}/`)) throw new Error(`${c.name}: not under ${table.area}/`);
        if (names.has(c.name)) throw new Error(`${c.name}: duplicate name`);
        names.add(c.name);
        // Every Envelope vector is checked as the receiver of CONTEXT_CLUSTER would check it.
        const flags: Flag[] = schema.typeName === EnvelopeSchema.typeName ? ["ReceiverContext", ...c.flags] : c.flags;
        flags.forEach((flag) => used.add(flag));
        return buildTest(++tcId, schema, security, c, flags);
      }),
    }));
    const notes = Object.fromEntries(
      [...used].sort().map((flag) => [flag, { description: NOTES[flag] }]),
    );
    const file: VectorFile = {
      schema: SCHEMA_FILE,
      protocol: PROTOCOL_NAME,
      protoPackage: EnvelopeSchema.file.proto.package,
      generator: { name: GENERATOR_NAME, version },
      numberOfTests: tcId,
      notes,
      testGroups,
    };
    files.set(`${table.area}.json`, `${canonicalJson(file)}\n`);
  }
  return files;
}

/** Builds one test, asserting that this implementation does what the case declares. */
function buildTest(tcId: number, schema: DescMessage, security: SealedReceiver | undefined, c: Case<DescMessage>, flags: Flag[]): VectorTest {
  const fail = (why: string): never => {
    throw new Error(`${c.name}: ${why}`);
  };
  const bytes = "bytes" in c ? c.bytes : encode(schema, c.init);
  const history = c.history?.map(bytesToHex);
  if ((history !== undefined) !== flags.includes("History")) fail("flag History exactly when the test has a history");
  const hex = bytesToHex(bytes);
  const outcome = outcomeOf(schema, security, { hex, ...(history === undefined ? {} : { history }) });
  const head = { tcId, name: c.name, comment: c.comment, flags, hex, ...(history === undefined ? {} : { history }), result: c.result };
  if (c.result === "invalid") {
    if (outcome.accepted) fail(`declared invalid (${c.error}) but accepted`);
    else if (outcome.error !== c.error) fail(`declared ${c.error} but refused with ${outcome.error}: ${outcome.detail}`);
    return { ...head, error: c.error };
  }
  if (!outcome.accepted) return fail(`declared ${c.result} but refused with ${outcome.error}: ${outcome.detail}`);
  const message = outcome.message;
  const expected = toJson(schema, message, PROTO_JSON) as VectorTest["expected"];
  if (c.result === "acceptable") return { ...head, expected };

  const reproduces = bytesToHex(reencode(schema, security, message, head.hex)) === head.hex;
  const severalEntries = hasMapWithSeveralEntries(reflect(schema, message));
  if (severalEntries !== flags.includes("MapOrder")) fail("flag MapOrder exactly when a map has several entries");
  const roundtrip = c.roundtrip !== false && !severalEntries;
  if (roundtrip && !reproduces) fail("re-encoding differs: declare roundtrip: false with a flag saying why");
  if (c.roundtrip === false && reproduces && !flags.some((flag) => ENCODING_MAY_DIFFER.includes(flag))) {
    fail("declared roundtrip: false but re-encoding reproduces the bytes");
  }
  return { ...head, expected, roundtrip };
}

function hasMapWithSeveralEntries(message: ReflectMessage): boolean {
  return message.fields.some((field) => {
    if (!message.isSet(field)) return false;
    switch (field.fieldKind) {
      case "map": {
        const map = message.get(field);
        return map.size > 1 || [...map.values()].some((v) => isReflectMessage(v) && hasMapWithSeveralEntries(v));
      }
      case "list":
        return [...message.get(field)].some((v) => isReflectMessage(v) && hasMapWithSeveralEntries(v));
      case "message":
        return hasMapWithSeveralEntries(message.get(field));
      default:
        return false;
    }
  });
}

/**
 * JSON with 2-space indentation and keys in insertion order (the order of vectors.md's tables; ProtoJSON
 * in field-number order). Unlike JSON.stringify it keeps negative zero as `-0`, which ProtoJSON needs
 * for float and double values.
 */
export function canonicalJson(value: unknown, indent = ""): string {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`non-finite number ${value} has no JSON form`);
    return Object.is(value, -0) ? "-0" : JSON.stringify(value);
  }
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[\n${value.map((item) => inner + canonicalJson(item, inner)).join(",\n")}\n${indent}]`;
  }
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return "{}";
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${canonicalJson(v, inner)}`).join(",\n")}\n${indent}}`;
}

/** File names in `dir` whose content differs from `files`, including extra and missing `.json` files. */
export function differingFiles(files: ReadonlyMap<string, string>, dir: string = VECTORS_DIR): string[] {
  const onDisk = existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith(".json")) : [];
  const names = new Set([...files.keys(), ...onDisk]);
  return [...names]
    .sort()
    .filter((name) => !existsSync(join(dir, name)) || readFileSync(join(dir, name), "utf8") !== files.get(name));
}

function main(args: readonly string[]): number {
  const files = generateVectorFiles();
  if (args.includes("--check")) {
    const differing = differingFiles(files);
    for (const name of differing) console.error(`conformance/vectors/v1/${name} differs from a fresh generation`);
    if (differing.length > 0) console.error("run: npx tsx conformance/generate.ts");
    return differing.length === 0 ? 0 : 1;
  }
  mkdirSync(VECTORS_DIR, { recursive: true });
  for (const name of readdirSync(VECTORS_DIR)) {
    if (name.endsWith(".json") && !files.has(name)) rmSync(join(VECTORS_DIR, name));
  }
  for (const [name, text] of files) {
    writeFileSync(join(VECTORS_DIR, name), text);
    const count = (JSON.parse(text) as VectorFile).numberOfTests;
    console.log(`conformance/vectors/v1/${name}: ${count} tests`);
  }
  return 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main(process.argv.slice(2));
}
