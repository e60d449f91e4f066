import type { PeerKey } from "../reliable/protocol.ts";
import type { Address } from "../transport/transport.ts";

/** A member as the group knows it. */
export interface Member {
  /** Member id (32 hex digits), unique for the life of the process. */
  readonly id: PeerKey;
  /** Grows every time a member with this id starts again. */
  readonly incarnation: number;
  /** User-given name. */
  readonly name: string;
  /** Coordinator weight: the highest weight is elected coordinator. */
  readonly weight: number;
  readonly metadata: Readonly<Record<string, string>>;
  /** The unicast address the member receives on. */
  readonly address: Address;
  /** Wall-clock start time, ms since the epoch (informational). */
  readonly startTimeMs: number;
}

/** Identifies a view: who installed it and a counter that grows with every view of the group. */
export interface ViewId {
  readonly installer: PeerKey;
  readonly counter: number;
}

/** The membership of a group: the same members, in the same order, at every member. */
export interface View {
  readonly group: string;
  readonly id: ViewId;
  readonly members: readonly Member[];
  /** The coordinator, chosen from `members` by the coordinator selector. */
  readonly coordinator: Member;
}

/**
 * Picks a group's coordinator from its members, given in view order (the longest-standing first).
 * Must be deterministic: every member runs it on the same list and must get the same answer.
 */
export type CoordinatorSelector = (members: readonly Member[]) => Member;

/**
 * The default rule: the highest weight wins; among equals, the member that has been in the view
 * longest (the first in view order), as in JGroups, where the oldest member coordinates. When two
 * partitions merge, their coordinators are compared in member-id order, so the lowest id breaks a tie.
 */
export const defaultCoordinatorSelector: CoordinatorSelector = (members) => {
  let best = members[0]!;
  for (const member of members) if (member.weight > best.weight) best = member;
  return best;
};

export function sameView(a: ViewId | undefined, b: ViewId | undefined): boolean {
  return a !== undefined && b !== undefined && a.installer === b.installer && a.counter === b.counter;
}

export function contains(view: View, id: PeerKey, incarnation?: number): boolean {
  return view.members.some((m) => m.id === id && (incarnation === undefined || m.incarnation === incarnation));
}
