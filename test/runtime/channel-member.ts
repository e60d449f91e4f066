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
import { announceDone, type BroadcastMemberConfig, broadcastMemberOptions, type BroadcastMemberResult, buildPayload, DATA, everyoneDone, HEADER_BYTES, runReporting, signal, sleep } from "./broadcast-member.ts";
import { detectRuntime } from "./runtime-host.ts";

export type MemberConfig = BroadcastMemberConfig;

/**
 * `received` holds every other member's index (0 if none came); `corrupt` counts wrong lengths or bytes,
 * unknown or own indexes and counters past the end.
 */
export interface MemberResult extends BroadcastMemberResult {
  /** Deliveries of a message already delivered. */
  readonly duplicates: number;
}

/** Messages broadcast before the sender awaits the window and yields to the event loop. */
const BURST = 500;

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

async function main(): Promise<void> {
  const startedAt = Date.now();
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as MemberConfig;
  const channel = new Channel({ ...broadcastMemberOptions(config, host), reliability: "nack", loopback: false });
  let sent = 0;
  channel.on("error", (event) => console.error(`member ${config.index} (${host.name}): ${event.stage}: ${event.error.message}`));

  const everything = signal();
  const check = new DeliveryCheck(config, everything.resolve);
  channel.onTopic(DATA, (message) => check.accept(message));
  const allDone = everyoneDone(channel, config.members - 1);

  const report = (complete: boolean, error: string | undefined): number => {
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
  await runReporting(host, channel, config.timeoutMs, async () => {
    await channel.start();
    // Half the run at most, so that a member that never shows up is reported as such.
    await channel.waitForPeers(config.members - 1, { timeoutMs: Math.floor(config.timeoutMs / 2) });
    while (sent < config.messages) {
      let last: Promise<void> | undefined;
      for (let i = 0; i < BURST && sent < config.messages; i++) {
        const counter = sent++;
        last = channel.broadcast(DATA, buildPayload(config.index, counter, messageSize(counter), fillerByte));
      }
      // Broadcasts resolve in order, so the last one stands for the burst; yielding lets acknowledgements in.
      await last;
      await sleep(0);
    }
    await everything.promise;
    await announceDone(channel, config.index);
    // Everyone has received everything once every member has said so. This member's own "done" (and any
    // repair of it) must still reach the others: wait until every receiver has acknowledged all it sent.
    await allDone;
    while (channel.stats.protocol.unstable > 0) await sleep(10);
  }, report);
}

await main();
