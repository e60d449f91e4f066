import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type Envelope, type Frame, FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { type Data, DataSchema } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { decodeEnvelope, type EnvelopeContext, type Refusal, validateData } from "./codec.ts";
import { type DataFields, dataSize, readData, writeData } from "../../gen/activeblaze/v1/reliable_fast.ts";
import { encodeAckFrame, isAckFrame, MAX_ACK_FRAME_BYTES, readAckFrame, writeAckFrame } from "./ack-codec.ts";
import { fastCodec } from "./fast-codec.ts";
import { MAX_DATAGRAM_BYTES, MEMBER_ID_BYTES, PROTOCOL_MINOR_VERSION, PROTOCOL_VERSION } from "./limits.ts";
import { sameBytes } from "./bytes.ts";
import { ByteCursor, decodeUtf8, varintSize, writeVarint } from "./varint.ts";
import { web } from "../web.ts";

/**
 * The hot path of the wire format: user data is written straight into datagram buffers and read back
 * without building generated message objects. The bytes are exactly those the generated code writes
 * (fields in number order, defaults omitted), so the conformance vectors hold for both. Anything the
 * hand-written reader does not expect (unknown fields, repeated singular fields, numbers past 2^53) is
 * handed to the generated decoder, which has the last word.
 */

/**
 * activeblaze.v1.Data with numbers instead of bigints: the form the protocol layers work with. It is
 * also the received frame of a Data message itself (`case: "data"`), saving an object per message.
 * Its codec is generated from the schema (gen/activeblaze/v1/reliable_fast.ts).
 */
export type { DataFields } from "../../gen/activeblaze/v1/reliable_fast.ts";
export { emptyDataFields } from "../../gen/activeblaze/v1/reliable_fast.ts";

/** One frame of a received datagram: user data in hot-path form, or any other protocol message. */
export type ReceivedFrame =
  | DataFields
  | { readonly case: Exclude<Frame["kind"]["case"], "data" | undefined>; readonly frame: Frame; readonly read?: undefined }
  | HandReadFrame;

/**
 * The frame kinds a level may read by hand, into its own form (the replicated map's frames of every
 * write): see HandReaders.
 */
export type HandReadCase = "stateRequest" | "stateUpdate" | "stateAck";

/** A frame read by its kind's hand reader: the reader's form of it, and no generated message. */
export interface HandReadFrame {
  readonly case: HandReadCase;
  readonly frame?: undefined;
  readonly read: object;
}

/**
 * A hand reader of a frame kind: reads the message at `bytes[start, end)` (inside its Frame field) into
 * its level's own form, or answers undefined when it is not the usual shape. It accepts only bytes the
 * generated decoder accepts; what it declines goes to the generated decoder, as any other frame does
 * (and so does a frame it throws on: nothing is thrown out of the receive path).
 */
export type FrameReader = (bytes: Uint8Array, start: number, end: number) => object | undefined;

/**
 * The hand readers a channel's datagram reader uses, by the number of their kind's Frame field: a level
 * registers its readers with the channel it runs on (see Channel.readFramesByHand), so that only that
 * channel's frames of those kinds come in its form, and only while it is there.
 */
export class HandReaders {
  readonly #byField: Array<{ readonly case: HandReadCase; readonly read: FrameReader } | undefined> = [];

  /** Has frames of `kind` read by `read` from now on; returns the function that stops it. */
  set(kind: HandReadCase, read: FrameReader): () => void {
    const field = FrameSchema.field[kind]!.number;
    const entry = { case: kind, read };
    this.#byField[field] = entry;
    return () => {
      if (this.#byField[field] === entry) this.#byField[field] = undefined;
    };
  }

  /** The frame at `bytes[start, end)` read by its kind's hand reader; undefined when it has none, or it declined. */
  read(bytes: Uint8Array, start: number, end: number): HandReadFrame | undefined {
    // The hand-read kinds are fields 16 to 2047: two-byte tags, length-delimited.
    if (end - start < 3) return undefined;
    const low = bytes[start]!;
    const high = bytes[start + 1]!;
    if (low < 0x80 || high >= 0x80 || (low & 7) !== 2) return undefined;
    const hand = this.#byField[((low & 0x7f) | (high << 7)) >>> 3];
    if (hand === undefined) return undefined;
    const cursor = new ByteCursor(bytes, start + 2, end);
    const messageEnd = cursor.delimitedEnd();
    if (cursor.failed || messageEnd !== end) return undefined;
    let read: object | undefined;
    try {
      read = hand.read(bytes, cursor.pos, end);
    } catch {
      return undefined;
    }
    return read === undefined ? undefined : { case: hand.case, read };
  }
}

/** A received datagram that passed every check. */
export interface ReceivedDatagram {
  readonly senderId: Uint8Array;
  readonly incarnation: number;
  readonly frames: ReceivedFrame[];
}

export type ReceiveResult = { readonly ok: true; readonly datagram: ReceivedDatagram } | ({ readonly ok: false } & Refusal);

// Field 17 (bundle) and 16 (data) with wire type 2: each tag is a two-byte varint.
const TAG_BUNDLE = [0x8a, 0x01] as const;
const TAG_FRAME = (1 << 3) | 2;
const TAG_DATA = [0x82, 0x01] as const;
const encoder = new web.TextEncoder();

/** Encoded destination names, so a topic's UTF-8 is computed once, not per message. */
class Utf8Cache {
  #entries = new Map<string, Uint8Array>();
  // The text asked for last, and its bytes: a message's destination is asked for twice as it is sent (its
  // size, then its frame), and consecutive messages mostly go to the same one — found without the map.
  #lastText = "";
  #lastBytes: Uint8Array = new Uint8Array(0);

  get(text: string): Uint8Array {
    if (text === this.#lastText) return this.#lastBytes;
    let bytes = this.#entries.get(text);
    if (bytes === undefined) {
      if (this.#entries.size >= 1024) this.#entries.clear();
      bytes = encoder.encode(text);
      this.#entries.set(text, bytes);
    }
    this.#lastText = text;
    this.#lastBytes = bytes;
    return bytes;
  }
}

function fieldSize(tagSize: number, value: number): number {
  return value === 0 ? 0 : tagSize + varintSize(value);
}

function bytesFieldSize(length: number): number {
  return length === 0 ? 0 : 1 + varintSize(length) + length;
}


/** Writes a varint field (nothing for 0, as proto3 does); returns the position after it. */
export function writeUint(buffer: Uint8Array, pos: number, field: number, value: number): number {
  if (value === 0) return pos;
  // Fields from 16 on have a two-byte tag.
  if (field < 16) buffer[pos++] = field << 3;
  else pos = writeVarint(buffer, pos, field << 3);
  return writeVarint(buffer, pos, value);
}

/** Writes a length-delimited field (nothing when empty); returns the position after it. */
export function writeBytes(buffer: Uint8Array, pos: number, field: number, bytes: Uint8Array): number {
  if (bytes.length === 0) return pos;
  buffer[pos++] = (field << 3) | 2;
  pos = writeVarint(buffer, pos, bytes.length);
  buffer.set(bytes, pos);
  return pos + bytes.length;
}


/** The fixed start of every envelope a sender writes: version, minor version, cluster, id, incarnation. */
export function encodeEnvelopeHeader(cluster: string, senderId: Uint8Array, incarnation: number): Uint8Array {
  const clusterBytes = encoder.encode(cluster);
  const size =
    fieldSize(1, PROTOCOL_VERSION) +
    fieldSize(1, PROTOCOL_MINOR_VERSION) +
    bytesFieldSize(clusterBytes.length) +
    bytesFieldSize(senderId.length) +
    fieldSize(1, incarnation);
  const header = new Uint8Array(size);
  let pos = writeUint(header, 0, 1, PROTOCOL_VERSION);
  pos = writeUint(header, pos, 2, PROTOCOL_MINOR_VERSION);
  pos = writeBytes(header, pos, 3, clusterBytes);
  pos = writeBytes(header, pos, 4, senderId);
  writeUint(header, pos, 5, incarnation);
  return header;
}

// Room kept in front of the first frame for the bundle's length. Datagrams are under 2^21 bytes, so
// the length takes at most 3 bytes.
const BUNDLE_LENGTH_ROOM = 3;

/**
 * Writes frames into one datagram: `[envelope header][bundle tag, length][frame]…`. Frames go straight
 * into the datagram's buffer; each `add…` returns the frame's bytes (a view), which a sender keeps for
 * retransmission. `finish()` completes the datagram; a new buffer is taken for the next one, so views
 * handed out stay valid.
 */
export class DatagramBuilder {
  readonly #header: Uint8Array;
  readonly #maxBytes: number;
  readonly #destinations = new Utf8Cache();
  // Datagrams are carved one after another from a slab: a small datagram (a request, an ack) costs no
  // allocation of its own, and views handed out stay valid because those bytes are never written again.
  #slab: Uint8Array;
  /** Where the current datagram's region begins in the slab. */
  #region = 0;
  #start: number;
  #pos: number;
  #frames = 0;

  constructor(header: Uint8Array, maxDatagramBytes: number = MAX_DATAGRAM_BYTES) {
    this.#header = header;
    this.#maxBytes = maxDatagramBytes;
    this.#slab = new Uint8Array(SLAB_DATAGRAMS * maxDatagramBytes);
    this.#start = this.#headerRoom();
    this.#pos = this.#start;
  }

  /** The largest encoded frame that fits in an otherwise empty datagram. */
  get maxFrameBytes(): number {
    const room = this.#maxBytes - this.#headerRoom();
    return room - 1 - varintSize(room);
  }

  /** The largest Data payload that fits in one frame of an otherwise empty datagram. */
  maxPayloadBytes(destination: string, overhead = 64): number {
    return this.#maxBytes - this.#headerRoom() - this.#destinations.get(destination).length - overhead;
  }

  /** How many bytes a frame for `data` takes inside a bundle. */
  dataFrameSize(data: DataFields): number {
    const size = dataSize(data, this.#destinations.get(data.destination));
    const frame = 2 + varintSize(size) + size;
    return 1 + varintSize(frame) + frame;
  }

  /** True when a frame of `frameBytes` (as from `dataFrameSize`) still fits in the current datagram. */
  fits(frameBytes: number): boolean {
    return this.#pos + frameBytes <= this.#region + this.#maxBytes;
  }

  /**
   * Appends a Data frame. The caller checks `fits` first (and finishes the datagram when it does not).
   * Returns the frame's bytes: `Frame` encoding, i.e. the Data tag, length and message.
   */
  addData(data: DataFields): Uint8Array {
    return this.tryAddData(data)!;
  }

  /**
   * Appends a Data frame when it fits in the current datagram, sizing it once; returns its bytes, or
   * undefined (and adds nothing) when the datagram is too full for it.
   */
  tryAddData(data: DataFields): Uint8Array | undefined {
    const destination = this.#destinations.get(data.destination);
    const size = dataSize(data, destination);
    const frameSize = 2 + varintSize(size) + size;
    if (this.#frames > 0 && this.#pos + 1 + varintSize(frameSize) + frameSize > this.#region + this.#maxBytes) return undefined;
    const buffer = this.#slab;
    let pos = this.#pos;
    buffer[pos++] = TAG_FRAME;
    pos = writeVarint(buffer, pos, frameSize);
    const frameStart = pos;
    buffer[pos++] = TAG_DATA[0];
    buffer[pos++] = TAG_DATA[1];
    pos = writeVarint(buffer, pos, size);
    pos = writeData(buffer, pos, data, destination);
    this.#pos = pos;
    this.#frames++;
    return buffer.subarray(frameStart, pos);
  }

  /**
   * Appends an Ack frame (the bytes `encodeAckFrame` gives for these fields), written in place, when it
   * fits in the current datagram; false (and nothing added) when the datagram is too full for it.
   */
  tryAddAck(stream: number, originId: Uint8Array, incarnation: number, cumulative: number, highestReceived: number): boolean {
    const pos = this.#pos;
    if (originId.length > MEMBER_ID_BYTES || (this.#frames > 0 && pos + 2 + MAX_ACK_FRAME_BYTES > this.#region + this.#maxBytes)) {
      // Near the end of a datagram (or an unusual id): whether it fits is worked out from its encoding.
      const frame = encodeAckFrame(stream, originId, incarnation, cumulative, highestReceived);
      if (this.#frames > 0 && !this.fits(DatagramBuilder.framedSize(frame.length))) return false;
      this.addFrame(frame);
      return true;
    }
    // The frame's length takes one byte (it is at most MAX_ACK_FRAME_BYTES): filled in after it.
    const buffer = this.#slab;
    buffer[pos] = TAG_FRAME;
    const end = writeAckFrame(buffer, pos + 2, stream, originId, incarnation, cumulative, highestReceived);
    buffer[pos + 1] = end - pos - 2;
    this.#pos = end;
    this.#frames++;
    return true;
  }

  /** Appends an already encoded frame (a retransmission, or a control message's `Frame` bytes). */
  addFrame(frame: Uint8Array): void {
    const buffer = this.#slab;
    let pos = this.#pos;
    buffer[pos++] = TAG_FRAME;
    pos = writeVarint(buffer, pos, frame.length);
    buffer.set(frame, pos);
    this.#pos = pos + frame.length;
    this.#frames++;
  }

  /** The bytes an encoded frame of `frameLength` takes in a bundle. */
  static framedSize(frameLength: number): number {
    return 1 + varintSize(frameLength) + frameLength;
  }

  /** Completes the datagram and returns its bytes, or undefined when no frame was added. */
  finish(): Uint8Array | undefined {
    if (this.#frames === 0) return undefined;
    const bodyLength = this.#pos - this.#start;
    const lengthSize = varintSize(bodyLength);
    const begin = this.#start - lengthSize - TAG_BUNDLE.length - this.#header.length;
    const buffer = this.#slab;
    buffer.set(this.#header, begin);
    let pos = begin + this.#header.length;
    buffer[pos++] = TAG_BUNDLE[0];
    buffer[pos++] = TAG_BUNDLE[1];
    writeVarint(buffer, pos, bodyLength);
    const datagram = buffer.subarray(begin, this.#pos);
    // The next datagram starts where this one ended; a fresh slab when a full datagram no longer fits.
    this.#region = this.#pos;
    if (this.#slab.length - this.#region < this.#maxBytes) {
      this.#slab = new Uint8Array(SLAB_DATAGRAMS * this.#maxBytes);
      this.#region = 0;
    }
    this.#start = this.#region + this.#headerRoom();
    this.#pos = this.#start;
    this.#frames = 0;
    return datagram;
  }

  #headerRoom(): number {
    return this.#header.length + TAG_BUNDLE.length + BUNDLE_LENGTH_ROOM;
  }
}

// How many full datagrams one slab holds: two, so that small datagrams share one for a while.
const SLAB_DATAGRAMS = 2;

// Where a refusal finds a bundle's Data frame: the first places' names made once, up front, not for every
// datagram read (a bundle of more frames is rare, and its names are made when needed).
const BUNDLE_DATA_PATHS: readonly string[] = Array.from({ length: 16 }, (_, index) => `bundle.frames[${index}].data`);
function bundleDataPath(index: number): string {
  return index < BUNDLE_DATA_PATHS.length ? BUNDLE_DATA_PATHS[index]! : `bundle.frames[${index}].data`;
}

/** An empty byte array, shared. */
export const NO_BYTES: Uint8Array = new Uint8Array(0);

const FRAME_CODEC = fastCodec(FrameSchema);

/** The bytes of a frame of `kind` (an initializer: no need to create its messages first). */
export function encodeFrame(kind: MessageInitShape<typeof FrameSchema>["kind"] | Frame["kind"]): Uint8Array {
  return FRAME_CODEC.encode({ kind } as MessageInitShape<typeof FrameSchema>);
}

/** The clear header of an envelope, read by hand: its sender, the sender's incarnation, where it ends. */
export interface ClearHeader {
  readonly senderId: Uint8Array;
  readonly incarnation: number;
  /** Where the first field after the header's starts. */
  readonly end: number;
}

/**
 * Reads the header fields (1 to 5) that start an envelope as members write it — each once, this
 * protocol version, the cluster `cluster`, a whole member id — up to the first field of another
 * number. Undefined for anything else: the generated decoder has the last word on it. Plain and
 * sealed datagrams start alike, so both readers start here.
 */
export function readEnvelopeHeader(bytes: Uint8Array, cluster: Uint8Array): ClearHeader | undefined {
  const cursor = new ByteCursor(bytes, 0, bytes.length);
  let version = 0;
  let clusterMatches = false;
  let senderId: Uint8Array | undefined;
  let incarnation = 0;
  let seen = 0;
  let end = 0;
  while (end < bytes.length) {
    const tag = cursor.varint();
    const field = tag >>> 3;
    if (field > 5) break;
    // Each field once: a repeated one has merge semantics the generated decoder owns.
    if (seen & (1 << field)) return undefined;
    seen |= 1 << field;
    switch (tag) {
      case (1 << 3) | 0:
        version = cursor.varint();
        break;
      case (2 << 3) | 0:
        cursor.varint();
        break;
      case (3 << 3) | 2: {
        const fieldEnd = cursor.delimitedEnd();
        clusterMatches = sameBytes(bytes, cursor.pos, fieldEnd, cluster);
        cursor.pos = fieldEnd;
        break;
      }
      case (4 << 3) | 2:
        senderId = cursor.delimitedBytes();
        break;
      case (5 << 3) | 0:
        incarnation = cursor.varint();
        break;
      default:
        return undefined;
    }
    if (cursor.failed) return undefined;
    end = cursor.pos;
  }
  if (version !== PROTOCOL_VERSION || !clusterMatches || senderId?.length !== MEMBER_ID_BYTES) return undefined;
  return { senderId, incarnation, end };
}

/** A clear header read by a `ClearHeaderReader`, with its bytes (a copy, shared by every datagram that starts with them). */
export interface ReadHeader extends ClearHeader {
  readonly bytes: Uint8Array;
}

/**
 * Reads clear headers (`readEnvelopeHeader`) for one receiver, remembering the last one: consecutive
 * datagrams mostly come from the same sender, and one that begins with the bytes of the last header
 * read has that header (what follows is the body's to judge). Plain and sealed datagrams alike.
 */
export class ClearHeaderReader {
  readonly #cluster: Uint8Array;
  #last: ReadHeader | undefined;

  constructor(cluster: string) {
    this.#cluster = encoder.encode(cluster);
  }

  read(bytes: Uint8Array): ReadHeader | undefined {
    const last = this.#last;
    if (last !== undefined && bytes.length >= last.end && sameBytes(bytes, 0, last.end, last.bytes)) return last;
    const header = readEnvelopeHeader(bytes, this.#cluster);
    if (header === undefined) return undefined;
    const copy = bytes.slice(0, header.end);
    const idStart = header.senderId.byteOffset - bytes.byteOffset;
    this.#last = { senderId: copy.subarray(idStart, idStart + header.senderId.length), incarnation: header.incarnation, end: header.end, bytes: copy };
    return this.#last;
  }
}

/** An envelope in two parts: its header, read already, and its body (one body field). */
export interface SplitEnvelope {
  /** The header's bytes: the envelope is these followed by `body`. */
  readonly header: Uint8Array;
  readonly senderId: Uint8Array;
  readonly incarnation: number;
  readonly body: Uint8Array;
}

/** An envelope from its header's bytes and its body's. */
export function plainEnvelope(header: Uint8Array, body: Uint8Array): Uint8Array {
  const plain = new Uint8Array(header.length + body.length);
  plain.set(header);
  plain.set(body, header.length);
  return plain;
}

/**
 * Reads datagrams for one receiver: the checks of `decodeEnvelope` (same order, same reasons), with
 * user data read by hand and everything unusual left to the generated decoder. Never throws.
 */
export class DatagramReader {
  readonly #context: EnvelopeContext;
  readonly #maxBytes: number;
  #lastDestinationBytes: Uint8Array = NO_BYTES;
  #lastDestination = "";
  #lastTarget: Uint8Array = NO_BYTES;
  readonly #headers: ClearHeaderReader;
  readonly #handReaders: HandReaders | undefined;

  /** `handReaders`: the hand readers of the channel it reads for (without, every frame is decoded). */
  constructor(context: EnvelopeContext, handReaders?: HandReaders) {
    this.#context = context;
    this.#handReaders = handReaders;
    this.#headers = new ClearHeaderReader(context.cluster);
    this.#maxBytes = context.maxDatagramBytes ?? MAX_DATAGRAM_BYTES;
  }

  read(bytes: Uint8Array): ReceiveResult {
    if (bytes.length > this.#maxBytes) {
      return { ok: false, reason: "OVERSIZE", detail: `datagram of ${bytes.length} bytes exceeds the limit of ${this.#maxBytes}` };
    }
    return this.#readFast(bytes) ?? this.#readGenerated(bytes);
  }

  /**
   * Reads an envelope whose header was read already (a sealed datagram's, read with its seal), its body
   * apart: no copy of the two into one envelope, and no second reading of the header.
   */
  readSplit(split: SplitEnvelope): ReceiveResult {
    return this.#readBody(split.body, 0, split) ?? this.#readGenerated(plainEnvelope(split.header, split.body));
  }

  // Undefined means "not the usual shape": the generated decoder decides.
  #readFast(bytes: Uint8Array): ReceiveResult | undefined {
    const header = this.#headers.read(bytes);
    return header === undefined ? undefined : this.#readBody(bytes, header.end, header);
  }

  // The body that follows a header: one Data or one Bundle field, up to the end.
  #readBody(bytes: Uint8Array, start: number, header: { readonly senderId: Uint8Array; readonly incarnation: number }): ReceiveResult | undefined {
    const cursor = new ByteCursor(bytes, start, bytes.length);
    const tag = cursor.varint();
    const end = cursor.delimitedEnd();
    if (cursor.failed || end !== bytes.length) return undefined;
    let frames: ReceivedFrame[] | undefined;
    if (tag === ((16 << 3) | 2)) {
      const data = readData(bytes, cursor.pos, end, this.#readDestination, this.#readTarget);
      frames = data === undefined ? undefined : [data];
    } else if (tag === ((17 << 3) | 2)) {
      frames = this.#readBundle(bytes, cursor.pos, end);
    }
    if (frames === undefined) return undefined;
    const bundled = tag !== ((16 << 3) | 2);
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i]!;
      if (frame.case === "data") {
        const refusal = validateData(frame, bundled ? bundleDataPath(i) : "data");
        if (refusal !== undefined) return { ok: false, ...refusal };
      }
    }
    return { ok: true, datagram: { senderId: header.senderId, incarnation: header.incarnation, frames } };
  }

  #readBundle(bytes: Uint8Array, start: number, end: number): ReceivedFrame[] | undefined {
    const cursor = new ByteCursor(bytes, start, end);
    const frames: ReceivedFrame[] = [];
    while (cursor.pos < end) {
      if (cursor.varint() !== TAG_FRAME) return undefined;
      const frameEnd = cursor.delimitedEnd();
      if (cursor.failed) return undefined;
      const frameStart = cursor.pos;
      if (isAckFrame(bytes, frameStart, frameEnd)) {
        const frame = readAckFrame(bytes, frameStart, frameEnd);
        if (frame === undefined) return undefined;
        frames.push({ case: "ack", frame });
      } else if (frameEnd - frameStart > 2 && bytes[frameStart] === TAG_DATA[0] && bytes[frameStart + 1] === TAG_DATA[1]) {
        cursor.pos = frameStart + 2;
        const dataEnd = cursor.delimitedEnd();
        if (dataEnd !== frameEnd) return undefined;
        const data = readData(bytes, cursor.pos, dataEnd, this.#readDestination, this.#readTarget);
        if (data === undefined) return undefined;
        frames.push(data);
      } else {
        const hand = this.#handReaders?.read(bytes, frameStart, frameEnd);
        if (hand !== undefined) {
          frames.push(hand);
          cursor.pos = frameEnd;
          continue;
        }
        let frame: Frame;
        try {
          frame = FRAME_CODEC.decode(bytes, frameStart, frameEnd);
        } catch {
          // Malformed, or a number past the protocol's limit: the generated path refuses it with its reason.
          return undefined;
        }
        // Unusual shapes go to the generated path too.
        if (frame.kind.case === undefined || frame.kind.case === "data") return undefined;
        frames.push({ case: frame.kind.case, frame });
      }
      cursor.pos = frameEnd;
    }
    return frames;
  }

  // Topics repeat from one message to the next; decode a name once.
  readonly #readDestination = (bytes: Uint8Array, start: number, end: number): string | undefined => this.#destination(bytes, start, end);

  #destination(bytes: Uint8Array, start: number, end: number): string | undefined {
    if (sameBytes(bytes, start, end, this.#lastDestinationBytes)) return this.#lastDestination;
    const view = bytes.subarray(start, end);
    const text = decodeUtf8(view);
    if (text !== undefined) {
      this.#lastDestinationBytes = view.slice();
      this.#lastDestination = text;
    }
    return text;
  }

  // A Data's target is this member's id, or one id of a few: the copy made for the last one is handed
  // out again while the bytes are the same, instead of a view into every datagram (receivers only keep
  // it or measure it).
  readonly #readTarget = (bytes: Uint8Array, start: number, end: number): Uint8Array => {
    if (sameBytes(bytes, start, end, this.#lastTarget)) return this.#lastTarget;
    this.#lastTarget = bytes.slice(start, end);
    return this.#lastTarget;
  };

  #readGenerated(bytes: Uint8Array): ReceiveResult {
    const result = decodeEnvelope(bytes, this.#context);
    if (!result.ok) return result;
    return fromEnvelope(result.envelope);
  }
}

function fromEnvelope(envelope: Envelope): ReceiveResult {
  const incarnation = toSafeNumber(envelope.incarnation);
  if (incarnation === undefined) return { ok: false, reason: "INVALID_FIELD", detail: "incarnation beyond 2^53" };
  const body = envelope.body;
  const generated: Frame[] =
    body.case === "bundle" ? body.value.frames : [create(FrameSchema, { kind: body as Frame["kind"] })];
  const frames: ReceivedFrame[] = [];
  for (const frame of generated) {
    const kind = frame.kind;
    if (kind.case === "data") {
      const data = toDataFields(kind.value);
      if (data === undefined) return { ok: false, reason: "INVALID_FIELD", detail: "data number beyond 2^53" };
      frames.push(data);
    } else if (kind.case !== undefined) {
      frames.push({ case: kind.case, frame });
    }
  }
  return { ok: true, datagram: { senderId: envelope.senderId, incarnation, frames } };
}

/** Converts generated Data to hot-path form; undefined when a number is past 2^53. */
export function toDataFields(data: Data): DataFields | undefined {
  const seq = toSafeNumber(data.seq);
  const requestId = toSafeNumber(data.requestId);
  const globalSeq = toSafeNumber(data.globalSeq);
  const ringSeq = toSafeNumber(data.ringSeq);
  const targetIncarnation = toSafeNumber(data.targetIncarnation);
  const streamFloor = toSafeNumber(data.streamFloor);
  if (
    seq === undefined ||
    requestId === undefined ||
    globalSeq === undefined ||
    ringSeq === undefined ||
    targetIncarnation === undefined ||
    streamFloor === undefined
  ) {
    return undefined;
  }
  return {
    case: "data",
    seq,
    addressing: data.addressing,
    destination: data.destination,
    targetId: data.targetId,
    outOfBand: data.outOfBand,
    fragmentIndex: data.fragmentIndex,
    fragmentCount: data.fragmentCount,
    messageLength: data.messageLength,
    requestId,
    format: data.format,
    payload: data.payload,
    globalSeq,
    ringSeq,
    safe: data.safe,
    targetIncarnation,
    streamFloor,
  };
}

/** Converts hot-path Data to the generated message (for tests and tools). */
export function toData(fields: DataFields): Data {
  const { case: _data, ...rest } = fields;
  return create(DataSchema, {
    ...rest,
    seq: BigInt(fields.seq),
    requestId: BigInt(fields.requestId),
    globalSeq: BigInt(fields.globalSeq),
    ringSeq: BigInt(fields.ringSeq),
    targetIncarnation: BigInt(fields.targetIncarnation),
    streamFloor: BigInt(fields.streamFloor),
  });
}

function toSafeNumber(value: bigint): number | undefined {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}

/** The stream an Ack or Nack frame refers to (undefined for other kinds). */
export function streamOf(frame: Frame): number | undefined {
  const kind = frame.kind;
  return kind.case === "nack" || kind.case === "ack" ? kind.value.stream : undefined;
}

/** The group a Leave frame names ("" for a channel-level goodbye; undefined for other kinds). */
export function leaveGroupOf(frame: Frame): string | undefined {
  return frame.kind.case === "leave" ? frame.kind.value.group : undefined;
}
