import { createUdpTransport } from "../adapters/node.ts";
import { Channel } from "../channel/channel.ts";
import { BlazeMessage } from "../message/blaze-message.ts";

const TOPIC = "demo.chat";

/**
 * Three members on loopback multicast (the default network, no configuration), exchanging messages on
 * a topic with NACK reliability: every member gets every message of every other member, in order,
 * exactly once, including a 1 MiB message that travels in fragments.
 */
export async function runDemo(options: { messages: number }): Promise<number> {
  const names = ["alpha", "bravo", "charlie"];
  const members = names.map((name) => new Channel({ name, cluster: "activeblaze-demo", transport: createUdpTransport }));
  const received = new Map<string, number>(names.map((name) => [name, 0]));
  const nameOf = (id: string) => members.find((m) => m.id === id)?.name ?? id.slice(0, 8);
  for (const member of members) {
    member.on("peerUp", ({ peer }) => console.log(`${member.name}: sees ${nameOf(peer.id)} (${peer.address.host}:${peer.address.port})`));
    member.addTopicListener(TOPIC, (message) => {
      received.set(member.name, received.get(member.name)! + 1);
      const body = message.message;
      const big = body.getBytesValue("blob");
      const text = big === undefined ? body.getText() : `${body.getText()} (${big.length.toLocaleString("en-US")} bytes, reassembled)`;
      console.log(`${member.name} <- ${nameOf(message.sender)}: ${text}`);
    });
  }
  try {
    await Promise.all(members.map((member) => member.start()));
    await Promise.all(members.map((member) => member.waitForPeers(members.length - 1, { timeoutMs: 5_000 })));
    const network = members[0]!.stats;
    console.log(`three members on multicast 239.255.42.99:45588 over 127.0.0.1, reliability ${network.reliability}\n`);
    for (let n = 1; n <= options.messages; n++) {
      for (const member of members) {
        await member.broadcast(TOPIC, new BlazeMessage(`hello #${n} from ${member.name}`).setIntValue("n", n));
      }
    }
    const blob = new Uint8Array(1024 * 1024).map((_, i) => i & 0xff);
    await members[0]!.broadcast(TOPIC, new BlazeMessage("a large message").setBytesValue("blob", blob));
    // Own messages are delivered too (loopback), so each member expects every message once.
    const expected = options.messages * members.length + 1;
    const deadline = Date.now() + 10_000;
    while ([...received.values()].some((count) => count < expected) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    console.log();
    for (const member of members) {
      const s = member.stats;
      console.log(
        `${member.name}: delivered ${received.get(member.name)}/${expected}; sent ${s.network.datagramsSent} datagrams for ${s.protocol.sent} messages; retransmitted ${s.protocol.retransmitted}; dropped ${Object.values(s.dropped).reduce((a, b) => a + b, 0)}`,
      );
    }
    return [...received.values()].every((count) => count === expected) ? 0 : 1;
  } finally {
    await Promise.all(members.map((member) => member.shutDown()));
  }
}
