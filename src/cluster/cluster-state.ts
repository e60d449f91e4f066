import type { ChannelContext } from "../channel/channel.ts";
import { Emitter } from "../channel/events.ts";
import { waitUntil, type WaitOptions } from "../channel/wait.ts";
import { BlazeError } from "../errors.ts";
import type { GroupChannel } from "../group/group-channel.ts";
import type { Member, View } from "../group/view.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { ClusterStateSettings } from "./options.ts";
import { ReplicatedMap } from "./replicated-map.ts";
import { StateEngine, type StateStats, type TermMemory } from "./state-engine.ts";
import { NO_PROMISE, NO_TERM } from "./state-types.ts";
import { decodeStateFrame, STATE_FRAME_KINDS, STATE_HAND_READERS, type StateFrame } from "./state-wire.ts";

/** Events of a cluster channel, by name (besides a group channel's). */
export interface ClusterEvents {
  /** The state group's coordinator — the map's master — changed (ActiveBlaze's masterChanged). */
  masterChange: { readonly master: Member; readonly previous: Member | undefined };
}

/** Room kept in a datagram's largest frame for what an update adds to its changes. */
const UPDATE_MARGIN_BYTES = 64;
const DETACHED = "the state map was detached from its group channel";

/**
 * The cluster level as a block built on a group channel: the state group's elected coordinator (the
 * "master") and the replicated state map with write locks. Built over a group channel before it starts,
 * it registers for the group channel's life cycle, views and the map's frame kinds, and runs the
 * {@link StateEngine} on the channel's driver while the channel is started. `detach()` undoes all of it.
 */
export class ClusterState {
  /** The replicated state map of the state group. */
  readonly map: ReplicatedMap;
  readonly #group: GroupChannel;
  readonly #settings: ClusterStateSettings;
  /** The term accepted, the epoch promised, the lease echoed and the lease probes used, kept across restarts (stop, start) of this member. */
  readonly #memory: TermMemory = { accepted: NO_TERM, begun: false, promised: NO_PROMISE, echoed: undefined, probe: 0, since: undefined };
  readonly #events: Emitter<ClusterEvents>;
  /** What it registered with the group channel. */
  readonly #registrations: Array<() => void>;
  #engine: StateEngine | undefined;
  #context: ChannelContext | undefined;
  /** The master last announced to `masterChange` listeners. */
  #master: Member | undefined;
  #stopRouting: (() => void) | undefined;
  #stopFlushing: (() => void) | undefined;
  #detached = false;

  constructor(group: GroupChannel, settings: ClusterStateSettings) {
    // Started already, it would miss the start it needs (and the views installed so far).
    if (group.state === "started") throw new BlazeError("ILLEGAL_STATE", "the state map is built on a group channel before it starts");
    this.#group = group;
    this.#settings = settings;
    this.#events = new Emitter<ClusterEvents>((error) => group.reportError(error, "listener"));
    this.map = new ReplicatedMap(
      {
        engine: () => this.#requireEngine(),
        now: () => this.#requireContext().driver.now(),
        touch: () => this.#context?.driver.touch(),
        maxUpdateBytes: () => this.#requireContext().endpoint.maxFrameBytes - UPDATE_MARGIN_BYTES,
        maxValueBytes: settings.maxValueBytes,
      },
      settings.options,
      (error) => group.reportError(error, "listener"),
      { measuring: () => group.observer.measuring, record: (name, ms, attributes) => group.observer.record(name, ms, attributes) },
    );
    this.#registrations = [
      group.onLifecycle(
        (context) => this.#started(context),
        () => this.#stopping(),
      ),
      group.watchViews((name, view) => this.#onView(name, view)),
      // The frames of every write come read by hand (state-reader.ts), straight into the engine's forms.
      ...Object.entries(STATE_HAND_READERS).map(([kind, read]) => group.readFramesByHand(kind as keyof typeof STATE_HAND_READERS, read)),
    ];
  }

  /** The group whose members share the map. */
  get stateGroup(): string {
    return this.#settings.group;
  }

  /**
   * Resolves with the coordinator once the election of the current view is over: the coordinator has
   * taken over the map and this member's replica is up to date. Rejects with `TIMEOUT` or `ABORTED`.
   */
  async waitForElection(options: WaitOptions = {}): Promise<Member> {
    const group = this.#group;
    if (this.#detached) throw new BlazeError("ILLEGAL_STATE", DETACHED);
    if (group.state !== "started") throw new BlazeError("ILLEGAL_STATE", `waitForElection() on a ${group.state} channel: join() it first`);
    const stateGroup = this.#settings.group;
    await waitUntil(
      this.#context!.clock,
      () => this.#engine?.current === true && group.getCoordinator(stateGroup) !== undefined,
      (wake) => group.addWaiter(wake),
      `the election in group "${stateGroup}"`,
      options,
      this.#settings.options.requestTimeoutMs,
    );
    return group.getCoordinator(stateGroup)!;
  }

  /** True once the map is complete here (it was brought up to date by a coordinator at least once). */
  get ready(): boolean {
    return this.#engine?.ready === true;
  }

  /** The coordinator of the state group, or undefined before a view. */
  getMaster(): Member | undefined {
    return this.#group.getCoordinator(this.#settings.group);
  }

  /**
   * True while this member coordinates the map and serves: elected, every member took up its term, and
   * a majority heard from it within the failure timeout.
   */
  isMaster(): boolean {
    const context = this.#context;
    return context !== undefined && this.#engine?.serving(context.driver.now()) === true;
  }

  /** Adds a listener of a cluster event; returns a function that removes it. */
  on<K extends keyof ClusterEvents>(type: K, listener: (event: ClusterEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  off<K extends keyof ClusterEvents>(type: K, listener: (event: ClusterEvents[K]) => void): void {
    this.#events.off(type, listener);
  }

  /** Counters of the state map. */
  get stateStats(): Readonly<StateStats> & { readonly epoch: number; readonly pendingRequests: number } {
    const engine = this.#engine;
    return { ...(engine?.stats ?? emptyStateStats()), epoch: this.#memory.accepted.epoch, pendingRequests: engine?.pendingRequests ?? 0 };
  }

  /**
   * Takes the map off its group channel: on a started channel this member leaves the state group first
   * (its other members carry on without it), then the map stops as it does when the channel stops, and
   * the group channel tells it nothing more. The map's calls fail with `ILLEGAL_STATE` from here on. Idempotent.
   */
  detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    if (this.#group.state === "started") {
      this.#group.removeFromGroup(this.#settings.group);
      this.#stopping();
    }
    for (const remove of this.#registrations.splice(0)) remove();
    // A stopped map keeps its engine (its counters, `ready`); a detached one has none.
    this.#engine = undefined;
    this.#context = undefined;
  }

  // --- internals ---

  #requireEngine(): StateEngine {
    const engine = this.#engine;
    if (engine === undefined) throw new BlazeError("ILLEGAL_STATE", this.#detached ? DETACHED : `the state map of a ${this.#group.state} channel: join() it first`);
    return engine;
  }

  #requireContext(): ChannelContext {
    const context = this.#context;
    if (context === undefined) throw new BlazeError("ILLEGAL_STATE", this.#detached ? DETACHED : "the cluster channel is not started: join() it first");
    return context;
  }

  #started(context: ChannelContext): void {
    this.#context = context;
    const { driver, endpoint } = context;
    const settings = this.#settings;
    const options = settings.options;
    const engine = new StateEngine(
      {
        local: { id: this.#group.id, incarnation: context.incarnation },
        group: settings.group,
        unicast: (peer, frame) => this.#unicast(peer, frame),
        multicast: (frame) => endpoint.multicastFrame(frame),
        changed: (changes, resync) => this.map.emit(changes, resync),
        changesWatched: () => this.map.changesWatched,
        synced: (epoch) => this.map.emitReady(epoch),
        wake: () => this.#group.wakeWaiters(),
      },
      {
        quorum: options.quorum,
        minimumMembers: options.minimumMembers,
        logLimit: options.logLimit,
        snapshotChunkBytes: Math.min(options.snapshotChunkBytes, endpoint.maxFrameBytes - UPDATE_MARGIN_BYTES),
        maxUpdateBytes: endpoint.maxFrameBytes - UPDATE_MARGIN_BYTES,
        retryDelayMs: options.retryDelayMs,
        leaseMs: settings.leaseMs,
      },
      this.#memory,
    );
    this.#engine = engine;
    driver.add(engine);
    for (const unit of this.map.units) driver.add(unit);
    this.#stopRouting = this.#group.routeFrames(STATE_FRAME_KINDS, (peer, received) => {
      const now = driver.now();
      // The frames of every write come read by hand (state-reader.ts); the others, and any it declined, decoded.
      const frame = received.read === undefined ? decodeStateFrame(received.frame, now) : (received.read as StateFrame);
      engine.onFrame(peer.key, peer.incarnation, frame, now);
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
    this.#group.wakeWaiters();
  }

  /** To the address a member's own datagrams come from; one not heard from directly yet is introduced (and the frame dropped: it is sent again). */
  #unicast(peer: PeerKey, frame: Uint8Array): void {
    const endpoint = this.#context!.endpoint;
    if (endpoint.peers.has(peer)) {
      endpoint.unicastFrame(peer, frame);
      return;
    }
    const member = this.#group.getMemberById(peer);
    if (member !== undefined) endpoint.introduce(peer, member.incarnation, member.address);
  }

  #onView(group: string, view: View | undefined): void {
    if (group !== this.#settings.group) return;
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
      this.#events.emit("masterChange", { master: view.coordinator, previous: previousMaster });
    }
    this.#group.wakeWaiters();
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
