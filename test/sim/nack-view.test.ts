import { describe, expect, it } from "vitest";
import { GroupChannel } from "../../src/group/group-channel.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { encodeMessage, flush } from "./sim-helpers.ts";

describe("NACK flow control on a group channel", () => {
  it("stops waiting for a crashed receiver as soon as the view drops it, before its peer timeout or nack.receiverTimeoutMs", async () => {
    const net = new SimulatedNetwork({ seed: 3 });
    const receiverTimeoutMs = 60_000;
    const members = Array.from(
      { length: 3 },
      (_, i) =>
        new GroupChannel({
          name: `g${i}`,
          transport: net.transportFactory(`h${i}`),
          clock: net.clock,
          random: net.random.fork(`g${i}`),
          incarnation: 1,
          groups: ["nack"],
          heartbeatIntervalMs: 100,
          failureTimeoutMs: 500,
          verifyTimeoutMs: 150,
          discoveryTimeoutMs: 300,
          nack: { windowMessages: 16, windowBytes: 64 * 1024, receiverTimeoutMs },
        }),
    );
    const joined = Promise.all(members.map((m) => m.join({ timeoutMs: 10_000 })));
    while (!members.every((m) => m.getView()?.members.length === 3)) {
      net.clock.runFor(10);
      await flush();
    }
    await joined;
    const [sender, live] = [members[0]!, members[1]!];
    const doomed = members[2]!;
    let got = 0;
    let doneAt = Infinity;
    live.onTopic("flow", () => {
      if (++got === 500) doneAt = net.clock.now();
    });
    let peerDownAt = Infinity;
    sender.on("peerDown", ({ peer }) => {
      if (peer.id === doomed.id) peerDownAt = net.clock.now();
    });
    const unresponsive: number[] = [];
    sender.on("receiverUnresponsive", ({ peer }) => {
      if (peer === doomed.id) unresponsive.push(net.clock.now());
    });
    let viewDroppedAt: number | undefined;
    let gotBeforeViewDrop = 0;
    sender.on("viewChange", ({ view }) => {
      if (view.members.some((m) => m.id === doomed.id) || viewDroppedAt !== undefined) return;
      viewDroppedAt = net.clock.now();
      gotBeforeViewDrop = got;
    });

    const crashedAt = net.clock.now();
    net.crash("h2");
    const sends = Array.from({ length: 500 }, (_, i) => sender.broadcast("flow", encodeMessage(0, i, 100)));
    while (got < 500 && net.clock.now() - crashedAt < 10_000) {
      net.clock.runFor(10);
      await flush();
    }
    expect(got).toBe(500);
    await Promise.all(sends);
    // Released when the view dropped it (failure detection), not when the channel forgot the peer.
    expect(viewDroppedAt).toBeDefined();
    expect(unresponsive).toEqual([viewDroppedAt]);
    // Until then the crashed receiver held the window (16 messages).
    expect(gotBeforeViewDrop).toBeLessThanOrEqual(16);
    expect(doneAt).toBeLessThan(peerDownAt);
    for (const member of members.slice(0, 2)) await member.shutDown();
  });

  it("keeps a member's queues known while its NACK stream announces itself between periodic heartbeats", async () => {
    const net = new SimulatedNetwork({ seed: 4 });
    const [producer, consumer] = Array.from(
      { length: 2 },
      (_, i) =>
        new GroupChannel({
          name: `q${i}`,
          transport: net.transportFactory(`h${i}`),
          clock: net.clock,
          random: net.random.fork(`q${i}`),
          incarnation: 1,
          groups: ["nack"],
          heartbeatIntervalMs: 1_000,
          discoveryTimeoutMs: 300,
        }),
    ) as [GroupChannel, GroupChannel];
    const run = async (ms: number) => {
      for (const end = net.clock.now() + ms; net.clock.now() < end; ) {
        net.clock.runFor(5);
        await flush();
      }
    };
    const joined = Promise.all([producer.join(), consumer.join()]);
    while (!(producer.getView()?.members.length === 2 && consumer.getView()?.members.length === 2)) await run(10);
    await joined;
    let consumed = 0;
    consumer.consumeQueue("work", () => void consumed++);
    await run(20);
    // The consumer broadcasts: its stream announces its highest message (a heartbeat of its own) soon after.
    for (let i = 0; i < 3; i++) void consumer.broadcastToGroup("nack", encodeMessage(1, i, 10));
    await run(100);
    const sent = producer.sendToQueue("work", encodeMessage(0, 0, 10), { timeoutMs: 5_000 });
    await run(50);
    expect(consumed).toBe(1);
    await sent;
    for (const member of [producer, consumer]) await member.shutDown();
  });
});
