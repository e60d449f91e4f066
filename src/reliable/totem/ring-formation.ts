import type { PeerKey } from "../protocol.ts";
import type { TotemOptions } from "./options.ts";
import { type RingId, type RingStore, sameRing } from "./ring-store.ts";
import { type Commit, encodeJoin, type Join, type MemberState } from "./totem-frames.ts";

export type FormationOptions = Pick<TotemOptions, "joinIntervalMs" | "consensusTimeoutMs" | "tokenTimeoutMs">;

/** Where formation stands: gathering members, passing a commit token round, or done (a ring recovers or runs). */
export type FormationPhase = "gather" | "commit" | "formed";

/** What formation asks of the member. */
export type Formed =
  /** A member wants another ring: form one again. */
  | { readonly kind: "regather" }
  /** This member commits to the ring of `commit` (its state on its old ring filled in): pass the commit token on. */
  | { readonly kind: "commit"; readonly commit: Commit }
  /** Every member's state on its old ring is known: the ring of `commit` recovers; pass the commit token on. */
  | { readonly kind: "recover"; readonly commit: Commit };

/** The rings a member is on, as formation reads them. */
export interface MemberRings {
  /** The ring it last installed: its old ring while a new one forms. */
  readonly installed: RingStore | undefined;
  /** The ring the token runs on (the installed one, or a new one in recovery). */
  readonly current: RingStore | undefined;
}

/** What formation sends: joins, multicast to everyone. */
export interface FormationOutput {
  multicastFrame(frame: Uint8Array): void;
}

interface JoinSeen {
  /** The members the join named, as one string. */
  readonly key: string;
  readonly at: number;
}

const REGATHER: Formed = { kind: "regather" };

/**
 * Ring formation, Totem's membership protocol: which members the next ring has, and when they agree.
 * Its members are this member and its live peers (from the channel), less those that failed: that
 * stayed silent through a formation. Gathering, each member multicasts a join naming the members it
 * wants, every `joinIntervalMs`, until every one of them named the same set in a join of this formation;
 * the smallest of them then sends a commit token round the new ring, which gathers each member's state
 * on its old ring on its first rotation and hands everyone every state on its second. While a ring
 * runs, its representative announces it every `tokenTimeoutMs`, so that rings that could not hear each
 * other merge once they can.
 *
 * It never changes where the member stands: its inputs return what the member is to do (`Formed`).
 */
export class RingFormation {
  readonly #output: FormationOutput;
  readonly #local: PeerKey;
  readonly #incarnation: number;
  readonly #options: FormationOptions;
  #phase: FormationPhase = "gather";
  /** Live peers (from the channel) with their incarnations, and when each was last heard. */
  readonly #peers = new Map<PeerKey, number>();
  readonly #heard = new Map<PeerKey, number>();
  readonly #failed = new Set<PeerKey>();
  readonly #joins = new Map<PeerKey, JoinSeen>();
  #highestRingSeq = 0;
  #gatherStart = 0;
  /** The ring this member committed to, and its members as one string. */
  #commitRing: RingId | undefined;
  #commitMembers = "";
  #joinDue = Number.POSITIVE_INFINITY;
  #announceDue = Number.POSITIVE_INFINITY;

  constructor(output: FormationOutput, local: PeerKey, incarnation: number, options: FormationOptions) {
    this.#output = output;
    this.#local = local;
    this.#incarnation = incarnation;
    this.#options = options;
  }

  get phase(): FormationPhase {
    return this.#phase;
  }

  /** The highest ring number this member has heard of: the next ring it forms is numbered above it. */
  get highestRingSeq(): number {
    return this.#highestRingSeq;
  }

  /** The members this member wants in the ring, sorted: itself and its live peers, less those failed. */
  candidates(): PeerKey[] {
    const members = [this.#local];
    for (const peer of this.#peers.keys()) if (!this.#failed.has(peer)) members.push(peer);
    return members.sort();
  }

  /** The earliest deadline: the next join while gathering, the next announcement while a ring runs. */
  pollTimeout(): number {
    return Math.min(this.#joinDue, this.#announceDue);
  }

  handleTimeout(now: number, rings: MemberRings): Formed | undefined {
    if (this.#announceDue <= now) this.#announce(now, rings);
    if (this.#joinDue > now) return undefined;
    // Silence is measured up to the time this pass was due: one that runs late (the process stalled: a
    // long pause, a blocking handler) has the datagrams its peers sent meanwhile waiting behind it.
    const due = this.#joinDue;
    this.#joinDue = now + this.#options.joinIntervalMs;
    if (now - this.#gatherStart >= this.#options.consensusTimeoutMs) this.#failSilent(due);
    this.#sendJoin(rings);
    return this.#consensus(now, rings);
  }

  /** Anything was heard from `peer`. */
  heard(peer: PeerKey, now: number): void {
    this.#heard.set(peer, now);
  }

  /** The channel heard `peer` (incarnation `incarnation`) for the first time, or as a new incarnation. */
  peerUp(peer: PeerKey, incarnation: number, now: number, rings: MemberRings): Formed | undefined {
    const known = this.#peers.get(peer);
    this.#peers.set(peer, incarnation);
    this.#heard.set(peer, now);
    this.#failed.delete(peer);
    if (this.#phase === "gather") {
      this.#sendJoin(rings);
      return undefined;
    }
    // A newcomer, or a member back as a new incarnation: form the ring again with it.
    return known === incarnation ? undefined : REGATHER;
  }

  /** The channel lost `peer`. */
  peerDown(peer: PeerKey, now: number, rings: MemberRings): Formed | undefined {
    this.#peers.delete(peer);
    this.#heard.delete(peer);
    this.#failed.delete(peer);
    this.#joins.delete(peer);
    if (this.#phase === "gather") {
      this.#sendJoin(rings);
      return this.#consensus(now, rings);
    }
    return rings.current?.has(peer) === true ? REGATHER : undefined;
  }

  /** Starts forming a ring: joins go out from now on. Members heard lately are given another chance. */
  gather(now: number, rings: MemberRings): void {
    if (this.#phase !== "gather") {
      for (const [peer, at] of this.#heard) {
        if (now - at < this.#options.consensusTimeoutMs) this.#failed.delete(peer);
      }
    }
    this.#phase = "gather";
    this.#commitRing = undefined;
    this.#announceDue = Number.POSITIVE_INFINITY;
    this.#gatherStart = now;
    this.#sendJoin(rings);
    this.#joinDue = now + this.#options.joinIntervalMs;
  }

  /** The ring is installed: its representative announces it from time to time. */
  installed(ring: RingStore, now: number): void {
    if (ring.members[0] === this.#local) this.#announceDue = now + this.#options.tokenTimeoutMs;
  }

  onJoin(peer: PeerKey, join: Join, now: number, rings: MemberRings): Formed | undefined {
    const { current } = rings;
    this.#heard.set(peer, now);
    if (join.announce) {
      // Another ring runs within hearing: merge with it (its members heard, so no longer failed).
      if (current?.has(peer) === true && sameRing(join.ring, current.id)) return undefined;
      for (const member of join.members) this.#failed.delete(member);
      if (this.#phase !== "gather") return REGATHER;
      this.#sendJoin(rings);
      return undefined;
    }
    if (this.#failed.delete(peer) && this.#phase === "gather") this.#sendJoin(rings);
    const key = join.members.join(",");
    this.#joins.set(peer, { key, at: now });
    if (join.highestRingSeq > this.#highestRingSeq) this.#highestRingSeq = join.highestRingSeq;
    switch (this.#phase) {
      case "gather":
        return this.#consensus(now, rings);
      case "commit":
        // A member of the proposed ring that now wants another one: start again.
        return this.#commitMembers.split(",").includes(peer) && key === this.#commitMembers ? undefined : REGATHER;
      default:
        // Joins left over from the formation of the current ring are older than it.
        return current === undefined || !current.has(peer) || join.highestRingSeq >= current.id.seq ? REGATHER : undefined;
    }
  }

  /**
   * A commit token of a ring this member is not yet on (the protocol handles one of the ring it
   * recovers): on its first rotation it takes this member's state if it proposes the ring this member
   * gathers for; on its second, back at a member that committed to it, recovery starts.
   */
  onCommit(commit: Commit, mine: MemberState, rings: MemberRings): Formed | undefined {
    if (!mine.received) {
      if (this.#phase !== "gather" || commit.ring.seq <= Math.max(rings.installed?.id.seq ?? 0, rings.current?.id.seq ?? 0)) return undefined;
      if (commit.members.map((m) => m.member).join(",") !== this.candidates().join(",")) return undefined;
      const filled: Commit = { ring: commit.ring, members: commit.members.map((m) => (m === mine ? stateOn(rings.installed, m) : m)) };
      this.#commit(filled);
      return { kind: "commit", commit: filled };
    }
    if (this.#phase === "commit" && sameRing(this.#commitRing, commit.ring) && commit.members.every((m) => m.received)) {
      this.formed(commit.ring);
      return { kind: "recover", commit };
    }
    return undefined;
  }

  /** The ring `ring` recovers: its formation is over. */
  formed(ring: RingId): void {
    this.#phase = "formed";
    this.#commitRing = undefined;
    this.#joinDue = Number.POSITIVE_INFINITY;
    this.#joins.clear();
    if (ring.seq > this.#highestRingSeq) this.#highestRingSeq = ring.seq;
  }

  /** Stops: no more joins or announcements. */
  close(): void {
    this.#joinDue = this.#announceDue = Number.POSITIVE_INFINITY;
  }

  // Consensus: every candidate named the same set in a join of this formation; the smallest id forms the
  // ring, the others wait for its commit token.
  #consensus(now: number, rings: MemberRings): Formed | undefined {
    if (this.#phase !== "gather" || now - this.#gatherStart < this.#options.joinIntervalMs) return undefined;
    const members = this.candidates();
    const key = members.join(",");
    // Only joins of this formation count (the one that started it arrived just before): a member that
    // crashed after an earlier join must not be taken in.
    const since = this.#gatherStart - this.#options.joinIntervalMs;
    for (const member of members) {
      const join = this.#joins.get(member);
      if (member !== this.#local && (join === undefined || join.key !== key || join.at < since)) return undefined;
    }
    if (members[0] !== this.#local) return undefined;
    const commit: Commit = {
      ring: { representative: this.#local, seq: this.#highestRingSeq + 1 },
      members: members.map((member) =>
        member === this.#local
          ? stateOn(rings.installed, { member, incarnation: this.#incarnation, oldRing: undefined, oldAru: 0, highDelivered: 0, highReceived: 0, received: false })
          : { member, incarnation: this.#peers.get(member) ?? 0, oldRing: undefined, oldAru: 0, highDelivered: 0, highReceived: 0, received: false },
      ),
    };
    this.#commit(commit);
    if (members.length > 1) return { kind: "commit", commit };
    // Alone: nobody else's state to wait for.
    this.formed(commit.ring);
    return { kind: "recover", commit };
  }

  // A member that says nothing while the ring forms has failed, whatever it said before (a member
  // that crashed just after a join naming this set would otherwise hold the formation forever). But
  // a member that hears none of the others is more likely overloaded (its socket full of other
  // traffic, its process starved) than alone, and a ring of one splits everyone off at once: it
  // leaves them all out only once every one of them has been silent for twice the consensus timeout.
  #failSilent(until: number): void {
    const { consensusTimeoutMs } = this.#options;
    const members = this.candidates();
    const silent: PeerKey[] = [];
    let shortestSilence = Number.POSITIVE_INFINITY;
    for (const member of members) {
      if (member === this.#local) continue;
      const silence = until - (this.#heard.get(member) ?? 0);
      if (silence < consensusTimeoutMs) continue;
      silent.push(member);
      shortestSilence = Math.min(shortestSilence, silence);
    }
    const alone = silent.length === members.length - 1;
    if (alone && shortestSilence < 2 * consensusTimeoutMs) return;
    for (const member of silent) this.#failed.add(member);
  }

  #commit(commit: Commit): void {
    this.#phase = "commit";
    this.#commitRing = commit.ring;
    this.#commitMembers = commit.members.map((m) => m.member).join(",");
    this.#joinDue = Number.POSITIVE_INFINITY;
    if (commit.ring.seq > this.#highestRingSeq) this.#highestRingSeq = commit.ring.seq;
  }

  #sendJoin(rings: MemberRings): void {
    const join: Join = {
      ring: rings.installed?.id,
      members: this.candidates(),
      failed: [...this.#failed].sort(),
      highestRingSeq: this.#highestRingSeq,
      announce: false,
    };
    this.#output.multicastFrame(encodeJoin(join, this.#peers));
  }

  // Rings that cannot hear each other run side by side; once they can, the announcement of one makes
  // the members of the other form a ring of all (an idle ring sends nothing else they would hear).
  #announce(now: number, rings: MemberRings): void {
    const ring = rings.installed;
    if (this.#phase !== "formed" || ring === undefined || ring !== rings.current || ring.members[0] !== this.#local) {
      this.#announceDue = Number.POSITIVE_INFINITY;
      return;
    }
    this.#announceDue = now + this.#options.tokenTimeoutMs;
    const join: Join = { ring: ring.id, members: ring.members, failed: [], highestRingSeq: this.#highestRingSeq, announce: true };
    this.#output.multicastFrame(encodeJoin(join, this.#peers));
  }
}

/** `state` with what this member holds of its old ring `old` filled in. */
function stateOn(old: RingStore | undefined, state: MemberState): MemberState {
  return {
    member: state.member,
    incarnation: state.incarnation,
    oldRing: old?.id,
    oldAru: old?.aru ?? 0,
    highDelivered: old?.delivered ?? 0,
    highReceived: old?.highest ?? 0,
    received: true,
  };
}
