/**
 * The forward-error-correction benchmark:
 *  1. the Reed-Solomon codec's throughput (encode, and decode of a block that lost m packets) on Node,
 *     Bun and Deno — this file, run with `codec`, in each runtime;
 *  2. FEC against NACK at 0 %, 1 % and 5 % injected receive loss through `blaze perf` (1 sender → 2
 *     receivers, 1 KiB messages, separate processes on loopback): throughput and delivery latency.
 * Checks the targets, writes bench/results/fec.json and prints a table.
 *
 *   npm run bench:fec            (builds first)
 *   npx tsx bench/fec.ts [--seconds 5] [--rounds 3] [--codec-seconds 2]
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import process from "node:process";
import { ReedSolomon } from "../src/reliable/fec/reed-solomon.ts";

interface CodecResult {
  readonly k: number;
  readonly m: number;
  readonly packetBytes: number;
  /** Source bytes encoded per second, in MB (10^6 bytes). */
  readonly encodeMBs: number;
  /** Source bytes of blocks that lost m packets, rebuilt per second, in MB. */
  readonly decodeMBs: number;
}

const CODEC_SHAPES = [
  { k: 16, m: 2, packetBytes: 1024 },
  { k: 16, m: 1, packetBytes: 1024 },
  { k: 32, m: 3, packetBytes: 1024 },
  { k: 16, m: 2, packetBytes: 8192 },
] as const;

// Runs `fn` in batches for `seconds`; returns the calls per second of the best of three rounds.
function rate(fn: () => void, seconds: number): number {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let calls = 0;
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < (seconds * 1000) / 3) {
      for (let i = 0; i < 50; i++) fn();
      calls += 50;
      elapsed = performance.now() - start;
    }
    best = Math.max(best, calls / (elapsed / 1000));
  }
  return best;
}

function runCodec(seconds: number): CodecResult[] {
  const codec = new ReedSolomon();
  return CODEC_SHAPES.map(({ k, m, packetBytes }) => {
    const sources = Array.from({ length: k }, (_, i) => {
      const bytes = new Uint8Array(packetBytes);
      for (let b = 0; b < packetBytes; b++) bytes[b] = (i * 131 + b * 17) & 0xff;
      return bytes;
    });
    const encodes = rate(() => codec.encode(sources, m), seconds);
    codec.encode(sources, m);
    const parity = Array.from({ length: m }, (_, row) => ({ row, symbol: codec.parity(row).slice(), lengthParity: codec.lengthParity(row) }));
    // The worst case the code repairs: m sources lost, spread over the block.
    const held = sources.map((s, i) => (i % Math.ceil(k / m) === 0 ? undefined : s));
    const rebuilt = codec.decode(held, parity);
    if (rebuilt === undefined || held.some((s, i) => s === undefined && !same(rebuilt[i], sources[i]!))) throw new Error("decode is wrong");
    const decodes = rate(() => codec.decode(held, parity), seconds);
    const blockBytes = k * packetBytes;
    return { k, m, packetBytes, encodeMBs: (encodes * blockBytes) / 1e6, decodeMBs: (decodes * blockBytes) / 1e6 };
  });
}

function same(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);
}

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1]! : fallback;
}

if (process.argv.includes("codec")) {
  console.log(JSON.stringify(runCodec(Number(option("codec-seconds", "2")))));
} else {
  await main();
}

async function main(): Promise<void> {
  const { join } = await import("node:path");
  const { runPerf } = await import("../src/cli/perf.ts");
  const { blazeCli: cli, finishPerf, median, perfSummary, printTargets, summarizeRuns, thousands: n } = await import("./lib.ts");
  type PerfResult = Awaited<ReturnType<typeof runPerf>>;
  const seconds = Number(option("seconds", "5"));
  const rounds = Number(option("rounds", "3"));
  const codecSeconds = option("codec-seconds", "2");
  const root = join(import.meta.dirname, "..");
  const self = join(root, "bench", "fec.ts");
  const bin = (name: string) => join(root, "node_modules", ".bin", name);

  // 1. The codec in each runtime (one process each, one after the other).
  const runtimes: Record<string, { command: string; args: string[] }> = {
    node: { command: bin("tsx"), args: [self, "codec", "--codec-seconds", codecSeconds] },
    bun: { command: bin("bun"), args: [self, "codec", "--codec-seconds", codecSeconds] },
    deno: { command: bin("deno"), args: ["run", "--allow-read", "--allow-env", self, "codec", "--codec-seconds", codecSeconds] },
  };
  const codec: Record<string, CodecResult[] | { error: string }> = {};
  for (const [runtime, { command, args }] of Object.entries(runtimes)) {
    process.stderr.write(`codec on ${runtime}\n`);
    const run = spawnSync(command, args, { encoding: "utf8", timeout: 300_000 });
    const line = run.stdout?.trim().split("\n").pop() ?? "";
    try {
      codec[runtime] = JSON.parse(line) as CodecResult[];
    } catch {
      codec[runtime] = { error: (run.stderr || run.error?.message || `exit ${run.status}`).trim().slice(0, 500) };
    }
  }

  // 2. FEC against NACK; rounds interleave the scenarios so that a noisy moment hits all of them.
  const losses = [0, 0.01, 0.05];
  const reliabilities = ["nack", "fec"] as const;
  const runs = new Map<string, PerfResult[]>();
  const key = (reliability: string, loss: number) => `${reliability}@${loss}`;
  for (let round = 0; round < rounds; round++) {
    for (const loss of losses) {
      for (const reliability of reliabilities) {
        process.stderr.write(`${reliability}, ${loss * 100} % loss: round ${round + 1}/${rounds}\n`);
        const result = await runPerf({ senders: 1, receivers: 2, size: 1024, seconds, loss, reliability, baseline: false, progress: false }, cli);
        runs.set(key(reliability, loss), [...(runs.get(key(reliability, loss)) ?? []), result]);
      }
    }
  }
  const scenarios = Object.fromEntries(
    [...runs].map(([name, results]) => [
      name,
      {
        ...summarizeRuns(results),
        nacksSent: median(results.map((r) => Math.max(...r.receivers.map((x) => x.nacksSent)))),
        complete: results.every((r) => r.complete),
      },
    ]),
  );
  const scenario = (reliability: string, loss: number) => scenarios[key(reliability, loss)]!;

  const nodeCodec = codec.node;
  const nodeEncode = Array.isArray(nodeCodec) ? (nodeCodec.find((c) => c.k === 16 && c.m === 2 && c.packetBytes === 1024)?.encodeMBs ?? 0) : 0;
  const fecP99Ratio = scenario("fec", 0.01).latencyP99Ms / scenario("fec", 0).latencyP99Ms;
  const targets = [
    { target: "codec encode on Node, k = 16, m = 2, 1 KiB packets ≥ 400 MB/s", value: nodeEncode, goal: 400, unit: "MB/s", met: nodeEncode >= 400 },
    { target: "FEC p99 latency at 1 % loss within 2× of FEC's lossless p99", value: fecP99Ratio, goal: 2, unit: "×", met: fecP99Ratio <= 2 },
  ];
  const summary = {
    ...perfSummary("fec", seconds, rounds),
    codec,
    scenarios,
    targets,
    complete: Object.values(scenarios).every((s) => s.complete),
  };
  console.log(`\nReed-Solomon codec (MB/s of source data; decode rebuilds m lost packets), ${cpus().length} cores\n`);
  console.log("| runtime | k | m | packet | encode MB/s | decode MB/s |\n| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const [runtime, results] of Object.entries(codec)) {
    if (!Array.isArray(results)) console.log(`| ${runtime} | failed: ${results.error.split("\n")[0]} | | | | |`);
    else for (const c of results) console.log(`| ${runtime} | ${c.k} | ${c.m} | ${c.packetBytes} B | ${n(c.encodeMBs)} | ${n(c.decodeMBs)} |`);
  }
  console.log(`\nFEC (k = 16, m = 2) against NACK, 1 sender → 2 receivers, 1 KiB, separate processes on loopback; medians of ${rounds} rounds of ${seconds} s\n`);
  console.log("| reliability | loss | msgs/s (slowest receiver) | MB/s | latency p50 | latency p99 | NACKs (most of a receiver) |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const loss of losses) {
    for (const reliability of reliabilities) {
      const s = scenario(reliability, loss);
      console.log(`| ${reliability} | ${loss * 100} % | ${n(s.messagesPerSecond)} | ${s.megabytesPerSecond.toFixed(1)} | ${s.latencyP50Ms.toFixed(2)} ms | ${s.latencyP99Ms.toFixed(2)} ms | ${n(s.nacksSent)} |`);
    }
  }
  printTargets(targets, (t) => [t.unit === "×" ? `${t.value.toFixed(2)}×` : n(t.value), `${t.goal} ${t.unit}`]);
  finishPerf("fec", summary);
}
