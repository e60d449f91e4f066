/**
 * The long sweep: thousands of seeded multicast simulations (the test suite runs 200).
 *
 *   npm run sweep -- [--from 1] [--count 5000]
 *
 * Stops at the first failing seed and prints how to replay it.
 */
import { parseArgs } from "node:util";
import { runMulticastScenario } from "./multicast-scenario.ts";

const { values } = parseArgs({ options: { from: { type: "string", default: "1" }, count: { type: "string", default: "5000" } } });
const from = Number(values.from);
const count = Number(values.count);
const started = performance.now();
let messages = 0;
for (let seed = from; seed < from + count; seed++) {
  try {
    messages += (await runMulticastScenario(seed)).messages;
  } catch (error) {
    console.error(`seed=${seed} failed: ${error instanceof Error ? error.message : String(error)}`);
    console.error(`  replay: BLAZE_SEED=${seed} npx vitest run test/sim/multicast.test.ts`);
    process.exit(1);
  }
  if ((seed - from + 1) % 500 === 0) console.log(`${seed - from + 1} seeds passed`);
}
console.log(`${count} seeds passed (${messages.toLocaleString("en-US")} messages) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
