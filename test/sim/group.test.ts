import { describe, expect, it } from "vitest";
import type { CoordinatorSelector, View } from "../../src/group/view.ts";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import type { Address, Transport, TransportFactory } from "../../src/transport/transport.ts";
import {
  CRASH_BOUND_MS,
  GROUP,
  GroupSim,
  type GroupScenarioResult,
  MERGE_BOUND_MS,
  type Proc,
  runGroupScenario,
  TIMING,
} from "./group-scenario.ts";

describe("group membership and messaging on the simulated network", () => {
  it("agrees on views, detects crashes, merges partitions, removes no live member, delivers queue and point-to-point messages (200 seeds)", async () => {
    const results: GroupScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 200 }),
      run: async (seed) => {
        results.push(await runGroupScenario(seed));
      },
      file: "test/sim/group.test.ts",
    });
    // Every bound held for every seed (runGroupScenario throws otherwise); these are the worst cases.
    for (const result of results) {
      expect(result.maxCrashDetectionMs).toBeLessThanOrEqual(CRASH_BOUND_MS);
      expect(result.maxMergeMs).toBeLessThanOrEqual(MERGE_BOUND_MS);
    }
    // The sweep must exercise what it claims to.
    if (results.length >= 200) {
      const count = (predicate: (r: GroupScenarioResult) => boolean) => results.filter(predicate).length;
      expect(count((r) => r.kind === "calm" && r.loss > 0.1)).toBeGreaterThan(10);
      expect(count((r) => r.coldStart >= 3)).toBeGreaterThan(30);
      expect(results.reduce((sum, r) => sum + r.crashesChecked, 0)).toBeGreaterThan(100);
      expect(results.reduce((sum, r) => sum + r.mergesChecked, 0)).toBeGreaterThan(30);
      expect(results.reduce((sum, r) => sum + r.restarts, 0)).toBeGreaterThan(15);
      expect(results.reduce((sum, r) => sum + r.leaves, 0)).toBeGreaterThan(200);
      expect(count((r) => r.queueConsumerCrashed)).toBeGreaterThan(50);
      expect(results.reduce((sum, r) => sum + r.pointToPoint, 0)).toBeGreaterThan(20_000);
    }
  }, 600_000);
});

/** Starts members one after the other, each once the previous one is in the view. */
async function startInTurn(sim: GroupSim, hosts: string[], weights: number[] = [], options: Array<{ transport: TransportFactory }> = []): Promise<Proc[]> {
  const procs: Proc[] = [];
  for (const [i, host] of hosts.entries()) {
    procs.push(await sim.spawn(host, { ...(weights[i] === undefined ? {} : { weight: weights[i] }), ...options[i] }));
    await sim.runUntil(() => sim.agreed(), 5_000, `${host} in the view`);
  }
  return procs;
}

function viewOf(proc: Proc): View {
  const view = proc.channel.getView(GROUP);
  if (view === undefined) throw new Error(`p${proc.index} has no view`);
  return view;
}

describe("coordinator selection", () => {
  it("elects the heaviest member, the same at every member", async () => {
    const sim = new GroupSim({ seed: 11 });
    try {
      // A cold start all at once: the heaviest forms the group whatever the order.
      const procs = await Promise.all([0, 3, 1, 3].map((weight, i) => sim.spawn(`h${i}`, { weight })));
      await sim.runUntil(() => sim.agreed(), 5_000, "one view");
      const view = viewOf(procs[0]!);
      expect(view.coordinator.weight).toBe(3);
      // Of two equally heavy, the one longest in the view (the first in view order).
      expect(view.coordinator.id).toBe(view.members.find((m) => m.weight === 3)!.id);
      for (const proc of procs) expect(proc.channel.getCoordinator(GROUP)?.id).toBe(view.coordinator.id);
      expect(procs.filter((p) => p.channel.isCoordinator(GROUP)).map((p) => p.id)).toEqual([view.coordinator.id]);

      // A heavier member joining takes over at once.
      const heavy = await sim.spawn("h4", { weight: 7 });
      await sim.runUntil(() => sim.agreed(), 5_000, "the heavy member in the view");
      for (const proc of sim.running()) expect(viewOf(proc).coordinator.id).toBe(heavy.id);
      expect(heavy.channel.isCoordinator(GROUP)).toBe(true);
    } finally {
      await sim.shutDown();
    }
  });

  it("among equals, the member longest in the view coordinates, and the next longest when it goes", async () => {
    const sim = new GroupSim({ seed: 12 });
    try {
      const [first, second, third] = await startInTurn(sim, ["h0", "h1", "h2"]);
      for (const proc of sim.running()) expect(viewOf(proc).coordinator.id).toBe(first!.id);
      expect(viewOf(first!).members.map((m) => m.id)).toEqual([first!.id, second!.id, third!.id]);
      // A newcomer of the same weight changes nothing.
      await startInTurn(sim, ["h3"]);
      for (const proc of sim.running()) expect(viewOf(proc).coordinator.id).toBe(first!.id);
      await sim.leave(first!);
      await sim.runUntil(() => sim.agreed(), 1_000, "the view without the first");
      for (const proc of sim.running()) expect(viewOf(proc).coordinator.id).toBe(second!.id);
    } finally {
      await sim.shutDown();
    }
  });

  it("honours a coordinatorSelector given in the options", async () => {
    // The newest member coordinates (the last in view order) — the opposite of the default rule.
    const newest: CoordinatorSelector = (members) => members[members.length - 1]!;
    const sim = new GroupSim({ seed: 13, coordinatorSelector: newest });
    try {
      const procs = await startInTurn(sim, ["h0", "h1", "h2"], [5, 0, 0]);
      for (const proc of procs) expect(viewOf(proc).coordinator.id).toBe(procs[2]!.id);
      expect(procs[2]!.channel.isCoordinator(GROUP)).toBe(true);
      expect(procs[0]!.channel.isCoordinator(GROUP)).toBe(false);
      const late = await sim.spawn("h3");
      await sim.runUntil(() => sim.agreed(), 5_000, "the late member in the view");
      for (const proc of sim.running()) expect(viewOf(proc).coordinator.id).toBe(late.id);
    } finally {
      await sim.shutDown();
    }
  });
});

describe("discovery", () => {
  it("a starting member that hears the group's view joins it, though nobody hears its Discovery: it forms no group of its own", async () => {
    const sim = new GroupSim({ seed: 16 });
    try {
      const [first] = await startInTurn(sim, ["h0"]);
      // Nothing the newcomer multicasts (its Discovery) arrives, so nobody answers it (as when the answers
      // are lost); it hears the view the coordinator repeats every heartbeat.
      const newcomer = heldBack(sim, "h1", (to) => to.host.startsWith("239."));
      newcomer.holding = true;
      const second = await sim.spawn("h1", { transport: newcomer.factory });
      await sim.runUntil(() => second.views.length > 0, 2 * TIMING.discoveryTimeoutMs, "a view at the newcomer");
      newcomer.holding = false;
      newcomer.held.length = 0;
      // Its first view is the group's: alone, it would have been a second coordinator (of a second state map).
      expect(second.views[0]!.view.members.map((m) => m.id)).toEqual([first!.id, second.id]);
      await sim.runUntil(() => sim.agreed(), 3_000, "one view of both");
    } finally {
      await sim.shutDown();
    }
  });
});

describe("leaving and crashing", () => {
  it("sees a graceful leave at once, of a member and of the coordinator", async () => {
    const sim = new GroupSim({ seed: 14 });
    try {
      const procs = await startInTurn(sim, ["h0", "h1", "h2", "h3"]);
      // A member: the coordinator installs the view without it as soon as the goodbye arrives.
      await sim.leave(procs[2]!);
      const memberGone = await sim.runUntil(() => sim.agreed(), 1_000, "the view without the member", 1);
      // The coordinator: it hands over with a view without itself before saying goodbye.
      await sim.leave(procs[0]!);
      const coordinatorGone = await sim.runUntil(() => sim.agreed(), 1_000, "the view without the coordinator", 1);
      // A datagram (≤ 0.5 ms on this LAN) and the coordinator's 5 ms of gathering changes: far from the failure timeout.
      expect(memberGone).toBeLessThanOrEqual(10);
      expect(coordinatorGone).toBeLessThanOrEqual(10);
      for (const proc of sim.running()) expect(viewOf(proc).coordinator.id).toBe(procs[1]!.id);
    } finally {
      await sim.shutDown();
    }
  });

  it("sees the coordinator's leave at once when its goodbye overtakes its handover view", async () => {
    const sim = new GroupSim({ seed: 14 });
    try {
      const sender = heldBack(sim, "h0");
      const [first, second] = await startInTurn(sim, ["h0", "h1", "h2"], [], [{ transport: sender.factory }]);
      // Everything the leaving coordinator sends is held back; its goodbye (the last datagram) goes first.
      sender.holding = true;
      first!.status = "left";
      await first!.channel.stop();
      sender.holding = false;
      const goodbye = sender.held.pop()!;
      goodbye();
      for (const send of sender.held.splice(0)) send();
      const gone = await sim.runUntil(() => sim.agreed(), 1_000, "the view without the coordinator", 1);
      // As quick as a leave in order (see above), not a failure timeout later.
      expect(gone).toBeLessThanOrEqual(10);
      for (const proc of sim.running()) expect(viewOf(proc).coordinator.id).toBe(second!.id);
    } finally {
      await sim.shutDown();
    }
  });

  it("a coordinator restarted in place whose handover and goodbye one member missed is taken for gone there, and all agree again", async () => {
    const sim = new GroupSim({ seed: 15 });
    try {
      const [first, second, third] = await startInTurn(sim, ["h0", "h1", "h2"]);
      // The second hears nothing of the first's last incarnation: neither its handover view nor its goodbye
      // (as when the channel's goodbye overtakes the handover, and the handover, from an incarnation
      // that said goodbye, is refused as stale).
      sim.net.setLink("h0", "h1", { loss: 1 });
      first!.status = "left";
      await first!.channel.stop();
      await sim.run(50);
      expect(viewOf(third!).coordinator.id).toBe(second!.id);
      expect(viewOf(second!).coordinator.id).toBe(first!.id);
      sim.net.clearLink("h0", "h1");
      // Back as its next incarnation, within the failure timeout: the datagrams of the new incarnation
      // must not keep the old one alive in the view of the member that missed its departure.
      await first!.channel.start();
      first!.status = "running";
      const rejoined = first!.channel.addToGroup(GROUP);
      await sim.runUntil(() => sim.agreed(), 3_000, "one view of all three again");
      await rejoined;
      const view = viewOf(second!);
      expect(view.members.find((m) => m.id === first!.id)?.incarnation).toBe(first!.channel.incarnation);
      expect(view.coordinator.id).toBe(second!.id);
    } finally {
      await sim.shutDown();
    }
  });

  // Checks wake when a silence or a verification runs out, not on the next periodic check.
  for (const [name, timing] of [
    ["the simulation's timing", {}],
    ["the default timing", { heartbeatIntervalMs: 1_000, failureTimeoutMs: 5_000, verifyTimeoutMs: 1_500 }],
  ] as const) {
    it(`removes a crashed member within failureTimeoutMs + verifyTimeoutMs + 7 ms on a lossless network, and not before (${name})`, async () => {
      const failureTimeoutMs = "failureTimeoutMs" in timing ? timing.failureTimeoutMs : TIMING.failureTimeoutMs;
      const verifyTimeoutMs = "verifyTimeoutMs" in timing ? timing.verifyTimeoutMs : TIMING.verifyTimeoutMs;
      const sim = new GroupSim({ seed: 15 });
      try {
        const procs: Proc[] = [];
        for (const host of ["h0", "h1", "h2", "h3"]) {
          procs.push(await sim.spawn(host, timing));
          await sim.runUntil(() => sim.agreed(), 5_000, `${host} in the view`);
        }
        await sim.run(3 * (failureTimeoutMs + verifyTimeoutMs));
        // A member, then the coordinator.
        for (const victim of [procs[2]!, procs[0]!]) {
          sim.crash(victim);
          const took = await sim.runUntil(() => sim.agreed(), 2 * (failureTimeoutMs + verifyTimeoutMs), `p${victim.index} out of the views`, 1);
          expect(took).toBeGreaterThan(failureTimeoutMs);
          // The last datagram may have come just before the crash; 1 ms past the timeout, 5 ms to gather
          // changes, 1 ms of steps.
          expect(took).toBeLessThanOrEqual(failureTimeoutMs + verifyTimeoutMs + 7);
        }
      } finally {
        await sim.shutDown();
      }
    });
  }
});

/**
 * Transports on `host` whose datagrams (those to an address `which` picks), while `holding`, wait in
 * `held` (each a send) for the test to let them go.
 */
function heldBack(
  sim: GroupSim,
  host: string,
  which: (to: Address) => boolean = () => true,
): { holding: boolean; readonly held: Array<() => void>; readonly factory: TransportFactory } {
  const state = {
    holding: false,
    held: [] as Array<() => void>,
    factory: async (options?: Parameters<TransportFactory>[0]): Promise<Transport> => {
      const transport = await sim.net.transportFactory(host)(options);
      const send = (data: Uint8Array, to: Address) => {
        if (state.holding && which(to)) state.held.push(() => transport.send(data, to));
        else transport.send(data, to);
      };
      return {
        localAddress: transport.localAddress,
        maxDatagramBytes: transport.maxDatagramBytes,
        nativeBatchSend: transport.nativeBatchSend,
        send,
        sendMany: (datagrams) => {
          for (const [data, to] of datagrams) send(data, to);
        },
        joinGroup: (group, interfaceAddress) => transport.joinGroup(group, interfaceAddress),
        leaveGroup: (group, interfaceAddress) => transport.leaveGroup(group, interfaceAddress),
        onReceive: (handler) => transport.onReceive(handler),
        onError: (handler) => transport.onError(handler),
        close: () => transport.close(),
      };
    },
  };
  return state;
}
