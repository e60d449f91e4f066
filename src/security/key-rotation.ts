import { KeyAction, type KeyUpdate, type KeyUpdateAck } from "../../gen/activeblaze/v1/security_pb.ts";
import { waitUntil, type WaitOptions } from "../channel/wait.ts";
import { BlazeError } from "../errors.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { Clock, RandomSource, TimerHandle } from "../transport/clock.ts";
import { encodeFrame, type ReceivedFrame } from "../wire/frames.ts";
import type { KeyRing } from "./keyring.ts";

/** How a key rotation runs. */
export interface KeyRotationOptions extends WaitOptions {
  /**
   * Also retire the previous primary key at every member, once every member seals with the new one
   * (after `graceMs`, so datagrams sealed just before the switch still open). Default false.
   */
  readonly retire?: boolean;
  /** How long after the switch the previous key is retired, with `retire`. Default 1000 ms. */
  readonly graceMs?: number;
}

/** What a rotation did. */
export interface KeyRotationResult {
  /** The key every member now seals with. */
  readonly keyId: number;
  /** The key they sealed with before (on this member). */
  readonly previous: number;
  /** The members (ids in hex) that confirmed each step. */
  readonly members: readonly string[];
  /** The key retired everywhere, with `retire`. */
  readonly retired: number | undefined;
}

/** What a rotation needs of the endpoint it runs on. */
export interface RotationHost {
  readonly clock: Clock;
  readonly random: RandomSource;
  /** The peers now (admitted members). */
  peers(): Iterable<PeerKey>;
  /** Sends one frame to `peer` at once, in a datagram of its own sealed with key `keyId`. */
  send(peer: PeerKey, frame: Uint8Array, keyId: number): void;
}

/** Resends of a step's unanswered requests, every this many ms. */
const RETRY_MS = 100;
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_GRACE_MS = 1_000;

interface Step {
  readonly action: KeyAction;
  readonly keyId: number;
  /** Per peer, the nonce of its request; removed once it confirmed. */
  readonly waiting: Map<PeerKey, bigint>;
  readonly confirmed: Set<PeerKey>;
  /** Peers that refused, with why. */
  readonly refused: Map<PeerKey, string>;
  /** The channel stopped under the step. */
  stopped: boolean;
  wake: (() => void) | undefined;
}

/**
 * Key rotation without an outage, driven by one member: CHECK that every peer holds the new key
 * (the request is sealed with it, and the answer must be too), then USE it everywhere, then — if asked —
 * RETIRE the old one everywhere. A step moves on only when every peer confirmed the previous one, so at
 * no moment does a member seal with a key another cannot open. A peer that cannot confirm (it lacks
 * the key, or holds another secret under its id) stops the rotation before anything changed; the
 * error names it. Peers answer any member's steps; one rotation at a time per member.
 */
export class KeyRotation {
  readonly #keyring: KeyRing;
  readonly #host: RotationHost;
  #step: Step | undefined;
  #running = false;

  constructor(keyring: KeyRing, host: RotationHost) {
    this.#keyring = keyring;
    this.#host = host;
  }

  /** A KeyUpdate or KeyUpdateAck frame from `peer`, from a datagram sealed with key `sealedWith`. */
  onFrame(peer: PeerKey, frame: ReceivedFrame, sealedWith: number | undefined): void {
    if (frame.case === "keyUpdate") this.#answer(peer, frame.frame.kind.value as KeyUpdate, sealedWith);
    else if (frame.case === "keyUpdateAck") this.#acknowledged(peer, frame.frame.kind.value as KeyUpdateAck, sealedWith);
  }

  /** A peer left: a step no longer waits for it. */
  peerDown(peer: PeerKey): void {
    const step = this.#step;
    if (step?.waiting.delete(peer)) step.wake?.();
  }

  /** Switches every member to key `keyId` (see the class comment). */
  async rotate(keyId: number, options: KeyRotationOptions = {}): Promise<KeyRotationResult> {
    if (!this.#keyring.has(keyId)) throw new BlazeError("INVALID_ARGUMENT", `key ${keyId} is not in this member's keyring: add it first`, { path: ["keyId"] });
    if (this.#running) throw new BlazeError("ILLEGAL_STATE", "a key rotation is already running on this member");
    this.#running = true;
    try {
      const previous = this.#keyring.primary;
      const checked = await this.#run(KeyAction.CHECK, keyId, options);
      this.#keyring.use(keyId);
      const used = await this.#run(KeyAction.USE, keyId, options);
      let retired: number | undefined;
      if (options.retire === true && previous !== keyId) {
        await sleep(this.#host.clock, options.graceMs ?? DEFAULT_GRACE_MS);
        await this.#run(KeyAction.RETIRE, previous, options);
        this.#keyring.retire(previous);
        retired = previous;
      }
      return { keyId, previous, members: [...new Set([...checked, ...used])].sort(), retired };
    } finally {
      this.#running = false;
    }
  }

  /** Stops a rotation under way (the channel stopped): it fails with `CLOSED`. */
  close(): void {
    const step = this.#step;
    if (step === undefined) return;
    step.stopped = true;
    step.wake?.();
  }

  // One step at every peer: sends until each confirmed; peers heard meanwhile are asked too.
  async #run(action: KeyAction, keyId: number, options: KeyRotationOptions): Promise<string[]> {
    const step: Step = { action, keyId, waiting: new Map(), confirmed: new Set(), refused: new Map(), stopped: false, wake: undefined };
    this.#step = step;
    const what = `${KeyAction[action]} of key ${keyId}`;
    let retry: TimerHandle | undefined;
    const send = () => {
      for (const peer of this.#host.peers()) {
        if (step.confirmed.has(peer) || step.refused.has(peer)) continue;
        let nonce = step.waiting.get(peer);
        if (nonce === undefined) step.waiting.set(peer, (nonce = this.#nonce()));
        this.#host.send(peer, updateFrame(nonce, action, keyId), action === KeyAction.RETIRE ? this.#keyring.primary : keyId);
      }
      retry = this.#host.clock.setTimer(RETRY_MS, send);
    };
    try {
      send();
      await waitUntil(
        this.#host.clock,
        () => step.stopped || step.refused.size > 0 || (step.waiting.size === 0 && [...this.#host.peers()].every((peer) => step.confirmed.has(peer))),
        (wake) => {
          step.wake = wake;
          return () => (step.wake = undefined);
        },
        `every member's confirmation of the ${what}`,
        { timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, ...(options.signal === undefined ? {} : { signal: options.signal }) },
        DEFAULT_TIMEOUT_MS,
      );
    } catch (error) {
      if (error instanceof BlazeError && error.code === "TIMEOUT") {
        const silent = [...step.waiting.keys()].map((peer) => peer.slice(0, 8)).join(", ");
        const why = action === KeyAction.CHECK ? "lack the key or hold another secret under its id" : "did not answer";
        throw new BlazeError("TIMEOUT", `key rotation stopped at the ${what}: member(s) ${silent} ${why}`, { cause: error });
      }
      throw error;
    } finally {
      retry?.cancel();
      this.#step = undefined;
    }
    if (step.stopped) throw new BlazeError("CLOSED", `key rotation stopped at the ${what}: the channel stopped`);
    if (step.refused.size > 0) {
      const reasons = [...step.refused].map(([peer, why]) => `${peer.slice(0, 8)}: ${why}`).join("; ");
      throw new BlazeError("ILLEGAL_STATE", `key rotation stopped at the ${what}: ${reasons}`);
    }
    return [...step.confirmed];
  }

  // A step asked of this member. Requests are idempotent: a resent one gets the same answer.
  #answer(peer: PeerKey, update: KeyUpdate, sealedWith: number | undefined): void {
    let refusal = "";
    switch (update.action) {
      case KeyAction.CHECK:
        // It opened, so the key is held with the same secret; the answer goes under the same key.
        if (sealedWith !== update.keyId) refusal = `the check of key ${update.keyId} came sealed with key ${sealedWith}`;
        break;
      case KeyAction.USE:
        if (this.#keyring.has(update.keyId)) this.#keyring.use(update.keyId);
        else refusal = `key ${update.keyId} is not in this member's keyring`;
        break;
      case KeyAction.RETIRE:
        if (update.keyId === this.#keyring.primary) refusal = `key ${update.keyId} is this member's primary key`;
        else this.#keyring.retire(update.keyId);
        break;
      default:
        refusal = `unknown key action ${update.action}`;
    }
    const answerKey = update.action === KeyAction.CHECK && refusal === "" ? update.keyId : this.#keyring.primary;
    this.#host.send(peer, ackFrame(update.nonce, refusal), answerKey);
  }

  #acknowledged(peer: PeerKey, ack: KeyUpdateAck, sealedWith: number | undefined): void {
    const step = this.#step;
    if (step === undefined || step.waiting.get(peer) !== ack.nonce) return;
    // A check counts only when answered under the key checked: proof that the peer seals with it too.
    if (ack.refusal === "" && step.action === KeyAction.CHECK && sealedWith !== step.keyId) return;
    step.waiting.delete(peer);
    if (ack.refusal === "") step.confirmed.add(peer);
    else step.refused.set(peer, ack.refusal);
    step.wake?.();
  }

  // Below 2^53, as every number on the wire.
  #nonce(): bigint {
    return BigInt(this.#host.random.nextInt(2 ** 31) * 2 ** 21 + this.#host.random.nextInt(2 ** 21) + 1);
  }
}

function updateFrame(nonce: bigint, action: KeyAction, keyId: number): Uint8Array {
  return encodeFrame({ case: "keyUpdate", value: { nonce, action, keyId } });
}

function ackFrame(nonce: bigint, refusal: string): Uint8Array {
  return encodeFrame({ case: "keyUpdateAck", value: { nonce, refusal } });
}

function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}
