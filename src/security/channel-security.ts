import { BlazeError } from "../errors.ts";
import type { KeyRotation, KeyRotationOptions, KeyRotationResult } from "./key-rotation.ts";
import type { KeyInput, KeyRing } from "./keyring.ts";

/**
 * A secured channel's keys: what `channel.security` gives. `addKey`, `useKey` and `retireKey` change
 * this member only; `rotateKey` switches every member, safely (see README, "Security").
 */
export class ChannelSecurity {
  readonly #keyring: KeyRing;
  readonly #rotation: () => KeyRotation | undefined;

  /** @internal A channel makes its own; `channel.security` is how to reach it. */
  constructor(keyring: KeyRing, rotation: () => KeyRotation | undefined) {
    this.#keyring = keyring;
    this.#rotation = rotation;
  }

  /** The key this member seals with. */
  get primaryKeyId(): number {
    return this.#keyring.primary;
  }

  /** The ids of every key this member holds (each opens datagrams). */
  get keyIds(): number[] {
    return this.#keyring.ids;
  }

  /** Adds a key to this member's ring: datagrams sealed with it open from now on. */
  addKey(key: KeyInput): void {
    this.#keyring.add(key);
  }

  /** Makes key `id` the one this member seals with (this member only: see `rotateKey`). */
  useKey(id: number): void {
    this.#keyring.use(id);
  }

  /** Forgets key `id` on this member: datagrams sealed with it are refused from now on. */
  retireKey(id: number): void {
    this.#keyring.retire(id);
  }

  /**
   * Switches every member to key `id`: checks that every peer holds it (and answers under it), makes it
   * the primary key everywhere, and with `retire` forgets the previous one everywhere. Rejects —
   * before anything changed, when a peer lacks the key — with `TIMEOUT` naming the members that did
   * not confirm, or `ILLEGAL_STATE` with their refusals. Needs a started channel.
   */
  rotateKey(id: number, options: KeyRotationOptions = {}): Promise<KeyRotationResult> {
    const rotation = this.#rotation();
    if (rotation === undefined) return Promise.reject(new BlazeError("ILLEGAL_STATE", "rotateKey() needs a started channel"));
    return rotation.rotate(id, options);
  }
}
