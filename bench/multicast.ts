/**
 * The reliable-multicast benchmark: runs `blaze perf` scenarios (members as separate processes on
 * loopback multicast) next to the raw node:dgram baseline measured in the same run, and checks the
 * targets. Writes bench/results/multicast.json and prints a table.
 *
 *   npm run bench            (builds first)
 *   npx tsx bench/multicast.ts [--seconds 5] [--rounds 3]
 */
import { cpus } from "node:os";
import { type PerfOptions, type PerfResult, runBaseline, runPerf } from "../src/cli/perf.ts";
import { blazeCli as cli, finishPerf, median, perfArgs, perfSummary, printScenarios, printTargets, summarizeRuns, thousands as n } from "./lib.ts";

const { seconds, rounds } = perfArgs();

const base: PerfOptions = { senders: 1, receivers: 2, size: 1024, seconds, loss: 0, reliability: "nack", baseline: false, progress: false };

async function rounds_<T>(label: string, run: () => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < rounds; i++) {
    process.stderr.write(`${label}: round ${i + 1}/${rounds}\n`);
    results.push(await run());
  }
  return results;
}

// Rounds interleave the scenarios they compare, so that a noisy moment on this shared machine hits both.
const kib: PerfResult[] = [];
const kibLoss: PerfResult[] = [];
const kibRaw: number[] = [];
for (let i = 0; i < rounds; i++) {
  process.stderr.write(`1 KiB lossless / 1 % loss / raw baseline: round ${i + 1}/${rounds}\n`);
  kib.push(await runPerf(base, cli));
  kibLoss.push(await runPerf({ ...base, loss: 0.01 }, cli));
  kibRaw.push((await runBaseline(cli, 1024, seconds)).megabytesPerSecond);
}
const small = await rounds_("64 B lossless", () => runPerf({ ...base, size: 64 }, cli));
const smallRaw = (await runBaseline(cli, 64, seconds)).messagesPerSecond;

const scenarios = { kib: summarizeRuns(kib), kibLoss1: summarizeRuns(kibLoss), small: summarizeRuns(small) };
const kibMBs = scenarios.kib.megabytesPerSecond;
const kibLossMBs = scenarios.kibLoss1.megabytesPerSecond;
const rawMBs = median(kibRaw);
const smallRate = scenarios.small.messagesPerSecond;
const targets = [
  { target: "1 KiB, 1 → 2, reliable MB/s ≥ 80 % of raw node:dgram MB/s", value: kibMBs / rawMBs, goal: 0.8, unit: "ratio" },
  { target: "64 B, 1 → 2, ≥ 1,000,000 messages/s delivered", value: smallRate, goal: 1_000_000, unit: "msgs/s" },
  { target: "1 KiB, 1 % loss, ≥ 80 % of lossless throughput", value: kibLossMBs / kibMBs, goal: 0.8, unit: "ratio" },
].map((t) => ({ ...t, met: t.value >= t.goal }));

const summary = {
  ...perfSummary("multicast", seconds, rounds),
  scenarios: {
    ...scenarios,
    rawKib: { megabytesPerSecond: rawMBs, runs: kibRaw },
    raw64: { messagesPerSecond: smallRaw },
  },
  targets,
  complete: [...kib, ...kibLoss, ...small].every((r) => r.complete),
};
console.log(`\nReliable multicast, 1 sender → 2 receivers, separate processes on loopback (${cpus().length} cores, Node ${process.version}); medians of ${rounds} rounds of ${seconds} s\n`);
printScenarios([
  ["1 KiB, lossless", scenarios.kib],
  ["1 KiB, 1 % loss", scenarios.kibLoss1],
  ["64 B, lossless", scenarios.small],
]);
console.log(`| raw node:dgram 1 KiB, 1 → 1 | — | ${rawMBs.toFixed(1)} | | |`);
console.log(`| raw node:dgram 64 B, 1 → 1 | ${n(smallRaw)} | | | |`);
printTargets(targets, (t) => (t.unit === "ratio" ? [`${(t.value * 100).toFixed(1)} %`, `${t.goal * 100} %`] : [n(t.value), n(t.goal)]));
finishPerf("multicast", summary);
