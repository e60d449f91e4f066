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
