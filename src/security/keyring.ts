import { BlazeError } from "../errors.ts";
import { equalBytes, KEY_BYTES } from "./crypto-provider.ts";
import { decodeBase64 } from "./options.ts";

/** One key of a keyring: an id (1 to 2^32 − 1) and a 32-byte secret (bytes, or base64 text). */
export interface KeyInput {
  readonly id: number;
  readonly secret: Uint8Array | string;
}

/**
 * A member's keys: every key opens datagrams, the primary one seals them. Keys are added, made primary
 * and retired while the member runs (a rotation: add a new key everywhere, switch every member to it,
 * retire the old one), so that no moment exists at which two members cannot read each other.
 */
export class KeyRing {
  readonly #secrets = new Map<number, Uint8Array>();
  readonly #retired = new Set<(id: number) => void>();
  #primary: number;

  constructor(keys: ReadonlyArray<{ readonly id: number; readonly secret: Uint8Array }>, primary: number) {
    for (const key of keys) this.#secrets.set(key.id, key.secret.slice());
    this.#primary = primary;
  }

  /** The id of the key this member seals with. */
  get primary(): number {
    return this.#primary;
  }

  /** The ids of every key held, in the order they were added. */
  get ids(): number[] {
    return [...this.#secrets.keys()];
  }

  has(id: number): boolean {
    return this.#secrets.has(id);
  }

  /** The secret of key `id`, or undefined when it is not held. */
  secret(id: number): Uint8Array | undefined {
    return this.#secrets.get(id);
  }

  /**
   * Adds a key; datagrams sealed with it open from now on. Adding a held id again with the same secret
   * does nothing; with another secret it throws `INVALID_ARGUMENT` (retire it first).
   */
  add(key: KeyInput): void {
    const id = checkKeyId(key.id);
    const secret = typeof key.secret === "string" ? decodeBase64(key.secret) : key.secret;
    if (!(secret instanceof Uint8Array) || secret.length !== KEY_BYTES) {
      throw new BlazeError("INVALID_ARGUMENT", `a key's secret is ${KEY_BYTES} bytes (or their base64)`, { path: ["secret"] });
    }
    const held = this.#secrets.get(id);
    if (held !== undefined) {
      if (!equalBytes(held, secret)) throw new BlazeError("INVALID_ARGUMENT", `key ${id} is held with another secret: retire it first`, { path: ["id"] });
      return;
    }
    this.#secrets.set(id, secret.slice());
  }

  /** Makes key `id` the one this member seals with. Throws `INVALID_ARGUMENT` unless it is held. */
  use(id: number): void {
    if (!this.#secrets.has(id)) throw new BlazeError("INVALID_ARGUMENT", `key ${id} is not in this member's keyring`, { path: ["id"] });
    this.#primary = id;
  }

  /**
   * Forgets key `id`: datagrams sealed with it are refused (UNKNOWN_KEY) from now on. Throws
   * `ILLEGAL_STATE` for the primary key (switch to another first); forgetting a key not held does nothing.
   */
  retire(id: number): void {
    if (id === this.#primary) throw new BlazeError("ILLEGAL_STATE", `key ${id} is the primary key: use another one first`);
    if (!this.#secrets.delete(id)) return;
    for (const listener of this.#retired) listener(id);
  }

  /** Calls `listener` with the id of every key retired from now on. */
  onRetired(listener: (id: number) => void): () => void {
    this.#retired.add(listener);
    return () => this.#retired.delete(listener);
  }
}

function checkKeyId(id: number): number {
  if (!Number.isInteger(id) || id < 1 || id > 0xffff_ffff) throw new BlazeError("INVALID_ARGUMENT", "a key id is an integer from 1 to 2^32 - 1", { path: ["id"] });
  return id;
}
