import { createUdpTransport } from "../adapters/node.ts";
import { GroupChannel } from "../group/group-channel.ts";
import { BlazeMessage } from "../message/blaze-message.ts";

const TOPIC = "demo.chat";

/**
 * Three members on loopback multicast (the default network, no configuration):
 * 1. they join the group "demo" and agree on one view, with a coordinator;
 * 2. they exchange messages on a topic with NACK reliability (every member gets every message of every
 *    other, in order, exactly once), including a 1 MiB message that travels in fragments;
 * 3. alpha asks bravo a question point to point (request/reply), and a queue spreads work;
 * 4. charlie leaves, and the others see it at once.
 */
export async function runDemo(options: { messages: number }): Promise<number> {
  const names = ["alpha", "bravo", "charlie"];
  const members = names.map(
    (name, i) =>
      new GroupChannel({ name, cluster: "activeblaze-demo", groups: ["demo"], weight: i === 1 ? 10 : 0, transport: createUdpTransport }),
  );
  const [alpha, bravo, charlie] = members as [GroupChannel, GroupChannel, GroupChannel];
  const received = new Map<string, number>(names.map((name) => [name, 0]));
  const nameOf = (id: string) => members.find((m) => m.id === id)?.name ?? id.slice(0, 8);
  for (const member of members) {
    member.addMemberChangedListener({
      memberStarted: (m) => console.log(`${member.name}: member started: ${m.name}`),
      memberStopped: (m) => console.log(`${member.name}: member stopped: ${m.name}`),
    });
    member.addTopicListener(TOPIC, (message) => {
      received.set(member.name, received.get(member.name)! + 1);
      const body = message.message;
      const big = body.getBytesValue("blob");
      const text = big === undefined ? body.getText() : `${body.getText()} (${big.length.toLocaleString("en-US")} bytes, reassembled)`;
      console.log(`${member.name} <- ${nameOf(message.sender)}: ${text}`);
    });
  }
  try {
    console.log("-- joining group \"demo\" on multicast 239.255.42.99:45588 over 127.0.0.1");
    await Promise.all(members.map((member) => member.join({ timeoutMs: 10_000 })));
    await waitFor(() => members.every((m) => m.getView("demo")?.members.length === 3), 10_000);
    const view = alpha.getView("demo")!;
    console.log(`view ${view.id.counter}: ${view.members.map((m) => m.name).join(", ")}; coordinator ${view.coordinator.name} (weight ${view.coordinator.weight})\n`);

    console.log("-- topic messages (reliability nack)");
    for (let n = 1; n <= options.messages; n++) {
      for (const member of members) await member.broadcast(TOPIC, new BlazeMessage(`hello #${n} from ${member.name}`).setIntValue("n", n));
    }
    const blob = new Uint8Array(1024 * 1024).map((_, i) => i & 0xff);
    await alpha.broadcast(TOPIC, new BlazeMessage("a large message").setBytesValue("blob", blob));
    // Own messages are delivered too (loopback), so each member expects every message once.
    const expected = options.messages * members.length + 1;
    await waitFor(() => [...received.values()].every((count) => count >= expected), 10_000);

    console.log("\n-- request/reply and a queue");
    bravo.onInbox("", (message) => {
      if (message.isRequest) void message.reply(new BlazeMessage(`bravo's answer to "${message.text()}"`));
    });
    const started = performance.now();
    const answer = await alpha.request(bravo.getLocalMember(), new BlazeMessage("what time is it?"), { timeoutMs: 2_000 });
    console.log(`alpha <- bravo: ${answer.text()} (${(performance.now() - started).toFixed(2)} ms)`);
    for (const worker of [bravo, charlie]) worker.consumeQueue("jobs", (job) => console.log(`${worker.name} processed ${job.text()}`));
    await waitFor(() => alpha.getMembers("demo").length === 3, 1_000);
    await new Promise((resolve) => setTimeout(resolve, 1_200)); // consumers are advertised with the next heartbeat
    await Promise.all([1, 2, 3, 4].map((n) => alpha.sendToQueue("jobs", new BlazeMessage(`job ${n}`), { timeoutMs: 5_000 })));

    console.log("\n-- charlie leaves");
    await charlie.leave();
    await waitFor(() => alpha.getMembers("demo").length === 2 && bravo.getMembers("demo").length === 2, 5_000);
    const after = alpha.getView("demo")!;
    console.log(`view ${after.id.counter}: ${after.members.map((m) => m.name).join(", ")}\n`);
    for (const member of members) {
      const s = member.stats;
      console.log(
        `${member.name}: delivered ${received.get(member.name)}/${expected} topic messages; ${s.network.datagramsSent} datagrams sent; retransmitted ${s.protocol.retransmitted}; dropped ${Object.values(s.dropped).reduce((a, b) => a + b, 0)}`,
      );
    }
    return [...received.values()].every((count) => count === expected) ? 0 : 1;
  } finally {
    await Promise.all(members.map((member) => member.shutDown()));
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`the demo timed out after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
