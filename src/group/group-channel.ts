import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { Addressing, PayloadFormat } from "../../gen/activeblaze/v1/reliable_pb.ts";
import {
  type BroadcastOptions,
  Channel,
  type ChannelContext,
  type ChannelEvents,
  type ChannelState,
  type ChannelStats,
  type PeerInfo,
  type TopicListener,
} from "../channel/channel.ts";
import type { Peer } from "../channel/endpoint.ts";
import { Emitter, PushIterator, type SubscribeOptions, type Subscription } from "../channel/events.ts";
import { splitMessage } from "../channel/fragments.ts";
import type { ErrorStage } from "../channel/error-report.ts";
import type { FrameHandler, FrameRoute } from "../channel/frame-routes.ts";
import { formatName, type TopicMessage } from "../channel/topic-message.ts";
import { waitUntil, type WaitOptions } from "../channel/wait.ts";
import { BlazeError } from "../errors.ts";
import type { BlazeMessage } from "../message/blaze-message.ts";
import { encodePayload } from "../message/payload-message.ts";
import type { OutgoingData, PeerKey } from "../reliable/protocol.ts";
import { PendingCalls } from "../core/pending.ts";
import { Reassembler, reassemblyLimits } from "../reliable/reassembler.ts";
import { UnicastProtocol } from "../reliable/unicast/unicast-protocol.ts";
import type { ChannelSecurity } from "../security/channel-security.ts";
import type { Address } from "../transport/transport.ts";
import { type DataFields, type FrameReader, type HandReadCase, NO_BYTES } from "../wire/frames.ts";
import type { DescribedMember } from "../diagnostics/member-events.ts";
import type { MemberObserver } from "../diagnostics/member-observer.ts";
import type { AbortSignalLike } from "../web.ts";
import { GroupMessage } from "./group-message.ts";
import { GroupMembership } from "./membership.ts";
import { type GroupChannelOptions, resolveGroupOptions, type ResolvedGroupOptions } from "./options.ts";
import { contains, defaultCoordinatorSelector, type Member, type View } from "./view.ts";

/** ActiveBlaze's group message listener: broadcasts to a group. */
export type GroupMessageListener = (sender: Member, message: TopicMessage, group: string) => void;

export type InboxListener = (message: GroupMessage) => void | Promise<void>;

/** Events of a group channel, by name (besides a channel's). */
export interface GroupEvents {
  /** A new view was installed in `group`; `joined` and `left` say what changed. */
  viewChange: { readonly group: string; readonly view: View; readonly previous: View | undefined; readonly joined: readonly Member[]; readonly left: readonly Member[] };
  /** A member joined `group` (the local member too, when it joins). */
  join: { readonly group: string; readonly member: Member };
  /** A member left `group`, gracefully or by failure. */
  leave: { readonly group: string; readonly member: Member };
  /** A member fell silent and is being verified. */
  suspect: { readonly group: string; readonly member: Member };
  /** The coordinator of `group` changed. */
  coordinatorChange: { readonly group: string; readonly coordinator: Member; readonly previous: Member | undefined };
  /**
   * This member's event loop stalled for `stalledMs` (a long GC pause, a blocking handler): it noticed on
   * waking, before judging anyone, and gives its peers time to be heard before it suspects them.
   */
  stalled: { readonly stalledMs: number };
}

/** Events of a group channel, by name: a channel's and its groups'. */
export type GroupChannelEvents = ChannelEvents & GroupEvents;

const GROUP_EVENTS: ReadonlySet<string> = new Set<keyof GroupEvents>(["viewChange", "join", "leave", "suspect", "coordinatorChange", "stalled"]);

function isGroupEvent(type: keyof GroupChannelEvents): type is keyof GroupEvents {
  return GROUP_EVENTS.has(type);
}

/** What a membership iterator yields: first a snapshot, then every change. */
export type MembershipEvent =
  | { readonly type: "snapshot"; readonly group: string; readonly view: View | undefined }
  | ({ readonly type: "viewChange" } & GroupEvents["viewChange"]);

export interface SendOptions {
  /** The receiver's inbox ("" is the default inbox). */
  readonly inbox?: string;
}

export interface RequestOptions extends WaitOptions {
  readonly inbox?: string;
}

/** What a request or queue message waiting for its answer keeps. */
interface Call {
  /** The member it went to (to fail or redeliver when it goes); "" while a queue message waits for a consumer. */
  target: PeerKey;
  /** For queue messages: what to send again to another consumer. */
  readonly queue?: { readonly name: string; readonly payload: Uint8Array; readonly format: number; readonly expectsReply: boolean };
}

/** The frames of group membership (each names its group). */
const MEMBERSHIP_ROUTES = ["discovery", "discoveryResponse", "join", "joinResponse", "leave", "view", "viewAck", "suspect", "ping", "pong"] as const satisfies readonly FrameRoute[];

const GROUP_TOPIC_PREFIX = "$group/";
const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Creates a group channel and binds its sockets; `join()` starts it and joins its groups.
 * Options are a channel's plus the group ones ({@link option-schemas!GroupOptions}); invalid ones throw `INVALID_OPTION`.
 */
export async function createGroupChannel(options?: GroupChannelOptions): Promise<GroupChannel> {
  const channel = new GroupChannel(options);
  await channel.init();
  return channel;
}

/** The members by which a block built on a group channel takes part in it: not a group channel's public API. */
type GroupChannelInternals = "onLifecycle" | "routeFrames" | "readFramesByHand" | "watchViews" | "addWaiter" | "wakeWaiters" | "reportError" | "observer";

/**
 * A group channel's API, whichever level offers it: a {@link GroupChannel}, or a
 * {@link index!ClusterChannel}, which runs on a group channel of its own and offers its
 * API too. Code that needs only the group level takes this type and works with either.
 */
export type GroupChannelApi = Omit<GroupChannel, GroupChannelInternals>;

/**
 * ActiveBlaze's group level: a channel whose members know each other. Members join groups (and leave
 * them) and get views — the same members in the same order everywhere, with a coordinator; they send
 * to all of a group, point to point to a member's inboxes, to a queue ("whoever is free": one consumer
 * per message), and request/reply. It runs on a {@link Channel} of its own, whose topics, events and
 * life cycle it offers too.
 */
export class GroupChannel implements AsyncDisposable {
  readonly #channel: Channel;
  readonly #group: ResolvedGroupOptions;
  readonly #memberships = new Map<string, GroupMembership>();
  readonly #groupEvents: Emitter<GroupEvents>;
  readonly #groupListeners = new Map<string, Set<GroupMessageListener>>();
  readonly #inboxes = new Map<string, Set<InboxListener>>();
  readonly #queueHandlers = new Map<string, InboxListener>();
  readonly #consumers = new Map<PeerKey, readonly string[]>();
  readonly #roundRobin = new Map<string, number>();
  readonly #calls = new PendingCalls<GroupMessage | undefined, Call>();
  readonly #scratch: { -readonly [K in keyof OutgoingData]: OutgoingData[K] } = {
    destination: "",
    addressing: 0,
    format: 0,
    payload: NO_BYTES,
    outOfBand: false,
    fragmentIndex: 0,
    fragmentCount: 0,
    messageLength: 0,
    requestId: 0,
  };
  /** Every member of this member's views, by id (the first group's, where several have it). */
  readonly #membersById = new Map<PeerKey, Member>();
  readonly #sendQueues = new Map<PeerKey, Array<{ pieces: OutgoingData[]; next: number; incarnation: number; resolve: () => void; reject: (e: BlazeError) => void }>>();
  readonly #waiters = new Set<() => void>();
  /** What blocks built on this channel (the cluster's state map) are told of views, in registration order. */
  readonly #viewWatchers = new Set<(group: string, view: View | undefined) => void>();
  #context: ChannelContext | undefined;
  #unicast: UnicastProtocol | undefined;
  #reassembler: Reassembler;
  #weight: number;
  #unmatchedReplies = 0;
  #stalls = 0;
  #lastStallAt = Number.NEGATIVE_INFINITY;
  readonly #startTimeMs = Date.now();

  /**
   * @param member internal: the level users hold when it is not this group channel (a cluster channel
   * runs on one), which diagnostics describe; this group channel by default.
   */
  constructor(options?: GroupChannelOptions, member?: DescribedMember) {
    const { group, channel: channelOptions } = resolveGroupOptions(options);
    // Members are watched by membership's own failure detection; the channel forgets silent peers later.
    const peerTimeoutMs = channelOptions.peerTimeoutMs ?? 3 * (group.failureTimeoutMs + group.verifyTimeoutMs);
    const channel = new Channel({ ...channelOptions, peerTimeoutMs }, member ?? this);
    this.#channel = channel;
    this.#group = group;
    this.#weight = group.weight;
    this.#reassembler = new Reassembler({ limits: reassemblyLimits(16 * 1024 * 1024), ordered: true, timeoutMs: peerTimeoutMs });
    this.#groupEvents = new Emitter<GroupEvents>((error) => this.#reportListenerError(error));
    channel.onLifecycle(
      (context) => this.#started(context),
      () => this.#stopping(),
    );
    channel.watchPeers(
      (peer) => this.#unicast?.onPeerUp(peer.key, peer.incarnation),
      (peer, reason) => this.#peerGone(peer, reason),
    );
    channel.extendHeartbeat((fields) => (this.#queueHandlers.size === 0 ? fields : { ...fields, queues: [...this.#queueHandlers.keys()] }));
    // Point-to-point data, acks and NACKs: the unicast streams this level runs.
    channel.routeFrames(["unicastStream"], (peer, frame) => {
      const unicast = this.#unicast;
      if (unicast === undefined) return;
      if (frame.case === "data") unicast.onData(peer.key, peer.incarnation, frame, peer.lastHeardAt);
      else unicast.onControl(peer.key, peer.incarnation, frame.frame, peer.lastHeardAt);
    });
    channel.routeFrames(["heartbeat"], (peer, { frame }) => this.#onHeartbeat(peer, frame));
    channel.routeFrames(MEMBERSHIP_ROUTES, (peer, { frame }) => this.#onMembershipFrame(peer, frame));
  }

  // --- the channel it runs on: identity, life cycle, topics and its events ---

  /** This member's id (32 hex digits). */
  get id(): string {
    return this.#channel.id;
  }

  get name(): string {
    return this.#channel.name;
  }

  get cluster(): string {
    return this.#channel.cluster;
  }

  get state(): ChannelState {
    return this.#channel.state;
  }

  /** How often this member sends heartbeats, in ms. */
  get heartbeatIntervalMs(): number {
    return this.#channel.heartbeatIntervalMs;
  }

  /** The incarnation this member runs as (grows on every start). */
  get incarnation(): number {
    return this.#channel.incarnation;
  }

  /** The unicast address this member sends from (after `init()`). */
  get localAddress(): Address {
    return this.#channel.localAddress;
  }

  /** The keyring and key rotation of a channel with `security`; undefined without. */
  get security(): ChannelSecurity | undefined {
    return this.#channel.security;
  }

  /** The peers this member hears now. */
  get peers(): PeerInfo[] {
    return this.#channel.peers;
  }

  /** The channel's counters (see {@link GroupChannel.groupStats} for the group level's). */
  get stats(): ChannelStats {
    return this.#channel.stats;
  }

  /** Binds the sockets; the configuration is fixed from here on. Idempotent once initialized. */
  init(): Promise<void> {
    return this.#channel.init();
  }

  /** Starts talking to peers (initializing first if needed), in no group yet: see {@link GroupChannel.join}. Idempotent. */
  start(): Promise<void> {
    return this.#channel.start();
  }

  /**
   * Leaves every group and stops talking to peers; `start()` resumes (as a new incarnation). Broadcasts,
   * sends and requests still waiting fail with `CLOSED`. Idempotent.
   */
  stop(): Promise<void> {
    return this.#channel.stop();
  }

  /** Stops and releases the sockets; the channel is Constructed again and may be initialized anew. Idempotent. */
  shutDown(): Promise<void> {
    return this.#channel.shutDown();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutDown();
  }

  /** Broadcasts a message on a topic to every member of the channel: see {@link Channel.broadcast}. */
  broadcast(destination: string, message: BlazeMessage | Uint8Array, options: BroadcastOptions = {}): Promise<void> {
    return this.#channel.broadcast(destination, message, options);
  }

  /** Calls `listener` for every message on topic `destination`; returns a function that stops it. */
  onTopic(destination: string, listener: TopicListener): () => void {
    return this.#channel.onTopic(destination, listener);
  }

  /** The messages on topic `destination` as an async iterator: see {@link Channel.subscribe}. */
  subscribe(destination: string, options: SubscribeOptions = {}): Subscription<TopicMessage> {
    return this.#channel.subscribe(destination, options);
  }

  /** Resolves once at least `count` peers are heard: see {@link Channel.waitForPeers}. */
  waitForPeers(count: number, options: WaitOptions = {}): Promise<void> {
    return this.#channel.waitForPeers(count, options);
  }

  // --- membership ---

  /** Starts the channel and joins its configured groups; resolves with their views once in all of them. */
  async join(options: WaitOptions = {}): Promise<View[]> {
    await this.start();
    return Promise.all(this.#group.groups.map((group) => this.addToGroup(group, options)));
  }

  /** Leaves every group gracefully and stops the channel. */
  async leave(): Promise<void> {
    for (const group of [...this.#memberships.keys()]) this.removeFromGroup(group);
    this.#context?.endpoint.flush();
    await this.stop();
  }

  /** Joins `group` (ActiveBlaze's addToGroup); resolves with the view once this member is in it. */
  async addToGroup(group: string, options: WaitOptions = {}): Promise<View> {
    if (this.state !== "started") throw new BlazeError("ILLEGAL_STATE", `addToGroup() on a ${this.state} channel: join() or start() it first`);
    let membership = this.#memberships.get(group);
    if (membership === undefined) {
      membership = this.#createMembership(group);
      this.#memberships.set(group, membership);
      this.#addGroupTopic(group);
      this.#context!.driver.add(membership);
      membership.start(this.#context!.driver.now());
      this.#context!.driver.touch();
    }
    const joined = membership;
    const context = this.#context!;
    await waitUntil(context.clock, () => joined.isMember, (wake) => this.addWaiter(wake), `joining group "${group}"`, options, 10 * this.#group.discoveryTimeoutMs);
    return joined.view!;
  }

  /** Leaves `group` gracefully; the others see it at once. */
  removeFromGroup(group: string): void {
    const membership = this.#memberships.get(group);
    if (membership === undefined) return;
    const view = membership.view;
    membership.leave(this.#context?.driver.now() ?? 0);
    this.#context?.driver.remove(membership);
    this.#context?.driver.touch();
    this.#memberships.delete(group);
    if (view !== undefined) this.#emitViewChange(group, undefined, view);
  }

  /** The groups this member is in (or joining). */
  getGroups(): string[] {
    return [...this.#memberships.keys()];
  }

  /** The current view of `group` (default: the first configured group). */
  getView(group: string = this.#defaultGroup()): View | undefined {
    return this.#memberships.get(group)?.view;
  }

  getMembers(group: string = this.#defaultGroup()): Member[] {
    return [...(this.getView(group)?.members ?? [])];
  }

  getLocalMember(): Member {
    return this.#localMember();
  }

  getMemberById(id: string): Member | undefined {
    return this.#membersById.get(id);
  }

  getMemberByName(name: string, group: string = this.#defaultGroup()): Member | undefined {
    return this.getView(group)?.members.find((m) => m.name === name);
  }

  getCoordinator(group: string = this.#defaultGroup()): Member | undefined {
    return this.getView(group)?.coordinator;
  }

  isCoordinator(group: string = this.#defaultGroup()): boolean {
    return this.#memberships.get(group)?.isCoordinator ?? false;
  }

  /** Adds a listener of a channel or group event; returns a function that removes it. */
  on<K extends keyof GroupChannelEvents>(type: K, listener: (event: GroupChannelEvents[K]) => void): () => void {
    if (!isGroupEvent(type)) return this.#channel.on(type as keyof ChannelEvents, listener as (event: ChannelEvents[keyof ChannelEvents]) => void);
    return this.#groupEvents.on(type, listener as (event: GroupEvents[keyof GroupEvents]) => void);
  }

  off<K extends keyof GroupChannelEvents>(type: K, listener: (event: GroupChannelEvents[K]) => void): void {
    if (!isGroupEvent(type)) return this.#channel.off(type as keyof ChannelEvents, listener as (event: ChannelEvents[keyof ChannelEvents]) => void);
    this.#groupEvents.off(type, listener as (event: GroupEvents[keyof GroupEvents]) => void);
  }

  /** The membership of `group` as an async iterator: a snapshot first, then every view change. */
  membership(group: string = this.#defaultGroup(), options: { signal?: AbortSignalLike } = {}): AsyncIterableIterator<MembershipEvent> {
    const off = this.on("viewChange", (event) => {
      if (event.group === group) iterator.push({ type: "viewChange", ...event });
    });
    const onAbort = () => iterator.close();
    const iterator = new PushIterator<MembershipEvent>(() => {
      off();
      options.signal?.removeEventListener("abort", onAbort);
    });
    iterator.push({ type: "snapshot", group, view: this.getView(group) });
    if (options.signal?.aborted) iterator.close();
    else options.signal?.addEventListener("abort", onAbort, { once: true });
    return iterator;
  }

  // --- group broadcast ---

  /** Sends to every member of `group` (ActiveBlaze's broadcastMessage); the sender gets a copy when `loopback` is on. */
  broadcastToGroup(group: string, message: BlazeMessage | Uint8Array, options: { outOfBand?: boolean } = {}): Promise<void> {
    return this.broadcast(GROUP_TOPIC_PREFIX + group, message, options);
  }

  /** Listens to broadcasts to `group` from its members; returns a function that stops it. */
  onGroupMessage(group: string, listener: GroupMessageListener): () => void {
    let set = this.#groupListeners.get(group);
    if (set === undefined) this.#groupListeners.set(group, (set = new Set()));
    set.add(listener);
    if (this.#memberships.has(group)) this.#addGroupTopic(group);
    return () => set.delete(listener);
  }

  // --- point to point, inboxes, queues, request/reply ---

  /** Sends to one member's inbox, reliably and in order per pair. Resolves once on its way. */
  send(to: Member | string, message: BlazeMessage | Uint8Array, options: SendOptions = {}): Promise<void> {
    const target = this.#target(to);
    const { payload, format } = encodePayload(message);
    return this.#sendTo(target.id, target.incarnation, Addressing.MEMBER, options.inbox ?? "", payload, format, 0);
  }

  /** Listens on a named inbox of this member ("" is the default inbox). Returns a function that stops listening. */
  onInbox(name: string, listener: InboxListener): () => void {
    let set = this.#inboxes.get(name);
    if (set === undefined) this.#inboxes.set(name, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** A named inbox as an async iterator, bounded as {@link Channel.subscribe} is. */
  inbox(name = "", options: SubscribeOptions = {}): Subscription<GroupMessage> {
    let off = () => {};
    const iterator = new PushIterator<GroupMessage>(() => off(), options, `inbox "${name}"`);
    if (!iterator.ended) off = this.onInbox(name, (message) => iterator.push(message));
    return iterator;
  }

  /**
   * Consumes queue `name`: each message sent to the queue reaches exactly one consumer. The message is
   * acknowledged when the handler returns (or its promise settles); one whose consumer dies before that
   * goes to another. Returns a function that stops consuming.
   */
  consumeQueue(name: string, handler: InboxListener): () => void {
    if (this.#queueHandlers.has(name)) throw new BlazeError("ILLEGAL_STATE", `queue "${name}" already has a consumer here`);
    this.#queueHandlers.set(name, handler);
    this.#context?.heartbeatNow();
    return () => {
      if (this.#queueHandlers.get(name) === handler) this.#queueHandlers.delete(name);
      this.#context?.heartbeatNow();
    };
  }

  /**
   * Sends to queue `name`: exactly one consuming member (round robin among them, in view order)
   * processes it. Resolves once it has; rejects with `TIMEOUT` if no consumer processed it in time.
   */
  async sendToQueue(name: string, message: BlazeMessage | Uint8Array, options: WaitOptions = {}): Promise<void> {
    await this.#queueRequest(name, message, false, options.timeoutMs ?? this.#group.queueTimeoutMs, options.signal);
  }

  /** A request to one member's inbox; resolves with the reply, or rejects with `TIMEOUT` / `UNREACHABLE`. */
  request(to: Member | string, message: BlazeMessage | Uint8Array, options: RequestOptions = {}): Promise<GroupMessage> {
    try {
      const target = this.#target(to);
      // The clock read once for the call's deadline and the send.
      const now = this.#context?.driver.now() ?? 0;
      const { id, promise } = this.#open(now, options.timeoutMs ?? this.#group.requestTimeoutMs, options.signal, "the request", { target: target.id });
      const { payload, format } = encodePayload(message);
      const sent = this.#sendTo(target.id, target.incarnation, Addressing.MEMBER, options.inbox ?? "", payload, format, id, now);
      // Sent at once (the common case) it cannot fail: no handler, which would cost a promise and a microtask per request.
      if (sent !== RESOLVED) {
        sent.catch((error: unknown) => this.#calls.fail(id, error instanceof BlazeError ? error : new BlazeError("SEND_FAILED", String(error), { cause: error })));
      }
      // A request's call settles with the reply (a queue message's with undefined).
      return this.#timed("member", promise as Promise<GroupMessage>);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A request through queue `name`: one consumer answers. */
  async requestAny(name: string, message: BlazeMessage | Uint8Array, options: WaitOptions = {}): Promise<GroupMessage> {
    return (await this.#timed("queue", this.#queueRequest(name, message, true, options.timeoutMs ?? this.#group.requestTimeoutMs, options.signal)))!;
  }

  // How long requests take to be answered, for the `metrics` option.
  #timed<T>(to: "member" | "queue", reply: Promise<T>): Promise<T> {
    return this.#channel.observer.measuring ? this.#measured(to, reply) : reply;
  }

  async #measured<T>(to: "member" | "queue", reply: Promise<T>): Promise<T> {
    const clock = this.#context!.clock;
    const started = clock.now();
    const done = (outcome: string) => this.#channel.observer.record("activeblaze.request.duration", clock.now() - started, { to, outcome });
    try {
      const result = await reply;
      done("ok");
      return result;
    } catch (error) {
      done(error instanceof BlazeError ? error.code : "error");
      throw error;
    }
  }

  /** This member's coordinator weight. */
  get weight(): number {
    return this.#weight;
  }

  /**
   * Changes this member's coordinator weight at run time: the coordinator installs a view with the new
   * weight, and the highest weight is elected (ActiveBlaze's `setMasterWeight`).
   */
  setWeight(weight: number): void {
    if (!Number.isSafeInteger(weight)) throw new BlazeError("INVALID_ARGUMENT", `a weight is an integer, not ${weight}`);
    if (weight === this.#weight) return;
    this.#weight = weight;
    const driver = this.#context?.driver;
    for (const membership of this.#memberships.values()) membership.localChanged(driver?.now() ?? 0);
    driver?.touch();
  }

  /** Counters of the group level (`stalls`: times this member's event loop stalled, see the `stalled` event). */
  get groupStats(): { readonly unmatchedReplies: number; readonly pending: number; readonly stalls: number; readonly unicast: Readonly<Record<string, number>> } {
    return { unmatchedReplies: this.#unmatchedReplies, pending: this.#calls.size, stalls: this.#stalls, unicast: { ...(this.#unicast?.stats ?? {}) } };
  }

  // --- internals ---

  #defaultGroup(): string {
    return this.#group.groups[0] ?? "default";
  }

  #localMember(): Member {
    const context = this.#context;
    return {
      id: this.id,
      incarnation: this.incarnation,
      name: this.name,
      weight: this.#weight,
      metadata: this.#group.metadata,
      address: context?.endpoint.localAddress ?? { host: "", port: 0 },
      startTimeMs: this.#startTimeMs,
    };
  }

  #createMembership(group: string): GroupMembership {
    const context = this.#context!;
    return new GroupMembership(
      group,
      {
        random: context.random,
        local: () => this.#localMember(),
        multicastFrame: (frame) => context.endpoint.multicastFrame(frame),
        unicastFrame: (peer, frame) => context.endpoint.unicastFrame(peer, frame),
        unicastTo: (member, frame) => this.#unicastTo(member, frame),
        reply: (to, frame) => context.endpoint.unicastFrameTo(to, frame),
        lastHeard: (member) => {
          const peer = context.endpoint.peers.get(member.id);
          return peer?.incarnation === member.incarnation ? peer.lastHeardAt : undefined;
        },
        viewInstalled: (view, previous) => this.#emitViewChange(group, view, previous),
        suspected: (member) => this.#groupEvents.emit("suspect", { group, member }),
        stalled: (stalledMs) => this.#onStall(stalledMs),
      },
      {
        heartbeatIntervalMs: this.heartbeatIntervalMs,
        failureTimeoutMs: this.#group.failureTimeoutMs,
        verifyTimeoutMs: this.#group.verifyTimeoutMs,
        discoveryTimeoutMs: this.#group.discoveryTimeoutMs,
      },
      this.#group.coordinatorSelector ?? defaultCoordinatorSelector,
    );
  }

  // Every group's membership notices the same stall: it is told once.
  #onStall(stalledMs: number): void {
    const now = this.#context!.clock.now();
    if (now - this.#lastStallAt < stalledMs) return;
    this.#lastStallAt = now;
    this.#stalls++;
    this.#groupEvents.emit("stalled", { stalledMs });
  }

  #started(context: ChannelContext): void {
    this.#context = context;
    context.driver.add(this.#calls);
    this.#reassembler = new Reassembler({ limits: reassemblyLimits(16 * 1024 * 1024), ordered: true, timeoutMs: 60_000 });
    this.#unicast = new UnicastProtocol({
      localKey: this.id,
      localIncarnation: context.incarnation,
      unicastData: (peer, data) => context.endpoint.unicastData(peer, data, this.#memberOf),
      unicastFrame: (peer, frame) => context.endpoint.unicastFrame(peer, frame),
      unicastAck: (peer, stream, originId, incarnation, cumulative, highestReceived) =>
        context.endpoint.unicastAck(peer, stream, originId, incarnation, cumulative, highestReceived),
      deliver: (peer, data, incarnation) => this.#onPointToPoint(peer, data, incarnation),
      writable: (peer) => this.#pump(peer),
    }, this.#group.unicast);
    context.driver.add(this.#unicast);
  }

  #stopping(): void {
    for (const group of [...this.#memberships.keys()]) this.removeFromGroup(group);
    if (this.#unicast !== undefined) this.#context?.driver.remove(this.#unicast);
    this.#unicast?.close();
    this.#unicast = undefined;
    const closed = new BlazeError("CLOSED", "the group channel stopped");
    this.#calls.failAll(closed);
    this.#context?.driver.remove(this.#calls);
    for (const queue of this.#sendQueues.values()) for (const entry of queue.splice(0)) entry.reject(closed);
    this.#sendQueues.clear();
    this.#consumers.clear();
  }

  // To the address a member's own datagrams come from; one not heard from directly yet (a static network's
  // member that talks to others first) is introduced at the address its group gives, and the frame dropped.
  #unicastTo(member: Member, frame: Uint8Array): void {
    const endpoint = this.#context!.endpoint;
    if (endpoint.peers.get(member.id)?.incarnation === member.incarnation) endpoint.unicastFrame(member.id, frame);
    else endpoint.introduce(member.id, member.incarnation, member.address);
  }

  #onHeartbeat(peer: Peer, frame: Frame): void {
    const kind = frame.kind;
    // Only a periodic heartbeat lists the queues; a protocol's own (interval 0) says nothing of them.
    if (kind.case === "heartbeat" && kind.value.intervalMs > 0) this.#consumers.set(peer.key, kind.value.queues);
    this.wakeWaiters();
  }

  // A frame of a group this member is not in (or no longer) is ignored.
  #onMembershipFrame(peer: Peer, frame: Frame): void {
    const group = groupOf(frame.kind);
    const membership = group === undefined ? undefined : this.#memberships.get(group);
    if (membership === undefined) return;
    membership.onFrame(peer.key, peer.address, frame, peer.lastHeardAt);
    this.wakeWaiters();
  }

  #peerGone(peer: Peer, reason: "left" | "timeout"): void {
    const key = peer.key;
    this.#unicast?.onPeerDown(key);
    this.#reassembler.forget(key);
    this.#consumers.delete(key);
    this.#memberGone(key);
    // A goodbye to the channel (or a new incarnation, which ends the old one) leaves every group, even when
    // it overtook the group's Leave, which then comes from a departed incarnation and is refused as stale.
    if (reason === "left") {
      const now = this.#context?.driver.now() ?? 0;
      for (const membership of this.#memberships.values()) membership.peerLeft(key, peer.incarnation, now);
    }
  }

  // A member left (or died): what was waiting on it fails over (queue messages) or fails (requests).
  #memberGone(peer: PeerKey): void {
    for (const [id, call] of [...this.#calls.entries()]) {
      if (call.target !== peer) continue;
      if (call.queue !== undefined) this.#dispatchQueue(id, call);
      else this.#calls.fail(id, new BlazeError("UNREACHABLE", `member ${peer.slice(0, 8)} left before answering`));
    }
    const queued = this.#sendQueues.get(peer);
    if (queued !== undefined) {
      this.#sendQueues.delete(peer);
      for (const entry of queued) entry.reject(new BlazeError("UNREACHABLE", `member ${peer.slice(0, 8)} left`));
    }
  }

  #emitViewChange(group: string, view: View | undefined, previous: View | undefined): void {
    this.#membersById.clear();
    // Keyed by the endpoint's own string for a member it has heard from, where it has one: the ids the
    // hot paths look up are those strings, and a map finds its own key by reference, where an equal
    // string costs a comparison of its 32 characters (twice for every request answered).
    const peers = this.#context?.endpoint.peers;
    for (const membership of this.#memberships.values()) {
      for (const member of membership.view?.members ?? []) {
        if (!this.#membersById.has(member.id)) this.#membersById.set(peers?.get(member.id)?.key ?? member.id, member);
      }
    }
    const joined = view?.members.filter((m) => previous === undefined || !contains(previous, m.id, m.incarnation)) ?? [];
    const left = previous?.members.filter((m) => view === undefined || !contains(view, m.id, m.incarnation)) ?? [];
    for (const watcher of this.#viewWatchers) watcher(group, view);
    if (view !== undefined) this.#groupEvents.emit("viewChange", { group, view, previous, joined, left });
    for (const member of joined) {
      this.#groupEvents.emit("join", { group, member });
    }
    for (const member of left) {
      this.#groupEvents.emit("leave", { group, member });
      if (member.id !== this.id && !this.#inAnyView(member.id)) {
        this.#context?.receiverGone(member.id);
        this.#memberGone(member.id);
      }
    }
    if (view !== undefined && view.coordinator.id !== previous?.coordinator.id) {
      this.#groupEvents.emit("coordinatorChange", { group, coordinator: view.coordinator, previous: previous?.coordinator });
    }
    this.wakeWaiters();
  }

  #inAnyView(peer: PeerKey): boolean {
    for (const membership of this.#memberships.values()) if (membership.view !== undefined && contains(membership.view, peer)) return true;
    return false;
  }

  #target(to: Member | string): { id: PeerKey; incarnation: number } {
    const id = typeof to === "string" ? to : to.id;
    const member = typeof to === "string" ? this.getMemberById(id) : to;
    const peer = this.#context?.endpoint.peers.get(id);
    const incarnation = member?.incarnation ?? peer?.incarnation;
    if (incarnation === undefined) throw new BlazeError("UNREACHABLE", `no member ${id.slice(0, 8)} is known here`);
    // The endpoint's own string for a peer it has heard from: the maps on the way (streams, outbox, the
    // call's target) then find it by reference, where a caller's equal string costs a comparison of its
    // 32 characters at each of them, on the request and on its reply.
    return { id: peer?.key ?? id, incarnation };
  }

  // `now`: the driver's time, when the caller has read it already.
  #sendTo(peer: PeerKey, incarnation: number, addressing: Addressing, destination: string, payload: Uint8Array, format: number, requestId: number, now?: number): Promise<void> {
    const unicast = this.#unicast;
    const context = this.#context;
    if (this.state !== "started" || unicast === undefined || context === undefined) {
      throw new BlazeError("ILLEGAL_STATE", `sending on a ${this.state} group channel: join() it first`);
    }
    if (peer === this.id) {
      // To ourselves: no network, delivered as if it came back.
      context.clock.defer(() => this.#deliverPointToPoint(this.id, destination, payload, format, addressing, requestId));
      return Promise.resolve();
    }
    const maxPiece = context.endpoint.maxPayloadBytes(destination);
    // (No queue to any peer, the common case, is known without looking the peer up.)
    if ((this.#sendQueues.size === 0 || !this.#sendQueues.has(peer)) && payload.length <= maxPiece) {
      // The common case (one piece, room in the window): no queue, no promise of its own, and one scratch
      // piece (the protocol encodes it at once, if its window has room).
      const piece = this.#scratch;
      piece.destination = destination;
      piece.addressing = addressing;
      piece.format = format;
      piece.requestId = requestId;
      piece.payload = payload;
      const sent = unicast.trySend(peer, incarnation, piece, now ?? context.driver.now());
      piece.payload = NO_BYTES;
      if (sent !== 0) return RESOLVED;
    }
    const pieces = splitMessage({ destination, addressing, format, outOfBand: false, requestId }, payload, maxPiece);
    return new Promise((resolve, reject) => {
      let queue = this.#sendQueues.get(peer);
      if (queue === undefined) this.#sendQueues.set(peer, (queue = []));
      queue.push({ pieces, next: 0, incarnation, resolve, reject });
      if (queue.length === 1) this.#pump(peer);
    });
  }

  #pump(peer: PeerKey): void {
    const unicast = this.#unicast;
    // Called on every acknowledgement that frees the window: with no queue to any peer, none is looked up.
    if (this.#sendQueues.size === 0) return;
    const queue = this.#sendQueues.get(peer);
    if (unicast === undefined || queue === undefined) return;
    const now = this.#context!.driver.now();
    while (queue.length > 0) {
      const head = queue[0]!;
      while (head.next < head.pieces.length && unicast.trySend(peer, head.incarnation, head.pieces[head.next]!, now) !== 0) head.next++;
      if (head.next < head.pieces.length) return;
      queue.shift();
      head.resolve();
    }
    this.#sendQueues.delete(peer);
  }

  #onPointToPoint(peer: PeerKey, data: DataFields, incarnation: number): void {
    if (this.#context === undefined) return;
    const payload = this.#reassembler.accept(peer, incarnation, data);
    if (payload === undefined) return;
    this.#deliverPointToPoint(peer, data.destination, payload, data.format, data.addressing, data.requestId);
  }

  #deliverPointToPoint(peer: PeerKey, destination: string, payload: Uint8Array, format: number, addressing: number, requestId: number): void {
    switch (addressing) {
      case Addressing.REPLY:
      case Addressing.QUEUE_ACK: {
        if (this.#calls.meta(requestId)?.target !== peer) {
          this.#unmatchedReplies++;
          return;
        }
        this.#calls.settle(requestId, addressing === Addressing.REPLY ? this.#message(peer, destination, payload, format, requestId, undefined) : undefined);
        return;
      }
      case Addressing.QUEUE:
      case Addressing.QUEUE_REQUEST: {
        // Not (or no longer) consuming it: acknowledge nothing; the sender redelivers or times out.
        const handler = this.#queueHandlers.get(destination);
        if (handler === undefined) return;
        // A request through a queue is acknowledged by its reply; a plain queue message once processed.
        const replier = addressing === Addressing.QUEUE_REQUEST ? this.#replier(peer, requestId) : undefined;
        const message = this.#message(peer, destination, payload, format, requestId, replier);
        this.#run(handler, message, replier === undefined ? () => void this.#sendAck(peer, destination, requestId) : undefined);
        return;
      }
      default: {
        const listeners = this.#inboxes.get(destination);
        const replier = requestId !== 0 ? this.#replier(peer, requestId) : undefined;
        const message = this.#message(peer, destination, payload, format, requestId, replier);
        if (listeners === undefined || listeners.size === 0) return;
        for (const listener of listeners) this.#run(listener, message, undefined);
      }
    }
  }

  #run(listener: InboxListener, message: GroupMessage, done: (() => void) | undefined): void {
    try {
      const result = listener(message);
      // A reply sent at once gives the shared resolved promise (`(request) => request.reply(...)`): nothing
      // to wait for, and no reaction to pay for on every request.
      if (result instanceof Promise && result !== RESOLVED) {
        result.then(
          () => done?.(),
          (error: unknown) => {
            this.#reportListenerError(error);
            done?.();
          },
        );
        return;
      }
    } catch (error) {
      this.#reportListenerError(error);
    }
    done?.();
  }

  // Where a member not heard from directly yet is to be found: its view entry.
  readonly #memberOf = (peer: PeerKey): Member | undefined => this.getMemberById(peer);

  #message(peer: PeerKey, destination: string, payload: Uint8Array, format: number, requestId: number, replier: GroupMessage["reply"] | undefined): GroupMessage {
    return new GroupMessage(this.getMemberById(peer), peer, destination, payload, formatName(format), requestId, replier);
  }

  #replier(peer: PeerKey, requestId: number): (response: BlazeMessage | Uint8Array) => Promise<void> {
    let answered = false;
    return (response) => {
      if (answered) throw new BlazeError("ILLEGAL_STATE", "this request was answered already");
      answered = true;
      // As `#target` finds it, the peer's own key at hand already: the endpoint is asked only for a member not in a view.
      const incarnation = this.getMemberById(peer)?.incarnation ?? this.#context?.endpoint.peers.get(peer)?.incarnation;
      if (incarnation === undefined) throw new BlazeError("UNREACHABLE", `no member ${peer.slice(0, 8)} is known here`);
      const { payload, format } = encodePayload(response);
      return this.#sendTo(peer, incarnation, Addressing.REPLY, "", payload, format, requestId);
    };
  }

  #sendAck(peer: PeerKey, queue: string, requestId: number): Promise<void> {
    const incarnation = this.#context?.endpoint.peers.get(peer)?.incarnation ?? this.getMemberById(peer)?.incarnation;
    if (incarnation === undefined) return Promise.resolve();
    return this.#sendTo(peer, incarnation, Addressing.QUEUE_ACK, queue, new Uint8Array(0), PayloadFormat.UNSPECIFIED, requestId).catch(() => undefined);
  }

  #open(now: number, timeoutMs: number, signal: AbortSignalLike | undefined, what: string, call: Call): { readonly id: number; readonly promise: Promise<GroupMessage | undefined> } {
    const context = this.#context;
    if (context === undefined) throw new BlazeError("ILLEGAL_STATE", "the group channel is not started");
    const opened = this.#calls.open(now, timeoutMs, signal, what, call);
    context.driver.touch();
    return opened;
  }

  #queueRequest(name: string, message: BlazeMessage | Uint8Array, expectsReply: boolean, timeoutMs: number, signal: AbortSignalLike | undefined): Promise<GroupMessage | undefined> {
    const { payload, format } = encodePayload(message);
    const call: Call = { target: "", queue: { name, payload, format, expectsReply } };
    const { id, promise } = this.#open(this.#context?.driver.now() ?? 0, timeoutMs, signal, `the message to queue "${name}"`, call);
    this.#dispatchQueue(id, call);
    return promise;
  }

  // Picks the next consumer of the queue (round robin in view order) and sends the message to it; with
  // none, waits for one to appear.
  #dispatchQueue(id: number, call: Call): void {
    const queue = call.queue!;
    const consumers = this.#queueConsumers(queue.name).filter((peer) => peer !== call.target || call.target === this.id);
    if (consumers.length === 0) {
      call.target = "";
      const retry = () => {
        if (this.#calls.meta(id) !== call) {
          this.#waiters.delete(retry);
          return;
        }
        if (call.target !== "") return;
        if (this.#queueConsumers(queue.name).length > 0) {
          this.#waiters.delete(retry);
          this.#dispatchQueue(id, call);
        }
      };
      this.#waiters.add(retry);
      return;
    }
    const turn = this.#roundRobin.get(queue.name) ?? 0;
    this.#roundRobin.set(queue.name, turn + 1);
    const target = consumers[turn % consumers.length]!;
    call.target = target;
    const incarnation = target === this.id ? this.incarnation : (this.getMemberById(target)?.incarnation ?? this.#context!.endpoint.peers.get(target)!.incarnation);
    const addressing = queue.expectsReply ? Addressing.QUEUE_REQUEST : Addressing.QUEUE;
    const sent = this.#sendTo(target, incarnation, addressing, queue.name, queue.payload, queue.format, id);
    if (sent !== RESOLVED) {
      sent.catch((error: unknown) => {
        if (this.#calls.meta(id) === call && error instanceof BlazeError && error.code === "UNREACHABLE") this.#dispatchQueue(id, call);
      });
    }
  }

  // Members consuming `name`, in view order (this member too), that are in one of our views.
  #queueConsumers(name: string): PeerKey[] {
    const ordered: PeerKey[] = [];
    for (const membership of this.#memberships.values()) {
      for (const member of membership.view?.members ?? []) {
        if (ordered.includes(member.id)) continue;
        const consumes = member.id === this.id ? this.#queueHandlers.has(name) : (this.#consumers.get(member.id)?.includes(name) ?? false);
        if (consumes) ordered.push(member.id);
      }
    }
    return ordered;
  }

  #addGroupTopic(group: string): void {
    const topic = GROUP_TOPIC_PREFIX + group;
    if (this.#groupTopics.has(topic)) return;
    this.#groupTopics.add(topic);
    this.onTopic(topic, (message) => {
      const membership = this.#memberships.get(group);
      const sender = membership?.view?.members.find((m) => m.id === message.sender);
      // ActiveBlaze delivered group messages only from known members.
      if (sender === undefined) return;
      for (const listener of this.#groupListeners.get(group) ?? []) this.#safely(() => listener(sender, message, group));
    });
  }

  readonly #groupTopics = new Set<string>();

  // --- internal: how a block built on a group channel (the cluster's state map) takes part in it; each registration returns its remover ---

  /**
   * @internal Calls `started` each time the channel starts and `stopping` each time it stops, after this
   * group channel's own: a block starts once the group level has, and stops once it left its groups.
   */
  onLifecycle(started: (context: ChannelContext) => void, stopping: () => void): () => void {
    return this.#channel.onLifecycle(started, stopping);
  }

  /** @internal Hands received frames of `routes` to `handler`; returns the function that stops it. */
  routeFrames<R extends FrameRoute>(routes: readonly R[], handler: FrameHandler<R>): () => void {
    return this.#channel.routeFrames(routes, handler);
  }

  /** @internal Has the channel's frames of `kind` read by `read`, into its level's own form; returns the function that stops it. */
  readFramesByHand(kind: HandReadCase, read: FrameReader): () => void {
    return this.#channel.readFramesByHand(kind, read);
  }

  /** @internal Calls `watcher` when `group` installs a view here, or this member leaves it (undefined), before the view's events. */
  watchViews(watcher: (group: string, view: View | undefined) => void): () => void {
    this.#viewWatchers.add(watcher);
    return () => this.#viewWatchers.delete(watcher);
  }

  /** @internal Calls `wake` whenever the group's state changed (a view, a frame, a consumer): waiters re-check. */
  addWaiter(wake: () => void): () => void {
    this.#waiters.add(wake);
    return () => this.#waiters.delete(wake);
  }

  /** @internal Wakes every waiter to re-check its condition. */
  wakeWaiters(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  /** @internal Reports a background failure as the channel's `error` event. */
  reportError(error: BlazeError, stage: ErrorStage): void {
    this.#channel.reportError(error, stage);
  }

  /** @internal What this member tells about itself (its log, metrics and recent events). */
  get observer(): MemberObserver {
    return this.#channel.observer;
  }

  #safely(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#reportListenerError(error);
    }
  }

  #reportListenerError(error: unknown): void {
    const wrapped = error instanceof BlazeError ? error : new BlazeError("LISTENER_ERROR", "a group listener threw", { cause: error });
    this.#channel.reportError(wrapped, "listener");
  }
}


function groupOf(kind: Frame["kind"]): string | undefined {
  switch (kind.case) {
    case "discovery":
    case "discoveryResponse":
    case "join":
    case "joinResponse":
    case "leave":
    case "view":
    case "viewAck":
    case "suspect":
    case "ping":
    case "pong":
      return kind.value.group;
    default:
      return undefined;
  }
}
