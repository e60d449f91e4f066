/**
 * One side's cost of a small topic message, the core API (`broadcast` / `onTopic`) or activeblaze/jms
 * (a producer's `send` to a topic / a consumer's listener), for profiling: this process is the
 * publisher (`--side publisher`) or the subscriber (`--side subscriber`), a forked child the other side.
 * They go in step: `--window` messages, then the subscriber says it has them all, so neither outruns
 * the other however slowly this process runs. After `--warmup` messages it counts `--count` more and
 * prints one JSON line: CPU time per message.
 *
 *   npx tsx bench/jms-cost.ts [--lib dist] [--api jms] [--side publisher] [--body bytes] [--count 20000] [--warmup 20000] [--size 256]
 *
 * `--lib` is the built package to load (a copy of an older `dist/` for an A/B comparison: kept outside
 * the package, it needs a `package.json` of `"type": "module"` beside it, or tsx transforms its files,
 * and the package's `node_modules` reachable from it); `--body text` sends TextMessages (the core API
 * sends the same bytes either way). With `--callgrind`, under
 * `valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes node --import tsx bench/jms-cost.ts
 * --callgrind …`, only the measured messages are counted (switched on and off with callgrind_control):
 * the main thread's total (the `.out-01` file), less a shorter run's, over the difference of their
 * counts, is this side's instructions per message. Only this process is traced. Those totals move by
 * thousands with the tier the channel's own `broadcast` happens to run in; with `--perf-basic-prof` on
 * node, the layer's part alone is the inclusive cost of the publishing closure less the `broadcast`
 * calls under it.
 */
import { execFile, fork } from "node:child_process";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { freshNetwork, type Network } from "./lib.ts";

type Library = typeof import("../src/index.ts") & typeof import("../src/jms/index.ts") & typeof import("../src/adapters/node.ts");
type Channel = Awaited<ReturnType<Library["createClusterChannel"]>>;

type ToChild = { readonly type: "send"; readonly count: number } | { readonly type: "expect"; readonly until: number } | { readonly type: "exit" };
type FromChild = { readonly type: "ready"; readonly id: string } | { readonly type: "received"; readonly count: number } | { readonly type: "sent" };

const { values } = parseArgs({
  options: {
    lib: { type: "string", default: "dist" },
    api: { type: "string", default: "jms" },
    side: { type: "string", default: "publisher" },
    body: { type: "string", default: "bytes" },
    count: { type: "string", default: "20000" },
    warmup: { type: "string", default: "20000" },
    window: { type: "string", default: "500" },
    size: { type: "string", default: "256" },
    callgrind: { type: "boolean", default: false },
    child: { type: "boolean", default: false },
    network: { type: "string" },
  },
});

const TOPIC = "cost";
const api = values.api === "core" ? "core" : "jms";

async function load(): Promise<Library> {
  const dir = resolve(values.lib!);
  const parts = await Promise.all(["index.js", "jms/index.js", "adapters/node.js"].map((file) => import(resolve(dir, file))));
  return Object.assign({}, ...parts) as Library;
}

/** A joined member; `publish` sends one message, `subscribe` counts them. */
async function member(network: Network, name: string) {
  const library = await load();
  const channel: Channel = await library.createClusterChannel({
    cluster: network.cluster,
    name,
    network: { type: "multicast", group: network.group, port: network.port, interface: "127.0.0.1" },
    groups: ["g"],
    transport: library.createUdpTransport,
    // A member slowed down by a profiler must not be suspected.
    failureTimeoutMs: 600_000,
    loopback: false,
  });
  await channel.join({ timeoutMs: 60_000 });
  const factory = await library.createConnectionFactory({ channel });
  const context = factory.createContext();
  const payload = new Uint8Array(Number(values.size)).fill(7);
  const text = "x".repeat(Number(values.size));
  let publish: () => Promise<void>;
  if (api === "core") publish = () => channel.broadcast(TOPIC, payload);
  else {
    const producer = context.createProducer();
    const topic = context.topic(TOPIC);
    const body = values.body === "text" ? text : payload;
    publish = () => producer.send(topic, body);
  }
  const subscribe = (onMessage: () => void) => {
    if (api === "core") channel.onTopic(TOPIC, onMessage);
    else context.createConsumer(context.topic(TOPIC)).setMessageListener(onMessage);
  };
  const close = async () => {
    await factory.close();
    await channel.shutDown();
  };
  return { channel, publish, subscribe, close };
}

function callgrindInstrumentation(state: "on" | "off"): Promise<void> {
  return new Promise((done, fail) => execFile("callgrind_control", ["-i", state, String(process.pid)], (error) => (error === null ? done() : fail(error))));
}

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

async function child(network: Network): Promise<void> {
  const self = await member(network, "other");
  let received = 0;
  let until = Number.POSITIVE_INFINITY;
  self.subscribe(() => {
    if (++received === until) process.send!({ type: "received", count: received } satisfies FromChild);
  });
  process.on("message", async (message: ToChild) => {
    if (message.type === "expect") {
      until = message.until;
      if (received >= until) process.send!({ type: "received", count: received } satisfies FromChild);
    } else if (message.type === "send") {
      for (let i = 0; i < message.count; i++) await self.publish();
      process.send!({ type: "sent" } satisfies FromChild);
    } else {
      await self.close().catch(() => undefined);
      process.exit(0);
    }
  });
  process.on("disconnect", () => process.exit(0));
  process.send!({ type: "ready", id: self.channel.id } satisfies FromChild);
}

async function main(): Promise<void> {
  const network = freshNetwork("jms-cost");
  const other = fork(process.argv[1]!, ["--child", "--lib", values.lib!, "--api", api, "--body", values.body!, "--size", values.size!, "--network", JSON.stringify(network)], { execArgv: process.execArgv });
  const inbox: FromChild[] = [];
  let wake = () => {};
  other.on("message", (message: FromChild) => {
    inbox.push(message);
    wake();
  });
  const next = async <T extends FromChild["type"]>(type: T): Promise<Extract<FromChild, { type: T }>> => {
    for (;;) {
      const at = inbox.findIndex((m) => m.type === type);
      if (at >= 0) return inbox.splice(at, 1)[0] as Extract<FromChild, { type: T }>;
      await new Promise<void>((done) => (wake = done));
    }
  };
  const self = await member(network, "self");
  const { id } = await next("ready");
  while (self.channel.getMemberById(id) === undefined) await new Promise((done) => setTimeout(done, 20));
  const window = Number(values.window);
  let received = 0;
  let until = 0;
  let reached = () => {};
  if (values.side === "subscriber") {
    self.subscribe(() => {
      if (++received === until) reached();
    });
  }
  let total = 0;
  /** `count` more messages, a window at a time, each window received before the next is sent. */
  const run = async (count: number) => {
    for (let done = 0; done < count; done += window) {
      const n = Math.min(window, count - done);
      total += n;
      if (values.side === "publisher") {
        other.send({ type: "expect", until: total } satisfies ToChild);
        for (let i = 0; i < n; i++) await self.publish();
        await next("received");
      } else {
        until = total;
        const all = new Promise<void>((done) => (reached = done));
        other.send({ type: "send", count: n } satisfies ToChild);
        await all;
        await next("sent");
      }
    }
  };
  if (values.callgrind) await callgrindInstrumentation("off");
  await run(Number(values.warmup));
  if (values.callgrind) await callgrindInstrumentation("on");
  const count = Number(values.count);
  const cpuBefore = cpuMs();
  const started = performance.now();
  await run(count);
  const wallMs = performance.now() - started;
  const cpu = cpuMs() - cpuBefore;
  if (values.callgrind) await callgrindInstrumentation("off");
  other.send({ type: "exit" } satisfies ToChild);
  await self.close();
  console.log(JSON.stringify({ lib: values.lib, api, side: values.side, body: values.body, size: Number(values.size), count, cpuUsPerMessage: (cpu * 1000) / count, wallUsPerMessage: (wallMs * 1000) / count }));
  process.exit(0);
}

if (values.child) await child(JSON.parse(values.network!) as Network);
else await main();
