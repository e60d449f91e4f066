/**
 * A member whose event loop stalls (a long GC pause, a blocking handler) suspects itself before its
 * peers: on waking its timers run before the datagrams that arrived meanwhile, so without care it would
 * find every peer silent. Modelled on the simulated network: the stalled member's timers and received
 * datagrams are held for the stall and then run all at once, timers first, as an event loop does.
 */
import { describe, expect, it } from "vitest";
import type { GroupEvents } from "../../src/group/group-channel.ts";
import { GroupChannel } from "../../src/group/group-channel.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { runSeeds } from "../../src/transport/sim-run.ts";
import { EventLoop, flush } from "./sim-helpers.ts";

const TIMING = { heartbeatIntervalMs: 200, failureTimeoutMs: 2_000, verifyTimeoutMs: 1_500, discoveryTimeoutMs: 500 } as const;

async function stallScenario(seed: number): Promise<void> {
  const net = new SimulatedNetwork({ seed, defaultLink: { loss: 0.02, delayMs: { min: 0.1, max: 2 } } });
  const loop = new EventLoop(net.clock);
  const members = [0, 1, 2].map(
    (i) =>
      new GroupChannel({
        name: `m${i}`,
        transport: i === 0 ? loop.transport(net.transportFactory(`h${i}`)) : net.transportFactory(`h${i}`),
        clock: i === 0 ? loop.memberClock : net.clock,
        random: net.random.fork(`m${i}`),
        incarnation: 1,
        groups: ["g"],
        ...TIMING,
      }),
  );
  const [sleeper] = members as [GroupChannel, GroupChannel, GroupChannel];
  const joined = members.map((member) => member.join());
  while (members.some((m) => m.state !== "started")) await flush();
  net.clock.runUntil(() => members.every((m) => m.getMembers("g").length === 3), { maxMs: 20_000 });
  await Promise.all(joined);
  await flush();
  const suspicions: Array<GroupEvents["suspect"]> = [];
  const stalls: Array<GroupEvents["stalled"]> = [];
  sleeper.on("suspect", (event) => suspicions.push(event));
  sleeper.on("stalled", (event) => stalls.push(event));
  const othersSuspect: string[] = [];
  for (const other of members.slice(1)) other.on("suspect", ({ member }) => othersSuspect.push(member.name));

  // Stalled past the failure timeout (its peers suspect it), woken before their verification ends.
  const stallMs = TIMING.failureTimeoutMs + 1_000;
  net.clock.runFor(1_000 + net.random.nextInt(200));
  loop.stall(stallMs);
  net.clock.runFor(stallMs + 4 * TIMING.failureTimeoutMs);

  expect(stalls).toHaveLength(1);
  expect(stalls[0]!.stalledMs).toBeGreaterThan(stallMs - 300);
  expect(stalls[0]!.stalledMs).toBeLessThanOrEqual(stallMs);
  expect(sleeper.groupStats.stalls).toBe(1);
  // It blamed nobody for its own stall…
  expect(suspicions).toEqual([]);
  // …while its peers, which heard nothing from it for longer than the failure timeout, rightly suspected it,
  // and its answers (it was alive) kept it in the view.
  expect(othersSuspect).toContain("m0");
  for (const member of members) expect(member.getMembers("g").map((m) => m.name).sort()).toEqual(["m0", "m1", "m2"]);
  await Promise.all(members.map((member) => member.shutDown()));
}

describe("a member whose event loop stalls", () => {
  it("says so on waking, and suspects none of its peers for its own silence", async () => {
    await runSeeds({ seeds: { from: 1, count: 20 }, run: stallScenario, file: "test/sim/stall.test.ts" });
  });
});
