import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { runMulticastScenario, type ScenarioResult } from "./multicast-scenario.ts";

describe("NACK reliable multicast on the simulated network", () => {
  it("delivers every message exactly once, in order, to every live member, and empties retransmit buffers (200 seeds)", async () => {
    const results: ScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 200 }),
      run: async (seed) => {
        results.push(await runMulticastScenario(seed));
      },
      file: "test/sim/multicast.test.ts",
    });
    // The sweep must exercise what it claims to: loss, crashes, several senders, retransmission.
    if (results.length >= 200) {
      expect(results.filter((r) => r.loss > 0.2).length).toBeGreaterThan(20);
      expect(results.filter((r) => r.crashed).length).toBeGreaterThan(5);
      expect(results.filter((r) => r.senders > 1).length).toBeGreaterThan(50);
      expect(results.reduce((sum, r) => sum + r.retransmitted, 0)).toBeGreaterThan(1000);
    }
  }, 600_000);
});
