import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type DescField, fromBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, FrameSchema } from "../gen/activeblaze/v1/envelope_pb.ts";
import { readStateAck, readStateRequest, readStateUpdate } from "../src/cluster/state-reader.ts";
import { decodeStateFrame } from "../src/cluster/state-wire.ts";
import { ByteCursor } from "../src/wire/varint.ts";
import { nodeCrypto } from "../src/adapters/node-crypto.ts";
import { nonceOf } from "../src/security/crypto-provider.ts";
import { senderKeyInfo } from "../src/security/datagram-guard.ts";
import { readSealed } from "../src/security/sealed-datagram.ts";
import { isReflectMessage, reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { afterAll, describe, expect, it } from "vitest";
import { decodeEnvelope } from "../src/wire/codec.ts";
import { DROP_REASONS } from "../src/wire/drop-reason.ts";
import { ClearHeaderReader, DatagramReader } from "../src/wire/frames.ts";
import { wireRegistry } from "../src/wire/registry.ts";
import { differingFiles, generateVectorFiles, SCHEMA_FILE } from "./generate.ts";
import {
  FAILING_DIR,
  hexToBytes,
  messageSchema,
  RECEIVER_CONTEXT,
  outcomeOf,
  PORT,
  runVectorDirectory,
  runVectorFile,
  type VectorFile,
  vectorFileNames,
  VECTORS_DIR,
} from "./runner.ts";

const schemaPath = fileURLToPath(new URL(`./schema/${SCHEMA_FILE}`, import.meta.url));
const jsonSchema = JSON.parse(readFileSync(schemaPath, "utf8")) as JsonSchema;
const fileNames = vectorFileNames();
const files = new Map(
  fileNames.map((name) => [name, JSON.parse(readFileSync(join(VECTORS_DIR, name), "utf8")) as VectorFile]),
);

// ---------------------------------------------------------------------------------------------------
// A validator for the subset of JSON Schema 2020-12 that vectors.schema.json uses. It refuses any other
// keyword, so the schema cannot come to rely on a keyword that would be silently ignored here.

type JsonSchema = boolean | { [keyword: string]: unknown };

const ANNOTATIONS = new Set(["$schema", "title", "description", "$defs"]);
const KEYWORDS = new Set([
  "$ref",
  "type",
  "const",
  "enum",
  "pattern",
  "minLength",
  "minimum",
  "required",
  "properties",
  "additionalProperties",
  "propertyNames",
  "items",
  "minItems",
  "uniqueItems",
  "allOf",
  "anyOf",
  "not",
  "if",
  "then",
]);

function resolveRef(ref: string): JsonSchema {
  const match = /^#\/\$defs\/([A-Za-z]+)$/.exec(ref);
  const defs = typeof jsonSchema === "object" ? (jsonSchema.$defs as Record<string, JsonSchema>) : {};
  const target = match === null ? undefined : defs[match[1]!];
  if (target === undefined) throw new Error(`unresolvable $ref ${ref}`);
  return target;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case "object":
      return isObject(value);
    case "array":
      return Array.isArray(value);
    case "integer":
      return Number.isInteger(value);
    default:
      return typeof value === type;
  }
}

/** The paths and reasons where `value` breaks `schema`; empty when it conforms. */
function validate(schema: JsonSchema, value: unknown, path = "$"): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${path}: not allowed`];
  const errors: string[] = [];
  const sub = (s: unknown, v: unknown, p: string) => errors.push(...validate(s as JsonSchema, v, p));
  for (const [keyword, arg] of Object.entries(schema)) {
    if (ANNOTATIONS.has(keyword)) continue;
    if (!KEYWORDS.has(keyword)) throw new Error(`the test's validator does not support ${keyword}`);
    switch (keyword) {
      case "$ref":
        sub(resolveRef(arg as string), value, path);
        break;
      case "type":
        if (!hasType(value, arg as string)) errors.push(`${path}: not of type ${arg}`);
        break;
      case "const":
        if (JSON.stringify(value) !== JSON.stringify(arg)) errors.push(`${path}: not ${JSON.stringify(arg)}`);
        break;
      case "enum":
        if (!(arg as unknown[]).includes(value)) errors.push(`${path}: ${JSON.stringify(value)} not in enum`);
        break;
      case "pattern":
        if (typeof value === "string" && !new RegExp(arg as string, "u").test(value)) {
          errors.push(`${path}: does not match ${arg}`);
        }
        break;
      case "minLength":
        if (typeof value === "string" && [...value].length < (arg as number)) errors.push(`${path}: too short`);
        break;
      case "minimum":
        if (typeof value === "number" && value < (arg as number)) errors.push(`${path}: below ${arg}`);
        break;
      case "required":
        if (isObject(value)) {
          for (const key of arg as string[]) if (!(key in value)) errors.push(`${path}: missing ${key}`);
        }
        break;
      case "properties":
        if (isObject(value)) {
          for (const [key, s] of Object.entries(arg as object)) if (key in value) sub(s, value[key], `${path}.${key}`);
        }
        break;
      case "additionalProperties":
        if (isObject(value)) {
          const known = isObject(schema.properties) ? schema.properties : {};
          for (const key of Object.keys(value)) if (!(key in known)) sub(arg, value[key], `${path}.${key}`);
        }
        break;
      case "propertyNames":
        if (isObject(value)) for (const key of Object.keys(value)) sub(arg, key, `${path}{${key}}`);
        break;
      case "items":
        if (Array.isArray(value)) value.forEach((item, i) => sub(arg, item, `${path}[${i}]`));
        break;
      case "minItems":
        if (Array.isArray(value) && value.length < (arg as number)) errors.push(`${path}: too few items`);
        break;
      case "uniqueItems":
        if (arg === true && Array.isArray(value) && new Set(value.map((v) => JSON.stringify(v))).size !== value.length) {
          errors.push(`${path}: items not unique`);
        }
        break;
      case "allOf":
        for (const s of arg as JsonSchema[]) sub(s, value, path);
        break;
      case "anyOf":
        if (!(arg as JsonSchema[]).some((s) => validate(s, value, path).length === 0)) {
          errors.push(`${path}: matches none of anyOf`);
        }
        break;
      case "not":
        if (validate(arg as JsonSchema, value, path).length === 0) errors.push(`${path}: matches a forbidden schema`);
        break;
      case "if":
        if (validate(arg as JsonSchema, value, path).length === 0 && "then" in schema) sub(schema.then, value, path);
        break;
      case "then":
        break; // applied by "if"
    }
  }
  return errors;
}

/** Every subschema of a schema, for checking the schema document itself. */
function subschemas(schema: JsonSchema): JsonSchema[] {
  if (typeof schema === "boolean") return [schema];
  const children: unknown[] = [];
  for (const keyword of ["properties", "$defs"]) {
    if (isObject(schema[keyword])) children.push(...Object.values(schema[keyword]));
  }
  for (const keyword of ["additionalProperties", "propertyNames", "items", "not", "if", "then"]) {
    if (keyword in schema) children.push(schema[keyword]);
  }
  for (const keyword of ["allOf", "anyOf"]) if (Array.isArray(schema[keyword])) children.push(...schema[keyword]);
  return [schema, ...children.flatMap((child) => subschemas(child as JsonSchema))];
}

describe("the JSON Schema", () => {
  it("is a draft 2020-12 schema using only keywords the validator knows, with resolvable refs", () => {
    expect(isObject(jsonSchema) && jsonSchema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    for (const schema of subschemas(jsonSchema)) {
      expect(typeof schema === "boolean" || isObject(schema)).toBe(true);
      if (typeof schema === "boolean") continue;
      for (const keyword of Object.keys(schema)) expect(ANNOTATIONS.has(keyword) || KEYWORDS.has(keyword)).toBe(true);
      if (typeof schema.$ref === "string") expect(() => resolveRef(schema.$ref as string)).not.toThrow();
    }
  });

  it("lists exactly the protocol's refusal codes", () => {
    expect(resolveRef("#/$defs/errorCode")).toMatchObject({ enum: [...DROP_REASONS] });
  });

  it("refuses a test with a key it does not define, or an invalid test with an expected value", () => {
    const file = structuredClone(files.get("invalid.json")!);
    const test = file.testGroups[0]!.tests[0]!;
    Object.assign(test, { result: "invalid", error: "MISSING_FIELD", expected: {} });
    expect(validate(jsonSchema, file)).not.toEqual([]);
    delete test.expected;
    expect(validate(jsonSchema, file)).toEqual([]);
    Object.assign(test, { extra: 1 });
    expect(validate(jsonSchema, file)).not.toEqual([]);
  });
});

describe("the vector files", () => {
  it("are the eleven areas, freshly generated (a hand edit fails here)", () => {
    expect(fileNames).toEqual([...generateVectorFiles().keys()].sort());
    expect(differingFiles(generateVectorFiles())).toEqual([]);
  });

  it.each(fileNames)("%s conforms to the JSON Schema", (name) => {
    const file = files.get(name)!;
    expect(validate(jsonSchema, file)).toEqual([]);
    const tests = file.testGroups.flatMap((group) => group.tests);
    expect(file.numberOfTests).toBe(tests.length);
    expect(tests.map((test) => test.tcId)).toEqual(tests.map((_, i) => i + 1));
    const used = new Set(tests.flatMap((test) => test.flags));
    expect(Object.keys(file.notes).sort()).toEqual([...used].sort());
  });

  it("give every test a name unique over all files, under its file's area", () => {
    const names = [...files].flatMap(([file, content]) =>
      content.testGroups.flatMap((group) =>
        group.tests.map((test) => {
          expect(test.name.startsWith(`${file.replace(/\.json$/, "")}/`)).toBe(true);
          return test.name;
        }),
      ),
    );
    expect(new Set(names).size).toBe(names.length);
  });
});

describe("the TypeScript port", () => {
  it("has an empty failing list", () => {
    expect(readFileSync(join(FAILING_DIR, `${PORT}.txt`), "utf8")).toBe("");
  });

  it.each(fileNames)("passes every test of %s in strict mode", (name) => {
    const report = runVectorFile(join(VECTORS_DIR, name), { strict: true });
    expect(report.tests.filter((test) => test.status !== "pass")).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("passes the whole directory with no stale failing-list lines", () => {
    const report = runVectorDirectory();
    expect(report.staleNames).toEqual([]);
    expect(report.ok).toBe(true);
  });
});

describe("the receive path's own reader (src/wire/frames.ts, with the generated hot-path codec)", () => {
  it("accepts and refuses every envelope vector as the conformance decoder does, with the same reason and the same frames", () => {
    const reader = new DatagramReader(RECEIVER_CONTEXT);
    let checked = 0;
    for (const file of files.values()) {
      for (const group of file.testGroups) {
        if (group.messageType !== EnvelopeSchema.typeName) continue;
        for (const test of group.tests) {
          const bytes = hexToBytes(test.hex);
          const expected = decodeEnvelope(bytes, RECEIVER_CONTEXT);
          const read = reader.read(bytes);
          expect(read.ok, test.name).toBe(expected.ok);
          if (!read.ok && !expected.ok) expect(read.reason, test.name).toBe(expected.reason);
          if (read.ok && expected.ok) expect(read.datagram.frames.length, test.name).toBe(expected.envelope.body.case === "bundle" ? expected.envelope.body.value.frames.length : 1);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(200);
  });
});

/**
 * The state frames in an envelope's bytes, as they sit there: each one's Frame bytes (its field's tag,
 * length and message) and where its message starts. The envelope's body and a bundle's frames share the
 * Frame's field numbers.
 */
function stateFramesIn(bytes: Uint8Array): Array<{ readonly number: number; readonly frame: Uint8Array; readonly start: number }> {
  const found: Array<{ number: number; frame: Uint8Array; start: number }> = [];
  const walk = (start: number, end: number, inBundle: boolean) => {
    const cursor = new ByteCursor(bytes, start, end);
    while (cursor.pos < end && !cursor.failed) {
      const fieldStart = cursor.pos;
      const tag = cursor.varint();
      if ((tag & 7) === 0) {
        cursor.varint();
        continue;
      }
      if ((tag & 7) !== 2) return;
      const fieldEnd = cursor.delimitedEnd();
      if (cursor.failed) return;
      const number = tag >>> 3;
      if (number === 17 && !inBundle) walk(cursor.pos, fieldEnd, true);
      else if (inBundle && number === 1) walk(cursor.pos, fieldEnd, false);
      else if (number in STATE_READERS) found.push({ number, frame: bytes.subarray(fieldStart, fieldEnd), start: cursor.pos - fieldStart });
      cursor.pos = fieldEnd;
    }
  };
  walk(0, bytes.length, false);
  return found;
}

const STATE_READERS: Record<number, typeof readStateRequest> = { 48: readStateRequest, 50: readStateUpdate, 53: readStateAck };

describe("the replicated map's frames read by hand (src/cluster/state-reader.ts)", () => {
  it("read every state frame of the envelope vectors as the schema's codec and the conversion read it", () => {
    let handRead = 0;
    let seen = 0;
    for (const file of files.values()) {
      for (const group of file.testGroups) {
        if (group.messageType !== EnvelopeSchema.typeName) continue;
        for (const test of group.tests) {
          if (!decodeEnvelope(hexToBytes(test.hex), RECEIVER_CONTEXT).ok) continue;
          for (const { number, frame, start } of stateFramesIn(hexToBytes(test.hex))) {
            seen++;
            const read = STATE_READERS[number]!(frame, start, frame.length);
            if (read === undefined) continue;
            handRead++;
            expect(read, test.name).toEqual(decodeStateFrame(fromBinary(FrameSchema, frame), 0));
          }
        }
      }
    }
    // The vectors of prepares, pulls and the like are left to the schema's codec; the writes' frames are read by hand.
    expect(handRead).toBeGreaterThan(seen / 2);
  });
});

describe("the runner", () => {
  const dir = mkdtempSync(join(tmpdir(), "activeblaze-vectors-"));
  afterAll(() => rmSync(dir, { recursive: true }));

  /** Writes a copy of invalid.json's first group with `edit` applied and runs it. */
  function runEdited(edit: (file: VectorFile) => void, options: Parameters<typeof runVectorFile>[1] = {}) {
    const file = structuredClone(files.get("invalid.json")!);
    edit(file);
    const path = join(dir, "edited.json");
    writeFileSync(path, JSON.stringify(file));
    return runVectorFile(path, { failing: new Set(), ...options });
  }

  const validTest = (file: VectorFile) =>
    file.testGroups.flatMap((group) => group.tests).find((test) => test.result === "valid")!;
  const invalidTest = (file: VectorFile) =>
    file.testGroups.flatMap((group) => group.tests).find((test) => test.error === "WRONG_CLUSTER")!;

  it("fails a valid test whose expected value differs from the decoding", () => {
    const report = runEdited((file) => {
      validTest(file).expected = { version: 1 };
    });
    expect(report.ok).toBe(false);
  });

  it("matches the refusal code in strict mode only", () => {
    const edit = (file: VectorFile) => {
      invalidTest(file).error = "OVERSIZE";
    };
    expect(runEdited(edit, { strict: true }).ok).toBe(false);
    expect(runEdited(edit, { strict: false }).ok).toBe(true);
  });

  it("opens sealed tests with their group's receiver and history", () => {
    const edit = (change: (tests: VectorFile["testGroups"][number]["tests"]) => void) => {
      const file = structuredClone(files.get("sealed.json")!);
      change(file.testGroups[0]!.tests);
      const path = join(dir, "sealed-edited.json");
      writeFileSync(path, JSON.stringify(file));
      return runVectorFile(path, { failing: new Set() });
    };
    expect(edit(() => undefined).ok).toBe(true);
    // Without its history, a replay is the first delivery: it opens, and the test fails.
    expect(edit((tests) => delete tests.find((t) => t.name === "sealed/aes-gcm/replayed")!.history).ok).toBe(false);
    // Another receiver key: the valid tests no longer open.
    const file = structuredClone(files.get("sealed.json")!);
    file.testGroups[0]!.security!.keys[0]!.secret = "A".repeat(43) + "=";
    const path = join(dir, "sealed-rekeyed.json");
    writeFileSync(path, JSON.stringify(file));
    expect(runVectorFile(path, { failing: new Set() }).ok).toBe(false);
  });

  it("reports a listed test that passes as an unexpected pass, and a name in no file as stale", () => {
    const file = files.get("invalid.json")!;
    const name = file.testGroups[0]!.tests[0]!.name;
    const report = runVectorFile(join(VECTORS_DIR, "invalid.json"), { failing: new Set([name]) });
    expect(report.tests.find((test) => test.name === name)?.status).toBe("unexpected-pass");
    expect(report.ok).toBe(false);
    const stale = runVectorDirectory(VECTORS_DIR, { failing: new Set(["invalid/no-such-test"]) });
    expect(stale.staleNames).toEqual(["invalid/no-such-test"]);
    expect(stale.ok).toBe(false);
  });
});

describe("the worked example of conformance/README.md", () => {
  it("is what this implementation computes for sealed/aes-gcm/one-message", () => {
    const readme = readFileSync(fileURLToPath(new URL("./README.md", import.meta.url)), "utf8");
    const line = (label: string) => new RegExp(`^${label} +([0-9a-f]+)$`, "m").exec(readme)?.[1];
    const file = files.get("sealed.json")!;
    const test = file.testGroups[0]!.tests.find((t) => t.name === "sealed/aes-gcm/one-message")!;
    const read = readSealed(hexToBytes(test.hex), { cluster: "conformance" }, new ClearHeaderReader("conformance"));
    if (!read.ok) throw new Error(read.detail);
    const sealed = read.sealed;
    const secret = Uint8Array.from(Buffer.from(file.testGroups[0]!.security!.keys[0]!.secret, "base64"));
    const info = senderKeyInfo("encrypt", sealed.keyId, sealed.senderId, sealed.incarnation, "conformance");
    const key = nodeCrypto.deriveKey("encrypt", secret, info);
    const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
    expect({
      secret: line("secret"),
      info: line("info"),
      key: line("sender key"),
      nonce: line("nonce"),
      aad: line("aad"),
      body: line("body"),
      payload: line("payload"),
    }).toEqual({
      secret: hex(secret),
      info: hex(info),
      // node:crypto keeps a derived key's bytes as its `secret`.
      key: hex((key as unknown as { secret: Uint8Array }).secret),
      nonce: hex(nonceOf(sealed.counter)),
      aad: hex(sealed.aad),
      body: hex(nodeCrypto.open(key, "encrypt", sealed.counter, sealed.aad, sealed.payload)!),
      payload: hex(sealed.payload),
    });
  });
});

// ---------------------------------------------------------------------------------------------------
// Coverage: introspect the descriptors, so a type, oneof member or enum value added to the schema
// without a valid vector fails here.

interface Coverage {
  messages: Set<string>;
  oneofMembers: Set<string>;
  enumValues: Set<string>;
}

function collect(message: ReflectMessage, seen: Coverage): void {
  seen.messages.add(message.desc.typeName);
  for (const oneof of message.oneofs) {
    const member = message.oneofCase(oneof);
    if (member !== undefined) seen.oneofMembers.add(`${message.desc.typeName}.${member.name}`);
  }
  for (const field of message.fields) {
    if (!message.isSet(field)) continue;
    const value = message.get(field);
    let items: unknown[] = [value];
    if (field.fieldKind === "list") items = [...(value as Iterable<unknown>)];
    if (field.fieldKind === "map") items = [...(value as ReadonlyMap<unknown, unknown>).values()];
    for (const item of items) collectValue(field, item, seen);
  }
}

function collectValue(field: DescField, value: unknown, seen: Coverage): void {
  if (isReflectMessage(value)) collect(value, seen);
  else if (field.enum !== undefined) seen.enumValues.add(`${field.enum.typeName}.${value as number}`);
}

describe("coverage of the schema by valid vectors", () => {
  const seen: Coverage = { messages: new Set(), oneofMembers: new Set(), enumValues: new Set() };
  for (const file of files.values()) {
    for (const group of file.testGroups) {
      const schema = messageSchema(group.messageType);
      for (const test of group.tests.filter((t) => t.result === "valid")) {
        const outcome = outcomeOf(schema, group.security, test);
        if (outcome.accepted) collect(reflect(schema, outcome.message), seen);
        // A sealed datagram is an envelope too: its seal covers Envelope.sealed, Sealed and SealMode.
        if (group.security !== undefined) collect(reflect(EnvelopeSchema, fromBinary(EnvelopeSchema, hexToBytes(test.hex))), seen);
      }
    }
  }
  const messages = [...wireRegistry].flatMap((type) => (type.kind === "message" ? [type] : []));
  const enums = [...wireRegistry].flatMap((type) => (type.kind === "enum" ? [type] : []));

  it("includes every message type", () => {
    const missing = messages.map((m) => m.typeName).filter((name) => !seen.messages.has(name));
    expect(missing).toEqual([]);
  });

  it("includes every member of every oneof, Envelope.body and Frame.kind among them", () => {
    const members = messages.flatMap((m) =>
      m.oneofs.flatMap((oneof) => oneof.fields.map((f) => `${m.typeName}.${f.name}`)),
    );
    expect(members).toContain("activeblaze.v1.Envelope.fec_parity");
    expect(members).toContain("activeblaze.v1.Frame.fec_parity");
    expect(members.filter((member) => !seen.oneofMembers.has(member))).toEqual([]);
  });

  it("includes every non-zero enum value", () => {
    const values = enums.flatMap((e) => e.values.filter((v) => v.number !== 0).map((v) => `${e.typeName}.${v.number}`));
    expect(values.length).toBeGreaterThan(0);
    expect(values.filter((value) => !seen.enumValues.has(value))).toEqual([]);
  });
});
