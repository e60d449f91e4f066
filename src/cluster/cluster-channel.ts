import type { ChannelContext } from "../channel/channel.ts";
import { resolveChannelOptions } from "../channel/options.ts";
import { Emitter } from "../channel/events.ts";
import { waitUntil, type WaitOptions } from "../channel/wait.ts";
import { BlazeError } from "../errors.ts";
import { GroupChannel, type GroupChannelEvents } from "../group/group-channel.ts";
import { resolveGroupOptions } from "../group/options.ts";
import type { Member, View } from "../group/view.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { type ClusterChannelOptions, resolveClusterOptions, type ResolvedStateOptions } from "./options.ts";
import { ReplicatedMap } from "./replicated-map.ts";
import { StateEngine, type StateStats, type TermMemory } from "./state-engine.ts";
import { NO_PROMISE, NO_TERM } from "./state-types.ts";
import { decodeStateFrame, STATE_FRAME_KINDS } from "./state-wire.ts";

/** Events of a cluster channel, by name (besides a group channel's). */
export interface ClusterEvents {
  /** The state group's coordinator — the map's master — changed (ActiveBlaze's masterChanged). */
  masterChange: { readonly master: Member; readonly previous: Member | undefined };
}

/** Events of a cluster channel, by name: a group channel's and the cluster's. */
export type ClusterChannelEvents = GroupChannelEvents & ClusterEvents;

/** Room kept in a datagram's largest frame for what an update adds to its changes. */
const UPDATE_MARGIN_BYTES = 64;

/**
 * Creates a cluster channel and binds its sockets; `join()` starts it, joins its groups and resolves
 * once the state map is complete here. Options are a group channel's plus `state` ({@link option-schemas!StateOptions}).
 */
export async function createClusterChannel(options?: ClusterChannelOptions): Promise<ClusterChannel> {
  const channel = new ClusterChannel(options);
  await channel.init();
  return channel;
}

/**
 * ActiveBlaze's cluster level: a group channel with an elected coordinator (the "master": the highest
 * weight, then the longest in the view) and a replicated state map with write locks, which survive
 * members coming and going. See {@link ReplicatedMap} for the map and `StateEngine` for how the
 * coordinator orders writes and how a new one takes over. The map's messages are frames of their own
 * kinds, handed to it by the group channel's frame routing.
 */
export class ClusterChannel extends GroupChannel {
  /** The replicated state map of the state group. */
  readonly map: ReplicatedMap;
  readonly #state: ResolvedStateOptions;
  readonly #stateGroup: string;
  readonly #leaseMs: number;
  /** The term accepted and the epoch promised, kept across restarts (stop, start) of this member. */
  readonly #memory: TermMemory = { accepted: NO_TERM, promised: NO_PROMISE };
  #engine: StateEngine | undefined;
  #context: ChannelContext | undefined;
  readonly #clusterEvents = new Emitter<ClusterEvents>((error) => this.channel.reportError(error, "listener"));
  /** The master last announced to `masterChange` listeners. */
  #master: Member | undefined;
  #stopRouting: (() => void) | undefined;
  #stopFlushing: (() => void) | undefined;

  constructor(options?: ClusterChannelOptions) {
    const { state, group } = resolveClusterOptions(options);
    super(group);
    // After the group level's: the state map starts once the group level has, and stops once it left its groups.
    this.channel.onLifecycle(
      (context) => this.#started(context),
      () => this.#stopping(),
    );
    this.watchViews((name, view) => this.#onView(name, view));
    this.#state = state;
    this.#stateGroup = state.group ?? group.groups?.[0] ?? "default";
    this.#leaseMs = resolveGroupOptions(group).group.failureTimeoutMs;
    const maxValueBytes = resolveChannelOptions(resolveGroupOptions(group).channel).maxMessageBytes;
    this.map = new ReplicatedMap(
      {
        engine: () => this.#requireEngine(),
        now: () => this.#requireContext().driver.now(),
        touch: () => this.#context?.driver.touch(),
        maxUpdateBytes: () => this.#requireContext().endpoint.maxFrameBytes - UPDATE_MARGIN_BYTES,
        maxValueBytes,
      },
      state,
      (error) => this.channel.reportError(error, "listener"),
      (name, ms, attributes) => this.channel.observer.record(name, ms, attributes),
    );
  }

  /** The group whose members share the map. */
  get stateGroup(): string {
    return this.#stateGroup;
  }

  /**
   * Starts the channel, joins its groups (the state group among them) and resolves once the coordinator
   * has brought this member's replica of the map up to date.
   */
  override async join(options: WaitOptions = {}): Promise<View[]> {
    const views = await super.join(options);
    if (!this.getGroups().includes(this.#stateGroup)) views.push(await this.addToGroup(this.#stateGroup, options));
    await this.waitForElection(options);
    return views;
  }

  /**
   * Resolves with the coordinator once the election of the current view is over: the coordinator has
   * taken over the map and this member's replica is up to date. Rejects with `TIMEOUT` or `ABORTED`.
   */
  async waitForElection(options: WaitOptions = {}): Promise<Member> {
    if (this.state !== "started") throw new BlazeError("ILLEGAL_STATE", `waitForElection() on a ${this.state} channel: join() it first`);
    await waitUntil(
      this.#context!.clock,
      () => this.#engine?.current === true && this.getCoordinator(this.#stateGroup) !== undefined,
      (wake) => this.addWaiter(wake),
      `the election in group "${this.#stateGroup}"`,
      options,
      this.#state.requestTimeoutMs,
    );
    return this.getCoordinator(this.#stateGroup)!;
  }

  /** True once the map is complete here (it was brought up to date by a coordinator at least once). */
  get ready(): boolean {
    return this.#engine?.ready === true;
  }

  /** The coordinator of the state group (ActiveBlaze's getMaster), or undefined before a view. */
  getMaster(): Member | undefined {
    return this.getCoordinator(this.#stateGroup);
  }

  /**
   * True while this member coordinates the map and serves (ActiveBlaze's isMaster): elected, every
   * member took up its term, and a majority heard from it within the failure timeout — a master cut off
   * from its majority stops being one before another can have been elected.
   */
  isMaster(): boolean {
    const context = this.#context;
    return context !== undefined && this.#engine?.serving(context.driver.now()) === true;
  }

  /** Adds a listener of a channel, group or cluster event; returns a function that removes it. */
  override on<K extends keyof ClusterChannelEvents>(type: K, listener: (event: ClusterChannelEvents[K]) => void): () => void {
    if (type !== "masterChange") return super.on(type as keyof GroupChannelEvents, listener as (event: GroupChannelEvents[keyof GroupChannelEvents]) => void);
    return this.#clusterEvents.on("masterChange", listener as (event: ClusterEvents["masterChange"]) => void);
  }

  override off<K extends keyof ClusterChannelEvents>(type: K, listener: (event: ClusterChannelEvents[K]) => void): void {
    if (type !== "masterChange") return super.off(type as keyof GroupChannelEvents, listener as (event: GroupChannelEvents[keyof GroupChannelEvents]) => void);
    this.#clusterEvents.off("masterChange", listener as (event: ClusterEvents["masterChange"]) => void);
  }

  /** Counters of the state map. */
  get stateStats(): Readonly<StateStats> & { readonly epoch: number; readonly pendingRequests: number } {
    const engine = this.#engine;
    return { ...(engine?.stats ?? emptyStateStats()), epoch: this.#memory.accepted.epoch, pendingRequests: engine?.pendingRequests ?? 0 };
  }

  // --- internals ---

  #requireEngine(): StateEngine {
    const engine = this.#engine;
    if (engine === undefined) throw new BlazeError("ILLEGAL_STATE", `the state map of a ${this.state} channel: join() it first`);
    return engine;
  }

  #requireContext(): ChannelContext {
    const context = this.#context;
    if (context === undefined) throw new BlazeError("ILLEGAL_STATE", "the cluster channel is not started: join() it first");
    return context;
  }

  #started(context: ChannelContext): void {
    this.#context = context;
    const { driver, endpoint } = context;
    const engine = new StateEngine(
      {
        local: { id: this.id, incarnation: context.incarnation },
        group: this.#stateGroup,
        unicast: (peer, frame) => this.#unicast(peer, frame),
        multicast: (frame) => endpoint.multicastFrame(frame),
        changed: (changes, resync) => this.map.emit(changes, resync),
        changesWatched: () => this.map.changesWatched,
        synced: (epoch) => this.map.emitReady(epoch),
        wake: () => this.wakeWaiters(),
      },
      {
        quorum: this.#state.quorum,
        minimumMembers: this.#state.minimumMembers,
        logLimit: this.#state.logLimit,
        snapshotChunkBytes: Math.min(this.#state.snapshotChunkBytes, endpoint.maxFrameBytes - UPDATE_MARGIN_BYTES),
        maxUpdateBytes: endpoint.maxFrameBytes - UPDATE_MARGIN_BYTES,
        retryDelayMs: this.#state.retryDelayMs,
        leaseMs: this.#leaseMs,
      },
      this.#memory,
    );
    this.#engine = engine;
    driver.add(engine);
    for (const unit of this.map.units) driver.add(unit);
    this.#stopRouting = this.channel.routeFrames(STATE_FRAME_KINDS, (peer, { frame }) => {
      const now = driver.now();
      engine.onFrame(peer.key, peer.incarnation, decodeStateFrame(frame, now), now);
      driver.touch();
    });
    // What a turn produced (the coordinator's batch, acknowledgements, notices) goes out with the turn,
    // in the endpoint's flush (after this): with whatever else goes to the same peers.
    this.#stopFlushing = driver.onEndOfTurn(() => engine.flush(driver.now()));
  }

  #stopping(): void {
    const context = this.#context;
    this.#stopRouting?.();
    this.#stopFlushing?.();
    this.#stopRouting = undefined;
    this.#stopFlushing = undefined;
    const engine = this.#engine;
    if (engine !== undefined && context !== undefined) {
      engine.close(context.driver.now());
      context.driver.remove(engine);
      for (const unit of this.map.units) context.driver.remove(unit);
    }
    this.map.closed();
    this.wakeWaiters();
  }

  /** To the address a member's own datagrams come from; one not heard from directly yet is introduced (and the frame dropped: it is sent again). */
  #unicast(peer: PeerKey, frame: Uint8Array): void {
    const endpoint = this.#context!.endpoint;
    if (endpoint.peers.has(peer)) {
      endpoint.unicastFrame(peer, frame);
      return;
    }
    const member = this.getMemberById(peer);
    if (member !== undefined) endpoint.introduce(peer, member.incarnation, member.address);
  }

  #onView(group: string, view: View | undefined): void {
    if (group !== this.#stateGroup) return;
    const engine = this.#engine;
    const context = this.#context;
    if (engine === undefined || context === undefined) return;
    const previous = engine.coordinator;
    const previousMaster = this.#master;
    engine.onView(
      view === undefined
        ? undefined
        : {
            id: view.id,
            members: view.members.map((m) => ({ id: m.id, incarnation: m.incarnation })),
            coordinator: { id: view.coordinator.id, incarnation: view.coordinator.incarnation },
          },
      context.driver.now(),
    );
    context.driver.touch();
    if (view !== undefined && (previous === undefined || previous.id !== view.coordinator.id || previous.incarnation !== view.coordinator.incarnation)) {
      this.#master = view.coordinator;
      this.#clusterEvents.emit("masterChange", { master: view.coordinator, previous: previousMaster });
    }
    this.wakeWaiters();
  }
}

function emptyStateStats(): StateStats {
  return {
    requestsSent: 0,
    requestsRetried: 0,
    requestsApplied: 0,
    requestsDeduplicated: 0,
    cancelsSent: 0,
    updatesApplied: 0,
    updatesSent: 0,
    repairsSent: 0,
    snapshotsSent: 0,
    snapshotChunksSent: 0,
    snapshotsInstalled: 0,
    suffixesSent: 0,
    pulls: 0,
    staleRefused: 0,
    outOfOrder: 0,
    malformed: 0,
    terms: 0,
    appliedRequesters: 0,
  };
}
