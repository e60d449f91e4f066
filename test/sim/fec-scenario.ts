import type { FecStats } from "../../src/reliable/fec/fec-protocol.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { checkDelivered, discoverPeers, lossyNetwork, recordDeliveries, startChannels } from "./sim-helpers.ts";

/**
 * One seeded run of the "fec" quality of service on the simulated network: 3–5 members, one or two
 * senders sending bursts of 1 to 200 messages (0–1,500 bytes, a few fragmented ones of 100–200 KB, a
 * few out of band) at random moments, over links with random loss below `maxLoss`, some duplication and
 * reordering. Checks that every member delivers every message of every sender exactly once, in the
 * sender's order (out-of-band ones exactly once), and that retransmit buffers empty; returns what
 * parity and NACK did, for the caller to judge.
 */
export interface FecScenarioResult {
  readonly seed: number;
  readonly members: number;
  readonly messages: number;
  readonly loss: number;
  /** Summed over receivers. */
  readonly recovered: number;
  readonly blocksRecovered: number;
  readonly blocksUnrecovered: number;
  readonly nacksSent: number;
  readonly retransmitted: number;
  readonly paritySent: number;
  readonly parityReceived: number;
  readonly parityInvalid: number;
}

export interface FecScenarioOptions {
  /** Loss of every link is drawn from [0, maxLoss). */
  readonly maxLoss: number;
  /** Probability of duplication and of reordering (each drawn from [0, this)). Default 0.02. */
  readonly disorder?: number;
  /** FEC options of every member. */
  readonly fec?: { k?: number; m?: number; interleaveBytes?: number };
}

const TOPIC = "sim.fec";

export async function runFecScenario(seed: number, options: FecScenarioOptions): Promise<FecScenarioResult> {
  const random = new SeededRandom(seed).fork("fec-scenario");
  const loss = random.next() * options.maxLoss;
  const disorder = options.disorder ?? 0.02;
  const net = lossyNetwork(seed, random, { loss, duplicate: disorder, reorder: disorder, delayMs: 0.5 });
  const memberCount = 3 + random.nextInt(3);
  const senderCount = 1 + random.nextInt(2);
  const errors: string[] = [];
  const channels = await startChannels(
    net,
    memberCount,
    () => ({ reliability: "fec", fec: options.fec ?? {} }),
    (channel, i) => channel.on("error", ({ error, stage }) => errors.push(`m${i} ${stage}: ${error.message}`)),
  );
  discoverPeers(net, channels);

  const delivered = recordDeliveries(channels, TOPIC, decode);
  const outOfBand = new Set<string>();

  // Each sender sends its messages in bursts at random moments over the first ~200 ms.
  const sent: number[] = [];
  for (let s = 0; s < senderCount; s++) {
    const count = 200 + random.nextInt(1_500);
    sent.push(count);
    let next = 0;
    const burst = () => {
      const size = 1 + random.nextInt(random.next() < 0.5 ? 8 : 200);
      for (let b = 0; b < size && next < count; b++, next++) {
        const large = random.next() < 0.005;
        const oob = random.next() < 0.03;
        if (oob) outOfBand.add(`${s}/${next}`);
        void channels[s]!.broadcast(TOPIC, encode(s, next, large ? 100_000 + random.nextInt(100_000) : random.nextInt(1_500)), { outOfBand: oob });
      }
      if (next < count) net.clock.setTimer(random.next() * 3, burst);
    };
    net.clock.setTimer(random.next(), burst);
  }
  const total = sent.reduce((a, b) => a + b, 0);
  const complete = () => channels.every((_, i) => sent.every((count, s) => s === i || (delivered[i]!.get(s)?.length ?? 0) >= count));
  try {
    net.clock.runUntil(complete, { maxMs: 300_000 });
  } catch (error) {
    const progress = channels.map((_, i) => `m${i}: ${sent.map((count, s) => `${delivered[i]!.get(s)?.length ?? 0}/${count}`).join(" ")}`);
    throw new Error(`not every message was delivered: ${progress.join("; ")}`, { cause: error });
  }
  channels.forEach((_, i) => {
    sent.forEach((count, s) => {
      if (s !== i) checkDelivered(i, s, count, delivered[i]!.get(s)!, outOfBand);
    });
  });
  try {
    net.clock.runUntil(() => channels.every((c) => c.stats.protocol.unstable === 0), { maxMs: 60_000 });
  } catch (error) {
    throw new Error(`retransmit buffers did not empty: ${channels.map((c) => c.stats.protocol.unstable).join(", ")}`, { cause: error });
  }
  if (errors.length > 0) throw new Error(`channel errors: ${errors.slice(0, 3).join("; ")}`);
  const stats = channels.map((c) => c.stats.protocol as FecStats);
  const sum = (f: (s: FecStats) => number) => stats.reduce((a, s) => a + f(s), 0);
  const result: FecScenarioResult = {
    seed,
    members: memberCount,
    messages: total,
    loss,
    recovered: sum((s) => s.recovered),
    blocksRecovered: sum((s) => s.blocksRecovered),
    blocksUnrecovered: sum((s) => s.blocksUnrecovered),
    nacksSent: sum((s) => s.nacksSent),
    retransmitted: sum((s) => s.retransmitted),
    paritySent: sum((s) => s.paritySent),
    parityReceived: sum((s) => s.parityReceived),
    parityInvalid: sum((s) => s.parityInvalid),
  };
  for (const channel of channels) await channel.shutDown();
  return result;
}

function encode(sender: number, number: number, filler: number): Uint8Array {
  const bytes = new Uint8Array(6 + filler);
  bytes[0] = sender;
  new DataView(bytes.buffer).setUint32(1, number);
  for (let i = 6; i < bytes.length; i++) bytes[i] = (number + i) & 0xff;
  return bytes;
}

function decode(payload: Uint8Array): { sender: number; number: number } {
  const number = new DataView(payload.buffer, payload.byteOffset).getUint32(1);
  // Rebuilt messages must come back byte for byte.
  for (let i = 6; i < payload.length; i++) {
    if (payload[i] !== ((number + i) & 0xff)) throw new Error(`message ${number} arrived corrupted at byte ${i}`);
  }
  return { sender: payload[0]!, number };
}
