import { fork } from "node:child_process";
import { ClusterChannel } from "../cluster/cluster-channel.ts";
import type { MapValue } from "../cluster/replicated-map.ts";
import { BlazeMessage } from "../message/blaze-message.ts";

const TOPIC = "demo.chat";
const GROUP = "demo";
/** Quick failure detection, so that a killed member is gone within about 1.5 s (the defaults take 6.5 s). */
const TIMING = { heartbeatIntervalMs: 200, failureTimeoutMs: 1_000, verifyTimeoutMs: 300 } as const;
const LOCK = "printer";

/** What the demo's forked member tells the demo (over Node's IPC channel). */
type FromDemoMember = { readonly type: "locked"; readonly fencingToken: number } | { readonly type: "failed"; readonly error: string };

/**
 * Three members on loopback multicast (the default network, no configuration), as cluster channels:
 * 1. they join the group "demo" and agree on one view, with a coordinator (the master of the cluster);
 * 2. they exchange messages on a topic with NACK reliability (every member gets every message of every
 *    other, in order, exactly once), including a 1 MiB message that travels in fragments;
 * 3. alpha asks bravo a question point to point (request/reply), and a queue spreads work;
 * 4. they share a replicated map: a write by one is seen by every member's change listener, in order;
 * 5. a fourth member, delta, runs in a process of its own and takes a lock; charlie queues for it;
 *    delta is killed with SIGKILL, and the lock moves to charlie once the others find delta dead;
 * 6. charlie leaves, and the others see it at once.
 */
export async function runDemo(options: { readonly messages: number; readonly cluster: string }): Promise<number> {
  const cluster = options.cluster;
  const names = ["alpha", "bravo", "charlie"];
  const members = names.map(
    (name, i) => new ClusterChannel({ name, cluster, groups: [GROUP], weight: i === 1 ? 10 : 0, ...TIMING }),
  );
  const [alpha, bravo, charlie] = members as [ClusterChannel, ClusterChannel, ClusterChannel];
  const received = new Map<string, number>(names.map((name) => [name, 0]));
  // Names of every member seen, the departed too.
  const known = new Map<string, string>();
  const nameOf = (id: string) => known.get(id) ?? id.slice(0, 8);
  for (const member of members) {
    member.on("join", ({ member: m }) => {
      known.set(m.id, m.name);
      console.log(`${member.name}: member started: ${m.name}`);
    });
    member.on("leave", ({ member: m }) => console.log(`${member.name}: member stopped: ${m.name}`));
    member.onTopic(TOPIC, (message) => {
      received.set(member.name, received.get(member.name)! + 1);
      const body = message.message;
      const big = body.getBytesValue("blob");
      const text = big === undefined ? body.getText() : `${body.getText()} (${big.length.toLocaleString("en-US")} bytes, reassembled)`;
      console.log(`${member.name} <- ${nameOf(message.sender)}: ${text}`);
    });
  }
  let ok = true;
  try {
    console.log(`-- cluster "${cluster}": joining group "${GROUP}" on multicast 239.255.42.99:45588 over 127.0.0.1`);
    await Promise.all(members.map((member) => member.join({ timeoutMs: 10_000 })));
    await waitFor(() => members.every((m) => m.getView(GROUP)?.members.length === 3 && m.ready), 10_000);
    await Promise.all(members.map((m) => m.waitForElection({ timeoutMs: 10_000 })));
    const view = alpha.getView(GROUP)!;
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
    await waitFor(() => alpha.getMembers(GROUP).length === 3, 1_000);
    await new Promise((resolve) => setTimeout(resolve, 2.5 * TIMING.heartbeatIntervalMs)); // consumers are advertised with the next heartbeat
    await Promise.all([1, 2, 3, 4].map((n) => alpha.sendToQueue("jobs", new BlazeMessage(`job ${n}`), { timeoutMs: 5_000 })));

    console.log(`\n-- a replicated map (${bravo.getMaster()?.name}, the master, orders every write; a write resolves once every member applied it)`);
    for (const member of members) {
      member.map.on("change", (change) => {
        const by = nameOf(change.owner.id);
        if (change.type === "insert") console.log(`${member.name} sees insert ${change.key} = ${show(change.value)} (version ${change.version}, by ${by})`);
        else if (change.type === "update") console.log(`${member.name} sees update ${change.key}: ${show(change.previous)} -> ${show(change.value)} (version ${change.version}, by ${by})`);
        else console.log(`${member.name} sees remove ${change.key}${change.expired ? " (expired)" : ""}`);
      });
    }
    alpha.map.on("lock", (lock) => console.log(`alpha sees the lock on "${lock.key}" granted to ${nameOf(lock.holder.id)} (fencing token ${lock.fencingToken})`));
    alpha.map.on("unlock", (lock) => {
      const holder = nameOf(lock.holder.id);
      const why = alpha.getMemberById(lock.holder.id) === undefined ? `${holder} left the group` : `released by ${holder}`;
      console.log(`alpha sees the lock on "${lock.key}" freed (${why})`);
    });
    console.log(`alpha: put("color", "blue")`);
    await alpha.map.put("color", new BlazeMessage("blue"));
    console.log(`charlie: put("color", "green") -> was ${show(await charlie.map.put("color", new BlazeMessage("green")))}`);
    // The master shows a write once it learns every member holds it: as a rule when the write resolves,
    // but on a busy machine a moment later.
    await waitFor(() => show(bravo.map.get("color")) === "green", 2_000);
    const version = bravo.map.getEntry("color")!.version;
    console.log(`bravo: compareAndSet("color", version ${version}, "red") -> ${await bravo.map.compareAndSet("color", version, new BlazeMessage("red"))}`);
    console.log(`alpha: compareAndSet("color", version ${version}, "pink") -> ${await alpha.map.compareAndSet("color", version, new BlazeMessage("pink"))} (someone wrote it since)`);
    const reads = members.map((m) => `${m.name} ${show(m.map.get("color"))}`);
    console.log(`every member reads "color" locally: ${reads.join(", ")}`);
    ok &&= members.every((m) => show(m.map.get("color")) === "red");

    console.log(`\n-- a lock moves when its holder is killed (delta runs in a process of its own)`);
    // This program again (blaze.js, or blaze.ts through tsx: its loader is in execArgv, which fork passes on).
    const delta = fork(process.argv[1]!, ["demo-member", JSON.stringify({ cluster })], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    try {
      const locked = await new Promise<Extract<FromDemoMember, { type: "locked" }>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("delta did not take the lock within 15 s")), 15_000);
        delta.on("message", (message: FromDemoMember) => {
          clearTimeout(timer);
          if (message.type === "locked") resolve(message);
          else reject(new Error(`delta failed: ${message.error}`));
        });
        delta.on("exit", (code, signal) => reject(new Error(`delta exited (${code ?? signal})`)));
      });
      await waitFor(() => members.every((m) => m.map.getLock(LOCK) !== undefined), 2_000);
      console.log(`charlie: lock("${LOCK}") ... waits behind delta`);
      const waiting = charlie.map.lock(LOCK, { timeoutMs: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const killedAt = performance.now();
      console.log(`-- SIGKILL delta (process ${delta.pid}): no goodbye; the others find it silent (suspected after ${TIMING.failureTimeoutMs} ms, removed ${TIMING.verifyTimeoutMs} ms later)`);
      delta.kill("SIGKILL");
      const lock = await waiting;
      console.log(`charlie got the lock on "${LOCK}" ${Math.round(performance.now() - killedAt)} ms after the kill (fencing token ${lock.fencingToken}, delta's was ${locked.fencingToken})`);
      await charlie.map.put(LOCK, new BlazeMessage("charlie is printing"), { lock });
      await lock.release();
      // A release is done once a majority has it; the other replicas' lock tables follow a moment later.
      await waitFor(() => members.every((m) => !m.map.isLocked(LOCK)), 2_000);
      ok &&= lock.fencingToken > locked.fencingToken && members.every((m) => show(m.map.get(LOCK)) === "charlie is printing" && !m.map.isLocked(LOCK));
    } finally {
      delta.kill("SIGKILL");
    }
    const sizes = members.map((m) => m.map.size);
    console.log(`the map: ${sizes[0]} entries at every member (${members.map((m) => `${m.name} ${m.map.size}`).join(", ")})`);
    ok &&= sizes.every((size) => size === sizes[0]);

    console.log("\n-- charlie leaves");
    await charlie.leave();
    await waitFor(() => alpha.getMembers(GROUP).length === 2 && bravo.getMembers(GROUP).length === 2, 5_000);
    const after = alpha.getView(GROUP)!;
    console.log(`view ${after.id.counter}: ${after.members.map((m) => m.name).join(", ")}\n`);
    for (const member of members) {
      const s = member.stats;
      console.log(
        `${member.name}: delivered ${received.get(member.name)}/${expected} topic messages; ${s.network.datagramsSent} datagrams sent; retransmitted ${s.protocol.retransmitted}; dropped ${Object.values(s.dropped).reduce((a, b) => a + b, 0)}`,
      );
    }
    return ok && [...received.values()].every((count) => count === expected) ? 0 : 1;
  } finally {
    await Promise.all(members.map((member) => member.shutDown()));
  }
}

/**
 * The demo's fourth member, in a process of its own (`blaze demo-member '{"cluster": ...}'`): joins, takes
 * the lock, writes under it, tells the demo, and waits to be killed. It exits when the demo goes away.
 */
export async function runDemoMember(args: readonly string[]): Promise<void> {
  const { cluster } = JSON.parse(args[0] ?? "{}") as { cluster: string };
  const send = (message: FromDemoMember) => process.send?.(message);
  const delta = new ClusterChannel({ name: "delta", cluster, groups: [GROUP], ...TIMING });
  // Never outlive the demo.
  process.on("disconnect", () => process.exit(0));
  setTimeout(() => process.exit(0), 30_000).unref();
  try {
    await delta.join({ timeoutMs: 10_000 });
    const lock = await delta.map.lock(LOCK);
    await delta.map.put(LOCK, new BlazeMessage("delta is printing"), { lock });
    console.log(`delta (process ${process.pid}): joined with the map's ${delta.map.size} entries; holds the lock on "${LOCK}" (fencing token ${lock.fencingToken})`);
    send({ type: "locked", fencingToken: lock.fencingToken });
  } catch (error) {
    send({ type: "failed", error: error instanceof Error ? error.message : String(error) });
  }
}

function show(value: MapValue | undefined): string {
  if (value === undefined) return "nothing";
  return value instanceof BlazeMessage ? (value.getText() ?? JSON.stringify(value)) : `${value.length} bytes`;
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`the demo timed out after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
