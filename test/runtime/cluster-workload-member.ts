/**
 * One member of a cluster under a steady workload while its network is cut and healed, for
 * test/hosts/cluster.test.ts. The same file runs under Node (through tsx), Bun and Deno
 * (`--unstable-net`): it joins group "g" of a cluster channel and prints one JSON line (a
 * {@link WorkloadMemberEvent}) per event. Usage: `<runtime> cluster-workload-member.ts '<WorkloadMemberConfig as JSON>'`.
 *
 * Once a view of `members` members is installed and its election is over, it runs two lanes at once,
 * each bounded by timeouts so that a cut member keeps trying rather than hangs:
 * - writes: acknowledged puts `w/<name>/<n>` = `v<n>`, one at a time;
 * - locks: lock `L`, put `L` = `<name>:<n>:<token>` under the lock (fenced by its token), release.
 * Both stop `afterHealMs` after the member's view, having shrunk, is back to `members` members (or after
 * `maxMs`). Then it writes its marker `done/<name>`, and once every member's marker is in its map it
 * prints its state — again whenever the state changes after that, so that a replica brought up to
 * date later (a side merging) shows it. It exits on its own after `lifetimeMs`, whatever happens.
 */
import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import type { LockHandle, MapValue } from "../../src/cluster/replicated-map.ts";
import { detectRuntime, limitLifetime, type MemberBaseConfig, memberChannelOptions } from "./runtime-host.ts";

export interface WorkloadMemberConfig extends MemberBaseConfig {
  readonly weight: number;
  /** The size of the cluster: the workload waits for a view this large, and ends once it is back to it. */
  readonly members: number;
  /** The state map's quorum mode: a side without a majority refuses writes and lock grants. */
  readonly quorum: boolean;
  /** How long the workload goes on once the view, having shrunk, is whole again. */
  readonly afterHealMs: number;
  /** The workload's longest run, whatever happens. */
  readonly maxMs: number;
  /** Each write or lock operation gives up after this long. */
  readonly operationTimeoutMs: number;
}

/** What a member prints, one JSON object a line. `at` is wall-clock ms (with a fraction), comparable across processes. */
export type WorkloadMemberEvent =
  | { readonly type: "joined"; readonly name: string; readonly id: string; readonly at: number }
  | { readonly type: "started"; readonly at: number; readonly master: string }
  | { readonly type: "view"; readonly at: number; readonly members: readonly string[] }
  | { readonly type: "master"; readonly at: number; readonly master: string }
  | { readonly type: "acked"; readonly key: string; readonly value: string; readonly at: number }
  | { readonly type: "writeFailed"; readonly key: string; readonly at: number; readonly error: string }
  /** A lock cycle whose write under the lock was acknowledged. */
  | { readonly type: "lockCycle"; readonly n: number; readonly token: number; readonly at: number }
  | { readonly type: "lockFailed"; readonly n: number; readonly token?: number; readonly at: number; readonly error: string }
  | { readonly type: "stopped"; readonly at: number; readonly healed: boolean }
  | {
      readonly type: "state";
      readonly at: number;
      readonly master: string;
      /** [key, value as text], sorted by key. */
      readonly entries: ReadonlyArray<readonly [string, string]>;
      /** The holder id and fencing token of lock `L`, if held. */
      readonly lock?: readonly [string, number];
    }
  | { readonly type: "error"; readonly message: string };

const now = () => performance.timeOrigin + performance.now();
const print = (event: WorkloadMemberEvent) => console.log(JSON.stringify(event));
const describe = (error: unknown) => (error instanceof Error ? `${(error as { code?: string }).code ?? error.name}: ${error.message}` : String(error));
const encode = (text: string) => new TextEncoder().encode(text);
const decode = (value: MapValue) => (value instanceof Uint8Array ? new TextDecoder().decode(value) : JSON.stringify(value));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Between two operations of a lane: a steady load, not a flood of two cores. */
const PACE_MS = 10;

async function main(): Promise<void> {
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as WorkloadMemberConfig;
  const channel = new ClusterChannel({ ...memberChannelOptions(config, host), weight: config.weight, state: { quorum: config.quorum } });
  const giveUp = limitLifetime(host, channel, config);
  channel.on("error", (event) => print({ type: "error", message: `${event.stage}: ${describe(event.error)}` }));
  channel.on("masterChange", ({ master }) => print({ type: "master", at: now(), master: master.name }));

  // The workload ends `afterHealMs` after the view is whole again, once it has shrunk.
  let shrunk = false;
  let healedAt: number | undefined;
  channel.on("viewChange", ({ view }) => {
    print({ type: "view", at: now(), members: view.members.map((m) => m.name) });
    if (view.members.length < config.members) {
      shrunk = true;
      healedAt = undefined;
    } else if (shrunk && healedAt === undefined) healedAt = now();
  });

  const printState = () => {
    const entries = channel.map
      .keys()
      .sort()
      .map((key) => [key, decode(channel.map.get(key)!)] as const);
    const held = channel.map.getLock("L");
    print({ type: "state", at: now(), master: channel.getMaster()?.name ?? "", entries, ...(held === undefined ? {} : { lock: [held.holder.id, held.fencingToken] as const }) });
  };
  // Once every marker is in, the state is printed on every change (a merge can still bring one).
  let everyoneDone = false;
  const onChange = () => {
    everyoneDone ||= channel.map.keys().filter((key) => key.startsWith("done/")).length === config.members;
    if (everyoneDone) printState();
  };
  channel.map.on("change", onChange);
  channel.map.on("lock", onChange);
  channel.map.on("unlock", onChange);

  try {
    await channel.join({ timeoutMs: Math.max(20_000, 10 * config.discoveryTimeoutMs) });
    print({ type: "joined", name: config.name, id: channel.id, at: now() });
    for (;;) {
      if ((channel.getView("g")?.members.length ?? 0) >= config.members) {
        await channel.waitForElection({ timeoutMs: 20_000 });
        if ((channel.getView("g")?.members.length ?? 0) >= config.members) break;
      }
      await sleep(20);
    }
  } catch (error) {
    print({ type: "error", message: `join: ${describe(error)}` });
    await giveUp();
  }
  print({ type: "started", at: now(), master: channel.getMaster()?.name ?? "" });

  const endAt = now() + config.maxMs;
  const going = () => now() < endAt && (healedAt === undefined || now() < healedAt + config.afterHealMs);
  const timeoutMs = config.operationTimeoutMs;
  const writes = async () => {
    for (let n = 0; going(); n++) {
      const key = `w/${config.name}/${n}`;
      try {
        await channel.map.put(key, encode(`v${n}`), { timeoutMs });
        print({ type: "acked", key, value: `v${n}`, at: now() });
      } catch (error) {
        print({ type: "writeFailed", key, at: now(), error: describe(error) });
      }
      await sleep(PACE_MS);
    }
  };
  const locks = async () => {
    for (let n = 0; going(); n++) {
      let lock: LockHandle | undefined;
      try {
        lock = await channel.map.lock("L", { timeoutMs });
        await channel.map.put("L", encode(`${config.name}:${n}:${lock.fencingToken}`), { lock, timeoutMs });
        print({ type: "lockCycle", n, token: lock.fencingToken, at: now() });
      } catch (error) {
        print({ type: "lockFailed", n, ...(lock === undefined ? {} : { token: lock.fencingToken }), at: now(), error: describe(error) });
      }
      await lock?.release({ timeoutMs }).catch(() => undefined);
      await sleep(PACE_MS);
    }
  };
  await Promise.all([writes(), locks()]);
  print({ type: "stopped", at: now(), healed: healedAt !== undefined });
  // The marker is retried until it lands: the member may still be on the minority side.
  for (;;) {
    try {
      await channel.map.put(`done/${config.name}`, encode("done"), { timeoutMs });
      break;
    } catch (error) {
      print({ type: "error", message: `marker: ${describe(error)}` });
      await sleep(200);
    }
  }
  onChange();
}

await main();
