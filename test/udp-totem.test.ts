/**
 * Totem total order over real UDP on loopback multicast: members as separate processes running
 * test/runtime/totem-member.ts (three Node processes, and Node, Bun and Deno in one ring). Every member
 * must deliver every message, its own included, and all of them in one and the same order.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freshNetwork, KILL_GRACE_MS, type MemberOutcome, type Runtime, runToEnd, trackMembers } from "./members.ts";
import type { TotemMemberConfig, TotemMemberResult } from "./runtime/totem-member.ts";

const MEMBER = join("test", "runtime", "totem-member.ts");
const MEMBER_TIMEOUT_MS = 40_000;
const TEST_TIMEOUT_MS = MEMBER_TIMEOUT_MS + KILL_GRACE_MS + 5_000;

type Outcome = MemberOutcome<TotemMemberResult>;

const running = trackMembers();

async function runRing(runtimes: readonly Runtime[], messages: number, crash: { victim: number; crashAfter: number } | {} = {}): Promise<Outcome[]> {
  const network = freshNetwork("udp-totem");
  return Promise.all(
    runtimes.map((runtime, index) => {
      const config: TotemMemberConfig = { ...network, index, members: runtimes.length, messages, timeoutMs: MEMBER_TIMEOUT_MS, ...crash };
      return runToEnd<TotemMemberResult>(runtime, MEMBER, config, running);
    }),
  );
}

function expectOneOrder(outcomes: readonly Outcome[], messages: number): void {
  const all = outcomes.map(() => messages);
  for (const [index, outcome] of outcomes.entries()) {
    const result = outcome.result;
    expect(result, outcome.output).toBeDefined();
    expect(
      { runtime: result!.runtime, index: result!.index, sent: result!.sent, received: Object.values(result!.received), complete: result!.complete, ordered: result!.ordered, corrupt: result!.corrupt },
      outcome.output,
    ).toEqual({ runtime: outcome.runtime, index, sent: messages, received: all, complete: true, ordered: true, corrupt: 0 });
    expect(outcome.code, outcome.output).toBe(0);
  }
  // One total order: the same digest of the delivery sequence everywhere.
  const digests = new Set(outcomes.map((o) => o.result!.orderDigest));
  expect(digests.size, outcomes.map((o) => o.output).join("\n")).toBe(1);
}

describe("Totem total order over real UDP", () => {
  it(
    "three Node processes each broadcast 3,000 messages; everyone delivers all 9,000 in one order",
    async () => {
      expectOneOrder(await runRing(["node", "node", "node"], 3_000), 3_000);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a member killed while it sends: the other two form a new ring and deliver the same messages in one order",
    async () => {
      const outcomes = await runRing(["node", "node", "node"], 3_000, { victim: 2, crashAfter: 1_000 });
      expect(outcomes[2]!.code, outcomes[2]!.output).not.toBe(0);
      const survivors = outcomes.slice(0, 2);
      for (const outcome of survivors) {
        const result = outcome.result;
        expect(result, outcome.output).toBeDefined();
        expect({ complete: result!.complete, ordered: result!.ordered, corrupt: result!.corrupt, mine: result!.received[String(result!.index)] }, outcome.output).toEqual({
          complete: true,
          ordered: true,
          corrupt: 0,
          mine: 3_000,
        });
        // The ring was formed again without the victim.
        expect(result!.stats["ringsInstalled"], outcome.output).toBeGreaterThanOrEqual(2);
      }
      // The same messages (the victim's as far as they got, the same ones at both) in the same order.
      expect(survivors[0]!.result!.received).toEqual(survivors[1]!.result!.received);
      expect(survivors[0]!.result!.orderDigest, survivors.map((o) => o.output).join("\n")).toBe(survivors[1]!.result!.orderDigest);
      expect(survivors[0]!.result!.received["2"]).toBeGreaterThan(0);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "one ring of Node, Bun and Deno members: 2,000 messages each, one order everywhere",
    async () => {
      expectOneOrder(await runRing(["node", "bun", "deno"], 2_000), 2_000);
    },
    TEST_TIMEOUT_MS,
  );
});
