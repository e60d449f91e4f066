import { describe, expect, it } from "vitest";
import { type DataFields, emptyDataFields } from "../wire/frames.ts";
import { type LostMessage, Reassembler, type ReassemblyLimits, reassemblyLimits } from "./reassembler.ts";

const P = "aa".repeat(16);
const Q = "bb".repeat(16);

/** Piece `index` of a message of `count` pieces starting at `firstSeq`, `pieceBytes` each (the last one shorter). */
function piece(firstSeq: number, index: number, count: number, length: number, pieceBytes: number, fill = index, outOfBand = false): DataFields {
  const size = Math.min(pieceBytes, length - index * pieceBytes);
  return {
    ...emptyDataFields(),
    seq: firstSeq + index,
    fragmentIndex: index,
    fragmentCount: count,
    messageLength: length,
    outOfBand,
    payload: new Uint8Array(size).fill(fill),
  };
}

function harness(options: { ordered?: boolean; limits?: Partial<ReassemblyLimits>; timeoutMs?: number } = {}) {
  const lost: LostMessage[] = [];
  const reassembler = new Reassembler({
    limits: { ...reassemblyLimits(1 << 20), ...options.limits },
    ordered: options.ordered ?? true,
    timeoutMs: options.timeoutMs ?? 1_000,
    lost: (message) => lost.push(message),
  });
  return { reassembler, lost };
}

describe("Reassembler", () => {
  it("puts a message back together from its pieces and holds nothing after", () => {
    const { reassembler, lost } = harness();
    expect(reassembler.accept(P, 1, { ...emptyDataFields(), seq: 1, payload: new Uint8Array([9]) })).toEqual(new Uint8Array([9]));
    expect(reassembler.accept(P, 1, piece(2, 0, 3, 250, 100))).toBeUndefined();
    expect(reassembler.accept(P, 1, piece(2, 1, 3, 250, 100))).toBeUndefined();
    expect(reassembler.pending).toBe(1);
    expect(reassembler.heldBytes).toBeGreaterThanOrEqual(200);
    const message = reassembler.accept(P, 1, piece(2, 2, 3, 250, 100))!;
    expect(message.length).toBe(250);
    expect([message[0], message[100], message[249]]).toEqual([0, 1, 2]);
    expect(reassembler.pending).toBe(0);
    expect(reassembler.heldBytes).toBe(0);
    expect(lost).toEqual([]);
  });

  it("never mixes incarnations: a sender's new incarnation ends the old one's partial messages", () => {
    const { reassembler, lost } = harness();
    // Incarnation 1 sent two pieces of a message starting at 1 and crashed; incarnation 2 starts at 1 again.
    reassembler.accept(P, 1, piece(1, 0, 3, 300, 100, 0xa1));
    reassembler.accept(P, 1, piece(1, 1, 3, 300, 100, 0xa1));
    expect(reassembler.accept(P, 2, piece(1, 0, 3, 300, 100, 0xb2))).toBeUndefined();
    expect(lost).toEqual([{ peer: P, incarnation: 1, firstSeq: 1, count: 3 }]);
    // A late piece of the old incarnation changes nothing.
    expect(reassembler.accept(P, 1, piece(1, 2, 3, 300, 100, 0xa1))).toBeUndefined();
    expect(reassembler.refusedPieces).toBe(1);
    reassembler.accept(P, 2, piece(1, 1, 3, 300, 100, 0xb2));
    const message = reassembler.accept(P, 2, piece(1, 2, 3, 300, 100, 0xb2))!;
    expect(message.every((byte) => byte === 0xb2)).toBe(true);
    expect(reassembler.failures).toBe(1);
  });

  it("allocates nothing for a claimed count or length before the bytes arrive", () => {
    const { reassembler, lost } = harness({ limits: { ...reassemblyLimits(16 << 20), maxMessages: 2_000 } });
    // 65,536 pieces of a 16 MiB message: one piece of 10 bytes holds 10 bytes (and its slot's cost).
    reassembler.accept(P, 1, piece(1, 0, 65_536, 16 << 20, 10));
    expect(reassembler.heldBytes).toBeLessThan(1_000);
    // More pieces than bytes cannot be right; neither can a message past the maximum.
    reassembler.accept(Q, 1, piece(1, 0, 1_000, 999, 1));
    reassembler.accept(Q, 1, piece(5_000, 0, 2, (16 << 20) + 1, 100));
    expect(lost.map((m) => m.firstSeq)).toEqual([1, 5_000]);
    expect(reassembler.pending).toBe(1);
    // A thousand such claims cost what their bytes cost, not a thousand slot arrays of 65,536 (512 MiB).
    const heapBefore = process.memoryUsage().heapUsed;
    for (let sender = 0; sender < 1_000; sender++) reassembler.accept(sender.toString(16).padStart(32, "0"), 1, piece(1, 0, 65_536, 16 << 20, 10));
    expect(reassembler.pending).toBe(1_001);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 << 20);
  });

  it("gives up a message whose pieces disagree, and drops its later pieces quietly", () => {
    const { reassembler, lost } = harness();
    reassembler.accept(P, 1, piece(1, 0, 3, 300, 100));
    reassembler.accept(P, 1, piece(1, 1, 4, 300, 100)); // another count
    expect(lost).toEqual([{ peer: P, incarnation: 1, firstSeq: 1, count: 3 }]);
    expect(reassembler.accept(P, 1, piece(1, 2, 3, 300, 100))).toBeUndefined();
    expect(reassembler.refusedPieces).toBe(1);
    // Another length; bytes past the length.
    reassembler.accept(P, 1, piece(10, 0, 3, 300, 100));
    reassembler.accept(P, 1, piece(10, 1, 3, 301, 100));
    reassembler.accept(P, 1, piece(20, 0, 2, 150, 100));
    reassembler.accept(P, 1, { ...piece(20, 1, 2, 150, 100), payload: new Uint8Array(100) });
    expect(lost.map((m) => m.firstSeq)).toEqual([1, 10, 20]);
    expect(reassembler.pending).toBe(0);
  });

  it("on an ordered stream, gives a message up as soon as a piece is missing for good", () => {
    const { reassembler, lost } = harness({ ordered: true });
    reassembler.accept(P, 1, piece(1, 0, 4, 400, 100));
    reassembler.accept(P, 1, piece(1, 2, 4, 400, 100)); // piece 1 will never come
    expect(lost).toEqual([{ peer: P, incarnation: 1, firstSeq: 1, count: 4 }]);
    reassembler.accept(P, 1, piece(1, 3, 4, 400, 100));
    // A message whose first piece this member never got (it joined late, or the piece was reported lost).
    reassembler.accept(P, 1, piece(5, 1, 2, 200, 100));
    expect(lost.map((m) => m.firstSeq)).toEqual([1, 5]);
    expect(reassembler.pending).toBe(0);
    // Out-of-band pieces come in any order even on an ordered stream.
    reassembler.accept(P, 1, piece(7, 1, 2, 200, 100, 1, true));
    expect(reassembler.accept(P, 1, piece(7, 0, 2, 200, 100, 0, true))!.length).toBe(200);
  });

  it("never times a message out on an ordered stream, however long it takes", () => {
    const { reassembler, lost } = harness({ ordered: true, timeoutMs: 1_000 });
    reassembler.accept(P, 1, piece(1, 0, 3, 300, 100));
    for (let now = 0; now <= 60_000; now += 100) reassembler.expire(now);
    reassembler.accept(P, 1, piece(1, 1, 3, 300, 100));
    expect(reassembler.accept(P, 1, piece(1, 2, 3, 300, 100))!.length).toBe(300);
    expect(lost).toEqual([]);
  });

  it("times out pieces that may come in any order from the last progress, and not on a clock jump alone", () => {
    const { reassembler, lost } = harness({ ordered: false, timeoutMs: 1_000 });
    reassembler.expire(0);
    reassembler.accept(P, 1, piece(1, 2, 3, 300, 100));
    // Progress every 800 ms: the message is still alive after far longer than the timeout.
    reassembler.expire(800);
    reassembler.accept(P, 1, piece(1, 0, 3, 300, 100));
    reassembler.expire(1_600);
    reassembler.expire(2_400);
    expect(lost).toEqual([]);
    // A 10 s stall (one late check) counts as a quarter of the timeout at most.
    reassembler.expire(12_400);
    expect(lost).toEqual([]);
    expect(reassembler.accept(P, 1, piece(1, 1, 3, 300, 100))!.length).toBe(300);
    // No progress for longer than the timeout, checked often: given up.
    reassembler.accept(Q, 4, piece(50, 1, 2, 200, 100));
    for (let now = 12_500; now <= 13_600; now += 100) reassembler.expire(now);
    expect(lost).toEqual([{ peer: Q, incarnation: 4, firstSeq: 50, count: 2 }]);
  });

  it("bounds what one sender and all senders hold: a sender's stalest message makes room, past the total a new one is refused", () => {
    const limits = { maxMessagesPerSender: 2, maxBytesPerSender: 1_000, maxMessages: 3, maxBytes: 2_000 };
    const { reassembler, lost } = harness({ ordered: false, limits });
    reassembler.accept(P, 1, piece(1, 0, 2, 200, 100));
    reassembler.expire(0);
    reassembler.accept(P, 1, piece(10, 0, 2, 200, 100));
    reassembler.accept(P, 1, piece(20, 0, 2, 200, 100)); // a third from P: its stalest (1) goes
    expect(lost.map((m) => m.firstSeq)).toEqual([1]);
    reassembler.accept(Q, 1, piece(1, 0, 2, 200, 100));
    reassembler.accept(Q, 1, piece(10, 0, 2, 200, 100)); // a fourth in all: refused
    expect(lost.map((m) => `${m.peer === P ? "P" : "Q"}${m.firstSeq}`)).toEqual(["P1", "Q10"]);
    expect(reassembler.pending).toBe(3);
    // Bytes: one sender's pieces past its share make its stalest message go.
    const bytes = harness({ ordered: false, limits: { maxBytesPerSender: 1_000 } });
    bytes.reassembler.accept(P, 1, piece(1, 0, 2, 1_000, 500));
    bytes.reassembler.expire(0);
    bytes.reassembler.accept(P, 1, piece(10, 0, 2, 1_000, 500));
    expect(bytes.lost.map((m) => m.firstSeq)).toEqual([1]);
    expect(bytes.reassembler.heldBytes).toBeLessThanOrEqual(1_000);
  });

  it("frees everything of a forgotten sender, and a cut ends an incarnation's partial messages", () => {
    const { reassembler, lost } = harness({ ordered: false });
    reassembler.accept(P, 3, piece(1, 0, 2, 200, 100));
    reassembler.accept(P, 3, piece(10, 1, 2, 200, 100));
    reassembler.accept(Q, 1, piece(1, 0, 2, 200, 100));
    reassembler.cut(Q, 0); // an older incarnation than the one held: nothing
    expect(lost).toEqual([]);
    reassembler.forget(P);
    expect(lost.map((m) => m.firstSeq)).toEqual([1, 10]);
    reassembler.cut(Q, 1);
    expect(lost.length).toBe(3);
    expect(reassembler.pending).toBe(0);
    expect(reassembler.heldBytes).toBe(0);
    expect(reassembler.failures).toBe(3);
  });
});
