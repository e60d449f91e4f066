/**
 * The long sweep: thousands of seeded simulations (the test suite runs a few hundred).
 *
 *   npm run sweep -- [--scenario multicast|cluster|cluster-pipeline|cluster-quorum-change|cluster-restarts|cluster-drop-together|cluster-deposed|cluster-new-process|jms|nack-<kind>|totem-partition|totem-flood|large-<kind>-<protocol>] [--from 1] [--count 5000]
 *
 * Stops at the first failing seed and prints how to replay it.
 */
import { parseArgs } from "node:util";
import { runPipelineScenario } from "./cluster-pipeline-scenario.ts";
import { runClusterScenario } from "./cluster-scenario.ts";
import { type LargeKind, type LargeProtocol, runLargeScenario } from "./large-scenario.ts";
import { runJmsScenario } from "./jms-scenario.ts";
import { runMulticastScenario } from "./multicast-scenario.ts";
import { NACK_SCENARIO_KINDS, runNackScenario } from "./nack-scenario.ts";
import { runTotemPartitionScenario } from "./totem-adv-scenario.ts";
import { runTotemFloodScenario } from "./totem-flood-scenario.ts";

const { values } = parseArgs({
  options: { scenario: { type: "string", default: "multicast" }, from: { type: "string", default: "1" }, count: { type: "string", default: "5000" } },
});
interface Scenario {
  run(seed: number): Promise<number>;
  readonly unit: string;
  readonly file: string;
}
const scenarios: Record<string, Scenario> = {
  multicast: { run: async (seed) => (await runMulticastScenario(seed)).messages, unit: "messages", file: "test/sim/multicast.test.ts" },
  cluster: { run: async (seed) => (await runClusterScenario(seed)).acknowledged, unit: "acknowledged writes", file: "test/sim/cluster.test.ts" },
  "cluster-pipeline": { run: async (seed) => (await runPipelineScenario(seed)).acknowledged, unit: "acknowledged writes", file: "test/sim/cluster-pipeline.test.ts" },
  "totem-partition": { run: async (seed) => (await runTotemPartitionScenario(seed)).messages, unit: "messages", file: "test/sim/totem-adv.test.ts" },
  "totem-flood": { run: async (seed) => (await runTotemFloodScenario(seed)).messages, unit: "messages", file: "test/sim/totem-flood.test.ts" },
  ...largeScenarios(),
  jms: { run: async (seed) => (await runJmsScenario(seed)).processed, unit: "messages processed once", file: "test/sim/jms.test.ts" },
};
for (const kind of ["quorum-change", "restarts", "drop-together", "deposed", "new-process"] as const) {
  scenarios[`cluster-${kind}`] = { run: async (seed) => (await runClusterScenario(seed, kind)).acknowledged, unit: "acknowledged writes", file: "test/sim/cluster-safety.test.ts" };
}
for (const kind of NACK_SCENARIO_KINDS) {
  scenarios[`nack-${kind}`] = { run: async (seed) => (await runNackScenario(seed, kind)).messages, unit: "messages", file: "test/sim/nack.test.ts" };
}
const scenario = scenarios[values.scenario];
if (scenario === undefined) throw new Error(`--scenario must be one of ${Object.keys(scenarios).join(", ")}`);
const from = Number(values.from);
const count = Number(values.count);
const started = performance.now();
let total = 0;
for (let seed = from; seed < from + count; seed++) {
  try {
    total += await scenario.run(seed);
  } catch (error) {
    console.error(`seed=${seed} failed: ${error instanceof Error ? error.message : String(error)}`);
    console.error(`  replay: BLAZE_SEED=${seed} npx vitest run ${scenario.file}`);
    process.exit(1);
  }
  if ((seed - from + 1) % 500 === 0) console.log(`${seed - from + 1} seeds passed`);
}
console.log(`${count} seeds passed (${total.toLocaleString("en-US")} ${scenario.unit}) in ${((performance.now() - started) / 1000).toFixed(1)} s`);

/** large-<restart|slow|stall>-<nack|totem>: large messages under adversity (test/sim/large-scenario.ts). */
function largeScenarios(): Record<string, Scenario> {
  const entries: Record<string, Scenario> = {};
  for (const kind of ["restart", "slow", "stall"] as LargeKind[]) {
    for (const reliability of ["nack", "totem"] as LargeProtocol[]) {
      entries[`large-${kind}-${reliability}`] = {
        run: async (seed) => (await runLargeScenario(kind, reliability, seed)).messages,
        unit: "large messages",
        file: "test/sim/large.test.ts",
      };
    }
  }
  return entries;
}
