/**
 * One member of a cluster over real UDP, for test/udp-cluster.test.ts. The same file runs under Node
 * (through tsx), Bun and Deno (`--unstable-net`): it picks its runtime's adapter, joins group "g" of a
 * cluster channel on the given multicast group, port and cluster, and prints one JSON line (a
 * {@link ClusterMemberEvent}) per event. Usage: `<runtime> cluster-member.ts '<ClusterMemberConfig as JSON>'`.
 *
 * Once a view of `members` members is installed and its election is over, every member seeds the map:
 * `seed/<name>` (kept when it leaves), `eph/<name>` (removed when it leaves) and the lock `held/<name>`
 * (freed when it leaves). Then, as configured, it
 * - writes a stream of acknowledged puts `w/<n>` = `v<n>` (`write.lanes` in flight at a time);
 * - runs a loop of lock `L`, put `L` under the lock (a lock guards the writes of its own key), release;
 * - queues for another member's lock `held/<name>` and holds it once granted;
 * and ends each of these with the marker `done/<name>` once it has gone on for `afterFailover` steps past
 * a change of coordinator (or after `maxMs`). A member that finds every marker of `finishers` in its map
 * prints its final map and lock table: nothing is written after the last marker, so every replica prints
 * the same state if they agree. It exits on its own after `lifetimeMs`, whatever happens.
 */
import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import type { LockHandle, MapValue } from "../../src/cluster/replicated-map.ts";
import { detectRuntime, limitLifetime, type MemberBaseConfig, memberChannelOptions } from "./runtime-host.ts";

export interface ClusterMemberConfig extends MemberBaseConfig {
  readonly weight: number;
  /** The size of the cluster: seeding waits for a view this large. */
  readonly members: number;
  /** The members that write a `done/<name>` marker; the final state is printed once all of them did. */
  readonly finishers: readonly string[];
  /** A stream of acknowledged puts, `lanes` of them in flight at a time. */
  readonly write?: { readonly lanes: number; readonly afterFailover: number; readonly maxMs: number };
  /** A loop of lock `L`, put `L` under the lock, release. */
  readonly lockLoop?: { readonly afterFailover: number; readonly maxMs: number };
  /** Queue for this lock (another member's `held/<name>`) and hold it. */
  readonly waitForLock?: string;
}

/** What a member prints, one JSON object a line. `at` is wall-clock ms (with a fraction), comparable across processes. */
export type ClusterMemberEvent =
  | { readonly type: "joined"; readonly runtime: string; readonly name: string; readonly id: string; readonly at: number }
  | { readonly type: "master"; readonly at: number; readonly master: string }
  | { readonly type: "seeded"; readonly at: number; readonly master: string }
  | { readonly type: "acked"; readonly key: string; readonly at: number }
  | { readonly type: "writeFailed"; readonly key: string; readonly at: number; readonly error: string }
  | { readonly type: "lockCycle"; readonly n: number; readonly token: number; readonly at: number }
  | { readonly type: "lockFailed"; readonly n: number; readonly at: number; readonly error: string }
  | { readonly type: "gotLock"; readonly key: string; readonly token: number; readonly at: number }
  | { readonly type: "done"; readonly what: "write" | "lockLoop" | "waitForLock"; readonly failoverSeen: boolean; readonly at: number }
  | {
      readonly type: "final";
      readonly at: number;
      readonly master: string;
      /** SHA-256 of the entries and locks below, as JSON. */
      readonly digest: string;
      /** [key, value as text, version, owner id], sorted by key. */
      readonly entries: ReadonlyArray<readonly [string, string, number, string]>;
      /** [key, holder id, fencing token], sorted by key. */
      readonly locks: ReadonlyArray<readonly [string, string, number]>;
      /** Non-resync updates of `w/` keys seen: a write applied twice would show here. */
      readonly rewrites: number;
      /** Requests this member sent again to a new coordinator. */
      readonly retried: number;
    }
  | { readonly type: "error"; readonly message: string };

const now = () => performance.timeOrigin + performance.now();
const print = (event: ClusterMemberEvent) => console.log(JSON.stringify(event));
const describe = (error: unknown) => (error instanceof Error ? `${(error as { code?: string }).code ?? error.name}: ${error.message}` : String(error));
const encode = (text: string) => new TextEncoder().encode(text);
const decode = (value: MapValue) => (value instanceof Uint8Array ? new TextDecoder().decode(value) : JSON.stringify(value));

async function main(): Promise<void> {
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as ClusterMemberConfig;
  const channel = new ClusterChannel({ ...memberChannelOptions(config, host), weight: config.weight });
  const giveUp = limitLifetime(host, channel, config);
  channel.on("error", (event) => print({ type: "error", message: `${event.stage}: ${describe(event.error)}` }));
  const masterName = () => channel.getMaster()?.name ?? "";

  // Failover: the coordinator changed after seeding.
  let seededMaster: string | undefined;
  let failedOver = false;
  channel.on("masterChange", ({ master }) => {
    print({ type: "master", at: now(), master: master.name });
    if (seededMaster !== undefined && master.name !== seededMaster) failedOver = true;
  });

  let rewrites = 0;
  let printedFinal = false;
  const printFinalOnceComplete = async () => {
    if (printedFinal || !config.finishers.every((name) => channel.map.has(`done/${name}`))) return;
    printedFinal = true;
    const entries = channel.map
      .keys()
      .sort()
      .map((key) => {
        const entry = channel.map.getEntry(key)!;
        return [key, decode(entry.value), entry.version, entry.owner.id] as const;
      });
    const locks = collectLocks(channel);
    const bytes = encode(JSON.stringify({ entries, locks }));
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
    print({ type: "final", at: now(), master: masterName(), digest, entries, locks, rewrites, retried: channel.stateStats.requestsRetried });
  };
  channel.map.on("change", (change) => {
    if (change.type === "update" && change.key.startsWith("w/") && !change.resync) rewrites++;
    if (change.key.startsWith("done/")) void printFinalOnceComplete();
  });

  try {
    await channel.join({ timeoutMs: Math.max(20_000, 10 * config.discoveryTimeoutMs) });
    print({ type: "joined", runtime: host.name, name: config.name, id: channel.id, at: now() });
    // The whole cluster, with its final coordinator elected, before seeding.
    for (;;) {
      if ((channel.getView("g")?.members.length ?? 0) >= config.members) {
        await channel.waitForElection({ timeoutMs: 20_000 });
        if ((channel.getView("g")?.members.length ?? 0) >= config.members) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await channel.map.put(`seed/${config.name}`, encode(config.name));
    await channel.map.put(`eph/${config.name}`, encode(config.name), { removeOnExit: true });
    await channel.map.lock(`held/${config.name}`, { timeoutMs: 10_000 });
    seededMaster = masterName();
    print({ type: "seeded", at: now(), master: seededMaster });
  } catch (error) {
    print({ type: "error", message: `join: ${describe(error)}; state ${JSON.stringify(channel.stateStats)}; view ${channel.getView("g")?.members.length}; master ${channel.isMaster()}` });
    await giveUp();
  }

  /** Runs `step` until `afterFailover` steps completed past a failover, or `maxMs`; then writes the marker. */
  const untilFailedOver = async (what: "write" | "lockLoop", lanes: number, limits: { afterFailover: number; maxMs: number }, step: () => Promise<void>) => {
    const endAt = performance.now() + limits.maxMs;
    let afterFailover = 0;
    const lane = async () => {
      while (afterFailover < limits.afterFailover && performance.now() < endAt) {
        const counts = failedOver;
        await step();
        if (counts) afterFailover++;
      }
    };
    await Promise.all(Array.from({ length: lanes }, lane));
    print({ type: "done", what, failoverSeen: failedOver, at: now() });
  };

  const tasks: Array<Promise<void>> = [];
  if (config.write !== undefined) {
    let next = 0;
    tasks.push(
      untilFailedOver("write", config.write.lanes, config.write, async () => {
        const n = next++;
        const key = `w/${n}`;
        try {
          await channel.map.put(key, encode(`v${n}`));
          print({ type: "acked", key, at: now() });
        } catch (error) {
          print({ type: "writeFailed", key, at: now(), error: describe(error) });
        }
      }),
    );
  }
  if (config.lockLoop !== undefined) {
    let n = 0;
    tasks.push(
      untilFailedOver("lockLoop", 1, config.lockLoop, async () => {
        const cycle = n++;
        let lock: LockHandle | undefined;
        try {
          lock = await channel.map.lock("L", { timeoutMs: 20_000 });
          await channel.map.put("L", encode(`cycle ${cycle} by ${config.name}`), { lock });
          await lock.release();
          print({ type: "lockCycle", n: cycle, token: lock.fencingToken, at: now() });
        } catch (error) {
          print({ type: "lockFailed", n: cycle, at: now(), error: describe(error) });
          await lock?.release().catch(() => undefined);
        }
      }),
    );
  }
  if (config.waitForLock !== undefined) {
    const key = config.waitForLock;
    tasks.push(
      (async () => {
        try {
          // Queue only behind its holder: asked before the holder took it, the lock would come here first.
          const until = now() + 20_000;
          while (!channel.map.isLocked(key) && now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
          const lock = await channel.map.lock(key, { timeoutMs: 30_000 });
          print({ type: "gotLock", key, token: lock.fencingToken, at: now() });
        } catch (error) {
          print({ type: "error", message: `waitForLock: ${describe(error)}` });
        }
        print({ type: "done", what: "waitForLock", failoverSeen: failedOver, at: now() });
      })(),
    );
  }
  await Promise.all(tasks);
  if (tasks.length > 0) {
    try {
      await channel.map.put(`done/${config.name}`, encode("done"));
    } catch (error) {
      print({ type: "error", message: `marker: ${describe(error)}` });
    }
  }
  await printFinalOnceComplete();
}

function collectLocks(channel: ClusterChannel): Array<readonly [string, string, number]> {
  // The lock table has no listing of its own: the keys a test locks are known.
  const keys = new Set(["L", ...channel.map.keys().flatMap((key) => (key.startsWith("seed/") ? [`held/${key.slice(5)}`] : []))]);
  return [...keys]
    .sort()
    .flatMap((key) => {
      const lock = channel.map.getLock(key);
      return lock === undefined ? [] : [[key, lock.holder.id, lock.fencingToken] as const];
    });
}

await main();
