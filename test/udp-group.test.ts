/**
 * Groups over real UDP on loopback multicast, members as separate processes running
 * test/runtime/group-member.ts: five Node members agree on a view and drop a member killed with
 * SIGKILL (a plain member, then the coordinator) within the failure detection's timeouts; and one group
 * of a Node, a Bun and a Deno member agrees on its view, exchanges requests, replies, point-to-point
 * messages and queue messages between every pair.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FAST_TIMING, freshNetwork, MemberProcess, now, outputs, randomInt, type Runtime, trackMembers } from "./members.ts";
import type { GroupMemberConfig, GroupMemberEvent } from "./runtime/group-member.ts";

const MEMBER = join("test", "runtime", "group-member.ts");

/**
 * How much later than failureTimeoutMs + verifyTimeoutMs after the kill the survivors may install the
 * view without the dead member: the failure check runs every 50 ms here, the coordinator gathers
 * changes for 5 ms, the view crosses loopback; the rest is room for a busy two-core machine.
 */
const DETECTION_SLACK_MS = 700;
/** Members exit on their own after this long; tests kill them well before. */
const MEMBER_LIFETIME_MS = 90_000;
/** Starting a few tsx, Bun or Deno processes at once on two cores takes seconds. */
const START_TIMEOUT_MS = 45_000;
const TEST_TIMEOUT_MS = 90_000;

type ViewEvent = Extract<GroupMemberEvent, { type: "view" }>;

const running = trackMembers();

/** A running member, and the views it installed. */
class Member extends MemberProcess<GroupMemberEvent, GroupMemberConfig> {
  constructor(runtime: Runtime, config: GroupMemberConfig) {
    super(runtime, MEMBER, config, running);
  }

  get views(): ViewEvent[] {
    return this.of("view");
  }

  get latestView(): ViewEvent | undefined {
    return this.views.at(-1);
  }
}

function startMembers(runtimes: readonly Runtime[], extra: (index: number) => Partial<GroupMemberConfig> = () => ({})): Member[] {
  const network = freshNetwork("udp-group");
  return runtimes.map(
    (runtime, index) => new Member(runtime, { ...network, ...FAST_TIMING, name: `${runtime}-${index}`, lifetimeMs: MEMBER_LIFETIME_MS, ...extra(index) }),
  );
}

const viewKey = (view: ViewEvent | undefined) => (view === undefined ? "none" : `${view.installer}/${view.counter}`);

/** Waits until every member's latest view is one and the same view of `size` members. */
async function converged(members: readonly Member[], size: number, timeoutMs: number): Promise<ViewEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = members.map((m) => m.latestView);
    const first = views[0];
    if (first !== undefined && first.members.length === size && views.every((v) => viewKey(v) === viewKey(first))) return first;
    if (Date.now() > deadline) {
      throw new Error(`no common ${size}-member view within ${timeoutMs} ms: ${views.map((v) => `${viewKey(v)} ${JSON.stringify(v?.members)}`).join(", ")}\n${outputs(members)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("groups over real UDP", () => {
  for (const victimRole of ["a plain member", "the coordinator"] as const) {
    it(
      `five Node members agree on a view; SIGKILL ${victimRole} and the others drop it within failureTimeoutMs + verifyTimeoutMs`,
      async () => {
        const members = startMembers(["node", "node", "node", "node", "node"]);
        const view = await converged(members, 5, START_TIMEOUT_MS);
        expect([...view.members].sort()).toEqual(members.map((m) => m.name).sort());

        // The coordinator, or the member furthest from taking over from it.
        const victimName = victimRole === "the coordinator" ? view.coordinator : view.members.filter((n) => n !== view.coordinator).at(-1)!;
        const victim = members.find((m) => m.name === victimName)!;
        const survivors = members.filter((m) => m !== victim);
        // Kill at a random moment of the heartbeat cycle, not right after the last view's acknowledgements.
        await new Promise((resolve) => setTimeout(resolve, randomInt(300, 300 + FAST_TIMING.heartbeatIntervalMs)));
        expect(members.map((m) => viewKey(m.latestView)), outputs(members)).toEqual(members.map(() => viewKey(view)));
        const marks = survivors.map((m) => m.events.length);
        const killedAt = now();
        victim.kill();

        const without = await Promise.all(
          survivors.map((m, i) =>
            m.waitFor((e): e is ViewEvent => e.type === "view" && !e.members.includes(victimName), 10_000, `view without ${victimName}`, marks[i]),
          ),
        );
        const detectionMs = Math.max(...without.map((v) => v.at)) - killedAt;
        const budgetMs = FAST_TIMING.failureTimeoutMs + FAST_TIMING.verifyTimeoutMs;
        const summary = `detection ${detectionMs.toFixed(0)} ms (budget ${budgetMs} + ${DETECTION_SLACK_MS} ms); per survivor: ${without.map((v) => (v.at - killedAt).toFixed(0)).join(", ")} ms`;
        console.log(`SIGKILL ${victimRole}: ${summary}`);

        // Everyone installed the same view: the four survivors, nobody else dropped on the way.
        for (const v of without) {
          expect(viewKey(v), outputs(members)).toBe(viewKey(without[0]));
          expect([...v.members].sort(), outputs(members)).toEqual(survivors.map((m) => m.name).sort());
        }
        if (victimRole === "the coordinator") expect(without[0]!.coordinator).not.toBe(victimName);
        else expect(without[0]!.coordinator).toBe(view.coordinator);
        // Not before the member could have been found silent, and not much after the configured timeouts.
        expect(detectionMs, summary).toBeGreaterThanOrEqual(FAST_TIMING.failureTimeoutMs);
        expect(detectionMs, summary).toBeLessThanOrEqual(budgetMs + DETECTION_SLACK_MS);
        // The view stays: no member is suspected or dropped afterwards.
        await new Promise((resolve) => setTimeout(resolve, 2 * FAST_TIMING.failureTimeoutMs));
        for (const m of survivors) expect(viewKey(m.latestView), outputs(members)).toBe(viewKey(without[0]));
      },
      TEST_TIMEOUT_MS,
    );
  }

  it(
    "one group of a Node, a Bun and a Deno member: the same view everywhere, request/reply, messages and a queue between every pair",
    async () => {
      const jobs = 9;
      const members = startMembers(["node", "bun", "deno"], (index) => ({ exchangeAt: 3, consumeQueue: "work", ...(index === 0 ? { produceToQueue: jobs } : {}) }));
      await Promise.all(members.map((m) => m.waitFor((e) => e.type === "exchanged", START_TIMEOUT_MS, "exchange")));
      const view = await converged(members, 3, 5_000);
      expect([...view.members].sort()).toEqual(["bun-1", "deno-2", "node-0"]);
      // Every member's runtime is the one it was started in.
      for (const m of members) {
        const joined = m.events.find((e) => e.type === "joined");
        expect(joined, m.output).toMatchObject({ runtime: m.runtime, name: m.name });
      }

      for (const m of members) {
        const others = members.filter((o) => o !== m).map((o) => o.name).sort();
        const replies = m.events.filter((e) => e.type === "reply");
        expect(
          replies.map((r) => ({ to: r.to, ok: r.ok, text: r.text })).sort((a, b) => a.to.localeCompare(b.to)),
          outputs(members),
        ).toEqual(others.map((to) => ({ to, ok: true, text: `${to}:ping from ${m.name}` })));
        const sent = m.events.filter((e) => e.type === "sent");
        expect(sent.every((s) => s.ok) && sent.length === 2, outputs(members)).toBe(true);
      }
      // Point-to-point messages arrive (sent ones resolve once on their way: give them a moment).
      for (const m of members) {
        for (const other of members.filter((o) => o !== m)) {
          await m.waitFor((e) => e.type === "p2p" && e.from === other.name && e.text === `hello from ${other.name}`, 5_000, `message from ${other.name}`);
        }
        expect(m.events.filter((e) => e.type === "p2p"), m.output).toHaveLength(2);
      }
      // The queue: every job processed (acknowledged to the producer) exactly once somewhere.
      const produced = members[0]!.events.find((e) => e.type === "produced");
      expect(produced, outputs(members)).toEqual({ type: "produced", ok: jobs, failed: 0, errors: [] });
      const consumed = members.flatMap((m) => m.events.filter((e) => e.type === "consumed").map((e) => e.text));
      expect(consumed.sort(), outputs(members)).toEqual(Array.from({ length: jobs }, (_, i) => `job ${i}`).sort());
      for (const m of members) expect(m.events.filter((e) => e.type === "error"), m.output).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );
});
