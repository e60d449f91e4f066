import { nodeCrypto } from "../../src/adapters/node-crypto.ts";
import { DatagramGuard, senderKeyInfo } from "../../src/security/datagram-guard.ts";
import { KeyRing } from "../../src/security/keyring.ts";
import { type SecurityOptions, securityOptionsSchema } from "../../src/security/options.ts";
import { readSealed } from "../../src/security/sealed-datagram.ts";
import { ClearHeaderReader, encodeEnvelopeHeader, plainEnvelope } from "../../src/wire/frames.ts";
import type { Identity } from "./attacker.ts";

/** How a speaker seals what it says and opens what it hears. */
export interface SpeakerCrypto {
  /** Seals a plain envelope (this identity's header, then a body) for the group or, with `to`, one member. */
  seal(plain: Uint8Array, toGroup: boolean): Uint8Array;
  /** Opens a datagram sent to this identity; undefined when it does not open. */
  open(bytes: Uint8Array): Uint8Array | undefined;
}

/**
 * An insider's tools against a secured cluster: the cluster's keys, nothing more. It reads any member's
 * datagram (no replay window: it is its own copy) and speaks as any identity it likes, with counters of
 * its own — what a member that holds the key could do.
 */
export class InsiderKeys {
  readonly #options: ReturnType<typeof securityOptionsSchema.parse>;
  readonly #cluster: string;

  constructor(security: SecurityOptions, cluster: string) {
    this.#options = securityOptionsSchema.parse({ ...security, provider: nodeCrypto });
    this.#cluster = cluster;
  }

  /** The plain envelope inside a member's sealed datagram, or undefined. */
  open(bytes: Uint8Array): Uint8Array | undefined {
    const read = readSealed(bytes, { cluster: this.#cluster }, new ClearHeaderReader(this.#cluster));
    if (!read.ok) return undefined;
    const sealed = read.sealed;
    const mode = sealed.mode;
    const secret = this.#options.keys.find((key) => key.id === sealed.keyId)?.secret;
    if (mode === undefined || secret === undefined) return undefined;
    const key = nodeCrypto.deriveKey(mode, secret, senderKeyInfo(mode, sealed.keyId, sealed.senderId, sealed.incarnation, this.#cluster));
    const body = nodeCrypto.open(key, mode, sealed.counter, sealed.aad, sealed.payload);
    return body === undefined ? undefined : plainEnvelope(sealed.header, body);
  }

  /** A speaker's seal and opener for `identity`. */
  speakerFor(identity: Identity): SpeakerCrypto {
    const options = this.#options;
    const guard = new DatagramGuard(options, new KeyRing(options.keys, options.primary), nodeCrypto, { cluster: this.#cluster, memberId: identity.senderId, maxDatagramBytes: 65_507 }, { refused: () => undefined, fault: () => undefined, own: () => undefined });
    const incarnation = Number(identity.incarnation);
    guard.start(incarnation);
    const headerLength = encodeEnvelopeHeader(this.#cluster, identity.senderId, incarnation).length;
    return {
      seal(plain, toGroup) {
        let sealed: Uint8Array | undefined;
        guard.seal(plain, headerLength, toGroup ? "group" : undefined, (bytes) => (sealed = bytes));
        return sealed!;
      },
      open(bytes) {
        let opened: Uint8Array | undefined;
        guard.open(bytes, (split) => (opened = plainEnvelope(split.header, split.body)));
        return opened;
      },
    };
  }
}
