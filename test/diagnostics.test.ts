/**
 * Diagnostics on the simulated network: a probe asks a cluster's members to describe themselves; they
 * answer only once the asker answered their admission challenge, never make it a peer, answer a few
 * requests a second at most, and none when diagnostics are off; a peer may ask too; a reply too large
 * for one datagram is cut short and says so. A secured cluster answers a probe that holds its key,
 * sealed, and refuses (counting) one without it or with another.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { EnvelopeSchema } from "../gen/activeblaze/v1/envelope_pb.ts";
import { PongSchema } from "../gen/activeblaze/v1/membership_pb.ts";
import { Channel } from "../src/channel/channel.ts";
import { ClusterChannel } from "../src/cluster/cluster-channel.ts";
import { nodeCrypto } from "../src/adapters/node-crypto.ts";
import { Prober, probeCluster } from "../src/diagnostics/probe.ts";
import { BlazeMessage } from "../src/message/blaze-message.ts";
import type { SecurityOptions } from "../src/security/options.ts";
import { SimulatedNetwork } from "../src/transport/simulated-network.ts";
import type { Address, Transport } from "../src/transport/transport.ts";
import { fakeId, forge, type FrameKind } from "./hostile/forge.ts";
import { settleInVirtualTime } from "./support/virtual-time.ts";

const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;
const GROUP: Address = { host: "239.255.42.99", port: 45_588 };

/** Runs virtual time until the promise settles. */
async function settle<T>(net: SimulatedNetwork, promise: Promise<T>, maxMs = 20_000): Promise<T> {
  return settleInVirtualTime(net.clock, promise, maxMs);
}

const closing: Array<{ shutDown(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(closing.splice(0).map((member) => member.shutDown()));
});

async function cluster(net: SimulatedNetwork, count: number, options: (i: number) => object = () => ({})): Promise<ClusterChannel[]> {
  const members = Array.from({ length: count }, (_, i) => {
    const member = new ClusterChannel({
      name: `c${i}`,
      cluster: "probed",
      transport: net.transportFactory(`h${i}`),
      clock: net.clock,
      random: net.random.fork(`c${i}`),
      incarnation: 1,
      groups: ["g"],
      weight: i === 1 ? 10 : 0,
      ...TIMING,
      ...options(i),
    });
    closing.push(member);
    return member;
  });
  await settle(net, Promise.all(members.map((member) => member.join())));
  return members;
}

/** A raw socket on the simulated network: what arrives, decoded, and a way to send. */
async function raw(net: SimulatedNetwork, host: string): Promise<{ transport: Transport; received: Array<{ from: Address; kinds: string[]; bytes: number }> }> {
  const transport = await net.transportFactory(host)({});
  const received: Array<{ from: Address; kinds: string[]; bytes: number }> = [];
  transport.onReceive((bytes, from) => {
    const body = fromBinary(EnvelopeSchema, bytes).body;
    const kinds = body.case === "bundle" ? body.value.frames.map((f) => f.kind.case ?? "") : [body.case ?? ""];
    received.push({ from, kinds, bytes: bytes.length });
  });
  return { transport, received };
}

describe("diagnostics", () => {
  it("a probe gets every member's report — views, coordinator, peers, counters, the map, its locks and entries, recent events — and is no peer", async () => {
    const net = new SimulatedNetwork({ seed: 11 });
    const members = await cluster(net, 3);
    const [a, b, c] = members as [ClusterChannel, ClusterChannel, ClusterChannel];
    await settle(net, a.map.put("color", new BlazeMessage("blue")));
    const lock = await settle(net, c.map.lock("printer"));
    const peerUps = members.map(() => 0);
    members.forEach((member, i) => member.on("peerUp", () => peerUps[i]!++));

    const prober = await settle(net, Prober.open({ cluster: "probed", transport: net.transportFactory("probe"), clock: net.clock, random: net.random.fork("probe"), includeEntries: true }));
    const result = await settle(net, prober.ask());
    await prober.close();

    expect(result.members.map((m) => m.name)).toEqual(["c0", "c1", "c2"]);
    expect(result.silent).toEqual([]);
    for (const report of result.members) {
      const member = members.find((m) => m.id === report.id)!;
      expect(report).toMatchObject({ cluster: "probed", incarnation: 1, reliability: "nack", state: "started", truncated: false, peerCount: 2 });
      expect(report.software).toMatch(/^node \d+\.\d+\.\d+, activeblaze \d+\.\d+\.\d+/);
      expect(report.address).toEqual(member.localAddress);
      expect(report.groups).toEqual([
        {
          group: "g",
          view: { counter: member.getView("g")!.id.counter, installer: member.getView("g")!.id.installer },
          members: member.getMembers("g").map((m) => ({ id: m.id, incarnation: 1, name: m.name, weight: m.weight, address: m.address })),
          coordinator: b.id,
        },
      ]);
      expect(report.peers.map((p) => p.id).sort()).toEqual(members.filter((m) => m !== member).map((m) => m.id).sort());
      expect(report.totals["datagrams.received"]).toBeGreaterThan(0);
      expect(report.totals["errors/listener"]).toBe(0);
      expect(report.levels["peers"]).toBe(2);
      expect(report.stateMap).toMatchObject({ group: "g", master: b.id, ready: true, entryCount: 1, lockCount: 1 });
      expect(report.stateMap!.locks).toEqual([{ key: "printer", holder: c.id, fencingToken: lock.fencingToken, leaseMs: 0 }]);
      expect(report.stateMap!.entries.map((e) => [e.key, e.owner, e.preview])).toContainEqual(["color", a.id, 'BlazeMessage { text: "blue" }']);
      expect(report.events.map((e) => e.kind)).toContain("join");
    }
    // The probe proved its address to each member and was answered, but no member took it for a peer.
    expect(peerUps).toEqual([0, 0, 0]);
    for (const member of members) {
      expect(member.peers).toHaveLength(2);
      expect(member.stats.network.diagnosticsAnswered).toBeGreaterThanOrEqual(1);
    }
  });

  it("answers nothing but a challenge to an asker that does not answer it (a spoofed source)", async () => {
    const net = new SimulatedNetwork({ seed: 12 });
    const [a] = await cluster(net, 1);
    const spoofer = await raw(net, "spoofer");
    const ask = forge({ cluster: "probed", senderId: fakeId(1), incarnation: 1n }, [{ case: "diagnosticsRequest", value: { nonce: 7n, includeEntries: true } }]);
    for (let i = 0; i < 5; i++) {
      spoofer.transport.send(ask, GROUP);
      net.clock.runFor(50);
    }
    expect(spoofer.received.length).toBeGreaterThan(0);
    for (const datagram of spoofer.received) {
      expect(datagram.kinds).toEqual(["ping"]);
      expect(datagram.bytes).toBeLessThanOrEqual(ask.length + 4);
    }
    expect(a!.stats.network.diagnosticsAnswered).toBe(0);
    await spoofer.transport.close();
  });

  it("answers a peer that asks, and counts requests it refuses: diagnostics off, or too many at once", async () => {
    const net = new SimulatedNetwork({ seed: 13 });
    const quiet = new Channel({ name: "quiet", cluster: "probed", transport: net.transportFactory("q"), clock: net.clock, random: net.random.fork("q"), diagnostics: false });
    const open = new Channel({ name: "open", cluster: "probed", transport: net.transportFactory("o"), clock: net.clock, random: net.random.fork("o") });
    closing.push(quiet, open);
    await settle(net, Promise.all([quiet.start(), open.start()]));
    const result = await settle(net, probeCluster({ cluster: "probed", transport: net.transportFactory("probe"), clock: net.clock, random: net.random.fork("p") }));
    expect(result.members.map((m) => m.name)).toEqual(["open"]);
    expect(result.silent.map((s) => s.id)).toEqual([quiet.id]);
    expect(quiet.stats.network.diagnosticsRefused).toBeGreaterThan(0);

    // A peer: it says something first (a heartbeat), answers the challenge, and then asks.
    const peer = await raw(net, "peer");
    const identity = { cluster: "probed", senderId: fakeId(2), incarnation: 1n };
    const send = (frames: FrameKind[]) => peer.transport.send(forge(identity, frames), open.localAddress);
    peer.transport.onReceive((bytes, from) => {
      const body = fromBinary(EnvelopeSchema, bytes).body;
      const frames = body.case === "bundle" ? body.value.frames.map((f) => f.kind) : [body];
      for (const frame of frames) {
        if (frame.case === "ping" && frame.value.group === "") peer.transport.send(forge(identity, [{ case: "pong", value: create(PongSchema, { nonce: frame.value.nonce }) }]), from);
      }
      peer.received.push({ from, kinds: frames.map((f) => f.case ?? ""), bytes: bytes.length });
    });
    send([{ case: "heartbeat", value: { intervalMs: 100 } }]);
    net.clock.runFor(20);
    expect(open.peers.map((p) => p.id)).toContain(Buffer.from(identity.senderId).toString("hex"));
    // More requests at once than a member answers: a burst of 20, then 10 a second.
    for (let i = 0; i < 30; i++) send([{ case: "diagnosticsRequest", value: { nonce: BigInt(100 + i) } }]);
    net.clock.runFor(20);
    const replies = peer.received.filter((d) => d.kinds.includes("diagnosticsReply"));
    expect(replies.length).toBeGreaterThanOrEqual(19);
    expect(replies.length).toBeLessThanOrEqual(21);
    expect(open.stats.network.diagnosticsRefused).toBe(30 - replies.length);
    await peer.transport.close();
  });

  it("cuts a report too large for one datagram short, and says so", async () => {
    const net = new SimulatedNetwork({ seed: 14 });
    const [a, b] = (await cluster(net, 2, () => ({ maxDatagramBytes: 1_024 }))) as [ClusterChannel, ClusterChannel];
    // One batch travels in one datagram (1 KiB here): the entries go in batches of 10.
    for (let at = 0; at < 200; at += 10) {
      await settle(net, a.map.putAll(Array.from({ length: 10 }, (_, i) => [`key-${at + i}`, new BlazeMessage(`value number ${at + i}`)] as const)));
    }
    const result = await settle(net, probeCluster({ cluster: "probed", transport: net.transportFactory("probe"), clock: net.clock, random: net.random.fork("p"), includeEntries: true }));
    for (const report of result.members) {
      expect(report.truncated).toBe(true);
      expect(report.stateMap!.entryCount).toBe(200);
      expect(report.stateMap!.entries.length).toBeGreaterThan(0);
      expect(report.stateMap!.entries.length).toBeLessThan(200);
    }
    expect(result.members.map((m) => m.id).sort()).toEqual([a.id, b.id].sort());
  });

  it("a secured cluster answers a probe holding its key, sealed, and refuses one in clear or under another key, counting it", async () => {
    const net = new SimulatedNetwork({ seed: 15 });
    const K1 = { id: 1, secret: new Uint8Array(32).fill(0x11) };
    const members = await cluster(net, 3, () => ({ security: { keys: [K1], provider: nodeCrypto } }));
    const probe = (security: SecurityOptions | undefined, name: string) =>
      settle(net, probeCluster({ cluster: "probed", transport: net.transportFactory(name), clock: net.clock, random: net.random.fork(name), ...(security === undefined ? {} : { security }) }));
    const dropped = () => members.map((m) => m.stats.dropped);
    const before = dropped();

    const keyed = await probe({ keys: [K1], provider: nodeCrypto }, "keyed");
    expect(keyed.members.map((m) => m.name)).toEqual(["c0", "c1", "c2"]);
    expect(keyed.warnings).toEqual([]);
    for (const report of keyed.members) expect(report.groups[0]!.members).toHaveLength(3);
    expect(dropped()).toEqual(before);
    // It proved its address and was answered, sealed, but is no peer; each member holds one more sender's windows.
    for (const member of members) {
      expect(member.peers).toHaveLength(2);
      expect(member.stats.network.diagnosticsAnswered).toBeGreaterThanOrEqual(1);
      expect(member.stats.network.security).toMatchObject({ senders: 3 });
    }

    const refusals = [
      { security: undefined, reason: "UNSEALED", warning: "no answer: the cluster may need a key" },
      { security: { keys: [{ id: 1, secret: new Uint8Array(32).fill(0x22) }], provider: nodeCrypto }, reason: "AUTH_FAILED", warning: "no answer: the cluster may hold another key" },
      { security: { keys: [{ id: 2, secret: K1.secret }], provider: nodeCrypto }, reason: "UNKNOWN_KEY", warning: "sealed under a key it does not hold; this probe seals with key 2" },
      { security: { keys: [K1], mode: "authenticate", provider: nodeCrypto }, reason: "WRONG_MODE", warning: "no answer: the cluster may hold another key" },
    ] as const;
    for (const [i, { security, reason, warning }] of refusals.entries()) {
      const answered = members.map((m) => m.stats.network.diagnosticsAnswered);
      const counted = dropped().map((d) => d[reason]);
      const result = await probe(security, `refused-${i}`);
      expect(result.members, reason).toEqual([]);
      expect(result.warnings.join("\n")).toContain(warning);
      // Each member refused every request (three a round, to the group), counted them, and answered nothing.
      expect(dropped().map((d, j) => d[reason] - counted[j]!)).toEqual([3, 3, 3]);
      expect(members.map((m) => m.stats.network.diagnosticsAnswered)).toEqual(answered);
      for (const member of members) expect(member.stats.network.security).toMatchObject({ senders: 3 });
    }
  });

  it("insider mode: a probe with an identity of its own that the members trust is answered; an untrusted one is refused, a mismatched one fails at open", async () => {
    const net = new SimulatedNetwork({ seed: 16 });
    const K1 = { id: 1, secret: new Uint8Array(32).fill(0x11) };
    const identities = Array.from({ length: 4 }, () => nodeCrypto.generateIdentity());
    const trustedMembers = identities.map((identity) => identity.publicKey);
    const members = await cluster(net, 3, (i) => ({ security: { keys: [K1], identity: identities[i]!, trustedMembers, provider: nodeCrypto } }));
    const probe = (identity: { publicKey: Uint8Array; privateKey: Uint8Array }, name: string) =>
      settle(net, probeCluster({ cluster: "probed", transport: net.transportFactory(name), clock: net.clock, random: net.random.fork(name), security: { keys: [K1], identity, provider: nodeCrypto } }));

    const trusted = await probe(identities[3]!, "trusted");
    expect(trusted.members.map((m) => m.name)).toEqual(["c0", "c1", "c2"]);

    const untrusted = await probe(nodeCrypto.generateIdentity(), "untrusted");
    expect(untrusted.members).toEqual([]);
    expect(members.map((m) => m.stats.dropped.UNTRUSTED_SIGNER)).toEqual([3, 3, 3]);

    const mismatched = { publicKey: identities[3]!.publicKey, privateKey: identities[0]!.privateKey };
    await expect(probe(mismatched, "mismatched")).rejects.toMatchObject({ code: "INVALID_OPTION", message: expect.stringContaining('"probe.security.identity.publicKey"') });
  });

  it("under loss, duplication and reordering (8 seeds), a keyed probe is answered by members only and becomes no peer; a keyless one is never answered", async () => {
    const K1 = { id: 1, secret: new Uint8Array(32).fill(0x11) };
    for (let seed = 100; seed < 108; seed++) {
      const net = new SimulatedNetwork({ seed });
      const members = await cluster(net, 3, () => ({ security: { keys: [K1], provider: nodeCrypto } }));
      const errors: string[] = [];
      const peerUps: string[] = [];
      for (const member of members) {
        member.on("error", (event) => errors.push(`${member.name}: ${event.error.code} ${event.error.message}`));
        member.on("peerUp", ({ peer }) => peerUps.push(peer.id));
      }
      net.setDefaultLink({ loss: 0.15, duplicate: 0.1, reorder: 0.1 });
      const ids = new Set(members.map((m) => m.id));
      const open = (name: string, security: SecurityOptions | undefined) =>
        settle(net, Prober.open({ cluster: "probed", transport: net.transportFactory(name), clock: net.clock, random: net.random.fork(name), ...(security === undefined ? {} : { security }) }));

      const keyed = await open("keyed", { keys: [K1], provider: nodeCrypto });
      const answered = new Set<string>();
      for (let round = 0; round < 6 && answered.size < 3; round++) {
        const result = await settle(net, keyed.ask());
        for (const report of result.members) {
          expect(ids.has(report.id), `seed ${seed}: an answer from ${report.id}`).toBe(true);
          answered.add(report.id);
        }
      }
      await keyed.close();
      expect(answered.size, `seed ${seed}`).toBe(3);

      const answeredBefore = members.map((m) => m.stats.network.diagnosticsAnswered);
      const keyless = await open("keyless", undefined);
      for (let round = 0; round < 3; round++) expect((await settle(net, keyless.ask())).members, `seed ${seed}`).toEqual([]);
      await keyless.close();
      expect(members.map((m) => m.stats.network.diagnosticsAnswered), `seed ${seed}`).toEqual(answeredBefore);
      expect(members.map((m) => m.stats.dropped.UNSEALED).every((n) => n > 0), `seed ${seed}`).toBe(true);

      expect(peerUps, `seed ${seed}`).toEqual([]);
      expect(errors, `seed ${seed}`).toEqual([]);
      await Promise.all(closing.splice(0).map((member) => member.shutDown()));
    }
  }, 60_000);
});
