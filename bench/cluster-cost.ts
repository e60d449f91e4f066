/**
 * What one replicated write costs, member by member: cluster channels as separate Node processes on
 * loopback multicast (this file forks itself), one member (not the coordinator) doing sequential puts
 * or lock + unlock pairs, a fixed count after a warm-up. Each member reports, per operation, the
 * datagrams it sent and received (they do not depend on the machine's load) and the CPU time its
 * process spent (a busy machine disturbs it far less than the rate, but still some).
 *
 *   npx tsx bench/cluster-cost.ts [--members 2,3] [--ops puts,locks] [--count 5000] [--warmup 2000]
 *                                 [--rounds 3] [--dist dist] [--dist-b other/dist] [--cpu-prof folder]
 *
 * `--dist` (and `--dist-b`) name a build, or a src/ folder (run through tsx); with `--dist-b` every
 * round runs both, alternating which goes first (A/B on one machine). `--cpu-prof` writes each
 * member's V8 CPU profile (of its whole process) into the folder.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Child, exitAll, freshNetwork, median, memberOptions, type Network, serve } from "./lib.ts";

type Op = "puts" | "locks";

type ToChild =
  | { readonly type: "join"; readonly name: string; readonly network: Network; readonly weight: number }
  | { readonly type: "run"; readonly op: Op; readonly count: number }
  | { readonly type: "mark" }
  | { readonly type: "exit" };

interface Mark {
  readonly cpuUs: number;
  readonly datagramsIn: number;
  readonly datagramsOut: number;
}

type FromChild =
  | { readonly type: "ready" }
  | { readonly type: "joined"; readonly id: string }
  | { readonly type: "view"; readonly at: number; readonly ids: readonly string[]; readonly coordinator: string }
  | { readonly type: "done"; readonly ms: number }
  | { readonly type: "mark"; readonly mark: Mark }
  | { readonly type: "failed"; readonly error: string };

async function runMember(dist: string): Promise<void> {
  // A build (dist/), or sources (src/, through tsx).
  const extension = dist.endsWith("src") ? "ts" : "js";
  const { ClusterChannel } = (await import(resolve(dist, `index.${extension}`))) as typeof import("../src/cluster/cluster-channel.ts");
  const { createUdpTransport } = (await import(resolve(dist, `adapters/node.${extension}`))) as typeof import("../src/adapters/node.ts");
  const send = (message: FromChild) => process.send!(message);
  let channel: InstanceType<typeof ClusterChannel> | undefined;
  const value = new Uint8Array(64).fill(7);
  serve<ToChild>({
    join: async (message) => {
      const ch = new ClusterChannel({ ...memberOptions({ ...message, timing: {} }, createUdpTransport), weight: message.weight });
      channel = ch;
      ch.on("error", ({ error, stage }) => console.error(`${message.name}: ${stage}: ${error.message}`));
      ch.on("viewChange", ({ view }) => send({ type: "view", at: 0, ids: view.members.map((m) => m.id), coordinator: view.coordinator.id }));
      await ch.init();
      await ch.join({ timeoutMs: 60_000 });
      send({ type: "joined", id: ch.id });
    },
    run: async (message) => {
      const map = channel!.map;
      const began = performance.now();
      for (let n = 0; n < message.count; n++) {
        if (message.op === "puts") await map.put(`k${n % 10_000}`, value);
        else {
          const lock = await map.lock("bench-lock");
          await lock.release();
        }
      }
      send({ type: "done", ms: performance.now() - began });
    },
    mark: () => {
      const cpu = process.cpuUsage();
      const network = channel!.stats.network;
      send({ type: "mark", mark: { cpuUs: cpu.user + cpu.system, datagramsIn: network.datagramsReceived, datagramsOut: network.datagramsSent } });
    },
    exit: async () => {
      await channel?.shutDown().catch(() => undefined);
      process.exit(0);
    },
  });
}

type Member = Child<ToChild, FromChild>;

async function marks(members: readonly Member[]): Promise<Mark[]> {
  for (const m of members) m.post({ type: "mark" });
  return (await Promise.all(members.map((m) => m.next("mark", 30_000)))).map((r) => r.mark);
}

interface Cost {
  /** Per operation, by member: coordinator, writer, then the others. */
  readonly cpuUs: number[];
  readonly datagramsOut: number[];
  readonly datagramsIn: number[];
  readonly opsPerSecond: number;
}

async function measure(dist: string, count: number, op: Op, n: number, warmup: number, cpuProf: string | undefined): Promise<Cost> {
  const execArgv = [...process.execArgv, ...(cpuProf === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${cpuProf}`])];
  const members = Array.from({ length: count }, () => new Child<ToChild, FromChild>(import.meta.filename, ["--child", dist], execArgv));
  try {
    await Promise.all(members.map((m) => m.next("ready", 60_000)));
    const network = freshNetwork("bench-cost");
    for (const [i, m] of members.entries()) {
      m.post({ type: "join", name: `m${i}`, network, weight: i === 0 ? 10 : 0 });
      await m.next("joined", 60_000);
    }
    const deadline = Date.now() + 30_000;
    while (!members.every((m) => m.latestView?.ids.length === count)) {
      if (Date.now() > deadline) throw new Error(`no ${count}-member view`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const writer = members[1]!;
    writer.post({ type: "run", op, count: warmup });
    await writer.next("done", 60_000);
    const before = await marks(members);
    writer.post({ type: "run", op, count: n });
    const { ms } = await writer.next("done", 300_000);
    const after = await marks(members);
    const per = (f: (m: Mark) => number) => after.map((a, i) => (f(a) - f(before[i]!)) / n);
    return { cpuUs: per((m) => m.cpuUs), datagramsOut: per((m) => m.datagramsOut), datagramsIn: per((m) => m.datagramsIn), opsPerSecond: n / (ms / 1000) };
  } finally {
    await exitAll(members, 1_000);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      members: { type: "string", default: "2,3" },
      ops: { type: "string", default: "puts,locks" },
      count: { type: "string", default: "5000" },
      warmup: { type: "string", default: "2000" },
      rounds: { type: "string", default: "3" },
      dist: { type: "string", default: "dist" },
      "dist-b": { type: "string" },
      "cpu-prof": { type: "string" },
    },
  });
  const builds = [resolve(values.dist), ...(values["dist-b"] === undefined ? [] : [resolve(values["dist-b"])])];
  const counts = values.members.split(",").map(Number);
  const ops = values.ops.split(",") as Op[];
  const n = Number(values.count);
  const rounds = Number(values.rounds);
  const results = new Map<string, Cost[]>();
  for (let round = 0; round < rounds; round++) {
    for (const count of counts) {
      for (const op of ops) {
        for (const dist of round % 2 === 0 ? builds : [...builds].reverse()) {
          const cost = await measure(dist, count, op, n, Number(values.warmup), values["cpu-prof"]);
          const key = `${op}, ${count} members, ${dist}`;
          results.set(key, [...(results.get(key) ?? []), cost]);
          const f = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(" / ");
          console.log(`${key} round ${round + 1}: CPU µs/op (coordinator / writer / others) ${f(cost.cpuUs)} = ${cost.cpuUs.reduce((a, b) => a + b, 0).toFixed(1)}; datagrams out ${f(cost.datagramsOut)}; in ${f(cost.datagramsIn)}; ${Math.round(cost.opsPerSecond)}/s`);
        }
      }
    }
  }
  console.log("\nmedians over rounds:");
  for (const [key, costs] of results) {
    const total = median(costs.map((c) => c.cpuUs.reduce((a, b) => a + b, 0)));
    const byMember = costs[0]!.cpuUs.map((_, i) => median(costs.map((c) => c.cpuUs[i]!)).toFixed(1)).join(" / ");
    const out = costs[0]!.datagramsOut.map((_, i) => median(costs.map((c) => c.datagramsOut[i]!)).toFixed(2)).join(" / ");
    const inn = costs[0]!.datagramsIn.map((_, i) => median(costs.map((c) => c.datagramsIn[i]!)).toFixed(2)).join(" / ");
    console.log(`| ${key} | CPU ${total.toFixed(1)} µs/op (${byMember}) | out ${out} | in ${inn} | ${Math.round(median(costs.map((c) => c.opsPerSecond)))}/s |`);
  }
}

if (process.argv[2] === "--child") await runMember(process.argv[3]!);
else await main();
