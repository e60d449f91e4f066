import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { BlazeMessageSchema } from "../../gen/activeblaze/v1/message_pb.ts";
import {
  ConsumerRegistrationSchema,
  MessagingBatchSchema,
  MessagingMessageSchema,
  QueueAssignmentSchema,
} from "../../gen/activeblaze/v1/messaging_pb.ts";
import { hexToBytes, sameMessage, type VectorFile, VECTORS_DIR } from "../../conformance/runner.ts";
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
      messageId: h.messageId,
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

function lengthPrefix(length: number): number[] {
  const out: number[] = [];
  while (length >= 0x80) {
    out.push((length % 0x80) | 0x80);
    length = Math.floor(length / 0x80);
  }
  out.push(length);
  return out;
}
