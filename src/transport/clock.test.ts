import { createSocket } from "node:dgram";
import { describe, expect, it } from "vitest";
import { systemClock } from "./clock.ts";

describe("systemClock", () => {
  it("never fires a timer before its delay has passed on its own clock, fractional delays included", async () => {
    const fired = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const delayMs = 0.1 + (i % 20) * 0.15;
        const armedAt = systemClock.now();
        return new Promise<number>((resolve) => systemClock.setTimer(delayMs, () => resolve(systemClock.now() - armedAt - delayMs)));
      }),
    );
    for (const early of fired) expect(early).toBeGreaterThanOrEqual(0);
  });

  it("fires nothing once cancelled", async () => {
    let fired = false;
    systemClock.setTimer(0.5, () => (fired = true)).cancel();
    await new Promise<void>((resolve) => systemClock.setTimer(5, resolve));
    expect(fired).toBe(false);
  });

  it("marks the event loop's rounds on Node: the mark holds through a round's callbacks and microtasks, and moves once the loop has waited", async () => {
    const round = systemClock.round;
    expect(round).toBeTypeOf("function");
    const before = round!();
    await Promise.resolve();
    expect(round!()).toBe(before);
    await new Promise<void>((resolve) => systemClock.setTimer(2, resolve));
    expect(round!()).not.toBe(before);
    // Two datagrams waiting together are read in one round: both callbacks see one mark.
    const socket = createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    const marks: number[] = [];
    const both = new Promise<void>((resolve) =>
      socket.on("message", () => {
        marks.push(round!());
        if (marks.length === 2) resolve();
      }),
    );
    const { port } = socket.address();
    socket.send(new Uint8Array(1), port, "127.0.0.1");
    socket.send(new Uint8Array(1), port, "127.0.0.1");
    await both;
    socket.close();
    expect(marks[1]).toBe(marks[0]);
  });
});
