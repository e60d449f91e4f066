import { create, fromBinary } from "@bufbuild/protobuf";
import {
  type BlazeMessage as BlazeMessageProto,
  BlazeMessageSchema,
  type Value,
  ValueListSchema,
  ValueSchema,
} from "../../gen/activeblaze/v1/message_pb.ts";
import { BlazeError } from "../errors.ts";
import { web } from "../web.ts";
import { fastCodec } from "../wire/fast-codec.ts";

/** A value a BlazeMessage can hold. */
export type BlazeValue =
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | BlazeMessage
  | readonly BlazeValue[];

/** The wire kind of a value. */
export type BlazeValueKind = "bool" | "int32" | "int64" | "float" | "double" | "string" | "bytes" | "map" | "list";

/**
 * Written by the compiled codec (it writes any 64-bit value); read by the generated one, which takes the
 * whole 64-bit range of an application's numbers (the compiled reader keeps to the protocol's 2^53 − 1).
 */
const BLAZE_MESSAGE_CODEC = fastCodec(BlazeMessageSchema);
const TEXT_KEY = "text";
const nodeInspect: unique symbol = Symbol.for("nodejs.util.inspect.custom");
const denoInspect: unique symbol = Symbol.for("Deno.customInspect");
const MAX_SHOWN_CHARS = 200;
const MAX_SHOWN_BYTES = 16;
const BYTES_KEY = "bytes";
const OBJECT_KEY = "object";
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * The user-facing message, as ActiveBlaze's was: a map from string keys to typed values (bool, 32- and
 * 64-bit integers, float, double, string, bytes, nested maps and lists). Typed setters fix the wire kind;
 * `set` infers it (integers that fit in 32 bits → int32, other numbers → double, bigint → int64).
 * `text`, `bytes` and `object` are conveniences over the keys "text", "bytes" and "object" (the latter
 * JSON-encoded).
 */
export class BlazeMessage {
  readonly #fields = new Map<string, Value>();

  /** A message holding `text`, `bytes`, or the given entries. */
  constructor(init?: string | Uint8Array | Readonly<Record<string, BlazeValue>>) {
    if (typeof init === "string") this.setText(init);
    else if (init instanceof Uint8Array) this.setBytes(init);
    else if (init !== undefined) for (const [key, value] of Object.entries(init)) this.set(key, value);
  }

  /** A message carrying `value` as JSON under "object". */
  static fromObject(value: unknown): BlazeMessage {
    return new BlazeMessage().setObject(value);
  }

  /** Decodes an encoded activeblaze.v1.BlazeMessage. */
  static fromBinary(bytes: Uint8Array): BlazeMessage {
    let proto: BlazeMessageProto;
    try {
      proto = fromBinary(BlazeMessageSchema, bytes);
    } catch (error) {
      throw new BlazeError("DECODE_FAILED", `not a BlazeMessage: ${(error as Error).message}`, { cause: error });
    }
    return BlazeMessage.fromProto(proto);
  }

  static fromProto(proto: BlazeMessageProto): BlazeMessage {
    const message = new BlazeMessage();
    for (const [key, value] of Object.entries(proto.fields)) message.#fields.set(key, value);
    return message;
  }

  toProto(): BlazeMessageProto {
    return create(BlazeMessageSchema, { fields: Object.fromEntries(this.#fields) });
  }

  toBinary(): Uint8Array {
    return BLAZE_MESSAGE_CODEC.encode({ fields: Object.fromEntries(this.#fields) });
  }

  get size(): number {
    return this.#fields.size;
  }

  has(key: string): boolean {
    return this.#fields.has(key);
  }

  keys(): IterableIterator<string> {
    return this.#fields.keys();
  }

  delete(key: string): boolean {
    return this.#fields.delete(key);
  }

  /** The wire kind of the value under `key`. */
  kindOf(key: string): BlazeValueKind | undefined {
    const kind = this.#fields.get(key)?.kind.case;
    return kind === undefined ? undefined : KIND_NAMES[kind];
  }

  /** The value under `key` as a JavaScript value (int64 as bigint, maps as BlazeMessage, lists as arrays). */
  get(key: string): BlazeValue | undefined {
    const value = this.#fields.get(key);
    return value === undefined ? undefined : fromValue(value);
  }

  /** Sets a value, inferring its wire kind. */
  set(key: string, value: BlazeValue): this {
    this.#fields.set(key, toValue(value, key));
    return this;
  }

  setBooleanValue(key: string, value: boolean): this {
    return this.#put(key, { case: "boolValue", value });
  }
  /** A byte (−128…127), stored as int32. */
  setByteValue(key: string, value: number): this {
    return this.#put(key, { case: "int32Value", value: checkInteger(key, value, -128, 127) });
  }
  /** A short (−32768…32767), stored as int32. */
  setShortValue(key: string, value: number): this {
    return this.#put(key, { case: "int32Value", value: checkInteger(key, value, -32_768, 32_767) });
  }
  /** A single character, stored as a string. */
  setCharValue(key: string, value: string): this {
    if ([...value].length !== 1) throw invalid(key, "a char value must be one character");
    return this.#put(key, { case: "stringValue", value });
  }
  setIntValue(key: string, value: number): this {
    return this.#put(key, { case: "int32Value", value: checkInteger(key, value, INT32_MIN, INT32_MAX) });
  }
  setLongValue(key: string, value: bigint | number): this {
    const long = typeof value === "bigint" ? value : BigInt(checkInteger(key, value, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER));
    if (long < -(2n ** 63n) || long >= 2n ** 63n) throw invalid(key, "a long value must fit in 64 bits");
    return this.#put(key, { case: "int64Value", value: long });
  }
  setFloatValue(key: string, value: number): this {
    return this.#put(key, { case: "floatValue", value });
  }
  setDoubleValue(key: string, value: number): this {
    return this.#put(key, { case: "doubleValue", value });
  }
  setStringValue(key: string, value: string): this {
    return this.#put(key, { case: "stringValue", value });
  }
  setBytesValue(key: string, value: Uint8Array): this {
    return this.#put(key, { case: "bytesValue", value });
  }
  setMapValue(key: string, value: BlazeMessage): this {
    return this.#put(key, { case: "mapValue", value: value.toProto() });
  }
  setListValue(key: string, values: readonly BlazeValue[]): this {
    return this.set(key, values);
  }

  getBooleanValue(key: string): boolean | undefined {
    return this.#typed(key, "boolValue");
  }
  getIntValue(key: string): number | undefined {
    return this.#typed(key, "int32Value");
  }
  getLongValue(key: string): bigint | undefined {
    return this.#typed(key, "int64Value");
  }
  getFloatValue(key: string): number | undefined {
    return this.#typed(key, "floatValue");
  }
  getDoubleValue(key: string): number | undefined {
    return this.#typed(key, "doubleValue");
  }
  getStringValue(key: string): string | undefined {
    return this.#typed(key, "stringValue");
  }
  getBytesValue(key: string): Uint8Array | undefined {
    return this.#typed(key, "bytesValue");
  }
  getMapValue(key: string): BlazeMessage | undefined {
    const map = this.#typed(key, "mapValue");
    return map === undefined ? undefined : BlazeMessage.fromProto(map);
  }
  getListValue(key: string): BlazeValue[] | undefined {
    const list = this.#typed(key, "listValue");
    return list === undefined ? undefined : list.values.map(fromValue);
  }

  /** The text under "text". */
  getText(): string | undefined {
    return this.getStringValue(TEXT_KEY);
  }
  setText(text: string): this {
    return this.setStringValue(TEXT_KEY, text);
  }
  /** The bytes under "bytes". */
  getBytes(): Uint8Array | undefined {
    return this.getBytesValue(BYTES_KEY);
  }
  setBytes(bytes: Uint8Array): this {
    return this.setBytesValue(BYTES_KEY, bytes);
  }
  /** The JSON value under "object", parsed. */
  getObject<T = unknown>(): T | undefined {
    const json = this.getStringValue(OBJECT_KEY);
    return json === undefined ? undefined : (JSON.parse(json) as T);
  }
  setObject(value: unknown): this {
    const json = JSON.stringify(value);
    if (json === undefined) throw invalid(OBJECT_KEY, "the object is not JSON-serialisable");
    return this.setStringValue(OBJECT_KEY, json);
  }

  /** A plain object of the entries, for logging and JSON (int64 as strings, bytes as base64-free arrays). */
  toJSON(): Record<string, unknown> {
    // fromEntries defines own properties, so even a key named "__proto__" stays an ordinary key.
    return Object.fromEntries([...this.#fields.keys()].map((key) => [key, jsonOf(this.get(key)!)]));
  }

  /**
   * A readable form for logs: `BlazeMessage { text: "hi", n: 5, id: 9007199254740993n, blob: <bytes 00 01 02 … (1,048,576 bytes)> }`.
   * Strings longer than 200 characters and bytes past the first 16 are cut short.
   */
  toString(): string {
    const entries = [...this.#fields.keys()].map((key) => `${/^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(key)}: ${show(this.get(key)!)}`);
    return entries.length === 0 ? "BlazeMessage {}" : `BlazeMessage { ${entries.join(", ")} }`;
  }

  // console.log and util.inspect show the readable form in Node and Bun (the first symbol) and Deno (the second).
  [nodeInspect](): string {
    return this.toString();
  }

  [denoInspect](): string {
    return this.toString();
  }

  #put(key: string, kind: Value["kind"]): this {
    this.#fields.set(key, create(ValueSchema, { kind }));
    return this;
  }

  #typed<Case extends NonNullable<Value["kind"]["case"]>>(key: string, kind: Case): KindValue<Case> | undefined {
    const value = this.#fields.get(key);
    if (value === undefined) return undefined;
    if (value.kind.case !== kind) {
      const held = value.kind.case === undefined ? "a value of unknown kind" : `a ${KIND_NAMES[value.kind.case]} value`;
      throw new BlazeError("INVALID_ARGUMENT", `"${key}" holds ${held}, not a ${KIND_NAMES[kind]}`, { path: [key] });
    }
    return value.kind.value as KindValue<Case>;
  }
}

type KindValue<Case> = Extract<Value["kind"], { case: Case }> extends { value: infer V } ? V : never;

const KIND_NAMES: Record<NonNullable<Value["kind"]["case"]>, BlazeValueKind> = {
  boolValue: "bool",
  int32Value: "int32",
  int64Value: "int64",
  floatValue: "float",
  doubleValue: "double",
  stringValue: "string",
  bytesValue: "bytes",
  mapValue: "map",
  listValue: "list",
};

function toValue(value: BlazeValue, key: string): Value {
  switch (typeof value) {
    case "boolean":
      return create(ValueSchema, { kind: { case: "boolValue", value } });
    case "number":
      return create(ValueSchema, {
        kind:
          Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX
            ? { case: "int32Value", value }
            : { case: "doubleValue", value },
      });
    case "bigint":
      return create(ValueSchema, { kind: { case: "int64Value", value } });
    case "string":
      return create(ValueSchema, { kind: { case: "stringValue", value } });
  }
  if (value instanceof Uint8Array) return create(ValueSchema, { kind: { case: "bytesValue", value } });
  if (value instanceof BlazeMessage) return create(ValueSchema, { kind: { case: "mapValue", value: value.toProto() } });
  if (Array.isArray(value)) {
    const values = (value as readonly BlazeValue[]).map((item, i) => toValue(item, `${key}[${i}]`));
    return create(ValueSchema, { kind: { case: "listValue", value: create(ValueListSchema, { values }) } });
  }
  throw invalid(key, `a ${typeof value} cannot be stored in a BlazeMessage`);
}

function fromValue(value: Value): BlazeValue {
  const kind = value.kind;
  switch (kind.case) {
    case "mapValue":
      return BlazeMessage.fromProto(kind.value);
    case "listValue":
      return kind.value.values.map(fromValue);
    case undefined:
      throw new BlazeError("DECODE_FAILED", "a BlazeMessage value has no kind");
    default:
      return kind.value;
  }
}

function jsonOf(value: BlazeValue): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return Array.from(value);
  if (value instanceof BlazeMessage) return value.toJSON();
  if (Array.isArray(value)) return (value as readonly BlazeValue[]).map(jsonOf);
  return value;
}

function show(value: BlazeValue): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "string") {
    return value.length <= MAX_SHOWN_CHARS ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, MAX_SHOWN_CHARS))}… (${value.length.toLocaleString("en-US")} characters)`;
  }
  if (value instanceof Uint8Array) {
    const hex = Array.from(value.subarray(0, MAX_SHOWN_BYTES), (byte) => byte.toString(16).padStart(2, "0")).join(" ");
    const more = value.length > MAX_SHOWN_BYTES ? ` … (${value.length.toLocaleString("en-US")} bytes)` : "";
    return value.length === 0 ? "<bytes>" : `<bytes ${hex}${more}>`;
  }
  if (value instanceof BlazeMessage) return value.toString();
  if (Array.isArray(value)) return `[${(value as readonly BlazeValue[]).map(show).join(", ")}]`;
  return String(value);
}

function checkInteger(key: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(key, `expected an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}

function invalid(key: string, message: string): BlazeError {
  return new BlazeError("INVALID_ARGUMENT", `BlazeMessage "${key}": ${message}`, { path: [key] });
}

/** Encodes text as UTF-8 (for raw-bytes payloads). */
export function utf8(text: string): Uint8Array {
  return new web.TextEncoder().encode(text);
}
