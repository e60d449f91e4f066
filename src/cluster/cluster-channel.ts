import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import type { ExtensionContext } from "../channel/channel.ts";
import { waitUntil, type WaitOptions } from "../channel/wait.ts";
import { BlazeError } from "../errors.ts";
import { GroupChannel } from "../group/group-channel.ts";
import type { Member, View } from "../group/view.ts";
import type { Clock } from "../transport/clock.ts";
import { MAX_COUNTER, unsafeIntegerIn } from "../wire/safe-integers.ts";
import { type ClusterChannelOptions, resolveClusterOptions, type ResolvedStateOptions } from "./options.ts";
import { ReplicatedMap } from "./replicated-map.ts";
import { emptyStateStats, StateEngine as Engine, type StateFrame, type StateStats } from "./state-engine.ts";

/** ActiveBlaze's coordinator listener. */
export type MasterChangedListener = (master: Member) => void;

const STATE_INBOX_PREFIX = "$state/";

/**
 * Creates a cluster channel and binds its sockets; `join()` starts it, joins its groups and resolves
 * once the state map is complete here. Options are a group channel's plus `state` ({@link StateOptions}).
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
 * coordinator orders writes and how a new one takes over.
 */
export class ClusterChannel extends GroupChannel {
  /** The replicated state map of the state group. */
  readonly map: ReplicatedMap;
  readonly #state: ResolvedStateOptions;
  readonly #stateGroup: string;
  #engine: Engine | undefined;
  #context: ExtensionContext | undefined;
  readonly #masterListeners = new Set<MasterChangedListener>();
  #offInbox: (() => void) | undefined;
  #malformed = 0;

  constructor(options?: ClusterChannelOptions) {
    const { state, group } = resolveClusterOptions(options);
    const self: { target?: ClusterChannel } = {};
    super(group, {
      started: (context) => self.target!.#started(context),
      stopping: () => self.target!.#stopping(),
      view: (name, view) => self.target!.#onView(name, view),
    });
    self.target = this;
    this.#state = state;
    this.#stateGroup = state.group ?? group.groups?.[0] ?? "default";
    this.map = new ReplicatedMap(
      () => this.#requireEngine(),
      state,
      () => this.#context?.clock ?? unstartedClock(),
      (error) => this.emitError(error, "listener"),
      (name, ms, attributes) => this.observer.record(name, ms, attributes),
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

  /** True while this member coordinates the map (ActiveBlaze's isMaster): elected and serving. */
  isMaster(): boolean {
    return this.#engine?.serving === true;
  }

  addMasterChangedListener(listener: MasterChangedListener): void {
    this.#masterListeners.add(listener);
  }

  removeMasterChangedListener(listener: MasterChangedListener): void {
    this.#masterListeners.delete(listener);
  }

  /** Counters of the state map. */
  get stateStats(): Readonly<StateStats> & { readonly epoch: number; readonly pendingRequests: number; readonly malformed: number } {
    const engine = this.#engine;
    return {
      ...(engine?.stats ?? emptyStateStats()),
      epoch: engine?.epoch ?? 0,
      pendingRequests: engine?.pendingRequests ?? 0,
      malformed: this.#malformed + (engine?.stats.malformed ?? 0),
    };
  }

  // --- internals ---

  #requireEngine(): Engine {
    const engine = this.#engine;
    if (engine === undefined) throw new BlazeError("ILLEGAL_STATE", `the state map of a ${this.state} channel: join() it first`);
    return engine;
  }

  #started(context: ExtensionContext): void {
    this.#context = context;
    const group = this.#stateGroup;
    const inbox = STATE_INBOX_PREFIX + group;
    this.#engine = new Engine(
      {
        clock: context.clock,
        local: { id: this.id, incarnation: context.incarnation },
        group,
        send: (peer, frame) => this.#send([peer], inbox, frame),
        sendToAll: (peers, frame) => this.#send(peers, inbox, frame),
        changed: (changes, resync) => this.map.emit(changes, resync, (error) => this.emitError(new BlazeError("LISTENER_ERROR", "a map listener threw", { cause: error }), "listener")),
        wake: () => this.wakeWaiters(),
        synced: (epoch) => this.map.emitReady(epoch),
      },
      {
        quorum: this.#state.quorum,
        minimumMembers: this.#state.minimumMembers,
        logLimit: this.#state.logLimit,
        snapshotChunkEntries: this.#state.snapshotChunkEntries,
        retryDelayMs: this.#state.retryDelayMs,
      },
    );
    this.#offInbox = this.onInbox(inbox, (message) => {
      let frame: StateFrame;
      try {
        const decoded = fromBinary(FrameSchema, message.payload);
        // Epochs, indexes, tokens and request ids are counted on from: none may be past MAX_COUNTER.
        if (unsafeIntegerIn(FrameSchema, decoded, BigInt(MAX_COUNTER)) !== undefined) throw new Error("a number past MAX_COUNTER");
        frame = decoded.kind;
      } catch {
        this.#malformed++;
        return;
      }
      const incarnation = message.senderId === this.id ? context.incarnation : context.endpoint.peers.get(message.senderId)?.incarnation;
      this.#engine?.onFrame(message.senderId, frame, incarnation);
    });
  }

  #stopping(): void {
    this.#offInbox?.();
    this.#offInbox = undefined;
    this.#engine?.close();
    this.wakeWaiters();
  }

  #onView(group: string, view: View | undefined): void {
    if (group !== this.#stateGroup) return;
    const engine = this.#engine;
    if (engine === undefined) return;
    const previous = engine.coordinator;
    engine.onView(
      view === undefined
        ? undefined
        : {
            id: view.id,
            members: view.members.map((m) => ({ id: m.id, incarnation: m.incarnation })),
            coordinator: { id: view.coordinator.id, incarnation: view.coordinator.incarnation },
          },
    );
    if (view !== undefined && (previous === undefined || previous.id !== view.coordinator.id || previous.incarnation !== view.coordinator.incarnation)) {
      for (const listener of this.#masterListeners) {
        try {
          listener(view.coordinator);
        } catch (error) {
          this.emitError(new BlazeError("LISTENER_ERROR", "a masterChanged listener threw", { cause: error }), "listener");
        }
      }
    }
    this.wakeWaiters();
  }

  #send(peers: readonly string[], inbox: string, frame: StateFrame): void {
    const bytes = toBinary(FrameSchema, create(FrameSchema, { kind: frame }));
    for (const peer of peers) {
      try {
        this.send(peer, bytes, { inbox }).catch(() => undefined);
      } catch {
        // The member is gone: a view change follows, and whatever was pending is sent again then.
      }
    }
  }
}

function unstartedClock(): Clock {
  throw new BlazeError("ILLEGAL_STATE", "the cluster channel is not started: join() it first");
}
