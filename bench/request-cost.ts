/**
 * The requester's cost of one request/reply, for profiling: this process is the requester, a forked
 * child the responder (or, with `--raw`, a node:dgram ping-pong of the same size, for comparison).
 * After `--warmup` round trips it runs `--count` more, sequentially, and prints one JSON line: CPU time
 * per round trip and the requester's datagrams per round trip.
 *
 *   npx tsx bench/request-cost.ts [--lib dist] [--count 10000] [--warmup 3000] [--size 64] [--raw | --sealed]
 *
 * `--sealed` seals every datagram of both members (AES-256-GCM under one shared key, the built
 * package's own provider: node:crypto), for comparing a sealed round trip with a plain one.
 *
 * `--lib` is the built package to load (another checkout's `dist/` for an A/B comparison). A copy kept
 * outside the package needs a `package.json` of `"type": "module"` beside or above it: otherwise tsx
 * transforms its files on loading, and the `__name` call it adds to every named closure costs the
 * library a property definition each time one is made (some 1,400 instructions per round trip). With
 * `--callgrind`, under `valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes node --import
 * tsx bench/request-cost.ts --callgrind --warmup 10000 --count N`, only the measured loop is counted
 * (switched on and off with callgrind_control): the main thread's total (the `.out-01` file), less a
 * short run's, over the difference of their counts, is the requester's instructions per round trip.
 * With `--callgrind-responder` as well, and valgrind's `--trace-children=yes`, the responder's loop is
 * counted too, in the child's own `.out-01` file (the raw echo cannot be counted: its child is not switched).
 * Adding `--perf-basic-prof` to node writes the map that names its compiled functions; `node --cpu-prof`
 * samples them instead.
 *
 * Under valgrind a round trip takes milliseconds, not tens of microseconds, so what comes per unit of
 * time weighs far more in the totals than at full speed: the 5 ms acknowledgement timer armed again
 * every round trip, heartbeats and their decoding; and the zeroing of a fresh datagram slab is counted
 * byte by byte (`rep stosb`). Totals also move by thousands from run to run with what the engine
 * happens to have optimized; a change is best judged by the inclusive cost of the functions it touches.
 */
import { execFile, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { freshNetwork, type Network } from "./lib.ts";

type Library = typeof import("../src/group/group-channel.ts") & typeof import("../src/adapters/node.ts");

interface ChildReady {
  readonly id?: string;
  readonly port?: number;
}

const { values } = parseArgs({
  options: {
    lib: { type: "string", default: "dist" },
    count: { type: "string", default: "10000" },
    warmup: { type: "string", default: "3000" },
    size: { type: "string", default: "64" },
    raw: { type: "boolean", default: false },
    sealed: { type: "boolean", default: false },
    secret: { type: "string" },
    callgrind: { type: "boolean", default: false },
    "callgrind-responder": { type: "boolean", default: false },
    child: { type: "string" },
    network: { type: "string" },
  },
});

async function load(): Promise<Library> {
  const dir = resolve(values.lib!);
  return { ...((await import(resolve(dir, "index.js"))) as Library), ...((await import(resolve(dir, "adapters", "node.js"))) as Library) };
}

// Long failure timeouts: a requester slowed down by a profiler must not be suspected.
function options(name: string, network: Network, transport: Library["createUdpTransport"], secret: string | undefined) {
  return {
    ...(secret === undefined ? {} : { security: { keys: [{ id: 1, secret }] } }),
    cluster: network.cluster,
    name,
    network: { type: "multicast" as const, group: network.group, port: network.port, interface: "127.0.0.1" },
    groups: ["g"],
    transport,
    failureTimeoutMs: 600_000,
  };
}

async function responder(network: Network, secret: string | undefined): Promise<void> {
  const { GroupChannel, createUdpTransport } = await load();
  const channel = new GroupChannel(options("responder", network, createUdpTransport, secret));
  channel.onInbox("echo", (request) => request.reply(request.payload));
  await channel.join({ timeoutMs: 60_000 });
  process.send!({ id: channel.id } satisfies ChildReady);
  process.on("message", () => void channel.shutDown().then(() => process.exit(0)));
  process.on("disconnect", () => process.exit(0));
}

async function rawEcho(): Promise<void> {
  const socket = createSocket("udp4");
  socket.on("message", (message, from) => socket.send(message, from.port, from.address));
  await new Promise<void>((done) => socket.bind(0, "127.0.0.1", done));
  process.send!({ port: socket.address().port } satisfies ChildReady);
  process.on("message", () => process.exit(0));
  process.on("disconnect", () => process.exit(0));
}

function callgrindInstrumentation(state: "on" | "off", pids: readonly number[]): Promise<void> {
  const switchOne = (pid: number) =>
    new Promise<void>((done, fail) => execFile("callgrind_control", ["-i", state, String(pid)], (error) => (error === null ? done() : fail(error))));
  return Promise.all(pids.map(switchOne)).then(() => {});
}

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

async function main(): Promise<void> {
  const count = Number(values.count);
  const warmup = Number(values.warmup);
  const payload = new Uint8Array(Number(values.size)).fill(7);
  const network = freshNetwork("request-cost");
  // 32 bytes, base64: the form `npx blaze keygen` prints.
  const secret = values.sealed ? randomBytes(32).toString("base64") : undefined;
  const sealing = secret === undefined ? [] : ["--secret", secret];
  const child = fork(process.argv[1]!, ["--child", values.raw ? "raw" : "responder", "--lib", values.lib!, "--network", JSON.stringify(network), ...sealing], {
    execArgv: process.execArgv,
  });
  const ready = new Promise<ChildReady>((done) => child.once("message", (message) => done(message as ChildReady)));
  // Each round trip's promise is awaited as it is, as bench/group.ts and an application await a request:
  // an async function between would add microtasks before the next request is made, and the
  // requester's driver would take a turn of its own for it (the reply's turn taken before it).
  let run: (payload: Uint8Array) => Promise<{ readonly payload: Uint8Array } | undefined>;
  let traffic: () => { sent: number; received: number };
  let close: () => Promise<void>;
  if (values.raw) {
    const { port } = await ready;
    const socket = createSocket("udp4");
    await new Promise<void>((done) => socket.bind(0, "127.0.0.1", done));
    // As bench/group.ts's raw ping does: a loss timer armed and cleared per round trip.
    let answer: () => void = () => {};
    socket.on("message", () => answer());
    run = (bytes) =>
      new Promise<undefined>((done, fail) => {
        const timer = setTimeout(() => fail(new Error("a raw datagram was lost")), 60_000);
        answer = () => {
          clearTimeout(timer);
          done(undefined);
        };
        socket.send(bytes, port!, "127.0.0.1");
      });
    let sent = 0;
    traffic = () => ({ sent, received: sent });
    const send = run;
    run = (bytes) => (sent++, send(bytes));
    close = async () => void socket.close();
  } else {
    const { GroupChannel, createUdpTransport } = await load();
    const channel = new GroupChannel(options("requester", network, createUdpTransport, secret));
    await channel.join({ timeoutMs: 60_000 });
    const { id } = await ready;
    while (channel.getMemberById(id!) === undefined) await new Promise((done) => setTimeout(done, 20));
    run = (bytes) => channel.request(id!, bytes, { inbox: "echo", timeoutMs: 60_000 });
    traffic = () => ({ sent: channel.stats.network.datagramsSent, received: channel.stats.network.datagramsReceived });
    close = () => channel.shutDown();
  }
  // Under `valgrind --tool=callgrind --instr-atstart=no`, only the measured loop is counted (and the
  // control calls' own code is warm by then).
  const traced = values["callgrind-responder"] && !values.raw ? [process.pid, child.pid!] : [process.pid];
  if (values.callgrind) await callgrindInstrumentation("off", traced);
  const check = (reply: { readonly payload: Uint8Array } | undefined) => {
    if (reply !== undefined && reply.payload.length !== payload.length) throw new Error(`a reply of ${reply.payload.length} bytes`);
  };
  for (let i = 0; i < warmup; i++) check(await run(payload));
  if (values.callgrind) await callgrindInstrumentation("on", traced);
  const before = traffic();
  const cpuBefore = cpuMs();
  const started = performance.now();
  const startedAtUs = process.hrtime.bigint() / 1000n;
  for (let i = 0; i < count; i++) check(await run(payload));
  const endedAtUs = process.hrtime.bigint() / 1000n;
  if (values.callgrind) await callgrindInstrumentation("off", traced);
  const wallMs = performance.now() - started;
  const cpu = cpuMs() - cpuBefore;
  const after = traffic();
  child.send("exit");
  await close();
  console.log(
    JSON.stringify({
      what: values.raw ? "raw" : values.sealed ? "sealed request" : "request",
      lib: values.lib,
      count,
      cpuUsPerRoundTrip: (cpu * 1000) / count,
      wallUsPerRoundTrip: (wallMs * 1000) / count,
      datagramsSentPerRoundTrip: (after.sent - before.sent) / count,
      datagramsReceivedPerRoundTrip: (after.received - before.received) / count,
      // The measured loop on the monotonic clock (µs), as a CPU profile's timestamps read.
      window: [Number(startedAtUs), Number(endedAtUs)],
    }),
  );
}

if (values.child === "responder") await responder(JSON.parse(values.network!) as Network, values.secret);
else if (values.child === "raw") await rawEcho();
else await main();
