import { readdirSync, readFileSync } from "node:fs";
import { create, type DescField, type DescMessage, fromBinary, ScalarType, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import * as cluster from "../../gen/activeblaze/v1/cluster_pb.ts";
import * as common from "../../gen/activeblaze/v1/common_pb.ts";
import * as diagnostics from "../../gen/activeblaze/v1/diagnostics_pb.ts";
import * as envelope from "../../gen/activeblaze/v1/envelope_pb.ts";
import * as fec from "../../gen/activeblaze/v1/fec_pb.ts";
import * as membership from "../../gen/activeblaze/v1/membership_pb.ts";
import * as message from "../../gen/activeblaze/v1/message_pb.ts";
import * as messaging from "../../gen/activeblaze/v1/messaging_pb.ts";
import * as relay from "../../gen/activeblaze/v1/relay_pb.ts";
import * as reliable from "../../gen/activeblaze/v1/reliable_pb.ts";
import * as security from "../../gen/activeblaze/v1/security_pb.ts";
import * as totem from "../../gen/activeblaze/v1/totem_pb.ts";
import { fastCodec } from "./fast-codec.ts";
import { MAX_WIRE_INTEGER, unsafeIntegerIn } from "./safe-integers.ts";
import { utf8Length } from "./varint.ts";

/** Every message type of the schema. */
const SCHEMAS: DescMessage[] = [cluster, common, diagnostics, envelope, fec, membership, message, messaging, relay, reliable, security, totem]
  .flatMap((module) => Object.values(module))
  .filter((value): value is DescMessage => typeof value === "object" && value !== null && (value as { kind?: string }).kind === "message");

/** A small seeded generator (mulberry32). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const TEXTS = ["", "a", "orders", "ünïcödé", "日本語", "emoji 😀", "\ud800 lone", "x".repeat(80), "0"];

function scalarValue(scalar: ScalarType, next: () => number, safeOnly: boolean): unknown {
  const pick = <T,>(values: readonly T[]): T => values[Math.floor(next() * values.length)]!;
  const big = (values: readonly bigint[]) => (safeOnly ? pick(values.filter((v) => v <= MAX_WIRE_INTEGER && v >= -MAX_WIRE_INTEGER)) : pick(values));
  switch (scalar) {
    case ScalarType.STRING:
      return pick(TEXTS);
    case ScalarType.BYTES:
      return pick([new Uint8Array(0), new Uint8Array([1, 2, 3]), new Uint8Array(200).fill(9)]);
    case ScalarType.BOOL:
      return next() < 0.5;
    case ScalarType.DOUBLE:
      return pick([0, -0, 1.5, -2.25e300, Number.NaN, Number.POSITIVE_INFINITY]);
    case ScalarType.FLOAT:
      return pick([0, -0, 1.5, -3.25]);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return pick([0, 1, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31)]);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return pick([0, 1, 127, 128, 2 ** 32 - 1]);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return big([0n, 1n, 127n, 128n, 2n ** 32n, MAX_WIRE_INTEGER, MAX_WIRE_INTEGER + 1n, 2n ** 64n - 1n]);
    default:
      return big([0n, 1n, -1n, 300n, -(2n ** 40n), MAX_WIRE_INTEGER, -MAX_WIRE_INTEGER, 2n ** 63n - 1n, -(2n ** 63n)]);
  }
}

function fieldValue(field: DescField, next: () => number, depth: number, safeOnly: boolean): unknown {
  const enumValue = (values: readonly { number: number }[]) => (next() < 0.2 ? 77 : values[Math.floor(next() * values.length)]!.number);
  switch (field.fieldKind) {
    case "scalar":
      return scalarValue(field.scalar, next, safeOnly);
    case "enum":
      return enumValue(field.enum.values);
    case "message":
      return randomMessage(field.message, next, depth + 1, safeOnly);
    case "list": {
      const count = Math.floor(next() * 4);
      return Array.from({ length: count }, () =>
        field.listKind === "message" ? randomMessage(field.message, next, depth + 1, safeOnly) : field.listKind === "enum" ? enumValue(field.enum.values) : scalarValue(field.scalar, next, safeOnly),
      );
    }
    case "map": {
      const record: Record<string, unknown> = {};
      const count = Math.floor(next() * 3);
      for (let i = 0; i < count; i++) {
        const key = String(field.mapKey === ScalarType.STRING ? scalarValue(ScalarType.STRING, next, true) : field.mapKey === ScalarType.BOOL ? next() < 0.5 : Math.floor(next() * 1000));
        record[key] = field.mapKind === "message" ? randomMessage(field.message, next, depth + 1, safeOnly) : field.mapKind === "enum" ? enumValue(field.enum.values) : scalarValue(field.scalar, next, safeOnly);
      }
      return record;
    }
  }
}

/** An initializer with a random subset of fields set (a oneof gets one of its cases). */
function randomMessage(schema: DescMessage, next: () => number, depth = 0, safeOnly = true): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  if (depth > 4) return init;
  for (const field of schema.fields) {
    if (next() < 0.4) continue;
    if (field.oneof !== undefined) {
      init[field.oneof.localName] = { case: field.localName, value: fieldValue(field, next, depth, safeOnly) };
    } else {
      init[field.localName] = fieldValue(field, next, depth, safeOnly);
    }
  }
  return init;
}

describe("fastCodec", () => {
  it("covers every message type of the schema", () => {
    expect(SCHEMAS.length).toBeGreaterThan(80);
    for (const schema of SCHEMAS) expect(() => fastCodec(schema)).not.toThrow();
  });

  it("writes exactly the bytes the generated writer writes, from an initializer or a created message", () => {
    for (const schema of SCHEMAS) {
      const codec = fastCodec(schema);
      const next = random(schema.typeName.length * 7919);
      for (let i = 0; i < 40; i++) {
        const init = randomMessage(schema, next, 0, false);
        const expected = toBinary(schema, create(schema, init as never));
        expect(codec.encode(init as never), `${schema.typeName} #${i}`).toEqual(expected);
        expect(codec.encode(create(schema, init as never)), `${schema.typeName} #${i} created`).toEqual(expected);
      }
    }
  });

  it("reads what the generated reader reads, and refuses integers past 2^53 − 1 as it reads them", () => {
    let refused = 0;
    for (const schema of SCHEMAS) {
      const codec = fastCodec(schema);
      const next = random(schema.typeName.length * 104729);
      for (let i = 0; i < 40; i++) {
        const bytes = toBinary(schema, create(schema, randomMessage(schema, next, 0, next() < 0.7) as never));
        const expected = fromBinary(schema, bytes);
        if (unsafeIntegerIn(schema, expected) !== undefined) {
          expect(() => codec.decode(bytes), `${schema.typeName} #${i}`).toThrow(/2\^53/);
          refused++;
          continue;
        }
        expect(codec.decode(bytes), `${schema.typeName} #${i}`).toEqual(expected);
        // From within a larger buffer too.
        const padded = new Uint8Array(bytes.length + 6);
        padded.set(bytes, 3);
        expect(codec.decode(padded, 3, 3 + bytes.length)).toEqual(expected);
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  it("agrees with the generated reader on 10,000 damaged messages: never accepts what it refuses, never differs on what both accept", () => {
    const next = random(2026);
    const schemas = [envelope.FrameSchema, envelope.EnvelopeSchema, cluster.StateUpdateSchema, cluster.StateAckSchema, message.BlazeMessageSchema, messaging.MessagingHeadersSchema];
    const stricter = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const schema = schemas[i % schemas.length]!;
      const bytes = toBinary(schema, create(schema, randomMessage(schema, next) as never));
      const damaged = bytes.slice(0, bytes.length - (next() < 0.2 ? Math.floor(next() * 4) : 0));
      for (let flips = 1 + Math.floor(next() * 3); flips > 0 && damaged.length > 0; flips--) damaged[Math.floor(next() * damaged.length)] = Math.floor(next() * 256);
      let expected: unknown;
      let expectedError: unknown;
      try {
        expected = fromBinary(schema, damaged);
        if (unsafeIntegerIn(schema, expected as never) !== undefined) expectedError = new Error("past 2^53 − 1");
      } catch (error) {
        expectedError = error;
      }
      let actual: unknown;
      let actualError: unknown;
      try {
        actual = fastCodec(schema).decode(damaged);
      } catch (error) {
        actualError = error;
      }
      if (expectedError !== undefined) {
        if (actualError === undefined) expect.fail(`${schema.typeName}: accepted ${Buffer.from(damaged).toString("hex")}`);
      } else if (actualError === undefined) {
        expect(actual).toEqual(expected);
      } else {
        // Stricter than the generated reader only where a value runs past the end of its own message or
        // packed list (that reader reads on into the next field), or a varint runs past ten bytes.
        const reason = (actualError as Error).message;
        expect(reason).toMatch(/premature end of data|packed values overrun|invalid varint/);
        stricter.set(reason, (stricter.get(reason) ?? 0) + 1);
      }
    }
    // Rare: most damage is read alike.
    expect([...stricter.values()].reduce((a, b) => a + b, 0)).toBeLessThan(500);
  });

  it("reads every valid conformance vector as the generated reader does", () => {
    const dir = new URL("../../conformance/vectors/v1/", import.meta.url);
    const codec = fastCodec(envelope.EnvelopeSchema);
    let read = 0;
    for (const file of readdirSync(dir).filter((name) => name.endsWith(".json"))) {
      const vectors = JSON.parse(readFileSync(new URL(file, dir), "utf8")) as { testGroups: Array<{ messageType: string; tests: Array<{ hex: string; result: string }> }> };
      for (const group of vectors.testGroups) {
        if (group.messageType !== "activeblaze.v1.Envelope") continue;
        for (const test of group.tests) {
          const bytes = new Uint8Array(Buffer.from(test.hex, "hex"));
          let expected;
          try {
            expected = fromBinary(envelope.EnvelopeSchema, bytes);
          } catch {
            expect(() => codec.decode(bytes)).toThrow();
            continue;
          }
          if (unsafeIntegerIn(envelope.EnvelopeSchema, expected) !== undefined) {
            expect(() => codec.decode(bytes)).toThrow(/2\^53/);
            continue;
          }
          expect(codec.decode(bytes), `${file}: ${test.hex}`).toEqual(expected);
          expect(codec.encode(expected)).toEqual(toBinary(envelope.EnvelopeSchema, expected));
          read++;
        }
      }
    }
    expect(read).toBeGreaterThan(100);
  });

  it("counts a string's UTF-8 bytes as the runtime's encoder writes them, lone surrogates included", () => {
    for (const text of [...TEXTS, "\udc00", "a\ud83d", "\ud83d\ud83d\ude00", "ß€𐍈"]) expect(utf8Length(text), JSON.stringify(text)).toBe(new TextEncoder().encode(text).length);
  });

  it("refuses a value of the wrong type when writing, naming the field", () => {
    const codec = fastCodec(common.MemberRefSchema);
    expect(() => codec.encode({ id: "not bytes" } as never)).toThrow(/field id/);
    expect(() => fastCodec(cluster.StateAckSchema).encode({ snapshotChunks: 1.5 } as never)).toThrow(/snapshotChunks/);
  });

  it("refuses nesting past 100 levels, as the generated reader does", () => {
    // A Value holds a ValueList of Values: nest them 60 pairs deep (120 messages) by hand.
    const wrap = (tag: number, inner: Uint8Array) => new Uint8Array([tag, inner.length < 128 ? inner.length : 0, ...inner]);
    const nested = (pairs: number) => {
      let bytes = new Uint8Array(0);
      for (let i = 0; i < pairs; i++) {
        const list = wrap(0x0a, bytes);
        if (list.length >= 130) return undefined;
        bytes = wrap(0x4a, list);
      }
      return bytes;
    };
    // Lengths past 127 need two-byte varints: build with the generated writer instead.
    let value = create(message.ValueSchema, {});
    for (let i = 0; i < 60; i++) value = create(message.ValueSchema, { kind: { case: "listValue", value: { values: [value] } } });
    const deep = toBinary(message.ValueSchema, value);
    expect(() => fromBinary(message.ValueSchema, deep)).toThrow(/recursion/);
    expect(() => fastCodec(message.ValueSchema).decode(deep)).toThrow(/recursion depth/);
    const shallow = nested(20)!;
    expect(fastCodec(message.ValueSchema).decode(shallow)).toEqual(fromBinary(message.ValueSchema, shallow));
  });
});
