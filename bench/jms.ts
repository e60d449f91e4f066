/**
 * The messaging layer's figures, members as separate Node processes on loopback multicast:
 *
 *  1. topic throughput: one publisher process → two subscriber processes, `--size` bytes a message (and
 *     `--large-size`), the core API (`broadcast` / `onTopic`) and activeblaze/jms (`send` to a
 *     topic / a consumer's listener) alternating in the same processes, `--rounds` times each; the
 *     slowest subscriber's rate, and the CPU time each process spent per message (the publisher's while
 *     it sent, a subscriber's from its subscription to the count): a measure of what each API costs that
 *     a busy machine disturbs far less than rates.
 *  2. queue throughput: one producer → three consumer processes, `--in-flight` sends outstanding; the
 *     core API's queue (`sendToQueue` / `consumeQueue`: held by the sender, acknowledged by the consumer)
 *     and the JMS queue (replicated in the state map before `send` resolves, dispatched by the map's
 *     coordinator, acknowledged by removing it), alternating likewise; and the CPU time the producer and
 *     the consumers together spent per message, from the first send until all was consumed.
 *  3. the STOMP gateway with one client: a member runs the gateway; one TCP client in this process
 *     subscribes to a topic and publishes to it (SEND without receipt), counting what comes back.
 *
 *   npx tsx bench/jms.ts [--seconds 3] [--rounds 2] [--size 256] [--large-size 4096] [--in-flight 256] [--only topic,queue,stomp] [--apis core,jms] [--lib dist]
 *
 * `--lib` runs the members on a built package (a copy of an older `dist/` for an A/B comparison: see
 * bench/jms-cost.ts) instead of the sources. A copy kept outside the package needs a `package.json` of
 * `"type": "module"` beside it and the package's `node_modules` reachable from it.
 * `--apis jms` measures the queue of one API only (to profile it: `node --cpu-prof --import tsx bench/jms.ts …`,
 * whose members inherit the flag). Writes bench/results/jms.json (full runs) and prints a table.
 */
import { connect } from "node:net";
import { cpus } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { ClusterChannel } from "../src/cluster/cluster-channel.ts";
import type { ConnectionFactory, JMSContext } from "../src/jms/index.ts";
import { Child, exitAll, failures, finishRun, freshNetwork, machine, median, memberOptions, type Network, serve, sleep, startRun, thousands, timed, whenReady, writeResults } from "./lib.ts";

type ToChild =
  | { readonly type: "join"; readonly name: string; readonly network: Network }
  | { readonly type: "subscribe"; readonly api: "core" | "jms"; readonly topic: string }
  | { readonly type: "consume"; readonly api: "core" | "jms"; readonly queue: string }
  | { readonly type: "stop-consuming" }
  | { readonly type: "count" }
  | { readonly type: "publish"; readonly api: "core" | "jms"; readonly topic: string; readonly seconds: number; readonly size: number }
  | { readonly type: "produce"; readonly api: "core" | "jms"; readonly queue: string; readonly seconds: number; readonly size: number; readonly inFlight: number }
  | { readonly type: "gateway" }
  | { readonly type: "exit" };

type FromChild =
  | { readonly type: "ready" }
  | { readonly type: "joined"; readonly id: string; readonly members: number }
  | { readonly type: "counted"; readonly received: number; readonly elapsedMs: number; readonly cpuMs: number }
  | { readonly type: "published"; readonly sent: number; readonly elapsedMs: number; readonly cpuMs: number; readonly failed: number; readonly firstError?: string }
  | { readonly type: "gateway-port"; readonly port: number }
  | { readonly type: "failed"; readonly error: string };

// --- a member ---

async function runMember(lib: string | undefined): Promise<void> {
  const from = (source: string, built: string) => (lib === undefined ? import(source) : import(resolve(lib, built)));
  const { createClusterChannel } = (await from("../src/cluster/cluster-channel.ts", "index.js")) as typeof import("../src/cluster/cluster-channel.ts");
  const { createConnectionFactory } = (await from("../src/jms/index.ts", "jms/index.js")) as typeof import("../src/jms/index.ts");
  const { createStompGateway } = (await from("../src/stomp/index.ts", "stomp/index.js")) as typeof import("../src/stomp/index.ts");
  const { createUdpTransport } = (await from("../src/adapters/node.ts", "adapters/node.js")) as typeof import("../src/adapters/node.ts");
  let channel: ClusterChannel | undefined;
  let factory: ConnectionFactory | undefined;
  let context: JMSContext | undefined;
  let received = 0;
  let firstAt = 0;
  let lastAt = 0;
  let stop: (() => void) | undefined;
  let cpuFrom = process.cpuUsage();
  const cpuMsSince = (from: NodeJS.CpuUsage) => {
    const used = process.cpuUsage(from);
    return (used.user + used.system) / 1000;
  };
  const send = (message: FromChild) => process.send!(message);
  const onMessage = () => {
    const now = performance.now();
    if (received === 0) firstAt = now;
    lastAt = now;
    received++;
  };
  serve<ToChild>({
    join: async (message) => {
      // The factory delivers its own topic messages to its own subscribers: no loopback copies (as on a channel the factory makes).
      channel = await createClusterChannel({ ...memberOptions({ name: message.name, network: message.network, timing: {} }, createUdpTransport), loopback: false });
      await channel.join({ timeoutMs: 30_000 });
      factory = await createConnectionFactory({ channel });
      context = factory.createContext();
      send({ type: "joined", id: channel.id, members: channel.getMembers("g").length });
    },
    subscribe: (message) => {
      cpuFrom = process.cpuUsage();
      if (message.api === "core") {
        stop = channel!.onTopic(message.topic, onMessage);
      } else {
        const consumer = context!.createConsumer(context!.topic(message.topic));
        consumer.setMessageListener(onMessage);
        stop = () => consumer.close();
      }
    },
    consume: (message) => {
      cpuFrom = process.cpuUsage();
      if (message.api === "core") stop = channel!.consumeQueue(message.queue, onMessage);
      else {
        const consumer = context!.createConsumer(context!.queue(message.queue));
        consumer.setMessageListener(onMessage);
        stop = () => consumer.close();
      }
    },
    "stop-consuming": () => {
      stop?.();
      stop = undefined;
    },
    count: () => {
      send({ type: "counted", received, elapsedMs: lastAt - firstAt, cpuMs: cpuMsSince(cpuFrom) });
      received = 0;
    },
    publish: async (message) => {
      const payload = new Uint8Array(message.size).fill(7);
      const cpuAtStart = process.cpuUsage();
      const startedAt = performance.now();
      const endAt = startedAt + message.seconds * 1000;
      let sent = 0;
      if (message.api === "core") {
        while (performance.now() < endAt) {
          for (let i = 0; i < 64; i++, sent++) await channel!.broadcast(message.topic, payload);
        }
      } else {
        const producer = context!.createProducer();
        const topic = context!.topic(message.topic);
        while (performance.now() < endAt) {
          for (let i = 0; i < 64; i++, sent++) await producer.send(topic, payload);
        }
      }
      send({ type: "published", sent, elapsedMs: performance.now() - startedAt, cpuMs: cpuMsSince(cpuAtStart), failed: 0 });
    },
    produce: async (message) => {
      const payload = new Uint8Array(message.size).fill(9);
      // Counted until the consumers are done too (a `count` after this round).
      cpuFrom = process.cpuUsage();
      const startedAt = performance.now();
      const endAt = startedAt + message.seconds * 1000;
      let sent = 0;
      let failed = 0;
      let firstError: string | undefined;
      const producer = context!.createProducer();
      const queue = context!.queue(message.queue);
      // `inFlight` lanes, each sending its next message once the last one is accepted.
      const lane = async () => {
        while (performance.now() < endAt) {
          try {
            if (message.api === "core") await channel!.sendToQueue(message.queue, payload, { timeoutMs: 10_000 });
            else await producer.send(queue, payload);
            sent++;
          } catch (error) {
            failed++;
            firstError ??= error instanceof Error ? error.message : String(error);
          }
        }
      };
      await Promise.all(Array.from({ length: message.inFlight }, lane));
      send({ type: "published", sent, failed, elapsedMs: performance.now() - startedAt, cpuMs: 0, ...(firstError === undefined ? {} : { firstError }) });
    },
    gateway: async () => {
      const gateway = await createStompGateway(factory!, { port: 0 });
      send({ type: "gateway-port", port: gateway.port! });
    },
    exit: async () => {
      await factory?.close().catch(() => undefined);
      await channel?.shutDown().catch(() => undefined);
      process.exit(0);
    },
  });
}

// --- the parent ---

type Member = Child<ToChild, FromChild>;

async function startMembers(count: number): Promise<Member[]> {
  const network = freshNetwork("bench-jms");
  const members = await whenReady(Array.from({ length: count }, () => new Child<ToChild, FromChild>(import.meta.filename, lib === undefined ? ["--child"] : ["--child", "--lib", lib])));
  members.forEach((m, i) => m.post({ type: "join", name: `m${i}`, network }));
  await Promise.all(members.map((m) => m.next("joined", 60_000)));
  // Let every member see the others in one view and the queue's dispatcher settle.
  await sleep(3_000);
  return members;
}

async function countAll(members: readonly Member[]): Promise<Array<{ received: number; elapsedMs: number; cpuMs: number }>> {
  return Promise.all(members.map(async (m) => (m.post({ type: "count" }), await m.next("counted", 30_000))));
}

interface Comparison {
  readonly coreMessagesPerSecond: number;
  readonly jmsMessagesPerSecond: number;
  /** JMS as a fraction of the core API in the same processes. */
  readonly ratio: number;
  readonly rounds: ReadonlyArray<{ readonly api: "core" | "jms"; readonly messagesPerSecond: number; readonly perReceiver: readonly number[]; readonly cpu?: CpuPerMessage }>;
}

/** CPU time per message, µs: the publisher's per message sent, a subscriber's (their mean) per message received. */
interface CpuPerMessage {
  readonly publisherMicros: number;
  readonly subscriberMicros: number;
}

interface CpuComparison {
  readonly core: CpuPerMessage;
  readonly jms: CpuPerMessage;
  /** What JMS costs beyond the core API, as a fraction of the core API's cost (publisher and subscriber CPU per message together). */
  readonly layerCost: number;
}

async function measureTopic(seconds: number, rounds: number, size: number): Promise<Comparison & { size: number; subscribers: number; cpu: CpuComparison }> {
  const members = await startMembers(3);
  const [publisher, ...subscribers] = members as [Member, ...Member[]];
  try {
    const runs: Array<Comparison["rounds"][number]> = [];
    for (let round = 0; round < rounds; round++) {
      for (const api of ["core", "jms"] as const) {
        const topic = `bench.${api}.${round}`;
        for (const s of subscribers) s.post({ type: "subscribe", api, topic });
        await sleep(300);
        process.stderr.write(`topic: ${api}, round ${round + 1}\n`);
        publisher.post({ type: "publish", api, topic, seconds, size });
        const published = await publisher.next("published", seconds * 1000 + 60_000);
        await sleep(1_000);
        const counts = await countAll(subscribers);
        for (const s of subscribers) s.post({ type: "stop-consuming" });
        // The slowest subscriber's rate over the publisher's sending time (what was not received by then counts against it).
        const perReceiver = counts.map((c) => Math.min(c.received, published.sent) / (published.elapsedMs / 1000));
        const cpu = {
          publisherMicros: (published.cpuMs * 1000) / published.sent,
          subscriberMicros: counts.reduce((sum, c) => sum + (c.cpuMs * 1000) / Math.max(1, c.received), 0) / counts.length,
        };
        runs.push({ api, messagesPerSecond: Math.min(...perReceiver), perReceiver, cpu });
      }
    }
    return { ...compare(runs), size, subscribers: subscribers.length, cpu: compareCpu(runs) };
  } finally {
    await exitAll(members);
  }
}

/** CPU time per message consumed, µs: the producer's, and the consumers' together. */
interface QueueCpuPerMessage {
  readonly producerMicros: number;
  readonly consumersMicros: number;
}

async function measureQueue(
  seconds: number,
  rounds: number,
  size: number,
  inFlight: number,
  apis: ReadonlyArray<"core" | "jms">,
): Promise<Comparison & { size: number; consumers: number; inFlight: number; failed: number; cpu: Partial<Record<"core" | "jms", QueueCpuPerMessage>> }> {
  const members = await startMembers(4);
  const [producer, ...consumers] = members as [Member, ...Member[]];
  let failed = 0;
  try {
    const runs: Array<Comparison["rounds"][number]> = [];
    const cpuRuns: Array<{ readonly api: "core" | "jms"; readonly cpu: QueueCpuPerMessage }> = [];
    for (let round = 0; round < rounds; round++) {
      for (const api of apis) {
        const queue = `bench-${api}-${round}`;
        for (const c of consumers) c.post({ type: "consume", api, queue });
        // The core API's consumers announce their queues in heartbeats (every second by default).
        await sleep(api === "core" ? 2_500 : 500);
        process.stderr.write(`queue: ${api}, round ${round + 1}\n`);
        producer.post({ type: "produce", api, queue, seconds, size, inFlight });
        const produced = await producer.next("published", seconds * 1000 + 60_000);
        failed += produced.failed;
        if (produced.firstError !== undefined) process.stderr.write(`queue: ${produced.failed} failed, first: ${produced.firstError}\n`);
        await sleep(2_000);
        const [producerCount, ...counts] = await countAll(members);
        for (const c of consumers) c.post({ type: "stop-consuming" });
        const total = counts.reduce((sum, c) => sum + c.received, 0);
        runs.push({ api, messagesPerSecond: Math.min(total, produced.sent) / (produced.elapsedMs / 1000), perReceiver: counts.map((c) => c.received) });
        const consumersCpuMs = counts.reduce((sum, c) => sum + c.cpuMs, 0);
        cpuRuns.push({ api, cpu: { producerMicros: (producerCount!.cpuMs * 1000) / Math.max(1, total), consumersMicros: (consumersCpuMs * 1000) / Math.max(1, total) } });
      }
    }
    const cpu: Partial<Record<"core" | "jms", QueueCpuPerMessage>> = {};
    for (const api of apis) {
      const mine = cpuRuns.filter((r) => r.api === api).map((r) => r.cpu);
      cpu[api] = { producerMicros: median(mine.map((c) => c.producerMicros)), consumersMicros: median(mine.map((c) => c.consumersMicros)) };
    }
    return { ...compare(runs), size, consumers: consumers.length, inFlight, failed, cpu };
  } finally {
    await exitAll(members);
  }
}

function compare(runs: Comparison["rounds"]): Comparison {
  const core = median(runs.filter((r) => r.api === "core").map((r) => r.messagesPerSecond));
  const jms = median(runs.filter((r) => r.api === "jms").map((r) => r.messagesPerSecond));
  return { coreMessagesPerSecond: core, jmsMessagesPerSecond: jms, ratio: jms / core, rounds: runs };
}

function compareCpu(runs: Comparison["rounds"]): CpuComparison {
  const of = (api: "core" | "jms"): CpuPerMessage => {
    const mine = runs.filter((r) => r.api === api && r.cpu !== undefined).map((r) => r.cpu!);
    return { publisherMicros: median(mine.map((c) => c.publisherMicros)), subscriberMicros: median(mine.map((c) => c.subscriberMicros)) };
  };
  const core = of("core");
  const jms = of("jms");
  const total = (c: CpuPerMessage) => c.publisherMicros + c.subscriberMicros;
  return { core, jms, layerCost: (total(jms) - total(core)) / total(core) };
}

async function measureStomp(seconds: number, size: number): Promise<{ messagesPerSecond: number; sent: number; received: number; size: number }> {
  const [member] = await startMembers(1);
  try {
    member!.post({ type: "gateway" });
    const { port } = await member!.next("gateway-port", 30_000);
    const socket = connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    let received = 0;
    let pending = "";
    socket.setEncoding("latin1");
    // Counts MESSAGE frames: each ends with a NUL (the bodies hold none); heart-beat newlines may lead.
    socket.on("data", (chunk: string) => {
      pending += chunk;
      let start = 0;
      for (let nul = pending.indexOf("\0"); nul >= 0; nul = pending.indexOf("\0", start)) {
        while (pending[start] === "\n" || pending[start] === "\r") start++;
        if (pending.startsWith("MESSAGE", start)) received++;
        start = nul + 1;
      }
      pending = pending.slice(start);
    });
    socket.write("CONNECT\naccept-version:1.2\nhost:bench\n\n\0SUBSCRIBE\nid:0\ndestination:/topic/bench\nack:auto\n\n\0");
    await sleep(500);
    const frame = Buffer.from(`SEND\ndestination:/topic/bench\ncontent-type:text/plain\n\n${"x".repeat(size)}\0`);
    const startedAt = performance.now();
    const endAt = startedAt + seconds * 1000;
    let sent = 0;
    while (performance.now() < endAt) {
      // Keep at most 512 messages in the pipe: the gateway reads, sends and delivers back.
      while (sent - received < 512 && performance.now() < endAt) {
        socket.write(frame);
        sent++;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    const elapsed = (performance.now() - startedAt) / 1000;
    await sleep(1_000);
    socket.destroy();
    return { messagesPerSecond: Math.min(received, sent) / elapsed, sent, received, size };
  } finally {
    await exitAll([member!]);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "3" },
      rounds: { type: "string", default: "2" },
      size: { type: "string", default: "256" },
      "large-size": { type: "string", default: "4096" },
      "in-flight": { type: "string", default: "256" },
      only: { type: "string" },
      apis: { type: "string", default: "core,jms" },
      lib: { type: "string" },
    },
  });
  lib = values.lib === undefined ? undefined : resolve(values.lib);
  const only = values.only?.split(",");
  const apis = values.apis.split(",").filter((api): api is "core" | "jms" => api === "core" || api === "jms");
  if (apis.length === 0) throw new Error(`--apis takes core, jms or both, not "${values.apis}"`);
  const want = (name: string) => only === undefined || only.includes(name);
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const size = Number(values.size);
  const { startedAt, load } = startRun();
  const topic = want("topic") ? await timed("topic", 300_000, () => measureTopic(seconds, rounds, size)) : undefined;
  const largeTopic = want("topic") ? await timed("topic, large messages", 300_000, () => measureTopic(seconds, rounds, Number(values["large-size"]))) : undefined;
  const queue = want("queue") ? await timed("queue", 300_000, () => measureQueue(seconds, rounds, size, Number(values["in-flight"]), apis)) : undefined;
  const stomp = want("stomp") ? await timed("stomp", 120_000, () => measureStomp(seconds, size)) : undefined;
  const summary = {
    benchmark: "jms",
    date: new Date().toISOString(),
    machine: machine(load),
    wallSeconds: (Date.now() - startedAt) / 1000,
    topic,
    largeTopic,
    queue,
    stomp,
    failures,
    targets: [topic, largeTopic].flatMap((t) => (t === undefined ? [] : [{ target: `JMS topic throughput, ${t.size} B, within 15 % of the core API (ratio ≥ 0.85)`, value: t.ratio, goal: 0.85, met: t.ratio >= 0.85 }])),
  };
  if (only === undefined) writeResults("jms", summary);
  console.log(`\nThe messaging layer, members as separate Node processes on loopback multicast (${cpus().length} cores, Node ${process.version}, load average ${load.toFixed(2)} at start)\n`);
  console.log("| measurement | core API | activeblaze/jms | JMS / core |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const t of [topic, largeTopic]) {
    if (t === undefined) continue;
    console.log(`| topic, 1 publisher → ${t.subscribers} subscribers, ${t.size} B, slowest subscriber | ${thousands(t.coreMessagesPerSecond)} msgs/s | ${thousands(t.jmsMessagesPerSecond)} msgs/s | ${(t.ratio * 100).toFixed(0)} % |`);
    const cpu = (c: CpuPerMessage) => `${c.publisherMicros.toFixed(1)} + ${c.subscriberMicros.toFixed(1)} µs`;
    console.log(`| topic, ${t.size} B, CPU per message (publisher + a subscriber) | ${cpu(t.cpu.core)} | ${cpu(t.cpu.jms)} | the layer costs ${(t.cpu.layerCost * 100).toFixed(0)} % more |`);
  }
  if (queue !== undefined) {
    console.log(`| queue, 1 producer → ${queue.consumers} consumers, ${queue.size} B, ${queue.inFlight} in flight | ${thousands(queue.coreMessagesPerSecond)} msgs/s (held by the sender) | ${thousands(queue.jmsMessagesPerSecond)} msgs/s (replicated) | ${(queue.ratio * 100).toFixed(0)} % |`);
    const cpu = (c: QueueCpuPerMessage | undefined) => (c === undefined ? "" : `${c.producerMicros.toFixed(1)} + ${c.consumersMicros.toFixed(1)} µs`);
    console.log(`| queue, CPU per message (producer + the consumers together) | ${cpu(queue.cpu.core)} | ${cpu(queue.cpu.jms)} | |`);
  }
  if (stomp !== undefined) console.log(`| STOMP gateway, one TCP client publishing to a topic it subscribes to, ${stomp.size} B | | ${thousands(stomp.messagesPerSecond)} msgs/s round trip | |`);
  finishRun({ load, wallSeconds: summary.wallSeconds, results: only === undefined ? "jms" : undefined, busyNote: "rates are pessimistic and noisy; the ratios compare runs in the same processes." });
}

const [mode, libFlag, libValue] = process.argv.slice(2);
/** The built package the members run on (`--lib`), or undefined for the sources. */
let lib: string | undefined;
if (mode === "--child") await runMember(libFlag === "--lib" ? libValue : undefined);
else await main();
