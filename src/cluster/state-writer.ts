import { ChangeKind } from "../../gen/activeblaze/v1/cluster_pb.ts";
import { writeIdOf } from "../reliable/member-key.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { allocate } from "../wire/fast-codec.ts";
import { utf8Length, varintSize, writeUtf8, writeVarint } from "../wire/varint.ts";
import type { Change, MemberInstance, OrderedRequest, StateAck, StateRequest, Update } from "./state-types.ts";

/**
 * The state frames every write sends, written by hand: a writer's request, the coordinator's update,
 * a follower's acknowledgement. The schema's codec walks a plan of the message field by field and
 * wants its initializer built first (with bigints); these write the map's own forms straight into the
 * frame's bytes. The bytes are exactly those the schema's codec writes (fields in number order,
 * implicit defaults left out, message fields written when set), which the tests check; the rarer
 * forms (a request of another kind, an acknowledgement that answers a prepare) go through it.
 *
 * Each message has a size function and a writer. The sizes of an update's changes and entries, and of
 * its batched requests, are measured once: the size functions keep them in {@link nestedSizes} in the
 * order their messages are written, and the writers take them from there in that order (an update
 * holds hundreds of changes, each of which its writer would otherwise measure three times over). The
 * smaller messages (a member reference, a lock) are measured again by their writers.
 */

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

// The Frame fields of the kinds written here.
const FRAME_STATE_REQUEST = 48;
const FRAME_STATE_UPDATE = 50;
const FRAME_STATE_ACK = 53;

/**
 * The sizes of the nested messages of the frame being written, each kept by its size function (a slot
 * taken before its fields are measured, so a message comes before the messages inside it) and read
 * back by its writer, in the same order, through {@link nextNestedSize}. Cleared for every frame.
 */
const nestedSizes: number[] = [];
let nestedRead = 0;

/** Takes a slot for a message's size before its fields are measured. */
function takeSizeSlot(): number {
  nestedSizes.push(0);
  return nestedSizes.length - 1;
}

/** The next size kept by the size functions, for the writer of the next nested message. */
function nextNestedSize(): number {
  return nestedSizes[nestedRead++]!;
}

function clearNestedSizes(): void {
  nestedSizes.length = 0;
  nestedRead = 0;
}

// --- fields ---

function tagSize(no: number): number {
  return no < 16 ? 1 : 2;
}

function writeTag(buffer: Uint8Array, pos: number, no: number, wire: number): number {
  const tag = (no << 3) | wire;
  if (tag < 0x80) {
    buffer[pos] = tag;
    return pos + 1;
  }
  buffer[pos] = (tag & 0x7f) | 0x80;
  buffer[pos + 1] = tag >>> 7;
  return pos + 2;
}

/** A uint64 field's value, refused as the schema's codec refuses it. */
function uint(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`cannot encode a state frame: ${value} is not a uint64`);
  return value;
}

function uintSize(no: number, value: number): number {
  return uint(value) === 0 ? 0 : tagSize(no) + varintSize(value);
}

function writeUintField(buffer: Uint8Array, pos: number, no: number, value: number): number {
  if (value === 0) return pos;
  return writeVarint(buffer, writeTag(buffer, pos, no, WIRE_VARINT), value);
}

/** An enum (int32) field: a negative value takes ten bytes, as int32 does on the wire. */
function enumSize(no: number, value: number): number {
  if ((value | 0) !== value) throw new Error(`cannot encode a state frame: ${value} is not an int32`);
  return value === 0 ? 0 : tagSize(no) + (value < 0 ? 10 : varintSize(value));
}

function writeEnumField(buffer: Uint8Array, pos: number, no: number, value: number): number {
  if (value === 0) return pos;
  pos = writeTag(buffer, pos, no, WIRE_VARINT);
  if (value >= 0) return writeVarint(buffer, pos, value);
  // Two's complement over 64 bits: the low 32 bits, then ones.
  let low = value >>> 0;
  for (let i = 0; i < 4; i++) {
    buffer[pos++] = (low & 0x7f) | 0x80;
    low >>>= 7;
  }
  buffer[pos++] = (low & 0x0f) | 0x70 | 0x80;
  for (let i = 0; i < 4; i++) buffer[pos++] = 0xff;
  buffer[pos++] = 0x01;
  return pos;
}

function boolSize(no: number, value: boolean): number {
  return value ? tagSize(no) + 1 : 0;
}

function writeBoolField(buffer: Uint8Array, pos: number, no: number, value: boolean): number {
  if (!value) return pos;
  pos = writeTag(buffer, pos, no, WIRE_VARINT);
  buffer[pos] = 1;
  return pos + 1;
}

/** A length-delimited field of `length` bytes, written even when empty (a message field that is set). */
function delimitedSize(no: number, length: number): number {
  return tagSize(no) + varintSize(length) + length;
}

function stringSize(no: number, text: string): number {
  return text === "" ? 0 : delimitedSize(no, utf8Length(text));
}

function writeStringField(buffer: Uint8Array, pos: number, no: number, text: string): number {
  if (text === "") return pos;
  const length = utf8Length(text);
  pos = writeVarint(buffer, writeTag(buffer, pos, no, WIRE_LEN), length);
  return writeUtf8(buffer, pos, text, length);
}

function bytesSize(no: number, bytes: Uint8Array): number {
  return bytes.length === 0 ? 0 : delimitedSize(no, bytes.length);
}

function writeBytesField(buffer: Uint8Array, pos: number, no: number, bytes: Uint8Array): number {
  if (bytes.length === 0) return pos;
  pos = writeVarint(buffer, writeTag(buffer, pos, no, WIRE_LEN), bytes.length);
  buffer.set(bytes, pos);
  return pos + bytes.length;
}

/** A member id field from its key ("" — no member — leaves it out). */
function idSize(no: number, key: PeerKey): number {
  return key === "" ? 0 : delimitedSize(no, key.length >> 1);
}

function writeIdField(buffer: Uint8Array, pos: number, no: number, key: PeerKey): number {
  if (key === "") return pos;
  pos = writeVarint(buffer, writeTag(buffer, pos, no, WIRE_LEN), key.length >> 1);
  return writeIdOf(key, buffer, pos);
}

// --- messages ---

/** MemberRef { bytes id = 1; uint64 incarnation = 2; } */
function refSize(member: MemberInstance): number {
  return idSize(1, member.id) + uintSize(2, member.incarnation);
}

function writeRefField(buffer: Uint8Array, pos: number, no: number, member: MemberInstance): number {
  pos = writeVarint(buffer, writeTag(buffer, pos, no, WIRE_LEN), refSize(member));
  pos = writeIdField(buffer, pos, 1, member.id);
  return writeUintField(buffer, pos, 2, member.incarnation);
}

/**
 * The Entry of a change: a put's entry (its owner left out when it is the request's requester), or
 * the key alone (a remove, an unlock), or the key with its LockState (a lock).
 */
function entrySize(change: Change, requester: MemberInstance | undefined): number {
  const slot = takeSizeSlot();
  return (nestedSizes[slot] = measureEntry(change, requester));
}

function measureEntry(change: Change, requester: MemberInstance | undefined): number {
  switch (change.kind) {
    case "put": {
      const entry = change.entry;
      return (
        stringSize(1, entry.key) +
        bytesSize(2, entry.value) +
        enumSize(3, entry.format) +
        uintSize(4, entry.version) +
        (ownerShown(change, requester) ? delimitedSize(5, refSize(entry.owner)) : 0) +
        boolSize(6, entry.removeOnExit) +
        uintSize(7, entry.ttlMs)
      );
    }
    case "lock":
      return stringSize(1, change.lock.key) + delimitedSize(8, lockSize(change));
    case "remove":
    case "unlock":
      return stringSize(1, change.key);
    case "clear":
      return 0;
  }
}

function writeEntryField(buffer: Uint8Array, pos: number, no: number, change: Change, requester: MemberInstance | undefined): number {
  pos = writeVarint(buffer, writeTag(buffer, pos, no, WIRE_LEN), nextNestedSize());
  switch (change.kind) {
    case "put": {
      const entry = change.entry;
      pos = writeStringField(buffer, pos, 1, entry.key);
      pos = writeBytesField(buffer, pos, 2, entry.value);
      pos = writeEnumField(buffer, pos, 3, entry.format);
      pos = writeUintField(buffer, pos, 4, entry.version);
      if (ownerShown(change, requester)) pos = writeRefField(buffer, pos, 5, entry.owner);
      pos = writeBoolField(buffer, pos, 6, entry.removeOnExit);
      return writeUintField(buffer, pos, 7, entry.ttlMs);
    }
    case "lock": {
      pos = writeStringField(buffer, pos, 1, change.lock.key);
      return writeLockField(buffer, pos, 8, change);
    }
    case "remove":
    case "unlock":
      return writeStringField(buffer, pos, 1, change.key);
    case "clear":
      return pos;
  }
}

/** A put's entry names its owner unless it is the request's requester. */
function ownerShown(change: Change & { kind: "put" }, requester: MemberInstance | undefined): boolean {
  const owner = change.entry.owner;
  return requester === undefined || owner.id !== requester.id || owner.incarnation !== requester.incarnation;
}

/** LockState { MemberRef holder = 1; uint64 fencing_token = 2; uint64 lease_remaining_ms = 3; bool release_on_exit = 4; } */
function lockSize(change: Change & { kind: "lock" }): number {
  const lock = change.lock;
  return delimitedSize(1, refSize(lock.holder)) + uintSize(2, lock.token) + uintSize(3, lock.leaseMs) + boolSize(4, lock.releaseOnExit);
}

function writeLockField(buffer: Uint8Array, pos: number, no: number, change: Change & { kind: "lock" }): number {
  const lock = change.lock;
  pos = writeVarint(buffer, writeTag(buffer, pos, no, WIRE_LEN), lockSize(change));
  pos = writeRefField(buffer, pos, 1, lock.holder);
  pos = writeUintField(buffer, pos, 2, lock.token);
  pos = writeUintField(buffer, pos, 3, lock.leaseMs);
  return writeBoolField(buffer, pos, 4, lock.releaseOnExit);
}

const CHANGE_KINDS = { remove: ChangeKind.REMOVE, lock: ChangeKind.LOCK, unlock: ChangeKind.UNLOCK, clear: ChangeKind.CLEAR } as const;

function changeKind(change: Change): ChangeKind {
  return change.kind === "put" ? (change.inserted ? ChangeKind.INSERT : ChangeKind.UPDATE) : CHANGE_KINDS[change.kind];
}

/** EntryChange { ChangeKind kind = 1; Entry entry = 2; bool expired = 3; } */
function changeSize(change: Change, requester: MemberInstance | undefined): number {
  const slot = takeSizeSlot();
  const expired = change.kind === "remove" || change.kind === "unlock" ? change.expired : false;
  return (nestedSizes[slot] = enumSize(1, changeKind(change)) + (change.kind === "clear" ? 0 : delimitedSize(2, entrySize(change, requester))) + boolSize(3, expired));
}

function writeChangeField(buffer: Uint8Array, pos: number, no: number, change: Change, requester: MemberInstance | undefined): number {
  pos = writeVarint(buffer, writeTag(buffer, pos, no, WIRE_LEN), nextNestedSize());
  pos = writeEnumField(buffer, pos, 1, changeKind(change));
  if (change.kind !== "clear") pos = writeEntryField(buffer, pos, 2, change, requester);
  return writeBoolField(buffer, pos, 3, change.kind === "remove" || change.kind === "unlock" ? change.expired : false);
}

function changesSize(no: number, request: OrderedRequest): number {
  let size = 0;
  for (const change of request.changes) size += delimitedSize(no, changeSize(change, request.requester));
  return size;
}

function writeChanges(buffer: Uint8Array, pos: number, no: number, request: OrderedRequest): number {
  for (const change of request.changes) pos = writeChangeField(buffer, pos, no, change, request.requester);
  return pos;
}

/** BatchedRequest { uint64 request_id = 1; MemberRef requester = 2; repeated EntryChange changes = 3; } */
function batchedSize(request: OrderedRequest): number {
  const slot = takeSizeSlot();
  return (nestedSizes[slot] = uintSize(1, request.requestId) + (request.requester === undefined ? 0 : delimitedSize(2, refSize(request.requester))) + changesSize(3, request));
}

/** A frame of `body` bytes: its Frame field's tag and length, then the body. */
function frameBytes(no: number, body: number): { readonly bytes: Uint8Array; readonly pos: number } {
  const bytes = allocate(delimitedSize(no, body));
  return { bytes, pos: writeVarint(bytes, writeTag(bytes, 0, no, WIRE_LEN), body) };
}

function finished(bytes: Uint8Array, end: number): Uint8Array {
  if (end !== bytes.length) throw new Error(`a state frame: wrote ${end} bytes of ${bytes.length}`);
  return bytes;
}

// --- frames ---

/** The StateUpdate frame of an update (see encodeUpdate). */
export function writeUpdateFrame(group: string, update: Update, leaseProbe: number, termBegun: boolean): Uint8Array {
  const requests = update.requests;
  const first = requests[0];
  clearNestedSizes();
  let size =
    uintSize(1, update.epoch) +
    uintSize(2, update.index) +
    stringSize(3, group) +
    uintSize(4, first?.requestId ?? 0) +
    (first?.requester === undefined ? 0 : delimitedSize(5, refSize(first.requester))) +
    (first === undefined ? 0 : changesSize(6, first)) +
    idSize(7, update.coordinator) +
    uintSize(9, update.tokenCeiling) +
    uintSize(10, leaseProbe) +
    boolSize(13, termBegun);
  for (let i = 1; i < requests.length; i++) size += delimitedSize(8, batchedSize(requests[i]!));
  for (const member of update.forget) size += delimitedSize(12, refSize(member));
  const { bytes, pos: start } = frameBytes(FRAME_STATE_UPDATE, size);
  let pos = writeUintField(bytes, start, 1, update.epoch);
  pos = writeUintField(bytes, pos, 2, update.index);
  pos = writeStringField(bytes, pos, 3, group);
  pos = writeUintField(bytes, pos, 4, first?.requestId ?? 0);
  if (first?.requester !== undefined) pos = writeRefField(bytes, pos, 5, first.requester);
  if (first !== undefined) pos = writeChanges(bytes, pos, 6, first);
  pos = writeIdField(bytes, pos, 7, update.coordinator);
  for (let i = 1; i < requests.length; i++) {
    const request = requests[i]!;
    pos = writeVarint(bytes, writeTag(bytes, pos, 8, WIRE_LEN), nextNestedSize());
    pos = writeUintField(bytes, pos, 1, request.requestId);
    if (request.requester !== undefined) pos = writeRefField(bytes, pos, 2, request.requester);
    pos = writeChanges(bytes, pos, 3, request);
  }
  pos = writeUintField(bytes, pos, 9, update.tokenCeiling);
  pos = writeUintField(bytes, pos, 10, leaseProbe);
  for (const member of update.forget) pos = writeRefField(bytes, pos, 12, member);
  pos = writeBoolField(bytes, pos, 13, termBegun);
  if (nestedRead !== nestedSizes.length) throw new Error(`a state frame: wrote ${nestedRead} nested messages of ${nestedSizes.length}`);
  clearNestedSizes();
  return finished(bytes, pos);
}

/**
 * The StateAck frame of an acknowledgement or notice (see encodeAck), or undefined for one that
 * answers a prepare (it names the view and the accepted term's members: the schema's codec writes it).
 */
export function writeAckFrame(group: string, ack: StateAck): Uint8Array | undefined {
  if (ack.view !== undefined) return undefined;
  const { position, accepted, promised } = ack;
  if ((ack.snapshotChunks >>> 0) !== ack.snapshotChunks) throw new Error(`cannot encode a state frame: ${ack.snapshotChunks} is not a uint32`);
  const size =
    stringSize(1, group) +
    uintSize(2, position.epoch) +
    uintSize(3, position.index) +
    uintSize(5, ack.tokenCeiling) +
    uintSize(6, accepted.epoch) +
    boolSize(7, ack.ready) +
    idSize(8, position.coordinator) +
    uintSize(9, ack.highestSeen) +
    uintSize(10, ack.leaseProbe) +
    uintSize(11, ack.snapshotTransfer) +
    uintSize(12, ack.snapshotChunks) +
    idSize(13, accepted.coordinator) +
    uintSize(15, promised.epoch) +
    idSize(16, promised.coordinator) +
    // Field 17, reads_entry_block, is always set.
    boolSize(17, true);
  const { bytes, pos: start } = frameBytes(FRAME_STATE_ACK, size);
  let pos = writeStringField(bytes, start, 1, group);
  pos = writeUintField(bytes, pos, 2, position.epoch);
  pos = writeUintField(bytes, pos, 3, position.index);
  pos = writeUintField(bytes, pos, 5, ack.tokenCeiling);
  pos = writeUintField(bytes, pos, 6, accepted.epoch);
  pos = writeBoolField(bytes, pos, 7, ack.ready);
  pos = writeIdField(bytes, pos, 8, position.coordinator);
  pos = writeUintField(bytes, pos, 9, ack.highestSeen);
  pos = writeUintField(bytes, pos, 10, ack.leaseProbe);
  pos = writeUintField(bytes, pos, 11, ack.snapshotTransfer);
  pos = writeUintField(bytes, pos, 12, ack.snapshotChunks);
  pos = writeIdField(bytes, pos, 13, accepted.coordinator);
  pos = writeUintField(bytes, pos, 15, promised.epoch);
  pos = writeIdField(bytes, pos, 16, promised.coordinator);
  pos = writeBoolField(bytes, pos, 17, true);
  return finished(bytes, pos);
}

/** The StateRequest frame of a put, remove, lock or unlock (see encodeRequest); undefined for the other kinds. */
export function writeRequestFrame(group: string, request: StateRequest): Uint8Array | undefined {
  const op = request.op;
  let opNo: number;
  let opSize: number;
  switch (op.case) {
    case "put": {
      const put = op.put;
      opNo = 3;
      opSize =
        stringSize(1, put.key) +
        bytesSize(2, put.value) +
        enumSize(3, put.format) +
        uintSize(4, put.ttlMs) +
        boolSize(5, put.removeOnExit) +
        // Field 6, if_version, is optional: written when given, 0 too.
        (put.ifVersion === undefined ? 0 : 1 + varintSize(uint(put.ifVersion))) +
        uintSize(7, put.fencingToken);
      break;
    }
    case "remove": {
      const remove = op.remove;
      opNo = 4;
      opSize = stringSize(1, remove.key) + (remove.ifVersion === undefined ? 0 : 1 + varintSize(uint(remove.ifVersion))) + uintSize(3, remove.fencingToken);
      break;
    }
    case "lock":
      opNo = 7;
      opSize = stringSize(1, op.key) + uintSize(2, op.leaseMs) + uintSize(3, op.waitMs) + boolSize(4, op.releaseOnExit);
      break;
    case "unlock":
      opNo = 8;
      opSize = stringSize(1, op.key) + uintSize(2, op.fencingToken);
      break;
    default:
      return undefined;
  }
  const size = uintSize(1, request.requestId) + stringSize(2, group) + delimitedSize(opNo, opSize);
  const { bytes, pos: start } = frameBytes(FRAME_STATE_REQUEST, size);
  let pos = writeUintField(bytes, start, 1, request.requestId);
  pos = writeStringField(bytes, pos, 2, group);
  pos = writeVarint(bytes, writeTag(bytes, pos, opNo, WIRE_LEN), opSize);
  switch (op.case) {
    case "put": {
      const put = op.put;
      pos = writeStringField(bytes, pos, 1, put.key);
      pos = writeBytesField(bytes, pos, 2, put.value);
      pos = writeEnumField(bytes, pos, 3, put.format);
      pos = writeUintField(bytes, pos, 4, put.ttlMs);
      pos = writeBoolField(bytes, pos, 5, put.removeOnExit);
      if (put.ifVersion !== undefined) pos = writeVarint(bytes, writeTag(bytes, pos, 6, WIRE_VARINT), put.ifVersion);
      pos = writeUintField(bytes, pos, 7, put.fencingToken);
      break;
    }
    case "remove": {
      const remove = op.remove;
      pos = writeStringField(bytes, pos, 1, remove.key);
      if (remove.ifVersion !== undefined) pos = writeVarint(bytes, writeTag(bytes, pos, 2, WIRE_VARINT), remove.ifVersion);
      pos = writeUintField(bytes, pos, 3, remove.fencingToken);
      break;
    }
    case "lock":
      pos = writeStringField(bytes, pos, 1, op.key);
      pos = writeUintField(bytes, pos, 2, op.leaseMs);
      pos = writeUintField(bytes, pos, 3, op.waitMs);
      pos = writeBoolField(bytes, pos, 4, op.releaseOnExit);
      break;
    case "unlock":
      pos = writeStringField(bytes, pos, 1, op.key);
      pos = writeUintField(bytes, pos, 2, op.fencingToken);
      break;
  }
  return finished(bytes, pos);
}
