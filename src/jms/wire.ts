import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type ValueList, ValueListSchema } from "../../gen/activeblaze/v1/message_pb.ts";
import { DeliveryMode, DestinationKind } from "../../gen/activeblaze/v1/messaging_pb.ts";
import { ByteCursor, decodeUtf8, readUtf8, varintSize, writeVarint } from "../wire/varint.ts";
import { web } from "../web.ts";
import { concatBytes } from "../wire/bytes.ts";

/**
 * The messaging layer's codec for activeblaze.v1.MessagingBatch, MessagingMessage, QueueAssignment and
 * ConsumerRegistration (schema/activeblaze/v1/messaging.proto), written by hand: every topic and queue
 * message passes through it, and a codec of generic messages — the generated one, or the compiled one
 * of src/wire/fast-codec.ts — costs several times more per message: it builds every field (a bigint
 * timestamp, a string message id, a copied body), where this one keeps a body and a message id as the
 * bytes they came in, reuses the destination of the message before, and writes a sent message id from
 * its context's prefix, encoded once. It writes what the generated encoder writes (fields in number
 * order, defaults left out) and reads any valid encoding; the messaging conformance vectors hold it to
 * both. Decoding never throws: malformed bytes give undefined.
 */

/** A destination as the wire names it. */
export interface WireDestination {
  readonly kind: DestinationKind;
  readonly name: string;
}

/** A typed property value: JMS boolean, int, long, float, double or String. */
export type PropertyValue =
  | { readonly type: "boolean"; readonly value: boolean }
  | { readonly type: "int"; readonly value: number }
  | { readonly type: "long"; readonly value: bigint }
  | { readonly type: "float"; readonly value: number }
  | { readonly type: "double"; readonly value: number }
  | { readonly type: "string"; readonly value: string };

export interface WireHeaders {
  destination: WireDestination;
  messageId: MessageId;
  timestampMs: number;
  correlationId: string;
  replyTo: WireDestination | undefined;
  type: string;
  deliveryMode: DeliveryMode;
  /** 0–9; 4 when absent on the wire. */
  priority: number;
  timeToLiveMs: number;
  deliveryDelayMs: number;
  /** Shared and empty (NO_PROPERTIES) until a property is set: most messages have none. */
  properties: Map<string, PropertyValue>;
}

/** A body as it travels: map and stream bodies stay encoded until read. */
export type WireBody =
  | { readonly kind: "none" }
  | { readonly kind: "text"; readonly value: string }
  | { readonly kind: "bytes"; readonly value: Uint8Array }
  | { readonly kind: "map"; readonly encoded: Uint8Array }
  | { readonly kind: "json"; readonly value: string }
  | { readonly kind: "stream"; readonly encoded: Uint8Array };

export interface WireMessage {
  readonly headers: WireHeaders;
  readonly body: WireBody;
}

export interface WireAssignment {
  readonly consumer: string;
  readonly deliveryCount: number;
  readonly messageIds: string[];
}

export interface WireRegistration {
  readonly destination: WireDestination;
  readonly selector: string;
  readonly prefetch: number;
  readonly subscription: string;
}

export const DEFAULT_PRIORITY = 4;
/** The properties of headers that have none; never written to (a message with properties gets its own map). */
export const NO_PROPERTIES: ReadonlyMap<string, PropertyValue> = new Map();
const NO_DESTINATION: WireDestination = { kind: DestinationKind.UNSPECIFIED, name: "" };
const NONE: WireBody = { kind: "none" };

export function emptyHeaders(): WireHeaders {
  return {
    destination: NO_DESTINATION,
    messageId: MessageId.NONE,
    timestampMs: 0,
    correlationId: "",
    replyTo: undefined,
    type: "",
    deliveryMode: DeliveryMode.UNSPECIFIED,
    priority: DEFAULT_PRIORITY,
    timeToLiveMs: 0,
    deliveryDelayMs: 0,
    properties: NO_PROPERTIES as Map<string, PropertyValue>,
  };
}

/**
 * What leads the ids of a context's messages: "ID:", its member id, its number and ":" (ASCII), encoded
 * once — each message id is these bytes and the message's number.
 */
export class MessageIdPrefix {
  readonly bytes: Uint8Array;

  constructor(readonly text: string) {
    this.bytes = encoder.encode(text);
  }
}

/**
 * JMSMessageID as it travels, its string made only when asked for: a sent id is its context's prefix
 * and the message's number, written as they are; a received one is the bytes it came in (a consumer
 * that never reads the id never pays for a string).
 */
export class MessageId {
  /** No id (absent on the wire). */
  static readonly NONE: MessageId = new MessageId(undefined, 0, 0, -1, "", "");
  #text: string | undefined;
  /** A sent id's prefix, as text. */
  readonly #head: string;

  private constructor(
    /** The id's ASCII bytes from `start` to `end` (a sent id's: its prefix's); undefined when it was made from its string. */
    readonly bytes: Uint8Array | undefined,
    readonly start: number,
    readonly end: number,
    /** A sent id's number, in decimal after the bytes; −1 for the others. */
    readonly sequence: number,
    text: string | undefined,
    head: string,
  ) {
    this.#text = text;
    this.#head = head;
  }

  /** The id of a context's message number `sequence`. */
  static sent(prefix: MessageIdPrefix, sequence: number): MessageId {
    return new MessageId(prefix.bytes, 0, prefix.bytes.length, sequence, undefined, prefix.text);
  }

  /** An id read from the wire: `bytes` from `start` to `end`, all ASCII (other ids are read as strings: `of`). */
  static received(bytes: Uint8Array, start: number, end: number): MessageId {
    return start === end ? MessageId.NONE : new MessageId(bytes, start, end, -1, undefined, "");
  }

  static of(text: string): MessageId {
    return text === "" ? MessageId.NONE : new MessageId(undefined, 0, 0, -1, text, "");
  }

  get text(): string {
    // Received bytes are ASCII: the runtime's decoder makes a string of this length quicker than a loop does.
    this.#text ??= this.sequence >= 0 ? `${this.#head}${this.sequence}` : decodeUtf8(this.bytes!.subarray(this.start, this.end))!;
    return this.#text;
  }

  /** True when the id begins with `prefix` (a message of that context). */
  startsWith(prefix: MessageIdPrefix): boolean {
    if (this.bytes === prefix.bytes) return true;
    const want = prefix.bytes;
    // Bytes as long as the prefix are compared as bytes (they are the id's text, ASCII); the rest as text.
    if (this.bytes === undefined || this.end - this.start < want.length) return this.text.startsWith(prefix.text);
    for (let i = 0; i < want.length; i++) if (this.bytes[this.start + i] !== want[i]) return false;
    return true;
  }
}

// --- encoding ---

const LEN = 2;
const VARINT = 0;
const I32 = 5;
const I64 = 1;

const encoder = new web.TextEncoder();

// The typed array methods every message calls, held here and called with `call`: loaded from a
// Uint8Array, each was looked up by V8's generic property load even in optimized code (some 70
// instructions a load under callgrind, for a copy or a view that costs little more).
const copyInto = Uint8Array.prototype.set;
const viewOf = Uint8Array.prototype.subarray;

/** Encoded messages are cut from slabs of this size (larger for a larger message); a slab is freed once no message refers to it. */
const SLAB_BYTES = 64 * 1024;

/**
 * Writes protobuf straight into a slab, where the bytes it gives out stay (no copy for bytes that are
 * sent and dropped). Nested messages are written in place, their length fixed after: `begin` reserves
 * what the length is expected to take, so that `end` seldom moves the part. Positions it hands out are
 * relative to the message being written, which moves to a new slab when the slab is full.
 */
class ProtoWriter {
  buffer: Uint8Array;
  /** Where the message being written starts in `buffer` (the bytes before it were given out). */
  base = 0;
  pos = 0;
  #view: DataView;

  constructor(bytes = SLAB_BYTES) {
    this.buffer = new Uint8Array(bytes);
    this.#view = new DataView(this.buffer.buffer);
  }

  reset(): void {
    this.pos = this.base;
  }

  ensure(extra: number): void {
    if (this.pos + extra > this.buffer.length) this.#grow(extra);
  }

  /** A new slab, the part written so far moved to its start. */
  #grow(extra: number): void {
    const written = this.pos - this.base;
    let size = SLAB_BYTES;
    while (size < written + extra) size *= 2;
    const slab = new Uint8Array(size);
    slab.set(this.buffer.subarray(this.base, this.pos));
    this.buffer = slab;
    this.#view = new DataView(slab.buffer);
    this.base = 0;
    this.pos = written;
  }

  varint(value: number): void {
    this.ensure(10);
    this.pos = writeVarint(this.buffer, this.pos, value);
  }

  /** A signed 64-bit value as protobuf writes int64 (two's complement, 10 bytes when negative). */
  varint64(value: bigint): void {
    let bits = BigInt.asUintN(64, value);
    this.ensure(10);
    while (bits >= 0x80n) {
      this.buffer[this.pos++] = Number(bits & 0x7fn) | 0x80;
      bits >>= 7n;
    }
    this.buffer[this.pos++] = Number(bits);
  }

  tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  uint(field: number, value: number): void {
    if (value === 0) return;
    this.tag(field, VARINT);
    this.varint(value);
  }

  string(field: number, text: string): void {
    if (text.length === 0) return;
    this.tag(field, LEN);
    this.text(text);
  }

  /** A length-prefixed UTF-8 string (present even when empty). */
  text(text: string): void {
    const start = this.begin(text.length * 3, varintSize(text.length));
    if (text.length > 64) {
      // Long strings: the runtime's encoder beats a loop in JavaScript.
      this.pos += encoder.encodeInto(text, this.buffer.subarray(this.pos)).written;
      this.end(start);
      return;
    }
    const buffer = this.buffer;
    let pos = this.pos;
    let i = 0;
    for (; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) break;
      buffer[pos++] = code;
    }
    this.pos = pos;
    if (i < text.length) this.pos += encoder.encodeInto(text.slice(i), buffer.subarray(pos)).written;
    this.end(start);
  }

  /** A message id: a sent one as its prefix's bytes and its number in decimal, without a string. */
  messageId(field: number, id: MessageId): void {
    const bytes = id.bytes;
    if (bytes === undefined) {
      this.string(field, id.text);
      return;
    }
    const digits = id.sequence >= 0 ? digitCount(id.sequence) : 0;
    const length = id.end - id.start + digits;
    this.tag(field, LEN);
    this.varint(length);
    this.ensure(length);
    const buffer = this.buffer;
    let pos = this.pos;
    if (id.start === 0 && id.end === bytes.length) {
      buffer.set(bytes, pos);
      pos += bytes.length;
    } else for (let i = id.start; i < id.end; i++) buffer[pos++] = bytes[i]!;
    this.pos = putDigits(buffer, pos, id.sequence, digits);
  }

  /** Bytes written as they are. */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  bytes(field: number, bytes: Uint8Array, always = false): void {
    if (bytes.length === 0 && !always) return;
    this.tag(field, LEN);
    this.varint(bytes.length);
    this.raw(bytes);
  }

  float(value: number): void {
    this.ensure(4);
    this.#view.setFloat32(this.pos, value, true);
    this.pos += 4;
  }

  double(value: number): void {
    this.ensure(8);
    this.#view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  /**
   * Starts a length-delimited part of up to `room` more bytes whose length is expected to take
   * `lengthBytes`; returns its start (relative to the message) for `end`.
   */
  begin(room: number, lengthBytes = 1): number {
    this.ensure(room + 10);
    const start = this.pos - this.base;
    // The count reserved waits in the first reserved byte until `end` writes the length there.
    this.buffer[this.pos] = lengthBytes;
    this.pos += lengthBytes;
    return start;
  }

  /** Fixes the length of the part started at `start`, moving the part when its length takes other than the bytes reserved. */
  end(start: number): void {
    const at = this.base + start;
    const reserved = this.buffer[at]!;
    const length = this.pos - at - reserved;
    const size = varintSize(length);
    if (size !== reserved) {
      this.ensure(size - reserved);
      this.buffer.copyWithin(this.base + start + size, this.base + start + reserved, this.pos);
      this.pos += size - reserved;
    }
    let value = length;
    let pos = this.base + start;
    while (value >= 0x80) {
      this.buffer[pos++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[pos] = value;
  }

  /**
   * The bytes written: for bytes that are sent and dropped (`pooled`), a view of the slab, which the
   * next message does not touch; for bytes kept long (map entries), a copy of their own.
   */
  finish(pooled = false): Uint8Array {
    const start = this.base;
    const end = this.pos;
    if (!pooled) return this.buffer.slice(start, end);
    // Views never share bytes: the next one starts at an 8-byte boundary past this one.
    this.base = Math.min(this.buffer.length, (end + 7) & ~7);
    return viewOf.call(this.buffer, start, end);
  }
}

const writer = new ProtoWriter();

/** The destination written last and its bytes (length included): a producer mostly sends to one destination. */
let lastWritten: WireDestination | undefined;
let lastWrittenBytes = new Uint8Array(0);

function writeDestination(w: ProtoWriter, field: number, destination: WireDestination): void {
  w.tag(field, LEN);
  if (destination === lastWritten) {
    w.raw(lastWrittenBytes);
    return;
  }
  const start = w.begin(8);
  w.uint(1, destination.kind);
  w.string(2, destination.name);
  w.end(start);
  lastWritten = destination;
  lastWrittenBytes = w.buffer.slice(w.base + start, w.pos);
}

function writeProperty(w: ProtoWriter, name: string, property: PropertyValue): void {
  w.tag(11, LEN);
  const entry = w.begin(16);
  w.tag(1, LEN);
  w.text(name);
  w.tag(2, LEN);
  const value = w.begin(16);
  switch (property.type) {
    case "boolean":
      w.tag(1, VARINT);
      w.varint(property.value ? 1 : 0);
      break;
    case "int":
      w.tag(2, VARINT);
      w.varint64(BigInt(property.value));
      break;
    case "long":
      w.tag(3, VARINT);
      w.varint64(property.value);
      break;
    case "float":
      w.tag(4, I32);
      w.float(property.value);
      break;
    case "double":
      w.tag(5, I64);
      w.double(property.value);
      break;
    case "string":
      w.tag(6, LEN);
      w.text(property.value);
      break;
  }
  w.end(value);
  w.end(entry);
}

/**
 * What leads the headers of a context's messages to one destination, with ids of one number of digits:
 * the destination field, then the message id's tag, length and prefix (one copy instead of two, and no
 * tags written). Made again when a message differs in one of the three.
 */
let leadDestination: WireDestination | undefined;
let leadPrefix: Uint8Array | undefined;
let leadDigits = 0;
let leadBytes: Uint8Array = new Uint8Array(0);
/** Writes leads, apart from the slab messages are written in. */
const leadWriter = new ProtoWriter(256);

/** The count of decimal digits of a sent id's number. */
function digitCount(sequence: number): number {
  let digits = 1;
  for (let ten = 10; sequence >= ten; ten *= 10) digits++;
  return digits;
}

/** The lead of sent id `id`, of `digits` digits, to `destination` (a destination the headers write). */
function leadOf(destination: WireDestination, id: MessageId, digits: number): Uint8Array {
  if (destination !== leadDestination || id.bytes !== leadPrefix || digits !== leadDigits) {
    leadWriter.reset();
    writeDestination(leadWriter, 1, destination);
    leadWriter.tag(2, LEN);
    leadWriter.varint(id.end + digits);
    leadWriter.raw(id.bytes!);
    leadBytes = leadWriter.finish();
    leadDestination = destination;
    leadPrefix = id.bytes;
    leadDigits = digits;
  }
  return leadBytes;
}

/**
 * Writes `sequence` in `digits` decimal digits at `pos`; returns the position after them. Digits are
 * taken in 32-bit integer arithmetic (a division by 10 the compiler makes a multiplication), those of a
 * number past 2^31 − 1 in floating point until the rest fits.
 */
function putDigits(buffer: Uint8Array, pos: number, sequence: number, digits: number): number {
  let rest = sequence;
  let at = pos + digits - 1;
  for (; rest > 0x7fffffff; at--) {
    buffer[at] = 0x30 + (rest % 10);
    rest = Math.floor(rest / 10);
  }
  for (; at >= pos; at--) {
    const next = (rest / 10) | 0;
    buffer[at] = 0x30 + rest - next * 10;
    rest = next;
  }
  return pos + digits;
}

function writeHeaders(w: ProtoWriter, h: WireHeaders): void {
  const id = h.messageId;
  const destination = h.destination;
  if (id.sequence >= 0 && (destination.kind !== DestinationKind.UNSPECIFIED || destination.name !== "")) {
    // A sent id (its prefix whole, then its number) to a destination: the lead, then the digits.
    const digits = digitCount(id.sequence);
    w.raw(leadOf(destination, id, digits));
    w.ensure(digits);
    w.pos = putDigits(w.buffer, w.pos, id.sequence, digits);
  } else {
    if (destination.kind !== DestinationKind.UNSPECIFIED || destination.name !== "") writeDestination(w, 1, destination);
    w.messageId(2, id);
  }
  w.uint(3, h.timestampMs);
  w.string(4, h.correlationId);
  if (h.replyTo !== undefined) writeDestination(w, 5, h.replyTo);
  w.string(6, h.type);
  w.uint(7, h.deliveryMode);
  if (h.priority !== DEFAULT_PRIORITY) {
    // Explicit presence: 0 is written too.
    w.tag(8, VARINT);
    w.varint(h.priority);
  }
  w.uint(9, h.timeToLiveMs);
  w.uint(10, h.deliveryDelayMs);
  if (h.properties.size > 0) for (const [name, property] of h.properties) writeProperty(w, name, property);
}

function writeMessage(w: ProtoWriter, message: WireMessage): void {
  w.tag(1, LEN);
  const headers = w.begin(64);
  writeHeaders(w, message.headers);
  w.end(headers);
  const body = message.body;
  switch (body.kind) {
    case "none":
      return;
    case "text":
      w.tag(2, LEN);
      w.text(body.value);
      return;
    case "bytes":
      w.bytes(3, body.value, true);
      return;
    case "map":
      w.bytes(4, body.encoded, true);
      return;
    case "json":
      w.tag(5, LEN);
      w.text(body.value);
      return;
    case "stream":
      w.bytes(6, body.encoded, true);
      return;
  }
}

/** What the headers of a message usually take: a destination, a message id, a timestamp and a delivery mode. */
const HEADERS_GUESS = 80;

/** About what a body takes (a string's length in UTF-16 units, not bytes). */
function bodyLength(body: WireBody): number {
  switch (body.kind) {
    case "none":
      return 0;
    case "text":
    case "json":
    case "bytes":
      return body.value.length;
    default:
      return body.encoded.length;
  }
}

/** A varint's size: one or two bytes (a length within a datagram, an enum, a short time) found here, any other by `varintSize`. */
function smallVarintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : varintSize(value);
}

/** A varint field's size, or 0 for a value of 0 (left out). */
function uintFieldSize(value: number): number {
  return value === 0 ? 0 : 1 + smallVarintSize(value);
}

/**
 * Writes a varint at `pos` as `writeVarint` does; returns the position after it. One or two bytes are
 * written here (the lengths and most header values of a message), without the general writer's call.
 */
function putSmallVarint(buffer: Uint8Array, pos: number, value: number): number {
  if (value < 0x80) {
    buffer[pos] = value;
    return pos + 1;
  }
  if (value < 0x4000) {
    buffer[pos] = (value & 0x7f) | 0x80;
    buffer[pos + 1] = value >>> 7;
    return pos + 2;
  }
  return writeVarint(buffer, pos, value);
}

/** Writes varint field `field` (below 16: a one-byte tag) at `pos`, nothing for a value of 0; returns the position after it. */
function putUintField(buffer: Uint8Array, pos: number, field: number, value: number): number {
  if (value === 0) return pos;
  buffer[pos++] = (field << 3) + VARINT;
  return putSmallVarint(buffer, pos, value);
}

/**
 * Writes `message` as a batch's element when it is as a send of bytes most often makes it — a sent id,
 * a destination, a body of bytes or none, no correlation id, reply-to, type or property — every length
 * counted first, so that each is written once where it goes; false (and nothing written) for any other.
 * The bytes are those `writeMessage` writes.
 */
function writePlain(w: ProtoWriter, message: WireMessage): boolean {
  const h = message.headers;
  const body = message.body;
  const id = h.messageId;
  const destination = h.destination;
  if (
    id.sequence < 0 ||
    (body.kind !== "bytes" && body.kind !== "none") ||
    h.correlationId !== "" ||
    h.replyTo !== undefined ||
    h.type !== "" ||
    h.properties.size > 0 ||
    (destination.kind === DestinationKind.UNSPECIFIED && destination.name === "")
  ) {
    return false;
  }
  const digits = digitCount(id.sequence);
  const lead = leadOf(destination, id, digits);
  // Explicit presence: any priority but the default is written, 0 too.
  const priority = h.priority !== DEFAULT_PRIORITY;
  const headersLength =
    lead.length +
    digits +
    // A timestamp takes six bytes (from 2^35 to 2^42 ms since 1970): the general varint's size and writer.
    (h.timestampMs === 0 ? 0 : 1 + varintSize(h.timestampMs)) +
    uintFieldSize(h.deliveryMode) +
    (priority ? 1 + smallVarintSize(h.priority) : 0) +
    uintFieldSize(h.timeToLiveMs) +
    uintFieldSize(h.deliveryDelayMs);
  const bytes = body.kind === "bytes" ? body.value : undefined;
  const messageLength = 1 + smallVarintSize(headersLength) + headersLength + (bytes === undefined ? 0 : 1 + smallVarintSize(bytes.length) + bytes.length);
  w.ensure(1 + smallVarintSize(messageLength) + messageLength);
  const buffer = w.buffer;
  let pos = w.pos;
  buffer[pos++] = (1 << 3) + LEN;
  pos = putSmallVarint(buffer, pos, messageLength);
  buffer[pos++] = (1 << 3) + LEN;
  pos = putSmallVarint(buffer, pos, headersLength);
  copyInto.call(buffer, lead, pos);
  pos = putDigits(buffer, pos + lead.length, id.sequence, digits);
  if (h.timestampMs !== 0) {
    buffer[pos++] = (3 << 3) + VARINT;
    pos = writeVarint(buffer, pos, h.timestampMs);
  }
  pos = putUintField(buffer, pos, 7, h.deliveryMode);
  if (priority) {
    buffer[pos++] = (8 << 3) + VARINT;
    pos = putSmallVarint(buffer, pos, h.priority);
  }
  pos = putUintField(buffer, pos, 9, h.timeToLiveMs);
  pos = putUintField(buffer, pos, 10, h.deliveryDelayMs);
  if (bytes !== undefined) {
    buffer[pos++] = (3 << 3) + LEN;
    pos = putSmallVarint(buffer, pos, bytes.length);
    copyInto.call(buffer, bytes, pos);
    pos += bytes.length;
  }
  w.pos = pos;
  return true;
}

/** Encodes a MessagingBatch of `messages` (bytes to send: they may share a slab with others). */
export function encodeBatch(messages: readonly WireMessage[]): Uint8Array {
  writer.reset();
  for (const message of messages) {
    if (writePlain(writer, message)) continue;
    writer.tag(1, LEN);
    const start = writer.begin(128, varintSize(HEADERS_GUESS + bodyLength(message.body)));
    writeMessage(writer, message);
    writer.end(start);
  }
  return writer.finish(true);
}

/** Encodes one MessagingMessage. */
export function encodeMessage(message: WireMessage): Uint8Array {
  writer.reset();
  writeMessage(writer, message);
  return writer.finish();
}

export function encodeAssignment(assignment: WireAssignment): Uint8Array {
  writer.reset();
  writer.string(1, assignment.consumer);
  writer.uint(2, assignment.deliveryCount);
  for (const id of assignment.messageIds) {
    // Repeated: an element is written even when empty.
    writer.tag(3, LEN);
    writer.text(id);
  }
  return writer.finish();
}

export function encodeRegistration(registration: WireRegistration): Uint8Array {
  writer.reset();
  if (registration.destination.kind !== DestinationKind.UNSPECIFIED || registration.destination.name !== "") writeDestination(writer, 1, registration.destination);
  writer.string(2, registration.selector);
  writer.uint(3, registration.prefetch);
  writer.string(4, registration.subscription);
  return writer.finish();
}

/** A StreamMessage's values, encoded as an activeblaze.v1.ValueList (stream bodies are rare: the generated codec). */
export function encodeStream(list: ValueList): Uint8Array {
  return toBinary(ValueListSchema, list);
}

export function decodeStream(encoded: Uint8Array): ValueList {
  return fromBinary(ValueListSchema, encoded);
}

// --- decoding ---

const UINT32 = 2 ** 32;

/** Skips a field of `wireType`; false when it cannot be skipped (bad wire type, truncation). */
function skip(c: ByteCursor, wireType: number): boolean {
  switch (wireType) {
    case VARINT: {
      // Any varint of up to 10 bytes, whatever its value.
      for (let i = 0; i < 10; i++) {
        if (c.pos >= c.end) return false;
        if (c.bytes[c.pos++]! < 0x80) return true;
      }
      return false;
    }
    case I64:
      c.pos += 8;
      return c.pos <= c.end;
    case LEN: {
      const end = delimitedEnd(c);
      if (Number.isNaN(end)) return false;
      c.pos = end;
      return true;
    }
    case I32:
      c.pos += 4;
      return c.pos <= c.end;
    default:
      return false;
  }
}

/** A varint of up to 10 bytes as a bigint (its low 64 bits), or undefined. */
function varint64(c: ByteCursor): bigint | undefined {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (c.pos >= c.end) return undefined;
    const byte = c.bytes[c.pos++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) return BigInt.asUintN(64, result);
    shift += 7n;
  }
  return undefined;
}

/** A tag (field number × 8 + wire type), or -1 at a bad one. Numbers, not objects: this runs for every field. */
function readTag(c: ByteCursor): number {
  // Mostly one byte (fields 1–15): read here, without the cursor's general varint.
  const pos = c.pos;
  if (pos < c.end) {
    const byte = c.bytes[pos]!;
    if (byte < 0x80) {
      c.pos = pos + 1;
      return byte < 8 ? -1 : byte;
    }
  }
  const key = c.varint();
  if (Number.isNaN(key) || key >= UINT32 || key < 8) return -1;
  return key;
}

/** Where a length-delimited field that starts at the cursor ends (NaN when it does not fit): `ByteCursor.delimitedEnd`, a one-byte length read here. */
function delimitedEnd(c: ByteCursor): number {
  const pos = c.pos;
  if (pos < c.end) {
    const length = c.bytes[pos]!;
    if (length < 0x80) {
      const end = pos + 1 + length;
      if (end > c.end) return Number.NaN;
      c.pos = pos + 1;
      return end;
    }
  }
  return c.delimitedEnd();
}

function readString(c: ByteCursor): string | undefined {
  const end = delimitedEnd(c);
  if (Number.isNaN(end)) return undefined;
  const start = c.pos;
  c.pos = end;
  return readUtf8(c.bytes, start, end);
}

function readBytes(c: ByteCursor): Uint8Array | undefined {
  const end = delimitedEnd(c);
  if (Number.isNaN(end)) return undefined;
  const bytes = c.bytes.subarray(c.pos, end);
  c.pos = end;
  return bytes;
}

/** Reads a varint that must fit a safe integer (uint64 fields are held to 2^53 − 1, as the envelope's are). */
function readUint(c: ByteCursor): number | undefined {
  const value = c.varint();
  return Number.isNaN(value) ? undefined : value;
}

/** An int32 or enum varint: its low 32 bits, signed for int32. */
function readInt32(c: ByteCursor, signed: boolean): number | undefined {
  // Mostly one byte (an enum, a priority): no bigint.
  const pos = c.pos;
  if (pos < c.end && c.bytes[pos]! < 0x80) {
    c.pos = pos + 1;
    return c.bytes[pos]!;
  }
  const value = varint64(c);
  if (value === undefined) return undefined;
  return signed ? Number(BigInt.asIntN(32, value)) : Number(BigInt.asUintN(32, value));
}

function decodeDestination(c: ByteCursor, end: number, into: WireDestination | undefined): WireDestination | undefined {
  const outer = c.end;
  c.end = end;
  let kind = into?.kind ?? DestinationKind.UNSPECIFIED;
  let name = into?.name ?? "";
  while (c.pos < end) {
    const key = readTag(c);
    if (key < 0) return undefined;
    if (key === (1 << 3) + VARINT) {
      const value = readInt32(c, false);
      if (value === undefined) return undefined;
      kind = value as DestinationKind;
    } else if (key === (2 << 3) + LEN) {
      const value = readString(c);
      if (value === undefined) return undefined;
      name = value;
    } else if (!skip(c, key & 7)) return undefined;
  }
  c.end = outer;
  return c.pos === end ? { kind, name } : undefined;
}

function decodeProperty(c: ByteCursor, end: number): PropertyValue | null | undefined {
  const outer = c.end;
  c.end = end;
  let property: PropertyValue | null = null;
  while (c.pos < end) {
    const key = readTag(c);
    if (key < 0) return undefined;
    const tag = { field: key >>> 3, wireType: key & 7 };
    switch (tag.wireType === VARINT || tag.wireType === LEN || tag.wireType === I32 || tag.wireType === I64 ? tag.field : 0) {
      case 1: {
        if (tag.wireType !== VARINT) return undefined;
        const value = varint64(c);
        if (value === undefined) return undefined;
        property = { type: "boolean", value: value !== 0n };
        break;
      }
      case 2: {
        if (tag.wireType !== VARINT) return undefined;
        const value = readInt32(c, true);
        if (value === undefined) return undefined;
        property = { type: "int", value };
        break;
      }
      case 3: {
        if (tag.wireType !== VARINT) return undefined;
        const value = varint64(c);
        if (value === undefined) return undefined;
        property = { type: "long", value: BigInt.asIntN(64, value) };
        break;
      }
      case 4: {
        if (tag.wireType !== I32 || c.pos + 4 > end) return undefined;
        property = { type: "float", value: new DataView(c.bytes.buffer, c.bytes.byteOffset + c.pos, 4).getFloat32(0, true) };
        c.pos += 4;
        break;
      }
      case 5: {
        if (tag.wireType !== I64 || c.pos + 8 > end) return undefined;
        property = { type: "double", value: new DataView(c.bytes.buffer, c.bytes.byteOffset + c.pos, 8).getFloat64(0, true) };
        c.pos += 8;
        break;
      }
      case 6: {
        if (tag.wireType !== LEN) return undefined;
        const value = readString(c);
        if (value === undefined) return undefined;
        property = { type: "string", value };
        break;
      }
      default:
        if (!skip(c, tag.wireType)) return undefined;
    }
  }
  c.end = outer;
  return c.pos === end ? property : undefined;
}

/** A map entry: key (1) and value (2), in any order, either one absent. */
function decodePropertyEntry(c: ByteCursor, end: number, into: Map<string, PropertyValue>): boolean {
  const outer = c.end;
  c.end = end;
  let name = "";
  let property: PropertyValue | null = null;
  while (c.pos < end) {
    const key = readTag(c);
    if (key < 0) return false;
    if (key === (1 << 3) + LEN) {
      const value = readString(c);
      if (value === undefined) return false;
      name = value;
    } else if (key === (2 << 3) + LEN) {
      const valueEnd = delimitedEnd(c);
      if (Number.isNaN(valueEnd)) return false;
      const value = decodeProperty(c, valueEnd);
      if (value === undefined) return false;
      property = value;
    } else if (!skip(c, key & 7)) return false;
  }
  c.end = outer;
  if (c.pos !== end) return false;
  // A property without a value is no property (JMS properties are never null).
  if (property === null) into.delete(name);
  else into.set(name, property);
  return true;
}

/** The destination decoded last and its bytes: a sender's messages mostly go to one destination, found again by comparing bytes. */
let lastDestination: WireDestination = NO_DESTINATION;
let lastDestinationBytes = new Uint8Array(0);

/**
 * Whether `bytes` from `start` to `end` are those of the destination decoded last: their differences
 * ORed together four bytes at a time. A function of its own that V8 calls from `readPlainMessage`
 * rather than inlines, which leaves that function room to inline the construction of the message id
 * (callgrind: 146 instructions a message fewer than with `sameBytes` inlined there).
 */
function sameDestinationBytes(bytes: Uint8Array, start: number, end: number): boolean {
  const expected = lastDestinationBytes;
  const length = expected.length;
  if (end - start !== length) return false;
  let difference = 0;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    const at = start + i;
    difference |= (bytes[at]! ^ expected[i]!) | (bytes[at + 1]! ^ expected[i + 1]!) | (bytes[at + 2]! ^ expected[i + 2]!) | (bytes[at + 3]! ^ expected[i + 3]!);
  }
  for (; i < length; i++) difference |= bytes[start + i]! ^ expected[i]!;
  return difference === 0;
}

/** A message's destination from `start` to `end` of `bytes`: the one decoded last when its bytes are the same. */
function readDestination(bytes: Uint8Array, start: number, end: number): WireDestination | undefined {
  if (sameDestinationBytes(bytes, start, end)) return lastDestination;
  const destination = decodeDestination(new ByteCursor(bytes, start, end), end, undefined);
  if (destination !== undefined) {
    lastDestination = destination;
    // A copy, and a plain Uint8Array whatever `bytes` is (a Node Buffer's slice would be a view of the datagram).
    lastDestinationBytes = new Uint8Array(bytes.subarray(start, end));
  }
  return destination;
}

/** A message id: kept as its bytes when they are ASCII (as every id this library makes), else decoded now; undefined when not UTF-8. */
function readMessageId(bytes: Uint8Array, start: number, end: number): MessageId | undefined {
  // The bytes are ORed together, eight at a time, rather than each compared: every id is looked at, and
  // they are ASCII but for another port's. Each byte still costs some twelve instructions (V8 checks
  // each load's bounds and overflow on its own); ids of other bytes are decoded out of the reader's way.
  let high = 0;
  let i = start;
  for (; i < end - 7; i += 8) high |= bytes[i]! | bytes[i + 1]! | bytes[i + 2]! | bytes[i + 3]! | bytes[i + 4]! | bytes[i + 5]! | bytes[i + 6]! | bytes[i + 7]!;
  for (; i < end; i++) high |= bytes[i]!;
  return high < 0x80 ? MessageId.received(bytes, start, end) : decodedMessageId(bytes, start, end);
}

/** A message id of bytes not all ASCII, decoded now; undefined when not UTF-8. */
function decodedMessageId(bytes: Uint8Array, start: number, end: number): MessageId | undefined {
  const text = decodeUtf8(bytes.subarray(start, end));
  return text === undefined ? undefined : MessageId.of(text);
}

function decodeHeaders(c: ByteCursor, end: number, h: WireHeaders): boolean {
  const outer = c.end;
  c.end = end;
  while (c.pos < end) {
    const key = readTag(c);
    if (key < 0) return false;
    const field = key >>> 3;
    const wireType = key & 7;
    if (wireType === LEN && field === 1 && h.destination === NO_DESTINATION) {
      const destinationEnd = delimitedEnd(c);
      if (Number.isNaN(destinationEnd)) return false;
      const destination = readDestination(c.bytes, c.pos, destinationEnd);
      if (destination === undefined) return false;
      c.pos = destinationEnd;
      h.destination = destination;
    } else if (wireType === LEN && (field === 1 || field === 5)) {
      // The reply-to destination, or a second destination field that merges into the first.
      const destinationEnd = delimitedEnd(c);
      if (Number.isNaN(destinationEnd)) return false;
      const destination = decodeDestination(c, destinationEnd, field === 1 ? h.destination : h.replyTo);
      if (destination === undefined) return false;
      if (field === 1) h.destination = destination;
      else h.replyTo = destination;
    } else if (wireType === LEN && field === 2) {
      const idEnd = delimitedEnd(c);
      if (Number.isNaN(idEnd)) return false;
      const id = readMessageId(c.bytes, c.pos, idEnd);
      if (id === undefined) return false;
      c.pos = idEnd;
      h.messageId = id;
    } else if (wireType === LEN && (field === 4 || field === 6)) {
      const value = readString(c);
      if (value === undefined) return false;
      if (field === 4) h.correlationId = value;
      else h.type = value;
    } else if (wireType === VARINT && (field === 3 || field === 9 || field === 10)) {
      const value = readUint(c);
      if (value === undefined) return false;
      if (field === 3) h.timestampMs = value;
      else if (field === 9) h.timeToLiveMs = value;
      else h.deliveryDelayMs = value;
    } else if (wireType === VARINT && (field === 7 || field === 8)) {
      const value = readInt32(c, false);
      if (value === undefined) return false;
      if (field === 7) h.deliveryMode = value as DeliveryMode;
      else h.priority = value;
    } else if (wireType === LEN && field === 11) {
      const entryEnd = delimitedEnd(c);
      if (h.properties === NO_PROPERTIES) h.properties = new Map();
      if (Number.isNaN(entryEnd) || !decodePropertyEntry(c, entryEnd, h.properties)) return false;
    } else if (!skip(c, wireType)) return false;
  }
  c.end = outer;
  return c.pos === end;
}

function decodeMessageAt(c: ByteCursor, end: number): WireMessage | undefined {
  const outer = c.end;
  c.end = end;
  const headers = emptyHeaders();
  let body: WireBody = NONE;
  while (c.pos < end) {
    const key = readTag(c);
    if (key < 0) return undefined;
    const field = key >>> 3;
    const wireType = key & 7;
    if (wireType !== LEN || field < 1 || field > 6) {
      if (!skip(c, wireType)) return undefined;
      continue;
    }
    if (field === 1) {
      const headersEnd = delimitedEnd(c);
      if (Number.isNaN(headersEnd) || !decodeHeaders(c, headersEnd, headers)) return undefined;
    } else if (field === 2 || field === 5) {
      const value = readString(c);
      if (value === undefined) return undefined;
      body = field === 2 ? { kind: "text", value } : { kind: "json", value };
    } else {
      const value = readBytes(c);
      if (value === undefined) return undefined;
      // Message fields of one oneof member merge; two map (or stream) parts concatenate as protobuf merges them.
      const kind = field === 3 ? "bytes" : field === 4 ? "map" : "stream";
      if (kind === "bytes") body = { kind, value };
      else body = { kind, encoded: body.kind === kind ? concatBytes(body.encoded, value) : value };
    }
  }
  c.end = outer;
  return c.pos === end ? { headers, body } : undefined;
}

/** Where the plain reader's last varint ended (`plainVarint` returns the value). */
let plainEnd = 0;

/**
 * The varint at `pos`, before `end`, as `ByteCursor.varint` reads it (at most eight groups, at most
 * 2^53 − 1), its end left in `plainEnd`; −1 for any other (the general decoder judges it).
 */
function plainVarint(bytes: Uint8Array, pos: number, end: number): number {
  let result = 0;
  let scale = 1;
  for (let i = 0; i < 8 && pos < end; i++) {
    const byte = bytes[pos++]!;
    result += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      if (result > Number.MAX_SAFE_INTEGER) return -1;
      plainEnd = pos;
      return result;
    }
    scale *= 0x80;
  }
  return -1;
}

/**
 * The end of the length-delimited field whose length is the varint at `pos` (just after its tag), when
 * the field ends by `limit`; its content starts at `plainEnd`. −1 for any other.
 */
function plainDelimited(bytes: Uint8Array, pos: number, limit: number): number {
  if (pos >= limit) return -1;
  // A length of one byte, as those of most fields are, read here; any other by `plainVarint`. V8 inlines
  // this function at each of the reader's fields, and `plainVarint` within it only where a field's
  // length took more than a byte. Each copy of `plainVarint` took 107 bytes of bytecode of the 920 that
  // V8 inlines into one function; with them, the message id's construction did not fit beside its
  // check eight bytes at a time, and was made through the generic path (callgrind, jms-cost subscriber
  // of 256 B topic messages: readPlainMessage with what it calls 2,235 → 2,123 instructions a message).
  let length = bytes[pos]!;
  if (length < 0x80) plainEnd = pos + 1;
  else {
    length = plainVarint(bytes, pos, limit);
    if (length < 0) return -1;
  }
  const fieldEnd = plainEnd + length;
  return fieldEnd > limit ? -1 : fieldEnd;
}

/**
 * Reads one message as `writePlain` writes it, and as the other ports write it too — headers first
 * (a destination, a message id, then a timestamp, delivery mode, priority, time to live and delivery
 * delay, each at most once, in that order), then a body of bytes, of text or none — in one pass over
 * local positions, no cursor and no loop over fields. Undefined for any other form, or for bytes that
 * would be refused: the general decoder then reads the message (and refuses what it refuses), so that
 * what this reads is exactly what that one reads.
 */
function readPlainMessage(bytes: Uint8Array, start: number, end: number): WireMessage | undefined {
  if (start >= end || bytes[start] !== (1 << 3) + LEN) return undefined;
  const headersEnd = plainDelimited(bytes, start + 1, end);
  if (headersEnd < 0) return undefined;
  let pos = plainEnd;
  if (pos >= headersEnd || bytes[pos] !== (1 << 3) + LEN) return undefined;
  const destinationEnd = plainDelimited(bytes, pos + 1, headersEnd);
  if (destinationEnd < 0) return undefined;
  const destination = readDestination(bytes, plainEnd, destinationEnd);
  pos = destinationEnd;
  if (destination === undefined || pos >= headersEnd || bytes[pos] !== (2 << 3) + LEN) return undefined;
  const idEnd = plainDelimited(bytes, pos + 1, headersEnd);
  if (idEnd < 0) return undefined;
  const messageId = readMessageId(bytes, plainEnd, idEnd);
  if (messageId === undefined) return undefined;
  pos = idEnd;
  let timestampMs = 0;
  if (pos < headersEnd && bytes[pos] === (3 << 3) + VARINT) {
    timestampMs = plainVarint(bytes, pos + 1, headersEnd);
    if (timestampMs < 0) return undefined;
    pos = plainEnd;
  }
  // An enum and a priority of one byte (any other: the general decoder's int32).
  let deliveryMode = DeliveryMode.UNSPECIFIED;
  if (pos < headersEnd && bytes[pos] === (7 << 3) + VARINT) {
    if (pos + 1 >= headersEnd || bytes[pos + 1]! >= 0x80) return undefined;
    deliveryMode = bytes[pos + 1]! as DeliveryMode;
    pos += 2;
  }
  let priority = DEFAULT_PRIORITY;
  if (pos < headersEnd && bytes[pos] === (8 << 3) + VARINT) {
    if (pos + 1 >= headersEnd || bytes[pos + 1]! >= 0x80) return undefined;
    priority = bytes[pos + 1]!;
    pos += 2;
  }
  let timeToLiveMs = 0;
  if (pos < headersEnd && bytes[pos] === (9 << 3) + VARINT) {
    timeToLiveMs = plainVarint(bytes, pos + 1, headersEnd);
    if (timeToLiveMs < 0) return undefined;
    pos = plainEnd;
  }
  let deliveryDelayMs = 0;
  if (pos < headersEnd && bytes[pos] === (10 << 3) + VARINT) {
    deliveryDelayMs = plainVarint(bytes, pos + 1, headersEnd);
    if (deliveryDelayMs < 0) return undefined;
    pos = plainEnd;
  }
  if (pos !== headersEnd) return undefined;
  const headers: WireHeaders = {
    destination,
    messageId,
    timestampMs,
    correlationId: "",
    replyTo: undefined,
    type: "",
    deliveryMode,
    priority,
    timeToLiveMs,
    deliveryDelayMs,
    properties: NO_PROPERTIES as Map<string, PropertyValue>,
  };
  if (pos === end) return { headers, body: NONE };
  const tag = bytes[pos];
  if (tag !== (3 << 3) + LEN && tag !== (2 << 3) + LEN) return undefined;
  if (plainDelimited(bytes, pos + 1, end) !== end) return undefined;
  if (tag === (3 << 3) + LEN) return { headers, body: { kind: "bytes", value: viewOf.call(bytes, plainEnd, end) } };
  const value = readUtf8(bytes, plainEnd, end);
  return value === undefined ? undefined : { headers, body: { kind: "text", value } };
}

/** Decodes a MessagingBatch; undefined when the bytes are not one. */
export function decodeBatch(bytes: Uint8Array): WireMessage[] | undefined {
  // Each message as most are written (`readPlainMessage`), else the whole batch by the general decoder.
  let messages: WireMessage[] | undefined;
  const end = bytes.length;
  let pos = 0;
  while (pos < end) {
    if (bytes[pos] !== (1 << 3) + LEN) return decodeAnyBatch(bytes);
    const messageEnd = plainDelimited(bytes, pos + 1, end);
    if (messageEnd < 0) return decodeAnyBatch(bytes);
    pos = messageEnd;
    const message = readPlainMessage(bytes, plainEnd, pos);
    if (message === undefined) return decodeAnyBatch(bytes);
    // Most batches hold one message: its array is made to its size, not grown by a push.
    if (messages !== undefined) messages.push(message);
    else if (pos === end) return [message];
    else messages = [message];
  }
  return messages ?? [];
}

/** Decodes a MessagingBatch of messages in any valid encoding; undefined when the bytes are not one. */
function decodeAnyBatch(bytes: Uint8Array): WireMessage[] | undefined {
  const c = new ByteCursor(bytes, 0, bytes.length);
  const messages: WireMessage[] = [];
  while (c.pos < c.end) {
    const key = readTag(c);
    if (key < 0) return undefined;
    if (key === (1 << 3) + LEN) {
      const end = delimitedEnd(c);
      if (Number.isNaN(end)) return undefined;
      const message = decodeMessageAt(c, end);
      if (message === undefined) return undefined;
      messages.push(message);
    } else if (!skip(c, key & 7)) return undefined;
  }
  return messages;
}

/** Decodes one MessagingMessage; undefined when the bytes are not one. */
export function decodeMessage(bytes: Uint8Array): WireMessage | undefined {
  return decodeMessageAt(new ByteCursor(bytes, 0, bytes.length), bytes.length);
}

export function decodeAssignment(bytes: Uint8Array): WireAssignment | undefined {
  const c = new ByteCursor(bytes, 0, bytes.length);
  let consumer = "";
  let deliveryCount = 0;
  const messageIds: string[] = [];
  while (c.pos < c.end) {
    const key = readTag(c);
    if (key < 0) return undefined;
    if (key === (1 << 3) + LEN) {
      const value = readString(c);
      if (value === undefined) return undefined;
      consumer = value;
    } else if (key === (3 << 3) + LEN) {
      // Ids become map keys: the runtime's decoder makes a flat string quicker than readString's loop does.
      const end = delimitedEnd(c);
      const value = Number.isNaN(end) ? undefined : decodeUtf8(c.bytes.subarray(c.pos, end));
      if (value === undefined) return undefined;
      c.pos = end;
      messageIds.push(value);
    } else if (key === (2 << 3) + VARINT) {
      const value = readInt32(c, false);
      if (value === undefined) return undefined;
      deliveryCount = value;
    } else if (!skip(c, key & 7)) return undefined;
  }
  return { consumer, deliveryCount, messageIds };
}

export function decodeRegistration(bytes: Uint8Array): WireRegistration | undefined {
  const c = new ByteCursor(bytes, 0, bytes.length);
  let destination: WireDestination = NO_DESTINATION;
  let selector = "";
  let prefetch = 0;
  let subscription = "";
  while (c.pos < c.end) {
    const key = readTag(c);
    if (key < 0) return undefined;
    const tag = { field: key >>> 3, wireType: key & 7 };
    if (tag.field === 1 && tag.wireType === LEN) {
      const end = delimitedEnd(c);
      const value = Number.isNaN(end) ? undefined : decodeDestination(c, end, destination);
      if (value === undefined) return undefined;
      destination = value;
    } else if ((tag.field === 2 || tag.field === 4) && tag.wireType === LEN) {
      const value = readString(c);
      if (value === undefined) return undefined;
      if (tag.field === 2) selector = value;
      else subscription = value;
    } else if (tag.field === 3 && tag.wireType === VARINT) {
      const value = readInt32(c, false);
      if (value === undefined) return undefined;
      prefetch = value;
    } else if (!skip(c, tag.wireType)) return undefined;
  }
  return { destination, selector, prefetch, subscription };
}
