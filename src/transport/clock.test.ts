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
});
