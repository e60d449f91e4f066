import { afterEach, describe, expect, it, vi } from "vitest";
import { isBlazeError } from "../../src/errors.ts";
import { BlazeMessage } from "../../src/message/blaze-message.ts";
import {
  BytesMessage,
  MapMessage,
  type Message,
  ObjectMessage,
  StreamMessage,
  TextMessage,
} from "../../src/jms/index.ts";
import { MessagingBed } from "./messaging-bed.ts";

// The JMS API on simulated members (virtual time): topics, queues, selectors, acknowledgement modes,
// transactions, request/reply, priority, expiration, dead letters.

let bed: MessagingBed;
afterEach(async () => {
  await bed.close();
});

describe("JMS topics", () => {
  it("delivers to every subscriber, with wildcards, selectors, headers, properties and every body type", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const publisher = a.createContext();
    const subscriber = b.createContext();
    const all = subscriber.createConsumer(subscriber.topic("prices.>"));
    const acme = subscriber.createConsumer(subscriber.topic("prices.*.acme"), { selector: "bid > 10" });
    const local = publisher.createConsumer(publisher.topic("prices.eu.acme"), { noLocal: true });
    const own = publisher.createConsumer(publisher.topic("prices.eu.acme"));
    await bed.run(50);
    const producer = publisher.createProducer().setProperty("venue", "XETRA").setJMSType("Quote").setJMSCorrelationID("c-1");
    const topic = publisher.topic("prices.eu.acme");
    const replyTo = publisher.queue("quotes.replies");
    producer.setJMSReplyTo(replyTo);
    await producer.send(topic, new TextMessage("cheap").setDoubleProperty("bid", 5));
    await producer.send(topic, new TextMessage("dear").setDoubleProperty("bid", 12.5).setLongProperty("size", 2n ** 40n));
    await producer.send(publisher.topic("prices.us.other"), new Uint8Array([1, 2, 3]));
    await producer.send(topic, new BlazeMessage({ symbol: "ACME", bid: 12.5 }));
    await producer.send(topic, { symbol: "ACME", nested: { deep: true } });
    await producer.send(topic, new StreamMessage(["ACME", 3, true]));

    const received: Message[] = [];
    for (let i = 0; i < 6; i++) received.push(await bed.settle(all.receive({ timeoutMs: 5_000 })));
    expect(received.map((m) => m.constructor.name)).toEqual(["TextMessage", "TextMessage", "BytesMessage", "MapMessage", "ObjectMessage", "StreamMessage"]);
    const [cheap, dear, bytes, map, object, stream] = received as [TextMessage, TextMessage, BytesMessage, MapMessage, ObjectMessage, StreamMessage];
    expect(cheap.text).toBe("cheap");
    expect(dear.getDoubleProperty("bid")).toBe(12.5);
    expect(dear.getLongProperty("size")).toBe(2n ** 40n);
    expect(dear.getStringProperty("venue")).toBe("XETRA");
    expect(dear.JMSType).toBe("Quote");
    expect(dear.JMSCorrelationID).toBe("c-1");
    expect(dear.JMSReplyTo?.equals(replyTo)).toBe(true);
    expect(dear.JMSDestination?.name).toBe("prices.eu.acme");
    expect(dear.JMSMessageID).toMatch(/^ID:[0-9a-f]{32}:1:2$/);
    expect(dear.JMSDeliveryMode).toBe("NON_PERSISTENT");
    expect(dear.JMSPriority).toBe(4);
    expect(dear.JMSRedelivered).toBe(false);
    expect(dear.getIntProperty("JMSXDeliveryCount")).toBe(1);
    expect(bytes.bytes).toEqual(new Uint8Array([1, 2, 3]));
    expect(map.map.getDoubleValue("bid")).toBe(12.5);
    expect(object.object).toEqual({ symbol: "ACME", nested: { deep: true } });
    expect(stream.values).toEqual(["ACME", 3, true]);

    const selected = await bed.settle(acme.receive({ timeoutMs: 5_000 }));
    expect((selected as TextMessage).text).toBe("dear");
    // The other messages have no "bid" (UNKNOWN) or another topic: not selected.
    expect(acme.receiveNoWait()).toBeUndefined();
    expect(local.receiveNoWait()).toBeUndefined();
    expect(own.pending).toBe(5);
  });

  it("gives a text or bytes body sent as it is the headers and properties of its producer, as a message sent the same way has them", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const publisher = a.createContext();
    const subscriber = b.createContext();
    const topic = publisher.topic("orders.new");
    const remote = subscriber.createConsumer(subscriber.topic("orders.new"));
    const own = publisher.createConsumer(topic);
    await bed.run(50);
    const replyTo = publisher.queue("orders.replies");
    const producer = publisher.createProducer().setProperty("venue", "XETRA").setProperty("size", 2 ** 40).setJMSType("Order").setJMSCorrelationID("c-7").setJMSReplyTo(replyTo).setPriority(6).setTimeToLive(60_000);
    await producer.send(topic, "as text");
    await producer.send(topic, new Uint8Array([4, 5]));
    await producer.send(topic, new TextMessage("as a message"));
    for (const consumer of [remote, own]) {
      const received: Message[] = [];
      for (let i = 0; i < 3; i++) received.push(await bed.settle(consumer.receive({ timeoutMs: 5_000 })));
      expect(received.map((m) => m.getBody())).toEqual(["as text", new Uint8Array([4, 5]), "as a message"]);
      expect(received.map((m) => m.JMSMessageID)).toEqual([1, 2, 3].map((n) => expect.stringMatching(new RegExp(`^ID:[0-9a-f]{32}:1:${n}$`))));
      for (const message of received) {
        expect(message.getPropertyNames()).toEqual(["venue", "size"]);
        expect(message.getStringProperty("venue")).toBe("XETRA");
        expect(message.getPropertyType("size")).toBe("long");
        expect(message.getLongProperty("size")).toBe(2n ** 40n);
        expect([message.JMSType, message.JMSCorrelationID, message.JMSPriority, message.JMSDeliveryMode]).toEqual(["Order", "c-7", 6, "NON_PERSISTENT"]);
        expect(message.JMSReplyTo?.equals(replyTo)).toBe(true);
        expect(message.JMSDestination?.equals(topic)).toBe(true);
        expect(message.JMSExpiration).toBeGreaterThan(0);
        expect(message.JMSTimestamp).toBeGreaterThan(0);
      }
    }
    // A subscriber here that changes its message's properties changes no other message, nor the producer's.
    producer.clearProperties().setProperty("venue", "LSE");
    await producer.send(topic, "first");
    await producer.send(topic, "second");
    const first = await bed.settle(own.receive({ timeoutMs: 5_000 }));
    first.setStringProperty("venue", "changed");
    first.setBooleanProperty("extra", true);
    const second = await bed.settle(own.receive({ timeoutMs: 5_000 }));
    expect([second.getPropertyNames(), second.getStringProperty("venue")]).toEqual([["venue"], "LSE"]);
    expect(producer.getPropertyNames()).toEqual(["venue"]);
  });

  it("delivers higher priorities first, out of band for 7–9, and never an expired message", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const subscriber = b.createContext({ autoStart: false });
    const consumer = subscriber.createConsumer(subscriber.topic("alerts"));
    await bed.run(50);
    const publisher = a.createContext();
    const topic = publisher.topic("alerts");
    const producer = publisher.createProducer();
    await bed.settle(producer.setPriority(1).send(topic, "low"));
    await bed.settle(producer.setPriority(9).send(topic, "urgent"));
    await bed.settle(producer.setPriority(4).setTimeToLive(100).send(topic, "perishable"));
    await bed.settle(producer.setPriority(4).setTimeToLive(0).send(topic, "normal"));
    await bed.run(300);
    subscriber.start();
    const order: string[] = [];
    for (let i = 0; i < 3; i++) order.push((await bed.settle(consumer.receive({ timeoutMs: 1_000 })) as TextMessage).text!);
    expect(order).toEqual(["urgent", "normal", "low"]);
    expect(b.stats.expired).toBe(1);
  });

  it("gives every subscriber one order of all senders' messages on a Totem channel", async () => {
    bed = new MessagingBed();
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await bed.add({ channel: { reliability: "totem" } }));
    await bed.run(1_000);
    const consumers = members.map((factory) => {
      const context = factory.createContext();
      return context.createConsumer(context.topic("ledger"));
    });
    await bed.run(100);
    const sends = members.slice(0, 2).flatMap((factory, m) => {
      const context = factory.createContext();
      const producer = context.createProducer();
      return Array.from({ length: 20 }, (_, i) => producer.send(context.topic("ledger"), `m${m}-${i}`));
    });
    await bed.settle(Promise.all(sends));
    const orders = await Promise.all(consumers.map(async (consumer) => {
      const seen: string[] = [];
      for (let i = 0; i < 40; i++) seen.push((await bed.settle(consumer.receive({ timeoutMs: 5_000 })) as TextMessage).text!);
      return seen.join(",");
    }));
    expect(new Set(orders).size).toBe(1);
  });

  it("routes each message to the consumers its topic has when it arrives, as they come and go, past many topic names", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const publisher = a.createContext();
    const producer = publisher.createProducer();
    const subscriber = b.createContext();
    const got = new Map<string, string[]>();
    const listen = (name: string) => (message: Message) => void got.set(name, [...(got.get(name) ?? []), (message as TextMessage).text!]);
    const take = (name: string) => {
      const list = got.get(name) ?? [];
      got.delete(name);
      return list;
    };
    const sport = publisher.topic("news.sport");
    const send = async (topic = sport, text = "") => {
      await bed.settle(producer.send(topic, text));
      await bed.run(20);
    };

    const first = subscriber.createConsumer(subscriber.topic("news.sport"));
    first.setMessageListener(listen("first"));
    await bed.run(50);
    await send(sport, "1");
    expect(take("first")).toEqual(["1"]);

    // Consumers of a topic that already has messages: a wildcard, a selector, a shared subscription, and on the publisher's own member one with noLocal and one without.
    subscriber.createConsumer(subscriber.topic("news.>")).setMessageListener(listen("wildcard"));
    subscriber.createConsumer(subscriber.topic("news.sport"), { selector: "JMSType = 'goal'" }).setMessageListener(listen("goals"));
    subscriber.createSharedConsumer(subscriber.topic("news.*"), "tally").setMessageListener(listen("shared"));
    publisher.createConsumer(sport, { noLocal: true }).setMessageListener(listen("noLocal"));
    publisher.createConsumer(sport).setMessageListener(listen("own"));
    await bed.run(300);
    await send(sport, "2");
    expect(take("first")).toEqual(["2"]);
    expect(take("wildcard")).toEqual(["2"]);
    expect(take("shared")).toEqual(["2"]);
    expect(take("own")).toEqual(["2"]);
    expect(take("goals")).toEqual([]);
    expect(take("noLocal")).toEqual([]);
    await bed.settle(producer.setJMSType("goal").send(sport, "3"));
    producer.setJMSType(null);
    await bed.run(20);
    expect(take("goals")).toEqual(["3"]);
    expect(take("noLocal")).toEqual([]);
    got.clear();

    first.close();
    await send(sport, "4");
    expect(take("first")).toEqual([]);
    expect(take("wildcard")).toEqual(["4"]);
    expect(take("own")).toEqual(["4"]);
    got.clear();

    // More topic names than the routes a member remembers: each still reaches its subscribers, and one subscribed after them too.
    const names = Array.from({ length: 1_100 }, (_, i) => `news.n${i}`);
    await bed.settle(Promise.all(names.map((name) => producer.send(publisher.topic(name), name))));
    await bed.run(200);
    expect(take("wildcard")).toEqual(names);
    expect(take("shared")).toEqual(names);
    subscriber.createConsumer(subscriber.topic("news.n7")).setMessageListener(listen("late"));
    await send(publisher.topic("news.n7"), "5");
    expect(take("late")).toEqual(["5"]);
    expect(take("wildcard")).toEqual(["5"]);
  });

  it("runs a context's listeners one at a time, waiting for those that return a promise, and redelivers when one rejects", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const subscriber = b.createContext();
    const errors: string[] = [];
    subscriber.on("error", ({ error }) => errors.push(error.code));
    let running = 0;
    let most = 0;
    const seen: string[] = [];
    const slow = async (message: Message) => {
      running++;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => bed.net.clock.setTimer(5, resolve));
      running--;
      const text = (message as TextMessage).text!;
      seen.push(`${text}${message.JMSRedelivered ? "'" : ""}`);
      if (text === "a2" && !message.JMSRedelivered) throw new Error("fails the first time");
    };
    subscriber.createConsumer(subscriber.topic("work.a")).setMessageListener(slow);
    subscriber.createConsumer(subscriber.topic("work.b")).setMessageListener((message) => void seen.push((message as TextMessage).text!));
    await bed.run(50);
    const publisher = a.createContext();
    const producer = publisher.createProducer();
    for (let i = 1; i <= 3; i++) {
      void producer.send(publisher.topic("work.a"), `a${i}`);
      void producer.send(publisher.topic("work.b"), `b${i}`);
    }
    await bed.until(() => seen.length === 7);
    expect(most).toBe(1);
    expect(seen.filter((s) => s.startsWith("a"))).toEqual(["a1", "a2", "a2'", "a3"]);
    expect(seen.filter((s) => s.startsWith("b"))).toEqual(["b1", "b2", "b3"]);
    expect(errors).toEqual(["LISTENER_ERROR"]);
  });

  it("rejects a receive that times out with TIMEOUT, never a silent null", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    const context = a.createContext();
    const consumer = context.createConsumer(context.topic("quiet"));
    const error = await bed.settle(consumer.receive({ timeoutMs: 100 })).catch((e: unknown) => e);
    expect(isBlazeError(error, "TIMEOUT")).toBe(true);
  });
});

describe("JMS producers", () => {
  it("refuses PERSISTENT at once, and bad priorities and destinations", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    const context = a.createContext();
    const producer = context.createProducer();
    expect(() => producer.setDeliveryMode("PERSISTENT")).toThrow(expect.objectContaining({ code: "UNSUPPORTED" }));
    expect(() => producer.setPriority(10)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    await expect(producer.send(context.topic("a.>"), "x")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(() => context.createConsumer(context.topic("a.b>"))).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => context.createConsumer(context.queue("q"), { selector: "a = " })).toThrow(expect.objectContaining({ code: "INVALID_SELECTOR" }));
  });
});

describe("JMS queues", () => {
  it("gives each message to exactly one consumer, within prefetch, in priority order", async () => {
    bed = new MessagingBed();
    const [a, b, c] = await bed.addMembers(3);
    const producerContext = a.createContext();
    const queue = producerContext.queue("orders");
    const producer = producerContext.createProducer();
    for (let i = 0; i < 20; i++) await bed.settle(producer.setPriority(i % 2 === 0 ? 2 : 8).send(queue, `order-${i}`));
    expect(a.queueDepth("orders")).toBe(20);
    const got: string[][] = [[], []];
    const consumers = [b, c].map((factory, i) => {
      const context = factory.createContext();
      const consumer = context.createConsumer(queue, { prefetch: 5 });
      consumer.setMessageListener((m) => {
        got[i]!.push((m as TextMessage).text!);
      });
      return consumer;
    });
    await bed.until(() => got[0]!.length + got[1]!.length === 20);
    const all = [...got[0]!, ...got[1]!];
    expect(new Set(all).size).toBe(20);
    expect(got[0]!.length).toBeGreaterThan(0);
    expect(got[1]!.length).toBeGreaterThan(0);
    // The first messages each consumer got were the high-priority ones.
    for (const list of got) expect(Number(list[0]!.split("-")[1]) % 2).toBe(1);
    await bed.until(() => a.queueDepth("orders") === 0 && b.queueDepth("orders") === 0);
    void consumers;
  });

  it("takes more sends, assignments and acknowledgements at once than one write of the replicated map holds", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const context = a.createContext();
    const queue = context.queue("bulk");
    const producer = context.createProducer();
    const body = new Uint8Array(600).fill(1);
    // About 700 bytes each in the map: 700 sends in one tick are several datagrams' worth, and so are
    // the dispatcher's 700 assignments to a consumer with room for all, and their acknowledgement.
    const sends = Array.from({ length: 700 }, () => producer.send(queue, body));
    const outcomes = await bed.settle(Promise.allSettled(sends));
    expect(outcomes.filter((o) => o.status === "rejected").map((o) => String((o as PromiseRejectedResult).reason))).toEqual([]);
    expect(a.queueDepth("bulk")).toBe(700);
    const consumerContext = b.createContext({ sessionMode: "CLIENT_ACKNOWLEDGE" });
    const consumer = consumerContext.createConsumer(queue);
    await bed.until(() => consumer.pending === 700);
    const ids = new Set<string>();
    for (let i = 0; i < 700; i++) ids.add(consumer.receiveNoWait()!.JMSMessageID!);
    expect(ids.size).toBe(700);
    await bed.settle(consumerContext.acknowledge());
    await bed.until(() => a.queueDepth("bulk") === 0 && b.queueDepth("bulk") === 0);
    expect(b.stats.queue.acknowledged).toBe(700);
  });

  it("keeps a message its producer sent when the producer crashes, and redelivers one whose consumer crashed", async () => {
    bed = new MessagingBed();
    const [a, b, c] = await bed.addMembers(3);
    const queue = a.createContext().queue("jobs");
    await bed.settle(a.createContext().createProducer().send(queue, "job-1"));
    bed.crash(0);
    await bed.run(1_500);
    const context = b.createContext({ sessionMode: "CLIENT_ACKNOWLEDGE" });
    const consumer = context.createConsumer(queue);
    const first = await bed.settle(consumer.receive({ timeoutMs: 5_000 }));
    expect((first as TextMessage).text).toBe("job-1");
    expect(first.JMSRedelivered).toBe(false);
    // b dies holding it unacknowledged: c gets it again.
    bed.crash(1);
    const other = c.createContext().createConsumer(queue);
    const again = await bed.settle(other.receive({ timeoutMs: 10_000 }));
    expect((again as TextMessage).text).toBe("job-1");
    expect(again.JMSRedelivered).toBe(true);
    expect(again.getIntProperty("JMSXDeliveryCount")).toBe(2);
    await bed.until(() => c.queueDepth("jobs") === 0);
  });

  it("sends a message past maxRedeliveries to the dead-letter queue", async () => {
    bed = new MessagingBed();
    const a = await bed.add({ factory: { maxRedeliveries: 2 } });
    await bed.run(300);
    const context = a.createContext({ sessionMode: "SESSION_TRANSACTED" });
    const queue = context.queue("poison");
    await bed.settle(a.createContext().createProducer().send(queue, "bad"));
    const consumer = context.createConsumer(queue);
    for (let delivery = 1; delivery <= 3; delivery++) {
      const message = await bed.settle(consumer.receive({ timeoutMs: 5_000 }));
      expect(message.getIntProperty("JMSXDeliveryCount")).toBe(delivery);
      await bed.settle(context.rollback());
    }
    const dead = await bed.settle(a.createContext().createConsumer(context.queue("DLQ")).receive({ timeoutMs: 5_000 }));
    expect((dead as TextMessage).text).toBe("bad");
    expect(dead.getStringProperty("JMS_OriginalDestination")).toBe("poison");
    expect(a.stats.queue.deadLettered).toBe(1);
  });

  it("never delivers an expired message, and counts it", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    await bed.run(300);
    const context = a.createContext();
    const queue = context.queue("perishable");
    const producer = context.createProducer().setTimeToLive(100);
    await bed.settle(producer.send(queue, "old"));
    await bed.settle(context.createProducer().send(queue, "fresh"));
    await bed.run(200);
    const consumer = context.createConsumer(queue);
    const message = await bed.settle(consumer.receive({ timeoutMs: 2_000 }));
    expect((message as TextMessage).text).toBe("fresh");
    await bed.until(() => a.queueDepth("perishable") === 0);
    expect(a.stats.queue.expired + a.stats.expired).toBe(1);
  });

  it("holds a delayed message until its delivery time", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    await bed.run(300);
    const context = a.createContext();
    const queue = context.queue("later");
    await bed.settle(context.createProducer().setDeliveryDelay(500).send(queue, "later"));
    const start = bed.net.clock.now();
    const message = await bed.settle(context.createConsumer(queue).receive({ timeoutMs: 5_000 }));
    expect((message as TextMessage).text).toBe("later");
    expect(bed.net.clock.now() - start).toBeGreaterThanOrEqual(450);
  });
  it("names a consumer's messages in one assignment entry per dispatch round, and leaves no entry once they are acknowledged", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const queue = a.createContext().queue("batched");
    const producer = a.createContext().createProducer();
    await bed.settle(Promise.all(Array.from({ length: 200 }, (_, i) => producer.send(queue, `m-${i}`))));
    const context = b.createContext({ sessionMode: "CLIENT_ACKNOWLEDGE" });
    const consumer = context.createConsumer(queue);
    await bed.until(() => consumer.pending === 200);
    const entries = () => a.channel.map.keys().filter((key) => key.startsWith("$jms/a/"));
    // 200 messages, but a handful of entries (one per dispatch round), the same at every member.
    expect(entries().length).toBeGreaterThan(0);
    expect(entries().length).toBeLessThanOrEqual(4);
    expect(b.channel.map.keys().filter((key) => key.startsWith("$jms/a/"))).toEqual(entries());
    const texts = new Set<string>();
    for (let i = 0; i < 200; i++) texts.add((consumer.receiveNoWait() as TextMessage).text!);
    expect(texts.size).toBe(200);
    await bed.settle(context.acknowledge());
    await bed.until(() => a.queueDepth("batched") === 0 && b.queueDepth("batched") === 0 && entries().length === 0);
    expect(b.stats.queue.acknowledged).toBe(200);
  });

  it("lets a dispatcher's write apply only when made knowing the one before, so two members that both think they coordinate give each message once", async () => {
    bed = new MessagingBed();
    const a = await bed.add();
    // b believes it coordinates too (as a deposed coordinator does until it learns otherwise): both dispatch.
    const b = await bed.add({ prepare: (channel) => vi.spyOn(channel, "isMaster").mockReturnValue(true) });
    const c = await bed.add();
    await bed.run(500);
    // Each member's dispatch writes, and how they ended.
    const dispatches = new Map<string, { applied: number; refused: number }>();
    for (const member of [a, b]) {
      const map = member.channel.map;
      const putAll = map.putAll.bind(map);
      const tally = { applied: 0, refused: 0 };
      dispatches.set(member.channel.id, tally);
      vi.spyOn(map, "putAll").mockImplementation((entries, options) => {
        const write = putAll(entries, options);
        const keys = Symbol.iterator in entries ? [...entries].map(([key]) => key) : Object.keys(entries);
        if (keys.includes("$jms/dispatch")) write.then(() => tally.applied++, () => tally.refused++);
        return write;
      });
    }
    const queue = a.createContext().queue("contended");
    const got = new Map<string, number>();
    for (const factory of [b, c]) {
      factory
        .createContext()
        .createConsumer(queue, { prefetch: 4 })
        .setMessageListener((message) => {
          const text = (message as TextMessage).text!;
          got.set(text, (got.get(text) ?? 0) + 1);
        });
    }
    const producer = a.createContext().createProducer();
    for (let round = 0; round < 10; round++) {
      await bed.settle(Promise.all(Array.from({ length: 12 }, (_, i) => producer.send(queue, `job-${round * 12 + i}`))));
      await bed.run(20);
    }
    await bed.until(() => got.size === 120 && a.queueDepth("contended") === 0, 20_000);
    await bed.run(500);
    // Both dispatched, some of their writes were refused, and yet no message went out twice.
    const tallies = [...dispatches.values()];
    expect(tallies.every(({ applied, refused }) => applied + refused > 0)).toBe(true);
    expect(tallies.reduce((sum, { refused }) => sum + refused, 0)).toBeGreaterThan(0);
    expect([...got.values()].every((count) => count === 1)).toBe(true);
    expect(got.size).toBe(120);
  });

  it("redelivers every message of a batch whose consumer crashed holding it, each once, to another consumer", async () => {
    bed = new MessagingBed();
    const [a, b, c] = await bed.addMembers(3);
    const queue = a.createContext().queue("jobs");
    const producer = a.createContext().createProducer();
    await bed.settle(Promise.all(Array.from({ length: 60 }, (_, i) => producer.send(queue, `job-${i}`))));
    const doomed = b.createContext({ sessionMode: "CLIENT_ACKNOWLEDGE" }).createConsumer(queue);
    await bed.until(() => doomed.pending === 60);
    // It takes 40 of them (delivered, unacknowledged); 20 wait prefetched. Then it dies.
    for (let i = 0; i < 40; i++) expect(doomed.receiveNoWait()).toBeDefined();
    bed.crash(1);
    const got = new Map<string, Message>();
    const context = c.createContext({ sessionMode: "CLIENT_ACKNOWLEDGE" });
    const other = context.createConsumer(queue);
    other.setMessageListener((message) => {
      got.set((message as TextMessage).text!, message);
    });
    await bed.until(() => got.size === 60, 10_000);
    await bed.run(500);
    expect(got.size).toBe(60);
    for (const message of got.values()) {
      expect(message.JMSRedelivered).toBe(true);
      expect(message.getIntProperty("JMSXDeliveryCount")).toBe(2);
    }
    await bed.settle(context.acknowledge());
    await bed.until(() => a.queueDepth("jobs") === 0 && c.queueDepth("jobs") === 0);
    await bed.until(() => a.channel.map.keys().every((key) => !key.startsWith("$jms/a/")));
    expect(c.stats.queue.staleAcknowledgements).toBe(0);
  });

  it("rolls back a transaction whose messages went to another consumer when its own registration went, and the other processes each once", async () => {
    bed = new MessagingBed();
    const [a, b, c] = await bed.addMembers(3);
    const queue = a.createContext().queue("work");
    const producer = a.createContext().createProducer();
    await bed.settle(Promise.all(Array.from({ length: 10 }, (_, i) => producer.send(queue, `w-${i}`))));
    const tx = b.createContext({ sessionMode: "SESSION_TRANSACTED" });
    const slow = tx.createConsumer(queue);
    await bed.until(() => slow.pending === 10);
    for (let i = 0; i < 10; i++) expect(slow.receiveNoWait()).toBeDefined();
    // The map drops the consumer's registration (as when its member leaves the view): its messages go
    // to the other consumer while it still works on them.
    await bed.settle(a.channel.map.remove(`$jms/c/${slow.id}`));
    const done: string[] = [];
    const other = c.createContext({ sessionMode: "SESSION_TRANSACTED" });
    other.createConsumer(queue).setMessageListener(async (message) => {
      done.push((message as TextMessage).text!);
      await other.commit();
    });
    await bed.until(() => done.length === 10);
    // Its commit is refused whole: the entry that gave it the messages is gone.
    await expect(bed.settle(tx.commit())).rejects.toMatchObject({ code: "TRANSACTION_ROLLED_BACK" });
    await bed.until(() => a.queueDepth("work") === 0 && c.queueDepth("work") === 0);
    await bed.run(500);
    // Each once, in the order they were sent.
    expect(done).toEqual(Array.from({ length: 10 }, (_, i) => `w-${i}`));
  });
});

describe("JMS transactions", () => {
  it("holds sends until commit and delivers them together; rollback drops them and redelivers what was consumed", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const tx = a.createContext({ sessionMode: "SESSION_TRANSACTED" });
    const watcher = b.createContext();
    const topicConsumer = watcher.createConsumer(watcher.topic("audit"));
    const queueConsumer = watcher.createConsumer(watcher.queue("out"));
    await bed.run(50);
    const producer = tx.createProducer();
    await producer.send(tx.topic("audit"), "t1");
    await producer.send(tx.queue("out"), "q1");
    await producer.send(tx.topic("audit"), "t2");
    await bed.run(200);
    expect(topicConsumer.receiveNoWait()).toBeUndefined();
    expect(queueConsumer.receiveNoWait()).toBeUndefined();
    await bed.settle(tx.commit());
    await bed.until(() => topicConsumer.pending === 2 && queueConsumer.pending === 1);
    expect((topicConsumer.receiveNoWait() as TextMessage).text).toBe("t1");
    expect((topicConsumer.receiveNoWait() as TextMessage).text).toBe("t2");

    await producer.send(tx.topic("audit"), "dropped");
    await bed.settle(tx.rollback());
    await bed.settle(tx.commit());
    await bed.run(200);
    expect(topicConsumer.pending).toBe(0);

    // Consume in a transaction, roll back: redelivered; commit: gone.
    await bed.settle(a.createContext().createProducer().send(tx.queue("in"), "work"));
    const input = tx.createConsumer(tx.queue("in"));
    const first = await bed.settle(input.receive({ timeoutMs: 5_000 }));
    expect(first.JMSRedelivered).toBe(false);
    await bed.settle(tx.rollback());
    const second = await bed.settle(input.receive({ timeoutMs: 5_000 }));
    expect((second as TextMessage).text).toBe("work");
    expect(second.JMSRedelivered).toBe(true);
    await producer.send(tx.queue("out"), "result");
    await bed.settle(tx.commit());
    await bed.until(() => a.queueDepth("in") === 0 && a.queueDepth("out") === 2);
  });
});

describe("JMS request/reply", () => {
  it("answers through a temporary queue, matched by correlation id; times out with TIMEOUT", async () => {
    bed = new MessagingBed();
    const [a, b] = await bed.addMembers(2);
    const server = b.createContext();
    const replies = server.createProducer();
    server.createConsumer(server.queue("rpc")).setMessageListener(async (request) => {
      await replies.setJMSCorrelationID(request.JMSCorrelationID).send(request.JMSReplyTo!, `echo:${(request as TextMessage).text}`);
    });
    await bed.run(100);
    const client = a.createContext();
    const reply = await bed.settle(client.request(client.queue("rpc"), "hi", { timeoutMs: 5_000 }));
    expect((reply as TextMessage).text).toBe("echo:hi");
    const error = await bed.settle(client.request(client.queue("nobody"), "hello?", { timeoutMs: 300 })).catch((e: unknown) => e);
    expect(isBlazeError(error, "TIMEOUT")).toBe(true);
  });
});
