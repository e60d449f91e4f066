// The TypeScript port's conformance runner: applies the pass rules of the vector files
// (conformance/README.md) to this implementation's decoder and protocol validation.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type DescField,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonObject,
  type Message,
  toBinary,
} from "@bufbuild/protobuf";
import { isReflectMessage, reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { type Envelope, EnvelopeSchema } from "../gen/activeblaze/v1/envelope_pb.ts";
import { RelayFrameSchema } from "../gen/activeblaze/v1/relay_pb.ts";
import { nodeCrypto } from "../src/adapters/node-crypto.ts";
import { decodeRelay } from "../src/relay/relay-frames.ts";
import { DatagramGuard, sealDatagram, senderKeyInfo } from "../src/security/datagram-guard.ts";
import { KeyRing } from "../src/security/keyring.ts";
import { decodeBase64, securityOptionsSchema } from "../src/security/options.ts";
import { readSealed } from "../src/security/sealed-datagram.ts";
import { decodeEnvelope, type EnvelopeContext } from "../src/wire/codec.ts";
import type { DropReason } from "../src/wire/drop-reason.ts";
import { ClearHeaderReader, encodeEnvelopeHeader, plainEnvelope } from "../src/wire/frames.ts";
import { MAX_DATAGRAM_BYTES } from "../src/wire/limits.ts";
import { wireRegistry } from "../src/wire/registry.ts";

/** The receiver every Envelope vector is checked against. */
export const CONTEXT_CLUSTER = "conformance";
export const RECEIVER_CONTEXT: EnvelopeContext = { cluster: CONTEXT_CLUSTER };

export const VECTORS_DIR = fileURLToPath(new URL("./vectors/v1/", import.meta.url));
export const FAILING_DIR = fileURLToPath(new URL("./failing/", import.meta.url));
export const PORT = "typescript";

export type TestResult = "valid" | "invalid" | "acceptable";

/** One test of a vector file, with keys in the file's order. */
export interface VectorTest {
  tcId: number;
  name: string;
  comment: string;
  flags: string[];
  hex: string;
  result: TestResult;
  expected?: JsonObject;
  roundtrip?: boolean;
  error?: DropReason;
  /** Sealed datagrams only: datagrams (hex) the receiver opened before this one, in order. */
  history?: string[];
}

/** Byte strings in a receiver's description are standard base64. */
export interface SealedReceiver {
  /** "encrypt" (AES-256-GCM) or "authenticate" (HMAC-SHA-256). */
  mode: "encrypt" | "authenticate";
  /** The receiver's keyring. */
  keys: Array<{ id: number; secret: string }>;
  /** The receiver's member id. */
  receiverId: string;
  /** The receiver's wall clock, in ms since the Unix epoch. */
  nowMs: number;
  incarnationSkewMs: number;
  replayWindow: number;
  /** Insider mode: the receiver's own Ed25519 key pair. */
  identity?: { publicKey: string; privateKey: string };
  /** Insider mode: the only public keys allowed to speak. */
  trustedMembers?: string[];
  /** The senders' published test identities, to seal `expected` again (roundtrip). */
  signers?: Array<{ publicKey: string; privateKey: string }>;
}

export interface TestGroup {
  messageType: string;
  /** For sealed datagrams: the receiver that opens them (see conformance/README.md). */
  security?: SealedReceiver;
  tests: VectorTest[];
}

export interface VectorFile {
  schema: string;
  protocol: string;
  protoPackage: string;
  generator: { name: string; version: string };
  numberOfTests: number;
  notes: Record<string, { description: string }>;
  testGroups: TestGroup[];
}

/** What this implementation does with some bytes: accepts them as a message, or refuses them. */
export type Outcome =
  | { readonly accepted: true; readonly message: Message }
  | { readonly accepted: false; readonly error: DropReason; readonly detail: string };

/** Looks a message type up by its fully qualified name, e.g. `activeblaze.v1.Envelope`. */
export function messageSchema(typeName: string): DescMessage {
  const schema = wireRegistry.getMessage(typeName);
  if (schema === undefined) throw new Error(`unknown message type ${typeName}`);
  return schema;
}

/**
 * Decodes bytes as `schema`. An Envelope goes through the receiver's full path (size limit, decoding,
 * protocol checks with RECEIVER_CONTEXT), a RelayFrame through the bridge's checks; any other type is
 * only decoded, so it can fail only with DECODE_FAILED.
 */
export function decodeAs(schema: DescMessage, bytes: Uint8Array): Outcome {
  if (schema.typeName === EnvelopeSchema.typeName) {
    const decoded = decodeEnvelope(bytes, RECEIVER_CONTEXT);
    return decoded.ok
      ? { accepted: true, message: decoded.envelope }
      : { accepted: false, error: decoded.reason, detail: decoded.detail };
  }
  if (schema.typeName === RelayFrameSchema.typeName) {
    // A frame between bridged sites: the bridge's checks (relay-frames.ts), with no size limit of its own.
    const decoded = decodeRelay(bytes, Number.POSITIVE_INFINITY);
    if (!decoded.ok) return { accepted: false, error: decoded.reason, detail: decoded.detail };
  }
  try {
    return { accepted: true, message: fromBinary(schema, bytes) };
  } catch (error) {
    return { accepted: false, error: "DECODE_FAILED", detail: error instanceof Error ? error.message : String(error) };
  }
}

const bytesOf = (base64: string): Uint8Array => decodeBase64(base64)!;

/**
 * Opens a sealed datagram as `receiver` does after opening `history` (each must open), then applies
 * the protocol's checks to the opened envelope: the outcome is the opened envelope, or the first refusal.
 */
export function openAs(receiver: SealedReceiver, history: readonly Uint8Array[], bytes: Uint8Array): Outcome {
  const options = securityOptionsSchema.parse({
    keys: receiver.keys.map((key) => ({ id: key.id, secret: key.secret })),
    mode: receiver.mode,
    replayWindow: receiver.replayWindow,
    incarnationSkewMs: receiver.incarnationSkewMs,
    provider: nodeCrypto,
    ...(receiver.identity === undefined ? {} : { identity: receiver.identity }),
    ...(receiver.trustedMembers === undefined ? {} : { trustedMembers: receiver.trustedMembers }),
  });
  let refusal: { reason: DropReason; detail: string } | undefined;
  let opened: Uint8Array | undefined;
  const guard = new DatagramGuard(
    options,
    new KeyRing(options.keys, options.primary),
    nodeCrypto,
    { cluster: CONTEXT_CLUSTER, memberId: bytesOf(receiver.receiverId), maxDatagramBytes: MAX_DATAGRAM_BYTES },
    {
      refused: (reason, detail) => (refusal = { reason, detail }),
      fault: (error) => {
        throw error;
      },
      own: () => {
        throw new Error("a datagram in the receiver's own name");
      },
    },
    () => receiver.nowMs,
  );
  for (const [i, earlier] of history.entries()) {
    guard.open(earlier, () => undefined);
    if (refusal !== undefined) throw new Error(`history[${i}] does not open: ${refusal.reason}: ${refusal.detail}`);
  }
  guard.open(bytes, (split) => (opened = plainEnvelope(split.header, split.body)));
  if (refusal !== undefined) return { accepted: false, error: refusal.reason, detail: refusal.detail };
  const decoded = decodeEnvelope(opened!, RECEIVER_CONTEXT);
  return decoded.ok ? { accepted: true, message: decoded.envelope } : { accepted: false, error: decoded.reason, detail: decoded.detail };
}

/**
 * Seals an opened envelope again as its sender did `sealed` — same key id, counter, receiver id and
 * signer — with `receiver`'s keys and the published signers: what a valid sealed test's roundtrip compares.
 */
export function resealAs(receiver: SealedReceiver, opened: Message, sealed: Uint8Array): Uint8Array {
  const read = readSealed(sealed, RECEIVER_CONTEXT, new ClearHeaderReader(CONTEXT_CLUSTER));
  if (!read.ok) throw new Error(`not a sealed datagram: ${read.reason}`);
  const { keyId, counter, receiverId, signerKey, mode } = read.sealed;
  const envelope = opened as Envelope;
  const plain = toBinary(EnvelopeSchema, envelope);
  const header = encodeEnvelopeHeader(envelope.cluster, envelope.senderId, Number(envelope.incarnation));
  const secret = bytesOf(receiver.keys.find((key) => key.id === keyId)!.secret);
  const key = nodeCrypto.deriveKey(mode!, secret, senderKeyInfo(mode!, keyId, envelope.senderId, Number(envelope.incarnation), envelope.cluster));
  const signer = receiver.signers?.find((s) => sameBytes(bytesOf(s.publicKey), signerKey));
  const signingKey = signerKey.length === 0 ? undefined : nodeCrypto.signingKey(bytesOf(signer!.privateKey));
  return sealDatagram(nodeCrypto, header, plain.subarray(header.length), { keyId, mode: mode!, counter, signerKey, receiverId }, key, signingKey);
}

/**
 * Protobuf message equality as the vectors define it: field by field, unknown fields ignored, and
 * floating-point values compared by identity rather than IEEE `==`, so NaN equals NaN and -0 differs
 * from +0 (protobuf-es `equals` follows IEEE, which would fail every NaN vector).
 */
export function sameMessage(schema: DescMessage, a: Message, b: Message): boolean {
  return sameReflect(reflect(schema, a), reflect(schema, b));
}

function sameReflect(a: ReflectMessage, b: ReflectMessage): boolean {
  for (const field of a.fields) {
    const set = a.isSet(field);
    if (set !== b.isSet(field)) return false;
    if (set && !sameField(field, a.get(field), b.get(field))) return false;
  }
  return true;
}

function sameField(field: DescField, a: unknown, b: unknown): boolean {
  switch (field.fieldKind) {
    case "list": {
      const listA = [...(a as Iterable<unknown>)];
      const listB = [...(b as Iterable<unknown>)];
      return listA.length === listB.length && listA.every((item, i) => sameValue(item, listB[i]));
    }
    case "map": {
      const mapA = a as ReadonlyMap<unknown, unknown>;
      const mapB = b as ReadonlyMap<unknown, unknown>;
      if (mapA.size !== mapB.size) return false;
      for (const [key, value] of mapA) {
        if (!mapB.has(key) || !sameValue(value, mapB.get(key))) return false;
      }
      return true;
    }
    default:
      return sameValue(a, b);
  }
}

function sameValue(a: unknown, b: unknown): boolean {
  if (isReflectMessage(a) && isReflectMessage(b)) return sameReflect(a, b);
  if (a instanceof Uint8Array && b instanceof Uint8Array) return sameBytes(a, b);
  return Object.is(a, b);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

export function hexToBytes(hex: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new Error("hex must be lowercase pairs of hex digits");
  return Uint8Array.from(Buffer.from(hex, "hex"));
}

export function bytesToHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

export interface RunOptions {
  /** Strict mode (the default) also requires an invalid test's refusal code to match `error`. */
  readonly strict?: boolean;
  /** Test names this port is known to fail; default: conformance/failing/typescript.txt. */
  readonly failing?: ReadonlySet<string>;
}

/**
 * pass / fail: the test passed or failed and is not in the failing list.
 * expected-failure: it failed and is listed. unexpected-pass: it passed but is listed (the list is stale).
 */
export type TestStatus = "pass" | "fail" | "expected-failure" | "unexpected-pass";

export interface TestReport {
  readonly tcId: number;
  readonly name: string;
  readonly status: TestStatus;
  /** Why the test failed; empty when it passed. */
  readonly detail: string;
}

export interface FileReport {
  readonly file: string;
  readonly tests: readonly TestReport[];
  /** True when no test has status `fail` or `unexpected-pass`. */
  readonly ok: boolean;
}

/** Runs every test of one vector file against this implementation. */
export function runVectorFile(path: string, options: RunOptions = {}): FileReport {
  const strict = options.strict ?? true;
  const failing = options.failing ?? readFailingList(PORT);
  const file = JSON.parse(readFileSync(path, "utf8")) as VectorFile;
  const tests: TestReport[] = [];
  for (const group of file.testGroups) {
    const schema = messageSchema(group.messageType);
    for (const test of group.tests) {
      const detail = checkTest(schema, group.security, test, strict);
      const passed = detail === "";
      const listed = failing.has(test.name);
      const status: TestStatus = listed ? (passed ? "unexpected-pass" : "expected-failure") : passed ? "pass" : "fail";
      tests.push({ tcId: test.tcId, name: test.name, status, detail });
    }
  }
  return { file: path, tests, ok: tests.every((t) => t.status === "pass" || t.status === "expected-failure") };
}

export interface DirectoryReport {
  readonly files: readonly FileReport[];
  /** Names in the failing list that match no test of any file. */
  readonly staleNames: readonly string[];
  readonly ok: boolean;
}

/** Runs every `*.json` vector file of a directory; a failing-list name found in no file is stale. */
export function runVectorDirectory(dir: string = VECTORS_DIR, options: RunOptions = {}): DirectoryReport {
  const failing = options.failing ?? readFailingList(PORT);
  const files = vectorFileNames(dir).map((name) => runVectorFile(join(dir, name), { ...options, failing }));
  const seen = new Set(files.flatMap((file) => file.tests.map((test) => test.name)));
  const staleNames = [...failing].filter((name) => !seen.has(name));
  return { files, staleNames, ok: staleNames.length === 0 && files.every((file) => file.ok) };
}

export function vectorFileNames(dir: string = VECTORS_DIR): string[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith(".json"))
    .sort();
}

/** A port's failing list: one test name a line; blank lines and lines starting with `#` are ignored. */
export function readFailingList(port: string): Set<string> {
  const text = readFileSync(join(FAILING_DIR, `${port}.txt`), "utf8");
  return new Set(
    text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#")),
  );
}

/** What a test's bytes come to: decoded (and checked) as its type, or opened by its group's receiver. */
export function outcomeOf(schema: DescMessage, security: SealedReceiver | undefined, test: Pick<VectorTest, "hex" | "history">): Outcome {
  const bytes = hexToBytes(test.hex);
  return security === undefined ? decodeAs(schema, bytes) : openAs(security, (test.history ?? []).map(hexToBytes), bytes);
}

/** The bytes re-encoding a test's decoded message gives: the encoding, or for a sealed datagram the seal again. */
export function reencode(schema: DescMessage, security: SealedReceiver | undefined, message: Message, hex: string): Uint8Array {
  return security === undefined ? toBinary(schema, message) : resealAs(security, message, hexToBytes(hex));
}

/** Applies the pass rules to one test; returns "" when it passes, otherwise why it fails. */
function checkTest(schema: DescMessage, security: SealedReceiver | undefined, test: VectorTest, strict: boolean): string {
  let outcome: Outcome;
  try {
    outcome = outcomeOf(schema, security, test);
  } catch (error) {
    // A history that does not open: the test cannot run as written.
    return `cannot run: ${error instanceof Error ? error.message : String(error)}`;
  }
  switch (test.result) {
    case "valid": {
      if (!outcome.accepted) return `refused (${outcome.error}: ${outcome.detail}), expected valid`;
      const mismatch = compareExpected(schema, outcome.message, test);
      if (mismatch !== "") return mismatch;
      if (test.roundtrip === true) {
        const encoded = bytesToHex(reencode(schema, security, outcome.message, test.hex));
        if (encoded !== test.hex) return `re-encoding gives ${encoded}`;
      }
      return "";
    }
    case "invalid":
      if (outcome.accepted) return `accepted, expected refusal ${test.error}`;
      if (strict && outcome.error !== test.error) {
        return `refused with ${outcome.error} (${outcome.detail}), expected ${test.error}`;
      }
      return "";
    case "acceptable":
      return outcome.accepted ? compareExpected(schema, outcome.message, test) : "";
  }
}

function compareExpected(schema: DescMessage, decoded: Message, test: VectorTest): string {
  if (test.expected === undefined) return "the test has no expected value";
  const expected = fromJson(schema, test.expected);
  return sameMessage(schema, decoded, expected) ? "" : "decoded message differs from expected";
}
