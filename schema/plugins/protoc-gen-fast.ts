/**
 * protoc-gen-fast: the hot-path codec of chosen messages, generated from the schema like the rest of
 * gen/ (buf.gen.yaml runs it after protoc-gen-es). For a message it writes a plain interface with
 * JavaScript numbers for 64-bit fields (the form the protocols work with), and a size function, a
 * writer and a reader that handle exactly the bytes protobuf-es writes (fields in number order,
 * defaults omitted) — and refuse, by returning undefined, anything unusual (a repeated or unknown
 * field, an unexpected wire type, a number the field's type cannot hold), which the generated decoder
 * then judges. So the schema stays the one source of truth for every byte, hot path included.
 *
 * Options: `message=<fully qualified name>`, once per message; `shared=<message name>.<field name>`, for a
 * bytes field that its reader takes from `readShared` instead of as a view into the datagram (a field
 * receivers keep or only measure, which a view per datagram would cost more than a copy made once).
 */
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { createEcmaScriptPlugin, type GeneratedFile, runNodeJs } from "@bufbuild/protoplugin";

interface Options {
  readonly messages: readonly string[];
  /** Bytes fields read through `readShared`, by fully qualified message name and field name. */
  readonly shared: readonly string[];
}

type Kind = "uint" | "uint32" | "enum" | "bool" | "string" | "bytes";

interface Field {
  readonly number: number;
  readonly name: string;
  readonly kind: Kind;
  /** Bytes of its tag. */
  readonly tagBytes: number[];
  /** A bytes field read through `readShared`. */
  readonly shared: boolean;
}

function kindOf(field: DescField): Kind {
  if (field.fieldKind === "enum") return "enum";
  if (field.fieldKind !== "scalar" || field.oneof !== undefined || field.presence === 1) {
    throw new Error(`protoc-gen-fast: ${field.parent.typeName}.${field.name} is not a plain scalar`);
  }
  switch (field.scalar) {
    case ScalarType.UINT64:
      return "uint";
    case ScalarType.UINT32:
      return "uint32";
    case ScalarType.BOOL:
      return "bool";
    case ScalarType.STRING:
      return "string";
    case ScalarType.BYTES:
      return "bytes";
    default:
      throw new Error(`protoc-gen-fast: ${field.parent.typeName}.${field.name} has a type it does not write`);
  }
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  while (value >= 0x80) {
    bytes.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  bytes.push(value);
  return bytes;
}

function fieldsOf(message: DescMessage, shared: readonly string[]): Field[] {
  return [...message.fields]
    .sort((a, b) => a.number - b.number)
    .map((field) => {
      const kind = kindOf(field);
      const wireType = kind === "string" || kind === "bytes" ? 2 : 0;
      const isShared = shared.includes(`${message.typeName}.${field.name}`);
      if (isShared && kind !== "bytes") throw new Error(`protoc-gen-fast: ${message.typeName}.${field.name} is not a bytes field`);
      return { number: field.number, name: field.localName, kind, tagBytes: varint((field.number << 3) | wireType), shared: isShared };
    });
}

const TS_TYPE: Record<Kind, string> = { uint: "number", uint32: "number", enum: "number", bool: "boolean", string: "string", bytes: "Uint8Array" };
const DEFAULT: Record<Kind, string> = { uint: "0", uint32: "0", enum: "0", bool: "false", string: '""', bytes: "EMPTY" };

function generate(f: GeneratedFile, message: DescMessage, shared: readonly string[]): void {
  const name = message.name;
  const fields = fieldsOf(message, shared);
  const sharedParam = fields.some((field) => field.shared) ? ", readShared: (bytes: Uint8Array, start: number, end: number) => Uint8Array" : "";
  const strings = fields.filter((field) => field.kind === "string");
  const stringParams = strings.map((field) => `${field.name}Bytes: Uint8Array`).join(", ");
  const stringArgs = strings.map((field) => `${field.name}Bytes`).join(", ");
  const lower = name[0]!.toLowerCase() + name.slice(1);
  const maxField = Math.max(...fields.map((field) => field.number));
  if (maxField >= 31) throw new Error(`protoc-gen-fast: ${message.typeName} has a field number past 30`);

  f.print(f.jsDoc(`${message.typeName} in hot-path form: numbers instead of bigints (every one at most 2^53 − 1, as\nthe protocol requires), and \`case\` so that it is also a received frame of its kind.`));
  f.print`export interface ${name}Fields {`;
  f.print`  readonly case: ${f.string(lower)};`;
  for (const field of fields) f.print`  ${field.name}: ${TS_TYPE[field.kind]};`;
  f.print`}`;
  f.print();
  f.print(f.jsDoc(`A ${name} with every field at its default.`));
  f.print`export function empty${name}Fields(): ${name}Fields {`;
  f.print`  return {`;
  f.print`    case: ${f.string(lower)},`;
  for (const field of fields) f.print`    ${field.name}: ${DEFAULT[field.kind]},`;
  f.print`  };`;
  f.print`}`;
  f.print();

  f.print(f.jsDoc(`The encoded size of a ${name} (without a tag or length of its own), its fields from number \`from\` on.\nString fields are given as their UTF-8 bytes.`));
  f.print`export function ${lower}Size(data: ${name}Fields, ${stringParams}, from = 1): number {`;
  f.print`  let size = 0;`;
  for (const field of fields) {
    const guard = field.number === 1 ? "from <= 1 && " : field.number > 1 ? `from <= ${field.number} && ` : "";
    const tag = field.tagBytes.length;
    switch (field.kind) {
      case "bool":
        f.print`  if (${guard}data.${field.name}) size += ${tag + 1};`;
        break;
      case "string":
        f.print`  if (${guard}${field.name}Bytes.length !== 0) size += ${tag} + varintSize(${field.name}Bytes.length) + ${field.name}Bytes.length;`;
        break;
      case "bytes":
        f.print`  if (${guard}data.${field.name}.length !== 0) size += ${tag} + varintSize(data.${field.name}.length) + data.${field.name}.length;`;
        break;
      default:
        f.print`  if (${guard}data.${field.name} !== 0) size += ${tag} + varintSize(data.${field.name});`;
    }
  }
  f.print`  return size;`;
  f.print`}`;
  f.print();

  f.print(f.jsDoc(`Writes a ${name} (fields from number \`from\` on) into \`buffer\` at \`pos\`, which has room for \`${lower}Size\`;\nreturns the position after it. String fields are given as their UTF-8 bytes.`));
  f.print`export function write${name}(buffer: Uint8Array, pos: number, data: ${name}Fields, ${stringParams}, from = 1): number {`;
  for (const field of fields) {
    const guard = field.number > 1 ? `from <= ${field.number} && ` : "from <= 1 && ";
    const tag = field.tagBytes.map((byte) => `buffer[pos++] = ${byte};`).join(" ");
    switch (field.kind) {
      case "bool":
        f.print`  if (${guard}data.${field.name}) {`;
        f.print`    ${tag} buffer[pos++] = 1;`;
        f.print`  }`;
        break;
      case "string":
      case "bytes": {
        const bytes = field.kind === "string" ? `${field.name}Bytes` : `data.${field.name}`;
        f.print`  if (${guard}${bytes}.length !== 0) {`;
        f.print`    ${tag}`;
        f.print`    pos = writeVarint(buffer, pos, ${bytes}.length);`;
        f.print`    buffer.set(${bytes}, pos);`;
        f.print`    pos += ${bytes}.length;`;
        f.print`  }`;
        break;
      }
      default:
        f.print`  if (${guard}data.${field.name} !== 0) {`;
        f.print`    ${tag}`;
        f.print`    pos = writeVarint(buffer, pos, data.${field.name});`;
        f.print`  }`;
    }
  }
  f.print`  return pos;`;
  f.print`}`;
  f.print();

  f.print(
    f.jsDoc(
      `Reads the ${name} in \`bytes[start, end)\`: a fresh object (receivers may keep it), whose bytes fields are views\ninto \`bytes\`. Undefined when the bytes are not the usual shape — a field repeated or unknown, another wire\ntype, a number its type cannot hold (past 2^53 − 1, a 32-bit field past 2^32 − 1, an enum past 2^31 − 1, a\nbool past 1) — or \`readString\` refuses a string: the generated decoder then has the last word.${sharedParam === "" ? "" : "\nA bytes field read through \`readShared\` is what that returns, not a view."}`,
    ),
  );
  f.print`export function read${name}(bytes: Uint8Array, start: number, end: number, readString: (bytes: Uint8Array, start: number, end: number) => string | undefined${sharedParam}): ${name}Fields | undefined {`;
  f.print`  const data = empty${name}Fields();`;
  f.print`  let pos = start;`;
  f.print`  let seen = 0;`;
  f.print`  while (pos < end) {`;
  f.print`    const tag = bytes[pos++]!;`;
  f.print`    // Tags of fields past 15 take two bytes.`;
  f.print`    let key = tag;`;
  f.print`    if (tag >= 0x80) {`;
  f.print`      if (pos >= end) return undefined;`;
  f.print`      const high = bytes[pos++]!;`;
  f.print`      if (high >= 0x80) return undefined;`;
  f.print`      key = (tag & 0x7f) | (high << 7);`;
  f.print`    }`;
  f.print`    const field = key >>> 3;`;
  f.print`    if (field === 0 || field > ${maxField} || (seen & (1 << field)) !== 0) return undefined;`;
  f.print`    seen |= 1 << field;`;
  f.print`    switch (key) {`;
  for (const field of fields) {
    const wireType = field.kind === "string" || field.kind === "bytes" ? 2 : 0;
    f.print`      case ${(field.number << 3) | wireType}: {`;
    if (wireType === 2) {
      f.print`        const length = readVarint(bytes, pos, end);`;
      f.print`        if (length < 0) return undefined;`;
      f.print`        pos = afterVarint(bytes, pos);`;
      f.print`        if (pos + length > end) return undefined;`;
      if (field.kind === "string") {
        f.print`        const text = readString(bytes, pos, pos + length);`;
        f.print`        if (text === undefined) return undefined;`;
        f.print`        data.${field.name} = text;`;
      } else if (field.shared) {
        f.print`        data.${field.name} = readShared(bytes, pos, pos + length);`;
      } else {
        f.print`        data.${field.name} = bytes.subarray(pos, pos + length);`;
      }
      f.print`        pos += length;`;
    } else {
      f.print`        const value = readVarint(bytes, pos, end);`;
      const limit = field.kind === "bool" ? "1" : field.kind === "uint32" ? "0xffffffff" : field.kind === "enum" ? "0x7fffffff" : undefined;
      f.print`        if (value < 0${limit === undefined ? "" : ` || value > ${limit}`}) return undefined;`;
      f.print`        pos = afterVarint(bytes, pos);`;
      f.print`        data.${field.name} = ${field.kind === "bool" ? "value === 1" : "value"};`;
    }
    f.print`        break;`;
    f.print`      }`;
  }
  f.print`      default:`;
  f.print`        return undefined;`;
  f.print`    }`;
  f.print`  }`;
  f.print`  return data;`;
  f.print`}`;
  f.print();
  void stringArgs;
}

function runtime(f: GeneratedFile): void {
  f.print`const EMPTY = new Uint8Array(0);`;
  f.print();
  f.print`/** Bytes a varint of \`value\` (0 ≤ value ≤ 2^53 − 1) takes: compared, not divided. */`;
  f.print`function varintSize(value: number): number {`;
  f.print`  if (value < 0x80) return 1;`;
  f.print`  if (value < 0x4000) return 2;`;
  f.print`  if (value < 0x200000) return 3;`;
  f.print`  if (value < 0x10000000) return 4;`;
  f.print`  if (value < 0x800000000) return 5;`;
  f.print`  if (value < 0x40000000000) return 6;`;
  f.print`  if (value < 0x2000000000000) return 7;`;
  f.print`  return 8;`;
  f.print`}`;
  f.print();
  f.print`/** Writes \`value\` (0 ≤ value ≤ 2^53 − 1) in 32-bit integer steps: past 2^31 − 1, the low 28 bits first. */`;
  f.print`function writeVarint(buffer: Uint8Array, pos: number, value: number): number {`;
  f.print`  if (value > 0x7fffffff) {`;
  f.print`    const high = Math.floor(value / 0x10000000);`;
  f.print`    let low = value - high * 0x10000000;`;
  f.print`    buffer[pos++] = (low & 0x7f) | 0x80;`;
  f.print`    low >>>= 7;`;
  f.print`    buffer[pos++] = (low & 0x7f) | 0x80;`;
  f.print`    low >>>= 7;`;
  f.print`    buffer[pos++] = (low & 0x7f) | 0x80;`;
  f.print`    buffer[pos++] = (low >>> 7) | 0x80;`;
  f.print`    value = high;`;
  f.print`  }`;
  f.print`  while (value >= 0x80) {`;
  f.print`    buffer[pos++] = (value & 0x7f) | 0x80;`;
  f.print`    value >>>= 7;`;
  f.print`  }`;
  f.print`  buffer[pos++] = value;`;
  f.print`  return pos;`;
  f.print`}`;
  f.print();
  f.print`/** The varint at \`pos\`; -1 when truncated, longer than 8 bytes, or past 2^53 − 1. */`;
  f.print`function readVarint(bytes: Uint8Array, pos: number, end: number): number {`;
  f.print`  let result = 0;`;
  f.print`  let scale = 1;`;
  f.print`  for (let i = 0; i < 8 && pos < end; i++) {`;
  f.print`    const byte = bytes[pos++]!;`;
  f.print`    result += (byte & 0x7f) * scale;`;
  f.print`    if (byte < 0x80) return result > Number.MAX_SAFE_INTEGER ? -1 : result;`;
  f.print`    scale *= 0x80;`;
  f.print`  }`;
  f.print`  return -1;`;
  f.print`}`;
  f.print();
  f.print`/** The position after the (valid) varint at \`pos\`. */`;
  f.print`function afterVarint(bytes: Uint8Array, pos: number): number {`;
  f.print`  while (bytes[pos++]! >= 0x80);`;
  f.print`  return pos;`;
  f.print`}`;
}

const plugin = createEcmaScriptPlugin({
  name: "protoc-gen-fast",
  version: "v1",
  parseOptions(raw): Options {
    const messages: string[] = [];
    const shared: string[] = [];
    for (const { key, value } of raw) {
      if (key === "message") messages.push(value);
      else if (key === "shared") shared.push(value);
      else throw new Error(`protoc-gen-fast: unknown option ${key}`);
    }
    return { messages, shared };
  },
  generateTs(schema) {
    for (const file of schema.files) {
      const chosen = file.messages.filter((message) => schema.options.messages.includes(message.typeName));
      if (chosen.length === 0) continue;
      const f = schema.generateFile(`${file.name}_fast.ts`);
      f.preamble(file);
      for (const message of chosen) generate(f, message, schema.options.shared);
      runtime(f);
    }
  },
});

runNodeJs(plugin);
