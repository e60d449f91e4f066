import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { type ClusterScenarioResult, runClusterScenario } from "./cluster-scenario.ts";

describe("replicated state map and locks on the simulated network", () => {
  it("fences locks, applies every request at most once, keeps acknowledged writes and converges (crashes, partitions, loss, clock jumps; 100 seeds)", async () => {
    const results: ClusterScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 100 }),
      run: async (seed) => {
        results.push(await runClusterScenario(seed));
      },
      file: "test/sim/cluster.test.ts",
    });
    if (results.length >= 100) {
      const sum = (f: (r: ClusterScenarioResult) => number) => results.reduce((total, r) => total + f(r), 0);
      // The sweep must exercise what it claims to.
      expect(sum((r) => r.coordinatorCrashes)).toBeGreaterThan(40);
      expect(sum((r) => r.partitions)).toBeGreaterThan(20);
      expect(sum((r) => r.jumps)).toBeGreaterThan(40);
      expect(sum((r) => r.acknowledged)).toBeGreaterThan(10_000);
      expect(sum((r) => r.journal)).toBeGreaterThan(2_000);
      expect(sum((r) => r.lockWrites)).toBeGreaterThan(1_000);
      expect(sum((r) => r.retried)).toBeGreaterThan(20);
      expect(results.filter((r) => r.finalWrite === "ok").length).toBeGreaterThan(80);
    }
  }, 900_000);
});
