import { ErrorReport, type ErrorStage } from "../channel/error-report.ts";
import { Emitter, PushIterator } from "../channel/events.ts";
import { formatName, type TopicMessage } from "../channel/topic-message.ts";
import type { WaitOptions } from "../channel/wait.ts";
import { ClusterChannel } from "../cluster/cluster-channel.ts";
import { stateOptionsSchema } from "../cluster/options.ts";
import { BlazeError, internalError } from "../errors.ts";
import { GroupChannel, type GroupChannelApi } from "../group/group-channel.ts";
import type { GroupMessage } from "../group/group-message.ts";
import type { Member, View } from "../group/view.ts";
import type { BlazeMessage } from "../message/blaze-message.ts";
import { encodePayload } from "../message/payload-message.ts";
import { parseOptions } from "../options.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { type Clock, guardedClock, systemClock, type TimerHandle } from "../transport/clock.ts";
import { DropCounters, type DropReason } from "../wire/drop-reason.ts";
import type { AbortSignalLike } from "../web.ts";
import { CopiedMap } from "./copied-map.ts";
import { MapCopy, type MapCopyHost, type MapCopyStats } from "./map-copy.ts";
import { natsBus } from "./nats-bus.ts";
import { type RelayChannelOptions, resolveRelayOptions, type ResolvedRelayOptions } from "./options.ts";
import { OriginStreams, type Resend } from "./origin-streams.ts";
import { ReceivedStreams, type ReceivedStats } from "./received-streams.ts";
import { decodeRelay, encodeRelay, type RelayBody, type RelayedMessage, type SiteAnnouncement, type SiteMember, type StreamKind } from "./relay-frames.ts";
import type { SiteBusFactory } from "./site-bus.ts";
import { type GatewayStats, MAX_SITES, SiteGateway } from "./site-gateway.ts";
import { SiteMessage } from "./site-message.ts";

/** The reserved topic and inbox of the relay's own frames inside a site. */
const RELAY = "$relay";
/** Members say which site they are of in their group metadata. */
const SITE_METADATA = "activeblaze.relay.site";
/**
 * The largest relayed payload: what fits a NATS message under the server's default `max_payload`
 * (1 MiB) with its frame around it. Larger messages stay within a site.
 */
export const MAX_RELAYED_PAYLOAD_BYTES = 1_000_000;
/** A frame on the relay topic or inbox is at most a relayed payload and its headers (or a table of many sites). */
const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** A site as a member sees it. */
export interface SiteInfo {
  readonly name: string;
  /** This member's own site. */
  readonly local: boolean;
  /** Up: its gateway announced it within `siteTimeoutMs` (the local site: while this member is in its group). */
  readonly up: boolean;
  readonly gateway: SiteMember | undefined;
  readonly members: readonly SiteMember[];
}

/** Where a message goes: a member of a site. A `SiteMember` from `getSites()` will do. */
export interface SiteAddress {
  readonly site: string;
  /** Member id (32 hex digits). */
  readonly id: string;
}

export type SiteMessageListener = (message: SiteMessage) => void | Promise<void>;

/** Events of a relay channel, by name. */
export interface RelayEvents {
  /** Another site came up (its gateway was heard), or was first heard of. */
  siteUp: { readonly site: string; readonly gateway: SiteMember };
  /** Another site went down: not announced for `siteTimeoutMs`, or this site's gateway lost the bus. */
  siteDown: { readonly site: string };
  /** A site's gateway changed (its coordinator changed): this site's own, or another's. */
  gatewayChange: { readonly site: string; readonly gateway: SiteMember; readonly previous: SiteMember | undefined };
  /** Messages `firstSeq`–`lastSeq` of an origin's stream were skipped for good: their origin released them while this site was down. */
  messagesLost: { readonly origin: SiteMember; readonly stream: StreamKind; readonly firstSeq: number; readonly lastSeq: number; readonly count: number };
  /** Point-to-point messages to a member of another site that could not be delivered: no such member there, or its site went down. */
  undeliverable: { readonly target: SiteMember; readonly reason: "noSuchMember" | "siteDown" };
  /** A background failure (see the channel's `error` event). */
  error: { readonly error: BlazeError; readonly stage: ErrorStage };
}

export interface RelayStats {
  readonly site: string;
  readonly gateway: boolean;
  /** Relayed messages (and their payload bytes) this member holds until the sites acknowledge them. */
  readonly held: number;
  readonly heldBytes: number;
  /** Sends waiting for room in the window. */
  readonly waiting: number;
  /** Relayed messages sent again (after a gateway change, or unacknowledged for `resendTimeoutMs`). */
  readonly resent: number;
  /** Streams from other sites this member follows. */
  readonly streams: number;
  readonly received: Readonly<ReceivedStats>;
  /** Relay frames refused (from a member or the bus), by reason. */
  readonly dropped: Readonly<Record<DropReason, number>>;
  /** This member's counters as a gateway (since it last became one). */
  readonly bus: Readonly<GatewayStats> | undefined;
  /** The map's copy at this member as a gateway (since it last became one); undefined without `relay.map` or when not the gateway. */
  readonly mapCopy: Readonly<MapCopyStats> | undefined;
}

interface Call {
  readonly target: SiteMember;
  readonly resolve: (message: SiteMessage) => void;
  readonly reject: (error: BlazeError) => void;
  readonly timer: TimerHandle;
  readonly cleanUp: () => void;
}

interface Waiting {
  readonly bytes: number;
  readonly go: () => void;
  readonly reject: (error: BlazeError) => void;
}

/**
 * Creates a relay channel and binds its sockets; `join()` joins the site. Options are a group
 * channel's plus `relay` ({@link RelayOptions}); invalid ones throw `INVALID_OPTION` naming the field.
 */
export async function createRelayChannel(options: RelayChannelOptions): Promise<RelayChannel> {
  const channel = new RelayChannel(options);
  await channel.group.init();
  return channel;
}

/**
 * A member of one site of several bridged over NATS (JGroups' RELAY2/RELAY3, NATS gateways): each
 * site is an ordinary group (`relay.group`, by default the first of `groups`), and its coordinator is
 * the site's gateway — the one member connected to NATS — so the role fails over with the
 * coordinator. Messages on the topics in `relay.topics` reach every member of every site; messages to
 * a member of another site (a `SiteAddress`), requests and replies cross through both sites'
 * gateways. Everything else is the site's group channel (`group`), used as it is.
 *
 * Delivery across the bridge keeps each sender's order and survives gateway crashes on either side:
 * every relayed message is numbered in its origin's stream and held by its origin until every site it
 * went to acknowledged it — and a site acknowledges only what every member it was for delivered. A new
 * gateway gets what is unacknowledged again; receivers drop what they had by number (see
 * origin-streams.ts and the README's "Sites bridged over NATS").
 */
export class RelayChannel implements AsyncDisposable {
  /** The site's group channel: membership, and everything that stays within the site (a cluster channel with `relay.map`). */
  readonly group: GroupChannelApi;
  /** The site's cluster channel (`group` itself), with `relay.map`. */
  readonly #cluster: ClusterChannel | undefined;
  readonly #options: ResolvedRelayOptions;
  readonly #siteGroup: string;
  readonly #relayed: ReadonlySet<string>;
  readonly #clock: Clock;
  readonly #errors: ErrorReport;
  readonly #events: Emitter<RelayEvents>;
  readonly #connect: SiteBusFactory;
  readonly #drops = new DropCounters();
  readonly #received: ReceivedStreams;
  readonly #topicListeners = new Map<string, Map<SiteMessageListener, () => void>>();
  readonly #inboxListeners = new Map<string, Set<SiteMessageListener>>();
  readonly #calls = new Map<number, Call>();
  readonly #waiting: Waiting[] = [];
  /** The other sites up, as this site's gateway last told. */
  #table = new Map<string, SiteAnnouncement>();
  /** Sites heard of that are down now. */
  readonly #down = new Map<string, SiteAnnouncement>();
  #tableFrom: PeerKey | undefined;
  #origin: OriginStreams | undefined;
  #gateway: SiteGateway | undefined;
  /** The map as copied across sites (with `relay.map`), and its copy while this member is the gateway. */
  readonly #copied: CopiedMap | undefined;
  #mapCopy: MapCopy | undefined;
  /** The state map's `requestTimeoutMs`: how long the copy's writes wait (with `relay.map`). */
  readonly #mapTimeoutMs: number;
  #gatewayMember: SiteMember | undefined;
  #reportTimer: TimerHandle | undefined;
  #resendTimer: TimerHandle | undefined;
  #resendAt = Number.POSITIVE_INFINITY;
  #nextCallId = 1;
  #resent = 0;
  readonly #offs: Array<() => void> = [];

  constructor(options: RelayChannelOptions) {
    const { relay, group } = resolveRelayOptions(options);
    this.#options = relay;
    this.#siteGroup = relay.group ?? group.groups?.[0] ?? "default";
    this.#relayed = new Set(relay.topics);
    this.#connect = relay.bus ?? natsBus(relay.nats!);
    const siteOptions = { ...group, metadata: { ...group.metadata, [SITE_METADATA]: relay.site } };
    const cluster = relay.map === undefined ? undefined : new ClusterChannel(siteOptions);
    this.#cluster = cluster;
    this.group = cluster ?? new GroupChannel(siteOptions);
    this.#errors = new ErrorReport(
      (error, stage) => this.#events.emit("error", { error, stage }),
      () => (group.clock ?? systemClock).now(),
      () => `member ${this.group.id.slice(0, 8)} of site ${relay.site}`,
      undefined,
    );
    this.#clock = guardedClock(group.clock ?? systemClock, (error) => this.#errors.report(internalError("a relay timer", error), "timer"));
    this.#events = new Emitter<RelayEvents>((error, type) => {
      if (type !== "error") this.#errors.report(error, "listener");
    });
    this.#received = new ReceivedStreams(relay.windowMessages, relay.windowBytes, relay.maxStreams);
    // Without relay.map there is no state option (resolveRelayOptions refuses one): the defaults, unused.
    const state = parseOptions(stateOptionsSchema, group.state, "state");
    this.#mapTimeoutMs = state.requestTimeoutMs;
    this.#copied =
      relay.map === undefined || cluster === undefined
        ? undefined
        : new CopiedMap(
            {
              raw: () => cluster.map,
              site: relay.site,
              now: () => this.#clock.now(),
              delay: (ms) => new Promise((resolve) => this.#clock.setTimer(ms, resolve)),
              requestTimeoutMs: state.requestTimeoutMs,
              retryDelayMs: state.retryDelayMs,
              reportListenerError: (error) => this.#errors.report(error, "listener"),
            },
            relay.map,
          );
  }

  /**
   * The site's replicated map, copied to the other sites (with `relay.map`): each site its own map,
   * master and locks; writes of each site reach the others asynchronously and merge by their stamps
   * (see {@link CopiedMap}). Throws `ILLEGAL_STATE` without `relay.map`.
   */
  get map(): CopiedMap {
    if (this.#copied === undefined) throw new BlazeError("ILLEGAL_STATE", "a relay channel has a copied map only with relay.map");
    return this.#copied;
  }

  /** This member's site. */
  get site(): string {
    return this.#options.site;
  }

  /** This member, with its site. */
  get local(): SiteMember {
    return { site: this.#options.site, id: this.group.id, incarnation: this.group.incarnation, name: this.group.name };
  }

  /** Whether this member is its site's gateway (its group's coordinator). */
  get isGateway(): boolean {
    return this.#gateway !== undefined;
  }

  /** Joins the site (the group channel's `join()`); resolves with the views once in every group. */
  async join(options: WaitOptions = {}): Promise<View[]> {
    if (this.#offs.length === 0) {
      this.#offs.push(
        this.group.on("viewChange", (event) => event.group === this.#siteGroup && this.#guard(() => this.#viewChanged(event.view, event.previous))),
      );
      this.#offs.push(this.group.onTopic(RELAY, this.#onRelayTopic));
      this.#offs.push(this.group.onInbox(RELAY, (message) => this.#guard(() => this.#onRelayInbox(message))));
      const copied = this.#copied;
      if (copied !== undefined && this.#cluster !== undefined) {
        this.#offs.push(
          this.#cluster.map.on("change", (change) =>
            this.#guard(() => {
              copied.changed(change);
              this.#mapCopy?.changed(change);
            }),
          ),
        );
      }
    }
    await this.group.start();
    this.#origin ??= new OriginStreams(this.local, this.#options.windowMessages, this.#options.windowBytes);
    return this.group.join(options);
  }

  /** Leaves the site gracefully (another member becomes the gateway) and stops. */
  async leave(): Promise<void> {
    await this.#stopRelay();
    await this.group.leave();
  }

  /** Leaves, and releases the sockets. */
  async close(): Promise<void> {
    await this.#stopRelay();
    await this.group.shutDown();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // --- sites ---

  /** Every site known here: this one first, then the others (up or down) by name. */
  getSites(): SiteInfo[] {
    const view = this.group.getView(this.#siteGroup);
    const members = view === undefined ? [] : this.#siteMembers(view);
    const coordinator = view?.coordinator;
    const local: SiteInfo = {
      name: this.site,
      local: true,
      up: view !== undefined,
      gateway: coordinator === undefined ? undefined : this.#member(coordinator),
      members,
    };
    const others = [
      ...[...this.#table.values()].map((a) => ({ name: a.site, local: false, up: true, gateway: a.gateway, members: a.members })),
      ...[...this.#down.values()].map((a) => ({ name: a.site, local: false, up: false, gateway: undefined, members: [] as SiteMember[] })),
    ].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return [local, ...others];
  }

  /** Adds an event listener; returns a function that removes it. */
  on<K extends keyof RelayEvents>(type: K, listener: (event: RelayEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  get stats(): RelayStats {
    return {
      site: this.site,
      gateway: this.isGateway,
      held: this.#origin?.heldMessages ?? 0,
      heldBytes: this.#origin?.heldBytes ?? 0,
      waiting: this.#waiting.length,
      resent: this.#resent,
      streams: this.#received.size,
      received: { ...this.#received.stats },
      dropped: this.#drops.snapshot(),
      bus: this.#gateway === undefined ? undefined : { ...this.#gateway.stats },
      mapCopy: this.#mapCopy === undefined ? undefined : { ...this.#mapCopy.stats },
    };
  }

  // --- topics ---

  /**
   * Broadcasts on a topic: to every member of every site up when it is one of `relay.topics`, else to
   * this site. Resolves once on its way (when the window of held messages has room).
   */
  broadcast(topic: string, message: BlazeMessage | Uint8Array): Promise<void> {
    if (!this.#relayed.has(topic)) return this.group.broadcast(topic, message);
    try {
      const origin = this.#requireStarted();
      const { payload, format } = encodePayload(message);
      checkRelayedSize(payload);
      return this.#whenRoom(payload.length, () => {
        const relayed = origin.topic(topic, payload, format, this.#clock.now());
        // Members of this site (and this one, through the channel's loopback) deliver it from the broadcast.
        this.group.broadcast(RELAY, encodeRelay({ kind: "message", message: relayed })).catch((error: unknown) => this.#sendFailed(error));
        this.#gateway?.forward(relayed);
        this.#armResend();
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Listens to a topic: messages from this site and, for a relayed topic, from every other. Returns a
   * function that stops it.
   */
  onTopic(topic: string, listener: SiteMessageListener): () => void {
    let listeners = this.#topicListeners.get(topic);
    if (listeners === undefined) this.#topicListeners.set(topic, (listeners = new Map()));
    if (!listeners.has(listener)) {
      // What members of this site broadcast on the topic through their group channel comes too.
      const local = (message: TopicMessage) => {
        const sender = this.group.getMemberById(message.sender);
        const origin: SiteMember = { site: this.site, id: message.sender, incarnation: sender?.incarnation ?? 0, name: sender?.name ?? "" };
        this.#run(listener, new SiteMessage(origin, topic, message.payload, message.format, 0, undefined));
      };
      listeners.set(listener, this.group.onTopic(topic, local));
    }
    return () => {
      const current = this.#topicListeners.get(topic);
      const off = current?.get(listener);
      if (off === undefined) return;
      off();
      current!.delete(listener);
      if (current!.size === 0) this.#topicListeners.delete(topic);
    };
  }

  /** A topic as an async iterator; it ends when `signal` aborts or the loop breaks. */
  subscribe(topic: string, options: { signal?: AbortSignalLike } = {}): AsyncIterableIterator<SiteMessage> {
    const onAbort = () => iterator.close();
    const iterator = new PushIterator<SiteMessage>(() => {
      off();
      options.signal?.removeEventListener("abort", onAbort);
    });
    const off = this.onTopic(topic, (message) => iterator.push(message));
    if (options.signal?.aborted) iterator.close();
    else options.signal?.addEventListener("abort", onAbort, { once: true });
    return iterator;
  }

  // --- point to point ---

  /** Sends to a member's inbox, in this site or another; reliable and in order per pair. Resolves once on its way. */
  send(to: SiteAddress, message: BlazeMessage | Uint8Array, options: { inbox?: string } = {}): Promise<void> {
    try {
      if (to.site === this.site) return this.group.send(to.id, message, { inbox: options.inbox ?? "" });
      const { payload, format } = encodePayload(message);
      return this.#sendDirect(this.#remote(to), options.inbox ?? "", payload, format, 0, false);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A request to a member's inbox, in this site or another; resolves with the reply, or rejects with `TIMEOUT` or `UNREACHABLE`. */
  request(to: SiteAddress, message: BlazeMessage | Uint8Array, options: { inbox?: string; timeoutMs?: number; signal?: AbortSignalLike } = {}): Promise<SiteMessage> {
    try {
      if (to.site === this.site) {
        return this.group.request(to.id, message, options).then((reply) => this.#fromGroup(reply, undefined));
      }
      const target = this.#remote(to);
      const { payload, format } = encodePayload(message);
      checkRelayedSize(payload);
      this.#requireStarted();
      const id = this.#nextCallId++;
      const timeoutMs = options.timeoutMs ?? 10_000;
      const signal = options.signal;
      if (signal?.aborted) throw new BlazeError("ABORTED", "the request was aborted", { cause: signal.reason });
      return new Promise<SiteMessage>((resolve, reject) => {
        const onAbort = () => this.#failCall(id, new BlazeError("ABORTED", "the request was aborted", { cause: signal!.reason }));
        const timer = this.#clock.setTimer(timeoutMs, () => this.#failCall(id, new BlazeError("TIMEOUT", `no reply from ${target.id.slice(0, 8)} at site ${target.site} within ${timeoutMs} ms`)));
        signal?.addEventListener("abort", onAbort, { once: true });
        this.#calls.set(id, { target, resolve, reject, timer, cleanUp: () => signal?.removeEventListener("abort", onAbort) });
        this.#sendDirect(target, options.inbox ?? "", payload, format, id, false).catch((error: unknown) =>
          this.#failCall(id, error instanceof BlazeError ? error : new BlazeError("SEND_FAILED", String(error), { cause: error })),
        );
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Listens on an inbox of this member: messages from this site and from others. Returns a function that stops listening. */
  onInbox(name: string, listener: SiteMessageListener): () => void {
    if (name.startsWith("$")) throw new BlazeError("INVALID_ARGUMENT", `inboxes starting with '$' are reserved: "${name}"`);
    let set = this.#inboxListeners.get(name);
    if (set === undefined) this.#inboxListeners.set(name, (set = new Set()));
    set.add(listener);
    const off = this.group.onInbox(name, (message) => this.#run(listener, this.#fromGroup(message, message.isRequest ? (r) => message.reply(r) : undefined)));
    return () => {
      off();
      set.delete(listener);
    };
  }

  // --- internals: sending ---

  #requireStarted(): OriginStreams {
    if (this.group.state !== "started" || this.#origin === undefined) throw new BlazeError("ILLEGAL_STATE", `a ${this.group.state} relay channel: join() it first`);
    return this.#origin;
  }

  #remote(to: SiteAddress): SiteMember {
    const site = this.#table.get(to.site);
    if (site === undefined) throw new BlazeError("UNREACHABLE", `site ${to.site} is not up`);
    const known = site.members.find((m) => m.id === to.id);
    return known ?? { site: to.site, id: to.id, incarnation: 0, name: "" };
  }

  #sendDirect(target: SiteMember, inbox: string, payload: Uint8Array, format: number, requestId: number, reply: boolean): Promise<void> {
    const origin = this.#requireStarted();
    checkRelayedSize(payload);
    return this.#whenRoom(payload.length, () => {
      if (!this.#table.has(target.site)) throw new BlazeError("UNREACHABLE", `site ${target.site} is not up`);
      const message = origin.direct(target, inbox, payload, format, requestId, reply, this.#clock.now());
      this.#toGateway({ kind: "message", message });
      this.#armResend();
    });
  }

  // Runs `go` now if the window has room (and nobody waits before), else once it has.
  #whenRoom(bytes: number, go: () => void): Promise<void> {
    if (this.#waiting.length === 0 && this.#origin!.hasRoom(bytes)) {
      go();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) =>
      this.#waiting.push({
        bytes,
        go: () => {
          go();
          resolve();
        },
        reject,
      }),
    );
  }

  #pumpWaiting(): void {
    const origin = this.#origin;
    while (origin !== undefined && this.#waiting.length > 0 && origin.hasRoom(this.#waiting[0]!.bytes)) {
      const next = this.#waiting.shift()!;
      try {
        next.go();
      } catch (error) {
        next.reject(error instanceof BlazeError ? error : internalError("a relayed send", error));
      }
    }
  }

  // A frame for this site's gateway: handled here when this member is the gateway.
  #toGateway(body: RelayBody): void {
    if (this.#gateway !== undefined) {
      this.#atGateway(this.group.id, body);
      return;
    }
    const coordinator = this.group.getCoordinator(this.#siteGroup);
    // No gateway now: the message stays held and goes to the next one.
    if (coordinator === undefined || coordinator.id === this.group.id) return;
    this.group.send(coordinator.id, encodeRelay(body), { inbox: RELAY }).catch((error: unknown) => this.#sendFailed(error));
  }

  #sendFailed(error: unknown): void {
    // A frame to a gateway that left is lost with it; the streams send it again to the next one.
    if (error instanceof BlazeError && (error.code === "UNREACHABLE" || error.code === "CLOSED" || error.code === "ILLEGAL_STATE")) return;
    this.#errors.report(error instanceof BlazeError ? error : internalError("a relay send", error), "send");
  }

  #resend(resends: readonly Resend[]): void {
    for (const { message, sites } of resends) {
      this.#resent++;
      this.#toGateway({ kind: "message", message: message.stream === "topic" ? { ...message, sites } : message });
    }
  }

  #armResend(): void {
    const at = this.#origin?.nextDue(this.#options.resendTimeoutMs) ?? Number.POSITIVE_INFINITY;
    if (at >= this.#resendAt) return;
    this.#resendTimer?.cancel();
    this.#resendAt = at;
    if (at === Number.POSITIVE_INFINITY) return;
    this.#resendTimer = this.#clock.setTimer(Math.max(0, at - this.#clock.now()), () => {
      this.#resendAt = Number.POSITIVE_INFINITY;
      this.#resendTimer = undefined;
      const origin = this.#origin;
      if (origin === undefined) return;
      this.#resend(origin.due(this.#clock.now(), this.#options.resendTimeoutMs));
      this.#armResend();
    });
  }

  // --- internals: receiving ---

  readonly #onRelayTopic = (message: TopicMessage): void => this.#guard(() => this.#fromSite(message.sender, message.payload, "topic"));

  #onRelayInbox(message: GroupMessage): void {
    this.#fromSite(message.senderId, message.payload, "inbox");
  }

  // A relay frame from a member of this site: by group broadcast ("topic") or point to point ("inbox").
  #fromSite(sender: PeerKey, bytes: Uint8Array, how: "topic" | "inbox"): void {
    const view = this.group.getView(this.#siteGroup);
    if (view === undefined || !view.members.some((m) => m.id === sender)) return;
    const decoded = decodeRelay(bytes, MAX_FRAME_BYTES);
    if (!decoded.ok) {
      this.#drops.count(decoded.reason);
      return;
    }
    const body = decoded.body;
    const self = sender === this.group.id;
    switch (body.kind) {
      case "message": {
        const message = body.message;
        if (message.origin.site === this.site) {
          if (message.origin.id !== sender) return this.#drops.count("INVALID_FIELD");
          // A member's topic message is delivered here from its broadcast; the gateway forwards it (its
          // own when it sent it). A resend comes to the gateway alone.
          if (how === "topic" && message.stream === "topic") this.#deliverTopic(message);
          if (!self) this.#gateway?.forward(message);
          return;
        }
        if (self) return; // the gateway handled it when it broadcast it
        this.#receive(body);
        return;
      }
      case "table":
        if (how === "topic" && sender === view.coordinator.id && !self) this.#applyTable(body.sites, sender);
        return;
      case "report":
        this.#gateway?.report(sender, body.positions, body.complete);
        return;
      case "ack":
      case "refusal":
        if (how === "inbox") this.#receive(body);
        return;
      default:
        this.#drops.count("INVALID_FIELD");
    }
  }

  // What the gateway gives this member: a message from another site, an acknowledgement, a refusal.
  #receive(body: RelayBody): void {
    switch (body.kind) {
      case "message": {
        const message = body.message;
        if (message.stream === "direct" && message.target!.id !== this.group.id) return;
        const arrival = this.#received.accept(message, this.#clock.now());
        for (const lost of arrival.lost) {
          this.#events.emit("messagesLost", { ...lost, count: lost.lastSeq - lost.firstSeq + 1 });
        }
        for (const delivered of arrival.deliver) {
          if (delivered.stream === "topic") this.#deliverTopic(delivered);
          else this.#deliverDirect(delivered);
        }
        if (this.#received.hasMoved) this.#armReport();
        return;
      }
      case "ack":
        if (this.#origin?.acknowledge(body.site, body.positions)) this.#pumpWaiting();
        return;
      case "refusal": {
        const target = this.#origin?.refused(body.site, body.position.targetId);
        if (target !== undefined) this.#unreachable(target, "noSuchMember");
        return;
      }
      default:
        return;
    }
  }

  #deliverTopic(message: RelayedMessage): void {
    const listeners = this.#topicListeners.get(message.destination);
    if (listeners === undefined) return;
    const delivered = new SiteMessage(message.origin, message.destination, message.payload, formatName(message.format), message.origin.site === this.site ? 0 : message.seq, undefined);
    for (const listener of listeners.keys()) this.#run(listener, delivered);
  }

  #deliverDirect(message: RelayedMessage): void {
    if (message.reply) {
      const call = this.#calls.get(message.requestId);
      if (call === undefined || call.target.id !== message.origin.id) return;
      this.#settleCall(message.requestId);
      call.resolve(new SiteMessage(message.origin, message.destination, message.payload, formatName(message.format), message.seq, undefined));
      return;
    }
    const replier =
      message.requestId === 0
        ? undefined
        : (response: BlazeMessage | Uint8Array) => {
            const { payload, format } = encodePayload(response);
            return this.#sendDirect(message.origin, "", payload, format, message.requestId, true);
          };
    const delivered = new SiteMessage(message.origin, message.destination, message.payload, formatName(message.format), message.seq, once(replier));
    for (const listener of this.#inboxListeners.get(message.destination) ?? []) this.#run(listener, delivered);
  }

  #armReport(): void {
    if (this.#reportTimer !== undefined) return;
    this.#reportTimer = this.#clock.setTimer(this.#options.ackDelayMs, () => {
      this.#reportTimer = undefined;
      if (this.#received.hasMoved) this.#report(false);
    });
  }

  #report(complete: boolean): void {
    const positions = this.#received.positions(complete);
    if (positions.length === 0 && !complete) return;
    this.#toGateway({ kind: "report", positions, complete });
  }

  // At the gateway (this member): a frame from a member of the site, or from this member itself.
  #atGateway(sender: PeerKey, body: RelayBody): void {
    const gateway = this.#gateway!;
    if (body.kind === "report") gateway.report(sender, body.positions, body.complete);
    else if (body.kind === "message") gateway.forward(body.message);
  }

  // --- internals: sites and the gateway role ---

  #viewChanged(view: View, previous: View | undefined): void {
    const coordinator = view.coordinator;
    const gatewayChanged = coordinator.id !== previous?.coordinator.id;
    if (coordinator.id === this.group.id && this.#gateway === undefined && this.#origin !== undefined) {
      this.#gateway = new SiteGateway(this.site, this.#options, this.#connect, this.#gatewayHost());
      if (this.#options.map !== undefined && this.#cluster !== undefined) this.#mapCopy = new MapCopy(this.#mapCopyHost(this.#gateway, this.#cluster), this.#options.map);
    } else if (coordinator.id !== this.group.id && this.#gateway !== undefined) {
      this.#closeGateway();
    } else {
      this.#gateway?.membersChanged();
    }
    if (gatewayChanged) {
      const previousGateway = this.#gatewayMember;
      this.#gatewayMember = this.#member(coordinator);
      this.#events.emit("gatewayChange", { site: this.site, gateway: this.#gatewayMember, previous: previousGateway });
      // The new gateway learns what this member delivered (it acknowledges only what every member did).
      if (coordinator.id !== this.group.id) this.#report(true);
    }
  }

  #closeGateway(): void {
    const gateway = this.#gateway;
    this.#gateway = undefined;
    this.#mapCopy?.close();
    this.#mapCopy = undefined;
    gateway?.close().catch((error: unknown) => this.#errors.report(internalError("closing the bus", error), "transport"));
  }

  #gatewayHost(): ConstructorParameters<typeof SiteGateway>[3] {
    return {
      clock: this.#clock,
      local: () => this.local,
      siteMembers: () => {
        const view = this.group.getView(this.#siteGroup);
        return view === undefined ? [] : this.#siteMembers(view);
      },
      knownSites: () => [...this.#table.values()],
      broadcast: (bytes) => void this.group.broadcast(RELAY, bytes).catch((error: unknown) => this.#sendFailed(error)),
      sendTo: (member, body) => {
        if (member === this.group.id) this.#receive(body);
        else this.group.send(member, encodeRelay(body), { inbox: RELAY }).catch((error: unknown) => this.#sendFailed(error));
      },
      receive: (body) => this.#receive(body),
      tableChanged: (sites) => this.#applyTable(sites, this.group.id),
      connected: () => {
        // This member's own report, and what it holds, go to itself as the gateway.
        this.#report(true);
        if (this.#origin !== undefined) this.#resend(this.#origin.unacknowledged(this.#clock.now()));
        this.#armResend();
        this.#mapCopy?.connected();
      },
      mapFrame: (body) => this.#mapCopy?.received(body),
      dropped: (reason) => this.#drops.count(reason),
      report: (error, stage) => this.#errors.report(error, stage),
    };
  }

  #mapCopyHost(gateway: SiteGateway, cluster: ClusterChannel): MapCopyHost {
    return {
      clock: this.#clock,
      site: this.site,
      map: () => cluster.map,
      publish: (site, body) => gateway.publishTo(site, body),
      sitesUp: () => gateway.sitesUp(),
      maxPayloadBytes: () => gateway.maxPayloadBytes,
      requestTimeoutMs: this.#mapTimeoutMs,
      report: (error, stage) => this.#errors.report(error, stage),
    };
  }

  // The site's gateway says which other sites are up: events for what changed, and resends where a
  // gateway changed (this site's: everything unacknowledged; another site's: what that site owes).
  #applyTable(sites: readonly SiteAnnouncement[], from: PeerKey): void {
    const next = new Map(sites.filter((s) => s.site !== this.site).map((s) => [s.site, s]));
    const newGateway = from !== this.#tableFrom;
    this.#tableFrom = from;
    const previous = this.#table;
    this.#table = next;
    const origin = this.#origin;
    const resendTo = new Set<string>();
    for (const [site, announcement] of next) {
      const before = previous.get(site);
      if (before === undefined) {
        this.#down.delete(site);
        origin?.siteUp(site);
        // The copy's repair with a site that comes up, or that has a new gateway: digests both ways.
        if (from === this.group.id) this.#mapCopy?.digestTo(site, false);
        this.#events.emit("siteUp", { site, gateway: announcement.gateway });
      } else if (before.gateway.id !== announcement.gateway.id || before.gateway.incarnation !== announcement.gateway.incarnation) {
        resendTo.add(site);
        if (from === this.group.id) this.#mapCopy?.digestTo(site, false);
        this.#events.emit("gatewayChange", { site, gateway: announcement.gateway, previous: before.gateway });
      }
    }
    for (const [site, announcement] of previous) {
      if (next.has(site)) continue;
      this.#down.set(site, announcement);
      if (this.#down.size > MAX_SITES) this.#down.delete(this.#down.keys().next().value!);
      for (const target of origin?.siteDown(site) ?? []) this.#unreachable(target, "siteDown");
      for (const [id, call] of this.#calls) if (call.target.site === site) this.#failCall(id, new BlazeError("UNREACHABLE", `site ${site} went down`));
      this.#events.emit("siteDown", { site });
    }
    if (origin !== undefined && from !== this.group.id) {
      if (newGateway) this.#resend(origin.unacknowledged(this.#clock.now()));
      else if (resendTo.size > 0) this.#resend(origin.unacknowledged(this.#clock.now(), resendTo));
    } else if (origin !== undefined && resendTo.size > 0) {
      this.#resend(origin.unacknowledged(this.#clock.now(), resendTo));
    }
    this.#pumpWaiting();
    this.#armResend();
  }

  #unreachable(target: SiteMember, reason: "noSuchMember" | "siteDown"): void {
    for (const [id, call] of this.#calls) if (call.target.id === target.id) this.#failCall(id, new BlazeError("UNREACHABLE", `member ${target.id.slice(0, 8)} of site ${target.site} is not reachable (${reason})`));
    this.#events.emit("undeliverable", { target, reason });
  }

  #failCall(id: number, error: BlazeError): void {
    const call = this.#calls.get(id);
    if (call === undefined) return;
    this.#settleCall(id);
    call.reject(error);
  }

  #settleCall(id: number): void {
    const call = this.#calls.get(id)!;
    this.#calls.delete(id);
    call.timer.cancel();
    call.cleanUp();
  }

  async #stopRelay(): Promise<void> {
    for (const off of this.#offs.splice(0)) off();
    this.#reportTimer?.cancel();
    this.#reportTimer = undefined;
    this.#resendTimer?.cancel();
    this.#resendTimer = undefined;
    this.#resendAt = Number.POSITIVE_INFINITY;
    const gateway = this.#gateway;
    this.#gateway = undefined;
    this.#mapCopy?.close();
    this.#mapCopy = undefined;
    await gateway?.close();
    const closed = new BlazeError("CLOSED", "the relay channel stopped");
    for (const id of [...this.#calls.keys()]) this.#failCall(id, closed);
    for (const waiting of this.#waiting.splice(0)) waiting.reject(closed);
    this.#origin = undefined;
    this.#table = new Map();
    this.#down.clear();
    this.#tableFrom = undefined;
    this.#gatewayMember = undefined;
  }

  // --- helpers ---

  #siteMembers(view: View): SiteMember[] {
    return view.members.filter((m) => m.metadata[SITE_METADATA] === this.site).map((m) => this.#member(m));
  }

  #member(member: Member): SiteMember {
    return { site: this.site, id: member.id, incarnation: member.incarnation, name: member.name };
  }

  #fromGroup(message: GroupMessage, replier: ((response: BlazeMessage | Uint8Array) => Promise<void>) | undefined): SiteMessage {
    const sender = message.sender;
    const origin: SiteMember = { site: this.site, id: message.senderId, incarnation: sender?.incarnation ?? 0, name: sender?.name ?? "" };
    return new SiteMessage(origin, message.destination, message.payload, message.format, 0, replier);
  }

  #run(listener: SiteMessageListener, message: SiteMessage): void {
    try {
      const result = listener(message);
      if (result instanceof Promise) result.catch((error: unknown) => this.#listenerError(error));
    } catch (error) {
      this.#listenerError(error);
    }
  }

  #listenerError(error: unknown): void {
    this.#errors.report(error instanceof BlazeError ? error : new BlazeError("LISTENER_ERROR", "a relay listener threw", { cause: error }), "listener");
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#errors.report(internalError("the relay", error), "receive");
    }
  }
}

function checkRelayedSize(payload: Uint8Array): void {
  if (payload.length > MAX_RELAYED_PAYLOAD_BYTES) {
    throw new BlazeError("MESSAGE_TOO_LARGE", `a relayed message of ${payload.length} bytes exceeds ${MAX_RELAYED_PAYLOAD_BYTES} bytes`);
  }
}

// A reply may be sent once.
function once(replier: ((response: BlazeMessage | Uint8Array) => Promise<void>) | undefined): typeof replier {
  if (replier === undefined) return undefined;
  let answered = false;
  return (response) => {
    if (answered) throw new BlazeError("ILLEGAL_STATE", "this request was answered already");
    answered = true;
    return replier(response);
  };
}
