// Two group members in one Bun process: a view of both, and a request answered point to point.
// Bun picks its own UDP adapter (Bun.udpSocket). Run: bun examples/bun/request-reply.ts
import { BlazeMessage, createGroupChannel } from "activeblaze";

const cluster = `example-bun-${process.pid}`;
const timing = { heartbeatIntervalMs: 200, discoveryTimeoutMs: 300 };
await using server = await createGroupChannel({ cluster, name: "server", groups: ["services"], ...timing });
await using client = await createGroupChannel({ cluster, name: "client", groups: ["services"], ...timing });
await Promise.all([server.join({ timeoutMs: 10_000 }), client.join({ timeoutMs: 10_000 })]);
while (client.getMembers("services").length < 2) await Bun.sleep(20);
console.log(`view: ${client.getMembers("services").map((m) => m.name).join(", ")}; coordinator ${client.getCoordinator("services")?.name}`);

server.onInbox("", async (message) => {
  if (message.isRequest) await message.reply(new BlazeMessage(`${message.text().toUpperCase()}!`));
});
const answer = await client.request(server.getLocalMember(), new BlazeMessage("hello from bun"), { timeoutMs: 5_000 });
console.log(`client <- ${answer.text()}`);
console.log(answer.text() === "HELLO FROM BUN!" ? "ok: the request was answered" : "failed: a wrong answer");
process.exitCode = answer.text() === "HELLO FROM BUN!" ? 0 : 1;
