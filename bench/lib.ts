/**
 * What the benchmarks share: members forked as Node (or Bun) processes that talk to the parent over
 * Node's IPC channel, medians and latency summaries, measurements run within a time limit, the report
 * of the machine, its load and the failures at the end of a run, and the summaries and tables of
 * `blaze perf` runs.
 */
import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { PerfResult } from "../src/cli/perf.ts";

/** A multicast group, port and cluster of a run's own. */
export interface Network {
  readonly cluster: string;
  readonly group: string;
  readonly port: number;
}

/** The group options a benchmark sets (everything else is the default). */
export interface Timing {
  readonly heartbeatIntervalMs?: number;
  readonly failureTimeoutMs?: number;
  readonly verifyTimeoutMs?: number;
  readonly discoveryTimeoutMs?: number;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
}

/** Wall-clock ms (with a fraction), comparable across processes of one machine. */
export const absoluteNow = () => performance.timeOrigin + performance.now();
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { count: sorted.length, p50Ms: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), maxMs: sorted[sorted.length - 1]!, meanMs: samples.reduce((a, b) => a + b, 0) / samples.length };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length % 2 === 1 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
}

export function freshNetwork(prefix: string): Network {
  const r = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));
  return { cluster: `${prefix}-${Date.now().toString(36)}-${r(0, 1e9).toString(36)}`, group: `239.255.${r(1, 254)}.${r(1, 254)}`, port: r(20_000, 32_000) };
}

// --- the children ---

/** The runtime this process runs in: Bun, or else Node. */
export const runtimeName: "node" | "bun" = "Bun" in globalThis ? "bun" : "node";

/** Bun as this package installs it (the `bun` dev dependency). */
export const bunPath = join(import.meta.dirname, "..", "node_modules", ".bin", "bun");

/**
 * The built package (`npm run build` first), as users run it, with this runtime's adapter (Node's, or
 * Bun's under Bun, as the package's conditional export `./udp` picks); or, when `fromSources`, the
 * sources through tsx. `dist` is another build's directory (an A/B comparison).
 */
export async function loadLibrary<Library>(fromSources: boolean, sources: () => Promise<Library>, dist?: string): Promise<Library> {
  if (fromSources) return sources();
  // Paths in variables: the type checker must not require dist/ to exist.
  const index = dist === undefined ? "../dist/index.js" : join(resolve(dist), "index.js");
  const adapter = dist === undefined ? `../dist/adapters/${runtimeName}.js` : join(resolve(dist), "adapters", `${runtimeName}.js`);
  return { ...((await import(index)) as Library), ...((await import(adapter)) as Library) };
}

/** A member's channel options: group "g" on loopback multicast, over `transport`, with the benchmark's timing. */
export function memberOptions<Transport>(join: { readonly name: string; readonly network: Network; readonly timing: Timing }, transport: Transport) {
  const { cluster, group, port } = join.network;
  return { cluster, name: join.name, network: { type: "multicast" as const, group, port, interface: "127.0.0.1" }, groups: ["g"], transport, ...join.timing };
}

type Handlers<To extends { readonly type: string }> = { readonly [T in To["type"]]: (message: Extract<To, { type: T }>) => Promise<void> | void };

/** In a child: runs the handler of each message from the parent, reports a handler's failure, and says it is ready. */
export function serve<To extends { readonly type: string }>(handlers: Handlers<To>): void {
  process.on("message", (message: To) => {
    const handler = handlers[message.type as To["type"]] as (message: To) => Promise<void> | void;
    Promise.resolve(handler(message)).catch((error: unknown) => {
      process.send!({ type: "failed", error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    });
  });
  process.send!({ type: "ready" });
}

// --- the parent ---

/** What the parent reads of every child's messages: its views, its failure, its id once joined. */
type ChildMessage = { readonly type: string; readonly id?: string; readonly error?: string };

const children = new Set<Child<{ readonly type: string }, ChildMessage>>();

/** A forked child: what it sends is queued by type and awaited with `next`; views are kept apart, in order. */
export class Child<To extends { readonly type: string }, From extends ChildMessage> {
  readonly process: ChildProcess;
  readonly #queue: From[] = [];
  readonly #waiters = new Set<() => void>();
  /** Every view it reported, in order. */
  readonly views: Array<Extract<From, { type: "view" }>> = [];
  #failure: Error | undefined;
  id = "";

  /**
   * Forks `script` with `args`, as this process runs (through tsx: its loader is in execArgv); `within`
   * is a command prefix that runs it elsewhere (`ip netns exec <namespace>`, which execs node in the
   * namespace with the IPC channel's descriptor inherited). `runtime` is the executable that runs it:
   * this Node by default, or Bun (its execArgv without tsx's loader), which speaks Node's IPC channel too.
   */
  constructor(script: string, args: readonly string[], execArgv: readonly string[] = process.execArgv, within: readonly string[] = [], runtime: string = process.execPath) {
    const [execPath, ...prefix] = within.length === 0 ? [runtime] : [...within, runtime];
    this.process = fork(script, args, { stdio: ["ignore", "inherit", "inherit", "ipc"], execPath, execArgv: [...prefix, ...execArgv] });
    children.add(this);
    this.process.on("message", (message: From) => {
      if (message.type === "view") this.views.push(message as Extract<From, { type: "view" }>);
      else if (message.type === "failed") this.#failure = new Error(`a member failed: ${message.error}`);
      else {
        if (message.type === "joined") this.id = message.id!;
        this.#queue.push(message);
      }
      this.#wake();
    });
    this.process.on("exit", (code, signal) => {
      children.delete(this);
      this.#failure ??= new Error(`a child exited (${code ?? signal})`);
      this.#wake();
    });
  }

  get latestView(): Extract<From, { type: "view" }> | undefined {
    return this.views.at(-1);
  }

  post(message: To): void {
    if (this.process.connected) this.process.send(message);
  }

  next<T extends From["type"]>(type: T, timeoutMs: number): Promise<Extract<From, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for "${type}" from a child`));
      }, timeoutMs);
      const check = () => {
        const index = this.#queue.findIndex((m) => m.type === type);
        if (index < 0 && this.#failure === undefined) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (index >= 0) resolve(this.#queue.splice(index, 1)[0] as Extract<From, { type: T }>);
        else reject(this.#failure!);
      };
      this.#waiters.add(check);
      check();
    });
  }

  kill(): void {
    this.process.kill("SIGKILL");
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** Kills every child still running. */
export function killAll(): void {
  for (const child of children) child.kill();
}

/** Resolves once each of `started` said it is ready. */
export async function whenReady<C extends { next(type: "ready", timeoutMs: number): Promise<unknown> }>(started: C[]): Promise<C[]> {
  await Promise.all(started.map((c) => c.next("ready", 60_000)));
  return started;
}

/** Tells `members` to exit, gives them `graceMs`, then kills what is left. */
export async function exitAll(members: ReadonlyArray<{ post(message: { readonly type: "exit" }): void; kill(): void }>, graceMs = 300): Promise<void> {
  for (const m of members) m.post({ type: "exit" });
  await sleep(graceMs);
  for (const m of members) m.kill();
}

// --- the run ---

/** Each measurement's failure, by label. */
export const failures: Record<string, string> = {};

/** Runs one measurement within `limitMs`; a failure is reported (and recorded) and the others go on. */
export async function timed<T>(label: string, limitMs: number, run: () => Promise<T>): Promise<(T & { wallMs: number }) | undefined> {
  const startedAt = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} took over ${limitMs / 1000} s`)), limitMs);
  });
  try {
    const result = await Promise.race([run(), limit]);
    return { ...result, wallMs: Date.now() - startedAt };
  } catch (error) {
    failures[label] = describe(error);
    process.stderr.write(`${label} FAILED: ${failures[label]}\n`);
    return undefined;
  } finally {
    clearTimeout(timer);
    killAll();
  }
}

/** The start of a run of forked members: children are killed when it exits or is interrupted; its load average now. */
export function startRun(): { startedAt: number; load: number } {
  process.on("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(130));
  return { startedAt: Date.now(), load: loadavg()[0]! };
}

/** The machine; given the load average at the start of the run, that and the load average now. */
export function machine(load?: number) {
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version };
  return load === undefined ? machine : { ...machine, loadAverageAtStart: load, loadAverageAtEnd: loadavg()[0] };
}

/** Writes bench/results/<name>.json. */
export function writeResults(name: string, summary: unknown): void {
  writeFileSync(join(import.meta.dirname, "results", `${name}.json`), `${JSON.stringify(summary, null, 2)}\n`);
}

/**
 * The end of a run: a table row per failed measurement, a note when the machine was busy (`busyNote`
 * says what that does to the figures), the wall time; exits 1 if a measurement failed.
 */
export function finishRun(run: { load: number; wallSeconds: number; results: string | undefined; busyNote: string }): never {
  for (const [label, error] of Object.entries(failures)) console.log(`| ${label} | FAILED | ${error.split("\n")[0]} |`);
  const busiest = Math.max(run.load, loadavg()[0]!);
  if (busiest > cpus().length) {
    console.log(`\nNote: the machine was busy (load average up to ${busiest.toFixed(1)} on ${cpus().length} cores): ${run.busyNote}`);
  }
  const written = run.results === undefined ? " (partial run: no JSON written)" : `; JSON: bench/results/${run.results}.json`;
  console.log(`\nwall time ${run.wallSeconds.toFixed(0)} s; load average at end ${loadavg()[0]!.toFixed(2)}${written}`);
  process.exit(Object.keys(failures).length === 0 ? 0 : 1);
}

// --- runs of `blaze perf` ---

/** The built CLI (`npm run build` first), whose `perf` command runs the members. */
export const blazeCli = join(import.meta.dirname, "..", "dist", "cli", "blaze.js");

/** `--seconds` of each run (default 5) and `--rounds` of each scenario (default 3). */
export function perfArgs(): { seconds: number; rounds: number } {
  const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" } } });
  return { seconds: Number(values.seconds), rounds: Number(values.rounds) };
}

/** The head of a perf benchmark's results: what, when, where, how long and how often. */
export function perfSummary(benchmark: string, seconds: number, rounds: number) {
  return { benchmark, date: new Date().toISOString(), machine: machine(), seconds, rounds };
}

/** A scenario's medians over its runs, and the runs. */
export function summarizeRuns(runs: readonly PerfResult[]) {
  return {
    megabytesPerSecond: median(runs.map((r) => r.megabytesPerSecond)),
    messagesPerSecond: median(runs.map((r) => r.messagesPerSecond)),
    latencyP50Ms: median(runs.map((r) => r.latencyP50Ms)),
    latencyP99Ms: median(runs.map((r) => r.latencyP99Ms)),
    runs,
  };
}

export const thousands = (x: number) => Math.round(x).toLocaleString("en-US");

/** The table of scenarios: the slowest receiver's messages/s, MB/s and latency percentiles. */
export function printScenarios(scenarios: ReadonlyArray<readonly [string, Omit<ReturnType<typeof summarizeRuns>, "runs">]>): void {
  console.log("| scenario | msgs/s (slowest receiver) | MB/s | latency p50 | latency p99 |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const [name, s] of scenarios) {
    console.log(`| ${name} | ${thousands(s.messagesPerSecond)} | ${s.megabytesPerSecond.toFixed(1)} | ${s.latencyP50Ms.toFixed(2)} ms | ${s.latencyP99Ms.toFixed(2)} ms |`);
  }
}

/** The table of targets; `shown` formats a target's measured value and its goal. */
export function printTargets<T extends { readonly target: string; readonly met: boolean }>(targets: readonly T[], shown: (target: T) => readonly [string, string]): void {
  console.log("\n| target | measured | goal | met |\n| --- | ---: | ---: | --- |");
  for (const t of targets) {
    const [measured, goal] = shown(t);
    console.log(`| ${t.target} | ${measured} | ${goal} | ${t.met ? "yes" : "NO"} |`);
  }
}

/** Writes bench/results/<name>.json and says whether every receiver got every message in every run. */
export function finishPerf(name: string, summary: { readonly complete: boolean }): void {
  writeResults(name, summary);
  console.log(`\nevery receiver got every message in every run: ${summary.complete ? "yes" : "NO"}; JSON: bench/results/${name}.json`);
}

/**
 * The peer's figures measured in this run: `run.sh` of the JGroups 2.12 peer benchmark (its path given
 * with `--jgroups`; it needs Debian's libjgroups-java) for the groups of measurements `only` names, as
 * `name → value`. Undefined when no path was given, or the peer could not run (then said on stderr).
 */
export function jgroupsFigures(runSh: string | undefined, only: string): Record<string, number> | undefined {
  if (runSh === undefined) return undefined;
  try {
    const out = execFileSync("bash", [runSh], { env: { ...process.env, ONLY: only }, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 600_000 });
    const figures: Record<string, number> = {};
    for (const line of out.split("\n")) {
      const match = /^(\w+): ([\d.]+) /.exec(line);
      if (match !== null) figures[match[1]!] = Number(match[2]);
    }
    return figures;
  } catch (error) {
    console.error(`the JGroups peer did not run: ${describe(error)}`);
    return undefined;
  }
}
