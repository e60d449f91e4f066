import { describe, expect, it } from "vitest";
import { DEFAULT_TOTEM_OPTIONS } from "../../src/reliable/totem/options.ts";
import { runSeeds } from "../../src/transport/sim-run.ts";
import { runTotemFloodScenario, type TotemFloodResult } from "./totem-flood-scenario.ts";

describe("Totem ring formation through what a flood does to its members", () => {
  it("splits no member off a ring for a deaf, late, mute or stalled moment, and delivers every message everywhere in one order (100 seeds)", async () => {
    const results: TotemFloodResult[] = [];
    await runSeeds({
      seeds: { from: 1, count: 100 },
      run: async (seed) => {
        results.push(await runTotemFloodScenario(seed));
      },
      file: "test/sim/totem-flood.test.ts",
    });
    // The sweep must exercise what it claims to: every kind of episode, every process stalled at once
    // for longer than twice the consensus timeout, rings formed again.
    if (results.length >= 100) {
      for (const kind of ["deaf", "slow", "mute", "pause", "newcomer"] as const) expect(results.filter((r) => r.episodes[kind] > 0).length).toBeGreaterThan(20);
      expect(results.filter((r) => r.together.some((ms) => ms > 2 * DEFAULT_TOTEM_OPTIONS.consensusTimeoutMs)).length).toBeGreaterThan(5);
      expect(results.filter((r) => r.deafInGather > 0).length).toBeGreaterThan(10);
      expect(results.reduce((sum, r) => sum + r.tokenLosses, 0)).toBeGreaterThan(100);
    }
  }, 600_000);
});
