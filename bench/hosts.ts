/**
 * Groups at scale across hosts with network stacks of their own: one member a Linux network namespace,
 * all on one bridge (test/hosts/host-network.ts; needs root), each a Node process (this file forked
 * through tsx into the namespace, running the built package). For each group size (16 and 32):
 *
 *  1. views: every member told to join at once, until all installed one view of all (the default
 *     discoveryTimeoutMs, 1 s, is part of it);
 *  2. throughput: one sender of 1 KiB messages, as fast as flow control lets it, to every other member,
 *     next to the same with 3 members in the same run (rounds interleaved);
 *  3. NACKs and retransmissions per lost datagram at 1 % loss, one 1 KiB message a datagram every
 *     2 ms timer: lost on the sender's link (every receiver misses the same datagrams: what NACK
 *     suppression is for), and on every receiver's link (each misses its own). Lost datagrams are all
 *     the kernel dropped, heartbeats and NACKs among them; and one receiver's link cut for a second
 *     mid-stream (a burst of losses): retransmissions per message it missed;
 *  4. one receiver at 20 % loss: the others' throughput next to a lossless stream (rounds alternate), and how far they got
 *     ahead of it next to the sender's retransmit buffer (which bounds it: 4 flow-control windows);
 *  5. crash detection: SIGKILL one member, until every survivor installed a view without it.
 *
 * Loss is set in the kernel (netem, else iptables' random drop, where the kernel and tools allow) and
 * counted there; otherwise (or with `--loss-in process`) in the receiving members (`withLoss`), which
 * cannot lose on the sender's link. Writes bench/results/hosts.json and prints a table.
 *
 *   npx tsx bench/hosts.ts [--sizes 16,32] [--trials 2] [--rounds 2] [--seconds 3] [--nack-seconds 15] [--loss-in kernel|process]
 *
 * Members run on the built package (dist/, from `npm run build`); HOSTS_BENCH_FROM=src runs them on
 * the sources through tsx instead.
 */
import { parseArgs } from "node:util";
import { DEFAULT_NACK_OPTIONS } from "../src/reliable/nack/nack-protocol.ts";
import { BUFFER_WINDOWS } from "../src/reliable/nack/send-window.ts";
import type { RandomSource } from "../src/transport/clock.ts";
import { type Host, HostNetwork, hostNetworkUnsupported } from "../test/hosts/host-network.ts";
import { absoluteNow, Child as ForkedChild, exitAll, failures, finishRun, freshNetwork, loadLibrary, machine, median, memberOptions, type Network, printTargets, serve, sleep, startRun, timed, type Timing, whenReady, writeResults } from "./lib.ts";

// --- what the parent and its children say to each other (over Node's IPC channel) ---

/** Counters of one stream at one member: what it delivered, its protocol's counters, its CPU time. */
interface StreamReport {
  readonly received: number;
  readonly firstAt: number;
  readonly lastAt: number;
  readonly cpuMs: number;
  /** Protocol and datagram counters that moved since the stream began. */
  readonly counters: Readonly<Record<string, number>>;
  /** Datagrams dropped in this process (`--loss-in process`). */
  readonly lostInProcess: number;
}

type ToChild =
  | { readonly type: "join"; readonly name: string; readonly network: Network; readonly timing: Timing; readonly address: string; readonly receiveLoss: number }
  | { readonly type: "leave" }
  /** Start a stream: count deliveries and counters from now on. */
  | { readonly type: "begin" }
  /** Broadcast `size`-byte messages for `seconds` (one a `paceMs` timer, or as fast as the window lets), then wait until every receiver has them. */
  | { readonly type: "send"; readonly seconds: number; readonly size: number; readonly paceMs?: number }
  | { readonly type: "report" }
  | { readonly type: "exit" };

type FromChild =
  | { readonly type: "ready" }
  | { readonly type: "joined"; readonly id: string; readonly at: number }
  | { readonly type: "view"; readonly at: number; readonly key: string; readonly ids: readonly string[]; readonly coordinator: string }
  | { readonly type: "left" }
  | { readonly type: "begun" }
  | { readonly type: "sent"; readonly count: number; readonly sendMs: number }
  | ({ readonly type: "report" } & StreamReport)
  | { readonly type: "failed"; readonly error: string };

const TOPIC = "stream";

// --- the children ---

type Library = typeof import("../src/group/group-channel.ts") & typeof import("../src/adapters/node.ts");
type Testing = typeof import("../src/transport/lossy-transport.ts");

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/** Counters of `after` that moved since `before`. */
function delta(before: Readonly<Record<string, unknown>>, after: Readonly<Record<string, unknown>>): Record<string, number> {
  const moved: Record<string, number> = {};
  for (const [key, value] of Object.entries(after)) {
    const previous = before[key];
    if (typeof value === "number" && typeof previous === "number" && value !== previous) moved[key] = value - previous;
  }
  return moved;
}

/** A member in its namespace: joins when told, counts a stream's deliveries, sends one when told. */
async function runMember(): Promise<void> {
  const fromSources = process.env.HOSTS_BENCH_FROM === "src";
  const { GroupChannel, createUdpTransport } = await loadLibrary<Library>(fromSources, async () => ({
    ...(await import("../src/group/group-channel.ts")),
    ...(await import("../src/adapters/node.ts")),
  }));
  // Paths in variables: the type checker must not require dist/ to exist.
  const testing = "../dist/testing.js";
  const { withLoss } = fromSources ? await import("../src/transport/lossy-transport.ts") : ((await import(testing)) as Testing);
  const send = (message: FromChild) => process.send!(message);
  let channel: InstanceType<typeof GroupChannel> | undefined;
  let lost = 0;
  // Each draw below the loss drops a datagram (see withLoss): counting them counts the losses.
  const countingRandom = (loss: number): RandomSource => ({
    next() {
      const draw = Math.random();
      if (draw < loss) lost++;
      return draw;
    },
    nextInt: (bound) => Math.floor(Math.random() * bound),
    fill: (bytes) => crypto.getRandomValues(bytes),
  });

  let received = 0;
  let firstAt = 0;
  let lastAt = 0;
  let start = { cpuMs: 0, lost: 0, counters: {} as Record<string, unknown> };
  const counters = () => ({ ...channel!.stats.protocol, ...channel!.stats.network });

  serve<ToChild>({
    join: async (message: Extract<ToChild, { type: "join" }>) => {
      const transport = message.receiveLoss > 0 ? withLoss(createUdpTransport, { receiveLoss: message.receiveLoss, random: countingRandom(message.receiveLoss) }) : createUdpTransport;
      const options = memberOptions(message, transport);
      const ch = new GroupChannel({ ...options, network: { ...options.network, interface: message.address }, loopback: false });
      channel = ch;
      ch.on("error", ({ error, stage }) => console.error(`${message.name}: ${stage}: ${error.message}`));
      ch.on("viewChange", ({ view }) =>
        send({ type: "view", at: absoluteNow(), key: `${view.id.installer}/${view.id.counter}`, ids: view.members.map((m) => m.id), coordinator: view.coordinator.id }),
      );
      ch.onTopic(TOPIC, () => {
        const at = absoluteNow();
        if (received++ === 0) firstAt = at;
        lastAt = at;
      });
      await ch.join({ timeoutMs: 60_000 });
      send({ type: "joined", id: ch.id, at: absoluteNow() });
    },
    leave: async () => {
      await channel?.shutDown();
      channel = undefined;
      send({ type: "left" });
    },
    begin: () => {
      received = 0;
      firstAt = 0;
      lastAt = 0;
      start = { cpuMs: cpuMs(), lost, counters: counters() };
      send({ type: "begun" });
    },
    send: async (message: Extract<ToChild, { type: "send" }>) => {
      const ch = channel!;
      const startedAt = absoluteNow();
      const endAt = startedAt + message.seconds * 1000;
      let count = 0;
      const payload = () => new Uint8Array(message.size).fill(count & 0xff);
      if (message.paceMs === undefined) {
        // As blaze perf: bursts, awaiting only when the flow-control window is full, yielding between them.
        while (absoluteNow() < endAt) {
          let last: Promise<void> | undefined;
          for (let i = 0; i < 256; i++, count++) last = ch.broadcast(TOPIC, payload());
          await last;
          await new Promise((resolve) => setImmediate(resolve));
        }
      } else {
        // Paced: one message a timer tick, so that each travels in a datagram of its own.
        for (; absoluteNow() < endAt; count++) {
          void ch.broadcast(TOPIC, payload());
          await sleep(message.paceMs);
        }
      }
      const sendMs = absoluteNow() - startedAt;
      // Every receiver has acknowledged every message: the stream is delivered everywhere.
      const deadline = Date.now() + 120_000;
      while (ch.stats.protocol.unstable > 0 || ch.stats.queued > 0) {
        if (Date.now() > deadline) throw new Error(`the stream was not delivered everywhere within 120 s (${ch.stats.protocol.unstable} unacknowledged)`);
        await sleep(5);
      }
      send({ type: "sent", count, sendMs });
    },
    report: () => {
      send({ type: "report", received, firstAt, lastAt, cpuMs: cpuMs() - start.cpuMs, counters: delta(start.counters, counters()), lostInProcess: lost - start.lost });
    },
    exit: async () => {
      await channel?.shutDown().catch(() => undefined);
      process.exit(0);
    },
  });
}

// --- the parent ---

type Child = ForkedChild<ToChild, FromChild>;

/** A member of `host`; `receiveLoss` is set in the member at each join (in-process loss). */
class Member {
  readonly child: Child;
  receiveLoss = 0;

  constructor(readonly host: Host) {
    this.child = new ForkedChild<ToChild, FromChild>(import.meta.filename, ["--child"], process.execArgv, host.within);
  }

  report(): Promise<Extract<FromChild, { type: "report" }>> {
    this.child.post({ type: "report" });
    return this.child.next("report", 30_000);
  }
}

const DISCOVERY_TIMEOUT_MS = 1_000;
/** The paced streams' one message a timer of this many ms: a load 32 processes on two cores keep up with. */
const PACE_MS = 2;
/**
 * How far ahead of its slowest receiver's deliveries a sender may run: what its retransmit buffer holds
 * while gaps are repaired (flow control proper counts what was received, gaps or not).
 */
const BUFFER_BYTES = BUFFER_WINDOWS * DEFAULT_NACK_OPTIONS.windowBytes;
const KIB = 1024;
const MB = 1_000_000;

/** Until every member's latest view is the same one of them all; resolves with that view's key. */
async function converged(members: readonly Member[], timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = members.map((m) => m.child.latestView);
    const key = views[0]?.key;
    if (key !== undefined && views.every((v) => v?.key === key && v.ids.length === members.length)) return key;
    if (Date.now() > deadline) throw new Error(`no common ${members.length}-member view within ${timeoutMs} ms: ${views.map((v) => `${v?.key} (${v?.ids.length})`).join(", ")}`);
    await sleep(10);
  }
}

/** Tells `members` to join a fresh group at once; resolves when they agree on one view of them all. */
async function joinAll(members: readonly Member[]): Promise<string> {
  const network = freshNetwork("bench-hosts");
  members.forEach((m, i) => m.child.post({ type: "join", name: `m${i}`, network, timing: {}, address: m.host.address, receiveLoss: m.receiveLoss }));
  await Promise.all(members.map((m) => m.child.next("joined", 60_000)));
  return converged(members, 60_000);
}

async function leaveAll(members: readonly Member[]): Promise<void> {
  for (const m of members) m.child.post({ type: "leave" });
  await Promise.all(members.map((m) => m.child.next("left", 30_000)));
  for (const m of members) m.child.views.length = 0;
}

// 1. Views: `trials` times, every member told to join at once, until all installed one view of all.
async function measureViews(members: readonly Member[], trials: number) {
  const trialsMs: number[] = [];
  const viewsPerTrial: number[] = [];
  for (let trial = 0; trial < trials; trial++) {
    process.stderr.write(`views: ${members.length} members, trial ${trial + 1}/${trials}\n`);
    const goAt = absoluteNow();
    const key = await joinAll(members);
    trialsMs.push(Math.max(...members.map((m) => m.child.views.find((v) => v.key === key)!.at)) - goAt);
    viewsPerTrial.push(new Set(members.flatMap((m) => m.child.views.map((v) => v.key))).size);
    await leaveAll(members);
  }
  const medianMs = median(trialsMs);
  return { members: members.length, discoveryTimeoutMs: DISCOVERY_TIMEOUT_MS, trialsMs, viewsPerTrial, medianMs, afterDiscoveryMs: medianMs - DISCOVERY_TIMEOUT_MS };
}

interface Stream {
  /** When the sender was told to start. */
  readonly goAt: number;
  readonly receivers: number;
  readonly sent: number;
  readonly sendMs: number;
  /** The slowest receiver's delivered messages per second, from the start to its last delivery. */
  readonly messagesPerSecond: number;
  readonly megabytesPerSecond: number;
  /** Every receiver got every message. */
  readonly complete: boolean;
  readonly receiverCpuUsPerMessage: number;
  readonly senderCpuUsPerMessage: number;
  /** Datagrams the receivers' kernels dropped for want of socket buffer room (all receivers). */
  readonly receiveBufferDrops: number;
  readonly sender: StreamReport;
  readonly receiverReports: readonly StreamReport[];
}

/** A receiver's delivered messages per second, from the stream's start to its last delivery. */
const rateOf = (report: StreamReport, goAt: number) => report.received / ((report.lastAt - goAt) / 1000);

/**
 * One stream from `members[0]` to the others, of `size`-byte messages for `seconds` (paced or not);
 * `during` runs while it lasts (it gets the start time).
 */
async function stream(network: HostNetwork, members: readonly Member[], options: { seconds: number; size: number; paceMs?: number }, during?: (goAt: number) => Promise<void>): Promise<Stream> {
  const [sender, ...receivers] = members as [Member, ...Member[]];
  const overflows = () => Promise.all(receivers.map(async (m) => (await network.datagramCounters(m.host)).receiveBufferErrors));
  const overflowedBefore = await overflows();
  for (const m of members) m.child.post({ type: "begin" });
  await Promise.all(members.map((m) => m.child.next("begun", 10_000)));
  const goAt = absoluteNow();
  sender.child.post({ type: "send", ...options });
  const watching = during?.(goAt);
  const sent = await sender.child.next("sent", options.seconds * 1000 + 150_000);
  await watching;
  const [senderReport, ...reports] = await Promise.all(members.map((m) => m.report()));
  const overflowed = (await overflows()).reduce((sum, n, i) => sum + n - overflowedBefore[i]!, 0);
  const slowest = Math.min(...reports.map((r) => rateOf(r, goAt)));
  const delivered = reports.reduce((sum, r) => sum + r.received, 0);
  return {
    goAt,
    receivers: receivers.length,
    sent: sent.count,
    sendMs: sent.sendMs,
    messagesPerSecond: slowest,
    megabytesPerSecond: (slowest * options.size) / MB,
    complete: reports.every((r) => r.received === sent.count),
    receiverCpuUsPerMessage: (1000 * reports.reduce((sum, r) => sum + r.cpuMs, 0)) / delivered,
    senderCpuUsPerMessage: (1000 * senderReport!.cpuMs) / sent.count,
    receiveBufferDrops: overflowed,
    sender: senderReport!,
    receiverReports: reports,
  };
}

// 2. Throughput: 1 KiB as fast as the window lets, to every other member and (rounds interleaved) to 2.
async function measureThroughput(network: HostNetwork, members: readonly Member[], seconds: number, rounds: number) {
  const three: Stream[] = [];
  const all: Stream[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const group of [members.slice(0, 3), members]) {
      process.stderr.write(`throughput: 1 → ${group.length - 1}, round ${round + 1}/${rounds}\n`);
      await joinAll(group);
      (group === members ? all : three).push(await stream(network, group, { seconds, size: KIB }));
      await leaveAll(group);
    }
  }
  const summary = (runs: readonly Stream[]) => ({
    megabytesPerSecond: median(runs.map((r) => r.megabytesPerSecond)),
    messagesPerSecond: median(runs.map((r) => r.messagesPerSecond)),
    receiverCpuUsPerMessage: median(runs.map((r) => r.receiverCpuUsPerMessage)),
    senderCpuUsPerMessage: median(runs.map((r) => r.senderCpuUsPerMessage)),
    receiveBufferDrops: median(runs.map((r) => r.receiveBufferDrops)),
    complete: runs.every((r) => r.complete),
    runs: runs.map(({ sender: _, receiverReports: __, ...run }) => run),
  });
  const toThree = summary(three);
  const toAll = summary(all);
  return { size: KIB, seconds, toThree, toAll, ratio: toAll.megabytesPerSecond / toThree.megabytesPerSecond };
}

type LossIn = "kernel" | "process";

/** Sets in-process loss on `lossy` (the others none) and joins everyone anew, for `--loss-in process`. */
async function rejoinWithLoss(members: readonly Member[], lossy: ReadonlySet<Member>, loss: number): Promise<void> {
  await leaveAll(members);
  for (const m of members) m.receiveLoss = lossy.has(m) ? loss : 0;
  await joinAll(members);
}

// 3. NACKs and retransmissions per lost datagram at 1 % loss, one 1 KiB message a millisecond.
async function measureNacks(network: HostNetwork, members: readonly Member[], seconds: number, lossIn: LossIn) {
  const [sender, ...receivers] = members as [Member, ...Member[]];
  const loss = 0.01;
  const scenarios: Array<{ where: "the sender's link" | "every receiver's link"; lossy: readonly Member[]; way: "egressLoss" | "ingressLoss" }> = [
    ...(lossIn === "kernel" ? [{ where: "the sender's link" as const, lossy: [sender], way: "egressLoss" as const }] : []),
    { where: "every receiver's link", lossy: receivers, way: "ingressLoss" },
  ];
  const results = [];
  await joinAll(members);
  for (const scenario of scenarios) {
    process.stderr.write(`NACKs: ${members.length} members, 1 % loss on ${scenario.where}\n`);
    let run: Stream;
    let lost: number;
    try {
      if (lossIn === "kernel") for (const m of scenario.lossy) await network.shape(m.host, { [scenario.way]: loss });
      else await rejoinWithLoss(members, new Set(scenario.lossy), loss);
      run = await stream(network, members, { seconds, size: KIB, paceMs: PACE_MS });
      lost =
        lossIn === "kernel"
          ? (await Promise.all(scenario.lossy.map((m) => network.dropped(m.host)))).reduce((sum, d) => sum + d.egress + d.ingress, 0)
          : run.receiverReports.reduce((sum, r) => sum + r.lostInProcess, 0);
    } finally {
      if (lossIn === "kernel") for (const m of scenario.lossy) await network.shape(m.host, {});
    }
    const nacksSent = run.receiverReports.reduce((sum, r) => sum + (r.counters.nacksSent ?? 0), 0);
    const retransmitted = run.sender.counters.retransmitted ?? 0;
    results.push({
      where: scenario.where,
      lossIn,
      loss,
      messages: run.sent,
      senderDatagrams: run.sender.counters.datagramsSent ?? 0,
      lost,
      nacksSent,
      nacksReceivedBySender: run.sender.counters.nacksReceived ?? 0,
      retransmitted,
      retransmittedToOne: run.sender.counters.retransmittedToOne ?? 0,
      nacksPerLoss: nacksSent / lost,
      retransmissionsPerLoss: retransmitted / lost,
      complete: run.complete,
    });
  }
  if (lossIn === "process") for (const m of members) m.receiveLoss = 0;
  await leaveAll(members);
  return results;
}

// 3b. A burst: one receiver's link cut for a second in the middle of a paced stream, then healed.
async function measureCutRepair(network: HostNetwork, members: readonly Member[], seconds: number) {
  const [sender, ...receivers] = members as [Member, ...Member[]];
  const victim = receivers.at(-1)!;
  const cutMs = 1_000;
  process.stderr.write(`NACKs: ${members.length} members, a receiver's link cut for ${cutMs} ms\n`);
  await joinAll(members);
  let missed = 0;
  const run = await stream(network, members, { seconds, size: KIB, paceMs: PACE_MS }, async () => {
    await sleep((seconds * 1000 - cutMs) / 2);
    // What the sender sent while the link was down is what the victim missed (one message a datagram).
    const before = (await sender.report()).counters.sent ?? 0;
    await network.cut(victim.host);
    await sleep(cutMs);
    const after = (await sender.report()).counters.sent ?? 0;
    await network.heal(victim.host);
    missed = after - before;
  });
  await leaveAll(members);
  const retransmitted = run.sender.counters.retransmitted ?? 0;
  return {
    cutMs,
    messages: run.sent,
    missed,
    victimNacksSent: run.receiverReports.at(-1)!.counters.nacksSent ?? 0,
    othersNacksSent: run.receiverReports.slice(0, -1).reduce((sum, r) => sum + (r.counters.nacksSent ?? 0), 0),
    retransmitted,
    retransmissionsPerMissed: retransmitted / missed,
    complete: run.complete,
  };
}

// 4. One receiver at 20 % loss: the others' throughput next to the lossless stream just before (rounds
// alternate), and how far ahead of it they got.
async function measureSlowReceiver(network: HostNetwork, members: readonly Member[], seconds: number, rounds: number, lossIn: LossIn) {
  const lossy = members.at(-1)!;
  const healthy = members.slice(1, -1);
  const loss = 0.2;
  const setLoss = async (on: boolean) => {
    if (lossIn === "kernel") await network.shape(lossy.host, on ? { ingressLoss: loss } : {});
    else await rejoinWithLoss(members, new Set(on ? [lossy] : []), loss);
  };
  const lossless: number[] = [];
  const healthyRates: number[] = [];
  const lossyRates: number[] = [];
  let maxLeadMessages = 0;
  let complete = true;
  await joinAll(members);
  try {
    for (let round = 0; round < rounds; round++) {
      process.stderr.write(`slow receiver: 1 of ${members.length - 1} at 20 % loss, round ${round + 1}/${rounds}\n`);
      await setLoss(false);
      const clean = await stream(network, members, { seconds, size: KIB });
      lossless.push(clean.megabytesPerSecond);
      await setLoss(true);
      const run = await stream(network, members, { seconds, size: KIB }, async (goAt) => {
        // While the sender sends: the healthy receivers' lead over the lossy one.
        while (absoluteNow() < goAt + seconds * 1000) {
          const [behind, ...ahead] = await Promise.all([lossy, ...healthy].map((m) => m.report()));
          maxLeadMessages = Math.max(maxLeadMessages, Math.min(...ahead.map((r) => r.received)) - behind!.received);
          await sleep(100);
        }
      });
      healthyRates.push((Math.min(...run.receiverReports.slice(0, -1).map((r) => rateOf(r, run.goAt))) * KIB) / MB);
      lossyRates.push((rateOf(run.receiverReports.at(-1)!, run.goAt) * KIB) / MB);
      complete &&= clean.complete && run.complete;
    }
  } finally {
    await setLoss(false);
  }
  await leaveAll(members);
  const healthyMegabytesPerSecond = median(healthyRates);
  const losslessMegabytesPerSecond = median(lossless);
  return {
    lossIn,
    loss,
    receivers: members.length - 1,
    healthyMegabytesPerSecond,
    lossyMegabytesPerSecond: median(lossyRates),
    losslessMegabytesPerSecond,
    healthyRatioToLossless: healthyMegabytesPerSecond / losslessMegabytesPerSecond,
    rounds: { lossless, healthy: healthyRates, lossy: lossyRates },
    maxLeadBytes: maxLeadMessages * KIB,
    bufferBytes: BUFFER_BYTES,
    complete,
  };
}

// 5. Crash detection: SIGKILL a plain member (the default failure detection), until every survivor dropped it.
async function measureCrash(members: Member[]) {
  const timing = { heartbeatIntervalMs: 1_000, failureTimeoutMs: 5_000, verifyTimeoutMs: 1_500 } as const;
  process.stderr.write(`crash detection: ${members.length} members\n`);
  await joinAll(members);
  // A random moment of the heartbeat cycle, well after the view settled.
  await sleep(1_500 + Math.random() * timing.heartbeatIntervalMs);
  const view = members[0]!.child.latestView!;
  const victimId = view.ids.filter((id) => id !== view.coordinator).at(-1)!;
  const victim = members.find((m) => m.child.id === victimId)!;
  const survivors = members.filter((m) => m !== victim);
  const killedAt = absoluteNow();
  victim.child.kill();
  const deadline = Date.now() + 30_000;
  const dropped = () => survivors.map((m) => m.child.views.find((v) => v.at > killedAt && !v.ids.includes(victimId)));
  while (dropped().some((v) => v === undefined)) {
    if (Date.now() > deadline) throw new Error("the survivors did not drop the killed member within 30 s");
    await sleep(10);
  }
  const perSurvivorMs = dropped().map((v) => v!.at - killedAt);
  members.splice(members.indexOf(victim), 1);
  return { ...timing, members: members.length + 1, budgetMs: timing.failureTimeoutMs + timing.verifyTimeoutMs, detectionMs: Math.max(...perSurvivorMs), firstSurvivorMs: Math.min(...perSurvivorMs) };
}

/** Every measurement of one group size, on members started once in the first `size` hosts. */
async function measureSize(network: HostNetwork, size: number, options: { trials: number; rounds: number; seconds: number; nackSeconds: number; lossIn: LossIn }) {
  const startedAt = Date.now();
  const members = network.hosts.slice(0, size).map((host) => new Member(host));
  await whenReady(members.map((m) => m.child));
  const startupMs = Date.now() - startedAt;
  try {
    const views = await measureViews(members, options.trials);
    const throughput = await measureThroughput(network, members, options.seconds, options.rounds);
    const nacks = await measureNacks(network, members, options.nackSeconds, options.lossIn);
    const cutRepair = await measureCutRepair(network, members, options.nackSeconds / 2);
    const slowReceiver = await measureSlowReceiver(network, members, options.seconds, options.rounds, options.lossIn);
    const crash = await measureCrash(members);
    return { members: size, startupMs, views, throughput, nacks, cutRepair, slowReceiver, crash };
  } finally {
    await exitAll(members.map((m) => m.child));
  }
}

type SizeResult = Awaited<ReturnType<typeof measureSize>>;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sizes: { type: "string", default: "16,32" },
      trials: { type: "string", default: "2" },
      rounds: { type: "string", default: "2" },
      seconds: { type: "string", default: "3" },
      "nack-seconds": { type: "string", default: "15" },
      "loss-in": { type: "string", default: "kernel" },
    },
  });
  const unsupported = await hostNetworkUnsupported();
  if (unsupported !== undefined) {
    console.error(`bench/hosts.ts needs network namespaces: ${unsupported}`);
    process.exit(1);
  }
  if (values["loss-in"] !== "kernel" && values["loss-in"] !== "process") throw new Error(`--loss-in: expected kernel or process, got ${values["loss-in"]}`);
  const sizes = values.sizes.split(",").map(Number);
  const { startedAt, load } = startRun();
  const network = await HostNetwork.create({ hosts: Math.max(...sizes) });
  const lossIn: LossIn = values["loss-in"] === "process" || network.shaping === "none" ? "process" : "kernel";
  const options = { trials: Number(values.trials), rounds: Number(values.rounds), seconds: Number(values.seconds), nackSeconds: Number(values["nack-seconds"]), lossIn };
  const results: SizeResult[] = [];
  try {
    for (const size of sizes) {
      const result = await timed(`${size} members`, 900_000, () => measureSize(network, size, options));
      if (result !== undefined) results.push(result);
    }
  } finally {
    await network.destroy();
  }

  const where = `one Node process per Linux network namespace, veth links (MTU 1500) on one bridge; loss ${lossIn === "kernel" ? `in the kernel (${network.shaping})` : "in the receiving processes"}`;
  const targets = results.flatMap((r) => [
    ...(r.members === 16 ? [{ target: "16 members: one view of all, after the 1 s discovery timeout", value: r.views.afterDiscoveryMs, goal: 1_000, unit: "ms", met: r.views.afterDiscoveryMs < 1_000 }] : []),
    { target: `${r.members} members: 1 KiB throughput to all, next to 3 members`, value: r.throughput.ratio, goal: 0.5, unit: "ratio", met: r.throughput.ratio >= 0.5 },
    ...r.nacks.map((n) => ({ target: `${r.members} members, 1 % loss on ${n.where}: NACKs per lost datagram`, value: n.nacksPerLoss, goal: 1.5, unit: "per loss", met: n.nacksPerLoss <= 1.5 })),
    ...r.nacks.map((n) => ({ target: `${r.members} members, 1 % loss on ${n.where}: retransmissions per lost datagram`, value: n.retransmissionsPerLoss, goal: 1.5, unit: "per loss", met: n.retransmissionsPerLoss <= 1.5 })),
    { target: `${r.members} members, one receiver at 20 % loss: the others' lead over it within the retransmit buffer`, value: r.slowReceiver.maxLeadBytes / MB, goal: BUFFER_BYTES / MB, unit: "MB", met: r.slowReceiver.maxLeadBytes <= BUFFER_BYTES },
  ]);
  const summary = { benchmark: "hosts", date: new Date().toISOString(), machine: { ...machine(load), where }, wallSeconds: (Date.now() - startedAt) / 1000, options, sizes: results, failures, targets };
  const complete = Object.keys(failures).length === 0;
  if (complete) writeResults("hosts", summary);

  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  const ms = (x: number) => `${n(x)} ms`;
  const per = (x: number) => x.toFixed(2);
  console.log(`\nGroups across hosts: ${where} (${machine().cpus} cores, ${machine().cpu}, Node ${process.version}, load average ${load.toFixed(2)} at start)\n`);
  console.log(`| measurement | ${results.map((r) => `${r.members} members`).join(" | ")} | reference |`);
  console.log(`| --- | ${results.map(() => "---:").join(" | ")} | --- |`);
  const row = (what: string, cell: (r: SizeResult) => string, reference: string) => console.log(`| ${what} | ${results.map(cell).join(" | ")} | ${reference} |`);
  row("one view of all, every member told to join at once (median)", (r) => `${ms(r.views.medianMs)} (${r.views.trialsMs.map(ms).join(", ")})`, `discoveryTimeoutMs ${DISCOVERY_TIMEOUT_MS} ms; goal for 16: < 1 s after it`);
  row(
    "1 KiB, one sender to all, slowest receiver",
    (r) => `${r.throughput.toAll.megabytesPerSecond.toFixed(1)} MB/s (${(100 * r.throughput.ratio).toFixed(0)} % of 3 members)`,
    `3 members in the same run: ${results.map((r) => `${r.throughput.toThree.megabytesPerSecond.toFixed(1)}`).join(" / ")} MB/s; goal ≥ 50 %`,
  );
  row(
    "the same, all receivers together (MB/s × receivers): what two cores deliver",
    (r) => `${(r.throughput.toAll.megabytesPerSecond * (r.members - 1)).toFixed(1)} MB/s`,
    `3 members: ${results.map((r) => (r.throughput.toThree.megabytesPerSecond * 2).toFixed(1)).join(" / ")} MB/s`,
  );
  row(
    "datagrams dropped by the receivers' full socket buffers, per receiver (median run)",
    (r) => per(r.throughput.toAll.receiveBufferDrops / (r.members - 1)),
    `3 members: ${results.map((r) => per(r.throughput.toThree.receiveBufferDrops / 2)).join(" / ")}`,
  );
  row("CPU per delivered message, each receiver / the sender", (r) => `${per(r.throughput.toAll.receiverCpuUsPerMessage)} / ${per(r.throughput.toAll.senderCpuUsPerMessage)} µs`, `3 members: ${results.map((r) => `${per(r.throughput.toThree.receiverCpuUsPerMessage)} / ${per(r.throughput.toThree.senderCpuUsPerMessage)} µs`).join("; ")}`);
  for (const where of ["the sender's link", "every receiver's link"] as const) {
    const of = (r: SizeResult) => r.nacks.find((x) => x.where === where);
    if (!results.some((r) => of(r) !== undefined)) continue;
    row(
      `1 % loss on ${where}, 1 KiB every ${PACE_MS} ms: NACKs / retransmissions per lost datagram`,
      (r) => (of(r) === undefined ? "—" : `${per(of(r)!.nacksPerLoss)} / ${per(of(r)!.retransmissionsPerLoss)} (${n(of(r)!.nacksSent)} / ${n(of(r)!.retransmitted)} for ${n(of(r)!.lost)} lost; ${n(of(r)!.retransmittedToOne)} repairs to one receiver)`),
      "near 1: one NACK and one repair a loss",
    );
  }
  row(
    `one receiver's link cut for 1 s mid-stream (1 KiB every ${PACE_MS} ms): retransmissions per missed message`,
    (r) => `${per(r.cutRepair.retransmissionsPerMissed)} (${n(r.cutRepair.retransmitted)} for ${n(r.cutRepair.missed)} missed; NACKs: ${n(r.cutRepair.victimNacksSent)} from it, ${n(r.cutRepair.othersNacksSent)} from the others)`,
    "1: each missed message sent again once",
  );
  row(
    "one receiver at 20 % loss: the others' throughput; their lead over it",
    (r) => `${r.slowReceiver.healthyMegabytesPerSecond.toFixed(1)} MB/s (${(100 * r.slowReceiver.healthyRatioToLossless).toFixed(0)} % of ${r.slowReceiver.losslessMegabytesPerSecond.toFixed(1)} lossless), lossy ${r.slowReceiver.lossyMegabytesPerSecond.toFixed(1)} MB/s; lead ≤ ${(r.slowReceiver.maxLeadBytes / MB).toFixed(2)} MB`,
    `the sender's retransmit buffer: ${BUFFER_WINDOWS} windows of ${(DEFAULT_NACK_OPTIONS.windowBytes / MB).toFixed(2)} MB`,
  );
  row("SIGKILL one member, until every survivor dropped it", (r) => `${ms(r.crash.detectionMs)} (first ${ms(r.crash.firstSurvivorMs)})`, "failureTimeoutMs + verifyTimeoutMs = 5,000 + 1,500 ms");
  row("member processes started (not counted above)", (r) => ms(r.startupMs), "");
  const delivered = results.every((r) => r.throughput.toAll.complete && r.throughput.toThree.complete && r.nacks.every((x) => x.complete) && r.cutRepair.complete && r.slowReceiver.complete);
  console.log(`\nevery receiver got every message of every stream: ${delivered ? "yes" : "NO"}`);
  printTargets(targets, (t) => (t.unit === "ratio" ? [`${(t.value * 100).toFixed(0)} %`, `≥ ${t.goal * 100} %`] : t.unit === "ms" ? [ms(t.value), `< ${ms(t.goal)}`] : [`${per(t.value)} ${t.unit}`, `≤ ${per(t.goal)} ${t.unit}`]));
  finishRun({ load, wallSeconds: summary.wallSeconds, results: complete ? "hosts" : undefined, busyNote: "rates are pessimistic: 32 processes share two cores; compare within the run." });
}

// --- entry ---

if (process.argv[2] === "--child") await runMember();
else await main();
