import { BlazeError } from "../errors.ts";
import type { Destination } from "./destination.ts";
import { type DeliveryMode, Message, messageOf, type PropertyType } from "./message.ts";
import { NO_PROPERTIES, type PropertyValue, type WireBody } from "./wire.ts";

/** What a producer needs of its context. */
export interface ProducerHost {
  send(destination: Destination, message: Message, settings: ProducerSettings): Promise<void>;
  /** Sends a body no message object was made for, with the headers and properties of `settings`. */
  sendBody(destination: Destination, body: WireBody, settings: ProducerSettings): Promise<void>;
}

/** What a producer sets on every message it sends, checked when set. */
export interface ProducerSettings {
  readonly priority: number;
  readonly timeToLiveMs: number;
  readonly deliveryDelayMs: number;
  readonly correlationId: string | null;
  readonly replyTo: Destination | null;
  readonly type: string | null;
  /** Typed as `Message.setProperty` types them; never changed (a setter replaces it). */
  readonly properties: ReadonlyMap<string, PropertyValue>;
}

/** The settings of a new producer, and of a request. */
export const DEFAULT_SETTINGS: ProducerSettings = { priority: 4, timeToLiveMs: 0, deliveryDelayMs: 0, correlationId: null, replyTo: null, type: null, properties: NO_PROPERTIES };

/**
 * A JMS 2.0 producer: fluent settings, then `send(destination, body | message)`. A string body becomes a
 * TextMessage, a Uint8Array a BytesMessage, a BlazeMessage or a plain record of map values a MapMessage,
 * any other JSON value an ObjectMessage. Properties and headers set here apply to every message it sends.
 *
 * Delivery is NON_PERSISTENT (the default here, unlike JMS): asking for PERSISTENT throws `UNSUPPORTED`
 * at once rather than silently sending without durable retention.
 */
export class JMSProducer {
  /** Replaced (never changed) by the setters: every send passes the same object, checked once. */
  #settings: ProducerSettings = DEFAULT_SETTINGS;

  /** @internal A context makes its producers (`createProducer`). */
  constructor(private readonly host: ProducerHost) {}

  /**
   * Sends to `destination`. Resolves once the message is on its way to a topic or a temporary queue, or
   * once every member holds it for a queue (so it survives this member's crash); in a transacted context
   * once it is held for the commit. Rejects with `QUEUE_FULL`, `TIMEOUT`, `MESSAGE_TOO_LARGE`, `CLOSED`.
   */
  send(destination: Destination, body: unknown): Promise<void> {
    const settings = this.#settings;
    try {
      // A text or bytes body goes as it is: the message it becomes is never seen, so none is made.
      if (typeof body === "string") return this.host.sendBody(destination, { kind: "text", value: body }, settings);
      if (body instanceof Uint8Array) return this.host.sendBody(destination, { kind: "bytes", value: body }, settings);
      const message = messageOf(body);
      if (settings.correlationId !== null) message.JMSCorrelationID = settings.correlationId;
      if (settings.replyTo !== null) message.JMSReplyTo = settings.replyTo;
      if (settings.type !== null) message.JMSType = settings.type;
      for (const [name, property] of settings.properties) message.setProperty(name, property.value);
      return this.host.send(destination, message, settings);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  setDeliveryMode(mode: DeliveryMode): this {
    if (mode === "PERSISTENT") {
      throw new BlazeError("UNSUPPORTED", "PERSISTENT delivery is not supported yet (no durable retention): messages are NON_PERSISTENT — replicated in memory across the cluster", { path: ["deliveryMode"] });
    }
    if (mode !== "NON_PERSISTENT") throw new BlazeError("INVALID_ARGUMENT", `a delivery mode is NON_PERSISTENT or PERSISTENT, not ${String(mode)}`, { path: ["deliveryMode"] });
    return this;
  }

  getDeliveryMode(): DeliveryMode {
    return "NON_PERSISTENT";
  }

  /** JMSPriority 0–9 (default 4); 7–9 travel out of band on topics (delivered on arrival, ahead of earlier messages). */
  setPriority(priority: number): this {
    if (!Number.isInteger(priority) || priority < 0 || priority > 9) throw new BlazeError("INVALID_ARGUMENT", `a priority is an integer from 0 to 9, not ${priority}`, { path: ["priority"] });
    this.#settings = { ...this.#settings, priority };
    return this;
  }

  getPriority(): number {
    return this.#settings.priority;
  }

  /** Time to live in ms (0 = forever); an expired message is never delivered. */
  setTimeToLive(timeToLiveMs: number): this {
    this.#settings = { ...this.#settings, timeToLiveMs: duration(timeToLiveMs, "timeToLive") };
    return this;
  }

  getTimeToLive(): number {
    return this.#settings.timeToLiveMs;
  }

  /** Delivery delay in ms (JMS 2.0): no consumer gets the message earlier. */
  setDeliveryDelay(deliveryDelayMs: number): this {
    this.#settings = { ...this.#settings, deliveryDelayMs: duration(deliveryDelayMs, "deliveryDelay") };
    return this;
  }

  getDeliveryDelay(): number {
    return this.#settings.deliveryDelayMs;
  }

  setJMSCorrelationID(correlationId: string | null): this {
    this.#settings = { ...this.#settings, correlationId };
    return this;
  }

  getJMSCorrelationID(): string | null {
    return this.#settings.correlationId;
  }

  setJMSReplyTo(replyTo: Destination | null): this {
    this.#settings = { ...this.#settings, replyTo };
    return this;
  }

  getJMSReplyTo(): Destination | null {
    return this.#settings.replyTo;
  }

  setJMSType(type: string | null): this {
    this.#settings = { ...this.#settings, type };
    return this;
  }

  getJMSType(): string | null {
    return this.#settings.type;
  }

  /** Sets a property on every message sent (typed as `Message.setProperty` types it). */
  setProperty(name: string, value: PropertyType): this {
    // Checked and typed now, so that a bad name fails here rather than at the next send.
    const property = new Message().setProperty(name, value).properties.get(name)!;
    const properties = new Map(this.#settings.properties);
    properties.set(name, property);
    this.#settings = { ...this.#settings, properties };
    return this;
  }

  clearProperties(): this {
    this.#settings = { ...this.#settings, properties: NO_PROPERTIES };
    return this;
  }

  getPropertyNames(): string[] {
    return [...this.#settings.properties.keys()];
  }
}

function duration(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new BlazeError("INVALID_ARGUMENT", `${name} is a whole number of ms, 0 or more, not ${value}`, { path: [name] });
  return value;
}
