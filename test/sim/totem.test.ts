import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { runTotemScenario, type TotemScenarioResult } from "./totem-scenario.ts";

describe("Totem total order on the simulated network", () => {
  it("delivers the same messages in the same order at every live member, across crashes and ring changes (100 seeds)", async () => {
    const results: TotemScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 100 }),
      run: async (seed) => {
        results.push(await runTotemScenario(seed));
      },
      file: "test/sim/totem.test.ts",
    });
    // The sweep must exercise what it claims to: loss, crashes with recovery, safe messages, retransmission.
    if (results.length >= 100) {
      expect(results.filter((r) => r.loss > 0.1).length).toBeGreaterThan(15);
      expect(results.filter((r) => r.crashed > 0).length).toBeGreaterThan(30);
      expect(results.filter((r) => r.safeMessages > 0).length).toBeGreaterThan(30);
      expect(results.reduce((sum, r) => sum + r.retransmitted, 0)).toBeGreaterThan(1000);
      expect(results.reduce((sum, r) => sum + r.tokenLosses, 0)).toBeGreaterThan(30);
      // Recovery carried old-ring messages from one member to another in some runs.
      expect(results.filter((r) => r.carried > 0).length).toBeGreaterThan(3);
    }
  }, 600_000);
});
