/**
 * IPv6 multicast end to end: three hosts in network namespaces on one bridge (test/hosts/host-network.ts,
 * with IPv6 addresses fd77::1 to fd77::3 on their links), each running test/runtime/group-member.ts on
 * the IPv6 group ff15::<random>: two in Node — one naming its interface ("lan0"), one giving its
 * address — and one in Bun. They agree on a view of all three, then each sends a request and a
 * point-to-point message to each other member (unicast over IPv6, to the addresses their datagrams
 * came from) and gets every answer; `blaze probe`, run on a host of the LAN, finds all three over the
 * same group. Linux's loopback carries no IPv6 multicast, hence the namespaces.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAST_TIMING, freshNetwork, MemberProcess, outputs, randomInt, type Runtime, trackMembers } from "../members.ts";
import type { GroupMemberConfig, GroupMemberEvent } from "../runtime/group-member.ts";
import { type Host, HostNetwork, hostNetworkUnsupported } from "./host-network.ts";

const root = join(import.meta.dirname, "..", "..");
const MEMBER = join("test", "runtime", "group-member.ts");
const MEMBER_LIFETIME_MS = 60_000;
/** Starting three member processes at once on two busy cores takes seconds. */
const TIMEOUT_MS = 45_000;

const unsupported = await hostNetworkUnsupported();
const running = trackMembers();

class Member extends MemberProcess<GroupMemberEvent, GroupMemberConfig> {
  constructor(
    readonly host: Host,
    runtime: Runtime,
    config: GroupMemberConfig,
  ) {
    super(runtime, MEMBER, config, running, () => false, host.within);
  }
}

describe.skipIf(unsupported !== undefined)(`IPv6 multicast across network namespaces${unsupported === undefined ? "" : ` (skipped: ${unsupported})`}`, () => {
  let network: HostNetwork;
  beforeAll(async () => {
    network = await HostNetwork.create({ hosts: 3, ipv6: true });
  });
  afterAll(() => network?.destroy());

  it(
    "three members (Node by interface name, Node by address, Bun) form a group on ff15::/16 and exchange requests and messages over IPv6",
    async () => {
      const shared = { ...freshNetwork("hosts-ipv6"), group: `ff15::${randomInt(1, 0xfffe).toString(16)}` };
      const [h0, h1, h2] = network.hosts as [Host, Host, Host];
      const members = [
        new Member(h0, "node", { ...shared, ...FAST_TIMING, name: "by-name", lifetimeMs: MEMBER_LIFETIME_MS, interface: "lan0", exchangeAt: 3 }),
        new Member(h1, "node", { ...shared, ...FAST_TIMING, name: "by-address", lifetimeMs: MEMBER_LIFETIME_MS, interface: h1.address6!, exchangeAt: 3 }),
        new Member(h2, "bun", { ...shared, ...FAST_TIMING, name: "bun", lifetimeMs: MEMBER_LIFETIME_MS, interface: "lan0", exchangeAt: 3 }),
      ];
      await Promise.all(members.map((member) => member.waitFor((e) => e.type === "exchanged", TIMEOUT_MS, "the exchange with every other member")));

      const names = members.map((m) => m.name).sort();
      for (const member of members) {
        const view = member.of("view").at(-1)!;
        expect([...view.members].sort(), outputs(members)).toEqual(names);
        const others = names.filter((name) => name !== member.name);
        expect(member.of("reply").map((r) => [r.to, r.ok, r.text]).sort(), outputs(members)).toEqual(others.map((to) => [to, true, `${to}:ping from ${member.name}`]));
        expect(member.of("sent").every((s) => s.ok), outputs(members)).toBe(true);
        expect(member.of("error"), outputs(members)).toEqual([]);
      }
      // Every member got the others' point-to-point messages; the views list IPv6 addresses of the LAN.
      await Promise.all(members.map((member) => member.waitFor((e) => e.type === "p2p" && member.of("p2p").length >= 2, 10_000, "both point-to-point messages")));

      // The probe asks over the group from the first host (by interface name) and is answered by all three.
      const probe = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const args = ["probe", "--cluster", shared.cluster, "--group", shared.group, "--group-port", String(shared.port), "--interface", "lan0", "--json", "--timeout", "1500"];
        execFile(h0.within[0], [...h0.within.slice(1), join(root, "node_modules", ".bin", "tsx"), join(root, "src", "cli", "blaze.ts"), ...args], { timeout: 30_000 }, (error, stdout, stderr) =>
          resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? null), stdout, stderr }),
        );
      });
      expect(probe.code, `${probe.stdout}\n${probe.stderr}`).toBe(0);
      const found = JSON.parse(probe.stdout) as { members: Array<{ name: string; address: { host: string } }> };
      expect(found.members.map((m) => m.name).sort()).toEqual(names);
      expect(found.members.find((m) => m.name === "by-address")!.address.host).toBe(h1.address6);
    },
    TIMEOUT_MS + 30_000,
  );
});
