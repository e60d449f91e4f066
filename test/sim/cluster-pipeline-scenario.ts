import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import { BlazeError } from "../../src/errors.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { TIMING } from "./cluster-scenario.ts";
import { flush } from "./sim-helpers.ts";

/**
 * Seeded simulations of pipelined writes: many puts in flight from one writer, or from every member at
 * once, under loss, duplication and reordering, while the coordinator crashes (once or twice) and a
 * member restarts. A writer runs `lanes` lanes, each writing its own key one put after the other
 * (so a key's puts are in the writer's order), and starts with a burst of puts to distinct keys all
 * issued in one turn (a turn's requests ordered into as few updates as fit in a datagram).
 *
 * Checked as it happens, at every member: a key's values follow its writer's order (each applied put
 * of a key is a later one of its lane than the one before; a snapshot's may start anywhere), and no
 * member reports an error. At the end, after the network heals: every acknowledged put is there, at
 * every running member — a key holds its lane's last acknowledged put, or a later one if its writer
 * crashed with it in flight (writes are never given up on: the request timeout is longer than the
 * run) — and the replicas are equal.
 */

const GROUP = "state";

interface Proc {
  readonly index: number;
  readonly host: string;
  readonly channel: ClusterChannel;
  status: "running" | "crashed";
  /** The latest put of each key this member applied (its lane's sequence number). */
  readonly latest: Map<string, number>;
}

export interface PipelineScenarioResult {
  readonly seed: number;
  readonly members: number;
  readonly writers: number;
  readonly lanes: number;
  readonly burst: number;
  readonly acknowledged: number;
  readonly coordinatorCrashes: number;
  readonly retried: number;
  readonly deduplicated: number;
  readonly repairsSent: number;
}

export async function runPipelineScenario(seed: number): Promise<PipelineScenarioResult> {
  const rng = new SeededRandom(seed);
  const loss = rng.next() < 0.3 ? 0 : rng.next() * 0.05;
  const net = new SimulatedNetwork({ seed, defaultLink: { loss, duplicate: rng.next() * 0.05, reorder: rng.next() * 0.1 } });
  const clock = net.clock;
  const procs: Proc[] = [];
  const violations: string[] = [];
  const log: string[] = [];
  const note = (text: string) => log.push(`${clock.now().toFixed(1)} ${text}`);
  const violation = (text: string) => violations.push(`${clock.now().toFixed(1)} ${text}`);
  /** The last acknowledged put of each key, as its lane's sequence number. */
  const acked = new Map<string, number>();
  let acknowledged = 0;
  let workload = true;
  let nextIndex = 0;

  const spawn = async (host: string): Promise<Proc> => {
    const index = nextIndex++;
    const channel = new ClusterChannel({
      name: `p${index}`,
      transport: net.transportFactory(host),
      clock,
      random: net.random.fork(`p${index}`),
      incarnation: index + 1,
      groups: [GROUP],
      ...TIMING,
      state: { requestTimeoutMs: 3_600_000 },
    });
    const proc: Proc = { index, host, channel, status: "running", latest: new Map() };
    procs.push(proc);
    note(`start p${index}@${host}`);
    channel.on("error", ({ error, stage }) => {
      if (proc.status === "running" && stage !== "transport") violation(`p${index} reported an error (${stage}): ${error.message}`);
    });
    channel.map.on("change", (change) => {
      if (change.type === "remove") return;
      const [, , seq] = new TextDecoder().decode(change.value as Uint8Array).split("|");
      const n = Number(seq);
      const before = proc.latest.get(change.key);
      if (!change.resync && before !== undefined && n <= before) violation(`p${index}: ${change.key} went from put ${before} to put ${n}, against its writer's order`);
      proc.latest.set(change.key, n);
    });
    await channel.start();
    channel.addToGroup(GROUP, { timeoutMs: 3_600_000 }).catch((error: unknown) => {
      if (proc.status === "running") violation(`p${index} failed to join: ${String(error)}`);
    });
    return proc;
  };

  const step = async (ms: number) => {
    const end = clock.now() + ms;
    while (clock.now() < end) {
      clock.runFor(Math.min(5, end - clock.now()));
      await flush();
      if (violations.length > 0) throw failure(seed, violations, log);
    }
  };

  const value = (writer: Proc, lane: string, seq: number) => new TextEncoder().encode(`${writer.index}|${lane}|${seq}`);
  /** A put whose failure is a violation, unless its member crashed. */
  const put = async (writer: Proc, key: string, seq: number) => {
    try {
      await writer.channel.map.put(key, value(writer, key, seq));
      acknowledged++;
      if ((acked.get(key) ?? -1) < seq) acked.set(key, seq);
      return true;
    } catch (error) {
      if (writer.status === "running" || !(error instanceof BlazeError)) violation(`p${writer.index} put ${key} #${seq}: ${String(error)}`);
      return false;
    }
  };

  const runWriter = async (writer: Proc, lanes: number, burst: number) => {
    // A turn's worth of puts at once, then lanes of one key each.
    await Promise.all(Array.from({ length: burst }, (_, i) => put(writer, `b/${writer.index}/${i}`, 0)));
    await Promise.all(
      Array.from({ length: lanes }, async (_, lane) => {
        const key = `l/${writer.index}/${lane}`;
        for (let seq = 0; workload && writer.status === "running"; seq++) if (!(await put(writer, key, seq))) return;
      }),
    );
  };

  const members = 3 + Math.floor(rng.next() * 2);
  for (let i = 0; i < members; i++) await spawn(`h${i}`);
  await step(2_000);
  const running = () => procs.filter((p) => p.status === "running");
  if (!running().every((p) => p.channel.ready)) violation("the members are not ready after 2 s");
  const all = rng.next() < 0.5;
  const writers = all ? running() : [running().find((p) => !p.channel.isMaster())!];
  const lanes = 16 + Math.floor(rng.next() * 112);
  const burst = 200 + Math.floor(rng.next() * 1_000);
  note(`${writers.length} writer(s), ${lanes} lanes, a burst of ${burst}, loss ${loss.toFixed(3)}`);
  const writing = writers.map((w) => runWriter(w, lanes, burst));

  let coordinatorCrashes = 0;
  const crashes = 1 + Math.floor(rng.next() * 2);
  for (let i = 0; i < crashes; i++) {
    await step(300 + rng.next() * 900);
    const master = running().find((p) => p.channel.isMaster());
    if (master === undefined || running().length < 3) continue;
    note(`crash p${master.index} (coordinator)`);
    master.status = "crashed";
    coordinatorCrashes++;
    net.crash(master.host);
    void master.channel.stop();
    if (rng.next() < 0.5) {
      await step(200 + rng.next() * 800);
      net.restart(master.host);
      await spawn(master.host);
    }
  }
  await step(500 + rng.next() * 1_000);
  workload = false;
  net.heal();
  net.setDefaultLink({ loss: 0, duplicate: 0, reorder: 0 });
  let settled = false;
  void Promise.all(writing).then(() => (settled = true));
  await step(5_000);
  if (!settled) violation("writers still wait for puts 5 s after the network healed");

  const live = running();
  const decode = (bytes: unknown) => new TextDecoder().decode(bytes as Uint8Array);
  for (const p of live) {
    if (!p.channel.ready) violation(`p${p.index} is not ready at the end`);
    for (const [key, seq] of acked) {
      const stored = p.channel.map.get(key);
      // Its last acknowledged put, or a later one (acknowledged to nobody: its writer crashed meanwhile).
      const [writer, lane, n] = stored === undefined ? [] : decode(stored).split("|");
      if (writer !== key.split("/")[1] || lane !== key || !(Number(n) >= seq)) violation(`p${p.index}: ${key} is ${stored === undefined ? "absent" : decode(stored)}, not its last acknowledged put ${seq}`);
    }
  }
  const digests = live.map((p) => ({ p, digest: digestOf(p.channel) }));
  for (const { p, digest } of digests) if (digest !== digests[0]!.digest) violation(`replicas differ: p${digests[0]!.p.index} and p${p.index}`);
  if (violations.length > 0) throw failure(seed, violations, log);
  const stats = procs.map((p) => p.channel.stateStats);
  for (const p of live) await p.channel.stop();
  return {
    seed,
    members,
    writers: writers.length,
    lanes,
    burst,
    acknowledged,
    coordinatorCrashes,
    retried: stats.reduce((sum, s) => sum + s.requestsRetried, 0),
    deduplicated: stats.reduce((sum, s) => sum + s.requestsDeduplicated, 0),
    repairsSent: stats.reduce((sum, s) => sum + s.repairsSent, 0),
  };
}

function digestOf(channel: ClusterChannel): string {
  const map = channel.map;
  return map
    .keys()
    .sort()
    .map((key) => `${key}=${new TextDecoder().decode(map.getEntry(key)!.value as Uint8Array)}@${map.getEntry(key)!.version}`)
    .join(";");
}

function failure(seed: number, violations: string[], log: string[]): Error {
  return new Error(`seed ${seed}:\n${violations.slice(0, 10).join("\n")}\n--- story ---\n${log.slice(-40).join("\n")}`);
}
