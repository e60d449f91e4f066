import { DeliveryMode as WireDeliveryMode } from "../../gen/activeblaze/v1/messaging_pb.ts";
import { Emitter } from "../channel/events.ts";
import { BlazeError } from "../errors.ts";
import type { TimerHandle } from "../transport/clock.ts";
import type { AbortSignalLike } from "../web.ts";
import type { ConnectionFactory } from "./connection-factory.ts";
import { type ConsumerHost, type Incoming, JMSConsumer, type MessageListener } from "./consumer.ts";
import { type Destination, Queue, TemporaryQueue, TemporaryTopic, Topic } from "./destination.ts";
import {
  BytesMessage,
  type Delivery,
  fromWireMessage,
  MapMessage,
  Message,
  messageOf,
  ObjectMessage,
  StreamMessage,
  TextMessage,
  toWireMessage,
} from "./message.ts";
import { type ConsumerOptions, resolveConsumerOptions, type ResolvedContextOptions, type SessionMode } from "./options.ts";
import { DEFAULT_SETTINGS, JMSProducer, type ProducerSettings } from "./producer.ts";
import { parseSelector, type Selector } from "./selector.ts";
import { MessageId, MessageIdPrefix, type PropertyValue, type WireBody, type WireHeaders, type WireMessage } from "./wire.ts";
import type { BlazeMessage, BlazeValue } from "../message/blaze-message.ts";

/** Events of a context: `error` is JMS's exception listener. */
export interface ContextEvents {
  error: { readonly error: BlazeError };
}

export interface RequestOptions {
  /** Default: the factory's `requestTimeoutMs`. Rejects with `TIMEOUT` after it. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignalLike;
}

/** A message the application has, not yet acknowledged (or committed); its delivery as the message sees it. */
class Consumed implements Delivery {
  constructor(
    readonly owner: JMSContext,
    readonly consumer: JMSConsumer,
    readonly incoming: Incoming,
    readonly message: Message,
    readonly expiration: number,
  ) {}

  get redelivered(): boolean {
    return this.incoming.deliveryCount > 1;
  }

  get deliveryCount(): number {
    return this.incoming.deliveryCount;
  }

  acknowledge(): Promise<void> {
    return this.owner.acknowledgeDelivered(this);
  }
}

/** A send held for the commit. */
interface Held {
  readonly destination: Destination;
  readonly wire: WireMessage;
}

interface PendingRequest {
  readonly resolve: (message: Message) => void;
  readonly reject: (error: BlazeError) => void;
}

/**
 * A JMS 2.0 context: a connection and a session in one (JMSContext). It makes producers and consumers,
 * destinations and messages, acknowledges what its consumers take (by `sessionMode`), and in
 * SESSION_TRANSACTED mode holds its sends and acknowledgements until `commit()`.
 */
export class JMSContext implements AsyncDisposable {
  readonly sessionMode: SessionMode;
  readonly clientId: string | undefined;
  readonly #factory: ConnectionFactory;
  readonly #number: number;
  readonly #autoStart: boolean;
  readonly #events: Emitter<ContextEvents>;
  readonly #consumers = new Set<JMSConsumer>();
  readonly #consumed: Consumed[] = [];
  readonly #held: Held[] = [];
  readonly #listenerQueue: JMSConsumer[] = [];
  readonly #temporary = new Set<string>();
  readonly #requests = new Map<string, PendingRequest>();
  /** What its consumers see of this context; `started` is a field kept by `start`, `stop` and `close`, not a getter (read for every message delivered). */
  readonly #host: { -readonly [K in keyof ConsumerHost]: ConsumerHost[K] };
  #replyQueue: TemporaryQueue | undefined;
  #closed = false;
  #pumping = false;
  #sequence = 0;
  #temporaryCount = 0;

  /** @internal Made by `ConnectionFactory.createContext`. */
  constructor(factory: ConnectionFactory, number: number, options: ResolvedContextOptions) {
    this.#factory = factory;
    this.#number = number;
    this.messageIdPrefix = new MessageIdPrefix(`ID:${factory.memberId}:${number}:`);
    this.sessionMode = options.sessionMode;
    this.clientId = options.clientId;
    this.#autoStart = options.autoStart;
    this.#events = new Emitter<ContextEvents>((error) => factory.report(error));
    this.#host = {
      started: false,
      deliver: (consumer, incoming) => this.#deliver(consumer, incoming),
      processed: (message) => this.#processed(message),
      giveBack: (_consumer, incoming) =>
        factory.replica.release(incoming.map((item) => ({ ref: item.queue!, deliveryCount: item.deliveryCount, delivered: false }))),
      closed: (consumer) => this.#consumerClosed(consumer),
      setTimer: (delayMs, fn) => factory.clock.setTimer(delayMs, fn),
      listenerFailed: (error) => this.#reportError(new BlazeError("LISTENER_ERROR", "a message listener threw", { cause: error })),
      schedule: (consumer) => this.#schedule(consumer),
      deliverNow: (consumer, incoming) => this.#deliverNow(consumer, incoming),
    };
  }

  /** @internal The prefix of this context's message ids (noLocal compares it). */
  readonly messageIdPrefix: MessageIdPrefix;

  get transacted(): boolean {
    return this.sessionMode === "SESSION_TRANSACTED";
  }

  // --- life cycle ---

  /** Starts delivery to consumers (JMS's start). Idempotent. */
  start(): void {
    this.#requireOpen("start()");
    this.#host.started = true;
    for (const consumer of this.#consumers) consumer.drain();
  }

  /** Pauses delivery; sends still go. Idempotent. */
  stop(): void {
    this.#host.started = false;
  }

  /**
   * Closes the context: its consumers close (queue messages they hold go back; those delivered and not
   * acknowledged are redelivered), a transaction in progress is rolled back, waiting requests reject with
   * `CLOSED`, and its temporary destinations are deleted. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#host.started = false;
    for (const consumer of [...this.#consumers]) consumer.close();
    this.#closed = true;
    this.#held.length = 0;
    this.#giveBackConsumed(this.#consumed.splice(0));
    const closed = new BlazeError("CLOSED", "the context closed");
    for (const request of this.#requests.values()) request.reject(closed);
    this.#requests.clear();
    for (const name of this.#temporary) this.#factory.removeTemporary(name);
    this.#temporary.clear();
    this.#factory.contextClosed(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Adds an `error` listener (JMS's ExceptionListener); returns a function that removes it. */
  on<K extends keyof ContextEvents>(type: K, listener: (event: ContextEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  // --- destinations and messages ---

  topic(name: string): Topic {
    return new Topic(name);
  }

  queue(name: string): Queue {
    return new Queue(name);
  }

  /** A queue only this context consumes from, deleted when it closes (JMS's createTemporaryQueue). */
  createTemporaryQueue(): TemporaryQueue {
    this.#requireOpen("createTemporaryQueue()");
    const queue = new TemporaryQueue(`${this.#factory.memberId}/${this.#number}/${++this.#temporaryCount}`);
    this.#temporary.add(queue.name);
    this.#factory.addTemporary(queue.name, this);
    return queue;
  }

  createTemporaryTopic(): TemporaryTopic {
    this.#requireOpen("createTemporaryTopic()");
    const topic = new TemporaryTopic(`${this.#factory.memberId}/${this.#number}/${++this.#temporaryCount}`);
    this.#temporary.add(topic.name);
    this.#factory.addTemporary(topic.name, this);
    return topic;
  }

  createMessage(): Message {
    return new Message();
  }

  createTextMessage(text?: string): TextMessage {
    return new TextMessage(text ?? null);
  }

  createBytesMessage(bytes?: Uint8Array): BytesMessage {
    return new BytesMessage(bytes ?? null);
  }

  createMapMessage(map?: BlazeMessage | Readonly<Record<string, BlazeValue>>): MapMessage {
    return new MapMessage(map);
  }

  createObjectMessage(object?: unknown): ObjectMessage {
    return new ObjectMessage(object);
  }

  createStreamMessage(values?: readonly BlazeValue[]): StreamMessage {
    return new StreamMessage(values);
  }

  // --- producers and consumers ---

  createProducer(): JMSProducer {
    this.#requireOpen("createProducer()");
    return new JMSProducer({
      send: (destination, message, settings) => this.#send(destination, message, settings),
      sendBody: (destination, body, settings) => this.#sendBody(destination, body, settings),
    });
  }

  /**
   * A consumer of `destination`: a topic (a wildcard one too), a queue, or one of this context's
   * temporary destinations. `selector` filters (evaluated at the receiver for topics, at the dispatcher
   * for queues); `noLocal` skips messages this context published.
   */
  createConsumer(destination: Destination, options?: ConsumerOptions): JMSConsumer {
    this.#requireOpen("createConsumer()");
    const resolved = resolveConsumerOptions(options);
    const selector = compile(resolved.selector);
    if ((destination instanceof TemporaryQueue || destination instanceof TemporaryTopic) && !this.#temporary.has(destination.name)) {
      throw new BlazeError("INVALID_ARGUMENT", `${destination} belongs to another context: only the context that made a temporary destination consumes from it`);
    }
    const consumer = this.#newConsumer(destination, selector, resolved.noLocal, resolved.prefetch ?? this.#factory.options.prefetch, undefined);
    this.#factory.addConsumer(consumer, this);
    if (this.#autoStart) this.start();
    return consumer;
  }

  /**
   * A consumer of a shared subscription (JMS 2.0 createSharedConsumer): the consumers anywhere in the
   * cluster sharing `name` split the topic's messages, each message to one of them (chosen by its
   * id among the subscribers whose selector takes it).
   */
  createSharedConsumer(topic: Topic, name: string, options?: Omit<ConsumerOptions, "noLocal" | "prefetch">): JMSConsumer {
    this.#requireOpen("createSharedConsumer()");
    if (!(topic instanceof Topic)) throw new BlazeError("INVALID_ARGUMENT", "a shared subscription is on a topic");
    if (typeof name !== "string" || name.length === 0 || name.length > 255) throw new BlazeError("INVALID_ARGUMENT", "a shared subscription's name is a non-empty string", { path: ["name"] });
    const resolved = resolveConsumerOptions(options);
    const consumer = this.#newConsumer(topic, compile(resolved.selector), false, this.#factory.options.prefetch, name);
    this.#factory.addConsumer(consumer, this);
    if (this.#autoStart) this.start();
    return consumer;
  }

  /**
   * Request/reply: sends `body` to `destination` with JMSReplyTo this context's temporary queue and a
   * fresh JMSCorrelationID, and resolves with the reply — a message whose JMSCorrelationID is the
   * request's correlation id or message id. Rejects with `TIMEOUT` (never a silent null) or `ABORTED`.
   */
  async request(destination: Destination, body: unknown, options: RequestOptions = {}): Promise<Message> {
    this.#requireOpen("request()");
    if (this.transacted) throw new BlazeError("ILLEGAL_STATE", "request() in a transacted context would wait for its own commit");
    const message = messageOf(body);
    const correlationId = message.JMSCorrelationID ?? `${this.messageIdPrefix.text}request:${++this.#sequence}`;
    message.JMSCorrelationID = correlationId;
    message.JMSReplyTo = (this.#replyQueue ??= this.createTemporaryQueue());
    const timeoutMs = options.timeoutMs ?? this.#factory.options.requestTimeoutMs;
    const { signal } = options;
    if (signal?.aborted) throw new BlazeError("ABORTED", "the request was aborted", { cause: signal.reason });
    let timer: TimerHandle | undefined;
    let messageId: string | undefined;
    const reply = new Promise<Message>((resolve, reject) => {
      const finish = () => {
        timer?.cancel();
        signal?.removeEventListener("abort", onAbort);
        this.#requests.delete(correlationId);
        if (messageId !== undefined) this.#requests.delete(messageId);
      };
      const pending: PendingRequest = {
        resolve: (m) => {
          finish();
          resolve(m);
        },
        reject: (error) => {
          finish();
          reject(error);
        },
      };
      const onAbort = () => pending.reject(new BlazeError("ABORTED", "the request was aborted", { cause: signal?.reason }));
      timer = this.#factory.clock.setTimer(timeoutMs, () => pending.reject(new BlazeError("TIMEOUT", `no reply from ${destination} within ${timeoutMs} ms`)));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#requests.set(correlationId, pending);
    });
    try {
      await this.#send(destination, message, DEFAULT_SETTINGS);
    } catch (error) {
      this.#requests.get(correlationId)?.reject(error instanceof BlazeError ? error : new BlazeError("SEND_FAILED", String(error), { cause: error }));
      return reply;
    }
    messageId = message.JMSMessageID ?? undefined;
    const pending = this.#requests.get(correlationId);
    if (messageId !== undefined && pending !== undefined) this.#requests.set(messageId, pending);
    return reply;
  }

  // --- acknowledgement and transactions ---

  /** CLIENT_ACKNOWLEDGE: acknowledges every message this context consumed (JMSContext.acknowledge). */
  acknowledge(): Promise<void> {
    this.#requireOpen("acknowledge()");
    if (this.sessionMode !== "CLIENT_ACKNOWLEDGE" && this.sessionMode !== "INDIVIDUAL_ACKNOWLEDGE") return Promise.resolve();
    return this.#acknowledge(this.#consumed.splice(0));
  }

  /**
   * Redelivers every message consumed and not acknowledged (JMS's recover), with JMSRedelivered set.
   * Queue messages go back to their queue (and may reach another consumer). Not in a transacted context.
   */
  recover(): void {
    this.#requireOpen("recover()");
    if (this.transacted) throw new BlazeError("ILLEGAL_STATE", "recover() in a transacted context: use rollback()");
    this.#giveBackConsumed(this.#consumed.splice(0));
  }

  /**
   * Commits the transaction: its queue sends and queue acknowledgements as one write of the replicated
   * map (all or nothing, even if this member dies during the commit), then its topic sends as one
   * message every subscriber delivers whole, and its sends to temporary queues. Rejects with
   * `TRANSACTION_ROLLED_BACK` when a message it consumed went to another consumer meanwhile (its
   * consumer was taken for dead): nothing took effect, and what it consumed is redelivered.
   */
  async commit(): Promise<void> {
    this.#requireOpen("commit()");
    if (!this.transacted) throw new BlazeError("ILLEGAL_STATE", "commit() on a context that is not transacted");
    const held = this.#held.splice(0);
    const consumed = this.#consumed.splice(0);
    const queueSends = held.filter((h) => h.destination instanceof Queue).map((h) => h.wire);
    const acks = consumed.flatMap((c) => (c.incoming.queue === undefined ? [] : [c.incoming.queue]));
    if (queueSends.length > 0 || acks.length > 0) {
      try {
        await this.#factory.replica.commit(queueSends, acks);
      } catch (error) {
        this.#giveBackConsumed(consumed);
        throw error;
      }
    }
    const topicSends = held.filter((h) => h.destination.isTopic).map((h) => h.wire);
    const temporarySends = held.filter((h) => h.destination instanceof TemporaryQueue).map((h) => h.wire);
    await Promise.all([this.#factory.publish(topicSends), this.#factory.sendToTemporaryQueues(temporarySends)]);
  }

  /** Rolls the transaction back: its sends are dropped and what it consumed is redelivered. */
  async rollback(): Promise<void> {
    this.#requireOpen("rollback()");
    if (!this.transacted) throw new BlazeError("ILLEGAL_STATE", "rollback() on a context that is not transacted");
    this.#held.length = 0;
    this.#giveBackConsumed(this.#consumed.splice(0));
  }

  // --- internals ---

  /** @internal A reply to one of this context's requests (on its reply queue). */
  reply(wire: WireMessage): boolean {
    const correlationId = wire.headers.correlationId;
    const pending = this.#requests.get(correlationId);
    if (pending === undefined) return false;
    const message = fromWireMessage(wire);
    if (message === undefined) return false;
    pending.resolve(message);
    return true;
  }

  /**
   * @internal Takes `message`, consumed (and not acknowledged) in another context of the factory, into
   * this transacted context: its acknowledgement then commits, or is rolled back, with this context's.
   */
  adopt(message: Message): void {
    if (!this.transacted) throw new BlazeError("ILLEGAL_STATE", "only a transacted context adopts messages");
    const owner = message.deliveryOwner;
    if (!(owner instanceof JMSContext)) throw new BlazeError("ILLEGAL_STATE", "not a message delivered here");
    const at = owner.#consumed.findIndex((c) => c.message === message);
    if (at < 0) throw new BlazeError("ILLEGAL_STATE", "the message was acknowledged already");
    this.#consumed.push(owner.#consumed.splice(at, 1)[0]!);
  }

  /** @internal Redelivers consumed messages of this context now (a STOMP NACK), as `recover` would. */
  redeliver(messages: readonly Message[]): void {
    const records = this.#consumed.filter((c) => messages.includes(c.message));
    for (const record of records) this.#consumed.splice(this.#consumed.indexOf(record), 1);
    this.#giveBackConsumed(records);
  }

  /** @internal */
  get replyQueueName(): string | undefined {
    return this.#replyQueue?.name;
  }

  /** @internal Reports a background failure to the `error` listeners (or the factory's report). */
  reportError(error: BlazeError): void {
    this.#reportError(error);
  }

  #newConsumer(destination: Destination, selector: Selector | undefined, noLocal: boolean, prefetch: number, subscription: string | undefined): JMSConsumer {
    const consumer = new JMSConsumer(
      this.#host,
      this.#factory.nextConsumerId(),
      destination,
      selector,
      noLocal,
      prefetch,
      subscription,
      this.#factory.options.maxBufferedMessages,
      () => this.#factory.counters.slowConsumerDropped++,
    );
    this.#consumers.add(consumer);
    return consumer;
  }

  #consumerClosed(consumer: JMSConsumer): void {
    this.#consumers.delete(consumer);
    this.#factory.removeConsumer(consumer);
  }

  /** Sends `message` (or holds it for the commit), filling the headers `send` owns; throws what is wrong with the call at once. */
  #send(destination: Destination, message: Message, settings: ProducerSettings): Promise<void> {
    this.#checkSend(destination);
    const now = Date.now();
    message.JMSDestination = destination;
    message.JMSDeliveryMode = "NON_PERSISTENT";
    message.JMSPriority = settings.priority;
    message.wireMessageId = MessageId.sent(this.messageIdPrefix, ++this.#sequence);
    message.JMSTimestamp = now;
    message.JMSExpiration = settings.timeToLiveMs > 0 ? now + settings.timeToLiveMs : 0;
    message.JMSDeliveryTime = now + settings.deliveryDelayMs;
    return this.#dispatch(destination, toWireMessage(message, settings.timeToLiveMs, settings.deliveryDelayMs));
  }

  /** `#send` for a body sent as it is: the headers go straight to its wire form (what `toWireMessage` makes of a message). */
  #sendBody(destination: Destination, body: WireBody, settings: ProducerSettings): Promise<void> {
    this.#checkSend(destination);
    const headers: WireHeaders = {
      destination: destination.wire,
      messageId: MessageId.sent(this.messageIdPrefix, ++this.#sequence),
      // Read for every send, not once for the sends of a turn: a loop of sends, or work between them, can
      // run for milliseconds, and JMSTimestamp is when this message was handed over. The read is some
      // 150 to 200 instructions of a send's 15,000 (callgrind).
      timestampMs: Date.now(),
      correlationId: settings.correlationId ?? "",
      replyTo: settings.replyTo === null ? undefined : settings.replyTo.wire,
      type: settings.type ?? "",
      deliveryMode: WireDeliveryMode.NON_PERSISTENT,
      priority: settings.priority,
      timeToLiveMs: settings.timeToLiveMs,
      deliveryDelayMs: settings.deliveryDelayMs,
      // A copy: a subscriber of this member takes the map as its message's own.
      properties: settings.properties.size === 0 ? (settings.properties as Map<string, PropertyValue>) : new Map(settings.properties),
    };
    return this.#dispatch(destination, { headers, body });
  }

  /** Throws what is wrong with a send to `destination`. */
  #checkSend(destination: Destination): void {
    this.#requireOpen("send()");
    const kind = destination.kind;
    if (kind === "topic") {
      if ((destination as Topic).isWildcard) throw new BlazeError("INVALID_ARGUMENT", `cannot send to the wildcard topic "${destination.name}"`);
    } else if (kind !== "queue" && destination.name.startsWith(`${this.#factory.memberId}/`) && !this.#factory.hasTemporary(destination.name)) {
      throw new BlazeError("INVALID_ARGUMENT", `${destination} was deleted (its context closed)`);
    }
  }

  /** Sends a message's wire form to `destination`, or holds it for the commit. */
  #dispatch(destination: Destination, wire: WireMessage): Promise<void> {
    if (this.transacted) {
      this.#held.push({ destination, wire });
      return RESOLVED;
    }
    const kind = destination.kind;
    if (kind === "queue") return this.#factory.replica.enqueue([wire]);
    if (kind === "temporary-queue") return this.#factory.sendToTemporaryQueues([wire]);
    return this.#factory.publish([wire]);
  }

  #deliver(consumer: JMSConsumer, incoming: Incoming): Message | undefined {
    const expires = incoming.expiresAt !== Number.POSITIVE_INFINITY;
    const now = expires ? this.#factory.clock.now() : 0;
    if (expires && now >= incoming.expiresAt) {
      this.#factory.counters.expired++;
      // An expired queue message leaves its queue (never delivered, counted).
      if (incoming.queue !== undefined) this.#factory.replica.acknowledge([incoming.queue]).catch(() => undefined);
      return undefined;
    }
    const message = fromWireMessage(incoming.wire);
    if (message === undefined) {
      this.#factory.counters.malformed++;
      if (incoming.queue !== undefined) this.#factory.replica.acknowledge([incoming.queue]).catch(() => undefined);
      return undefined;
    }
    const record = new Consumed(this, consumer, incoming, message, expires ? Date.now() + (incoming.expiresAt - now) : 0);
    message.delivered(record);
    this.#consumed.push(record);
    this.#factory.counters.delivered++;
    return message;
  }

  #processed(message: Message): void {
    if (this.sessionMode !== "AUTO_ACKNOWLEDGE" && this.sessionMode !== "DUPS_OK_ACKNOWLEDGE") return;
    // Usually the last one delivered: searched from the end.
    let at = this.#consumed.length - 1;
    while (at >= 0 && this.#consumed[at]!.message !== message) at--;
    if (at < 0) return;
    const record = at === this.#consumed.length - 1 ? this.#consumed.pop()! : this.#consumed.splice(at, 1)[0]!;
    // Only queue messages are acknowledged anywhere; the others are done with here.
    if (record.incoming.queue === undefined) return;
    this.#acknowledge([record]).catch((error: unknown) => {
      // Closing while an acknowledgement is on its way: the message is redelivered, nothing to report.
      if (error instanceof BlazeError && error.code === "CLOSED") return;
      this.#reportError(error instanceof BlazeError ? error : new BlazeError("INTERNAL_ERROR", String(error), { cause: error }));
    });
  }

  /** @internal `message.acknowledge()`, by the session mode. */
  acknowledgeDelivered(record: Consumed): Promise<void> {
    if (this.#closed) return Promise.reject(new BlazeError("CLOSED", "acknowledge() after the context closed"));
    if (this.sessionMode === "CLIENT_ACKNOWLEDGE") return this.#acknowledge(this.#consumed.splice(0));
    if (this.sessionMode !== "INDIVIDUAL_ACKNOWLEDGE") return Promise.resolve();
    const at = this.#consumed.indexOf(record);
    if (at < 0) return Promise.resolve();
    this.#consumed.splice(at, 1);
    return this.#acknowledge([record]);
  }

  #acknowledge(records: readonly Consumed[]): Promise<void> {
    const refs = records.flatMap((r) => (r.incoming.queue === undefined ? [] : [r.incoming.queue]));
    return this.#factory.replica.acknowledge(refs);
  }

  /** Redelivers: queue messages go back to their queue, the others to their consumer, first in line. */
  #giveBackConsumed(records: readonly Consumed[]): void {
    const queued = records.filter((r) => r.incoming.queue !== undefined);
    this.#factory.replica.release(queued.map((r) => ({ ref: r.incoming.queue!, deliveryCount: r.incoming.deliveryCount, delivered: true })));
    const limit = this.#factory.options.maxRedeliveries;
    for (const record of [...records].reverse()) {
      if (record.incoming.queue !== undefined || record.consumer.closed) continue;
      // Topic messages have no dead-letter queue: past the limit they are dropped, counted.
      if (limit >= 0 && record.incoming.deliveryCount > limit) {
        this.#factory.counters.redeliveriesExhausted++;
        continue;
      }
      record.incoming.deliveryCount++;
      record.consumer.push(record.incoming, true);
    }
  }

  #schedule(consumer: JMSConsumer): void {
    if (!this.#listenerQueue.includes(consumer)) this.#listenerQueue.push(consumer);
    if (!this.#pumping) this.#pump();
  }

  /**
   * Delivers to listeners one message at a time across the context. A listener that returns no promise
   * is not waited for (no turn of the event loop per message); one that does holds the next delivery
   * back until its promise settles.
   */
  #pump(): void {
    this.#pumping = true;
    let waiting = false;
    try {
      while (this.#listenerQueue.length > 0 && this.#host.started) {
        const consumer = this.#listenerQueue.shift()!;
        const listener = consumer.listener;
        const message = consumer.nextForListener();
        if (listener === undefined || message === undefined) continue;
        if (this.#call(consumer, listener, message)) {
          waiting = true;
          return;
        }
      }
    } finally {
      if (!waiting) this.#pumping = false;
    }
  }

  /**
   * `#pump` for a message of a consumer with nothing pending, when nothing else of this context is being
   * delivered or waits to be: it would be the next one `#pump` delivers, and goes to the listener without
   * a lane or a turn in the listener queue. False when this context is not so idle.
   */
  #deliverNow(consumer: JMSConsumer, incoming: Incoming): boolean {
    const listener = consumer.listener;
    if (!this.#host.started || this.#pumping || this.#listenerQueue.length > 0 || listener === undefined) return false;
    const message = this.#deliver(consumer, incoming);
    // Expired or unreadable: dropped, as `#take` drops it.
    if (message === undefined) return true;
    this.#pumping = true;
    let waiting = false;
    try {
      waiting = this.#call(consumer, listener, message);
    } finally {
      if (!waiting) this.#pumping = false;
    }
    // What the listener made due meanwhile (a message given back by `recover`, say).
    if (!waiting && this.#listenerQueue.length > 0) this.#pump();
    return true;
  }

  /** Calls `listener` with `message`; true when it returned a promise, which holds the next delivery back until it settles. */
  #call(consumer: JMSConsumer, listener: MessageListener, message: Message): boolean {
    let result: void | Promise<void>;
    try {
      result = listener(message);
    } catch (error) {
      this.#listened(consumer, message, error, true);
      return false;
    }
    if (result instanceof Promise) {
      result.then(
        () => this.#resume(consumer, message, undefined, false),
        (error: unknown) => this.#resume(consumer, message, error, true),
      );
      return true;
    }
    this.#listened(consumer, message, undefined, false);
    return false;
  }

  #resume(consumer: JMSConsumer, message: Message, error: unknown, failed: boolean): void {
    try {
      this.#listened(consumer, message, error, failed);
    } finally {
      this.#pump();
    }
  }

  /** After a listener returned (or threw, `failed`): the message is done with, or given back. */
  #listened(consumer: JMSConsumer, message: Message, error: unknown, failed: boolean): void {
    if (failed) this.#reportError(new BlazeError("LISTENER_ERROR", `a message listener on ${consumer.destination} threw`, { cause: error }));
    if (failed && (this.sessionMode === "AUTO_ACKNOWLEDGE" || this.sessionMode === "DUPS_OK_ACKNOWLEDGE")) {
      // JMS: a listener that throws in an auto-acknowledging context gets the message again.
      const at = this.#consumed.findIndex((c) => c.message === message);
      if (at >= 0) this.#giveBackConsumed(this.#consumed.splice(at, 1));
    } else this.#processed(message);
    if (consumer.pending > 0) this.#listenerQueue.push(consumer);
  }

  #reportError(error: BlazeError): void {
    if (!this.#events.emit("error", { error })) this.#factory.report(error);
  }

  #requireOpen(what: string): void {
    if (this.#closed) throw new BlazeError("CLOSED", `${what} on a closed context`);
    this.#factory.requireOpen(what);
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

function compile(selector: string | undefined): Selector | undefined {
  return selector === undefined || selector.trim() === "" ? undefined : parseSelector(selector);
}
