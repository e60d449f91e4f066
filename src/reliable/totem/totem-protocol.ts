import type { Frame } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import type { DigestEntry } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import type { TimedUnit } from "../../core/driver.ts";
import { type DataFields, encodeFrame } from "../../wire/frames.ts";
import { emptyStats, type OutgoingData, type PeerKey, type ProtocolHost, type ProtocolStats, type ReliabilityProtocol } from "../protocol.ts";
import type { TotemOptions } from "./options.ts";
import { Recovery } from "./recovery.ts";
import { type Formed, RingFormation } from "./ring-formation.ts";
import { type RingMessage, RingStore, sameRing } from "./ring-store.ts";
import { SendQueue } from "./send-queue.ts";
import { advanceToken, FIRST_VISIT, type TokenHolder, type VisitMemory, visitToken } from "./token-visit.ts";
import {
  type Commit,
  decodeCommit,
  decodeJoin,
  decodeRelay,
  decodeToken,
  encodeCommit,
  encodeRelay,
  encodeToken,
  type Relay,
  type Token,
  TotemPhase,
} from "./totem-frames.ts";

/** Where a member stands: forming a ring (gather, commit), bringing a new ring up (recovery), or running it. */
export type TotemState = "gather" | "commit" | "recovery" | "operational";

/** What a Totem member reports beyond every protocol's counters. */
export interface TotemStats extends ProtocolStats {
  /** Rings this member installed. */
  ringsInstalled: number;
  /** Times the token did not come back in time and the ring was formed again. */
  tokenLosses: number;
  /** Tokens (and commit tokens) sent again because the ring showed no sign of them. */
  tokensResent: number;
  /** Tokens dropped as duplicates or as belonging to a ring that is not this member's. */
  staleTokens: number;
  /** Totem frames dropped as malformed. */
  malformed: number;
  /** Messages and tokens of a ring this member is not in, and tokens, commit tokens and retransmissions from a member not in a place to send them. */
  foreign: number;
  /** Messages of old rings carried to the other members during recovery. */
  carried: number;
  /** Where this member stands and what it holds of its ring (for tools and tests). */
  ring: {
    readonly state: TotemState;
    readonly seq: number;
    readonly members: readonly PeerKey[];
    /** Everything up to here was received on the installed ring. */
    readonly aru: number;
    /** Everything up to here is known to be held by every member of the installed ring. */
    readonly safe: number;
    /** The global sequence number last delivered on the installed ring. */
    readonly delivered: number;
  };
}

const NO_RING: TotemStats["ring"] = { state: "gather", seq: 0, members: [], aru: 0, safe: 0, delivered: 0 };
const NEVER = Number.POSITIVE_INFINITY;

/**
 * Totem single-ring total order (Amir, Moser, Melliar-Smith et al., 1995; the protocol behind Corosync).
 *
 * A token circulates around a logical ring of the members; only its holder multicasts, stamping each
 * message with the ring's next global sequence number. The token carries the highest number stamped,
 * the all-received-up-to mark (`aru`), retransmission requests and flow-control counts. Every member
 * delivers the ring's messages in global order: "agreed" as soon as every earlier message is here,
 * "safe" only once every member of the ring has the message (the aru seen on two consecutive token
 * visits is at least its number).
 *
 * Rings are formed from the channel's live peers: a member that sees the membership change (a peer up
 * or down, a join, a message from another ring) or loses the token multicasts joins naming the members
 * it wants; once every one of them names the same set, the smallest id sends a commit token around the
 * new ring twice (collecting, then distributing, each member's state on its old ring). In recovery the
 * members carry each other the messages of their old rings they hold above the lowest aru, as messages
 * of the new ring; once every member has all of them, each delivers its old ring's remaining messages in
 * order (the same ones at every member coming from that ring) and installs the new ring; only after a
 * further rotation do members send new messages. See the README for what this guarantees.
 *
 * The actors are units of their own: ring formation (`RingFormation`), recovery (`Recovery`), what a
 * holder does with the token (`advanceToken`, `visitToken`: pure functions) and the messages waiting
 * for it (`SendQueue`). This class routes frames to them, holds the rings, and keeps the token's
 * deadlines: it reads no clock and arms no timer (a {@link TimedUnit}).
 */
export class TotemProtocol implements ReliabilityProtocol, TimedUnit {
  readonly name = "totem";
  /** The member's own messages come back through `deliver`, in the total order. */
  readonly deliversOwnMessages = true;
  /** Where a sender's stream ends is decided at a ring change, the same at every member moving together. */
  readonly endsStreams = true;
  /** A message sent again by another member is wrapped in a relay: this much room is kept for it. */
  readonly relayOverheadBytes = 128;

  readonly #host: ProtocolHost;
  readonly #options: TotemOptions;
  readonly #local: PeerKey;
  readonly #incarnation: number;
  readonly #stats: TotemStats;
  readonly #formation: RingFormation;
  readonly #queue: SendQueue;
  #closed = false;
  #state: TotemState = "gather";

  /** The ring this member last installed, and the ring the token runs on (the same once operational). */
  readonly #rings: { installed: RingStore | undefined; current: RingStore | undefined } = { installed: undefined, current: undefined };
  /** The installed ring is frozen once this member reported its state on it in a commit. */
  #frozen = false;
  #recovery: Recovery | undefined;
  /** The representative started the token of the ring in recovery. */
  #tokenStarted = false;

  // The token, on the current ring.
  #lastTokenSeq = 0;
  #memory: VisitMemory = FIRST_VISIT;
  /** Members may send: the ring runs at every member. */
  #open = false;
  /** The idle token, held until `#holdDue` (a send brings that to now). */
  #held: Token | undefined;
  #holdDue = NEVER;
  /** A ring of one passes the token to itself: it comes back at `#selfPassDue`. */
  #selfPass: Token | undefined;
  #selfPassDue = NEVER;
  /** The token (or commit token) last passed on, sent again at `#resendDue` while the ring shows no sign of it. */
  #resendTo: PeerKey = "";
  #resendFrame: Uint8Array | undefined;
  #resendEvery = 0;
  #resendDue = NEVER;
  /** No token by `#lossDue`: the ring is lost. */
  #lossDue = NEVER;
  /** When this member last passed the token on, and whether it had to send it again. */
  #passedAt = 0;
  #passResent = false;
  /** How long the token takes to come back once passed on (a smoothed average; 0 before the first). */
  #returnMs = 0;

  constructor(host: ProtocolHost, incarnation: number, options: TotemOptions, now = 0) {
    this.#host = host;
    this.#options = options;
    this.#local = host.localKey;
    this.#incarnation = incarnation;
    this.#stats = {
      ...emptyStats(),
      ringsInstalled: 0,
      tokenLosses: 0,
      tokensResent: 0,
      staleTokens: 0,
      malformed: 0,
      foreign: 0,
      carried: 0,
      ring: NO_RING,
    };
    this.#formation = new RingFormation(host, this.#local, incarnation, options);
    this.#queue = new SendQueue(options);
    this.#enterGather(now);
  }

  get stats(): Readonly<TotemStats> {
    const ring = this.#rings.installed;
    this.#stats.unstable = (this.#rings.current?.size ?? 0) + this.#queue.length;
    this.#stats.ring =
      ring === undefined
        ? { ...NO_RING, state: this.#state }
        : { state: this.#state, seq: ring.id.seq, members: ring.members, aru: ring.aru, safe: ring.safe, delivered: ring.delivered };
    return this.#stats;
  }

  /** Where this member stands. */
  get state(): TotemState {
    return this.#state;
  }

  canSend(bytes: number): boolean {
    return this.#queue.canAdd(bytes);
  }

  send(out: OutgoingData, now: number): number {
    const seq = this.#queue.add(out, out.safe ?? this.#options.delivery === "safe");
    this.#stats.sent++;
    // Holding the idle token: it goes on at once, with what was sent (once the current burst of sends is over).
    if (this.#held !== undefined) this.#holdDue = Math.min(this.#holdDue, now);
    return seq;
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields, now: number): void {
    if (this.#closed) return;
    this.#formation.heard(peer, now);
    if (data.globalSeq === 0 || data.ringSeq === 0) {
      this.#stats.malformed++;
      return;
    }
    const ring = this.#ringOf(data.ringSeq, peer, incarnation);
    if (ring === undefined) {
      this.#onForeign(peer, data.ringSeq, now);
      return;
    }
    this.#accept(ring, data.globalSeq, { origin: peer, originIncarnation: incarnation, data, carrier: undefined });
  }

  onControl(peer: PeerKey, incarnation: number, frame: Frame, now: number): void {
    if (this.#closed) return;
    this.#formation.heard(peer, now);
    switch (frame.kind.case) {
      case "totemToken": {
        const token = decodeToken(frame, this.#local);
        if (token === undefined) this.#stats.malformed++;
        else this.#receiveToken(peer, incarnation, token, now);
        return;
      }
      case "totemJoin": {
        const join = decodeJoin(frame);
        if (join === undefined) this.#stats.malformed++;
        else this.#follow(this.#formation.onJoin(peer, join, now, this.#rings), now);
        return;
      }
      case "totemCommit": {
        const commit = decodeCommit(frame);
        if (commit === undefined) this.#stats.malformed++;
        else this.#onCommit(peer, incarnation, commit, now);
        return;
      }
      case "totemRelay": {
        const relay = decodeRelay(frame);
        if (relay === undefined) this.#stats.malformed++;
        else this.#onRelay(peer, incarnation, relay, frame);
        return;
      }
      default:
        return;
    }
  }

  onPeerUp(peer: PeerKey, incarnation: number, now: number): void {
    if (this.#closed) return;
    this.#follow(this.#formation.peerUp(peer, incarnation, now, this.#rings), now);
  }

  onPeerDown(peer: PeerKey, now: number): void {
    if (this.#closed) return;
    this.#follow(this.#formation.peerDown(peer, now, this.#rings), now);
  }

  heartbeat(): { highestSeq: number; lowestSeq: number; digest: DigestEntry[] } {
    return { highestSeq: 0, lowestSeq: 0, digest: [] };
  }

  pollTimeout(): number {
    return Math.min(this.#selfPassDue, this.#holdDue, this.#resendDue, this.#lossDue, this.#formation.pollTimeout());
  }

  handleTimeout(now: number): void {
    if (this.#closed) return;
    // A lost ring comes first: nothing of it is passed on or sent again once it is given up (a commit
    // token sent again then would draw a member that gathers into a ring the others left).
    if (this.#lossDue <= now) {
      this.#stats.tokenLosses++;
      this.#enterGather(now);
    }
    if (this.#selfPassDue <= now) {
      const token = this.#selfPass!;
      this.#selfPass = undefined;
      this.#selfPassDue = NEVER;
      this.#receiveToken(this.#local, this.#incarnation, token, now);
    }
    if (this.#holdDue <= now) {
      const token = this.#held!;
      this.#held = undefined;
      this.#holdDue = NEVER;
      // A send came while the token was held: one more visit's work; else the hold is over.
      if (this.#queue.length > 0) this.#work(this.#rings.current!, token, now);
      else this.#forward(token, now);
    }
    if (this.#resendDue <= now) {
      this.#host.unicastFrame(this.#resendTo, this.#resendFrame!);
      this.#stats.tokensResent++;
      this.#passResent = true;
      this.#resendDue = now + this.#resendEvery;
    }
    if (this.#formation.pollTimeout() <= now) this.#follow(this.#formation.handleTimeout(now, this.#rings), now);
  }

  close(): void {
    this.#closed = true;
    this.#cancelTokenDeadlines();
    this.#formation.close();
    this.#queue.clear();
  }

  // ---- moving between rings -------------------------------------------------------------------------

  /** Does what ring formation asks. */
  #follow(formed: Formed | undefined, now: number): void {
    if (formed === undefined || this.#closed) return;
    switch (formed.kind) {
      case "regather":
        this.#enterGather(now);
        return;
      case "commit":
        this.#enterCommit(now);
        this.#passCommit(formed.commit, now);
        return;
      case "recover":
        this.#enterRecovery(formed.commit, now);
        // A ring of one has nobody to pass the commit token to: its token starts at once.
        if (formed.commit.members.length === 1) this.#startToken(now);
        else this.#passCommit(formed.commit, now);
        return;
    }
  }

  #enterGather(now: number): void {
    if (this.#closed) return;
    this.#cancelTokenDeadlines();
    this.#state = "gather";
    // A ring that did not finish recovery is abandoned; the installed ring is the member's old ring.
    this.#rings.current = this.#rings.installed;
    this.#frozen = false;
    this.#recovery = undefined;
    this.#open = false;
    this.#tokenStarted = false;
    this.#formation.gather(now, this.#rings);
  }

  #enterCommit(now: number): void {
    this.#state = "commit";
    // What this member reported of its old ring is what it holds of it until the new ring is up.
    this.#frozen = true;
    this.#lossDue = now + this.#options.tokenTimeoutMs;
  }

  #onCommit(from: PeerKey, incarnation: number, commit: Commit, now: number): void {
    const index = commit.members.findIndex((m) => m.member === this.#local);
    if (index < 0) {
      this.#stats.foreign++;
      return;
    }
    const mine = commit.members[index]!;
    if (mine.incarnation !== this.#incarnation) {
      // Formed for an earlier incarnation of this member (a commit token that outlived its crash).
      this.#stats.foreign++;
      return;
    }
    // A commit token goes round the ring it proposes: only the member before this one passes it here.
    // Taken from anyone else, a made-up one would hold this member in a ring that never forms, silent
    // while the others leave it out of theirs.
    const previous = commit.members[(index + commit.members.length - 1) % commit.members.length]!;
    if (previous.member !== from || previous.incarnation !== incarnation) {
      this.#stats.foreign++;
      return;
    }
    if (sameRing(commit.ring, this.#rings.current?.id) && this.#state === "recovery") {
      // The second rotation is back at the representative: the ring starts.
      if (index === 0 && commit.members.every((m) => m.received) && !this.#tokenStarted) this.#startToken(now);
      return;
    }
    this.#follow(this.#formation.onCommit(commit, mine, this.#rings), now);
  }

  #passCommit(commit: Commit, now: number): void {
    const members = commit.members;
    const index = members.findIndex((m) => m.member === this.#local);
    const next = members[(index + 1) % members.length]!.member;
    this.#sendToSuccessor(next, encodeCommit(commit), this.#options.tokenRetransmitMs, now);
  }

  #enterRecovery(commit: Commit, now: number): void {
    this.#cancelTokenDeadlines();
    const ring = new RingStore(
      commit.ring,
      commit.members.map((m) => m.member),
      new Map(commit.members.map((m) => [m.member, m.incarnation])),
    );
    this.#recovery = new Recovery(commit, this.#rings.installed, this.#local);
    this.#state = "recovery";
    this.#frozen = true;
    this.#rings.current = ring;
    this.#lastTokenSeq = 0;
    this.#passedAt = 0;
    this.#returnMs = 0;
    this.#memory = FIRST_VISIT;
    this.#open = false;
    this.#tokenStarted = false;
    this.#lossDue = now + this.#options.tokenTimeoutMs;
  }

  #startToken(now: number): void {
    const ring = this.#rings.current!;
    this.#tokenStarted = true;
    const token: Token = {
      ring: ring.id,
      tokenSeq: this.#lastTokenSeq + 1,
      seq: 0,
      aru: 0,
      aruId: "",
      retransmit: [],
      fcc: 0,
      backlog: 0,
      recoveryPending: true,
      phase: TotemPhase.UNSPECIFIED,
    };
    this.#receiveToken(this.#local, this.#incarnation, token, now);
  }

  /** Delivers the old ring's remaining messages (the same at every member coming from it) and runs the new one. */
  #install(now: number): void {
    const old = this.#rings.installed;
    const ring = this.#rings.current!;
    const recovery = this.#recovery;
    if (old !== undefined && old !== ring && recovery !== undefined) {
      for (let seq = old.delivered + 1; seq <= recovery.high && !this.#closed; seq++) {
        const message = old.get(seq);
        old.delivered = seq;
        if (message?.data === undefined) {
          if (message === undefined) this.#stats.lost++;
          continue;
        }
        this.#stats.delivered++;
        this.#host.deliver(message.origin, message.data, message.originIncarnation);
      }
      for (const { peer, incarnation } of recovery.endedStreams(old)) this.#host.report({ type: "streamEnded", peer, incarnation });
    }
    this.#rings.installed = ring;
    this.#frozen = false;
    this.#recovery = undefined;
    this.#state = "operational";
    this.#stats.ringsInstalled++;
    this.#formation.installed(ring, now);
  }

  // ---- the token -------------------------------------------------------------------------------------

  /** The token, from `from` (incarnation `incarnation`): the member before this one on the ring, or this member itself. */
  #receiveToken(from: PeerKey, incarnation: number, token: Token, now: number): void {
    const ring = this.#rings.current;
    if (ring === undefined || (this.#state !== "recovery" && this.#state !== "operational") || !sameRing(token.ring, ring.id)) {
      this.#stats.staleTokens++;
      if (this.#state === "operational" && !ring!.has(from)) this.#onForeign(from, token.ring.seq, now);
      return;
    }
    // Only the member before this one passes it the token. Taken from anyone else, a made-up token
    // (an old one with a higher tokenSeq) would run in the real one's place: the real one dropped as
    // stale, new messages stamped with numbers already used and dropped everywhere as duplicates.
    if (from !== this.#local && (ring.successor(from) !== this.#local || !ring.hasIncarnation(from, incarnation))) {
      this.#stats.foreign++;
      return;
    }
    if (token.tokenSeq <= this.#lastTokenSeq) {
      this.#stats.staleTokens++;
      return;
    }
    this.#lastTokenSeq = token.tokenSeq;
    this.#cancelTokenDeadlines();
    this.#lossDue = now + this.#options.tokenTimeoutMs;
    this.#measureReturn(now);

    const arrival = advanceToken(token, this.#holder(ring));
    ring.safe = arrival.safe;
    this.#memory = arrival.memory;
    if (arrival.install) this.#install(now);
    if (arrival.open) {
      this.#open = true;
      this.#host.writable();
    }
    if (this.#closed) return;
    this.#work(ring, arrival.token, now);
    ring.trim();
  }

  /** The token as a visit reads this member. */
  #holder(ring: RingStore): TokenHolder {
    return {
      local: this.#local,
      representative: ring.members[0] === this.#local,
      ring,
      recovering: this.#state === "recovery",
      open: this.#open,
      queued: this.#queue,
      carriers: this.#recovery?.pending ?? 0,
      memory: this.#memory,
    };
  }

  /** One visit's work on `token`, then it goes on. */
  #work(ring: RingStore, token: Token, now: number): void {
    const visit = visitToken(token, this.#holder(ring), this.#options);
    this.#memory = visit.memory;
    for (const seq of visit.resend) this.#resend(ring, ring.get(seq)!);
    if (visit.send > 0) {
      if (this.#state === "recovery") this.#sendCarriers(ring, token.seq, visit.send);
      else this.#sendQueued(ring, token.seq, visit.send);
    }
    this.#deliver();
    if (this.#closed || this.#rings.current !== ring) return;
    if (visit.idle && this.#options.tokenHoldMs > 0) {
      // An idle ring: keep the token a moment (a send releases it at once).
      this.#held = visit.token;
      this.#holdDue = now + this.#options.tokenHoldMs;
    } else this.#forward(visit.token, now);
  }

  /** Stamps and multicasts `count` queued messages, numbered from `after` + 1. */
  #sendQueued(ring: RingStore, after: number, count: number): void {
    const queue = this.#queue;
    for (let seq = after + 1; seq <= after + count; seq++) {
      const data = queue.take();
      data.globalSeq = seq;
      data.ringSeq = ring.id.seq;
      this.#host.multicastData(data);
      ring.put(seq, { origin: this.#local, originIncarnation: this.#incarnation, data, carrier: undefined });
    }
    this.#host.writable();
  }

  /** Carries `count` old-ring messages as messages of the recovering ring, numbered from `after` + 1. */
  #sendCarriers(ring: RingStore, after: number, count: number): void {
    const old = this.#rings.installed!;
    const recovery = this.#recovery!;
    for (let seq = after + 1; seq <= after + count; seq++) {
      const message = recovery.take();
      const frame = encodeRelay({
        origin: message.origin,
        originIncarnation: message.originIncarnation,
        ring: old.id,
        data: message.data!,
        carrierRing: ring.id,
        carrierSeq: seq,
      });
      this.#host.multicastFrame(frame);
      ring.put(seq, { origin: this.#local, originIncarnation: this.#incarnation, data: undefined, carrier: frame });
      this.#stats.carried++;
    }
  }

  #resend(ring: RingStore, message: RingMessage): void {
    const frame =
      message.carrier ??
      encodeRelay({
        origin: message.origin,
        originIncarnation: message.originIncarnation,
        ring: ring.id,
        data: message.data!,
        carrierRing: undefined,
        carrierSeq: 0,
      });
    this.#host.multicastFrame(frame);
    this.#stats.retransmitted++;
  }

  #forward(token: Token, now: number): void {
    const next = this.#rings.current!.successor(this.#local);
    if (next === this.#local) {
      // A ring of one passes the token to itself: it comes back in the next turn.
      this.#selfPass = token;
      this.#selfPassDue = now;
      return;
    }
    this.#passedAt = now;
    this.#passResent = false;
    this.#sendToSuccessor(next, encodeToken(token, next), this.#tokenRetransmitMs(), now);
  }

  // A token that came back after being sent again says nothing of how long a rotation takes (as Karn's rule for TCP).
  #measureReturn(now: number): void {
    if (this.#passedAt === 0 || this.#passResent) return;
    const sample = now - this.#passedAt;
    this.#returnMs = this.#returnMs === 0 ? sample : 0.75 * this.#returnMs + 0.25 * sample;
  }

  /**
   * How long a token passed on may stay unseen before it is sent again. On an idle ring nothing but the
   * token's return shows that the successor got it, and a rotation takes each member's hold: a fixed
   * `tokenRetransmitMs` below the rotation time sends every token twice on a large ring. So: one and a half
   * times the time the token took to come back lately (or, before that, the members' holds), at least
   * `tokenRetransmitMs`, at most a quarter of `tokenTimeoutMs` (a lost token is still sent again before
   * the ring is given up for lost).
   */
  #tokenRetransmitMs(): number {
    const { tokenRetransmitMs, tokenTimeoutMs, tokenHoldMs } = this.#options;
    const expected = Math.max(this.#returnMs, this.#rings.current!.members.length * tokenHoldMs);
    return Math.min(Math.max(tokenRetransmitMs, 1.5 * expected), Math.max(tokenRetransmitMs, tokenTimeoutMs / 4));
  }

  /** Unicasts a token or commit token, and sends it again every `retransmitMs` while the ring shows no sign of it. */
  #sendToSuccessor(next: PeerKey, frame: Uint8Array, retransmitMs: number, now: number): void {
    this.#host.unicastFrame(next, frame);
    this.#resendTo = next;
    this.#resendFrame = frame;
    this.#resendEvery = retransmitMs;
    this.#resendDue = now + retransmitMs;
  }

  #cancelTokenDeadlines(): void {
    this.#resendFrame = undefined;
    this.#resendDue = NEVER;
    this.#lossDue = NEVER;
    this.#held = undefined;
    this.#holdDue = NEVER;
    this.#selfPass = undefined;
    this.#selfPassDue = NEVER;
  }

  // ---- messages --------------------------------------------------------------------------------------

  /** The ring a message of ring number `ringSeq` from `peer` (incarnation `incarnation`) belongs to, if it is one this member reads. */
  #ringOf(ringSeq: number, peer: PeerKey, incarnation: number): RingStore | undefined {
    // A member is on one ring of each number, so the number and the sender name the ring; a sender
    // restarted since is another member, perhaps on another ring of the same number.
    const current = this.#rings.current;
    if (current !== undefined && current.id.seq === ringSeq && current.hasIncarnation(peer, incarnation)) {
      if (current !== this.#rings.installed || !this.#frozen) return current;
      return undefined;
    }
    return undefined;
  }

  #accept(ring: RingStore, seq: number, message: RingMessage): void {
    if (seq > ring.aru + 4 * this.#options.windowMessages + this.#options.maxMessagesPerVisit) {
      this.#stats.outOfWindow++;
      return;
    }
    if (!ring.put(seq, message)) {
      this.#stats.duplicates++;
      return;
    }
    this.#deliver();
  }

  #onRelay(peer: PeerKey, incarnation: number, relay: Relay, frame: Frame): void {
    const { installed, current } = this.#rings;
    if (relay.carrierRing === undefined) {
      // A retransmission, by a member of the ring (a holder of the token): from anyone else it could
      // take the place of a message yet to come.
      if (
        current === undefined ||
        !sameRing(current.id, relay.ring) ||
        !current.hasIncarnation(peer, incarnation) ||
        !current.hasIncarnation(relay.origin, relay.originIncarnation) ||
        (current === installed && this.#frozen)
      ) {
        this.#stats.foreign++;
        return;
      }
      this.#accept(current, relay.data.globalSeq, { origin: relay.origin, originIncarnation: relay.originIncarnation, data: relay.data, carrier: undefined });
      return;
    }
    // A message of an old ring carried on the current one.
    if (
      current === undefined ||
      !sameRing(current.id, relay.carrierRing) ||
      !current.hasIncarnation(peer, incarnation) ||
      (current === installed && this.#state !== "operational")
    ) {
      this.#stats.foreign++;
      return;
    }
    if (relay.carrierSeq > current.aru + 4 * this.#options.windowMessages + this.#options.maxMessagesPerVisit) {
      this.#stats.outOfWindow++;
      return;
    }
    if (!current.put(relay.carrierSeq, { origin: peer, originIncarnation: incarnation, data: undefined, carrier: encodeFrame(frame.kind) })) {
      this.#stats.duplicates++;
      return;
    }
    if (this.#state === "recovery" && installed !== undefined && sameRing(installed.id, relay.ring) && installed.hasIncarnation(relay.origin, relay.originIncarnation)) {
      installed.put(relay.data.globalSeq, { origin: relay.origin, originIncarnation: relay.originIncarnation, data: relay.data, carrier: undefined });
    }
    this.#deliver();
  }

  /** A message or token of a ring this member is not on. */
  #onForeign(peer: PeerKey, ringSeq: number, now: number): void {
    this.#stats.foreign++;
    if (this.#state !== "operational") return;
    const ring = this.#rings.current!;
    // Another ring runs beside this one (a member not in it, or one that moved on): form one ring.
    if (!ring.has(peer) || ringSeq > ring.id.seq) this.#enterGather(now);
  }

  /** Hands up, in global order, what may be delivered now. */
  #deliver(): void {
    const { installed: ring, current } = this.#rings;
    if (ring === undefined || this.#frozen) {
      if (current !== undefined && current !== ring) skipCarriers(current);
      return;
    }
    while (ring.delivered < ring.aru && !this.#closed) {
      const seq = ring.delivered + 1;
      const message = ring.get(seq)!;
      const data = message.data;
      if (data !== undefined) {
        // A safe message waits until every member has it; later messages wait behind it (one order).
        if (data.safe && seq > ring.safe) break;
        ring.delivered = seq;
        this.#stats.delivered++;
        this.#host.deliver(message.origin, data, message.originIncarnation);
      } else ring.delivered = seq;
    }
    if (current !== undefined && current !== ring) skipCarriers(current);
  }
}

/** A ring in recovery holds only carriers: nothing to deliver, but its delivered mark moves on (trimming). */
function skipCarriers(ring: RingStore): void {
  while (ring.delivered < ring.aru && ring.get(ring.delivered + 1)?.data === undefined) ring.delivered++;
}
