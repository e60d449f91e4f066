import { afterEach, describe, expect, it } from "vitest";
import { GroupChannel } from "../group/group-channel.ts";
import { SimulatedNetwork } from "../transport/simulated-network.ts";
import { ClusterState } from "./cluster-state.ts";
import { resolveClusterOptions } from "./options.ts";
import { flushMicrotasks as flush, settleInVirtualTime } from "../../test/support/virtual-time.ts";

const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;
const text = (s: string) => new TextEncoder().encode(s);
const str = (v: unknown) => new TextDecoder().decode(v as Uint8Array);

/** Group channels on the simulated network, each with the state map built on it (its own group, "state"). */
class Bed {
  readonly net: SimulatedNetwork;
  readonly members: Array<{ readonly group: GroupChannel; readonly state: ClusterState }> = [];
  constructor(seed: number) {
    this.net = new SimulatedNetwork({ seed, defaultLink: {} });
  }
  spawn(): { readonly group: GroupChannel; readonly state: ClusterState } {
    const index = this.members.length;
    const options = resolveClusterOptions({
      name: `m${index}`,
      transport: this.net.transportFactory(`h${index}`),
      clock: this.net.clock,
      random: this.net.random.fork(`p${index}`),
      incarnation: index + 1,
      groups: ["g"],
      state: { group: "state" },
      ...TIMING,
    });
    const group = new GroupChannel(options.group);
    const member = { group, state: new ClusterState(group, options.state) };
    this.members.push(member);
    return member;
  }
  /** Joins the group channel's groups and the state group, and waits for the election. */
  async join(member: { readonly group: GroupChannel; readonly state: ClusterState }): Promise<void> {
    await member.group.join();
    await member.group.addToGroup("state");
    await member.state.waitForElection();
  }
  /** Runs virtual time until `condition` holds. */
  async until(condition: () => boolean, maxMs = 20_000): Promise<void> {
    const start = this.net.clock.now();
    while (!condition()) {
      if (this.net.clock.now() - start > maxMs) throw new Error(`not so within ${maxMs} ms`);
      this.net.clock.runFor(2);
      await flush();
    }
  }
  /** Runs virtual time until the promise settles. */
  async settle<T>(promise: Promise<T>, maxMs = 20_000): Promise<T> {
    return settleInVirtualTime(this.net.clock, promise, maxMs);
  }
}

describe("ClusterState, the state map built on a group channel", () => {
  let bed: Bed;
  afterEach(async () => {
    for (const { group } of bed.members) await group.stop().catch(() => undefined);
  });

  it("runs the map over plain group channels, and is built only on one not started yet", async () => {
    bed = new Bed(11);
    const [a, b, c] = [bed.spawn(), bed.spawn(), bed.spawn()];
    await bed.settle(Promise.all([a, b, c].map((member) => bed.join(member))));
    expect(a.state.getMaster()?.id).toBe(c.state.getMaster()?.id);
    expect([a, b, c].filter((member) => member.state.isMaster())).toHaveLength(1);
    await bed.settle(b.state.map.put("k", text("one")));
    for (const member of [a, b, c]) expect(str(member.state.map.get("k"))).toBe("one");
    expect(() => new ClusterState(a.group, resolveClusterOptions({ state: { group: "state" } }).state)).toThrow(expect.objectContaining({ code: "ILLEGAL_STATE" }));
  });

  it("detached, leaves the state group and stops, and is told nothing more; the group channel and the others carry on", async () => {
    bed = new Bed(12);
    const [a, b, c] = [bed.spawn(), bed.spawn(), bed.spawn()];
    await bed.settle(Promise.all([a, b, c].map((member) => bed.join(member))));
    await bed.settle(a.state.map.put("k", text("one")));

    c.state.detach();
    c.state.detach();
    expect(c.group.getGroups()).toEqual(["g"]);
    await expect(bed.settle(c.state.map.put("k", text("mine")))).rejects.toMatchObject({ code: "ILLEGAL_STATE", message: expect.stringMatching(/detached/) });
    await expect(c.state.waitForElection()).rejects.toMatchObject({ code: "ILLEGAL_STATE" });
    expect(c.state.ready).toBe(false);
    expect(c.state.isMaster()).toBe(false);

    // The others carry on without it; its group channel no longer takes the map's frames (its route is gone).
    await bed.until(() => a.group.getMembers("state").length === 2 && b.group.getMembers("state").length === 2);
    const unhandled = c.group.stats.unhandledFrames;
    await bed.settle(b.state.map.put("k", text("two")));
    for (const member of [a, b]) expect(str(member.state.map.get("k"))).toBe("two");
    expect(c.group.stats.unhandledFrames).toBeGreaterThan(unhandled);

    // Its group channel works on, and starting it again does not start the map (its life cycle hooks are gone).
    a.group.onInbox("", (request) => request.reply(text("pong")));
    expect(str((await bed.settle(c.group.request(a.group.id, text("ping")))).payload)).toBe("pong");
    await bed.settle(c.group.stop());
    await bed.settle(c.group.join());
    await expect(bed.settle(c.state.map.put("k", text("mine")))).rejects.toMatchObject({ code: "ILLEGAL_STATE", message: expect.stringMatching(/detached/) });
    expect(c.group.stats.errors).toMatchObject({ timer: 0, receive: 0, listener: 0 });
  });
});
