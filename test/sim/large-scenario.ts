import { Channel } from "../../src/channel/channel.ts";
import type { ChannelOptions } from "../../src/channel/options.ts";
import type { TopicMessage } from "../../src/channel/topic-message.ts";
import type { TotemStats } from "../../src/reliable/totem/totem-protocol.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { flush } from "./sim-helpers.ts";

/**
 * Seeded runs of large (fragmented) messages under adversity, with NACK or Totem:
 *
 * - `restart`: a sender crashes while it sends 1 MiB messages and comes back with the same id (a new
 *   incarnation), at once or later, once or twice, and sends 1 MiB messages again (3–6 members with NACK,
 *   3–14 with Totem), on a slightly lossy network;
 * - `slow`: 1–16 MiB messages over slow links (55–65 ms one way, 4–40 MB/s, a small window), so that a
 *   message takes longer to arrive than `peerTimeoutMs`;
 * - `stall`: 1–16 MiB messages over 2–10 MB/s links while a member's process stalls for 5–10 s (its clock
 *   jumps forward), so that a transfer and a stall last longer than `peerTimeoutMs`.
 *
 * Every payload carries its sender, incarnation and number and is random otherwise. Checks:
 * - every delivered message is byte for byte what was sent (a checksum of the whole payload);
 * - each sender incarnation's messages are delivered at most once and in its send order;
 * - no silent loss: every message of an incarnation that did not crash is delivered at every member that
 *   never crashed (at the restarted member too, from the first message it got from each sender on), or
 *   that member reported a loss of that sender (`messagesLost`); the same for a message skipped;
 * - Totem: the same messages in the same order at every member that never crashed or stalled (a crashed
 *   incarnation's messages included or left out alike); the restarted member delivers a contiguous
 *   stretch of that order, less messages whose first pieces went out before it joined (reported lost).
 *   A member that stalled is taken off the ring: it misses what the ring delivers meanwhile, what it
 *   sends then reaches only the ring it goes out on, and others may miss an agreed message it delivered
 *   just before (as with a crash: extended virtual synchrony), but the messages it shares with everyone
 *   come in the same order.
 */
export type LargeKind = "restart" | "slow" | "stall";
export type LargeProtocol = "nack" | "totem";

export interface LargeScenarioResult {
  readonly seed: number;
  readonly kind: LargeKind;
  readonly reliability: LargeProtocol;
  readonly members: number;
  readonly messages: number;
  readonly bytes: number;
  readonly delivered: number;
  readonly restarts: number;
  readonly stalls: number;
  /** `messagesLost` events at the members (a crashed incarnation's messages only). */
  readonly lossReports: number;
  readonly virtualMs: number;
}

const TOPIC = "sim.large";
const MiB = 1024 * 1024;

interface Member {
  readonly index: number;
  readonly host: string;
  readonly incarnation: number;
  readonly channel: Channel;
  /** Delivered messages in order: "sender/incarnation/number". */
  readonly delivered: string[];
  /** Senders (index) whose loss this member was told of. */
  readonly lossReported: Set<string>;
  crashed: boolean;
  /** Its process stalled at some time (Totem then takes it off the ring). */
  stalled: boolean;
}

interface Sent {
  readonly length: number;
  readonly checksum: number;
}

export async function runLargeScenario(kind: LargeKind, reliability: LargeProtocol, seed: number): Promise<LargeScenarioResult> {
  const random = new SeededRandom(seed).fork(`large-${kind}-${reliability}`);
  const totem = reliability === "totem";
  const memberCount = kind === "restart" ? (totem ? 3 + random.nextInt(12) : 3 + random.nextInt(4)) : 3 + random.nextInt(kind === "slow" ? 3 : 4);
  const net = new SimulatedNetwork({ seed, defaultLink: linkOf(kind, random) });
  const hosts = Array.from({ length: memberCount }, (_, i) => net.createHost(`h${i}`));
  const options = optionsOf(kind, totem, random);

  const sent = new Map<string, Sent>();
  const violations: string[] = [];
  const members: Member[] = [];
  const byIndex: Member[] = [];
  let lossReports = 0;

  const startMember = async (index: number, incarnation: number): Promise<Member> => {
    const channel = new Channel({
      name: `m${index}`,
      transport: net.transportFactory(hosts[index]),
      clock: net.clockOf(hosts[index]!),
      // The same fork gives the same member id: a restart is the same member, a new incarnation.
      random: net.random.fork(`member-${index}`),
      incarnation,
      reliability,
      ...options,
    });
    const member: Member = { index, host: hosts[index]!, incarnation, channel, delivered: [], lossReported: new Set(), crashed: false, stalled: false };
    channel.onTopic(TOPIC, (message: TopicMessage) => {
      const key = keyOf(message.payload);
      const expected = sent.get(key);
      if (expected === undefined || expected.length !== message.payload.length || checksum(message.payload) !== expected.checksum) {
        violations.push(`m${index}.${incarnation} delivered a corrupted message (${key}, ${message.payload.length} bytes)`);
        return;
      }
      member.delivered.push(key);
    });
    channel.on("messagesLost", ({ peer }) => {
      lossReports++;
      const sender = byIndex.find((m) => m.channel.id === peer);
      if (sender !== undefined) member.lossReported.add(`${sender.index}`);
    });
    await channel.start();
    members.push(member);
    byIndex[index] = member;
    return member;
  };
  for (let i = 0; i < memberCount; i++) await startMember(i, 1);
  const running = () => byIndex.filter((m) => !m.crashed);
  const ready = () =>
    running().every((m) =>
      totem
        ? ring(m.channel).state === "operational" && ring(m.channel).members.length === running().length
        : m.channel.peers.length === running().length - 1 &&
          running().every((o) => o === m || m.channel.peers.some((p) => p.id === o.channel.id && p.incarnation === o.incarnation)),
    );
  try {
    net.clock.runUntil(ready, { maxMs: 60_000 });
  } catch (error) {
    throw new Error(`the members did not find each other: ${describe(members)}`, { cause: error });
  }

  // Senders: member 0 always (the one restarted or stalled in some runs), up to two more.
  const senderCount = Math.min(memberCount, 1 + random.nextInt(3));
  let bytes = 0;
  const send = (member: Member, number: number, size: number) => {
    const payload = payloadOf(member.index, member.incarnation, number, size, random);
    sent.set(keyOf(payload), { length: size, checksum: checksum(payload) });
    bytes += size;
    member.channel.broadcast(TOPIC, payload).catch(() => undefined);
  };
  const sizeOf = (): number => {
    if (kind === "restart") return random.next() < 0.8 ? MiB : MiB - 1_000 + random.nextInt(2_000);
    return random.next() < 0.3 ? MiB + random.nextInt(6 * MiB) : 7 * MiB + random.nextInt(9 * MiB + 1);
  };
  const countOf = () => (kind === "restart" ? 4 + random.nextInt(7) : 1 + random.nextInt(kind === "slow" ? 2 : 3));
  let seriesRunning = 0;
  /** Sends `count` messages, one every 0–`gapMs`, while the member runs (on its host's clock: a stall holds it too). */
  const sendSeries = (member: Member, count: number, gapMs: number) => {
    const clock = net.clockOf(member.host);
    let n = 0;
    seriesRunning++;
    const next = () => {
      if (member.crashed || n >= count) {
        seriesRunning--;
        return;
      }
      send(member, n++, sizeOf());
      clock.setTimer(random.nextInt(gapMs), next);
    };
    clock.setTimer(random.nextInt(gapMs), next);
  };
  for (let s = 0; s < senderCount; s++) sendSeries(byIndex[s]!, countOf(), kind === "restart" ? 60 : 2_000);

  let restarts = 0;
  let stalls = 0;
  // Member 0 crashes while it sends, and comes back with the same id: once, sometimes twice.
  const plannedRestarts = kind !== "restart" ? 0 : random.next() < 0.3 ? 2 : 1;
  /** Restarted members that began sending, or crashed again before they could. */
  let restartsSettled = 0;
  if (kind === "restart") {
    let at = 20 + random.nextInt(300);
    for (let r = 0; r < plannedRestarts; r++) {
      const downFor = random.next() < 0.5 ? random.nextInt(50) : random.nextInt(3_000);
      net.clock.setTimer(at, () => {
        const victim = byIndex[0]!;
        victim.crashed = true;
        net.crash(victim.host);
        void victim.channel.shutDown();
        net.clock.setTimer(downFor, () => {
          net.restart(victim.host);
          restarts++;
          void startMember(0, victim.incarnation + 1).then((member) => {
            // It sends once every running member knows it (with Totem: once the ring holds everyone).
            const whenReady = () => {
              if (!member.crashed && !ready()) {
                net.clock.setTimer(20, whenReady);
                return;
              }
              restartsSettled++;
              if (!member.crashed) sendSeries(member, countOf(), 60);
            };
            whenReady();
          });
        });
      });
      at += downFor + 400 + random.nextInt(1_500);
    }
  }
  if (kind === "stall") {
    // A member stalls for 5–10 s while the large messages travel (a sender or a receiver).
    const times = 1 + random.nextInt(2);
    for (let k = 0; k < times; k++) {
      const victim = random.nextInt(memberCount);
      net.clock.setTimer(200 + random.nextInt(3_000), () => {
        stalls++;
        byIndex[victim]!.stalled = true;
        net.stall(hosts[victim]!, 5_000 + random.nextInt(5_001));
      });
    }
  }

  // Run until every message of a running incarnation reached every member that never crashed.
  const original = () => members.filter((m) => m.incarnation === 1 && !m.crashed);
  const current = (key: string) => {
    const [s, inc] = key.split("/");
    const sender = byIndex[Number(s)]!;
    return !sender.crashed && Number(inc) === sender.incarnation;
  };
  /**
   * A message `m` may lack: one it was told of losing; with Totem, one delivered while `m` was off the
   * ring, or one its sender sent while off the ring (it reaches only the ring it goes out on).
   */
  const excused = (m: Member, key: string) => {
    const sender = key.split("/")[0]!;
    return m.lossReported.has(sender) || (totem && (m.stalled || byIndex[Number(sender)]!.stalled));
  };
  // With Totem, also until the ring holds every running member again (ring changes are over).
  const complete = () =>
    seriesRunning === 0 &&
    restartsSettled === plannedRestarts &&
    (!totem || ready()) &&
    [...sent.keys()].every((key) => !current(key) || original().every((m) => m.delivered.includes(key) || excused(m, key)));
  // Restarts wait for promises: the clock runs in steps, with promise continuations between them.
  const deadline = net.clock.now() + (kind === "restart" ? 120_000 : 600_000);
  while (!complete()) {
    if (net.clock.now() >= deadline) throw new Error(`not every message was delivered: ${progress(original(), sent, current)}; ${describe(members)}`);
    net.clock.runFor(100);
    await flush();
  }
  net.clock.runFor(3_000);
  await flush();

  if (violations.length > 0) throw new Error(violations.slice(0, 3).join("; "));
  for (const m of members) checkStreams(m);
  if (totem) {
    const steady = original().filter((m) => !m.stalled);
    const reference = steady[0]!.delivered;
    for (const m of steady) {
      const list = m.delivered;
      for (let k = 0; k < Math.max(list.length, reference.length); k++) {
        if (list[k] !== reference[k]) {
          throw new Error(`m${m.index} and m${steady[0]!.index} differ at delivery ${k}: ${list[k]} vs ${reference[k]} (${list.length} vs ${reference.length} delivered)`);
        }
      }
    }
    const place = new Map(reference.map((key, k) => [key, k]));
    for (const m of original().filter((m) => m.stalled)) {
      const places = m.delivered.map((key) => place.get(key)).filter((at) => at !== undefined);
      if (places.some((at, k) => k > 0 && at < places[k - 1]!)) {
        throw new Error(`stalled m${m.index} delivered out of the ring's order: ${m.delivered.join(" ")} vs ${reference.join(" ")}`);
      }
    }
    // A restarted member delivers a stretch of that order, but for messages whose first pieces went out
    // before it joined (it reports them lost).
    for (const m of members.filter((m) => m.incarnation > 1 && !m.crashed && m.delivered.length > 0)) {
      const places = m.delivered.map((key) => reference.indexOf(key));
      const own = new Set(m.delivered);
      const skipped = reference.slice(places[0], places.at(-1)! + 1).filter((key) => !own.has(key) && !excused(m, key));
      if (places.some((at, k) => at < 0 || (k > 0 && at <= places[k - 1]!)) || skipped.length > 0) {
        throw new Error(`restarted m${m.index}.${m.incarnation} delivered other than a stretch of the ring's order: ${m.delivered.join(" ")} vs ${reference.join(" ")}`);
      }
    }
  }
  const result: LargeScenarioResult = {
    seed,
    kind,
    reliability,
    members: memberCount,
    messages: sent.size,
    bytes,
    delivered: members.reduce((sum, m) => sum + m.delivered.length, 0),
    restarts,
    stalls,
    lossReports,
    virtualMs: net.clock.now(),
  };
  for (const m of members) if (!m.crashed) await m.channel.shutDown();
  return result;

  /**
   * Each sender incarnation's messages at most once and in order. A message skipped was reported lost,
   * except that Totem may skip a crashed sender's message no survivor got a piece of (nobody knows of
   * it). A running incarnation's messages all arrive: at a member up from the start, every one; at a
   * restarted member, every one from the first it got on.
   */
  function checkStreams(m: Member): void {
    const last = new Map<string, number>();
    for (const key of m.delivered) {
      const [s, inc, n] = key.split("/");
      const stream = `${s}/${inc}`;
      const previous = last.get(stream);
      if (previous !== undefined && Number(n) <= previous) throw new Error(`m${m.index}.${m.incarnation} delivered ${key} after ${stream}/${previous}`);
      const skipped = Number(n) - (previous ?? -1) - 1;
      const lateStart = previous === undefined && m.incarnation > 1;
      const unknowable = totem && !current(key);
      if (skipped > 0 && !lateStart && !unknowable && !excused(m, key)) {
        throw new Error(`m${m.index}.${m.incarnation} skipped ${skipped} message(s) of ${stream} before ${n} with no loss reported`);
      }
      last.set(stream, Number(n));
    }
    if (m.crashed) return;
    for (const key of sent.keys()) {
      if (!current(key) || m.delivered.includes(key) || excused(m, key)) continue;
      const [s, inc, n] = key.split("/");
      const first = m.incarnation === 1 ? 0 : Math.min(...m.delivered.filter((k) => k.startsWith(`${s}/${inc}/`)).map((k) => Number(k.split("/")[2])));
      if (Number(n) >= first) throw new Error(`m${m.index}.${m.incarnation} never delivered ${key}`);
    }
  }
}

function linkOf(kind: LargeKind, random: SeededRandom): ConstructorParameters<typeof SimulatedNetwork>[0]["defaultLink"] {
  switch (kind) {
    case "restart":
      return { loss: random.next() * 0.03, duplicate: random.next() * 0.01, reorder: random.next() * 0.05, delayMs: { min: 0.05, max: 0.05 + random.next() } };
    case "slow":
      return { loss: random.next() * 0.01, delayMs: { min: 55, max: 65 }, bandwidthBytesPerSecond: 4_000_000 + random.nextInt(36_000_000) };
    case "stall":
      // Slow enough that a transfer and a stall together last longer than peerTimeoutMs.
      return { loss: random.next() * 0.02, reorder: random.next() * 0.05, delayMs: { min: 0.1, max: 0.1 + random.next() * 2 }, bandwidthBytesPerSecond: 2_000_000 + random.nextInt(8_000_000) };
  }
}

function optionsOf(kind: LargeKind, totem: boolean, random: SeededRandom): ChannelOptions {
  switch (kind) {
    case "restart":
      return {
        heartbeatIntervalMs: 100,
        peerTimeoutMs: 2_000,
        nack: random.next() < 0.5 ? { windowBytes: 256 * 1024 } : {},
        totem: {
          tokenTimeoutMs: 400,
          tokenRetransmitMs: 20,
          consensusTimeoutMs: 600,
          joinIntervalMs: 20,
          maxBytesPerVisit: [4 * MiB, 256 * 1024, 128 * 1024][random.nextInt(3)]!,
        },
      };
    case "slow":
      // The transfer of one message takes longer than peerTimeoutMs.
      return {
        heartbeatIntervalMs: 250,
        peerTimeoutMs: 1_500 + random.nextInt(1_500),
        nack: { windowBytes: (128 + random.nextInt(385)) * 1024, nackRetryMs: 150, nackRetryMaxMs: 600, retransmitHoldoffMs: 150 },
        totem: totem
          ? { tokenTimeoutMs: 3_000, tokenRetransmitMs: 400, tokenHoldMs: 5, joinIntervalMs: 200, consensusTimeoutMs: 1_500, maxBytesPerVisit: 256 * 1024, windowMessages: 64, maxMessagesPerVisit: 16 }
          : {},
      };
    case "stall":
      // Longer than any stall: a stalled member is neither taken for dead nor left behind by a sender's window.
      return { heartbeatIntervalMs: 250, peerTimeoutMs: 12_000, nack: { receiverTimeoutMs: 12_000 } };
  }
}

function ring(channel: Channel): TotemStats["ring"] {
  return (channel.stats.protocol as TotemStats).ring;
}

/** A payload of `size` bytes: sender, incarnation, number (6 bytes), then random bytes. */
function payloadOf(sender: number, incarnation: number, number: number, size: number, random: SeededRandom): Uint8Array {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = random.nextInt(0x7fffffff) | 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  const payload = new Uint8Array(words.buffer, 0, size);
  payload[0] = sender;
  payload[1] = incarnation;
  new DataView(payload.buffer).setUint32(2, number);
  return payload;
}

function keyOf(payload: Uint8Array): string {
  return `${payload[0]}/${payload[1]}/${new DataView(payload.buffer, payload.byteOffset).getUint32(2)}`;
}

/** FNV-1a over 32-bit words (bytes for an unaligned view or the tail): enough to tell any two payloads apart here. */
function checksum(payload: Uint8Array): number {
  let h = 0x811c9dc5;
  const aligned = payload.byteOffset % 4 === 0;
  const words = aligned ? new Uint32Array(payload.buffer, payload.byteOffset, payload.length >>> 2) : undefined;
  let i = 0;
  if (words !== undefined) {
    for (; i < words.length; i++) h = Math.imul(h ^ words[i]!, 0x01000193);
    i *= 4;
  }
  for (; i < payload.length; i++) h = Math.imul(h ^ payload[i]!, 0x01000193);
  return (h ^ payload.length) >>> 0;
}

function describe(members: readonly Member[]): string {
  return members
    .filter((m) => !m.crashed)
    .map((m) => {
      const stats = m.channel.stats;
      const ringText = stats.reliability === "totem" ? ` ring ${ring(m.channel).seq}/${ring(m.channel).members.length} ${ring(m.channel).state}` : "";
      return `m${m.index}.${m.incarnation}: ${m.delivered.length} delivered, ${stats.reassemblyFailures} reassembly failures, losses of [${[...m.lossReported]}]${m.stalled ? ", stalled" : ""}${ringText}`;
    })
    .join("; ");
}

function progress(members: readonly Member[], sent: ReadonlyMap<string, Sent>, current: (key: string) => boolean): string {
  const missing: string[] = [];
  for (const m of members) {
    const lacking = [...sent.keys()].filter((key) => current(key) && !m.delivered.includes(key));
    if (lacking.length > 0) missing.push(`m${m.index} lacks ${lacking.slice(0, 4).join(",")}${lacking.length > 4 ? "…" : ""}`);
  }
  return missing.join("; ");
}
