/**
 * The cluster benchmark: cluster channels as separate Node processes on loopback multicast (this file
 * forks itself, each member loading the built package). Measures
 *
 *  1. acknowledged puts/s: one writer (not the coordinator) of two members (as JGroups' figure is
 *     measured) and of three, 64 B values over a range of 10,000 keys; sequential (one put at a time:
 *     also its latency) and pipelined (64 and 1,024 in flight); and every member writing at once (its
 *     own range of keys, 1,024 in flight each), the writers' aggregate;
 *  2. lock + unlock pairs/s: one member (not the coordinator) of two and of three locks and releases one
 *     key, sequentially, uncontended;
 *     of both sequential measurements, also the CPU time the members' processes spent on one operation,
 *     in all: on a busy machine the latency is mostly waiting for a core, the CPU time much less so;
 *     and contended: all three members of a cluster lock, release and ask again for one key at once —
 *     the pairs/s of all, each member's share, and grants that went out of request order (first come,
 *     first served at the coordinator);
 *  3. failover: SIGKILL the coordinator while a member writes (one put at a time); the time from the
 *     kill to the first write acknowledged under the new coordinator, next to the failure detection's
 *     timeouts (the defaults, and fast ones) and to when the survivors installed the view without it;
 *  4. a joiner's time to ready: from creating the channel to `join()` resolving, with 1,000,000 entries
 *     of 100 B in the map (and with an empty map, the membership part alone), and the joiner's memory
 *     once ready (resident set, heap, the values' buffers outside the heap, and the resident set's peak).
 *
 * Writes bench/results/cluster.json and prints a markdown table, with the JGroups 2.12 figures measured
 * on the same machine next to ours.
 *
 *   npx tsx bench/cluster.ts [--trials 3] [--seconds 5] [--entries 1000000] [--only puts,locks,contended,failover,join]
 *                            [--members 2,3] [--in-flight 64,1024] [--jgroups-puts N --jgroups-locks N]
 *
 * `--only` runs some measurements and writes no JSON, as do `--members` and `--in-flight` (the numbers
 * of members of the puts and locks measurements, and the pipelined puts' windows; the last window is
 * the multi-writer one's). Members run on the built package (dist/, from
 * `npm run build`), as users run it; CLUSTER_BENCH_FROM=src runs them on the sources through tsx instead, and
 * CLUSTER_BENCH_DIST=path on another build (an older one kept to compare with, run alternately).
 */
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { absoluteNow, Child as ForkedChild, describe, exitAll, failures, finishRun, freshNetwork, type LatencySummary, loadLibrary, machine, memberOptions, median, type Network, serve, sleep, startRun, summarize, thousands, timed, type Timing, whenReady, writeResults } from "./lib.ts";

/**
 * JGroups 2.12 on this machine (../shared/peers/jgroups/run.sh, ONLY="rhm lock": rhm_nobundling_sync_puts
 * and lock_pairs): ReplicatedHashMap acknowledged puts/s, and lock + unlock pairs/s. The machine is shared
 * and noisy: pass the figures of a JGroups run made just before this one (--jgroups-puts, --jgroups-locks)
 * to compare within one run.
 */
const JGROUPS_EARLIER = { putsPerSecond: 2_700, lockPairsPerSecond: 2_900 } as const;
/** The failure detection timeouts of the failover measurement: the defaults, and fast ones. */
const DEFAULT_TIMING = { heartbeatIntervalMs: 1_000, failureTimeoutMs: 5_000, verifyTimeoutMs: 1_500 } as const;
const FAST_TIMING = { heartbeatIntervalMs: 200, failureTimeoutMs: 1_000, verifyTimeoutMs: 300 } as const;
const KEY_RANGE = 10_000;
/** The failure detection timeouts a failover measurement runs with. */
type FailureTiming = Required<Omit<Timing, "discoveryTimeoutMs">>;

// --- what the parent and its children say to each other (over Node's IPC channel) ---

interface Rate {
  readonly done: number;
  readonly failed: number;
  readonly elapsedMs: number;
  readonly perSecond: number;
  /** Per operation, sequential runs only. */
  readonly latency?: LatencySummary;
  readonly firstError?: string;
}

type ToChild =
  | { readonly type: "join"; readonly name: string; readonly network: Network; readonly timing: Timing; readonly weight: number }
  /** Puts to keys `${prefix}k0` … over KEY_RANGE keys. */
  | { readonly type: "puts"; readonly seconds: number; readonly inFlight: number; readonly size: number; readonly prefix: string }
  | { readonly type: "locks"; readonly seconds: number }
  /** Lock + unlock of one key, contended by every member, from `startAt` (wall clock) for `seconds`. */
  | { readonly type: "contend"; readonly startAt: number; readonly seconds: number }
  | { readonly type: "fill"; readonly entries: number; readonly size: number; readonly batch: number }
  /** Puts one at a time until "stop"; reports the first one acknowledged under another coordinator. */
  | { readonly type: "stream"; readonly size: number }
  | { readonly type: "stop" }
  /** The CPU time its process spent so far. */
  | { readonly type: "cpu" }
  | { readonly type: "exit" };

type FromChild =
  | { readonly type: "ready" }
  /** `joinMs`: from creating the channel to join() resolving; `stateMs`: from the first view with this member in it. */
  /** `cpuMs`: the CPU time the member's process spent meanwhile (a busy machine disturbs it far less than `joinMs`). */
  | { readonly type: "joined"; readonly id: string; readonly at: number; readonly joinMs: number; readonly stateMs: number; readonly cpuMs: number; readonly entries: number; readonly memory: JoinerMemory }
  | { readonly type: "view"; readonly at: number; readonly ids: readonly string[]; readonly coordinator: string }
  | { readonly type: "rate"; readonly rate: Rate }
  | { readonly type: "filled"; readonly entries: number; readonly elapsedMs: number }
  | { readonly type: "failover"; readonly at: number }
  | { readonly type: "streamed"; readonly acked: number; readonly failed: number; readonly firstError?: string }
  | { readonly type: "cpu"; readonly cpuMs: number }
  | { readonly type: "contended"; readonly grants: readonly Grant[]; readonly failed: number; readonly firstError?: string }
  | { readonly type: "failed"; readonly error: string };

/** One grant of a contended lock: when its lock() was called and resolved (wall clock, ms), and its fencing token (grants in order). */
interface Grant {
  readonly requestedAt: number;
  readonly grantedAt: number;
  readonly token: number;
}

/** A joiner's memory once ready, MB: as `process.memoryUsage()` tells it, and the peak resident set of its process. */
interface JoinerMemory {
  readonly rssMB: number;
  readonly heapUsedMB: number;
  /** Outside the heap: buffers (a map's values among them). */
  readonly externalMB: number;
  readonly peakRssMB: number;
}

function memoryNow(): JoinerMemory {
  const usage = process.memoryUsage();
  const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
  return { rssMB: mb(usage.rss), heapUsedMB: mb(usage.heapUsed), externalMB: mb(usage.external), peakRssMB: mb(process.resourceUsage().maxRSS * 1024) };
}

// --- the children ---

type Library = typeof import("../src/cluster/cluster-channel.ts") & typeof import("../src/adapters/node.ts");

/** A cluster member: joins when told, reports its views, writes, locks, fills or streams when told. */
async function runMember(): Promise<void> {
  const { ClusterChannel, createUdpTransport } = await loadLibrary<Library>(process.env.CLUSTER_BENCH_FROM === "src", async () => ({
    ...(await import("../src/cluster/cluster-channel.ts")),
    ...(await import("../src/adapters/node.ts")),
  }), process.env.CLUSTER_BENCH_DIST);
  const send = (message: FromChild) => process.send!(message);
  let channel: InstanceType<typeof ClusterChannel> | undefined;
  let streaming = false;

  /** `lanes` loops of `operation` for `seconds`; sequential runs (one lane) record each operation's latency. */
  const measure = async (seconds: number, lanes: number, operation: (n: number) => Promise<void>): Promise<Rate> => {
    const samples: number[] = [];
    let done = 0;
    let failed = 0;
    let firstError: string | undefined;
    let next = 0;
    const startedAt = performance.now();
    const endAt = startedAt + seconds * 1000;
    const lane = async () => {
      while (performance.now() < endAt) {
        const began = performance.now();
        try {
          await operation(next++);
          done++;
          if (lanes === 1) samples.push(performance.now() - began);
        } catch (error) {
          failed++;
          firstError ??= describe(error);
        }
      }
    };
    await Promise.all(Array.from({ length: lanes }, lane));
    const elapsedMs = performance.now() - startedAt;
    return {
      done,
      failed,
      elapsedMs,
      perSecond: done / (elapsedMs / 1000),
      ...(samples.length > 0 ? { latency: summarize(samples) } : {}),
      ...(firstError === undefined ? {} : { firstError }),
    };
  };

  serve<ToChild>({
    join: async (message: Extract<ToChild, { type: "join" }>) => {
      const began = performance.now();
      const cpuBefore = process.cpuUsage();
      let inView: number | undefined;
      const ch = new ClusterChannel({ ...memberOptions(message, createUdpTransport), weight: message.weight });
      channel = ch;
      ch.on("error", ({ error, stage }) => console.error(`${message.name}: ${stage}: ${error.message}`));
      ch.on("viewChange", ({ view }) => {
        inView ??= performance.now();
        send({ type: "view", at: absoluteNow(), ids: view.members.map((m) => m.id), coordinator: view.coordinator.id });
      });
      await ch.init();
      await ch.join({ timeoutMs: 120_000 });
      const joinedAt = performance.now();
      const cpu = process.cpuUsage(cpuBefore);
      send({ type: "joined", id: ch.id, at: absoluteNow(), joinMs: joinedAt - began, stateMs: joinedAt - (inView ?? began), cpuMs: (cpu.user + cpu.system) / 1000, entries: ch.map.size, memory: memoryNow() });
    },
    puts: async (message: Extract<ToChild, { type: "puts" }>) => {
      const map = channel!.map;
      const value = new Uint8Array(message.size).fill(7);
      const keys = Array.from({ length: KEY_RANGE }, (_, i) => `${message.prefix}k${i}`);
      send({ type: "rate", rate: await measure(message.seconds, message.inFlight, (n) => map.put(keys[n % KEY_RANGE]!, value).then(() => undefined)) });
    },
    locks: async (message: Extract<ToChild, { type: "locks" }>) => {
      const map = channel!.map;
      send({
        type: "rate",
        rate: await measure(message.seconds, 1, async () => {
          const lock = await map.lock("bench-lock");
          await lock.release();
        }),
      });
    },
    contend: async (message: Extract<ToChild, { type: "contend" }>) => {
      const map = channel!.map;
      const grants: Grant[] = [];
      let failed = 0;
      let firstError: string | undefined;
      await sleep(Math.max(0, message.startAt - absoluteNow()));
      const endAt = message.startAt + message.seconds * 1000;
      while (absoluteNow() < endAt) {
        const requestedAt = absoluteNow();
        try {
          const lock = await map.lock("contended-lock", { timeoutMs: 10_000 });
          grants.push({ requestedAt, grantedAt: absoluteNow(), token: lock.fencingToken });
          await lock.release();
        } catch (error) {
          failed++;
          firstError ??= describe(error);
        }
      }
      send({ type: "contended", grants, failed, ...(firstError === undefined ? {} : { firstError }) });
    },
    fill: async (message: Extract<ToChild, { type: "fill" }>) => {
      const map = channel!.map;
      const began = performance.now();
      for (let from = 0; from < message.entries; from += message.batch) {
        const count = Math.min(message.batch, message.entries - from);
        await map.putAll(
          Array.from({ length: count }, (_, i) => [`e${(from + i).toString().padStart(7, "0")}`, new Uint8Array(message.size).fill((from + i) & 0xff)] as const),
          { timeoutMs: 60_000 },
        );
      }
      send({ type: "filled", entries: map.size, elapsedMs: performance.now() - began });
    },
    stream: async (message: Extract<ToChild, { type: "stream" }>) => {
      const ch = channel!;
      const value = new Uint8Array(message.size).fill(3);
      const master = ch.getMaster()?.id;
      let reported = false;
      let acked = 0;
      let failed = 0;
      let firstError: string | undefined;
      streaming = true;
      for (let n = 0; streaming; n++) {
        try {
          await ch.map.put(`f${n % KEY_RANGE}`, value, { timeoutMs: 60_000 });
          acked++;
          // The first write acknowledged under another coordinator than the one the stream began with.
          if (!reported && ch.getMaster()?.id !== master) {
            reported = true;
            send({ type: "failover", at: absoluteNow() });
          }
        } catch (error) {
          failed++;
          firstError ??= describe(error);
        }
      }
      send({ type: "streamed", acked, failed, ...(firstError === undefined ? {} : { firstError }) });
    },
    stop: () => {
      streaming = false;
    },
    cpu: () => {
      const cpu = process.cpuUsage();
      send({ type: "cpu", cpuMs: (cpu.user + cpu.system) / 1000 });
    },
    exit: async () => {
      await channel?.shutDown().catch(() => undefined);
      process.exit(0);
    },
  });
}

// --- the parent ---

type Child = ForkedChild<ToChild, FromChild>;

async function startMembers(count: number): Promise<Child[]> {
  return whenReady(Array.from({ length: count }, () => new ForkedChild<ToChild, FromChild>(import.meta.filename, ["--child"])));
}

/**
 * Starts `weights.length` members on a fresh network, the first (the heaviest) first, so that the
 * coordinator is settled before the others come; resolves once all are in one view with the map ready.
 */
async function startCluster(weights: readonly number[], timing: Timing, prefix: string): Promise<{ members: Child[]; network: Network }> {
  const members = await startMembers(weights.length);
  const network = freshNetwork("bench-cluster");
  for (const [i, m] of members.entries()) {
    m.post({ type: "join", name: `${prefix}-${i}`, network, timing, weight: weights[i]! });
    await m.next("joined", 60_000);
  }
  const deadline = Date.now() + 30_000;
  while (!members.every((m) => m.latestView?.ids.length === weights.length)) {
    if (Date.now() > deadline) throw new Error(`no ${weights.length}-member view within 30 s`);
    await sleep(10);
  }
  return { members, network };
}

/** The CPU time the members' processes spent so far, in all. */
async function cpuOf(members: readonly Child[]): Promise<number> {
  for (const m of members) m.post({ type: "cpu" });
  const reports = await Promise.all(members.map((m) => m.next("cpu", 30_000)));
  return reports.reduce((sum, r) => sum + r.cpuMs, 0);
}

/**
 * A sequential run of `by` (the operation's rate and latency), with the CPU time every member spent
 * on one operation: steadier than the rate on a busy machine, where waiting for a core is most of
 * the latency.
 */
async function sequentialRun(members: readonly Child[], by: Child, message: ToChild, seconds: number): Promise<Rate & { readonly cpuUsPerOp: number }> {
  const before = await cpuOf(members);
  by.post(message);
  const rate = (await by.next("rate", seconds * 1000 + 60_000)).rate;
  const cpuMs = (await cpuOf(members)) - before;
  return { ...rate, cpuUsPerOp: (cpuMs * 1000) / Math.max(1, rate.done) };
}

type PutsResult = Awaited<ReturnType<typeof measurePuts>>;
type LocksResult = Awaited<ReturnType<typeof measureLocks>>;

/** One member is the coordinator; the others weigh nothing. */
function weightsOf(count: number): number[] {
  return Array.from({ length: count }, (_, i) => (i === 0 ? 10 : 0));
}

// 1. Acknowledged puts/s, one writer of `count` members (the coordinator is another one), and every member writing.
async function measurePuts(count: number, seconds: number, trials: number, size: number, windows: readonly number[]): Promise<{
  members: number;
  size: number;
  seconds: number;
  sequential: { trials: Array<Rate & { readonly cpuUsPerOp: number }>; medianPerSecond: number; medianP50Ms: number; medianP99Ms: number; medianCpuUsPerOp: number };
  pipelined: Array<{ inFlight: number; trials: Rate[]; medianPerSecond: number }>;
  /** Every member writing at once (its own keys), `inFlight` each: the writers' puts/s summed. */
  writers: { count: number; inFlight: number; trials: Array<{ perSecond: number; writers: Rate[] }>; medianPerSecond: number };
}> {
  const { members } = await startCluster(weightsOf(count), {}, "p");
  const writer = members[1]!;
  const writersInFlight = windows.at(-1)!;
  const sequential: Array<Rate & { readonly cpuUsPerOp: number }> = [];
  const pipelined = windows.map((inFlight) => ({ inFlight, trials: [] as Rate[] }));
  const writers: Array<{ perSecond: number; writers: Rate[] }> = [];
  const puts = async (by: Child, inFlight: number, prefix = "") => {
    by.post({ type: "puts", seconds, inFlight, size, prefix });
    return (await by.next("rate", seconds * 1000 + 60_000)).rate;
  };
  try {
    writer.post({ type: "puts", seconds: 1, inFlight: windows[0]!, size, prefix: "" });
    await writer.next("rate", 60_000);
    for (let trial = 0; trial < trials; trial++) {
      process.stderr.write(`puts: trial ${trial + 1}/${trials}\n`);
      sequential.push(await sequentialRun(members, writer, { type: "puts", seconds, inFlight: 1, size, prefix: "" }, seconds));
      for (const window of pipelined) window.trials.push(await puts(writer, window.inFlight));
      const rates = await Promise.all(members.map((m, i) => puts(m, writersInFlight, `w${i}-`)));
      writers.push({ perSecond: rates.reduce((sum, r) => sum + r.done, 0) / (Math.max(...rates.map((r) => r.elapsedMs)) / 1000), writers: rates });
    }
  } finally {
    await exitAll(members);
  }
  return {
    members: members.length,
    size,
    seconds,
    sequential: {
      trials: sequential,
      medianPerSecond: median(sequential.map((r) => r.perSecond)),
      medianP50Ms: median(sequential.map((r) => r.latency?.p50Ms ?? 0)),
      medianP99Ms: median(sequential.map((r) => r.latency?.p99Ms ?? 0)),
      medianCpuUsPerOp: median(sequential.map((r) => r.cpuUsPerOp)),
    },
    pipelined: pipelined.map((w) => ({ ...w, medianPerSecond: median(w.trials.map((r) => r.perSecond)) })),
    writers: { count: members.length, inFlight: writersInFlight, trials: writers, medianPerSecond: median(writers.map((w) => w.perSecond)) },
  };
}

// 2. Lock + unlock pairs/s, sequential, uncontended, by a member that is not the coordinator.
async function measureLocks(count: number, seconds: number, trials: number): Promise<{ members: number; trials: Array<Rate & { readonly cpuUsPerOp: number }>; medianPerSecond: number; medianP50Ms: number; medianP99Ms: number; medianCpuUsPerOp: number }> {
  const { members } = await startCluster(weightsOf(count), {}, "l");
  const locker = members[1]!;
  const rates: Array<Rate & { readonly cpuUsPerOp: number }> = [];
  try {
    locker.post({ type: "locks", seconds: 1 });
    await locker.next("rate", 60_000);
    for (let trial = 0; trial < trials; trial++) {
      process.stderr.write(`locks: trial ${trial + 1}/${trials}\n`);
      rates.push(await sequentialRun(members, locker, { type: "locks", seconds }, seconds));
    }
  } finally {
    await exitAll(members);
  }
  return {
    members: members.length,
    trials: rates,
    medianPerSecond: median(rates.map((r) => r.perSecond)),
    medianP50Ms: median(rates.map((r) => r.latency?.p50Ms ?? 0)),
    medianP99Ms: median(rates.map((r) => r.latency?.p99Ms ?? 0)),
    medianCpuUsPerOp: median(rates.map((r) => r.cpuUsPerOp)),
  };
}

/**
 * 2b. Lock + unlock pairs/s of one key that all `count` members want at once (each locks, releases and
 * asks again at once): the pairs/s of all together, each member's share, and how fair the grants were.
 * Grants go first come, first served at the coordinator; a grant "out of request order" went to a member
 * that asked later — by more than `ORDER_SLACK_MS` (wall clock, across processes), more than the trip
 * of a request to the coordinator — than another member still waiting.
 */
const ORDER_SLACK_MS = 1;

async function measureContended(count: number, seconds: number, trials: number) {
  const { members } = await startCluster(weightsOf(count), {}, "c");
  const results: Array<{ perSecond: number; grants: number; failed: number; shares: number[]; outOfOrder: number; longestWaitMs: number }> = [];
  try {
    for (let trial = 0; trial < trials; trial++) {
      process.stderr.write(`contended locks, ${count} members: trial ${trial + 1}/${trials}\n`);
      const startAt = absoluteNow() + 200;
      for (const m of members) m.post({ type: "contend", startAt, seconds });
      const reports = await Promise.all(members.map((m) => m.next("contended", seconds * 1000 + 60_000)));
      const grants = reports.flatMap((r, member) => r.grants.map((g) => ({ ...g, member })));
      for (const r of reports) if (r.firstError !== undefined) process.stderr.write(`contended locks: ${r.failed} failed, first: ${r.firstError}\n`);
      grants.sort((a, b) => a.token - b.token);
      // Out of request order: a grant to a member that asked later than one that is granted after it.
      let outOfOrder = 0;
      for (let i = 0; i < grants.length; i++) {
        const g = grants[i]!;
        for (let j = i + 1; j < grants.length && j < i + 4 * count; j++) {
          const later = grants[j]!;
          if (later.member !== g.member && later.requestedAt < g.requestedAt - ORDER_SLACK_MS) {
            outOfOrder++;
            break;
          }
        }
      }
      const wallMs = Math.max(...grants.map((g) => g.grantedAt)) - startAt;
      results.push({
        perSecond: grants.length / (wallMs / 1000),
        grants: grants.length,
        failed: reports.reduce((sum, r) => sum + r.failed, 0),
        shares: reports.map((r) => r.grants.length / Math.max(1, grants.length)),
        outOfOrder,
        longestWaitMs: Math.max(...grants.map((g) => g.grantedAt - g.requestedAt)),
      });
    }
  } finally {
    await exitAll(members);
  }
  const best = (f: (r: (typeof results)[number]) => number) => median(results.map(f));
  return { members: count, seconds, trials: results, medianPerSecond: best((r) => r.perSecond), medianOutOfOrder: best((r) => r.outOfOrder), medianLongestWaitMs: best((r) => r.longestWaitMs) };
}

interface FailoverTrial {
  /** From the kill to the first write acknowledged under the new coordinator. */
  readonly firstWriteMs: number;
  /** From the kill to the last survivor installing the view without the dead member. */
  readonly viewMs: number;
  readonly acked: number;
  readonly failed: number;
}

// 3. Failover: three members, SIGKILL the coordinator while a third member writes one put at a time.
async function measureFailover(timing: FailureTiming, trials: number, size: number): Promise<FailureTiming & { budgetMs: number; trials: FailoverTrial[]; medianFirstWriteMs: number; medianViewMs: number }> {
  const results: FailoverTrial[] = [];
  for (let trial = 0; trial < trials; trial++) {
    process.stderr.write(`failover (failure ${timing.failureTimeoutMs} ms + verify ${timing.verifyTimeoutMs} ms): trial ${trial + 1}/${trials}\n`);
    const { members } = await startCluster([10, 5, 0], timing, "f");
    const [victim, successor, writer] = members as [Child, Child, Child];
    try {
      writer.post({ type: "stream", size });
      // A moment of steady writing, and a kill at a random point of the heartbeat cycle.
      await sleep(1_000 + Math.random() * timing.heartbeatIntervalMs);
      const killedAt = absoluteNow();
      victim.kill();
      const failover = await writer.next("failover", timing.failureTimeoutMs + timing.verifyTimeoutMs + 30_000);
      writer.post({ type: "stop" });
      const streamed = await writer.next("streamed", 30_000);
      const dropped = [successor, writer].map((m) => m.views.find((v) => v.at > killedAt && !v.ids.includes(victim.id))?.at ?? Number.NaN);
      results.push({ firstWriteMs: failover.at - killedAt, viewMs: Math.max(...dropped) - killedAt, acked: streamed.acked, failed: streamed.failed });
      if (streamed.failed > 0) process.stderr.write(`failover: ${streamed.failed} writes failed, first: ${streamed.firstError}\n`);
    } finally {
      await exitAll(members);
    }
  }
  return {
    ...timing,
    budgetMs: timing.failureTimeoutMs + timing.verifyTimeoutMs,
    trials: results,
    medianFirstWriteMs: median(results.map((r) => r.firstWriteMs)),
    medianViewMs: median(results.map((r) => r.viewMs)),
  };
}

interface JoinTrial {
  readonly entries: number;
  readonly joinMs: number;
  readonly stateMs: number;
  /** The joiner's CPU time meanwhile. */
  readonly cpuMs: number;
  /** The joiner's, once ready. */
  readonly memory: JoinerMemory;
}

// 4. A joiner's time to ready, with `entries` entries of `size` bytes in a two-member cluster, and with an empty map.
async function measureJoin(entries: number, size: number, trials: number): Promise<{
  entries: number;
  size: number;
  fillMs: number;
  empty: { trials: JoinTrial[]; medianJoinMs: number; medianRssMB: number };
  full: { trials: JoinTrial[]; medianJoinMs: number; medianStateMs: number; medianCpuMs: number; medianRssMB: number; medianHeapUsedMB: number; medianExternalMB: number; medianPeakRssMB: number };
}> {
  const { members, network } = await startCluster([10, 0], {}, "j");
  const empty: JoinTrial[] = [];
  const full: JoinTrial[] = [];
  let fillMs = 0;
  const joinOnce = async (into: JoinTrial[], name: string) => {
    const [joiner] = await startMembers(1);
    try {
      joiner!.post({ type: "join", name, network, timing: {}, weight: 0 });
      const joined = await joiner!.next("joined", 120_000);
      into.push({ entries: joined.entries, joinMs: joined.joinMs, stateMs: joined.stateMs, cpuMs: joined.cpuMs, memory: joined.memory });
    } finally {
      await exitAll([joiner!]);
      // Let the cluster drop it (a goodbye) before the next one comes.
      await sleep(500);
    }
  };
  try {
    for (let trial = 0; trial < trials; trial++) {
      process.stderr.write(`join, empty map: trial ${trial + 1}/${trials}\n`);
      await joinOnce(empty, `empty-${trial}`);
    }
    process.stderr.write(`join: filling ${entries.toLocaleString("en-US")} entries\n`);
    // An atomic batch travels in one datagram: 250 entries of 100 B (about 150 B each, encoded) fit.
    members[1]!.post({ type: "fill", entries, size, batch: 250 });
    const filled = await members[1]!.next("filled", 300_000);
    fillMs = filled.elapsedMs;
    if (filled.entries !== entries) throw new Error(`the map holds ${filled.entries} entries, not ${entries}`);
    for (let trial = 0; trial < trials; trial++) {
      process.stderr.write(`join, ${entries.toLocaleString("en-US")} entries: trial ${trial + 1}/${trials}\n`);
      await joinOnce(full, `full-${trial}`);
      const got = full.at(-1)!.entries;
      if (got !== entries) throw new Error(`the joiner was ready with ${got} entries, not ${entries}`);
    }
  } finally {
    await exitAll(members);
  }
  return {
    entries,
    size,
    fillMs,
    empty: { trials: empty, medianJoinMs: median(empty.map((t) => t.joinMs)), medianRssMB: median(empty.map((t) => t.memory.rssMB)) },
    full: {
      trials: full,
      medianJoinMs: median(full.map((t) => t.joinMs)),
      medianStateMs: median(full.map((t) => t.stateMs)),
      medianCpuMs: median(full.map((t) => t.cpuMs)),
      medianRssMB: median(full.map((t) => t.memory.rssMB)),
      medianHeapUsedMB: median(full.map((t) => t.memory.heapUsedMB)),
      medianExternalMB: median(full.map((t) => t.memory.externalMB)),
      medianPeakRssMB: median(full.map((t) => t.memory.peakRssMB)),
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      trials: { type: "string", default: "3" },
      seconds: { type: "string", default: "5" },
      entries: { type: "string", default: "1000000" },
      only: { type: "string" },
      members: { type: "string", default: "2,3" },
      "in-flight": { type: "string", default: "64,1024" },
      "jgroups-puts": { type: "string" },
      "jgroups-locks": { type: "string" },
    },
  });
  const trials = Number(values.trials);
  const seconds = Number(values.seconds);
  const only = values.only?.split(",");
  const counts = values.members.split(",").map(Number);
  const windows = values["in-flight"].split(",").map(Number);
  if (!counts.every((n) => Number.isInteger(n) && n >= 2)) throw new Error("--members: numbers of members, 2 or more each (2,3)");
  if (!windows.every((n) => Number.isInteger(n) && n >= 1)) throw new Error("--in-flight: puts in flight, 1 or more each (64,1024)");
  const fullRun = only === undefined && values.members === "2,3" && values["in-flight"] === "64,1024";
  const want = (name: string) => only === undefined || only.includes(name);
  const sameRun = values["jgroups-puts"] !== undefined && values["jgroups-locks"] !== undefined;
  const JGROUPS = sameRun ? { putsPerSecond: Number(values["jgroups-puts"]), lockPairsPerSecond: Number(values["jgroups-locks"]) } : JGROUPS_EARLIER;
  if ((values["jgroups-puts"] === undefined) !== (values["jgroups-locks"] === undefined)) throw new Error("--jgroups-puts and --jgroups-locks go together");
  if (!(JGROUPS.putsPerSecond > 0 && JGROUPS.lockPairsPerSecond > 0)) throw new Error("--jgroups-puts and --jgroups-locks must be positive rates (puts/s, pairs/s)");
  const { startedAt, load } = startRun();

  const puts: PutsResult[] = [];
  const locks: LocksResult[] = [];
  for (const count of counts) {
    const p = want("puts") ? await timed(`puts, ${count} members`, 30_000 + trials * seconds * (windows.length + 2) * 1_000 + 60_000, () => measurePuts(count, seconds, trials, 64, windows)) : undefined;
    if (p !== undefined) puts.push(p);
    const l = want("locks") ? await timed(`locks, ${count} members`, 30_000 + trials * seconds * 1_000 + 60_000, () => measureLocks(count, seconds, trials)) : undefined;
    if (l !== undefined) locks.push(l);
  }
  const contended = want("contended") ? await timed("contended locks", 30_000 + trials * (seconds + 5) * 1_000 + 60_000, () => measureContended(3, seconds, trials)) : undefined;
  const failoverFast = want("failover") ? await timed("failover, fast timeouts", 60_000 * trials, () => measureFailover(FAST_TIMING, trials, 64)) : undefined;
  const failoverDefault = want("failover") ? await timed("failover, default timeouts", 60_000 * trials, () => measureFailover(DEFAULT_TIMING, trials, 64)) : undefined;
  const joiner = want("join") ? await timed("join", 600_000, () => measureJoin(Number(values.entries), 100, trials)) : undefined;

  const summary = {
    benchmark: "cluster",
    date: new Date().toISOString(),
    machine: machine(load),
    wallSeconds: (Date.now() - startedAt) / 1000,
    trials,
    reference: {
      jgroups: sameRun ? "2.12, same machine, measured just before this run" : "2.12, same machine, an earlier run",
      ...JGROUPS,
      // By the number of members of our cluster (JGroups' figures are of two).
      ratios: Object.fromEntries(
        [2, 3].map((count) => {
          const p = puts.find((r) => r.members === count);
          const l = locks.find((r) => r.members === count);
          return [
            `members${count}`,
            {
              sequentialPuts: p === undefined ? undefined : p.sequential.medianPerSecond / JGROUPS.putsPerSecond,
              pipelinedPuts: p === undefined ? undefined : p.pipelined[0]!.medianPerSecond / JGROUPS.putsPerSecond,
              lockPairs: l === undefined ? undefined : l.medianPerSecond / JGROUPS.lockPairsPerSecond,
            },
          ];
        }),
      ),
    },
    puts,
    locks,
    contended,
    failover: { fast: failoverFast, default: failoverDefault },
    join: joiner,
    failures,
  };
  if (fullRun) writeResults("cluster", summary);

  const ms = (x: number) => `${x < 10 ? x.toFixed(2) : Math.round(x).toLocaleString("en-US")} ms`;
  const rate = thousands;
  const us = (x: number) => `${Math.round(x).toLocaleString("en-US")} µs`;
  const each = (values: readonly number[], format: (x: number) => string) => values.map(format).join(", ");
  console.log(`\nCluster channels, members as separate Node processes on loopback multicast (${cpus().length} cores, Node ${process.version}, load average ${load.toFixed(2)} at start; medians of ${trials} trials)\n`);
  console.log("| measurement | result | reference |");
  console.log("| --- | ---: | --- |");
  for (const p of puts) {
    const seq = p.sequential;
    console.log(`| acknowledged puts, 1 writer of ${p.members} members, ${p.size} B, one at a time | ${rate(seq.medianPerSecond)} puts/s (${each(seq.trials.map((r) => r.perSecond), rate)}); p50 ${ms(seq.medianP50Ms)}, p99 ${ms(seq.medianP99Ms)}; CPU ${us(seq.medianCpuUsPerOp)} per put (all members) | JGroups 2.12 replicated map: ${rate(JGROUPS.putsPerSecond)} puts/s (× ${(seq.medianPerSecond / JGROUPS.putsPerSecond).toFixed(2)}) |`);
    for (const pip of p.pipelined) {
      console.log(`| acknowledged puts, 1 writer of ${p.members} members, ${p.size} B, ${pip.inFlight} in flight | ${rate(pip.medianPerSecond)} puts/s (${each(pip.trials.map((r) => r.perSecond), rate)}) | JGroups 2.12 replicated map: ${rate(JGROUPS.putsPerSecond)} puts/s (× ${(pip.medianPerSecond / JGROUPS.putsPerSecond).toFixed(2)}) |`);
    }
    const w = p.writers;
    console.log(`| acknowledged puts, all ${w.count} members writing at once (own keys), ${p.size} B, ${w.inFlight} in flight each | ${rate(w.medianPerSecond)} puts/s in all (${each(w.trials.map((t) => t.perSecond), rate)}) | 1 writer, ${w.inFlight} in flight: ${rate(p.pipelined.at(-1)!.medianPerSecond)} puts/s |`);
  }
  for (const l of locks) {
    console.log(`| lock + unlock pairs, one at a time, uncontended, ${l.members} members | ${rate(l.medianPerSecond)} pairs/s (${each(l.trials.map((r) => r.perSecond), rate)}); p50 ${ms(l.medianP50Ms)}, p99 ${ms(l.medianP99Ms)} per pair; CPU ${us(l.medianCpuUsPerOp)} per pair (all members) | JGroups 2.12 locks: ${rate(JGROUPS.lockPairsPerSecond)} pairs/s (× ${(l.medianPerSecond / JGROUPS.lockPairsPerSecond).toFixed(2)}) |`);
  }
  if (contended !== undefined) {
    const c = contended;
    const shares = c.trials.map((t) => t.shares.map((s) => `${Math.round(s * 100)} %`).join("/")).join("; ");
    console.log(
      `| lock + unlock pairs of one key, all ${c.members} members contending | ${rate(c.medianPerSecond)} pairs/s in all (${each(c.trials.map((t) => t.perSecond), rate)}); shares per member ${shares} | grants out of request order (by > ${ORDER_SLACK_MS} ms): ${each(c.trials.map((t) => t.outOfOrder), String)} of ${each(c.trials.map((t) => t.grants), String)}; longest wait ${ms(c.medianLongestWaitMs)} |`,
    );
  }
  for (const f of [failoverFast, failoverDefault]) {
    if (f === undefined) continue;
    console.log(
      `| SIGKILL the coordinator (3 members) → first write acknowledged by the new one | ${ms(f.medianFirstWriteMs)} (${each(f.trials.map((t) => t.firstWriteMs), ms)}) | failureTimeoutMs + verifyTimeoutMs = ${f.failureTimeoutMs} + ${f.verifyTimeoutMs} = ${f.budgetMs} ms, heartbeat ${f.heartbeatIntervalMs} ms; view without it after ${ms(f.medianViewMs)}; failed writes ${f.trials.reduce((a, t) => a + t.failed, 0)} |`,
    );
  }
  if (joiner !== undefined) {
    const { full, empty } = joiner;
    const mb = (x: number) => `${Math.round(x).toLocaleString("en-US")} MB`;
    console.log(`| a joiner ready (join() resolved), ${full.trials[0]?.entries.toLocaleString("en-US")} entries of ${joiner.size} B | ${ms(full.medianJoinMs)} (${each(full.trials.map((t) => t.joinMs), ms)}); the map's transfer ${ms(full.medianStateMs)}; the joiner's CPU time ${ms(full.medianCpuMs)} | with an empty map: ${ms(empty.medianJoinMs)} (discovery and view) |`);
    console.log(
      `| the joiner's memory once ready, ${full.trials[0]?.entries.toLocaleString("en-US")} entries of ${joiner.size} B | resident ${mb(full.medianRssMB)} (peak ${mb(full.medianPeakRssMB)}); heap used ${mb(full.medianHeapUsedMB)}, buffers outside the heap ${mb(full.medianExternalMB)} | with an empty map: resident ${mb(empty.medianRssMB)} |`,
    );
  }
  finishRun({ load, wallSeconds: summary.wallSeconds, results: fullRun ? "cluster" : undefined, busyNote: "rates are pessimistic and noisy." });
}

// --- entry ---

if (process.argv[2] === "--child") await runMember();
else await main();
