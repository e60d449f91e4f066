import type { PeerKey } from "../protocol.ts";
import { type RingMessage, type RingStore, sameRing } from "./ring-store.ts";
import type { Commit, MemberState } from "./totem-frames.ts";

/**
 * A new ring's recovery at one member, from the commit token that formed it: which messages of its old
 * ring this member carries to the others (as messages of the new ring), up to where it delivers the old
 * ring's messages once every member has every carried one, and whose streams the ring change breaks.
 *
 * The members coming from the same old ring end up with every message any of them holds above the
 * lowest aru among them. Up to the highest aru, the member with that aru (the smallest id among
 * equals) holds them all and carries them alone; above it, each carries what it holds. A member alone
 * from its old ring has nobody to carry anything to.
 */
export class Recovery {
  /** Every new ring member's state on its old ring, from the commit token. */
  readonly states: readonly MemberState[];
  /**
   * The highest number any member coming from this member's old ring received on it: once the ring is
   * installed, the old ring's messages up to here are delivered (or counted lost).
   */
  readonly high: number;
  readonly #carriers: RingMessage[] = [];
  #next = 0;

  /** `old`: the ring `local` installed last (none for a member that was on no ring). */
  constructor(commit: Commit, old: RingStore | undefined, local: PeerKey) {
    this.states = commit.members;
    if (old === undefined) {
      this.high = 0;
      return;
    }
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
    this.high = high;
    if (fromOld < 2) return;
    const from = top?.member === local ? low + 1 : Math.max(low, top?.oldAru ?? 0) + 1;
    for (let seq = from; seq <= high; seq++) {
      const message = old.get(seq);
      if (message?.data !== undefined) this.#carriers.push(message);
    }
  }

  /** Old-ring messages still to carry. */
  get pending(): number {
    return this.#carriers.length - this.#next;
  }

  /** The next old-ring message to carry; the caller checks `pending` first. */
  take(): RingMessage {
    return this.#carriers[this.#next++]!;
  }

  /**
   * Where the old ring's senders' streams end. A sender goes on unbroken only when it is on the new ring
   * as the same incarnation, and every member of the new ring comes from the old ring or from no ring at
   * all (a newcomer gets nothing sent before it joined): then whatever it sent on the old ring was just
   * delivered everywhere, and what it sends next follows. Otherwise — it left, or the new ring merges
   * rings — some member of the new ring lacks part of its stream, so a message delivered in part is
   * given up by every member (its sender included), alike: all decide from the same commit token.
   */
  endedStreams(old: RingStore): Array<{ readonly peer: PeerKey; readonly incarnation: number }> {
    const merged = this.states.some((state) => state.oldRing !== undefined && !sameRing(state.oldRing, old.id));
    const ended: Array<{ peer: PeerKey; incarnation: number }> = [];
    for (const member of old.members) {
      const incarnation = old.incarnations.get(member) ?? 0;
      const state = this.states.find((s) => s.member === member);
      if (!merged && state !== undefined && state.incarnation === incarnation && sameRing(state.oldRing, old.id)) continue;
      ended.push({ peer: member, incarnation });
    }
    return ended;
  }
}
