// Three cluster members in one Deno process share a replicated map and move a lock between them.
// Deno's UDP needs --unstable-net: deno run --unstable-net --allow-net --allow-env --allow-read examples/deno/replicated-map.ts
// (from JSR: import from "jsr:@activeblaze/activeblaze"; from npm: "npm:activeblaze").
import { BlazeMessage, createClusterChannel } from "@activeblaze/activeblaze";

const cluster = `example-deno-${Deno.pid}`;
const timing = { heartbeatIntervalMs: 200, discoveryTimeoutMs: 300 };
const members = await Promise.all(["ada", "bob", "cy"].map((name) => createClusterChannel({ cluster, name, groups: ["config"], ...timing })));
try {
  await Promise.all(members.map((member) => member.join({ timeoutMs: 10_000 })));
  const [ada, bob, cy] = members;
  await ada.map.put("greeting", new BlazeMessage("hello"));
  const lock = await bob.map.lock("greeting");
  await bob.map.put("greeting", new BlazeMessage("hello, from bob"), { lock });
  await lock.release();
  const seen = members.map((member) => `${member.name}: ${String(member.map.get("greeting"))}`);
  for (const line of seen) console.log(line);
  const agreed = members.every((member) => String(member.map.get("greeting")) === 'BlazeMessage { text: "hello, from bob" }');
  console.log(agreed ? `ok: every replica holds bob's write (master ${cy.getMaster()?.name})` : "failed: the replicas differ");
  Deno.exitCode = agreed ? 0 : 1;
} finally {
  await Promise.all(members.map((member) => member.shutDown()));
}
