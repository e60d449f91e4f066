import { afterEach, describe, expect, it } from "vitest";
import { SimulatedNetwork } from "../transport/simulated-network.ts";
import { ClusterChannel } from "./cluster-channel.ts";
import type { ClusterChannelOptions } from "./options.ts";
import { BlazeMessage } from "../message/blaze-message.ts";

const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => queueMicrotask(resolve));
}

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
    let done = false;
    let value: T | undefined;
    let error: unknown;
    promise.then(
      (v) => {
        done = true;
        value = v;
      },
      (e: unknown) => {
        done = true;
        error = e;
      },
    );
    const start = this.net.clock.now();
    while (!done) {
      if (this.net.clock.now() - start > maxMs) throw new Error(`not settled within ${maxMs} ms`);
      this.net.clock.runFor(2);
      await flush();
    }
    if (error !== undefined) throw error;
    return value as T;
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
    await bed.settle(c.join());
    expect(c.map.size).toBe(1200);
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
});
