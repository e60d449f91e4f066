import type { TransportFactory } from "../../src/transport/transport.ts";

/** What a member program needs of the runtime it runs in. */
export interface RuntimeHost {
  readonly name: string;
  readonly args: readonly string[];
  readonly transport: TransportFactory;
  exit(code: number): never;
}

/** The running runtime, its arguments, exit, and its UDP adapter (imported only here: the others refuse to load elsewhere). */
export async function detectRuntime(): Promise<RuntimeHost> {
  const deno = (globalThis as { Deno?: { args: string[]; exit(code: number): never } }).Deno;
  if (deno !== undefined) {
    const { createUdpTransport } = await import("../../src/adapters/deno.ts");
    return { name: "deno", args: deno.args, transport: createUdpTransport, exit: (code) => deno.exit(code) };
  }
  const adapter = "Bun" in globalThis ? await import("../../src/adapters/bun.ts") : await import("../../src/adapters/node.ts");
  return { name: adapter.runtime, args: process.argv.slice(2), transport: adapter.createUdpTransport, exit: (code) => process.exit(code) };
}

/** What a group or cluster member program is told: where to meet, how fast to detect failures, how long to live. */
export interface MemberBaseConfig {
  /** The member's name (unique in the test). */
  readonly name: string;
  readonly cluster: string;
  readonly group: string;
  readonly port: number;
  readonly heartbeatIntervalMs: number;
  readonly failureTimeoutMs: number;
  readonly verifyTimeoutMs: number;
  readonly discoveryTimeoutMs: number;
  /** The member leaves and exits after this long. */
  readonly lifetimeMs: number;
  /** The interface address for multicast. Default "127.0.0.1" (loopback); a host's address in test/hosts/. */
  readonly interface?: string;
}

/** Channel options for `config`: group "g" on multicast (loopback unless `config.interface`), over the runtime's adapter. */
export function memberChannelOptions(config: MemberBaseConfig, host: RuntimeHost) {
  return {
    cluster: config.cluster,
    name: config.name,
    network: { type: "multicast" as const, group: config.group, port: config.port, interface: config.interface ?? "127.0.0.1" },
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    failureTimeoutMs: config.failureTimeoutMs,
    verifyTimeoutMs: config.verifyTimeoutMs,
    discoveryTimeoutMs: config.discoveryTimeoutMs,
    groups: ["g"],
    transport: host.transport,
  };
}

/**
 * Shuts `channel` down and exits after `config.lifetimeMs` whatever happens, so that a member never
 * outlives a test that lost track of it. Returns how to give up before: shut down and exit with 1.
 */
export function limitLifetime(host: RuntimeHost, channel: { shutDown(): Promise<void> }, config: MemberBaseConfig): () => Promise<never> {
  const lifetime = setTimeout(() => {
    void channel.shutDown().finally(() => host.exit(0));
    setTimeout(() => host.exit(0), 1_000);
  }, config.lifetimeMs);
  return async () => {
    clearTimeout(lifetime);
    await channel.shutDown().catch(() => undefined);
    return host.exit(1);
  };
}
