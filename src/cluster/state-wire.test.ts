import { create, fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { MAX_COUNTER } from "../wire/safe-integers.ts";
import type { StateAck, Update } from "./state-types.ts";
import { decodeStateFrame, encodeAck, encodeAnnounce, encodeRequest, encodeResponse, encodeSnapshot, encodeSync, encodeUpdate, type StateFrame } from "./state-wire.ts";

const A = { id: "0a".repeat(16), incarnation: 7 };
const B = { id: "0b".repeat(16), incarnation: 3 };
const C = { id: "0c".repeat(16), incarnation: 1 };
const decode = (bytes: Uint8Array, now = 0): StateFrame | undefined => decodeStateFrame(fromBinary(FrameSchema, bytes), now);

describe("state frames on the wire", () => {
  it("round-trips an update batch; a put's owner is its requester's and is left out", () => {
    const update: Update = {
      epoch: 4,
      index: 42,
      coordinator: B.id,
      requests: [
        { requestId: 9, requester: A, changes: [{ kind: "put", entry: { key: "k", value: new Uint8Array([1]), format: 0, version: 42, owner: A, removeOnExit: true, ttlMs: 500 }, inserted: true }] },
        { requestId: 3, requester: B, changes: [{ kind: "lock", lock: { key: "l", holder: B, token: 17, leaseMs: 900, releaseOnExit: false } }] },
        { requestId: 0, requester: undefined, changes: [{ kind: "remove", key: "old", expired: true }, { kind: "unlock", key: "l2", expired: true }] },
        { requestId: 5, requester: A, changes: [{ kind: "clear" }] },
      ],
      tokenCeiling: 2_048,
      forget: [B],
    };
    const bytes = encodeUpdate("g", update, 12, true);
    const wire = fromBinary(FrameSchema, bytes);
    expect(wire.kind.case === "stateUpdate" && wire.kind.value.changes[0]!.entry!.owner).toBeUndefined();
    expect(decode(bytes)).toEqual({ kind: "update", group: "g", update, leaseProbe: 12, termBegun: true });
    expect(decode(encodeUpdate("g", update, 12, false))).toEqual({ kind: "update", group: "g", update, leaseProbe: 12, termBegun: false });
  });

  it("hands out one member instance for one requester across updates (its key is made once), another for its next incarnation", () => {
    const requesterOf = (requester: typeof A, index: number) => {
      const update: Update = { epoch: 1, index, coordinator: B.id, requests: [{ requestId: index, requester, changes: [{ kind: "remove", key: "k", expired: false }] }], tokenCeiling: 0, forget: [] };
      const frame = decode(encodeUpdate("g", update, 0, true));
      return frame?.kind === "update" ? frame.update.requests[0]!.requester : undefined;
    };
    const first = requesterOf(A, 1);
    expect(first).toEqual(A);
    expect(requesterOf(C, 2)).toEqual(C);
    expect(requesterOf(A, 3)).toBe(first);
    const restarted = requesterOf({ ...A, incarnation: 8 }, 4);
    expect(restarted).toEqual({ ...A, incarnation: 8 });
    expect(restarted).not.toBe(first);
  });

  it("round-trips requests, responses, announcements, snapshots, syncs and acknowledgements", () => {
    const request = { requestId: 5, op: { case: "prepare", epoch: 8, view: { installer: A.id, counter: 12 } } } as const;
    expect(decode(encodeRequest("g", request))).toEqual({ kind: "request", group: "g", request });
    const put = { requestId: 6, op: { case: "put", put: { key: "k", value: new Uint8Array([2]), format: 1, ttlMs: 0, removeOnExit: false, ifVersion: 0, fencingToken: 4 } } } as const;
    expect(decode(encodeRequest("g", put))).toEqual({ kind: "request", group: "g", request: put });
    const response = { requestId: 6, outcome: "VERSION_MISMATCH", message: "no", epoch: 2, index: 0, previous: [], token: 0 } as const;
    expect(decode(encodeResponse(response, 0))).toEqual({ kind: "response", response });
    const announce = { epoch: 3, coordinator: B.id, index: 99, leaseProbe: 4 };
    expect(decode(encodeAnnounce("g", announce, true))).toEqual({ kind: "announce", group: "g", announce, termBegun: true });
    const chunk = {
      transfer: 2,
      epoch: 3,
      index: 99,
      chunk: 1,
      chunkCount: 4,
      entries: [
        { key: "e", value: new Uint8Array([3]), format: 0, version: 12, owner: A, removeOnExit: false, ttlMs: 0, expiresAt: undefined },
        { key: "t", value: new Uint8Array([4, 5]), format: 1, version: 13, owner: B, removeOnExit: true, ttlMs: 1_000, expiresAt: 1_400 },
      ],
      locks: [{ key: "f", holder: B, token: 7, leaseMs: 0, releaseOnExit: true }],
      applied: [{ requester: A, requestId: 2, index: 12, previous: [], token: 0 }],
      nextToken: 9,
    };
    // A lock on an entry's key travels with the entry; the others apart. Times to live travel as what
    // is left (600 ms at 800), counted again from the receiver's clock (1,000 → 1,600); whether the
    // entries travel one message each or in one block.
    const onEntry = { key: "e", holder: B, token: 8, leaseMs: 300, releaseOnExit: true };
    const received = { ...chunk, entries: [chunk.entries[0], { ...chunk.entries[1], ttlMs: 600, expiresAt: 1_600 }], locks: [onEntry, ...chunk.locks] };
    for (const entryBlock of [false, true]) {
      const bytes = encodeSnapshot("g", chunk, (key) => (key === "e" ? onEntry : undefined), 800, entryBlock);
      const wire = fromBinary(FrameSchema, bytes);
      expect(wire.kind.case === "stateSnapshot" && [wire.kind.value.entries.length, wire.kind.value.entryBlock.length > 0]).toEqual(entryBlock ? [0, true] : [2, false]);
      expect(decode(bytes, 1_000)).toEqual({ kind: "snapshot", group: "g", chunk: received });
    }
    // The terms that may still hold the agreed set travel with the term, newest first.
    const prior = [
      { epoch: 4, coordinator: B.id, members: [A, B, C] },
      { epoch: 2, coordinator: A.id, members: [A, C] },
    ];
    const sync = { epoch: 5, coordinator: A.id, index: 99, members: [A, B], tokenCeiling: 1_100, snapshotTransfer: 2, snapshotChunks: 4, entryCount: 1, prior };
    expect(decode(encodeSync("g", sync))).toEqual({ kind: "sync", group: "g", sync });
    const ack: StateAck = {
      position: { epoch: 5, coordinator: A.id, index: 99 },
      view: { installer: A.id, counter: 12 },
      tokenCeiling: 1_100,
      accepted: { epoch: 5, coordinator: A.id, members: [A, B], prior },
      acceptedBegun: true,
      promised: { epoch: 6, coordinator: B.id },
      memorySince: 1_764_000_000_123,
      ready: true,
      highestSeen: 101,
      leaseProbe: 4,
      snapshotTransfer: 0,
      snapshotChunks: 0,
    };
    // This member reads entry blocks, and says so.
    expect(decode(encodeAck("g", ack))).toEqual({ kind: "ack", group: "g", ack, readsEntryBlock: true });
    // Only an answer to a PrepareOp says what the accepted term is, whether it began, and how far back its memory reaches.
    expect(decode(encodeAck("g", { ...ack, view: undefined }))).toEqual({
      kind: "ack",
      group: "g",
      ack: { ...ack, view: undefined, accepted: { ...ack.accepted, members: [], prior: [] }, acceptedBegun: false, memorySince: 0 },
      readsEntryBlock: true,
    });
  });

  it("refuses counters past MAX_COUNTER and member ids that are not 16 bytes", () => {
    const past = BigInt(MAX_COUNTER) + 1n;
    const frame = (kind: Parameters<typeof create<typeof FrameSchema>>[1]) => create(FrameSchema, kind);
    expect(decodeStateFrame(frame({ kind: { case: "stateUpdate", value: { epoch: past, index: 1n, group: "g", coordinatorId: new Uint8Array(16) } } }), 0)).toBeUndefined();
    expect(decodeStateFrame(frame({ kind: { case: "stateUpdate", value: { epoch: 1n, index: 1n, group: "g", coordinatorId: new Uint8Array(3) } } }), 0)).toBeUndefined();
    expect(decodeStateFrame(frame({ kind: { case: "stateRequest", value: { requestId: 1n, group: "g" } } }), 0)).toBeUndefined();
    expect(decodeStateFrame(frame({ kind: { case: "stateAck", value: { group: "g", index: past } } }), 0)).toBeUndefined();
    // A batched request's put without its entry.
    expect(
      decodeStateFrame(frame({ kind: { case: "stateUpdate", value: { epoch: 1n, index: 1n, group: "g", coordinatorId: new Uint8Array(16), batch: [{ requestId: 1n, requester: { id: new Uint8Array(16) }, changes: [{ kind: 1 }] }] } } }), 0),
    ).toBeUndefined();
  });
});
