import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { BlazeMessageSchema } from "../../gen/activeblaze/v1/message_pb.ts";
import {
  ConsumerRegistrationSchema,
  DeliveryMode,
  DestinationKind,
  MessagingBatchSchema,
  MessagingMessageSchema,
  QueueAssignmentSchema,
} from "../../gen/activeblaze/v1/messaging_pb.ts";
import { hexToBytes, sameMessage, type VectorFile, VECTORS_DIR } from "../../conformance/runner.ts";
import { SeededRandom } from "../transport/seeded-random.ts";
import {
  decodeAssignment,
  decodeBatch,
  decodeMessage,
  decodeRegistration,
  decodeStream,
  encodeAssignment,
  encodeBatch,
  encodeMessage,
  encodeRegistration,
  emptyHeaders,
  MessageId,
  MessageIdPrefix,
  type WireBody,
  type WireMessage,
} from "./wire.ts";

// The hand-written codec against the messaging conformance vectors: it decodes every valid vector to
// the message the generated decoder gives, refuses every invalid one, and re-encodes round-trip vectors
// byte for byte.

const file = JSON.parse(readFileSync(join(VECTORS_DIR, "messaging.json"), "utf8")) as VectorFile;

function messageInit(wire: WireMessage): MessageInitShape<typeof MessagingMessageSchema> {
  const h = wire.headers;
  const body = wire.body;
  const empty = encodeMessage({ headers: h, body: { kind: "none" } }).length <= 2;
  return {
    headers: empty ? undefined : {
      destination: h.destination.kind === 0 && h.destination.name === "" ? undefined : h.destination,
      messageId: h.messageId.text,
      timestampMs: BigInt(h.timestampMs),
      correlationId: h.correlationId,
      replyTo: h.replyTo,
      type: h.type,
      deliveryMode: h.deliveryMode,
      priority: h.priority === 4 ? undefined : h.priority,
      timeToLiveMs: BigInt(h.timeToLiveMs),
      deliveryDelayMs: BigInt(h.deliveryDelayMs),
      properties: Object.fromEntries(
        [...h.properties].map(([name, p]) => {
          const kind =
            p.type === "boolean"
              ? { case: "boolValue" as const, value: p.value }
              : p.type === "int"
                ? { case: "intValue" as const, value: p.value }
                : p.type === "long"
                  ? { case: "longValue" as const, value: p.value }
                  : p.type === "float"
                    ? { case: "floatValue" as const, value: p.value }
                    : p.type === "double"
                      ? { case: "doubleValue" as const, value: p.value }
                      : { case: "stringValue" as const, value: p.value };
          return [name, { kind }];
        }),
      ),
    },
    body:
      body.kind === "none"
        ? undefined
        : body.kind === "text" || body.kind === "json"
          ? { case: body.kind, value: body.value }
          : body.kind === "bytes"
            ? { case: "bytes", value: body.value }
            : body.kind === "map"
              ? { case: "map", value: fromBinary(BlazeMessageSchema, body.encoded) }
              : { case: "stream", value: decodeStream(body.encoded) },
  };
}

describe("the messaging codec", () => {
  for (const group of file.testGroups) {
    for (const test of group.tests) {
      it(`${test.name} (${group.messageType})`, () => {
        const bytes = hexToBytes(test.hex);
        switch (group.messageType) {
          case MessagingBatchSchema.typeName: {
            const decoded = decodeBatch(bytes);
            if (test.result === "invalid") return expect(decoded).toBeUndefined();
            const proto = create(MessagingBatchSchema, { messages: decoded!.map(messageInit) });
            expect(sameMessage(MessagingBatchSchema, proto, fromBinary(MessagingBatchSchema, bytes))).toBe(true);
            if (test.roundtrip === true) expect(encodeBatch(decoded!)).toEqual(bytes);
            return;
          }
          case MessagingMessageSchema.typeName: {
            const decoded = decodeMessage(bytes);
            if (test.result === "invalid") return expect(decoded).toBeUndefined();
            const proto = create(MessagingMessageSchema, messageInit(decoded!));
            expect(sameMessage(MessagingMessageSchema, proto, fromBinary(MessagingMessageSchema, bytes))).toBe(true);
            if (test.roundtrip === true) expect(encodeMessage(decoded!)).toEqual(bytes);
            return;
          }
          case "activeblaze.v1.MessagingHeaders": {
            // Headers travel inside a message (field 1): decode them there.
            const wrapped = Uint8Array.from([0x0a, ...lengthPrefix(bytes.length), ...bytes]);
            const decoded = decodeMessage(wrapped);
            if (test.result === "invalid") return expect(decoded).toBeUndefined();
            const proto = create(MessagingMessageSchema, messageInit(decoded!));
            expect(sameMessage(MessagingMessageSchema, proto, fromBinary(MessagingMessageSchema, wrapped))).toBe(true);
            if (test.roundtrip === true) expect(encodeMessage(decoded!)).toEqual(wrapped);
            return;
          }
          case QueueAssignmentSchema.typeName: {
            const decoded = decodeAssignment(bytes);
            if (test.result === "invalid") return expect(decoded).toBeUndefined();
            expect(sameMessage(QueueAssignmentSchema, create(QueueAssignmentSchema, decoded!), fromBinary(QueueAssignmentSchema, bytes))).toBe(true);
            if (test.roundtrip === true) expect(encodeAssignment(decoded!)).toEqual(bytes);
            return;
          }
          case ConsumerRegistrationSchema.typeName: {
            const decoded = decodeRegistration(bytes);
            if (test.result === "invalid") return expect(decoded).toBeUndefined();
            expect(sameMessage(ConsumerRegistrationSchema, create(ConsumerRegistrationSchema, decoded!), fromBinary(ConsumerRegistrationSchema, bytes))).toBe(true);
            if (test.roundtrip === true) expect(encodeRegistration(decoded!)).toEqual(bytes);
            return;
          }
          default:
            throw new Error(`no codec for ${group.messageType}`);
        }
      });
    }
  }

  it("refuses truncations and bad tags of a valid message at every length", () => {
    const valid = hexToBytes(file.testGroups.find((g) => g.messageType === MessagingMessageSchema.typeName)!.tests[0]!.hex);
    for (let length = 0; length < valid.length; length++) {
      const cut = valid.subarray(0, length);
      let refusedByGenerated = false;
      try {
        fromBinary(MessagingMessageSchema, cut);
      } catch {
        refusedByGenerated = true;
      }
      expect(decodeMessage(cut) === undefined, `length ${length}`).toBe(refusedByGenerated);
    }
    expect(decodeMessage(Uint8Array.of(0x07))).toBeUndefined();
    expect(decodeMessage(Uint8Array.of(0x00, 0x01))).toBeUndefined();
  });
});

describe("the messaging codec's writer and reader", () => {
  const prefix = new MessageIdPrefix("ID:0123456789abcdef0123456789abcdef:7:");
  const generated = (wire: WireMessage) => toBinary(MessagingBatchSchema, create(MessagingBatchSchema, { messages: [messageInit(wire)] }));

  it("writes a sent message id (its prefix's bytes and its number) as the generated codec writes its string, and reads it back", () => {
    for (const sequence of [0, 1, 9, 10, 99, 100, 65_535, 123_456_789, Number.MAX_SAFE_INTEGER]) {
      const wire: WireMessage = { headers: { ...emptyHeaders(), messageId: MessageId.sent(prefix, sequence) }, body: { kind: "none" } };
      const bytes = encodeBatch([wire]);
      expect(bytes).toEqual(generated(wire));
      expect(fromBinary(MessagingBatchSchema, bytes).messages[0]!.headers!.messageId).toBe(`${prefix.text}${sequence}`);
      const id = decodeBatch(bytes)![0]!.headers.messageId;
      expect(id.text).toBe(`${prefix.text}${sequence}`);
      expect(id.startsWith(prefix)).toBe(true);
      expect(id.startsWith(new MessageIdPrefix("ID:0123456789abcdef0123456789abcdef:8:"))).toBe(false);
    }
  });

  it("writes the headers a send sets (timestamps, delivery modes, priorities, times to live, delays, a long id) as the generated codec, to a new destination and again", () => {
    const topic = { kind: DestinationKind.TOPIC, name: "prices.acme" };
    const long = new MessageIdPrefix(`ID:${"f".repeat(130)}:1:`);
    for (const id of [MessageId.sent(prefix, 0), MessageId.sent(prefix, 123_456), MessageId.sent(long, 7)]) {
      for (const [timestampMs, deliveryMode, priority, timeToLiveMs, deliveryDelayMs] of [
        [0, DeliveryMode.UNSPECIFIED, 4, 0, 0],
        [1_764_777_777_777, DeliveryMode.NON_PERSISTENT, 4, 0, 0],
        [1, DeliveryMode.PERSISTENT, 0, 1, 1],
        [127, DeliveryMode.NON_PERSISTENT, 9, 128, 16_384],
        [Number.MAX_SAFE_INTEGER, DeliveryMode.NON_PERSISTENT, 7, 86_400_000, 2 ** 40],
      ] as const) {
        const wire: WireMessage = { headers: { ...emptyHeaders(), destination: topic, messageId: id, timestampMs, deliveryMode, priority, timeToLiveMs, deliveryDelayMs }, body: { kind: "bytes", value: new Uint8Array(3).fill(priority) } };
        const expected = toBinary(MessagingBatchSchema, create(MessagingBatchSchema, { messages: [messageInit(wire), messageInit(wire)] }));
        expect(sameBytes(encodeBatch([wire, wire]), expected), `${id.text} ${timestampMs} ${priority}`).toBe(true);
        expect(sameBytes(encodeBatch([wire]), generated(wire)), `${id.text} ${timestampMs} ${priority}`).toBe(true);
      }
    }
  });

  it("writes sent ids as the generated codec as their destination, their prefix and their number of digits change from message to message, whatever else the message holds", () => {
    const other = new MessageIdPrefix("ID:fedcba:12:");
    const topic = { kind: DestinationKind.TOPIC, name: "prices.acme" };
    const queue = { kind: DestinationKind.QUEUE, name: "orders" };
    const wires: WireMessage[] = [];
    for (const destination of [topic, queue, { ...topic }]) {
      for (const idPrefix of [prefix, other, prefix]) {
        for (const sequence of [5, 8, 9, 10, 11, 99, 100, 9, 1_000_000, 7]) {
          wires.push({ headers: { ...emptyHeaders(), destination, messageId: MessageId.sent(idPrefix, sequence), timestampMs: 1_764_777_777_777 }, body: { kind: "bytes", value: new Uint8Array([sequence % 256]) } });
        }
      }
    }
    // Bodies and headers that a send writes straight, and others, mixed in one batch.
    const bodies: WireBody[] = [{ kind: "none" }, { kind: "bytes", value: new Uint8Array(0) }, { kind: "bytes", value: new Uint8Array(300).fill(3) }, { kind: "text", value: "é" }];
    for (const [i, body] of bodies.entries()) {
      const headers = { ...emptyHeaders(), destination: topic, messageId: MessageId.sent(prefix, 12 + i) };
      wires.push({ headers, body }, { headers: { ...headers, priority: 0, timeToLiveMs: 5, deliveryDelayMs: 2 ** 35, deliveryMode: DeliveryMode.NON_PERSISTENT }, body });
      wires.push({ headers: { ...headers, type: "t" }, body }, { headers: { ...headers, properties: new Map([["p", { type: "int", value: 1 }]]) }, body });
    }
    for (const wire of wires) expect(sameBytes(encodeBatch([wire]), generated(wire)), wire.headers.messageId.text).toBe(true);
    const expected = toBinary(MessagingBatchSchema, create(MessagingBatchSchema, { messages: wires.map(messageInit) }));
    expect(sameBytes(encodeBatch(wires), expected)).toBe(true);
  });

  it("tells a context's message ids by their prefix, sent or received", () => {
    const one = new MessageIdPrefix("ID:0123456789abcdef0123456789abcdef:1:");
    const eleven = new MessageIdPrefix("ID:0123456789abcdef0123456789abcdef:11:");
    const received = (id: MessageId) => decodeBatch(encodeBatch([{ headers: { ...emptyHeaders(), messageId: id }, body: { kind: "none" } }]))![0]!.headers.messageId;
    for (const id of [MessageId.sent(one, 5), received(MessageId.sent(one, 5)), MessageId.of(`${one.text}5`)]) {
      expect(id.startsWith(one)).toBe(true);
      expect(id.startsWith(new MessageIdPrefix(one.text))).toBe(true);
      expect(id.startsWith(eleven)).toBe(false);
    }
    for (const id of [MessageId.sent(eleven, 5), received(MessageId.sent(eleven, 5)), MessageId.of(`${eleven.text}5`)]) {
      expect(id.startsWith(eleven)).toBe(true);
      expect(id.startsWith(one)).toBe(false);
    }
    expect(MessageId.of("ID:0").startsWith(one)).toBe(false);
  });

  it("reads a message id that is not ASCII as its string, and refuses one that is not UTF-8", () => {
    const wire: WireMessage = { headers: { ...emptyHeaders(), messageId: MessageId.of("ID:é:1") }, body: { kind: "none" } };
    const bytes = encodeBatch([wire]);
    expect(bytes).toEqual(generated(wire));
    const id = decodeBatch(bytes)![0]!.headers.messageId;
    expect(id.text).toBe("ID:é:1");
    expect(id.startsWith(new MessageIdPrefix("ID:"))).toBe(true);
    // 0xc3 0xa9 is é: as a lone 0xff it is no UTF-8, and the batch does not decode (as the generated reader refuses it).
    const broken = Uint8Array.from(bytes);
    broken[broken.indexOf(0xc3)] = 0xff;
    expect(decodeBatch(broken)).toBeUndefined();
    expect(() => fromBinary(MessagingBatchSchema, broken)).toThrow();
  });

  it("writes messages of every size around the lengths' varint boundaries and past a slab as the generated codec, leaving the bytes given out before untouched", () => {
    const given: Array<[Uint8Array, Uint8Array]> = [];
    const sizes = [0, 1, 20, 40, 47, 48, 49, 60, 100, 126, 127, 128, 129, 200, 16_200, 16_300, 16_383, 16_384, 60_000, 70_000, 200_000];
    for (const size of sizes) {
      for (const kind of ["bytes", "text"] as const) {
        const body = kind === "bytes" ? { kind, value: new Uint8Array(size).fill(size % 251) } : { kind, value: "é".repeat(size >> 1) + "x".repeat(size & 1) };
        const wire: WireMessage = {
          headers: { ...emptyHeaders(), destination: { kind: DestinationKind.TOPIC, name: `prices.${size}` }, messageId: MessageId.sent(prefix, size), timestampMs: 1_764_777_777_777, deliveryMode: DeliveryMode.NON_PERSISTENT },
          body,
        };
        const bytes = encodeBatch([wire, wire]);
        const expected = toBinary(MessagingBatchSchema, create(MessagingBatchSchema, { messages: [messageInit(wire), messageInit(wire)] }));
        expect(sameBytes(bytes, expected), `${kind} ${size}`).toBe(true);
        expect(sameBytes(encodeMessage(wire), toBinary(MessagingMessageSchema, create(MessagingMessageSchema, messageInit(wire)))), `${kind} ${size}`).toBe(true);
        given.push([bytes, expected]);
      }
    }
    expect(given.every(([bytes, expected]) => sameBytes(bytes, expected))).toBe(true);
  });

  it("reads each message's destination, however destinations alternate", () => {
    const destinations = [
      { kind: DestinationKind.TOPIC, name: "a" },
      { kind: DestinationKind.TOPIC, name: "b" },
      { kind: DestinationKind.QUEUE, name: "a" },
      { kind: DestinationKind.TOPIC, name: "a" },
      { kind: DestinationKind.TOPIC, name: "a" },
    ];
    const wires = destinations.map((destination): WireMessage => ({ headers: { ...emptyHeaders(), destination }, body: { kind: "none" } }));
    for (const wire of wires) expect(decodeBatch(encodeBatch([wire]))![0]!.headers.destination).toEqual(wire.headers.destination);
    expect(decodeBatch(encodeBatch(wires))!.map((m) => m.headers.destination)).toEqual(destinations);
  });

  it("writes a destination as the generated codec, however often and in whichever field the same one is written", () => {
    const topic = { kind: DestinationKind.TOPIC, name: "prices.acme" };
    const queue = { kind: DestinationKind.QUEUE, name: "orders" };
    const wires: WireMessage[] = [
      { headers: { ...emptyHeaders(), destination: topic }, body: { kind: "none" } },
      { headers: { ...emptyHeaders(), destination: topic, replyTo: topic }, body: { kind: "none" } },
      { headers: { ...emptyHeaders(), destination: queue, replyTo: topic }, body: { kind: "none" } },
      { headers: { ...emptyHeaders(), destination: topic, replyTo: queue }, body: { kind: "none" } },
    ];
    for (const wire of [...wires, ...wires]) expect(sameBytes(encodeBatch([wire]), generated(wire))).toBe(true);
    const decoded = decodeBatch(encodeBatch(wires))!;
    expect(decoded.map((m) => [m.headers.destination, m.headers.replyTo])).toEqual(wires.map((m) => [m.headers.destination, m.headers.replyTo]));
  });
});

describe("the messaging codec on mutated input", () => {
  it("never throws, and reads a batch the same whatever it read before (4,000 seeded mutations)", () => {
    const prefix = new MessageIdPrefix("ID:0123456789abcdef0123456789abcdef:3:");
    const topic = { kind: DestinationKind.TOPIC, name: "prices.acme" };
    const properties = new Map([
      ["region", { type: "string" as const, value: "eu" }],
      ["count", { type: "int" as const, value: -7 }],
      ["big", { type: "long" as const, value: 1n << 40n }],
      ["ratio", { type: "double" as const, value: 0.25 }],
      ["ok", { type: "boolean" as const, value: true }],
    ]);
    const valid = [
      encodeBatch([{ headers: { ...emptyHeaders(), destination: topic, messageId: MessageId.sent(prefix, 41), timestampMs: 1_764_777_777_777 }, body: { kind: "bytes", value: Uint8Array.of(1, 2, 3) } }]),
      encodeBatch([
        { headers: { ...emptyHeaders(), destination: topic, messageId: MessageId.sent(prefix, 42), replyTo: { kind: DestinationKind.TEMPORARY_QUEUE, name: "abc/1/1" }, correlationId: "c-1", type: "quote", priority: 8, timeToLiveMs: 5_000, properties }, body: { kind: "text", value: "héllo" } },
        { headers: { ...emptyHeaders(), destination: { kind: DestinationKind.QUEUE, name: "orders" }, messageId: MessageId.sent(prefix, 43) }, body: { kind: "json", value: '{"a":1}' } },
      ]),
    ];
    // What a consumer can read of a message (the id as its string).
    const readable = (messages: WireMessage[] | undefined) => messages?.map(({ headers, body }) => ({ ...headers, messageId: headers.messageId.text, properties: [...headers.properties], body }));
    const random = new SeededRandom(29);
    let accepted = 0;
    for (let n = 0; n < 4_000; n++) {
      const input = valid[n % valid.length]!.slice();
      for (let k = 0; k < 1 + random.nextInt(3); k++) input[random.nextInt(input.length)] = random.nextInt(256);
      const first = readable(decodeBatch(input));
      // Another message's destination read in between: the destination read last is reused only for the same bytes.
      decodeBatch(valid[(n + 1) % valid.length]!);
      expect(readable(decodeBatch(input)), `case ${n}`).toEqual(first);
      if (first !== undefined) accepted++;
    }
    // The mutations must reach the decoder's paths, not only its refusals.
    expect(accepted).toBeGreaterThan(500);
  });

  it("reads a message as most are written exactly as the general decoder reads it, or refuses it as that one does (6,000 seeded mutations)", () => {
    const prefix = new MessageIdPrefix("ID:0123456789abcdef0123456789abcdef:3:");
    const topic = { kind: DestinationKind.TOPIC, name: "prices.acme" };
    const headers = (sequence: number) => ({ ...emptyHeaders(), destination: topic, messageId: MessageId.sent(prefix, sequence), timestampMs: 1_764_777_777_777 + sequence, deliveryMode: DeliveryMode.NON_PERSISTENT });
    const plain = [
      encodeMessage({ headers: headers(7), body: { kind: "bytes", value: Uint8Array.of(1, 2, 3) } }),
      encodeMessage({ headers: { ...headers(8), priority: 0, timeToLiveMs: 5_000, deliveryDelayMs: 300 }, body: { kind: "text", value: "héllo" } }),
      encodeMessage({ headers: { ...headers(9), priority: 9 }, body: { kind: "none" } }),
      encodeMessage({ headers: headers(10), body: { kind: "bytes", value: new Uint8Array(200).fill(5) } }),
    ];
    // A message with a property is not of that form: a batch holding one is read whole by the general decoder.
    const general = encodeMessage({ headers: { ...headers(11), properties: new Map([["region", { type: "string" as const, value: "eu" }]]) }, body: { kind: "none" } });
    const field = (message: Uint8Array) => [(1 << 3) | 2, ...lengthPrefix(message.length), ...message];
    const readable = (message: WireMessage | undefined) => message && { ...message.headers, messageId: message.headers.messageId.text, properties: [...message.headers.properties], body: message.body };
    const random = new SeededRandom(31);
    let accepted = 0;
    for (let n = 0; n < 6_000; n++) {
      // The message's own bytes are mutated, not the batch's framing: both batches hold the same bytes.
      const message = plain[n % plain.length]!.slice();
      for (let k = 0; k < 1 + random.nextInt(2); k++) message[random.nextInt(message.length)] = random.nextInt(256);
      const alone = decodeBatch(Uint8Array.from(field(message)));
      const withOther = decodeBatch(Uint8Array.from([...field(message), ...field(general)]));
      expect(alone === undefined, `case ${n}`).toBe(withOther === undefined);
      if (alone === undefined) continue;
      expect(readable(alone[0]), `case ${n}`).toEqual(readable(withOther![0]));
      accepted++;
    }
    expect(accepted).toBeGreaterThan(1_000);
  });
});

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function lengthPrefix(length: number): number[] {
  const out: number[] = [];
  while (length >= 0x80) {
    out.push((length % 0x80) | 0x80);
    length = Math.floor(length / 0x80);
  }
  out.push(length);
  return out;
}
