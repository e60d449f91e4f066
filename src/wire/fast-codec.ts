import { type DescField, type DescMessage, type MessageInitShape, type MessageShape, ScalarType } from "@bufbuild/protobuf";
import { MAX_WIRE_INTEGER } from "./safe-integers.ts";
import { readUtf8, utf8Length, varintSize, writeUtf8, writeVarint } from "./varint.ts";

/**
 * A binary codec for a message of the schema, compiled once from its descriptor: the bytes it writes
 * are exactly those `toBinary(schema, create(schema, init))` writes (fields in number order, implicit
 * defaults left out, repeated numbers packed), and what it reads equals what `fromBinary` reads — with
 * the protocol's rule for numbers built in: a 64-bit integer past 2^53 − 1 in magnitude is refused as
 * it is read. It writes in two passes into one buffer of the exact size (the sizes of nested messages
 * measured once), takes initializer objects as they are (no `create` first), and checks each 64-bit
 * integer once, where the generated path copies into a growing buffer and walks the message again.
 *
 * Unknown fields are kept, as `fromBinary` keeps them. Groups (delimited encoding) and closed enums,
 * which the schema does not use, are refused when compiling.
 */
export interface FastCodec<Desc extends DescMessage> {
  encode(message: MessageInitShape<Desc>): Uint8Array;
  /** Throws on bytes that are not this message (a `FastDecodeError`), or that hold an integer past the rule. */
  decode(bytes: Uint8Array, start?: number, end?: number): MessageShape<Desc>;
}

/** Bytes that do not decode: truncated, malformed, too deep, or with a number past the protocol's limit. */
export class FastDecodeError extends Error {
  override readonly name = "FastDecodeError";
}

const codecs = new WeakMap<DescMessage, FastCodec<DescMessage>>();

/** The compiled codec of `schema` (compiled on first use, then shared). */
export function fastCodec<Desc extends DescMessage>(schema: Desc): FastCodec<Desc> {
  let codec = codecs.get(schema);
  if (codec === undefined) {
    const plan = planOf(schema);
    codec = {
      encode: (message) => encodeWith(plan, message as Record<string, unknown>),
      decode: (bytes, start = 0, end = bytes.length) => decodeWith(plan, bytes, start, end),
    };
    codecs.set(schema, codec);
  }
  return codec as unknown as FastCodec<Desc>;
}

// --- plans ---

const WIRE_VARINT = 0;
const WIRE_64 = 1;
const WIRE_LEN = 2;
const WIRE_32 = 5;
/** Nested messages deeper than this are refused, as the generated reader refuses them. */
const MAX_DEPTH = 100;

type Kind = "scalar" | "message" | "list" | "map";

interface FieldPlan {
  readonly no: number;
  readonly name: string;
  readonly kind: Kind;
  /** The oneof this field is a case of (its local name). */
  readonly oneof: string | undefined;
  /** Written when set, even to its zero value (proto3 `optional`, message fields). */
  readonly explicit: boolean;
  /** Scalar type of a scalar field, a list of scalars, or a map's value (enums are INT32). */
  readonly scalar: ScalarType;
  /** The zero that an implicit field leaves out (an enum's first value). */
  readonly zero: unknown;
  readonly packed: boolean;
  readonly mapKey: ScalarType;
  /** A message field's, a list of messages', or a map of messages' value type. */
  child: MessagePlan | undefined;
  /** The tag bytes of this field with its wire type. */
  readonly tag: Uint8Array;
}

interface MessagePlan {
  readonly typeName: string;
  /** The fields that are no oneof's cases, by number order. */
  readonly regular: FieldPlan[];
  /** Each oneof's cases, by case name: one lookup finds what is set, however many cases it has. */
  readonly oneofs: Array<{ readonly name: string; readonly cases: Map<string, FieldPlan> }>;
  readonly byNumber: Map<number, FieldPlan>;
  /** The fields a new message holds (implicit scalars, lists, maps, oneofs), with their zero values. */
  readonly defaults: Array<{ readonly name: string; readonly make: () => unknown }>;
}

const plans = new WeakMap<DescMessage, MessagePlan>();

function planOf(desc: DescMessage): MessagePlan {
  const known = plans.get(desc);
  if (known !== undefined) return known;
  const plan: MessagePlan = { typeName: desc.typeName, regular: [], oneofs: [], byNumber: new Map(), defaults: [] };
  // Registered before its fields: a recursive type reaches itself.
  plans.set(desc, plan);
  const seenOneofs = new Set<string>();
  for (const field of desc.fields) {
    if (field.oneof !== undefined) {
      if (!seenOneofs.has(field.oneof.localName)) {
        seenOneofs.add(field.oneof.localName);
        plan.defaults.push({ name: field.oneof.localName, make: () => ({ case: undefined }) });
      }
    } else if (field.fieldKind === "list") {
      plan.defaults.push({ name: field.localName, make: () => [] });
    } else if (field.fieldKind === "map") {
      plan.defaults.push({ name: field.localName, make: () => ({}) });
    } else if (field.fieldKind !== "message" && !isExplicit(field)) {
      const zero = zeroOf(field);
      plan.defaults.push({ name: field.localName, make: scalarOf(field) === ScalarType.BYTES ? () => new Uint8Array(0) : () => zero });
    }
  }
  for (const field of [...desc.fields].sort((a, b) => a.number - b.number).map((f) => fieldPlanOf(f))) {
    plan.byNumber.set(field.no, field);
    if (field.oneof === undefined) {
      plan.regular.push(field);
      continue;
    }
    let oneof = plan.oneofs.find((o) => o.name === field.oneof);
    if (oneof === undefined) plan.oneofs.push((oneof = { name: field.oneof, cases: new Map() }));
    oneof.cases.set(field.name, field);
  }
  return plan;
}

function isExplicit(field: DescField): boolean {
  // 1 EXPLICIT, 2 IMPLICIT, 3 LEGACY_REQUIRED (proto2 only).
  return (field as { presence?: number }).presence !== 2;
}

function scalarOf(field: DescField): ScalarType {
  switch (field.fieldKind) {
    case "scalar":
      return field.scalar;
    case "enum":
      return ScalarType.INT32;
    case "list":
      return field.listKind === "scalar" ? field.scalar : ScalarType.INT32;
    case "map":
      return field.mapKind === "scalar" ? field.scalar : ScalarType.INT32;
    default:
      return ScalarType.INT32;
  }
}

function zeroOf(field: DescField): unknown {
  if (field.fieldKind === "enum") return field.enum.values[0]!.number;
  return scalarZero(scalarOf(field));
}

function scalarZero(scalar: ScalarType): unknown {
  switch (scalar) {
    case ScalarType.STRING:
      return "";
    case ScalarType.BOOL:
      return false;
    case ScalarType.BYTES:
      return new Uint8Array(0);
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64:
      return 0n;
    default:
      return 0;
  }
}

function fieldPlanOf(field: DescField): FieldPlan {
  if ((field as { delimitedEncoding?: boolean }).delimitedEncoding) throw new Error(`${field.parent.typeName}.${field.name}: groups are not supported`);
  const enumDesc = field.fieldKind === "enum" ? field.enum : field.fieldKind === "list" && field.listKind === "enum" ? field.enum : field.fieldKind === "map" && field.mapKind === "enum" ? field.enum : undefined;
  if (enumDesc !== undefined && !enumDesc.open) throw new Error(`${field.parent.typeName}.${field.name}: closed enums are not supported`);
  if (field.fieldKind === "scalar" || field.fieldKind === "list" || field.fieldKind === "map") {
    if ((field as { longAsString?: boolean }).longAsString) throw new Error(`${field.parent.typeName}.${field.name}: 64-bit integers as strings are not supported`);
  }
  const kind: Kind = field.fieldKind === "enum" ? "scalar" : field.fieldKind;
  const scalar = scalarOf(field);
  const message = field.fieldKind === "message" ? field.message : field.fieldKind === "list" && field.listKind === "message" ? field.message : field.fieldKind === "map" && field.mapKind === "message" ? field.message : undefined;
  const packed = field.fieldKind === "list" && field.listKind !== "message" && field.packed;
  const wire = kind === "scalar" ? wireTypeOf(scalar) : kind === "list" && !packed && field.fieldKind === "list" && field.listKind !== "message" ? wireTypeOf(scalar) : WIRE_LEN;
  const plan: FieldPlan = {
    no: field.number,
    name: field.localName,
    kind,
    oneof: field.oneof?.localName,
    explicit: field.fieldKind === "message" || (field.fieldKind !== "list" && field.fieldKind !== "map" && isExplicit(field)),
    scalar,
    zero: field.fieldKind === "message" ? undefined : zeroOf(field),
    packed,
    mapKey: field.fieldKind === "map" ? field.mapKey : ScalarType.STRING,
    child: undefined,
    tag: tagBytes(field.number, wire),
  };
  if (message !== undefined) plan.child = planOf(message);
  return plan;
}

function wireTypeOf(scalar: ScalarType): number {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WIRE_LEN;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WIRE_64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WIRE_32;
    default:
      return WIRE_VARINT;
  }
}

function tagBytes(no: number, wire: number): Uint8Array {
  const bytes = new Uint8Array(varintSize(no * 8 + wire));
  writeVarint(bytes, 0, no * 8 + wire);
  return bytes;
}

// --- writing ---

/** The sizes of the nested messages (and packed lists) of the message being written, in the order they are written. */
let sizes: number[] = [];
let sizesTop = 0;
let sizeAt = 0;
const scratch = new DataView(new ArrayBuffer(8));

/** A getter of a message being encoded could encode another one meanwhile: that one gets arrays of its own. */
let encoding = false;
/** Encoded messages are cut from slabs of this size (one allocation for many small frames, as Node's Buffer pool does). */
const SLAB_BYTES = 8 * 1024;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabUsed = 0;

/** `size` bytes for an encoded message, cut from the codec's slab (hand-written writers share it). */
export function allocate(size: number): Uint8Array {
  if (size > SLAB_BYTES / 4) return new Uint8Array(size);
  if (slabUsed + size > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabUsed = 0;
  }
  const bytes = new Uint8Array(slab, slabUsed, size);
  // Aligned to 8: a later reader may view it as wider numbers.
  slabUsed += (size + 7) & ~7;
  return bytes;
}

function encodeWith(plan: MessagePlan, message: Record<string, unknown>): Uint8Array {
  if (encoding) {
    const outer = { sizes, sizesTop, sizeAt, stack, stackTop };
    sizes = [];
    sizesTop = 0;
    stack = [];
    stackTop = 0;
    encoding = false;
    try {
      return encodeWith(plan, message);
    } finally {
      ({ sizes, sizesTop, sizeAt, stack, stackTop } = outer);
      encoding = true;
    }
  }
  encoding = true;
  try {
    sizesTop = 0;
    stackTop = 0;
    const size = measureMessage(plan, message);
    const buffer = allocate(size);
    sizeAt = 0;
    const end = writeMessage(plan, message, buffer, 0);
    if (end !== size) throw new Error(`${plan.typeName}: wrote ${end} bytes of ${size}`);
    return buffer;
  } finally {
    encoding = false;
  }
}

/**
 * The fields of `message` to write, with their values, in number order (the oneof case that is set
 * taking its place among the others): pairs in `out`, from `at`; returns where they end.
 */
function presentFields(plan: MessagePlan, message: Record<string, unknown>, out: unknown[], at: number): number {
  const start = at;
  const regular = plan.regular;
  for (let i = 0; i < regular.length; i++) {
    const field = regular[i]!;
    const value = present(field, message);
    if (value === undefined) continue;
    out[at++] = field;
    out[at++] = value;
  }
  const oneofs = plan.oneofs;
  for (let i = 0; i < oneofs.length; i++) {
    const oneof = message[oneofs[i]!.name] as { case?: string; value?: unknown } | undefined;
    if (oneof === undefined || oneof.case === undefined || oneof.value === undefined || oneof.value === null) continue;
    const field = oneofs[i]!.cases.get(oneof.case);
    if (field === undefined) throw new Error(`cannot encode ${plan.typeName}: no field ${oneof.case} in oneof ${oneofs[i]!.name}`);
    // Into its place by number (a message rarely has more than a few fields set).
    let j = at;
    while (j > start && (out[j - 2] as FieldPlan).no > field.no) {
      out[j] = out[j - 2];
      out[j + 1] = out[j - 1];
      j -= 2;
    }
    out[j] = field;
    out[j + 1] = oneof.value;
    at += 2;
  }
  return at;
}

/** A regular field's value when it is to be written, else undefined. */
function present(field: FieldPlan, message: Record<string, unknown>): unknown {
  const value = message[field.name];
  if (value === undefined || value === null) return undefined;
  if (field.explicit) return value;
  switch (field.kind) {
    case "list":
      return (value as unknown[]).length > 0 ? value : undefined;
    case "map":
      return value;
    default:
      return isZero(field, value) ? undefined : value;
  }
}

function isZero(field: FieldPlan, value: unknown): boolean {
  switch (field.scalar) {
    case ScalarType.BYTES:
      return (value as Uint8Array).length === 0;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      // Object.is tells −0 from 0: −0 is written.
      return Object.is(value, 0);
    case ScalarType.STRING:
      return value === "";
    case ScalarType.BOOL:
      return value === false;
    case ScalarType.INT32:
      // An enum's zero is its first value.
      return value === field.zero;
    default:
      // Loose: 0, 0n and "0" alike, as the generated writer compares.
      return value == 0;
  }
}

/** The fields and values to write of every message being measured or written, on a stack. */
let stack: unknown[] = [];
let stackTop = 0;

function measureMessage(plan: MessagePlan, message: Record<string, unknown>): number {
  let size = 0;
  const start = stackTop;
  const end = presentFields(plan, message, stack, start);
  stackTop = end;
  for (let i = start; i < end; i += 2) {
    const field = stack[i] as FieldPlan;
    const value = stack[i + 1];
    switch (field.kind) {
      case "scalar":
        size += field.tag.length + scalarSize(field.scalar, value, field);
        break;
      case "message": {
        const slot = sizesTop++;
        const inner = measureMessage(field.child!, value as Record<string, unknown>);
        sizes[slot] = inner;
        size += field.tag.length + varintSize(inner) + inner;
        break;
      }
      case "list":
        size += measureList(field, value as unknown[]);
        break;
      case "map":
        size += measureMap(field, value as Record<string, unknown>);
        break;
    }
  }
  stackTop = start;
  const unknown = message.$unknown as Array<{ no: number; wireType: number; data: Uint8Array }> | undefined;
  if (unknown !== undefined) for (const u of unknown) size += varintSize(u.no * 8 + u.wireType) + u.data.length;
  return size;
}

function measureList(field: FieldPlan, items: unknown[]): number {
  if (field.child !== undefined) {
    let size = 0;
    for (let i = 0; i < items.length; i++) {
      const slot = sizesTop++;
      const inner = measureMessage(field.child, items[i] as Record<string, unknown>);
      sizes[slot] = inner;
      size += field.tag.length + varintSize(inner) + inner;
    }
    return size;
  }
  if (field.packed) {
    const slot = sizesTop++;
    let inner = 0;
    for (let i = 0; i < items.length; i++) inner += scalarSize(field.scalar, items[i], field);
    sizes[slot] = inner;
    return field.tag.length + varintSize(inner) + inner;
  }
  let size = 0;
  for (let i = 0; i < items.length; i++) size += field.tag.length + scalarSize(field.scalar, items[i], field);
  return size;
}

function measureMap(field: FieldPlan, record: Record<string, unknown>): number {
  let size = 0;
  for (const key of Object.keys(record)) {
    const slot = sizesTop++;
    let entry = 1 + scalarSize(field.mapKey, mapKeyOf(field.mapKey, key), field);
    const value = record[key];
    if (field.child !== undefined) {
      const valueSlot = sizesTop++;
      const inner = measureMessage(field.child, value as Record<string, unknown>);
      sizes[valueSlot] = inner;
      entry += 1 + varintSize(inner) + inner;
    } else {
      entry += 1 + scalarSize(field.scalar, value, field);
    }
    sizes[slot] = entry;
    size += field.tag.length + varintSize(entry) + entry;
  }
  return size;
}

function mapKeyOf(scalar: ScalarType, key: string): unknown {
  switch (scalar) {
    case ScalarType.STRING:
      return key;
    case ScalarType.BOOL:
      return key === "true";
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64:
      return BigInt(key);
    default:
      return Number.parseInt(key, 10);
  }
}

function writeMessage(plan: MessagePlan, message: Record<string, unknown>, buffer: Uint8Array, pos: number): number {
  const start = stackTop;
  const end = presentFields(plan, message, stack, start);
  stackTop = end;
  for (let i = start; i < end; i += 2) {
    const field = stack[i] as FieldPlan;
    const value = stack[i + 1];
    switch (field.kind) {
      case "scalar":
        pos = writeTag(buffer, pos, field.tag);
        pos = writeScalar(buffer, pos, field.scalar, value);
        break;
      case "message": {
        pos = writeTag(buffer, pos, field.tag);
        pos = writeVarint(buffer, pos, sizes[sizeAt++]!);
        pos = writeMessage(field.child!, value as Record<string, unknown>, buffer, pos);
        break;
      }
      case "list":
        pos = writeList(field, value as unknown[], buffer, pos);
        break;
      case "map":
        pos = writeMap(field, value as Record<string, unknown>, buffer, pos);
        break;
    }
  }
  stackTop = start;
  const unknown = message.$unknown as Array<{ no: number; wireType: number; data: Uint8Array }> | undefined;
  if (unknown !== undefined) {
    for (const u of unknown) {
      pos = writeVarint(buffer, pos, u.no * 8 + u.wireType);
      buffer.set(u.data, pos);
      pos += u.data.length;
    }
  }
  return pos;
}

function writeList(field: FieldPlan, items: unknown[], buffer: Uint8Array, pos: number): number {
  if (field.child !== undefined) {
    for (let i = 0; i < items.length; i++) {
      pos = writeTag(buffer, pos, field.tag);
      pos = writeVarint(buffer, pos, sizes[sizeAt++]!);
      pos = writeMessage(field.child, items[i] as Record<string, unknown>, buffer, pos);
    }
    return pos;
  }
  if (field.packed) {
    pos = writeTag(buffer, pos, field.tag);
    pos = writeVarint(buffer, pos, sizes[sizeAt++]!);
    for (let i = 0; i < items.length; i++) pos = writeScalar(buffer, pos, field.scalar, items[i]);
    return pos;
  }
  for (let i = 0; i < items.length; i++) {
    pos = writeTag(buffer, pos, field.tag);
    pos = writeScalar(buffer, pos, field.scalar, items[i]);
  }
  return pos;
}

function writeMap(field: FieldPlan, record: Record<string, unknown>, buffer: Uint8Array, pos: number): number {
  const keyTag = wireTypeOf(field.mapKey) | 8;
  for (const key of Object.keys(record)) {
    pos = writeTag(buffer, pos, field.tag);
    pos = writeVarint(buffer, pos, sizes[sizeAt++]!);
    buffer[pos++] = keyTag;
    pos = writeScalar(buffer, pos, field.mapKey, mapKeyOf(field.mapKey, key));
    const value = record[key];
    if (field.child !== undefined) {
      buffer[pos++] = 0x12;
      pos = writeVarint(buffer, pos, sizes[sizeAt++]!);
      pos = writeMessage(field.child, value as Record<string, unknown>, buffer, pos);
    } else {
      buffer[pos++] = wireTypeOf(field.scalar) | 16;
      pos = writeScalar(buffer, pos, field.scalar, value);
    }
  }
  return pos;
}

function writeTag(buffer: Uint8Array, pos: number, tag: Uint8Array): number {
  buffer[pos] = tag[0]!;
  if (tag.length === 1) return pos + 1;
  for (let i = 1; i < tag.length; i++) buffer[pos + i] = tag[i]!;
  return pos + tag.length;
}

function fail(field: FieldPlan | undefined, value: unknown, what: string): never {
  throw new Error(`cannot encode ${field === undefined ? "a value" : `field ${field.name}`} to binary: ${String(value)} is not ${what}`);
}

function scalarSize(scalar: ScalarType, value: unknown, field: FieldPlan): number {
  switch (scalar) {
    case ScalarType.STRING:
      if (typeof value !== "string") fail(field, value, "a string");
      return lengthDelimitedSize(utf8Length(value));
    case ScalarType.BYTES:
      if (!(value instanceof Uint8Array)) fail(field, value, "bytes");
      return lengthDelimitedSize(value.length);
    case ScalarType.BOOL:
      return 1;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return 8;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return 4;
    case ScalarType.INT32: {
      const v = value as number;
      if (typeof v !== "number" || (v | 0) !== v) fail(field, value, "an int32");
      return v < 0 ? 10 : varintSize(v);
    }
    case ScalarType.UINT32: {
      const v = value as number;
      if (typeof v !== "number" || v >>> 0 !== v) fail(field, value, "a uint32");
      return varintSize(v);
    }
    case ScalarType.SINT32: {
      const v = value as number;
      if (typeof v !== "number" || (v | 0) !== v) fail(field, value, "an int32");
      return varintSize(((v << 1) ^ (v >> 31)) >>> 0);
    }
    case ScalarType.INT64:
    case ScalarType.UINT64: {
      const n = safeNumber(value);
      if (n !== undefined && n >= 0) return varintSize(n);
      return varint64Size(bits64(value, scalar, field));
    }
    case ScalarType.SINT64:
      return varint64Size(zigzag64(bits64(value, scalar, field)));
    default:
      return fail(field, value, "a known scalar");
  }
}

function lengthDelimitedSize(length: number): number {
  return varintSize(length) + length;
}

/** A 64-bit value that is a safe non-fractional number (a bigint or number in range), else undefined. */
function safeNumber(value: unknown): number | undefined {
  if (typeof value === "bigint") return value <= MAX_WIRE_INTEGER && value >= -MAX_WIRE_INTEGER ? Number(value) : undefined;
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  return undefined;
}

/** The 64 bits of a 64-bit field's value, as an unsigned bigint. */
function bits64(value: unknown, scalar: ScalarType, field: FieldPlan | undefined): bigint {
  let big: bigint;
  try {
    big = typeof value === "bigint" ? value : BigInt(value as number | string);
  } catch {
    return fail(field, value, "a 64-bit integer");
  }
  const signed = scalar !== ScalarType.UINT64 && scalar !== ScalarType.FIXED64;
  if (signed ? big < -(1n << 63n) || big >= 1n << 63n : big < 0n || big >= 1n << 64n) fail(field, value, signed ? "an int64" : "a uint64");
  return BigInt.asUintN(64, big);
}

function zigzag64(bits: bigint): bigint {
  const signed = BigInt.asIntN(64, bits);
  return BigInt.asUintN(64, (signed << 1n) ^ (signed >> 63n));
}

function varint64Size(bits: bigint): number {
  let size = 1;
  while (bits >= 0x80n) {
    bits >>= 7n;
    size++;
  }
  return size;
}

function writeScalar(buffer: Uint8Array, pos: number, scalar: ScalarType, value: unknown): number {
  switch (scalar) {
    case ScalarType.STRING:
      return writeString(buffer, pos, value as string);
    case ScalarType.BYTES: {
      const bytes = value as Uint8Array;
      pos = writeVarint(buffer, pos, bytes.length);
      buffer.set(bytes, pos);
      return pos + bytes.length;
    }
    case ScalarType.BOOL:
      buffer[pos] = value ? 1 : 0;
      return pos + 1;
    case ScalarType.INT32: {
      const v = value as number;
      if (v >= 0) return writeVarint(buffer, pos, v);
      return writeVarint64(buffer, pos, BigInt.asUintN(64, BigInt(v)));
    }
    case ScalarType.UINT32:
      return writeVarint(buffer, pos, value as number);
    case ScalarType.SINT32: {
      const v = value as number;
      return writeVarint(buffer, pos, ((v << 1) ^ (v >> 31)) >>> 0);
    }
    case ScalarType.INT64:
    case ScalarType.UINT64: {
      const n = safeNumber(value);
      if (n !== undefined && n >= 0) return writeVarint(buffer, pos, n);
      return writeVarint64(buffer, pos, bits64(value, scalar, undefined));
    }
    case ScalarType.SINT64:
      return writeVarint64(buffer, pos, zigzag64(bits64(value, scalar, undefined)));
    case ScalarType.DOUBLE:
      scratch.setFloat64(0, value as number, true);
      return copyScratch(buffer, pos, 8);
    case ScalarType.FLOAT:
      scratch.setFloat32(0, value as number, true);
      return copyScratch(buffer, pos, 4);
    case ScalarType.FIXED32:
      scratch.setUint32(0, value as number, true);
      return copyScratch(buffer, pos, 4);
    case ScalarType.SFIXED32:
      scratch.setInt32(0, value as number, true);
      return copyScratch(buffer, pos, 4);
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      scratch.setBigUint64(0, bits64(value, scalar, undefined), true);
      return copyScratch(buffer, pos, 8);
    default:
      return pos;
  }
}

function copyScratch(buffer: Uint8Array, pos: number, count: number): number {
  for (let i = 0; i < count; i++) buffer[pos + i] = scratch.getUint8(i);
  return pos + count;
}

function writeVarint64(buffer: Uint8Array, pos: number, bits: bigint): number {
  while (bits >= 0x80n) {
    buffer[pos++] = Number(bits & 0x7fn) | 0x80;
    bits >>= 7n;
  }
  buffer[pos++] = Number(bits);
  return pos;
}

function writeString(buffer: Uint8Array, pos: number, text: string): number {
  const length = utf8Length(text);
  return writeUtf8(buffer, writeVarint(buffer, pos, length), text, length);
}

// --- reading ---

class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** The high 32 bits of the last `varint64`. */
  high = 0;

  /** A varint of up to 64 bits: returns its low 32 bits, and leaves the high ones in `high`. */
  varint64(): number {
    let lo = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const byte = this.#byte();
      lo |= (byte & 0x7f) << shift;
      if (byte < 0x80) {
        this.high = 0;
        return lo >>> 0;
      }
    }
    const middle = this.#byte();
    lo |= (middle & 0x0f) << 28;
    let hi = (middle & 0x7f) >> 4;
    if (middle < 0x80) {
      this.high = hi;
      return lo >>> 0;
    }
    for (let shift = 3; shift <= 31; shift += 7) {
      const byte = this.#byte();
      hi |= (byte & 0x7f) << shift;
      if (byte < 0x80) {
        this.high = hi >>> 0;
        return lo >>> 0;
      }
    }
    throw new FastDecodeError("invalid varint");
  }

  /** A varint read as 32 bits (the low ones), as protobuf readers take int32 and enums. */
  varint32(): number {
    const pos = this.pos;
    if (pos < this.end) {
      const first = this.bytes[pos]!;
      if (first < 0x80) {
        this.pos = pos + 1;
        return first;
      }
    }
    return this.varint64();
  }

  /** A field's tag (number × 8 + wire type), refused as the generated reader refuses it. */
  tag(): number {
    const start = this.pos;
    const tag = this.varint32() >>> 0;
    const read = this.pos - start;
    if (read > 5 || (read === 5 && this.bytes[this.pos - 1]! > 0x0f)) throw new FastDecodeError("illegal tag: varint overflows uint32");
    if (tag >>> 3 === 0 || (tag & 7) > 5) throw new FastDecodeError(`illegal tag: field no ${tag >>> 3} wire type ${tag & 7}`);
    return tag;
  }

  /** A length: at most 2^32 − 1. */
  uint32(): number {
    return this.varint32() >>> 0;
  }

  #byte(): number {
    if (this.pos >= this.end) throw new FastDecodeError("premature end of data");
    return this.bytes[this.pos++]!;
  }

  take(count: number): number {
    const start = this.pos;
    if (count > this.end - start) throw new FastDecodeError("premature end of data");
    this.pos = start + count;
    return start;
  }

  skip(wire: number, no: number, depth: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint64();
        return;
      case WIRE_64:
        this.take(8);
        return;
      case WIRE_32:
        this.take(4);
        return;
      case WIRE_LEN:
        this.take(this.uint32());
        return;
      case 3: {
        // A group: skipped to its end tag.
        if (depth <= 0) throw new FastDecodeError("maximum recursion depth reached");
        for (;;) {
          const tag = this.tag();
          const innerWire = tag & 7;
          if (innerWire === 4) {
            if (tag >>> 3 !== no) throw new FastDecodeError("invalid end group tag");
            return;
          }
          this.skip(innerWire, tag >>> 3, depth - 1);
        }
      }
      default:
        throw new FastDecodeError(`cannot skip wire type ${wire}`);
    }
  }
}

function decodeWith(plan: MessagePlan, bytes: Uint8Array, start: number, end: number): never {
  const message = newMessage(plan);
  readMessage(plan, message, new Reader(bytes, start, end), end, 0);
  return message as never;
}

function newMessage(plan: MessagePlan): Record<string, unknown> {
  const message: Record<string, unknown> = { $typeName: plan.typeName };
  const defaults = plan.defaults;
  for (let i = 0; i < defaults.length; i++) message[defaults[i]!.name] = defaults[i]!.make();
  return message;
}

function readMessage(plan: MessagePlan, message: Record<string, unknown>, reader: Reader, end: number, depth: number): void {
  if (depth >= MAX_DEPTH) throw new FastDecodeError(`cannot decode ${plan.typeName}: maximum recursion depth reached`);
  let unknown = message.$unknown as Array<{ no: number; wireType: number; data: Uint8Array }> | undefined;
  while (reader.pos < end) {
    const tag = reader.tag();
    const no = tag >>> 3;
    const wire = tag & 7;
    const field = plan.byNumber.get(no);
    if (field === undefined) {
      const from = reader.pos;
      reader.skip(wire, no, MAX_DEPTH - depth);
      (unknown ??= []).push({ no, wireType: wire, data: reader.bytes.slice(from, reader.pos) });
      continue;
    }
    switch (field.kind) {
      case "scalar": {
        const value = readScalar(reader, field.scalar);
        if (field.oneof !== undefined) message[field.oneof] = { case: field.name, value };
        else message[field.name] = value;
        break;
      }
      case "message": {
        const length = reader.uint32();
        const inner = reader.take(length);
        let child: Record<string, unknown>;
        if (field.oneof !== undefined) {
          const oneof = message[field.oneof] as { case?: string; value?: Record<string, unknown> };
          child = oneof.case === field.name && oneof.value !== undefined ? oneof.value : newMessage(field.child!);
          message[field.oneof] = { case: field.name, value: child };
        } else {
          child = (message[field.name] as Record<string, unknown> | undefined) ?? newMessage(field.child!);
          message[field.name] = child;
        }
        reader.pos = inner;
        readMessage(field.child!, child, reader, inner + length, depth + 1);
        break;
      }
      case "list": {
        const items = message[field.name] as unknown[];
        if (field.child !== undefined) {
          const length = reader.uint32();
          const inner = reader.take(length);
          const child = newMessage(field.child);
          reader.pos = inner;
          readMessage(field.child, child, reader, inner + length, depth + 1);
          items.push(child);
        } else if (wire === WIRE_LEN && field.scalar !== ScalarType.STRING && field.scalar !== ScalarType.BYTES) {
          const length = reader.uint32();
          const inner = reader.take(length);
          const packedEnd = inner + length;
          reader.pos = inner;
          while (reader.pos < packedEnd) items.push(readScalar(reader, field.scalar));
          // A value that runs past the packed bytes is malformed (the generated reader reads past them; this one stops).
          if (reader.pos !== packedEnd) throw new FastDecodeError("packed values overrun their length");
        } else {
          items.push(readScalar(reader, field.scalar));
        }
        break;
      }
      case "map":
        readMapEntry(field, message[field.name] as Record<string, unknown>, reader, depth);
        break;
    }
  }
  if (reader.pos !== end) throw new FastDecodeError("premature end of data");
  if (unknown !== undefined && unknown.length > 0) message.$unknown = unknown;
}

function readMapEntry(field: FieldPlan, record: Record<string, unknown>, reader: Reader, depth: number): void {
  const length = reader.uint32();
  const inner = reader.take(length);
  const end = inner + length;
  reader.pos = inner;
  let key: unknown;
  let value: unknown;
  while (reader.pos < end) {
    const tag = reader.tag();
    const no = tag >>> 3;
    if (no === 1) key = readScalar(reader, field.mapKey);
    else if (no === 2) {
      if (field.child !== undefined) {
        const valueLength = reader.uint32();
        const valueStart = reader.take(valueLength);
        const child = (value as Record<string, unknown> | undefined) ?? newMessage(field.child);
        reader.pos = valueStart;
        readMessage(field.child, child, reader, valueStart + valueLength, depth + 1);
        value = child;
      } else value = readScalar(reader, field.scalar);
    } else reader.skip(tag & 7, no, MAX_DEPTH - depth);
  }
  if (reader.pos !== end) throw new FastDecodeError("premature end of data");
  key ??= scalarZero(field.mapKey);
  value ??= field.child !== undefined ? newMessage(field.child) : field.scalar === ScalarType.BYTES ? new Uint8Array(0) : field.zero;
  Object.defineProperty(record, String(key), { value, enumerable: true, configurable: true, writable: true });
}

const TWO_32 = 2 ** 32;

function readScalar(reader: Reader, scalar: ScalarType): unknown {
  switch (scalar) {
    case ScalarType.STRING: {
      const length = reader.uint32();
      const start = reader.take(length);
      return readString(reader.bytes, start, start + length);
    }
    case ScalarType.BYTES: {
      const length = reader.uint32();
      const start = reader.take(length);
      return reader.bytes.slice(start, start + length);
    }
    case ScalarType.BOOL: {
      const lo = reader.varint64();
      return lo !== 0 || reader.high !== 0;
    }
    case ScalarType.INT32:
      return reader.varint32() | 0;
    case ScalarType.UINT32:
      return reader.varint32() >>> 0;
    case ScalarType.SINT32: {
      const v = reader.varint32();
      return (v >>> 1) ^ -(v & 1);
    }
    case ScalarType.UINT64: {
      const lo = reader.varint64();
      return safeUnsigned(lo, reader.high);
    }
    case ScalarType.INT64: {
      const lo = reader.varint64();
      return safeSigned(lo, reader.high);
    }
    case ScalarType.SINT64: {
      const lo = reader.varint64();
      const hi = reader.high;
      // Zigzag: (n >>> 1) ^ −(n & 1), on 64 bits.
      const negative = (lo & 1) === 1;
      let low = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      let high = hi >>> 1;
      if (negative) {
        low = ~low >>> 0;
        high = ~high >>> 0;
      }
      return safeSigned(low, high);
    }
    case ScalarType.FIXED32: {
      const start = reader.take(4);
      return view(reader.bytes).getUint32(start, true);
    }
    case ScalarType.SFIXED32: {
      const start = reader.take(4);
      return view(reader.bytes).getInt32(start, true);
    }
    case ScalarType.FIXED64: {
      const start = reader.take(8);
      const data = view(reader.bytes);
      return safeUnsigned(data.getUint32(start, true), data.getUint32(start + 4, true));
    }
    case ScalarType.SFIXED64: {
      const start = reader.take(8);
      const data = view(reader.bytes);
      return safeSigned(data.getUint32(start, true), data.getUint32(start + 4, true));
    }
    case ScalarType.DOUBLE: {
      const start = reader.take(8);
      return view(reader.bytes).getFloat64(start, true);
    }
    case ScalarType.FLOAT: {
      const start = reader.take(4);
      return view(reader.bytes).getFloat32(start, true);
    }
    default:
      throw new FastDecodeError(`unknown scalar type ${scalar}`);
  }
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** 2^53 − 1 at most: above it, refused (the protocol's rule for numbers). */
function safeUnsigned(lo: number, hi: number): bigint {
  if (hi >= 0x200000) throw new FastDecodeError("a 64-bit integer past 2^53 − 1");
  return BigInt(hi * TWO_32 + lo);
}

function safeSigned(lo: number, hi: number): bigint {
  if (hi < 0x80000000) return safeUnsigned(lo, hi);
  // Negative: its magnitude is the two's complement.
  const magnitudeLo = (~lo + 1) >>> 0;
  const magnitudeHi = (~hi + (magnitudeLo === 0 ? 1 : 0)) >>> 0;
  if (magnitudeHi >= 0x200000) throw new FastDecodeError("a 64-bit integer past 2^53 − 1 in magnitude");
  return -BigInt(magnitudeHi * TWO_32 + magnitudeLo);
}

function readString(bytes: Uint8Array, start: number, end: number): string {
  const text = readUtf8(bytes, start, end);
  if (text === undefined) throw new FastDecodeError("invalid UTF-8");
  return text;
}
