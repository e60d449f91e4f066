import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { createUdpTransport } from "../src/adapters/node.ts";
import type { ClusterChannel } from "../src/index.ts";
import type { Speaker } from "./hostile/attacker.ts";
import { fakeId, forge, type FrameKind, TWO_53, U64_MAX } from "./hostile/forge.ts";
import { bedKeys, fuzz, type LiveBed, loopLag, sleep, startBed, violations, workload } from "./hostile/live.ts";
import { reSign } from "./hostile/mutate.ts";

/**
 * Hostile input against live members over loopback UDP: what one datagram, or a stream of crafted or
 * mutated ones, may not do — crash, freeze or grow a member, make it send anywhere but loopback, or
 * disturb what the real members say to each other. `npm run fuzz` runs the same beds for longer.
 */

let bed: LiveBed | undefined;
afterEach(async () => {
  await bed?.close();
  bed = undefined;
});

const memberRef = (id: Uint8Array) => ({ id, incarnation: 1n });
const fakeMember = (id: Uint8Array, host = "127.0.0.1", port = 9) => ({ id, incarnation: 1n, name: "intruder", host, port });

/** Made-up senders, each speaking from a socket of its own that answers its challenges, said hello and admitted. */
async function admitted(target: LiveBed, ids: readonly Uint8Array[]): Promise<Speaker[]> {
  const speakers = await Promise.all(ids.map((senderId) => target.attacker.as({ senderId, incarnation: 1n })));
  for (const speaker of speakers) speaker.send(forge({ cluster: target.cluster, ...speaker.identity! }, [{ case: "heartbeat", value: { highestSeq: 0n } }]));
  await sleep(100);
  return speakers;
}

function say(target: LiveBed, speaker: Speaker, frames: FrameKind[], to = target.group): void {
  speaker.send(forge({ cluster: target.cluster, ...speaker.identity! }, frames), to);
}

const heap = () => process.memoryUsage().heapUsed;

describe("hostile input against live members (loopback UDP)", () => {
  it("refuses numbers past 2^53 − 1 before any protocol sees them, and counts them", async () => {
    bed = await startBed("cluster");
    await workload(bed, 20, 1);
    const intruder = fakeId(1);
    const [speaker] = await admitted(bed, [intruder]);
    const coordinator = bed.unicast[0]!;
    say(bed, speaker!, [{ case: "heartbeat", value: { highestSeq: U64_MAX } }]);
    say(bed, speaker!, [{ case: "heartbeat", value: { highestSeq: 5n, lowestSeq: TWO_53 } }]);
    say(bed, speaker!, [{ case: "data", value: { seq: TWO_53, addressing: 1, destination: "work", payload: new Uint8Array(4) } }]);
    say(bed, speaker!, [{ case: "view", value: { group: "g", id: { coordinatorId: intruder, counter: U64_MAX }, members: [fakeMember(intruder)], coordinator: memberRef(intruder) } }]);
    say(bed, speaker!, [{ case: "discovery", value: { group: "g", member: { ...fakeMember(intruder), startTimeMs: U64_MAX } } }], coordinator);
    say(bed, speaker!, [{ case: "nack", value: { stream: 1, originId: intruder, originIncarnation: 1n, missing: [{ first: 1n, last: U64_MAX }] } }]);
    await sleep(200);
    await workload(bed, 20, 21);
    expect(violations(bed, 40)).toEqual([]);
    for (const member of bed.members) expect(member.channel.stats.dropped.INVALID_FIELD).toBeGreaterThanOrEqual(5);
  });

  it("a view counter past 2^52 is refused; a made-up view does not move the group's counter", async () => {
    bed = await startBed("cluster");
    const intruder = fakeId(2);
    const [speaker] = await admitted(bed, [intruder]);
    const before = (bed.members[0]!.channel as ClusterChannel).getView("g")!.id.counter;
    for (const counter of [2n ** 52n + 1n, TWO_53 - 1n]) {
      say(bed, speaker!, [{ case: "view", value: { group: "g", id: { coordinatorId: intruder, counter }, members: [fakeMember(intruder)], coordinator: memberRef(intruder) } }]);
    }
    await sleep(300);
    for (const member of bed.members) {
      const view = (member.channel as ClusterChannel).getView("g")!;
      expect(view.members).toHaveLength(3);
      expect(view.id.counter).toBeLessThan(before + 5);
    }
    await workload(bed, 10, 1);
    expect(violations(bed, 10)).toEqual([]);
  });

  it("a flood of made-up partitions' views makes no storm of views, and the group is itself again after", async () => {
    bed = await startBed("cluster");
    const speakers = await admitted(bed, Array.from({ length: 20 }, (_, i) => fakeId(500 + i)));
    const channel = bed.members[0]!.channel as ClusterChannel;
    let views = 0;
    channel.on("viewChange", () => views++);
    let counter = BigInt(channel.getView("g")!.id.counter);
    const started = performance.now();
    while (performance.now() - started < 2_000) {
      for (const speaker of speakers) {
        const id = speaker.identity!.senderId;
        counter += 1_000n;
        say(bed, speaker, [{ case: "view", value: { group: "g", id: { coordinatorId: id, counter }, members: [fakeMember(id)], coordinator: memberRef(id) } }]);
      }
      await sleep(5);
    }
    // A burst of ten, then twenty a second at most.
    expect(views).toBeLessThanOrEqual(10 + 2 * 20 + 5);
    // The made-up members never answer the group's pings: they are removed.
    await sleep(3_000);
    for (const member of bed.members) expect((member.channel as ClusterChannel).getView("g")!.members).toHaveLength(3);
    await workload(bed, 10, 1);
    expect(violations(bed, 10)).toEqual([]);
  });

  it("a Join naming another address is answered at its source, and nothing is sent off loopback", async () => {
    bed = await startBed("cluster");
    const intruder = fakeId(3);
    const [speaker] = await admitted(bed, [intruder]);
    const coordinator = bed.members.find((m) => (m.channel as ClusterChannel).isCoordinator("g"))!;
    say(bed, speaker!, [{ case: "join", value: { group: "g", member: fakeMember(intruder, "10.9.9.9", 9999) } }], coordinator.channel.localAddress);
    await sleep(300);
    const joined = (coordinator.channel as ClusterChannel).getMembers("g").find((m) => m.name === "intruder");
    // It answers challenges as a member would, so it is let in — at the address it spoke from.
    expect(joined?.address.host).toBe("127.0.0.1");
    expect(joined?.address.port).not.toBe(9999);
    expect(bed.refused).toEqual([]);
  });

  it("one datagram from a made-up sender creates no peer and gets at most a challenge of about its own size", async () => {
    bed = await startBed("nack");
    const replies: number[] = [];
    const probe = await createUdpTransport({ bindAddress: "127.0.0.1", port: 0 });
    probe.onReceive((bytes) => replies.push(bytes.length));
    const datagram = forge({ cluster: bed.cluster, senderId: fakeId(4), incarnation: 1n }, [{ case: "heartbeat", value: { highestSeq: 1_000n } }]);
    probe.send(datagram, bed.group);
    await sleep(200);
    await probe.close();
    // One challenge from each member: our header and a nonce, a few bytes more than the smallest datagram.
    expect(replies).toHaveLength(3);
    for (const bytes of replies) expect(bytes).toBeLessThanOrEqual(datagram.length + 16);
    for (const member of bed.members) {
      expect(member.channel.peers).toHaveLength(2);
      expect(member.channel.stats.network.pendingSenders).toBe(1);
    }
  });

  it("2,000 made-up senders that never answer cost a bounded table; the members carry on", async () => {
    bed = await startBed("cluster");
    const before = heap();
    for (let i = 0; i < 2_000; i++) {
      bed.attacker.send(forge({ cluster: bed.cluster, senderId: fakeId(10_000 + i), incarnation: 1n }, [{ case: "heartbeat", value: { highestSeq: 5n } }, { case: "data", value: { seq: BigInt(i + 1), addressing: 1, destination: "work", payload: new Uint8Array(1_000) } }]));
      if (i % 100 === 99) await sleep(2);
    }
    await workload(bed, 20, 1);
    expect(violations(bed, 20)).toEqual([]);
    for (const member of bed.members) {
      expect(member.channel.peers).toHaveLength(2);
      expect(member.channel.stats.network.pendingSenders).toBeLessThanOrEqual(256);
      expect(member.channel.stats.network.pendingEvicted).toBeGreaterThan(1_000);
    }
    expect(heap() - before).toBeLessThan(64 * 1024 * 1024);
  });

  it("made-up senders that answer stop at maxPeers; heartbeats too large for a datagram are split; no real member is suspected", async () => {
    bed = await startBed("cluster", 3, { maxPeers: 120, maxDatagramBytes: 2_048 });
    const ids = Array.from({ length: 200 }, (_, i) => fakeId(20_000 + i));
    const speakers = await admitted(bed, ids);
    for (const speaker of speakers) say(bed, speaker, [{ case: "data", value: { seq: 1n, addressing: 1, destination: "work", payload: new Uint8Array(8) } }]);
    await sleep(300);
    await workload(bed, 20, 1);
    expect(violations(bed, 20)).toEqual([]);
    for (const member of bed.members) {
      expect(member.channel.peers.length).toBeLessThanOrEqual(120);
      expect(member.channel.stats.network.peerTableFull).toBeGreaterThan(0);
      expect((member.channel as ClusterChannel).getView("g")!.members).toHaveLength(3);
    }
  });

  it("a heartbeat whose lowest sequence is 2^53 − 2, or a stream floor of 2^53 − 1, costs constant time", async () => {
    bed = await startBed("cluster");
    const intruder = fakeId(5);
    const [speaker] = await admitted(bed, [intruder]);
    say(bed, speaker!, [{ case: "heartbeat", value: { highestSeq: 3n, lowestSeq: TWO_53 - 2n } }]);
    for (const member of bed.members) {
      say(bed, speaker!, [
        {
          case: "data",
          value: { seq: 5n, addressing: 2, targetId: Uint8Array.from(Buffer.from(member.channel.id, "hex")), targetIncarnation: BigInt(member.channel.incarnation), streamFloor: TWO_53 - 1n, payload: new Uint8Array(4) },
        },
      ], member.channel.localAddress);
    }
    await sleep(50);
    expect(await loopLag()).toBeLessThan(200);
    await workload(bed, 10, 1);
    expect(violations(bed, 10)).toEqual([]);
  });

  it("sequence numbers 1, 3 and 524,000 from 200 made-up senders do not grow a member", async () => {
    bed = await startBed("nack");
    const ids = Array.from({ length: 200 }, (_, i) => fakeId(30_000 + i));
    const speakers = await admitted(bed, ids);
    const before = heap();
    for (const speaker of speakers) {
      say(bed, speaker, [1n, 3n, 524_000n].map((seq) => ({ case: "data" as const, value: { seq, addressing: 1, destination: "work", payload: new Uint8Array(10) } })));
    }
    await sleep(200);
    expect(heap() - before).toBeLessThan(32 * 1024 * 1024);
    await workload(bed, 10, 1);
    expect(violations(bed, 10)).toEqual([]);
  });

  it("2,000 messages claiming 65,536 fragments of 16 MB each hold what arrived of them, at most 16 a sender", async () => {
    bed = await startBed("nack");
    const [speaker] = await admitted(bed, [fakeId(40)]);
    const before = liveHeap();
    for (let seq = 1; seq <= 2_000; seq++) {
      say(bed, speaker!, [{ case: "data", value: { seq: BigInt(seq), addressing: 1, destination: "work", fragmentIndex: 0, fragmentCount: 65_536, messageLength: 16_000_000, payload: new Uint8Array(10) } }]);
      if (seq % 100 === 0) await sleep(5);
    }
    await sleep(300);
    expect(liveHeap() - before).toBeLessThan(16 * 1024 * 1024);
    await workload(bed, 10, 1);
    expect(violations(bed, 10)).toEqual([]);
  });

  for (const level of ["nack", "fec", "totem", "cluster"] as const) {
    it(`${level}: 4,000 mutated datagrams (seeded) — no fault, no freeze, no growth, the real members' messages intact`, async () => {
      bed = await startBed(level);
      await workload(bed, 50, 1);
      const before = heap();
      await fuzz(bed, 7, 4_000);
      expect(await loopLag()).toBeLessThan(250);
      await workload(bed, 50, 51, 15_000);
      expect(violations(bed, 100)).toEqual([]);
      expect(heap() - before).toBeLessThan(96 * 1024 * 1024);
    });
  }
});

// The heap after a full collection: what is still held, not what awaits collection.
setFlagsFromString("--expose-gc");
const collect = runInNewContext("gc") as () => void;
const liveHeap = () => {
  collect();
  return process.memoryUsage().heapUsed;
};

/**
 * Sends `count` datagrams to the group, paced by what the members have read: a flood that outruns
 * them only fills the kernel's buffers, and the test is about what reaches them.
 */
async function flood(target: LiveBed, count: number, datagram: (i: number) => Uint8Array): Promise<void> {
  const read = () => Math.min(...target.members.map((m) => m.channel.stats.network.datagramsReceived));
  const start = read();
  for (let i = 0; i < count; i++) {
    target.attacker.send(datagram(i));
    if (i % 100 === 99) {
      const deadline = performance.now() + 500;
      while (read() - start < i - 400 && performance.now() < deadline) await sleep(1);
    }
  }
}

describe("hostile input against secured members (loopback UDP)", () => {
  for (const level of ["nack", "cluster"] as const) {
    it(`${level}: 4,000 mutated datagrams from an insider who holds the key, and raw mutants of sealed ones — no fault, no freeze, no growth, the real members' messages intact`, async () => {
      bed = await startBed(level, 3, {}, bedKeys());
      await workload(bed, 50, 1);
      const before = heap();
      await fuzz(bed, 11, 4_000);
      expect(await loopLag()).toBeLessThan(250);
      await workload(bed, 50, 51, 15_000);
      expect(violations(bed, 100)).toEqual([]);
      expect(heap() - before).toBeLessThan(96 * 1024 * 1024);
      for (const member of bed.members) {
        const { dropped } = member.channel.stats;
        // Raw mutants of sealed datagrams never open; the insider's sealed mutants do, and meet the protocols' checks.
        expect(dropped.AUTH_FAILED + dropped.DECODE_FAILED + dropped.REPLAYED).toBeGreaterThan(100);
        expect(member.channel.stats.network.security!.opened).toBeGreaterThan(100);
      }
    });
  }

  it("a flood of 100,000 distinct made-up senders: nothing is remembered of any, memory stays flat, the members carry on", async () => {
    bed = await startBed("nack", 3, {}, bedKeys());
    await workload(bed, 20, 1);
    const sealed = bed.corpus.find((bytes) => bytes.length < 300)!;
    const before = liveHeap();
    // A member's sealed datagram in another sender's name: it fails the seal (the header is associated data).
    await flood(bed, 100_000, (i) => reSign(sealed, fakeId(100_000 + i), 1n));
    await sleep(200);
    await workload(bed, 20, 21);
    expect(violations(bed, 40)).toEqual([]);
    const grown = liveHeap() - before;
    for (const member of bed.members) {
      const { network, dropped } = member.channel.stats;
      expect({ pending: network.pendingSenders, tracked: network.security!.senders, peers: member.channel.peers.length }).toEqual({ pending: 0, tracked: 2, peers: 2 });
      // Loopback may drop a few under the flood; nearly all arrive, and each is refused.
      expect(dropped.AUTH_FAILED).toBeGreaterThan(95_000);
    }
    // Nothing per made-up sender: what grows is the members' own traffic (their windows, their buffers).
    expect(grown).toBeLessThan(4 * 1024 * 1024);
  });

  it("a flood of 100,000 distinct made-up senders without security: the pending table stays at its bound", async () => {
    bed = await startBed("nack");
    await workload(bed, 20, 1);
    const before = liveHeap();
    await flood(bed, 100_000, (i) => forge({ cluster: bed!.cluster, senderId: fakeId(300_000 + i), incarnation: 1n }, [{ case: "heartbeat", value: { highestSeq: 5n } }]));
    await sleep(200);
    await workload(bed, 20, 21);
    expect(violations(bed, 40)).toEqual([]);
    for (const member of bed.members) {
      expect(member.channel.stats.network.pendingSenders).toBeLessThanOrEqual(256);
      expect(member.channel.stats.network.pendingEvicted).toBeGreaterThan(95_000);
      expect(member.channel.peers).toHaveLength(2);
    }
    // 256 pending senders at most per member, each with at most two held datagrams (4 MiB over all).
    expect(liveHeap() - before).toBeLessThan(3 * 4 * 1024 * 1024);
  });
});
