import { create } from "@bufbuild/protobuf";
import { BlazeMessageSchema, ValueListSchema } from "../../gen/activeblaze/v1/message_pb.ts";
import { DeliveryMode as WireDeliveryMode } from "../../gen/activeblaze/v1/messaging_pb.ts";
import { BlazeError } from "../errors.ts";
import { BlazeMessage, type BlazeValue } from "../message/blaze-message.ts";
import { type Destination, fromWire } from "./destination.ts";
import type { SelectorLookup, SelectorValue } from "./selector.ts";
import { DEFAULT_PRIORITY, decodeStream, encodeStream, MessageId, NO_PROPERTIES, type PropertyValue, type WireBody, type WireHeaders, type WireMessage } from "./wire.ts";

/** JMSDeliveryMode. Only NON_PERSISTENT is sent; PERSISTENT is refused where it is asked for. */
export type DeliveryMode = "NON_PERSISTENT" | "PERSISTENT";

/** A property value: JMS boolean, int or float/double (numbers), long (bigint), String. */
export type PropertyType = boolean | number | bigint | string;

const RESERVED = new Set(["NULL", "TRUE", "FALSE", "NOT", "AND", "OR", "BETWEEN", "LIKE", "IN", "IS", "ESCAPE"]);
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** What a delivered message knows of its delivery, and how it is acknowledged. */
export interface Delivery {
  /** The context that holds it until it is acknowledged. */
  readonly owner: object;
  readonly redelivered: boolean;
  readonly deliveryCount: number;
  readonly expiration: number;
  readonly acknowledge: () => Promise<void>;
}

/**
 * A JMS message: headers, typed properties and (in the subclasses) a body. Header names are JMS's.
 * `send` fills the headers it owns (JMSMessageID, JMSTimestamp, JMSDestination, JMSExpiration,
 * JMSPriority, JMSDeliveryMode, JMSDeliveryTime) on the message it is given, as in JMS.
 */
export class Message {
  // The id as it travels: a received message's string is made when JMSMessageID is first read.
  #messageId = MessageId.NONE;
  /** The sender's wall clock when sent, ms since the Unix epoch (0 before). */
  JMSTimestamp = 0;
  JMSCorrelationID: string | null = null;
  JMSReplyTo: Destination | null = null;
  JMSType: string | null = null;
  JMSDestination: Destination | null = null;
  JMSDeliveryMode: DeliveryMode = "NON_PERSISTENT";
  JMSPriority = DEFAULT_PRIORITY;
  /** When the message expires on this member's wall clock, ms since the Unix epoch; 0 = never. */
  JMSExpiration = 0;
  /** The earliest time it may be delivered (JMS 2.0), ms since the Unix epoch. */
  JMSDeliveryTime = 0;
  /** True when this delivery is not the first (JMSXDeliveryCount > 1). */
  JMSRedelivered = false;
  // Made on the first property: most messages have none.
  #properties: Map<string, PropertyValue> = NO_PROPERTIES as Map<string, PropertyValue>;
  #delivery: Delivery | undefined;

  /** Set by `send`: "ID:", the sender's member id, its context's number and the message's number, separated by ":". */
  get JMSMessageID(): string | null {
    return this.#messageId === MessageId.NONE ? null : this.#messageId.text;
  }

  set JMSMessageID(id: string | null) {
    this.#messageId = MessageId.of(id ?? "");
  }

  /** @internal JMSMessageID as it travels. */
  get wireMessageId(): MessageId {
    return this.#messageId;
  }

  /** @internal */
  set wireMessageId(id: MessageId) {
    this.#messageId = id;
  }

  // --- properties ---

  setBooleanProperty(name: string, value: boolean): this {
    return this.#set(name, { type: "boolean", value: Boolean(value) });
  }

  /** A 32-bit integer property (JMS int; byte and short are ints here). */
  setIntProperty(name: string, value: number): this {
    if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) throw invalidValue(name, value, "an int (32-bit integer)");
    return this.#set(name, { type: "int", value });
  }

  setLongProperty(name: string, value: number | bigint): this {
    const long = typeof value === "bigint" ? value : Number.isSafeInteger(value) ? BigInt(value) : undefined;
    if (long === undefined || long < INT64_MIN || long > INT64_MAX) throw invalidValue(name, value, "a long (64-bit integer)");
    return this.#set(name, { type: "long", value: long });
  }

  setFloatProperty(name: string, value: number): this {
    if (typeof value !== "number") throw invalidValue(name, value, "a float");
    return this.#set(name, { type: "float", value: Math.fround(value) });
  }

  setDoubleProperty(name: string, value: number): this {
    if (typeof value !== "number") throw invalidValue(name, value, "a double");
    return this.#set(name, { type: "double", value });
  }

  setStringProperty(name: string, value: string): this {
    if (typeof value !== "string") throw invalidValue(name, value, "a String");
    return this.#set(name, { type: "string", value });
  }

  /**
   * Sets a property, its type taken from the value (JMS's setObjectProperty): a boolean, a string, a
   * bigint (long), an integer that fits 32 bits (int), another safe integer (long) or a number (double).
   */
  setProperty(name: string, value: PropertyType): this {
    switch (typeof value) {
      case "boolean":
        return this.setBooleanProperty(name, value);
      case "string":
        return this.setStringProperty(name, value);
      case "bigint":
        return this.setLongProperty(name, value);
      case "number":
        if (Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX) return this.setIntProperty(name, value);
        if (Number.isSafeInteger(value)) return this.setLongProperty(name, value);
        return this.setDoubleProperty(name, value);
      default:
        throw invalidValue(name, value, "a boolean, number, bigint or string");
    }
  }

  /** The property's value (JMS's getObjectProperty): long properties are bigints; null when absent. */
  getProperty(name: string): PropertyType | null {
    if (name === "JMSXDeliveryCount") return this.#delivery?.deliveryCount ?? null;
    return this.#properties.get(name)?.value ?? null;
  }

  /** The property's type ("boolean", "int", "long", "float", "double", "string") or undefined. */
  getPropertyType(name: string): PropertyValue["type"] | undefined {
    return this.#properties.get(name)?.type;
  }

  getStringProperty(name: string): string | null {
    const value = this.getProperty(name);
    return value === null ? null : String(value);
  }

  getBooleanProperty(name: string): boolean {
    const value = this.getProperty(name);
    if (value === null) return false;
    if (typeof value === "boolean") return value;
    if (typeof value === "string") return value.toLowerCase() === "true";
    throw conversion(name, value, "boolean");
  }

  /** An integer property (int or long) as a number; a string is parsed as in JMS. Throws for other types. */
  getIntProperty(name: string): number {
    const value = this.getProperty(name);
    if (typeof value === "number" && Number.isInteger(value) && this.getPropertyType(name) !== "float" && this.getPropertyType(name) !== "double") return value;
    if (typeof value === "bigint" && value >= BigInt(INT32_MIN) && value <= BigInt(INT32_MAX)) return Number(value);
    if (typeof value === "string" && /^[+-]?\d+$/.test(value.trim())) return Number(value);
    throw conversion(name, value, "int");
  }

  getLongProperty(name: string): bigint {
    const value = this.getProperty(name);
    if (typeof value === "bigint") return value;
    if (typeof value === "number" && Number.isInteger(value) && this.getPropertyType(name) !== "float" && this.getPropertyType(name) !== "double") return BigInt(value);
    if (typeof value === "string" && /^[+-]?\d+$/.test(value.trim())) return BigInt(value.trim());
    throw conversion(name, value, "long");
  }

  getDoubleProperty(name: string): number {
    const value = this.getProperty(name);
    if (typeof value === "number" && this.getPropertyType(name) !== "int") return value;
    if (typeof value === "string" && value.trim() !== "" && !Number.isNaN(Number(value))) return Number(value);
    throw conversion(name, value, "double");
  }

  propertyExists(name: string): boolean {
    return this.#properties.has(name) || (name === "JMSXDeliveryCount" && this.#delivery !== undefined);
  }

  getPropertyNames(): string[] {
    return [...this.#properties.keys()];
  }

  clearProperties(): void {
    this.#properties = NO_PROPERTIES as Map<string, PropertyValue>;
  }

  // --- body and acknowledgement ---

  /** The body as a value: text, bytes, a BlazeMessage (map), the object, the stream's values; null for none. */
  getBody(): unknown {
    return null;
  }

  /** Empties the body (headers and properties stay). */
  clearBody(): void {}

  /**
   * Acknowledges the message (CLIENT_ACKNOWLEDGE: with every message its context consumed before it;
   * INDIVIDUAL_ACKNOWLEDGE: this one alone). Resolves once the acknowledgement is recorded — for a queue
   * message, once the replicated queue dropped it. A no-op in the other modes and for sent messages.
   */
  acknowledge(): Promise<void> {
    return this.#delivery?.acknowledge() ?? Promise.resolve();
  }

  /** @internal The body as it travels. */
  wireBody(): WireBody {
    return { kind: "none" };
  }

  /** @internal */
  get properties(): ReadonlyMap<string, PropertyValue> {
    return this.#properties;
  }

  /** @internal The context holding this received message until acknowledged. */
  get deliveryOwner(): object | undefined {
    return this.#delivery?.owner;
  }

  /** @internal Marks a received message with its delivery. */
  delivered(delivery: Delivery): void {
    this.#delivery = delivery;
    this.JMSRedelivered = delivery.redelivered;
    this.JMSExpiration = delivery.expiration;
  }

  #set(name: string, value: PropertyValue): this {
    checkPropertyName(name);
    if (this.#properties === NO_PROPERTIES) this.#properties = new Map();
    this.#properties.set(name, value);
    return this;
  }

  /** @internal Takes received properties as they are (their names were checked). */
  adoptProperties(properties: Map<string, PropertyValue>): void {
    this.#properties = properties;
  }
}

export class TextMessage extends Message {
  constructor(public text: string | null = null) {
    super();
  }

  override getBody(): string | null {
    return this.text;
  }

  override clearBody(): void {
    this.text = null;
  }

  override wireBody(): WireBody {
    return this.text === null ? { kind: "none" } : { kind: "text", value: this.text };
  }
}

export class BytesMessage extends Message {
  constructor(public bytes: Uint8Array | null = null) {
    super();
  }

  override getBody(): Uint8Array | null {
    return this.bytes;
  }

  override clearBody(): void {
    this.bytes = null;
  }

  override wireBody(): WireBody {
    return this.bytes === null ? { kind: "none" } : { kind: "bytes", value: this.bytes };
  }
}

/** A MapMessage: the body is a BlazeMessage (typed values by name). */
export class MapMessage extends Message {
  #map: BlazeMessage | undefined;
  #encoded: Uint8Array | undefined;

  constructor(map?: BlazeMessage | Readonly<Record<string, BlazeValue>>) {
    super();
    if (map !== undefined) this.#map = map instanceof BlazeMessage ? map : new BlazeMessage(map);
  }

  /** @internal A received map body, decoded when first read. */
  static fromEncoded(encoded: Uint8Array): MapMessage {
    const message = new MapMessage();
    message.#encoded = encoded;
    return message;
  }

  get map(): BlazeMessage {
    if (this.#map === undefined) {
      this.#map = this.#encoded === undefined ? new BlazeMessage() : BlazeMessage.fromBinary(this.#encoded);
      this.#encoded = undefined;
    }
    return this.#map;
  }

  set map(map: BlazeMessage) {
    this.#map = map;
    this.#encoded = undefined;
  }

  override getBody(): BlazeMessage {
    return this.map;
  }

  override clearBody(): void {
    this.#map = new BlazeMessage();
    this.#encoded = undefined;
  }

  override wireBody(): WireBody {
    return { kind: "map", encoded: this.#encoded ?? this.map.toBinary() };
  }
}

/** An ObjectMessage: any JSON value, carried as JSON text (not Java serialisation). */
export class ObjectMessage extends Message {
  #json: string | undefined;
  #object: unknown;

  constructor(object?: unknown) {
    super();
    if (object !== undefined) this.object = object;
  }

  /** @internal */
  static fromJson(json: string): ObjectMessage {
    const message = new ObjectMessage();
    message.#json = json;
    return message;
  }

  get object(): unknown {
    if (this.#json !== undefined && this.#object === undefined) {
      try {
        this.#object = JSON.parse(this.#json) as unknown;
      } catch (error) {
        throw new BlazeError("DECODE_FAILED", "the ObjectMessage body is not JSON", { cause: error });
      }
    }
    return this.#object ?? null;
  }

  set object(value: unknown) {
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch (error) {
      throw new BlazeError("INVALID_ARGUMENT", "an ObjectMessage holds a JSON value", { cause: error });
    }
    if (json === undefined) throw new BlazeError("INVALID_ARGUMENT", `an ObjectMessage holds a JSON value, not ${typeof value}`);
    this.#json = json;
    this.#object = JSON.parse(json) as unknown;
  }

  override getBody(): unknown {
    return this.object;
  }

  override clearBody(): void {
    this.#json = undefined;
    this.#object = undefined;
  }

  override wireBody(): WireBody {
    return this.#json === undefined ? { kind: "none" } : { kind: "json", value: this.#json };
  }
}

/** A StreamMessage: an ordered list of typed values. */
export class StreamMessage extends Message {
  values: BlazeValue[];

  constructor(values: readonly BlazeValue[] = []) {
    super();
    this.values = [...values];
  }

  /** @internal */
  static fromEncoded(encoded: Uint8Array): StreamMessage {
    // A BlazeMessage list holds typed values: the stream is read as one.
    const list = BlazeMessage.fromProto(create(BlazeMessageSchema, { fields: { values: { kind: { case: "listValue", value: decodeStream(encoded) } } } }));
    return new StreamMessage(list.getListValue("values") ?? []);
  }

  override getBody(): BlazeValue[] {
    return this.values;
  }

  override clearBody(): void {
    this.values = [];
  }

  override wireBody(): WireBody {
    const value = new BlazeMessage().setListValue("values", this.values).toProto().fields["values"]!;
    return { kind: "stream", encoded: encodeStream(value.kind.case === "listValue" ? value.kind.value : create(ValueListSchema, {})) };
  }
}

/** The message a body becomes when sent as is (see `JMSProducer.send`). */
export function messageOf(body: unknown): Message {
  if (body instanceof Message) return body;
  if (typeof body === "string") return new TextMessage(body);
  if (body instanceof Uint8Array) return new BytesMessage(body);
  if (body instanceof BlazeMessage) return new MapMessage(body);
  if (isMapRecord(body)) return new MapMessage(body as Record<string, BlazeValue>);
  return new ObjectMessage(body);
}

/** A plain object whose values a MapMessage holds (no nested plain objects, no null). */
function isMapRecord(value: unknown): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  if (Object.getPrototypeOf(value) !== Object.prototype) return false;
  return Object.values(value as Record<string, unknown>).every(isBlazeValue);
}

function isBlazeValue(value: unknown): boolean {
  switch (typeof value) {
    case "boolean":
    case "number":
    case "bigint":
    case "string":
      return true;
    case "object":
      if (value instanceof Uint8Array || value instanceof BlazeMessage) return true;
      return Array.isArray(value) && value.every(isBlazeValue);
    default:
      return false;
  }
}

/** The wire form of `message` with the headers `send` set. */
export function toWireMessage(message: Message, timeToLiveMs: number, deliveryDelayMs: number): WireMessage {
  const headers: WireHeaders = {
    destination: message.JMSDestination!.wire,
    messageId: message.wireMessageId,
    timestampMs: message.JMSTimestamp,
    correlationId: message.JMSCorrelationID ?? "",
    replyTo: message.JMSReplyTo === null ? undefined : message.JMSReplyTo.wire,
    type: message.JMSType ?? "",
    deliveryMode: WireDeliveryMode.NON_PERSISTENT,
    priority: message.JMSPriority,
    timeToLiveMs,
    deliveryDelayMs,
    // Read while encoding, never kept: no copy.
    properties: message.properties as Map<string, PropertyValue>,
  };
  return { headers, body: message.wireBody() };
}

/** A received message as its class, with its headers; undefined when its body cannot be read. */
export function fromWireMessage(wire: WireMessage): Message | undefined {
  let message: Message;
  const body = wire.body;
  try {
    switch (body.kind) {
      case "none":
        message = new Message();
        break;
      case "text":
        message = new TextMessage(body.value);
        break;
      case "bytes":
        message = new BytesMessage(body.value);
        break;
      case "map":
        message = MapMessage.fromEncoded(body.encoded);
        break;
      case "json":
        message = ObjectMessage.fromJson(body.value);
        break;
      case "stream":
        message = StreamMessage.fromEncoded(body.encoded);
        break;
    }
  } catch {
    return undefined;
  }
  const h = wire.headers;
  message.JMSDestination = fromWire(h.destination) ?? null;
  message.wireMessageId = h.messageId;
  message.JMSTimestamp = h.timestampMs;
  message.JMSCorrelationID = h.correlationId === "" ? null : h.correlationId;
  message.JMSReplyTo = fromWire(h.replyTo) ?? null;
  message.JMSType = h.type === "" ? null : h.type;
  message.JMSDeliveryMode = h.deliveryMode === WireDeliveryMode.PERSISTENT ? "PERSISTENT" : "NON_PERSISTENT";
  message.JMSPriority = h.priority;
  if (h.properties.size > 0) {
    // A name no JMS property may have (another port's mistake) is not delivered as a property.
    for (const name of h.properties.keys()) if (!validPropertyName(name)) h.properties.delete(name);
    message.adoptProperties(h.properties);
  }
  return message;
}

/** How a selector reads a message on the wire (headers by their JMS names, then properties). */
export function wireLookup(headers: WireHeaders, deliveryCount: number): SelectorLookup {
  return (name: string): SelectorValue => {
    switch (name) {
      case "JMSDeliveryMode":
        return headers.deliveryMode === WireDeliveryMode.PERSISTENT ? "PERSISTENT" : "NON_PERSISTENT";
      case "JMSPriority":
        return BigInt(headers.priority);
      case "JMSMessageID":
        return headers.messageId === MessageId.NONE ? null : headers.messageId.text;
      case "JMSTimestamp":
        return BigInt(headers.timestampMs);
      case "JMSCorrelationID":
        return headers.correlationId === "" ? null : headers.correlationId;
      case "JMSType":
        return headers.type === "" ? null : headers.type;
      case "JMSXDeliveryCount":
        return BigInt(deliveryCount);
      default: {
        const property = headers.properties.get(name);
        if (property === undefined) return null;
        return property.type === "int" ? BigInt(property.value) : property.value;
      }
    }
  };
}

function validPropertyName(name: string): boolean {
  try {
    checkPropertyName(name);
    return true;
  } catch {
    return false;
  }
}

export function checkPropertyName(name: string): void {
  if (typeof name !== "string" || name.length === 0) throw new BlazeError("INVALID_ARGUMENT", "a property name is a non-empty string", { path: ["name"] });
  if (RESERVED.has(name.toUpperCase())) throw new BlazeError("INVALID_ARGUMENT", `"${name}" is a selector keyword, not a property name`, { path: ["name"] });
  if (name.startsWith("JMS") && !name.startsWith("JMSX") && !name.startsWith("JMS_")) {
    throw new BlazeError("INVALID_ARGUMENT", `"${name}" is a JMS header name: properties may start with JMSX or JMS_ only`, { path: ["name"] });
  }
}

function invalidValue(name: string, value: unknown, what: string): BlazeError {
  return new BlazeError("INVALID_ARGUMENT", `property "${name}" must be ${what}, not ${typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? String(value)}`, { path: [name] });
}

function conversion(name: string, value: unknown, to: string): BlazeError {
  return new BlazeError("INVALID_ARGUMENT", `property "${name}" (${value === null ? "absent" : typeof value}) cannot be read as ${to}`, { path: [name] });
}
