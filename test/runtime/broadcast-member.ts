/**
 * What the member programs that broadcast numbered messages share (channel-member.ts, totem-member.ts):
 * their config, the common part of their result, the payloads, the completion barrier, and a run bounded
 * by the config's timeout that always ends with one JSON result line.
 */
import type { Channel } from "../../src/channel/channel.ts";
import type { RuntimeHost } from "./runtime-host.ts";

export interface BroadcastMemberConfig {
  /** This member's position in the group, 0 to members - 1; it travels in every payload. */
  readonly index: number;
  readonly members: number;
  /** Messages this member broadcasts. */
  readonly messages: number;
  readonly cluster: string;
  readonly group: string;
  readonly port: number;
  /** The whole run, from start to exit; past it the member reports what it has and exits 1. */
  readonly timeoutMs: number;
  /** The interface address for multicast. Default "127.0.0.1" (loopback); a host's address in test/hosts/. */
  readonly interface?: string;
}

export interface BroadcastMemberResult {
  readonly runtime: string;
  readonly index: number;
  readonly sent: number;
  /** Messages delivered, by sender index. */
  readonly received: Record<string, number>;
  /** False when some sender's messages were delivered with a gap or out of order. */
  readonly ordered: boolean;
  /** Deliveries whose payload was not what its sender built. */
  readonly corrupt: number;
  /** Whether the run completed before the timeout. */
  readonly complete: boolean;
  readonly elapsedMs: number;
  readonly stats: Record<string, unknown>;
  readonly error?: string;
}

export const DATA = "data";
/** The completion barrier's topic: a member announces on it that it has received everything. */
export const DONE = "done";
/** A payload starts with its sender's index and its counter (4 bytes each). */
export const HEADER_BYTES = 8;

/** Message `counter` of member `sender`, `size` bytes: both numbers, then filler the receiver can recompute. */
export function buildPayload(sender: number, counter: number, size: number, fillerByte: (sender: number, counter: number, offset: number) => number): Uint8Array {
  const payload = new Uint8Array(size);
  const view = new DataView(payload.buffer);
  view.setUint32(0, sender);
  view.setUint32(4, counter);
  for (let i = HEADER_BYTES; i < payload.length; i++) payload[i] = fillerByte(sender, counter, i);
  return payload;
}

/** Channel options for member `config.index`, named after its runtime, on the config's multicast group (loopback unless `config.interface`), over the runtime's adapter. */
export function broadcastMemberOptions(config: BroadcastMemberConfig, host: RuntimeHost) {
  return {
    cluster: config.cluster,
    name: `${host.name}-${config.index}`,
    network: { type: "multicast" as const, group: config.group, port: config.port, interface: config.interface ?? "127.0.0.1" },
    transport: host.transport,
  };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A promise with its resolve function outside. */
export function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves once `expected` members announced on DONE that they received everything. */
export function everyoneDone(channel: Channel, expected: number): Promise<void> {
  const allDone = signal();
  const doneFrom = new Set<number>();
  channel.onTopic(DONE, (message) => {
    doneFrom.add(new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0));
    if (doneFrom.size === expected) allDone.resolve();
  });
  return allDone.promise;
}

/** Announces on DONE that member `index` received everything. */
export function announceDone(channel: Channel, index: number, options: { readonly safe?: boolean } = {}): Promise<void> {
  const done = new Uint8Array(4);
  new DataView(done.buffer).setUint32(0, index);
  return channel.broadcast(DONE, done, options);
}

/**
 * Runs `body`, then prints the result (`report`, which says the exit code), shuts down and exits. Past
 * `timeoutMs` it reports what arrived so far and leaves, whatever is still pending: a test must never
 * hang on a member.
 */
export async function runReporting(
  host: RuntimeHost,
  channel: Channel,
  timeoutMs: number,
  body: () => Promise<void>,
  report: (complete: boolean, error: string | undefined) => number,
): Promise<never> {
  const deadline = setTimeout(() => host.exit(report(false, undefined)), timeoutMs);
  let error: string | undefined;
  try {
    await body();
  } catch (caught) {
    error = caught instanceof Error ? caught.message : String(caught);
  }
  clearTimeout(deadline);
  const code = report(error === undefined, error);
  await channel.shutDown();
  return host.exit(code);
}
