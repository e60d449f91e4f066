/**
 * The cluster level across hosts with network stacks of their own: four members in four network
 * namespaces on one bridge (test/hosts/host-network.ts), in quorum mode, each running
 * test/runtime/cluster-workload-member.ts on its host's address: acknowledged puts and lock → write
 * under the lock → release cycles, all four at once. The master's link is cut mid-workload: the three
 * others elect a new master and go on, the cut-off master takes no write; the link healed, the sides
 * merge, and every replica ends with the same map, holding every acknowledged write.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAST_TIMING, freshNetwork, MemberProcess, now, outputs, trackMembers } from "../members.ts";
import type { WorkloadMemberConfig, WorkloadMemberEvent } from "../runtime/cluster-workload-member.ts";
import { type Host, HostNetwork, hostNetworkUnsupported } from "./host-network.ts";

const MEMBER = join("test", "runtime", "cluster-workload-member.ts");
const MEMBER_LIFETIME_MS = 120_000;
/** Starting four tsx processes at once on two cores takes seconds. */
const START_TIMEOUT_MS = 45_000;
/** Writes each member has acknowledged before the cut, and each of the majority after its new master. */
const WRITES_BEFORE = 20;
const WRITES_DURING = 20;
/** The cut lasts at least this long past the majority's first write under its new master. */
const CUT_AFTER_FAILOVER_MS = 500;
/** From the heal to every replica showing the same final state. */
const SETTLE_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 110_000;

type StateEvent = Extract<WorkloadMemberEvent, { type: "state" }>;

const unsupported = await hostNetworkUnsupported();
const running = trackMembers();

/** A running member; acknowledgements and lock cycles are left out of its output for failure messages (they are many). */
class Member extends MemberProcess<WorkloadMemberEvent, WorkloadMemberConfig> {
  constructor(
    readonly host: Host,
    config: WorkloadMemberConfig,
  ) {
    super("node", MEMBER, config, running, (line) => line.startsWith('{"type":"acked"') || line.startsWith('{"type":"lockCycle"') || line.startsWith('{"type":"state"'), host.within);
  }

  acked(from = 0, to = Infinity) {
    return this.of("acked").filter((e) => e.at > from && e.at < to);
  }
}

/** Resolves once every member's latest state is the same, and each has been printed with everyone in its view. */
async function sameState(members: readonly Member[], timeoutMs: number): Promise<StateEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = members.map((m) => m.of("state").at(-1));
    const wholeView = members.every((m) => m.of("view").at(-1)?.members.length === members.length);
    const first = states[0];
    if (first !== undefined && wholeView && states.every((s) => s !== undefined && JSON.stringify([s.entries, s.lock]) === JSON.stringify([first.entries, first.lock]))) return first;
    if (Date.now() > deadline) {
      const shown = states.map((s, i) => `${members[i]!.name}: ${s === undefined ? "no state" : `${s.entries.length} entries, lock ${JSON.stringify(s.lock)}, master ${s.master}`}`);
      throw new Error(`the replicas did not converge within ${timeoutMs} ms: ${shown.join("; ")}\n${outputs(members)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.skipIf(unsupported !== undefined)(`cluster channels across network namespaces${unsupported === undefined ? "" : ` (skipped: ${unsupported})`}`, () => {
  let network: HostNetwork;
  beforeAll(async () => {
    network = await HostNetwork.create({ hosts: 4 });
  });
  afterAll(() => network?.destroy());

  it(
    "four hosts in quorum mode write and lock all along; the master's link is cut and healed; the majority goes on, the cut master takes nothing, and the replicas converge with every acknowledged write",
    async () => {
      const shared = freshNetwork("hosts-cluster");
      const weights = [10, 5, 0, 0];
      const members = network.hosts.map(
        (host) =>
          new Member(host, {
            ...shared,
            ...FAST_TIMING,
            name: `host-${host.index}`,
            lifetimeMs: MEMBER_LIFETIME_MS,
            interface: host.address,
            weight: weights[host.index]!,
            members: network.hosts.length,
            quorum: true,
            afterHealMs: 1_500,
            maxMs: 60_000,
            operationTimeoutMs: 2_000,
          }),
      );
      await Promise.all(members.map((m) => m.until(() => m.of("started").length > 0, START_TIMEOUT_MS, "the workload's start")));
      for (const m of members) expect(m.of("started")[0]!.master, outputs(members)).toBe("host-0");
      const [master, ...majority] = members as [Member, ...Member[]];
      await Promise.all(members.map((m) => m.until(() => m.acked().length >= WRITES_BEFORE, 20_000, `${WRITES_BEFORE} writes`)));

      const cutAt = now();
      await network.cut(master.host);
      const newMasterAt = (m: Member) => m.of("master").find((e) => e.at > cutAt && e.master !== master.name)?.at ?? Infinity;
      let healAt: number;
      try {
        // The majority elects a new master and takes writes again.
        await Promise.all(majority.map((m) => m.until(() => newMasterAt(m) < Infinity, 10_000, "a new master")));
        await Promise.all(majority.map((m) => m.until(() => m.acked(newMasterAt(m)).length >= WRITES_DURING, 10_000, `${WRITES_DURING} writes under the new master`)));
        await new Promise((resolve) => setTimeout(resolve, CUT_AFTER_FAILOVER_MS));
      } finally {
        healAt = now();
        await network.heal(master.host);
      }
      const final = await sameState(members, SETTLE_TIMEOUT_MS);
      const all = outputs(members);

      // Every write acknowledged anywhere, at any time, is in the final map with its value.
      const entries = new Map(final.entries);
      const acked = members.flatMap((m) => m.of("acked"));
      const lost = acked.filter((e) => entries.get(e.key) !== e.value);
      expect(lost.map((e) => e.key), `acknowledged writes lost\n${all}`).toEqual([]);
      // A write key in the map was acknowledged, or at least attempted, by its writer.
      const attempted = new Set(members.flatMap((m) => [...m.of("acked"), ...m.of("writeFailed")].map((e) => e.key)));
      for (const key of entries.keys()) if (key.startsWith("w/")) expect(attempted.has(key), key).toBe(true);

      // Cut off, the master acknowledged nothing (after what was in flight at the cut); the majority went on.
      const inFlightMs = 200;
      expect(master.acked(cutAt + inFlightMs, healAt).map((e) => e.key), all).toEqual([]);
      expect(master.of("lockCycle").filter((e) => e.at > cutAt + inFlightMs && e.at < healAt), all).toEqual([]);
      const failedWhileCut = master.of("writeFailed").filter((e) => e.at > cutAt && e.at < healAt);
      expect(failedWhileCut.length, all).toBeGreaterThan(0);

      // Lock cycles: tokens unique across members and growing at each; the lock's key holds the write
      // of the latest grant that wrote it.
      const cycles = members.flatMap((m) => m.of("lockCycle").map((c) => ({ ...c, member: m.name })));
      expect(new Set(cycles.map((c) => c.token)).size, all).toBe(cycles.length);
      for (const m of members) {
        const tokens = m.of("lockCycle").map((c) => c.token);
        expect(tokens, m.name).toEqual([...tokens].sort((a, b) => a - b));
      }
      expect(cycles.length, all).toBeGreaterThan(0);
      const latest = cycles.reduce((a, b) => (b.token > a.token ? b : a));
      const [writer, n, token] = entries.get("L")!.split(":");
      expect(Number(token), all).toBeGreaterThanOrEqual(latest.token);
      if (Number(token) === latest.token) expect(`${writer}:${n}`).toBe(`${latest.member}:${latest.n}`);
      expect(final.lock, "the lock is free at the end").toBeUndefined();

      for (const m of members) expect(m.of("error"), m.output).toEqual([]);
      const firstUnderNewMaster = Math.min(...majority.map((m) => m.acked(newMasterAt(m))[0]!.at)) - cutAt;
      const converged = Math.max(...members.map((m) => m.of("state").at(-1)!.at)) - healAt;
      console.log(
        `master's link cut: first write acknowledged under the new master ${firstUnderNewMaster.toFixed(0)} ms after the cut (failureTimeoutMs + verifyTimeoutMs = ${FAST_TIMING.failureTimeoutMs + FAST_TIMING.verifyTimeoutMs} ms); ` +
          `${failedWhileCut.length} of the cut master's writes refused (${[...new Set(failedWhileCut.map((e) => e.error.split(":")[0]))].join(", ")}); replicas equal ${converged.toFixed(0)} ms after the heal; ${acked.length} acknowledged writes, ${cycles.length} lock cycles, ${final.entries.length} entries, final master ${final.master}`,
      );
    },
    TEST_TIMEOUT_MS,
  );
});
