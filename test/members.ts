import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterEach } from "vitest";

/** Shared plumbing of the tests that run members as processes of their own, in Node, Bun or Deno. */

const root = join(import.meta.dirname, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);

/** How each runtime runs a member program (a path relative to the repository root). */
export function commandFor(runtime: "node" | "bun" | "deno", program: string): readonly [string, ...string[]] {
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

export const repositoryRoot = root;

export const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

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
export function killGroup(child: ChildProcess): void {
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
