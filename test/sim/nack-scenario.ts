import { Stream } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { Channel } from "../../src/channel/channel.ts";
import type { ChannelOptions } from "../../src/channel/options.ts";
import { keyOf } from "../../src/reliable/member-key.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import type { TransportFactory } from "../../src/transport/transport.ts";
import { wrapTransports } from "../../src/transport/transport-wrapper.ts";
import { DatagramReader } from "../../src/wire/frames.ts";
import { decodeMessage, encodeMessage, flush } from "./sim-helpers.ts";

/**
 * Adversarial runs of NACK reliable multicast on the simulated network: 9–16 members, one to three
 * senders sending in bursts, and one kind of trouble per run:
 *
 * - `bursty`: every link, or one receiver's, loses most datagrams for a few milliseconds at a time;
 * - `one-sided`: one to three members lose 5–40 % of what reaches them, or of what they send;
 * - `slow`: one to three receivers far away (5–60 ms, reordering), some runs with a small window;
 * - `late-joiner`: one to four members start while the senders are mid-stream, losing up to 30 % of what reaches them;
 * - `partition`: the members split in two for longer than the peer timeout, heal, and split again
 *   (sometimes one way only).
 *
 * Checked throughout: every member delivers each sender's messages exactly once, in order (out-of-band
 * ones exactly once), reports each message it skips with `messagesLost` and the exact range, delivers
 * no message it reported lost, and never acknowledges (in an Ack or a heartbeat's digest) a message it
 * has not delivered or reported lost; what members hold out of order stays within its limit. At the
 * end every member has, for every sender, delivered or reported lost every message from where its
 * stream started (no later than the first message sent after the sender heard it) to the last one,
 * nothing was lost but in a partition, and every sender's retransmit buffer is empty.
 */
export const NACK_SCENARIO_KINDS = ["bursty", "one-sided", "slow", "late-joiner", "partition"] as const;
export type NackScenarioKind = (typeof NACK_SCENARIO_KINDS)[number];

export interface NackScenarioResult {
  readonly seed: number;
  readonly kind: NackScenarioKind;
  readonly members: number;
  readonly senders: number;
  readonly messages: number;
  /** Messages reported lost, over every receiver. */
  readonly lost: number;
  readonly retransmitted: number;
  readonly retransmittedToOne: number;
  /** The most messages one member held out of order at a sample. */
  readonly maxHeld: number;
  readonly virtualMs: number;
}

const TOPIC = "nack.adversarial";
const HEARTBEAT_MS = 100;

/** What one member saw of one sender's stream. */
class Observed {
  /** 1 where a sequence number was delivered or reported lost. */
  readonly #settled: Uint8Array;
  readonly lost: Array<readonly [number, number]> = [];
  /** The sequence number of the first message the sender sent after it heard this member. */
  firstStart: number | undefined;
  min = Infinity;
  count = 0;
  lastInOrder = 0;

  constructor(readonly total: number) {
    this.#settled = new Uint8Array(total + 2);
  }

  settle(seq: number, what: string): void {
    if (!(seq >= 1 && seq <= this.total)) throw new Error(`${what} ${seq}, which was never sent`);
    if (this.#settled[seq] === 1) throw new Error(`${what} ${seq} twice (delivered or reported lost before)`);
    this.#settled[seq] = 1;
    this.count++;
    if (seq < this.min) this.min = seq;
  }

  /** The end of the run of settled numbers from the lowest one. */
  prefixEnd(): number {
    let seq = this.min;
    while (seq <= this.total && this.#settled[seq] === 1) seq++;
    return seq - 1;
  }

  /** Every message from the lowest settled one to the last is settled (or none was owed: it was heard after the last). */
  get complete(): boolean {
    if (this.count === 0) return this.firstStart !== undefined && this.firstStart > this.total;
    return this.count === this.total - this.min + 1 && this.#settled[this.total] === 1;
  }
}

/** A transport that shows every datagram it sends to `tap` first. */
function tapped(factory: TransportFactory, tap: (datagram: Uint8Array) => void): TransportFactory {
  return wrapTransports(factory, () => ({ beforeSend: (data) => tap(data) }));
}

export async function runNackScenario(seed: number, kind: NackScenarioKind): Promise<NackScenarioResult> {
  const random = new SeededRandom(seed).fork(`nack-${kind}`);
  const memberCount = 9 + random.nextInt(8);
  const senderCount = 1 + random.nextInt(3);
  const baseLoss = random.next() * 0.02;
  const net = new SimulatedNetwork({
    seed,
    defaultLink: {
      loss: baseLoss,
      duplicate: random.next() * 0.02,
      reorder: random.next() * 0.05,
      delayMs: { min: 0.05, max: 0.05 + random.next() },
    },
  });
  const hosts = Array.from({ length: memberCount }, (_, i) => `h${i}`);
  const smallWindow = random.next() < 0.3;
  const nack = {
    ...(smallWindow ? { windowMessages: 32 + random.nextInt(96), windowBytes: 64 * 1024 } : {}),
    ...(kind === "partition" ? { receiverTimeoutMs: 300 } : {}),
  };
  const peerTimeoutMs = kind === "partition" ? 800 : 600_000;
  // What a receiver may hold out of order per sender: the four windows a sender keeps.
  const heldLimit = { messages: 4 * (nack.windowMessages ?? 65_536), bytes: 4 * (nack.windowBytes ?? 4 * 1024 * 1024) };

  // Who sends how much, and who starts late.
  const totals = Array.from({ length: senderCount }, () => 100 + random.nextInt(300));
  const late = new Set<number>();
  if (kind === "late-joiner") {
    const count = 1 + random.nextInt(4);
    while (late.size < count) late.add(senderCount + random.nextInt(memberCount - senderCount));
  }

  const channels: Array<Channel | undefined> = new Array(memberCount);
  const indexOf = new Map<string, number>();
  const observed = Array.from({ length: memberCount }, () => totals.map((total) => new Observed(total)));
  const violations: string[] = [];
  const fail = (message: string): void => {
    violations.push(`at ${net.clock.now().toFixed(1)} ms: ${message}`);
  };
  const reader = new DatagramReader({ cluster: "activeblaze" });

  // Acknowledgements (Acks and heartbeat digests) must claim only settled messages.
  const checkClaim = (r: number, origin: Uint8Array, claimed: number, what: string): void => {
    const s = indexOf.get(keyOf(origin));
    if (s === undefined || s >= senderCount || s === r) return;
    const o = observed[r]![s]!;
    if (claimed >= o.min) {
      if (claimed > o.prefixEnd()) fail(`m${r}'s ${what} claims m${s}'s ${claimed}; it delivered or reported lost ${o.min}–${o.prefixEnd()} only`);
    } else if (claimed >= (o.firstStart ?? 1)) {
      fail(`m${r}'s ${what} claims m${s}'s ${claimed} before delivering anything (owed from ${o.firstStart})`);
    }
  };
  const inspect = (r: number, datagram: Uint8Array): void => {
    const result = reader.read(datagram);
    if (!result.ok) return fail(`m${r} sent a datagram that does not decode: ${result.reason}`);
    for (const frame of result.datagram.frames) {
      if (frame.case === "ack") {
        const kind = frame.frame.kind;
        if (kind.case === "ack" && kind.value.stream === Stream.MULTICAST) checkClaim(r, kind.value.originId, Number(kind.value.cumulative), "ack");
      } else if (frame.case === "heartbeat" && frame.frame.kind.case === "heartbeat") {
        for (const entry of frame.frame.kind.value.digest) checkClaim(r, entry.memberId, Number(entry.delivered), "heartbeat digest");
      }
    }
  };

  const create = (i: number): Channel => {
    const options: ChannelOptions = {
      name: `m${i}`,
      transport: tapped(net.transportFactory(hosts[i]), (datagram) => inspect(i, datagram)),
      clock: net.clock,
      random: net.random.fork(`member-${i}`),
      incarnation: 1,
      heartbeatIntervalMs: HEARTBEAT_MS,
      peerTimeoutMs,
      nack,
    };
    const channel = new Channel(options);
    indexOf.set(channel.id, i);
    channel.onTopic(TOPIC, (message) => {
      const s = indexOf.get(message.sender)!;
      if (s === i) return;
      const { sender, number } = decodeMessage(message.payload);
      if (sender !== s || message.seq !== number + 1) return fail(`m${i} got m${s}'s message ${number} as m${sender}'s seq ${message.seq}`);
      const o = observed[i]![s]!;
      try {
        o.settle(message.seq, `m${i} delivered m${s}'s`);
      } catch (error) {
        return fail((error as Error).message);
      }
      if (!message.outOfBand) {
        if (message.seq < o.lastInOrder) fail(`m${i} delivered m${s}'s ${message.seq} after ${o.lastInOrder}`);
        o.lastInOrder = message.seq;
      }
    });
    channel.on("messagesLost", ({ peer, count, firstSeq, lastSeq }) => {
      const s = indexOf.get(peer);
      if (s === undefined) return fail(`m${i} reported a loss of an unknown member`);
      if (count !== lastSeq - firstSeq + 1 || count < 1) return fail(`m${i} reported ${count} lost as ${firstSeq}–${lastSeq}`);
      const o = observed[i]![s]!;
      if (lastSeq > o.total) return fail(`m${i} reported m${s}'s ${firstSeq}–${lastSeq} lost; only ${o.total} were sent`);
      o.lost.push([firstSeq, lastSeq]);
      try {
        for (let seq = firstSeq; seq <= lastSeq; seq++) o.settle(seq, `m${i} reported m${s}'s`);
      } catch (error) {
        fail((error as Error).message);
      }
    });
    if (i < senderCount) {
      // Where a receiver's stream must start at the latest: the first message sent after hearing it.
      channel.on("peerUp", ({ peer }) => {
        const r = indexOf.get(peer.id);
        if (r !== undefined && observed[r]![i]!.firstStart === undefined) observed[r]![i]!.firstStart = channel.stats.protocol.sent + 1;
      });
    }
    channels[i] = channel;
    return channel;
  };

  for (let i = 0; i < memberCount; i++) if (!late.has(i)) await create(i).start();
  const started = () => channels.flatMap((c, i) => (c === undefined ? [] : [i]));
  net.clock.runUntil(() => started().every((i) => channels[i]!.peers.length === started().length - 1), { maxMs: 10_000 });

  // The senders: bursts of 1–20 messages every 5–50 ms (20–150 ms across partitions), a few out of band, a few of some KB.
  const sending = random.fork("sending");
  const sentCount = totals.map(() => 0);
  for (let s = 0; s < senderCount; s++) {
    const burst = (): void => {
      const count = Math.min(totals[s]! - sentCount[s]!, 1 + sending.nextInt(20));
      for (let k = 0; k < count; k++) {
        const number = sentCount[s]!++;
        const size = sending.next() < 0.03 ? 2_000 + sending.nextInt(6_000) : 10 + sending.nextInt(490);
        void channels[s]!.broadcast(TOPIC, encodeMessage(s, number, size), { outOfBand: sending.next() < 0.05 });
      }
      if (sentCount[s]! < totals[s]!) net.clock.setTimer(kind === "partition" ? 20 + sending.nextInt(130) : 5 + sending.nextInt(45), burst);
    };
    net.clock.setTimer(sending.nextInt(20), burst);
  }

  const faults = random.fork("faults");
  const now = net.clock.now();
  let quietAt = now;
  const at = (delay: number, action: () => void): void => {
    quietAt = Math.max(quietAt, now + delay);
    net.clock.setTimer(delay, action);
  };
  const others = (i: number) => hosts.filter((_, j) => j !== i);
  const victims = (count: number) => {
    const chosen = new Set<number>();
    while (chosen.size < Math.min(count, memberCount - senderCount)) chosen.add(senderCount + faults.nextInt(memberCount - senderCount));
    return [...chosen];
  };
  switch (kind) {
    case "bursty": {
      // Bursts of 50–100 % loss lasting 1–20 ms, on every link or on one receiver's.
      let t = 0;
      while (t < 1_500) {
        t += 10 + faults.nextInt(90);
        const length = 1 + faults.nextInt(20);
        const loss = 0.5 + faults.next() * 0.5;
        const everyone = faults.next() < 0.4;
        const victim = senderCount + faults.nextInt(memberCount - senderCount);
        at(t, () => (everyone ? net.setDefaultLink({ loss }) : others(victim).forEach((h) => net.setLink(h, hosts[victim]!, { loss }))));
        at(t + length, () => (everyone ? net.setDefaultLink({ loss: baseLoss }) : others(victim).forEach((h) => net.clearLink(h, hosts[victim]!))));
      }
      break;
    }
    case "one-sided":
      for (const victim of victims(1 + faults.nextInt(3))) {
        const loss = 0.05 + faults.next() * 0.35;
        if (faults.next() < 0.5) for (const h of others(victim)) net.setLink(h, hosts[victim]!, { loss });
        else for (const h of others(victim)) net.setLink(hosts[victim]!, h, { loss });
      }
      break;
    case "slow":
      for (const victim of victims(1 + faults.nextInt(3))) {
        const delayMs = { min: 5, max: 5 + faults.nextInt(55) };
        for (const h of others(victim)) net.setLink(h, hosts[victim]!, { delayMs, reorder: 0.2 });
      }
      break;
    case "late-joiner":
      for (const i of late) for (const h of others(i)) net.setLink(h, hosts[i]!, { loss: faults.next() * 0.3 });
      break;
    case "partition": {
      // Two cuts longer than the peer timeout (the second sometimes shorter), with a heal between.
      let t = 50 + faults.nextInt(300);
      for (let cut = 0; cut < 2; cut++) {
        const side = hosts.filter(() => faults.next() < 0.5);
        const rest = hosts.filter((h) => !side.includes(h));
        const oneWay = faults.next() < 0.3;
        const length = cut === 0 || faults.next() < 0.5 ? peerTimeoutMs + 200 + faults.nextInt(1_500) : 100 + faults.nextInt(600);
        at(t, () => {
          if (!oneWay) net.partition(side, rest);
          else for (const a of side) for (const b of rest) net.setLink(a, b, { loss: 1 });
        });
        at(t + length, () => {
          net.heal();
          for (const a of side) for (const b of rest) net.clearLink(a, b);
        });
        t += length + 300 + faults.nextInt(1_200);
      }
      break;
    }
  }

  // Held messages stay within their limit per sender.
  let maxHeld = 0;
  const sample = (): void => {
    for (const i of started()) {
      const { held, heldBytes } = channels[i]!.stats.protocol;
      maxHeld = Math.max(maxHeld, held);
      if (held > senderCount * heldLimit.messages || heldBytes > senderCount * (heldLimit.bytes + 8_000)) {
        fail(`m${i} holds ${held} messages (${heldBytes} bytes) out of order`);
      }
    }
    net.clock.setTimer(25, sample);
  };
  sample();

  // Late joiners start at random moments while the senders are sending.
  // About how long the shortest sender sends (bursts of 10.5 messages every 27.5 ms on average).
  const sendingMs = Math.round((Math.min(...totals) / 10.5) * 27.5);
  const joins = [...late].map((i) => ({ i, at: now + 20 + faults.nextInt(sendingMs) })).sort((a, b) => a.at - b.at);
  for (const join of joins) {
    net.clock.runFor(Math.max(0, join.at - net.clock.now()));
    await create(join.i).start();
    await flush();
  }

  const everyone = started();
  const complete = () =>
    sentCount.every((n, s) => n === totals[s]) &&
    everyone.every((r) => totals.every((_, s) => s === r || observed[r]![s]!.complete)) &&
    net.clock.now() > quietAt;
  try {
    net.clock.runUntil(() => violations.length > 0 || complete(), { maxMs: 120_000 });
  } catch (error) {
    const behind = everyone.flatMap((r) =>
      totals.flatMap((total, s) => {
        const o = observed[r]![s]!;
        if (s === r || o.complete) return [];
        const { held, refused } = channels[r]!.stats.protocol;
        return [`m${r} has ${o.count} of m${s}'s ${total} from ${o.min} (owed from ${o.firstStart}; it holds ${held}, refused ${refused})`];
      }),
    );
    throw new Error(`${kind}: not every stream was settled: ${behind.slice(0, 5).join("; ")}`, { cause: error });
  }
  if (violations.length > 0) throw new Error(`${kind}: ${violations.slice(0, 3).join("; ")}`);

  let lost = 0;
  for (const r of everyone) {
    for (let s = 0; s < senderCount; s++) {
      if (s === r) continue;
      const o = observed[r]![s]!;
      if (o.firstStart !== undefined && o.firstStart <= o.total && o.min > o.firstStart) throw new Error(`${kind}: m${r}'s stream of m${s} starts at ${o.min}, past ${o.firstStart}, the first it was owed`);
      const reported = o.lost.reduce((sum, [first, last]) => sum + last - first + 1, 0);
      if (reported > 0 && kind !== "partition") throw new Error(`${kind}: m${r} lost m${s}'s ${o.lost.map(([a, b]) => `${a}–${b}`).join(", ")} with no partition`);
      lost += reported;
    }
  }
  // Stability: every sender's retransmit buffer empties.
  const senders = everyone.filter((i) => i < senderCount);
  try {
    net.clock.runUntil(() => senders.every((i) => channels[i]!.stats.protocol.unstable === 0), { maxMs: 30_000 });
  } catch (error) {
    throw new Error(`${kind}: retransmit buffers did not empty: ${senders.map((i) => channels[i]!.stats.protocol.unstable).join(", ")}`, { cause: error });
  }
  if (violations.length > 0) throw new Error(`${kind}: ${violations.slice(0, 3).join("; ")}`);

  const stats = everyone.map((i) => channels[i]!.stats.protocol);
  const result: NackScenarioResult = {
    seed,
    kind,
    members: memberCount,
    senders: senderCount,
    messages: totals.reduce((a, b) => a + b, 0),
    lost,
    retransmitted: stats.reduce((sum, p) => sum + p.retransmitted, 0),
    retransmittedToOne: stats.reduce((sum, p) => sum + p.retransmittedToOne, 0),
    maxHeld,
    virtualMs: net.clock.now(),
  };
  for (const i of everyone) await channels[i]!.shutDown();
  return result;
}
