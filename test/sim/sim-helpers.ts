import { Channel } from "../../src/channel/channel.ts";
import type { ChannelOptions } from "../../src/channel/options.ts";
import type { TopicMessage } from "../../src/channel/topic-message.ts";
import type { Clock, TimerHandle } from "../../src/transport/clock.ts";
import type { SeededRandom } from "../../src/transport/seeded-random.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import type { ReceiveHandler, TransportFactory } from "../../src/transport/transport.ts";

/** What the scenarios share. */

/** Lets pending promise continuations run (the virtual clock runs timers only). */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The network of one seeded run: every link loses `loss` of its datagrams; duplication, reordering and
 * the top of the delay range (from 0.05 ms) are drawn from `random`, below the given maxima.
 */
export function lossyNetwork(
  seed: number,
  random: SeededRandom,
  link: { readonly loss: number; readonly duplicate: number; readonly reorder: number; readonly delayMs: number },
): SimulatedNetwork {
  return new SimulatedNetwork({
    seed,
    defaultLink: {
      loss: link.loss,
      duplicate: random.next() * link.duplicate,
      reorder: random.next() * link.reorder,
      delayMs: { min: 0.05, max: 0.05 + random.next() * link.delayMs },
    },
  });
}

/**
 * `count` started channels, `m<i>` on host `h<i>`, on the network's clock and randomness, with a
 * heartbeat every 100 ms and no peer timeout within a run; `options` adds each one's own, `prepare`
 * sees each one before it starts.
 */
export async function startChannels(
  net: SimulatedNetwork,
  count: number,
  options: (index: number) => ChannelOptions,
  prepare: (channel: Channel, index: number) => void = () => undefined,
): Promise<Channel[]> {
  const channels: Channel[] = [];
  for (let i = 0; i < count; i++) {
    const channel = new Channel({
      name: `m${i}`,
      transport: net.transportFactory(`h${i}`),
      clock: net.clock,
      random: net.random.fork(`member-${i}`),
      incarnation: 1,
      heartbeatIntervalMs: 100,
      peerTimeoutMs: 600_000,
      ...options(i),
    });
    prepare(channel, i);
    await channel.start();
    channels.push(channel);
  }
  return channels;
}

/** Runs the clock until every channel knows every other one. */
export function discoverPeers(net: SimulatedNetwork, channels: readonly Channel[]): void {
  net.clock.runUntil(() => channels.every((c) => c.peers.length === channels.length - 1), { maxMs: 60_000 });
}

/** What each channel delivers on `topic`: per sender, the message numbers in delivery order. */
export function recordDeliveries(
  channels: readonly Channel[],
  topic: string,
  decode: (payload: Uint8Array) => { sender: number; number: number },
): Array<Map<number, number[]>> {
  const delivered = channels.map(() => new Map<number, number[]>());
  channels.forEach((channel, i) => {
    channel.onTopic(topic, (message: TopicMessage) => {
      const { sender, number } = decode(message.payload);
      let list = delivered[i]!.get(sender);
      if (list === undefined) delivered[i]!.set(sender, (list = []));
      list.push(number);
    });
  });
  return delivered;
}

/**
 * Member `member` delivered each of sender `sender`'s `count` messages exactly once (`list`, in
 * delivery order), in the sender's order but for the out-of-band ones (`sender/number` in `outOfBand`).
 */
export function checkDelivered(member: number, sender: number, count: number, list: readonly number[], outOfBand: ReadonlySet<string>): void {
  if (list.length !== count) throw new Error(`member ${member} delivered ${list.length} of sender ${sender}'s ${count} messages`);
  if (new Set(list).size !== count) throw new Error(`member ${member} delivered a message of sender ${sender} twice`);
  const ordered = list.filter((n) => !outOfBand.has(`${sender}/${n}`));
  ordered.forEach((n, k) => {
    if (k > 0 && n < ordered[k - 1]!) throw new Error(`member ${member} delivered sender ${sender}'s ${n} after ${ordered[k - 1]}`);
  });
}

/** A test message: the sender (1 byte), its number (4 bytes), a marker byte and `filler` bytes more. */
export function encodeMessage(sender: number, number: number, filler: number): Uint8Array {
  const bytes = new Uint8Array(6 + filler);
  bytes[0] = sender;
  new DataView(bytes.buffer).setUint32(1, number);
  bytes[5] = 0xab;
  return bytes;
}

export function decodeMessage(payload: Uint8Array): { sender: number; number: number } {
  return { sender: payload[0]!, number: new DataView(payload.buffer, payload.byteOffset).getUint32(1) };
}

/** One member's event loop: while stalled, nothing of it runs; on waking, what came due runs, timers first. */
export class EventLoop {
  #stalledUntil = 0;
  #timers: Array<() => void> = [];
  #datagrams: Array<() => void> = [];

  constructor(private readonly clock: Clock) {}

  stall(ms: number): void {
    this.#stalledUntil = this.clock.now() + ms;
    this.clock.setTimer(ms, () => {
      for (const run of this.#timers.splice(0)) run();
      for (const run of this.#datagrams.splice(0)) run();
    });
  }

  get stalled(): boolean {
    return this.clock.now() < this.#stalledUntil;
  }

  readonly memberClock: Clock = {
    now: () => this.clock.now(),
    setTimer: (delayMs, fn): TimerHandle => {
      let cancelled = false;
      const inner = this.clock.setTimer(delayMs, () => {
        if (!this.stalled) fn();
        else this.#timers.push(() => cancelled || fn());
      });
      return {
        cancel: () => {
          cancelled = true;
          inner.cancel();
        },
      };
    },
    defer: (fn) => this.clock.defer(() => (this.stalled ? this.#timers.push(fn) : fn())),
  };

  transport(factory: TransportFactory): TransportFactory {
    return async (options) => {
      const transport = await factory(options);
      const onReceive = transport.onReceive.bind(transport);
      return Object.assign(transport, {
        onReceive: (handler: ReceiveHandler) =>
          onReceive((data, from) => (this.stalled ? this.#datagrams.push(() => handler(data, from)) : handler(data, from))),
      });
    };
  }
}
