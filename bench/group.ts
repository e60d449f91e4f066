/**
 * The group benchmark: members as separate Node processes on loopback multicast (this file forks itself
 * through tsx, importing the sources). Measures
 *
 *  1. view convergence: 16 members told to join at once, until all report the same 16-member view;
 *  2. crash detection: SIGKILL one member of 5, until every survivor installed a view without it,
 *     next to failureTimeoutMs + verifyTimeoutMs (default options);
 *  3. request/reply round trip between two members, p50 and p99 of sequential requests, next to a raw
 *     node:dgram ping-pong between two processes measured in the same run, same payload; with
 *     `--runtime bun`, the two members run under Bun (its adapter) next to a raw Bun.udpSocket ping-pong;
 *  4. queue throughput: one producer keeps 1,000 sendToQueue() in flight to 3 consumer processes.
 *
 * Writes bench/results/group.json and prints a markdown table.
 *
 *   npx tsx bench/group.ts [--members 16] [--trials 3] [--requests 5000] [--chunks 10] [--seconds 5] [--only convergence,crash,rtt,queue] [--runtime node|bun]
 *
 * `--only` runs some measurements and writes no JSON. GROUP_BENCH_PROFILE=<dir> writes a CPU profile
 * of every forked process into <dir>. Members run on the built package (dist/, from `npm run build`), as
 * users run it; GROUP_BENCH_FROM=src runs them on the sources through tsx instead.
 *
 * `--runtime bun` (default node) runs the request/reply members and the raw ping-pong under Bun
 * (node_modules/.bin/bun, which speaks Node's IPC channel, runs the sources itself and picks its own
 * adapter); the other measurements stay on Node, and a full run writes bench/results/group-bun.json.
 */
import { execFileSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { absoluteNow, bunPath, Child as ForkedChild, exitAll as exitChildren, failures, finishRun, freshNetwork, jgroupsFigures, type LatencySummary, loadLibrary, machine, memberOptions, median, type Network, runtimeName, serve, sleep, startRun, summarize, timed, type Timing, whenReady, writeResults } from "./lib.ts";

// --- what the parent and its children say to each other (over Node's IPC channel) ---

/** The runtime of the request/reply members and the raw ping-pong. */
type Runtime = "node" | "bun";

type ToChild =
  | { readonly type: "join"; readonly name: string; readonly network: Network; readonly timing: Timing }
  | { readonly type: "leave" }
  /** Sequential requests to member `target` (raw ping: round trips to the echo; no target). */
  | { readonly type: "rtt"; readonly target: string; readonly warmup: number; readonly count: number; readonly size: number }
  | { readonly type: "consume"; readonly queue: string }
  | { readonly type: "count" }
  | { readonly type: "produce"; readonly queue: string; readonly seconds: number; readonly inFlight: number; readonly size: number }
  | { readonly type: "exit" };

type FromChild =
  | { readonly type: "ready" }
  | { readonly type: "joined"; readonly id: string; readonly at: number }
  | { readonly type: "view"; readonly at: number; readonly key: string; readonly ids: readonly string[]; readonly coordinator: string }
  | { readonly type: "left" }
  /** Round-trip times in ms, in order. */
  | { readonly type: "rtt-result"; readonly samples: readonly number[]; readonly cpuMs: number; readonly traffic?: Readonly<Record<string, number>> }
  | { readonly type: "counted"; readonly processed: number }
  | {
      readonly type: "produced";
      readonly acked: number;
      readonly failed: number;
      readonly elapsedMs: number;
      readonly firstError?: string;
      readonly traffic?: Readonly<Record<string, number>>;
    }
  | { readonly type: "listening"; readonly port: number }
  | { readonly type: "failed"; readonly error: string };

/** Counters that moved between two snapshots, per `per` (requests, messages). */
function trafficDelta(before: Readonly<Record<string, unknown>>, after: Readonly<Record<string, unknown>>, per: number): Record<string, number> {
  const traffic: Record<string, number> = {};
  for (const [key, value] of Object.entries(after)) {
    const previous = before[key];
    if (typeof value === "number" && typeof previous === "number" && value !== previous) traffic[key] = (value - previous) / per;
  }
  return traffic;
}

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

// --- the children ---

/** The group channel and a runtime adapter's transport (Node's or Bun's: the same factory type). */
type Library = typeof import("../src/group/group-channel.ts") & Pick<typeof import("../src/adapters/node.ts"), "createUdpTransport">;

/** A group member: joins when told, reports its views, answers requests on "echo", consumes or produces when told. */
async function runMember(): Promise<void> {
  const { GroupChannel, createUdpTransport } = await loadLibrary<Library>(process.env.GROUP_BENCH_FROM === "src", async () => ({
    ...(await import("../src/group/group-channel.ts")),
    ...(runtimeName === "bun" ? await import("../src/adapters/bun.ts") : await import("../src/adapters/node.ts")),
  }));
  const send = (message: FromChild) => process.send!(message);
  let channel: InstanceType<typeof GroupChannel> | undefined;
  let processed = 0;

  serve<ToChild>({
    join: async (message: Extract<ToChild, { type: "join" }>) => {
      const ch = new GroupChannel(memberOptions(message, createUdpTransport));
      channel = ch;
      ch.on("error", ({ error, stage }) => console.error(`${message.name}: ${stage}: ${error.message}`));
      ch.on("viewChange", ({ view }) =>
        send({ type: "view", at: absoluteNow(), key: `${view.id.installer}/${view.id.counter}`, ids: view.members.map((m) => m.id), coordinator: view.coordinator.id }),
      );
      ch.onInbox("echo", (request) => request.reply(request.payload));
      await ch.join({ timeoutMs: 60_000 });
      send({ type: "joined", id: ch.id, at: absoluteNow() });
    },
    leave: async () => {
      await channel?.shutDown();
      channel = undefined;
      processed = 0;
      send({ type: "left" });
    },
    rtt: async (message: Extract<ToChild, { type: "rtt" }>) => {
      const ch = channel!;
      const payload = new Uint8Array(message.size).fill(7);
      for (let i = 0; i < message.warmup; i++) await ch.request(message.target, payload, { inbox: "echo", timeoutMs: 5_000 });
      const samples: number[] = [];
      const before = { ...ch.stats.network, ...ch.groupStats.unicast };
      const cpuBefore = cpuMs();
      for (let i = 0; i < message.count; i++) {
        const started = performance.now();
        const reply = await ch.request(message.target, payload, { inbox: "echo", timeoutMs: 5_000 });
        samples.push(performance.now() - started);
        if (reply.payload.length !== message.size) throw new Error(`a reply of ${reply.payload.length} bytes`);
      }
      const cpu = cpuMs() - cpuBefore;
      // The requester's traffic during the run, per request.
      const traffic = trafficDelta(before, { ...ch.stats.network, ...ch.groupStats.unicast }, message.count);
      send({ type: "rtt-result", samples, cpuMs: cpu, traffic });
    },
    consume: (message: Extract<ToChild, { type: "consume" }>) => {
      channel!.consumeQueue(message.queue, () => {
        processed++;
      });
    },
    count: () => {
      send({ type: "counted", processed });
      processed = 0;
    },
    produce: async (message: Extract<ToChild, { type: "produce" }>) => {
      const ch = channel!;
      const payload = new Uint8Array(message.size).fill(9);
      const before = { ...ch.stats.network, ...ch.groupStats.unicast };
      const startedAt = performance.now();
      const endAt = startedAt + message.seconds * 1000;
      let acked = 0;
      let failed = 0;
      let firstError: string | undefined;
      // `inFlight` lanes, each sending its next message as soon as the last one is processed.
      const lane = async () => {
        while (performance.now() < endAt) {
          try {
            await ch.sendToQueue(message.queue, payload, { timeoutMs: 10_000 });
            acked++;
          } catch (error) {
            failed++;
            firstError ??= error instanceof Error ? error.message : String(error);
          }
        }
      };
      await Promise.all(Array.from({ length: message.inFlight }, lane));
      const elapsedMs = performance.now() - startedAt;
      const traffic = trafficDelta(before, { ...ch.stats.network, ...ch.groupStats.unicast }, Math.max(1, acked + failed));
      send({ type: "produced", acked, failed, elapsedMs, traffic, ...(firstError === undefined ? {} : { firstError }) });
    },
    exit: async () => {
      await channel?.shutDown().catch(() => undefined);
      process.exit(0);
    },
  });
}

/** A UDP socket of the raw baseline, bound to a free port of 127.0.0.1. */
interface RawSocket {
  readonly port: number;
  send(payload: Uint8Array, port: number, host: string): void;
}

/** The part of Bun's UDP socket API the raw baseline uses (as the Bun adapter opens it). */
interface BunUdpSocket {
  readonly port: number;
  send(data: Uint8Array, port: number, host: string): boolean;
}
type BunUdp = (options: {
  hostname: string;
  binaryType: "uint8array";
  socket: { data(socket: BunUdpSocket, data: Uint8Array, port: number, address: string): void };
}) => Promise<BunUdpSocket>;

/** This runtime's raw socket, as its adapter opens one: node:dgram under Node, Bun.udpSocket under Bun. */
async function openRawSocket(onMessage: (socket: RawSocket, data: Uint8Array, port: number, host: string) => void): Promise<RawSocket> {
  const udpSocket = (globalThis as { Bun?: { udpSocket: BunUdp } }).Bun?.udpSocket;
  if (udpSocket !== undefined) return udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: onMessage } });
  const socket = createSocket({ type: "udp4", lookup: immediateLookup as never });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const raw: RawSocket = { port: socket.address().port, send: (payload, port, host) => socket.send(payload, port, host) };
  socket.on("message", (message, rinfo) => onMessage(raw, message, rinfo.port, rinfo.address));
  return raw;
}

/** The raw baseline's echo side: sends every datagram back where it came from. */
async function runRawEcho(): Promise<void> {
  const socket = await openRawSocket((socket, data, port, host) => socket.send(data, port, host));
  process.send!({ type: "listening", port: socket.port } satisfies FromChild);
  process.on("message", (message: ToChild) => {
    if (message.type === "exit") process.exit(0);
  });
}

/** The raw baseline's ping side: on each "rtt" command, `warmup` then `count` sequential round trips of `size`-byte datagrams. */
async function runRawPing(port: number): Promise<void> {
  let answer: (() => void) | undefined;
  const socket = await openRawSocket(() => answer?.());
  const roundTrip = (payload: Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("a raw datagram was lost")), 1_000);
      answer = () => {
        clearTimeout(timer);
        resolve();
      };
      socket.send(payload, port, "127.0.0.1");
    });
  const run = async (message: Extract<ToChild, { type: "rtt" }>) => {
    const payload = new Uint8Array(message.size).fill(7);
    for (let i = 0; i < message.warmup; i++) await roundTrip(payload);
    const samples: number[] = [];
    const cpuBefore = cpuMs();
    for (let i = 0; i < message.count; i++) {
      const started = performance.now();
      await roundTrip(payload);
      samples.push(performance.now() - started);
    }
    process.send!({ type: "rtt-result", samples, cpuMs: cpuMs() - cpuBefore } satisfies FromChild);
  };
  process.on("message", (message: ToChild) => {
    if (message.type === "exit") process.exit(0);
    if (message.type === "rtt") run(message).catch((error: unknown) => process.send!({ type: "failed", error: String(error) } satisfies FromChild));
  });
  process.send!({ type: "ready" } satisfies FromChild);
}

/** As the Node adapter: answers at once (dgram's default lookup defers every send by a tick). */
function immediateLookup(_host: string, _options: unknown, callback: (error: null, address: string, family: number) => void): void {
  callback(null, "127.0.0.1", 4);
}

// --- the parent ---

type Child = ForkedChild<ToChild, FromChild>;

/**
 * A child of this file in `role`, under Node through tsx or under Bun (which runs TypeScript itself);
 * GROUP_BENCH_PROFILE=<dir> has it write a CPU profile there.
 */
function spawnChild(runtime: Runtime, ...args: string[]): Child {
  const profile = process.env.GROUP_BENCH_PROFILE;
  const loader = runtime === "node" ? process.execArgv : [];
  const execArgv = profile === undefined ? loader : [...loader, "--cpu-prof", `--cpu-prof-dir=${profile}`];
  return new ForkedChild<ToChild, FromChild>(import.meta.filename, ["--child", ...args], execArgv, [], runtime === "node" ? process.execPath : bunPath);
}

async function startMembers(count: number, runtime: Runtime = "node"): Promise<Child[]> {
  return whenReady(Array.from({ length: count }, () => spawnChild(runtime, "member")));
}

/** Until every member's latest view is the same one of `size` members; resolves with that view's key. */
async function converged(members: readonly Child[], size: number, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = members.map((m) => m.latestView);
    const key = views[0]?.key;
    if (key !== undefined && views.every((v) => v?.key === key && v.ids.length === size)) return key;
    if (Date.now() > deadline) throw new Error(`no common ${size}-member view within ${timeoutMs} ms: ${views.map((v) => `${v?.key} (${v?.ids.length})`).join(", ")}`);
    await sleep(10);
  }
}

async function joinAll(members: readonly Child[], network: Network, timing: Timing, prefix: string): Promise<void> {
  members.forEach((m, i) => m.post({ type: "join", name: `${prefix}-${i}`, network, timing }));
  await Promise.all(members.map((m) => m.next("joined", 60_000)));
}

async function leaveAll(members: readonly Child[]): Promise<void> {
  for (const m of members) m.post({ type: "leave" });
  await Promise.all(members.map((m) => m.next("left", 10_000)));
  for (const m of members) m.views.length = 0;
}

async function exitAll(members: readonly Child[]): Promise<void> {
  // Profiles (GROUP_BENCH_PROFILE) are written on exit, which takes a moment.
  await exitChildren(members, process.env.GROUP_BENCH_PROFILE === undefined ? 300 : 3_000);
}

// 1. Convergence: `count` members told to join at once, until all report one and the same view of all.
async function measureConvergence(count: number, trials: number): Promise<{
  members: number;
  discoveryTimeoutMs: number;
  trialsMs: number[];
  /** Distinct views installed on the way, per trial (1 + the joins batched after the first). */
  viewsPerTrial: number[];
  medianMs: number;
  startupMs: number;
}> {
  const startedAt = Date.now();
  const members = await startMembers(count);
  const startupMs = Date.now() - startedAt;
  const trialsMs: number[] = [];
  const viewsPerTrial: number[] = [];
  try {
    for (let trial = 0; trial < trials; trial++) {
      process.stderr.write(`convergence: ${count} members, trial ${trial + 1}/${trials}\n`);
      const network = freshNetwork("bench-group");
      const goAt = absoluteNow();
      for (const [i, m] of members.entries()) m.post({ type: "join", name: `m${i}`, network, timing: {} });
      const key = await converged(members, count, 30_000);
      // When the last member installed that view, in its own (same-machine) clock.
      const lastInstall = Math.max(...members.map((m) => m.views.find((v) => v.key === key)!.at));
      trialsMs.push(lastInstall - goAt);
      viewsPerTrial.push(new Set(members.flatMap((m) => m.views.map((v) => v.key))).size);
      await Promise.all(members.map((m) => m.next("joined", 10_000)));
      await leaveAll(members);
    }
  } finally {
    await exitAll(members);
  }
  return { members: count, discoveryTimeoutMs: 1_000, trialsMs, viewsPerTrial, medianMs: median(trialsMs), startupMs };
}

// 2. Crash detection: SIGKILL one member of five (a plain member and the coordinator in turn), until
// every survivor installed a view without it; a fresh member replaces it for the next trial.
async function measureCrashDetection(trials: number): Promise<{
  heartbeatIntervalMs: number;
  failureTimeoutMs: number;
  verifyTimeoutMs: number;
  budgetMs: number;
  trials: Array<{ victim: "member" | "coordinator"; detectionMs: number; perSurvivorMs: number[] }>;
  medianMs: number;
}> {
  const timing = { heartbeatIntervalMs: 1_000, failureTimeoutMs: 5_000, verifyTimeoutMs: 1_500 } as const;
  const network = freshNetwork("bench-group");
  let members = await startMembers(5);
  const results: Array<{ victim: "member" | "coordinator"; detectionMs: number; perSurvivorMs: number[] }> = [];
  let spawned = 5;
  try {
    await joinAll(members, network, timing, "c");
    for (let trial = 0; trial < trials; trial++) {
      await converged(members, 5, 30_000);
      // Let the new member's heartbeats settle in before the kill.
      await sleep(timing.heartbeatIntervalMs * 1.5);
      const view = members[0]!.latestView!;
      const victimKind = trial % 2 === 0 ? "member" : "coordinator";
      const victimId = victimKind === "coordinator" ? view.coordinator : view.ids.filter((id) => id !== view.coordinator).at(-1)!;
      const victim = members.find((m) => m.id === victimId)!;
      const survivors = members.filter((m) => m !== victim);
      process.stderr.write(`crash detection: trial ${trial + 1}/${trials}, killing the ${victimKind}\n`);
      const killedAt = absoluteNow();
      victim.kill();
      const deadline = Date.now() + 30_000;
      const dropped = () => survivors.map((m) => m.views.find((v) => v.at > killedAt && !v.ids.includes(victimId)));
      while (dropped().some((v) => v === undefined)) {
        if (Date.now() > deadline) throw new Error("the survivors did not drop the killed member within 30 s");
        await sleep(10);
      }
      const perSurvivorMs = dropped().map((v) => v!.at - killedAt);
      results.push({ victim: victimKind, detectionMs: Math.max(...perSurvivorMs), perSurvivorMs });
      if (trial + 1 < trials) {
        const [fresh] = await startMembers(1);
        fresh!.post({ type: "join", name: `c-${spawned++}`, network, timing });
        await fresh!.next("joined", 30_000);
        members = [...survivors, fresh!];
      } else members = survivors;
    }
  } finally {
    await exitAll(members);
  }
  const budgetMs = timing.failureTimeoutMs + timing.verifyTimeoutMs;
  return { ...timing, budgetMs, trials: results, medianMs: median(results.map((r) => r.detectionMs)) };
}

type Placement = "two cores" | "one core";

/** Pins a process and all its threads to `cpus` (taskset, from util-linux). */
function pin(pid: number, cpus: string): void {
  execFileSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
}

// 3. Request/reply round trips between two members, next to raw node:dgram ping-pong between two
// processes (under Bun: members on Bun's adapter, raw Bun.udpSocket ping-pong). The two alternate in
// `chunks` chunks, so that a busy moment of this shared machine hits both.
async function measureRoundTrip(chunks: number, count: number, size: number, placement: Placement, runtime: Runtime): Promise<{
  /** The runtime of the members and of the raw ping-pong. */
  runtime: Runtime;
  placement: Placement;
  size: number;
  requests: number;
  chunks: number;
  group: LatencySummary;
  raw: LatencySummary;
  /** p50 of each chunk, in order: how steady the machine was. */
  chunkP50Ms: { group: number[]; raw: number[] };
  groupCpuMsPerRequest: number;
  rawCpuMsPerRoundTrip: number;
  /** The requester's traffic per request (last chunk): datagrams and bytes each way, unicast protocol counters. */
  requesterTrafficPerRequest: Readonly<Record<string, number>>;
  p50Ratio: number;
  p99Ratio: number;
}> {
  // JIT and the first chunks run slower: warm both up properly.
  const warmup = 2_000;
  const perChunk = Math.ceil(count / chunks);
  const members = await startMembers(2, runtime);
  const echo = spawnChild(runtime, "raw-echo");
  const groupSamples: number[] = [];
  const rawSamples: number[] = [];
  const chunkP50Ms = { group: [] as number[], raw: [] as number[] };
  let groupCpu = 0;
  let rawCpu = 0;
  let traffic: Readonly<Record<string, number>> = {};
  let ping: Child | undefined;
  try {
    const { port } = await echo.next("listening", 30_000);
    ping = spawnChild(runtime, "raw-ping", String(port));
    await ping.next("ready", 30_000);
    await joinAll(members, freshNetwork("bench-group"), {}, "r");
    await converged(members, 2, 30_000);
    // Both pairs are placed alike: a ping-pong between processes on one core is several times faster
    // (no cross-core wake-up) than between two cores, which the scheduler would otherwise pick at will.
    const [requesterCpu, echoCpu] = placement === "one core" ? ["0", "0"] : ["0", "1"];
    for (const [child, cpu] of [[members[0]!, requesterCpu], [ping, requesterCpu], [members[1]!, echoCpu], [echo, echoCpu]] as const) {
      pin(child.process.pid!, cpu);
    }
    for (let chunk = 0; chunk < chunks; chunk++) {
      if (chunk % 5 === 0) process.stderr.write(`request/reply: chunk ${chunk + 1}/${chunks}\n`);
      members[0]!.post({ type: "rtt", target: members[1]!.id, warmup: chunk === 0 ? warmup : 0, count: perChunk, size });
      const result = await members[0]!.next("rtt-result", 60_000);
      groupSamples.push(...result.samples);
      chunkP50Ms.group.push(summarize([...result.samples]).p50Ms);
      groupCpu += result.cpuMs;
      traffic = result.traffic ?? {};

      ping.post({ type: "rtt", target: "", warmup: chunk === 0 ? warmup : 0, count: perChunk, size });
      const rawResult = await ping.next("rtt-result", 60_000);
      rawSamples.push(...rawResult.samples);
      chunkP50Ms.raw.push(summarize([...rawResult.samples]).p50Ms);
      rawCpu += rawResult.cpuMs;
    }
  } finally {
    ping?.kill();
    echo.kill();
    await exitAll(members);
  }
  const group = summarize(groupSamples);
  const raw = summarize(rawSamples);
  return {
    runtime,
    placement,
    size,
    requests: groupSamples.length,
    chunks,
    group,
    raw,
    chunkP50Ms,
    groupCpuMsPerRequest: groupCpu / groupSamples.length,
    rawCpuMsPerRoundTrip: rawCpu / rawSamples.length,
    requesterTrafficPerRequest: traffic,
    p50Ratio: group.p50Ms / raw.p50Ms,
    p99Ratio: group.p99Ms / raw.p99Ms,
  };
}

// 4. Queue throughput: one producer, three consumers, `inFlight` messages outstanding.
async function measureQueue(seconds: number, inFlight: number, size: number): Promise<{
  consumers: number;
  inFlight: number;
  size: number;
  seconds: number;
  acked: number;
  failed: number;
  processed: number;
  perConsumer: number[];
  messagesPerSecond: number;
  /** The producer's traffic per message: datagrams and bytes each way, unicast protocol counters. */
  producerTrafficPerMessage: Readonly<Record<string, number>>;
}> {
  const members = await startMembers(4);
  const [producer, ...consumers] = members as [Child, ...Child[]];
  try {
    await joinAll(members, freshNetwork("bench-group"), {}, "q");
    await converged(members, 4, 30_000);
    for (const c of consumers) c.post({ type: "consume", queue: "work" });
    // The consumers announce their queues in heartbeats (every second by default).
    await sleep(2_500);
    process.stderr.write("queue: warm-up\n");
    producer.post({ type: "produce", queue: "work", seconds: 1, inFlight, size });
    await producer.next("produced", 60_000);
    const warm = await Promise.all(consumers.map(async (c) => (c.post({ type: "count" }), (await c.next("counted", 10_000)).processed)));
    if (warm.some((n) => n === 0)) process.stderr.write(`queue: a consumer got nothing in the warm-up (${warm.join(", ")})\n`);
    process.stderr.write(`queue: ${seconds} s\n`);
    producer.post({ type: "produce", queue: "work", seconds, inFlight, size });
    const produced = await producer.next("produced", seconds * 1000 + 60_000);
    if (produced.firstError !== undefined) process.stderr.write(`queue: ${produced.failed} failed, first: ${produced.firstError}\n`);
    const perConsumer = await Promise.all(consumers.map(async (c) => (c.post({ type: "count" }), (await c.next("counted", 10_000)).processed)));
    const processed = perConsumer.reduce((a, b) => a + b, 0);
    return { consumers: consumers.length, inFlight, size, seconds, acked: produced.acked, failed: produced.failed, processed, perConsumer, messagesPerSecond: processed / (produced.elapsedMs / 1000), producerTrafficPerMessage: produced.traffic ?? {} };
  } finally {
    await exitAll(members);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      members: { type: "string", default: "16" },
      trials: { type: "string", default: "3" },
      requests: { type: "string", default: "5000" },
      chunks: { type: "string", default: "10" },
      seconds: { type: "string", default: "5" },
      only: { type: "string" },
      jgroups: { type: "string" },
      runtime: { type: "string", default: "node" },
    },
  });
  const runtime = values.runtime;
  if (runtime !== "node" && runtime !== "bun") throw new Error(`--runtime is node or bun, not ${runtime}`);
  const bunVersion = runtime === "bun" ? execFileSync(bunPath, ["--version"], { encoding: "utf8" }).trim() : undefined;
  const only = values.only?.split(",");
  const want = (name: string) => only === undefined || only.includes(name);
  const { startedAt, load } = startRun();

  const convergence = want("convergence") ? await timed("convergence", 90_000, () => measureConvergence(Number(values.members), Number(values.trials))) : undefined;
  const crash = want("crash") ? await timed("crash detection", 90_000, () => measureCrashDetection(Number(values.trials))) : undefined;
  // Requester and responder on two cores, as members of a LAN group are on two machines; and on one core.
  const roundTrip = want("rtt") ? await timed("request/reply", 90_000, () => measureRoundTrip(Number(values.chunks), Number(values.requests), 64, "two cores", runtime)) : undefined;
  const roundTripOneCore = want("rtt") ? await timed("request/reply, one core", 90_000, () => measureRoundTrip(Number(values.chunks), Number(values.requests), 64, "one core", runtime)) : undefined;
  const queue = want("queue") ? await timed("queue", 60_000, () => measureQueue(Number(values.seconds), 1_000, 64)) : undefined;
  // The peer, in this same run: JGroups 2.12's unicast request/reply (../shared/peers/jgroups/run.sh).
  const jgroups = want("rtt") ? jgroupsFigures(values.jgroups, "rtt") : undefined;
  const jgroupsP50Ms = jgroups?.["unicast_msg_rtt_p50"] === undefined ? undefined : jgroups["unicast_msg_rtt_p50"] / 1000;
  // How the table and targets name the request/reply runtime and its raw baseline.
  const rawName = runtime === "node" ? "raw node:dgram ping-pong" : "raw Bun.udpSocket ping-pong";
  const onBun = runtime === "node" ? "" : ", Bun members";
  const results = only !== undefined ? undefined : runtime === "node" ? "group" : "group-bun";

  const summary = {
    benchmark: "group",
    date: new Date().toISOString(),
    machine: bunVersion === undefined ? machine(load) : { ...machine(load), bun: bunVersion },
    wallSeconds: (Date.now() - startedAt) / 1000,
    convergence,
    crashDetection: crash,
    requestReply: roundTrip,
    requestReplyOneCore: roundTripOneCore,
    queue,
    jgroups,
    failures,
    targets:
      roundTrip === undefined
        ? []
        : [
            { target: `request/reply p50 within 1.15× of ${rawName} (two cores${onBun})`, value: roundTrip.p50Ratio, goal: 1.15, met: roundTrip.p50Ratio <= 1.15 },
            { target: `request/reply p99 within 2.5× of raw (two cores${onBun})`, value: roundTrip.p99Ratio, goal: 2.5, met: roundTrip.p99Ratio <= 2.5 },
            {
              target: `requester CPU per request within 1.3× of raw per round trip (two cores${onBun})`,
              value: roundTrip.groupCpuMsPerRequest / roundTrip.rawCpuMsPerRoundTrip,
              goal: 1.3,
              met: roundTrip.groupCpuMsPerRequest / roundTrip.rawCpuMsPerRoundTrip <= 1.3,
            },
            ...(jgroupsP50Ms === undefined
              ? []
              : [{ target: `request/reply p50 no slower than JGroups 2.12's in the same run${onBun}`, value: roundTrip.group.p50Ms / jgroupsP50Ms, goal: 1, met: roundTrip.group.p50Ms <= jgroupsP50Ms }]),
          ],
  };
  if (results !== undefined) writeResults(results, summary);

  const ms = (x: number) => `${x < 10 ? x.toFixed(3) : Math.round(x).toLocaleString("en-US")} ms`;
  console.log(`\nGroups, members as separate Node processes on loopback multicast (${cpus().length} cores, Node ${process.version}, load average ${load.toFixed(2)} at start${bunVersion === undefined ? "" : `; request/reply members under Bun ${bunVersion}`})\n`);
  console.log("| measurement | result | reference |");
  console.log("| --- | ---: | --- |");
  if (convergence !== undefined) {
    console.log(`| ${convergence.members} members converge on one view (told to join at once) | median ${ms(convergence.medianMs)} (${convergence.trialsMs.map(ms).join(", ")}) | discoveryTimeoutMs ${convergence.discoveryTimeoutMs} ms; views on the way ${convergence.viewsPerTrial.join(", ")}; process start-up ${ms(convergence.startupMs)} not counted |`);
  }
  if (crash !== undefined) {
    const trials = crash.trials.map((t) => `${t.victim} ${ms(t.detectionMs)}`).join(", ");
    console.log(`| SIGKILL 1 of 5, until every survivor dropped it | median ${ms(crash.medianMs)} (${trials}) | failureTimeoutMs + verifyTimeoutMs = ${crash.failureTimeoutMs} + ${crash.verifyTimeoutMs} = ${crash.budgetMs} ms, heartbeat ${crash.heartbeatIntervalMs} ms |`);
  }
  for (const r of [roundTrip, roundTripOneCore]) {
    if (r === undefined) continue;
    const what = `${r.size} B, ${r.requests.toLocaleString("en-US")} sequential, ${r.placement}${onBun}`;
    const goal = r.placement === "two cores" ? ` (goal ≤ 1.15×: ${r.p50Ratio <= 1.15 ? "met" : "NOT met"})` : "";
    console.log(`| request/reply round trip, ${what}, p50 | ${ms(r.group.p50Ms)} | ${rawName} ${ms(r.raw.p50Ms)}: ${r.p50Ratio.toFixed(2)}×${goal} |`);
    console.log(`| request/reply round trip, ${what}, p99 | ${ms(r.group.p99Ms)} | ${rawName} ${ms(r.raw.p99Ms)}: ${r.p99Ratio.toFixed(2)}× |`);
    const t = r.requesterTrafficPerRequest;
    console.log(`| requester CPU per request, ${r.placement}${onBun} | ${ms(r.groupCpuMsPerRequest)} | raw ${ms(r.rawCpuMsPerRoundTrip)} per round trip (${(r.groupCpuMsPerRequest / r.rawCpuMsPerRoundTrip).toFixed(2)}×); requester datagrams per request: ${(t.datagramsSent ?? 0).toFixed(2)} sent, ${(t.datagramsReceived ?? 0).toFixed(2)} received |`);
  }
  if (jgroups !== undefined && roundTrip !== undefined && jgroupsP50Ms !== undefined) {
    console.log(`| JGroups 2.12 unicast request/reply, 64 B, this run, p50 / p99 | ${ms(jgroupsP50Ms)} / ${ms((jgroups["unicast_msg_rtt_p99"] ?? Number.NaN) / 1000)} | ours ${ms(roundTrip.group.p50Ms)}: ${(roundTrip.group.p50Ms / jgroupsP50Ms).toFixed(2)}× |`);
  }
  if (queue !== undefined) {
    console.log(`| queue, 1 producer → ${queue.consumers} consumers, ${queue.size} B, ${queue.inFlight.toLocaleString("en-US")} in flight | ${Math.round(queue.messagesPerSecond).toLocaleString("en-US")} msgs/s | processed ${queue.perConsumer.map((n) => n.toLocaleString("en-US")).join(" + ")}; failed ${queue.failed}; producer datagrams per message: ${(queue.producerTrafficPerMessage.datagramsSent ?? 0).toFixed(2)} sent, ${(queue.producerTrafficPerMessage.datagramsReceived ?? 0).toFixed(2)} received |`);
  }
  finishRun({
    load,
    wallSeconds: summary.wallSeconds,
    results,
    busyNote: "latencies and rates are pessimistic and noisy; compare with the raw baseline measured alongside.",
  });
}

// --- entry ---

const [mode, ...rest] = process.argv.slice(2);
if (mode === "--child") {
  const [role, ...args] = rest;
  if (role === "member") await runMember();
  else if (role === "raw-echo") await runRawEcho();
  else if (role === "raw-ping") await runRawPing(Number(args[0]));
  else throw new Error(`unknown child role ${role}`);
} else {
  await main();
}
