/**
 * The reliable-multicast benchmark: runs `blaze perf` scenarios (members as separate processes on
 * loopback multicast) next to the raw node:dgram baseline measured in the same run, and checks the
 * targets. Writes bench/results/multicast.json and prints a table.
 *
 *   npm run bench            (builds first)
 *   npx tsx bench/multicast.ts [--seconds 5] [--rounds 3]
 */
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type PerfOptions, type PerfResult, runBaseline, runPerf, writeJson } from "../src/cli/perf.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const root = join(import.meta.dirname, "..");
const cli = join(root, "dist", "cli", "blaze.js");

const base: PerfOptions = { senders: 1, receivers: 2, size: 1024, seconds, loss: 0, reliability: "nack", baseline: false, progress: false };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

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

const kibMBs = median(kib.map((r) => r.megabytesPerSecond));
const kibLossMBs = median(kibLoss.map((r) => r.megabytesPerSecond));
const rawMBs = median(kibRaw);
const smallRate = median(small.map((r) => r.messagesPerSecond));
const targets = [
  { target: "1 KiB, 1 → 2, reliable MB/s ≥ 80 % of raw node:dgram MB/s", value: kibMBs / rawMBs, goal: 0.8, unit: "ratio" },
  { target: "64 B, 1 → 2, ≥ 1,000,000 messages/s delivered", value: smallRate, goal: 1_000_000, unit: "msgs/s" },
  { target: "1 KiB, 1 % loss, ≥ 80 % of lossless throughput", value: kibLossMBs / kibMBs, goal: 0.8, unit: "ratio" },
].map((t) => ({ ...t, met: t.value >= t.goal }));

const summary = {
  benchmark: "multicast",
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  seconds,
  rounds,
  scenarios: {
    kib: { megabytesPerSecond: kibMBs, messagesPerSecond: median(kib.map((r) => r.messagesPerSecond)), latencyP50Ms: median(kib.map((r) => r.latencyP50Ms)), latencyP99Ms: median(kib.map((r) => r.latencyP99Ms)), runs: kib },
    kibLoss1: { megabytesPerSecond: kibLossMBs, messagesPerSecond: median(kibLoss.map((r) => r.messagesPerSecond)), latencyP50Ms: median(kibLoss.map((r) => r.latencyP50Ms)), latencyP99Ms: median(kibLoss.map((r) => r.latencyP99Ms)), runs: kibLoss },
    small: { messagesPerSecond: smallRate, megabytesPerSecond: median(small.map((r) => r.megabytesPerSecond)), latencyP50Ms: median(small.map((r) => r.latencyP50Ms)), latencyP99Ms: median(small.map((r) => r.latencyP99Ms)), runs: small },
    rawKib: { megabytesPerSecond: rawMBs, runs: kibRaw },
    raw64: { messagesPerSecond: smallRaw },
  },
  targets,
  complete: [...kib, ...kibLoss, ...small].every((r) => r.complete),
};
writeJson(join(root, "bench", "results", "multicast.json"), summary);

const n = (x: number) => Math.round(x).toLocaleString("en-US");
console.log(`\nReliable multicast, 1 sender → 2 receivers, separate processes on loopback (${cpus().length} cores, Node ${process.version}); medians of ${rounds} rounds of ${seconds} s\n`);
console.log("| scenario | msgs/s (slowest receiver) | MB/s | latency p50 | latency p99 |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const [name, s] of [["1 KiB, lossless", summary.scenarios.kib], ["1 KiB, 1 % loss", summary.scenarios.kibLoss1], ["64 B, lossless", summary.scenarios.small]] as const) {
  console.log(`| ${name} | ${n(s.messagesPerSecond)} | ${s.megabytesPerSecond.toFixed(1)} | ${s.latencyP50Ms.toFixed(2)} ms | ${s.latencyP99Ms.toFixed(2)} ms |`);
}
console.log(`| raw node:dgram 1 KiB, 1 → 1 | — | ${rawMBs.toFixed(1)} | | |`);
console.log(`| raw node:dgram 64 B, 1 → 1 | ${n(smallRaw)} | | | |`);
console.log("\n| target | measured | goal | met |\n| --- | ---: | ---: | --- |");
for (const t of targets) {
  const shown = t.unit === "ratio" ? `${(t.value * 100).toFixed(1)} %` : n(t.value);
  const goal = t.unit === "ratio" ? `${t.goal * 100} %` : n(t.goal);
  console.log(`| ${t.target} | ${shown} | ${goal} | ${t.met ? "yes" : "NO"} |`);
}
console.log(`\nevery receiver got every message in every run: ${summary.complete ? "yes" : "NO"}; JSON: bench/results/multicast.json`);
