import type { PeerKey } from "./protocol.ts";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** A member id's key: its bytes in lowercase hex. */
export function keyOf(id: Uint8Array): PeerKey {
  let key = "";
  for (let i = 0; i < id.length; i++) key += HEX[id[i]!];
  return key;
}

/** The value of a lowercase hex digit's character code (keys are made by `keyOf`). */
const DIGIT = new Uint8Array(128);
for (let i = 0; i < 16; i++) DIGIT[i.toString(16).charCodeAt(0)] = i;

/** The member id of a key. */
export function idOf(key: PeerKey): Uint8Array {
  const id = new Uint8Array(key.length >> 1);
  for (let i = 0; i < id.length; i++) id[i] = (DIGIT[key.charCodeAt(2 * i) & 0x7f]! << 4) | DIGIT[key.charCodeAt(2 * i + 1) & 0x7f]!;
  return id;
}

/**
 * The ids of the keys written last: frames name the same few members over and over, and a key made by
 * `keyOf` is a string of sixteen concatenations, whose characters are read through that each time.
 */
const WRITTEN_KEPT = 4;
const writtenKeys: PeerKey[] = [];
const writtenIds: Uint8Array[] = [];
let writtenNext = 0;

/** Writes the member id of a key at `pos` (as `idOf` makes it); returns the end. */
export function writeIdOf(key: PeerKey, buffer: Uint8Array, pos: number): number {
  let id: Uint8Array | undefined;
  for (let i = 0; i < writtenKeys.length; i++) {
    if (writtenKeys[i] === key) {
      id = writtenIds[i]!;
      break;
    }
  }
  if (id === undefined) {
    id = idOf(key);
    writtenKeys[writtenNext] = key;
    writtenIds[writtenNext] = id;
    writtenNext = (writtenNext + 1) % WRITTEN_KEPT;
  }
  for (let i = 0; i < id.length; i++) buffer[pos + i] = id[i]!;
  return pos + id.length;
}

/** True when two member ids are the same bytes. */
export function sameId(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
