/**
 * One member of a cluster under test/hosts/cluster-jepsen.ts: it joins group "g" of a cluster channel in
 * quorum mode, runs a workload of unique writes and lock → fenced write → release cycles, and prints one
 * JSON line (a {@link JepsenEvent}) per event — every operation with its outcome, and when this member
 * was master. It obeys commands on stdin, one a line: `restart` (stop the channel and start it again:
 * same id, next incarnation), `quiesce` (end the workload), `final` (print the state), `exit`.
 * Usage: `node --import tsx cluster-jepsen-member.ts '<JepsenMemberConfig as JSON>'`.
 */
import { createInterface } from "node:readline";
import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import type { LockHandle, MapValue } from "../../src/cluster/replicated-map.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { detectRuntime, limitLifetime, type MemberBaseConfig, memberChannelOptions } from "./runtime-host.ts";

export interface JepsenMemberConfig extends MemberBaseConfig {
  /** The size of the cluster: the workload starts once a view this large has its master. */
  readonly members: number;
  /** The lock keys the members contend for. */
  readonly lockKeys: number;
  /** Each operation gives up after this long. */
  readonly operationTimeoutMs: number;
  /** The workload's choices (leases, keys, pauses). */
  readonly seed: number;
}

/** What a member prints. `at` is wall-clock ms (with a fraction), comparable across processes of one machine. */
export type JepsenEvent =
  | { readonly type: "started"; readonly id: string; readonly at: number }
  /** This member became master (`on`), or stopped being one. */
  | { readonly type: "master"; readonly on: boolean; readonly at: number }
  | { readonly type: "write"; readonly key: string; readonly value: string; readonly version: number; readonly at: number }
  | { readonly type: "writeFailed"; readonly key: string; readonly value: string; readonly error: string; readonly at: number }
  | { readonly type: "grant"; readonly key: string; readonly token: number; readonly at: number }
  | { readonly type: "lockFailed"; readonly key: string; readonly error: string; readonly at: number }
  | { readonly type: "fenced"; readonly key: string; readonly value: string; readonly token: number; readonly at: number }
  | { readonly type: "released"; readonly key: string; readonly token: number; readonly at: number }
  | { readonly type: "lost"; readonly key: string; readonly token: number; readonly at: number }
  /** A write this member showed its application while it was master (committed there). */
  | { readonly type: "shown"; readonly key: string; readonly value: string; readonly at: number }
  | { readonly type: "restarted"; readonly incarnation: number; readonly at: number }
  | { readonly type: "quiet"; readonly at: number }
  | {
      readonly type: "final";
      readonly at: number;
      readonly ready: boolean;
      readonly entries: ReadonlyArray<readonly [string, string, number]>;
      readonly locks: ReadonlyArray<readonly [string, string, number]>;
      readonly appliedRequesters: number;
    }
  | { readonly type: "error"; readonly message: string };

const now = () => performance.timeOrigin + performance.now();
const print = (event: JepsenEvent) => console.log(JSON.stringify(event));
const describe = (error: unknown) => (error instanceof Error ? `${(error as { code?: string }).code ?? error.name}: ${error.message}` : String(error));
const encode = (text: string) => new TextEncoder().encode(text);
const decode = (value: MapValue) => (value instanceof Uint8Array ? new TextDecoder().decode(value) : JSON.stringify(value));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as JepsenMemberConfig;
  const channel = new ClusterChannel({ ...memberChannelOptions(config, host), state: { quorum: true, requestTimeoutMs: config.operationTimeoutMs } });
  const giveUp = limitLifetime(host, channel, config);
  const random = new SeededRandom(config.seed);
  channel.on("error", (event) => {
    // A socket's error while its host's link is down is the test's doing, not a fault.
    if (event.stage !== "transport") print({ type: "error", message: `${event.stage}: ${describe(event.error)}` });
  });
  channel.map.on("change", (change) => {
    if (!change.resync && change.type !== "remove" && change.key.startsWith("w/") && channel.isMaster()) print({ type: "shown", key: change.key, value: decode(change.value), at: now() });
  });
  // When this member is master, as it says itself: sampled often enough to see any overlap of two.
  let master = false;
  setInterval(() => {
    const on = channel.state === "started" && channel.isMaster();
    if (on !== master) print({ type: "master", on, at: now() });
    master = on;
  }, 2);

  const untilWhole = async () => {
    for (;;) {
      if ((channel.getView("g")?.members.length ?? 0) >= config.members) {
        await channel.waitForElection({ timeoutMs: 30_000 });
        if ((channel.getView("g")?.members.length ?? 0) >= config.members) return;
      }
      await sleep(20);
    }
  };
  try {
    await channel.join({ timeoutMs: 60_000 });
    await untilWhole();
  } catch (error) {
    print({ type: "error", message: `join: ${describe(error)}` });
    await giveUp();
  }
  print({ type: "started", id: channel.id, at: now() });

  let going = true;
  let restarting = false;
  const timeoutMs = config.operationTimeoutMs;
  const writes = async () => {
    for (let n = 0; going; n++) {
      await sleep(5 + random.nextInt(20));
      if (restarting || !channel.ready) continue;
      const key = `w/${config.name}/${n}`;
      const value = `v${n}`;
      try {
        await channel.map.put(key, encode(value), { timeoutMs });
        print({ type: "write", key, value, version: channel.map.getEntry(key)?.version ?? -1, at: now() });
      } catch (error) {
        print({ type: "writeFailed", key, value, error: describe(error), at: now() });
      }
    }
  };
  const locks = async () => {
    for (let n = 0; going; n++) {
      await sleep(5 + random.nextInt(30));
      if (restarting || !channel.ready) continue;
      const key = `L${random.nextInt(config.lockKeys)}`;
      let lock: LockHandle;
      try {
        lock = await channel.map.lock(key, { timeoutMs: random.nextInt(2) === 0 ? 100 : timeoutMs, leaseMs: random.nextInt(2) === 0 ? 0 : 2 * timeoutMs });
      } catch (error) {
        print({ type: "lockFailed", key, error: describe(error), at: now() });
        continue;
      }
      print({ type: "grant", key, token: lock.fencingToken, at: now() });
      const value = `${config.name}:${n}:${lock.fencingToken}`;
      try {
        await channel.map.put(key, encode(value), { lock, timeoutMs });
        print({ type: "fenced", key, value, token: lock.fencingToken, at: now() });
      } catch (error) {
        print({ type: "writeFailed", key, value, error: describe(error), at: now() });
      }
      // A release that fails (a failover, a cut) leaves the lock held: again, while it is ours.
      while (!lock.released && !lock.lost.aborted && channel.state === "started") {
        await lock.release({ timeoutMs }).catch(() => sleep(50));
      }
      print({ type: lock.released ? "released" : "lost", key, token: lock.fencingToken, at: now() });
    }
  };
  const lanes = Promise.all([writes(), locks()]);

  for await (const line of createInterface({ input: process.stdin })) {
    const command = line.trim();
    if (command === "restart" && !restarting) {
      restarting = true;
      await channel.stop();
      await sleep(100 + random.nextInt(500));
      await channel.start();
      print({ type: "restarted", incarnation: channel.incarnation, at: now() });
      channel.addToGroup("g", { timeoutMs: 60_000 }).catch((error: unknown) => print({ type: "error", message: `rejoin: ${describe(error)}` }));
      restarting = false;
    } else if (command === "quiesce") {
      going = false;
      void lanes.then(() => print({ type: "quiet", at: now() }));
    } else if (command === "final") {
      const entries = channel.map
        .keys()
        .sort()
        .map((key) => [key, decode(channel.map.get(key)!), channel.map.getEntry(key)!.version] as const);
      const locks = channel.map.locks().map((l) => [l.key, l.holder.id, l.fencingToken] as const);
      print({ type: "final", at: now(), ready: channel.ready, entries, locks, appliedRequesters: channel.stateStats.appliedRequesters });
    } else if (command === "exit") {
      await channel.shutDown().catch(() => undefined);
      host.exit(0);
    }
  }
}

await main();
