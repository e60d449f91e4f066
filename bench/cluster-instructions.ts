/**
 * What one replicated write costs in instructions: every member of a cluster in this one process, on
 * loopback multicast, one member (not the coordinator) doing sequential puts or lock + unlock pairs:
 *
 *   valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --callgrind-out-file=out.%p \
 *     node --import tsx bench/cluster-instructions.ts --callgrind [--members 2] [--op puts] \
 *     [--warmup 2000] [--count N] [--in-flight N] [--writers N] [--dist dist] [--heap-profile file]
 *
 * Only the measured loop is counted (switched on and off with callgrind_control): the main thread's
 * total (the `-01` file), less a shorter run's, over the difference of their counts, is the
 * instructions of one operation, every member's together. `--in-flight N` keeps up to N puts outstanding
 * at once (pipelined: what batching saves shows there); `--writers N` has N members write so at once,
 * each to keys of its own (N × in-flight outstanding in all). The count takes in the periodic work too
 * (heartbeats, the coordinator's lease probes) for as long as the loop runs, which valgrind stretches
 * a hundredfold and the machine's load stretches further: compare two builds run side by side, more
 * than once. Without `--callgrind` it prints the CPU time per operation of the process (all members),
 * for alternating A/B runs of two builds, and the bytes the process allocated on its heap per operation
 * (from the heap's size before each collection and after the one before it, over the measured loop).
 * `--heap-profile file` samples what the measured loop allocates (what the collector took back
 * included), writes the profile to `file` and prints the sites that allocated most, in bytes an operation.
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { GCProfiler, getHeapStatistics } from "node:v8";
import { freshNetwork, memberOptions } from "./lib.ts";

const { values } = parseArgs({
  options: {
    members: { type: "string", default: "2" },
    op: { type: "string", default: "puts" },
    warmup: { type: "string", default: "2000" },
    count: { type: "string", default: "2000" },
    "in-flight": { type: "string", default: "1" },
    writers: { type: "string", default: "1" },
    dist: { type: "string", default: "dist" },
    callgrind: { type: "boolean", default: false },
    "heap-profile": { type: "string" },
  },
});

function callgrindInstrumentation(state: "on" | "off"): Promise<void> {
  return new Promise((done, fail) => execFile("callgrind_control", ["-i", state, String(process.pid)], (error) => (error === null ? done() : fail(error))));
}

/** V8's sampling heap profiler over the measured loop, counting what the collector took back since as well. */
async function startHeapSampling(): Promise<Session> {
  const session = new Session();
  session.connect();
  await session.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  return session;
}

interface SamplingNode {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly selfSize: number;
  readonly children: readonly SamplingNode[];
}

/**
 * Writes the profile (`.heapprofile`, for a browser's developer tools) and prints the sites that
 * allocated most, in bytes an operation: each function with the two calls that led to it.
 */
async function stopHeapSampling(session: Session, file: string, operations: number): Promise<void> {
  const { profile } = (await session.post("HeapProfiler.stopSampling")) as { profile: { head: SamplingNode } };
  session.disconnect();
  writeFileSync(file, JSON.stringify(profile));
  const frame = (node: SamplingNode) => `${node.callFrame.functionName || "(anonymous)"} ${node.callFrame.url.replace(/^.*\//, "")}:${node.callFrame.lineNumber + 1}`;
  const sites = new Map<string, number>();
  const walk = (node: SamplingNode, path: readonly string[]) => {
    const here = [...path, frame(node)];
    if (node.selfSize > 0) {
      const site = here.slice(-3).reverse().join(" < ");
      sites.set(site, (sites.get(site) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, here);
  };
  walk(profile.head, []);
  const top = [...sites].sort((a, b) => b[1] - a[1]).slice(0, 40);
  for (const [site, bytes] of top) console.error(`${(bytes / operations).toFixed(0).padStart(6)} B/op  ${site}`);
}

const dist = resolve(values.dist);
const extension = dist.endsWith("src") ? "ts" : "js";
const { ClusterChannel } = (await import(resolve(dist, `index.${extension}`))) as typeof import("../src/cluster/cluster-channel.ts");
const { createUdpTransport } = (await import(resolve(dist, `adapters/node.${extension}`))) as typeof import("../src/adapters/node.ts");

const network = freshNetwork("bench-instructions");
const count = Number(values.members);
const channels: Array<InstanceType<typeof ClusterChannel>> = [];
for (let i = 0; i < count; i++) {
  const channel = new ClusterChannel({ ...memberOptions({ name: `m${i}`, network, timing: {} }, createUdpTransport), weight: i === 0 ? 10 : 0 });
  channel.on("error", ({ error, stage }) => console.error(`m${i}: ${stage}: ${error.message}`));
  await channel.init();
  await channel.join({ timeoutMs: 60_000 });
  channels.push(channel);
}
const deadline = Date.now() + 60_000;
while (!channels.every((c) => c.getMembers().length === count && c.ready)) {
  if (Date.now() > deadline) throw new Error(`no ${count}-member view`);
  await new Promise((r) => setTimeout(r, 10));
}
const map = channels[1]!.map;
const value = new Uint8Array(64).fill(7);
const inFlight = Number(values["in-flight"]);
/** Members writing at once (pipelined puts): the first not the coordinator, then the others in turn, each to keys of its own. */
const writers = Array.from({ length: Math.min(count, Number(values.writers)) }, (_, w) => ({ map: channels[(1 + w) % count]!.map, prefix: `w${w}-` }));
/** Under valgrind a thousand puts in flight take longer than the default timeout to be answered. */
const slow = { timeoutMs: 600_000 };
/**
 * Puts with up to `inFlight` of them outstanding at once (pipelined) at each writer, each worker starting
 * the next when one is done; `n` in all.
 */
const pipelined = async (n: number) => {
  let next = 0;
  const worker = async (writer: (typeof writers)[number]) => {
    while (next < n) {
      const i = next++;
      await writer.map.put(`${writer.prefix}k${i % 10_000}`, value, slow);
    }
  };
  await Promise.all(writers.flatMap((writer) => Array.from({ length: Math.min(inFlight, n) }, () => worker(writer))));
};
const run = async (n: number) => {
  if (values.op === "puts" && (inFlight > 1 || writers.length > 1)) return pipelined(n);
  for (let i = 0; i < n; i++) {
    if (values.op === "puts") await map.put(`k${i % 10_000}`, value);
    else {
      const lock = await map.lock("bench-lock");
      await lock.release();
    }
  }
};
await run(Number(values.warmup));
const n = Number(values.count);
/** Per member: datagrams sent, requests sent, updates sent (the coordinator), requests ordered. */
const counters = () =>
  channels.map((c) => {
    const state = c.stateStats;
    return [c.stats.network.datagramsSent, state.requestsSent, state.updatesSent, state.requestsApplied];
  });
const countersBefore = counters();
if (values.callgrind) await callgrindInstrumentation("on");
const heapProfile = values["heap-profile"] === undefined ? undefined : await startHeapSampling();
const profiler = new GCProfiler();
profiler.start();
const heapBefore = getHeapStatistics().used_heap_size;
const cpu = process.cpuUsage();
const started = performance.now();
await run(n);
const ms = performance.now() - started;
const used = process.cpuUsage(cpu);
const heapAfter = getHeapStatistics().used_heap_size;
const collections = profiler.stop()?.statistics ?? [];
if (values.callgrind) await callgrindInstrumentation("off");
if (heapProfile !== undefined) await stopHeapSampling(heapProfile, values["heap-profile"]!, n);
/** What was allocated: the heap's growth between collections (what each one found, less what the last one left). */
let allocated = 0;
let heapSince = heapBefore;
for (const gc of collections) {
  allocated += gc.beforeGC.heapStatistics.usedHeapSize - heapSince;
  heapSince = gc.afterGC.heapStatistics.usedHeapSize;
}
allocated += heapAfter - heapSince;
// What batching there was: per operation, each member's datagrams, requests and updates sent, and the
// coordinator's requests ordered per update sent.
const perMember = counters().map((after, i) => after.map((value, j) => (value - countersBefore[i]![j]!) / n));
const coordinator = perMember[0]!;
console.log(
  JSON.stringify({
    members: count,
    op: values.op,
    inFlight,
    writers: writers.length,
    count: n,
    cpuUsPerOp: (used.user + used.system) / n,
    bytesAllocatedPerOp: Math.round(allocated / n),
    opsPerSecond: Math.round(n / (ms / 1000)),
    datagramsPerOp: perMember.map((m) => +m[0]!.toFixed(3)),
    requestsPerUpdate: coordinator[2]! > 0 ? +(coordinator[3]! / coordinator[2]!).toFixed(1) : undefined,
  }),
);
for (const channel of channels.reverse()) await channel.shutDown().catch(() => undefined);
process.exit(0);
