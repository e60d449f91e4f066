import { createSocket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { createUdpTransport } from "../src/adapters/node.ts";
import { Channel } from "../src/channel/channel.ts";

// Free UDP ports on 127.0.0.1, found by binding and releasing them.
async function freePorts(count: number): Promise<number[]> {
  const sockets = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createSocket>>((resolve) => {
      const socket = createSocket("udp4");
      socket.bind(0, "127.0.0.1", () => resolve(socket));
    })),
  );
  const ports = sockets.map((socket) => socket.address().port);
  await Promise.all(sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
  return ports;
}

describe("a static peer list over real UDP (no multicast)", () => {
  const channels: Channel[] = [];
  afterEach(async () => {
    await Promise.all(channels.splice(0).map((channel) => channel.shutDown()));
  });

  it("delivers every message of every member to every other, in order", async () => {
    const ports = await freePorts(3);
    const peers = ports.map((port) => `127.0.0.1:${port}`);
    const received = ports.map(() => new Map<string, number[]>());
    for (const [i, port] of ports.entries()) {
      const channel = new Channel({ cluster: `static-${ports[0]}`, network: { type: "static", peers, port }, transport: createUdpTransport, loopback: false });
      channel.onTopic("t", (message) => {
        const list = received[i]!.get(message.sender) ?? [];
        list.push(new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0));
        received[i]!.set(message.sender, list);
      });
      channels.push(channel);
    }
    await Promise.all(channels.map((channel) => channel.start()));
    await Promise.all(channels.map((channel) => channel.waitForPeers(2, { timeoutMs: 5_000 })));
    const count = 3_000;
    await Promise.all(
      channels.map(async (channel) => {
        for (let n = 0; n < count; n++) {
          const payload = new Uint8Array(200);
          new DataView(payload.buffer).setUint32(0, n);
          const sent = channel.broadcast("t", payload);
          if (n % 500 === 499) await sent;
        }
      }),
    );
    const deadline = Date.now() + 20_000;
    const complete = () => received.every((bySender) => bySender.size === 2 && [...bySender.values()].every((list) => list.length === count));
    while (!complete() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const bySender of received) {
      expect(bySender.size).toBe(2);
      for (const list of bySender.values()) expect(list).toEqual(Array.from({ length: count }, (_, n) => n));
    }
  }, 40_000);
});
