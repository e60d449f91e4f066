import type { PeerKey } from "./protocol.ts";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** A member id's key: its bytes in lowercase hex. */
export function keyOf(id: Uint8Array): PeerKey {
  let key = "";
  for (let i = 0; i < id.length; i++) key += HEX[id[i]!];
  return key;
}

/** The member id of a key. */
export function idOf(key: PeerKey): Uint8Array {
  const id = new Uint8Array(key.length / 2);
  for (let i = 0; i < id.length; i++) id[i] = Number.parseInt(key.slice(2 * i, 2 * i + 2), 16);
  return id;
}

/** True when two member ids are the same bytes. */
export function sameId(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
