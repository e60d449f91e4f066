import type { SeededRandom } from "../../src/transport/seeded-random.ts";

/**
 * Seeded mutation of valid datagrams, as a fuzzer aimed at a protobuf protocol would do them: raw bit
 * flips and truncations, and lies at the field level — a number replaced by an edge value (0, 2^32 − 1,
 * 2^53 − 1, 2^64 − 1, its neighbour), a length prefix that overruns, a field dropped or repeated, a
 * sender id swapped. Fields are found by walking the protobuf encoding (nested messages too, where the
 * bytes parse as one), so most mutants get past the decoder and reach the protocols.
 */

interface Field {
  readonly number: number;
  readonly wireType: number;
  /** Where the tag starts and the field ends. */
  readonly start: number;
  readonly end: number;
  /** Where the value starts (after the tag, and after the length for wire type 2). */
  readonly valueStart: number;
  readonly varint?: bigint;
  readonly children?: readonly Field[];
}

const EDGE_VALUES: readonly bigint[] = [
  0n,
  1n,
  2n,
  127n,
  128n,
  0x7fff_ffffn,
  0xffff_ffffn,
  0x1_0000_0000n,
  2n ** 52n,
  2n ** 53n - 2n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n,
  2n ** 64n - 1n,
];

export function mutate(datagram: Uint8Array, random: SeededRandom, senderIds: readonly Uint8Array[] = []): Uint8Array {
  const fields = parseFields(datagram, 0, datagram.length, 0);
  const all = flatten(fields ?? []);
  const choice = random.nextInt(10);
  if (choice === 0 || all.length === 0) return flipBits(datagram, random);
  if (choice === 1) return datagram.subarray(0, random.nextInt(datagram.length));
  const varints = all.filter((f) => f.varint !== undefined);
  const delimited = all.filter((f) => f.wireType === 2);
  if (choice <= 5 && varints.length > 0) {
    const field = varints[random.nextInt(varints.length)]!;
    const original = field.varint!;
    const pick = random.nextInt(4);
    const value = pick === 0 ? original + 1n : pick === 1 && original > 0n ? original - 1n : EDGE_VALUES[random.nextInt(EDGE_VALUES.length)]!;
    return splice(datagram, field.valueStart, field.end, encodeVarint(value & (2n ** 64n - 1n)));
  }
  if (choice === 6 && delimited.length > 0) {
    // A length prefix that claims more (or fewer) bytes than follow.
    const field = delimited[random.nextInt(delimited.length)]!;
    const tagEnd = field.start + varintLength(datagram, field.start);
    const length = BigInt(field.end - field.valueStart);
    const lie = random.nextInt(2) === 0 ? length + BigInt(1 + random.nextInt(1000)) : length / 2n;
    return splice(datagram, tagEnd, field.valueStart, encodeVarint(lie));
  }
  if (choice === 7 && all.length > 0) {
    // A field dropped, or written twice.
    const field = all[random.nextInt(all.length)]!;
    const bytes = datagram.subarray(field.start, field.end);
    return random.nextInt(2) === 0 ? splice(datagram, field.start, field.end, new Uint8Array(0)) : splice(datagram, field.end, field.end, bytes);
  }
  if (choice === 8 && senderIds.length > 0) {
    // Someone else's id (the envelope's field 4), or a mutated one.
    const idField = (fields ?? []).find((f) => f.number === 4 && f.wireType === 2);
    if (idField !== undefined) return splice(datagram, idField.valueStart, idField.end, senderIds[random.nextInt(senderIds.length)]!);
  }
  return flipBits(datagram, random);
}

/** Replaces the envelope's sender id (field 4) and incarnation (field 5) by `id` and `incarnation`. */
export function reSign(datagram: Uint8Array, id: Uint8Array, incarnation: bigint): Uint8Array {
  const fields = parseFields(datagram, 0, datagram.length, 0);
  if (fields === undefined) return datagram;
  let result = datagram;
  // From the end, so earlier offsets stay right.
  for (const field of [...fields].reverse()) {
    if (field.number === 5 && field.wireType === 0) result = splice(result, field.valueStart, field.end, encodeVarint(incarnation));
    else if (field.number === 4 && field.wireType === 2) result = splice(result, field.valueStart, field.end, id);
  }
  return result;
}

function flipBits(datagram: Uint8Array, random: SeededRandom): Uint8Array {
  const copy = datagram.slice();
  const flips = 1 + random.nextInt(4);
  for (let i = 0; i < flips && copy.length > 0; i++) copy[random.nextInt(copy.length)]! ^= 1 << random.nextInt(8);
  return copy;
}

function splice(bytes: Uint8Array, start: number, end: number, insert: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length - (end - start) + insert.length);
  out.set(bytes.subarray(0, start));
  out.set(insert, start);
  out.set(bytes.subarray(end), start + insert.length);
  return out;
}

function flatten(fields: readonly Field[]): Field[] {
  return fields.flatMap((f) => [f, ...flatten(f.children ?? [])]);
}

function encodeVarint(value: bigint): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (v > 0n);
  return Uint8Array.from(bytes);
}

function varintLength(bytes: Uint8Array, pos: number): number {
  let length = 1;
  while (pos + length - 1 < bytes.length && (bytes[pos + length - 1]! & 0x80) !== 0) length++;
  return length;
}

function readVarint(bytes: Uint8Array, pos: number, end: number): { value: bigint; next: number } | undefined {
  let value = 0n;
  let shift = 0n;
  for (let i = pos; i < end && i < pos + 10; i++) {
    const byte = bytes[i]!;
    value |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) return { value, next: i + 1 };
    shift += 7n;
  }
  return undefined;
}

/** The fields of a protobuf message in `bytes[start, end)`; undefined when the bytes are not one. */
function parseFields(bytes: Uint8Array, start: number, end: number, depth: number): Field[] | undefined {
  const fields: Field[] = [];
  let pos = start;
  while (pos < end) {
    const tag = readVarint(bytes, pos, end);
    if (tag === undefined) return undefined;
    const number = Number(tag.value >> 3n);
    const wireType = Number(tag.value & 7n);
    if (number === 0) return undefined;
    let next = tag.next;
    switch (wireType) {
      case 0: {
        const value = readVarint(bytes, next, end);
        if (value === undefined) return undefined;
        fields.push({ number, wireType, start: pos, end: value.next, valueStart: next, varint: value.value });
        pos = value.next;
        continue;
      }
      case 1:
        next += 8;
        break;
      case 5:
        next += 4;
        break;
      case 2: {
        const length = readVarint(bytes, next, end);
        if (length === undefined) return undefined;
        const valueStart = length.next;
        const valueEnd = valueStart + Number(length.value);
        if (valueEnd > end) return undefined;
        const children = depth < 8 && valueEnd > valueStart ? parseFields(bytes, valueStart, valueEnd, depth + 1) : undefined;
        fields.push({ number, wireType, start: pos, end: valueEnd, valueStart, children });
        pos = valueEnd;
        continue;
      }
      default:
        return undefined;
    }
    if (next > end) return undefined;
    fields.push({ number, wireType, start: pos, end: next, valueStart: tag.next });
    pos = next;
  }
  return fields;
}
