/**
 * Why a datagram was refused. The same codes appear in the conformance vectors' `error` field, so a
 * port in another language refuses the same bytes for the same reason.
 */
export const DROP_REASONS = [
  /** Not a valid protobuf encoding of an Envelope (truncated, bad varint, bad wire type, …). */
  "DECODE_FAILED",
  /** The envelope's major version is not one this build speaks. */
  "UNSUPPORTED_VERSION",
  /** A required field (version, sender id, body) is absent. */
  "MISSING_FIELD",
  /** A field has a value the protocol does not allow (e.g. a member id of the wrong length). */
  "INVALID_FIELD",
  /** The datagram or a field is over a limit (see limits.ts). */
  "OVERSIZE",
  /** The envelope belongs to another cluster. */
  "WRONG_CLUSTER",
  /** With security: a datagram that is not sealed. */
  "UNSEALED",
  /** Sealed in another way than this member's: the other seal mode, or with member signatures or without. */
  "WRONG_MODE",
  /** Sealed with a key id this member does not hold (or sealed, and this member holds no keys). */
  "UNKNOWN_KEY",
  /** Insider mode: the signer's key is not the sender's (its id is not the key's first 16 bytes), or not a trusted member's. */
  "UNTRUSTED_SIGNER",
  /** The sender's incarnation is further ahead of this member's wall clock than `security.incarnationSkewMs`. */
  "FUTURE_INCARNATION",
  /** A sealed datagram whose counter was seen already, is too old for the replay window, or is of an older incarnation than one heard. */
  "REPLAYED",
  /** A sealed datagram that does not authenticate: another secret under the same key id, a changed byte, a cut tag, a bad signature. */
  "AUTH_FAILED",
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

/** Counts refused datagrams by reason. One per member; read it through the member's stats. */
export class DropCounters {
  #counts: Record<DropReason, number> = {
    DECODE_FAILED: 0,
    UNSUPPORTED_VERSION: 0,
    MISSING_FIELD: 0,
    INVALID_FIELD: 0,
    OVERSIZE: 0,
    WRONG_CLUSTER: 0,
    UNSEALED: 0,
    WRONG_MODE: 0,
    UNKNOWN_KEY: 0,
    UNTRUSTED_SIGNER: 0,
    FUTURE_INCARNATION: 0,
    REPLAYED: 0,
    AUTH_FAILED: 0,
  };
  #total = 0;

  count(reason: DropReason): void {
    this.#counts[reason]++;
    this.#total++;
  }

  get total(): number {
    return this.#total;
  }

  get(reason: DropReason): number {
    return this.#counts[reason];
  }

  /** A copy of the counts, by reason. */
  snapshot(): Readonly<Record<DropReason, number>> {
    return { ...this.#counts };
  }
}
