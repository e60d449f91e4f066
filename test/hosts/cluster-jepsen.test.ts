/**
 * A short run of the Jepsen-style check of the cluster across network namespaces (test/hosts/cluster-jepsen.ts):
 * five members in quorum mode under cuts, splits, an isolated master and restarts in place, seeded; no
 * violation. `npm run jepsen -- --seed N --seconds S` runs longer ones.
 */
import { describe, expect, it } from "vitest";
import { runJepsen } from "./cluster-jepsen.ts";
import { hostNetworkUnsupported } from "./host-network.ts";

const unsupported = await hostNetworkUnsupported();

describe.skipIf(unsupported !== undefined)(`the cluster under a nemesis across network namespaces${unsupported === undefined ? "" : ` (skipped: ${unsupported})`}`, () => {
  it("five members in quorum mode, 12 s of cuts, splits, an isolated master and restarts in place (seed 1): no two masters, nothing acknowledged lost, tokens unique, replicas equal", async () => {
    const result = await runJepsen({ seed: 1, seconds: 12 });
    expect(result.violations).toEqual([]);
    expect(result.faults.length).toBeGreaterThan(2);
    expect(result.writes).toBeGreaterThan(100);
    expect(result.grants).toBeGreaterThan(10);
    console.log(`jepsen seed 1, 12 s: ${result.faults.join("; ")}; ${result.writes} writes, ${result.grants} grants, ${result.restarts} restarts, ${result.masters} master terms`);
  }, 240_000);
});
