import { createUdpTransport } from "../../src/adapters/node.ts";
import { nodeCrypto } from "../../src/adapters/node-crypto.ts";
import type { SecurityOptions } from "../../src/security/options.ts";
import type { Channel } from "../../src/channel/channel.ts";
import { BlazeMessage, createChannel, createClusterChannel, type ClusterChannel } from "../../src/index.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import type { Address, TransportFactory } from "../../src/transport/transport.ts";
import { wrapTransports } from "../../src/transport/transport-wrapper.ts";
import { encodeEnvelopeHeader } from "../../src/wire/frames.ts";
import { Attacker } from "./attacker.ts";
import { fakeId } from "./forge.ts";
import { InsiderKeys } from "./insider-keys.ts";
import { loopbackOnly } from "./loopback-only.ts";
import { mutate, reSign } from "./mutate.ts";

/**
 * Live members on loopback UDP, in this process, under attack: the bed of the hostile-input tests and
 * of `npm run fuzz`. Members send only to loopback and to their own multicast group (their transport
 * refuses every other destination and the test checks nothing was refused); so does the attacker.
 */

export type Level = "nack" | "fec" | "totem" | "cluster";

export interface LiveMember {
  readonly channel: Channel | ClusterChannel;
  readonly name: string;
  /** Per sender id: the sequence of workload messages delivered from it. */
  readonly delivered: Map<string, number[]>;
}

export interface LiveBed {
  readonly level: Level;
  readonly members: LiveMember[];
  readonly group: Address;
  readonly cluster: string;
  readonly attacker: Attacker;
  /** Destinations the members' transports refused (an address read from a datagram): must stay empty. */
  readonly refused: Address[];
  /** Datagrams the members sent, as a corpus to mutate. */
  readonly corpus: Uint8Array[];
  /** The members' unicast addresses. */
  readonly unicast: Address[];
  /** The members' keys and seal mode, when they seal their datagrams. */
  readonly security: Pick<SecurityOptions, "keys" | "mode"> | undefined;
  close(): Promise<void>;
}

const WORKLOAD_TOPIC = "work";

/** A transport factory that keeps (a sample of) what its transports send: the fuzzer's corpus. */
function tapped(factory: TransportFactory, corpus: Uint8Array[]): TransportFactory {
  let seen = 0;
  const keep = (data: Uint8Array) => {
    seen++;
    // Keep the first few hundred, then one in 50: every kind of frame, a bounded corpus.
    if (corpus.length < 400 || seen % 50 === 0) {
      if (corpus.length >= 2_000) corpus[seen % 2_000] = data.slice();
      else corpus.push(data.slice());
    }
  };
  return wrapTransports(factory, () => ({ beforeSend: (data) => keep(data) }));
}

export function freshGroup(): { group: Address; cluster: string } {
  const random = Math.floor(Math.random() * 1e9);
  return {
    group: { host: `239.255.${1 + (random % 254)}.${1 + ((random >>> 8) % 254)}`, port: 20_000 + (random % 12_000) },
    cluster: `hostile-${Date.now().toString(36)}-${random.toString(36)}`,
  };
}

/** Keys for a secured bed: one random secret. */
export function bedKeys(mode: "encrypt" | "authenticate" = "encrypt"): Pick<SecurityOptions, "keys" | "mode"> {
  return { keys: [{ id: 1, secret: nodeCrypto.generateIdentity().privateKey }], mode };
}

export async function startBed(level: Level, count = 3, extra: Record<string, unknown> = {}, security?: Pick<SecurityOptions, "keys" | "mode">): Promise<LiveBed> {
  const { group, cluster } = freshGroup();
  const refused: Address[] = [];
  const corpus: Uint8Array[] = [];
  const transport = tapped(loopbackOnly(createUdpTransport, group.host, refused), corpus);
  const common = {
    cluster,
    network: { type: "multicast" as const, group: group.host, port: group.port },
    transport,
    heartbeatIntervalMs: 100,
    // A made-up sender that is admitted but never acknowledges holds a sender's window until then.
    nack: { receiverTimeoutMs: 1_000 },
    ...(security === undefined ? {} : { security: { ...security, provider: nodeCrypto } }),
    ...extra,
  };
  const members: LiveMember[] = [];
  for (let i = 0; i < count; i++) {
    const name = `m${i}`;
    const channel =
      level === "cluster"
        ? await createClusterChannel({ ...common, name, groups: ["g"], failureTimeoutMs: 1_000, verifyTimeoutMs: 300, discoveryTimeoutMs: 300 })
        : await createChannel({ ...common, name, reliability: level });
    const member: LiveMember = { channel, name, delivered: new Map() };
    // Every background failure is counted in stats.errors; listening keeps the console quiet.
    (channel as Pick<Channel, "on">).on("error", () => undefined);
    channel.onTopic(WORKLOAD_TOPIC, (message) => {
      let text = "";
      try {
        text = message.text();
      } catch {
        // Not text: made up by someone, counted as not a workload message below.
      }
      const n = Number(text.split(":")[1]);
      let list = member.delivered.get(message.sender);
      if (list === undefined) member.delivered.set(message.sender, (list = []));
      list.push(text.startsWith(`${message.sender}:`) ? n : Number.NaN);
    });
    members.push(member);
  }
  if (level === "cluster") await Promise.all(members.map((m) => (m.channel as ClusterChannel).join()));
  else {
    await Promise.all(members.map((m) => m.channel.start()));
    await Promise.all(members.map((m) => m.channel.waitForPeers(count - 1, { timeoutMs: 5_000 })));
  }
  const attacker = await Attacker.open(group, cluster);
  return {
    level,
    members,
    group,
    cluster,
    attacker,
    refused,
    corpus,
    unicast: members.map((m) => m.channel.localAddress),
    security,
    async close() {
      await attacker.close();
      await Promise.all(members.map((m) => m.channel.shutDown()));
    },
  };
}

/** Each member broadcasts `count` numbered workload messages; resolves when every member has all of them. */
export async function workload(bed: LiveBed, count: number, start: number, timeoutMs = 10_000): Promise<void> {
  for (let n = start; n < start + count; n++) {
    for (const member of bed.members) await member.channel.broadcast(WORKLOAD_TOPIC, new BlazeMessage(`${member.channel.id}:${n}`));
    if (n % 50 === 0) await sleep(1);
  }
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (bed.members.every((m) => bed.members.every((s) => (m.delivered.get(s.channel.id)?.length ?? 0) >= start + count - 1))) return;
    await sleep(10);
  }
}

/**
 * What must hold after an attack: nothing sent off loopback; every legitimate sender's workload
 * delivered exactly once, in order, uncorrupted, at every member; no fault inside a member.
 */
export function violations(bed: LiveBed, expected: number): string[] {
  const found: string[] = [];
  if (bed.refused.length > 0) found.push(`members tried to send to ${bed.refused.length} addresses off loopback, e.g. ${JSON.stringify(bed.refused[0])}`);
  for (const member of bed.members) {
    const { errors } = member.channel.stats;
    const faults = errors.receive + errors.timer + errors.send;
    if (faults > 0) found.push(`${member.name}: ${faults} internal faults ${JSON.stringify(errors)}`);
    for (const sender of bed.members) {
      const got = member.delivered.get(sender.channel.id) ?? [];
      const inOrder = got.every((n, i) => n === i + 1);
      if (got.length !== expected || !inOrder) {
        found.push(`${member.name} from ${sender.name}: ${got.length} of ${expected} workload messages${inOrder ? "" : ", out of order, repeated or corrupt"}`);
      }
    }
  }
  return found;
}

/**
 * Sends `count` datagrams mutated from the members' own, to the group and to the members' unicast
 * ports. Most go out re-signed as one of `identities` made-up senders, each from a socket of its own
 * that answers its challenges (so it is admitted and its mutants reach the protocols); the rest keep
 * the id they had (a member's, from the wrong address, or a mutated one).
 *
 * Against a secured bed the fuzzer is an insider, who holds the cluster's keys: it opens the members'
 * datagrams, mutates the envelopes inside and seals the mutants as its made-up senders (so they get
 * past the seal and reach the protocols); the rest are the members' sealed datagrams mutated as they
 * are, which no seal survives.
 */
export async function fuzz(bed: LiveBed, seed: number, count: number, identities = 8): Promise<void> {
  const random = new SeededRandom(seed);
  const ids = Array.from({ length: identities }, (_, i) => ({ senderId: fakeId(seed * 1000 + i), incarnation: BigInt(1 + i) }));
  const insider = bed.security === undefined ? undefined : new InsiderKeys(bed.security, bed.cluster);
  const speakers = await Promise.all(ids.map((identity) => bed.attacker.as(identity, insider?.speakerFor(identity))));
  const memberIds = bed.members.map((m) => Uint8Array.from(hexBytes(m.channel.id)));
  const corpus = bed.corpus.slice();
  const opened = insider === undefined ? corpus : corpus.flatMap((bytes) => insider.open(bytes) ?? []);
  for (let i = 0; i < count; i++) {
    const to = random.nextInt(3) === 0 ? bed.unicast[random.nextInt(bed.unicast.length)]! : bed.group;
    if (random.nextInt(10) < 7 && opened.length > 0) {
      const original = opened[random.nextInt(opened.length)]!;
      const speaker = speakers[random.nextInt(speakers.length)]!;
      const mutant = reSign(mutate(original, random, [...memberIds, ...ids.map((id) => id.senderId)]), speaker.identity!.senderId, speaker.identity!.incarnation);
      speaker.send(speaker.seal(insider === undefined ? mutant : asSpeaker(mutant, bed.cluster, speaker.identity!), to === bed.group), to);
    } else bed.attacker.send(mutate(corpus[random.nextInt(corpus.length)]!, random, [...memberIds, ...ids.map((id) => id.senderId)]), to);
    // Let the members breathe (and challenges be answered) now and then.
    if (i % 200 === 199) await sleep(2);
  }
}

/**
 * A mutant as the speaker's own envelope: its header, then whatever followed the mutant's header (a
 * seal covers the body; mutated headers are for the unsealed fuzz and the raw mutants).
 */
function asSpeaker(mutant: Uint8Array, cluster: string, identity: { readonly senderId: Uint8Array; readonly incarnation: bigint }): Uint8Array {
  const header = encodeEnvelopeHeader(cluster, identity.senderId, Number(identity.incarnation));
  const body = mutant.subarray(Math.min(header.length, mutant.length));
  const plain = new Uint8Array(header.length + body.length);
  plain.set(header);
  plain.set(body, header.length);
  return plain;
}

function hexBytes(hex: string): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < hex.length; i += 2) bytes.push(Number.parseInt(hex.slice(i, i + 2), 16));
  return bytes;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How late a 20 ms timer fires: an event loop that froze (or crawls) shows here. */
export async function loopLag(): Promise<number> {
  const start = performance.now();
  await sleep(20);
  return performance.now() - start - 20;
}
