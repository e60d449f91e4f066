/**
 * Static peers by name over real UDP: host names resolved at init() (and again after a failure),
 * `dns:` names that give several addresses (a Kubernetes headless service), IPv6 from socket to
 * replicated map, and a waitForPeers timeout that says what is wrong.
 */
import { createSocket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { createUdpTransport } from "../src/adapters/node.ts";
import { Channel } from "../src/channel/channel.ts";
import type { ChannelOptions } from "../src/channel/options.ts";
import { ClusterChannel } from "../src/cluster/cluster-channel.ts";
import { isBlazeError } from "../src/errors.ts";
import { BlazeMessage } from "../src/message/blaze-message.ts";
import type { HostResolver } from "../src/transport/host-names.ts";

/** Free UDP ports on `host`, found by binding and releasing them. */
async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const sockets = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createSocket>>((resolve) => {
      const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
      socket.bind(0, host, () => resolve(socket));
    })),
  );
  const ports = sockets.map((socket) => socket.address().port);
  await Promise.all(sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
  return ports;
}

const closing: Array<{ shutDown(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(closing.splice(0).map((member) => member.shutDown()));
});

function channel(options: ChannelOptions): Channel {
  const member = new Channel({ transport: createUdpTransport, loopback: false, heartbeatIntervalMs: 100, peerTimeoutMs: 2_000, ...options });
  closing.push(member);
  return member;
}

/** Resolves as a DNS server would, recording every name it is asked for. */
function fakeDns(records: Record<string, readonly string[] | Error>): HostResolver & { asked: string[] } {
  const asked: string[] = [];
  const resolver = async (name: string) => {
    asked.push(name);
    const answer = records[name];
    if (answer === undefined) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: "ENOTFOUND" });
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return Object.assign(resolver, { asked });
}

async function exchange(members: readonly Channel[]): Promise<void> {
  const got = members.map(() => new Set<string>());
  members.forEach((member, i) => member.onTopic("t", (message) => got[i]!.add(`${message.sender}:${message.text()}`)));
  for (const member of members) await member.broadcast("t", new BlazeMessage(`from ${member.name}`));
  const deadline = Date.now() + 5_000;
  while (got.some((set) => set.size < members.length - 1) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  got.forEach((set, i) => expect([...set].sort()).toEqual(members.filter((_, j) => j !== i).map((m) => `${m.id}:from ${m.name}`).sort()));
}

describe("static peers by name", () => {
  it("resolves host names at init() through the system resolver (/etc/hosts: localhost)", async () => {
    const ports = await freePorts(3);
    const peers = ports.map((port) => `localhost:${port}`);
    const members = ports.map((port, i) => channel({ name: `m${i}`, cluster: `names-${ports[0]}`, network: { type: "static", peers, port } }));
    await Promise.all(members.map((member) => member.start()));
    await Promise.all(members.map((member) => member.waitForPeers(2, { timeoutMs: 5_000 })));
    for (const member of members) expect(member.peers.map((peer) => peer.address.host)).toEqual(["127.0.0.1", "127.0.0.1"]);
    await exchange(members);
  });

  it("finds every address of a dns: name, and only ever resolves the names it was given", async () => {
    // A headless service: one name, an address per member, the same port everywhere.
    const [port] = await freePorts(1);
    const hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    const dns = fakeDns({ "peers.blaze.test": hosts });
    const members = hosts.map((host, i) =>
      channel({ name: `m${i}`, cluster: `dns-${port}`, network: { type: "static", peers: [`dns:peers.blaze.test:${port}`], bindAddress: host, port: port! }, resolver: dns }),
    );
    await Promise.all(members.map((member) => member.start()));
    await Promise.all(members.map((member) => member.waitForPeers(2, { timeoutMs: 5_000 })));
    members.forEach((member, i) => expect(member.peers.map((peer) => peer.address.host).sort()).toEqual(hosts.filter((_, j) => j !== i)));
    await exchange(members);
    expect(new Set(dns.asked)).toEqual(new Set(["peers.blaze.test"]));
  });

  it("reports a name that does not resolve, resolves it again, and meets the peer once it does", async () => {
    const ports = await freePorts(2);
    const records: Record<string, readonly string[] | Error> = { "a.blaze.test": ["127.0.0.1"] };
    const dns = fakeDns(records);
    const options = (port: number): ChannelOptions => ({
      cluster: `retry-${ports[0]}`,
      network: { type: "static", peers: [`a.blaze.test:${ports[0]}`, `b.blaze.test:${ports[1]}`], port },
      resolver: dns,
    });
    const a = channel({ name: "a", ...options(ports[0]!) });
    const errors: string[] = [];
    a.on("error", ({ error, stage }) => errors.push(`${stage} ${error.code}: ${error.message}`));
    await a.start();
    expect(errors).toEqual([`transport RESOLVE_FAILED: static peer b.blaze.test:${ports[1]} does not resolve: ENOTFOUND`]);
    const timeout: unknown = await a.waitForPeers(1, { timeoutMs: 300 }).catch((error: unknown) => error);
    expect(isBlazeError(timeout, "TIMEOUT")).toBe(true);
    expect((timeout as Error).message).toContain(`0 heard; b.blaze.test:${ports[1]} does not resolve (ENOTFOUND); no answer from 127.0.0.1:${ports[0]}`);
    // b comes up (knowing only itself, so it cannot be the one to call) and its name appears; a asks
    // again (1 s after the failure, then backing off) and meets it.
    records["b.blaze.test"] = ["127.0.0.1"];
    const b = channel({ name: "b", ...options(ports[1]!), network: { type: "static", peers: [`b.blaze.test:${ports[1]}`], port: ports[1]! } });
    await b.start();
    const askedBefore = dns.asked.filter((name) => name === "b.blaze.test").length;
    await a.waitForPeers(1, { timeoutMs: 5_000 });
    expect(dns.asked.filter((name) => name === "b.blaze.test").length).toBeGreaterThan(askedBefore);
    await exchange([a, b]);
    expect(errors).toHaveLength(1);
  });

  it("refuses a malformed peer with the field's path", () => {
    const bad = (peers: string[]) => {
      try {
        new Channel({ network: { type: "static", peers, port: 7_000 } });
      } catch (error) {
        return isBlazeError(error, "INVALID_OPTION") ? error.message : String(error);
      }
      return "accepted";
    };
    expect(bad(["::1:7000"])).toMatch(/"channel\.network\.peers\.0".*brackets/);
    expect(bad(["[not-v6]:7000"])).toMatch(/"channel\.network\.peers\.0".*not an IPv6 address/);
    expect(bad(["dns:10.0.0.1:7000"])).toMatch(/takes a name/);
    expect(bad(["bad_name!:7000"])).toMatch(/neither an IP address nor a host name/);
    expect(bad(["300.1.1.1:7000"])).toMatch(/not an IPv4 address/);
    expect(bad(["[::1]:7000", "10.0.0.2:7000", "node-b.example:7000", "dns:peers.example.:7000"])).toBe("accepted");
  });
});

describe("IPv6 end to end", () => {
  it("runs a cluster over [::1]: views, point to point, the replicated map and a lock", async () => {
    const ports = await freePorts(3, "::1");
    const peers = ports.map((port) => `[::1]:${port}`);
    const members = ports.map((port, i) => {
      const member = new ClusterChannel({
        name: `v6-${i}`,
        cluster: `ipv6-${ports[0]}`,
        network: { type: "static", peers, bindAddress: "::1", port },
        transport: createUdpTransport,
        groups: ["g"],
        heartbeatIntervalMs: 100,
        failureTimeoutMs: 1_000,
        verifyTimeoutMs: 300,
        discoveryTimeoutMs: 300,
      });
      closing.push(member);
      return member;
    });
    await Promise.all(members.map((member) => member.join({ timeoutMs: 10_000 })));
    const deadline = Date.now() + 10_000;
    while (members.some((m) => m.getMembers("g").length !== 3 || !m.ready) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const member of members) {
      expect(member.getMembers("g").map((m) => m.address.host)).toEqual(["::1", "::1", "::1"]);
      expect(member.localAddress).toEqual({ host: "::1", port: member.localAddress.port });
    }
    const [a, b, c] = members as [ClusterChannel, ClusterChannel, ClusterChannel];
    b.onInbox("", (message) => void message.reply(new BlazeMessage(`re: ${message.text()}`)));
    expect((await a.request(b.getLocalMember(), new BlazeMessage("ping"), { timeoutMs: 5_000 })).text()).toBe("re: ping");
    await a.map.put("k", new BlazeMessage("v6"));
    const lock = await c.map.lock("k", { timeoutMs: 5_000 });
    await c.map.put("k", new BlazeMessage("locked write"), { lock });
    await lock.release();
    for (const member of members) expect(member.map.get("k")?.toString()).toBe('BlazeMessage { text: "locked write" }');
  }, 30_000);
});
