import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { type PipelineScenarioResult, runPipelineScenario } from "./cluster-pipeline-scenario.ts";

const SEEDS = 20;

describe("pipelined writes to the replicated map on the simulated network", () => {
  it(`keeps every acknowledged put, in its writer's order, at every member: many in flight from one writer or from all, a burst in one turn, loss, coordinator crashes (${SEEDS} seeds)`, async () => {
    const results: PipelineScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: SEEDS }),
      run: async (seed) => {
        results.push(await runPipelineScenario(seed));
      },
      file: "test/sim/cluster-pipeline.test.ts",
    });
    if (results.length >= SEEDS) {
      const sum = (f: (r: PipelineScenarioResult) => number) => results.reduce((total, r) => total + f(r), 0);
      // The sweep must exercise what it claims to.
      expect(sum((r) => r.coordinatorCrashes)).toBeGreaterThanOrEqual(SEEDS);
      expect(results.filter((r) => r.writers > 1).length).toBeGreaterThan(SEEDS / 4);
      expect(sum((r) => r.acknowledged)).toBeGreaterThan(SEEDS * 2_000);
      expect(sum((r) => r.retried)).toBeGreaterThan(0);
      expect(sum((r) => r.deduplicated)).toBeGreaterThan(0);
    }
  }, 900_000);
});
