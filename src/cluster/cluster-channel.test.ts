import { afterEach, describe, expect, it } from "vitest";
import { SimulatedNetwork } from "../transport/simulated-network.ts";
import { ClusterChannel } from "./cluster-channel.ts";
import type { ClusterChannelOptions } from "./options.ts";
import { BlazeMessage } from "../message/blaze-message.ts";
import { isBlazeError } from "../errors.ts";
import type { Address } from "../transport/transport.ts";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, type FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { flushMicrotasks as flush, settleInVirtualTime } from "../../test/support/virtual-time.ts";

const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;

class Bed {
  readonly net: SimulatedNetwork;
  readonly channels: ClusterChannel[] = [];
  #n = 0;
  constructor(seed = 1) {
    this.net = new SimulatedNetwork({ seed, defaultLink: {} });
  }
  async spawn(options: Partial<ClusterChannelOptions> = {}): Promise<ClusterChannel> {
    const index = this.#n++;
    const host = `h${index}`;
    const channel = new ClusterChannel({
      name: `m${index}`,
      transport: this.net.transportFactory(host),
      clock: this.net.clock,
      random: this.net.random.fork(`p${index}`),
      incarnation: index + 1,
      groups: ["g"],
      ...TIMING,
      ...options,
    });
    this.channels.push(channel);
    return channel;
  }
  /** Runs virtual time until the promise settles. */
  async settle<T>(promise: Promise<T>, maxMs = 20_000): Promise<T> {
    return settleInVirtualTime(this.net.clock, promise, maxMs);
  }
  async run(ms: number): Promise<void> {
    const end = this.net.clock.now() + ms;
    while (this.net.clock.now() < end) {
      this.net.clock.runFor(2);
      await flush();
    }
  }
}

const text = (s: string) => new TextEncoder().encode(s);
const str = (v: unknown) => new TextDecoder().decode(v as Uint8Array);

/** A made-up member on the simulated network: it answers admission challenges, and sends the frames it is given. */
async function impostor(net: SimulatedNetwork, host: string, cluster: string) {
  const id = new Uint8Array(16).fill(0xfe);
  const transport = await net.transportFactory(host)({});
  const envelope = (body: MessageInitShape<typeof EnvelopeSchema>["body"]) =>
    toBinary(EnvelopeSchema, create(EnvelopeSchema, { version: 1, cluster, senderId: id, incarnation: 1n, body }));
  transport.onReceive((bytes, from) => {
    const body = fromBinary(EnvelopeSchema, bytes).body;
    const kinds = body.case === "bundle" ? body.value.frames.map((f) => f.kind) : [body];
    for (const kind of kinds) if (kind.case === "ping" && kind.value.group === "") transport.send(envelope({ case: "pong", value: { nonce: kind.value.nonce } }), from);
  });
  return {
    id,
    send: (to: Address, kinds: ReadonlyArray<MessageInitShape<typeof FrameSchema>["kind"]>) => transport.send(envelope({ case: "bundle", value: { frames: kinds.map((kind) => ({ kind })) } }), to),
  };
}

describe("ClusterChannel", () => {
  let bed: Bed;
  afterEach(async () => {
    for (const c of bed.channels) await c.stop().catch(() => undefined);
  });

  it("replicates puts in order to every member and returns the old value", async () => {
    bed = new Bed();
    const [a, b, c] = [await bed.spawn(), await bed.spawn(), await bed.spawn()];
    await bed.settle(Promise.all([a, b, c].map((x) => x.join())));
    expect(a.getMaster()?.id).toBe(b.getMaster()?.id);
    const old1 = await bed.settle(b.map.put("k", text("one")));
    expect(old1).toBeUndefined();
    for (const x of [a, b, c]) expect(str(x.map.get("k"))).toBe("one");
    const old2 = await bed.settle(c.map.put("k", text("two")));
    expect(str(old2)).toBe("one");
    for (const x of [a, b, c]) expect(str(x.map.get("k"))).toBe("two");
    const msg = BlazeMessage.fromObject({ n: 1 });
    await bed.settle(a.map.put("m", msg));
    expect(c.map.get("m")).toBeInstanceOf(BlazeMessage);
  });

  it("a master of two sends its updates point to point (no copy comes back to it); of three, it multicasts them", async () => {
    for (const size of [2, 3]) {
      bed = new Bed();
      const members = [await bed.spawn({ weight: 10 })];
      for (let i = 1; i < size; i++) members.push(await bed.spawn());
      await bed.settle(Promise.all(members.map((x) => x.join())));
      const [master, writer] = [members[0]!, members[1]!];
      expect(master.isMaster()).toBe(true);
      const own = master.stats.network.ownDatagrams;
      const sent = master.stats.network.datagramsSent;
      for (let n = 0; n < 20; n++) await bed.settle(writer.map.put(`k${n}`, text(`v${n}`)));
      for (const x of members) expect(str(x.map.get("k19"))).toBe("v19");
      // Heartbeats are multicast too, a few within the puts at most.
      if (size === 2) {
        expect(master.stats.network.ownDatagrams - own).toBeLessThan(5);
        expect(master.stats.network.datagramsSent - sent).toBeLessThan(25);
      } else expect(master.stats.network.ownDatagrams - own).toBeGreaterThanOrEqual(20);
      for (const c of bed.channels) await c.stop();
    }
  });

  it("locks: holder writes, others are refused, waiters queue, failover keeps them", async () => {
    bed = new Bed(2);
    const [a, b, c] = [await bed.spawn(), await bed.spawn(), await bed.spawn()];
    await bed.settle(Promise.all([a, b, c].map((x) => x.join())));
    const lock = await bed.settle(b.map.lock("res"));
    expect(lock.fencingToken).toBeGreaterThan(0);
    await bed.settle(b.map.put("res", text("by b"), { lock }));
    await expect(bed.settle(c.map.put("res", text("by c")))).rejects.toMatchObject({ code: "LOCKED" });
    expect(await bed.settle(c.map.tryLock("res"))).toBeUndefined();
    const waiting = c.map.lock("res", { timeoutMs: 5_000 });
    await bed.run(50);
    await bed.settle(lock.release());
    const second = await bed.settle(waiting);
    expect(second.fencingToken).toBeGreaterThan(lock.fencingToken);
    await expect(bed.settle(b.map.put("res", text("stale"), { lock }))).rejects.toMatchObject({ code: "LOCKED" });
  });

  it("a joiner gets the whole map before join() resolves", async () => {
    bed = new Bed(3);
    const [a, b] = [await bed.spawn(), await bed.spawn()];
    await bed.settle(Promise.all([a, b].map((x) => x.join())));
    await bed.settle(a.map.putAll(Array.from({ length: 1200 }, (_, i) => [`k${i}`, text(`v${i}`)] as const)));
    const c = await bed.spawn();
    const ready: Array<{ epoch: number; size: number }> = [];
    c.map.on("ready", (event) => ready.push(event));
    await bed.settle(c.join());
    expect(c.map.size).toBe(1200);
    expect(ready).toEqual([{ epoch: c.stateStats.epoch, size: 1200 }]);
    expect(str(c.map.get("k777"))).toBe("v777");
  });

  it("an acknowledged write survives the coordinator's crash; a new coordinator takes writes", async () => {
    bed = new Bed(4);
    const [a, b, c] = [await bed.spawn(), await bed.spawn(), await bed.spawn()];
    await bed.settle(Promise.all([a, b, c].map((x) => x.join())));
    const master = [a, b, c].find((x) => x.isMaster())!;
    const others = [a, b, c].filter((x) => x !== master);
    await bed.settle(others[0]!.map.put("x", text("1")));
    const hosts = bed.channels.indexOf(master);
    bed.net.crash(`h${hosts}`);
    void master.stop();
    const old = await bed.settle(others[1]!.map.put("x", text("2")), 10_000);
    expect(str(old)).toBe("1");
    for (const x of others) expect(str(x.map.get("x"))).toBe("2");
  });

  it("expires entries and leases on the coordinator's clock", async () => {
    bed = new Bed(5);
    const [a, b] = [await bed.spawn(), await bed.spawn()];
    await bed.settle(Promise.all([a, b].map((x) => x.join())));
    const removed: Array<{ key: string; expired: boolean }> = [];
    b.map.on("change", (ch) => {
      if (ch.type === "remove") removed.push({ key: ch.key, expired: ch.expired });
    });
    const expiredLocks: string[] = [];
    b.map.on("lockExpired", (l) => expiredLocks.push(l.key));
    await bed.settle(a.map.put("t", text("x"), { timeToLiveMs: 300 }));
    const lock = await bed.settle(a.map.lock("l", { leaseMs: 200 }));
    await bed.run(400);
    expect(b.map.has("t")).toBe(false);
    expect(removed).toEqual([{ key: "t", expired: true }]);
    expect(expiredLocks).toEqual(["l"]);
    expect(lock.valid).toBe(false);
    expect(await bed.settle(b.map.tryLock("l"))).toBeDefined();
  });

  type Members = ClusterChannel[] & { readonly 0: ClusterChannel; readonly 1: ClusterChannel; readonly 2: ClusterChannel };

  async function cluster(n: number, seed: number, options: Partial<ClusterChannelOptions> = {}): Promise<Members> {
    bed = new Bed(seed);
    const channels: ClusterChannel[] = [];
    for (let i = 0; i < n; i++) channels.push(await bed.spawn(options));
    await bed.settle(Promise.all(channels.map((x) => x.join())));
    return channels as Members;
  }

  function stop(channel: ClusterChannel, crash: boolean): void {
    const index = bed.channels.indexOf(channel);
    if (crash) bed.net.crash(`h${index}`);
    void (crash ? channel.stop() : channel.leave());
  }

  it("removes a leaving owner's removeOnExit entries and frees its locks (graceful leave and crash)", async () => {
    const [a, b, c] = await cluster(3, 11);
    await bed.settle(b.map.put("session", text("b"), { removeOnExit: true }));
    await bed.settle(b.map.put("kept", text("b")));
    await bed.settle(b.map.lock("l1"));
    await bed.settle(b.map.lock("l2", { releaseOnExit: false }));
    await bed.settle(c.map.put("c-session", text("c"), { removeOnExit: true }));
    const removed: string[] = [];
    a.map.on("change", (change) => change.type === "remove" && removed.push(`${change.key}${change.expired ? " (expired)" : ""}`));
    stop(b, false);
    await bed.run(300);
    expect(a.map.has("session")).toBe(false);
    expect(a.map.has("kept")).toBe(true);
    expect(a.map.isLocked("l1")).toBe(false);
    expect(a.map.getLock("l2")?.holder.id).toBe(b.id);
    stop(c, true);
    await bed.run(1_500);
    expect(a.map.has("c-session")).toBe(false);
    expect(removed).toEqual(["session", "c-session"]);
  });

  it("writes made as another member leaves complete at once, the master's own too, and the leaver is sent no snapshot afterwards", async () => {
    for (const how of ["leave", "removeFromGroup"] as const) {
      bed = new Bed(12);
      const members = [await bed.spawn({ state: { group: "state" } }), await bed.spawn({ state: { group: "state" } }), await bed.spawn({ state: { group: "state" } })];
      await bed.settle(Promise.all(members.map((m) => m.join())));
      await bed.settle(members[0]!.map.put("k", text("1")));
      const master = members.find((m) => m.isMaster())!;
      const leaver = members.find((m) => m !== master)!;
      if (how === "leave") void leaver.leave();
      else leaver.removeFromGroup("state");
      // The writes waited on the leaver's acknowledgement in the term that ended with it: they go again
      // to the next term (the master's own never went again; another member's, after its resend wait).
      const follower = members.find((m) => m !== master && m !== leaver)!;
      const start = bed.net.clock.now();
      const took: number[] = [];
      await bed.settle(
        Promise.all([master, follower].map((m, i) => m.map.put(`k${i}`, text("2"), { timeoutMs: 5_000 }).then(() => took.push(bed.net.clock.now() - start)))),
        6_000,
      );
      expect(Math.max(...took), how).toBeLessThan(50);
      for (const m of members) if (m !== leaver) expect([str(m.map.get("k0")), str(m.map.get("k1"))]).toEqual(["2", "2"]);
      const chunks = master.stateStats.snapshotChunksSent;
      await bed.run(10_000);
      expect(master.stateStats.snapshotChunksSent - chunks, how).toBeLessThanOrEqual(1);
      for (const c of bed.channels) await c.stop().catch(() => undefined);
    }
  });

  it("quorum: the minority side refuses writes and lock grants with NO_QUORUM, the majority goes on", async () => {
    const [a, b, c] = await cluster(3, 12, { state: { quorum: true, requestTimeoutMs: 3_000 } });
    await bed.settle(a.map.put("x", text("0")));
    const alone = [a, b, c].find((x) => !x.isMaster())!;
    const aloneHost = `h${bed.channels.indexOf(alone)}`;
    const others = [a, b, c].filter((x) => x !== alone).map((x) => `h${bed.channels.indexOf(x)}`);
    bed.net.partition([aloneHost], others);
    await bed.run(1_500);
    const error = await bed.settle(alone.map.put("x", text("minority"))).catch((e: unknown) => e);
    expect(isBlazeError(error, "NO_QUORUM")).toBe(true);
    expect(isBlazeError(await bed.settle(alone.map.tryLock("y")).catch((e: unknown) => e), "NO_QUORUM")).toBe(true);
    const majority = [a, b, c].filter((x) => x !== alone);
    await bed.settle(majority[0]!.map.put("x", text("majority")));
    bed.net.heal();
    await bed.run(2_000);
    for (const x of [a, b, c]) expect(str(x.map.get("x"))).toBe("majority");
    await bed.settle(alone.map.put("x", text("after")));
  });

  it("refuses writes while the view has fewer than minimumMembers members", async () => {
    bed = new Bed(20);
    const a = await bed.spawn({ state: { minimumMembers: 2, requestTimeoutMs: 1_000 } });
    await bed.settle(a.start());
    await bed.settle(a.addToGroup("g"));
    await bed.run(100);
    const error = await bed.settle(a.map.put("x", text("alone"))).catch((e: unknown) => e);
    expect(isBlazeError(error, "NO_QUORUM")).toBe(true);
    expect((error as Error).message).toMatch(/1 of the 2 members/);
    const b = await bed.spawn({ state: { minimumMembers: 2 } });
    await bed.settle(b.join());
    await bed.settle(a.map.put("x", text("two")));
    expect(str(b.map.get("x"))).toBe("two");
  });

  it("without quorum, a partition's sides both write and the larger history wins when they merge", async () => {
    const [a, b, c] = await cluster(3, 13);
    const master = [a, b, c].find((x) => x.isMaster())!;
    const rest = [a, b, c].filter((x) => x !== master);
    bed.net.partition([`h${bed.channels.indexOf(master)}`], rest.map((x) => `h${bed.channels.indexOf(x)}`));
    await bed.run(1_500);
    await bed.settle(rest[0]!.map.put("side", text("two")));
    await bed.settle(rest[0]!.map.put("side2", text("two")));
    await bed.settle(master.map.put("side", text("one")));
    bed.net.heal();
    await bed.run(2_500);
    const digest = (x: ClusterChannel) => x.map.keys().sort().map((k) => `${k}=${str(x.map.get(k))}`).join();
    expect(new Set([a, b, c].map(digest)).size).toBe(1);
  });

  it("refuses state frames from a member that is not the coordinator, and counts malformed ones", async () => {
    const [a, b, c] = await cluster(3, 14);
    const follower = [a, b, c].find((x) => !x.isMaster())!;
    // A sender that is not the coordinator: admitted (it answers the challenge), its frames reach the map.
    const other = await impostor(bed.net, "h-other", follower.cluster);
    const before = follower.stateStats.staleRefused;
    const update = { epoch: 999n, index: BigInt(follower.stateStats.epoch + 1000), group: "g", coordinatorId: other.id, changes: [] };
    other.send(follower.localAddress, [{ case: "stateUpdate", value: update }]);
    // A member id of 3 bytes: malformed.
    other.send(follower.localAddress, [{ case: "stateUpdate", value: { ...update, coordinatorId: new Uint8Array([1, 2, 3]) } }]);
    await bed.run(50);
    expect(follower.stateStats.staleRefused).toBe(before + 1);
    expect(follower.stateStats.malformed).toBe(1);
    await bed.settle(follower.map.put("still", text("fine")));
  });

  it("a master that leaves gracefully hands over at once: the next serves without waiting for the lease the members gave the one that left", async () => {
    const members = await cluster(3, 17);
    const master = members.find((m) => m.isMaster())!;
    const rest = members.filter((m) => m !== master);
    // The members heard from the master just now (their answers carry its lease probes).
    await bed.settle(rest[0]!.map.put("before", text("1")));
    const start = bed.net.clock.now();
    void master.leave();
    const next = await bed.settle(rest[0]!.waitForElection());
    await bed.settle(rest[1]!.map.put("after", text("2")));
    // A failure timeout (the lease) is 500 ms here.
    expect(bed.net.clock.now() - start).toBeLessThan(100);
    expect(rest.filter((m) => m.isMaster()).map((m) => m.id)).toEqual([next.id]);
  });

  it("elects the highest weight, follows run-time weight changes, and tells masterChanged listeners", async () => {
    const [a, b, c] = await cluster(3, 15);
    const first = a.getMaster()!;
    const masters: string[] = [];
    for (const x of [a, b, c]) x.on("masterChange", ({ master }) => masters.push(master.id));
    const heavier = [a, b, c].find((x) => x.id !== first.id)!;
    heavier.setWeight(10);
    await bed.run(500);
    for (const x of [a, b, c]) expect(x.getMaster()?.id).toBe(heavier.id);
    expect(heavier.isMaster()).toBe(true);
    expect(masters).toEqual([heavier.id, heavier.id, heavier.id]);
    expect(await bed.settle(a.waitForElection())).toMatchObject({ id: heavier.id, weight: 10 });
    await bed.settle(a.map.put("after-election", text("ok")));
  });

  it("compare-and-set, atomic batches, clear, and listeners in the map's order", async () => {
    const [a, b] = await cluster(2, 16);
    const seen: string[] = [];
    const marks = { insert: "+", update: "~", remove: "-" } as const;
    b.map.on("change", (change) => seen.push(`${marks[change.type]}${change.key}`));
    const iterator = b.map.changes();
    expect(await bed.settle(a.map.compareAndSet("c", 0, text("1")))).toBe(true);
    const version = a.map.getEntry("c")!.version;
    expect(await bed.settle(a.map.compareAndSet("c", version + 1, text("x")))).toBe(false);
    expect(await bed.settle(b.map.compareAndSet("c", version, text("2")))).toBe(true);
    await bed.settle(b.map.put("locked", text("b")));
    const lock = await bed.settle(b.map.lock("locked"));
    await expect(bed.settle(a.map.putAll({ free: text("f"), locked: text("l") }))).rejects.toMatchObject({ code: "LOCKED" });
    expect(a.map.has("free")).toBe(false);
    await expect(bed.settle(a.map.clear())).rejects.toMatchObject({ code: "LOCKED" });
    await bed.settle(lock.release());
    await bed.settle(a.map.putAll({ free: text("f"), locked: text("l") }));
    await bed.settle(a.map.clear());
    expect(b.map.size).toBe(0);
    expect(seen).toEqual(["+c", "~c", "+locked", "+free", "~locked", "-c", "-locked", "-free"]);
    const first = await iterator.next();
    expect(first.value).toMatchObject({ type: "insert", key: "c", resync: false });
    await iterator.return!();
  });

  it("an atomic batch with per-key versions: one key at another version refuses all of it", async () => {
    const [a, b] = await cluster(2, 21);
    await bed.settle(a.map.put("x", text("1")));
    const x = a.map.getEntry("x")!.version;
    await expect(bed.settle(b.map.putAll({ x: text("2"), y: text("2") }, { ifVersions: new Map([["x", x + 1], ["y", 0]]) }))).rejects.toMatchObject({ code: "VERSION_MISMATCH" });
    await expect(bed.settle(b.map.putAll({ y: text("2") }, { remove: ["x"], ifVersions: new Map([["x", x], ["y", x]]) }))).rejects.toMatchObject({ code: "VERSION_MISMATCH" });
    expect([a.map.has("y"), b.map.has("y"), b.map.has("x")]).toEqual([false, false, true]);
    await bed.settle(b.map.putAll({ y: text("2") }, { remove: ["x"], ifVersions: new Map([["x", x], ["y", 0]]) }));
    expect([a.map.has("x"), new TextDecoder().decode(a.map.get("y") as Uint8Array)]).toEqual([false, "2"]);
    // A version on a key the batch does not change would be checked by no one: refused at once.
    await expect(b.map.putAll({ y: text("3") }, { ifVersions: new Map([["x", 0]]) })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", path: ["ifVersions", "x"] });
  });

  it("lock waiters are served in order; locks are not re-entrant; a released handle's token is refused", async () => {
    const [a, b, c] = await cluster(3, 17);
    const held = await bed.settle(a.map.lock("q"));
    const order: string[] = [];
    const waitB = b.map.lock("q", { timeoutMs: 5_000 }).then((h) => {
      order.push("b");
      return h;
    });
    await bed.run(20);
    const waitC = c.map.lock("q", { timeoutMs: 5_000 }).then((h) => {
      order.push("c");
      return h;
    });
    await bed.run(20);
    // Not re-entrant: another task of the holder queues behind it (here), it does not get the lock too.
    expect(await bed.settle(a.map.tryLock("q"))).toBeUndefined();
    await expect(bed.settle(a.map.lock("q", { timeoutMs: 50 }))).rejects.toMatchObject({ code: "TIMEOUT" });
    await bed.settle(held.release());
    const hb = await bed.settle(waitB);
    await expect(bed.settle(a.map.put("q", text("late"), { lock: held }))).rejects.toMatchObject({ code: "LOCKED" });
    await bed.settle(hb[Symbol.asyncDispose]());
    const hc = await bed.settle(waitC);
    expect(order).toEqual(["b", "c"]);
    expect(hc.fencingToken).toBeGreaterThan(hb.fencingToken);
    await expect(bed.settle(c.map.put("other", text("x"), { lock: hc }))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await bed.settle(hc.release());
    await expect(bed.settle(c.map.put("q", text("stale"), { lock: hc }))).rejects.toMatchObject({ code: "STALE_TOKEN" });
    const timedOut = await bed.settle(b.map.lock("z")).then(() => bed.settle(c.map.lock("z", { timeoutMs: 100 })).catch((e: unknown) => e));
    expect(isBlazeError(timedOut, "TIMEOUT")).toBe(true);
  });

  it("renews leases; a write times out with TIMEOUT when the coordinator is unreachable", async () => {
    const [a, b] = await cluster(2, 18, { state: { requestTimeoutMs: 400 } });
    const lock = await bed.settle(a.map.lock("r", { leaseMs: 300 }));
    await bed.run(200);
    await bed.settle(lock.renew(300));
    await bed.run(200);
    expect(b.map.getLock("r")?.fencingToken).toBe(lock.fencingToken);
    expect(lock.valid).toBe(true);
    const master = [a, b].find((x) => x.isMaster())!;
    const other = [a, b].find((x) => x !== master)!;
    bed.net.partition([`h${bed.channels.indexOf(master)}`], [`h${bed.channels.indexOf(other)}`]);
    const error = await bed.settle(other.map.put("t", text("x"))).catch((e: unknown) => e);
    expect(isBlazeError(error, "TIMEOUT")).toBe(true);
  });

  it("a member that restarts (same id, next incarnation) writes as its new run; its old run's entries go", async () => {
    const [a, b] = await cluster(2, 21);
    const member = [a, b].find((x) => !x.isMaster())!;
    const other = [a, b].find((x) => x !== member)!;
    await bed.settle(member.map.put("old-run", text("1"), { removeOnExit: true }));
    const firstRun = member.incarnation;
    await bed.settle(member.stop());
    await bed.settle(member.start());
    expect(member.incarnation).toBeGreaterThan(firstRun);
    await bed.settle(member.join());
    await bed.settle(member.map.put("new-run", text("2"), { removeOnExit: true }));
    await bed.run(500);
    for (const x of [member, other]) {
      expect(x.map.has("old-run")).toBe(false);
      expect(x.map.getEntry("new-run")?.owner).toEqual({ id: member.id, incarnation: member.incarnation });
    }
  });

  it.each([22, 23, 24, 25])("two groups formed apart merge on one side's history and take writes at once (seed %i)", async (seed) => {
    bed = new Bed(seed);
    const [a, b, c] = [await bed.spawn(), await bed.spawn(), await bed.spawn()];
    bed.net.partition(["h0"], ["h1", "h2"]);
    await bed.settle(Promise.all([a, b, c].map((x) => x.join())));
    // The side whose history is longer may or may not be the one whose master leads the merged group.
    const long = seed % 2 === 0 ? a : b;
    const short = long === a ? b : a;
    for (let i = 0; i < 3; i++) await bed.settle(long.map.put(`long${i}`, text("l")));
    await bed.settle(short.map.put("short", text("s")));
    bed.net.heal();
    await bed.run(1_000);
    for (const x of [a, b, c]) expect(x.getView()?.members.length).toBe(3);
    const lock = await bed.settle(c.map.lock("after-merge"), 3_000);
    await bed.settle(a.map.put("after-merge", text("ok")).catch(() => undefined), 3_000);
    await bed.settle(lock.release(), 3_000);
    const digest = (x: ClusterChannel) => x.map.keys().sort().join();
    expect(digest(b)).toBe(digest(a));
    expect(digest(c)).toBe(digest(a));
    // The side with the later term wins (then the longer history): all of one side's writes, none of the other's.
    expect(a.map.has("long2") !== a.map.has("short")).toBe(true);
  });

  it("another task of the holder queues behind it here, and gets the lock after its release, after earlier waiters", async () => {
    const [a, b] = await cluster(2, 31);
    const first = await bed.settle(a.map.lock("k"));
    const order: string[] = [];
    const secondOfA = a.map.lock("k", { timeoutMs: 5_000 }).then((h) => {
      order.push("a");
      return h;
    });
    await bed.run(20);
    const ofB = b.map.lock("k", { timeoutMs: 5_000 }).then((h) => {
      order.push("b");
      return h;
    });
    await bed.run(20);
    // Only one lock() of a key goes to the coordinator from a member: the second waits here, unseen.
    expect(a.map.getLock("k")?.fencingToken).toBe(first.fencingToken);
    await bed.settle(first.release());
    const hb = await bed.settle(ofB);
    expect(order).toEqual(["b"]);
    await bed.settle(hb.release());
    const ha = await bed.settle(secondOfA);
    expect(order).toEqual(["b", "a"]);
    expect(ha.fencingToken).toBeGreaterThan(hb.fencingToken);
    await bed.settle(ha.release());
  });

  it("an auto-renewed lock stays held past its lease; cut off, its lost signal aborts", async () => {
    const [a, b] = await cluster(2, 32, { state: { requestTimeoutMs: 400 } });
    const holder = a.isMaster() ? b : a;
    const lock = await bed.settle(holder.map.lock("r", { leaseMs: 300, autoRenew: true }));
    const lostAt: number[] = [];
    lock.lost.addEventListener("abort", () => lostAt.push(bed.net.clock.now()));
    await bed.run(1_000);
    expect(lock.valid).toBe(true);
    expect(holder.map.getLock("r")?.fencingToken).toBe(lock.fencingToken);
    const cutAt = bed.net.clock.now();
    bed.net.partition([`h${bed.channels.indexOf(a)}`], [`h${bed.channels.indexOf(b)}`]);
    await bed.run(600);
    expect(lostAt).toHaveLength(1);
    expect(lostAt[0]! - cutAt).toBeLessThanOrEqual(300);
    expect(lock.valid).toBe(false);
    expect(isBlazeError(lock.lost.reason, "STALE_TOKEN")).toBe(true);
    await expect(bed.settle(holder.map.lock("r", { autoRenew: true }))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("a lock lost before anyone looked at its lost signal: the signal, read afterwards, is aborted with the reason", async () => {
    const [a, b] = await cluster(2, 34, { state: { requestTimeoutMs: 400 } });
    const holder = a.isMaster() ? b : a;
    const lock = await bed.settle(holder.map.lock("r", { leaseMs: 300, autoRenew: true }));
    bed.net.partition([`h${bed.channels.indexOf(a)}`], [`h${bed.channels.indexOf(b)}`]);
    await bed.run(600);
    expect(lock.valid).toBe(false);
    expect(lock.lost.aborted).toBe(true);
    expect(isBlazeError(lock.lost.reason, "STALE_TOKEN")).toBe(true);
    expect((lock.lost.reason as Error).message).toContain("its lease ran out before it was renewed");
  });

  it("a release that fails during a failover leaves the handle held, and succeeds when tried again", async () => {
    const [a, b, c] = await cluster(3, 33, { state: { requestTimeoutMs: 300 } });
    const master = [a, b, c].find((x) => x.isMaster())!;
    const holder = [a, b, c].find((x) => x !== master)!;
    const lock = await bed.settle(holder.map.lock("f"));
    bed.net.partition([`h${bed.channels.indexOf(master)}`], [a, b, c].filter((x) => x !== master).map((x) => `h${bed.channels.indexOf(x)}`));
    const error = await bed.settle(lock.release()).catch((e: unknown) => e);
    expect(isBlazeError(error, "TIMEOUT")).toBe(true);
    expect(lock.released).toBe(false);
    await bed.run(1_500);
    await bed.settle(lock.release());
    expect(lock.released).toBe(true);
    for (const x of [a, b, c].filter((y) => y !== master)) expect(x.map.isLocked("f")).toBe(false);
  });

  it("a lock request given up on never leaves its member holding the lock, whenever the grant comes", async () => {
    const [a, b, c] = await cluster(3, 34, { state: { requestTimeoutMs: 300 } });
    const held = await bed.settle(a.map.lock("t"));
    const master = [a, b, c].find((x) => x.isMaster())!;
    const waiter = [b, c].find((x) => x !== master)!;
    const [waiterHost, masterHost] = [waiter, master].map((x) => `h${bed.channels.indexOf(x)}`) as [string, string];
    const controller = new AbortController();
    const given = waiter.map.lock("t", { signal: controller.signal, timeoutMs: 5_000 }).catch((e: unknown) => e);
    await bed.run(50);
    // Its withdrawal cannot reach the master yet: the master grants it the lock once a releases it.
    bed.net.setLink(waiterHost, masterHost, { loss: 1 });
    controller.abort();
    expect(isBlazeError(await bed.settle(given), "ABORTED")).toBe(true);
    const released = held.release({ timeoutMs: 5_000 });
    await bed.run(300);
    expect(waiter.map.getLock("t")?.holder.id).toBe(waiter.id);
    bed.net.clearLink(waiterHost, masterHost);
    await bed.settle(released);
    await bed.run(1_000);
    // The withdrawal, sent until the master confirmed it, released the grant: the lock is free everywhere.
    for (const x of [a, b, c]) expect(x.map.isLocked("t")).toBe(false);
    expect(waiter.stateStats.cancelsSent).toBe(1);
    expect(await bed.settle(a.map.tryLock("t"))).toBeDefined();
  });

  it("rejects invalid state options naming the field", () => {
    bed = new Bed(19);
    expect(() => new ClusterChannel({ state: { quorum: "yes" as unknown as boolean } })).toThrow(/"state\.quorum"/);
    expect(() => new ClusterChannel({ state: { leaseMs: -1 } })).toThrow(/"state\.leaseMs"/);
  });
});
