import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { type ClusterScenarioKind, type ClusterScenarioResult, runClusterScenario } from "./cluster-scenario.ts";

/**
 * The cluster's safety properties, each under a fault schedule of its own (see cluster-scenario.ts),
 * with the invariants of every cluster scenario checked throughout: at most one master at a time, no
 * fencing token handed out twice, nothing applied twice, every acknowledged write and everything a
 * master showed kept, every lock released in the end, replicas equal.
 */
const SEEDS = 10;

async function sweep(kind: ClusterScenarioKind): Promise<ClusterScenarioResult[]> {
  const results: ClusterScenarioResult[] = [];
  await runSeeds({
    seeds: seedsFromEnv({ from: 1, count: SEEDS }),
    run: async (seed) => {
      results.push(await runClusterScenario(seed, kind));
    },
    file: "test/sim/cluster-safety.test.ts",
  });
  return results;
}

const sum = (results: readonly ClusterScenarioResult[], f: (r: ClusterScenarioResult) => number) => results.reduce((total, r) => total + f(r), 0);

describe("cluster safety on the simulated network", () => {
  it(`changes the agreed set only through a majority of the old one: five members, two cut off, one missing a term's sync, the cut moved (${SEEDS} seeds)`, async () => {
    const results = await sweep("quorum-change");
    if (results.length >= SEEDS) {
      expect(sum(results, (r) => r.partitions)).toBeGreaterThanOrEqual(2 * SEEDS);
      expect(results.every((r) => r.finalWrite === "ok")).toBe(true);
    }
  }, 600_000);

  it(`a quorum whose members restart in place (one after the other, two at once) takes writes again once they are back (${SEEDS} seeds)`, async () => {
    const results = await sweep("restarts");
    if (results.length >= SEEDS) {
      expect(sum(results, (r) => r.restarts)).toBeGreaterThanOrEqual(2 * SEEDS);
      expect(results.every((r) => r.finalWrite === "ok")).toBe(true);
    }
  }, 600_000);

  it(`never lets a member whose process started again under the same id (an insider identity) speak for its earlier run's terms: no two masters, no token twice (${SEEDS} seeds)`, async () => {
    const results = await sweep("new-process");
    if (results.length >= SEEDS) {
      expect(sum(results, (r) => r.restarts)).toBeGreaterThanOrEqual(SEEDS);
      expect(sum(results, (r) => r.partitions)).toBeGreaterThanOrEqual(SEEDS);
      // Most runs take writes again at the end; the others lost, with a new process, a member their term could not do without.
      expect(results.filter((r) => r.finalWrite === "ok").length).toBeGreaterThanOrEqual(SEEDS / 2);
    }
  }, 600_000);

  it(`never hands out a fencing token twice, without quorum, when the coordinator and a lock holder crash together (${SEEDS} seeds)`, async () => {
    const results = await sweep("drop-together");
    if (results.length >= SEEDS) {
      expect(sum(results, (r) => r.coordinatorCrashes)).toBeGreaterThanOrEqual(SEEDS);
      expect(sum(results, (r) => r.tokens)).toBeGreaterThan(20 * SEEDS);
    }
  }, 600_000);

  it(`a coordinator cut off alone stops being master before another is elected, and what it showed is kept (${SEEDS} seeds)`, async () => {
    const results = await sweep("deposed");
    if (results.length >= SEEDS) expect(sum(results, (r) => r.partitions)).toBeGreaterThanOrEqual(SEEDS);
  }, 600_000);

  it("seeds that once failed: a merge takes members of a coordinator still serving on their echoes into another's view (quorum-change 1197), a snapshot staged from a member's earlier run (restarts 1012), a term begun on only some of its members counted as the agreed set (quorum-change 405: two masters), a coordinator pulling without end from a member that had gone back onto an older line since its report (quorum-change 532: a storm that never let the run end), a snapshot of a member's earlier run, numbered like its later run's, installed for the one a SyncComplete named (restarts 399: a lock lost, another member's write taken)", async () => {
    for (const [seed, kind] of [
      [1197, "quorum-change"],
      [405, "quorum-change"],
      [532, "quorum-change"],
      [1012, "restarts"],
      [399, "restarts"],
    ] as const) {
      const result = await runClusterScenario(seed, kind);
      expect(result.finalWrite).toBe("ok");
    }
  }, 600_000);
});
