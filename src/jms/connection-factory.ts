import { DestinationKind } from "../../gen/activeblaze/v1/messaging_pb.ts";
import type { TopicMessage } from "../channel/topic-message.ts";
import { type ClusterChannel, createClusterChannel } from "../cluster/cluster-channel.ts";
import { BlazeError } from "../errors.ts";
import type { GroupMessage } from "../group/group-message.ts";
import { type Clock, systemClock } from "../transport/clock.ts";
import { Emitter } from "../channel/events.ts";
import { ErrorReport, type ErrorStage } from "../channel/error-report.ts";
import type { JMSConsumer } from "./consumer.ts";
import { JMSContext } from "./context.ts";
import { Queue, TemporaryQueue, topicMatches } from "./destination.ts";
import { wireLookup } from "./message.ts";
import { type ConnectionFactoryOptions, type ContextOptions, resolveContextOptions, resolveFactoryOptions, type ResolvedFactoryOptions } from "./options.ts";
import { QueueReplica, type QueueStats } from "./queue-replica.ts";
import { decodeBatch, encodeBatch, type MessageIdPrefix, type WireDestination, type WireMessage } from "./wire.ts";

/** The channel topic every member publishes its topic messages on (one stream per member: FIFO across topics). */
export const MESSAGING_TOPIC = "$jms/topic";
/** The inbox of messages to this member's temporary queues. */
export const TEMPORARY_INBOX = "$jms/temporary";

/** Counters of the messaging layer on this member. */
export interface MessagingStats {
  /** Topic messages sent (a transaction's count one each). */
  published: number;
  /** Messages handed to the application. */
  delivered: number;
  /** Messages that expired before delivery (never delivered). */
  expired: number;
  /** Topic messages a consumer lost for being too slow (`maxBufferedMessages`). */
  slowConsumerDropped: number;
  /** Topic messages dropped after `maxRedeliveries` redeliveries (a listener that kept failing). */
  redeliveriesExhausted: number;
  /** Messages for a temporary destination that no longer exists here. */
  unroutable: number;
  /** Payloads that do not decode (dropped). */
  malformed: number;
  readonly queue: Readonly<QueueStats>;
}

/** Events of a factory: background failures no context's listener took (`stage` as a channel's). */
export interface FactoryEvents {
  error: { readonly error: BlazeError; readonly stage: ErrorStage };
}

/** Something the factory runs beside it (the STOMP gateway), closed with it. */
export interface FactoryAttachment {
  close(): Promise<void>;
}

/**
 * Creates a connection factory: on its own cluster channel (created and joined from `cluster`), or on
 * the cluster channel given as `channel` (joined already). Invalid options throw `INVALID_OPTION`
 * naming the field. (A STOMP gateway on the factory: `createStompGateway` of `activeblaze/stomp`.)
 */
export async function createConnectionFactory(options?: ConnectionFactoryOptions): Promise<ConnectionFactory> {
  const resolved = resolveFactoryOptions(options);
  let channel = resolved.channel;
  const owned = channel === undefined;
  if (channel === undefined) {
    // The factory hands its own topic messages to its own subscribers itself (see publish): no loopback
    // copies — except in total order, where its own messages must come back in the ring's order.
    channel = await createClusterChannel({ loopback: resolved.cluster?.reliability === "totem", ...resolved.cluster });
    try {
      await channel.join();
    } catch (error) {
      await channel.shutDown().catch(() => undefined);
      throw error;
    }
  } else if (channel.state !== "started") {
    throw new BlazeError("ILLEGAL_STATE", `the channel is ${channel.state}: join() it before building a connection factory on it`, { path: ["channel"] });
  }
  const factory = new ConnectionFactory(channel, owned, resolved);
  return factory;
}

/**
 * JMS's ConnectionFactory and the messaging layer of one member: it makes contexts, and routes topic
 * messages, temporary-queue messages and queue deliveries to their consumers.
 */
export class ConnectionFactory implements AsyncDisposable {
  readonly channel: ClusterChannel;
  /** @internal */
  readonly options: ResolvedFactoryOptions;
  /** @internal */
  readonly clock: Clock;
  /** @internal */
  readonly replica: QueueReplica;
  readonly #owned: boolean;
  readonly #contexts = new Set<JMSContext>();
  readonly #topicConsumers = new Map<JMSConsumer, JMSContext>();
  /** Who takes a topic's messages here, by topic name: made on a topic's first message, dropped whenever a topic consumer comes or goes. */
  readonly #topicRoutes = new Map<string, TopicRoute>();
  readonly #temporaryTopicRoutes = new Map<string, TopicRoute>();
  #lastRoutes: Map<string, TopicRoute> | undefined;
  #lastRouteName = "";
  #lastRoute: TopicRoute = NO_ROUTE;
  readonly #temporary = new Map<string, JMSContext>();
  readonly #temporaryConsumers = new Map<string, JMSConsumer[]>();
  readonly #attachments: FactoryAttachment[] = [];
  /** @internal */
  readonly counters: { -readonly [K in Exclude<keyof MessagingStats, "queue">]: number } = { published: 0, delivered: 0, expired: 0, slowConsumerDropped: 0, redeliveriesExhausted: 0, unroutable: 0, malformed: 0 };
  readonly #events: Emitter<FactoryEvents>;
  readonly #errors: ErrorReport;
  readonly #offTopic: () => void;
  readonly #offInbox: () => void;
  readonly #local: Array<readonly WireMessage[]> = [];
  /** The channel orders every message (Totem): its own come back through the ring. */
  readonly #totalOrder: boolean;
  #nextContext = 0;
  #nextConsumer = 0;
  #closed = false;

  /** @internal Use `createConnectionFactory`. */
  constructor(channel: ClusterChannel, owned: boolean, options: ResolvedFactoryOptions) {
    this.channel = channel;
    this.#owned = owned;
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.#totalOrder = channel.stats.reliability === "totem";
    this.#events = new Emitter<FactoryEvents>(() => undefined);
    this.#errors = new ErrorReport((error, stage) => this.#events.emit("error", { error, stage }), () => this.clock.now(), () => `jms ${channel.name || channel.id.slice(0, 8)}`, undefined);
    this.replica = new QueueReplica(channel, this.clock, options, (error) => this.report(error));
    this.#offTopic = channel.onTopic(MESSAGING_TOPIC, (message) => this.#routeTopic(message));
    this.#offInbox = channel.onInbox(TEMPORARY_INBOX, (message) => this.#routeTemporary(message));
    this.replica.start();
  }

  /** This member's id (hex), which leads its message ids and temporary destination names. */
  get memberId(): string {
    return this.channel.id;
  }

  /** Counters of the messaging layer here. */
  get stats(): MessagingStats {
    return { ...this.counters, queue: { ...this.replica.stats } };
  }

  /** Adds a listener of background failures no context's `error` listener took; returns a function that removes it. */
  on<K extends keyof FactoryEvents>(type: K, listener: (event: FactoryEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  /** Messages queue `name` holds now (pending and unacknowledged), as this member's replica knows it. */
  queueDepth(name: string): number {
    return this.replica.depth(name);
  }

  /** A context (JMS's createContext): a connection and session in one. */
  createContext(options?: ContextOptions): JMSContext {
    this.requireOpen("createContext()");
    const context = new JMSContext(this, ++this.#nextContext, resolveContextOptions(options));
    this.#contexts.add(context);
    return context;
  }

  /**
   * Closes every context, the gateway, and — when the factory made it — the channel (its member leaves
   * the group). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    for (const attachment of this.#attachments.splice(0)) await attachment.close().catch(() => undefined);
    for (const context of [...this.#contexts]) await context.close();
    this.#closed = true;
    this.replica.close();
    this.#offTopic();
    this.#offInbox();
    if (this.#owned) {
      await this.channel.leave().catch(() => undefined);
      await this.channel.shutDown();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- internals, for contexts and the gateway ---

  /** @internal */
  attach(attachment: FactoryAttachment): void {
    this.#attachments.push(attachment);
  }

  /** @internal */
  requireOpen(what: string): void {
    if (this.#closed) throw new BlazeError("CLOSED", `${what} on a closed connection factory`);
  }

  /** @internal */
  nextConsumerId(): string {
    return `${this.memberId}/${++this.#nextConsumer}`;
  }

  /** @internal */
  contextClosed(context: JMSContext): void {
    this.#contexts.delete(context);
  }

  /** @internal A background failure no context took: to the factory's `error` listeners, else the console (rate-limited). */
  report(error: BlazeError, stage: ErrorStage = "listener"): void {
    this.#errors.report(error, stage);
  }

  /** @internal */
  addConsumer(consumer: JMSConsumer, context: JMSContext): void {
    const destination = consumer.destination;
    if (destination instanceof Queue || consumer.subscription !== undefined) this.replica.register(consumer);
    if (destination instanceof TemporaryQueue) {
      const list = this.#temporaryConsumers.get(destination.name) ?? [];
      list.push(consumer);
      this.#temporaryConsumers.set(destination.name, list);
    } else if (destination.isTopic) {
      this.#topicConsumers.set(consumer, context);
      this.#forgetRoutes();
    }
  }

  /** @internal */
  removeConsumer(consumer: JMSConsumer): void {
    if (this.#topicConsumers.delete(consumer)) this.#forgetRoutes();
    const destination = consumer.destination;
    if (destination instanceof Queue || consumer.subscription !== undefined) this.replica.unregister(consumer);
    if (destination instanceof TemporaryQueue) {
      const list = this.#temporaryConsumers.get(destination.name)?.filter((c) => c !== consumer) ?? [];
      if (list.length === 0) this.#temporaryConsumers.delete(destination.name);
      else this.#temporaryConsumers.set(destination.name, list);
    }
  }

  /** @internal */
  addTemporary(name: string, context: JMSContext): void {
    this.#temporary.set(name, context);
  }

  /** @internal */
  removeTemporary(name: string): void {
    this.#temporary.delete(name);
    this.#temporaryConsumers.delete(name);
  }

  /** @internal */
  hasTemporary(name: string): boolean {
    return this.#temporary.has(name);
  }

  /**
   * @internal Publishes topic messages as one channel message: every member delivers all of them or
   * none. Messages with a delivery delay wait here first; priority 7–9 alone go out of band.
   */
  publish(messages: readonly WireMessage[]): Promise<void> {
    if (messages.length === 0) return RESOLVED;
    const single = messages.length === 1 && messages[0]!.headers.deliveryDelayMs === 0;
    const delayed = single ? NO_MESSAGES : messages.filter((m) => m.headers.deliveryDelayMs > 0);
    const now = single ? messages : messages.filter((m) => m.headers.deliveryDelayMs === 0);
    if (delayed.length > 0) {
      const delayMs = Math.max(...delayed.map((m) => m.headers.deliveryDelayMs));
      this.clock.setTimer(delayMs, () => {
        if (this.#closed || this.channel.state !== "started") return;
        this.publish(delayed.map((m) => ({ headers: { ...m.headers, deliveryDelayMs: 0, timeToLiveMs: m.headers.timeToLiveMs === 0 ? 0 : Math.max(1, m.headers.timeToLiveMs - delayMs) }, body: m.body }))).catch(
          (error: unknown) => this.report(error instanceof BlazeError ? error : new BlazeError("SEND_FAILED", String(error), { cause: error })),
        );
      });
    }
    if (now.length === 0) return RESOLVED;
    const outOfBand = single ? now[0]!.headers.priority >= 7 : now.every((m) => m.headers.priority >= 7);
    const sent = this.channel.broadcast(MESSAGING_TOPIC, encodeBatch(now), outOfBand ? OUT_OF_BAND : IN_ORDER);
    this.counters.published += now.length;
    if (!this.#totalOrder && this.#topicConsumers.size > 0) {
      // This member's own subscribers, without a trip through the codec: after the current work, all at once.
      if (this.#local.length === 0) this.clock.defer(() => this.#routeLocal());
      this.#local.push(now);
    }
    return sent;
  }

  /** @internal Sends messages to temporary queues, one point-to-point message per owning member. */
  async sendToTemporaryQueues(messages: readonly WireMessage[]): Promise<void> {
    const byOwner = new Map<string, WireMessage[]>();
    for (const message of messages) {
      const name = message.headers.destination.name;
      const owner = name.slice(0, name.indexOf("/"));
      const list = byOwner.get(owner) ?? [];
      list.push(message);
      byOwner.set(owner, list);
    }
    await Promise.all([...byOwner].map(([owner, list]) => this.channel.send(owner, encodeBatch(list), { inbox: TEMPORARY_INBOX })));
  }

  #routeTopic(message: TopicMessage): void {
    // This member's own messages were routed when published (a channel with loopback on brings them
    // again) — but in total order they are routed here, in the ring's order.
    if (this.#closed || (message.sender === this.memberId && !this.#totalOrder)) return;
    const batch = decodeBatch(message.payload);
    if (batch === undefined) {
      this.counters.malformed++;
      return;
    }
    this.#route(batch);
  }

  #routeLocal(): void {
    const batches = this.#local.splice(0);
    if (this.#closed) return;
    for (const batch of batches) this.#route(batch);
  }

  /** Hands a batch of topic messages to the subscribers here that take them, all in one go. */
  #route(batch: readonly WireMessage[]): void {
    // The clock is read once a message with a time to live needs it.
    let now = Number.NaN;
    for (const wire of batch) {
      const { destination } = wire.headers;
      let routes: Map<string, TopicRoute>;
      if (destination.kind === DestinationKind.TOPIC) routes = this.#topicRoutes;
      else if (destination.kind === DestinationKind.TEMPORARY_TOPIC) {
        if (!destination.name.startsWith(`${this.memberId}/`)) continue;
        if (!this.#temporary.has(destination.name)) {
          this.counters.unroutable++;
          continue;
        }
        routes = this.#temporaryTopicRoutes;
      } else {
        this.counters.malformed++;
        continue;
      }
      // Mostly the same topic as the message before: a comparison, not a lookup.
      let route = this.#lastRoute;
      if (routes !== this.#lastRoutes || destination.name !== this.#lastRouteName) {
        route = routes.get(destination.name) ?? this.#newRoute(routes, destination);
        this.#lastRoutes = routes;
        this.#lastRouteName = destination.name;
        this.#lastRoute = route;
      }
      if (route === NO_ROUTE) continue;
      let expiresAt = Number.POSITIVE_INFINITY;
      if (wire.headers.timeToLiveMs > 0) {
        if (Number.isNaN(now)) now = this.clock.now();
        expiresAt = now + wire.headers.timeToLiveMs;
      }
      let lookup: ReturnType<typeof wireLookup> | undefined;
      for (const { consumer, localPrefix } of route.subscribers) {
        if (localPrefix !== undefined && wire.headers.messageId.startsWith(localPrefix)) continue;
        if (consumer.selector !== undefined && !consumer.selector.matches((lookup ??= wireLookup(wire.headers, 1)))) continue;
        consumer.push({ wire, deliveryCount: 1, expiresAt });
      }
      for (const [subscription, locals] of route.shared) this.#routeShared(subscription, locals, wire, expiresAt);
    }
  }

  /** The consumers here of topic `destination` (wildcard ones too), remembered in `routes` under its name. */
  #newRoute(routes: Map<string, TopicRoute>, destination: WireDestination): TopicRoute {
    const kind = destination.kind === DestinationKind.TOPIC ? "topic" : "temporary-topic";
    const subscribers: Array<TopicRoute["subscribers"][number]> = [];
    const shared = new Map<string, JMSConsumer[]>();
    for (const [consumer, context] of this.#topicConsumers) {
      if (consumer.destination.kind !== kind || !topicMatches(consumer.destination.name, destination.name)) continue;
      if (consumer.subscription === undefined) subscribers.push({ consumer, localPrefix: consumer.noLocal ? context.messageIdPrefix : undefined });
      else {
        const list = shared.get(consumer.subscription) ?? [];
        list.push(consumer);
        shared.set(consumer.subscription, list);
      }
    }
    const route = subscribers.length === 0 && shared.size === 0 ? NO_ROUTE : { subscribers, shared: [...shared] };
    // Names come from the network: past a bound the routes are made afresh rather than kept.
    if (routes.size >= MAX_ROUTES) routes.clear();
    routes.set(destination.name, route);
    return route;
  }

  #forgetRoutes(): void {
    this.#topicRoutes.clear();
    this.#temporaryTopicRoutes.clear();
    this.#lastRoutes = undefined;
  }

  /**
   * One subscriber of a shared subscription takes each message: every member picks the same one (by the
   * message id among the registered subscribers whose selector takes it), and the member holding it
   * delivers. Subscribers not registered yet are used only while none is.
   */
  #routeShared(subscription: string, locals: readonly JMSConsumer[], wire: WireMessage, expiresAt: number): void {
    const lookup = wireLookup(wire.headers, 1);
    const registered = this.replica.sharedSubscribers(subscription).filter((s) => s.selector === undefined || s.selector.matches(lookup));
    let chosen: JMSConsumer | undefined;
    if (registered.length > 0) {
      const id = registered[hash(wire.headers.messageId.text) % registered.length]!.id;
      chosen = locals.find((c) => c.id === id);
    } else {
      chosen = locals.find((c) => c.selector === undefined || c.selector.matches(lookup));
    }
    chosen?.push({ wire, deliveryCount: 1, expiresAt });
  }

  #routeTemporary(message: GroupMessage): void {
    if (this.#closed) return;
    const batch = decodeBatch(message.payload);
    if (batch === undefined) {
      this.counters.malformed++;
      return;
    }
    const now = this.clock.now();
    for (const wire of batch) {
      const name = wire.headers.destination.name;
      const context = wire.headers.destination.kind === DestinationKind.TEMPORARY_QUEUE ? this.#temporary.get(name) : undefined;
      if (context === undefined) {
        this.counters.unroutable++;
        continue;
      }
      if (name === context.replyQueueName && context.reply(wire)) continue;
      const consumers = this.#temporaryConsumers.get(name);
      if (consumers === undefined || consumers.length === 0) {
        this.counters.unroutable++;
        continue;
      }
      // Round robin among the queue's consumers (one per message).
      const consumer = consumers.shift()!;
      consumers.push(consumer);
      consumer.push({ wire, deliveryCount: 1, expiresAt: wire.headers.timeToLiveMs > 0 ? now + wire.headers.timeToLiveMs : Number.POSITIVE_INFINITY });
    }
  }
}

/** This member's consumers of one topic: each plain subscriber takes every message its selector takes, each shared subscription one. */
interface TopicRoute {
  /** `localPrefix`: a noLocal consumer's context's message id prefix (its own messages are skipped). */
  readonly subscribers: ReadonlyArray<{ readonly consumer: JMSConsumer; readonly localPrefix: MessageIdPrefix | undefined }>;
  readonly shared: ReadonlyArray<readonly [string, readonly JMSConsumer[]]>;
}

const NO_ROUTE: TopicRoute = { subscribers: [], shared: [] };
/** Most topic names whose routes are remembered. */
const MAX_ROUTES = 1024;
const RESOLVED: Promise<void> = Promise.resolve();
const NO_MESSAGES: readonly WireMessage[] = [];
const OUT_OF_BAND = { outOfBand: true } as const;
const IN_ORDER = { outOfBand: false } as const;

/** FNV-1a of a string: the same choice on every member. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
