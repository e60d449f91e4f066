/**
 * One member of a secured channel over real UDP, for test/udp-security.test.ts. The same file runs under
 * Node (through tsx), Bun and Deno (`--unstable-net`), with its runtime's crypto provider (node:crypto on
 * Node and Bun, WebCrypto on Deno). It seals every datagram with the configured keys, broadcasts
 * `messages` numbered messages paced over a few seconds, checks every other member's arrive exactly once
 * and in order, says "done" on topic "done" once it has them all, and answers key rotations. Told
 * "report" on topic "control" (by the test's own member), it prints its result and exits.
 *
 * It prints one JSON line per event (a {@link SecureMemberEvent}). A latecomer (`lifetimeMs`) only
 * starts, tries to be heard for that long, reports and exits. Every member exits on its own after
 * `timeoutMs`, whatever happens.
 */
import { Channel } from "../../src/channel/channel.ts";
import type { CryptoProvider } from "../../src/security/crypto-provider.ts";
import { detectRuntime } from "./runtime-host.ts";

export interface SecureMemberConfig {
  readonly name: string;
  /** Position among the members that send (0 to senders - 1); -1 for a latecomer. */
  readonly index: number;
  /** How many members send (this one included): whose messages to wait for. */
  readonly senders: number;
  /** Peers to wait for before sending (every other member, the test's own included). */
  readonly peers: number;
  readonly messages: number;
  readonly cluster: string;
  readonly group: string;
  readonly port: number;
  readonly security: {
    readonly keys: ReadonlyArray<{ readonly id: number; readonly secret: string }>;
    readonly mode: "encrypt" | "authenticate";
    readonly identity?: { readonly publicKey: string; readonly privateKey: string };
    readonly trustedMembers?: readonly string[];
  };
  /** A latecomer: runs this long, then reports. */
  readonly lifetimeMs?: number;
  readonly timeoutMs: number;
}

export type SecureMemberEvent =
  | { readonly type: "ready"; readonly runtime: string; readonly name: string; readonly id: string; readonly port: number; readonly provider: string }
  | { readonly type: "complete" }
  | { readonly type: "result"; readonly result: SecureMemberResult }
  | { readonly type: "error"; readonly message: string };

export interface SecureMemberResult {
  readonly runtime: string;
  readonly name: string;
  /** Messages delivered, by sender index. */
  readonly received: Record<string, number>;
  /** Deliveries out of order, twice, or not as their sender built them. */
  readonly wrong: number;
  readonly peers: number;
  readonly primaryKey: number;
  readonly keys: readonly number[];
  readonly dropped: Record<string, number>;
  readonly pendingSenders: number;
  readonly trackedSenders: number;
  readonly opened: number;
  readonly faults: number;
}

const DATA = "data";
const DONE = "done";
const CONTROL = "control";
const print = (event: SecureMemberEvent) => console.log(JSON.stringify(event));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Message `n` of sender `sender`: both numbers, a size that varies (every 50th one fragmented), filler the receiver recomputes. */
function payload(sender: number, n: number): Uint8Array {
  const size = n % 50 === 49 ? 70_000 : 8 + ((n * 37) % 900);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, sender);
  view.setUint32(4, n);
  for (let i = 8; i < size; i++) bytes[i] = (sender * 31 + n + i) & 0xff;
  return bytes;
}

async function main(): Promise<void> {
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as SecureMemberConfig;
  const provider: CryptoProvider =
    host.name === "deno" ? (await import("../../src/security/web-crypto.ts")).webCrypto : (await import("../../src/adapters/node-crypto.ts")).nodeCrypto;
  const channel = new Channel({
    cluster: config.cluster,
    name: config.name,
    network: { type: "multicast", group: config.group, port: config.port, interface: "127.0.0.1" },
    transport: host.transport,
    heartbeatIntervalMs: 200,
    loopback: false,
    security: {
      keys: [...config.security.keys],
      mode: config.security.mode,
      ...(config.security.identity === undefined ? {} : { identity: config.security.identity }),
      ...(config.security.trustedMembers === undefined ? {} : { trustedMembers: [...config.security.trustedMembers] }),
      provider,
    },
  });
  let faults = 0;
  channel.on("error", (event) => {
    if (event.stage !== "listener") faults++;
    print({ type: "error", message: `${event.stage}: ${event.error.message}` });
  });
  const deadline = setTimeout(() => {
    report();
    host.exit(1);
  }, config.timeoutMs);

  const received: Record<string, number> = {};
  for (let s = 0; s < config.senders; s++) if (s !== config.index) received[s] = 0;
  let wrong = 0;
  let completeFrom = 0;
  channel.onTopic(DATA, (message) => {
    const bytes = message.payload;
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    const sender = bytes.length >= 8 ? view.getUint32(0) : -1;
    const n = bytes.length >= 8 ? view.getUint32(4) : -1;
    const expected = received[sender];
    const intact = expected !== undefined && n === expected && bytes.length === payload(sender, n).length && bytes.every((b, i) => i < 8 || b === ((sender * 31 + n + i) & 0xff));
    if (!intact) {
      wrong++;
      return;
    }
    received[sender] = n + 1;
    if (n + 1 === config.messages && ++completeFrom === config.senders - 1) {
      print({ type: "complete" });
      void channel.broadcast(DONE, new TextEncoder().encode(config.name));
    }
  });

  const report = () => {
    const stats = channel.stats;
    const security = stats.network.security;
    print({
      type: "result",
      result: {
        runtime: host.name,
        name: config.name,
        received,
        wrong,
        peers: channel.peers.length,
        primaryKey: channel.security!.primaryKeyId,
        keys: channel.security!.keyIds,
        dropped: Object.fromEntries(Object.entries(stats.dropped).filter(([, count]) => count > 0)),
        pendingSenders: stats.network.pendingSenders,
        trackedSenders: security?.senders ?? -1,
        opened: security?.opened ?? 0,
        faults,
      },
    });
  };
  const finish = async (code: number) => {
    clearTimeout(deadline);
    report();
    await channel.shutDown();
    host.exit(code);
  };
  channel.onTopic(CONTROL, (message) => {
    if (new TextDecoder().decode(message.payload) === "report") void finish(0);
  });

  await channel.start();
  print({ type: "ready", runtime: host.name, name: config.name, id: channel.id, port: channel.localAddress.port, provider: provider.name });
  if (config.lifetimeMs !== undefined) {
    await sleep(config.lifetimeMs);
    return finish(0);
  }
  await channel.waitForPeers(config.peers, { timeoutMs: config.timeoutMs / 2 });
  // Paced (about a thousand a second), so that the exchange lasts while the test attacks and rotates the key.
  for (let n = 0; n < config.messages; n++) {
    await channel.broadcast(DATA, payload(config.index, n));
    if (n % 10 === 9) await sleep(10);
  }
}

main().catch((error: unknown) => {
  print({ type: "error", message: `main: ${error instanceof Error ? error.message : String(error)}` });
});
