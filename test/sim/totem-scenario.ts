import type { Channel } from "../../src/channel/channel.ts";
import type { TopicMessage } from "../../src/channel/topic-message.ts";
import type { TotemStats } from "../../src/reliable/totem/totem-protocol.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { decodeMessage, encodeMessage, lossyNetwork, startChannels } from "./sim-helpers.ts";

/**
 * One seeded run of Totem total order on the simulated network: 3–5 members, several senders, loss up
 * to 30 %, duplication, reordering and delay, agreed and safe messages mixed (a few large, fragmented
 * ones), and in some runs one or two members crash (senders among them) while messages flow, so that
 * the token is lost and the ring is formed again with recovery of the old ring's messages.
 *
 * Checks, over the members alive at the end:
 * - every one delivers the same messages in the same order (a crashed sender's messages included or
 *   left out alike), each at most once;
 * - every message of a live sender is delivered, and each sender's messages in its send order;
 * - a safe message is delivered (while the ring runs) only once every live member of the ring holds it;
 * - every member ends on one operational ring of all the live members.
 */
export interface TotemScenarioResult {
  readonly seed: number;
  readonly members: number;
  readonly senders: number;
  readonly messages: number;
  readonly safeMessages: number;
  readonly loss: number;
  readonly crashed: number;
  readonly virtualMs: number;
  readonly retransmitted: number;
  readonly ringsInstalled: number;
  readonly carried: number;
  readonly tokenLosses: number;
}

const TOPIC = "sim.totem";

function totemStats(channel: Channel): TotemStats {
  return channel.stats.protocol as TotemStats;
}

export async function runTotemScenario(seed: number): Promise<TotemScenarioResult> {
  const random = new SeededRandom(seed).fork("scenario");
  const loss = random.next() < 0.2 ? 0 : random.next() * 0.3;
  const net = lossyNetwork(seed, random, { loss, duplicate: 0.05, reorder: 0.1, delayMs: 2 });
  const memberCount = 3 + random.nextInt(3);
  const senderCount = 1 + random.nextInt(memberCount);
  const safeShare = random.next() < 0.3 ? 0 : random.next();
  const channels = await startChannels(net, memberCount, () => ({
    reliability: "totem",
    totem: {
      tokenTimeoutMs: 400,
      tokenRetransmitMs: 20,
      consensusTimeoutMs: 600,
      joinIntervalMs: 20,
      ...(random.next() < 0.3 ? { windowMessages: 64, maxMessagesPerVisit: 16 } : {}),
    },
  }));
  const hosts = channels.map((_, i) => `h${i}`);
  const ringOfAll = (members: number[]) =>
    members.every((i) => {
      const ring = totemStats(channels[i]!).ring;
      return ring.state === "operational" && ring.members.length === members.length;
    });
  const everyone = channels.map((_, i) => i);
  try {
    net.clock.runUntil(() => ringOfAll(everyone), { maxMs: 60_000 });
  } catch (error) {
    throw new Error(`no ring of all members formed: ${describe(channels)}`, { cause: error });
  }

  // What each member delivered, in order: "sender/number".
  const delivered = channels.map(() => [] as string[]);
  const safeKeys = new Set<string>();
  const violations: string[] = [];
  channels.forEach((channel, i) => {
    channel.onTopic(TOPIC, (message: TopicMessage) => {
      const { sender, number } = decodeMessage(message.payload);
      const key = `${sender}/${number}`;
      delivered[i]!.push(key);
      if (!safeKeys.has(key)) return;
      // Safe: while the ring runs, every live member of it already holds the message.
      const ring = totemStats(channel).ring;
      if (ring.state !== "operational") return;
      channels.forEach((other, j) => {
        if (j === i || net.isCrashed(hosts[j]!) || net.isCrashed(hosts[i]!)) return;
        const theirs = totemStats(other).ring;
        if (theirs.seq === ring.seq && ring.members.includes(other.id) && theirs.aru < ring.delivered) {
          violations.push(`m${i} delivered safe ${key} (#${ring.delivered} of ring ${ring.seq}) while m${j} held only up to ${theirs.aru}`);
        }
      });
    });
  });

  // Senders send in bursts spread over virtual time.
  const sent: number[] = [];
  let total = 0;
  for (let s = 0; s < senderCount; s++) {
    const count = 20 + random.nextInt(150);
    sent.push(count);
    total += count;
    let n = 0;
    const burst = () => {
      if (net.isCrashed(hosts[s]!)) return;
      const size = 1 + random.nextInt(20);
      for (let k = 0; k < size && n < count; k++, n++) {
        const large = random.next() < 0.02;
        const safe = random.next() < safeShare;
        if (safe) safeKeys.add(`${s}/${n}`);
        channels[s]!.broadcast(TOPIC, encodeMessage(s, n, large ? 100_000 + random.nextInt(100_000) : random.nextInt(300)), { safe }).catch(() => undefined);
      }
      if (n < count) net.clock.setTimer(random.nextInt(20), burst);
    };
    net.clock.setTimer(random.nextInt(10), burst);
  }

  // Crashes: none, one, or (with five members) two, at random moments while messages flow.
  const crashCount = random.next() < 0.5 ? 0 : memberCount === 5 && random.next() < 0.3 ? 2 : 1;
  const victims = new Set<number>();
  while (victims.size < crashCount) victims.add(random.nextInt(memberCount));
  // Mostly while messages flow; sometimes the second one later, while the ring recovers from the first.
  for (const victim of victims) net.clock.setTimer(random.next() < 0.7 ? random.nextInt(200) : random.nextInt(1_500), () => net.crash(hosts[victim]!));
  const live = everyone.filter((i) => !victims.has(i));
  const liveSenders = live.filter((i) => i < senderCount);

  const complete = () =>
    liveSenders.every((s) => live.every((i) => delivered[i]!.filter((key) => key.startsWith(`${s}/`)).length >= sent[s]!));
  try {
    net.clock.runUntil(() => complete() && ringOfAll(live), { maxMs: 300_000 });
  } catch (error) {
    throw new Error(`not every message was delivered: ${progress(live, liveSenders, sent, delivered)}; ${describe(channels)}`, { cause: error });
  }
  // Let what is still in flight (a crashed sender's last messages) settle.
  net.clock.runFor(2_000);
  if (!ringOfAll(live)) throw new Error(`the live members do not end on one ring: ${describe(channels)}`);

  if (violations.length > 0) throw new Error(violations.slice(0, 3).join("; "));
  const reference = delivered[live[0]!]!;
  for (const i of live) {
    const list = delivered[i]!;
    if (new Set(list).size !== list.length) throw new Error(`m${i} delivered a message twice`);
    for (let k = 0; k < Math.max(list.length, reference.length); k++) {
      if (list[k] !== reference[k]) {
        throw new Error(`m${i} and m${live[0]} differ at delivery ${k}: ${list[k]} vs ${reference[k]} (${list.length} vs ${reference.length} delivered)`);
      }
    }
  }
  const last = new Map<string, number>();
  for (const key of reference) {
    const [sender, number] = key.split("/");
    const previous = last.get(sender!) ?? -1;
    if (Number(number) <= previous) throw new Error(`sender ${sender}'s ${number} delivered after ${previous}`);
    last.set(sender!, Number(number));
  }
  for (const s of liveSenders) {
    if (reference.filter((key) => key.startsWith(`${s}/`)).length !== sent[s]) throw new Error(`live sender ${s}'s messages not all delivered`);
  }

  const stats = live.map((i) => totemStats(channels[i]!));
  const result: TotemScenarioResult = {
    seed,
    members: memberCount,
    senders: senderCount,
    messages: total,
    safeMessages: safeKeys.size,
    loss,
    crashed: crashCount,
    virtualMs: net.clock.now(),
    retransmitted: stats.reduce((sum, s) => sum + s.retransmitted, 0),
    ringsInstalled: stats.reduce((sum, s) => sum + s.ringsInstalled, 0),
    carried: stats.reduce((sum, s) => sum + s.carried, 0),
    tokenLosses: stats.reduce((sum, s) => sum + s.tokenLosses, 0),
  };
  for (const channel of channels) await channel.shutDown();
  return result;
}

function describe(channels: Channel[]): string {
  return channels
    .map((channel, i) => {
      const { ring, retransmitted, tokenLosses } = totemStats(channel);
      return `m${i}: ${ring.state} ring ${ring.seq} of ${ring.members.length}, aru ${ring.aru}, delivered ${ring.delivered}, safe ${ring.safe}, resent ${retransmitted}, losses ${tokenLosses}`;
    })
    .join("; ");
}

function progress(live: number[], senders: number[], sent: number[], delivered: string[][]): string {
  return live
    .map((i) => `m${i}: ${senders.map((s) => `${delivered[i]!.filter((key) => key.startsWith(`${s}/`)).length}/${sent[s]}`).join(" ")}`)
    .join("; ");
}
