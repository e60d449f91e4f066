import { keyOf } from "../reliable/member-key.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { EnvelopeContext } from "../wire/codec.ts";
import { ClearHeaderReader, type SplitEnvelope } from "../wire/frames.ts";
import { concatBytes, Slab } from "../wire/bytes.ts";
import type { DropReason } from "../wire/drop-reason.ts";
import { MAX_DATAGRAM_BYTES, MEMBER_ID_BYTES } from "../wire/limits.ts";
import { web } from "../web.ts";
import {
  type CryptoProvider,
  equalBytes,
  KEY_BYTES,
  type SealMode,
  type SenderKey,
  SIGNATURE_BYTES,
  type SigningKey,
  type SyncCryptoProvider,
  TAG_BYTES,
  type VerifyKey,
} from "./crypto-provider.ts";
import type { KeyRing } from "./keyring.ts";
import type { ResolvedSecurityOptions } from "./options.ts";
import { OrderedQueue } from "./ordered-queue.ts";
import { ReplayWindow } from "./replay-window.ts";
import {
  isOneBodyField,
  readSealed,
  type SealedDatagram,
  type SealFields,
  sealedPrefixSize,
  signerMatches,
  wireModeOf,
  writeSealedPrefix,
} from "./sealed-datagram.ts";

/** Counters of a secured endpoint. Refused datagrams are counted by reason in the member's `dropped`. */
export interface SecurityStats {
  readonly provider: string;
  readonly mode: SealMode;
  /** Insider mode: every datagram signed with the sender's own key. */
  readonly insider: boolean;
  /** The key this member seals with. */
  readonly primaryKey: number;
  /** Every key this member holds. */
  readonly keys: readonly number[];
  /** Datagrams sealed and sent. */
  sealed: number;
  /** Datagrams that opened: authentic, fresh, handed on. */
  opened: number;
  /** Authenticated senders tracked (each with its replay windows). */
  senders: number;
  /** Tracked senders forgotten to make room (`maxSenders`). */
  sendersForgotten: number;
  /** With an asynchronous provider: datagrams being sealed or opened now. */
  inFlight: number;
  /** With an asynchronous provider: datagrams dropped because `cryptoQueue` were in flight already. */
  queueFull: number;
}

/** What a guard reports to the endpoint that owns it. */
export interface GuardHost {
  /** A datagram was refused (count it under `reason`; it creates no state). */
  refused(reason: DropReason, detail: string): void;
  /** The crypto provider failed (a fault of the runtime or of activeblaze, not of the datagram). */
  fault(error: unknown): void;
  /** One of this member's own datagrams came back (an earlier incarnation's, heard after a restart). */
  own(): void;
}

/** Key material of one authenticated sender (incarnation): derived keys, replay windows, signer. */
export interface SenderState {
  incarnation: number;
  /** Datagrams to the group (odd counters) and to one member (even counters). */
  windows: readonly [ReplayWindow, ReplayWindow];
  keys: Map<number, SenderKey>;
  verifyKey: VerifyKey | undefined;
  lastHeard: number;
}

/** What opening a datagram produced, before it is accepted in order. */
interface Opened {
  readonly body: Uint8Array;
  readonly key: SenderKey;
  readonly verifyKey: VerifyKey | undefined;
}

const INFO_LABEL = "activeblaze/v1 sender key";
const NO_BYTES = new Uint8Array(0);
/** Sealed datagrams up to a sixteenth of this are carved from a slab of this size; larger ones get their own buffer. */
const SEALED_SLAB_BYTES = 1 << 18;
const LARGE_DATAGRAM_BYTES = SEALED_SLAB_BYTES / 16;
const encoder = new web.TextEncoder();

/**
 * The HKDF info of a sender's key: the label, a zero byte, the mode's number, the key id (4 bytes), the
 * sender id (16 bytes), the incarnation (8 bytes), the cluster name (UTF-8); all numbers big-endian.
 */
export function senderKeyInfo(mode: SealMode, keyId: number, senderId: Uint8Array, incarnation: number, cluster: string): Uint8Array {
  const label = encoder.encode(INFO_LABEL);
  const name = encoder.encode(cluster);
  const info = new Uint8Array(label.length + 1 + 1 + 4 + senderId.length + 8 + name.length);
  let pos = 0;
  info.set(label, pos);
  pos += label.length + 1;
  info[pos++] = wireModeOf(mode);
  new DataView(info.buffer).setUint32(pos, keyId);
  pos += 4;
  info.set(senderId, pos);
  pos += senderId.length;
  new DataView(info.buffer).setUint32(pos, Math.floor(incarnation / 2 ** 32));
  new DataView(info.buffer).setUint32(pos + 4, incarnation >>> 0);
  pos += 8;
  info.set(name, pos);
  return info;
}

/** The counter a datagram's replay window counts: its place in its own sequence (1, 2, 3, ...). */
function sequenceOf(counter: number): number {
  return Math.ceil(counter / 2);
}

/**
 * The datagram boundary of a secured channel: every datagram out is sealed once, every datagram in is
 * opened before anything reads it. A datagram that does not open — not sealed, an unknown key, a
 * changed byte, a replay — is refused and counted, and leaves nothing behind: a sender is remembered
 * (its replay windows, its derived key) only once one of its datagrams has authenticated.
 *
 * With a synchronous provider everything happens in the call; with an asynchronous one (WebCrypto),
 * datagrams in and out pass through ordered queues, so they keep their order.
 */
export class DatagramGuard {
  readonly keyring: KeyRing;
  readonly #options: ResolvedSecurityOptions;
  readonly #provider: CryptoProvider;
  readonly #cluster: string;
  /** Reads the clear header of datagrams in, remembering the last sender's. */
  readonly #headers: ClearHeaderReader;
  readonly #context: EnvelopeContext;
  readonly #host: GuardHost;
  readonly #wallClock: () => number;
  readonly #senders: Map<PeerKey, SenderState>;
  readonly #trusted: ReadonlySet<string> | undefined;
  readonly #opening: OrderedQueue;
  readonly #sealing: OrderedQueue;
  readonly #localId: Uint8Array;
  readonly #signer: Uint8Array;
  #stats = { sealed: 0, opened: 0, sendersForgotten: 0, queueFull: 0 };
  #incarnation = 0;
  /** Next counters: odd ones for the group, even ones for single members. */
  #groupCounter = 1;
  #unicastCounter = 2;
  /** This member's own keys, per key id, for the current incarnation (or their derivation under way). */
  #ownKeys = new Map<number, SenderKey | Promise<SenderKey>>();
  #signingKey: SigningKey | Promise<SigningKey> | undefined;
  #lastId: Uint8Array | undefined;
  #lastKey = "";
  /** Senders' keys heard this turn, with the counter each sender's next datagram in that sequence will carry. */
  readonly #heard = new Map<SenderKey, number>();
  /** Sealed datagrams are carved from here: a small one costs no buffer of its own. */
  readonly #sealedBuffers = new Slab(SEALED_SLAB_BYTES);
  readonly #unsubscribe: () => void;

  constructor(
    options: ResolvedSecurityOptions,
    keyring: KeyRing,
    provider: CryptoProvider,
    identity: { readonly cluster: string; readonly memberId: Uint8Array; readonly maxDatagramBytes: number },
    host: GuardHost,
    wallClock: () => number = () => Date.now(),
    /**
     * The senders heard: a channel keeps them from one endpoint to the next (a restart of this member
     * must not make other members' recorded datagrams open again).
     */
    senders: Map<PeerKey, SenderState> = new Map(),
  ) {
    this.#senders = senders;
    this.#options = options;
    this.keyring = keyring;
    this.#provider = provider;
    this.#cluster = identity.cluster;
    this.#headers = new ClearHeaderReader(identity.cluster);
    this.#localId = identity.memberId;
    this.#context = { cluster: identity.cluster, maxDatagramBytes: identity.maxDatagramBytes };
    this.#host = host;
    this.#wallClock = wallClock;
    this.#signer = options.identity?.publicKey ?? new Uint8Array(0);
    this.#trusted = options.trustedMembers === undefined ? undefined : new Set(options.trustedMembers.map((key) => keyOf(key)));
    this.#opening = new OrderedQueue(options.cryptoQueue, (error) => host.fault(error));
    this.#sealing = new OrderedQueue(options.cryptoQueue, (error) => host.fault(error));
    this.#unsubscribe = keyring.onRetired((id) => {
      this.#ownKeys.delete(id);
      for (const sender of this.#senders.values()) sender.keys.delete(id);
    });
  }

  get stats(): SecurityStats {
    return {
      provider: this.#provider.name,
      mode: this.#options.mode,
      insider: this.#signer.length > 0,
      primaryKey: this.keyring.primary,
      keys: this.keyring.ids,
      ...this.#stats,
      senders: this.#senders.size,
      inFlight: this.#opening.size + this.#sealing.size,
    };
  }

  /**
   * The most bytes a seal adds to a datagram of up to `maxDatagramBytes`: datagram builders leave this
   * much room, so a sealed datagram is never larger than the limit.
   */
  static overheadBytes(options: ResolvedSecurityOptions, maxDatagramBytes: number = MAX_DATAGRAM_BYTES): number {
    const insider = options.identity !== undefined;
    const fields: SealFields = {
      keyId: 0xffff_ffff,
      mode: options.mode,
      counter: Number.MAX_SAFE_INTEGER,
      signerKey: new Uint8Array(insider ? KEY_BYTES : 0),
      receiverId: new Uint8Array(MEMBER_ID_BYTES),
    };
    // The seal's fields around a payload as long as a datagram can be (the longest lengths), the tag, the signature.
    return sealedPrefixSize(NO_BYTES, fields, maxDatagramBytes) + TAG_BYTES + (insider ? SIGNATURE_BYTES : 0);
  }

  /** Starts sealing as `incarnation`: counters start again (the incarnation's keys are new). */
  start(incarnation: number): void {
    this.#incarnation = incarnation;
    this.#groupCounter = 1;
    this.#unicastCounter = 2;
    this.#ownKeys.clear();
    const identity = this.#options.identity;
    if (identity !== undefined && this.#signingKey === undefined) this.#signingKey = this.#provider.signingKey(identity.privateKey);
  }

  /**
   * Makes ahead what the next datagrams will need, with a provider that can (node:crypto creates a
   * cipher per datagram): for this member's next counters under its primary key, and for the next
   * counter of each sender heard this turn. The endpoint calls it at the end of a turn, once that
   * turn's datagrams are sent, so the work stays off their way.
   */
  prepare(): void {
    const provider = this.#provider;
    if (!provider.synchronous || provider.prepare === undefined) return;
    const mode = this.#options.mode;
    const own = this.#ownKeys.get(this.keyring.primary) as SenderKey | undefined;
    if (own !== undefined) {
      provider.prepare(own, mode, this.#groupCounter, "seal");
      provider.prepare(own, mode, this.#unicastCounter, "seal");
    }
    for (const [key, counter] of this.#heard) provider.prepare(key, mode, counter, "open");
    this.#heard.clear();
  }

  /** Stops following the keyring (the endpoint closed; the keyring outlives it). */
  close(): void {
    this.#unsubscribe();
  }

  /** Resolves once every datagram being sealed or opened has been handed on. */
  async drained(): Promise<void> {
    await Promise.all([this.#opening.idle(), this.#sealing.idle()]);
  }

  /**
   * Seals `datagram` (an envelope: `headerLength` bytes of header, then its body) for the group
   * (`receiverId` "group") or for one member (its id, or undefined when not known), with key `keyId`
   * (default: the primary key), and hands the sealed datagram to `send` with `to`: at once, or — with
   * an asynchronous provider — once it and every datagram sealed before it are ready. (`to` is the
   * caller's, handed back as given: one `send` can serve every datagram, wherever it goes.)
   */
  seal<To>(
    datagram: Uint8Array,
    headerLength: number,
    receiverId: Uint8Array | "group" | undefined,
    send: (sealed: Uint8Array, to: To) => void,
    keyId: number = this.keyring.primary,
    to?: To,
  ): void {
    const provider = this.#provider;
    if (provider.synchronous) {
      const sealed = this.sealNow(datagram, headerLength, receiverId, keyId);
      if (sealed !== undefined) send(sealed, to as To);
      return;
    }
    const counter = this.#nextCounter(receiverId);
    if (counter === undefined) return;
    const header = datagram.subarray(0, headerLength);
    const body = datagram.subarray(headerLength);
    const fields = this.#sealFields(keyId, counter, receiverId);
    const key = this.#ownKey(keyId);
    const work = (async () => {
      const { out, aad, payloadStart } = sealedFrame(header, body, fields, provider, this.#sealedBuffers);
      const signingKey = await this.#signingKey;
      const plain = signingKey === undefined ? body : concatBytes(body, await provider.sign(signingKey, concatBytes(aad, body)));
      await provider.seal(await key, fields.mode, counter, aad, plain, out, payloadStart);
      return out;
    })();
    const queued = this.#sealing.push(
      work,
      (sealed) => {
        this.#stats.sealed++;
        send(sealed, to as To);
      },
      (error) => this.#host.fault(error),
    );
    if (!queued) this.#stats.queueFull++;
  }

  /** True when the provider seals in the call (node:crypto): `sealNow` can be used. */
  get synchronous(): boolean {
    return this.#provider.synchronous;
  }

  /**
   * Seals as `seal` does, with a synchronous provider, and returns the sealed datagram (undefined when
   * the incarnation's counter is exhausted: reported as a fault). A sender that hands the datagram on
   * itself keeps its send path in one piece, which the optimizing compiler takes whole (a callback
   * from here stays unoptimized for thousands of datagrams).
   */
  sealNow(datagram: Uint8Array, headerLength: number, receiverId: Uint8Array | "group" | undefined, keyId: number = this.keyring.primary): Uint8Array | undefined {
    const provider = this.#provider;
    if (!provider.synchronous) throw new Error("sealNow needs a synchronous crypto provider");
    const counter = this.#nextCounter(receiverId);
    if (counter === undefined) return undefined;
    const fields = this.#sealFields(keyId, counter, receiverId);
    const key = this.#ownKey(keyId) as SenderKey;
    const sealed = sealDatagram(provider, datagram.subarray(0, headerLength), datagram.subarray(headerLength), fields, key, this.#signingKey as SigningKey | undefined, this.#sealedBuffers);
    this.#stats.sealed++;
    return sealed;
  }

  /**
   * True when a datagram of `length` bytes is best sealed with `sealParts`: a large one, a synchronous
   * provider that seals into parts, and no signature (insider mode signs the body and the seal's fields).
   */
  sealsInParts(length: number): boolean {
    return length > LARGE_DATAGRAM_BYTES && this.#provider.synchronous && this.#provider.sealParts !== undefined && this.#signer.length === 0;
  }

  /**
   * Seals as `sealNow` does, and returns the sealed datagram in three parts to be sent as one: the
   * associated data (the header and the seal's fields), the ciphertext, the tag. A large datagram is
   * thus never copied into one buffer (the network gathers the parts as it sends them). Only when
   * `sealsInParts` says so; undefined when the incarnation's counter is exhausted (a fault).
   */
  sealParts(datagram: Uint8Array, headerLength: number, receiverId: Uint8Array | "group" | undefined, keyId: number = this.keyring.primary): readonly [Uint8Array, Uint8Array, Uint8Array] | undefined {
    const provider = this.#provider as SyncCryptoProvider;
    const counter = this.#nextCounter(receiverId);
    if (counter === undefined) return undefined;
    const fields = this.#sealFields(keyId, counter, receiverId);
    const header = datagram.subarray(0, headerLength);
    const body = datagram.subarray(headerLength);
    const payloadLength = body.length + TAG_BYTES;
    const aadLength = sealedPrefixSize(header, fields, payloadLength);
    const aad = this.#sealedBuffers.take(aadLength);
    if (writeSealedPrefix(aad, header, fields, payloadLength) !== aadLength) throw new Error(`the seal's fields laid out in other than ${aadLength} bytes`);
    const [payload, tag] = provider.sealParts!(this.#ownKey(keyId) as SenderKey, fields.mode, counter, aad, body);
    this.#stats.sealed++;
    return [aad, payload, tag];
  }

  // The counter of the next datagram to the group or to one member, taken; undefined (a fault) when exhausted.
  #nextCounter(receiverId: Uint8Array | "group" | undefined): number | undefined {
    const toGroup = receiverId === "group";
    const counter = toGroup ? this.#groupCounter : this.#unicastCounter;
    if (counter > Number.MAX_SAFE_INTEGER - 2) {
      // 2^52 datagrams in one incarnation: not reached in practice; restarting starts a new one.
      this.#host.fault(new Error("the datagram counter of this incarnation is exhausted: restart the channel"));
      return undefined;
    }
    if (toGroup) this.#groupCounter += 2;
    else this.#unicastCounter += 2;
    return counter;
  }

  #sealFields(keyId: number, counter: number, receiverId: Uint8Array | "group" | undefined): SealFields {
    return { keyId, mode: this.#options.mode, counter, signerKey: this.#signer, receiverId: receiverId === "group" ? NO_BYTES : (receiverId ?? NO_BYTES) };
  }

  /**
   * Opens a datagram and hands its plain envelope (its header, read with the seal, and its body) to
   * `deliver`, with the id of the key that sealed it — at once, or in arrival order with an
   * asynchronous provider. A datagram that does not open is counted through the host and never
   * reaches `deliver`.
   */
  open(bytes: Uint8Array, deliver: (opened: SplitEnvelope, keyId: number) => void): void {
    const read = readSealed(bytes, this.#context, this.#headers);
    if (!read.ok) return this.#host.refused(read.reason, read.detail);
    const sealed = read.sealed;
    if (equalBytes(sealed.senderId, this.#localId)) return this.#host.own();
    const senderKey = this.#keyOf(sealed.senderId);
    const known = this.#senders.get(senderKey);
    const refusal = this.#check(sealed, known);
    if (refusal !== undefined) return this.#host.refused(refusal[0], refusal[1]);
    const state = known?.incarnation === sealed.incarnation ? known : undefined;
    const provider = this.#provider;
    if (provider.synchronous) {
      const key = state?.keys.get(sealed.keyId) ?? provider.deriveKey(sealed.mode!, this.keyring.secret(sealed.keyId)!, this.#info(sealed));
      const body = provider.open(key, sealed.mode!, sealed.counter, sealed.aad, sealed.payload);
      if (body === undefined) return this.#host.refused("AUTH_FAILED", `sealed datagram from ${senderKey.slice(0, 8)} does not authenticate under key ${sealed.keyId}`);
      let verifyKey: VerifyKey | undefined;
      if (this.#signer.length > 0) {
        verifyKey = state?.verifyKey ?? provider.verifyKey(sealed.signerKey);
        if (!signed(body) || !provider.verify(verifyKey, concatBytes(sealed.aad, unsigned(body)), signatureOf(body))) {
          return this.#host.refused("AUTH_FAILED", `the signature of ${senderKey.slice(0, 8)} does not verify`);
        }
      }
      return this.#accept(senderKey, sealed, { body, key, verifyKey }, deliver);
    }
    const work = (async (): Promise<Opened | undefined> => {
      const key = state?.keys.get(sealed.keyId) ?? (await provider.deriveKey(sealed.mode!, this.keyring.secret(sealed.keyId)!, this.#info(sealed)));
      const body = await provider.open(key, sealed.mode!, sealed.counter, sealed.aad, sealed.payload);
      if (body === undefined) return undefined;
      let verifyKey: VerifyKey | undefined;
      if (this.#signer.length > 0) {
        verifyKey = state?.verifyKey ?? (await provider.verifyKey(sealed.signerKey));
        if (!signed(body) || !(await provider.verify(verifyKey, concatBytes(sealed.aad, unsigned(body)), signatureOf(body)))) return undefined;
      }
      return { body, key, verifyKey };
    })();
    const queued = this.#opening.push(
      work,
      (opened) => {
        if (opened === undefined) return this.#host.refused("AUTH_FAILED", `sealed datagram from ${senderKey.slice(0, 8)} does not authenticate under key ${sealed.keyId}`);
        this.#accept(senderKey, sealed, opened, deliver);
      },
      (error) => this.#host.fault(error),
    );
    if (!queued) this.#stats.queueFull++;
  }

  // The checks that need no cryptography, in the receiver's order (`known`: what is known of the
  // sender); a refusal's reason and detail.
  #check(sealed: SealedDatagram, known: SenderState | undefined): readonly [DropReason, string] | undefined {
    const insider = this.#signer.length > 0;
    if (sealed.mode !== this.#options.mode || (sealed.signerKey.length > 0) !== insider) {
      return ["WRONG_MODE", `sealed ${sealed.mode ?? "in an unknown mode"}${sealed.signerKey.length > 0 ? " with signatures" : ""}; this member uses ${this.#options.mode}${insider ? " with signatures" : ""}`];
    }
    if (!this.keyring.has(sealed.keyId)) return ["UNKNOWN_KEY", `sealed with key ${sealed.keyId}, which this member does not hold`];
    if (sealed.receiverId.length > 0 && !equalBytes(sealed.receiverId, this.#localId)) return ["REPLAYED", "a datagram to another member"];
    if (insider) {
      if (!signerMatches(sealed.signerKey, sealed.senderId)) return ["UNTRUSTED_SIGNER", "the signer key is not the sender's (its first 16 bytes are the member id)"];
      if (this.#trusted !== undefined && !this.#trusted.has(keyOf(sealed.signerKey))) return ["UNTRUSTED_SIGNER", "the signer is not a trusted member"];
    }
    if (sealed.incarnation > this.#wallClock() + this.#options.incarnationSkewMs) {
      return ["FUTURE_INCARNATION", `incarnation ${sealed.incarnation} is more than ${this.#options.incarnationSkewMs} ms ahead of this member's clock`];
    }
    if (known !== undefined) {
      if (sealed.incarnation < known.incarnation) return ["REPLAYED", `incarnation ${sealed.incarnation} is older than ${known.incarnation}, already heard`];
      if (sealed.incarnation === known.incarnation && !known.windows[sealed.counter % 2 === 1 ? 0 : 1].fresh(sequenceOf(sealed.counter))) {
        return ["REPLAYED", `counter ${sealed.counter} was seen already or is too old`];
      }
    }
    return undefined;
  }

  // An authentic datagram, in arrival order: now (and only now) the sender is remembered.
  #accept(senderKey: PeerKey, sealed: SealedDatagram, opened: Opened, deliver: (opened: SplitEnvelope, keyId: number) => void): void {
    let state = this.#senders.get(senderKey);
    if (state !== undefined && sealed.incarnation < state.incarnation) {
      return this.#host.refused("REPLAYED", `incarnation ${sealed.incarnation} is older than ${state.incarnation}, already heard`);
    }
    if (state === undefined || sealed.incarnation > state.incarnation) {
      if (state === undefined && this.#senders.size >= this.#options.maxSenders) this.#forgetLongestSilent();
      state = { incarnation: sealed.incarnation, windows: [new ReplayWindow(this.#options.replayWindow), new ReplayWindow(this.#options.replayWindow)], keys: new Map(), verifyKey: undefined, lastHeard: 0 };
      this.#senders.set(senderKey, state);
    }
    if (!state.windows[sealed.counter % 2 === 1 ? 0 : 1].accept(sequenceOf(sealed.counter))) {
      return this.#host.refused("REPLAYED", `counter ${sealed.counter} was seen already or is too old`);
    }
    state.lastHeard = this.#wallClock();
    state.keys.set(sealed.keyId, opened.key);
    if (this.#provider.prepare !== undefined) this.#heard.set(opened.key, sealed.counter + 2);
    state.verifyKey = opened.verifyKey;
    const body = this.#signer.length > 0 ? unsigned(opened.body) : opened.body;
    if (!isOneBodyField(body)) return this.#host.refused("INVALID_FIELD", "a sealed payload holds exactly one envelope body field");
    this.#stats.opened++;
    deliver({ header: sealed.header, senderId: sealed.senderId, incarnation: sealed.incarnation, body }, sealed.keyId);
  }

  #forgetLongestSilent(): void {
    let oldest: PeerKey | undefined;
    let oldestAt = Infinity;
    for (const [key, state] of this.#senders) {
      if (state.lastHeard < oldestAt) {
        oldestAt = state.lastHeard;
        oldest = key;
      }
    }
    if (oldest !== undefined) this.#senders.delete(oldest);
    this.#stats.sendersForgotten++;
  }

  #ownKey(keyId: number): SenderKey | Promise<SenderKey> {
    let key = this.#ownKeys.get(keyId);
    if (key === undefined) {
      const info = senderKeyInfo(this.#options.mode, keyId, this.#localId, this.#incarnation, this.#cluster);
      key = this.#provider.deriveKey(this.#options.mode, this.keyring.secret(keyId)!, info);
      this.#ownKeys.set(keyId, key);
    }
    return key;
  }

  #info(sealed: SealedDatagram): Uint8Array {
    return senderKeyInfo(sealed.mode!, sealed.keyId, sealed.senderId, sealed.incarnation, this.#cluster);
  }

  // Consecutive datagrams mostly come from the same sender: reuse its key.
  #keyOf(id: Uint8Array): PeerKey {
    if (this.#lastId !== undefined && equalBytes(this.#lastId, id)) return this.#lastKey;
    this.#lastId = id.slice();
    this.#lastKey = keyOf(id);
    return this.#lastKey;
  }
}

/**
 * Seals one datagram (its `header` and `body`) with the given fields and the sender's key, synchronously:
 * a sender's steps, for the guard and for tools and vectors that need a given counter.
 */
export function sealDatagram(
  provider: SyncCryptoProvider,
  header: Uint8Array,
  body: Uint8Array,
  fields: SealFields,
  key: SenderKey,
  signingKey: SigningKey | undefined,
  buffers?: Slab,
): Uint8Array {
  const { out, aad, payloadStart } = sealedFrame(header, body, fields, provider, buffers);
  const plain = signingKey === undefined ? body : concatBytes(body, provider.sign(signingKey, concatBytes(aad, body)));
  provider.seal(key, fields.mode, fields.counter, aad, plain, out, payloadStart);
  return out;
}

// The sealed datagram's buffer, its associated data written; the payload goes at `payloadStart`. A small
// datagram is carved from `buffers` when given; a large one comes from the provider's `allocate` when it
// has one (not zeroed: the prefix, the payload and the tag cover every byte, which is checked here).
function sealedFrame(
  header: Uint8Array,
  body: Uint8Array,
  fields: SealFields,
  provider: CryptoProvider,
  buffers?: Slab,
): { out: Uint8Array; aad: Uint8Array; payloadStart: number } {
  const plainLength = body.length + (fields.signerKey.length > 0 ? SIGNATURE_BYTES : 0);
  const payloadLength = plainLength + TAG_BYTES;
  const length = sealedPrefixSize(header, fields, payloadLength) + payloadLength;
  const out =
    length > LARGE_DATAGRAM_BYTES && provider.allocate !== undefined ? provider.allocate(length) : buffers === undefined ? new Uint8Array(length) : buffers.take(length);
  const payloadStart = writeSealedPrefix(out, header, fields, payloadLength);
  if (payloadStart + payloadLength !== length) throw new Error(`a sealed datagram of ${length} bytes laid out as ${payloadStart + payloadLength}`);
  return { out, aad: out.subarray(0, payloadStart), payloadStart };
}

function signed(body: Uint8Array): boolean {
  return body.length > SIGNATURE_BYTES;
}

function unsigned(body: Uint8Array): Uint8Array {
  return body.subarray(0, body.length - SIGNATURE_BYTES);
}

function signatureOf(body: Uint8Array): Uint8Array {
  return body.subarray(body.length - SIGNATURE_BYTES);
}
