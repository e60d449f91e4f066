import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { runSecureScenario, type SecureScenarioResult } from "./security-scenario.ts";

describe("secured reliable multicast on the simulated network, under attack", () => {
  it("delivers every message exactly once, in order; accepts only what members sealed, once; rotates keys without loss; lets no intruder or latecomer in (60 seeds)", async () => {
    const results: SecureScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 60 }),
      run: async (seed) => {
        results.push(await runSecureScenario(seed));
      },
      file: "test/sim/security.test.ts",
    });
    // The sweep must exercise what it claims to: both modes, signatures, rotations with and without
    // retiring, and every kind of refusal.
    if (results.length >= 60) {
      expect(results.filter((r) => r.mode === "authenticate").length).toBeGreaterThan(15);
      expect(results.filter((r) => r.insider).length).toBeGreaterThan(6);
      expect(results.filter((r) => r.rotated && r.retired).length).toBeGreaterThan(10);
      expect(results.filter((r) => r.rotated && !r.retired).length).toBeGreaterThan(8);
      const refused = (reason: string) => results.reduce((sum, r) => sum + (r.refused[reason] ?? 0), 0);
      for (const reason of ["UNSEALED", "UNKNOWN_KEY", "AUTH_FAILED", "REPLAYED", "DECODE_FAILED"]) expect(refused(reason), reason).toBeGreaterThan(50);
    }
  }, 600_000);
});
