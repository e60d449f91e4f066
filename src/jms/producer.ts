import { BlazeError } from "../errors.ts";
import type { Destination } from "./destination.ts";
import { type DeliveryMode, type Message, messageOf, type PropertyType } from "./message.ts";

/** What a producer needs of its context. */
export interface ProducerHost {
  send(destination: Destination, message: Message, settings: ProducerSettings): Promise<void>;
}

export interface ProducerSettings {
  readonly priority: number;
  readonly timeToLiveMs: number;
  readonly deliveryDelayMs: number;
}

/**
 * A JMS 2.0 producer: fluent settings, then `send(destination, body | message)`. A string body becomes a
 * TextMessage, a Uint8Array a BytesMessage, a BlazeMessage or a plain record of map values a MapMessage,
 * any other JSON value an ObjectMessage. Properties and headers set here apply to every message it sends.
 *
 * Delivery is NON_PERSISTENT (the default here, unlike JMS): asking for PERSISTENT throws `UNSUPPORTED`
 * at once rather than silently sending without durable retention.
 */
export class JMSProducer {
  /** Replaced (never changed) by the setters: every send passes the same object. */
  #settings: ProducerSettings = { priority: 4, timeToLiveMs: 0, deliveryDelayMs: 0 };
  #correlationId: string | null = null;
  #replyTo: Destination | null = null;
  #type: string | null = null;
  readonly #properties = new Map<string, PropertyType>();

  /** @internal A context makes its producers (`createProducer`). */
  constructor(private readonly host: ProducerHost) {}

  /**
   * Sends to `destination`. Resolves once the message is on its way to a topic or a temporary queue, or
   * once every member holds it for a queue (so it survives this member's crash); in a transacted context
   * once it is held for the commit. Rejects with `QUEUE_FULL`, `TIMEOUT`, `MESSAGE_TOO_LARGE`, `CLOSED`.
   */
  send(destination: Destination, body: unknown): Promise<void> {
    try {
      const message = messageOf(body);
      if (this.#correlationId !== null) message.JMSCorrelationID = this.#correlationId;
      if (this.#replyTo !== null) message.JMSReplyTo = this.#replyTo;
      if (this.#type !== null) message.JMSType = this.#type;
      if (this.#properties.size > 0) for (const [name, value] of this.#properties) message.setProperty(name, value);
      return this.host.send(destination, message, this.#settings);
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
    this.#correlationId = correlationId;
    return this;
  }

  getJMSCorrelationID(): string | null {
    return this.#correlationId;
  }

  setJMSReplyTo(replyTo: Destination | null): this {
    this.#replyTo = replyTo;
    return this;
  }

  getJMSReplyTo(): Destination | null {
    return this.#replyTo;
  }

  setJMSType(type: string | null): this {
    this.#type = type;
    return this;
  }

  getJMSType(): string | null {
    return this.#type;
  }

  /** Sets a property on every message sent (typed as `Message.setProperty` types it). */
  setProperty(name: string, value: PropertyType): this {
    // Checked now, so that a bad name fails here rather than at the next send.
    messageOf("").setProperty(name, value);
    this.#properties.set(name, value);
    return this;
  }

  clearProperties(): this {
    this.#properties.clear();
    return this;
  }

  getPropertyNames(): string[] {
    return [...this.#properties.keys()];
  }
}

function duration(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new BlazeError("INVALID_ARGUMENT", `${name} is a whole number of ms, 0 or more, not ${value}`, { path: [name] });
  return value;
}
