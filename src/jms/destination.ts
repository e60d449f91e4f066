import { DestinationKind } from "../../gen/activeblaze/v1/messaging_pb.ts";
import { BlazeError } from "../errors.ts";
import { web } from "../web.ts";
import type { WireDestination } from "./wire.ts";

/** Most UTF-8 bytes of a destination name. */
export const MAX_DESTINATION_BYTES = 255;

const encoder = new web.TextEncoder();

/**
 * A destination: a topic (every subscriber gets each message), a queue (exactly one consumer does), or
 * a temporary queue or topic that lives as long as the context that made it. Destinations are values:
 * two with the same kind and name are the same destination.
 */
export abstract class Destination {
  abstract readonly kind: "topic" | "queue" | "temporary-queue" | "temporary-topic";
  #wire: WireDestination | undefined;

  constructor(readonly name: string) {
    checkName(name);
  }

  /** JMS's getTopicName / getQueueName. */
  toString(): string {
    return `${this.kind}://${this.name}`;
  }

  equals(other: Destination | null | undefined): boolean {
    return other !== null && other !== undefined && other.kind === this.kind && other.name === this.name;
  }

  get isTopic(): boolean {
    return this.kind === "topic" || this.kind === "temporary-topic";
  }

  /** @internal The wire form (made once). */
  get wire(): WireDestination {
    return (this.#wire ??= wireOf(this));
  }
}

/**
 * A topic. Names are segments separated by dots; a consumer's topic may use wildcards as ActiveMQ and
 * NATS do: `*` matches one segment, `>` (last) the rest — `prices.*.acme`, `prices.>`.
 */
export class Topic extends Destination {
  readonly kind = "topic" as const;
  readonly isWildcard: boolean;

  constructor(name: string) {
    super(name);
    const segments = name.split(".");
    const at = segments.indexOf(">");
    if (at >= 0 && at !== segments.length - 1) throw invalid(name, '">" matches the rest of a name: it is the last segment');
    if (segments.some((segment) => segment.length > 1 && (segment.includes("*") || segment.includes(">")))) {
      throw invalid(name, 'a wildcard is a whole segment ("prices.*", not "prices.a*")');
    }
    this.isWildcard = segments.includes("*") || segments.includes(">");
  }
}

export class Queue extends Destination {
  readonly kind = "queue" as const;

  constructor(name: string) {
    super(name);
    if (name.includes("*") || name.includes(">")) throw invalid(name, "queue names have no wildcards");
  }
}

/** A queue at the member of the context that made it; JMSReplyTo of requests. */
export class TemporaryQueue extends Destination {
  readonly kind = "temporary-queue" as const;

  /** The member that owns it (its id in hex). */
  get owner(): string {
    return this.name.slice(0, this.name.indexOf("/"));
  }
}

/** A topic only the context that made it consumes from. */
export class TemporaryTopic extends Destination {
  readonly kind = "temporary-topic" as const;
}

/** True when topic `name` is matched by `pattern` (which may hold `*` and `>` segments). */
export function topicMatches(pattern: string, name: string): boolean {
  if (pattern === name) return true;
  const want = pattern.split(".");
  const have = name.split(".");
  for (let i = 0; i < want.length; i++) {
    const segment = want[i]!;
    if (segment === ">") return have.length > i;
    if (i >= have.length) return false;
    if (segment !== "*" && segment !== have[i]) return false;
  }
  return want.length === have.length;
}

function wireOf(destination: Destination): WireDestination {
  switch (destination.kind) {
    case "topic":
      return { kind: DestinationKind.TOPIC, name: destination.name };
    case "queue":
      return { kind: DestinationKind.QUEUE, name: destination.name };
    case "temporary-queue":
      return { kind: DestinationKind.TEMPORARY_QUEUE, name: destination.name };
    case "temporary-topic":
      return { kind: DestinationKind.TEMPORARY_TOPIC, name: destination.name };
  }
}

/** Destinations are values: the ones received lately are reused rather than parsed for every message (by kind, then name). */
const received = new Map<DestinationKind, Map<string, Destination | undefined>>(
  [DestinationKind.TOPIC, DestinationKind.QUEUE, DestinationKind.TEMPORARY_QUEUE, DestinationKind.TEMPORARY_TOPIC].map((kind) => [kind, new Map()]),
);
const MAX_REMEMBERED = 1024;
let last: Destination | undefined;
let lastKind = DestinationKind.UNSPECIFIED;
/** The wire value `last` was found for last: the codec hands out one value for a sender's destination, message after message. */
let lastWire: WireDestination | undefined;

/** The destination a wire value names, or undefined when it names none this version knows. */
export function fromWire(destination: WireDestination | undefined): Destination | undefined {
  if (destination === undefined) return undefined;
  // Wire values are never changed: the same value names the same destination, without comparing names.
  if (destination === lastWire) return last;
  // Mostly the destination of the message before: a comparison of names, not a lookup.
  if (last !== undefined && destination.name === last.name && destination.kind === lastKind) {
    lastWire = destination;
    return last;
  }
  const byName = received.get(destination.kind);
  // A kind this version does not know names no destination.
  if (byName === undefined) return undefined;
  let made = byName.get(destination.name);
  if (made === undefined && !byName.has(destination.name)) {
    made = make(destination);
    if (byName.size >= MAX_REMEMBERED) byName.clear();
    byName.set(destination.name, made);
  }
  if (made !== undefined) {
    last = made;
    lastKind = destination.kind;
    lastWire = destination;
  }
  return made;
}

function make(destination: WireDestination): Destination | undefined {
  try {
    switch (destination.kind) {
      case DestinationKind.TOPIC:
        return new Topic(destination.name);
      case DestinationKind.QUEUE:
        return new Queue(destination.name);
      case DestinationKind.TEMPORARY_QUEUE:
        return new TemporaryQueue(destination.name);
      case DestinationKind.TEMPORARY_TOPIC:
        return new TemporaryTopic(destination.name);
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

function checkName(name: string): void {
  if (typeof name !== "string" || name.length === 0) throw new BlazeError("INVALID_ARGUMENT", "a destination name is a non-empty string", { path: ["name"] });
  if (name.length * 3 > MAX_DESTINATION_BYTES && encoder.encode(name).length > MAX_DESTINATION_BYTES) {
    throw invalid(name, `at most ${MAX_DESTINATION_BYTES} UTF-8 bytes`);
  }
}

function invalid(name: string, why: string): BlazeError {
  return new BlazeError("INVALID_ARGUMENT", `invalid destination "${name}": ${why}`, { path: ["name"] });
}
