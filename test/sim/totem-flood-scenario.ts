import { Channel } from "../../src/channel/channel.ts";
import type { TopicMessage } from "../../src/channel/topic-message.ts";
import { DEFAULT_TOTEM_OPTIONS } from "../../src/reliable/totem/options.ts";
import type { TotemStats } from "../../src/reliable/totem/totem-protocol.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { decodeMessage, encodeMessage, EventLoop, lossyNetwork, startChannels } from "./sim-helpers.ts";

/**
 * One seeded run of Totem, with its default timing, through what a flood of datagrams does to a
 * member: 3–5 members send agreed and safe messages all along (up to 3 % loss) while, one after
 * another, episodes of
 * - `deaf`: a member receives nothing (its socket overflows) for 0.2–1.7 × `consensusTimeoutMs`;
 * - `slow`: everything a member receives comes 0.1–0.8 × `consensusTimeoutMs` late (a backlog ahead of
 *   it), for up to 3 s;
 * - `mute`: nothing a member sends arrives, for 0.1–0.75 × `consensusTimeoutMs`;
 * - `pause`: a member's process stalls for 0.1–0.75 × `consensusTimeoutMs`;
 * - `newcomer`: a new member comes up (every ring forms again with it) and crashes within 2 s; or, as
 *   the made-up senders of a flood do, within 50 ms, before a ring can form with it, so that the
 *   members gather until they find it silent; meanwhile, in two runs of three, every process stalls at once (one process holding them
 *   all, as in the fuzz campaign) for 1–3 × `consensusTimeoutMs`, or one member goes deaf for
 *   1–1.8 × `consensusTimeoutMs`.
 *
 * A stall is modelled as an event loop does it: on waking, the timers that fell due run first, then
 * the datagrams that waited. None of these silences is one the members may take for a failure, so:
 * - no member ever installs a ring that lacks one of the members (no member splits off);
 * - every member delivers every message of every member once, each sender's in its send order, and
 *   all of them in one and the same order;
 * - every member ends on one operational ring of all the members.
 */
export interface TotemFloodResult {
  readonly seed: number;
  readonly members: number;
  readonly messages: number;
  readonly episodes: Readonly<Record<EpisodeKind, number>>;
  /** How long every process stalled at once, in each newcomer episode where they did. */
  readonly together: readonly number[];
  /** Newcomer episodes in which a member went deaf while the members gathered. */
  readonly deafInGather: number;
  readonly ringsInstalled: number;
  readonly tokenLosses: number;
  readonly virtualMs: number;
}

export type EpisodeKind = "deaf" | "slow" | "mute" | "pause" | "newcomer";
// Newcomers twice as often: most of what a flood does to ring formation comes with them.
const KINDS: readonly EpisodeKind[] = ["deaf", "slow", "mute", "pause", "newcomer", "newcomer"];
const TOPIC = "sim.totem-flood";
/** Time for a ring of all to form again after an episode, before the next one. */
const EPISODE_GAP_MS = 6_000;

function totemStats(channel: Channel): TotemStats {
  return channel.stats.protocol as TotemStats;
}

export async function runTotemFloodScenario(seed: number): Promise<TotemFloodResult> {
  const random = new SeededRandom(seed).fork("totem-flood");
  const consensus = DEFAULT_TOTEM_OPTIONS.consensusTimeoutMs;
  const net = lossyNetwork(seed, random, { loss: random.next() < 0.3 ? 0 : random.next() * 0.03, duplicate: 0.02, reorder: 0.05, delayMs: 1 });
  const memberCount = 3 + random.nextInt(3);
  const loops = Array.from({ length: memberCount + 8 }, () => new EventLoop(net.clock));
  const hosts = loops.map((_, i) => (i < memberCount ? `h${i}` : `n${i - memberCount}`));
  const memberOptions = (index: number) => ({
    reliability: "totem" as const,
    clock: loops[index]!.memberClock,
    transport: loops[index]!.transport(net.transportFactory(hosts[index])),
  });
  const channels = await startChannels(net, memberCount, memberOptions);
  const everyone = channels.map((_, i) => i);
  const ids = new Set(channels.map((c) => c.id));
  const ringOfAll = () =>
    channels.every((channel) => {
      const ring = totemStats(channel).ring;
      return ring.state === "operational" && ring.members.length === memberCount && ring.members.every((m) => ids.has(m));
    });
  net.clock.runUntil(ringOfAll, { maxMs: 60_000 });

  // Every ring each member installs: it must hold every member.
  const seen = channels.map(() => 0);
  const story: string[] = [];
  const violations: string[] = [];
  const watchRings = () => {
    channels.forEach((channel, i) => {
      const ring = totemStats(channel).ring;
      if (ring.seq === seen[i]) return;
      seen[i] = ring.seq;
      story.push(`${net.clock.now().toFixed(0)} m${i} on ring ${ring.seq} of ${ring.members.length}`);
      const missing = channels.filter((c) => !ring.members.includes(c.id)).map((c) => channels.indexOf(c));
      if (missing.length > 0) violations.push(`at ${net.clock.now().toFixed(0)} ms m${i} installed ring ${ring.seq} without ${missing.map((j) => `m${j}`).join(", ")}`);
    });
  };
  watchRings();

  const delivered = channels.map(() => [] as string[]);
  channels.forEach((channel, i) => {
    channel.onTopic(TOPIC, (message: TopicMessage) => {
      const { sender, number } = decodeMessage(message.payload);
      delivered[i]!.push(`${sender}/${number}`);
    });
  });

  // Episodes, one after another; every member sends in bursts (on its own event loop) all along.
  const episodeCount = 3 + random.nextInt(3);
  const sent: number[] = [];
  for (let s = 0; s < memberCount; s++) {
    const count = 40 + random.nextInt(120);
    sent.push(count);
    let n = 0;
    const clock = loops[s]!.memberClock;
    const gapMs = Math.ceil((episodeCount * EPISODE_GAP_MS) / count);
    const burst = () => {
      const size = 1 + random.nextInt(4);
      for (let k = 0; k < size && n < count; k++, n++) {
        channels[s]!.broadcast(TOPIC, encodeMessage(s, n, random.nextInt(300)), { safe: random.next() < 0.3 }).catch(() => undefined);
      }
      if (n < count) clock.setTimer(random.nextInt(size * gapMs * 2), burst);
    };
    clock.setTimer(random.nextInt(50), burst);
  }

  const episodes: Record<EpisodeKind, number> = { deaf: 0, slow: 0, mute: 0, pause: 0, newcomer: 0 };
  const together: number[] = [];
  let deafInGather = 0;
  let newcomers = 0;
  const started: Channel[] = [];
  const between = (low: number, high: number) => Math.round(consensus * (low + random.next() * (high - low)));
  const run = (ms: number) => {
    const until = net.clock.now() + ms;
    while (net.clock.now() < until) {
      net.clock.runFor(Math.min(10, until - net.clock.now()));
      watchRings();
    }
  };
  for (let e = 0; e < episodeCount; e++) {
    run(random.nextInt(1_000));
    const kind = KINDS[random.nextInt(KINDS.length)]!;
    const victim = random.nextInt(memberCount);
    const others = hosts.slice(0, memberCount + newcomers).filter((host) => host !== hosts[victim]);
    episodes[kind]++;
    story.push(`${net.clock.now().toFixed(0)} ${kind === "newcomer" ? kind : `${kind} m${victim}`}`);
    switch (kind) {
      case "deaf": {
        for (const from of others) net.setLink(from, hosts[victim]!, { loss: 1 });
        run(between(0.2, 1.7));
        for (const from of others) net.clearLink(from, hosts[victim]!);
        break;
      }
      case "slow": {
        const late = between(0.1, 0.8);
        for (const from of others) net.setLink(from, hosts[victim]!, { delayMs: { min: late, max: late } });
        run(500 + random.nextInt(2_500));
        for (const from of others) net.clearLink(from, hosts[victim]!);
        break;
      }
      case "mute": {
        for (const to of others) net.setLink(hosts[victim]!, to, { loss: 1 });
        run(between(0.1, 0.75));
        for (const to of others) net.clearLink(hosts[victim]!, to);
        break;
      }
      case "pause":
        loops[victim]!.stall(between(0.1, 0.75));
        break;
      case "newcomer": {
        const index = memberCount + newcomers++;
        const newcomer = new Channel({
          name: `n${index - memberCount}`,
          random: net.random.fork(`newcomer-${index}`),
          incarnation: 1,
          heartbeatIntervalMs: 100,
          peerTimeoutMs: 600_000,
          ...memberOptions(index),
        });
        await newcomer.start();
        started.push(newcomer);
        if (random.next() < 0.4) {
          // It stays long enough to be taken into a ring, then crashes (the token is lost).
          net.clock.setTimer(300 + random.nextInt(1_700), () => net.crash(hosts[index]!));
          break;
        }
        // A sender made up by a flood: it comes and goes before a ring can form with it, and the members
        // gather until they find it silent. Meanwhile, in most runs, every process stalls at once (one
        // process holding them all), or one member goes deaf.
        net.clock.setTimer(20 + random.nextInt(30), () => net.crash(hosts[index]!));
        const meanwhile = random.nextInt(3);
        if (meanwhile === 0) {
          run(between(0.3, 0.9));
          const stallMs = between(1, 3);
          together.push(stallMs);
          story.push(`${net.clock.now().toFixed(0)} every member stalls ${stallMs} ms`);
          for (let i = 0; i < memberCount; i++) loops[i]!.stall(stallMs);
        } else if (meanwhile === 1) {
          run(between(0.1, 0.5));
          const deafMs = between(1, 1.8);
          deafInGather++;
          story.push(`${net.clock.now().toFixed(0)} m${victim} deaf ${deafMs} ms`);
          for (const from of others) net.setLink(from, hosts[victim]!, { loss: 1 });
          run(deafMs);
          for (const from of others) net.clearLink(from, hosts[victim]!);
        }
        break;
      }
    }
    run(EPISODE_GAP_MS);
  }

  const complete = () => everyone.every((i) => everyone.every((s) => delivered[i]!.filter((key) => key.startsWith(`${s}/`)).length >= sent[s]!));
  const deadline = net.clock.now() + 120_000;
  while (!(complete() && ringOfAll())) {
    if (net.clock.now() > deadline) {
      throw new Error(`not every message was delivered on one ring of all: ${describe(channels, delivered, sent)}\n  ${story.slice(-30).join("\n  ")}`);
    }
    run(10);
  }
  run(2_000);
  if (violations.length > 0) throw new Error(`${violations.slice(0, 3).join("; ")}\n  ${story.slice(-30).join("\n  ")}`);
  if (!ringOfAll()) throw new Error(`the members do not end on one ring: ${describe(channels, delivered, sent)}`);

  const reference = delivered[0]!;
  for (const i of everyone) {
    const list = delivered[i]!;
    if (new Set(list).size !== list.length) throw new Error(`m${i} delivered a message twice`);
    if (list.join(" ") !== reference.join(" ")) {
      const k = list.findIndex((key, j) => key !== reference[j]);
      throw new Error(`m${i} and m0 differ at delivery ${k}: ${list[k]} vs ${reference[k]} (${list.length} vs ${reference.length} delivered)`);
    }
  }
  for (const s of everyone) {
    const numbers = reference.filter((key) => key.startsWith(`${s}/`)).map((key) => Number(key.split("/")[1]));
    if (numbers.length !== sent[s] || numbers.some((n, k) => n !== k)) throw new Error(`sender m${s}'s messages not all delivered, or not in its order`);
  }

  const stats = channels.map(totemStats);
  const result: TotemFloodResult = {
    seed,
    members: memberCount,
    messages: sent.reduce((sum, count) => sum + count, 0),
    episodes,
    together,
    deafInGather,
    ringsInstalled: stats.reduce((sum, s) => sum + s.ringsInstalled, 0),
    tokenLosses: stats.reduce((sum, s) => sum + s.tokenLosses, 0),
    virtualMs: net.clock.now(),
  };
  for (const channel of [...channels, ...started]) await channel.shutDown();
  return result;
}

function describe(channels: Channel[], delivered: string[][], sent: number[]): string {
  return channels
    .map((channel, i) => {
      const { ring, tokenLosses } = totemStats(channel);
      const got = sent.map((count, s) => `${delivered[i]!.filter((key) => key.startsWith(`${s}/`)).length}/${count}`).join(" ");
      return `m${i}: ${ring.state} ring ${ring.seq} of ${ring.members.length}, losses ${tokenLosses}, delivered ${got}`;
    })
    .join("; ");
}
