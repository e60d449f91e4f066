/**
 * The cost of sealed datagrams, security on against off in one run:
 *
 *  1. 1 KiB NACK multicast, 1 sender → 2 receivers (`blaze perf`, separate processes on loopback):
 *     in clear; AES-256-GCM and HMAC-SHA-256 with node:crypto; AES-256-GCM with WebCrypto (the
 *     asynchronous provider, through its ordered queues); insider mode (AES-256-GCM and an Ed25519
 *     signature per datagram). Rounds interleave the scenarios, so a busy moment hits them all.
 *  2. Request/reply round trips between two group members, in clear and sealed (AES-256-GCM), pinned
 *     to two cores; the two pairs alternate in chunks.
 *
 * Targets: sealed (AES-256-GCM, node:crypto) ≥ 70 % of the plain throughput; sealed request/reply p50
 * within +20 % of the plain one. Writes bench/results/security.json and prints a table.
 *
 *   npm run bench:security
 *   npx tsx bench/security.ts [--seconds 5] [--rounds 3] [--requests 5000] [--chunks 10] [--only throughput,rtt] [--lib dir]
 *
 * `--lib` is the built package the request/reply members load (another build's `dist/`, for an A/B
 * comparison; the default is this checkout's).
 */
import { execFileSync } from "node:child_process";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { type PerfOptions, type PerfResult, runPerf } from "../src/cli/perf.ts";
import type { PerfSecurity } from "../src/cli/perf-protocol.ts";
import {
  blazeCli,
  Child as ForkedChild,
  exitAll,
  failures,
  finishRun,
  freshNetwork,
  type LatencySummary,
  loadLibrary,
  machine,
  median,
  memberOptions,
  type Network,
  printScenarios,
  serve,
  sleep,
  startRun,
  summarize,
  summarizeRuns,
  timed,
  whenReady,
  writeResults,
} from "./lib.ts";

// --- request/reply members (children of this file) ---

type ToChild =
  | { readonly type: "join"; readonly name: string; readonly network: Network; readonly secret: string | undefined }
  | { readonly type: "rtt"; readonly target: string; readonly warmup: number; readonly count: number; readonly size: number }
  | { readonly type: "exit" };

type FromChild =
  | { readonly type: "ready" }
  | { readonly type: "joined"; readonly id: string; readonly at: number }
  | { readonly type: "view"; readonly at: number; readonly key: string; readonly ids: readonly string[]; readonly coordinator: string }
  | { readonly type: "rtt-result"; readonly samples: readonly number[]; readonly cpuMs: number }
  | { readonly type: "failed"; readonly error: string };

type Library = typeof import("../src/group/group-channel.ts") & typeof import("../src/adapters/node.ts");

async function runMember(dist: string | undefined): Promise<void> {
  const { GroupChannel, createUdpTransport } = await loadLibrary<Library>(
    false,
    async () => ({
      ...(await import("../src/group/group-channel.ts")),
      ...(await import("../src/adapters/node.ts")),
    }),
    dist,
  );
  const send = (message: FromChild) => process.send!(message);
  let channel: InstanceType<typeof GroupChannel> | undefined;
  serve<ToChild>({
    join: async (message: Extract<ToChild, { type: "join" }>) => {
      // The built package's own crypto provider (node:crypto on Node).
      const security = message.secret === undefined ? {} : { security: { keys: [{ id: 1, secret: message.secret }] } };
      const ch = new GroupChannel({ ...memberOptions({ name: message.name, network: message.network, timing: {} }, createUdpTransport), ...security });
      channel = ch;
      ch.on("error", ({ error, stage }) => console.error(`${message.name}: ${stage}: ${error.message}`));
      ch.on("viewChange", ({ view }) => send({ type: "view", at: Date.now(), key: `${view.id.installer}/${view.id.counter}`, ids: view.members.map((m) => m.id), coordinator: view.coordinator.id }));
      ch.onInbox("echo", (request) => request.reply(request.payload));
      await ch.join({ timeoutMs: 60_000 });
      send({ type: "joined", id: ch.id, at: Date.now() });
    },
    rtt: async (message: Extract<ToChild, { type: "rtt" }>) => {
      const ch = channel!;
      const payload = new Uint8Array(message.size).fill(7);
      for (let i = 0; i < message.warmup; i++) await ch.request(message.target, payload, { inbox: "echo", timeoutMs: 5_000 });
      const samples: number[] = [];
      const cpuBefore = process.cpuUsage();
      for (let i = 0; i < message.count; i++) {
        const started = performance.now();
        await ch.request(message.target, payload, { inbox: "echo", timeoutMs: 5_000 });
        samples.push(performance.now() - started);
      }
      const cpu = process.cpuUsage(cpuBefore);
      send({ type: "rtt-result", samples, cpuMs: (cpu.user + cpu.system) / 1000 });
    },
    exit: async () => {
      await channel?.shutDown();
      process.exit(0);
    },
  });
}

type Child = ForkedChild<ToChild, FromChild>;

const spawnMember = (dist: string | undefined): Child => new ForkedChild<ToChild, FromChild>(import.meta.filename, ["--child", ...(dist === undefined ? [] : [dist])]);

/** A joined pair of members, sealed under `secret` or in clear, pinned to cores 0 and 1. */
async function pair(secret: string | undefined, dist: string | undefined): Promise<[Child, Child]> {
  const members = await whenReady([spawnMember(dist), spawnMember(dist)]);
  const network = freshNetwork("bench-security");
  members.forEach((m, i) => m.post({ type: "join", name: `${secret === undefined ? "plain" : "sealed"}-${i}`, network, secret }));
  await Promise.all(members.map((m) => m.next("joined", 60_000)));
  const deadline = Date.now() + 30_000;
  while (!members.every((m) => m.latestView?.ids.length === 2)) {
    if (Date.now() > deadline) throw new Error("the pair formed no view of two");
    await sleep(10);
  }
  members.forEach((m, i) => execFileSync("taskset", ["-a", "-p", "-c", String(i), String(m.process.pid)], { stdio: "ignore" }));
  return members as [Child, Child];
}

async function measureRoundTrip(chunks: number, count: number, size: number, dist: string | undefined): Promise<{
  size: number;
  requests: number;
  plain: LatencySummary;
  sealed: LatencySummary;
  chunkP50Ms: { plain: number[]; sealed: number[] };
  /** The requester's CPU time per request. */
  requesterCpuUsPerRequest: { plain: number; sealed: number };
  p50Ratio: number;
  p99Ratio: number;
}> {
  const { generateSecret } = await import("../src/security/keys.ts");
  const plain = await pair(undefined, dist);
  const sealed = await pair(generateSecret(), dist);
  const samples = { plain: [] as number[], sealed: [] as number[] };
  const chunkP50Ms = { plain: [] as number[], sealed: [] as number[] };
  const cpuMs = { plain: 0, sealed: 0 };
  const perChunk = Math.ceil(count / chunks);
  try {
    for (let chunk = 0; chunk < chunks; chunk++) {
      if (chunk % 5 === 0) process.stderr.write(`request/reply: chunk ${chunk + 1}/${chunks}\n`);
      for (const [name, [requester, responder]] of [["plain", plain], ["sealed", sealed]] as const) {
        requester.post({ type: "rtt", target: responder.id, warmup: chunk === 0 ? 2_000 : 0, count: perChunk, size });
        const result = await requester.next("rtt-result", 60_000);
        samples[name].push(...result.samples);
        cpuMs[name] += result.cpuMs;
        chunkP50Ms[name].push(summarize([...result.samples]).p50Ms);
      }
    }
  } finally {
    await exitAll([...plain, ...sealed]);
  }
  const summaries = { plain: summarize(samples.plain), sealed: summarize(samples.sealed) };
  const requesterCpuUsPerRequest = { plain: (cpuMs.plain * 1000) / samples.plain.length, sealed: (cpuMs.sealed * 1000) / samples.sealed.length };
  return { size, requests: samples.sealed.length, ...summaries, chunkP50Ms, requesterCpuUsPerRequest, p50Ratio: summaries.sealed.p50Ms / summaries.plain.p50Ms, p99Ratio: summaries.sealed.p99Ms / summaries.plain.p99Ms };
}

// --- throughput ---

interface Setting {
  readonly name: string;
  readonly security?: PerfSecurity;
  readonly crypto?: "node" | "web";
}

const SETTINGS: readonly Setting[] = [
  { name: "in clear" },
  { name: "AES-256-GCM, node:crypto", security: "encrypt" },
  { name: "HMAC-SHA-256, node:crypto", security: "authenticate" },
  { name: "AES-256-GCM, WebCrypto", security: "encrypt", crypto: "web" },
  { name: "insider (AES-256-GCM + Ed25519), node:crypto", security: "insider" },
];

/** A scenario's medians, and its CPU per message: what contention on a shared machine disturbs least. */
function withCpu(runs: readonly PerfResult[]) {
  return { ...summarizeRuns(runs), senderCpuUsPerMessage: median(runs.map((r) => r.senderCpuUsPerMessage)), receiverCpuUsPerMessage: median(runs.map((r) => r.receiverCpuUsPerMessage)) };
}

async function measureThroughput(seconds: number, rounds: number): Promise<Record<string, ReturnType<typeof withCpu>>> {
  const base: PerfOptions = { senders: 1, receivers: 2, size: 1024, seconds, loss: 0, reliability: "nack", baseline: false, progress: false };
  const runs = new Map<string, PerfResult[]>(SETTINGS.map((s) => [s.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const setting of SETTINGS) {
      process.stderr.write(`1 KiB multicast, ${setting.name}: round ${round + 1}/${rounds}\n`);
      const options = { ...base, ...(setting.security === undefined ? {} : { security: setting.security }), ...(setting.crypto === undefined ? {} : { crypto: setting.crypto }) };
      runs.get(setting.name)!.push(await runPerf(options, blazeCli));
    }
  }
  return Object.fromEntries([...runs].map(([name, results]) => [name, withCpu(results)]));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
      requests: { type: "string", default: "5000" },
      chunks: { type: "string", default: "10" },
      only: { type: "string" },
      lib: { type: "string" },
    },
  });
  const only = values.only?.split(",");
  const want = (name: string) => only === undefined || only.includes(name);
  const { startedAt, load } = startRun();
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const throughput = want("throughput") ? await timed("throughput", rounds * SETTINGS.length * (seconds + 30) * 1000, async () => ({ scenarios: await measureThroughput(seconds, rounds) })) : undefined;
  const roundTrip = want("rtt") ? await timed("request/reply", 180_000, () => measureRoundTrip(Number(values.chunks), Number(values.requests), 64, values.lib)) : undefined;

  const scenarios = throughput?.scenarios;
  const plainMBs = scenarios?.[SETTINGS[0]!.name]?.megabytesPerSecond ?? 0;
  const sealedMBs = scenarios?.[SETTINGS[1]!.name]?.megabytesPerSecond ?? 0;
  const targets = [
    ...(scenarios === undefined ? [] : [{ target: "1 KiB, 1 → 2: sealed (AES-256-GCM, node:crypto) MB/s ≥ 70 % of plain", value: sealedMBs / plainMBs, goal: 0.7, met: sealedMBs / plainMBs >= 0.7 }]),
    ...(roundTrip === undefined ? [] : [{ target: "request/reply p50: sealed ≤ 1.2 × plain", value: roundTrip.p50Ratio, goal: 1.2, met: roundTrip.p50Ratio <= 1.2 }]),
  ];
  const summary = {
    benchmark: "security",
    date: new Date().toISOString(),
    machine: machine(load),
    wallSeconds: (Date.now() - startedAt) / 1000,
    seconds,
    rounds,
    throughput: scenarios,
    requestReply: roundTrip,
    targets,
    complete: Object.values(scenarios ?? {}).every((s) => s.runs.every((r) => r.complete)),
    failures,
  };
  if (only === undefined && values.lib === undefined) writeResults("security", summary);

  console.log(`\nSealed datagrams, security on against off in one run (${cpus().length} cores, Node ${process.version}, load average ${load.toFixed(2)} at start)\n`);
  if (scenarios !== undefined) {
    console.log(`1 KiB NACK multicast, 1 sender → 2 receivers, separate processes on loopback; medians of ${rounds} rounds of ${seconds} s\n`);
    printScenarios(SETTINGS.map((s) => [s.name, scenarios[s.name]!] as const));
    console.log("");
    const plain = scenarios[SETTINGS[0]!.name]!;
    console.log("| scenario | MB/s, of plain | sender CPU per message | receiver CPU per message |\n| --- | ---: | ---: | ---: |");
    for (const s of SETTINGS) {
      const r = scenarios[s.name]!;
      const cpu = (us: number, base: number) => `${us.toFixed(2)} µs${s === SETTINGS[0] ? "" : ` (${(us / base).toFixed(2)}×)`}`;
      console.log(`| ${s.name} | ${((r.megabytesPerSecond / plainMBs) * 100).toFixed(1)} % | ${cpu(r.senderCpuUsPerMessage, plain.senderCpuUsPerMessage)} | ${cpu(r.receiverCpuUsPerMessage, plain.receiverCpuUsPerMessage)} |`);
    }
  }
  if (roundTrip !== undefined) {
    const ms = (x: number) => `${x.toFixed(3)} ms`;
    console.log(`\nrequest/reply, ${roundTrip.size} B, ${roundTrip.requests.toLocaleString("en-US")} sequential each, two cores:`);
    console.log(`- p50: plain ${ms(roundTrip.plain.p50Ms)}, sealed ${ms(roundTrip.sealed.p50Ms)} (${roundTrip.p50Ratio.toFixed(2)}×)`);
    console.log(`- p99: plain ${ms(roundTrip.plain.p99Ms)}, sealed ${ms(roundTrip.sealed.p99Ms)} (${roundTrip.p99Ratio.toFixed(2)}×)`);
    const cpu = roundTrip.requesterCpuUsPerRequest;
    console.log(`- requester CPU per request: plain ${cpu.plain.toFixed(1)} µs, sealed ${cpu.sealed.toFixed(1)} µs`);
  }
  console.log("\n| target | measured | goal | met |\n| --- | ---: | ---: | --- |");
  for (const t of targets) console.log(`| ${t.target} | ${t.goal < 1 ? `${(t.value * 100).toFixed(1)} %` : `${t.value.toFixed(2)}×`} | ${t.goal < 1 ? `${t.goal * 100} %` : `${t.goal}×`} | ${t.met ? "yes" : "NO"} |`);
  console.log(`\nevery receiver got every message in every run: ${summary.complete ? "yes" : "NO"}`);
  finishRun({ load, wallSeconds: summary.wallSeconds, results: only === undefined ? "security" : undefined, busyNote: "the figures are noisy; the scenarios were interleaved so that load hits them alike." });
}

const [mode, dist] = process.argv.slice(2);
if (mode === "--child") await runMember(dist);
else await main();
