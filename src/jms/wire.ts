import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type ValueList, ValueListSchema } from "../../gen/activeblaze/v1/message_pb.ts";
import { DeliveryMode, DestinationKind } from "../../gen/activeblaze/v1/messaging_pb.ts";
import { ByteCursor, decodeUtf8, varintSize } from "../wire/varint.ts";
import { web } from "../web.ts";

/**
 * The messaging layer's codec for activeblaze.v1.MessagingBatch, MessagingMessage, QueueAssignment and
 * ConsumerRegistration (schema/activeblaze/v1/messaging.proto), written by hand: every topic and queue
 * message passes through it, and the generated codec costs several times the channel's own work per
 * message. It writes what the generated encoder writes (fields in number order, defaults left out) and
 * reads any valid encoding; the messaging conformance vectors hold it to both. Decoding never throws:
 * malformed bytes give undefined.
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
  messageId: string;
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
    messageId: "",
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

// --- encoding ---

const LEN = 2;
const VARINT = 0;
const I32 = 5;
const I64 = 1;

interface Utf8Encoder {
  encodeInto(text: string, into: Uint8Array): { read: number; written: number };
}
const encoder = new web.TextEncoder() as unknown as Utf8Encoder;

/** A growing buffer that writes protobuf; nested messages are written in place, their length fixed after. */
class ProtoWriter {
  buffer = new Uint8Array(256);
  pos = 0;
  #view = new DataView(this.buffer.buffer);

  reset(): void {
    this.pos = 0;
  }

  ensure(extra: number): void {
    if (this.pos + extra <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.pos + extra) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.pos));
    this.buffer = grown;
    this.#view = new DataView(grown.buffer);
  }

  varint(value: number): void {
    this.ensure(10);
    const buffer = this.buffer;
    let pos = this.pos;
    while (value >= 0x80) {
      buffer[pos++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    buffer[pos++] = value;
    this.pos = pos;
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
    const start = this.begin(text.length * 3);
    if (text.length > 24) {
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

  bytes(field: number, bytes: Uint8Array, always = false): void {
    if (bytes.length === 0 && !always) return;
    this.tag(field, LEN);
    this.varint(bytes.length);
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.pos);
    this.pos += bytes.length;
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

  /** Starts a length-delimited part of up to `room` more bytes; returns its start for `end`. */
  begin(room: number): number {
    this.ensure(room + 6);
    return this.pos++;
  }

  /** Fixes the length of the part started at `start`, moving it when the length takes more than a byte. */
  end(start: number): void {
    const length = this.pos - start - 1;
    const size = varintSize(length);
    if (size > 1) {
      this.ensure(size - 1);
      this.buffer.copyWithin(start + size, start + 1, this.pos);
      this.pos += size - 1;
    }
    let value = length;
    let pos = start;
    while (value >= 0x80) {
      this.buffer[pos++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[pos] = value;
  }

  /**
   * The bytes written, copied out of the writer's buffer: for bytes that are sent and dropped (`pooled`),
   * into a shared slab (as Node pools small buffers); for bytes kept long (map entries), on their own.
   */
  finish(pooled = false): Uint8Array {
    const length = this.pos;
    if (!pooled || length > SLAB_BYTES / 8) return this.buffer.slice(0, length);
    if (slabUsed + length > SLAB_BYTES) {
      slab = new Uint8Array(SLAB_BYTES);
      slabUsed = 0;
    }
    const out = slab.subarray(slabUsed, slabUsed + length);
    out.set(this.buffer.subarray(0, length));
    // Views never share bytes: the next one starts at an 8-byte boundary past this one.
    slabUsed += (length + 7) & ~7;
    return out;
  }
}

/** Encoded messages are cut from slabs of this size; a slab is freed once no message refers to it. */
const SLAB_BYTES = 64 * 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabUsed = 0;

const writer = new ProtoWriter();

function writeDestination(w: ProtoWriter, field: number, destination: WireDestination): void {
  w.tag(field, LEN);
  const start = w.begin(8);
  w.uint(1, destination.kind);
  w.string(2, destination.name);
  w.end(start);
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

function writeHeaders(w: ProtoWriter, h: WireHeaders): void {
  if (h.destination.kind !== DestinationKind.UNSPECIFIED || h.destination.name !== "") writeDestination(w, 1, h.destination);
  w.string(2, h.messageId);
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
  for (const [name, property] of h.properties) writeProperty(w, name, property);
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

/** Encodes a MessagingBatch of `messages` (bytes to send: they may share a slab with others). */
export function encodeBatch(messages: readonly WireMessage[]): Uint8Array {
  writer.reset();
  for (const message of messages) {
    writer.tag(1, LEN);
    const start = writer.begin(128);
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
      const end = c.delimitedEnd();
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
  const key = c.varint();
  if (Number.isNaN(key) || key >= UINT32 || key < 8) return -1;
  return key;
}

function readString(c: ByteCursor): string | undefined {
  const end = c.delimitedEnd();
  if (Number.isNaN(end)) return undefined;
  const bytes = c.bytes;
  const start = c.pos;
  c.pos = end;
  // Short ASCII strings (names, selectors' usual values) are quicker by hand than through the decoder.
  if (end - start <= 16) {
    let text = "";
    for (let i = start; i < end; i++) {
      const byte = bytes[i]!;
      if (byte >= 0x80) return decodeUtf8(bytes.subarray(start, end));
      text += String.fromCharCode(byte);
    }
    return text;
  }
  return decodeUtf8(bytes.subarray(start, end));
}

function readBytes(c: ByteCursor): Uint8Array | undefined {
  const end = c.delimitedEnd();
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
      const valueEnd = c.delimitedEnd();
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

function decodeHeaders(c: ByteCursor, end: number, h: WireHeaders): boolean {
  const outer = c.end;
  c.end = end;
  while (c.pos < end) {
    const key = readTag(c);
    if (key < 0) return false;
    const field = key >>> 3;
    const wireType = key & 7;
    if (wireType === LEN && (field === 1 || field === 5)) {
      const destinationEnd = c.delimitedEnd();
      if (Number.isNaN(destinationEnd)) return false;
      const destination = decodeDestination(c, destinationEnd, field === 1 ? h.destination : h.replyTo);
      if (destination === undefined) return false;
      if (field === 1) h.destination = destination;
      else h.replyTo = destination;
    } else if (wireType === LEN && (field === 2 || field === 4 || field === 6)) {
      const value = readString(c);
      if (value === undefined) return false;
      if (field === 2) h.messageId = value;
      else if (field === 4) h.correlationId = value;
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
      const entryEnd = c.delimitedEnd();
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
      const headersEnd = c.delimitedEnd();
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
      else body = { kind, encoded: body.kind === kind ? concat(body.encoded, value) : value };
    }
  }
  c.end = outer;
  return c.pos === end ? { headers, body } : undefined;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** Decodes a MessagingBatch; undefined when the bytes are not one. */
export function decodeBatch(bytes: Uint8Array): WireMessage[] | undefined {
  const c = new ByteCursor(bytes, 0, bytes.length);
  const messages: WireMessage[] = [];
  while (c.pos < c.end) {
    const key = readTag(c);
    if (key < 0) return undefined;
    if (key === (1 << 3) + LEN) {
      const end = c.delimitedEnd();
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
  while (c.pos < c.end) {
    const key = readTag(c);
    if (key < 0) return undefined;
    if (key === (1 << 3) + LEN) {
      const value = readString(c);
      if (value === undefined) return undefined;
      consumer = value;
    } else if (key === (2 << 3) + VARINT) {
      const value = readInt32(c, false);
      if (value === undefined) return undefined;
      deliveryCount = value;
    } else if (!skip(c, key & 7)) return undefined;
  }
  return { consumer, deliveryCount };
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
      const end = c.delimitedEnd();
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
