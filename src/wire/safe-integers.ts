import { type DescField, type DescMessage, type Message, ScalarType } from "@bufbuild/protobuf";

/**
 * The protocol's rule for numbers: every 64-bit integer in an envelope (sequence numbers, counters,
 * incarnations, epochs, tokens, durations) is at most 2^53 − 1, the largest integer every receiver can
 * hold exactly — JavaScript's numbers, and the doubles of JSON. A datagram that breaks it is refused
 * (`INVALID_FIELD`) before any protocol state sees it, so no layer has to guard its own arithmetic
 * against 2^64 − 1 or lose precision past 2^53.
 *
 * The check is compiled once per message type from the schema, so a field added later is covered
 * without anyone remembering to add it here.
 */

/** The largest integer the protocol carries. */
export const MAX_WIRE_INTEGER = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The largest counter a member accepts from the wire where it counts on from it (view counters, epochs,
 * log indexes, fencing tokens): half the exact range, so that counting on by one from any accepted
 * value stays exact for longer than anything runs (2^52 is a count a millisecond for 140,000 years).
 */
export const MAX_COUNTER = 2 ** 52;

/**
 * A field path and value that breaks the rule (every 64-bit integer at most `limit`, by default
 * 2^53 − 1), or undefined when the message keeps it.
 */
export function unsafeIntegerIn(schema: DescMessage, message: Message, limit: bigint = MAX_WIRE_INTEGER): string | undefined {
  return checkerOf(schema)(message as unknown as Record<string, unknown>, limit);
}

type Checker = (message: Record<string, unknown>, limit: bigint) => string | undefined;

const checkers = new WeakMap<DescMessage, Checker>();

function checkerOf(schema: DescMessage): Checker {
  let checker = checkers.get(schema);
  if (checker === undefined) {
    // Set before compiling: a recursive type reaches itself through its fields.
    const placeholder: { fn: Checker } = { fn: () => undefined };
    checkers.set(schema, (message, limit) => placeholder.fn(message, limit));
    placeholder.fn = compile(schema);
    checker = placeholder.fn;
    checkers.set(schema, checker);
  }
  return checker;
}

function is64Bit(scalar: ScalarType): boolean {
  return (
    scalar === ScalarType.UINT64 ||
    scalar === ScalarType.INT64 ||
    scalar === ScalarType.FIXED64 ||
    scalar === ScalarType.SFIXED64 ||
    scalar === ScalarType.SINT64
  );
}

/** True when `schema` or anything it contains has a 64-bit integer field (only those need walking). */
function holds64Bit(schema: DescMessage, seen = new Set<DescMessage>()): boolean {
  if (seen.has(schema)) return false;
  seen.add(schema);
  for (const field of schema.fields) {
    const nested = nestedMessage(field);
    if (nested !== undefined ? holds64Bit(nested, seen) : scalarOf(field) !== undefined && is64Bit(scalarOf(field)!)) return true;
  }
  return false;
}

function scalarOf(field: DescField): ScalarType | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return field.scalar;
    case "list":
      return field.listKind === "scalar" ? field.scalar : undefined;
    case "map":
      return field.mapKind === "scalar" ? field.scalar : undefined;
    default:
      return undefined;
  }
}

function nestedMessage(field: DescField): DescMessage | undefined {
  switch (field.fieldKind) {
    case "message":
      return field.message;
    case "list":
      return field.listKind === "message" ? field.message : undefined;
    case "map":
      return field.mapKind === "message" ? field.message : undefined;
    default:
      return undefined;
  }
}

function unsafe(value: unknown, limit: bigint): boolean {
  const big = typeof value === "bigint" ? value : typeof value === "string" ? BigInt(value) : undefined;
  return big !== undefined && (big > limit || big < -limit);
}

function compile(schema: DescMessage): Checker {
  const checks: Checker[] = [];
  for (const field of schema.fields) {
    const nested = nestedMessage(field);
    const scalar = scalarOf(field);
    if (nested === undefined && (scalar === undefined || !is64Bit(scalar))) continue;
    if (nested !== undefined && !holds64Bit(nested)) continue;
    const name = field.localName;
    const oneof = field.oneof?.localName;
    // A oneof member sits under its group: { case, value }.
    const read = oneof === undefined
      ? (message: Record<string, unknown>) => message[name]
      : (message: Record<string, unknown>) => {
          const group = message[oneof] as { case?: string; value?: unknown } | undefined;
          return group?.case === name ? group.value : undefined;
        };
    const path = `${schema.name}.${field.name}`;
    const checkValue: (value: unknown, limit: bigint) => string | undefined =
      nested !== undefined
        ? (value, limit) => (value === undefined ? undefined : checkerOf(nested)(value as Record<string, unknown>, limit))
        : (value, limit) => (unsafe(value, limit) ? `${path} is ${String(value)}, beyond ${limit === MAX_WIRE_INTEGER ? "2^53 - 1" : String(limit)}` : undefined);
    switch (field.fieldKind) {
      case "list":
        checks.push((message, limit) => {
          for (const item of (read(message) as readonly unknown[] | undefined) ?? []) {
            const found = checkValue(item, limit);
            if (found !== undefined) return found;
          }
          return undefined;
        });
        break;
      case "map":
        checks.push((message, limit) => {
          for (const item of Object.values((read(message) as Record<string, unknown> | undefined) ?? {})) {
            const found = checkValue(item, limit);
            if (found !== undefined) return found;
          }
          return undefined;
        });
        break;
      default:
        checks.push((message, limit) => checkValue(read(message), limit));
    }
  }
  if (checks.length === 0) return () => undefined;
  return (message, limit) => {
    for (const check of checks) {
      const found = check(message, limit);
      if (found !== undefined) return found;
    }
    return undefined;
  };
}
