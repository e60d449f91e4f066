import { toBinary } from "@bufbuild/protobuf";
import { type Frame, FrameSchema } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import type { DigestEntry } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import type { TimerHandle } from "../../transport/clock.ts";
import { type DataFields, emptyDataFields } from "../../wire/frames.ts";
import {
  emptyStats,
  fillData,
  type OutgoingData,
  type PeerKey,
  type ProtocolHost,
  type ProtocolStats,
  type ReliabilityProtocol,
} from "../protocol.ts";
import type { TotemOptions } from "./options.ts";
import { type RingId, type RingMessage, RingStore, sameRing } from "./ring-store.ts";
import {
  type Commit,
  decodeCommit,
  decodeJoin,
  decodeRelay,
  decodeToken,
  encodeCommit,
  encodeJoin,
  encodeRelay,
  encodeToken,
  type Join,
  MAX_TOKEN_RANGES,
  type MemberState,
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
  /** Messages and tokens of a ring this member is not in. */
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

interface JoinSeen {
  readonly key: string;
  readonly highestRingSeq: number;
  readonly at: number;
}

interface Carrier {
  readonly seq: number;
  readonly message: RingMessage;
}

const SLAB_BYTES = 1 << 20;

const NO_RING: TotemStats["ring"] = { state: "gather", seq: 0, members: [], aru: 0, safe: 0, delivered: 0 };

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
 */
export class TotemProtocol implements ReliabilityProtocol {
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
  #closed = false;
  #state: TotemState = "gather";

  /** Live peers (from the channel) and when each was last heard. */
  readonly #peers = new Map<PeerKey, number>();
  readonly #heard = new Map<PeerKey, number>();

  /** The ring this member last installed, and the ring the token runs on (the same once operational). */
  #installed: RingStore | undefined;
  #current: RingStore | undefined;
  #highestRingSeq = 0;

  // The token, on the current ring.
  #lastTokenSeq = 0;
  #lastVisitAru = 0;
  #lastVisitSeq = 0;
  #myLastFcc = 0;
  #myLastBacklog = 0;
  #open = false;
  #held: Token | undefined;
  #releaseScheduled = false;
  #holdTimer: TimerHandle | undefined;
  #passTimer: TimerHandle | undefined;
  /** When this member last passed the token on, and whether it had to send it again. */
  #passedAt = 0;
  #passResent = false;
  /** How long the token takes to come back once passed on (a smoothed average; 0 before the first). */
  #returnMs = 0;
  #lossTimer: TimerHandle | undefined;

  // Recovery.
  /** Every new ring member's state on its old ring, from the commit token. */
  #recoveryStates: readonly MemberState[] = [];
  #carriers: Carrier[] = [];
  #carrierIndex = 0;
  #recoveryHigh = 0;
  #recoveryDoneSeq = -1;
  #tokenStarted = false;

  // Ring formation.
  readonly #failed = new Set<PeerKey>();
  readonly #joins = new Map<PeerKey, JoinSeen>();
  #gatherStart = 0;
  #joinTimer: TimerHandle | undefined;
  #announceTimer: TimerHandle | undefined;
  #commitRing: RingId | undefined;
  #commitMembers = "";
  /** The installed ring is frozen once this member reported its state on it in a commit. */
  #frozen = false;

  // Messages waiting for the token.
  #queue: DataFields[] = [];
  #queueHead = 0;
  #queuedBytes = 0;
  #ownSeq = 0;
  // Queued payloads are copied into slabs: one allocation per many messages instead of one each.
  #slab = new Uint8Array(0);
  #slabUsed = 0;

  constructor(host: ProtocolHost, incarnation: number, options: TotemOptions) {
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
    this.#enterGather();
  }

  get stats(): Readonly<TotemStats> {
    const ring = this.#installed;
    this.#stats.unstable = (this.#current?.size ?? 0) + (this.#queue.length - this.#queueHead);
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
    const queued = this.#queue.length - this.#queueHead;
    if (queued === 0) return true;
    return queued < this.#options.queueMessages && this.#queuedBytes + bytes <= this.#options.queueBytes;
  }

  send(out: OutgoingData): number {
    const seq = ++this.#ownSeq;
    const data = fillData(emptyDataFields(), seq, out);
    // Every message is ordered: out of band means nothing here.
    data.outOfBand = false;
    // The message waits for the token: it keeps its own copy of the bytes.
    data.payload = this.#copy(out.payload);
    data.safe = out.safe ?? this.#options.delivery === "safe";
    this.#queue.push(data);
    this.#queuedBytes += data.payload.length;
    this.#stats.sent++;
    if (this.#held !== undefined && !this.#releaseScheduled) {
      // Holding the idle token: send at once, after the current burst of sends.
      this.#releaseScheduled = true;
      this.#host.clock.defer(() => this.#release());
    }
    return seq;
  }

  #copy(payload: Uint8Array): Uint8Array {
    const length = payload.length;
    if (length > SLAB_BYTES / 16) return payload.slice();
    if (this.#slabUsed + length > this.#slab.length) {
      this.#slab = new Uint8Array(SLAB_BYTES);
      this.#slabUsed = 0;
    }
    const copy = this.#slab.subarray(this.#slabUsed, this.#slabUsed + length);
    copy.set(payload);
    this.#slabUsed += length;
    return copy;
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields): void {
    if (this.#closed) return;
    this.#heard.set(peer, this.#host.clock.now());
    if (data.globalSeq === 0 || data.ringSeq === 0) {
      this.#stats.malformed++;
      return;
    }
    const ring = this.#ringOf(data.ringSeq, peer, incarnation);
    if (ring === undefined) {
      this.#onForeign(peer, data.ringSeq);
      return;
    }
    this.#accept(ring, data.globalSeq, { origin: peer, originIncarnation: incarnation, data, carrier: undefined });
  }

  onControl(peer: PeerKey, incarnation: number, frame: Frame): void {
    if (this.#closed) return;
    this.#heard.set(peer, this.#host.clock.now());
    switch (frame.kind.case) {
      case "totemToken": {
        const token = decodeToken(frame, this.#local);
        if (token === undefined) this.#stats.malformed++;
        else this.#receiveToken(peer, token);
        return;
      }
      case "totemJoin": {
        const join = decodeJoin(frame);
        if (join === undefined) this.#stats.malformed++;
        else this.#onJoin(peer, join);
        return;
      }
      case "totemCommit": {
        const commit = decodeCommit(frame);
        if (commit === undefined) this.#stats.malformed++;
        else this.#onCommit(commit);
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

  onPeerUp(peer: PeerKey, incarnation: number): void {
    if (this.#closed) return;
    const known = this.#peers.get(peer);
    this.#peers.set(peer, incarnation);
    this.#heard.set(peer, this.#host.clock.now());
    this.#failed.delete(peer);
    if (this.#state === "gather") {
      this.#sendJoin();
      return;
    }
    // A newcomer, or a member back as a new incarnation: form the ring again with it.
    if (known !== incarnation) this.#enterGather();
  }

  onPeerDown(peer: PeerKey): void {
    if (this.#closed) return;
    this.#peers.delete(peer);
    this.#heard.delete(peer);
    this.#failed.delete(peer);
    this.#joins.delete(peer);
    if (this.#state === "gather") {
      this.#sendJoin();
      this.#tryConsensus();
    } else if (this.#ringMembers().includes(peer)) this.#enterGather();
  }

  heartbeat(): { highestSeq: number; lowestSeq: number; digest: DigestEntry[] } {
    return { highestSeq: 0, lowestSeq: 0, digest: [] };
  }

  close(): void {
    this.#closed = true;
    this.#cancelTokenTimers();
    this.#joinTimer?.cancel();
    this.#joinTimer = undefined;
    this.#announceTimer?.cancel();
    this.#announceTimer = undefined;
    this.#queue = [];
    this.#queueHead = 0;
    this.#queuedBytes = 0;
  }

  // ---- ring formation ------------------------------------------------------------------------------

  /** The members this member wants in the ring: itself and its live peers, less those failed. */
  #candidates(): PeerKey[] {
    const members = [this.#local];
    for (const peer of this.#peers.keys()) if (!this.#failed.has(peer)) members.push(peer);
    return members.sort();
  }

  #ringMembers(): readonly PeerKey[] {
    return this.#current?.members ?? [];
  }

  #enterGather(): void {
    if (this.#closed) return;
    if (this.#state !== "gather") {
      for (const [peer, at] of this.#heard) {
        if (this.#host.clock.now() - at < this.#options.consensusTimeoutMs) this.#failed.delete(peer);
      }
    }
    this.#cancelTokenTimers();
    this.#announceTimer?.cancel();
    this.#announceTimer = undefined;
    this.#state = "gather";
    // A ring that did not finish recovery is abandoned; the installed ring is the member's old ring.
    this.#current = this.#installed;
    this.#frozen = false;
    this.#carriers = [];
    this.#carrierIndex = 0;
    this.#open = false;
    this.#commitRing = undefined;
    this.#tokenStarted = false;
    this.#gatherStart = this.#host.clock.now();
    this.#sendJoin();
    this.#joinTimer?.cancel();
    this.#joinTimer = this.#host.clock.setTimer(this.#options.joinIntervalMs, () => this.#onJoinTimer());
  }

  #onJoinTimer(): void {
    this.#joinTimer = undefined;
    if (this.#closed || this.#state !== "gather") return;
    const now = this.#host.clock.now();
    const { consensusTimeoutMs } = this.#options;
    if (now - this.#gatherStart >= consensusTimeoutMs) {
      // A member that says nothing while the ring forms has failed.
      const key = this.#candidates().join(",");
      const since = this.#gatherStart - this.#options.joinIntervalMs;
      for (const member of this.#candidates()) {
        const join = this.#joins.get(member);
        if (member === this.#local || (join !== undefined && join.key === key && join.at >= since)) continue;
        if (now - (this.#heard.get(member) ?? 0) >= consensusTimeoutMs) this.#failed.add(member);
      }
    }
    this.#sendJoin();
    this.#tryConsensus();
    if (this.#state === "gather") this.#joinTimer = this.#host.clock.setTimer(this.#options.joinIntervalMs, () => this.#onJoinTimer());
  }

  #sendJoin(): void {
    const join: Join = {
      ring: this.#installed?.id,
      members: this.#candidates(),
      failed: [...this.#failed].sort(),
      highestRingSeq: this.#highestRingSeq,
      announce: false,
    };
    this.#host.multicastFrame(encodeJoin(join, this.#peers));
  }

  // Rings that cannot hear each other run side by side; once they can, the announcement of one makes
  // the members of the other form a ring of all (an idle ring sends nothing else they would hear).
  #scheduleAnnounce(): void {
    this.#announceTimer?.cancel();
    this.#announceTimer = this.#host.clock.setTimer(this.#options.tokenTimeoutMs, () => {
      this.#announceTimer = undefined;
      const ring = this.#installed;
      if (this.#closed || this.#state !== "operational" || ring === undefined || ring.members[0] !== this.#local) return;
      const join: Join = { ring: ring.id, members: ring.members, failed: [], highestRingSeq: this.#highestRingSeq, announce: true };
      this.#host.multicastFrame(encodeJoin(join, this.#peers));
      this.#scheduleAnnounce();
    });
  }

  #onJoin(peer: PeerKey, join: Join): void {
    if (join.announce) {
      // Another ring runs within hearing: merge with it (its members heard, so no longer failed).
      if (this.#current?.has(peer) === true && sameRing(join.ring, this.#current.id)) return;
      for (const member of join.members) this.#failed.delete(member);
      if (this.#state === "gather") this.#sendJoin();
      else this.#enterGather();
      return;
    }
    if (this.#failed.delete(peer) && this.#state === "gather") this.#sendJoin();
    const key = join.members.join(",");
    this.#joins.set(peer, { key, highestRingSeq: join.highestRingSeq, at: this.#host.clock.now() });
    if (join.highestRingSeq > this.#highestRingSeq) this.#highestRingSeq = join.highestRingSeq;
    switch (this.#state) {
      case "gather":
        this.#tryConsensus();
        return;
      case "commit":
        // A member of the proposed ring that now wants another one: start again.
        if (!this.#commitMembers.split(",").includes(peer) || key !== this.#commitMembers) this.#enterGather();
        return;
      default: {
        // Joins left over from the formation of the current ring are older than it.
        const ring = this.#current!;
        if (!ring.has(peer) || join.highestRingSeq >= ring.id.seq) this.#enterGather();
      }
    }
  }

  #tryConsensus(): void {
    if (this.#state !== "gather" || this.#closed) return;
    if (this.#host.clock.now() - this.#gatherStart < this.#options.joinIntervalMs) return;
    const members = this.#candidates();
    const key = members.join(",");
    // Only joins of this formation count (the one that started it arrived just before): a member that
    // crashed after an earlier join must not be taken in.
    const since = this.#gatherStart - this.#options.joinIntervalMs;
    for (const member of members) {
      const join = this.#joins.get(member);
      if (member !== this.#local && (join === undefined || join.key !== key || join.at < since)) return;
    }
    // Consensus: the smallest id forms the ring; the others wait for its commit token.
    if (members[0] !== this.#local) return;
    const ring: RingId = { representative: this.#local, seq: this.#highestRingSeq + 1 };
    const commit: Commit = {
      ring,
      members: members.map((member) => ({
        member,
        incarnation: member === this.#local ? this.#incarnation : (this.#peers.get(member) ?? 0),
        oldRing: undefined,
        oldAru: 0,
        highDelivered: 0,
        highReceived: 0,
        received: false,
      })),
    };
    this.#fillState(commit.members[0]!);
    this.#enterCommit(commit);
    if (members.length === 1) {
      this.#enterRecovery(commit);
      this.#startToken();
    } else this.#passCommit(commit);
  }

  #fillState(state: MemberState): void {
    const old = this.#installed;
    state.oldRing = old?.id;
    state.oldAru = old?.aru ?? 0;
    state.highDelivered = old?.delivered ?? 0;
    state.highReceived = old?.highest ?? 0;
    state.received = true;
  }

  #enterCommit(commit: Commit): void {
    this.#state = "commit";
    this.#commitRing = commit.ring;
    this.#commitMembers = commit.members.map((m) => m.member).join(",");
    // What this member reported of its old ring is what it holds of it until the new ring is up.
    this.#frozen = true;
    this.#joinTimer?.cancel();
    this.#joinTimer = undefined;
    if (commit.ring.seq > this.#highestRingSeq) this.#highestRingSeq = commit.ring.seq;
    this.#armLossTimer();
  }

  #onCommit(commit: Commit): void {
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
    const complete = commit.members.every((m) => m.received);
    if (sameRing(commit.ring, this.#current?.id) && this.#state === "recovery") {
      // The second rotation is back at the representative: the ring starts.
      if (index === 0 && complete && !this.#tokenStarted) this.#startToken();
      return;
    }
    if (!mine.received) {
      // First rotation: report this member's state on its old ring.
      if (this.#state !== "gather" || commit.ring.seq <= this.#ringSeqFloor()) return;
      if (commit.members.map((m) => m.member).join(",") !== this.#candidates().join(",")) return;
      this.#fillState(mine);
      this.#enterCommit(commit);
      this.#passCommit(commit);
      return;
    }
    if (complete && this.#state === "commit" && sameRing(this.#commitRing, commit.ring)) {
      // Second rotation (at the representative: the first one is back): every state is known.
      this.#enterRecovery(commit);
      this.#passCommit(commit);
    }
  }

  #ringSeqFloor(): number {
    return Math.max(this.#installed?.id.seq ?? 0, this.#current?.id.seq ?? 0);
  }

  #passCommit(commit: Commit): void {
    const members = commit.members;
    const index = members.findIndex((m) => m.member === this.#local);
    const next = members[(index + 1) % members.length]!.member;
    this.#sendToSuccessor(next, encodeCommit(commit), this.#options.tokenRetransmitMs);
  }

  #enterRecovery(commit: Commit): void {
    this.#cancelTokenTimers();
    const ring = new RingStore(
      commit.ring,
      commit.members.map((m) => m.member),
      new Map(commit.members.map((m) => [m.member, m.incarnation])),
    );
    this.#recoveryStates = commit.members;
    const old = this.#installed;
    this.#carriers = [];
    this.#carrierIndex = 0;
    this.#recoveryHigh = 0;
    if (old !== undefined) {
      // The members coming from this member's old ring end up with every message any of them holds above
      // the lowest aru among them. Up to the highest aru, the member with that aru (the smallest id among
      // equals) holds them all and carries them alone; above it, each carries what it holds.
      let low = Number.MAX_SAFE_INTEGER;
      let high = 0;
      let top: MemberState | undefined;
      let fromOld = 0;
      for (const state of commit.members) {
        if (!sameRing(state.oldRing, old.id)) continue;
        low = Math.min(low, state.oldAru);
        high = Math.max(high, state.highReceived);
        if (top === undefined || state.oldAru > top.oldAru) top = state;
        fromOld++;
      }
      // Alone from its old ring, a member has nobody to carry anything to.
      const from = top?.member === this.#local ? low + 1 : Math.max(low, top?.oldAru ?? 0) + 1;
      for (let seq = from; seq <= high && fromOld > 1; seq++) {
        const message = old.get(seq);
        if (message?.data !== undefined) this.#carriers.push({ seq, message });
      }
      this.#recoveryHigh = high;
    }
    this.#state = "recovery";
    this.#current = ring;
    this.#commitRing = undefined;
    if (ring.id.seq > this.#highestRingSeq) this.#highestRingSeq = ring.id.seq;
    this.#lastTokenSeq = 0;
    this.#passedAt = 0;
    this.#returnMs = 0;
    this.#lastVisitAru = 0;
    this.#lastVisitSeq = 0;
    this.#myLastFcc = 0;
    this.#myLastBacklog = 0;
    this.#open = false;
    this.#recoveryDoneSeq = -1;
    this.#tokenStarted = false;
    this.#joins.clear();
    this.#armLossTimer();
  }

  #startToken(): void {
    const ring = this.#current!;
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
    this.#receiveToken(this.#local, token);
  }

  /** Delivers the old ring's remaining messages (the same at every member coming from it) and runs the new one. */
  #install(): void {
    const old = this.#installed;
    const ring = this.#current!;
    if (old !== undefined && old !== ring) {
      for (let seq = old.delivered + 1; seq <= this.#recoveryHigh && !this.#closed; seq++) {
        const message = old.get(seq);
        old.delivered = seq;
        if (message?.data === undefined) {
          if (message === undefined) this.#stats.lost++;
          continue;
        }
        this.#stats.delivered++;
        this.#host.deliver(message.origin, message.data, message.originIncarnation);
      }
      this.#endBrokenStreams(old);
    }
    this.#installed = ring;
    this.#frozen = false;
    this.#carriers = [];
    this.#carrierIndex = 0;
    this.#state = "operational";
    this.#stats.ringsInstalled++;
    if (ring.members[0] === this.#local) this.#scheduleAnnounce();
  }

  /**
   * Where the old ring's senders' streams end. A sender goes on unbroken only when it is on the new ring
   * as the same incarnation, and every member of the new ring comes from the old ring or from no ring at
   * all (a newcomer gets nothing sent before it joined): then whatever it sent on the old ring was just
   * delivered everywhere, and what it sends next follows. Otherwise — it left, or the new ring merges
   * rings — some member of the new ring lacks part of its stream, so a message delivered in part is
   * given up by every member (its sender included), alike: all decide from the same commit token.
   */
  #endBrokenStreams(old: RingStore): void {
    const merged = this.#recoveryStates.some((state) => state.oldRing !== undefined && !sameRing(state.oldRing, old.id));
    for (const member of old.members) {
      const incarnation = old.incarnations.get(member) ?? 0;
      const state = this.#recoveryStates.find((s) => s.member === member);
      if (!merged && state !== undefined && state.incarnation === incarnation && sameRing(state.oldRing, old.id)) continue;
      this.#host.report({ type: "streamEnded", peer: member, incarnation });
    }
  }

  // ---- the token -------------------------------------------------------------------------------------

  #receiveToken(from: PeerKey, token: Token): void {
    const ring = this.#current;
    if (ring === undefined || (this.#state !== "recovery" && this.#state !== "operational") || !sameRing(token.ring, ring.id)) {
      this.#stats.staleTokens++;
      if (this.#state === "operational" && !ring!.has(from)) this.#onForeign(from, token.ring.seq);
      return;
    }
    if (token.tokenSeq <= this.#lastTokenSeq) {
      this.#stats.staleTokens++;
      return;
    }
    this.#lastTokenSeq = token.tokenSeq;
    this.#cancelTokenTimers();
    this.#armLossTimer();
    this.#measureReturn();

    // Safe: every member has what the aru covered on two consecutive visits.
    const safe = Math.min(token.aru, this.#lastVisitAru);
    if (safe > ring.safe) ring.safe = safe;
    this.#lastVisitAru = token.aru;

    this.#advancePhase(token);
    this.#work(token);
    this.#deliver();
    ring.trim();
    if (!this.#closed && this.#current === ring) this.#pass(token);
  }

  /** The ring's formation stages, driven by the representative and followed by everyone. */
  #advancePhase(token: Token): void {
    const ring = this.#current!;
    if (ring.members[0] === this.#local) {
      switch (token.phase) {
        case TotemPhase.UNSPECIFIED: {
          const carrying = token.recoveryPending || this.#carrierIndex < this.#carriers.length;
          if (carrying) this.#recoveryDoneSeq = -1;
          else {
            // Nobody had anything left to carry during a whole rotation: once every member holds
            // everything up to here, every member has every carried message.
            if (this.#recoveryDoneSeq < 0) this.#recoveryDoneSeq = token.seq;
            if (ring.safe >= this.#recoveryDoneSeq) {
              token.phase = TotemPhase.INSTALL;
              this.#install();
            }
          }
          return;
        }
        case TotemPhase.INSTALL:
          // Back around: every member installed the ring.
          token.phase = TotemPhase.OPERATIONAL;
          this.#open = true;
          this.#host.writable();
          return;
        default:
          return;
      }
    }
    if (token.phase !== TotemPhase.UNSPECIFIED && this.#state === "recovery") this.#install();
    if (token.phase === TotemPhase.OPERATIONAL && !this.#open) {
      this.#open = true;
      this.#host.writable();
    }
  }

  /** One token visit's work: retransmissions, requests, new messages, aru and flow control. */
  #work(token: Token): void {
    const ring = this.#current!;
    const options = this.#options;
    let sent = 0;

    // Retransmit what others asked for and this member holds.
    if (token.retransmit.length > 0) {
      const still: Array<[number, number]> = [];
      for (const [first, last] of token.retransmit) {
        for (let seq = first; seq <= last; seq++) {
          const message = ring.get(seq);
          if (message !== undefined && sent < options.windowMessages) {
            this.#resend(ring, message);
            sent++;
          } else if (!ring.received(seq) || message !== undefined) addToRanges(still, seq);
        }
      }
      token.retransmit = still;
    }

    // Ask for what this member misses: gaps below what it received, and what was stamped before its last visit.
    const limit = Math.min(token.seq, Math.max(ring.highest, this.#lastVisitSeq));
    if (ring.aru < limit) {
      let budget = options.maxRetransmitRequests - countRanges(token.retransmit);
      for (const [first, last] of ring.missing(ring.aru + 1, limit, Math.max(0, budget))) {
        for (let seq = first; seq <= last && budget > 0; seq++, budget--) {
          if (token.retransmit.length >= MAX_TOKEN_RANGES) break;
          insertIntoRanges(token.retransmit, seq);
        }
      }
    }
    this.#lastVisitSeq = token.seq;

    // Flow control: the ring sends at most a window per rotation; this member at most its share.
    const others = Math.max(0, token.fcc - this.#myLastFcc);
    const backlogBefore = this.#backlog();
    const totalBacklog = Math.max(0, token.backlog - this.#myLastBacklog) + backlogBefore;
    let budget = Math.min(
      options.maxMessagesPerVisit,
      options.windowMessages - others - sent,
      2 * options.windowMessages - (token.seq - token.aru),
    );
    if (totalBacklog > backlogBefore && backlogBefore > 0) {
      budget = Math.min(budget, Math.max(1, Math.ceil((options.windowMessages * backlogBefore) / totalBacklog)));
    }
    if (budget > 0) {
      if (this.#state === "recovery") sent += this.#sendCarriers(token, ring, budget);
      else if (this.#open) sent += this.#sendQueued(token, ring, budget);
    }

    // All-received-up-to: lowered by whoever lacks most, raised only by that member (or when nobody holds it down).
    if (ring.aru < token.aru || token.aruId === this.#local || token.aruId === "") {
      token.aru = ring.aru;
      token.aruId = ring.aru === token.seq ? "" : this.#local;
    }
    token.fcc = others + sent;
    this.#myLastFcc = sent;
    const backlog = this.#backlog();
    token.backlog = Math.max(0, token.backlog - this.#myLastBacklog) + backlog;
    this.#myLastBacklog = backlog;
    const carrying = this.#carrierIndex < this.#carriers.length;
    token.recoveryPending = ring.members[0] === this.#local ? carrying : token.recoveryPending || carrying;
  }

  #backlog(): number {
    return this.#state === "recovery" ? this.#carriers.length - this.#carrierIndex : this.#queue.length - this.#queueHead;
  }

  #sendQueued(token: Token, ring: RingStore, budget: number): number {
    const queue = this.#queue;
    let bytes = 0;
    let sent = 0;
    while (sent < budget && this.#queueHead < queue.length && bytes < this.#options.maxBytesPerVisit) {
      const data = queue[this.#queueHead]!;
      queue[this.#queueHead++] = undefined as unknown as DataFields;
      const seq = ++token.seq;
      data.globalSeq = seq;
      data.ringSeq = ring.id.seq;
      this.#host.multicastData(data);
      ring.put(seq, { origin: this.#local, originIncarnation: this.#incarnation, data, carrier: undefined });
      bytes += data.payload.length;
      this.#queuedBytes -= data.payload.length;
      sent++;
    }
    if (this.#queueHead === queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
      this.#queuedBytes = 0;
    } else if (this.#queueHead > 4_096) {
      this.#queue = queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
    if (sent > 0) this.#host.writable();
    return sent;
  }

  #sendCarriers(token: Token, ring: RingStore, budget: number): number {
    const old = this.#installed!;
    let sent = 0;
    while (sent < budget && this.#carrierIndex < this.#carriers.length) {
      const { message } = this.#carriers[this.#carrierIndex++]!;
      const seq = ++token.seq;
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
      sent++;
    }
    return sent;
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

  #pass(token: Token): void {
    token.tokenSeq++;
    const idle =
      this.#state === "operational" &&
      token.phase === TotemPhase.OPERATIONAL &&
      token.fcc === 0 &&
      token.retransmit.length === 0 &&
      token.aru === token.seq &&
      this.#queue.length === this.#queueHead;
    if (idle && this.#options.tokenHoldMs > 0) {
      // An idle ring: keep the token a moment (a send releases it at once).
      this.#held = token;
      this.#holdTimer = this.#host.clock.setTimer(this.#options.tokenHoldMs, () => {
        this.#holdTimer = undefined;
        if (this.#held === token) {
          this.#held = undefined;
          this.#forward(token);
        }
      });
      return;
    }
    this.#forward(token);
  }

  /** A send arrived while this member held the idle token: one more visit's work, then pass it. */
  #release(): void {
    this.#releaseScheduled = false;
    const token = this.#held;
    if (token === undefined || this.#closed || this.#state !== "operational") return;
    this.#held = undefined;
    this.#holdTimer?.cancel();
    this.#holdTimer = undefined;
    this.#work(token);
    this.#deliver();
    this.#pass(token);
  }

  #forward(token: Token): void {
    const ring = this.#current!;
    const next = ring.successor(this.#local);
    if (next === this.#local) {
      // A ring of one passes the token to itself.
      this.#host.clock.defer(() => {
        if (!this.#closed && this.#current === ring) this.#receiveToken(this.#local, token);
      });
      return;
    }
    this.#passedAt = this.#host.clock.now();
    this.#passResent = false;
    this.#sendToSuccessor(next, encodeToken(token, next), this.#tokenRetransmitMs());
  }

  // A token that came back after being sent again says nothing of how long a rotation takes (as Karn's rule for TCP).
  #measureReturn(): void {
    if (this.#passedAt === 0 || this.#passResent) return;
    const sample = this.#host.clock.now() - this.#passedAt;
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
    const expected = Math.max(this.#returnMs, this.#current!.members.length * tokenHoldMs);
    return Math.min(Math.max(tokenRetransmitMs, 1.5 * expected), Math.max(tokenRetransmitMs, tokenTimeoutMs / 4));
  }

  /** Unicasts a token or commit token, and sends it again every `retransmitMs` while the ring shows no sign of it. */
  #sendToSuccessor(next: PeerKey, frame: Uint8Array, retransmitMs: number): void {
    this.#host.unicastFrame(next, frame);
    this.#passTimer?.cancel();
    const resend = (): void => {
      this.#passTimer = undefined;
      if (this.#closed) return;
      this.#host.unicastFrame(next, frame);
      this.#stats.tokensResent++;
      this.#passResent = true;
      this.#passTimer = this.#host.clock.setTimer(retransmitMs, resend);
    };
    this.#passTimer = this.#host.clock.setTimer(retransmitMs, resend);
  }

  #armLossTimer(): void {
    this.#lossTimer?.cancel();
    this.#lossTimer = this.#host.clock.setTimer(this.#options.tokenTimeoutMs, () => {
      this.#lossTimer = undefined;
      if (this.#closed) return;
      this.#stats.tokenLosses++;
      this.#enterGather();
    });
  }

  #cancelTokenTimers(): void {
    this.#passTimer?.cancel();
    this.#passTimer = undefined;
    this.#lossTimer?.cancel();
    this.#lossTimer = undefined;
    this.#holdTimer?.cancel();
    this.#holdTimer = undefined;
    this.#held = undefined;
  }

  // ---- messages --------------------------------------------------------------------------------------

  /** The ring a message of ring number `ringSeq` from `peer` (incarnation `incarnation`) belongs to, if it is one this member reads. */
  #ringOf(ringSeq: number, peer: PeerKey, incarnation: number): RingStore | undefined {
    // A member is on one ring of each number, so the number and the sender name the ring; a sender
    // restarted since is another member, perhaps on another ring of the same number.
    const current = this.#current;
    if (current !== undefined && current.id.seq === ringSeq && current.hasIncarnation(peer, incarnation)) {
      if (current !== this.#installed || !this.#frozen) return current;
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
    if (relay.carrierRing === undefined) {
      // A retransmission.
      const ring = this.#current;
      if (
        ring === undefined ||
        !sameRing(ring.id, relay.ring) ||
        !ring.hasIncarnation(relay.origin, relay.originIncarnation) ||
        (ring === this.#installed && this.#frozen)
      ) {
        this.#stats.foreign++;
        return;
      }
      this.#accept(ring, relay.data.globalSeq, { origin: relay.origin, originIncarnation: relay.originIncarnation, data: relay.data, carrier: undefined });
      return;
    }
    // A message of an old ring carried on the current one.
    const ring = this.#current;
    if (
      ring === undefined ||
      !sameRing(ring.id, relay.carrierRing) ||
      !ring.hasIncarnation(peer, incarnation) ||
      (ring === this.#installed && this.#state !== "operational")
    ) {
      this.#stats.foreign++;
      return;
    }
    if (relay.carrierSeq > ring.aru + 4 * this.#options.windowMessages + this.#options.maxMessagesPerVisit) {
      this.#stats.outOfWindow++;
      return;
    }
    if (!ring.put(relay.carrierSeq, { origin: peer, originIncarnation: incarnation, data: undefined, carrier: toBinary(FrameSchema, frame) })) {
      this.#stats.duplicates++;
      return;
    }
    const old = this.#installed;
    if (this.#state === "recovery" && old !== undefined && sameRing(old.id, relay.ring) && old.hasIncarnation(relay.origin, relay.originIncarnation)) {
      old.put(relay.data.globalSeq, { origin: relay.origin, originIncarnation: relay.originIncarnation, data: relay.data, carrier: undefined });
    }
    this.#deliver();
  }

  /** A message or token of a ring this member is not on. */
  #onForeign(peer: PeerKey, ringSeq: number): void {
    this.#stats.foreign++;
    if (this.#state !== "operational") return;
    const ring = this.#current!;
    // Another ring runs beside this one (a member not in it, or one that moved on): form one ring.
    if (!ring.has(peer) || ringSeq > ring.id.seq) this.#enterGather();
  }

  /** Hands up, in global order, what may be delivered now. */
  #deliver(): void {
    const ring = this.#installed;
    if (ring === undefined || this.#frozen) {
      if (this.#current !== undefined && this.#current !== ring) this.#skipCarriers(this.#current);
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
    if (this.#current !== undefined && this.#current !== ring) this.#skipCarriers(this.#current);
  }

  /** A ring in recovery holds only carriers: nothing to deliver, but its delivered mark moves on (trimming). */
  #skipCarriers(ring: RingStore): void {
    while (ring.delivered < ring.aru && ring.get(ring.delivered + 1)?.data === undefined) ring.delivered++;
  }
}

function addToRanges(ranges: Array<[number, number]>, seq: number): void {
  const last = ranges[ranges.length - 1];
  if (last !== undefined && last[1] === seq - 1) last[1] = seq;
  else ranges.push([seq, seq]);
}

/** Adds `seq` to ascending, disjoint ranges. */
function insertIntoRanges(ranges: Array<[number, number]>, seq: number): void {
  let i = 0;
  while (i < ranges.length && ranges[i]![1] < seq - 1) i++;
  const range = ranges[i];
  if (range === undefined) {
    ranges.push([seq, seq]);
    return;
  }
  if (range[0] <= seq && seq <= range[1]) return;
  if (range[1] === seq - 1) {
    range[1] = seq;
    const next = ranges[i + 1];
    if (next !== undefined && next[0] === seq + 1) {
      range[1] = next[1];
      ranges.splice(i + 1, 1);
    }
    return;
  }
  if (range[0] === seq + 1) {
    range[0] = seq;
    return;
  }
  ranges.splice(i, 0, [seq, seq]);
}

function countRanges(ranges: ReadonlyArray<readonly [number, number]>): number {
  let count = 0;
  for (const [first, last] of ranges) count += last - first + 1;
  return count;
}
