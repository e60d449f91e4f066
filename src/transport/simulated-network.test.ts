import { describe, expect, it } from "vitest";
import { BlazeError, isBlazeError } from "../errors.ts";
import { SeededRandom } from "./seeded-random.ts";
import { SeedFailure, expandSeeds, runSeeds, seedsFromEnv, withSeed } from "./sim-run.ts";
import { SimulatedNetwork, type LinkConditions } from "./simulated-network.ts";
import type { Address, Transport } from "./transport.ts";

interface Received {
  readonly data: Uint8Array;
  readonly from: Address;
  readonly at: number;
}

function listen(net: SimulatedNetwork, t: Transport): Received[] {
  const got: Received[] = [];
  t.onReceive((data, from) => got.push({ data, from, at: net.clock.now() }));
  return got;
}

function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

/** Orders "what@time" lines by their time (stable). */
function byTime(x: string, y: string): number {
  return Number(x.split("@")[1]) - Number(y.split("@")[1]);
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected an exception");
}

/** Random traffic among five nodes, unicast and multicast, over a lossy, duplicating, reordering network. */
function scenario(seed: number): SimulatedNetwork {
  const net = new SimulatedNetwork({
    seed,
    trace: true,
    defaultLink: { loss: 0.1, duplicate: 0.05, reorder: 0.1, delayMs: { min: 0.2, max: 3 } },
  });
  const nodes = Array.from({ length: 5 }, () => net.createTransport({ port: 7800 }));
  for (const n of nodes) n.joinGroup("239.1.2.3");
  const echoes = [0];
  for (const n of nodes) {
    // Replies make later traffic depend on what arrived, so any divergence snowballs.
    n.onReceive((data, from) => {
      if (data[0]! < 3) n.send(bytes(data[0]! + 1, echoes[0]!++ & 255), from);
    });
  }
  const rng = net.random.fork("traffic");
  for (let i = 0; i < 300; i++) {
    const sender = nodes[rng.nextInt(nodes.length)]!;
    const to = rng.nextInt(4) === 0 ? { host: "239.1.2.3", port: 7800 } : nodes[rng.nextInt(nodes.length)]!.localAddress;
    sender.send(bytes(0, i & 255, rng.nextInt(256)), to);
    net.clock.advance(rng.next() * 2);
    if (i === 150) net.partition([nodes[0]!.localAddress.host], [nodes[1]!.localAddress.host]);
    if (i === 200) net.heal();
    if (i === 250) net.crash(nodes[4]!.localAddress.host);
  }
  net.clock.runUntilIdle();
  return net;
}

describe("SimulatedNetwork", () => {
  it("gives each transport a distinct virtual host and auto port, and delivers unicast after the link delay", () => {
    const net = new SimulatedNetwork({ seed: 1 });
    const a = net.createTransport();
    const b = net.createTransport();
    expect(a.localAddress).toEqual({ host: "10.0.0.1", port: 49152 });
    expect(b.localAddress).toEqual({ host: "10.0.0.2", port: 49152 });
    expect(a.nativeBatchSend).toBe(false);
    expect(a.maxDatagramBytes).toBe(65_507);
    const got = listen(net, b);
    a.send(bytes(1, 2, 3), b.localAddress);
    expect(got).toEqual([]); // never synchronous
    net.clock.runUntilIdle();
    expect(got.length).toBe(1);
    expect([...got[0]!.data]).toEqual([1, 2, 3]);
    expect(got[0]!.from).toEqual(a.localAddress);
    expect(got[0]!.at).toBeGreaterThanOrEqual(0.1);
    expect(got[0]!.at).toBeLessThanOrEqual(0.5);
    expect(net.hosts()).toEqual(["10.0.0.1", "10.0.0.2"]);
  });

  it("delivers even with zero delay only through the clock", () => {
    const net = new SimulatedNetwork({ seed: 1, defaultLink: { delayMs: { min: 0, max: 0 } } });
    const a = net.createTransport();
    const b = net.createTransport();
    const got = listen(net, b);
    a.send(bytes(1), b.localAddress);
    expect(got.length).toBe(0);
    net.clock.advance(0);
    expect(got.length).toBe(1);
  });

  it("copies the bytes: later writes by the sender or by another receiver do not show", () => {
    const net = new SimulatedNetwork({ seed: 2 });
    const a = net.createTransport({ port: 5000 });
    const b = net.createTransport({ port: 5000 });
    const c = net.createTransport({ port: 5000 });
    b.joinGroup("239.0.0.1");
    c.joinGroup("239.0.0.1");
    b.onReceive((data) => data.fill(99));
    const gotC = listen(net, c);
    const payload = bytes(1, 2, 3);
    a.send(payload, { host: "239.0.0.1", port: 5000 });
    payload.fill(0);
    net.clock.runUntilIdle();
    expect([...gotC[0]!.data]).toEqual([1, 2, 3]);
  });

  it("sendMany sends in order", () => {
    const net = new SimulatedNetwork({ seed: 3 });
    const a = net.createTransport();
    const b = net.createTransport();
    const got = listen(net, b);
    a.sendMany([1, 2, 3, 4, 5].map((i) => [bytes(i), b.localAddress] as const));
    net.clock.runUntilIdle();
    expect(got.map((r) => r.data[0])).toEqual([1, 2, 3, 4, 5]);
  });

  it("keeps each link in order unless a datagram is picked for reordering", () => {
    const net = new SimulatedNetwork({ seed: 4, defaultLink: { delayMs: { min: 0, max: 10 } } });
    const a = net.createTransport();
    const b = net.createTransport();
    const got = listen(net, b);
    for (let i = 0; i < 200; i++) a.send(bytes(i), b.localAddress);
    net.clock.runUntilIdle();
    expect(got.map((r) => r.data[0])).toEqual(Array.from({ length: 200 }, (_, i) => i));

    net.setLink(a.localAddress.host, b.localAddress.host, { reorder: 0.2 });
    got.length = 0;
    for (let i = 0; i < 200; i++) a.send(bytes(i), b.localAddress);
    net.clock.runUntilIdle();
    const order = got.map((r) => r.data[0]!);
    expect(order.length).toBe(200);
    expect(order).not.toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect([...order].sort((x, y) => x - y)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it("fans multicast out to every member bound to the port, the sender itself included", () => {
    const net = new SimulatedNetwork({ seed: 5 });
    const group = { host: "239.1.2.3", port: 7800 };
    const a = net.createTransport({ port: 7800 });
    const b = net.createTransport({ port: 7800 });
    const c = net.createTransport({ port: 7800 });
    const other = net.createTransport({ port: 7801 }); // joined, but another port
    const outsider = net.createTransport({ port: 7800 }); // right port, never joined
    for (const t of [a, b, c, other]) t.joinGroup(group.host);
    const [gotA, gotB, gotC, gotOther, gotOutsider] = [a, b, c, other, outsider].map((t) => listen(net, t));
    a.send(bytes(42), group);
    net.clock.runUntilIdle();
    expect(gotA!.length).toBe(1);
    expect(gotA![0]!.at).toBe(0); // loopback: no delay
    expect(gotB!.length).toBe(1);
    expect(gotC!.length).toBe(1);
    expect(gotB![0]!.from).toEqual(a.localAddress);
    expect(gotOther!.length).toBe(0);
    expect(gotOutsider!.length).toBe(0);

    c.leaveGroup(group.host);
    b.joinGroup(group.host); // joining twice is harmless
    a.send(bytes(43), group);
    net.clock.runUntilIdle();
    expect([gotA!.length, gotB!.length, gotC!.length]).toEqual([2, 2, 1]);
    expect(net.stats.sent).toBe(2);
    expect(net.stats.delivered).toBe(5);

    const error = thrown(() => a.joinGroup("10.0.0.9"));
    expect(isBlazeError(error, "BIND_FAILED")).toBe(true);
  });

  it("honors multicastLoopback: false and reuseAddress on one host", () => {
    const net = new SimulatedNetwork({ seed: 6 });
    const host = net.createHost();
    const a = net.createTransport({ host, port: 9000, reuseAddress: true, multicastLoopback: false });
    const b = net.createTransport({ host, port: 9000, reuseAddress: true });
    const c = net.createTransport({ port: 9000 });
    for (const t of [a, b, c]) t.joinGroup("239.9.9.9");
    const [gotA, gotB, gotC] = [a, b, c].map((t) => listen(net, t));
    a.send(bytes(1), { host: "239.9.9.9", port: 9000 });
    b.send(bytes(2), { host: "239.9.9.9", port: 9000 });
    net.clock.runUntilIdle();
    expect(gotA!.map((r) => r.data[0])).toEqual([2]);
    expect(gotB!.map((r) => r.data[0])).toEqual([2]);
    expect(gotC!.map((r) => r.data[0])).toEqual([1, 2]);
    expect(isBlazeError(thrown(() => net.createTransport({ host, port: 9000 })), "BIND_FAILED")).toBe(true);
    expect(isBlazeError(thrown(() => net.createTransport({ host: c.localAddress.host, port: 9000 })), "BIND_FAILED")).toBe(
      true,
    );
  });

  it("loses about the configured fraction over 10,000 datagrams", () => {
    const net = new SimulatedNetwork({ seed: 7, defaultLink: { loss: 0.3 } });
    const a = net.createTransport();
    const b = net.createTransport();
    const got = listen(net, b);
    for (let i = 0; i < 10_000; i++) a.send(bytes(i & 255), b.localAddress);
    net.clock.runUntilIdle();
    // Binomial(10000, 0.7): σ ≈ 46; allow ~5σ.
    expect(Math.abs(got.length - 7000)).toBeLessThan(230);
    expect(net.stats.dropped.loss).toBe(10_000 - got.length);
    expect(net.stats.sent).toBe(10_000);
  });

  it("duplicates about the configured fraction", () => {
    const net = new SimulatedNetwork({ seed: 8, defaultLink: { duplicate: 0.2 } });
    const a = net.createTransport();
    const b = net.createTransport();
    const got = listen(net, b);
    for (let i = 0; i < 10_000; i++) a.send(bytes(1), b.localAddress);
    net.clock.runUntilIdle();
    expect(Math.abs(net.stats.duplicated - 2000)).toBeLessThan(200);
    expect(got.length).toBe(10_000 + net.stats.duplicated);
  });

  it("partitions block both directions, add up, and heal restores everything", () => {
    const net = new SimulatedNetwork({ seed: 9 });
    const [a, b, c] = [0, 1, 2].map(() => net.createTransport());
    const [gotA, gotB, gotC] = [a!, b!, c!].map((t) => listen(net, t));
    const h = (t: Transport | undefined): string => t!.localAddress.host;
    net.partition([h(a), h(b)], [h(c)]);
    a!.send(bytes(1), c!.localAddress);
    c!.send(bytes(2), a!.localAddress);
    c!.send(bytes(3), b!.localAddress);
    a!.send(bytes(4), b!.localAddress); // same side
    net.clock.runUntilIdle();
    expect([gotA!.length, gotB!.length, gotC!.length]).toEqual([0, 1, 0]);
    expect(net.stats.dropped.partition).toBe(3);

    net.isolate(h(b));
    const d = net.createTransport(); // a host created after isolate() is cut off from b too
    const gotD = listen(net, d);
    b!.send(bytes(5), d.localAddress);
    d.send(bytes(6), a!.localAddress);
    net.clock.runUntilIdle();
    expect([gotA!.length, gotD.length]).toEqual([1, 0]);

    net.heal();
    for (const [from, to] of [
      [a, c],
      [c, a],
      [b, d],
      [d, b],
    ] as const) {
      from!.send(bytes(7), to!.localAddress);
    }
    net.clock.runUntilIdle();
    expect([gotA!.length, gotB!.length, gotC!.length, gotD.length]).toEqual([2, 2, 1, 1]);
  });

  it("a crash silences the host: in-flight datagrams to it vanish, it sends nothing, restart allows new transports", () => {
    const net = new SimulatedNetwork({ seed: 10, defaultLink: { delayMs: { min: 5, max: 5 } } });
    const a = net.createTransport({ port: 7000 });
    const b = net.createTransport({ port: 7000 });
    a.joinGroup("239.0.0.7");
    const [gotA, gotB] = [a, b].map((t) => listen(net, t));
    b.send(bytes(1), a.localAddress); // in flight when a crashes
    net.clock.advance(1);
    net.crash(a.localAddress.host);
    expect(net.isCrashed(a.localAddress.host)).toBe(true);
    a.send(bytes(2), b.localAddress); // silently nothing
    a.joinGroup("239.0.0.8"); // silently nothing
    b.send(bytes(3), a.localAddress);
    b.send(bytes(4), { host: "239.0.0.7", port: 7000 });
    net.clock.runUntilIdle();
    expect(gotA!.length).toBe(0);
    expect(gotB!.length).toBe(0);
    expect(net.stats.dropped.crashed).toBe(3);
    expect(net.stats.dropped.unreachable).toBe(1); // the group has no member left

    expect(isBlazeError(thrown(() => net.createTransport({ host: a.localAddress.host })), "ILLEGAL_STATE")).toBe(true);
    net.restart(a.localAddress.host);
    const a2 = net.createTransport({ host: a.localAddress.host, port: 7000 }); // the port was freed
    const gotA2 = listen(net, a2);
    b.send(bytes(5), a2.localAddress);
    a.send(bytes(6), b.localAddress); // the old transport stays dead
    net.clock.runUntilIdle();
    expect(gotA2.map((r) => r.data[0])).toEqual([5]);
    expect(gotA!.length).toBe(0);
    expect(gotB!.length).toBe(0);
  });

  it("enforces the datagram size limit and throws CLOSED after close; close is idempotent", async () => {
    const net = new SimulatedNetwork({ seed: 11, maxDatagramBytes: 1400 });
    const a = net.createTransport();
    const b = net.createTransport();
    const small = net.createTransport({ maxDatagramBytes: 100 });
    expect(a.maxDatagramBytes).toBe(1400);
    a.send(new Uint8Array(1400), b.localAddress);
    const tooLarge = thrown(() => a.send(new Uint8Array(1401), b.localAddress));
    expect(tooLarge).toBeInstanceOf(BlazeError);
    expect((tooLarge as BlazeError).code).toBe("DATAGRAM_TOO_LARGE");
    expect(isBlazeError(thrown(() => small.send(new Uint8Array(101), b.localAddress)), "DATAGRAM_TOO_LARGE")).toBe(true);

    const gotB = listen(net, b);
    a.send(bytes(1), b.localAddress);
    await b.close();
    await b.close();
    net.clock.runUntilIdle();
    expect(gotB.length).toBe(0);
    expect(net.stats.dropped.closed).toBe(2);
    expect(isBlazeError(thrown(() => b.send(bytes(1), a.localAddress)), "CLOSED")).toBe(true);
    expect(isBlazeError(thrown(() => b.sendMany([[bytes(1), a.localAddress]])), "CLOSED")).toBe(true);
    expect(isBlazeError(thrown(() => b.joinGroup("239.1.1.1")), "CLOSED")).toBe(true);
    b.leaveGroup("239.1.1.1"); // harmless
    // The port is free again.
    expect(net.createTransport({ host: b.localAddress.host, port: b.localAddress.port }).localAddress).toEqual(
      b.localAddress,
    );
  });

  it("passes a receive handler's exception to onError and keeps running", () => {
    const net = new SimulatedNetwork({ seed: 12 });
    const a = net.createTransport();
    const b = net.createTransport();
    const c = net.createTransport();
    const errors: BlazeError[] = [];
    b.onReceive(() => {
      throw new TypeError("garbage");
    });
    b.onError((e) => errors.push(e));
    c.onReceive(() => {
      throw new Error("no error handler");
    });
    const gotA = listen(net, a);
    b.send(bytes(1), a.localAddress);
    a.send(bytes(2), b.localAddress);
    a.send(bytes(3), c.localAddress);
    b.send(bytes(4), a.localAddress);
    net.clock.runUntilIdle();
    expect(gotA.length).toBe(2);
    expect(errors.length).toBe(1);
    expect(errors[0]!.code).toBe("TRANSPORT_ERROR");
    expect(errors[0]!.cause).toBeInstanceOf(TypeError);
    expect(net.stats.handlerErrors).toBe(2);
  });

  it("drops datagrams to unknown hosts and ports as unreachable; 127.0.0.1 is the sender's own host", () => {
    const net = new SimulatedNetwork({ seed: 13 });
    const a = net.createTransport({ port: 4000 });
    const a2 = net.createTransport({ host: a.localAddress.host, port: 4001 });
    const got = listen(net, a2);
    a.send(bytes(1), { host: "10.9.9.9", port: 4000 });
    a.send(bytes(2), { host: a.localAddress.host, port: 4999 });
    a.send(bytes(3), { host: "239.5.5.5", port: 4000 });
    a.send(bytes(4), { host: "127.0.0.1", port: 4001 });
    net.clock.runUntilIdle();
    expect(net.stats.dropped.unreachable).toBe(3);
    expect(got.map((r) => r.data[0])).toEqual([4]);
  });

  it("validates link conditions and host names", () => {
    const net = new SimulatedNetwork({ seed: 14 });
    const bad: Array<Partial<LinkConditions>> = [
      { loss: 1.5 },
      { duplicate: -0.1 },
      { reorder: Number.NaN },
      { delayMs: { min: 5, max: 1 } },
      { delayMs: { min: -1, max: 1 } },
      { reorderDelayMs: { min: 0, max: Infinity } },
    ];
    for (const conditions of bad) {
      expect(isBlazeError(thrown(() => net.setLink("x", "y", conditions)), "INVALID_OPTION")).toBe(true);
      expect(isBlazeError(thrown(() => new SimulatedNetwork({ seed: 1, defaultLink: conditions })), "INVALID_OPTION")).toBe(
        true,
      );
    }
    for (const host of ["239.1.1.1", "127.0.0.1", "0.0.0.0"]) {
      expect(isBlazeError(thrown(() => net.createTransport({ host })), "INVALID_OPTION")).toBe(true);
    }
    expect(isBlazeError(thrown(() => net.crash("nowhere")), "INVALID_OPTION")).toBe(true);
    expect(isBlazeError(thrown(() => net.traceDigest()), "ILLEGAL_STATE")).toBe(true);
  });

  it("setLink, setDefaultLink and clearLink: fields left out come from the current default", () => {
    const net = new SimulatedNetwork({ seed: 15, defaultLink: { delayMs: { min: 2, max: 2 } } });
    net.setLink("a", "b", { loss: 0.5 });
    expect(net.linkConditions("a", "b")).toMatchObject({ loss: 0.5, delayMs: { min: 2, max: 2 } });
    net.setDefaultLink({ duplicate: 0.1 });
    expect(net.linkConditions("b", "a")).toMatchObject({ loss: 0, duplicate: 0.1, delayMs: { min: 2, max: 2 } });
    expect(net.linkConditions("a", "b").duplicate).toBe(0); // set explicitly: keeps its own
    expect(net.linkConditions("a", "a").delayMs).toEqual({ min: 0, max: 0 }); // loopback
    net.clearLink("a", "b");
    expect(net.linkConditions("a", "b")).toMatchObject({ loss: 0, duplicate: 0.1 });
  });

  it("makes the same seed replay byte-identically and a different seed diverge", () => {
    const first = scenario(42);
    const again = scenario(42);
    const other = scenario(43);
    expect(first.traceDigest()).toMatch(/^[0-9a-f]{16}$/);
    expect(again.traceDigest()).toBe(first.traceDigest());
    expect(again.traceLines()).toEqual(first.traceLines());
    expect(again.stats).toEqual(first.stats);
    expect(other.traceDigest()).not.toBe(first.traceDigest());
    // The scenario exercised every kind of fate.
    const s = first.stats;
    expect(s.dropped.loss).toBeGreaterThan(0);
    expect(s.dropped.partition).toBeGreaterThan(0);
    expect(s.dropped.crashed).toBeGreaterThan(0);
    expect(s.duplicated).toBeGreaterThan(0);
    const lines = first.traceLines();
    for (const kind of ["send", "deliver", "drop", "dup", "partition", "heal", "crash"]) {
      expect(lines.some((l) => l.split(" ")[1] === kind)).toBe(true);
    }
  });

  it("traceDigest is the FNV-1a 64 of the trace text", () => {
    const net = scenario(5);
    net.note("ünïcode ✓ 𝄞");
    const text = net.traceLines().join("\n") + "\n";
    let h = 0xcbf29ce484222325n;
    const encoder = new (globalThis as unknown as { TextEncoder: new () => { encode(s: string): Uint8Array } }).TextEncoder();
    for (const byte of encoder.encode(text)) {
      h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
    }
    expect(net.traceDigest()).toBe(h.toString(16).padStart(16, "0"));
  });

  it("keeps only the latest traceMaxLines lines but digests them all", () => {
    const make = (traceMaxLines: number): SimulatedNetwork => {
      const net = new SimulatedNetwork({ seed: 16, trace: true, traceMaxLines });
      const a = net.createTransport();
      const b = net.createTransport();
      for (let i = 0; i < 100; i++) a.send(bytes(i), b.localAddress);
      net.clock.runUntilIdle();
      return net;
    };
    const full = make(1_000_000);
    const short = make(10);
    const none = make(0);
    expect(short.traceLines().length).toBeLessThan(20);
    expect(short.traceLines()).toEqual(full.traceLines().slice(-short.traceLines().length));
    expect(none.traceLines()).toEqual([]);
    expect(short.traceDigest()).toBe(full.traceDigest());
    expect(none.traceDigest()).toBe(full.traceDigest());
  });

  it("traffic on one link does not shift the fates on another", () => {
    const fates = (extraTraffic: boolean): number[] => {
      const net = new SimulatedNetwork({ seed: 17, defaultLink: { loss: 0.5 } });
      const [a, b, c] = [0, 1, 2].map(() => net.createTransport());
      const got = listen(net, b!);
      for (let i = 0; i < 100; i++) {
        if (extraTraffic) a!.send(bytes(0), c!.localAddress);
        a!.send(bytes(i), b!.localAddress);
      }
      net.clock.runUntilIdle();
      return got.map((r) => r.data[0]!);
    };
    expect(fates(true)).toEqual(fates(false));
  });

  it("works as a TransportFactory", async () => {
    const net = new SimulatedNetwork({ seed: 18 });
    const factory = net.transportFactory();
    const a = await factory();
    const b = await factory({ bindAddress: "10.7.7.7", port: 1234 });
    expect(b.localAddress).toEqual({ host: "10.7.7.7", port: 1234 });
    expect(a.localAddress.host).not.toBe(b.localAddress.host);
    await expect(factory({ bindAddress: "10.7.7.7", port: 1234 })).rejects.toMatchObject({ code: "BIND_FAILED" });
  });

  it("serializes datagrams at a link's bandwidth, link by link, and keeps each link in order", () => {
    const net = new SimulatedNetwork({ seed: 20, defaultLink: { delayMs: { min: 1, max: 1 } } });
    const [a, b, c] = [0, 1, 2].map(() => net.createTransport({ port: 7000 }));
    b!.joinGroup("239.0.0.9");
    c!.joinGroup("239.0.0.9");
    // 1 MB/s to b: 10,000 bytes take 10 ms to go out; c keeps the default (no serialization delay).
    net.setLink(a!.localAddress.host, b!.localAddress.host, { bandwidthBytesPerSecond: 1_000_000 });
    expect(net.linkConditions(a!.localAddress.host, b!.localAddress.host).bandwidthBytesPerSecond).toBe(1_000_000);
    expect(net.linkConditions(a!.localAddress.host, c!.localAddress.host).bandwidthBytesPerSecond).toBe(Infinity);
    const [gotB, gotC] = [b!, c!].map((t) => listen(net, t));
    for (let i = 0; i < 5; i++) a!.send(new Uint8Array(10_000).fill(i), { host: "239.0.0.9", port: 7000 });
    net.clock.advance(20);
    // A datagram sent later, once the link is idle again, waits for nothing.
    net.clock.runUntilIdle();
    expect(gotB!.map((r) => r.at)).toEqual([11, 21, 31, 41, 51]);
    expect(gotB!.map((r) => r.data[0])).toEqual([0, 1, 2, 3, 4]);
    expect(gotC!.map((r) => r.at)).toEqual([1, 1, 1, 1, 1]);
    a!.send(new Uint8Array(1_000), b!.localAddress);
    net.clock.runUntilIdle();
    expect(gotB!.at(-1)!.at).toBe(net.clock.now());
    expect(gotB!.at(-1)!.at).toBeCloseTo(51 + 1 + 1, 9);
    expect(isBlazeError(thrown(() => net.setLink("x", "y", { bandwidthBytesPerSecond: 0 })), "INVALID_OPTION")).toBe(true);
    expect((thrown(() => net.setDefaultLink({ bandwidthBytesPerSecond: -1 })) as BlazeError).path).toEqual(["conditions", "bandwidthBytesPerSecond"]);
  });

  it("stalls a host: its timers and arriving datagrams wait, then run at once in the order they fell due", () => {
    const net = new SimulatedNetwork({ seed: 21, trace: true, defaultLink: { delayMs: { min: 5, max: 5 } } });
    const a = net.createTransport({ host: "a" });
    const b = net.createTransport({ host: "b" });
    const clockB = net.clockOf("b");
    expect(net.clockOf("b")).toBe(clockB);
    const events: string[] = [];
    const at = (what: string) => events.push(`${what}@${net.clock.now()}`);
    b.onReceive((data) => at(`datagram ${data[0]}`));
    a.onReceive((data) => at(`a got ${data[0]}`));
    clockB.setTimer(10, () => at("timer 10"));
    const cancelled = clockB.setTimer(30, () => at("cancelled"));
    clockB.setTimer(200, () => at("timer 200"));
    net.clock.setTimer(20, () => at("network timer 20")); // not on b's clock: runs on time
    a.send(bytes(1), b.localAddress); // arrives at 5, during the stall
    net.clock.advance(1);
    net.stall("b", 99);
    expect(net.isStalled("b")).toBe(true);
    b.send(bytes(9), a.localAddress); // b's own traffic is not held (a stalled process sends nothing anyway)
    net.clock.advance(49);
    cancelled.cancel(); // fell due at 30 and waits: cancelling it still counts
    net.stall("b", 10); // ends before the first stall: changes nothing
    net.clock.advance(100);
    expect(net.isStalled("b")).toBe(false);
    expect(clockB.now()).toBe(net.clock.now());
    net.clock.runUntilIdle();
    expect(events).toEqual(["datagram 1@100", "timer 10@100", "a got 9@6", "network timer 20@20", "timer 200@200"].sort(byTime));
    // Three waited (the cancelled timer among them, skipped when its turn came).
    expect(net.traceLines().some((line) => line.endsWith("resume b 3"))).toBe(true);

    // A stall grows when a longer one starts during it; a crash during a stall drops what waited.
    const start = net.clock.now();
    clockB.setTimer(10, () => at("late"));
    net.stall("b", 20);
    net.clock.advance(5);
    net.stall("b", 50);
    net.clock.advance(30);
    expect(net.isStalled("b")).toBe(true);
    net.clock.advance(30);
    expect(events.at(-1)).toBe(`late@${start + 5 + 50}`);
    clockB.setTimer(1, () => at("never"));
    a.send(bytes(2), b.localAddress);
    net.stall("b", 100);
    net.clock.advance(10);
    net.crash("b");
    net.clock.advance(200);
    expect(events.some((e) => e.startsWith("never") || e.startsWith("datagram 2"))).toBe(false);
    expect(net.stats.dropped.crashed).toBe(1);
    expect(isBlazeError(thrown(() => net.stall("a", Number.NaN)), "INVALID_OPTION")).toBe(true);
  });

  it("is fast enough for protocol tests", () => {
    const net = new SimulatedNetwork({ seed: 19, defaultLink: { loss: 0.05, duplicate: 0.01, reorder: 0.05 } });
    const nodes = Array.from({ length: 10 }, () => net.createTransport({ port: 7800 }));
    for (const n of nodes) n.joinGroup("239.1.1.1");
    let received = 0;
    for (const n of nodes) n.onReceive(() => void received++);
    const payload = new Uint8Array(200);
    const start = Date.now();
    for (let round = 0; round < 10_000; round++) {
      nodes[round % 10]!.send(payload, { host: "239.1.1.1", port: 7800 });
      nodes[round % 10]!.send(payload, nodes[(round + 1) % 10]!.localAddress);
      if (round % 100 === 0) net.clock.advance(1);
    }
    net.clock.runUntilIdle();
    const elapsed = Date.now() - start;
    expect(received).toBeGreaterThan(100_000);
    expect(elapsed).toBeLessThan(5000); // typically a few hundred ms for ~110,000 deliveries
  });
});

describe("seed helpers", () => {
  const env = (globalThis as unknown as { process: { env: Record<string, string | undefined> } }).process.env;

  function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, env[k]]));
    const apply = (values: Record<string, string | undefined>): void => {
      for (const [k, v] of Object.entries(values)) {
        if (v === undefined) delete env[k];
        else env[k] = v;
      }
    };
    apply(vars);
    try {
      return fn();
    } finally {
      apply(saved);
    }
  }

  it("expands seed specs and honors BLAZE_SEED and BLAZE_SEEDS", () => {
    expect(expandSeeds({ from: 5, count: 3 })).toEqual([5, 6, 7]);
    expect(expandSeeds([9, 2])).toEqual([9, 2]);
    withEnv({ BLAZE_SEED: undefined, BLAZE_SEEDS: undefined }, () => {
      expect(seedsFromEnv({ from: 1, count: 3 })).toEqual([1, 2, 3]);
    });
    withEnv({ BLAZE_SEED: "77", BLAZE_SEEDS: "1000" }, () => {
      expect(seedsFromEnv({ from: 1, count: 3 })).toEqual([77]);
    });
    withEnv({ BLAZE_SEED: undefined, BLAZE_SEEDS: "5" }, () => {
      expect(seedsFromEnv({ from: 10, count: 3 })).toEqual([10, 11, 12, 13, 14]);
    });
    withEnv({ BLAZE_SEED: "x", BLAZE_SEEDS: undefined }, () => {
      expect(() => seedsFromEnv([1])).toThrow(/BLAZE_SEED/);
    });
  });

  it("names the failing seed and the command that replays it", async () => {
    const ran: number[] = [];
    let failure: unknown;
    await withEnv({ BLAZE_SEED: undefined, BLAZE_SEEDS: undefined }, async () => {
      try {
        await runSeeds({
          seeds: { from: 1, count: 10 },
          run: async (seed) => {
            ran.push(seed);
            const rng = new SeededRandom(seed);
            if (seed === 4) throw new Error(`invariant broken (first draw ${rng.nextInt(100)})`);
          },
        });
      } catch (e) {
        failure = e;
      }
    });
    expect(ran).toEqual([1, 2, 3, 4]); // stops at the first failure
    expect(failure).toBeInstanceOf(SeedFailure);
    const f = failure as SeedFailure;
    expect(f.seed).toBe(4);
    expect(f.message).toContain("seed=4");
    expect(f.message).toContain("invariant broken");
    expect(f.message).toContain("BLAZE_SEED=4 npx vitest run");
    expect(f.message).toContain("simulated-network.test.ts");
    expect(f.cause).toBeInstanceOf(Error);

    await expect(withSeed(9, () => Promise.reject(new Error("nope")), "x.test.ts")).rejects.toThrow(
      "seed=9 failed: Error: nope\n  rerun it alone: BLAZE_SEED=9 npx vitest run x.test.ts",
    );
    await expect(withSeed(9, (seed) => seed * 2)).resolves.toBe(18);
  });
});
