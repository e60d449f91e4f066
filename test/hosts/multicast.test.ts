/**
 * Reliable multicast across hosts with network stacks of their own: four members in four network
 * namespaces on one bridge (test/hosts/host-network.ts), each running test/runtime/channel-member.ts on
 * its host's address. One member's link is cut in the middle of the stream and healed a second later:
 * the gap is repaired and every member still gets every message of every other, in order, exactly once.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshNetwork, KILL_GRACE_MS, runToEnd, trackMembers } from "../members.ts";
import type { MemberConfig, MemberResult } from "../runtime/channel-member.ts";
import { type Host, HostNetwork, hostNetworkUnsupported } from "./host-network.ts";

const MEMBER = join("test", "runtime", "channel-member.ts");
const MEMBER_TIMEOUT_MS = 30_000;
const MESSAGES = 4_000;
/** The cut comes once the victim has sent this many packets: well into its stream (thousands of them). */
const CUT_AFTER_PACKETS = 800;
const CUT_MS = 1_000;

const unsupported = await hostNetworkUnsupported();
const running = trackMembers();

describe.skipIf(unsupported !== undefined)(`reliable multicast across network namespaces${unsupported === undefined ? "" : ` (skipped: ${unsupported})`}`, () => {
  let network: HostNetwork;
  beforeAll(async () => {
    network = await HostNetwork.create({ hosts: 4 });
  });
  afterAll(() => network?.destroy());

  it(
    `four hosts each broadcast ${MESSAGES.toLocaleString("en-US")} messages; one link is cut mid-stream for ${CUT_MS} ms; everyone gets everything, in order, exactly once`,
    async () => {
      const { group, port, cluster } = freshNetwork("hosts-multicast");
      const outcomes = Promise.all(
        network.hosts.map((host) => {
          const config: MemberConfig = { cluster, group, port, index: host.index, members: network.hosts.length, messages: MESSAGES, timeoutMs: MEMBER_TIMEOUT_MS, interface: host.address };
          return runToEnd<MemberResult>("node", MEMBER, config, running, host.within);
        }),
      );
      const victim = network.hosts[1]!;
      const cut = cutMidStream(network, victim, outcomes);

      const results = await outcomes;
      const cutAt = await cut;
      const all = results.map((o) => o.output).join("\n");
      expect(cutAt, `the stream ended before ${CUT_AFTER_PACKETS} packets from the victim\n${all}`).toBeDefined();
      for (const [index, outcome] of results.entries()) {
        const result = outcome.result;
        expect(result, outcome.output).toBeDefined();
        const others = Object.fromEntries(network.hosts.filter((h) => h.index !== index).map((h) => [String(h.index), MESSAGES]));
        expect({ sent: result!.sent, received: result!.received, complete: result!.complete, ordered: result!.ordered, duplicates: result!.duplicates, corrupt: result!.corrupt }, outcome.output).toEqual({
          sent: MESSAGES,
          received: others,
          complete: true,
          ordered: true,
          duplicates: 0,
          corrupt: 0,
        });
        expect(outcome.code, outcome.output).toBe(0);
      }
      // The cut cost the victim's stream and the others' streams to it: both were repaired.
      const nacks = results.map((o) => Number(o.result!.stats.nacksSent));
      const retransmitted = results.map((o) => Number(o.result!.stats.retransmitted));
      expect(nacks[victim.index], all).toBeGreaterThan(0);
      expect(retransmitted[victim.index], all).toBeGreaterThan(0);
      // Loss besides the cut: datagrams the hosts' kernels dropped for want of socket buffer room.
      const overflowed = await Promise.all(network.hosts.map(async (h) => (await network.datagramCounters(h)).receiveBufferErrors));
      console.log(
        `link of host ${victim.index} cut for ${CUT_MS} ms mid-stream: NACKs sent per member ${nacks.join(", ")}; retransmissions ${retransmitted.join(", ")}; ` +
          `datagrams dropped by full receive buffers ${overflowed.join(", ")}; run ${Math.max(...results.map((o) => o.result!.elapsedMs))} ms`,
      );
    },
    MEMBER_TIMEOUT_MS + KILL_GRACE_MS + 10_000,
  );
});

/**
 * Cuts `victim`'s link for CUT_MS once it has sent CUT_AFTER_PACKETS packets, then heals it; resolves
 * with the moment of the cut, or undefined if the members finished first.
 */
async function cutMidStream(network: HostNetwork, victim: Host, finished: Promise<unknown>): Promise<number | undefined> {
  let done = false;
  void finished.finally(() => (done = true));
  const before = (await network.traffic(victim)).sent;
  while (!done) {
    if ((await network.traffic(victim)).sent - before >= CUT_AFTER_PACKETS) {
      const cutAt = Date.now();
      await network.cut(victim);
      await sleep(CUT_MS);
      await network.heal(victim);
      return cutAt;
    }
    await sleep(10);
  }
  return undefined;
}
