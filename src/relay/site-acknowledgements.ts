import type { PeerKey } from "../reliable/protocol.ts";
import { streamKey, type StreamPosition } from "./relay-frames.ts";

/**
 * A gateway's tally of what its site delivered, from its members' reports: a topic stream is
 * acknowledged up to what every member of the site delivered (a member that has not reported the
 * stream yet holds it back: it may be the one that missed what a crashed gateway sent), a direct
 * stream up to what its target delivered. Only what moved is acknowledged, grouped by origin site.
 * At most `maxStreams` streams a member are taken from its reports.
 */
export class SiteAcknowledgements {
  /** Each member's positions, by stream key. */
  readonly #reports = new Map<PeerKey, Map<string, StreamPosition>>();
  /** Every stream reported (a position of it, for its origin and target). */
  readonly #streams = new Map<string, StreamPosition>();
  readonly #dirty = new Set<string>();
  #members: readonly PeerKey[] = [];

  constructor(private readonly maxStreams: number) {}

  /** The site's members now (those that receive relayed messages); a member gone no longer holds anything back. */
  setMembers(members: readonly PeerKey[]): void {
    this.#members = members;
    for (const id of this.#reports.keys()) if (!members.includes(id)) this.#reports.delete(id);
    for (const key of this.#streams.keys()) this.#dirty.add(key);
  }

  /** A member's report; `complete` replaces what it said before. */
  report(member: PeerKey, positions: readonly StreamPosition[], complete: boolean): void {
    if (!this.#members.includes(member)) return;
    let mine = this.#reports.get(member);
    if (mine === undefined || complete) this.#reports.set(member, (mine = new Map()));
    for (const position of positions) {
      const key = streamKey(position.origin, position.stream, position.targetId);
      if (!mine.has(key) && mine.size >= this.maxStreams) continue;
      mine.set(key, position);
      if (!this.#streams.has(key)) {
        if (this.#streams.size >= this.maxStreams) this.#forgetOne();
        this.#streams.set(key, position);
      }
      this.#dirty.add(key);
    }
  }

  /** Whether something may be acknowledged. */
  get pending(): boolean {
    return this.#dirty.size > 0;
  }

  /**
   * The acknowledgements due: for each origin site, the streams reported since the last call, each with
   * how far. A stream is acknowledged again even when it did not move: a member reports it again when a
   * copy came, which says that its origin missed the acknowledgement.
   */
  take(): Map<string, StreamPosition[]> {
    const out = new Map<string, StreamPosition[]>();
    for (const key of this.#dirty) {
      const reported = this.#streams.get(key);
      if (reported === undefined) continue;
      const seq = this.#delivered(key, reported);
      if (seq === 0) continue;
      const position = { ...reported, seq };
      const site = position.origin.site;
      let list = out.get(site);
      if (list === undefined) out.set(site, (list = []));
      list.push(position);
    }
    this.#dirty.clear();
    return out;
  }

  // How far the stream was delivered at every member it is for (0: not known at one of them).
  #delivered(key: string, position: StreamPosition): number {
    if (position.stream === "direct") return this.#reports.get(position.targetId)?.get(key)?.seq ?? 0;
    let least = Number.POSITIVE_INFINITY;
    for (const member of this.#members) {
      const seq = this.#reports.get(member)?.get(key)?.seq;
      if (seq === undefined) return 0;
      least = Math.min(least, seq);
    }
    return least === Number.POSITIVE_INFINITY ? 0 : least;
  }

  // The oldest stream reported goes (map order is insertion order), from every member's report too.
  #forgetOne(): void {
    const key = this.#streams.keys().next().value!;
    this.#streams.delete(key);
    this.#dirty.delete(key);
    for (const mine of this.#reports.values()) mine.delete(key);
  }
}
