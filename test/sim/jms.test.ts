import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { type JmsScenarioResult, runJmsScenario } from "./jms-scenario.ts";

describe("JMS queues on the simulated network", () => {
  it("processes every acknowledged send exactly once in transacted workers (workers crashed holding a message, the dispatcher and the producer crashed, loss; 12 seeds)", async () => {
    const results: JmsScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 12 }),
      run: async (seed) => {
        results.push(await runJmsScenario(seed));
      },
      file: "test/sim/jms.test.ts",
    });
    if (results.length >= 12) {
      const sum = (f: (r: JmsScenarioResult) => number) => results.reduce((total, r) => total + f(r), 0);
      // The sweep must exercise what it claims to.
      expect(sum((r) => r.workerCrashes)).toBeGreaterThan(3);
      expect(sum((r) => r.redelivered)).toBeGreaterThan(3);
      expect(results.filter((r) => r.coordinatorCrashed).length).toBeGreaterThan(2);
      expect(sum((r) => r.processed)).toBeGreaterThan(300);
    }
  }, 300_000);
});
