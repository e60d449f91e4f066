import type { BroadcastOptions, ChannelState, ChannelStats, PeerInfo, TopicListener } from "../channel/channel.ts";
import type { SubscribeOptions, Subscription } from "../channel/events.ts";
import type { TopicMessage } from "../channel/topic-message.ts";
import type { WaitOptions } from "../channel/wait.ts";
import {
  GroupChannel,
  type GroupChannelApi,
  type GroupChannelEvents,
  type GroupMessageListener,
  type InboxListener,
  type MembershipEvent,
  type RequestOptions,
  type SendOptions,
} from "../group/group-channel.ts";
import type { GroupMessage } from "../group/group-message.ts";
import type { Member, View } from "../group/view.ts";
import type { BlazeMessage } from "../message/blaze-message.ts";
import type { ChannelSecurity } from "../security/channel-security.ts";
import type { Address } from "../transport/transport.ts";
import type { AbortSignalLike } from "../web.ts";
import { type ClusterEvents, ClusterState } from "./cluster-state.ts";
import { type ClusterChannelOptions, resolveClusterOptions } from "./options.ts";
import type { ReplicatedMap } from "./replicated-map.ts";
import type { StateStats } from "./state-engine.ts";

/** Events of a cluster channel, by name: a group channel's and the cluster's. */
export type ClusterChannelEvents = GroupChannelEvents & ClusterEvents;

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
 * coordinator orders writes and how a new one takes over. It runs on a {@link GroupChannel} of its own,
 * whose API it offers too (it is a {@link GroupChannelApi}), with the state map built on that group
 * channel: the map's messages are frames of their own kinds, handed to it by the channel's frame routing.
 */
export class ClusterChannel implements GroupChannelApi, AsyncDisposable {
  readonly #group: GroupChannel;
  readonly #state: ClusterState;

  constructor(options?: ClusterChannelOptions) {
    const { state, group } = resolveClusterOptions(options);
    this.#group = new GroupChannel(group, this);
    this.#state = new ClusterState(this.#group, state);
  }

  // --- the cluster level ---

  /** The replicated state map of the state group. */
  get map(): ReplicatedMap {
    return this.#state.map;
  }

  /** The group whose members share the map. */
  get stateGroup(): string {
    return this.#state.stateGroup;
  }

  /**
   * Starts the channel, joins its groups (the state group among them) and resolves once the coordinator
   * has brought this member's replica of the map up to date.
   */
  async join(options: WaitOptions = {}): Promise<View[]> {
    const group = this.#group;
    const views = await group.join(options);
    if (!group.getGroups().includes(this.stateGroup)) views.push(await group.addToGroup(this.stateGroup, options));
    await this.#state.waitForElection(options);
    return views;
  }

  /**
   * Resolves with the coordinator once the election of the current view is over: the coordinator has
   * taken over the map and this member's replica is up to date. Rejects with `TIMEOUT` or `ABORTED`.
   */
  waitForElection(options: WaitOptions = {}): Promise<Member> {
    return this.#state.waitForElection(options);
  }

  /** True once the map is complete here (it was brought up to date by a coordinator at least once). */
  get ready(): boolean {
    return this.#state.ready;
  }

  /** The coordinator of the state group (ActiveBlaze's getMaster), or undefined before a view. */
  getMaster(): Member | undefined {
    return this.#state.getMaster();
  }

  /**
   * True while this member coordinates the map and serves (ActiveBlaze's isMaster): elected, every
   * member took up its term, and a majority heard from it within the failure timeout — a master cut off
   * from its majority stops being one before another can have been elected.
   */
  isMaster(): boolean {
    return this.#state.isMaster();
  }

  /** Adds a listener of a channel, group or cluster event; returns a function that removes it. */
  on<K extends keyof ClusterChannelEvents>(type: K, listener: (event: ClusterChannelEvents[K]) => void): () => void {
    if (type !== "masterChange") return this.#group.on(type as keyof GroupChannelEvents, listener as (event: GroupChannelEvents[keyof GroupChannelEvents]) => void);
    return this.#state.on("masterChange", listener as (event: ClusterEvents["masterChange"]) => void);
  }

  off<K extends keyof ClusterChannelEvents>(type: K, listener: (event: ClusterChannelEvents[K]) => void): void {
    if (type !== "masterChange") return this.#group.off(type as keyof GroupChannelEvents, listener as (event: GroupChannelEvents[keyof GroupChannelEvents]) => void);
    this.#state.off("masterChange", listener as (event: ClusterEvents["masterChange"]) => void);
  }

  /** Counters of the state map. */
  get stateStats(): Readonly<StateStats> & { readonly epoch: number; readonly pendingRequests: number } {
    return this.#state.stateStats;
  }

  // --- the group channel it runs on: see GroupChannel for each ---

  /** This member's id (32 hex digits). */
  get id(): string {
    return this.#group.id;
  }

  get name(): string {
    return this.#group.name;
  }

  get cluster(): string {
    return this.#group.cluster;
  }

  get state(): ChannelState {
    return this.#group.state;
  }

  /** How often this member sends heartbeats, in ms. */
  get heartbeatIntervalMs(): number {
    return this.#group.heartbeatIntervalMs;
  }

  /** The incarnation this member runs as (grows on every start). */
  get incarnation(): number {
    return this.#group.incarnation;
  }

  /** The unicast address this member sends from (after `init()`). */
  get localAddress(): Address {
    return this.#group.localAddress;
  }

  /** The keyring and key rotation of a channel with `security`; undefined without. */
  get security(): ChannelSecurity | undefined {
    return this.#group.security;
  }

  /** The peers this member hears now. */
  get peers(): PeerInfo[] {
    return this.#group.peers;
  }

  /** The channel's counters (see {@link ClusterChannel.groupStats} and {@link ClusterChannel.stateStats} for the levels above). */
  get stats(): ChannelStats {
    return this.#group.stats;
  }

  /** Counters of the group level: see {@link GroupChannel.groupStats}. */
  get groupStats(): GroupChannel["groupStats"] {
    return this.#group.groupStats;
  }

  /** Binds the sockets; the configuration is fixed from here on. Idempotent once initialized. */
  init(): Promise<void> {
    return this.#group.init();
  }

  /** Starts talking to peers (initializing first if needed), in no group yet: see {@link ClusterChannel.join}. Idempotent. */
  start(): Promise<void> {
    return this.#group.start();
  }

  /** Leaves every group and stops talking to peers: see {@link GroupChannel.stop}. Idempotent. */
  stop(): Promise<void> {
    return this.#group.stop();
  }

  /** Stops and releases the sockets; the channel is Constructed again and may be initialized anew. Idempotent. */
  shutDown(): Promise<void> {
    return this.#group.shutDown();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutDown();
  }

  /** Leaves every group gracefully and stops the channel. */
  leave(): Promise<void> {
    return this.#group.leave();
  }

  /** Joins `group`: see {@link GroupChannel.addToGroup}. */
  addToGroup(group: string, options: WaitOptions = {}): Promise<View> {
    return this.#group.addToGroup(group, options);
  }

  /** Leaves `group` gracefully; the others see it at once. */
  removeFromGroup(group: string): void {
    this.#group.removeFromGroup(group);
  }

  getGroups(): string[] {
    return this.#group.getGroups();
  }

  getView(group?: string): View | undefined {
    return this.#group.getView(group);
  }

  getMembers(group?: string): Member[] {
    return this.#group.getMembers(group);
  }

  getLocalMember(): Member {
    return this.#group.getLocalMember();
  }

  getMemberById(id: string): Member | undefined {
    return this.#group.getMemberById(id);
  }

  getMemberByName(name: string, group?: string): Member | undefined {
    return this.#group.getMemberByName(name, group);
  }

  getCoordinator(group?: string): Member | undefined {
    return this.#group.getCoordinator(group);
  }

  isCoordinator(group?: string): boolean {
    return this.#group.isCoordinator(group);
  }

  /** The membership of `group` as an async iterator: see {@link GroupChannel.membership}. */
  membership(group?: string, options: { signal?: AbortSignalLike } = {}): AsyncIterableIterator<MembershipEvent> {
    return this.#group.membership(group, options);
  }

  /** This member's coordinator weight. */
  get weight(): number {
    return this.#group.weight;
  }

  /** Changes this member's coordinator weight at run time: see {@link GroupChannel.setWeight}. */
  setWeight(weight: number): void {
    this.#group.setWeight(weight);
  }

  /** Resolves once at least `count` peers are heard: see {@link GroupChannel.waitForPeers}. */
  waitForPeers(count: number, options: WaitOptions = {}): Promise<void> {
    return this.#group.waitForPeers(count, options);
  }

  /** Broadcasts a message on a topic to every member of the channel: see {@link GroupChannel.broadcast}. */
  broadcast(destination: string, message: BlazeMessage | Uint8Array, options: BroadcastOptions = {}): Promise<void> {
    return this.#group.broadcast(destination, message, options);
  }

  /** Calls `listener` for every message on topic `destination`; returns a function that stops it. */
  onTopic(destination: string, listener: TopicListener): () => void {
    return this.#group.onTopic(destination, listener);
  }

  /** The messages on topic `destination` as an async iterator: see {@link GroupChannel.subscribe}. */
  subscribe(destination: string, options: SubscribeOptions = {}): Subscription<TopicMessage> {
    return this.#group.subscribe(destination, options);
  }

  /** Sends to every member of `group`: see {@link GroupChannel.broadcastToGroup}. */
  broadcastToGroup(group: string, message: BlazeMessage | Uint8Array, options: { outOfBand?: boolean } = {}): Promise<void> {
    return this.#group.broadcastToGroup(group, message, options);
  }

  /** Listens to broadcasts to `group` from its members; returns a function that stops it. */
  onGroupMessage(group: string, listener: GroupMessageListener): () => void {
    return this.#group.onGroupMessage(group, listener);
  }

  /** Sends to one member's inbox: see {@link GroupChannel.send}. */
  send(to: Member | string, message: BlazeMessage | Uint8Array, options: SendOptions = {}): Promise<void> {
    return this.#group.send(to, message, options);
  }

  /** Listens on a named inbox of this member ("" is the default inbox). Returns a function that stops listening. */
  onInbox(name: string, listener: InboxListener): () => void {
    return this.#group.onInbox(name, listener);
  }

  /** A named inbox as an async iterator: see {@link GroupChannel.inbox}. */
  inbox(name = "", options: SubscribeOptions = {}): Subscription<GroupMessage> {
    return this.#group.inbox(name, options);
  }

  /** Consumes queue `name`: see {@link GroupChannel.consumeQueue}. */
  consumeQueue(name: string, handler: InboxListener): () => void {
    return this.#group.consumeQueue(name, handler);
  }

  /** Sends to queue `name`: see {@link GroupChannel.sendToQueue}. */
  sendToQueue(name: string, message: BlazeMessage | Uint8Array, options: WaitOptions = {}): Promise<void> {
    return this.#group.sendToQueue(name, message, options);
  }

  /** A request to one member's inbox: see {@link GroupChannel.request}. */
  request(to: Member | string, message: BlazeMessage | Uint8Array, options: RequestOptions = {}): Promise<GroupMessage> {
    return this.#group.request(to, message, options);
  }

  /** A request through queue `name`: one consumer answers. */
  requestAny(name: string, message: BlazeMessage | Uint8Array, options: WaitOptions = {}): Promise<GroupMessage> {
    return this.#group.requestAny(name, message, options);
  }
}
