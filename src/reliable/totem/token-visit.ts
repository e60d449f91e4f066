import type { PeerKey } from "../protocol.ts";
import type { TotemOptions } from "./options.ts";
import type { RingStore } from "./ring-store.ts";
import { MAX_TOKEN_RANGES, type Token, TotemPhase } from "./totem-frames.ts";

/**
 * What a member does with the token while it holds it, as pure functions of the token and the member's
 * state: they change neither, and return the token to pass on and what the member is to do (stamp and
 * send messages, send messages again, install the ring). A visit is two steps: the token's arrival
 * (`advanceToken`: the safe mark, the ring's formation stages) and the work (`visitToken`:
 * retransmissions, requests, new messages, the all-received mark and flow control). A member that
 * holds the idle token and gets a message to send works on it again (`visitToken` alone).
 */

/** What a member remembers from its last visit of the token, for the next one. */
export interface VisitMemory {
  /** The token's aru when it last arrived here. */
  readonly lastAru: number;
  /** The token's seq when this member last worked on it (before its own messages): what was stamped before. */
  readonly lastSeq: number;
  /** What this member sent on its last visit: its part of the token's fcc. */
  readonly lastSent: number;
  /** This member's backlog when it last passed the token: its part of the token's backlog. */
  readonly lastBacklog: number;
  /** The representative in recovery: the token's seq when it first came back with nothing left to carry (-1: not yet). */
  readonly recoveryDoneSeq: number;
}

/** A member's memory before its first visit on a ring. */
export const FIRST_VISIT: VisitMemory = { lastAru: 0, lastSeq: 0, lastSent: 0, lastBacklog: 0, recoveryDoneSeq: -1 };

/** Messages waiting for the token: how many, and the payload bytes of each (0: the oldest). */
export interface Waiting {
  readonly length: number;
  bytesAt(index: number): number;
}

/** The member holding the token, as a visit reads it. */
export interface TokenHolder {
  readonly local: PeerKey;
  /** This member formed the ring (the first member): it moves the ring through its stages. */
  readonly representative: boolean;
  /** What it holds of the ring the token runs on. */
  readonly ring: Pick<RingStore, "aru" | "highest" | "safe" | "get" | "received" | "missing">;
  /** True while the ring recovers (it carries old rings' messages, and sends none of its own). */
  readonly recovering: boolean;
  /** True once the ring runs at every member: its own messages may go. */
  readonly open: boolean;
  /** Its own messages waiting. */
  readonly queued: Waiting;
  /** Old-ring messages it has still to carry (recovery). */
  readonly carriers: number;
  readonly memory: VisitMemory;
}

export type VisitLimits = Pick<TotemOptions, "windowMessages" | "maxMessagesPerVisit" | "maxBytesPerVisit" | "maxRetransmitRequests">;

/** The token's arrival. */
export interface Arrival {
  readonly token: Token;
  /** Everything up to here is held by every member (the ring's safe mark, never lower than it was). */
  readonly safe: number;
  /** Recovery is over here: the member delivers its old ring's remaining messages and installs the ring. */
  readonly install: boolean;
  /** The ring runs at every member: from now on the member sends its own messages. */
  readonly open: boolean;
  readonly memory: VisitMemory;
}

/** The work of a visit. */
export interface Visit {
  /** The token to pass on. */
  readonly token: Token;
  /** Sequence numbers of messages held here that others asked for: multicast again, in this order. */
  readonly resend: readonly number[];
  /**
   * How many waiting messages to send (old-ring messages while recovering, else its own), stamped with
   * the numbers after the seq of the token as it came.
   */
  readonly send: number;
  /** Nothing moves on the ring: the token may be held a while before it is passed on. */
  readonly idle: boolean;
  readonly memory: VisitMemory;
}

/** The token arrives at `holder`: the safe mark, and the ring's stages, driven by the representative and followed by everyone. */
export function advanceToken(token: Token, holder: TokenHolder): Arrival {
  const { memory, ring } = holder;
  // Safe: every member has what the aru covered on two consecutive visits.
  const safe = Math.max(ring.safe, Math.min(token.aru, memory.lastAru));
  let phase = token.phase;
  let recoveryDoneSeq = memory.recoveryDoneSeq;
  let install = false;
  let open = false;
  if (holder.representative) {
    if (phase === TotemPhase.UNSPECIFIED) {
      if (token.recoveryPending || holder.carriers > 0) recoveryDoneSeq = -1;
      else {
        // Nobody had anything left to carry during a whole rotation: once every member holds
        // everything up to here, every member has every carried message.
        if (recoveryDoneSeq < 0) recoveryDoneSeq = token.seq;
        if (safe >= recoveryDoneSeq) {
          phase = TotemPhase.INSTALL;
          install = true;
        }
      }
    } else if (phase === TotemPhase.INSTALL) {
      // Back around: every member installed the ring.
      phase = TotemPhase.OPERATIONAL;
      open = true;
    }
  } else {
    install = phase !== TotemPhase.UNSPECIFIED && holder.recovering;
    open = phase === TotemPhase.OPERATIONAL && !holder.open;
  }
  return {
    token: phase === token.phase ? token : { ...token, phase },
    safe,
    install,
    open,
    memory: { ...memory, lastAru: token.aru, recoveryDoneSeq },
  };
}

/** One visit's work at `holder`: retransmissions, requests, new messages, the all-received mark and flow control. */
export function visitToken(token: Token, holder: TokenHolder, limits: VisitLimits): Visit {
  const { ring, memory } = holder;
  let sent = 0;

  // Send again what others asked for and this member holds; keep asking for what it does not.
  const resend: number[] = [];
  let retransmit = token.retransmit;
  if (retransmit.length > 0) {
    const still: Array<[number, number]> = [];
    for (const [first, last] of retransmit) {
      for (let seq = first; seq <= last; seq++) {
        const held = ring.get(seq) !== undefined;
        if (held && sent < limits.windowMessages) {
          resend.push(seq);
          sent++;
        } else if (held || !ring.received(seq)) addToRanges(still, seq);
        // Else it was received here and dropped as done: every member has it.
      }
    }
    retransmit = still;
  }

  // Ask for what this member misses: gaps below what it received, and what was stamped before its last visit.
  const limit = Math.min(token.seq, Math.max(ring.highest, memory.lastSeq));
  if (ring.aru < limit) {
    if (retransmit === token.retransmit) retransmit = retransmit.map(([first, last]): [number, number] => [first, last]);
    let budget = limits.maxRetransmitRequests - countRanges(retransmit);
    for (const [first, last] of ring.missing(ring.aru + 1, limit, Math.max(0, budget))) {
      for (let seq = first; seq <= last && budget > 0; seq++, budget--) {
        if (retransmit.length >= MAX_TOKEN_RANGES) break;
        insertIntoRanges(retransmit, seq);
      }
    }
  }

  // Flow control: the ring sends at most a window per rotation; this member at most its share.
  const others = Math.max(0, token.fcc - memory.lastSent);
  const waiting = holder.recovering ? holder.carriers : holder.queued.length;
  const totalBacklog = Math.max(0, token.backlog - memory.lastBacklog) + waiting;
  let budget = Math.min(limits.maxMessagesPerVisit, limits.windowMessages - others - sent, 2 * limits.windowMessages - (token.seq - token.aru));
  if (totalBacklog > waiting && waiting > 0) {
    budget = Math.min(budget, Math.max(1, Math.ceil((limits.windowMessages * waiting) / totalBacklog)));
  }
  let send = 0;
  if (budget > 0) {
    if (holder.recovering) send = Math.min(budget, holder.carriers);
    else if (holder.open) {
      const queued = holder.queued;
      let bytes = 0;
      while (send < budget && send < queued.length && bytes < limits.maxBytesPerVisit) bytes += queued.bytesAt(send++);
    }
  }
  sent += send;
  const seq = token.seq + send;

  // All-received-up-to: lowered by whoever lacks most, raised only by that member (or when nobody holds it down).
  // This member's own messages just sent are received here.
  const received = send > 0 && ring.aru === token.seq ? seq : ring.aru;
  let aru = token.aru;
  let aruId = token.aruId;
  if (received < aru || aruId === holder.local || aruId === "") {
    aru = received;
    aruId = received === seq ? "" : holder.local;
  }
  const backlog = waiting - send;
  const carrying = holder.recovering && backlog > 0;
  const next: Token = {
    ring: token.ring,
    tokenSeq: token.tokenSeq + 1,
    seq,
    aru,
    aruId,
    retransmit,
    fcc: others + sent,
    backlog: Math.max(0, token.backlog - memory.lastBacklog) + backlog,
    recoveryPending: holder.representative ? carrying : token.recoveryPending || carrying,
    phase: token.phase,
  };
  const idle =
    !holder.recovering &&
    next.phase === TotemPhase.OPERATIONAL &&
    next.fcc === 0 &&
    retransmit.length === 0 &&
    aru === seq &&
    holder.queued.length === send;
  return { token: next, resend, send, idle, memory: { ...memory, lastSeq: token.seq, lastSent: sent, lastBacklog: backlog } };
}

/** Appends `seq` to ascending ranges that end below it. */
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
