/**
 * A member whose process starts again under the same member id (insider mode: the id is its identity
 * key's) forgets the terms its earlier run took part in. Three members on three hosts with network
 * stacks of their own (test/hosts/host-network.ts), each running test/runtime/identity-cluster-member.ts
 * (quorum mode, minimumMembers 2, a steady stream of acknowledged puts):
 *
 * 1. all three agree on a term; B's link is cut, and A and C go on in a term of their own;
 * 2. A is killed, and the LAN split into {A's host, B} and {C}; A starts again on its host with its
 *    identity (a new process: a later incarnation, a term memory of its own).
 *
 * A's new process must not speak for its earlier run: B knows only the first term, of which {B, new A}
 * hold B alone — so their side takes no write. (Counted by member id, as if A still remembered, they
 * would be two of three and take writes, while C may serve the term it shares with A's earlier run.)
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/security/keys.ts";
import { encodeBase64 } from "../../src/security/options.ts";
import { FAST_TIMING, freshNetwork, MemberProcess, now, outputs, trackMembers } from "../members.ts";
import type { IdentityMemberConfig, IdentityMemberEvent } from "../runtime/identity-cluster-member.ts";
import { type Host, HostNetwork, hostNetworkUnsupported } from "./host-network.ts";

const MEMBER = join("test", "runtime", "identity-cluster-member.ts");
const MEMBER_LIFETIME_MS = 90_000;
const START_TIMEOUT_MS = 45_000;
/** How long the split is watched once A's new process is in a view with B. */
const WATCH_MS = 4_000;

const unsupported = await hostNetworkUnsupported();
const running = trackMembers();

class Member extends MemberProcess<IdentityMemberEvent, IdentityMemberConfig> {
  constructor(
    readonly host: Host,
    config: IdentityMemberConfig,
  ) {
    super("node", MEMBER, config, running, (line) => line.startsWith('{"type":"acked"') || line.startsWith('{"type":"writeFailed"'), host.within);
  }

  acked(from = 0, to = Infinity) {
    return this.of("acked").filter((e) => e.at > from && e.at < to);
  }
}

describe.skipIf(unsupported !== undefined)(`insider identities across network namespaces${unsupported === undefined ? "" : ` (skipped: ${unsupported})`}`, () => {
  let network: HostNetwork;
  beforeAll(async () => {
    network = await HostNetwork.create({ hosts: 3 });
  });
  afterAll(() => network?.destroy());

  it("a member's new process under the same identity does not speak for its earlier run's terms: the side it joins, not a quorum of them, takes no write", async () => {
    const shared = freshNetwork("hosts-identity");
    const secret = encodeBase64(crypto.getRandomValues(new Uint8Array(32)));
    const identities = await Promise.all(network.hosts.map(() => generateIdentity()));
    const [hostA, hostB, hostC] = network.hosts as [Host, Host, Host];
    const start = (host: Host, name: string, identity: IdentityMemberConfig["identity"], joinTimeoutMs = 20_000) =>
      new Member(host, { ...shared, ...FAST_TIMING, name, lifetimeMs: MEMBER_LIFETIME_MS, interface: host.address, secret, identity, operationTimeoutMs: 1_000, joinTimeoutMs });
    const a = start(hostA, "A", identities[0]!);
    const b = start(hostB, "B", identities[1]!);
    const c = start(hostC, "C", identities[2]!);
    const members = [a, b, c];
    const whole = (m: Member) => m.of("view").at(-1)?.members.length === 3;
    await Promise.all(members.map((m) => m.until(() => whole(m) && m.acked().length >= 5, START_TIMEOUT_MS, "a whole view and 5 acknowledged writes")));

    // 1. B cut off: A and C (two of three) go on in a term of their own.
    const cutAt = now();
    await network.cut(hostB);
    await Promise.all([a, c].map((m) => m.until(() => m.acked(cutAt + 200).length >= 10, 15_000, "10 writes acknowledged without B")));

    // 2. A's process killed; {A's host, B} | {C}; A's new process, with its identity, meets B.
    a.kill();
    await a.until(() => a.child.exitCode !== null || a.child.signalCode !== null, 10_000, "its end");
    await network.partition([[hostA, hostB], [hostC]]);
    await network.heal(hostB);
    const splitAt = now();
    // Its join() waits for a map that never gets ready here; it goes on after 3 s.
    const a2 = start(hostA, "A2", identities[0]!, 3_000);
    members.push(a2);
    await a2.until(() => a2.of("joined").length > 0, START_TIMEOUT_MS, "its join");
    expect(a2.of("joined")[0]!.id, "the same member id").toBe(a.of("joined")[0]!.id);
    await Promise.all([a2, b].map((m) => m.until(() => m.of("view").at(-1)?.members.length === 2 && m.of("view").at(-1)!.members.includes("A2"), 15_000, "a view of A2 and B")));
    await new Promise((resolve) => setTimeout(resolve, WATCH_MS));
    const all = outputs(members);

    // Their side takes nothing: it refuses (NO_QUORUM) all along.
    expect([...a2.acked(), ...b.acked(splitAt)].map((e) => e.key), all).toEqual([]);
    const refused = [...a2.of("writeFailed"), ...b.of("writeFailed").filter((e) => e.at > splitAt)];
    const codes = refused.map((e) => e.error.split(":")[0]);
    expect(codes.filter((code) => code === "NO_QUORUM").length, all).toBeGreaterThan(0);
    // (A write B began before the split may have timed out after it.)
    expect(codes.filter((code) => code !== "NO_QUORUM" && code !== "TIMEOUT"), all).toEqual([]);
    for (const m of members) expect(m.of("error"), m.output).toEqual([]);
    console.log(`new process of A with B: ${refused.length} writes refused (NO_QUORUM) in ${WATCH_MS} ms; C, alone, acknowledged ${c.acked(splitAt).length} (it serves when it coordinated its term with A's earlier run)`);
  }, 120_000);
});
