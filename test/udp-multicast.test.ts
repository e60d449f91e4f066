/**
 * Reliable multicast over real UDP on loopback multicast: members as separate processes (Node, and
 * Node, Bun and Deno in one group) running test/runtime/channel-member.ts, and a member's refusal of
 * other clusters' datagrams and of garbage, in-process.
 */
import { createSocket, type Socket } from "node:dgram";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createUdpTransport } from "../src/adapters/node.ts";
import { Channel } from "../src/channel/channel.ts";
import type { TopicMessage } from "../src/channel/topic-message.ts";
import { encodeEnvelopeHeader } from "../src/wire/frames.ts";
import { freshNetwork, KILL_GRACE_MS, type MemberOutcome as Outcome, randomInt, type Runtime, runToEnd, trackMembers } from "./members.ts";
import type { MemberConfig, MemberResult } from "./runtime/channel-member.ts";

const MEMBER = join("test", "runtime", "channel-member.ts");

/** A member gives up (and reports) after this long; its process is killed a little later if it has not exited. */
const MEMBER_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = MEMBER_TIMEOUT_MS + KILL_GRACE_MS + 5_000;

type MemberOutcome = Outcome<MemberResult>;

const running = trackMembers();

/** Runs one member per entry of `runtimes` in one group, each broadcasting `messages` messages. */
async function runGroup(runtimes: readonly Runtime[], messages: number): Promise<MemberOutcome[]> {
  const network = freshNetwork("udp-test");
  return Promise.all(
    runtimes.map((runtime, index) => {
      const config: MemberConfig = { ...network, index, members: runtimes.length, messages, timeoutMs: MEMBER_TIMEOUT_MS };
      return runToEnd<MemberResult>(runtime, MEMBER, config, running);
    }),
  );
}

/** Every member got every other member's messages, all of them, in order, exactly once, intact. */
function expectAllDelivered(outcomes: readonly MemberOutcome[], messages: number): void {
  for (const [index, outcome] of outcomes.entries()) {
    const result = outcome.result;
    expect(result, outcome.output).toBeDefined();
    const expected: Record<string, number> = {};
    for (let sender = 0; sender < outcomes.length; sender++) if (sender !== index) expected[sender] = messages;
    expect({ runtime: result!.runtime, index: result!.index, sent: result!.sent, received: result!.received }, outcome.output).toEqual({
      runtime: outcome.runtime,
      index,
      sent: messages,
      received: expected,
    });
    expect({ complete: result!.complete, ordered: result!.ordered, duplicates: result!.duplicates, corrupt: result!.corrupt }, outcome.output).toEqual({
      complete: true,
      ordered: true,
      duplicates: 0,
      corrupt: 0,
    });
    expect(outcome.code, outcome.output).toBe(0);
  }
}

describe("reliable multicast over real UDP", () => {
  it(
    "four Node processes each broadcast 10,000 messages; everyone gets all of them in order, exactly once",
    async () => {
      const messages = 10_000;
      expectAllDelivered(await runGroup(["node", "node", "node", "node"], messages), messages);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "one group of Node, Bun and Deno members: 5,000 messages each, all delivered in order everywhere",
    async () => {
      const messages = 5_000;
      expectAllDelivered(await runGroup(["node", "bun", "deno"], messages), messages);
    },
    TEST_TIMEOUT_MS,
  );
});

describe("bad input over real UDP", () => {
  const channels: Channel[] = [];
  let raw: Socket | undefined;
  afterEach(async () => {
    raw?.close();
    raw = undefined;
    await Promise.all(channels.splice(0).map((channel) => channel.shutDown()));
  });

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Repeats `step` every 50 ms until `done()` holds; fails after 10 s. */
  async function until(done: () => boolean, step: () => void = () => {}): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`gave up waiting for ${done.toString()}`);
      step();
      await sleep(50);
    }
  }

  it("drops and counts another cluster's datagrams and garbage, delivers none of them, and keeps working", async () => {
    const { group, port, cluster } = freshNetwork("udp-test");
    const open = (name: string, ofCluster: string) => {
      const channel = new Channel({
        cluster: ofCluster,
        name,
        network: { type: "multicast", group, port, interface: "127.0.0.1" },
        reliability: "nack",
        loopback: false,
        // Frequent heartbeats: the stranger's reach the member soon.
        heartbeatIntervalMs: 50,
        transport: createUdpTransport,
      });
      channels.push(channel);
      return channel;
    };
    const member = open("member", cluster);
    const partner = open("partner", cluster);
    const stranger = open("stranger", `${cluster}-other`);
    const delivered: TopicMessage[] = [];
    member.onTopic("news", (message) => delivered.push(message));
    await Promise.all([member.start(), partner.start(), stranger.start()]);
    await member.waitForPeers(1, { timeoutMs: 10_000 });

    // The stranger talks on the same group and port, on the same topic.
    for (let i = 0; i < 100; i++) void stranger.broadcast("news", new Uint8Array([i]));
    // Garbage: a header of the member's own cluster whose cluster-name length runs past the datagram's
    // end, and random bytes.
    const garbled = encodeEnvelopeHeader(cluster, new Uint8Array(16).fill(7), 1);
    garbled[garbled.indexOf(0x1a) + 1] = 0x7f;
    raw = createSocket("udp4");
    await new Promise<void>((resolve) => raw!.bind(0, "127.0.0.1", resolve));
    raw.setMulticastInterface("127.0.0.1");
    const sendGarbage = () => {
      raw!.send(garbled, port, group);
      raw!.send(crypto.getRandomValues(new Uint8Array(randomInt(1, 1_400))), port, group);
    };
    await until(() => member.stats.dropped.WRONG_CLUSTER > 0 && member.stats.dropped.DECODE_FAILED > 0, sendGarbage);

    // Still working: the partner's message arrives, and it is the only one delivered.
    await partner.broadcast("news", new TextEncoder().encode("hello"));
    await until(() => delivered.length > 0);
    await sleep(200);
    expect(delivered.map((message) => [message.sender, message.text()])).toEqual([[partner.id, "hello"]]);
    expect(member.peers.map((peer) => peer.id)).toEqual([partner.id]);
    expect(member.stats.unrouted).toBe(0);
    expect(stranger.stats.dropped.WRONG_CLUSTER).toBeGreaterThan(0);
  });
});
