/**
 * A seeded simulation of JMS queues (activeblaze/jms on cluster channels, virtual time): a producer
 * sends work to queue "work"; transacted workers take a message, send a result to queue "done" and
 * commit both in one transaction; a transacted collector takes the results. Under loss, duplication and
 * reordering, the run crashes workers while they hold a message (before their commit), the map's
 * coordinator (the queues' dispatcher), and the producer; a fresh worker may join midway.
 *
 * Invariants: every work message whose send resolved is processed exactly once — one committed result,
 * never two (a worker that died holding it never commits; its message is redelivered to another with
 * JMSRedelivered and a higher JMSXDeliveryCount) — no message is processed twice even when its send did
 * not resolve, and no member reports a fault of its own (INTERNAL_ERROR).
 */
import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import { type ConnectionFactory, createConnectionFactory, type JMSContext, type TextMessage } from "../../src/jms/index.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { flush } from "./sim-helpers.ts";

const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;
/** Virtual time a run may take before its missing results count as lost. */
const RUN_LIMIT_MS = 60_000;

export interface JmsScenarioResult {
  readonly seed: number;
  readonly loss: number;
  readonly sent: number;
  readonly acknowledgedSends: number;
  readonly processed: number;
  readonly redelivered: number;
  readonly workerCrashes: number;
  readonly coordinatorCrashed: boolean;
  readonly producerCrashed: boolean;
  readonly rolledBack: number;
}

interface Member {
  readonly index: number;
  readonly host: string;
  readonly channel: ClusterChannel;
  readonly factory: ConnectionFactory;
  crashed: boolean;
}

export async function runJmsScenario(seed: number): Promise<JmsScenarioResult> {
  const rng = new SeededRandom(seed);
  const loss = rng.next() < 0.3 ? 0 : rng.next() * 0.05;
  const net = new SimulatedNetwork({ seed, defaultLink: { loss, duplicate: rng.next() * 0.02, reorder: rng.next() * 0.05, delayMs: { min: 0.05, max: 0.5 } } });
  const clock = net.clock;
  const violations: string[] = [];
  const members: Member[] = [];
  let count = 0;

  const settle = async <T>(promise: Promise<T>): Promise<T> => {
    let done = false;
    let value: T | undefined;
    let error: unknown;
    promise.then(
      (v) => ((done = true), (value = v)),
      (e: unknown) => ((done = true), (error = e)),
    );
    const start = clock.now();
    while (!done) {
      if (clock.now() - start > 30_000) throw new Error("a member did not start within 30 virtual seconds");
      clock.runFor(2);
      await flush();
    }
    if (error !== undefined) throw error;
    return value as T;
  };

  const spawn = async (): Promise<Member> => {
    const index = count++;
    const host = `h${index}`;
    const channel = new ClusterChannel({
      name: `m${index}`,
      transport: net.transportFactory(host),
      clock,
      random: net.random.fork(`m${index}`),
      incarnation: index + 1,
      groups: ["jms"],
      ...TIMING,
      state: { requestTimeoutMs: 3_000 },
    });
    await channel.init();
    await settle(channel.join({ timeoutMs: 30_000 }));
    const factory = await createConnectionFactory({ channel, clock, sendTimeoutMs: 3_000 });
    const member: Member = { index, host, channel, factory, crashed: false };
    const check = (error: { code: string; message: string }, where: string) => {
      if (!member.crashed && error.code === "INTERNAL_ERROR") violations.push(`${clock.now().toFixed(0)} m${index} ${where}: ${error.message}`);
    };
    channel.on("error", ({ error, stage }) => check(error, `channel (${stage})`));
    factory.on("error", ({ error }) => check(error, "messaging"));
    members.push(member);
    return member;
  };

  const crash = (member: Member, why: string) => {
    if (member.crashed) return;
    member.crashed = true;
    void why;
    net.crash(member.host);
  };

  // m0 coordinates the map (and so dispatches the queues) until it may be crashed; m1 collects.
  const coordinator = await spawn();
  const collector = await spawn();
  const producer = await spawn();
  const workers = [await spawn(), await spawn()];
  await settle(new Promise<void>((resolve) => clock.setTimer(500, resolve)));

  const toSend = 30 + rng.nextInt(31);
  const acknowledged = new Set<string>();
  const committed = new Map<string, number>();
  let redelivered = 0;
  let rolledBack = 0;
  let workerCrashes = 0;
  const crashCoordinator = rng.next() < 0.5;
  const crashProducer = rng.next() < 0.3;
  let finished = false;

  // The producer: sends one at a time; a send that resolved is owed a result.
  let sent = 0;
  void (async () => {
    const context = producer.factory.createContext();
    const work = context.queue("work");
    const send = context.createProducer();
    for (let n = 0; n < toSend && !producer.crashed; n++) {
      const id = `w${n}`;
      sent++;
      try {
        await send.send(work, id);
        if (!producer.crashed) acknowledged.add(id);
      } catch {
        // A send that did not resolve (the producer crashed, or it timed out): no result is owed.
      }
      await new Promise<void>((resolve) => clock.setTimer(rng.nextInt(20), resolve));
    }
  })();

  // A worker: take, process for a while, send the result, commit — unless it is crashed holding the message.
  const runWorker = (member: Member, crashAfter: number | undefined) => {
    void (async () => {
      const context: JMSContext = member.factory.createContext({ sessionMode: "SESSION_TRANSACTED" });
      const consumer = context.createConsumer(context.queue("work"), { prefetch: 1 + rng.nextInt(4) });
      const results = context.createProducer();
      let taken = 0;
      while (!member.crashed && !finished) {
        let message;
        try {
          message = await consumer.receive({ timeoutMs: 1_000 });
        } catch {
          continue;
        }
        if (member.crashed) return;
        taken++;
        if (message.JMSRedelivered) redelivered++;
        if (crashAfter !== undefined && taken === crashAfter) {
          workerCrashes++;
          crash(member, "holding a message");
          return;
        }
        await new Promise<void>((resolve) => clock.setTimer(rng.nextInt(30), resolve));
        try {
          await results.send(context.queue("done"), (message as TextMessage).text!);
          await context.commit();
        } catch {
          if (!member.crashed) rolledBack++;
        }
      }
    })();
  };
  runWorker(workers[0]!, rng.next() < 0.7 ? 1 + rng.nextInt(8) : undefined);
  runWorker(workers[1]!, rng.next() < 0.3 ? 1 + rng.nextInt(8) : undefined);

  // The collector: counts each result once it committed taking it.
  void (async () => {
    const context = collector.factory.createContext({ sessionMode: "SESSION_TRANSACTED" });
    const consumer = context.createConsumer(context.queue("done"));
    while (!finished) {
      let message;
      try {
        message = await consumer.receive({ timeoutMs: 1_000 });
      } catch {
        continue;
      }
      const id = (message as TextMessage).text!;
      try {
        await context.commit();
        committed.set(id, (committed.get(id) ?? 0) + 1);
      } catch {
        // Rolled back: the result comes again.
      }
    }
  })();

  const crashAt = 200 + rng.nextInt(1_500);
  const joinAt = 300 + rng.nextInt(2_000);
  let late: Member | undefined;
  let joining = false;
  const start = clock.now();
  while (!finished) {
    clock.runFor(2);
    await flush();
    const elapsed = clock.now() - start;
    if (crashCoordinator && !coordinator.crashed && elapsed >= crashAt) crash(coordinator, "coordinator");
    if (crashProducer && !producer.crashed && elapsed >= crashAt / 2) crash(producer, "producer");
    if (!joining && elapsed >= joinAt) {
      joining = true;
      void spawn().then((member) => {
        late = member;
        runWorker(member, undefined);
      });
    }
    const producerDone = producer.crashed || sent === toSend;
    const allIn = [...acknowledged].every((id) => committed.has(id));
    if (producerDone && allIn && joining && late !== undefined && elapsed > 3_000) finished = true;
    if (elapsed > RUN_LIMIT_MS) break;
  }
  finished = true;

  for (const id of acknowledged) if (!committed.has(id)) violations.push(`${id}: its send resolved, but no result was committed (lost)`);
  for (const [id, times] of committed) if (times > 1) violations.push(`${id}: processed ${times} times`);
  for (const member of members) {
    if (member.crashed) continue;
    await member.factory.close();
    await member.channel.stop();
  }
  if (violations.length > 0) throw new Error(`${violations.length} violation(s):\n${violations.slice(0, 20).join("\n")}`);
  return {
    seed,
    loss,
    sent,
    acknowledgedSends: acknowledged.size,
    processed: committed.size,
    redelivered,
    workerCrashes,
    coordinatorCrashed: coordinator.crashed,
    producerCrashed: producer.crashed,
    rolledBack,
  };
}
