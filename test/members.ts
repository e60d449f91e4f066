import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach } from "vitest";

/** Shared plumbing of the tests that run members as processes of their own, in Node, Bun or Deno. */

const root = join(import.meta.dirname, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);

/** How each runtime runs a member program (a path relative to the repository root). */
function commandFor(runtime: "node" | "bun" | "deno", program: string): readonly [string, ...string[]] {
  switch (runtime) {
    case "node":
      return [process.execPath, bin("tsx"), program];
    case "bun":
      return [bin("bun"), program];
    case "deno":
      return [bin("deno"), "run", "--allow-net", "--no-lock", "--no-prompt", "--unstable-net", program];
  }
}

export type Runtime = Parameters<typeof commandFor>[0];

export const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

/** Failure detection made quick for the tests (the defaults are 1,000, 5,000 and 1,500 ms). */
export const FAST_TIMING = { heartbeatIntervalMs: 200, failureTimeoutMs: 1_000, verifyTimeoutMs: 300, discoveryTimeoutMs: 500 } as const;

/** Wall-clock ms (with a fraction), comparable with the `at` of the members' events. */
export const now = () => performance.timeOrigin + performance.now();

/** A multicast group, port and cluster of their own, so that runs (and other tests) never meet. */
export function freshNetwork(prefix: string): { group: string; port: number; cluster: string } {
  return {
    group: `239.255.${randomInt(1, 254)}.${randomInt(1, 254)}`,
    // Below Linux's ephemeral range (32768 and up), where the members' own sending sockets are bound.
    port: randomInt(20_000, 32_000),
    cluster: `${prefix}-${Date.now().toString(36)}-${randomInt(0, 1e9).toString(36)}`,
  };
}

/** Kills a member with everything it started (tsx runs the program in a child process of its own). */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** The member processes of the running test file; each is killed after every test. */
export function trackMembers(): Set<ChildProcess> {
  const running = new Set<ChildProcess>();
  afterEach(() => {
    for (const child of running) killGroup(child);
    running.clear();
  });
  return running;
}

/**
 * Starts `program` in `runtime` with `config` as its one argument (JSON), in a process group of its own
 * so that a kill reaches tsx's child too; `running` kills it after the test. `within` is a command
 * prefix that runs it elsewhere (`ip netns exec <namespace>`: test/hosts/); it must exec, not fork.
 */
function spawnMember(runtime: Runtime, program: string, config: unknown, running: Set<ChildProcess>, within: readonly string[]): ChildProcess {
  const [command, ...args] = [...within, ...commandFor(runtime, program)] as [string, ...string[]];
  const child = spawn(command, [...args, JSON.stringify(config)], { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  return child;
}

/**
 * A running member that prints one JSON event a line: its events as they come, awaited by predicate,
 * and the last 100 lines it printed for failure messages (less those `quiet` says are many and dull);
 * `within` runs it elsewhere (see spawnMember).
 */
export class MemberProcess<Event extends { readonly type: string }, Config extends { readonly name: string }> {
  readonly events: Event[] = [];
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  #exited = false;
  readonly #waiters = new Set<() => void>();

  constructor(
    readonly runtime: Runtime,
    program: string,
    readonly config: Config,
    running: Set<ChildProcess>,
    quiet: (line: string) => boolean = () => false,
    within: readonly string[] = [],
  ) {
    this.child = spawnMember(runtime, program, config, running, within);
    let pending = "";
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (!quiet(line)) this.#keep(line);
        if (!line.startsWith("{")) continue;
        try {
          this.events.push(JSON.parse(line) as Event);
        } catch {
          // Not an event line.
        }
      }
      this.#wake();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => this.#keep(chunk));
    this.child.on("close", () => {
      this.#exited = true;
      running.delete(this.child);
      this.#wake();
    });
  }

  get name(): string {
    return this.config.name;
  }

  /** The last of what it printed, for failure messages. */
  get output(): string {
    return `--- ${this.runtime} member ${this.name}${this.#exited ? ` (exited ${this.child.exitCode ?? this.child.signalCode})` : ""}\n${this.#lines.join("\n")}`;
  }

  of<T extends Event["type"]>(type: T): Array<Extract<Event, { type: T }>> {
    return this.events.filter((e): e is Extract<Event, { type: T }> => e.type === type);
  }

  /** Resolves once `condition` holds over the events printed so far. */
  until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const met = condition();
        if (met || this.#exited) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          if (met) resolve();
          else reject(new Error(`${this.name} exited before ${what}\n${this.output}`));
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms\n${this.output}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** The first event (from index `from` on) that `match` accepts, once printed. */
  waitFor<T extends Event>(match: (event: Event) => event is T, timeoutMs: number, what: string, from?: number): Promise<T>;
  waitFor(match: (event: Event) => boolean, timeoutMs: number, what: string, from?: number): Promise<Event>;
  async waitFor(match: (event: Event) => boolean, timeoutMs: number, what: string, from = 0): Promise<Event> {
    let found: Event | undefined;
    await this.until(() => (found = this.events.slice(from).find(match)) !== undefined, timeoutMs, what);
    return found!;
  }

  kill(): void {
    killGroup(this.child);
  }

  #keep(text: string): void {
    this.#lines.push(text.length > 2_000 ? `${text.slice(0, 2_000)}…` : text);
    if (this.#lines.length > 100) this.#lines.splice(0, this.#lines.length - 100);
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** How a member that prints one JSON result line as its last line ended. */
export interface MemberOutcome<Result> {
  readonly runtime: Runtime;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly result: Result | undefined;
  readonly output: string;
}

/** A member that overran its own `timeoutMs` by this much is killed. */
export const KILL_GRACE_MS = 10_000;

/**
 * Runs member `config.index` to its end (killed {@link KILL_GRACE_MS} after its own `timeoutMs`) and
 * parses the JSON line it printed last; `within` as for {@link MemberProcess}.
 */
export function runToEnd<Result>(
  runtime: Runtime,
  program: string,
  config: { readonly index: number; readonly timeoutMs: number },
  running: Set<ChildProcess>,
  within: readonly string[] = [],
): Promise<MemberOutcome<Result>> {
  const child = spawnMember(runtime, program, config, running, within);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const killer = setTimeout(() => killGroup(child), config.timeoutMs + KILL_GRACE_MS);
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(killer);
      running.delete(child);
      let result: Result | undefined;
      try {
        result = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as Result;
      } catch {
        result = undefined;
      }
      resolve({ runtime, code, signal, result, output: `${runtime} member ${config.index}: exit ${code ?? signal}\n${stdout}${stderr}` });
    });
  });
}

/** What `members` printed last, for failure messages. */
export const outputs = (members: ReadonlyArray<{ readonly output: string }>) => members.map((m) => m.output).join("\n");
