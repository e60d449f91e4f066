import { afterEach, describe, expect, it } from "vitest";
import { nodeCrypto } from "../adapters/node-crypto.ts";
import { Channel } from "../channel/channel.ts";
import { ClusterChannel } from "../cluster/cluster-channel.ts";
import { GroupChannel, type GroupChannelApi } from "../group/group-channel.ts";
import { SimulatedNetwork } from "../transport/simulated-network.ts";
import { wrapTransports } from "../transport/transport-wrapper.ts";
import { settleInVirtualTime } from "../../test/support/virtual-time.ts";

/** Groups and clusters over sealed datagrams, on the simulated network. */

const K1 = { id: 1, secret: new Uint8Array(32).fill(0x11) };

let open: Array<Channel | GroupChannelApi> = [];
afterEach(async () => {
  for (const channel of open) await channel.shutDown();
  open = [];
});

/** Runs virtual time until the promise settles; its value, or what it threw. */
async function settle<T>(net: SimulatedNetwork, promise: Promise<T>, maxMs = 30_000): Promise<T> {
  return settleInVirtualTime(net.clock, promise, maxMs, 5);
}

const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;

describe("a channel over sealed datagrams", () => {
  it("still refuses another member's recorded datagrams after it restarts, or shuts down and starts again", async () => {
    const net = new SimulatedNetwork({ seed: 8 });
    const recorded: Uint8Array[] = [];
    const tapped = wrapTransports(net.transportFactory("h0"), () => ({ beforeSend: (data) => void recorded.push(data.slice()) }));
    const common = { clock: net.clock, incarnation: 1, heartbeatIntervalMs: 100, security: { keys: [K1], provider: nodeCrypto } };
    const a = new Channel({ ...common, name: "a", transport: tapped, random: net.random.fork("a") });
    const b = new Channel({ ...common, name: "b", transport: net.transportFactory("h1"), random: net.random.fork("b") });
    open.push(a, b);
    await a.start();
    await b.start();
    net.clock.runUntil(() => a.peers.length === 1 && b.peers.length === 1, { maxMs: 5_000 });
    // What A said before B listened is news to B, not a replay: record from here on.
    recorded.length = 0;
    net.clock.runFor(500);
    // A says goodbye and goes: from here on, whatever opens at B is a replay.
    await a.stop();
    net.clock.runFor(100);
    const intruder = net.createTransport({ host: "intruder" });
    const group = { host: "239.255.42.99", port: 45_588 };
    // Every replay is refused as one, and none opens.
    const replayAll = () => {
      const before = { opened: b.stats.network.security!.opened, replayed: b.stats.dropped.REPLAYED };
      for (const bytes of recorded) intruder.send(bytes, group);
      net.clock.runFor(50);
      return { opened: b.stats.network.security!.opened - before.opened, replayed: b.stats.dropped.REPLAYED - before.replayed };
    };
    const refusedAll = { opened: 0, replayed: recorded.length };
    expect(replayAll()).toEqual(refusedAll);
    await b.stop();
    await b.start();
    expect(replayAll()).toEqual(refusedAll);
    await b.shutDown();
    await b.start();
    expect(replayAll()).toEqual(refusedAll);
  });
});

describe("a group over sealed datagrams", () => {
  it("point-to-point messages that fill whole datagrams arrive, sealed within the datagram limit", async () => {
    const net = new SimulatedNetwork({ seed: 7, defaultLink: { loss: 0.02 } });
    const members = [0, 1].map(
      (i) =>
        new GroupChannel({ name: `m${i}`, transport: net.transportFactory(`h${i}`), clock: net.clock, random: net.random.fork(`m${i}`), incarnation: 1, groups: ["g"], ...TIMING, maxDatagramBytes: 2_048, security: { keys: [K1], provider: nodeCrypto } }),
    );
    open.push(...members);
    await settle(net, Promise.all(members.map((m) => m.join())));
    let got = 0;
    members[1]!.onInbox("box", () => {
      got++;
    });
    const target = members[0]!.getMemberById(members[1]!.id)!;
    // Small messages bundle into full datagrams; large ones are fragmented into full ones.
    const sends = Array.from({ length: 2_000 }, (_, i) => members[0]!.send(target, new Uint8Array(i % 100 === 0 ? 20_000 : 300 + (i % 7) * 100), { inbox: "box" }));
    await settle(net, Promise.all(sends));
    net.clock.runFor(1_000);
    expect(got).toBe(2_000);
    for (const member of members) expect(member.stats.errors).toEqual({ transport: 0, listener: 0, receive: 0, timer: 0, send: 0 });
  });
});

describe("a cluster in insider mode", () => {
  it("forms a view, replicates writes and grants locks with every datagram signed by its sender", async () => {
    const net = new SimulatedNetwork({ seed: 6, defaultLink: { loss: 0.02 } });
    const identities = [nodeCrypto.generateIdentity(), nodeCrypto.generateIdentity(), nodeCrypto.generateIdentity()];
    const cluster = identities.map(
      (identity, i) =>
        new ClusterChannel({
          name: `m${i}`,
          transport: net.transportFactory(`h${i}`),
          clock: net.clock,
          random: net.random.fork(`m${i}`),
          incarnation: i + 1,
          groups: ["g"],
          heartbeatIntervalMs: 100,
          failureTimeoutMs: 500,
          verifyTimeoutMs: 150,
          discoveryTimeoutMs: 300,
          security: { keys: [K1], identity, trustedMembers: identities.map((id) => id.publicKey), provider: nodeCrypto },
        }),
    );
    open.push(...cluster);
    await settle(net, Promise.all(cluster.map((member) => member.join())));
    expect(cluster.map((member) => member.getView("g")!.members.length)).toEqual([3, 3, 3]);
    await settle(net, cluster[1]!.map.put("k", new TextEncoder().encode("v")));
    const lock = await settle(net, cluster[2]!.map.lock("resource"));
    expect(lock.fencingToken).toBeGreaterThan(0);
    net.clock.runFor(200);
    for (const member of cluster) {
      expect(new TextDecoder().decode(member.map.get("k") as Uint8Array)).toBe("v");
      expect(member.stats.network.security).toMatchObject({ insider: true, senders: 2 });
      expect(member.id).toBe(Buffer.from(identities[cluster.indexOf(member)]!.publicKey.subarray(0, 16)).toString("hex"));
    }
  });
});
