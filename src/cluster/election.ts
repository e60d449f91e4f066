import type { PeerKey } from "../reliable/protocol.ts";
import { comparePositions, type MemberInstance, type Position, type StateAck, type Term } from "./state-types.ts";

/** What a member of the view answered the coordinator's PrepareOp with: a promise, and where it stands. */
export interface Report {
  readonly member: MemberInstance;
  readonly position: Position;
  readonly accepted: Term;
  readonly tokenCeiling: number;
}

/** What the coordinator of a view does once every member promised. */
export type Decision =
  /** A member is further along: take what it has first. */
  | { readonly kind: "pull"; readonly from: PeerKey }
  /** This side may not take writes (quorum mode, or too few members). */
  | { readonly kind: "refuse"; readonly reason: string }
  /** Start the term (at the election's epoch); fencing tokens go on from `nextToken`. */
  | { readonly kind: "start"; readonly nextToken: number };

export interface ElectionRules {
  readonly quorum: boolean;
  readonly minimumMembers: number;
}

/**
 * Whether a view may start a term, in quorum mode, from what its members reported: the quorum is
 * counted on the latest term any of them accepted (its members are the agreed set), and
 * - the view holds more than half of that term's members — or exactly half, with the term's
 *   coordinator — counted by member id: a member that restarted (same id, a later incarnation) counts
 *   as itself, because its earlier run is certainly gone and a restarted member keeps the term it
 *   accepted and the epochs it promised across its restart;
 * - and one of them at least still holds that term's data: it accepted the term in the incarnation the
 *   term names (it did not restart since). Whatever the term committed is on every one of its members,
 *   so it is then here. With every member of the term here, each having taken it up and restarted
 *   since, nothing of its data is left anywhere: the map starts again from what they hold.
 *
 * A term's members are those of its view, and it begins only once every one of them accepted it, so the
 * agreed set changes only with a majority of the old one: two sides of a partition can never both pass.
 * A group that never agreed on anything (a first start) passes. Returns why not, or undefined.
 */
export function quorumRefusal(view: readonly MemberInstance[], reports: readonly Report[]): string | undefined {
  let latest: Term | undefined;
  for (const report of reports) if (report.accepted.epoch > (latest?.epoch ?? 0)) latest = report.accepted;
  if (latest === undefined) return undefined;
  const term = latest;
  const ids = new Set(view.map((m) => m.id));
  const size = term.members.length;
  const present = term.members.filter((m) => ids.has(m.id)).length;
  if (present * 2 < size || (present * 2 === size && !ids.has(term.coordinator))) {
    return `no quorum: this side holds ${present} of the ${size} members that last agreed on the map`;
  }
  const tookUp = reports.filter((r) => r.accepted.epoch === term.epoch && r.accepted.coordinator === term.coordinator);
  const intact = tookUp.some((r) => term.members.some((m) => m.id === r.member.id && m.incarnation === r.member.incarnation));
  if (!intact && tookUp.length < size) {
    return `no quorum: no member here still holds the state the ${size} members that last agreed on the map held (those here restarted since)`;
  }
  return undefined;
}

/**
 * The coordinator's side of a view change, as in Paxos' first phase: it asks every member of the view to
 * promise not to accept a term below `epoch` (above every epoch it knows of), learns where each stands
 * and what it accepted last, asks again above any higher epoch an answer shows, and once every member
 * promised, decides — pull from a member further along, refuse (no quorum, too few members), or start
 * the term at `epoch` above every fencing-token ceiling reported. A member that promised cannot accept a
 * term of a lower epoch from anyone, so no term begun elsewhere meanwhile can be missed by this one.
 */
export class TermElection {
  readonly view: readonly MemberInstance[];
  readonly epoch: number;
  readonly #reports = new Map<PeerKey, Report>();
  #higher = 0;

  constructor(view: readonly MemberInstance[], epoch: number) {
    this.view = view;
    this.epoch = epoch;
  }

  /**
   * Takes `peer`'s answer (a member of the view, in the incarnation the view has): a promise of our
   * epoch to `local`, or a refusal showing a higher one.
   */
  answer(peer: PeerKey, incarnation: number, ack: StateAck, local: PeerKey): void {
    const member = this.view.find((m) => m.id === peer && m.incarnation === incarnation);
    if (member === undefined) return;
    const seen = Math.max(ack.promised.epoch, ack.accepted.epoch, ack.position.epoch);
    if (ack.promised.epoch === this.epoch && ack.promised.coordinator === local) {
      this.#reports.set(peer, { member, position: ack.position, accepted: ack.accepted, tokenCeiling: ack.tokenCeiling });
    } else if (seen >= this.epoch) {
      this.#higher = Math.max(this.#higher, seen);
    }
  }

  /** An epoch some member promised or accepted at or above ours: ask again above it (0: none). */
  get higher(): number {
    return this.#higher;
  }

  /** The members that have not promised yet. */
  missing(): MemberInstance[] {
    return this.view.filter((m) => !this.#reports.has(m.id));
  }

  positions(): Map<PeerKey, Position> {
    return new Map([...this.#reports].map(([peer, report]) => [peer, report.position]));
  }

  /** Our own position moved (a pull brought it to the best): decide again with it. */
  updateOwn(local: PeerKey, position: Position, tokenCeiling: number): void {
    const own = this.#reports.get(local);
    if (own !== undefined) this.#reports.set(local, { ...own, position, tokenCeiling: Math.max(own.tokenCeiling, tokenCeiling) });
  }

  /** Once every member promised: what to do (undefined before). */
  decide(local: PeerKey, rules: ElectionRules): Decision | undefined {
    if (this.missing().length > 0) return undefined;
    const reports = [...this.#reports.values()];
    if (this.view.length < rules.minimumMembers) {
      return { kind: "refuse", reason: `no quorum: the group has ${this.view.length} of the ${rules.minimumMembers} members it needs to take writes` };
    }
    if (rules.quorum) {
      const refusal = quorumRefusal(this.view, reports);
      if (refusal !== undefined) return { kind: "refuse", reason: refusal };
    }
    const own = this.#reports.get(local)!;
    let best = own;
    for (const report of reports) if (comparePositions(report.position, best.position) > 0) best = report;
    if (best !== own && comparePositions(best.position, own.position) !== 0) return { kind: "pull", from: best.member.id };
    let nextToken = 1;
    for (const report of reports) nextToken = Math.max(nextToken, report.tokenCeiling);
    return { kind: "start", nextToken };
  }
}
