import { create, toBinary } from "@bufbuild/protobuf";
import { FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { nodeCrypto } from "../../src/adapters/node-crypto.ts";
import { Channel } from "../../src/channel/channel.ts";
import type { KeyRotationResult } from "../../src/security/key-rotation.ts";
import { DatagramGuard } from "../../src/security/datagram-guard.ts";
import { KeyRing } from "../../src/security/keyring.ts";
import { type SecurityOptions, securityOptionsSchema } from "../../src/security/options.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import type { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import type { Address, TransportFactory } from "../../src/transport/transport.ts";
import { wrapTransports } from "../../src/transport/transport-wrapper.ts";
import { DatagramBuilder, encodeEnvelopeHeader } from "../../src/wire/frames.ts";
import { checkDelivered, decodeMessage, discoverPeers, encodeMessage, flush, lossyNetwork, recordDeliveries, startChannels } from "./sim-helpers.ts";

/**
 * One seeded run of secured reliable multicast on the simulated network, under attack: 3–5 members
 * seal every datagram (AES-256-GCM or HMAC-SHA-256, in some runs with member signatures) over links
 * with loss, duplication and reordering, while an intruder on the LAN, who hears the group and every
 * datagram the members send, replays them (to the group and to single members), flips bits, cuts them
 * short, splices headers, forges plain and wrongly keyed ones. In most runs one member rotates the key
 * mid-stream, sometimes retiring the old one. Afterwards a member with only the old key, and one with
 * another secret under the key's id, try to join.
 *
 * Invariants: every real message delivered exactly once, in order, at every member; no member accepts
 * bytes that no member sealed, or the same datagram twice; the intruder and the latecomers become no
 * peer and leave nothing behind (no pending entry, no tracked sender); after a rotation every member
 * seals with the new key, and with retire none holds the old one; no fault inside a member.
 */
export interface SecureScenarioResult {
  readonly seed: number;
  readonly members: number;
  readonly mode: "encrypt" | "authenticate";
  readonly insider: boolean;
  readonly rotated: boolean;
  readonly retired: boolean;
  readonly attacks: number;
  /** Refusals at all members, by reason. */
  readonly refused: Record<string, number>;
  readonly messages: number;
}

const TOPIC = "secure.topic";
const GROUP: Address = { host: "239.255.42.99", port: 45_588 };
const INTRUDER = "intruder";

/** A fast stable hash of bytes, to find datagrams by content. */
function hashOf(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 16_777_619);
  return `${bytes.length}:${(h >>> 0).toString(36)}`;
}

/** Datagrams by content: what the members sealed (the only bytes a member may accept). */
class DatagramSet {
  readonly #entries = new Map<string, Uint8Array[]>();

  add(bytes: Uint8Array): void {
    const key = hashOf(bytes);
    const list = this.#entries.get(key);
    if (list === undefined) this.#entries.set(key, [bytes.slice()]);
    else if (!list.some((b) => sameBytes(b, bytes))) list.push(bytes.slice());
  }

  has(bytes: Uint8Array): boolean {
    return this.#entries.get(hashOf(bytes))?.some((b) => sameBytes(b, bytes)) ?? false;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * A member's transports, watched: every datagram it sends is recorded as sealed by a member, and every
 * datagram it receives is checked — if it opened, it must be one a member sealed and the first time
 * this member opened it.
 */
function watched(factory: TransportFactory, sealed: DatagramSet, sent: Uint8Array[], channel: () => Channel | undefined, violations: string[], name: string): TransportFactory {
  const accepted = new DatagramSet();
  return wrapTransports(factory, () => ({
    beforeSend: (data) => {
      sealed.add(data);
      if (sent.length < 20_000) sent.push(data.slice());
    },
    receive: (handler) => (bytes, from) => {
      const before = channel()?.stats.network.security?.opened ?? 0;
      handler(bytes, from);
      const after = channel()?.stats.network.security?.opened ?? 0;
      if (after === before) return;
      if (!sealed.has(bytes)) violations.push(`${name} accepted bytes no member sealed (from ${from.host})`);
      else if (accepted.has(bytes)) violations.push(`${name} accepted one datagram twice (from ${from.host})`);
      accepted.add(bytes);
    },
  }));
}

/** Runs the clock in slices, letting promise continuations (a rotation's steps) run in between. */
async function runUntilAsync(net: SimulatedNetwork, done: () => boolean, maxMs: number, what: string): Promise<void> {
  const end = net.clock.now() + maxMs;
  while (!done()) {
    if (net.clock.now() >= end) throw new Error(`timed out after ${maxMs} virtual ms waiting for ${what}`);
    net.clock.runFor(10);
    await flush();
  }
}

export async function runSecureScenario(seed: number): Promise<SecureScenarioResult> {
  const random = new SeededRandom(seed).fork("secure");
  const keyRandom = random.fork("keys");
  const key1 = { id: 1, secret: keyRandom.fill(new Uint8Array(32)) };
  const key2 = { id: 2, secret: keyRandom.fill(new Uint8Array(32)) };
  const mode = random.next() < 0.5 ? "encrypt" : "authenticate";
  const insider = random.next() < 0.25;
  const loss = random.next() * 0.15;
  const net = lossyNetwork(seed, random, { loss, duplicate: 0.05, reorder: 0.1, delayMs: 3 });
  const memberCount = 3 + random.nextInt(3);
  const rotate = random.next() < 0.7;
  const retire = rotate && random.next() < 0.6;
  const key2AtStart = random.next() < 0.5;
  const identities = Array.from({ length: memberCount + 2 }, () => {
    const privateKey = keyRandom.fill(new Uint8Array(32));
    return { privateKey, publicKey: nodeCrypto.publicKeyOf(privateKey) };
  });
  const security = (i: number, keys = key2AtStart ? [key1, key2] : [key1]): SecurityOptions => ({
    keys,
    mode,
    provider: nodeCrypto,
    ...(insider ? { identity: identities[i]! } : {}),
  });

  const sealed = new DatagramSet();
  const sent: Uint8Array[] = [];
  const violations: string[] = [];
  const holder: Channel[] = [];
  const channels = await startChannels(net, memberCount, (i) => ({
    reliability: "nack",
    security: security(i),
    transport: watched(net.transportFactory(`h${i}`), sealed, sent, () => holder[i], violations, `m${i}`),
  }));
  holder.push(...channels);
  discoverPeers(net, channels);
  const ids = new Set(channels.map((c) => c.id));

  // The intruder hears the group, and everything the members send (it sniffs the LAN); its links are clean.
  const intruder = net.createTransport({ host: INTRUDER });
  intruder.joinGroup(GROUP.host);
  for (let i = 0; i < memberCount; i++) net.setLink(INTRUDER, `h${i}`, { loss: 0, duplicate: 0, reorder: 0 });
  const heard: Uint8Array[] = [];
  intruder.onReceive((bytes) => {
    if (heard.length < 5_000) heard.push(bytes.slice());
  });
  const wrongKey = outsiderSealer(mode, seed);
  const attackRandom = random.fork("attack");
  let attacks = 0;
  const beforeRotation: Uint8Array[] = [];
  const attack = () => {
    const pool = attackRandom.next() < 0.5 || heard.length === 0 ? sent : heard;
    if (pool.length === 0) return;
    const original = pool[attackRandom.nextInt(pool.length)]!;
    const to = attackRandom.next() < 0.5 ? GROUP : channels[attackRandom.nextInt(memberCount)]!.localAddress;
    let bytes: Uint8Array;
    switch (attackRandom.nextInt(7)) {
      case 0:
        bytes = original;
        break;
      case 1: {
        bytes = original.slice();
        const at = attackRandom.nextInt(bytes.length);
        bytes[at]! ^= 1 << attackRandom.nextInt(8);
        break;
      }
      case 2:
        bytes = original.subarray(0, attackRandom.nextInt(original.length));
        break;
      case 3: {
        // Another sender's clear header on this datagram's seal.
        const other = sent[attackRandom.nextInt(sent.length)]!;
        bytes = splice(other, original);
        break;
      }
      case 4:
        bytes = plainForgery(channels[attackRandom.nextInt(memberCount)]!, attackRandom.nextInt(1_000));
        break;
      case 5:
        bytes = wrongKey(channels[attackRandom.nextInt(memberCount)]!, attackRandom.nextInt(1_000));
        break;
      default:
        if (beforeRotation.length === 0) return;
        bytes = beforeRotation[attackRandom.nextInt(beforeRotation.length)]!;
    }
    attacks++;
    intruder.send(bytes, to);
  };

  // Traffic: every member sends, spread over about a second; the intruder attacks every few ms.
  const delivered = recordDeliveries(channels, TOPIC, decodeMessage);
  const sentCounts = channels.map(() => 60 + random.nextInt(140));
  const numbers = channels.map(() => 0);
  sentCounts.forEach((count, s) => {
    for (let k = 0; k < count; k++) {
      // Numbered as they go out, so the sender's order is the numbers' order.
      net.clock.setTimer(random.nextInt(1_200), () => void channels[s]!.broadcast(TOPIC, encodeMessage(s, numbers[s]!++, random.nextInt(400))));
    }
  });
  const attackUntil = net.clock.now() + 2_000;
  const scheduleAttack = () => {
    if (net.clock.now() > attackUntil) return;
    attack();
    net.clock.setTimer(1 + attackRandom.nextInt(6), scheduleAttack);
  };
  scheduleAttack();

  let rotation: KeyRotationResult | Error | undefined;
  const driver = random.nextInt(memberCount);
  if (rotate) {
    net.clock.setTimer(100 + random.nextInt(800), () => {
      beforeRotation.push(...sent.slice(-200));
      if (!key2AtStart) for (const channel of channels) channel.security!.addKey(key2);
      channels[driver]!.security!.rotateKey(2, { retire, graceMs: 200, timeoutMs: 20_000 }).then(
        (result) => (rotation = result),
        (error: Error) => (rotation = error),
      );
    });
  }
  const complete = () => channels.every((_, i) => sentCounts.every((count, s) => (delivered[i]!.get(s)?.length ?? 0) >= count));
  await runUntilAsync(net, () => complete() && (!rotate || rotation !== undefined) && net.clock.now() > attackUntil, 300_000, "every message and the rotation");
  if (rotation instanceof Error) throw new Error(`the key rotation failed: ${rotation.message}`);

  for (let i = 0; i < memberCount; i++) {
    sentCounts.forEach((count, s) => checkDelivered(i, s, count, delivered[i]!.get(s)!, new Set()));
  }
  if (rotate) {
    for (const [i, channel] of channels.entries()) {
      if (channel.security!.primaryKeyId !== 2) violations.push(`m${i} seals with key ${channel.security!.primaryKeyId} after the rotation`);
      if (retire && channel.security!.keyIds.includes(1)) violations.push(`m${i} still holds the retired key`);
    }
  }

  // Latecomers: one with the old key alone (or, without a rotation, another key entirely), one with
  // another secret under the key in use. Neither may become anyone's peer, nor leave anything behind.
  const latecomers: Channel[] = [];
  const inUse = rotate ? key2 : key1;
  for (const [index, name, keys] of [
    [memberCount, "old-key", [rotate && retire ? key1 : { id: 7, secret: keyRandom.fill(new Uint8Array(32)) }]],
    [memberCount + 1, "wrong-secret", [{ id: inUse.id, secret: keyRandom.fill(new Uint8Array(32)) }]],
  ] as const) {
    const latecomer = new Channel({
      name,
      transport: net.transportFactory(`late-${name}`),
      clock: net.clock,
      random: net.random.fork(`late-${name}`),
      incarnation: 1,
      heartbeatIntervalMs: 100,
      peerTimeoutMs: 600_000,
      security: security(index, [...keys]),
    });
    await latecomer.start();
    latecomers.push(latecomer);
  }
  const lateUntil = net.clock.now() + 3_000;
  await runUntilAsync(net, () => net.clock.now() > lateUntil, 10_000, "the latecomers' attempts");
  for (const latecomer of latecomers) {
    if (latecomer.peers.length > 0) violations.push(`latecomer ${latecomer.name} hears ${latecomer.peers.length} peers`);
  }
  for (const [i, channel] of channels.entries()) {
    const stats = channel.stats;
    const strangers = channel.peers.filter((p) => !ids.has(p.id));
    if (strangers.length > 0) violations.push(`m${i} has ${strangers.length} peers that are not members`);
    if (stats.network.pendingSenders > 0) violations.push(`m${i} holds ${stats.network.pendingSenders} pending senders`);
    if (stats.network.security!.senders > memberCount - 1) violations.push(`m${i} tracks ${stats.network.security!.senders} senders`);
    const faults = stats.errors.receive + stats.errors.timer + stats.errors.send;
    if (faults > 0) violations.push(`m${i}: ${faults} internal faults`);
  }
  if (violations.length > 0) throw new Error(`violations:\n  ${[...new Set(violations)].slice(0, 20).join("\n  ")}`);

  const refused: Record<string, number> = {};
  for (const channel of channels) {
    for (const [reason, count] of Object.entries(channel.stats.dropped)) if (count > 0) refused[reason] = (refused[reason] ?? 0) + count;
  }
  for (const channel of [...channels, ...latecomers]) await channel.shutDown();
  await intruder.close();
  return { seed, members: memberCount, mode, insider, rotated: rotate, retired: retire, attacks, refused, messages: sentCounts.reduce((a, b) => a + b, 0) };
}

/** The clear header of `header`'s datagram with the seal of `seal`'s. */
function splice(header: Uint8Array, seal: Uint8Array): Uint8Array {
  const cut = (bytes: Uint8Array) => bytes.findIndex((b, i) => b === 0x82 && bytes[i + 1] === 0x06);
  const a = cut(header);
  const b = cut(seal);
  if (a < 0 || b < 0) return seal;
  const out = new Uint8Array(a + seal.length - b);
  out.set(header.subarray(0, a));
  out.set(seal.subarray(b), a);
  return out;
}

/** A plain (unsealed) datagram in a member's name: a heartbeat claiming `n` messages. */
function plainForgery(victim: Channel, n: number): Uint8Array {
  const id = Uint8Array.from(Buffer.from(victim.id, "hex"));
  const builder = new DatagramBuilder(encodeEnvelopeHeader(victim.cluster, id, victim.incarnation));
  builder.addFrame(toBinary(FrameSchema, create(FrameSchema, { kind: { case: "heartbeat", value: { highestSeq: BigInt(n) } } })));
  return builder.finish()!;
}

/** Datagrams sealed in a member's name by an outsider who guessed the key id but not the secret. */
function outsiderSealer(mode: "encrypt" | "authenticate", seed: number): (victim: Channel, n: number) => Uint8Array {
  const secret = new SeededRandom(seed).fork("outsider").fill(new Uint8Array(32));
  return (victim, n) => {
    const options = securityOptionsSchema.parse({ keys: [{ id: 1, secret }], mode });
    const id = Uint8Array.from(Buffer.from(victim.id, "hex"));
    const guard = new DatagramGuard(options, new KeyRing(options.keys, options.primary), nodeCrypto, { cluster: victim.cluster, memberId: id, maxDatagramBytes: 65_507 }, { refused: () => undefined, fault: () => undefined, own: () => undefined });
    guard.start(victim.incarnation);
    const plain = plainForgery(victim, n);
    let out = plain;
    guard.seal(plain, encodeEnvelopeHeader(victim.cluster, id, victim.incarnation).length, "group", (bytes) => (out = bytes));
    return out;
  };
}
