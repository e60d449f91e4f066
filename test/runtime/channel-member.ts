/**
 * One member of a reliable multicast group over real UDP, for test/udp-multicast.test.ts. The same file
 * runs under Node (through tsx), Bun and Deno (`--unstable-net`): it picks its runtime's adapter, joins
 * the group, broadcasts `messages` numbered messages, and checks that it receives every other member's
 * messages exactly once and in order. Usage: `<runtime> channel-member.ts '<MemberConfig as JSON>'`.
 *
 * It prints one JSON line (a `MemberResult`) and exits 0, or 1 on a timeout, an error, or a delivery
 * that breaks order, exactly-once or the payload's contents.
 */
import { Channel } from "../../src/channel/channel.ts";
import type { TopicMessage } from "../../src/channel/topic-message.ts";
import { detectRuntime } from "./runtime-host.ts";

export interface MemberConfig {
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
}

export interface MemberResult {
  readonly runtime: string;
  readonly index: number;
  readonly sent: number;
  /** Messages delivered, by sender index (every other member's index is present, 0 if none came). */
  readonly received: Record<string, number>;
  /** False when some sender's messages were delivered with a gap or out of order. */
  readonly ordered: boolean;
  /** Deliveries of a message already delivered. */
  readonly duplicates: number;
  /** Deliveries whose payload was not what its sender built (wrong length or bytes, unknown or own index, counter past the end). */
  readonly corrupt: number;
  /** Whether the run completed before the timeout. */
  readonly complete: boolean;
  readonly elapsedMs: number;
  readonly stats: Record<string, unknown>;
  readonly error?: string;
}

const DATA = "data";
/** The completion barrier's topic: a member announces on it that it has received everything. */
const DONE = "done";
/** Messages broadcast before the sender awaits the window and yields to the event loop. */
const BURST = 500;
const HEADER_BYTES = 8;

/**
 * The size of message `counter`: mostly small and varied (bundled many to a datagram), every 97th
 * nearly a full datagram, and every 1000th 200 KiB, which only travels in fragments.
 */
export function messageSize(counter: number): number {
  if (counter % 1000 === 999) return 200 * 1024;
  if (counter % 97 === 96) return 60_000;
  return HEADER_BYTES + ((counter * 37) % 1_200);
}

const fillerByte = (sender: number, counter: number, offset: number) => (sender * 29 + counter + offset) & 0xff;

/** Message `counter` of member `sender`: both numbers, then filler the receiver can recompute. */
function buildPayload(sender: number, counter: number): Uint8Array {
  const payload = new Uint8Array(messageSize(counter));
  const view = new DataView(payload.buffer);
  view.setUint32(0, sender);
  view.setUint32(4, counter);
  for (let i = HEADER_BYTES; i < payload.length; i++) payload[i] = fillerByte(sender, counter, i);
  return payload;
}


/** Checks deliveries per sender: the counter must be the next one expected, and the bytes as built. */
class DeliveryCheck {
  readonly received: Record<string, number> = {};
  ordered = true;
  duplicates = 0;
  corrupt = 0;
  readonly #next: number[];
  #complete = 0;

  constructor(
    private readonly config: MemberConfig,
    private readonly onComplete: () => void,
  ) {
    this.#next = new Array<number>(config.members).fill(0);
    for (let i = 0; i < config.members; i++) if (i !== config.index) this.received[i] = 0;
  }

  accept(message: TopicMessage): void {
    const payload = message.payload;
    if (payload.length < HEADER_BYTES) {
      this.corrupt++;
      return;
    }
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const sender = view.getUint32(0);
    const counter = view.getUint32(4);
    if (this.received[sender] === undefined || counter >= this.config.messages || !this.#intact(payload, sender, counter)) {
      this.corrupt++;
      return;
    }
    this.received[sender]++;
    const expected = this.#next[sender]!;
    if (counter < expected) {
      this.duplicates++;
      return;
    }
    if (counter > expected) this.ordered = false;
    this.#next[sender] = counter + 1;
    if (counter + 1 === this.config.messages && ++this.#complete === this.config.members - 1) this.onComplete();
  }

  #intact(payload: Uint8Array, sender: number, counter: number): boolean {
    if (payload.length !== messageSize(counter)) return false;
    for (let i = HEADER_BYTES; i < payload.length; i++) if (payload[i] !== fillerByte(sender, counter, i)) return false;
    return true;
  }
}

/** A promise with its resolve function outside. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

async function main(): Promise<void> {
  const startedAt = Date.now();
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as MemberConfig;
  const channel = new Channel({
    cluster: config.cluster,
    name: `${host.name}-${config.index}`,
    network: { type: "multicast", group: config.group, port: config.port, interface: "127.0.0.1" },
    reliability: "nack",
    loopback: false,
    transport: host.transport,
  });
  let sent = 0;
  let error: string | undefined;
  channel.on("error", (event) => console.error(`member ${config.index} (${host.name}): ${event.stage}: ${event.error.message}`));

  const everything = signal();
  const check = new DeliveryCheck(config, everything.resolve);
  channel.addTopicListener(DATA, (message) => check.accept(message));
  const allDone = signal();
  const doneFrom = new Set<number>();
  channel.addTopicListener(DONE, (message) => {
    doneFrom.add(new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0));
    if (doneFrom.size === config.members - 1) allDone.resolve();
  });

  const report = (complete: boolean): number => {
    const stats = channel.stats;
    const result: MemberResult = {
      runtime: host.name,
      index: config.index,
      sent,
      received: check.received,
      ordered: check.ordered,
      duplicates: check.duplicates,
      corrupt: check.corrupt,
      complete,
      elapsedMs: Date.now() - startedAt,
      stats: { ...stats.protocol, dropped: stats.dropped },
      ...(error === undefined ? {} : { error }),
    };
    console.log(JSON.stringify(result));
    return complete && check.ordered && check.duplicates === 0 && check.corrupt === 0 ? 0 : 1;
  };
  // Report what arrived so far and leave, whatever is still pending: a test must never hang on a member.
  const deadline = setTimeout(() => host.exit(report(false)), config.timeoutMs);

  try {
    await channel.start();
    // Half the run at most, so that a member that never shows up is reported as such.
    await channel.waitForPeers(config.members - 1, { timeoutMs: Math.floor(config.timeoutMs / 2) });
    while (sent < config.messages) {
      let last: Promise<void> | undefined;
      for (let i = 0; i < BURST && sent < config.messages; i++) last = channel.broadcast(DATA, buildPayload(config.index, sent++));
      // Broadcasts resolve in order, so the last one stands for the burst; yielding lets acknowledgements in.
      await last;
      await yieldToEventLoop();
    }
    await everything.promise;
    const done = new Uint8Array(4);
    new DataView(done.buffer).setUint32(0, config.index);
    await channel.broadcast(DONE, done);
    // Everyone has received everything once every member has said so. This member's own "done" (and any
    // repair of it) must still reach the others: wait until every receiver has acknowledged all it sent.
    await allDone.promise;
    while (channel.stats.protocol.unstable > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  } catch (caught) {
    error = caught instanceof Error ? caught.message : String(caught);
  }
  clearTimeout(deadline);
  const code = report(error === undefined);
  await channel.shutDown();
  host.exit(code);
}

await main();
