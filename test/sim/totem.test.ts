import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { runTotemScenario, type TotemScenarioResult } from "./totem-scenario.ts";

describe("Totem total order on the simulated network", () => {
  it("delivers the same messages in the same order at every live member, across crashes and ring changes (seeded)", async () => {
    const results: TotemScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 40 }),
      run: async (seed) => {
        results.push(await runTotemScenario(seed));
      },
      file: "test/sim/totem.test.ts",
    });
    // The sweep must exercise what it claims to: loss, crashes with recovery, safe messages, retransmission.
    if (results.length >= 40) {
      expect(results.filter((r) => r.loss > 0.1).length).toBeGreaterThan(5);
      expect(results.filter((r) => r.crashed > 0).length).toBeGreaterThan(10);
      expect(results.filter((r) => r.safeMessages > 0).length).toBeGreaterThan(10);
      expect(results.reduce((sum, r) => sum + r.retransmitted, 0)).toBeGreaterThan(100);
      expect(results.reduce((sum, r) => sum + r.tokenLosses, 0)).toBeGreaterThan(10);
    }
  }, 600_000);
});
