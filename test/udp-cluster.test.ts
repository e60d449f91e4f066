/**
 * Cluster channels over real UDP on loopback multicast, members as separate processes running
 * test/runtime/cluster-member.ts. Four members seed the replicated map (an entry kept on exit, one
 * removed on exit, a lock each); one writes a stream of acknowledged puts, one runs lock / write under
 * the lock / release cycles, one queues for the coordinator's lock. The coordinator is killed with
 * SIGKILL in the middle of it; the writer and the locker carry on at the new coordinator (what was in
 * flight is sent again, not lost), the waiting member gets the dead member's lock, and at the end every
 * survivor holds the same map and lock table, with every acknowledged write in it once. Run with four
 * Node members, and with a Node, a Bun and a Deno member among the four.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FAST_TIMING, freshNetwork, MemberProcess, now, outputs, randomInt, type Runtime, trackMembers } from "./members.ts";
import type { ClusterMemberConfig, ClusterMemberEvent } from "./runtime/cluster-member.ts";

const MEMBER = join("test", "runtime", "cluster-member.ts");

/** Members exit on their own after this long; tests kill them well before. */
const MEMBER_LIFETIME_MS = 150_000;
/** Starting a few tsx, Bun or Deno processes at once on two cores takes seconds. */
const START_TIMEOUT_MS = 60_000;
/** From the kill to every survivor's final state: detection, the new coordinator's sync, the rest of the streams. */
const FINISH_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 150_000;
/** Writes and lock cycles before the kill, and after the writer and the locker saw the new coordinator. */
const WRITES_BEFORE = 100;
const CYCLES_BEFORE = 5;
const WRITES_AFTER = 150;
const CYCLES_AFTER = 15;

type FinalEvent = Extract<ClusterMemberEvent, { type: "final" }>;

const running = trackMembers();

/** A running member; acknowledgements are left out of its output for failure messages (they are many). */
class Member extends MemberProcess<ClusterMemberEvent, ClusterMemberConfig> {
  constructor(runtime: Runtime, config: ClusterMemberConfig) {
    super(runtime, MEMBER, config, running, (line) => line.startsWith('{"type":"acked"'));
  }
}


/**
 * Four members: [0] the coordinator (the heaviest), killed; [1] the next heaviest, which takes over and
 * queues for [0]'s lock; [2] the writer; [3] the locker. `runtimes` says where each runs.
 */
async function killTheCoordinatorMidStream(runtimes: readonly [Runtime, Runtime, Runtime, Runtime], lanes: number): Promise<void> {
  const network = freshNetwork("udp-cluster");
  const names = runtimes.map((runtime, i) => `${runtime}-${i}`);
  const [victimName, successorName, writerName, lockerName] = names as [string, string, string, string];
  const roles: Array<Partial<ClusterMemberConfig>> = [
    { weight: 10 },
    { weight: 5, waitForLock: `held/${victimName}` },
    { weight: 0, write: { lanes, afterFailover: WRITES_AFTER, maxMs: 60_000 } },
    { weight: 0, lockLoop: { afterFailover: CYCLES_AFTER, maxMs: 60_000 } },
  ];
  const members = runtimes.map(
    (runtime, i) =>
      new Member(runtime, {
        ...network,
        ...FAST_TIMING,
        name: names[i]!,
        weight: 0,
        members: runtimes.length,
        finishers: [successorName, writerName, lockerName],
        lifetimeMs: MEMBER_LIFETIME_MS,
        ...roles[i],
      }),
  );
  const [victim, successor, writer, locker] = members as [Member, Member, Member, Member];
  const survivors = [successor, writer, locker];

  await Promise.all(members.map((m) => m.until(() => m.of("seeded").length > 0, START_TIMEOUT_MS, "seeding")));
  // Every member runs in the runtime it was started in, and all four agree on the heaviest as coordinator.
  for (const m of members) expect(m.of("joined")[0], m.output).toMatchObject({ runtime: m.runtime, name: m.name });
  for (const m of members) expect(m.of("seeded")[0]!.master, outputs(members)).toBe(victimName);
  // Kill in the middle of both streams, at a random moment.
  const seededAt = Math.max(...members.map((m) => m.of("seeded")[0]!.at));
  await writer.until(() => writer.of("acked").filter((e) => e.at > seededAt).length >= WRITES_BEFORE, 30_000, `${WRITES_BEFORE} writes`);
  await locker.until(() => locker.of("lockCycle").length >= CYCLES_BEFORE, 30_000, `${CYCLES_BEFORE} lock cycles`);
  await new Promise((resolve) => setTimeout(resolve, randomInt(0, 200)));
  expect(successor.of("gotLock"), "the coordinator's lock is granted only once it is dead").toEqual([]);
  const killedAt = now();
  victim.kill();

  await Promise.all(survivors.map((m) => m.until(() => m.of("final").length > 0, FINISH_TIMEOUT_MS, "final state")));
  const all = outputs(members);
  const finals = survivors.map((m) => m.of("final")[0]!);
  const [reference] = finals as [FinalEvent, ...FinalEvent[]];

  // Every survivor holds the same map and lock table, under the new coordinator.
  for (const final of finals) {
    expect(final.entries, all).toEqual(reference.entries);
    expect(final.locks, all).toEqual(reference.locks);
    expect(final.digest, all).toBe(reference.digest);
    expect(final.master, all).toBe(successorName);
    expect(final.rewrites, `a write applied twice\n${all}`).toBe(0);
  }
  const entries = new Map(reference.entries.map(([key, value, , owner]) => [key, { value, owner }]));
  const ids = new Map(members.map((m) => [m.name, m.of("joined")[0]!.id]));

  // The writer: nothing failed, it went on at the new coordinator, its in-flight writes were sent again,
  // and the map holds exactly the writes it saw acknowledged, each once (rewrites above).
  expect(writer.of("writeFailed"), all).toEqual([]);
  expect(writer.of("done")[0], all).toMatchObject({ what: "write", failoverSeen: true });
  const acked = writer.of("acked");
  const afterKill = acked.filter((e) => e.at > killedAt);
  expect(afterKill.length, all).toBeGreaterThanOrEqual(WRITES_AFTER);
  expect(writer.of("final")[0]!.retried, all).toBeGreaterThan(0);
  const written = [...entries.keys()].filter((key) => key.startsWith("w/")).sort();
  expect(written).toEqual(acked.map((e) => e.key).sort());
  for (const { key } of acked) expect(entries.get(key), key).toEqual({ value: `v${key.slice(2)}`, owner: ids.get(writerName) });

  // The locker: every cycle completed, fencing tokens grew across the coordinators, the lock is free.
  expect(locker.of("lockFailed"), all).toEqual([]);
  expect(locker.of("done")[0], all).toMatchObject({ what: "lockLoop", failoverSeen: true });
  const cycles = locker.of("lockCycle");
  expect(cycles.map((c) => c.n)).toEqual(cycles.map((_, i) => i));
  for (let i = 1; i < cycles.length; i++) expect(cycles[i]!.token, all).toBeGreaterThan(cycles[i - 1]!.token);
  expect(cycles.filter((c) => c.at > killedAt).length).toBeGreaterThanOrEqual(CYCLES_AFTER);
  expect(entries.get("L")?.value).toBe(`cycle ${cycles.at(-1)!.n} by ${lockerName}`);

  // The dead member: its plain entry stays, its removeOnExit entry and its lock went with it; the
  // member queued for that lock got it, after the kill, with a token above every earlier one.
  for (const name of names) expect(entries.get(`seed/${name}`)?.value, all).toBe(name);
  expect([...entries.keys()].filter((key) => key.startsWith("eph/")).sort()).toEqual(survivors.map((m) => `eph/${m.name}`).sort());
  const granted = successor.of("gotLock");
  expect(granted, all).toHaveLength(1);
  expect(granted[0]!.at).toBeGreaterThan(killedAt);
  expect(reference.locks).toEqual(
    [
      [`held/${victimName}`, ids.get(successorName)!, granted[0]!.token],
      ...survivors.map((m) => [`held/${m.name}`, ids.get(m.name)!, expect.any(Number)]),
    ].sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)),
  );
  expect(granted[0]!.token).toBeGreaterThan(Math.max(...cycles.filter((c) => c.at < killedAt).map((c) => c.token)));
  for (const m of survivors) expect(m.of("error"), m.output).toEqual([]);

  const firstAfter = afterKill[0]!.at - killedAt;
  console.log(
    `SIGKILL the coordinator (${runtimes.join(", ")}; ${lanes} write lane${lanes === 1 ? "" : "s"}): first acknowledged write ${firstAfter.toFixed(0)} ms after the kill ` +
      `(failureTimeoutMs + verifyTimeoutMs = ${FAST_TIMING.failureTimeoutMs + FAST_TIMING.verifyTimeoutMs} ms); ${acked.length} writes, ${cycles.length} lock cycles, ${reference.entries.length} entries agreed`,
  );
}

describe("cluster channels over real UDP", () => {
  it(
    "four Node members: SIGKILL the coordinator during a stream of puts (4 in flight) and lock cycles; the survivors agree on the map",
    () => killTheCoordinatorMidStream(["node", "node", "node", "node"], 4),
    TEST_TIMEOUT_MS,
  );

  it(
    "a Node coordinator, a Deno successor, a Bun writer and a Node locker: SIGKILL the coordinator mid-stream; the survivors agree on the map",
    () => killTheCoordinatorMidStream(["node", "deno", "bun", "node"], 1),
    TEST_TIMEOUT_MS,
  );
});
