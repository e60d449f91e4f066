/**
 * The Totem benchmark: total order (reliability "totem") against NACK reliable multicast on the same
 * run — 1 KiB messages, 3 members as separate processes on loopback multicast (one sender and two
 * receivers), rounds interleaved so that a noisy moment on a shared machine hits both. Also the 1 % loss
 * case for Totem. Writes bench/results/totem.json and prints a table. The reference is JGroups' total
 * order (SEQUENCER), measured on this machine at about 64 MB/s.
 *
 *   npm run bench:totem            (builds first)
 *   npx tsx bench/totem.ts [--seconds 5] [--rounds 3]
 */
import { cpus } from "node:os";
import { type PerfOptions, type PerfResult, runPerf } from "../src/cli/perf.ts";
import { blazeCli as cli, finishPerf, perfArgs, perfSummary, printScenarios, printTargets, summarizeRuns } from "./lib.ts";

const { seconds, rounds } = perfArgs();
const JGROUPS_SEQUENCER_MBS = 64;

const nack: PerfOptions = { senders: 1, receivers: 2, size: 1024, seconds, loss: 0, reliability: "nack", baseline: false, progress: false };
const totem: PerfOptions = { ...nack, reliability: "totem" };

const runs = { totem: [] as PerfResult[], nack: [] as PerfResult[], totemLoss: [] as PerfResult[] };
for (let i = 0; i < rounds; i++) {
  process.stderr.write(`1 KiB, 3 members: Totem / NACK / Totem with 1 % loss: round ${i + 1}/${rounds}\n`);
  runs.totem.push(await runPerf(totem, cli));
  runs.nack.push(await runPerf(nack, cli));
  runs.totemLoss.push(await runPerf({ ...totem, loss: 0.01 }, cli));
}

const scenarios = { totem: summarizeRuns(runs.totem), nack: summarizeRuns(runs.nack), totemLoss1: summarizeRuns(runs.totemLoss) };
const targets = [
  {
    target: "Totem 1 KiB, 1 → 2, MB/s above JGroups SEQUENCER on this machine (64 MB/s)",
    value: scenarios.totem.megabytesPerSecond,
    goal: JGROUPS_SEQUENCER_MBS,
    unit: "MB/s",
  },
].map((t) => ({ ...t, met: t.value >= t.goal }));

const summary = {
  ...perfSummary("totem", seconds, rounds),
  scenarios,
  totemToNack: scenarios.totem.megabytesPerSecond / scenarios.nack.megabytesPerSecond,
  targets,
  complete: [...runs.totem, ...runs.nack, ...runs.totemLoss].every((r) => r.complete),
};
console.log(`\nTotem and NACK, 1 KiB, 1 sender → 2 receivers, separate processes on loopback (${cpus().length} cores, Node ${process.version}); medians of ${rounds} rounds of ${seconds} s\n`);
printScenarios([
  ["Totem (agreed), lossless", scenarios.totem],
  ["NACK, lossless", scenarios.nack],
  ["Totem (agreed), 1 % loss", scenarios.totemLoss1],
]);
console.log(`| JGroups SEQUENCER (reference, measured separately) | | ~${JGROUPS_SEQUENCER_MBS} | | |`);
console.log(`\nTotem / NACK throughput: ${(summary.totemToNack * 100).toFixed(1)} %`);
printTargets(targets, (t) => [t.value.toFixed(1), String(t.goal)]);
finishPerf("totem", summary);
