import { Addressing } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { BlazeError, internalError, isTimeoutError } from "../errors.ts";
import type { BlazeMessage } from "../message/blaze-message.ts";
import { encodePayload } from "../message/payload-message.ts";
import { BestEffortProtocol } from "../reliable/best-effort.ts";
import { heartbeatFrame, type HeartbeatFields } from "../reliable/control-frames.ts";
import { keyOf } from "../reliable/member-key.ts";
import { NackProtocol } from "../reliable/nack/nack-protocol.ts";
import { FecProtocol } from "../reliable/fec/fec-protocol.ts";
import { TotemProtocol } from "../reliable/totem/totem-protocol.ts";
import {
  emptyStats,
  type OutgoingData,
  type PeerKey,
  type ProtocolEvent,
  type ProtocolHost,
  type ProtocolStats,
  type ReliabilityProtocol,
} from "../reliable/protocol.ts";
import { Reassembler, reassemblyLimits } from "../reliable/reassembler.ts";
import { Driver, type TimedUnit } from "../core/driver.ts";
import { ChannelSecurity } from "../security/channel-security.ts";
import type { SenderState } from "../security/datagram-guard.ts";
import { securityProvider } from "../security/default-provider.ts";
import { KeyRing } from "../security/keyring.ts";
import { type Clock, guardedClock, type RandomSource, systemClock, systemRandom } from "../transport/clock.ts";
import { formatAddress } from "../transport/host-names.ts";
import type { Address } from "../transport/transport.ts";
import { DropCounters, type DropReason } from "../wire/drop-reason.ts";
import { type DataFields, type FrameReader, type HandReadCase, HandReaders, NO_BYTES, type ReceivedFrame } from "../wire/frames.ts";
import { MAX_NAME_BYTES, MEMBER_ID_BYTES } from "../wire/limits.ts";
import { web } from "../web.ts";
import { emptyNetworkStats, Endpoint, type NetworkConfig, type NetworkStats, type Peer } from "./endpoint.ts";
import type { DiagnosticsRequest } from "../../gen/activeblaze/v1/diagnostics_pb.ts";
import type { DescribedMember } from "../diagnostics/member-events.ts";
import { MemberObserver } from "../diagnostics/member-observer.ts";
import { reportFrame } from "../diagnostics/member-report.ts";
import { ErrorReport, type ErrorStage } from "./error-report.ts";
import { type FrameHandler, type FrameRoute, FrameRoutes, routeOf } from "./frame-routes.ts";
import { Emitter, PushIterator, type SubscribeOptions, type Subscription } from "./events.ts";
import { type ChannelOptions, resolveChannelOptions, type ResolvedChannelOptions } from "./options.ts";
import { splitMessage } from "./fragments.ts";
import { formatName, TopicMessage } from "./topic-message.ts";
import { waitUntil, type WaitOptions } from "./wait.ts";

/** What a level built on a channel (the group channel, the cluster's state map) gets when the channel starts. */
export interface ChannelContext {
  readonly endpoint: Endpoint;
  /** The channel's driver: units register here for their deadlines; inputs `touch` it. */
  readonly driver: Driver;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly incarnation: number;
  /** Sends this member's heartbeat now (e.g. after what it advertises changed). */
  heartbeatNow(): void;
  /** `peer` left the level above (a view): the multicast protocol stops waiting for it. */
  receiverGone(peer: PeerKey): void;
}

/** ActiveBlaze's life cycle: Constructed → Initialized → Started ⇄ Stopped; shutDown returns to Constructed. */
export type ChannelState = "constructed" | "initialized" | "started" | "stopped";

/** A peer this channel hears. */
export interface PeerInfo {
  /** Member id in hex. */
  readonly id: string;
  readonly incarnation: number;
  /** The unicast address its datagrams come from. */
  readonly address: Address;
}

export type TopicListener = (message: TopicMessage) => void;

/** Events a channel emits, by name. */
export interface ChannelEvents {
  peerUp: { readonly peer: PeerInfo };
  peerDown: { readonly peer: PeerInfo; readonly reason: "left" | "timeout" };
  /** A receiver stopped acknowledging and no longer holds this sender's window back. */
  receiverUnresponsive: { readonly peer: string; readonly silentMs: number };
  receiverResponsive: { readonly peer: string };
  /**
   * Messages `firstSeq`–`lastSeq` from `peer` were lost for good: dropped by the sender before this member
   * got them, or a large message whose pieces cannot all arrive (the range is then its pieces' numbers).
   */
  messagesLost: { readonly peer: string; readonly count: number; readonly firstSeq: number; readonly lastSeq: number };
  /**
   * A background failure; `stage` says where: "transport" (a socket), "listener" (a user's listener
   * threw), "receive", "timer" or "send" (`INTERNAL_ERROR`: activeblaze's own code failed; the member carried on).
   * With no listener, failures are printed to the console (rate-limited) rather than lost.
   */
  error: { readonly error: BlazeError; readonly stage: ErrorStage };
}

export interface BroadcastOptions {
  /** Deliver without waiting for the sender's earlier messages (still exactly once). Default false. */
  readonly outOfBand?: boolean;
  /** Totem: deliver only once every ring member has the message. Default: the channel's `totem.delivery`. */
  readonly safe?: boolean;
}

/** Counters of a channel since it was created. */
export interface ChannelStats {
  readonly state: ChannelState;
  readonly reliability: string;
  readonly peers: number;
  /** Datagrams and bytes in and out; senders admitted, pending and refused (see "Hostile input" in the README). */
  readonly network: Readonly<NetworkStats>;
  /** Datagrams refused, by reason; never delivered. */
  readonly dropped: Readonly<Record<DropReason, number>>;
  readonly protocol: Readonly<ProtocolStats>;
  /** Messages broadcast and waiting for room in the flow-control window. */
  readonly queued: number;
  /** Messages delivered to listeners (local copies included). */
  readonly delivered: number;
  /** Messages that arrived for a topic nobody here listens to. */
  readonly unrouted: number;
  /** Fragmented messages given up (each also reported as `messagesLost`): pieces missing for good, inconsistent or past the limits. */
  readonly reassemblyFailures: number;
  /** Frames of protocol kinds this channel does not handle. */
  readonly unhandledFrames: number;
  /** Background failures by stage (each also an `error` event). */
  readonly errors: Readonly<Record<ErrorStage, number>>;
}

interface PendingBroadcast {
  readonly pieces: OutgoingData[];
  next: number;
  /** Delivers the member's own copy (loopback) once the message is sent. */
  readonly local: (() => void) | undefined;
  readonly resolve: () => void;
  readonly reject: (error: BlazeError) => void;
}

const RESOLVED: Promise<void> = Promise.resolve();
/** Diagnostics requests answered per second at most, and in a burst. */
const REPORTS_PER_SECOND = 10;
const REPORT_BURST = 20;
/** The most bytes one digest entry takes in a heartbeat: tag and length, a 16-byte id, three 53-bit numbers. */
const MAX_DIGEST_ENTRY_BYTES = 2 + 18 + 3 * 9;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
const encoder = new web.TextEncoder();

/**
 * Creates a channel (ActiveBlaze's broadcast level) and binds its sockets; call `start()` to join the
 * network. Options are checked at once: an invalid one throws `INVALID_OPTION` naming the field.
 */
export async function createChannel(options?: ChannelOptions): Promise<Channel> {
  const channel = new Channel(options);
  await channel.init();
  return channel;
}

/**
 * A channel: topic messaging among the members of a cluster, over multicast or a static list of peers,
 * with the quality of service chosen per channel. Messages of one sender reach every live receiver
 * exactly once and in the sender's order (reliability "nack"), or at most once as fast as possible
 * ("best-effort").
 */
export class Channel implements AsyncDisposable {
  readonly #options: ResolvedChannelOptions;
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #memberId: Uint8Array;
  readonly #key: PeerKey;
  readonly #topics = new Map<string, Set<TopicListener>>();
  readonly #events: Emitter<ChannelEvents>;
  readonly #errors: ErrorReport;
  readonly #observer: MemberObserver;
  readonly #member: DescribedMember;
  readonly #peerWaiters = new Set<() => void>();
  readonly #pending: PendingBroadcast[] = [];
  readonly #scratch: Mutable<OutgoingData> = {
    destination: "",
    addressing: Addressing.TOPIC,
    format: 0,
    payload: NO_BYTES,
    outOfBand: false,
    fragmentIndex: 0,
    fragmentCount: 0,
    messageLength: 0,
    requestId: 0,
  };
  #state: ChannelState = "constructed";
  #endpoint: Endpoint | undefined;
  #protocol: ReliabilityProtocol | undefined;
  #reassembler: Reassembler;
  readonly #driver: Driver;
  /** The channel's own timed work: heartbeats, peer expiry, reassembly expiry. */
  readonly #ticker: TimedUnit = {
    pollTimeout: () => this.#nextHeartbeatAt,
    handleTimeout: (now) => this.#tick(now),
  };
  #nextHeartbeatAt = Number.POSITIVE_INFINITY;
  #incarnation: number;
  #starts = 0;
  #transition: Promise<void> = RESOLVED;
  #delivered = 0;
  #unrouted = 0;
  #reassemblyFailures = 0;
  #unhandledFrames = 0;
  readonly #createdAt: number;
  #reportTokens = REPORT_BURST;
  #reportTokensAt = 0;

  /** Which unit handles which received frames: the multicast protocol's, and those of the levels built on this channel. */
  readonly #routes = new FrameRoutes();
  /** The frame kinds the levels above read by hand, for every endpoint this channel binds. */
  readonly #handReaders = new HandReaders();
  /** The levels built on this channel, as they registered: what each is told of the life cycle, peers and heartbeat. */
  readonly #started = new Set<(context: ChannelContext) => void>();
  readonly #stopping = new Set<() => void>();
  readonly #peerWatchers: Array<{ readonly up: (peer: Peer) => void; readonly down: (peer: Peer, reason: "left" | "timeout") => void }> = [];
  readonly #heartbeatFields: Array<(fields: HeartbeatFields) => HeartbeatFields> = [];
  readonly #keyring: KeyRing | undefined;
  readonly #security: ChannelSecurity | undefined;
  /** Senders heard under security, with their replay windows: kept across restarts and re-binds. */
  readonly #senders = new Map<PeerKey, SenderState>();

  /**
   * @param member internal: the level built on this channel that users hold (a group or cluster channel),
   * which diagnostics describe; this channel itself by default.
   */
  constructor(options?: ChannelOptions, member?: DescribedMember) {
    this.#options = resolveChannelOptions(options);
    this.#errors = new ErrorReport(
      (error, stage) => this.#events.emit("error", { error, stage }),
      () => (this.#options.clock ?? systemClock).now(),
      () => `member ${this.#key.slice(0, 8)}${this.#options.name === "" ? "" : ` (${this.#options.name})`}`,
      this.#options.logger === undefined
        ? undefined
        : (error, stage, suppressed) => this.#observer.log("error", error.message, { stage, code: error.code, error, suppressed: suppressed > 0 ? suppressed : undefined }),
    );
    // Every timer of every level runs through this clock: a fault in one is reported, never fatal.
    this.#clock = guardedClock(this.#options.clock ?? systemClock, (error) => this.#errors.report(internalError("a protocol timer", error), "timer"));
    // The driver guards its turns itself (each unit's, and its own): on the clock as it is, it makes no
    // guarding closure for every turn.
    this.#driver = new Driver(this.#options.clock ?? systemClock, (error) => this.#errors.report(internalError("a protocol unit", error), "timer"));
    this.#random = this.#options.random ?? systemRandom;
    this.#createdAt = this.#clock.now();
    const security = this.#options.security;
    // Insider mode: the member id is the identity's public key's first 16 bytes (bound to it on the wire).
    this.#memberId = security?.identity?.publicKey.slice(0, MEMBER_ID_BYTES) ?? this.#random.fill(new Uint8Array(MEMBER_ID_BYTES));
    if (security !== undefined) {
      this.#keyring = new KeyRing(security.keys, security.primary);
      this.#security = new ChannelSecurity(this.#keyring, () => (this.#state === "started" ? this.#endpoint?.rotation : undefined));
    }
    this.#key = keyOf(this.#memberId);
    this.#incarnation = this.#options.incarnation ?? Date.now();
    this.#reassembler = this.#newReassembler();
    this.#events = new Emitter<ChannelEvents>((error, type) => {
      if (type !== "error") this.#errors.report(error, "listener");
    });
    this.#member = member ?? this;
    this.#observer = new MemberObserver(this, this.#member, this.#options.logger, this.#options.metrics, (error) => this.#errors.report(error, "listener"));
    // The multicast protocol's frames: its stream's data, acks and NACKs, heartbeats, and Totem's and FEC's own.
    this.#routes.add(["multicastStream", "heartbeat", "totemToken", "totemJoin", "totemCommit", "totemRelay", "fecParity"], (peer, frame) => {
      const protocol = this.#protocol!;
      // The endpoint stamped the peer with the datagram's arrival: the time this input is handled at.
      if (frame.case === "data") protocol.onData(peer.key, peer.incarnation, frame, peer.lastHeardAt);
      else protocol.onControl(peer.key, peer.incarnation, frame.frame, peer.lastHeardAt);
    });
  }

  /** This member's id (32 hex digits). */
  get id(): string {
    return this.#key;
  }

  get name(): string {
    return this.#options.name;
  }

  get cluster(): string {
    return this.#options.cluster;
  }

  get state(): ChannelState {
    return this.#state;
  }

  /** How often this member sends heartbeats, in ms. */
  get heartbeatIntervalMs(): number {
    return this.#options.heartbeatIntervalMs;
  }

  /** The incarnation this member runs as (grows on every start). */
  get incarnation(): number {
    return this.#incarnation;
  }

  /** The unicast address this member sends from (after `init()`). */
  get localAddress(): Address {
    return this.#requireEndpoint("localAddress").localAddress;
  }

  /** The keyring and key rotation of a channel with `security`; undefined without. */
  get security(): ChannelSecurity | undefined {
    return this.#security;
  }

  /** The peers this member hears now. */
  get peers(): PeerInfo[] {
    return [...(this.#endpoint?.peers.values() ?? [])].map(peerInfo);
  }

  get stats(): ChannelStats {
    return {
      state: this.#state,
      reliability: this.#options.reliability,
      peers: this.#endpoint?.peers.size ?? 0,
      network: this.#endpoint?.networkStats ?? emptyNetworkStats(),
      dropped: (this.#endpoint?.drops ?? new DropCounters()).snapshot(),
      protocol: { ...(this.#protocol?.stats ?? emptyStats()) },
      queued: this.#pending.length,
      delivered: this.#delivered,
      unrouted: this.#unrouted,
      reassemblyFailures: this.#reassemblyFailures,
      unhandledFrames: this.#unhandledFrames,
      errors: { ...this.#errors.counts },
    };
  }

  /** Binds the sockets; the configuration is fixed from here on. Idempotent once initialized. */
  init(): Promise<void> {
    return this.#serialise(async () => {
      if (this.#state === "initialized") return;
      if (this.#state !== "constructed") {
        throw new BlazeError("ILLEGAL_STATE", `init() on a ${this.#state} channel: shutDown() it first`);
      }
      await this.#bind();
    });
  }

  /** Starts talking to peers (initializing first if needed). Idempotent. */
  start(): Promise<void> {
    return this.#serialise(async () => {
      if (this.#state === "started") return;
      if (this.#state === "constructed") await this.#bind();
      const endpoint = this.#endpoint!;
      if (this.#starts++ > 0) this.#incarnation++;
      endpoint.start(this.#incarnation);
      this.#protocol = this.#createProtocol(endpoint);
      if (isTimed(this.#protocol)) this.#driver.add(this.#protocol);
      this.#state = "started";
      const context: ChannelContext = {
        endpoint,
        driver: this.#driver,
        clock: this.#clock,
        random: this.#random,
        incarnation: this.#incarnation,
        heartbeatNow: () => this.#sendHeartbeat(),
        receiverGone: (peer) => this.#protocol?.onReceiverGone?.(peer, this.#clock.now()),
      };
      for (const started of this.#started) started(context);
      this.#sendHeartbeat();
      this.#nextHeartbeatAt = this.#clock.now() + this.#options.heartbeatIntervalMs;
      this.#driver.add(this.#ticker);
      this.#observer.watch();
      this.#observer.log("info", `started as incarnation ${this.#incarnation} at ${endpoint.localAddress.host}:${endpoint.localAddress.port}`, { event: "started" });
    });
  }

  /** Stops talking to peers; `start()` resumes (as a new incarnation). Broadcasts still queued fail with `CLOSED`. Idempotent. */
  stop(): Promise<void> {
    return this.#serialise(async () => this.#stopNow());
  }

  /** Stops and releases the sockets; the channel is Constructed again and may be initialized anew. Idempotent. */
  shutDown(): Promise<void> {
    return this.#serialise(async () => {
      this.#stopNow();
      if (this.#endpoint !== undefined) await this.#endpoint.close();
      this.#endpoint = undefined;
      this.#state = "constructed";
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutDown();
  }

  /**
   * Broadcasts a message on a topic. Resolves once the message is on its way (immediately, unless the
   * flow-control window is full: then when there is room). Throws `ILLEGAL_STATE` unless started,
   * `MESSAGE_TOO_LARGE` past `maxMessageBytes`, `INVALID_ARGUMENT` for a bad topic.
   */
  broadcast(destination: string, message: BlazeMessage | Uint8Array, options: BroadcastOptions = {}): Promise<void> {
    const protocol = this.#protocol;
    if (this.#state !== "started" || protocol === undefined) {
      throw new BlazeError("ILLEGAL_STATE", `broadcast() on a ${this.#state} channel: start() it first`);
    }
    checkTopic(destination);
    const { payload, format } = encodePayload(message);
    if (payload.length > this.#options.maxMessageBytes) {
      throw new BlazeError(
        "MESSAGE_TOO_LARGE",
        `a message of ${payload.length} bytes exceeds maxMessageBytes (${this.#options.maxMessageBytes})`,
      );
    }
    const outOfBand = options.outOfBand ?? false;
    // The member's own copy is delivered once the message is on its way (never for one that fails queued),
    // unless the protocol delivers it in its own order (total order).
    const local =
      this.#options.loopback && this.#topics.has(destination) && protocol.deliversOwnMessages !== true
        ? () => this.#clock.defer(() => this.#dispatch(destination, this.id, payload, format, 0, outOfBand))
        : undefined;
    const pieceBytes = this.#endpoint!.maxPayloadBytes(destination) - (protocol.relayOverheadBytes ?? 0);
    if (this.#pending.length === 0 && payload.length <= pieceBytes && protocol.canSend(payload.length)) {
      // The common case: one piece, room in the window. Protocols copy what they send at once, so one
      // scratch object serves every message.
      const piece = this.#scratch;
      piece.destination = destination;
      piece.format = format;
      piece.outOfBand = outOfBand;
      piece.safe = options.safe;
      piece.payload = payload;
      protocol.send(piece, this.#clock.now());
      piece.payload = NO_BYTES;
      // A send is an input: what it changed (a deadline of the protocol) is taken up at the end of the turn.
      this.#driver.touch();
      local?.();
      return RESOLVED;
    }
    const pieces = splitMessage(
      { destination, addressing: Addressing.TOPIC, format, outOfBand, requestId: 0 },
      payload,
      pieceBytes,
    );
    if (options.safe !== undefined) for (const piece of pieces) (piece as Mutable<OutgoingData>).safe = options.safe;
    let sent = 0;
    if (this.#pending.length === 0) {
      const now = this.#clock.now();
      while (sent < pieces.length && protocol.canSend(pieces[sent]!.payload.length)) protocol.send(pieces[sent++]!, now);
      this.#driver.touch();
      if (sent === pieces.length) {
        local?.();
        return RESOLVED;
      }
    }
    return new Promise((resolve, reject) => this.#pending.push({ pieces, next: sent, local, resolve, reject }));
  }

  /**
   * Calls `listener` for every message on `destination` (ActiveBlaze's addBlazeTopicMessageListener);
   * returns a function that stops it.
   */
  onTopic(destination: string, listener: TopicListener): () => void {
    checkTopic(destination);
    let listeners = this.#topics.get(destination);
    if (listeners === undefined) {
      listeners = new Set();
      this.#topics.set(destination, listeners);
    }
    listeners.add(listener);
    return () => {
      const current = this.#topics.get(destination);
      if (current === undefined) return;
      current.delete(listener);
      if (current.size === 0) this.#topics.delete(destination);
    };
  }

  /**
   * The messages on `destination` as an async iterator; it ends when `signal` aborts or the loop breaks.
   * At most `highWaterMark` messages (default 10,000) wait unread: past it the subscription ends with
   * `OVERFLOW` once those are read, or (`overflow: "drop-oldest"`) drops the oldest, counting them in
   * `dropped`. A listener (`onTopic`) has no such bound: it runs as each message arrives.
   */
  subscribe(destination: string, options: SubscribeOptions = {}): Subscription<TopicMessage> {
    checkTopic(destination);
    let off = () => {};
    const iterator = new PushIterator<TopicMessage>(() => off(), options, `the subscription to topic "${destination}"`);
    if (!iterator.ended) off = this.onTopic(destination, (message) => iterator.push(message));
    return iterator;
  }

  /** Adds an event listener; returns a function that removes it. */
  on<K extends keyof ChannelEvents>(type: K, listener: (event: ChannelEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  off<K extends keyof ChannelEvents>(type: K, listener: (event: ChannelEvents[K]) => void): void {
    this.#events.off(type, listener);
  }

  // --- internal: how a level built on a channel (the group channel, the cluster's state map) takes part in it ---

  /** @internal What this member tells about itself (its log, metrics and recent events). */
  get observer(): MemberObserver {
    return this.#observer;
  }

  /** @internal Reports a background failure as an `error` event. */
  reportError(error: BlazeError, stage: ErrorStage): void {
    this.#errors.report(error, stage);
  }

  /** @internal Hands received frames of `routes` to `handler` (after the handlers registered before it); returns the function that stops it. */
  routeFrames<R extends FrameRoute>(routes: readonly R[], handler: FrameHandler<R>): () => void {
    return this.#routes.add(routes, handler);
  }

  /**
   * @internal Has this channel's frames of `kind` read by `read`, into its level's own form (they reach
   * that route's handlers as such; what it declines, as the generated message); returns the function
   * that stops it.
   */
  readFramesByHand(kind: HandReadCase, read: FrameReader): () => void {
    return this.#handReaders.set(kind, read);
  }

  /**
   * @internal Calls `started` each time the channel starts (the endpoint is live and the multicast protocol
   * running), and `stopping` each time it stops (the endpoint still sends), in registration order.
   * Returns the function that stops calling them.
   */
  onLifecycle(started: (context: ChannelContext) => void, stopping: () => void): () => void {
    this.#started.add(started);
    this.#stopping.add(stopping);
    return () => {
      this.#started.delete(started);
      this.#stopping.delete(stopping);
    };
  }

  /** @internal Calls `up` and `down` as peers come and go, before the channel's `peerUp` and `peerDown` events. */
  watchPeers(up: (peer: Peer) => void, down: (peer: Peer, reason: "left" | "timeout") => void): void {
    this.#peerWatchers.push({ up, down });
  }

  /** @internal `add` adds to this member's periodic heartbeat (the queues it consumes, say). */
  extendHeartbeat(add: (fields: HeartbeatFields) => HeartbeatFields): void {
    this.#heartbeatFields.push(add);
  }

  /**
   * Resolves once at least `count` peers are heard. Default timeout 10 s; rejects with `TIMEOUT` (saying
   * what may be wrong: static peers that do not resolve or never answered, datagrams of other clusters)
   * or `ABORTED`.
   */
  waitForPeers(count: number, options: WaitOptions = {}): Promise<void> {
    return waitUntil(
      this.#clock,
      () => (this.#endpoint?.peers.size ?? 0) >= count,
      (wake) => {
        this.#peerWaiters.add(wake);
        return () => this.#peerWaiters.delete(wake);
      },
      `${count} peer(s)`,
      options,
      10_000,
    ).catch((error: unknown) => {
      if (!isTimeoutError(error)) throw error;
      throw new BlazeError("TIMEOUT", `${error.message}: ${this.#whyNoPeers()}`);
    });
  }

  // What a member that hears too few peers can check, for the TIMEOUT of waitForPeers.
  #whyNoPeers(): string {
    const endpoint = this.#endpoint;
    const heard = `${endpoint?.peers.size ?? 0} heard`;
    if (endpoint === undefined || this.#state !== "started") return `${heard}; the channel is ${this.#state}, not started`;
    const network = this.#options.network;
    const where =
      network.type === "multicast"
        ? `multicast ${formatAddress({ host: network.group, port: network.port })} on ${network.interface}`
        : endpoint.describeSeeds() || "every static peer answers";
    const otherClusters = endpoint.drops.snapshot().WRONG_CLUSTER;
    const clusters = otherClusters > 0 ? `; ${otherClusters} datagram(s) of other clusters arrived (this is cluster "${this.#options.cluster}")` : "";
    const pending = endpoint.networkStats.pendingSenders;
    const admitting = pending > 0 ? `; ${pending} sender(s) have not answered admission challenges` : "";
    return `${heard}; ${where}${clusters}${admitting}`;
  }

  // Life-cycle calls run one at a time, in call order.
  #serialise(step: () => Promise<void>): Promise<void> {
    const next = this.#transition.then(step);
    this.#transition = next.catch(() => undefined);
    return next;
  }

  async #bind(): Promise<void> {
    const security = await this.#securityConfig();
    const endpoint = new Endpoint(
      {
        cluster: this.#options.cluster,
        memberId: this.#memberId,
        network: this.#options.network as NetworkConfig,
        maxDatagramBytes: this.#options.maxDatagramBytes,
        peerTimeoutMs: this.#options.peerTimeoutMs,
        socketBufferBytes: this.#options.socketBufferBytes,
        maxPeers: this.#options.maxPeers,
        ...(security === undefined ? {} : { security }),
        resolver: this.#options.resolver ?? (async (name) => (await runtimeAdapters()).lookupHost(name)),
        handReaders: this.#handReaders,
      },
      this.#clock,
      this.#driver,
      this.#random,
      {
        frames: (peer, frames) => this.#onFrames(peer, frames),
        peerUp: (peer) => this.#onPeerUp(peer),
        peerDown: (peer, reason) => this.#onPeerDown(peer, reason),
        error: (error, stage) => this.#errors.report(error, stage),
        diagnostics: (request, maxFrameBytes) => this.#report(request, maxFrameBytes),
      },
    );
    await endpoint.bind(this.#options.transport ?? (await (await runtimeAdapters()).runtimeTransport()));
    this.#endpoint = endpoint;
    this.#state = "initialized";
  }

  // The crypto provider, and insider mode's identity checked against it.
  async #securityConfig() {
    const options = this.#options.security;
    if (options === undefined) return undefined;
    const provider = await securityProvider(options, "channel");
    return { options, keyring: this.#keyring!, provider, senders: this.#senders };
  }

  // A diagnostics request: this member's report, unless diagnostics are off or too many came at once
  // (building one costs more than a datagram: a few a second is what probes and dashboards need).
  #report(request: DiagnosticsRequest, maxFrameBytes: number): Uint8Array | undefined {
    const now = this.#clock.now();
    this.#reportTokens = Math.min(REPORT_BURST, this.#reportTokens + ((now - this.#reportTokensAt) * REPORTS_PER_SECOND) / 1000);
    this.#reportTokensAt = now;
    if (!this.#options.diagnostics || this.#reportTokens < 1) return undefined;
    this.#reportTokens--;
    return reportFrame(this.#member, {
      nonce: request.nonce,
      includeEntries: request.includeEntries,
      uptimeMs: now - this.#createdAt,
      peers: [...this.#endpoint!.peers.values()].map((peer) => ({ key: peer.key, incarnation: peer.incarnation, address: peer.address, silentMs: now - peer.lastHeardAt })),
      recent: this.#observer.recent,
      maxFrameBytes,
    });
  }

  #stopNow(): void {
    if (this.#state !== "started") return;
    this.#observer.log("info", "stopped", { event: "stopped" });
    for (const stopping of this.#stopping) stopping();
    this.#driver.remove(this.#ticker);
    this.#nextHeartbeatAt = Number.POSITIVE_INFINITY;
    if (isTimed(this.#protocol)) this.#driver.remove(this.#protocol);
    this.#protocol?.close();
    this.#protocol = undefined;
    this.#endpoint?.stop();
    this.#reassembler = this.#newReassembler();
    for (const pending of this.#pending.splice(0)) {
      pending.reject(new BlazeError("CLOSED", "the channel stopped before the message could be sent"));
    }
    this.#state = "stopped";
  }

  #newReassembler(): Reassembler {
    return new Reassembler({
      limits: reassemblyLimits(this.#options.maxMessageBytes),
      ordered: this.#options.reliability !== "best-effort",
      timeoutMs: this.#options.peerTimeoutMs,
      lost: ({ peer, count, firstSeq }) => {
        this.#reassemblyFailures++;
        this.#events.emit("messagesLost", { peer, count, firstSeq, lastSeq: firstSeq + count - 1 });
      },
    });
  }

  #createProtocol(endpoint: Endpoint): ReliabilityProtocol {
    const host: ProtocolHost = {
      random: this.#random,
      localKey: endpoint.localKey,
      multicastData: (data) => endpoint.multicastData(data),
      multicastFrame: (frame) => endpoint.multicastFrame(frame),
      unicastFrame: (peer, frame) => endpoint.unicastFrame(peer, frame),
      deliver: (peer, data, incarnation) => this.#onDeliver(peer, data, incarnation),
      report: (event) => this.#onProtocolEvent(event),
      writable: () => this.#pump(),
      atEndOfTurn: (fn) => this.#driver.atEndOfTurn(fn),
    };
    const now = this.#clock.now();
    switch (this.#options.reliability) {
      case "best-effort":
        return new BestEffortProtocol(host);
      case "totem":
        return new TotemProtocol(host, this.#incarnation, this.#options.totem, now);
      case "fec":
        return new FecProtocol(host, this.#incarnation, this.#options.fec, this.#options.nack, now);
      default:
        return new NackProtocol(host, this.#incarnation, this.#options.nack, now);
    }
  }

  // The window opened: send queued broadcasts, oldest first.
  #pump(): void {
    const protocol = this.#protocol;
    if (protocol === undefined) return;
    const now = this.#clock.now();
    while (this.#pending.length > 0) {
      const head = this.#pending[0]!;
      while (head.next < head.pieces.length && protocol.canSend(head.pieces[head.next]!.payload.length)) {
        protocol.send(head.pieces[head.next++]!, now);
      }
      if (head.next < head.pieces.length) return;
      this.#pending.shift();
      head.local?.();
      head.resolve();
    }
  }

  #onFrames(peer: Peer, frames: readonly ReceivedFrame[]): void {
    if (this.#protocol === undefined) return;
    for (const frame of frames) {
      const route = routeOf(frame);
      if (route !== undefined && !this.#routes.dispatch(route, peer, frame)) this.#unhandledFrames++;
    }
  }

  #onDeliver(peer: PeerKey, data: DataFields, incarnation: number): void {
    // A protocol that delivers this member's own messages (total order) hands them up here too.
    if (peer === this.#key && !this.#options.loopback) return;
    const payload = this.#reassembler.accept(peer, incarnation, data);
    if (payload !== undefined) this.#dispatch(data.destination, peer, payload, data.format, data.seq, data.outOfBand);
  }

  #dispatch(destination: string, sender: string, payload: Uint8Array, format: number, seq: number, outOfBand: boolean): void {
    const listeners = this.#topics.get(destination);
    if (listeners === undefined) {
      this.#unrouted++;
      return;
    }
    this.#delivered++;
    const message = new TopicMessage(destination, sender, payload, formatName(format), seq, outOfBand);
    for (const listener of listeners) {
      try {
        listener(message);
      } catch (error) {
        this.#errors.report(new BlazeError("LISTENER_ERROR", `a listener of topic "${destination}" threw`, { cause: error }), "listener");
      }
    }
  }

  #onPeerUp(peer: Peer): void {
    this.#protocol?.onPeerUp(peer.key, peer.incarnation, peer.lastHeardAt);
    for (const watcher of this.#peerWatchers) watcher.up(peer);
    // Tell a newcomer at once where our stream stands, so it neither waits for nor misses messages.
    if (this.#protocol !== undefined) for (const frame of this.#heartbeatFrames()) this.#endpoint!.unicastFrame(peer.key, frame);
    this.#events.emit("peerUp", { peer: peerInfo(peer) });
    for (const wake of [...this.#peerWaiters]) wake();
  }

  #onPeerDown(peer: Peer, reason: "left" | "timeout"): void {
    this.#protocol?.onPeerDown(peer.key, this.#clock.now());
    for (const watcher of this.#peerWatchers) watcher.down(peer, reason);
    if (this.#protocol?.endsStreams !== true) this.#reassembler.forget(peer.key);
    this.#events.emit("peerDown", { peer: peerInfo(peer), reason });
  }

  #onProtocolEvent(event: ProtocolEvent): void {
    switch (event.type) {
      case "receiverUnresponsive":
        this.#events.emit("receiverUnresponsive", { peer: event.peer, silentMs: event.silentMs });
        return;
      case "receiverResponsive":
        this.#events.emit("receiverResponsive", { peer: event.peer });
        return;
      case "messagesLost":
        this.#events.emit("messagesLost", { peer: event.peer, count: event.count, firstSeq: event.firstSeq, lastSeq: event.lastSeq });
        return;
      case "streamEnded":
        this.#reassembler.cut(event.peer, event.incarnation);
        return;
    }
  }

  // One heartbeat, or several when the digest (an entry per sender heard) outgrows a datagram: each
  // carries the stream's own position and a share of the digest; the level above adds to the first.
  #heartbeatFrames(): Uint8Array[] {
    const { digest, ...stream } = this.#protocol!.heartbeat();
    const first: HeartbeatFields = { ...stream, digest: [], intervalMs: this.#options.heartbeatIntervalMs };
    const head = this.#heartbeatFields.reduce((fields, add) => add(fields), first);
    const perFrame = Math.max(1, Math.floor((this.#endpoint!.maxFrameBytes - heartbeatFrame(head).length) / MAX_DIGEST_ENTRY_BYTES));
    const frames: Uint8Array[] = [];
    for (let i = 0; i === 0 || i < digest.length; i += perFrame) {
      frames.push(heartbeatFrame({ ...(i === 0 ? head : first), digest: digest.slice(i, i + perFrame) }));
    }
    return frames;
  }

  #sendHeartbeat(): void {
    for (const frame of this.#heartbeatFrames()) this.#endpoint!.multicastFrame(frame);
  }

  #tick(now: number): void {
    if (now < this.#nextHeartbeatAt || this.#state !== "started") return;
    // A tick far later than due means this process stalled (a long pause, a blocking handler): the
    // datagrams its peers sent meanwhile wait behind this timer, so their silence proves nothing yet.
    const stalled = now - this.#nextHeartbeatAt > this.#options.heartbeatIntervalMs;
    this.#nextHeartbeatAt = now + this.#options.heartbeatIntervalMs;
    this.#sendHeartbeat();
    if (!stalled) this.#endpoint!.expirePeers();
    this.#reassembler.expire(now);
  }

  #requireEndpoint(what: string): Endpoint {
    if (this.#endpoint === undefined) throw new BlazeError("ILLEGAL_STATE", `${what} needs an initialized channel`);
    return this.#endpoint;
  }
}

function isTimed(protocol: ReliabilityProtocol | undefined): protocol is ReliabilityProtocol & TimedUnit {
  return protocol?.pollTimeout !== undefined && protocol.handleTimeout !== undefined;
}

function peerInfo(peer: Peer): PeerInfo {
  return { id: peer.key, incarnation: peer.incarnation, address: peer.address };
}

function checkTopic(destination: string): void {
  if (typeof destination !== "string" || destination.length === 0) {
    throw new BlazeError("INVALID_ARGUMENT", "a topic is a non-empty string", { path: ["destination"] });
  }
  // UTF-8 takes at most 3 bytes per UTF-16 unit: only longer topics need encoding to be measured.
  if (destination.length * 3 > MAX_NAME_BYTES && encoder.encode(destination).length > MAX_NAME_BYTES) {
    throw new BlazeError("INVALID_ARGUMENT", `a topic is at most ${MAX_NAME_BYTES} bytes`, { path: ["destination"] });
  }
}

// The running runtime's adapters (Deno's, Bun's or Node's), loaded only for what the options do not inject.
function runtimeAdapters(): Promise<typeof import("../adapters/runtime.ts")> {
  return import("../adapters/runtime.ts");
}
