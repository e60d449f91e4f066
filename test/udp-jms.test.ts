/**
 * The hub-and-spoke application of test/runtime/hub-spoke-member.ts — written once against
 * activeblaze/jms — on real UDP (loopback multicast), one process per member: the shop on Node, and
 * workers on Node, Bun and Deno. The Node worker is killed (SIGKILL) while it holds an order it has not
 * committed: the order is redelivered to another worker, every order is shipped, none twice.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FAST_TIMING, freshNetwork, MemberProcess, outputs, type Runtime, trackMembers } from "./members.ts";
import type { HubSpokeConfig, HubSpokeEvent } from "./runtime/hub-spoke-member.ts";

const MEMBER = join("test", "runtime", "hub-spoke-member.ts");
const ORDERS = 30;
const running = trackMembers();

class Member extends MemberProcess<HubSpokeEvent, HubSpokeConfig> {
  constructor(runtime: Runtime, config: HubSpokeConfig) {
    super(runtime, MEMBER, config, running);
  }
}

describe("a hub-and-spoke application on the JMS API, across runtimes", () => {
  it("ships every order exactly once when a worker dies holding one (shop on Node; workers on Node, Bun and Deno)", async () => {
    const network = freshNetwork("udp-jms");
    const base = { ...network, ...FAST_TIMING, lifetimeMs: 110_000 };
    const workers = [
      new Member("node", { ...base, name: "node-worker", role: "worker", holdFirst: true }),
      new Member("bun", { ...base, name: "bun-worker", role: "worker" }),
      new Member("deno", { ...base, name: "deno-worker", role: "worker" }),
    ];
    const all = [...workers];
    try {
      await Promise.all(workers.map((w) => w.waitFor((e) => e.type === "joined", 60_000, "joining")));
      const shop = new Member("node", { ...base, name: "shop", role: "shop", orders: ORDERS, members: 4 });
      all.push(shop);
      await shop.waitFor((e) => e.type === "reply", 60_000, "the stock reply");
      const holding = await workers[0]!.waitFor((e): e is Extract<HubSpokeEvent, { type: "holding" }> => e.type === "holding", 30_000, "an order held");
      workers[0]!.kill();
      const done = await shop.waitFor((e): e is Extract<HubSpokeEvent, { type: "done" }> => e.type === "done", 60_000, "every order shipped");
      const shipped = shop.of("shipped");
      expect(done.shipped).toBe(ORDERS);
      expect(done.duplicates).toBe(0);
      expect(new Set(shipped.map((s) => s.order)).size).toBe(ORDERS);
      const redone = shipped.find((s) => s.order === holding.order)!;
      expect(redone.worker).not.toBe("node-worker");
      expect(redone.redelivered).toBe(true);
      expect(redone.deliveryCount).toBe(2);
      // Both surviving runtimes did work, and the price topic reached the shop.
      expect(new Set(shipped.map((s) => s.runtime))).toEqual(new Set(["bun", "deno"]));
      expect(done.prices).toBeGreaterThanOrEqual(ORDERS);
      expect(shop.of("reply")[0]!.text).toMatch(/^in stock at /);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${outputs(all)}`, { cause: error });
    }
  }, 150_000);
});
