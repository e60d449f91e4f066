import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { type FecScenarioResult, runFecScenario } from "./fec-scenario.ts";

// BLAZE_FEC_SEEDS=<count> runs a bigger sweep of each scenario (BLAZE_SEED=<n> replays one seed).
const count = (defaults: number) => Number(process.env.BLAZE_FEC_SEEDS ?? defaults);

async function sweep(defaults: number, options: Parameters<typeof runFecScenario>[1]): Promise<FecScenarioResult[]> {
  const results: FecScenarioResult[] = [];
  await runSeeds({
    seeds: seedsFromEnv({ from: 1, count: count(defaults) }),
    run: async (seed) => {
      const result = await runFecScenario(seed, options);
      if (result.parityInvalid > 0) throw new Error(`${result.parityInvalid} parity frames were refused as invalid`);
      results.push(result);
    },
    file: "test/sim/fec.test.ts",
  });
  return results;
}

const total = (results: FecScenarioResult[], f: (r: FecScenarioResult) => number) => results.reduce((sum, r) => sum + f(r), 0);

describe("FEC on the simulated network", () => {
  it("delivers every message exactly once, in order, under loss up to 30 %, duplication and reordering (60 seeds)", async () => {
    const results = await sweep(60, { maxLoss: 0.3, disorder: 0.05 });
    if (results.length >= 60) {
      // Heavy loss exceeds what parity repairs: NACK must have done its share, and parity its own.
      expect(total(results, (r) => r.retransmitted)).toBeGreaterThan(500);
      expect(total(results, (r) => r.recovered)).toBeGreaterThan(1_000);
    }
  }, 300_000);

  it("at random loss well below m/(k+m), repairs nearly every block with losses from parity alone, with no NACK (60 seeds)", async () => {
    const results = await sweep(60, { maxLoss: 0.03, disorder: 0 });
    const recovered = total(results, (r) => r.blocksRecovered);
    const unrecovered = total(results, (r) => r.blocksUnrecovered);
    const nacks = total(results, (r) => r.nacksSent);
    const summary = `blocks repaired by parity alone ${recovered}, not ${unrecovered}; NACKs ${nacks}; packets rebuilt ${total(results, (r) => r.recovered)}`;
    if (results.length >= 60) {
      expect(recovered, summary).toBeGreaterThan(1_000);
      expect(recovered / (recovered + unrecovered), summary).toBeGreaterThan(0.95);
      // What NACK still does is the rare block that lost more than m packets, or all of its parity: with
      // interleaving, two lost datagrams of one group cost all of its blocks at once.
      expect(nacks, summary).toBeLessThan(recovered * 0.05);
    }
  }, 300_000);

  it("works with other codes: k = 4, m = 1; k = 64, m = 3; no interleaving (20 seeds each)", async () => {
    for (const fec of [{ k: 4, m: 1 }, { k: 64, m: 3 }, { interleaveBytes: 0 }]) {
      const results = await sweep(20, { maxLoss: 0.1, fec });
      if (results.length >= 20) expect(total(results, (r) => r.recovered), JSON.stringify(fec)).toBeGreaterThan(100);
    }
  }, 300_000);
});
