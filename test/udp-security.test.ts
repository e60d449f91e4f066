/**
 * Secured channels over real UDP on loopback multicast, under attack: members in Node, Bun and Deno
 * (test/runtime/secure-member.ts, each with its runtime's crypto provider) and one in this process,
 * which drives the test (a key rotation, the final "report"). Meanwhile an intruder in this process
 * hears every datagram sent to the group and sends back replays, flipped bits, truncations, forgeries
 * in a member's name (unsealed, or sealed under a guessed key id with another secret), incarnations
 * from the future and, once the old key is retired, old datagrams. Every one is refused and counted,
 * none is delivered, none leaves state behind; a latecomer holding only the retired key is heard by
 * nobody and hears nobody.
 */
import { createSocket, type Socket } from "node:dgram";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { EnvelopeSchema, FrameSchema } from "../gen/activeblaze/v1/envelope_pb.ts";
import { createUdpTransport } from "../src/adapters/node.ts";
import { nodeCrypto } from "../src/adapters/node-crypto.ts";
import { Channel } from "../src/channel/channel.ts";
import { DatagramGuard } from "../src/security/datagram-guard.ts";
import { KeyRing } from "../src/security/keyring.ts";
import { encodeBase64, securityOptionsSchema } from "../src/security/options.ts";
import { readSealed } from "../src/security/sealed-datagram.ts";
import { ClearHeaderReader, DatagramBuilder, encodeEnvelopeHeader } from "../src/wire/frames.ts";
import { freshNetwork, MemberProcess, type Runtime, trackMembers } from "./members.ts";
import type { SecureMemberConfig, SecureMemberEvent, SecureMemberResult } from "./runtime/secure-member.ts";

const MEMBER = join("test", "runtime", "secure-member.ts");
const TIMEOUT_MS = 60_000;
const running = trackMembers();

type Member = MemberProcess<SecureMemberEvent, SecureMemberConfig>;

const randomKey = () => nodeCrypto.generateIdentity().privateKey;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

/** An intruder on the LAN: hears the group, sends anything to the group and to members' ports (loopback only). */
class Intruder {
  readonly heard: Uint8Array[] = [];
  readonly sent = new Map<string, number>();
  readonly #socket: Socket;
  readonly #random = { i: 7 };
  #keep = true;

  private constructor(socket: Socket, readonly group: { host: string; port: number }) {
    this.#socket = socket;
    socket.on("message", (bytes) => {
      if (this.#keep && this.heard.length < 3_000) this.heard.push(new Uint8Array(bytes));
    });
  }

  static async open(group: { host: string; port: number }): Promise<Intruder> {
    const socket = createSocket({ type: "udp4", reuseAddr: true });
    await new Promise<void>((resolve) => socket.bind(group.port, "0.0.0.0", resolve));
    socket.addMembership(group.host, "127.0.0.1");
    socket.setMulticastInterface("127.0.0.1");
    return new Intruder(socket, group);
  }

  /** Stops recording: what was heard so far is what later attacks replay. */
  freeze(): Uint8Array[] {
    this.#keep = false;
    return this.heard.slice();
  }

  #next(bound: number): number {
    this.#random.i = (this.#random.i * 1_103_515_245 + 12_345) % 2 ** 31;
    return this.#random.i % bound;
  }

  send(kind: string, bytes: Uint8Array, to: { host: string; port: number }): void {
    if (!to.host.startsWith("127.") && to.host !== this.group.host) throw new Error(`the intruder sends only to loopback, not ${to.host}`);
    this.sent.set(kind, (this.sent.get(kind) ?? 0) + 1);
    this.#socket.send(bytes, to.port, to.host);
  }

  /** One round of attacks, each built from a datagram heard (or from `pool`), to the group or to one of `ports`. */
  attack(ports: readonly number[], cluster: string, pool: readonly Uint8Array[] = this.heard, kinds = ["replay", "flip", "truncate", "wrong-key", "unsealed", "future"]): void {
    if (pool.length === 0) return;
    for (const kind of kinds) {
      const original = pool[this.#next(pool.length)]!;
      const to = this.#next(2) === 0 || ports.length === 0 ? this.group : { host: "127.0.0.1", port: ports[this.#next(ports.length)]! };
      const bytes = this.#mutate(kind, original, cluster);
      if (bytes !== undefined) this.send(kind, bytes, to);
    }
  }

  #mutate(kind: string, original: Uint8Array, cluster: string): Uint8Array | undefined {
    switch (kind) {
      case "replay":
        return original;
      case "flip": {
        const bytes = original.slice();
        bytes[this.#next(bytes.length)]! ^= 1 << this.#next(8);
        return bytes;
      }
      case "truncate":
        return original.subarray(0, this.#next(original.length));
      default: {
        const read = readSealed(original, { cluster }, new ClearHeaderReader(cluster));
        if (!read.ok) return undefined;
        const { senderId, incarnation } = read.sealed;
        if (kind === "future") {
          const envelope = fromBinary(EnvelopeSchema, original);
          envelope.incarnation = BigInt(Date.now() + 3_600_000);
          return toBinary(EnvelopeSchema, envelope);
        }
        const header = encodeEnvelopeHeader(cluster, senderId, incarnation);
        const builder = new DatagramBuilder(header);
        builder.addFrame(toBinary(FrameSchema, create(FrameSchema, { kind: { case: "data", value: { seq: BigInt(1 + this.#next(100_000)), addressing: 1, destination: "data", payload: new Uint8Array(8) } } })));
        const plain = builder.finish()!;
        if (kind === "unsealed") return plain;
        // Sealed in the member's name under key id 1 or 2, with a secret of the intruder's own.
        const options = securityOptionsSchema.parse({ keys: [{ id: 1 + this.#next(2), secret: randomKey() }] });
        const guard = new DatagramGuard(options, new KeyRing(options.keys, options.primary), nodeCrypto, { cluster, memberId: senderId, maxDatagramBytes: 65_507 }, { refused: () => undefined, fault: () => undefined, own: () => undefined });
        guard.start(incarnation);
        let sealed: Uint8Array | undefined;
        guard.seal(plain, header.length, "group", (bytes) => (sealed = bytes));
        return sealed;
      }
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}

function spawn(runtime: Runtime, config: SecureMemberConfig): Member {
  return new MemberProcess<SecureMemberEvent, SecureMemberConfig>(runtime, MEMBER, config, running);
}

const resultOf = async (member: Member): Promise<SecureMemberResult> =>
  ((await member.waitFor((e) => e.type === "result", 20_000, "its result")) as Extract<SecureMemberEvent, { type: "result" }>).result;

describe("secured channels over real UDP, under attack", () => {
  it(
    "Node, Bun and Deno members: forged, replayed, tampered, cut and wrongly keyed datagrams refused and counted, none delivered, no state; a key rotation mid-stream loses nothing; a latecomer with the retired key is refused",
    async () => {
      const network = freshNetwork("udp-security");
      const group = { host: network.group, port: network.port };
      const key1 = { id: 1, secret: encodeBase64(randomKey()) };
      const key2 = { id: 2, secret: encodeBase64(randomKey()) };
      const security = { keys: [key1, key2], mode: "encrypt" as const };
      const runtimes: Runtime[] = ["node", "bun", "deno"];
      const messages = 2_000;

      const conductor = new Channel({
        cluster: network.cluster,
        name: "conductor",
        network: { type: "multicast", group: network.group, port: network.port },
        transport: createUdpTransport,
        heartbeatIntervalMs: 200,
        security: { ...security, provider: nodeCrypto },
      });
      cleanup.push(() => conductor.shutDown());
      conductor.on("error", () => undefined);
      const done = new Set<string>();
      conductor.onTopic("done", (message) => done.add(new TextDecoder().decode(message.payload)));
      await conductor.start();
      const intruder = await Intruder.open(group);
      cleanup.push(() => intruder.close());

      const members = runtimes.map((runtime, index) =>
        spawn(runtime, { name: `${runtime}-${index}`, index, senders: runtimes.length, peers: runtimes.length, messages, ...network, security, timeoutMs: TIMEOUT_MS }),
      );
      const ready = await Promise.all(members.map((m) => m.waitFor((e) => e.type === "ready", 30_000, "ready") as Promise<Extract<SecureMemberEvent, { type: "ready" }>>));
      expect(ready.map((r) => r.provider)).toEqual(["node:crypto", "node:crypto", "WebCrypto"]);
      const ports = [...ready.map((r) => r.port), conductor.localAddress.port];

      // Attacks all along; halfway through the exchange, the key rotation.
      const attacking = setInterval(() => intruder.attack(ports, network.cluster), 5);
      cleanup.push(() => clearInterval(attacking));
      await conductor.waitForPeers(runtimes.length, { timeoutMs: 20_000 });
      await sleep(500);
      // Mid-stream: nobody has everything yet.
      expect(members.flatMap((m) => m.of("complete"))).toEqual([]);
      const rotation = await conductor.security!.rotateKey(2, { retire: true, graceMs: 500, timeoutMs: 20_000 });
      expect(rotation).toMatchObject({ keyId: 2, previous: 1, retired: 1 });
      expect(rotation.members).toHaveLength(runtimes.length);
      await Promise.all(members.map((m) => m.waitFor((e) => e.type === "complete", 40_000, "every message")));
      // On a busy machine the interval runs less often: the attack goes on until each kind was sent 100 times.
      const kinds = ["replay", "flip", "truncate", "wrong-key", "unsealed", "future"];
      for (const until = Date.now() + 10_000; Date.now() < until && kinds.some((kind) => (intruder.sent.get(kind) ?? 0) <= 100); ) await sleep(5);
      clearInterval(attacking);

      // Old datagrams under the retired key, replayed; a latecomer that holds only the retired key.
      const old = intruder.freeze();
      for (let round = 0; round < 40; round++) {
        intruder.attack(ports, network.cluster, old, ["replay"]);
        await sleep(2);
      }
      const latecomer = spawn("deno", { name: "latecomer", index: -1, senders: runtimes.length, peers: 0, messages: 0, ...network, security: { keys: [key1], mode: "encrypt" }, lifetimeMs: 3_000, timeoutMs: 20_000 });
      const late = await resultOf(latecomer);
      await conductor.broadcast("control", new TextEncoder().encode("report"));
      const results = await Promise.all(members.map(resultOf));

      const context = `sent by the intruder: ${JSON.stringify(Object.fromEntries(intruder.sent))}\n${JSON.stringify(results, null, 1)}`;
      for (const result of results) {
        const others = Object.fromEntries(Object.keys(result.received).map((sender) => [sender, messages]));
        expect({ received: result.received, wrong: result.wrong, faults: result.faults }, context).toEqual({ received: others, wrong: 0, faults: 0 });
        // Every member and the conductor are its peers; nothing else is remembered: no pending sender, no other tracked sender.
        expect({ peers: result.peers, pending: result.pendingSenders, tracked: result.trackedSenders }, context).toEqual({ peers: 3, pending: 0, tracked: 3 });
        expect({ primary: result.primaryKey, keys: result.keys }, context).toEqual({ primary: 2, keys: [2] });
        for (const reason of ["REPLAYED", "AUTH_FAILED", "UNSEALED", "FUTURE_INCARNATION", "UNKNOWN_KEY"]) expect(result.dropped[reason] ?? 0, `${result.name} ${reason}\n${context}`).toBeGreaterThan(0);
      }
      expect(done.size).toBe(runtimes.length);
      for (const kind of kinds) expect(intruder.sent.get(kind) ?? 0, kind).toBeGreaterThan(100);
      expect(late.peers, JSON.stringify(late)).toBe(0);
      expect(late.dropped["UNKNOWN_KEY"] ?? 0).toBeGreaterThan(0);
      const conductorStats = conductor.stats;
      expect(conductorStats.network.pendingSenders).toBe(0);
      expect(conductorStats.network.security?.senders).toBe(3);
      expect(conductorStats.errors.receive + conductorStats.errors.timer + conductorStats.errors.send).toBe(0);
    },
    120_000,
  );

  it(
    "insider mode across Node, Bun and Deno: a member that holds the cluster key cannot speak as another, nor at all unless trusted",
    async () => {
      const network = freshNetwork("udp-insider");
      const group = { host: network.group, port: network.port };
      const key = { id: 1, secret: encodeBase64(randomKey()) };
      const runtimes: Runtime[] = ["node", "bun", "deno"];
      const identities = [...runtimes, "conductor"].map(() => nodeCrypto.generateIdentity());
      const trusted = identities.map((identity) => encodeBase64(identity.publicKey));
      const asOption = (identity: { publicKey: Uint8Array; privateKey: Uint8Array }) => ({ publicKey: encodeBase64(identity.publicKey), privateKey: encodeBase64(identity.privateKey) });
      const messages = 200;

      const conductor = new Channel({
        cluster: network.cluster,
        name: "conductor",
        network: { type: "multicast", group: network.group, port: network.port },
        transport: createUdpTransport,
        heartbeatIntervalMs: 200,
        security: { keys: [key], mode: "authenticate", identity: identities[3]!, trustedMembers: trusted, provider: nodeCrypto },
      });
      cleanup.push(() => conductor.shutDown());
      conductor.on("error", () => undefined);
      await conductor.start();
      const intruder = await Intruder.open(group);
      cleanup.push(() => intruder.close());
      const members = runtimes.map((runtime, index) =>
        spawn(runtime, {
          name: `${runtime}-${index}`,
          index,
          senders: runtimes.length,
          peers: runtimes.length,
          messages,
          ...network,
          security: { keys: [key], mode: "authenticate", identity: asOption(identities[index]!), trustedMembers: trusted },
          timeoutMs: TIMEOUT_MS,
        }),
      );
      const ready = await Promise.all(members.map((m) => m.waitFor((e) => e.type === "ready", 30_000, "ready") as Promise<Extract<SecureMemberEvent, { type: "ready" }>>));
      const ports = [...ready.map((r) => r.port), conductor.localAddress.port];
      await conductor.waitForPeers(runtimes.length, { timeoutMs: 20_000 });

      // An insider: it holds the cluster key (and reads everything, in authenticate mode), but is no trusted member.
      const insider = nodeCrypto.generateIdentity();
      const victim = ready[0]!;
      const speakAs = (signer: { publicKey: Uint8Array; privateKey: Uint8Array }, senderId: Uint8Array, signWith = signer) => {
        const options = securityOptionsSchema.parse({ keys: [key], mode: "authenticate", identity: { publicKey: signer.publicKey, privateKey: signWith.privateKey } });
        const guard = new DatagramGuard(options, new KeyRing(options.keys, options.primary), nodeCrypto, { cluster: network.cluster, memberId: senderId, maxDatagramBytes: 65_507 }, { refused: () => undefined, fault: () => undefined, own: () => undefined });
        const incarnation = Date.now();
        guard.start(incarnation);
        const header = encodeEnvelopeHeader(network.cluster, senderId, incarnation);
        const builder = new DatagramBuilder(header);
        builder.addFrame(toBinary(FrameSchema, create(FrameSchema, { kind: { case: "data", value: { seq: 1n, addressing: 1, destination: "data", payload: new Uint8Array(8) } } })));
        let sealed: Uint8Array | undefined;
        guard.seal(builder.finish()!, header.length, "group", (bytes) => (sealed = bytes));
        return sealed!;
      };
      const victimId = Uint8Array.from(Buffer.from(victim.id, "hex"));
      const victimKey = identities[0]!;
      // A second victim: the first drops what names it as the sender as its own, so it meets this one's forgeries.
      const secondId = Uint8Array.from(Buffer.from(ready[1]!.id, "hex"));
      const attack = () => {
        intruder.send("own-key-as-victim", speakAs(insider, victimId), group);
        intruder.send("victim-key-signed-by-insider", speakAs(victimKey, victimId, insider), group);
        intruder.send("second-victim-key-signed-by-insider", speakAs(identities[1]!, secondId, insider), group);
        intruder.send("as-itself-untrusted", speakAs(insider, insider.publicKey.slice(0, 16)), group);
        intruder.attack(ports, network.cluster, intruder.heard, ["replay", "flip"]);
      };
      const attacking = setInterval(attack, 5);
      cleanup.push(() => clearInterval(attacking));
      await Promise.all(members.map((m) => m.waitFor((e) => e.type === "complete", 40_000, "every message")));
      clearInterval(attacking);
      // A fast stream can end after a few rounds of the attack: some more, so that every member meets each kind.
      for (let round = 0; round < 40; round++) {
        attack();
        await sleep(2);
      }
      await conductor.broadcast("control", new TextEncoder().encode("report"));
      const results = await Promise.all(members.map(resultOf));

      const context = `sent by the intruder: ${JSON.stringify(Object.fromEntries(intruder.sent))}\n${JSON.stringify(results, null, 1)}`;
      for (const result of results) {
        const others = Object.fromEntries(Object.keys(result.received).map((sender) => [sender, messages]));
        expect({ received: result.received, wrong: result.wrong, faults: result.faults }, context).toEqual({ received: others, wrong: 0, faults: 0 });
        expect({ peers: result.peers, pending: result.pendingSenders, tracked: result.trackedSenders }, context).toEqual({ peers: 3, pending: 0, tracked: 3 });
        for (const reason of ["UNTRUSTED_SIGNER", "AUTH_FAILED", "REPLAYED"]) expect(result.dropped[reason] ?? 0, `${result.name} ${reason}\n${context}`).toBeGreaterThan(0);
      }
    },
    120_000,
  );
});

describe("large sealed datagrams over real UDP", () => {
  it("a burst of 1 KiB messages goes out in large sealed datagrams, sent in parts the socket gathers; all delivered in order", async () => {
    const network = freshNetwork("udp-parts");
    const secret = encodeBase64(randomKey());
    const partsSent: number[] = [];
    // node:dgram's transport, its gathered sends counted (the datagram's length, in parts).
    const counted = async (options?: Parameters<typeof createUdpTransport>[0]) => {
      const transport = await createUdpTransport(options);
      const sendParts = transport.sendParts!.bind(transport);
      return Object.assign(transport, {
        sendParts(parts: readonly Uint8Array[], to: { host: string; port: number }) {
          partsSent.push(parts.reduce((sum, part) => sum + part.length, 0));
          sendParts(parts, to);
        },
      });
    };
    const open = (name: string) => {
      const channel = new Channel({
        cluster: network.cluster,
        name,
        network: { type: "multicast", group: network.group, port: network.port, interface: "127.0.0.1" },
        reliability: "nack",
        loopback: false,
        transport: counted,
        security: { keys: [{ id: 1, secret }] },
      });
      cleanup.push(() => channel.shutDown());
      return channel;
    };
    const sender = open("sender");
    const receiver = open("receiver");
    const received: number[] = [];
    receiver.onTopic("bulk", (message) => received.push(new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0)));
    await Promise.all([sender.start(), receiver.start()]);
    await receiver.waitForPeers(1, { timeoutMs: 10_000 });
    const count = 200;
    for (let i = 0; i < count; i++) {
      const payload = new Uint8Array(1024).fill(i & 0xff);
      new DataView(payload.buffer).setUint32(0, i);
      void sender.broadcast("bulk", payload);
    }
    for (let waited = 0; received.length < count && waited < 10_000; waited += 20) await sleep(20);
    expect(received).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(partsSent.length).toBeGreaterThan(0);
    expect(Math.max(...partsSent)).toBeGreaterThan(32_000);
    expect(receiver.stats.network.security).toMatchObject({ opened: expect.any(Number) });
    expect(Object.values(receiver.stats.dropped).reduce((sum, n) => sum + n, 0)).toBe(0);
  }, 30_000);
});
