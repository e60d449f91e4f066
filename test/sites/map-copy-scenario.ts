import type { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import type { CopyStamp } from "../../src/relay/copied-map.ts";
import { compareStamps } from "../../src/relay/copied-map.ts";
import type { MapCopyStats } from "../../src/relay/map-copy.ts";
import type { RelayOptions } from "../../src/relay/options.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { RELAY_TIMING, type SiteProc, SitesSim } from "./sites-sim.ts";

/**
 * Seeded runs of the map's copy between two sites over the simulated bus: members of both sites write
 * and remove a few keys (so that both sites write one key at nearly the same time) while the seed
 * picks a fault — bus loss, a cut of one site off the bus (shorter or longer than the site timeout),
 * a site's gateway crashing mid-copy, or several — and a skew between the sites' wall clocks. Once
 * the writes stop and the bus is whole, every member of every site must hold the same map, entries
 * and tombstones with their stamps, and for every key the write with the greatest stamp: no
 * acknowledged write lost to an older one, nothing in the map that nobody wrote.
 */

export const FAULTS = ["calm", "bus-loss", "short-cut", "long-cut", "gateway-crash", "gateway-crash+loss"] as const;
export type MapFault = (typeof FAULTS)[number];

/** The copy's timing in the simulations: repair every half second, tombstones kept a minute. */
export const MAP_TIMING = { digestIntervalMs: 500, tombstoneMs: 60_000 } as const;

export interface MapScenarioResult {
  readonly fault: MapFault;
  readonly writes: number;
  readonly acked: number;
  /** Keys both sites wrote within 50 ms of each other. */
  readonly concurrent: number;
  readonly stats: MapCopyStats;
  readonly convergedAfterMs: number;
}

interface Write {
  readonly key: string;
  readonly site: string;
  readonly value: string | undefined;
  readonly at: number;
  stamp: CopyStamp | undefined;
  settled: boolean;
}

/** Starts two sites of `size` members with the map copied; resolves once every member's map is ready and both sites are up. */
export async function mapSites(
  seed: number,
  options: { sites?: readonly string[]; size?: number; busLoss?: number; skewMs?: number; map?: Partial<NonNullable<RelayOptions["map"]>> } = {},
): Promise<SitesSim> {
  const sim = new SitesSim(seed, { busLoss: options.busLoss ?? 0 });
  const sites = options.sites ?? ["eu", "us"];
  // The first site's clock is right; each next one is `skewMs` further off.
  for (const [s, site] of sites.entries()) {
    const skew = s * (options.skewMs ?? 0);
    for (let i = 0; i < (options.size ?? 3); i++) {
      await sim.spawn(site, `h${i}`, { map: { ...MAP_TIMING, wallClock: () => 1_000_000 + sim.now + skew, ...options.map } });
    }
  }
  await sim.runUntil(() => sites.every((site) => sim.siteAgreed(site)) && sim.sitesUp(sites) && sim.running().every((p) => cluster(p).ready), 15_000, "the sites up, maps ready");
  return sim;
}

export function cluster(proc: SiteProc): ClusterChannel {
  return proc.relay.group as ClusterChannel;
}

/** A member's map as the copy compares it: key → stamp and value (or tombstone), sorted. */
export function mapState(proc: SiteProc): string {
  return proc.relay.map
    .stamped()
    .map((e) => `${e.key}=${e.removed ? "×" : new TextDecoder().decode(e.value)}@${e.time}/${e.site}`)
    .sort()
    .join(" ");
}

/** Every running member of every site holds the same map. */
export function converged(sim: SitesSim): boolean {
  const states = new Set(sim.running().map(mapState));
  return states.size === 1;
}

export function sumStats(all: ReadonlyArray<MapCopyStats | undefined>): MapCopyStats {
  const sum: MapCopyStats = { shipped: 0, pushed: 0, digests: 0, applied: 0, superseded: 0, deferred: 0, refused: 0, tooLarge: 0, throttled: 0 };
  for (const stats of all) if (stats !== undefined) for (const key of Object.keys(sum) as Array<keyof MapCopyStats>) sum[key] += stats[key];
  return sum;
}

export async function runMapScenario(seed: number): Promise<MapScenarioResult> {
  const random = new SeededRandom(`map-${seed}`);
  const fault = FAULTS[Math.floor(random.next() * FAULTS.length)]!;
  const busLoss = fault === "bus-loss" || fault === "gateway-crash+loss" ? 0.1 + random.next() * 0.2 : 0;
  const skewMs = Math.round((random.next() - 0.5) * 100);
  const sim = await mapSites(seed, { size: 3 + Math.floor(random.next() * 2), busLoss, skewMs });
  const gatewayStats: Array<MapCopyStats | undefined> = [];
  try {
    const keys = Array.from({ length: 6 }, (_, i) => `k${i}`);
    const writes: Write[] = [];
    const start = sim.now;
    const durationMs = 1_500;
    const faultAt = start + 300 + random.next() * 600;
    let faulted = false;
    let n = 0;
    const cutSite = random.next() < 0.5 ? "eu" : "us";
    const crashSite = random.next() < 0.5 ? "eu" : "us";
    while (sim.now - start < durationMs) {
      if (!faulted && sim.now >= faultAt) {
        faulted = true;
        if (fault === "short-cut") {
          sim.note(`cut ${cutSite} briefly`);
          sim.bus.disconnect(cutSite);
          sim.clock.setTimer(RELAY_TIMING.siteTimeoutMs / 3, () => sim.bus.reconnect(cutSite));
        } else if (fault === "long-cut") {
          sim.note(`cut ${cutSite} past the site timeout`);
          sim.bus.disconnect(cutSite);
          sim.clock.setTimer(RELAY_TIMING.siteTimeoutMs * 1.5, () => sim.bus.reconnect(cutSite));
        } else if (fault.startsWith("gateway-crash")) {
          const gateway = sim.gateway(crashSite);
          if (gateway !== undefined) {
            gatewayStats.push(gateway.relay.stats.mapCopy);
            sim.crash(gateway);
          }
        }
      }
      // A write by a running member of either site; both sites write the same few keys.
      const writers = sim.running().filter((p) => cluster(p).ready);
      const writer = writers[Math.floor(random.next() * writers.length)];
      if (writer !== undefined) {
        const key = keys[Math.floor(random.next() * keys.length)]!;
        const remove = random.next() < 0.2;
        const value = remove ? undefined : `${writer.site}${writer.index}:${++n}`;
        const write: Write = { key, site: writer.site, value, at: sim.now, stamp: undefined, settled: false };
        writes.push(write);
        const done = value === undefined ? writer.relay.map.remove(key, { timeoutMs: 5_000 }) : writer.relay.map.put(key, new TextEncoder().encode(value), { timeoutMs: 5_000 });
        done.then(
          (stamp) => void (write.stamp = stamp),
          () => undefined,
        ).finally(() => (write.settled = true));
      }
      await sim.run(5 + Math.floor(random.next() * 20));
    }
    // Writes stop and settle (acknowledged, refused or timed out); the bus is whole again (a cut heals on its timer).
    await sim.runUntil(() => writes.every((w) => w.settled), 10_000, `seed ${seed}: every write settles`);
    const convergedAfterMs = await sim
      .runUntil(() => converged(sim) && sim.sitesUp(["eu", "us"]), 30_000, `seed ${seed} (${fault}): the sites' maps converge`, 10)
      .catch((error: Error) => {
        const members = sim.running().map((p) => `${p.site}${p.index}${p.relay.isGateway ? "*" : ""}: ${mapState(p)} ${JSON.stringify(p.relay.stats.mapCopy ?? {})}`);
        throw new Error(`${error.message}\n${members.join("\n")}`);
      });
    await sim.run(MAP_TIMING.digestIntervalMs * 2);
    const states = sim.running().map((p) => `${p.site}${p.index}: ${mapState(p)}`);
    if (!converged(sim)) throw new Error(`seed ${seed}: the maps differ again after converging\n${states.join("\n")}`);

    // The merge rule: every key holds the greatest stamp acknowledged for it, or a greater one.
    const acked = writes.filter((w) => w.stamp !== undefined);
    const final = new Map(sim.running()[0]!.relay.map.stamped().map((e) => [e.key, e]));
    const written = new Set(writes.map((w) => `${w.key}=${w.value ?? "×"}`));
    for (const key of keys) {
      const ofKey = acked.filter((w) => w.key === key).sort((a, b) => compareStamps(a.stamp!, b.stamp!));
      const latest = ofKey.at(-1);
      const entry = final.get(key);
      if (latest === undefined) continue;
      if (entry === undefined) throw new Error(`seed ${seed}: "${key}" is gone, but a write of it was acknowledged (${latest.value ?? "removal"} @${latest.stamp!.time}/${latest.stamp!.site})`);
      const cmp = compareStamps(entry, latest.stamp!);
      if (cmp < 0) throw new Error(`seed ${seed}: "${key}" holds @${entry.time}/${entry.site}, older than the acknowledged @${latest.stamp!.time}/${latest.stamp!.site}`);
      const value = entry.removed ? "×" : new TextDecoder().decode(entry.value);
      if (cmp === 0 && value !== (latest.value ?? "×")) throw new Error(`seed ${seed}: "${key}" holds ${value} with the stamp of ${latest.value ?? "a removal"}`);
      if (!written.has(`${key}=${value}`)) throw new Error(`seed ${seed}: "${key}" holds ${value}, which nobody wrote`);
    }
    // Nothing went wrong inside activeblaze meanwhile.
    for (const proc of sim.running()) {
      const internal = proc.errors.filter((e) => e.includes("INTERNAL_ERROR"));
      if (internal.length > 0) throw new Error(`seed ${seed}: ${proc.site}${proc.index} reported ${internal.join("; ")}`);
    }
    let concurrent = 0;
    for (const key of keys) {
      const eu = writes.filter((w) => w.key === key && w.site === "eu");
      const us = writes.filter((w) => w.key === key && w.site === "us");
      if (eu.some((a) => us.some((b) => Math.abs(a.at - b.at) <= 50))) concurrent++;
    }
    gatewayStats.push(...sim.running().map((p) => p.relay.stats.mapCopy));
    return { fault, writes: writes.length, acked: acked.length, concurrent, stats: sumStats(gatewayStats), convergedAfterMs };
  } catch (error) {
    if (error instanceof Error) error.message += `\n${sim.log.slice(-30).join("\n")}`;
    throw error;
  } finally {
    await sim.close();
  }
}
