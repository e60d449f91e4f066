import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { NatsServer } from "./nats-server.ts";
import type { RelayMemberCommand, RelayMemberConfig, RelayMemberEvent } from "./relay-member.ts";

/**
 * Member processes of bridged sites (test/sites/relay-member.ts under tsx), each in a process group of
 * its own so that a kill reaches tsx's child too; driven by commands on stdin, watched through the JSON
 * events they print. Every one is killed by its pid at the end (`killAll`), and exits on its own after
 * its lifetime anyway.
 */

const root = join(import.meta.dirname, "..", "..");
const PROGRAM = "test/sites/relay-member.ts";

export class RelayProcess {
  readonly events: RelayMemberEvent[] = [];
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  readonly #waiters = new Set<() => void>();
  #exited = false;

  constructor(readonly config: RelayMemberConfig) {
    this.child = spawn(process.execPath, [join(root, "node_modules", ".bin", "tsx"), PROGRAM, JSON.stringify(config)], {
      cwd: root,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let pending = "";
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        this.#keep(line);
        if (line.startsWith("{")) this.events.push(JSON.parse(line) as RelayMemberEvent);
      }
      this.#wake();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => this.#keep(chunk));
    this.child.stdin!.on("error", () => undefined);
    this.child.on("close", () => {
      this.#exited = true;
      this.#wake();
    });
  }

  get name(): string {
    return this.config.name;
  }

  get id(): string {
    return this.of("ready")[0]?.id ?? "";
  }

  get output(): string {
    return `--- ${this.name}${this.#exited ? " (exited)" : ""}\n${this.#lines.join("\n")}`;
  }

  of<T extends RelayMemberEvent["type"]>(type: T): Array<Extract<RelayMemberEvent, { type: T }>> {
    return this.events.filter((e): e is Extract<RelayMemberEvent, { type: T }> => e.type === type);
  }

  command(command: RelayMemberCommand): void {
    this.child.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  /** Resolves with the first event from index `from` on that `match` accepts. */
  async next<T extends RelayMemberEvent["type"]>(type: T, timeoutMs: number, from = this.events.length, match: (event: Extract<RelayMemberEvent, { type: T }>) => boolean = () => true): Promise<Extract<RelayMemberEvent, { type: T }>> {
    let found: Extract<RelayMemberEvent, { type: T }> | undefined;
    await this.until(() => (found = this.events.slice(from).find((e): e is Extract<RelayMemberEvent, { type: T }> => e.type === type && match(e as never))) !== undefined, timeoutMs, `a "${type}" event`);
    return found!;
  }

  /** Asks for a report and waits for it. */
  async report(timeoutMs = 5_000): Promise<Extract<RelayMemberEvent, { type: "report" }>> {
    const from = this.events.length;
    this.command({ cmd: "report" });
    return this.next("report", timeoutMs, from);
  }

  until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const met = condition();
        if (!met && !this.#exited) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (met) resolve();
        else reject(new Error(`${this.name} exited before ${what}\n${this.output}`));
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms\n${this.output}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** SIGKILL to its process group (tsx and the program). */
  kill(): void {
    try {
      process.kill(-this.child.pid!, "SIGKILL");
    } catch {
      // Gone already.
    }
  }

  #keep(text: string): void {
    this.#lines.push(text.length > 2_000 ? `${text.slice(0, 2_000)}…` : text);
    if (this.#lines.length > 60) this.#lines.splice(0, this.#lines.length - 60);
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** A site's multicast group, port and cluster of its own, so that sites (and other tests) never meet. */
export function siteNetwork(): { group: string; port: number } {
  const random = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));
  return { group: `239.255.${random(1, 254)}.${random(1, 254)}`, port: random(20_000, 32_000) };
}

/**
 * Two sites, "eu" and "us" (each its own multicast group), of member processes bridged through a
 * nats-server of the test's own: the server starts before the tests of the calling `describe` block,
 * and it and every member started are stopped after them.
 */
export function bridgedSites(prefix: string, member: { readonly lifetimeMs: number; readonly map?: boolean }) {
  let nats: NatsServer | undefined;
  const members: RelayProcess[] = [];
  const cluster = `${prefix}-${Date.now().toString(36)}`;
  const networks = { eu: siteNetwork(), us: siteNetwork() };
  beforeAll(async () => {
    nats = await NatsServer.start();
  });
  afterAll(async () => {
    for (const started of members) started.kill();
    await nats?.stop();
  });
  const start = (site: "eu" | "us", name: string): RelayProcess => {
    const started = new RelayProcess({ name, site, cluster, ...networks[site], nats: nats!.url, ...member });
    members.push(started);
    return started;
  };
  const alive = (site?: string) => members.filter((m) => m.child.exitCode === null && m.child.signalCode === null && (site === undefined || m.config.site === site));
  const gatewayOf = async (site: string): Promise<RelayProcess> => {
    for (const candidate of alive(site)) if ((await candidate.report()).isGateway) return candidate;
    throw new Error(`site ${site} has no gateway`);
  };
  return { members, start, alive, gatewayOf };
}

/** Resolves once `condition` holds, polling; rejects after `timeoutMs` with `what` and the members' output. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string, members: readonly RelayProcess[] = []): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${members.map((m) => m.output).join("\n")}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
