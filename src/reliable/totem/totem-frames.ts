import { create } from "@bufbuild/protobuf";
import { MemberRefSchema } from "../../../gen/activeblaze/v1/common_pb.ts";
import type { Frame } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { SeqRangeSchema } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import {
  type RingId as WireRingId,
  RingIdSchema,
  TotemCommitSchema,
  TotemJoinSchema,
  TotemMemberStateSchema,
  TotemPhase,
  TotemRelaySchema,
  TotemTokenSchema,
} from "../../../gen/activeblaze/v1/totem_pb.ts";
import { validateData } from "../../wire/codec.ts";
import { type DataFields, encodeFrame, toData, toDataFields } from "../../wire/frames.ts";
import { MEMBER_ID_BYTES } from "../../wire/limits.ts";
import { MAX_COUNTER } from "../../wire/safe-integers.ts";
import { idOf, keyOf } from "../member-key.ts";
import type { PeerKey } from "../protocol.ts";
import type { RingId } from "./ring-store.ts";

/**
 * The Totem frames in working form (numbers and member keys instead of bigints and bytes), with their
 * encoders and checked decoders. A decoder returns undefined for a frame that cannot be right (a
 * malformed id, a number past 2^53, a count to go on from past `MAX_COUNTER`, a backwards range): the
 * protocol drops and counts it. Tokens pass once per member per rotation, so these go through the
 * generated code.
 */

export { TotemPhase };

/** Most retransmission ranges a token may carry. */
export const MAX_TOKEN_RANGES = 1_024;
/** Most sequence numbers a token may ask to be sent again (the retransmission option's ceiling). */
export const MAX_TOKEN_REQUESTS = 65_536;
/** Most members a ring may have. */
export const MAX_RING_MEMBERS = 1_024;

export interface Token {
  readonly ring: RingId;
  tokenSeq: number;
  seq: number;
  aru: number;
  /** The member that last lowered `aru` ("" when none holds it down). */
  aruId: PeerKey;
  retransmit: Array<[number, number]>;
  fcc: number;
  backlog: number;
  recoveryPending: boolean;
  phase: TotemPhase;
}

export interface Join {
  readonly ring: RingId | undefined;
  /** The members the sender wants in the ring (sorted keys). */
  readonly members: readonly PeerKey[];
  readonly failed: readonly PeerKey[];
  readonly highestRingSeq: number;
  /** An operational ring's representative saying the ring runs (see TotemJoin.announce). */
  readonly announce: boolean;
}

export interface MemberState {
  readonly member: PeerKey;
  readonly incarnation: number;
  oldRing: RingId | undefined;
  oldAru: number;
  highDelivered: number;
  highReceived: number;
  received: boolean;
}

export interface Commit {
  readonly ring: RingId;
  readonly members: MemberState[];
}

export interface Relay {
  readonly origin: PeerKey;
  readonly originIncarnation: number;
  readonly ring: RingId;
  readonly data: DataFields;
  readonly carrierRing: RingId | undefined;
  readonly carrierSeq: number;
}

function wireRing(ring: RingId): WireRingId {
  return create(RingIdSchema, { representativeId: idOf(ring.representative), ringSeq: BigInt(ring.seq) });
}

function safe(value: bigint): number | undefined {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}

/**
 * A number members count on from (the next ring is numbered above the highest heard of; a token's
 * visits); undefined past `MAX_COUNTER`. Counted on from 2^53 − 1, the next ring's number would be past
 * what any member reads: no commit token of it, nor of any ring after it, would be taken.
 */
function counter(value: bigint): number | undefined {
  return value <= BigInt(MAX_COUNTER) ? Number(value) : undefined;
}

function memberKey(id: Uint8Array): PeerKey | undefined {
  return id.length === MEMBER_ID_BYTES ? keyOf(id) : undefined;
}

function ringOf(ring: WireRingId | undefined): RingId | undefined {
  if (ring === undefined) return undefined;
  const representative = memberKey(ring.representativeId);
  const seq = safe(ring.ringSeq);
  if (representative === undefined || seq === undefined || seq === 0) return undefined;
  return { representative, seq };
}

export function encodeToken(token: Token, next: PeerKey): Uint8Array {
  return encodeFrame({
    case: "totemToken",
    value: create(TotemTokenSchema, {
      ring: wireRing(token.ring),
      tokenSeq: BigInt(token.tokenSeq),
      seq: BigInt(token.seq),
      aru: BigInt(token.aru),
      aruId: token.aruId === "" ? new Uint8Array(0) : idOf(token.aruId),
      retransmit: token.retransmit.map(([first, last]) => create(SeqRangeSchema, { first: BigInt(first), last: BigInt(last) })),
      fcc: token.fcc,
      backlog: token.backlog,
      nextId: idOf(next),
      recoveryPending: token.recoveryPending,
      phase: token.phase,
    }),
  });
}

/** The token in `frame`, addressed to `local`; undefined when malformed or not for this member. */
export function decodeToken(frame: Frame, local: PeerKey): Token | undefined {
  if (frame.kind.case !== "totemToken") return undefined;
  const wire = frame.kind.value;
  const ring = ringOf(wire.ring);
  const tokenSeq = counter(wire.tokenSeq);
  const seq = safe(wire.seq);
  const aru = safe(wire.aru);
  if (ring === undefined || tokenSeq === undefined || seq === undefined || aru === undefined || aru > seq) return undefined;
  if (wire.nextId.length !== 0 && memberKey(wire.nextId) !== local) return undefined;
  const aruId = wire.aruId.length === 0 ? "" : memberKey(wire.aruId);
  if (aruId === undefined || wire.retransmit.length > MAX_TOKEN_RANGES) return undefined;
  const retransmit: Array<[number, number]> = [];
  let requested = 0;
  for (const range of wire.retransmit) {
    const first = safe(range.first);
    const last = safe(range.last);
    if (first === undefined || last === undefined || first === 0 || first > last || last > seq) return undefined;
    // Ascending and disjoint, and no more than a token may ask for: a holder walks every number.
    const previous = retransmit[retransmit.length - 1];
    requested += last - first + 1;
    if ((previous !== undefined && first <= previous[1]) || requested > MAX_TOKEN_REQUESTS) return undefined;
    retransmit.push([first, last]);
  }
  if (wire.phase !== TotemPhase.UNSPECIFIED && wire.phase !== TotemPhase.INSTALL && wire.phase !== TotemPhase.OPERATIONAL) return undefined;
  return {
    ring,
    tokenSeq,
    seq,
    aru,
    aruId,
    retransmit,
    fcc: wire.fcc,
    backlog: wire.backlog,
    recoveryPending: wire.recoveryPending,
    phase: wire.phase,
  };
}

export function encodeJoin(join: Join, incarnations: ReadonlyMap<PeerKey, number>): Uint8Array {
  const ref = (key: PeerKey) => create(MemberRefSchema, { id: idOf(key), incarnation: BigInt(incarnations.get(key) ?? 0) });
  return encodeFrame({
    case: "totemJoin",
    value: create(TotemJoinSchema, {
      ring: join.ring === undefined ? undefined : wireRing(join.ring),
      procSet: join.members.map(ref),
      failSet: join.failed.map(ref),
      highestRingSeq: BigInt(join.highestRingSeq),
      announce: join.announce,
    }),
  });
}

export function decodeJoin(frame: Frame): Join | undefined {
  if (frame.kind.case !== "totemJoin") return undefined;
  const wire = frame.kind.value;
  const highestRingSeq = counter(wire.highestRingSeq);
  const ring = wire.ring === undefined ? undefined : ringOf(wire.ring);
  if (highestRingSeq === undefined || (wire.ring !== undefined && ring === undefined)) return undefined;
  if (wire.procSet.length > MAX_RING_MEMBERS || wire.failSet.length > MAX_RING_MEMBERS) return undefined;
  const members: PeerKey[] = [];
  for (const ref of wire.procSet) {
    const key = memberKey(ref.id);
    if (key === undefined) return undefined;
    members.push(key);
  }
  const failed: PeerKey[] = [];
  for (const ref of wire.failSet) {
    const key = memberKey(ref.id);
    if (key === undefined) return undefined;
    failed.push(key);
  }
  members.sort();
  if (wire.announce && ring === undefined) return undefined;
  return { ring, members, failed, highestRingSeq, announce: wire.announce };
}

export function encodeCommit(commit: Commit): Uint8Array {
  return encodeFrame({
    case: "totemCommit",
    value: create(TotemCommitSchema, {
      ring: wireRing(commit.ring),
      members: commit.members.map((state) =>
        create(TotemMemberStateSchema, {
          member: create(MemberRefSchema, { id: idOf(state.member), incarnation: BigInt(state.incarnation) }),
          oldRing: state.oldRing === undefined ? undefined : wireRing(state.oldRing),
          oldAru: BigInt(state.oldAru),
          highDelivered: BigInt(state.highDelivered),
          highReceived: BigInt(state.highReceived),
          received: state.received,
        }),
      ),
    }),
  });
}

export function decodeCommit(frame: Frame): Commit | undefined {
  if (frame.kind.case !== "totemCommit") return undefined;
  const wire = frame.kind.value;
  const ring = ringOf(wire.ring);
  if (ring === undefined || wire.members.length === 0 || wire.members.length > MAX_RING_MEMBERS) return undefined;
  const members: MemberState[] = [];
  const seen = new Set<PeerKey>();
  for (const state of wire.members) {
    const member = state.member === undefined ? undefined : memberKey(state.member.id);
    const incarnation = state.member === undefined ? undefined : safe(state.member.incarnation);
    const oldRing = state.oldRing === undefined ? undefined : ringOf(state.oldRing);
    const oldAru = safe(state.oldAru);
    const highDelivered = safe(state.highDelivered);
    const highReceived = safe(state.highReceived);
    if (
      member === undefined ||
      incarnation === undefined ||
      seen.has(member) ||
      (state.oldRing !== undefined && oldRing === undefined) ||
      oldAru === undefined ||
      highDelivered === undefined ||
      highReceived === undefined ||
      oldAru > highReceived
    ) {
      return undefined;
    }
    seen.add(member);
    members.push({ member, incarnation, oldRing, oldAru, highDelivered, highReceived, received: state.received });
  }
  // The representative starts the ring.
  if (members[0]!.member !== ring.representative) return undefined;
  return { ring, members };
}

export function encodeRelay(relay: Relay): Uint8Array {
  return encodeFrame({
    case: "totemRelay",
    value: create(TotemRelaySchema, {
      origin: create(MemberRefSchema, { id: idOf(relay.origin), incarnation: BigInt(relay.originIncarnation) }),
      ring: wireRing(relay.ring),
      data: toData(relay.data),
      carrierRing: relay.carrierRing === undefined ? undefined : wireRing(relay.carrierRing),
      carrierSeq: BigInt(relay.carrierSeq),
    }),
  });
}

export function decodeRelay(frame: Frame): Relay | undefined {
  if (frame.kind.case !== "totemRelay") return undefined;
  const wire = frame.kind.value;
  const origin = wire.origin === undefined ? undefined : memberKey(wire.origin.id);
  const originIncarnation = wire.origin === undefined ? undefined : safe(wire.origin.incarnation);
  const ring = ringOf(wire.ring);
  const data = wire.data === undefined ? undefined : toDataFields(wire.data);
  const carrierRing = wire.carrierRing === undefined ? undefined : ringOf(wire.carrierRing);
  const carrierSeq = safe(wire.carrierSeq);
  if (origin === undefined || originIncarnation === undefined || ring === undefined || data === undefined || carrierSeq === undefined) {
    return undefined;
  }
  if ((wire.carrierRing === undefined) !== (carrierSeq === 0) || (wire.carrierRing !== undefined && carrierRing === undefined)) return undefined;
  if (data.globalSeq === 0 || data.ringSeq !== ring.seq || data.targetId.length !== 0) return undefined;
  if (validateData(data, "totemRelay.data") !== undefined) return undefined;
  return { origin, originIncarnation, ring, data, carrierRing, carrierSeq };
}
