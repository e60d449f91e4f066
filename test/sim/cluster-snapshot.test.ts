import { describe, expect, it } from "vitest";
import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { TIMING } from "./cluster-scenario.ts";
import { flush } from "./sim-helpers.ts";

/**
 * Snapshots of many chunks on the simulated network, under loss, duplication and reordering: a member
 * joins a map of 2,000 entries (some 90 chunks of 4 KB) while another member writes, and — on most
 * seeds — the master sending it the snapshot crashes, or is cut off for a while, part way through the
 * transfer (after a number of chunks drawn from the seed), so that the next master brings the joiner
 * up. At the end every member is ready with the same entries (value and version), and the changes the
 * joiner's application was shown add up to the map it holds.
 */

const GROUP = "state";
const ENTRIES = 2_000;

interface Member {
  readonly host: string;
  readonly channel: ClusterChannel;
  running: boolean;
}

interface SnapshotRunResult {
  readonly fault: "crash" | "cut" | "none";
  readonly chunksBeforeFault: number;
  readonly chunksSent: number;
  readonly snapshotsInstalled: number;
}

async function runSnapshotScenario(seed: number): Promise<SnapshotRunResult> {
  const rng = new SeededRandom(seed);
  const net = new SimulatedNetwork({ seed, defaultLink: { loss: rng.next() * 0.05, duplicate: rng.next() * 0.05, reorder: rng.next() * 0.1 } });
  const clock = net.clock;
  const errors: string[] = [];
  const step = async (ms: number) => {
    const end = clock.now() + ms;
    while (clock.now() < end) {
      clock.runFor(Math.min(5, end - clock.now()));
      await flush();
    }
  };
  /** Steps until `done` holds (at most `ms`). */
  const until = async (done: () => boolean, ms: number, what: string) => {
    const end = clock.now() + ms;
    while (!done()) {
      if (clock.now() > end) throw new Error(`seed ${seed}: ${what} within ${ms} ms`);
      clock.runFor(0.05);
      await flush();
    }
  };
  const members: Member[] = [];
  const spawn = (host: string, weight: number): Member => {
    const channel = new ClusterChannel({
      name: host,
      transport: net.transportFactory(host),
      clock,
      random: net.random.fork(host),
      incarnation: members.length + 1,
      groups: [GROUP],
      weight,
      ...TIMING,
      state: { requestTimeoutMs: 2_000, snapshotChunkBytes: 4_096 },
    });
    const member: Member = { host, channel, running: true };
    channel.on("error", ({ error, stage }) => {
      if (member.running && stage !== "transport") errors.push(`${host} reported an error (${stage}): ${error.message}`);
    });
    members.push(member);
    return member;
  };
  const joined = async (member: Member) => {
    let ready = false;
    member.channel.join({ timeoutMs: 60_000 }).then(
      () => (ready = true),
      (error: unknown) => errors.push(`${member.host} failed to join: ${String(error)}`),
    );
    await until(() => ready || errors.length > 0, 30_000, `${member.host} ready`);
  };

  const master = spawn("a", 10);
  await joined(master);
  const next = spawn("b", 5);
  await joined(next);
  const writer = spawn("c", 0);
  await joined(writer);
  // The map: 2,000 entries of 100 B, written in batches by the master's application.
  let filled = false;
  void (async () => {
    for (let from = 0; from < ENTRIES; from += 50) {
      await master.channel.map.putAll(Array.from({ length: 50 }, (_, i) => [`e${from + i}`, new Uint8Array(100).fill((from + i + seed) & 0xff)] as const), { timeoutMs: 10_000 });
    }
    filled = true;
  })().catch((error: unknown) => errors.push(`filling failed: ${String(error)}`));
  await until(() => filled || errors.length > 0, 60_000, "the map filled");

  // Writes go on meanwhile, one at a time (some fail while masters change: only convergence counts).
  let writing = true;
  void (async () => {
    for (let n = 0; writing; n++) {
      await writer.channel.map.put(`w${n % 20}`, new Uint8Array([n & 0xff]), { timeoutMs: 1_000 }).catch(() => undefined);
      if (!writing) break;
    }
  })();

  // The joiner; its application's view of the map, from the changes it is shown.
  const joiner = spawn("j", 0);
  const shown = new Map<string, Uint8Array>();
  joiner.channel.map.on("change", (change) => {
    if (change.type === "remove") shown.delete(change.key);
    else shown.set(change.key, change.value as Uint8Array);
  });
  const sentBefore = master.channel.stateStats.snapshotChunksSent;
  const pick = rng.next();
  const fault = pick < 0.4 ? "crash" : pick < 0.8 ? "cut" : "none";
  const chunksBeforeFault = 1 + Math.floor(rng.next() * 60);
  let ready = false;
  joiner.channel.join({ timeoutMs: 60_000 }).then(
    () => (ready = true),
    (error: unknown) => errors.push(`the joiner failed to join: ${String(error)}`),
  );
  if (fault !== "none") {
    // Part way through the transfer (or at its end, when the map went in fewer chunks).
    await until(() => ready || master.channel.stateStats.snapshotChunksSent - sentBefore >= chunksBeforeFault, 30_000, "the transfer under way");
    if (fault === "crash") {
      master.running = false;
      net.crash(master.host);
    } else {
      net.isolate(master.host);
    }
  }
  await until(() => ready || errors.length > 0, 30_000, "the joiner ready");
  if (fault === "cut") {
    await step(1_000);
    net.heal();
  }
  writing = false;
  net.setDefaultLink({ loss: 0, duplicate: 0, reorder: 0 });
  await step(3_000);
  // A write after the dust settled reaches every member.
  const live = members.filter((m) => m.running);
  let last: unknown = "pending";
  writer.channel.map.put("last", new Uint8Array([1]), { timeoutMs: 5_000 }).then(
    () => (last = "ok"),
    (error: unknown) => (last = error),
  );
  await step(5_100);
  if (last !== "ok") errors.push(`the last write failed: ${String(last)} (${fault} after ${chunksBeforeFault} chunks; ${members.map((m) => `${m.host}${m.running ? "" : " crashed"}: master ${m.channel.getMaster()?.name}, ready ${m.channel.ready}, view ${m.channel.getMembers(GROUP).map((x) => x.name).join(",")}, ${JSON.stringify(m.channel.stateStats)}`).join("; ")})`);
  await step(500);

  expect(errors, `seed ${seed}`).toEqual([]);
  const digest = (channel: ClusterChannel) =>
    channel.map
      .keys()
      .sort()
      .map((key) => {
        const entry = channel.map.getEntry(key)!;
        return `${key}=${(entry.value as Uint8Array).join(",")}@${entry.version}`;
      })
      .join(";");
  const expected = digest(live[0]!.channel);
  for (const member of live) {
    expect(member.channel.ready, `seed ${seed}: ${member.host} ready`).toBe(true);
    expect(digest(member.channel), `seed ${seed}: ${member.host} holds what ${live[0]!.host} holds`).toBe(expected);
  }
  expect(joiner.channel.map.size, `seed ${seed}`).toBeGreaterThanOrEqual(ENTRIES);
  // What the joiner's application was shown adds up to what it holds.
  expect([...shown.keys()].sort(), `seed ${seed}`).toEqual(joiner.channel.map.keys().sort());
  for (const [key, value] of shown) expect(value, `seed ${seed}: ${key}`).toEqual(joiner.channel.map.get(key));
  const chunksSent = members.reduce((sum, m) => sum + m.channel.stateStats.snapshotChunksSent, 0);
  const snapshotsInstalled = joiner.channel.stateStats.snapshotsInstalled;
  for (const member of live) await member.channel.stop();
  return { fault, chunksBeforeFault, chunksSent, snapshotsInstalled };
}

describe("snapshots of many chunks on the simulated network", () => {
  it("bring a joiner to the map whatever master sends them, through crashes and cuts part way (loss, duplication, reordering; 16 seeds)", async () => {
    const results: SnapshotRunResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 16 }),
      run: async (seed) => {
        results.push(await runSnapshotScenario(seed));
      },
      file: "test/sim/cluster-snapshot.test.ts",
    });
    if (results.length >= 16) {
      // The runs did what they claim: transfers of many chunks, interrupted on most seeds.
      expect(results.filter((r) => r.fault !== "none").length).toBeGreaterThan(8);
      expect(Math.min(...results.map((r) => r.chunksSent))).toBeGreaterThan(60);
      expect(results.every((r) => r.snapshotsInstalled >= 1)).toBe(true);
    }
  }, 600_000);
});
