import { afterEach, describe, expect, it } from "vitest";
import { BlazeError } from "../../src/errors.ts";
import { encodeBatch, MessageId } from "../../src/jms/wire.ts";
import { MESSAGING_TOPIC, TEMPORARY_INBOX } from "../../src/jms/connection-factory.ts";
import type { TextMessage } from "../../src/jms/index.ts";
import { MessagingBed } from "./messaging-bed.ts";

// Acknowledgement modes, recover, consumers closing, shared subscriptions, temporary topics, limits,
// and hostile payloads on the messaging topic and inbox — on simulated members.

let bed: MessagingBed;
afterEach(async () => {
  await bed.close();
});

const text = (m: unknown) => (m as TextMessage).text;

describe("acknowledgement", () => {
  it("CLIENT_ACKNOWLEDGE acknowledges everything consumed so far; recover redelivers the rest", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    await bed.run(300);
    const context = a.createContext({ sessionMode: "CLIENT_ACKNOWLEDGE" });
    const queue = context.queue("q");
    const producer = a.createContext().createProducer();
    for (const body of ["1", "2", "3"]) await bed.settle(producer.send(queue, body));
    const consumer = context.createConsumer(queue);
    const first = await bed.settle(consumer.receive({ timeoutMs: 2_000 }));
    await bed.settle(consumer.receive({ timeoutMs: 2_000 }));
    await bed.settle(first.acknowledge());
    await bed.until(() => a.queueDepth("q") === 1);
    const third = await bed.settle(consumer.receive({ timeoutMs: 2_000 }));
    expect(text(third)).toBe("3");
    context.recover();
    const again = await bed.settle(consumer.receive({ timeoutMs: 2_000 }));
    expect(text(again)).toBe("3");
    expect(again.JMSRedelivered).toBe(true);
    await bed.settle(again.acknowledge());
    await bed.until(() => a.queueDepth("q") === 0);
  });

  it("INDIVIDUAL_ACKNOWLEDGE acknowledges one message; closing the context redelivers the others", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    await bed.run(300);
    const context = a.createContext({ sessionMode: "INDIVIDUAL_ACKNOWLEDGE" });
    const queue = context.queue("q");
    const producer = a.createContext().createProducer();
    for (const body of ["1", "2"]) await bed.settle(producer.send(queue, body));
    const consumer = context.createConsumer(queue);
    const first = await bed.settle(consumer.receive({ timeoutMs: 2_000 }));
    const second = await bed.settle(consumer.receive({ timeoutMs: 2_000 }));
    await bed.settle(second.acknowledge());
    await bed.until(() => a.queueDepth("q") === 1);
    void first;
    await context.close();
    const other = a.createContext().createConsumer(queue);
    const redelivered = await bed.settle(other.receive({ timeoutMs: 2_000 }));
    expect(text(redelivered)).toBe("1");
    expect(redelivered.JMSRedelivered).toBe(true);
  });

  it("AUTO_ACKNOWLEDGE in a for-await loop acknowledges a message when the next is asked for; a throwing listener gets it again", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    await bed.run(300);
    const context = a.createContext();
    const queue = context.queue("q");
    const producer = a.createContext().createProducer();
    await bed.settle(producer.send(queue, "1"));
    await bed.settle(producer.send(queue, "2"));
    const consumer = context.createConsumer(queue, { prefetch: 1 });
    const iterator = consumer.messages();
    const first = await bed.settle(iterator.next());
    expect(text(first.value)).toBe("1");
    await bed.run(100);
    expect(a.queueDepth("q")).toBe(2);
    const second = await bed.settle(iterator.next());
    expect(text(second.value)).toBe("2");
    await bed.until(() => a.queueDepth("q") === 1);
    await iterator.return(undefined);
    await bed.until(() => a.queueDepth("q") === 0);

    await bed.settle(producer.send(queue, "fragile"));
    let calls = 0;
    const errors: BlazeError[] = [];
    context.on("error", ({ error }) => errors.push(error));
    consumer.setMessageListener((message) => {
      calls++;
      if (!message.JMSRedelivered) throw new Error("first time fails");
    });
    await bed.until(() => calls === 2 && a.queueDepth("q") === 0);
    expect(errors.map((e) => e.code)).toEqual(["LISTENER_ERROR"]);
  });

  it("gives prefetched, undelivered queue messages back when a consumer closes, without counting a delivery", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    await bed.run(300);
    const context = a.createContext();
    const queue = context.queue("q");
    const producer = context.createProducer();
    for (let i = 0; i < 5; i++) await bed.settle(producer.send(queue, `m${i}`));
    const greedy = context.createConsumer(queue, { prefetch: 5 });
    context.stop();
    await bed.until(() => greedy.pending === 5);
    greedy.close();
    context.start();
    const other = a.createContext().createConsumer(queue);
    const message = await bed.settle(other.receive({ timeoutMs: 2_000 }));
    expect(text(message)).toBe("m0");
    expect(message.JMSRedelivered).toBe(false);
  });
});

describe("consumers that close during traffic", () => {
  it("gives the messages the dispatcher was assigning to a consumer as it closed to another consumer", async () => {
    bed = new MessagingBed();
    for (let i = 0; i < 3; i++) await bed.add();
    await bed.run(500);
    // The producer sits at the dispatcher (the map's coordinator); the consumers at the other two members.
    const dispatcher = bed.members.find((m) => m.channel.isMaster())!.factory;
    const [leaving, staying] = bed.members.filter((m) => m.factory !== dispatcher).map((m) => m.factory.createContext());
    const queue = leaving!.queue("q");
    const closing = leaving!.createConsumer(queue);
    const received = new Set<string>();
    closing.setMessageListener((m) => void received.add(text(m)!));
    staying!.createConsumer(queue).setMessageListener((m) => void received.add(text(m)!));
    await bed.run(300);
    const producer = dispatcher.createContext().createProducer();
    const sends = Array.from({ length: 200 }, (_, i) => producer.send(queue, `m${i}`));
    // Closed as the first sends are dispatched to it: assignments to it are on their way as it leaves.
    closing.close();
    await bed.settle(Promise.all(sends));
    await bed.until(() => received.size === 200 && bed.members.every((m) => m.factory.queueDepth("q") === 0), 10_000);
    expect(received.size).toBe(200);
  });
});

describe("topics", () => {
  it("splits a shared subscription's messages between its consumers on different members, each message once", async () => {
    bed = new MessagingBed();
    const [a, b, c] = await bed.addMembers(3);
    const counts = [0, 0];
    const seen = new Set<string>();
    [b, c].forEach((factory, i) => {
      const context = factory.createContext();
      context.createSharedConsumer(context.topic("events.>"), "billing").setMessageListener((m) => {
        counts[i]!++;
        seen.add(text(m)!);
      });
    });
    await bed.run(300);
    const producer = a.createContext().createProducer();
    for (let i = 0; i < 40; i++) await bed.settle(producer.send(a.createContext().topic(`events.e${i % 3}`), `e${i}`));
    await bed.until(() => counts[0]! + counts[1]! === 40);
    await bed.run(200);
    expect(counts[0]! + counts[1]!).toBe(40);
    expect(seen.size).toBe(40);
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[1]).toBeGreaterThan(0);
  });

  it("splits a shared subscription's messages among the consumers it has when each message comes, as they come and go", async () => {
    bed = new MessagingBed();
    const factories = [await bed.add(), await bed.add(), await bed.add()];
    await bed.run(500);
    const counts = [0, 0, 0];
    const seen = new Set<string>();
    const subscribe = (i: number) => {
      const context = factories[i]!.createContext();
      const consumer = context.createSharedConsumer(context.topic("events"), "billing");
      consumer.setMessageListener((m) => {
        counts[i]!++;
        seen.add(text(m)!);
      });
      return consumer;
    };
    const producer = factories[0]!.createContext().createProducer();
    const topic = factories[0]!.createContext().topic("events");
    const send = async (from: number, count: number) => {
      for (let i = from; i < from + count; i++) await bed.settle(producer.send(topic, `e${i}`));
      await bed.until(() => seen.size === from + count);
      await bed.run(200);
    };
    const leaving = subscribe(1);
    subscribe(2);
    await bed.run(300);
    await send(0, 40);
    expect(counts[1]).toBeGreaterThan(0);
    expect(counts[2]).toBeGreaterThan(0);
    leaving.close();
    await bed.run(300);
    const before = [...counts];
    await send(40, 20);
    expect(counts[1]).toBe(before[1]);
    expect(counts[2]).toBe(before[2]! + 20);
    subscribe(0);
    await bed.run(300);
    await send(60, 40);
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[2]).toBeGreaterThan(before[2]! + 20);
    expect(counts[0]! + counts[1]! + counts[2]!).toBe(100);
  });

  it("delivers a temporary topic only to its own context, and refuses its use after the context closed", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const owner = a.createContext();
    const temporary = owner.createTemporaryTopic();
    const consumer = owner.createConsumer(temporary);
    expect(() => b.createContext().createConsumer(temporary)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    await bed.settle(b.createContext().createProducer().send(temporary, "to the owner"));
    expect(text(await bed.settle(consumer.receive({ timeoutMs: 2_000 })))).toBe("to the owner");
    await owner.close();
    await expect(a.createContext().createProducer().send(temporary, "late")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe("limits and hostile input", () => {
  it("refuses a send to a full queue with QUEUE_FULL", async () => {
    bed = new MessagingBed();
    const a = await bed.add({ factory: { maxQueueMessages: 3 } });
    await bed.run(300);
    const context = a.createContext();
    const producer = context.createProducer();
    for (let i = 0; i < 3; i++) await bed.settle(producer.send(context.queue("small"), `m${i}`));
    await expect(producer.send(context.queue("small"), "one too many")).rejects.toMatchObject({ code: "QUEUE_FULL" });
  });

  it("drops and counts payloads on the messaging topic and inbox that do not decode, and delivers what follows", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const context = b.createContext();
    const consumer = context.createConsumer(context.topic("news"));
    const temporary = context.createTemporaryQueue();
    const inbox = context.createConsumer(temporary);
    const garbage = [new Uint8Array([0xff, 0xff, 0xff]), new Uint8Array([0x0a, 0x05, 0x0a, 0x03, 0x12]), new Uint8Array([0x0a, 0x02, 0x2a, 0x00])];
    for (const bytes of garbage) {
      await bed.settle(a.channel.broadcast(MESSAGING_TOPIC, bytes));
      await bed.settle(a.channel.send(b.memberId, bytes, { inbox: TEMPORARY_INBOX }));
    }
    // A well-formed message naming a temporary queue that does not exist here.
    await bed.settle(a.channel.send(b.memberId, encodeBatch([{ headers: { ...emptyHeaders(), destination: { kind: 3, name: `${b.memberId}/9/9` } }, body: { kind: "none" } }]), { inbox: TEMPORARY_INBOX }));
    await bed.settle(a.createContext().createProducer().send(a.createContext().topic("news"), "still fine"));
    await bed.settle(a.createContext().createProducer().send(temporary, "inbox fine"));
    expect(text(await bed.settle(consumer.receive({ timeoutMs: 2_000 })))).toBe("still fine");
    expect(text(await bed.settle(inbox.receive({ timeoutMs: 2_000 })))).toBe("inbox fine");
    // The last garbage payload happens to decode (an empty JSON body, no destination): unroutable, not delivered.
    expect(b.stats.malformed).toBeGreaterThanOrEqual(3);
    expect(b.stats.unroutable).toBe(2);
  });
});

describe("queue entries written by a faulty member", () => {
  it("counts entries under the messaging keys that do not decode, and goes on dispatching the others", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const garbage = new Uint8Array([0xff, 0xff]);
    await bed.settle(a.channel.map.put("$jms/a/work/ID:nothing:1:1", garbage));
    await bed.settle(a.channel.map.put("$jms/c/not-a-consumer", garbage));
    await bed.settle(a.channel.map.put("$jms/m/work/ID:garbled:1:1", garbage));
    const context = b.createContext();
    const consumer = context.createConsumer(context.queue("work"));
    await bed.settle(a.createContext().createProducer().send(context.queue("work"), "fine"));
    expect(text(await bed.settle(consumer.receive({ timeoutMs: 2_000 })))).toBe("fine");
    expect(a.stats.queue.malformed + b.stats.queue.malformed).toBeGreaterThanOrEqual(3);
    // The dispatcher dropped the garbled message: it does not take a place in the queue.
    await bed.until(() => a.queueDepth("work") === 0 && b.queueDepth("work") === 0);
  });
});

function emptyHeaders() {
  return {
    destination: { kind: 0, name: "" },
    messageId: MessageId.NONE,
    timestampMs: 0,
    correlationId: "",
    replyTo: undefined,
    type: "",
    deliveryMode: 0,
    priority: 4,
    timeToLiveMs: 0,
    deliveryDelayMs: 0,
    properties: new Map(),
  };
}
