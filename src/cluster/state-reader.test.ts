import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type StateAckSchema, type StateRequestSchema, type StateUpdateSchema } from "../../gen/activeblaze/v1/cluster_pb.ts";
import { FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { DatagramBuilder, DatagramReader, encodeEnvelopeHeader, encodeFrame, HandReaders, type HandReadCase } from "../wire/frames.ts";
import { MAX_COUNTER } from "../wire/safe-integers.ts";
import { ByteCursor } from "../wire/varint.ts";
import { readStateAck, readStateRequest, readStateUpdate } from "./state-reader.ts";
import type { Change, MemberInstance, OrderedRequest, StateAck, StateRequest, Update } from "./state-types.ts";
import { decodeStateFrame, encodeAck, encodeRequest, encodeUpdate, STATE_HAND_READERS, type StateFrame } from "./state-wire.ts";

const A = { id: "0a".repeat(16), incarnation: 7 };
const B = { id: "f0".repeat(16), incarnation: 2 ** 41 + 3 };

/** A small deterministic generator: the same cases every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

const READERS = { 48: readStateRequest, 50: readStateUpdate, 53: readStateAck } as Record<number, typeof readStateRequest>;

/** A frame's bytes read by hand: undefined when declined (or not a kind read by hand). */
function readByHand(frame: Uint8Array): StateFrame | undefined {
  const cursor = new ByteCursor(frame, 0, frame.length);
  const reader = READERS[cursor.varint() >>> 3];
  const end = cursor.delimitedEnd();
  if (reader === undefined || cursor.failed || end !== frame.length) return undefined;
  return reader(frame, cursor.pos, end);
}

/** What the schema's codec and the conversion make of a frame's bytes: "refused" when they do not decode. */
function readGenerically(frame: Uint8Array): StateFrame | undefined | "refused" {
  let decoded;
  try {
    decoded = fromBinary(FrameSchema, frame);
  } catch {
    return "refused";
  }
  return decodeStateFrame(decoded, 0);
}

/** Checks that the hand reader agrees with the generic path on `frame`; true when it read it (did not decline). */
function agrees(frame: Uint8Array): boolean {
  const hand = readByHand(frame);
  const generic = readGenerically(frame);
  if (hand === undefined) return false;
  expect(generic).not.toBe("refused");
  expect(hand).toEqual(generic);
  return true;
}

describe("the state frames read by hand", () => {
  const next = random(7);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const chance = (p: number) => next() < p;
  const counter = () => pick([0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, MAX_COUNTER, Math.floor(next() * 1e9)]);
  const key = () => pick(["", "k", "k1234", "ключ", "😀-key", "x".repeat(200)]);
  const value = () => pick([new Uint8Array(0), new Uint8Array([1]), new Uint8Array(64).fill(7), new Uint8Array(300).fill(9)]);

  describe("read every frame of the usual shape as the schema's codec and the conversion do", () => {
    const member = (): MemberInstance => pick([A, B, { id: A.id, incarnation: 0 }, { id: B.id, incarnation: counter() }]);
    const format = () => pick([0, 1, 5, 2 ** 31 - 1]);
    const change = (): Change => {
      switch (pick(["put", "put", "remove", "lock", "unlock", "clear"] as const)) {
        case "put":
          return {
            kind: "put",
            entry: { key: key(), value: value(), format: format(), version: counter(), owner: member(), removeOnExit: chance(0.5), ttlMs: counter() },
            inserted: chance(0.5),
          };
        case "remove":
          return { kind: "remove", key: key(), expired: chance(0.5) };
        case "lock":
          return { kind: "lock", lock: { key: key(), holder: member(), token: counter(), leaseMs: counter(), releaseOnExit: chance(0.5) } };
        case "unlock":
          return { kind: "unlock", key: key(), expired: chance(0.5) };
        case "clear":
          return { kind: "clear" };
      }
    };
    const request = (): OrderedRequest => {
      const own = chance(0.2);
      return { requestId: own ? 0 : Math.max(1, counter()), requester: own ? undefined : member(), changes: Array.from({ length: Math.floor(next() * 4) }, change) };
    };

    it("updates", () => {
      for (let i = 0; i < 2_000; i++) {
        const update: Update = {
          epoch: counter(),
          index: counter(),
          coordinator: pick([A.id, B.id]),
          requests: Array.from({ length: 1 + Math.floor(next() * 4) }, request),
          tokenCeiling: counter(),
          forget: Array.from({ length: Math.floor(next() * 3) }, member),
        };
        const frame = encodeUpdate(pick(["g", "", "state-group"]), update, counter(), chance(0.5));
        expect(agrees(frame)).toBe(true);
      }
    });

    it("requests", () => {
      const version = () => (chance(0.5) ? undefined : counter());
      const put = () => ({ key: key(), value: value(), format: format(), ttlMs: counter(), removeOnExit: chance(0.5), ifVersion: version(), fencingToken: counter() });
      const remove = () => ({ key: key(), ifVersion: version(), fencingToken: counter() });
      for (let i = 0; i < 2_000; i++) {
        const op = pick([
          () => ({ case: "put" as const, put: put() }),
          () => ({ case: "remove" as const, remove: remove() }),
          () => ({ case: "batch" as const, puts: Array.from({ length: Math.floor(next() * 3) }, put), removes: Array.from({ length: Math.floor(next() * 3) }, remove) }),
          () => ({ case: "lock" as const, key: key(), leaseMs: counter(), waitMs: counter(), releaseOnExit: chance(0.5) }),
          () => ({ case: "unlock" as const, key: key(), fencingToken: counter() }),
        ])();
        const request: StateRequest = { requestId: counter(), op };
        expect(agrees(encodeRequest(pick(["g", "", "state-group"]), request))).toBe(true);
      }
    });

    it("acknowledgements", () => {
      for (let i = 0; i < 2_000; i++) {
        const ack: StateAck = {
          position: { epoch: counter(), coordinator: pick([A.id, B.id, ""]), index: counter() },
          view: undefined,
          tokenCeiling: counter(),
          accepted: { epoch: counter(), coordinator: pick([A.id, B.id, ""]), members: [], prior: [] },
          acceptedBegun: chance(0.5),
          promised: { epoch: counter(), coordinator: pick([A.id, B.id, ""]) },
          memorySince: counter(),
          ready: chance(0.5),
          highestSeen: counter(),
          leaseProbe: counter(),
          snapshotTransfer: counter(),
          snapshotChunks: pick([0, 1, 300, 2 ** 32 - 1]),
        };
        expect(agrees(encodeAck(pick(["g", "", "state-group"]), ack))).toBe(true);
      }
    });
  });

  describe("agree with the schema's codec and the conversion on random messages it writes, or decline them", () => {
    // Any value the schema allows, and the member ids and numbers the map's rules refuse.
    const big = () => pick([0n, 1n, 300n, BigInt(MAX_COUNTER), BigInt(MAX_COUNTER) + 1n, 2n ** 53n - 1n, BigInt(Math.floor(next() * 1e12))]);
    const id = () => pick([new Uint8Array(16).fill(10), new Uint8Array(16).fill(240), new Uint8Array(0), new Uint8Array(3), new Uint8Array(17)]);
    const ref = () => (chance(0.1) ? undefined : { id: id(), incarnation: big() });
    const int32 = () => pick([0, 1, 7, 2 ** 31 - 1, -1, -(2 ** 31)]);
    const lock = () => ({ holder: ref(), fencingToken: big(), leaseRemainingMs: big(), releaseOnExit: chance(0.5) });
    const entry = () =>
      chance(0.1)
        ? undefined
        : {
            key: chance(0.3) ? "" : key(),
            value: chance(0.5) ? new Uint8Array(0) : value(),
            format: chance(0.7) ? 0 : int32(),
            version: chance(0.5) ? 0n : big(),
            owner: chance(0.5) ? undefined : ref(),
            removeOnExit: chance(0.3),
            ttlRemainingMs: chance(0.5) ? 0n : big(),
            lock: chance(0.7) ? undefined : lock(),
          };
    const change = () => ({ kind: pick([0, 1, 2, 3, 4, 5, 6, 7, 1, 2]), entry: entry(), expired: chance(0.3) });
    const changes = () => Array.from({ length: Math.floor(next() * 3) }, change);
    const termRecord = () => ({ epoch: big(), coordinatorId: id(), members: chance(0.5) ? [] : [{ id: id(), incarnation: big() }] });

    const update = (): MessageInitShape<typeof StateUpdateSchema> => ({
      epoch: big(),
      index: big(),
      group: pick(["g", "", "ключ"]),
      requestId: chance(0.3) ? 0n : big(),
      requester: ref(),
      changes: changes(),
      coordinatorId: id(),
      batch: Array.from({ length: Math.floor(next() * 3) }, () => ({ requestId: chance(0.2) ? 0n : big(), requester: ref(), changes: changes() })),
      fencingTokenCeiling: big(),
      leaseProbe: big(),
      announce: chance(0.2),
      forget: chance(0.7) ? [] : [{ id: id(), incarnation: big() }],
      termBegun: chance(0.5),
    });
    const put = () => ({ key: key(), value: value(), format: chance(0.7) ? 0 : int32(), ttlMs: big(), removeOnExit: chance(0.5), ifVersion: chance(0.5) ? undefined : big(), fencingToken: big() });
    const remove = () => ({ key: key(), ifVersion: chance(0.5) ? undefined : big(), fencingToken: big() });
    const request = (): MessageInitShape<typeof StateRequestSchema> => ({
      requestId: big(),
      group: pick(["g", ""]),
      op: pick<MessageInitShape<typeof StateRequestSchema>["op"]>([
        { case: "put", value: put() },
        { case: "remove", value: remove() },
        { case: "batch", value: { puts: [put()], removes: chance(0.5) ? [] : [remove()] } },
        { case: "clear", value: {} },
        { case: "lock", value: { key: key(), leaseMs: big(), waitMs: big(), releaseOnExit: chance(0.5) } },
        { case: "unlock", value: { key: key(), fencingToken: big() } },
        { case: "renewLease", value: { key: key(), fencingToken: big(), leaseMs: big() } },
        { case: "cancel", value: { key: key(), lockRequestId: big() } },
        { case: "pull", value: { epoch: big(), epochCoordinatorId: id(), index: big() } },
        { case: "prepare", value: { epoch: big(), view: chance(0.2) ? undefined : { coordinatorId: id(), counter: big() } } },
        { case: undefined },
      ]),
    });
    const ack = (): MessageInitShape<typeof StateAckSchema> => ({
      group: pick(["g", ""]),
      epoch: big(),
      index: big(),
      view: chance(0.8) ? undefined : { coordinatorId: id(), counter: big() },
      nextFencingToken: big(),
      acceptedEpoch: big(),
      ready: chance(0.5),
      epochCoordinatorId: id(),
      highestSeen: big(),
      leaseProbe: big(),
      snapshotTransfer: big(),
      snapshotChunks: pick([0, 1, 2 ** 32 - 1]),
      acceptedCoordinatorId: id(),
      agreed: chance(0.8) ? [] : [{ id: id(), incarnation: big() }],
      promisedEpoch: big(),
      promisedCoordinatorId: id(),
      readsEntryBlock: chance(0.5),
      acceptedBegun: chance(0.5),
      acceptedPrior: chance(0.8) ? [] : [termRecord()],
      memorySince: big(),
    });
    const frames = [
      () => encodeFrame({ case: "stateUpdate", value: update() }),
      () => encodeFrame({ case: "stateRequest", value: request() }),
      () => encodeFrame({ case: "stateAck", value: ack() }),
    ];

    it("whole", () => {
      let read = 0;
      for (let i = 0; i < 6_000; i++) if (agrees(pick(frames)())) read++;
      // Most random messages break a rule the hand reader leaves to the conversion; some are read.
      expect(read).toBeGreaterThan(300);
    });

    it("truncated, with bytes changed or added: what the schema's codec refuses, the hand reader declines", () => {
      let refused = 0;
      for (let i = 0; i < 20_000; i++) {
        const frame = pick(frames)();
        let bytes: Uint8Array;
        switch (pick(["truncate", "flip", "append"] as const)) {
          case "truncate":
            bytes = frame.subarray(0, Math.floor(next() * frame.length));
            break;
          case "flip":
            bytes = frame.slice();
            for (let n = 1 + Math.floor(next() * 3); n > 0; n--) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
            break;
          case "append":
            bytes = new Uint8Array([...frame, ...Array.from({ length: 1 + Math.floor(next() * 4) }, () => Math.floor(next() * 256))]);
            break;
        }
        const generic = readGenerically(bytes);
        if (generic === "refused") {
          refused++;
          expect(readByHand(bytes)).toBeUndefined();
        } else agrees(bytes);
      }
      expect(refused).toBeGreaterThan(1_000);
    });
  });

  it("copy the values they read: each keeps its bytes when its frame's change, and when many more are read after it", () => {
    const kept: Array<{ value: Uint8Array; bytes: number[] }> = [];
    for (let i = 0; i < 500; i++) {
      const bytes = Array.from({ length: 1 + (i % 150) }, (_, j) => (i * 31 + j) & 0xff);
      const frame = encodeRequest("g", { requestId: i + 1, op: { case: "put", put: { key: `k${i}`, value: new Uint8Array(bytes), format: 0, ttlMs: 0, removeOnExit: false, ifVersion: undefined, fencingToken: 0 } } });
      const read = readByHand(frame);
      if (read?.kind !== "request" || read.request.op.case !== "put") throw new Error("not read by hand");
      frame.fill(0);
      kept.push({ value: read.request.op.put.value, bytes });
    }
    for (const { value, bytes } of kept) expect([...value]).toEqual(bytes);
  });

  it("reach the map in the map's own form through the receive path, and in the generated form where declined", () => {
    const sender = new Uint8Array(16).fill(1);
    const builder = new DatagramBuilder(encodeEnvelopeHeader("c", sender, 1));
    const update: Update = {
      epoch: 2,
      index: 5,
      coordinator: A.id,
      requests: [{ requestId: 3, requester: B, changes: [{ kind: "remove", key: "k", expired: false }] }],
      tokenCeiling: 0,
      forget: [],
    };
    builder.addFrame(encodeUpdate("g", update, 1, true));
    // A prepare's request is not read by hand.
    builder.addFrame(encodeRequest("g", { requestId: 4, op: { case: "prepare", epoch: 3, view: { installer: A.id, counter: 2 } } }));
    const hands = new HandReaders();
    for (const [kind, read] of Object.entries(STATE_HAND_READERS)) hands.set(kind as HandReadCase, read);
    const read = new DatagramReader({ cluster: "c" }, hands).read(builder.finish()!);
    expect(read.ok).toBe(true);
    const [first, second] = read.ok ? read.datagram.frames : [];
    expect(first).toEqual({ case: "stateUpdate", read: { kind: "update", group: "g", update, leaseProbe: 1, termBegun: true } });
    expect(second?.case).toBe("stateRequest");
    expect(second !== undefined && "frame" in second && second.frame?.kind.case).toBe("stateRequest");
  });
});
