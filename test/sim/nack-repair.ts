/**
 * What repairs cost, one sender and `members` − 1 receivers, while messages of 200 bytes go out (four
 * every millisecond; 20,000 by default, 10,000 in the shared-loss table):
 *
 * - one lossy receiver: one of them loses `loss` of what reaches it, every other link lossless; counts
 *   the datagrams each receiver gets and the copies of messages it already had;
 * - shared loss: the sender's own link loses `loss` of what it sends, so every receiver misses the same
 *   datagrams; counts the NACKs and retransmissions per lost datagram, with receivers that always run
 *   or that are descheduled now and then (see Descheduling).
 *
 *   npx tsx test/sim/nack-repair.ts     prints both tables for 9 and 16 members (one lossy receiver at
 *                                       5, 10 and 20 % loss; the sender's link at 1 and 5 %)
 */
import { Channel } from "../../src/channel/channel.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { wrapTransports } from "../../src/transport/transport-wrapper.ts";
import { encodeMessage, EventLoop, flush } from "./sim-helpers.ts";

export interface RepairTraffic {
  readonly members: number;
  readonly loss: number;
  /** Datagrams one lossless receiver got during the run, on average. */
  readonly losslessDatagrams: number;
  /** Copies of messages one lossless receiver already had (repairs meant for another), on average. */
  readonly losslessDuplicates: number;
  readonly lossyDatagrams: number;
  readonly retransmitted: number;
  /** Retransmissions that went to the one receiver that asked. */
  readonly retransmittedToOne: number;
}

const TOPIC = "repair";

export async function measureRepairTraffic(seed: number, members: number, loss: number, messages = 20_000): Promise<RepairTraffic> {
  const net = new SimulatedNetwork({ seed, defaultLink: { delayMs: { min: 0.05, max: 0.3 } } });
  const channels: Channel[] = [];
  for (let i = 0; i < members; i++) {
    const channel = new Channel({
      transport: net.transportFactory(`h${i}`),
      clock: net.clock,
      random: net.random.fork(`m${i}`),
      incarnation: 1,
      heartbeatIntervalMs: 100,
      peerTimeoutMs: 600_000,
    });
    await channel.start();
    channels.push(channel);
  }
  net.clock.runUntil(() => channels.every((c) => c.peers.length === members - 1), { maxMs: 10_000 });
  for (let i = 0; i < members; i++) if (i !== 1) net.setLink(`h${i}`, "h1", { loss });
  let delivered = 0;
  for (const channel of channels.slice(1)) channel.onTopic(TOPIC, () => delivered++);
  const before = channels.map((c) => c.stats.network.datagramsReceived);

  let sent = 0;
  const burst = (): void => {
    for (let k = 0; k < 4 && sent < messages; k++) void channels[0]!.broadcast(TOPIC, encodeMessage(0, sent++, 194));
    if (sent < messages) net.clock.setTimer(1, burst);
  };
  burst();
  net.clock.runUntil(() => delivered === messages * (members - 1) && channels[0]!.stats.protocol.unstable === 0, { maxMs: 60_000 });
  await flush();

  const received = channels.map((c, i) => c.stats.network.datagramsReceived - before[i]!);
  const lossless = channels.slice(2);
  const result: RepairTraffic = {
    members,
    loss,
    losslessDatagrams: received.slice(2).reduce((a, b) => a + b, 0) / lossless.length,
    losslessDuplicates: lossless.reduce((sum, c) => sum + c.stats.protocol.duplicates, 0) / lossless.length,
    lossyDatagrams: received[1]!,
    retransmitted: channels[0]!.stats.protocol.retransmitted,
    retransmittedToOne: channels[0]!.stats.protocol.retransmittedToOne,
  };
  for (const channel of channels) await channel.shutDown();
  return result;
}

export interface SharedLossRepairs {
  readonly members: number;
  readonly loss: number;
  /** Datagrams the sender's link lost. */
  readonly lost: number;
  /** NACKs every receiver sent, together. */
  readonly nacks: number;
  /** NACKs receivers held back because another receiver's NACK asked for the same messages. */
  readonly suppressed: number;
  readonly retransmitted: number;
  /** Retransmissions that went to the one receiver that asked. */
  readonly retransmittedToOne: number;
}

/**
 * Receivers that lose the processor now and then, as many processes sharing a few cores do: each runs
 * for `runMs`, then is descheduled for `stalledMs` (both drawn anew each time, uniformly), again and
 * again; on waking it runs its timers that came due, then reads the datagrams that wait (an event loop's
 * order: see EventLoop).
 */
export interface Descheduling {
  readonly runMs: { readonly min: number; readonly max: number };
  readonly stalledMs: { readonly min: number; readonly max: number };
}

/** About what 17 processes on two cores see: runs of 1–10 ms, descheduled for 0.5–5 ms between them. */
export const DESCHEDULED: Descheduling = { runMs: { min: 1, max: 10 }, stalledMs: { min: 0.5, max: 5 } };

export async function measureSharedLoss(seed: number, members: number, loss: number, messages = 20_000, descheduling?: Descheduling): Promise<SharedLossRepairs> {
  const net = new SimulatedNetwork({ seed, defaultLink: { delayMs: { min: 0.05, max: 0.3 } } });
  const drops = net.random.fork("sender link");
  let lossOn = false;
  let lost = 0;
  const channels: Channel[] = [];
  const loops: EventLoop[] = [];
  for (let i = 0; i < members; i++) {
    const loop = new EventLoop(net.clock);
    const transport =
      i === 0
        ? wrapTransports(net.transportFactory("h0"), () => ({
            beforeSend: () => {
              if (!lossOn || drops.next() >= loss) return true;
              lost++;
              return false;
            },
          }))
        : loop.transport(net.transportFactory(`h${i}`));
    const clock = i === 0 ? net.clock : loop.memberClock;
    const channel = new Channel({ transport, clock, random: net.random.fork(`m${i}`), incarnation: 1, heartbeatIntervalMs: 100, peerTimeoutMs: 600_000 });
    await channel.start();
    channels.push(channel);
    loops.push(loop);
  }
  net.clock.runUntil(() => channels.every((c) => c.peers.length === members - 1), { maxMs: 10_000 });
  let delivered = 0;
  for (const channel of channels.slice(1)) channel.onTopic(TOPIC, () => delivered++);
  let streaming = true;
  if (descheduling !== undefined) {
    const { runMs, stalledMs } = descheduling;
    const schedule = net.random.fork("descheduling");
    const between = (range: { min: number; max: number }) => range.min + schedule.next() * (range.max - range.min);
    for (const loop of loops.slice(1)) {
      const run = (): void => {
        if (!streaming) return;
        const stalled = between(stalledMs);
        loop.stall(stalled);
        net.clock.setTimer(stalled + between(runMs), run);
      };
      net.clock.setTimer(between(runMs), run);
    }
  }
  lossOn = true;
  let sent = 0;
  const burst = (): void => {
    for (let k = 0; k < 4 && sent < messages; k++) void channels[0]!.broadcast(TOPIC, encodeMessage(0, sent++, 194));
    if (sent < messages) net.clock.setTimer(1, burst);
  };
  burst();
  net.clock.runUntil(() => delivered === messages * (members - 1) && channels[0]!.stats.protocol.unstable === 0, { maxMs: 120_000 });
  streaming = false;
  await flush();
  const sender = channels[0]!.stats.protocol;
  const result: SharedLossRepairs = {
    members,
    loss,
    lost,
    nacks: channels.slice(1).reduce((sum, c) => sum + c.stats.protocol.nacksSent, 0),
    suppressed: channels.slice(1).reduce((sum, c) => sum + c.stats.protocol.nacksSuppressed, 0),
    retransmitted: sender.retransmitted,
    retransmittedToOne: sender.retransmittedToOne,
  };
  for (const channel of channels) await channel.shutDown();
  return result;
}

export interface LossTurningPrivate {
  /** Retransmissions while the loss was every receiver's own, and of them to the one receiver that asked: first half, then second. */
  readonly early: { readonly retransmitted: number; readonly toOne: number };
  readonly late: { readonly retransmitted: number; readonly toOne: number };
}

/**
 * The sender's link loses `loss` of what it sends for `messages`, then heals, and every receiver's own
 * link loses `loss` instead (each loss its own) for `2 × messages`: how soon repairs go to their asker
 * alone again.
 */
export async function measureLossTurningPrivate(seed: number, members: number, loss: number, messages: number): Promise<LossTurningPrivate> {
  const net = new SimulatedNetwork({ seed, defaultLink: { delayMs: { min: 0.05, max: 0.3 } } });
  const drops = net.random.fork("sender link");
  let senderLoss = 0;
  const channels: Channel[] = [];
  for (let i = 0; i < members; i++) {
    const transport =
      i === 0 ? wrapTransports(net.transportFactory("h0"), () => ({ beforeSend: () => senderLoss === 0 || drops.next() >= senderLoss })) : net.transportFactory(`h${i}`);
    const channel = new Channel({ transport, clock: net.clock, random: net.random.fork(`m${i}`), incarnation: 1, heartbeatIntervalMs: 100, peerTimeoutMs: 600_000 });
    await channel.start();
    channels.push(channel);
  }
  net.clock.runUntil(() => channels.every((c) => c.peers.length === members - 1), { maxMs: 10_000 });
  let delivered = 0;
  for (const channel of channels.slice(1)) channel.onTopic(TOPIC, () => delivered++);
  let sent = 0;
  const sender = () => channels[0]!.stats.protocol;
  const stream = (count: number): { retransmitted: number; toOne: number } => {
    const { retransmitted, retransmittedToOne: toOne } = sender();
    const target = sent + count;
    const burst = (): void => {
      for (let k = 0; k < 4 && sent < target; k++) void channels[0]!.broadcast(TOPIC, encodeMessage(0, sent++, 194));
      if (sent < target) net.clock.setTimer(1, burst);
    };
    burst();
    net.clock.runUntil(() => delivered === sent * (members - 1) && channels[0]!.stats.protocol.unstable === 0, { maxMs: 120_000 });
    return { retransmitted: sender().retransmitted - retransmitted, toOne: sender().retransmittedToOne - toOne };
  };
  senderLoss = loss;
  stream(messages);
  senderLoss = 0;
  for (let i = 1; i < members; i++) net.setLink("h0", `h${i}`, { loss });
  const result = { early: stream(messages), late: stream(messages) };
  await flush();
  for (const channel of channels) await channel.shutDown();
  return result;
}

if (process.argv[1]?.endsWith("nack-repair.ts")) {
  console.log("| members | loss at one receiver | datagrams per lossless receiver | repeats it already had | datagrams at the lossy one | retransmitted | of them to one receiver |");
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const members of [9, 16]) {
    for (const loss of [0.05, 0.1, 0.2]) {
      const r = await measureRepairTraffic(1, members, loss);
      console.log(`| ${members} | ${loss * 100} % | ${r.losslessDatagrams.toFixed(0)} | ${r.losslessDuplicates.toFixed(0)} | ${r.lossyDatagrams} | ${r.retransmitted} | ${r.retransmittedToOne} |`);
    }
  }
  console.log("\n| members | loss on the sender's link | receivers | datagrams lost | NACKs per lost datagram | held back per lost datagram | retransmissions per lost datagram | of them to one receiver |");
  console.log("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
  for (const members of [9, 16]) {
    for (const loss of [0.01, 0.05]) {
      for (const descheduling of [undefined, DESCHEDULED]) {
        const r = await measureSharedLoss(1, members, loss, 10_000, descheduling);
        const receivers = descheduling === undefined ? "always running" : "descheduled now and then";
        console.log(`| ${members} | ${loss * 100} % | ${receivers} | ${r.lost} | ${(r.nacks / r.lost).toFixed(2)} | ${(r.suppressed / r.lost).toFixed(2)} | ${(r.retransmitted / r.lost).toFixed(2)} | ${r.retransmittedToOne} |`);
      }
    }
  }
}
