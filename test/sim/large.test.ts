import { describe, expect, it } from "vitest";
import { runSeeds } from "../../src/transport/sim-run.ts";
import { type LargeKind, type LargeProtocol, type LargeScenarioResult, runLargeScenario } from "./large-scenario.ts";

/**
 * A few seeds of each kind (`npm run sweep -- --scenario large-restart-totem` and the like run
 * thousands). The first seed of every list but NACK's restarts failed before reassembly kept sender
 * incarnations apart, stopped timing out messages still arriving and reported what it gave up.
 */
const kinds: ReadonlyArray<{ kind: LargeKind; reliability: LargeProtocol; seeds: number[]; what: string }> = [
  { kind: "restart", reliability: "totem", seeds: [35, 3], what: "a sender restarted with the same id while it sends 1 MiB messages, on rings of 3–14" },
  { kind: "restart", reliability: "nack", seeds: [4, 5], what: "a sender restarted with the same id while it sends 1 MiB messages" },
  { kind: "slow", reliability: "nack", seeds: [1, 4], what: "7–16 MiB messages over 60 ms, 4–40 MB/s links that take longer than peerTimeoutMs" },
  { kind: "slow", reliability: "totem", seeds: [8, 2], what: "7–16 MiB messages over 60 ms, 4–40 MB/s links that take longer than peerTimeoutMs" },
  { kind: "stall", reliability: "nack", seeds: [6, 2], what: "1–16 MiB messages while a member stalls for 5–10 s" },
  // 276 never finished recovering while every member carried every old-ring message over slow links.
  { kind: "stall", reliability: "totem", seeds: [1, 276], what: "1–16 MiB messages while a member stalls for 5–10 s" },
];

describe("large messages under adversity on the simulated network", () => {
  for (const { kind, reliability, seeds, what } of kinds) {
    it(`${reliability}: ${what} — byte-identical, in order, nothing lost unreported`, async () => {
      const results: LargeScenarioResult[] = [];
      await runSeeds({
        seeds,
        run: async (seed) => {
          results.push(await runLargeScenario(kind, reliability, seed));
        },
        file: "test/sim/large.test.ts",
      });
      // The runs did what they claim: restarts, stalls, large payloads.
      expect(results.every((r) => r.delivered > 0 && r.bytes >= r.messages * 1_000_000)).toBe(true);
      if (kind === "restart") expect(results.every((r) => r.restarts > 0)).toBe(true);
      if (kind === "stall") expect(results.every((r) => r.stalls > 0)).toBe(true);
    }, 120_000);
  }
});
