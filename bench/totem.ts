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
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type PerfOptions, type PerfResult, runPerf, writeJson } from "../src/cli/perf.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const root = join(import.meta.dirname, "..");
const cli = join(root, "dist", "cli", "blaze.js");
const JGROUPS_SEQUENCER_MBS = 64;

const nack: PerfOptions = { senders: 1, receivers: 2, size: 1024, seconds, loss: 0, reliability: "nack", baseline: false, progress: false };
const totem: PerfOptions = { ...nack, reliability: "totem" };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const runs = { totem: [] as PerfResult[], nack: [] as PerfResult[], totemLoss: [] as PerfResult[] };
for (let i = 0; i < rounds; i++) {
  process.stderr.write(`1 KiB, 3 members: Totem / NACK / Totem with 1 % loss: round ${i + 1}/${rounds}\n`);
  runs.totem.push(await runPerf(totem, cli));
  runs.nack.push(await runPerf(nack, cli));
  runs.totemLoss.push(await runPerf({ ...totem, loss: 0.01 }, cli));
}

function summarise(results: PerfResult[]) {
  return {
    megabytesPerSecond: median(results.map((r) => r.megabytesPerSecond)),
    messagesPerSecond: median(results.map((r) => r.messagesPerSecond)),
    latencyP50Ms: median(results.map((r) => r.latencyP50Ms)),
    latencyP99Ms: median(results.map((r) => r.latencyP99Ms)),
    runs: results,
  };
}
const scenarios = { totem: summarise(runs.totem), nack: summarise(runs.nack), totemLoss1: summarise(runs.totemLoss) };
const targets = [
  {
    target: "Totem 1 KiB, 1 → 2, MB/s above JGroups SEQUENCER on this machine (64 MB/s)",
    value: scenarios.totem.megabytesPerSecond,
    goal: JGROUPS_SEQUENCER_MBS,
    unit: "MB/s",
  },
].map((t) => ({ ...t, met: t.value >= t.goal }));

const summary = {
  benchmark: "totem",
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  seconds,
  rounds,
  scenarios,
  totemToNack: scenarios.totem.megabytesPerSecond / scenarios.nack.megabytesPerSecond,
  targets,
  complete: [...runs.totem, ...runs.nack, ...runs.totemLoss].every((r) => r.complete),
};
writeJson(join(root, "bench", "results", "totem.json"), summary);

const n = (x: number) => Math.round(x).toLocaleString("en-US");
console.log(`\nTotem and NACK, 1 KiB, 1 sender → 2 receivers, separate processes on loopback (${cpus().length} cores, Node ${process.version}); medians of ${rounds} rounds of ${seconds} s\n`);
console.log("| scenario | msgs/s (slowest receiver) | MB/s | latency p50 | latency p99 |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const [name, s] of [["Totem (agreed), lossless", scenarios.totem], ["NACK, lossless", scenarios.nack], ["Totem (agreed), 1 % loss", scenarios.totemLoss1]] as const) {
  console.log(`| ${name} | ${n(s.messagesPerSecond)} | ${s.megabytesPerSecond.toFixed(1)} | ${s.latencyP50Ms.toFixed(2)} ms | ${s.latencyP99Ms.toFixed(2)} ms |`);
}
console.log(`| JGroups SEQUENCER (reference, measured separately) | | ~${JGROUPS_SEQUENCER_MBS} | | |`);
console.log(`\nTotem / NACK throughput: ${(summary.totemToNack * 100).toFixed(1)} %`);
console.log("\n| target | measured | goal | met |\n| --- | ---: | ---: | --- |");
for (const t of targets) console.log(`| ${t.target} | ${t.value.toFixed(1)} | ${t.goal} | ${t.met ? "yes" : "NO"} |`);
console.log(`\nevery receiver got every message in every run: ${summary.complete ? "yes" : "NO"}; JSON: bench/results/totem.json`);
