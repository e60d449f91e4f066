import { describe, expect, it } from "vitest";
import type { OutgoingData } from "../protocol.ts";
import { SendQueue } from "./send-queue.ts";

function outgoing(payload: Uint8Array): OutgoingData {
  return { destination: "t", addressing: 1, format: 2, payload, outOfBand: true, fragmentIndex: 1, fragmentCount: 3, messageLength: 9, requestId: 4 };
}

describe("SendQueue", () => {
  it("numbers the messages it queues, in order, each with its own copy of the payload", () => {
    const queue = new SendQueue({ queueMessages: 10, queueBytes: 1_024 });
    const bytes = new Uint8Array([1, 2, 3]);
    expect(queue.add(outgoing(bytes), false)).toBe(1);
    bytes.fill(9);
    const large = new Uint8Array(100_000).fill(5);
    expect(queue.add(outgoing(large), true)).toBe(2);
    large.fill(0);
    expect([queue.length, queue.bytes, queue.bytesAt(0), queue.bytesAt(1)]).toEqual([2, 100_003, 3, 100_000]);
    const first = queue.take();
    // Ordered: out of band means nothing in a total order.
    expect(first).toMatchObject({ seq: 1, destination: "t", format: 2, outOfBand: false, fragmentIndex: 1, fragmentCount: 3, messageLength: 9, requestId: 4, safe: false });
    expect([...first.payload]).toEqual([1, 2, 3]);
    const second = queue.take();
    expect([second.seq, second.safe, second.payload.every((b) => b === 5)]).toEqual([2, true, true]);
    expect([queue.length, queue.bytes]).toEqual([0, 0]);
    expect(queue.add(outgoing(new Uint8Array(1)), false)).toBe(3);
  });

  it("takes any one message when empty, and at most queueMessages and queueBytes otherwise", () => {
    const queue = new SendQueue({ queueMessages: 3, queueBytes: 1_024 });
    expect(queue.canAdd(5_000)).toBe(true);
    queue.add(outgoing(new Uint8Array(5_000)), false);
    expect(queue.canAdd(1)).toBe(false);
    queue.take();
    queue.add(outgoing(new Uint8Array(1_000)), false);
    expect(queue.canAdd(24)).toBe(true);
    expect(queue.canAdd(25)).toBe(false);
    queue.add(outgoing(new Uint8Array(10)), false);
    queue.add(outgoing(new Uint8Array(10)), false);
    expect(queue.canAdd(0)).toBe(false);
  });

  it("keeps its order through many messages taken and added, and drops everything on clear", () => {
    const queue = new SendQueue({ queueMessages: 100_000, queueBytes: 1 << 30 });
    let next = 1;
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 5_000; i++) queue.add(outgoing(new Uint8Array([i & 0xff])), false);
      for (let i = 0; i < 4_500; i++) expect(queue.take().seq).toBe(next++);
    }
    expect(queue.length).toBe(2_000);
    expect(queue.bytes).toBe(2_000);
    queue.clear();
    expect([queue.length, queue.bytes, queue.canAdd(1 << 29)]).toEqual([0, 0, true]);
  });
});
