import { afterEach, describe, expect, it } from "vitest";
import { nodeCrypto } from "../adapters/node-crypto.ts";
import { Channel } from "../channel/channel.ts";
import { BlazeMessage } from "../message/blaze-message.ts";
import { SimulatedNetwork } from "../transport/simulated-network.ts";
import type { SecurityOptions } from "./options.ts";
import { settleInVirtualTime } from "../../test/support/virtual-time.ts";

const K1 = { id: 1, secret: new Uint8Array(32).fill(0x11) };
const K2 = { id: 2, secret: new Uint8Array(32).fill(0x22) };
const K2_OTHER = { id: 2, secret: new Uint8Array(32).fill(0x99) };

let open: Channel[] = [];
afterEach(async () => {
  for (const channel of open) await channel.shutDown();
  open = [];
});

/** Runs virtual time until the promise settles; its value, or what it threw. */
async function settle<T>(net: SimulatedNetwork, promise: Promise<T>, maxMs = 30_000): Promise<T> {
  return settleInVirtualTime(net.clock, promise, maxMs, 5);
}

async function members(net: SimulatedNetwork, keyrings: ReadonlyArray<SecurityOptions["keys"]>): Promise<Channel[]> {
  const channels: Channel[] = [];
  for (const [i, keys] of keyrings.entries()) {
    const channel = new Channel({
      name: `m${i}`,
      transport: net.transportFactory(`h${i}`),
      clock: net.clock,
      random: net.random.fork(`m${i}`),
      incarnation: 1,
      heartbeatIntervalMs: 100,
      security: { keys, provider: nodeCrypto },
    });
    open.push(channel);
    await channel.start();
    channels.push(channel);
  }
  net.clock.runUntil(() => channels.every((c) => c.peers.length === channels.length - 1), { maxMs: 10_000 });
  return channels;
}

function counting(channels: readonly Channel[]): number[] {
  const got = channels.map(() => 0);
  channels.forEach((channel, i) => channel.onTopic("t", () => got[i]!++));
  return got;
}

describe("key rotation", () => {
  it("switches every member to the new key and retires the old one, while messages flow", async () => {
    const net = new SimulatedNetwork({ seed: 3, defaultLink: { loss: 0.05 } });
    const channels = await members(net, [[K1, K2], [K1, K2], [K1, K2]]);
    const got = counting(channels);
    for (let i = 0; i < 100; i++) void channels[i % 3]!.broadcast("t", new BlazeMessage(`m${i}`));
    const result = await settle(net, channels[1]!.security!.rotateKey(2, { retire: true, graceMs: 100 }));
    for (let i = 100; i < 200; i++) void channels[i % 3]!.broadcast("t", new BlazeMessage(`m${i}`));
    net.clock.runFor(3_000);
    expect(result).toEqual({ keyId: 2, previous: 1, members: [channels[0]!.id, channels[2]!.id].sort(), retired: 1 });
    for (const channel of channels) expect({ primary: channel.security!.primaryKeyId, keys: channel.security!.keyIds }).toEqual({ primary: 2, keys: [2] });
    // Every member got every other member's 200 messages less its own (loopback delivers its own too).
    expect(got).toEqual([200, 200, 200]);
  });

  it("stops before anything changed when a member lacks the new key, or holds another secret under its id, naming it", async () => {
    for (const [what, lacking] of [
      ["lacks", [K1]],
      ["holds another secret", [K1, K2_OTHER]],
    ] as const) {
      const net = new SimulatedNetwork({ seed: 4 });
      const channels = await members(net, [[K1, K2], [K1, K2], [...lacking]]);
      const error = await settle(net, channels[0]!.security!.rotateKey(2, { timeoutMs: 2_000 })).catch((e: unknown) => e);
      expect(error, what).toMatchObject({ code: "TIMEOUT" });
      expect((error as Error).message, what).toContain(channels[2]!.id.slice(0, 8));
      for (const channel of channels) expect(channel.security!.primaryKeyId, what).toBe(1);
      // Nobody was cut off.
      const got = counting(channels);
      await settle(net, channels[2]!.broadcast("t", new BlazeMessage("still here")));
      net.clock.runFor(500);
      expect(got, what).toEqual([1, 1, 1]);
      if (what === "holds another secret") expect(channels[2]!.stats.dropped.AUTH_FAILED).toBeGreaterThan(0);
      else expect(channels[2]!.stats.dropped.UNKNOWN_KEY).toBeGreaterThan(0);
      for (const channel of channels) await channel.shutDown();
      open = [];
    }
  });

  it("refuses a key not held, a second rotation at once, a stopped channel; a stop fails the rotation under way", async () => {
    const net = new SimulatedNetwork({ seed: 5 });
    const channels = await members(net, [[K1, K2], [K1, K2]]);
    const security = channels[0]!.security!;
    await expect(security.rotateKey(3)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    // The peer is cut off: the check never answers.
    net.isolate("h1");
    const first = security.rotateKey(2, { timeoutMs: 60_000 });
    await expect(security.rotateKey(2)).rejects.toMatchObject({ code: "ILLEGAL_STATE" });
    net.clock.runFor(300);
    await channels[0]!.stop();
    await expect(first).rejects.toMatchObject({ code: "CLOSED" });
    await expect(security.rotateKey(2)).rejects.toMatchObject({ code: "ILLEGAL_STATE" });
    expect(security.primaryKeyId).toBe(1);
  });
});
