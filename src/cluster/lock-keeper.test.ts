import { describe, expect, it } from "vitest";
import { BlazeError } from "../errors.ts";
import { LockKeeper } from "./lock-keeper.ts";
import { LockHandle } from "./replicated-map.ts";

function handle(leaseMs: number, autoRenew: boolean, now: () => number, renew: () => Promise<void>) {
  const ended: LockHandle[] = [];
  const made = new LockHandle("k", 7, leaseMs, now() + leaseMs, autoRenew, {
    now,
    unlock: () => Promise.resolve(),
    renew: () => renew(),
    ended: (h) => ended.push(h),
  });
  return { handle: made, ended };
}

describe("LockKeeper", () => {
  it("renews an autoRenew lease when a third is left, and declares the lock lost when a renewal is refused", async () => {
    let now = 0;
    let refuse = false;
    const renewals: number[] = [];
    const { handle: h } = handle(300, true, () => now, async () => {
      renewals.push(now);
      if (refuse) throw new BlazeError("STALE_TOKEN", "gone");
    });
    const keeper = new LockKeeper((x) => x.renew(), () => undefined);
    keeper.watch(h, now);
    expect(keeper.pollTimeout()).toBe(200);
    now = 200;
    keeper.handleTimeout(now);
    await Promise.resolve();
    await Promise.resolve();
    keeper.renewed(h, now);
    expect(renewals).toEqual([200]);
    expect(h.expiresAt).toBe(500);
    expect(keeper.pollTimeout()).toBe(400);
    refuse = true;
    now = 400;
    keeper.handleTimeout(now);
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(h.lost.aborted).toBe(true);
    expect(h.valid).toBe(false);
  });

  it("declares a lease that ran out lost (a handle without autoRenew, or renewals that kept failing)", () => {
    let now = 0;
    const { handle: h, ended } = handle(100, false, () => now, () => Promise.resolve());
    const keeper = new LockKeeper((x) => x.renew(), () => undefined);
    keeper.watch(h, now);
    expect(keeper.pollTimeout()).toBe(100);
    now = 100;
    keeper.handleTimeout(now);
    expect(h.lost.aborted).toBe(true);
    expect((h.lost.reason as BlazeError).message).toMatch(/lease ran out/);
    expect(ended).toEqual([h]);
  });
});
