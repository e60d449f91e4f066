import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type MemberRef, MemberRefSchema, ViewIdSchema } from "../../gen/activeblaze/v1/common_pb.ts";
import {
  type AppliedRequestSchema,
  ChangeKind,
  type Entry,
  type EntryChangeSchema,
  type EntrySchema,
  LockStateSchema,
  type StateRequestSchema,
  type EntryChange,
  type LockState,
  type StateAck as WireAck,
  type StateRequest as WireRequest,
  type StateResponse as WireResponse,
  StateResult,
  type StateSnapshot as WireSnapshot,
  type StateUpdate as WireUpdate,
  type SyncComplete as WireSync,
  type TermRecord as WireTermRecord,
  type TermRecordSchema,
} from "../../gen/activeblaze/v1/cluster_pb.ts";
import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { idOf, sameId } from "../reliable/member-key.ts";
import { fastCodec } from "../wire/fast-codec.ts";
import { encodeFrame, type FrameReader, type HandReadCase } from "../wire/frames.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { MAX_COUNTER } from "../wire/safe-integers.ts";
import { type BlockLock, readEntryBlock, writeEntryBlock } from "./entry-block.ts";
import { memberInstance, peerKeyAt, readStateAck, readStateRequest, readStateUpdate } from "./state-reader.ts";
import { writeAckFrame, writeRequestFrame, writeUpdateFrame } from "./state-writer.ts";
import {
  type Announce,
  type AppliedRecord,
  type Change,
  type EntrySpec,
  type LockSpec,
  type MemberInstance,
  type OrderedRequest,
  type Position,
  type PutSpec,
  remaining,
  type RemoveSpec,
  type SnapshotChunk,
  type StateAck,
  type StateOp,
  type StateOutcome,
  type StateRequest,
  type StateResponse,
  type StoredEntry,
  type SyncComplete,
  type Term,
  type TermRecord,
  type Update,
} from "./state-types.ts";

/**
 * The boundary between the state map and the wire: its frames encoded from the map's own forms, and
 * decoded back with every number checked. Nothing else in the map touches a bigint or a generated message.
 *
 * Counters a member counts on from (epochs, indexes, request ids, fencing tokens) are refused past
 * MAX_COUNTER, member ids that are not 16 bytes are refused: a frame that breaks either decodes to
 * undefined (counted as malformed by its receiver, and dropped).
 */

/** The frame kinds of the state map. */
export const STATE_FRAME_KINDS = ["stateRequest", "stateResponse", "stateUpdate", "stateSnapshot", "syncComplete", "stateAck"] as const;

/** A decoded state frame. */
export type StateFrame =
  | { readonly kind: "request"; readonly group: string; readonly request: StateRequest }
  | { readonly kind: "response"; readonly response: StateResponse }
  /** `termBegun`: the coordinator says the term the update names has begun (every member accepted it). */
  | { readonly kind: "update"; readonly group: string; readonly update: Update; readonly leaseProbe: number; readonly termBegun: boolean }
  | { readonly kind: "announce"; readonly group: string; readonly announce: Announce; readonly termBegun: boolean }
  | { readonly kind: "snapshot"; readonly group: string; readonly chunk: SnapshotChunk }
  | { readonly kind: "sync"; readonly group: string; readonly sync: SyncComplete }
  /** `readsEntryBlock`: its sender reads snapshot entries from StateSnapshot.entry_block. */
  | { readonly kind: "ack"; readonly group: string; readonly ack: StateAck; readonly readsEntryBlock: boolean };

class Malformed extends Error {}

/** The frames of every write, read by hand straight into the forms above (state-reader.ts), by kind. */
export const STATE_HAND_READERS: Readonly<Record<HandReadCase, FrameReader>> = {
  stateRequest: readStateRequest,
  stateUpdate: readStateUpdate,
  stateAck: readStateAck,
};

const OUTCOMES: Record<StateOutcome, StateResult> = {
  OK: StateResult.OK,
  LOCKED: StateResult.LOCKED,
  VERSION_MISMATCH: StateResult.VERSION_MISMATCH,
  STALE_TOKEN: StateResult.STALE_TOKEN,
  NOT_COORDINATOR: StateResult.NOT_COORDINATOR,
  NO_QUORUM: StateResult.NO_QUORUM,
  NOT_FOUND: StateResult.NOT_FOUND,
  INVALID: StateResult.INVALID,
  TOO_LARGE: StateResult.TOO_LARGE,
};
const OUTCOME_OF = new Map<StateResult, StateOutcome>(Object.entries(OUTCOMES).map(([name, result]) => [result, name as StateOutcome]));

// --- numbers and members ---

const MAX_COUNTER_BIG = BigInt(MAX_COUNTER);
const LOCK_CODEC = fastCodec(LockStateSchema);

function counter(value: bigint): number {
  if (value > MAX_COUNTER_BIG) throw new Malformed("a counter past MAX_COUNTER");
  return Number(value);
}

/** Durations and the like: the envelope's check already keeps them within 2^53 − 1. */
function num(value: bigint): number {
  return Number(value);
}

function peerOf(id: Uint8Array): PeerKey {
  return peerKeyAt(id, 0, id.length) ?? malformed("a member id that is not 16 bytes");
}

/** An id that may be absent (a replica that never synced names no coordinator). */
function optionalPeerOf(id: Uint8Array): PeerKey {
  return id.length === 0 ? "" : peerOf(id);
}

function instanceOf(ref: MemberRef | undefined): MemberInstance {
  if (ref === undefined) throw new Malformed("a member reference is missing");
  return memberInstance(peerOf(ref.id), num(ref.incarnation));
}

function malformed(reason: string): never {
  throw new Malformed(reason);
}

function termRecordInit(term: TermRecord): MessageInitShape<typeof TermRecordSchema> {
  return { epoch: BigInt(term.epoch), coordinatorId: optionalIdOf(term.coordinator), members: term.members.map(refOf) };
}

function termRecordOf(wire: WireTermRecord): TermRecord {
  return { epoch: counter(wire.epoch), coordinator: optionalPeerOf(wire.coordinatorId), members: wire.members.map(instanceOf) };
}

function refOf(member: MemberInstance): MessageInitShape<typeof MemberRefSchema> {
  return { id: idOf(member.id), incarnation: BigInt(member.incarnation) };
}

function optionalIdOf(peer: PeerKey): Uint8Array {
  return peer === "" ? new Uint8Array(0) : idOf(peer);
}

// --- entries, locks, changes ---

/** An entry on the wire; `ownerShown` false leaves out its owner (a put in an update: the request's requester). */
function entryInit(entry: EntrySpec, lock?: LockSpec, ownerShown = true): MessageInitShape<typeof EntrySchema> {
  return {
    key: entry.key,
    value: entry.value,
    format: entry.format,
    version: BigInt(entry.version),
    owner: ownerShown ? refOf(entry.owner) : undefined,
    removeOnExit: entry.removeOnExit,
    ttlRemainingMs: BigInt(entry.ttlMs),
    lock: lock === undefined ? undefined : lockInit(lock),
  };
}

function lockInit(lock: LockSpec): MessageInitShape<typeof LockStateSchema> {
  return { holder: refOf(lock.holder), fencingToken: BigInt(lock.token), leaseRemainingMs: BigInt(lock.leaseMs), releaseOnExit: lock.releaseOnExit };
}

/** An entry from the wire; `requester` owns it when it names no owner (a put in an update). */
function entrySpecOf(wire: Entry, requester?: MemberInstance): EntrySpec {
  return {
    key: wire.key,
    value: wire.value,
    format: wire.format,
    version: counter(wire.version),
    owner: wire.owner === undefined && requester !== undefined ? requester : instanceOf(wire.owner),
    removeOnExit: wire.removeOnExit,
    ttlMs: num(wire.ttlRemainingMs),
  };
}

function lockSpecOf(key: string, wire: LockState): LockSpec {
  return { key, holder: instanceOf(wire.holder), token: counter(wire.fencingToken), leaseMs: num(wire.leaseRemainingMs), releaseOnExit: wire.releaseOnExit };
}

/** A change in an update: a put's entry names no owner when its owner is the request's requester. */
function changeInit(change: Change, requester: MemberInstance | undefined): MessageInitShape<typeof EntryChangeSchema> {
  switch (change.kind) {
    case "put": {
      const owned = requester !== undefined && change.entry.owner.id === requester.id && change.entry.owner.incarnation === requester.incarnation;
      return { kind: change.inserted ? ChangeKind.INSERT : ChangeKind.UPDATE, entry: entryInit(change.entry, undefined, !owned) };
    }
    case "remove":
      return { kind: ChangeKind.REMOVE, entry: { key: change.key }, expired: change.expired };
    case "lock":
      return { kind: ChangeKind.LOCK, entry: { key: change.lock.key, lock: lockInit(change.lock) } };
    case "unlock":
      return { kind: ChangeKind.UNLOCK, entry: { key: change.key }, expired: change.expired };
    case "clear":
      return { kind: ChangeKind.CLEAR };
  }
}

function changeOf(wire: EntryChange, requester: MemberInstance | undefined): Change {
  const entry = wire.entry;
  switch (wire.kind) {
    case ChangeKind.INSERT:
    case ChangeKind.UPDATE:
      if (entry === undefined) throw new Malformed("a put without its entry");
      return { kind: "put", entry: entrySpecOf(entry, requester), inserted: wire.kind === ChangeKind.INSERT };
    case ChangeKind.REMOVE:
      if (entry === undefined) throw new Malformed("a remove without its key");
      return { kind: "remove", key: entry.key, expired: wire.expired };
    case ChangeKind.LOCK:
      if (entry?.lock === undefined) throw new Malformed("a lock without its state");
      return { kind: "lock", lock: lockSpecOf(entry.key, entry.lock) };
    case ChangeKind.UNLOCK:
      if (entry === undefined) throw new Malformed("an unlock without its key");
      return { kind: "unlock", key: entry.key, expired: wire.expired };
    case ChangeKind.CLEAR:
      return { kind: "clear" };
    default:
      throw new Malformed("a change of no known kind");
  }
}

function storedOf(spec: EntrySpec, now: number): StoredEntry {
  const { key, value, format, version, owner, removeOnExit, ttlMs } = spec;
  return { key, value, format, version, owner, removeOnExit, ttlMs, expiresAt: ttlMs > 0 ? now + ttlMs : undefined };
}

/** An entry of a snapshot as the map stores it, its time to live counted from `now`. */
function storedEntryOf(wire: Entry, now: number): StoredEntry {
  const ttlMs = num(wire.ttlRemainingMs);
  return {
    key: wire.key,
    value: wire.value,
    format: wire.format,
    version: counter(wire.version),
    owner: instanceOf(wire.owner),
    removeOnExit: wire.removeOnExit,
    ttlMs,
    expiresAt: ttlMs > 0 ? now + ttlMs : undefined,
  };
}

/** An entry as it stands now, with the time to live it has left. */
function entrySpec(entry: StoredEntry, now: number): EntrySpec {
  return {
    key: entry.key,
    value: entry.value,
    format: entry.format,
    version: entry.version,
    owner: entry.owner,
    removeOnExit: entry.removeOnExit,
    ttlMs: remaining(entry.expiresAt, now),
  };
}

function appliedInit(record: AppliedRecord, now: number): MessageInitShape<typeof AppliedRequestSchema> {
  return {
    requester: refOf(record.requester),
    requestId: BigInt(record.requestId),
    index: BigInt(record.index),
    previous: record.previous.map((e) => entryInit(entrySpec(e, now))),
    fencingToken: BigInt(record.token),
  };
}

// --- encoding ---

function opInit(op: StateOp): MessageInitShape<typeof StateRequestSchema>["op"] {
  const put = (p: PutSpec) => ({
    key: p.key,
    value: p.value,
    format: p.format,
    ttlMs: BigInt(p.ttlMs),
    removeOnExit: p.removeOnExit,
    ifVersion: p.ifVersion === undefined ? undefined : BigInt(p.ifVersion),
    fencingToken: BigInt(p.fencingToken),
  });
  const remove = (r: RemoveSpec) => ({ key: r.key, ifVersion: r.ifVersion === undefined ? undefined : BigInt(r.ifVersion), fencingToken: BigInt(r.fencingToken) });
  switch (op.case) {
    case "put":
      return { case: "put", value: put(op.put) };
    case "remove":
      return { case: "remove", value: remove(op.remove) };
    case "batch":
      return { case: "batch", value: { puts: op.puts.map(put), removes: op.removes.map(remove) } };
    case "clear":
      return { case: "clear", value: {} };
    case "lock":
      return { case: "lock", value: { key: op.key, leaseMs: BigInt(op.leaseMs), waitMs: BigInt(op.waitMs), releaseOnExit: op.releaseOnExit } };
    case "unlock":
      return { case: "unlock", value: { key: op.key, fencingToken: BigInt(op.fencingToken) } };
    case "renewLease":
      return { case: "renewLease", value: { key: op.key, fencingToken: BigInt(op.fencingToken), leaseMs: BigInt(op.leaseMs) } };
    case "cancel":
      return { case: "cancel", value: { key: op.key, lockRequestId: BigInt(op.lockRequestId) } };
    case "pull":
      return { case: "pull", value: { epoch: BigInt(op.position.epoch), epochCoordinatorId: optionalIdOf(op.position.coordinator), index: BigInt(op.position.index) } };
    case "prepare":
      return { case: "prepare", value: { epoch: BigInt(op.epoch), view: { coordinatorId: idOf(op.view.installer), counter: BigInt(op.view.counter) } } };
  }
}

export function encodeRequest(group: string, request: StateRequest): Uint8Array {
  return writeRequestFrame(group, request) ?? encodeRequestGenerically(group, request);
}

/** A request as the schema's codec writes it (what writeRequestFrame's bytes are checked against). */
export function encodeRequestGenerically(group: string, request: StateRequest): Uint8Array {
  return encodeFrame({ case: "stateRequest", value: { requestId: BigInt(request.requestId), group, op: opInit(request.op) } });
}

export function encodeResponse(response: StateResponse, now: number): Uint8Array {
  return encodeFrame({
    case: "stateResponse",
    value: {
      requestId: BigInt(response.requestId),
      result: OUTCOMES[response.outcome],
      message: response.message,
      epoch: BigInt(response.epoch),
      index: BigInt(response.index),
      previous: response.previous.map((e) => entryInit(entrySpec(e, now))),
      fencingToken: BigInt(response.token),
    },
  });
}

/**
 * An update as the coordinator multicasts it (and sends again, with no lease probe, to a member that lacks
 * it); `termBegun`: the term it names has begun, as its coordinator knows.
 */
export function encodeUpdate(group: string, update: Update, leaseProbe: number, termBegun: boolean): Uint8Array {
  return writeUpdateFrame(group, update, leaseProbe, termBegun);
}

/** An update as the schema's codec writes it (what writeUpdateFrame's bytes are checked against). */
export function encodeUpdateGenerically(group: string, update: Update, leaseProbe: number, termBegun: boolean): Uint8Array {
  const [first, ...rest] = update.requests;
  const changes = (request: OrderedRequest | undefined) => (request?.changes ?? []).map((change) => changeInit(change, request?.requester));
  return encodeFrame({
    case: "stateUpdate",
    value: {
      epoch: BigInt(update.epoch),
      index: BigInt(update.index),
      group,
      requestId: BigInt(first?.requestId ?? 0),
      requester: first?.requester === undefined ? undefined : refOf(first.requester),
      changes: changes(first),
      coordinatorId: idOf(update.coordinator),
      batch: rest.map((r) => ({ requestId: BigInt(r.requestId), requester: r.requester === undefined ? undefined : refOf(r.requester), changes: changes(r) })),
      fencingTokenCeiling: BigInt(update.tokenCeiling),
      leaseProbe: BigInt(leaseProbe),
      forget: update.forget.map(refOf),
      termBegun,
    },
  });
}

export function encodeAnnounce(group: string, announce: Announce, termBegun: boolean): Uint8Array {
  return encodeFrame({
    case: "stateUpdate",
    value: { epoch: BigInt(announce.epoch), index: BigInt(announce.index), group, coordinatorId: idOf(announce.coordinator), leaseProbe: BigInt(announce.leaseProbe), announce: true, termBegun },
  });
}

/**
 * A snapshot chunk: `entries` with the locks on their keys, the other locks and the applied records in
 * the last chunk. `entryBlock`: the entries go in one SnapshotEntries block (to a member that reads it).
 */
export function encodeSnapshot(group: string, chunk: SnapshotChunk, lockOf: (key: string) => LockSpec | undefined, now: number, entryBlock: boolean): Uint8Array {
  const lockBytes = (key: string) => {
    const lock = lockOf(key);
    return lock === undefined ? undefined : LOCK_CODEC.encode(lockInit(lock));
  };
  return encodeFrame({
    case: "stateSnapshot",
    value: {
      transfer: BigInt(chunk.transfer),
      epoch: BigInt(chunk.epoch),
      index: BigInt(chunk.index),
      group,
      chunk: chunk.chunk,
      chunkCount: chunk.chunkCount,
      entries: entryBlock ? [] : chunk.entries.map((entry) => entryInit(entrySpec(entry, now), lockOf(entry.key))),
      locks: chunk.locks.map((lock) => ({ key: lock.key, lock: lockInit(lock) })),
      applied: chunk.applied.map((record) => appliedInit(record, now)),
      nextFencingToken: BigInt(chunk.nextToken),
      entryBlock: entryBlock && chunk.entries.length > 0 ? writeEntryBlock(chunk.entries, lockBytes, now) : undefined,
    },
  });
}

export function encodeSync(group: string, sync: SyncComplete): Uint8Array {
  return encodeFrame({
    case: "syncComplete",
    value: {
      epoch: BigInt(sync.epoch),
      index: BigInt(sync.index),
      group,
      entryCount: BigInt(sync.entryCount),
      agreed: sync.members.map(refOf),
      nextFencingToken: BigInt(sync.tokenCeiling),
      epochCoordinatorId: optionalIdOf(sync.coordinator),
      fencingTokenCeiling: BigInt(sync.tokenCeiling),
      snapshotTransfer: BigInt(sync.snapshotTransfer),
      snapshotChunks: sync.snapshotChunks,
      prior: sync.prior.map(termRecordInit),
    },
  });
}

export function encodeAck(group: string, ack: StateAck): Uint8Array {
  return writeAckFrame(group, ack) ?? encodeAckGenerically(group, ack);
}

/** An acknowledgement as the schema's codec writes it (what writeAckFrame's bytes are checked against). */
export function encodeAckGenerically(group: string, ack: StateAck): Uint8Array {
  return encodeFrame({
    case: "stateAck",
    value: {
      group,
      epoch: BigInt(ack.position.epoch),
      index: BigInt(ack.position.index),
      view: ack.view === undefined ? undefined : create(ViewIdSchema, { coordinatorId: idOf(ack.view.installer), counter: BigInt(ack.view.counter) }),
      nextFencingToken: BigInt(ack.tokenCeiling),
      acceptedEpoch: BigInt(ack.accepted.epoch),
      ready: ack.ready,
      epochCoordinatorId: optionalIdOf(ack.position.coordinator),
      highestSeen: BigInt(ack.highestSeen),
      leaseProbe: BigInt(ack.leaseProbe),
      snapshotTransfer: BigInt(ack.snapshotTransfer),
      snapshotChunks: ack.snapshotChunks,
      acceptedCoordinatorId: optionalIdOf(ack.accepted.coordinator),
      agreed: ack.view === undefined ? [] : ack.accepted.members.map(refOf),
      promisedEpoch: BigInt(ack.promised.epoch),
      promisedCoordinatorId: optionalIdOf(ack.promised.coordinator),
      readsEntryBlock: true,
      acceptedBegun: ack.view !== undefined && ack.acceptedBegun,
      acceptedPrior: ack.view === undefined ? [] : ack.accepted.prior.map(termRecordInit),
      memorySince: ack.view === undefined ? 0n : BigInt(ack.memorySince),
    },
  });
}

// --- decoding ---

/** Decodes a state frame; undefined when it is not one, or breaks a rule above. */
export function decodeStateFrame(frame: Frame, now: number): StateFrame | undefined {
  try {
    const kind = frame.kind;
    switch (kind.case) {
      case "stateRequest":
        return { kind: "request", group: kind.value.group, request: requestOf(kind.value) };
      case "stateResponse":
        return { kind: "response", response: responseOf(kind.value, now) };
      case "stateUpdate":
        return kind.value.announce
          ? { kind: "announce", group: kind.value.group, announce: announceOf(kind.value), termBegun: kind.value.termBegun }
          : { kind: "update", group: kind.value.group, update: updateOf(kind.value), leaseProbe: counter(kind.value.leaseProbe), termBegun: kind.value.termBegun };
      case "stateSnapshot":
        return { kind: "snapshot", group: kind.value.group, chunk: snapshotOf(kind.value, now) };
      case "syncComplete":
        return { kind: "sync", group: kind.value.group, sync: syncOf(kind.value) };
      case "stateAck":
        return { kind: "ack", group: kind.value.group, ack: ackOf(kind.value), readsEntryBlock: kind.value.readsEntryBlock };
      default:
        return undefined;
    }
  } catch (error) {
    if (error instanceof Malformed) return undefined;
    throw error;
  }
}

function optionalCounter(value: bigint | undefined): number | undefined {
  return value === undefined ? undefined : counter(value);
}

/** A put of a request (made once, not a closure per request). */
function putOf(p: { key: string; value: Uint8Array; format: number; ttlMs: bigint; removeOnExit: boolean; ifVersion?: bigint; fencingToken: bigint }): PutSpec {
  return {
    key: p.key,
    value: p.value,
    format: p.format,
    ttlMs: num(p.ttlMs),
    removeOnExit: p.removeOnExit,
    ifVersion: optionalCounter(p.ifVersion),
    fencingToken: counter(p.fencingToken),
  };
}

function removeOf(r: { key: string; ifVersion?: bigint; fencingToken: bigint }): RemoveSpec {
  return { key: r.key, ifVersion: optionalCounter(r.ifVersion), fencingToken: counter(r.fencingToken) };
}

function requestOf(wire: WireRequest): StateRequest {
  const requestId = counter(wire.requestId);
  const op = wire.op;
  switch (op.case) {
    case "put":
      return { requestId, op: { case: "put", put: putOf(op.value) } };
    case "remove":
      return { requestId, op: { case: "remove", remove: removeOf(op.value) } };
    case "batch":
      return { requestId, op: { case: "batch", puts: op.value.puts.map(putOf), removes: op.value.removes.map(removeOf) } };
    case "clear":
      return { requestId, op: { case: "clear" } };
    case "lock":
      return { requestId, op: { case: "lock", key: op.value.key, leaseMs: num(op.value.leaseMs), waitMs: num(op.value.waitMs), releaseOnExit: op.value.releaseOnExit } };
    case "unlock":
      return { requestId, op: { case: "unlock", key: op.value.key, fencingToken: counter(op.value.fencingToken) } };
    case "renewLease":
      return { requestId, op: { case: "renewLease", key: op.value.key, fencingToken: counter(op.value.fencingToken), leaseMs: num(op.value.leaseMs) } };
    case "cancel":
      return { requestId, op: { case: "cancel", key: op.value.key, lockRequestId: counter(op.value.lockRequestId) } };
    case "pull":
      return {
        requestId,
        op: { case: "pull", position: { epoch: counter(op.value.epoch), coordinator: optionalPeerOf(op.value.epochCoordinatorId), index: counter(op.value.index) } },
      };
    case "prepare": {
      const view = op.value.view;
      if (view === undefined) throw new Malformed("a prepare without its view");
      return { requestId, op: { case: "prepare", epoch: counter(op.value.epoch), view: { installer: peerOf(view.coordinatorId), counter: counter(view.counter) } } };
    }
    default:
      throw new Malformed("a request with no operation");
  }
}

function responseOf(wire: WireResponse, now: number): StateResponse {
  const outcome = OUTCOME_OF.get(wire.result);
  if (outcome === undefined) throw new Malformed("a response with no known result");
  return {
    requestId: counter(wire.requestId),
    outcome,
    message: wire.message,
    epoch: counter(wire.epoch),
    index: counter(wire.index),
    previous: wire.previous.map((e) => storedOf(entrySpecOf(e), now)),
    token: counter(wire.fencingToken),
  };
}

function orderedOf(requestId: bigint, requester: MemberInstance | undefined, changes: readonly EntryChange[]): OrderedRequest {
  return { requestId: counter(requestId), requester, changes: changes.map((change) => changeOf(change, requester)) };
}

function updateOf(wire: WireUpdate): Update {
  // The requests of an update mostly come from a few members: one instance each (and one key: see instanceKey).
  let lastRef: MemberRef | undefined;
  let last: MemberInstance | undefined;
  const requesterOf = (requestId: bigint, ref: MemberRef | undefined) => {
    if (requestId === 0n) return undefined;
    if (ref === undefined || lastRef === undefined || ref.incarnation !== lastRef.incarnation || !sameId(ref.id, lastRef.id)) {
      last = instanceOf(ref);
      lastRef = ref;
    }
    return last;
  };
  const requests = [orderedOf(wire.requestId, requesterOf(wire.requestId, wire.requester), wire.changes)];
  for (const b of wire.batch) requests.push(orderedOf(b.requestId, requesterOf(b.requestId, b.requester), b.changes));
  return {
    epoch: counter(wire.epoch),
    index: counter(wire.index),
    coordinator: peerOf(wire.coordinatorId),
    requests,
    tokenCeiling: counter(wire.fencingTokenCeiling),
    forget: wire.forget.map(instanceOf),
  };
}

function announceOf(wire: WireUpdate): Announce {
  return { epoch: counter(wire.epoch), coordinator: peerOf(wire.coordinatorId), index: counter(wire.index), leaseProbe: counter(wire.leaseProbe) };
}

function snapshotOf(wire: WireSnapshot, now: number): SnapshotChunk {
  const locks: LockSpec[] = [];
  const entries: StoredEntry[] = [];
  for (const entry of wire.entries) {
    entries.push(storedEntryOf(entry, now));
    if (entry.lock !== undefined) locks.push(lockSpecOf(entry.key, entry.lock));
  }
  if (wire.entryBlock.length > 0) {
    const blockLocks: BlockLock[] = [];
    const block = readEntryBlock(wire.entryBlock, now, blockLocks);
    if (block === undefined) throw new Malformed("an entry block that is not a SnapshotEntries message");
    for (const entry of block) entries.push(entry);
    for (const { key, state } of blockLocks) locks.push(lockSpecOf(key, lockStateOf(state)));
  }
  for (const record of wire.locks) if (record.lock !== undefined) locks.push(lockSpecOf(record.key, record.lock));
  return {
    transfer: counter(wire.transfer),
    epoch: counter(wire.epoch),
    index: counter(wire.index),
    chunk: wire.chunk,
    chunkCount: wire.chunkCount,
    entries,
    locks,
    applied: wire.applied.map((record) => ({
      requester: instanceOf(record.requester),
      requestId: counter(record.requestId),
      index: counter(record.index),
      previous: record.previous.map((e) => storedOf(entrySpecOf(e), now)),
      token: counter(record.fencingToken),
    })),
    nextToken: counter(wire.nextFencingToken),
  };
}

function lockStateOf(bytes: Uint8Array): LockState {
  try {
    return LOCK_CODEC.decode(bytes);
  } catch {
    throw new Malformed("a lock state that does not decode");
  }
}

function syncOf(wire: WireSync): SyncComplete {
  return {
    epoch: counter(wire.epoch),
    coordinator: optionalPeerOf(wire.epochCoordinatorId),
    index: counter(wire.index),
    members: wire.agreed.map(instanceOf),
    tokenCeiling: Math.max(counter(wire.fencingTokenCeiling), counter(wire.nextFencingToken)),
    snapshotTransfer: counter(wire.snapshotTransfer),
    snapshotChunks: wire.snapshotChunks,
    entryCount: num(wire.entryCount),
    prior: wire.prior.map(termRecordOf),
  };
}

function ackOf(wire: WireAck): StateAck {
  const accepted: Term = {
    epoch: counter(wire.acceptedEpoch),
    coordinator: optionalPeerOf(wire.acceptedCoordinatorId),
    members: wire.agreed.map(instanceOf),
    prior: wire.acceptedPrior.map(termRecordOf),
  };
  return {
    position: { epoch: counter(wire.epoch), coordinator: optionalPeerOf(wire.epochCoordinatorId), index: counter(wire.index) } satisfies Position,
    view: wire.view === undefined ? undefined : { installer: peerOf(wire.view.coordinatorId), counter: counter(wire.view.counter) },
    tokenCeiling: counter(wire.nextFencingToken),
    accepted,
    acceptedBegun: wire.acceptedBegun,
    promised: { epoch: counter(wire.promisedEpoch), coordinator: optionalPeerOf(wire.promisedCoordinatorId) },
    memorySince: counter(wire.memorySince),
    ready: wire.ready,
    highestSeen: counter(wire.highestSeen),
    leaseProbe: counter(wire.leaseProbe),
    snapshotTransfer: counter(wire.snapshotTransfer),
    snapshotChunks: wire.snapshotChunks,
  };
}

/**
 * A stored entry built from what a change or snapshot carried, its time to live counted from `now`. An
 * entry that never expires, carried in the stored form already (see putEntrySpec in state-types.ts), is stored as
 * it is: every member makes one object less for every put.
 */
export function storedEntry(spec: EntrySpec, now: number): StoredEntry {
  if (spec.ttlMs === 0 && "expiresAt" in spec && spec.expiresAt === undefined) return spec as StoredEntry;
  return storedOf(spec, now);
}

