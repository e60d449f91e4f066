import { describe, expect, it } from "vitest";
import { type DataFields, emptyDataFields } from "../wire/frames.ts";
import { Reassembler } from "./reassembler.ts";

function piece(seq: number, index: number, count: number, length: number, bytes: Uint8Array): DataFields {
  return { ...emptyDataFields(), seq, fragmentIndex: index, fragmentCount: count, messageLength: length, payload: bytes };
}

describe("Reassembler", () => {
  it("puts pieces arriving in any order back together, and holds nothing after", () => {
    const r = new Reassembler(1_000, 1_000);
    const parts = [Uint8Array.of(1, 2), Uint8Array.of(3), Uint8Array.of(4, 5, 6)];
    expect(r.accept("p", piece(12, 2, 3, 6, parts[2]!), 0)).toBeUndefined();
    expect(r.accept("p", piece(10, 0, 3, 6, parts[0]!), 0)).toBeUndefined();
    expect(r.accept("p", piece(10, 0, 3, 6, parts[0]!), 0)).toBeUndefined();
    expect(r.accept("p", piece(11, 1, 3, 6, parts[1]!), 0)).toEqual(Uint8Array.of(1, 2, 3, 4, 5, 6));
    expect({ pending: r.pending, held: r.heldBytes }).toEqual({ pending: 0, held: 0 });
  });

  it("a message claiming 65,536 pieces costs what arrived of it, not what it claims", () => {
    const r = new Reassembler(16 * 1024 * 1024, 10_000);
    for (let seq = 1; seq <= 16; seq++) r.accept("p", piece(seq, 0, 65_536, 16_000_000, new Uint8Array(10)), 0);
    expect({ pending: r.pending, held: r.heldBytes }).toEqual({ pending: 16, held: 160 });
  });

  it("keeps at most 16 messages in pieces per peer, dropping the oldest, and counts what it dropped", () => {
    const r = new Reassembler(1_000, 10_000);
    for (let seq = 1; seq <= 1_000; seq += 2) r.accept("attacker", piece(seq, 0, 2, 4, Uint8Array.of(1, 2)), 0);
    r.accept("friend", piece(1, 0, 2, 4, Uint8Array.of(1, 2)), 0);
    expect(r.pending).toBe(17);
    expect(r.expire(1)).toBe(500 - 16);
    expect(r.expire(1)).toBe(0);
    // The friend's message is whole when its last piece comes.
    expect(r.accept("friend", piece(2, 1, 2, 4, Uint8Array.of(3, 4)), 1)).toEqual(Uint8Array.of(1, 2, 3, 4));
  });

  it("holds at most maxHeldBytes over every peer, dropping the oldest messages first", () => {
    const r = new Reassembler(1_000, 10_000, 3_000);
    for (let peer = 0; peer < 10; peer++) r.accept(`p${peer}`, piece(1, 0, 2, 1_000, new Uint8Array(500)), 0);
    expect(r.heldBytes).toBeLessThanOrEqual(3_000);
    expect(r.pending).toBe(6);
    // The newest are kept: p9's message completes (its last piece pushing out the oldest left, p4's).
    expect(r.accept("p9", piece(2, 1, 2, 1_000, new Uint8Array(500)), 0)).toHaveLength(1_000);
    expect(r.expire(1)).toBe(5);
    r.forget("p8");
    expect(r.pending).toBe(3);
    expect(r.expire(20_000)).toBe(3);
    expect({ pending: r.pending, held: r.heldBytes }).toEqual({ pending: 0, held: 0 });
  });
});
