import { keyOf } from "../reliable/member-key.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { sameBytes } from "../wire/bytes.ts";
import { MEMBER_ID_BYTES } from "../wire/limits.ts";
import { MAX_COUNTER } from "../wire/safe-integers.ts";
import { ByteCursor, readUtf8 } from "../wire/varint.ts";
import {
  type Change,
  type EpochPromise,
  type MemberInstance,
  type OrderedRequest,
  putEntrySpec,
  type PutSpec,
  type RemoveSpec,
  type StateAck,
  type StateOp,
  type Term,
} from "./state-types.ts";
import type { StateFrame } from "./state-wire.ts";

/**
 * The state frames every write receives, read by hand: a writer's request (put, remove, lock, unlock, a
 * batch), the coordinator's update (and its announcement), a follower's acknowledgement. The schema's
 * codec builds a generated message of each, bigints and all, which state-wire.ts then converts; these
 * read the bytes straight into the map's own forms.
 *
 * A reader gives exactly what decoding with the schema's codec and converting (decodeStateFrame) gives,
 * or undefined when the bytes are not the usual shape: a field repeated, unknown or of another wire type,
 * fields out of the order the writers use where one depends on another, a number past MAX_COUNTER, a
 * member id that is not 16 bytes, a change or operation of a rarer kind, truncated or garbled bytes. The
 * schema's codec then has the last word (it refuses what does not decode; the conversion refuses what
 * breaks the map's rules), so a reader never has to get a refusal right.
 *
 * Member ids and instances are handed out from the caches below, which the conversion shares: an
 * update names the same few members over and over.
 */

// --- the members named lately (shared with state-wire.ts's conversion) ---

/**
 * The keys of the member ids read lately: state frames name a few members (the coordinator, the
 * writers) over and over, and a key made afresh is sixteen concatenations and a new string to hash
 * wherever it is looked up.
 */
const RECENT_PEERS = 4;
const recentIds: Uint8Array[] = [];
const recentKeys: PeerKey[] = [];
let recentNext = 0;

/** The key of the member id at `bytes[start, end)`; undefined when it is not 16 bytes. */
export function peerKeyAt(bytes: Uint8Array, start: number, end: number): PeerKey | undefined {
  if (end - start !== MEMBER_ID_BYTES) return undefined;
  for (let i = 0; i < recentIds.length; i++) if (sameBytes(bytes, start, end, recentIds[i]!)) return recentKeys[i]!;
  const id = bytes.slice(start, end);
  const key = keyOf(id);
  recentIds[recentNext] = id;
  recentKeys[recentNext] = key;
  recentNext = (recentNext + 1) % RECENT_PEERS;
  return key;
}

/**
 * The member instances decoded last, handed out again: every update names its requesters, mostly the
 * same few, and one instance each keeps their key made once (see instanceKey) rather than a string
 * and a weak entry more for every write.
 */
const RECENT_INSTANCES = 8;
const recentInstances: MemberInstance[] = [];
let recentInstanceNext = 0;

export function memberInstance(id: PeerKey, incarnation: number): MemberInstance {
  for (let i = 0; i < recentInstances.length; i++) {
    const member = recentInstances[i]!;
    if (member.id === id && member.incarnation === incarnation) return member;
  }
  const member = { id, incarnation };
  recentInstances[recentInstanceNext] = member;
  recentInstanceNext = (recentInstanceNext + 1) % RECENT_INSTANCES;
  return member;
}

// --- fields ---

/** Thrown (one object, made once) where the bytes are not the usual shape; the reader answers undefined. */
const UNUSUAL = new Error("not the usual shape of a state frame");

function unusual(): never {
  throw UNUSUAL;
}

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

/** The tag of field `no` with wire type `wire`. */
function tag(no: number, wire: number): number {
  return (no << 3) | wire;
}

/** `seen` with field `no` marked; unusual when it was seen already (a repeated singular field merges). */
function once(seen: number, no: number): number {
  const bit = 1 << no;
  if ((seen & bit) !== 0) unusual();
  return seen | bit;
}

/** A varint of at most 2^53 − 1. */
function uint(cursor: ByteCursor): number {
  const value = cursor.varint();
  if (cursor.failed) unusual();
  return value;
}

/** A counter: at most MAX_COUNTER (what the conversion refuses past it, this leaves to it). */
function counter(cursor: ByteCursor): number {
  const value = uint(cursor);
  if (value > MAX_COUNTER) unusual();
  return value;
}

/** An enum (int32): a negative one takes ten bytes, which the cursor leaves to the schema's codec. */
function enumValue(cursor: ByteCursor): number {
  const value = uint(cursor);
  if (value > 0x7fffffff) unusual();
  return value;
}

function uint32(cursor: ByteCursor): number {
  const value = uint(cursor);
  if (value > 0xffffffff) unusual();
  return value;
}

function bool(cursor: ByteCursor): boolean {
  return uint(cursor) !== 0;
}

/** The end of a length-delimited field, within `end`. */
function delimitedEnd(cursor: ByteCursor, end: number): number {
  const fieldEnd = cursor.delimitedEnd();
  if (cursor.failed || fieldEnd > end) unusual();
  return fieldEnd;
}

function string(cursor: ByteCursor, end: number): string {
  const fieldEnd = delimitedEnd(cursor, end);
  const text = readUtf8(cursor.bytes, cursor.pos, fieldEnd);
  if (text === undefined) unusual();
  cursor.pos = fieldEnd;
  return text;
}

/** The group named last, and its bytes: every state frame names its group, nearly always the same one. */
let lastGroupBytes = new Uint8Array(0);
let lastGroup = "";

/** A group name field: the name read last when it is the same bytes (no new string for every frame). */
function group(cursor: ByteCursor, end: number): string {
  const fieldEnd = delimitedEnd(cursor, end);
  const bytes = cursor.bytes;
  const start = cursor.pos;
  cursor.pos = fieldEnd;
  if (sameBytes(bytes, start, fieldEnd, lastGroupBytes)) return lastGroup;
  const text = readUtf8(bytes, start, fieldEnd);
  if (text === undefined) unusual();
  lastGroupBytes = bytes.slice(start, fieldEnd);
  lastGroup = text;
  return text;
}

/** The lock key read last, when it is ASCII (its characters are its bytes): a lock is taken and released again and again. */
let lastLockKey = "";

/** A lock's key: the one read last when it is the same bytes (no new string for every lock frame). */
function lockKey(cursor: ByteCursor, end: number): string {
  const fieldEnd = delimitedEnd(cursor, end);
  const bytes = cursor.bytes;
  const start = cursor.pos;
  const key = lastLockKey;
  if (fieldEnd - start === key.length && key !== "") {
    let i = 0;
    while (i < key.length && bytes[start + i] === key.charCodeAt(i)) i++;
    if (i === key.length) {
      cursor.pos = fieldEnd;
      return key;
    }
  }
  const text = readUtf8(bytes, start, fieldEnd);
  if (text === undefined) unusual();
  cursor.pos = fieldEnd;
  if (text.length === fieldEnd - start) lastLockKey = text;
  return text;
}

/**
 * Small values read lately are copied into one shared buffer, each a view of its part: a copy with a
 * buffer of its own costs a value of 64 bytes some 260 bytes of heap (its bytes, its buffer and its
 * array), a view some 100. Like a runtime's pool of small buffers, a slab stays alive while any value
 * in it does: no more than SLAB_BYTES for the smallest value, never the whole datagram.
 */
const SLAB_BYTES = 8192;
/** The largest value copied into the slab (byte by byte: more, and a buffer of its own costs less). */
const SLAB_VALUE_MOST_BYTES = 128;
let slab = new Uint8Array(SLAB_BYTES);
let slabUsed = 0;

/** A bytes field, copied (a value the map keeps must not hold on to the whole datagram). */
function bytes(cursor: ByteCursor, end: number): Uint8Array {
  const fieldEnd = delimitedEnd(cursor, end);
  const source = cursor.bytes;
  const start = cursor.pos;
  cursor.pos = fieldEnd;
  const length = fieldEnd - start;
  if (length > SLAB_VALUE_MOST_BYTES) return source.slice(start, fieldEnd);
  if (length === 0) return NO_BYTES;
  if (slabUsed + length > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const target = slab;
  const at = slabUsed;
  for (let i = 0; i < length; i++) target[at + i] = source[start + i]!;
  slabUsed = at + length;
  return new Uint8Array(target.buffer, at, length);
}

/** A member id field: its key, "" when empty (no member). */
function optionalPeer(cursor: ByteCursor, end: number): PeerKey {
  const fieldEnd = delimitedEnd(cursor, end);
  const start = cursor.pos;
  cursor.pos = fieldEnd;
  if (fieldEnd === start) return "";
  return peerKeyAt(cursor.bytes, start, fieldEnd) ?? unusual();
}

/** The end of a message read up to `end`: unusual when its last field ran past it. */
function finished(cursor: ByteCursor, end: number): void {
  if (cursor.pos !== end) unusual();
}

// --- messages ---

/** MemberRef { bytes id = 1; uint64 incarnation = 2; }, a whole member (a 16-byte id). */
function member(cursor: ByteCursor, end: number): MemberInstance {
  const refEnd = delimitedEnd(cursor, end);
  let id: PeerKey = "";
  let incarnation = 0;
  let seen = 0;
  while (cursor.pos < refEnd) {
    switch (uint(cursor)) {
      case tag(1, WIRE_LEN):
        seen = once(seen, 1);
        id = optionalPeer(cursor, refEnd);
        break;
      case tag(2, WIRE_VARINT):
        seen = once(seen, 2);
        incarnation = uint(cursor);
        break;
      default:
        unusual();
    }
  }
  finished(cursor, refEnd);
  if (id === "") unusual();
  return memberInstance(id, incarnation);
}

/** PutOp { key = 1; value = 2; format = 3; ttl_ms = 4; remove_on_exit = 5; optional if_version = 6; fencing_token = 7; } */
function putOp(cursor: ByteCursor, end: number): PutSpec {
  const opEnd = delimitedEnd(cursor, end);
  let key = "";
  let value: Uint8Array = NO_BYTES;
  let format = 0;
  let ttlMs = 0;
  let removeOnExit = false;
  let ifVersion: number | undefined;
  let fencingToken = 0;
  let seen = 0;
  while (cursor.pos < opEnd) {
    switch (uint(cursor)) {
      case tag(1, WIRE_LEN):
        seen = once(seen, 1);
        key = string(cursor, opEnd);
        break;
      case tag(2, WIRE_LEN):
        seen = once(seen, 2);
        value = bytes(cursor, opEnd);
        break;
      case tag(3, WIRE_VARINT):
        seen = once(seen, 3);
        format = enumValue(cursor);
        break;
      case tag(4, WIRE_VARINT):
        seen = once(seen, 4);
        ttlMs = uint(cursor);
        break;
      case tag(5, WIRE_VARINT):
        seen = once(seen, 5);
        removeOnExit = bool(cursor);
        break;
      case tag(6, WIRE_VARINT):
        seen = once(seen, 6);
        ifVersion = counter(cursor);
        break;
      case tag(7, WIRE_VARINT):
        seen = once(seen, 7);
        fencingToken = counter(cursor);
        break;
      default:
        unusual();
    }
  }
  finished(cursor, opEnd);
  return { key, value, format, ttlMs, removeOnExit, ifVersion, fencingToken };
}

/** RemoveOp { key = 1; optional if_version = 2; fencing_token = 3; } */
function removeOp(cursor: ByteCursor, end: number): RemoveSpec {
  const opEnd = delimitedEnd(cursor, end);
  let key = "";
  let ifVersion: number | undefined;
  let fencingToken = 0;
  let seen = 0;
  while (cursor.pos < opEnd) {
    switch (uint(cursor)) {
      case tag(1, WIRE_LEN):
        seen = once(seen, 1);
        key = string(cursor, opEnd);
        break;
      case tag(2, WIRE_VARINT):
        seen = once(seen, 2);
        ifVersion = counter(cursor);
        break;
      case tag(3, WIRE_VARINT):
        seen = once(seen, 3);
        fencingToken = counter(cursor);
        break;
      default:
        unusual();
    }
  }
  finished(cursor, opEnd);
  return { key, ifVersion, fencingToken };
}

/** BatchOp { repeated PutOp puts = 1; repeated RemoveOp removes = 2; } */
function batchOp(cursor: ByteCursor, end: number): StateOp {
  const opEnd = delimitedEnd(cursor, end);
  const puts: PutSpec[] = [];
  const removes: RemoveSpec[] = [];
  while (cursor.pos < opEnd) {
    switch (uint(cursor)) {
      case tag(1, WIRE_LEN):
        puts.push(putOp(cursor, opEnd));
        break;
      case tag(2, WIRE_LEN):
        removes.push(removeOp(cursor, opEnd));
        break;
      default:
        unusual();
    }
  }
  finished(cursor, opEnd);
  return { case: "batch", puts, removes };
}

/** LockOp { key = 1; lease_ms = 2; wait_ms = 3; release_on_exit = 4; } */
function lockOp(cursor: ByteCursor, end: number): StateOp {
  const opEnd = delimitedEnd(cursor, end);
  let key = "";
  let leaseMs = 0;
  let waitMs = 0;
  let releaseOnExit = false;
  let seen = 0;
  while (cursor.pos < opEnd) {
    switch (uint(cursor)) {
      case tag(1, WIRE_LEN):
        seen = once(seen, 1);
        key = lockKey(cursor, opEnd);
        break;
      case tag(2, WIRE_VARINT):
        seen = once(seen, 2);
        leaseMs = uint(cursor);
        break;
      case tag(3, WIRE_VARINT):
        seen = once(seen, 3);
        waitMs = uint(cursor);
        break;
      case tag(4, WIRE_VARINT):
        seen = once(seen, 4);
        releaseOnExit = bool(cursor);
        break;
      default:
        unusual();
    }
  }
  finished(cursor, opEnd);
  return { case: "lock", key, leaseMs, waitMs, releaseOnExit };
}

/** UnlockOp { key = 1; fencing_token = 2; } */
function unlockOp(cursor: ByteCursor, end: number): StateOp {
  const opEnd = delimitedEnd(cursor, end);
  let key = "";
  let fencingToken = 0;
  let seen = 0;
  while (cursor.pos < opEnd) {
    switch (uint(cursor)) {
      case tag(1, WIRE_LEN):
        seen = once(seen, 1);
        key = lockKey(cursor, opEnd);
        break;
      case tag(2, WIRE_VARINT):
        seen = once(seen, 2);
        fencingToken = counter(cursor);
        break;
      default:
        unusual();
    }
  }
  finished(cursor, opEnd);
  return { case: "unlock", key, fencingToken };
}

/**
 * Entry of a put change { key = 1; value = 2; format = 3; version = 4; owner = 5; remove_on_exit = 6;
 * ttl_remaining_ms = 7; } (no lock = 8): its owner is the request's requester when it names none.
 */
function putEntry(cursor: ByteCursor, end: number, requester: MemberInstance | undefined, inserted: boolean): Change {
  let key = "";
  let value: Uint8Array = NO_BYTES;
  let format = 0;
  let version = 0;
  let owner = requester;
  let removeOnExit = false;
  let ttlMs = 0;
  let seen = 0;
  while (cursor.pos < end) {
    switch (uint(cursor)) {
      case tag(1, WIRE_LEN):
        seen = once(seen, 1);
        key = string(cursor, end);
        break;
      case tag(2, WIRE_LEN):
        seen = once(seen, 2);
        value = bytes(cursor, end);
        break;
      case tag(3, WIRE_VARINT):
        seen = once(seen, 3);
        format = enumValue(cursor);
        break;
      case tag(4, WIRE_VARINT):
        seen = once(seen, 4);
        version = counter(cursor);
        break;
      case tag(5, WIRE_LEN):
        seen = once(seen, 5);
        owner = member(cursor, end);
        break;
      case tag(6, WIRE_VARINT):
        seen = once(seen, 6);
        removeOnExit = bool(cursor);
        break;
      case tag(7, WIRE_VARINT):
        seen = once(seen, 7);
        ttlMs = uint(cursor);
        break;
      default:
        unusual();
    }
  }
  finished(cursor, end);
  if (owner === undefined) unusual();
  return { kind: "put", entry: putEntrySpec(key, value, format, version, owner, removeOnExit, ttlMs), inserted };
}

/** The Entry of a remove or an unlock (`lock`): its key alone. */
function entryKey(cursor: ByteCursor, end: number, lock: boolean): string {
  let key = "";
  let seen = 0;
  while (cursor.pos < end) {
    if (uint(cursor) !== tag(1, WIRE_LEN)) unusual();
    seen = once(seen, 1);
    key = lock ? lockKey(cursor, end) : string(cursor, end);
  }
  finished(cursor, end);
  return key;
}

/** The Entry of a lock: its key and LockState { holder = 1; fencing_token = 2; lease_remaining_ms = 3; release_on_exit = 4; }. */
function lockEntry(cursor: ByteCursor, end: number): Change {
  let key = "";
  let holder: MemberInstance | undefined;
  let token = 0;
  let leaseMs = 0;
  let releaseOnExit = false;
  let seen = 0;
  while (cursor.pos < end) {
    switch (uint(cursor)) {
      case tag(1, WIRE_LEN):
        seen = once(seen, 1);
        key = lockKey(cursor, end);
        break;
      case tag(8, WIRE_LEN): {
        seen = once(seen, 8);
        const lockEnd = delimitedEnd(cursor, end);
        let lockSeen = 0;
        while (cursor.pos < lockEnd) {
          switch (uint(cursor)) {
            case tag(1, WIRE_LEN):
              lockSeen = once(lockSeen, 1);
              holder = member(cursor, lockEnd);
              break;
            case tag(2, WIRE_VARINT):
              lockSeen = once(lockSeen, 2);
              token = counter(cursor);
              break;
            case tag(3, WIRE_VARINT):
              lockSeen = once(lockSeen, 3);
              leaseMs = uint(cursor);
              break;
            case tag(4, WIRE_VARINT):
              lockSeen = once(lockSeen, 4);
              releaseOnExit = bool(cursor);
              break;
            default:
              unusual();
          }
        }
        finished(cursor, lockEnd);
        break;
      }
      default:
        unusual();
    }
  }
  finished(cursor, end);
  if (holder === undefined) unusual();
  return { kind: "lock", lock: { key, holder, token, leaseMs, releaseOnExit } };
}

// ChangeKind's values (cluster.proto).
const INSERT = 1;
const UPDATE = 2;
const REMOVE = 3;
const LOCK = 4;
const UNLOCK = 5;
const CLEAR = 6;

const CLEARED: Change = { kind: "clear" };

/** EntryChange { ChangeKind kind = 1; Entry entry = 2; bool expired = 3; }: its entry read once its kind is known. */
function change(cursor: ByteCursor, end: number, requester: MemberInstance | undefined): Change {
  const changeEnd = delimitedEnd(cursor, end);
  let kind = 0;
  let entryStart = -1;
  let entryEnd = -1;
  let expired = false;
  let seen = 0;
  while (cursor.pos < changeEnd) {
    switch (uint(cursor)) {
      case tag(1, WIRE_VARINT):
        seen = once(seen, 1);
        kind = enumValue(cursor);
        break;
      case tag(2, WIRE_LEN):
        seen = once(seen, 2);
        entryEnd = delimitedEnd(cursor, changeEnd);
        entryStart = cursor.pos;
        cursor.pos = entryEnd;
        break;
      case tag(3, WIRE_VARINT):
        seen = once(seen, 3);
        expired = bool(cursor);
        break;
      default:
        unusual();
    }
  }
  finished(cursor, changeEnd);
  if (kind === CLEAR) {
    // The conversion does not look at a clear's entry: one there is the schema's codec's to judge.
    if (entryStart >= 0) unusual();
    return CLEARED;
  }
  if (entryStart < 0) unusual();
  cursor.pos = entryStart;
  let read: Change;
  switch (kind) {
    case INSERT:
    case UPDATE:
      read = putEntry(cursor, entryEnd, requester, kind === INSERT);
      break;
    case REMOVE:
      read = { kind: "remove", key: entryKey(cursor, entryEnd, false), expired };
      break;
    case UNLOCK:
      read = { kind: "unlock", key: entryKey(cursor, entryEnd, true), expired };
      break;
    case LOCK:
      read = lockEntry(cursor, entryEnd);
      break;
    default:
      unusual();
  }
  cursor.pos = changeEnd;
  return read;
}

/**
 * The requests of an update: the first one's fields sit in the update itself (request_id = 4,
 * requester = 5, changes = 6), the others in BatchedRequest { request_id = 1; requester = 2; changes = 3; }.
 * A request's changes depend on its id and requester (a put names no owner when it is the requester's),
 * so these come first, as the writers write them.
 */
class RequestReader implements OrderedRequest {
  requestId = 0;
  requester: MemberInstance | undefined;
  /** Most requests make one change: an array of one, not an empty one grown (seventeen slots) by a push. */
  changes: Change[] = NO_CHANGES;
  #seen = 0;

  id(cursor: ByteCursor): void {
    this.#seen = once(this.#seen, 1);
    if (this.changes.length > 0 || (this.#seen & 4) !== 0) unusual();
    this.requestId = counter(cursor);
  }

  /** A request of id 0 (the coordinator's own) has no requester; one that names it is left to the conversion. */
  member(cursor: ByteCursor, end: number): void {
    this.#seen = once(this.#seen, 2);
    if (this.changes.length > 0 || this.requestId === 0) unusual();
    this.requester = member(cursor, end);
  }

  change(cursor: ByteCursor, end: number): void {
    if (this.requestId !== 0 && this.requester === undefined) unusual();
    const read = change(cursor, end, this.requester);
    if (this.changes === NO_CHANGES) this.changes = [read];
    else this.changes.push(read);
  }

  /** The request read: this reader itself (no copy of its fields made for every request). */
  ordered(): OrderedRequest {
    if (this.requestId !== 0 && this.requester === undefined) unusual();
    return this;
  }
}

/** No changes (yet): shared, never written to (a reader replaces it with its first change). */
const NO_CHANGES: Change[] = [];

function batched(cursor: ByteCursor, end: number): OrderedRequest {
  const batchEnd = delimitedEnd(cursor, end);
  const request = new RequestReader();
  while (cursor.pos < batchEnd) {
    switch (uint(cursor)) {
      case tag(1, WIRE_VARINT):
        request.id(cursor);
        break;
      case tag(2, WIRE_LEN):
        request.member(cursor, batchEnd);
        break;
      case tag(3, WIRE_LEN):
        request.change(cursor, batchEnd);
        break;
      default:
        unusual();
    }
  }
  finished(cursor, batchEnd);
  return request.ordered();
}

const NO_BYTES = new Uint8Array(0);

// --- frames ---

/** Reads a StateRequest (the message's bytes, `bytes[start, end)`); undefined when unusual (see above). */
export function readStateRequest(bytes: Uint8Array, start: number, end: number): StateFrame | undefined {
  const cursor = new ByteCursor(bytes, start, end);
  try {
    let requestId = 0;
    let groupName = "";
    let op: StateOp | undefined;
    let seen = 0;
    while (cursor.pos < end) {
      const fieldTag = uint(cursor);
      // The operation is a oneof: one of them, once.
      if ((fieldTag & 7) === WIRE_LEN && fieldTag >>> 3 >= 3 && op !== undefined) unusual();
      switch (fieldTag) {
        case tag(1, WIRE_VARINT):
          seen = once(seen, 1);
          requestId = counter(cursor);
          break;
        case tag(2, WIRE_LEN):
          seen = once(seen, 2);
          groupName = group(cursor, end);
          break;
        case tag(3, WIRE_LEN):
          op = { case: "put", put: putOp(cursor, end) };
          break;
        case tag(4, WIRE_LEN):
          op = { case: "remove", remove: removeOp(cursor, end) };
          break;
        case tag(5, WIRE_LEN):
          op = batchOp(cursor, end);
          break;
        case tag(7, WIRE_LEN):
          op = lockOp(cursor, end);
          break;
        case tag(8, WIRE_LEN):
          op = unlockOp(cursor, end);
          break;
        default:
          unusual();
      }
    }
    finished(cursor, end);
    if (op === undefined) unusual();
    return { kind: "request", group: groupName, request: { requestId, op } };
  } catch (error) {
    if (error === UNUSUAL) return undefined;
    throw error;
  }
}

/** Reads a StateUpdate, an update or an announcement; undefined when unusual (see above). */
export function readStateUpdate(bytes: Uint8Array, start: number, end: number): StateFrame | undefined {
  const cursor = new ByteCursor(bytes, start, end);
  try {
    let epoch = 0;
    let index = 0;
    let groupName = "";
    const first = new RequestReader();
    let coordinator: PeerKey = "";
    // The first request is the reader of the update's own fields, read as they come: it leads the list
    // from the start (not moved in front of the others at the end).
    const requests: OrderedRequest[] = [first];
    let tokenCeiling = 0;
    let leaseProbe = 0;
    let announce = false;
    // Members to forget are rare: an array only for an update that names some.
    let forget: MemberInstance[] | undefined;
    let termBegun = false;
    let seen = 0;
    while (cursor.pos < end) {
      switch (uint(cursor)) {
        case tag(1, WIRE_VARINT):
          seen = once(seen, 1);
          epoch = counter(cursor);
          break;
        case tag(2, WIRE_VARINT):
          seen = once(seen, 2);
          index = counter(cursor);
          break;
        case tag(3, WIRE_LEN):
          seen = once(seen, 3);
          groupName = group(cursor, end);
          break;
        case tag(4, WIRE_VARINT):
          first.id(cursor);
          break;
        case tag(5, WIRE_LEN):
          first.member(cursor, end);
          break;
        case tag(6, WIRE_LEN):
          first.change(cursor, end);
          break;
        case tag(7, WIRE_LEN):
          seen = once(seen, 7);
          coordinator = optionalPeer(cursor, end);
          break;
        case tag(8, WIRE_LEN):
          requests.push(batched(cursor, end));
          break;
        case tag(9, WIRE_VARINT):
          seen = once(seen, 9);
          tokenCeiling = counter(cursor);
          break;
        case tag(10, WIRE_VARINT):
          seen = once(seen, 10);
          leaseProbe = counter(cursor);
          break;
        case tag(11, WIRE_VARINT):
          seen = once(seen, 11);
          announce = bool(cursor);
          break;
        case tag(12, WIRE_LEN):
          (forget ??= []).push(member(cursor, end));
          break;
        case tag(13, WIRE_VARINT):
          seen = once(seen, 13);
          termBegun = bool(cursor);
          break;
        default:
          unusual();
      }
    }
    finished(cursor, end);
    // An update names its coordinator (a whole id).
    if (coordinator === "") unusual();
    if (announce) return { kind: "announce", group: groupName, announce: { epoch, coordinator, index, leaseProbe }, termBegun };
    // The first request is whole (it names its requester when it has an id), as every batched one is.
    first.ordered();
    return { kind: "update", group: groupName, update: { epoch, index, coordinator, requests, tokenCeiling, forget: forget ?? NO_MEMBERS }, leaseProbe, termBegun };
  } catch (error) {
    if (error === UNUSUAL) return undefined;
    throw error;
  }
}

/**
 * The accepted term and the promise of the acknowledgement read last, handed out again when the next
 * names the same (they change once a term, acknowledgements come with every update): no objects, nor
 * empty arrays of members and prior terms (an acknowledgement carries none), made for each.
 */
const NO_MEMBERS: readonly MemberInstance[] = [];
const NO_PRIOR: Term["prior"] = [];
let lastAccepted: Term = { epoch: 0, coordinator: "", members: NO_MEMBERS, prior: NO_PRIOR };
let lastPromise: EpochPromise = { epoch: 0, coordinator: "" };

function acceptedTerm(epoch: number, coordinator: PeerKey): Term {
  if (lastAccepted.epoch !== epoch || lastAccepted.coordinator !== coordinator) lastAccepted = { epoch, coordinator, members: NO_MEMBERS, prior: NO_PRIOR };
  return lastAccepted;
}

function promise(epoch: number, coordinator: PeerKey): EpochPromise {
  if (lastPromise.epoch !== epoch || lastPromise.coordinator !== coordinator) lastPromise = { epoch, coordinator };
  return lastPromise;
}

/**
 * Reads a StateAck that answers no prepare (no view, agreed members or prior terms: those go to the
 * schema's codec); undefined when unusual (see above).
 */
export function readStateAck(bytes: Uint8Array, start: number, end: number): StateFrame | undefined {
  const cursor = new ByteCursor(bytes, start, end);
  try {
    let groupName = "";
    let epoch = 0;
    let index = 0;
    let tokenCeiling = 0;
    let acceptedEpoch = 0;
    let ready = false;
    let epochCoordinator: PeerKey = "";
    let highestSeen = 0;
    let leaseProbe = 0;
    let snapshotTransfer = 0;
    let snapshotChunks = 0;
    let acceptedCoordinator: PeerKey = "";
    let promisedEpoch = 0;
    let promisedCoordinator: PeerKey = "";
    let readsEntryBlock = false;
    let acceptedBegun = false;
    let memorySince = 0;
    let seen = 0;
    while (cursor.pos < end) {
      switch (uint(cursor)) {
        case tag(1, WIRE_LEN):
          seen = once(seen, 1);
          groupName = group(cursor, end);
          break;
        case tag(2, WIRE_VARINT):
          seen = once(seen, 2);
          epoch = counter(cursor);
          break;
        case tag(3, WIRE_VARINT):
          seen = once(seen, 3);
          index = counter(cursor);
          break;
        case tag(5, WIRE_VARINT):
          seen = once(seen, 5);
          tokenCeiling = counter(cursor);
          break;
        case tag(6, WIRE_VARINT):
          seen = once(seen, 6);
          acceptedEpoch = counter(cursor);
          break;
        case tag(7, WIRE_VARINT):
          seen = once(seen, 7);
          ready = bool(cursor);
          break;
        case tag(8, WIRE_LEN):
          seen = once(seen, 8);
          epochCoordinator = optionalPeer(cursor, end);
          break;
        case tag(9, WIRE_VARINT):
          seen = once(seen, 9);
          highestSeen = counter(cursor);
          break;
        case tag(10, WIRE_VARINT):
          seen = once(seen, 10);
          leaseProbe = counter(cursor);
          break;
        case tag(11, WIRE_VARINT):
          seen = once(seen, 11);
          snapshotTransfer = counter(cursor);
          break;
        case tag(12, WIRE_VARINT):
          seen = once(seen, 12);
          snapshotChunks = uint32(cursor);
          break;
        case tag(13, WIRE_LEN):
          seen = once(seen, 13);
          acceptedCoordinator = optionalPeer(cursor, end);
          break;
        case tag(15, WIRE_VARINT):
          seen = once(seen, 15);
          promisedEpoch = counter(cursor);
          break;
        case tag(16, WIRE_LEN):
          seen = once(seen, 16);
          promisedCoordinator = optionalPeer(cursor, end);
          break;
        case tag(17, WIRE_VARINT):
          seen = once(seen, 17);
          readsEntryBlock = bool(cursor);
          break;
        case tag(18, WIRE_VARINT):
          seen = once(seen, 18);
          acceptedBegun = bool(cursor);
          break;
        case tag(20, WIRE_VARINT):
          seen = once(seen, 20);
          memorySince = counter(cursor);
          break;
        default:
          unusual();
      }
    }
    finished(cursor, end);
    const ack: StateAck = {
      position: { epoch, coordinator: epochCoordinator, index },
      view: undefined,
      tokenCeiling,
      accepted: acceptedTerm(acceptedEpoch, acceptedCoordinator),
      acceptedBegun,
      promised: promise(promisedEpoch, promisedCoordinator),
      memorySince,
      ready,
      highestSeen,
      leaseProbe,
      snapshotTransfer,
      snapshotChunks,
    };
    return { kind: "ack", group: groupName, ack, readsEntryBlock };
  } catch (error) {
    if (error === UNUSUAL) return undefined;
    throw error;
  }
}
