import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import type { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import { RelayChannel } from "../../src/relay/relay-channel.ts";
import { compareEntries, compareStamps, type CopyStamp } from "../../src/relay/copied-map.ts";
import { encodeRelay } from "../../src/relay/relay-frames.ts";
import { converged, FAULTS, MAP_TIMING, mapSites, type MapScenarioResult, runMapScenario, sumStats } from "./map-copy-scenario.ts";
import type { SitesSim } from "./sites-sim.ts";

describe("the map copied between sites over a simulated NATS server", () => {
  it("converges at every member of both sites to the writes with the greatest stamps, through bus loss and cuts, gateway crashes mid-copy and skewed clocks (30 seeds)", async () => {
    const results: MapScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 30 }),
      run: async (seed) => {
        results.push(await runMapScenario(seed));
      },
      file: "test/sites/map-copy-sim.test.ts",
    });
    if (results.length >= 30) {
      // The seeds exercise what the test claims: every fault, writes of one key at both sites at once, the repair.
      for (const fault of FAULTS) expect(results.filter((r) => r.fault === fault).length).toBeGreaterThan(1);
      expect(results.filter((r) => r.concurrent > 0).length).toBeGreaterThan(20);
      expect(results.reduce((sum, r) => sum + r.stats.pushed, 0)).toBeGreaterThan(0);
      expect(results.reduce((sum, r) => sum + r.stats.applied, 0)).toBeGreaterThan(0);
      expect(results.reduce((sum, r) => sum + r.stats.superseded, 0)).toBeGreaterThan(0);
    }
  }, 600_000);
});

const text = (value: unknown) => (value instanceof Uint8Array ? new TextDecoder().decode(value) : undefined);
const bytes = (value: string) => new TextEncoder().encode(value);

describe("three sites", () => {
  it("converge when all three write the same keys, one of them cut off the bus past the site timeout meanwhile", async () => {
    const sim = await mapSites(49, { sites: ["ap", "eu", "us"], size: 2, skewMs: 15 });
    try {
      const writers = sim.running();
      const writes: Array<Promise<CopyStamp>> = [];
      const written: Array<{ key: string; value: string }> = [];
      let n = 0;
      const round = async () => {
        for (const writer of writers) {
          const key = `k${n % 4}`;
          const value = n % 7 === 0 ? "×" : `${writer.site}${writer.index}:${n}`;
          writes.push(value === "×" ? writer.relay.map.remove(key) : writer.relay.map.put(key, bytes(value)));
          written.push({ key, value });
          n++;
        }
        await sim.run(15);
      };
      for (let i = 0; i < 10; i++) await round();
      sim.bus.disconnect("ap");
      for (let i = 0; i < 40; i++) await round();
      await sim.runUntil(() => sim.running().every((p) => p.relay.getSites().filter((site) => !site.up).length === (p.site === "ap" ? 2 : 1)), 5_000, "ap down for the others, and they for ap");
      for (let i = 0; i < 10; i++) await round();
      sim.bus.reconnect("ap");
      const stamps = await settle(sim, writes);
      await sim.runUntil(() => converged(sim) && sim.sitesUp(["ap", "eu", "us"]), 10_000, "the three sites agree");
      // Every key holds its write with the greatest stamp.
      const final = new Map(sim.running()[0]!.relay.map.stamped().map((e) => [e.key, e]));
      for (const key of ["k0", "k1", "k2", "k3"]) {
        const latest = written.map((w, i) => ({ ...w, stamp: stamps[i]! })).filter((w) => w.key === key).sort((a, b) => compareStamps(a.stamp, b.stamp)).at(-1)!;
        const entry = final.get(key)!;
        expect({ time: entry.time, site: entry.site, value: entry.removed ? "×" : text(entry.value) }).toEqual({ ...latest.stamp, value: latest.value });
      }
      for (const proc of sim.running()) expect(proc.errors.filter((e) => e.includes("INTERNAL_ERROR"))).toEqual([]);
    } finally {
      await sim.close();
    }
  });
});

describe("the merge rule", () => {
  it("of two writes of one key at both sites, the greater stamp wins everywhere: the later wall clock, even when its write came first", async () => {
    // us's wall clock runs 200 ms ahead of eu's.
    const sim = await mapSites(41, { skewMs: 200 });
    try {
      const [eu0] = sim.running("eu");
      const [us0] = sim.running("us");
      // At once: neither site has the other's write when it stamps its own.
      const first = us0!.relay.map.put("k", bytes("us first"));
      const second = eu0!.relay.map.put("k", bytes("eu second"));
      const [usStamp, euStamp] = await settle(sim, [first, second]);
      await sim.runUntil(() => converged(sim) && sim.running().every((p) => p.relay.map.has("k")), 5_000, "both sites agree on k");
      expect(usStamp!.time).toBeGreaterThan(euStamp!.time);
      for (const proc of sim.running()) {
        expect(text(proc.relay.map.get("k"))).toBe("us first");
        expect(proc.relay.map.getEntry("k")!.stamp).toEqual(usStamp);
      }
    } finally {
      await sim.close();
    }
  });

  it("with equal times, the greater site name wins", async () => {
    const sim = await mapSites(42, { map: { wallClock: () => 5_000 } });
    try {
      const [eu0] = sim.running("eu");
      const [us0] = sim.running("us");
      const stamps = await settle(sim, [eu0!.relay.map.put("k", bytes("eu")), us0!.relay.map.put("k", bytes("us"))]);
      expect(stamps.map((s) => s.time)).toEqual([5_000, 5_000]);
      await sim.runUntil(() => converged(sim) && sim.running().every((p) => text(p.relay.map.get("k")) === "us"), 5_000, "us's write everywhere");
      // A later write at eu stamps past what it replaces, and wins although eu's clock stands still.
      const later = await settle(sim, [eu0!.relay.map.put("k", bytes("eu later"))]);
      expect(later[0]).toEqual({ time: 5_001, site: "eu" });
      await sim.runUntil(() => converged(sim) && sim.running().every((p) => text(p.relay.map.get("k")) === "eu later"), 5_000, "eu's later write everywhere");
    } finally {
      await sim.close();
    }
  });

  it("a removal is a tombstone, copied like a write, kept tombstoneMs and then gone at both sites; a later write of the key is copied again", async () => {
    const sim = await mapSites(43, { map: { tombstoneMs: 2_000 } });
    try {
      const [eu0] = sim.running("eu");
      const [us0] = sim.running("us");
      await settle(sim, [eu0!.relay.map.put("gone", bytes("v"))]);
      await sim.runUntil(() => sim.running().every((p) => p.relay.map.has("gone")), 5_000, "the write at us");
      await settle(sim, [us0!.relay.map.remove("gone")]);
      await sim.runUntil(() => sim.running().every((p) => !p.relay.map.has("gone") && p.relay.map.stamped().some((e) => e.key === "gone" && e.removed)), 5_000, "the tombstone at eu");
      expect(eu0!.relay.map.keys()).toEqual([]);
      expect(eu0!.relay.map.size).toBe(0);
      await sim.runUntil(() => sim.running().every((p) => p.relay.map.stamped().length === 0), 5_000, "the tombstones gone");
      await settle(sim, [eu0!.relay.map.put("gone", bytes("back"))]);
      await sim.runUntil(() => sim.running().every((p) => text(p.relay.map.get("gone")) === "back"), 5_000, "the new write at us");
    } finally {
      await sim.close();
    }
  });
});

describe("one stamp, two entries", () => {
  it("are ordered the same at every site: the removal, then the greater value bytes", () => {
    const entry = { key: "k", time: 7, site: "eu", removed: false, format: 0, value: bytes("b") };
    expect(compareEntries(entry, { ...entry, time: 8 })).toBeLessThan(0);
    expect(compareEntries(entry, { ...entry, site: "us" })).toBeLessThan(0);
    expect(compareEntries(entry, { ...entry, removed: true, value: new Uint8Array(0) })).toBeLessThan(0);
    expect(compareEntries(entry, { ...entry, value: bytes("a") })).toBeGreaterThan(0);
    expect(compareEntries(entry, { ...entry, value: bytes("ba") })).toBeLessThan(0);
    expect(compareEntries(entry, { ...entry, value: bytes("b") })).toBe(0);
  });

  it("converge: a second entry of one stamp, with another value, reaches every site through the digests (they hash values too)", async () => {
    const sim = await mapSites(48);
    try {
      const [us0] = sim.running("us");
      const [stamp] = await settle(sim, [us0!.relay.map.put("k", bytes("aaa"))]);
      await sim.runUntil(() => converged(sim) && sim.running().every((p) => p.relay.map.has("k")), 5_000, "k everywhere");
      // As if us had lost that write in a failover and written another in the same millisecond: eu gets it, us does not.
      const attacker = await sim.bus.factory()("attacker");
      attacker.publish("activeblaze.relay.site.eu", encodeRelay({ kind: "mapEntries", site: "us", entries: [{ key: "k", ...stamp!, removed: false, format: 0, value: bytes("zzz") }] }));
      await sim.runUntil(() => converged(sim) && sim.running().every((p) => text(p.relay.map.get("k")) === "zzz"), 5_000, "the greater value everywhere");
      expect(sim.running().every((p) => p.relay.map.getEntry("k")!.stamp.time === stamp!.time)).toBe(true);
    } finally {
      await sim.close();
    }
  });
});

describe("the copy's bounds", () => {
  it("a change applied from another site is not shipped back: once the sites agree, digests find nothing to push and nothing is written", async () => {
    const sim = await mapSites(44);
    try {
      const [eu0] = sim.running("eu");
      const [us0] = sim.running("us");
      await settle(sim, [eu0!.relay.map.put("a", bytes("1")), us0!.relay.map.put("b", bytes("2")), eu0!.relay.map.put("c", bytes("3"))]);
      await sim.runUntil(() => converged(sim) && sim.running().every((p) => p.relay.map.size === 3), 5_000, "both sites hold a, b and c");
      await sim.run(100);
      const before = sumStats(sim.running().map((p) => p.relay.stats.mapCopy));
      const versions = sim.running().map((p) => p.relay.map.getEntry("a")!.version);
      await sim.run(MAP_TIMING.digestIntervalMs * 6);
      const after = sumStats(sim.running().map((p) => p.relay.stats.mapCopy));
      expect(before.shipped).toBe(3);
      expect(before.applied).toBe(3);
      expect(after.digests).toBeGreaterThan(before.digests + 8);
      expect({ ...after, digests: 0 }).toEqual({ ...before, digests: 0 });
      expect(sim.running().map((p) => p.relay.map.getEntry("a")!.version)).toEqual(versions);
    } finally {
      await sim.close();
    }
  });

  it("locks are a site's own: a key locked at one site takes the other's write once it is unlocked (the digests repair it)", async () => {
    const sim = await mapSites(45);
    try {
      const [eu0] = sim.running("eu");
      const [us0] = sim.running("us");
      const lock = await settle(sim, [us0!.relay.map.lock("k")]);
      await settle(sim, [eu0!.relay.map.put("k", bytes("from eu"))]);
      await sim.run(1_000);
      expect(eu0!.relay.map.getEntry("k")).toBeDefined();
      expect(sim.running("us").every((p) => !p.relay.map.has("k"))).toBe(true);
      expect(sim.gateway("us")!.relay.stats.mapCopy!.deferred).toBeGreaterThan(0);
      expect((eu0!.relay.group as ClusterChannel).map.getLock("k")).toBeUndefined();
      await settle(sim, [lock[0]!.release()]);
      await sim.runUntil(() => converged(sim) && sim.running().every((p) => text(p.relay.map.get("k")) === "from eu"), 5_000, "eu's write at us after the unlock");
    } finally {
      await sim.close();
    }
  });

  it("copies only the keys under relay.map.keys; others stay in their site", async () => {
    const sim = await mapSites(46, { map: { keys: ["shared/"] } });
    try {
      const [eu0] = sim.running("eu");
      await settle(sim, [eu0!.relay.map.put("shared/a", bytes("1")), eu0!.relay.map.put("local/b", bytes("2"))]);
      await sim.runUntil(() => sim.running("us").every((p) => p.relay.map.has("shared/a")), 5_000, "shared/a at us");
      await sim.run(MAP_TIMING.digestIntervalMs * 3);
      expect(sim.running("us").every((p) => !p.relay.map.has("local/b"))).toBe(true);
      expect(sim.running("eu").every((p) => p.relay.map.has("local/b"))).toBe(true);
    } finally {
      await sim.close();
    }
  });

  it("refuses entries from the bus stamped far ahead, or of a site that is not up; the sites carry on", async () => {
    const sim = await mapSites(47);
    try {
      const attacker = await sim.bus.factory()("attacker");
      const subject = "activeblaze.relay.site.eu";
      const gateway = sim.gateway("eu")!;
      const unknownBefore = gateway.relay.stats.bus!.unknownSite;
      const entry = { key: "k", time: 1_000_000 + sim.now + 48 * 3_600_000, site: "us", removed: false, format: 0, value: bytes("future") };
      attacker.publish(subject, encodeRelay({ kind: "mapEntries", site: "us", entries: [entry] }));
      attacker.publish(subject, encodeRelay({ kind: "mapEntries", site: "mars", entries: [{ ...entry, time: 1, site: "mars" }] }));
      await sim.run(100);
      expect(gateway.relay.stats.mapCopy!.refused).toBe(1);
      expect(gateway.relay.stats.bus!.unknownSite).toBe(unknownBefore + 1);
      expect(sim.running().every((p) => !p.relay.map.has("k"))).toBe(true);
      // A flood of forged digests makes the gateway push its map at most every fifth of the digest interval.
      await settle(sim, [gateway.relay.map.put("held", bytes("x"))]);
      const pushedBefore = gateway.relay.stats.mapCopy!.pushed;
      for (let i = 0; i < 100; i++) attacker.publish(subject, encodeRelay({ kind: "mapDigest", site: "us", hashes: new Array<number>(128).fill(i + 1), reply: true }));
      await sim.run(50);
      expect(gateway.relay.stats.mapCopy!.pushed - pushedBefore).toBeLessThanOrEqual(1);
      expect(gateway.relay.stats.mapCopy!.throttled).toBeGreaterThanOrEqual(99);
      const [us0] = sim.running("us");
      await settle(sim, [us0!.relay.map.put("k", bytes("real"))]);
      await sim.runUntil(() => converged(sim) && sim.running().every((p) => text(p.relay.map.get("k")) === "real"), 5_000, "the real write everywhere");
      for (const proc of sim.running()) expect(proc.errors).toEqual([]);
    } finally {
      await sim.close();
    }
  });
});

describe("relay.map options", () => {
  it("fail fast naming the field", () => {
    const base = { groups: ["site"], relay: { site: "eu", bus: async () => Promise.reject(new Error("unused")) } };
    expect(() => new RelayChannel({ ...base, state: { quorum: true } })).toThrow(/"state": a relay channel has a replicated map only with relay.map/);
    expect(() => new RelayChannel({ ...base, relay: { ...base.relay, map: { tombstoneMs: 0 } } })).toThrow(/"relay\.map\.tombstoneMs"/);
    expect(() => new RelayChannel({ ...base, relay: { ...base.relay, map: { keys: [] } } })).toThrow(/"relay\.map\.keys"/);
    expect(() => new RelayChannel({ ...base, relay: { ...base.relay, map: { copy: true } as never } })).toThrow(/"relay\.map\.copy"/);
    expect(() => new RelayChannel(base).map).toThrow(/only with relay.map/);
  });
});

/** Runs the simulation until every promise settled; resolves with their values (rejects with the first error). */
async function settle<T>(sim: SitesSim, promises: ReadonlyArray<Promise<T>>): Promise<T[]> {
  let done = 0;
  const all = Promise.all(promises.map((p) => p.finally(() => done++)));
  all.catch(() => undefined);
  await sim.runUntil(() => done === promises.length, 10_000, "the writes settle");
  return all;
}
