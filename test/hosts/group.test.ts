/**
 * Group membership across hosts with network stacks of their own: four members in four network
 * namespaces on one bridge (test/hosts/host-network.ts), each running test/runtime/group-member.ts on
 * its host's address. A plain member's link is cut: the others find it silent and install a view
 * without it, and it one of its own; the link healed, the two sides merge into one view of all four.
 * Then the same with the coordinator's link: the others choose a new coordinator, and merge with the
 * old one once it is back.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAST_TIMING, freshNetwork, MemberProcess, now, outputs, trackMembers } from "../members.ts";
import type { GroupMemberConfig, GroupMemberEvent } from "../runtime/group-member.ts";
import { type Host, HostNetwork, hostNetworkUnsupported } from "./host-network.ts";

const MEMBER = join("test", "runtime", "group-member.ts");
const MEMBER_LIFETIME_MS = 90_000;
/** Starting four tsx processes at once on two cores takes seconds. */
const START_TIMEOUT_MS = 45_000;
/** From a cut to the views without the cut member: failure detection and verification, and room for a busy machine. */
const DETECTION_TIMEOUT_MS = FAST_TIMING.failureTimeoutMs + FAST_TIMING.verifyTimeoutMs + 3_000;
/** From a heal to one view of everyone: the coordinators hear each other's heartbeats and merge. */
const MERGE_TIMEOUT_MS = 15_000;

type ViewEvent = Extract<GroupMemberEvent, { type: "view" }>;

const unsupported = await hostNetworkUnsupported();
const running = trackMembers();

class Member extends MemberProcess<GroupMemberEvent, GroupMemberConfig> {
  constructor(
    readonly host: Host,
    config: GroupMemberConfig,
  ) {
    super("node", MEMBER, config, running, () => false, host.within);
  }

  get latestView(): ViewEvent | undefined {
    return this.of("view").at(-1);
  }
}

const viewKey = (view: ViewEvent | undefined) => (view === undefined ? "none" : `${view.installer}/${view.counter}`);
const sorted = (names: readonly string[]) => [...names].sort();

/** Waits until every one of `members` has installed one and the same view, of exactly their names. */
async function oneViewOf(members: readonly Member[], timeoutMs: number, what: string): Promise<ViewEvent> {
  const names = sorted(members.map((m) => m.name)).join();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = members.map((m) => m.latestView);
    const first = views[0];
    if (first !== undefined && views.every((v) => viewKey(v) === viewKey(first)) && sorted(first.members).join() === names) return first;
    if (Date.now() > deadline) {
      throw new Error(`no ${what} within ${timeoutMs} ms: ${views.map((v) => `${viewKey(v)} ${JSON.stringify(v?.members)}`).join(", ")}\n${outputs(members)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(unsupported !== undefined)(`groups across network namespaces${unsupported === undefined ? "" : ` (skipped: ${unsupported})`}`, () => {
  let network: HostNetwork;
  beforeAll(async () => {
    network = await HostNetwork.create({ hosts: 4 });
  });
  afterAll(() => network?.destroy());

  it(
    "four hosts agree on a view; a cut link (a plain member's, then the coordinator's) shrinks it on both sides, and healed the sides merge into one view of all",
    async () => {
      const shared = freshNetwork("hosts-group");
      const members = network.hosts.map(
        (host) => new Member(host, { ...shared, ...FAST_TIMING, name: `host-${host.index}`, lifetimeMs: MEMBER_LIFETIME_MS, interface: host.address }),
      );
      let view = await oneViewOf(members, START_TIMEOUT_MS, "a view of all four");
      const timings: string[] = [];

      for (const role of ["a plain member", "the coordinator"] as const) {
        const victim = members.find((m) => (role === "the coordinator" ? m.name === view.coordinator : m.name !== view.coordinator))!;
        const others = members.filter((m) => m !== victim);
        const cutAt = now();
        await network.cut(victim.host);
        let healed = false;
        try {
          const [without] = await Promise.all([
            oneViewOf(others, DETECTION_TIMEOUT_MS, `a view without ${victim.name} (${role}'s link cut)`),
            oneViewOf([victim], DETECTION_TIMEOUT_MS, `a view of its own (${role}'s link cut)`),
          ]);
          const detectedMs = Math.max(...others.map((m) => m.latestView!.at)) - cutAt;
          expect(detectedMs, outputs(members)).toBeGreaterThanOrEqual(FAST_TIMING.failureTimeoutMs);
          if (role === "the coordinator") expect(without.coordinator, outputs(members)).not.toBe(victim.name);
          else expect(without.coordinator, outputs(members)).toBe(view.coordinator);

          const healedAt = now();
          await network.heal(victim.host);
          healed = true;
          view = await oneViewOf(members, MERGE_TIMEOUT_MS, `one view of all four after healing ${role}'s link`);
          const mergedMs = Math.max(...members.map((m) => m.latestView!.at)) - healedAt;
          timings.push(`${role}: views without it ${detectedMs.toFixed(0)} ms after the cut, merged ${mergedMs.toFixed(0)} ms after the heal`);
        } finally {
          if (!healed) await network.heal(victim.host);
        }
      }
      console.log(`link cuts across namespaces (failureTimeoutMs ${FAST_TIMING.failureTimeoutMs}, verifyTimeoutMs ${FAST_TIMING.verifyTimeoutMs}): ${timings.join("; ")}`);
      for (const m of members) expect(m.of("error"), m.output).toEqual([]);
    },
    START_TIMEOUT_MS + 2 * (DETECTION_TIMEOUT_MS + MERGE_TIMEOUT_MS) + 10_000,
  );
});
