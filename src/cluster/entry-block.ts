import { idOf, keyOf } from "../reliable/member-key.ts";
import { MAX_COUNTER } from "../wire/safe-integers.ts";
import { ByteCursor, readUtf8, utf8Length, varintSize, writeUtf8, writeVarint } from "../wire/varint.ts";
import { MEMBER_ID_BYTES } from "../wire/limits.ts";
import { type MemberInstance, remaining, type StoredEntry } from "./state-types.ts";
import { bytesEqual, concatBytes } from "../wire/bytes.ts";

/**
 * A snapshot chunk's entries as one SnapshotEntries message (StateSnapshot.entry_block), written and
 * read by hand: a joiner takes a whole map through here, and the generated forms would cost it a
 * message, a member reference and two bigints per entry before the map's own entry is made. The bytes
 * are those the schema's codec writes (fields in number order, defaults left out); the reader takes
 * any valid encoding of the message (fields in any order, unknown fields skipped, a repeated member
 * reference merged), with the state wire's rules: counters up to MAX_COUNTER, member ids of 16 bytes.
 */

// Tags: (field number << 3) | wire type.
const TAG_ENTRY = 0x0a;
const TAG_KEY = 0x0a;
const TAG_VALUE = 0x12;
const TAG_FORMAT = 0x18;
const TAG_VERSION = 0x20;
const TAG_OWNER = 0x2a;
const TAG_REMOVE_ON_EXIT = 0x30;
const TAG_TTL = 0x38;
const TAG_LOCK = 0x42;
const TAG_REF_ID = 0x0a;
const TAG_REF_INCARNATION = 0x10;

const WIRE_VARINT = 0;
const WIRE_64 = 1;
const WIRE_LEN = 2;
const WIRE_32 = 5;

const NO_VALUE: Uint8Array = new Uint8Array(0);

/** A MemberRef's bytes, kept for the owner met last (a map's entries are mostly written by few members). */
class OwnerBytes {
  #owner: MemberInstance | undefined;
  #bytes = new Uint8Array(0);

  of(owner: MemberInstance): Uint8Array {
    const last = this.#owner;
    if (last !== undefined && (last === owner || (last.id === owner.id && last.incarnation === owner.incarnation))) return this.#bytes;
    const id = idOf(owner.id);
    const bytes = new Uint8Array((id.length === 0 ? 0 : 1 + varintSize(id.length) + id.length) + (owner.incarnation === 0 ? 0 : 1 + varintSize(owner.incarnation)));
    let pos = 0;
    if (id.length > 0) {
      bytes[pos++] = TAG_REF_ID;
      pos = writeVarint(bytes, pos, id.length);
      bytes.set(id, pos);
      pos += id.length;
    }
    if (owner.incarnation !== 0) {
      bytes[pos++] = TAG_REF_INCARNATION;
      writeVarint(bytes, pos, owner.incarnation);
    }
    this.#owner = owner;
    this.#bytes = bytes;
    return bytes;
  }
}

function delimitedSize(length: number): number {
  return 1 + varintSize(length) + length;
}

function varintFieldSize(value: number): number {
  return value === 0 ? 0 : 1 + varintSize(value);
}

/** The buffer blocks are written in, grown as needed and used again by the next block. */
let scratch = new Uint8Array(64 * 1024);

/**
 * The SnapshotEntries message of `entries`, their times to live as they stand at `now`; `lockOf` gives
 * the encoded LockState of a key's lock (carried in its entry), or undefined. The bytes are a view of a
 * buffer the next call writes over: the caller copies them (into its frame) before.
 */
export function writeEntryBlock(entries: readonly StoredEntry[], lockOf: (key: string) => Uint8Array | undefined, now: number): Uint8Array {
  const owners = new OwnerBytes();
  let block = scratch;
  let pos = 0;
  for (const entry of entries) {
    const keyLength = utf8Length(entry.key);
    const valueLength = entry.value.length;
    const owner = owners.of(entry.owner);
    const ttl = remaining(entry.expiresAt, now);
    const lock = lockOf(entry.key);
    const size =
      (keyLength === 0 ? 0 : delimitedSize(keyLength)) +
      (valueLength === 0 ? 0 : delimitedSize(valueLength)) +
      varintFieldSize(entry.format) +
      varintFieldSize(entry.version) +
      delimitedSize(owner.length) +
      (entry.removeOnExit ? 2 : 0) +
      varintFieldSize(ttl) +
      (lock === undefined ? 0 : delimitedSize(lock.length));
    const end = pos + delimitedSize(size);
    if (end > block.length) {
      const grown = new Uint8Array(Math.max(end, 2 * block.length));
      grown.set(block.subarray(0, pos));
      block = scratch = grown;
    }
    block[pos++] = TAG_ENTRY;
    pos = writeVarint(block, pos, size);
    if (keyLength > 0) {
      block[pos++] = TAG_KEY;
      pos = writeVarint(block, pos, keyLength);
      pos = writeUtf8(block, pos, entry.key, keyLength);
    }
    if (valueLength > 0) {
      block[pos++] = TAG_VALUE;
      pos = writeVarint(block, pos, valueLength);
      block.set(entry.value, pos);
      pos += valueLength;
    }
    if (entry.format !== 0) {
      block[pos++] = TAG_FORMAT;
      pos = writeVarint(block, pos, entry.format);
    }
    if (entry.version !== 0) {
      block[pos++] = TAG_VERSION;
      pos = writeVarint(block, pos, entry.version);
    }
    block[pos++] = TAG_OWNER;
    pos = writeVarint(block, pos, owner.length);
    block.set(owner, pos);
    pos += owner.length;
    if (entry.removeOnExit) {
      block[pos++] = TAG_REMOVE_ON_EXIT;
      block[pos++] = 1;
    }
    if (ttl !== 0) {
      block[pos++] = TAG_TTL;
      pos = writeVarint(block, pos, ttl);
    }
    if (lock !== undefined) {
      block[pos++] = TAG_LOCK;
      pos = writeVarint(block, pos, lock.length);
      block.set(lock, pos);
      pos += lock.length;
    }
  }
  return block.subarray(0, pos);
}

/** A lock an entry of the block carried: its key, and its LockState's bytes. */
export interface BlockLock {
  readonly key: string;
  readonly state: Uint8Array;
}

/**
 * The entries of a SnapshotEntries message, as the map stores them (times to live counted from `now`;
 * values are views of `block`, which the entries then own); the locks they carry are added to `locks`.
 * Undefined when the bytes are not such a message, or break a rule of the state wire.
 */
export function readEntryBlock(block: Uint8Array, now: number, locks: BlockLock[]): StoredEntry[] | undefined {
  const cursor = new ByteCursor(block, 0, block.length);
  const entries: StoredEntry[] = [];
  let lastId: Uint8Array | undefined;
  let lastOwner: MemberInstance | undefined;
  while (cursor.pos < block.length) {
    const tag = cursor.varint();
    if (tag !== TAG_ENTRY) {
      if (!skip(cursor, tag)) return undefined;
      continue;
    }
    const end = cursor.delimitedEnd();
    if (cursor.failed) return undefined;
    let key = "";
    let value = NO_VALUE;
    let format = 0;
    let version = 0;
    let ownerId: Uint8Array | undefined;
    let incarnation = 0;
    let owned = false;
    let removeOnExit = false;
    let ttlMs = 0;
    let lock: Uint8Array | undefined;
    cursor.end = end;
    while (cursor.pos < end) {
      const field = cursor.varint();
      switch (field) {
        case TAG_KEY: {
          const bytes = cursor.delimitedBytes();
          const text = readUtf8(bytes, 0, bytes.length);
          if (text === undefined) return undefined;
          key = text;
          break;
        }
        case TAG_VALUE:
          value = cursor.delimitedBytes();
          break;
        case TAG_FORMAT:
          // An enum is an int32: what a negative one would be written as is past 2^53, refused here.
          format = cursor.varint() | 0;
          break;
        case TAG_VERSION:
          version = cursor.varint();
          if (version > MAX_COUNTER) return undefined;
          break;
        case TAG_OWNER: {
          // Occurrences of a message field merge: each sets what it carries.
          const refEnd = cursor.delimitedEnd();
          if (cursor.failed) return undefined;
          owned = true;
          cursor.end = refEnd;
          while (cursor.pos < refEnd) {
            const refField = cursor.varint();
            if (refField === TAG_REF_ID) ownerId = cursor.delimitedBytes();
            else if (refField === TAG_REF_INCARNATION) incarnation = cursor.varint();
            else if (!skip(cursor, refField)) return undefined;
          }
          cursor.end = end;
          break;
        }
        case TAG_REMOVE_ON_EXIT:
          removeOnExit = cursor.varint() !== 0;
          break;
        case TAG_TTL:
          ttlMs = cursor.varint();
          break;
        case TAG_LOCK: {
          const bytes = cursor.delimitedBytes();
          lock = lock === undefined ? bytes : concatBytes(lock, bytes);
          break;
        }
        default:
          if (!skip(cursor, field)) return undefined;
      }
      if (cursor.failed) return undefined;
    }
    cursor.end = block.length;
    if (!owned || ownerId === undefined || ownerId.length !== MEMBER_ID_BYTES) return undefined;
    let owner: MemberInstance;
    if (lastOwner !== undefined && lastOwner.incarnation === incarnation && bytesEqual(lastId!, ownerId)) owner = lastOwner;
    else {
      owner = { id: keyOf(ownerId), incarnation };
      lastOwner = owner;
      lastId = ownerId;
    }
    entries.push({ key, value, format, version, owner, removeOnExit, ttlMs, expiresAt: ttlMs > 0 ? now + ttlMs : undefined });
    if (lock !== undefined) locks.push({ key, state: lock });
  }
  return cursor.failed ? undefined : entries;
}

/** Skips a field of `tag` the reader does not use; false when it cannot (a group, a bad wire type, truncation). */
function skip(cursor: ByteCursor, tag: number): boolean {
  if (cursor.failed || tag >>> 3 === 0) return false;
  switch (tag & 7) {
    case WIRE_VARINT:
      cursor.varint();
      break;
    case WIRE_64:
      cursor.pos += 8;
      break;
    case WIRE_LEN:
      cursor.pos = cursor.delimitedEnd();
      break;
    case WIRE_32:
      cursor.pos += 4;
      break;
    default:
      return false;
  }
  return !cursor.failed && cursor.pos <= cursor.end;
}

