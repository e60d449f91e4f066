/**
 * A Jepsen-style check of the cluster level across hosts with network stacks of their own: members in
 * network namespaces (test/hosts/host-network.ts) in quorum mode, each a process running
 * test/runtime/cluster-jepsen-member.ts — unique writes, and lock → fenced write → release cycles on a
 * few keys, all at once — while a nemesis driven by a seed cuts hosts off, splits the network, isolates
 * the master and restarts members in place, for a given time. Then the network heals, the workload ends,
 * and the history the members printed is checked:
 *
 * - no two members were master at once (each samples its own `isMaster()` every 2 ms);
 * - no acknowledged write is lost, and no two acknowledged writes share a log index (two masters taking
 *   writes in parallel would give out the same indexes); what a master showed its application is kept;
 * - fencing tokens are never handed out twice, and each lock key holds the write of the latest grant
 *   that wrote it; every lock is free at the end;
 * - once healed, the cluster takes writes again (members restarted in place rejoin its quorum), and the
 *   replicas are equal; the records of applied requests stay bounded.
 *
 *   npm run jepsen -- --seed 7 --seconds 60 [--hosts 5] [--json result.json] [--history folder]
 *
 * As root, with iproute2; otherwise it says why not and exits with 2. It deletes its namespaces and ends
 * its processes whatever happens. Exit code 0: every check passed; 1: a violation (printed).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import type { JepsenEvent, JepsenMemberConfig } from "../runtime/cluster-jepsen-member.ts";
import { type Host, HostNetwork, hostNetworkUnsupported } from "./host-network.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const MEMBER = join("test", "runtime", "cluster-jepsen-member.ts");
/** Failure detection made quick (as the other multi-process tests). */
const TIMING = { heartbeatIntervalMs: 200, failureTimeoutMs: 1_000, verifyTimeoutMs: 300, discoveryTimeoutMs: 500 } as const;
const START_TIMEOUT_MS = 90_000;
const SETTLE_TIMEOUT_MS = 45_000;
/** Records of applied requests a replica may keep beyond the members it has (src/cluster/sequencer.ts). */
const DEPARTED_REMEMBERED = 64;

export interface JepsenOptions {
  readonly seed: number;
  readonly seconds: number;
  readonly hosts?: number;
  /** Progress lines (nemesis steps); default none. */
  readonly log?: (line: string) => void;
  /** A folder to write each member's history to (`<name>.jsonl`, its events as printed), to look into a violation. */
  readonly historyDir?: string;
}

export interface JepsenResult {
  readonly seed: number;
  readonly seconds: number;
  readonly hosts: number;
  readonly faults: readonly string[];
  readonly writes: number;
  readonly writesFailed: number;
  readonly grants: number;
  readonly fencedWrites: number;
  readonly restarts: number;
  readonly masters: number;
  readonly violations: readonly string[];
}

/** A member process: its events as they come, and commands on its stdin. */
class Member {
  readonly events: JepsenEvent[] = [];
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  #waiters = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly host: Host,
    config: JepsenMemberConfig,
  ) {
    const [command, ...args] = [...host.within, process.execPath, join(ROOT, "node_modules", ".bin", "tsx"), MEMBER, JSON.stringify(config)] as [string, ...string[]];
    this.child = spawn(command, args, { cwd: ROOT, detached: true, stdio: ["pipe", "pipe", "pipe"] });
    let pending = "";
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith("{")) {
          this.#keep(line);
          continue;
        }
        try {
          const event = JSON.parse(line) as JepsenEvent;
          this.events.push(event);
          if (event.type === "error") this.#keep(line);
        } catch {
          this.#keep(line);
        }
      }
      for (const wake of this.#waiters) wake();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => this.#keep(chunk));
  }

  of<T extends JepsenEvent["type"]>(type: T): Array<Extract<JepsenEvent, { type: T }>> {
    return this.events.filter((e): e is Extract<JepsenEvent, { type: T }> => e.type === type);
  }

  tell(command: string): void {
    this.child.stdin!.write(`${command}\n`);
  }

  async until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (check()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(wake);
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms\n${this.output}`));
      }, timeoutMs);
      const wake = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      this.#waiters.add(wake);
    });
  }

  get output(): string {
    return `--- ${this.name} ---\n${this.#lines.slice(-40).join("\n")}`;
  }

  kill(): void {
    try {
      process.kill(-this.child.pid!, "SIGKILL");
    } catch {
      // Gone already.
    }
  }

  #keep(text: string): void {
    this.#lines.push(...text.split("\n").filter((l) => l.length > 0));
    if (this.#lines.length > 200) this.#lines.splice(0, this.#lines.length - 200);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runJepsen(options: JepsenOptions): Promise<JepsenResult> {
  const { seed, seconds, hosts: count = 5, log = () => undefined } = options;
  const rng = new SeededRandom(seed);
  const network = await HostNetwork.create({ hosts: count });
  const members: Member[] = [];
  const faults: string[] = [];
  try {
    const shared = {
      cluster: `jepsen-${seed}-${Date.now().toString(36)}`,
      group: `239.255.${1 + rng.nextInt(254)}.${1 + rng.nextInt(254)}`,
      port: 20_000 + rng.nextInt(12_000),
    };
    for (const host of network.hosts) {
      const name = `n${host.index}`;
      members.push(
        new Member(name, host, {
          ...shared,
          ...TIMING,
          name,
          interface: host.address,
          lifetimeMs: (seconds + 180) * 1_000,
          members: count,
          lockKeys: 3,
          operationTimeoutMs: 2_000,
          seed: seed * 1_000 + host.index,
        }),
      );
    }
    await Promise.all(members.map((m) => m.until(() => m.of("started").length > 0 || m.child.exitCode !== null, START_TIMEOUT_MS, "start")));
    log(`${count} members started`);

    // --- the nemesis ---
    const masterNow = () => members.find((m) => m.of("master").at(-1)?.on === true);
    const endAt = Date.now() + seconds * 1_000;
    while (Date.now() < endAt) {
      const pick = rng.next();
      const hold = 1_500 + rng.nextInt(2_500);
      if (pick < 0.25) {
        const victim = masterNow() ?? members[rng.nextInt(count)]!;
        faults.push(`cut ${victim.name}${victim === masterNow() ? " (master)" : ""}`);
        await network.cut(victim.host);
        await sleep(hold);
        await network.heal(victim.host);
      } else if (pick < 0.5) {
        const order = [...members].sort(() => rng.next() - 0.5);
        const cut = 1 + rng.nextInt(count - 1);
        const sides = [order.slice(0, cut), order.slice(cut)];
        faults.push(`split ${sides.map((side) => side.map((m) => m.name).join(",")).join(" | ")}`);
        await network.partition(sides.map((side) => side.map((m) => m.host)));
        await sleep(hold);
        await network.join();
      } else if (pick < 0.75) {
        const order = [...members].sort(() => rng.next() - 0.5);
        const restarted = order.slice(0, 1 + rng.nextInt(2));
        faults.push(`restart ${restarted.map((m) => m.name).join(",")}`);
        for (const m of restarted) m.tell("restart");
        await sleep(hold);
      } else {
        faults.push("quiet");
        await sleep(hold);
      }
      log(faults.at(-1)!);
      // Between faults, time to notice the healing.
      await sleep(1_000 + rng.nextInt(1_500));
    }

    // --- heal, take writes again, end the workload, agree ---
    await network.join();
    for (const host of network.hosts) await network.heal(host);
    const healedAt = performance.timeOrigin + performance.now();
    log("healed");
    await Promise.all(members.map((m) => m.until(() => m.of("write").some((w) => w.at > healedAt), SETTLE_TIMEOUT_MS, "write after the heal")));
    for (const m of members) m.tell("quiesce");
    await Promise.all(members.map((m) => m.until(() => m.of("quiet").length > 0, SETTLE_TIMEOUT_MS, "end of the workload")));
    const settleBy = Date.now() + SETTLE_TIMEOUT_MS;
    let finals: Array<Extract<JepsenEvent, { type: "final" }>> = [];
    for (;;) {
      const asked = members.map((m) => m.of("final").length);
      for (const m of members) m.tell("final");
      await Promise.all(members.map((m, i) => m.until(() => m.of("final").length > asked[i]!, 10_000, "final state")));
      finals = members.map((m) => m.of("final").at(-1)!);
      const first = JSON.stringify([finals[0]!.entries, finals[0]!.locks]);
      if (finals.every((f) => f.ready && JSON.stringify([f.entries, f.locks]) === first && f.locks.length === 0)) break;
      if (Date.now() > settleBy) break;
      await sleep(500);
    }
    for (const m of members) m.tell("exit");
    if (options.historyDir !== undefined) {
      mkdirSync(options.historyDir, { recursive: true });
      for (const m of members) writeFileSync(join(options.historyDir, `${m.name}.jsonl`), m.events.map((e) => `${JSON.stringify(e)}\n`).join(""));
    }
    return { seed, seconds, hosts: count, faults, ...check(members, finals) };
  } finally {
    await sleep(500);
    for (const m of members) m.kill();
    await network.destroy();
  }
}

/** The checks, on what the members printed. */
function check(members: readonly Member[], finals: ReadonlyArray<Extract<JepsenEvent, { type: "final" }>>): Omit<JepsenResult, "seed" | "seconds" | "hosts" | "faults"> {
  const violations: string[] = [];
  // Master intervals, from each member's own transitions.
  const intervals: Array<{ member: string; from: number; to: number }> = [];
  for (const m of members) {
    let from: number | undefined;
    for (const e of m.of("master")) {
      if (e.on) from = e.at;
      else if (from !== undefined) {
        intervals.push({ member: m.name, from, to: e.at });
        from = undefined;
      }
    }
    if (from !== undefined) intervals.push({ member: m.name, from, to: Number.POSITIVE_INFINITY });
  }
  intervals.sort((a, b) => a.from - b.from);
  for (let i = 1; i < intervals.length; i++) {
    const [a, b] = [intervals[i - 1]!, intervals[i]!];
    if (b.member !== a.member && b.from < a.to) violations.push(`${a.member} and ${b.member} were both master from ${b.from.toFixed(0)} to ${Math.min(a.to, b.to).toFixed(0)}`);
  }

  const state = new Map((finals[0]?.entries ?? []).map(([key, value, version]) => [key, { value, version }]));
  const nameOf = new Map(members.map((m) => [m.of("started")[0]?.id, m] as const));
  for (const [i, f] of finals.entries()) {
    if (!f.ready) violations.push(`${members[i]!.name} is not ready at the end`);
    if (JSON.stringify([f.entries, f.locks]) !== JSON.stringify([finals[0]!.entries, finals[0]!.locks])) violations.push(`${members[i]!.name}'s replica differs from ${members[0]!.name}'s`);
    for (const [key, holder, token] of f.locks) {
      const owner = nameOf.get(holder);
      const story = owner?.events.filter((e) => "key" in e && e.key === key && "token" in e && e.token === token).map((e) => e.type);
      violations.push(`${members[i]!.name}: "${key}" is still locked by ${owner?.name ?? holder.slice(0, 8)} (token ${token}${story === undefined ? "" : `; its events: ${story.join(", ") || "none"}`})`);
    }
    if (f.appliedRequesters > members.length + DEPARTED_REMEMBERED) violations.push(`${members[i]!.name} remembers the requests of ${f.appliedRequesters} members`);
  }

  // Acknowledged writes: kept, at the log index they were acknowledged at (a batch shares one index; a
  // write applied twice, or an index two masters gave out, shows as another index in the end).
  const writes = members.flatMap((m) => m.of("write"));
  for (const w of writes) {
    const kept = state.get(w.key);
    if (kept?.value !== w.value) violations.push(`acknowledged ${w.key} = ${w.value} is lost (the map has ${kept?.value ?? "nothing"})`);
    else if (kept.version !== w.version) violations.push(`${w.key} was acknowledged at log index ${w.version}, the map holds it at ${kept.version}`);
  }
  for (const m of members) {
    for (const s of m.of("shown")) if (state.get(s.key)?.value !== s.value) violations.push(`${s.key} = ${s.value}, shown by master ${m.name} to its application, is lost`);
  }

  // Locks: a token is never handed out twice; a lock key holds the write of the latest grant that wrote it.
  const grants = members.flatMap((m) => m.of("grant").map((g) => ({ ...g, member: m.name })));
  const seen = new Map<number, string>();
  for (const g of grants) {
    const other = seen.get(g.token);
    if (other !== undefined) violations.push(`fencing token ${g.token} was handed to ${other} and to ${g.member}`);
    seen.set(g.token, g.member);
  }
  const fenced = members.flatMap((m) => m.of("fenced"));
  for (const key of new Set(fenced.map((f) => f.key))) {
    const latest = fenced.filter((f) => f.key === key).reduce((a, b) => (b.token > a.token ? b : a));
    const stored = state.get(key)?.value;
    const storedToken = Number(stored?.split(":")[2] ?? -1);
    if (storedToken < latest.token) violations.push(`"${key}" holds ${stored}, older than the acknowledged write under token ${latest.token}`);
  }
  for (const m of members) for (const e of m.of("error")) violations.push(`${m.name} reported: ${e.message}`);

  return {
    writes: writes.length,
    writesFailed: members.reduce((n, m) => n + m.of("writeFailed").length, 0),
    grants: grants.length,
    fencedWrites: fenced.length,
    restarts: members.reduce((n, m) => n + m.of("restarted").length, 0),
    masters: intervals.length,
    violations,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seed: { type: "string", default: "1" }, seconds: { type: "string", default: "60" }, hosts: { type: "string", default: "5" }, json: { type: "string" }, history: { type: "string" } } });
  const why = await hostNetworkUnsupported();
  if (why !== undefined) {
    console.error(`cluster-jepsen: ${why}`);
    process.exit(2);
  }
  const started = Date.now();
  const result = await runJepsen({ seed: Number(values.seed), seconds: Number(values.seconds), hosts: Number(values.hosts), historyDir: values.history, log: (line) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${line}`) });
  if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
  console.log(
    `seed ${result.seed}, ${result.seconds} s, ${result.hosts} hosts: ${result.faults.length} faults (${result.restarts} restarts), ${result.writes} acknowledged writes (${result.writesFailed} failed), ` +
      `${result.grants} lock grants, ${result.fencedWrites} fenced writes, ${result.masters} master terms`,
  );
  if (result.violations.length > 0) {
    console.log(`${result.violations.length} violation(s):\n${result.violations.slice(0, 30).join("\n")}`);
    process.exit(1);
  }
  console.log("no violation");
}

if (process.argv[1] === import.meta.filename) await main();
