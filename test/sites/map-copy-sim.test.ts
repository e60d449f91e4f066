import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { FAULTS, type MapScenarioResult, runMapScenario } from "./map-copy-scenario.ts";

describe("the map copied between sites over a simulated NATS server", () => {
  it("converges at every member of both sites to the writes with the greatest stamps, through bus loss and cuts, gateway crashes mid-copy and skewed clocks (30 seeds)", async () => {
    const results: MapScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 30 }),
      run: async (seed) => {
        results.push(await runMapScenario(seed));
      },
      file: "test/sites/map-copy-sim.test.ts",
    });
    if (results.length >= 30) {
      // The seeds exercise what the test claims: every fault, writes of one key at both sites at once, the repair.
      for (const fault of FAULTS) expect(results.filter((r) => r.fault === fault).length).toBeGreaterThan(1);
      expect(results.filter((r) => r.concurrent > 0).length).toBeGreaterThan(20);
      expect(results.reduce((sum, r) => sum + r.stats.pushed, 0)).toBeGreaterThan(0);
      expect(results.reduce((sum, r) => sum + r.stats.applied, 0)).toBeGreaterThan(0);
      expect(results.reduce((sum, r) => sum + r.stats.superseded, 0)).toBeGreaterThan(0);
    }
  }, 600_000);
});
