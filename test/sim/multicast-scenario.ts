import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { checkDelivered, decodeMessage, discoverPeers, encodeMessage, lossyNetwork, recordDeliveries, startChannels } from "./sim-helpers.ts";

/**
 * One seeded run of reliable multicast on the simulated network: 3–7 members, several senders, loss up
 * to 30 %, duplication, reordering and delay, sometimes a crashed receiver and a small flow-control
 * window, a few large (fragmented) and out-of-band messages. Checks that every live member delivers
 * every message of every sender exactly once, in the sender's order (out-of-band ones exactly once),
 * and that every sender's retransmit buffer ends empty.
 */
export interface ScenarioResult {
  readonly seed: number;
  readonly members: number;
  readonly senders: number;
  readonly messages: number;
  readonly loss: number;
  readonly crashed: boolean;
  readonly virtualMs: number;
  readonly datagrams: number;
  readonly retransmitted: number;
}

const TOPIC = "sim.topic";

export async function runMulticastScenario(seed: number, reliability: "nack" = "nack"): Promise<ScenarioResult> {
  const random = new SeededRandom(seed).fork("scenario");
  const loss = random.next() < 0.15 ? 0 : random.next() * 0.3;
  const net = lossyNetwork(seed, random, { loss, duplicate: 0.05, reorder: 0.1, delayMs: 3 });
  const memberCount = 3 + random.nextInt(5);
  const senderCount = 1 + random.nextInt(memberCount);
  const smallWindow = random.next() < 0.3;
  const channels = await startChannels(net, memberCount, () => ({ reliability, nack: smallWindow ? { windowMessages: 32, windowBytes: 64 * 1024 } : {} }));
  discoverPeers(net, channels);

  const delivered = recordDeliveries(channels, TOPIC, decodeMessage);
  const outOfBand = new Set<string>();

  const crashVictim = memberCount > 3 && senderCount < memberCount && random.next() < 0.25 ? senderCount + random.nextInt(memberCount - senderCount) : -1;
  const sent: number[] = [];
  let total = 0;
  for (let s = 0; s < senderCount; s++) {
    const count = 20 + random.nextInt(200);
    sent.push(count);
    total += count;
    for (let n = 0; n < count; n++) {
      const large = random.next() < 0.02;
      const oob = random.next() < 0.05;
      if (oob) outOfBand.add(`${s}/${n}`);
      void channels[s]!.broadcast(TOPIC, encodeMessage(s, n, large ? 150_000 + random.nextInt(100_000) : random.nextInt(300)), { outOfBand: oob });
    }
  }
  if (crashVictim >= 0 && crashVictim < memberCount) {
    const at = random.nextInt(50);
    net.clock.setTimer(at, () => net.crash(`h${crashVictim}`));
  }
  const live = channels.map((_, i) => i).filter((i) => i !== crashVictim);
  const complete = () =>
    live.every((i) => sent.every((count, s) => (delivered[i]!.get(s)?.length ?? 0) >= count));
  try {
    net.clock.runUntil(complete, { maxMs: 300_000 });
  } catch (error) {
    throw new Error(`not every message was delivered: ${progress(live, sent, delivered)}`, { cause: error });
  }
  // Exactly once, in order (out-of-band messages exactly once, anywhere).
  for (const i of live) {
    sent.forEach((count, s) => checkDelivered(i, s, count, delivered[i]!.get(s)!, outOfBand));
  }
  // Stability: every live sender's retransmit buffer empties.
  const senders = live.filter((i) => i < senderCount);
  try {
    net.clock.runUntil(() => senders.every((i) => channels[i]!.stats.protocol.unstable === 0), { maxMs: 60_000 });
  } catch (error) {
    const left = senders.map((i) => channels[i]!.stats.protocol.unstable);
    throw new Error(`retransmit buffers did not empty: ${left.join(", ")}`, { cause: error });
  }
  const virtualMs = net.clock.now();
  const retransmitted = channels.reduce((sum, c) => sum + c.stats.protocol.retransmitted, 0);
  for (const channel of channels) await channel.shutDown();
  return {
    seed,
    members: memberCount,
    senders: senderCount,
    messages: total,
    loss,
    crashed: crashVictim >= 0,
    virtualMs,
    datagrams: net.stats.sent,
    retransmitted,
  };
}

function progress(live: number[], sent: number[], delivered: Array<Map<number, number[]>>): string {
  return live
    .map((i) => `m${i}: ${sent.map((count, s) => `${delivered[i]!.get(s)?.length ?? 0}/${count}`).join(" ")}`)
    .join("; ");
}
