import { describe, expect, it } from "vitest";
import { MAX_COUNTER } from "../wire/safe-integers.ts";
import type { Change, MemberInstance, OrderedRequest, StateAck, StateRequest, Update } from "./state-types.ts";
import { encodeAckGenerically, encodeRequestGenerically, encodeUpdateGenerically } from "./state-wire.ts";
import { writeAckFrame, writeRequestFrame, writeUpdateFrame } from "./state-writer.ts";

const A = { id: "0a".repeat(16), incarnation: 7 };
const B = { id: "f0".repeat(16), incarnation: 2 ** 41 + 3 };
const NOBODY = { id: "", incarnation: 0 };

/** A small deterministic generator: the same cases every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

describe("hand-written state frames", () => {
  const next = random(42);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const counter = () => pick([0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, MAX_COUNTER, Math.floor(next() * 1e9)]);
  const member = (): MemberInstance => pick([A, B, NOBODY, { id: A.id, incarnation: 0 }, { id: B.id, incarnation: counter() }]);
  const key = () => pick(["", "k", "k1234", "ключ", "😀-key", "x".repeat(200)]);
  const value = () => pick([new Uint8Array(0), new Uint8Array([1]), new Uint8Array(64).fill(7), new Uint8Array(300).fill(9)]);
  const format = () => pick([0, 1, 5, -1, -2_147_483_648]);
  const change = (): Change => {
    switch (pick(["put", "put", "remove", "lock", "unlock", "clear"] as const)) {
      case "put":
        return {
          kind: "put",
          entry: { key: key(), value: value(), format: format(), version: counter(), owner: member(), removeOnExit: next() < 0.5, ttlMs: counter() },
          inserted: next() < 0.5,
        };
      case "remove":
        return { kind: "remove", key: key(), expired: next() < 0.5 };
      case "lock":
        return { kind: "lock", lock: { key: key(), holder: member(), token: counter(), leaseMs: counter(), releaseOnExit: next() < 0.5 } };
      case "unlock":
        return { kind: "unlock", key: key(), expired: next() < 0.5 };
      case "clear":
        return { kind: "clear" };
    }
  };
  const request = (): OrderedRequest => {
    const requester = next() < 0.2 ? undefined : member();
    return { requestId: counter(), requester, changes: Array.from({ length: Math.floor(next() * 4) }, change) };
  };

  it("writes updates as the schema's codec writes them", () => {
    for (let i = 0; i < 2_000; i++) {
      const update: Update = {
        epoch: counter(),
        index: counter(),
        coordinator: pick([A.id, B.id, ""]),
        requests: Array.from({ length: Math.floor(next() * 4) }, request),
        tokenCeiling: counter(),
        forget: Array.from({ length: Math.floor(next() * 3) }, member),
      };
      const group = pick(["g", "", "state-group"]);
      const leaseProbe = counter();
      const termBegun = next() < 0.5;
      expect(writeUpdateFrame(group, update, leaseProbe, termBegun)).toEqual(encodeUpdateGenerically(group, update, leaseProbe, termBegun));
    }
  });

  it("writes acknowledgements as the schema's codec writes them; one answering a prepare is left to it", () => {
    for (let i = 0; i < 2_000; i++) {
      const term = { epoch: counter(), coordinator: pick([A.id, B.id, ""]), members: [A, B], prior: [] };
      const ack: StateAck = {
        position: { epoch: counter(), coordinator: pick([A.id, B.id, ""]), index: counter() },
        view: undefined,
        tokenCeiling: counter(),
        accepted: term,
        acceptedBegun: next() < 0.5,
        promised: { epoch: counter(), coordinator: pick([A.id, B.id, ""]) },
        memorySince: counter(),
        ready: next() < 0.5,
        highestSeen: counter(),
        leaseProbe: counter(),
        snapshotTransfer: counter(),
        snapshotChunks: pick([0, 1, 300, 2 ** 32 - 1]),
      };
      const group = pick(["g", "", "state-group"]);
      expect(writeAckFrame(group, ack)).toEqual(encodeAckGenerically(group, ack));
    }
    const prepared = { position: { epoch: 1, coordinator: A.id, index: 2 }, view: { installer: A.id, counter: 3 } } as StateAck;
    expect(writeAckFrame("g", prepared)).toBeUndefined();
  });

  it("writes puts, removes, locks and unlocks as the schema's codec writes them; the other requests are left to it", () => {
    const version = () => (next() < 0.5 ? undefined : counter());
    for (let i = 0; i < 2_000; i++) {
      const op = pick([
        () => ({
          case: "put" as const,
          put: { key: key(), value: value(), format: format(), ttlMs: counter(), removeOnExit: next() < 0.5, ifVersion: version(), fencingToken: counter() },
        }),
        () => ({ case: "remove" as const, remove: { key: key(), ifVersion: version(), fencingToken: counter() } }),
        () => ({ case: "lock" as const, key: key(), leaseMs: counter(), waitMs: counter(), releaseOnExit: next() < 0.5 }),
        () => ({ case: "unlock" as const, key: key(), fencingToken: counter() }),
      ])();
      const request: StateRequest = { requestId: counter(), op };
      const group = pick(["g", "", "state-group"]);
      expect(writeRequestFrame(group, request)).toEqual(encodeRequestGenerically(group, request));
    }
    expect(writeRequestFrame("g", { requestId: 1, op: { case: "clear" } })).toBeUndefined();
  });

  it("refuses numbers the wire's integers cannot hold, as the schema's codec does", () => {
    const put = (ttlMs: number): StateRequest => ({ requestId: 1, op: { case: "put", put: { key: "k", value: new Uint8Array(0), format: 0, ttlMs, removeOnExit: false, ifVersion: undefined, fencingToken: 0 } } });
    for (const bad of [-1, 0.5, 2 ** 64]) {
      expect(() => encodeRequestGenerically("g", put(bad))).toThrow();
      expect(() => writeRequestFrame("g", put(bad))).toThrow();
    }
  });
});
