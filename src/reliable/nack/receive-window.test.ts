import { describe, expect, it } from "vitest";
import { type DataFields, emptyDataFields } from "../../wire/frames.ts";
import { type EarlyLimits, ReceiveWindow } from "./receive-window.ts";

const LIMITS: EarlyLimits = { messages: 65_536, bytes: 4 * 1024 * 1024 };

function message(seq: number, outOfBand = false): DataFields {
  return { ...emptyDataFields(), seq, addressing: 1, destination: "t", outOfBand, payload: new Uint8Array([seq & 0xff]) };
}

describe("ReceiveWindow", () => {
  it("delivers messages arriving in descending order once, in order, quickly", () => {
    const window = new ReceiveWindow(1, 1, LIMITS);
    const delivered: number[] = [];
    const started = performance.now();
    for (let seq = 3_000; seq >= 1; seq--) window.receive(message(seq), (data) => delivered.push(data.seq));
    expect(delivered).toEqual(Array.from({ length: 3_000 }, (_, i) => i + 1));
    expect(window.held).toBe(0);
    // The early buffer grows to the span it holds, not once per arrival below its base.
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it("drops duplicates, delivers out-of-band messages at once and skips them in order", () => {
    const window = new ReceiveWindow(1, 1, LIMITS);
    const delivered: number[] = [];
    const deliver = (data: DataFields) => delivered.push(data.seq);
    expect(window.receive(message(3, true), deliver)).toBe("taken");
    expect(window.receive(message(3, true), deliver)).toBe("duplicate");
    expect(window.receive(message(2), deliver)).toBe("taken");
    expect(window.missing(10)).toEqual([[1, 1]]);
    window.receive(message(1), deliver);
    expect(delivered).toEqual([3, 1, 2]);
    expect(window.receive(message(2), deliver)).toBe("duplicate");
  });

  it("skips to what the sender still holds, counting what is lost", () => {
    const window = new ReceiveWindow(1, 1, LIMITS);
    const delivered: number[] = [];
    window.receive(message(5), (data) => delivered.push(data.seq));
    expect(window.skipTo(4, (data) => delivered.push(data.seq))).toBe(3);
    expect(delivered).toEqual([]);
    window.receive(message(4), (data) => delivered.push(data.seq));
    expect(delivered).toEqual([4, 5]);
  });
});
