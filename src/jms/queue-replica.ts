import { DestinationKind } from "../../gen/activeblaze/v1/messaging_pb.ts";
import type { ClusterChannel } from "../cluster/cluster-channel.ts";
import type { MapChange } from "../cluster/replicated-map.ts";
import { BlazeError, isTimeoutError } from "../errors.ts";
import type { Clock, TimerHandle } from "../transport/clock.ts";
import type { Incoming, JMSConsumer } from "./consumer.ts";
import { wireLookup } from "./message.ts";
import type { ResolvedFactoryOptions } from "./options.ts";
import { parseSelector, type Selector } from "./selector.ts";
import {
  decodeAssignment,
  decodeMessage,
  decodeRegistration,
  encodeAssignment,
  encodeMessage,
  encodeRegistration,
  type WireHeaders,
  type WireMessage,
} from "./wire.ts";

/**
 * Queues held in the cluster's replicated state map, so that a pending message survives its producer's
 * and its consumer's crash (JMS queues on ActiveBlaze's third level):
 *
 * - `$jms/m/<queue>/<id>`: a pending message (a MessagingMessage), written by its producer. A send
 *   resolves once every member of the view holds it.
 * - `$jms/c/<consumer>`: a consumer (a ConsumerRegistration: queue, selector, prefetch), written by its
 *   member and removed by the map when that member leaves.
 * - `$jms/a/<queue>/<name>`: messages given to a consumer at once (a QueueAssignment: the consumer, the
 *   delivery count, the message ids), written by the dispatcher — the map's coordinator — in the map's
 *   order, so that a new coordinator knows exactly what was given to whom. A message belongs to the
 *   latest entry naming it. A consumer that gives messages back (rollback, recover, closing) writes an
 *   entry with no consumer. One entry per consumer and dispatch round, not one per message: an entry
 *   costs every member about what a message does, and most of a message's cost is its entries.
 * - `$jms/dispatch`: the dispatcher's turn. Each dispatch write changes it, on condition that it is at
 *   the version the dispatcher last saw: dispatch writes apply one after the other, each made knowing
 *   the ones before (a coordinator that lost its term cannot give a message a second time).
 * - An acknowledgement removes the message, on condition that the message's entry is at the version
 *   it had when the consumer was given it; a transaction's commit is one such write holding its sends
 *   and its acknowledgements, so it applies whole or not at all. A message is written again (the same
 *   value) whenever it is taken from a consumer other than by its acknowledgement: given back by the
 *   consumer (rollback, recover, closing: on the same condition), or taken by the dispatcher from a
 *   consumer that left (which also removes that consumer's entry, and names what it still held in an
 *   entry with no consumer) — so an acknowledgement or a giving back of a message given to another
 *   consumer meanwhile is refused. The dispatcher removes entries that hold nothing.
 *
 * The dispatcher gives each consumer up to its prefetch of unacknowledged messages, highest priority
 * first, then in the order the map took them, skipping consumers whose selector does not match; a
 * message whose consumer left is given to another one with its delivery count raised, and past
 * `maxRedeliveries` goes to the dead-letter queue. Every member applies the same changes, so whichever
 * becomes coordinator carries on from the map alone.
 */

const MESSAGE_PREFIX = "$jms/m/";
const ASSIGNMENT_PREFIX = "$jms/a/";
const CONSUMER_PREFIX = "$jms/c/";
const DISPATCH_KEY = "$jms/dispatch";
const EMPTY = new Uint8Array(0);
/** Replicas made in this process: with the member id, what names their assignment entries apart. */
let replicasMade = 0;
/** Property set on a message moved to the dead-letter queue: the queue it was sent to. */
export const ORIGINAL_DESTINATION_PROPERTY = "JMS_OriginalDestination";
/** Most entries in one coalesced write (the rest go in the next). */
const MAX_BATCH_ENTRIES = 1024;
/** How often an in-doubt commit looks whether its first write reached the local replica. */
const DOUBT_POLL_MS = 5;
/** How often a coordinator whose term has not begun everywhere looks whether it serves yet. */
const ROLE_RECHECK_MS = 10;
const PRIORITIES = 10;
const NONE: readonly never[] = [];

/** A queue message as a consumer holds it. */
export interface QueueRef {
  readonly queue: string;
  readonly id: string;
  /** The version of the message's entry when the consumer was given it. */
  readonly version: number;
}

interface PendingMessage {
  readonly id: string;
  readonly queue: string;
  /** The version it was first written at: its place in the queue. */
  readonly version: number;
  /** The version of its entry now (it is written again when taken from a consumer). */
  current: number;
  /** When this member first saw it, on its clock. */
  readonly seenAt: number;
  /** Decoded headers (the dispatcher's): priority, delay, time to live, properties for selectors. */
  headers?: WireHeaders;
  /** The dispatcher's write in flight assigns (or removes) it. */
  inFlight?: boolean;
}

/** Who has a message: the latest entry naming it. */
interface Assignment {
  readonly consumer: string;
  readonly deliveryCount: number;
  readonly version: number;
  /** The entry's key. */
  readonly key: string;
}

/** An assignment entry of the map, as applied here. */
interface AssignmentEntry {
  readonly key: string;
  readonly consumer: string;
  readonly version: number;
  readonly ids: readonly string[];
  /** Messages present whose latest entry this is. */
  held: number;
  /** The dispatcher's write in flight removes it. */
  removing?: boolean;
}

interface Registration {
  readonly queue: string;
  readonly selector: Selector | undefined;
  readonly prefetch: number;
  readonly member: string;
  outstanding: number;
}

/** A shared subscription's consumer, anywhere in the cluster. */
export interface SharedSubscriber {
  readonly id: string;
  readonly selector: Selector | undefined;
}

/** One call's writes (a send, an acknowledgement, a release): settled once all its items are written, or one failed. */
interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: BlazeError) => void;
  /** Items not written yet. */
  pending: number;
  failure?: BlazeError;
}

/** Entries written together or not at all (a message; an acknowledgement's message and assignment). */
interface WriteItem {
  readonly puts: ReadonlyArray<readonly [string, Uint8Array]>;
  readonly removes: readonly string[];
  /** The conditions: keys of this item and the versions they must have. */
  readonly ifVersions: ReadonlyArray<readonly [string, number]>;
  readonly waiter: Waiter;
}

/** The writes of one kind coalesced in a tick, written in order. */
type WriteBatch = WriteItem[];

export interface QueueStats {
  enqueued: number;
  acknowledged: number;
  redelivered: number;
  deadLettered: number;
  expired: number;
  staleAcknowledgements: number;
  malformed: number;
}

export class QueueReplica {
  readonly #channel: ClusterChannel;
  readonly #clock: Clock;
  readonly #options: ResolvedFactoryOptions;
  readonly #report: (error: BlazeError) => void;
  readonly #messages = new Map<string, PendingMessage>();
  readonly #assignments = new Map<string, Assignment>();
  readonly #entries = new Map<string, AssignmentEntry>();
  /** What names this replica's assignment entries: the member id, this replica's number, "." and a count. */
  readonly #namePrefix: string;
  #named = 0;
  readonly #registrations = new Map<string, Registration>();
  readonly #shared = new Map<string, SharedSubscriber[]>();
  readonly #local = new Map<string, JMSConsumer>();
  readonly #depth = new Map<string, number>();
  readonly stats: QueueStats = { enqueued: 0, acknowledged: 0, redelivered: 0, deadLettered: 0, expired: 0, staleAcknowledgements: 0, malformed: 0 };
  #offChange: (() => void) | undefined;
  #offReady: (() => void) | undefined;
  #enqueues: WriteBatch | undefined;
  #acks: WriteBatch | undefined;
  #releases: WriteBatch | undefined;
  // The dispatcher's state, while this member coordinates the map.
  #dispatching = false;
  #lanes = new Map<string, string[][]>();
  #roundRobin = new Map<string, number>();
  #dispatchQueued = false;
  /** The version of the dispatcher's turn as applied here. */
  #turn = 0;
  /** A dispatch write is on its way (the next waits for its turn to be applied). */
  #dispatchWriting = false;
  /** Most entries in one write of the dispatcher (fewer once a write was too large for a datagram). */
  #dispatchEntries = MAX_BATCH_ENTRIES;
  #wakeTimer: TimerHandle | undefined;
  /** While this member coordinates the view but its term has not begun everywhere: when to look again. */
  #roleTimer: TimerHandle | undefined;
  #wakeAt = Number.POSITIVE_INFINITY;
  #closed = false;

  constructor(channel: ClusterChannel, clock: Clock, options: ResolvedFactoryOptions, report: (error: BlazeError) => void) {
    this.#channel = channel;
    this.#clock = clock;
    this.#options = options;
    this.#report = report;
    this.#namePrefix = `${channel.id}-${++replicasMade}.`;
  }

  start(): void {
    const map = this.#channel.map;
    // In the map's order: an entry names messages written before it.
    const present = map.keys().flatMap((key) => {
      const entry = map.getEntry(key);
      return key.startsWith("$jms/") && entry !== undefined && entry.value instanceof Uint8Array ? [{ key, value: entry.value, version: entry.version }] : [];
    });
    present.sort((a, b) => a.version - b.version);
    for (const { key, value, version } of present) {
      this.#apply(key, value, version);
      // A member restarted with this id (in a new process) names its entries past the ones it left.
      if (key.startsWith(ASSIGNMENT_PREFIX) && key.lastIndexOf(`/${this.#namePrefix}`) > 0) {
        this.#named = Math.max(this.#named, Number(key.slice(key.lastIndexOf(".") + 1)) || 0);
      }
    }
    this.#offChange = this.#channel.map.on("change", (change) => this.#onChange(change));
    this.#offReady = this.#channel.map.on("ready", () => this.#checkRole());
    this.#checkRole();
  }

  close(): void {
    this.#closed = true;
    this.#offChange?.();
    this.#offReady?.();
    this.#wakeTimer?.cancel();
    this.#roleTimer?.cancel();
    this.#dispatching = false;
    const closed = new BlazeError("CLOSED", "the connection factory closed");
    for (const batch of [this.#enqueues, this.#acks, this.#releases]) for (const item of batch ?? []) item.waiter.reject(closed);
    this.#enqueues = this.#acks = this.#releases = undefined;
  }

  /** Messages of `queue` held in the map now. */
  depth(queue: string): number {
    return this.#depth.get(queue) ?? 0;
  }

  get dispatching(): boolean {
    return this.#dispatching;
  }

  // --- producers ---

  /** Adds messages to their queues; resolves once every member holds them (coalesced with other sends of this tick). */
  enqueue(messages: readonly WireMessage[]): Promise<void> {
    for (const message of messages) this.#checkRoom(message.headers.destination.name, 1);
    return new Promise((resolve, reject) => {
      const batch = (this.#enqueues ??= this.#newBatch(() => (this.#enqueues = undefined)));
      const waiter: Waiter = { resolve, reject, pending: messages.length };
      for (const message of messages) {
        batch.push({ puts: [[messageKey(message.headers.destination.name, message.headers.messageId.text), encodeMessage(message)]], removes: NONE, ifVersions: NONE, waiter });
      }
      this.stats.enqueued += messages.length;
    });
  }

  /** A transaction's queue part as one write: its sends, and its acknowledgements on condition. */
  async commit(messages: readonly WireMessage[], acks: readonly QueueRef[]): Promise<void> {
    const perQueue = new Map<string, number>();
    for (const message of messages) perQueue.set(message.headers.destination.name, (perQueue.get(message.headers.destination.name) ?? 0) + 1);
    for (const [queue, count] of perQueue) this.#checkRoom(queue, count);
    const ifVersions = new Map<string, number>();
    const removes: string[] = [];
    for (const ack of acks) {
      const key = messageKey(ack.queue, ack.id);
      removes.push(key);
      ifVersions.set(key, ack.version);
    }
    const puts = messages.map((message) => [messageKey(message.headers.destination.name, message.headers.messageId.text), encodeMessage(message)] as const);
    try {
      await this.#channel.map.putAll(puts, { remove: removes, ifVersions, timeoutMs: this.#options.sendTimeoutMs });
    } catch (error) {
      if (!isTimeoutError(error) || !(await this.#committedAfterAll(puts, removes, ifVersions))) {
        const why = error instanceof BlazeError && error.code === "VERSION_MISMATCH" ? "a message it consumed was given to another consumer meanwhile" : (error as Error).message;
        throw new BlazeError("TRANSACTION_ROLLED_BACK", `the transaction was rolled back: ${why}`, { cause: error });
      }
    }
    this.stats.enqueued += messages.length;
    this.stats.acknowledged += acks.length;
  }

  // --- consumers ---

  /** Advertises a local queue consumer (or shared subscriber) to the dispatcher. */
  register(consumer: JMSConsumer): void {
    this.#local.set(consumer.id, consumer);
    const registration = encodeRegistration({
      destination: { kind: consumer.destination.isTopic ? DestinationKind.TOPIC : DestinationKind.QUEUE, name: consumer.destination.name },
      selector: consumer.selector?.text ?? "",
      prefetch: consumer.prefetch,
      subscription: consumer.subscription ?? "",
    });
    this.#channel.map.put(CONSUMER_PREFIX + consumer.id, registration, { removeOnExit: true, timeoutMs: this.#options.sendTimeoutMs }).catch((error: unknown) => {
      if (!consumer.closed && !this.#closed && !(error instanceof BlazeError && error.code === "CLOSED")) this.#report(wrap(error, `advertising consumer ${consumer.id}`));
    });
  }

  unregister(consumer: JMSConsumer): void {
    this.#local.delete(consumer.id);
    if (this.#closed || this.#channel.state !== "started") return;
    this.#channel.map.remove(CONSUMER_PREFIX + consumer.id, { timeoutMs: this.#options.sendTimeoutMs }).catch(() => undefined);
  }

  /**
   * Shared subscribers of `subscription` anywhere in the cluster (consumer ids in a fixed order), with
   * their selectors: found once, then kept until a registration comes or goes (asked for every message).
   */
  sharedSubscribers(subscription: string): readonly SharedSubscriber[] {
    let found = this.#shared.get(subscription);
    if (found === undefined) {
      found = [];
      for (const [id, registration] of this.#registrations) {
        if (registration.queue === `\u0000${subscription}`) found.push({ id, selector: registration.selector });
      }
      found.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.#shared.set(subscription, found);
    }
    return found;
  }

  /** Acknowledges queue messages (coalesced per tick); rejects for one given to another consumer meanwhile. */
  acknowledge(refs: readonly QueueRef[]): Promise<void> {
    if (refs.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const batch = (this.#acks ??= this.#newBatch(() => (this.#acks = undefined)));
      const waiter: Waiter = { resolve, reject, pending: refs.length };
      for (const ref of refs) {
        const key = messageKey(ref.queue, ref.id);
        batch.push({ puts: NONE, removes: [key], ifVersions: [[key, ref.version]], waiter });
      }
    });
  }

  /**
   * Gives messages back to their queue; `delivered` ones count as a delivery (they are redelivered).
   * Each is written again, with an entry naming it with no consumer, on condition that it is at the
   * version it had when it was given (not given to another consumer meanwhile). Not a hot path: one
   * message a write item, so that one refused leaves the others to apply.
   */
  release(items: ReadonlyArray<{ readonly ref: QueueRef; readonly deliveryCount: number; readonly delivered: boolean }>): void {
    if (items.length === 0 || this.#closed) return;
    const batch = (this.#releases ??= this.#newBatch(() => (this.#releases = undefined)));
    const waiter: Waiter = { resolve: () => undefined, reject: () => undefined, pending: items.length };
    for (const { ref, deliveryCount, delivered } of items) {
      const key = messageKey(ref.queue, ref.id);
      const body = this.#channel.map.get(key);
      if (!(body instanceof Uint8Array)) {
        waiter.pending--;
        continue;
      }
      const entry = this.#newAssignmentKey(ref.queue);
      batch.push({
        puts: [
          [key, body],
          [entry, encodeAssignment({ consumer: "", deliveryCount: delivered ? deliveryCount : deliveryCount - 1, messageIds: [ref.id] })],
        ],
        removes: NONE,
        ifVersions: [
          [key, ref.version],
          [entry, 0],
        ],
        waiter,
      });
    }
  }

  // --- the map's changes ---

  #onChange(change: MapChange): void {
    if (!change.key.startsWith("$jms/")) return;
    if (change.type === "remove") this.#remove(change.key, change.expired);
    else if (change.value instanceof Uint8Array) this.#apply(change.key, change.value, change.version);
    if (this.#dispatching) this.#scheduleDispatch();
  }

  #apply(key: string, value: Uint8Array, version: number): void {
    if (key.startsWith(MESSAGE_PREFIX)) {
      const { queue, id } = splitKey(key, MESSAGE_PREFIX);
      const known = this.#messages.get(id);
      if (known !== undefined) {
        // Written again: taken from a consumer (what has it now follows in the same update).
        known.current = version;
        return;
      }
      this.#depth.set(queue, (this.#depth.get(queue) ?? 0) + 1);
      const message: PendingMessage = { id, queue, version, current: version, seenAt: this.#clock.now() };
      this.#messages.set(id, message);
      const assignment = this.#assignments.get(id);
      // Named by an entry applied before it (a snapshot's changes come in no particular order).
      if (assignment !== undefined) this.#hold(assignment, +1, true);
      if (this.#dispatching && (assignment === undefined || assignment.consumer === "" || !this.#registrations.has(assignment.consumer))) this.#lane(queue, message)?.push(id);
      return;
    }
    if (key.startsWith(ASSIGNMENT_PREFIX)) {
      this.#applyAssignment(key, value, version);
      return;
    }
    if (key === DISPATCH_KEY) {
      this.#turn = version;
      this.#dispatchWriting = false;
      return;
    }
    if (key.startsWith(CONSUMER_PREFIX)) {
      const consumerId = key.slice(CONSUMER_PREFIX.length);
      const decoded = decodeRegistration(value);
      if (decoded === undefined) {
        this.stats.malformed++;
        return;
      }
      let selector: Selector | undefined;
      try {
        selector = decoded.selector === "" ? undefined : parseSelector(decoded.selector);
      } catch {
        this.stats.malformed++;
        return;
      }
      let outstanding = 0;
      for (const [id, assignment] of this.#assignments) if (assignment.consumer === consumerId && this.#messages.has(id)) outstanding++;
      // Shared subscriptions are kept apart from queues under a name no queue can have.
      const queue = decoded.subscription !== "" ? `\u0000${decoded.subscription}` : decoded.destination.name;
      this.#registrations.set(consumerId, { queue, selector, prefetch: Math.max(1, decoded.prefetch), member: consumerId.slice(0, consumerId.indexOf("/")), outstanding });
      this.#shared.clear();
    }
  }

  /** An assignment entry: each message it names goes to its consumer, unless a later entry names it. */
  #applyAssignment(key: string, value: Uint8Array, version: number): void {
    const decoded = decodeAssignment(value);
    if (decoded === undefined) {
      this.stats.malformed++;
      return;
    }
    // Entries are written once; a key written again (by a faulty member) stands for its latest value.
    if (this.#entries.has(key)) this.#removeAssignment(key);
    const { queue } = splitKey(key, ASSIGNMENT_PREFIX);
    const entry: AssignmentEntry = { key, consumer: decoded.consumer, version, ids: decoded.messageIds, held: 0 };
    this.#entries.set(key, entry);
    const live = entry.consumer !== "" && this.#registrations.has(entry.consumer);
    // One for all the messages it names (they share all of it).
    const assignment: Assignment = { consumer: entry.consumer, deliveryCount: decoded.deliveryCount, version, key };
    for (const id of entry.ids) {
      const previous = this.#assignments.get(id);
      if (previous !== undefined && previous.version >= version) continue;
      const message = this.#messages.get(id);
      if (previous !== undefined && message !== undefined) this.#hold(previous, -1, true);
      this.#assignments.set(id, assignment);
      if (message === undefined) continue;
      // The dispatcher counted its own assignment against the consumer's prefetch when it made it.
      this.#hold(assignment, +1, message.inFlight !== true);
      message.inFlight = false;
      // Given back, or given to a consumer that left while the entry was on its way (its leaving gave
      // back only what it held then): first in line again at the dispatcher.
      if (!live) {
        if (this.#dispatching) this.#requeue(message);
        continue;
      }
      this.#deliverLocally(queue, id, assignment);
    }
  }

  #remove(key: string, expired: boolean): void {
    if (key.startsWith(MESSAGE_PREFIX)) {
      if (expired) this.stats.expired++;
      const id = key.slice(key.lastIndexOf("/") + 1);
      const message = this.#messages.get(id);
      if (message === undefined) return;
      this.#messages.delete(id);
      this.#depth.set(message.queue, Math.max(0, (this.#depth.get(message.queue) ?? 1) - 1));
      const assignment = this.#assignments.get(id);
      if (assignment === undefined) return;
      this.#assignments.delete(id);
      this.#hold(assignment, -1, true);
      return;
    }
    if (key.startsWith(ASSIGNMENT_PREFIX)) {
      this.#removeAssignment(key);
      return;
    }
    if (key.startsWith(CONSUMER_PREFIX)) {
      const consumerId = key.slice(CONSUMER_PREFIX.length);
      this.#registrations.delete(consumerId);
      this.#shared.clear();
      if (!this.#dispatching) return;
      // Its messages go to the others, as redeliveries.
      for (const [id, assignment] of this.#assignments) {
        if (assignment.consumer !== consumerId) continue;
        const message = this.#messages.get(id);
        if (message !== undefined) this.#requeue(message);
      }
    }
  }

  /** An entry went: what it still held (none, as the dispatcher writes) has no assignment any more. */
  #removeAssignment(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    for (const id of entry.ids) {
      const assignment = this.#assignments.get(id);
      if (assignment?.key !== key) continue;
      this.#assignments.delete(id);
      const message = this.#messages.get(id);
      if (message === undefined) continue;
      this.#hold(assignment, -1, true);
      if (this.#dispatching) this.#requeue(message);
    }
  }

  /** A present message is held by `assignment`, or no longer: its entry's count and its consumer's outstanding. */
  #hold(assignment: Assignment, delta: number, countConsumer: boolean): void {
    const entry = this.#entries.get(assignment.key);
    if (entry !== undefined) entry.held += delta;
    if (countConsumer) this.#outstanding(assignment.consumer, delta);
  }

  #outstanding(consumer: string, delta: number): void {
    if (consumer === "") return;
    const registration = this.#registrations.get(consumer);
    if (registration !== undefined) registration.outstanding = Math.max(0, registration.outstanding + delta);
  }

  #deliverLocally(queue: string, id: string, assignment: Assignment): void {
    const consumer = this.#local.get(assignment.consumer);
    if (consumer === undefined || consumer.closed) return;
    const body = this.#channel.map.get(messageKey(queue, id));
    const message = this.#messages.get(id);
    const wire = body instanceof Uint8Array ? decodeMessage(body) : undefined;
    if (wire === undefined || message === undefined) {
      this.stats.malformed++;
      return;
    }
    const ttl = wire.headers.timeToLiveMs;
    consumer.push({
      wire,
      queue: { queue, id, version: message.current },
      deliveryCount: assignment.deliveryCount,
      expiresAt: ttl > 0 ? message.seenAt + ttl : Number.POSITIVE_INFINITY,
    } satisfies Incoming);
  }

  #newAssignmentKey(queue: string): string {
    return `${ASSIGNMENT_PREFIX}${queue}/${this.#namePrefix}${++this.#named}`;
  }

  // --- the dispatcher ---

  #checkRole(): void {
    const master = !this.#closed && this.#channel.isMaster();
    this.#roleTimer?.cancel();
    this.#roleTimer = undefined;
    // The view's coordinator serves once every member took up its term (after the map's "ready"), and
    // nothing else tells the dispatcher: it looks again shortly.
    if (!master && !this.#closed && this.#channel.getMaster()?.id === this.#channel.id) {
      this.#roleTimer = this.#clock.setTimer(ROLE_RECHECK_MS, () => this.#checkRole());
    }
    if (master === this.#dispatching) return;
    this.#dispatching = master;
    this.#lanes.clear();
    if (!master) return;
    // Taking over: every pending message not held by a live consumer waits in its queue, in map order.
    const ordered = [...this.#messages.entries()].sort((a, b) => a[1].version - b[1].version);
    for (const [id, message] of ordered) {
      message.inFlight = false;
      const assignment = this.#assignments.get(id);
      if (assignment !== undefined && assignment.consumer !== "" && this.#registrations.has(assignment.consumer)) continue;
      this.#lane(message.queue, message)?.push(id);
    }
    for (const entry of this.#entries.values()) entry.removing = false;
    this.#dispatchWriting = false;
    this.#recount();
    this.#scheduleDispatch();
  }

  /** Counts again what each consumer holds (taking over, or after a refused write). */
  #recount(): void {
    for (const registration of this.#registrations.values()) registration.outstanding = 0;
    for (const [id, assignment] of this.#assignments) if (this.#messages.has(id)) this.#outstanding(assignment.consumer, +1);
  }

  /** The lane (by priority) of a message at the dispatcher; decodes its headers the first time. */
  #lane(queue: string, message: PendingMessage): string[] | undefined {
    if (message.headers === undefined) {
      const key = messageKey(queue, message.id);
      const body = this.#channel.map.get(key);
      const wire = body instanceof Uint8Array ? decodeMessage(body) : undefined;
      if (wire === undefined) {
        // Not a message (a faulty member wrote it): dropped, counted, never dispatched.
        this.stats.malformed++;
        this.#channel.map.putAll([], { remove: [key], timeoutMs: this.#options.sendTimeoutMs }).catch(() => undefined);
        return undefined;
      }
      message.headers = wire.headers;
    }
    let lanes = this.#lanes.get(queue);
    if (lanes === undefined) this.#lanes.set(queue, (lanes = Array.from({ length: PRIORITIES }, () => [])));
    return lanes[Math.min(PRIORITIES - 1, Math.max(0, message.headers.priority))];
  }

  /**
   * Puts a message back in line at its place in the map's order: before what was sent after it, after
   * what was sent with it (messages put back in their order keep it).
   */
  #requeue(message: PendingMessage): void {
    const lane = this.#lane(message.queue, message);
    if (lane === undefined) return;
    let at = 0;
    while (at < lane.length && (this.#messages.get(lane[at]!)?.version ?? 0) <= message.version) at++;
    lane.splice(at, 0, message.id);
  }

  #scheduleDispatch(): void {
    if (this.#dispatchQueued) return;
    this.#dispatchQueued = true;
    this.#clock.defer(() => {
      this.#dispatchQueued = false;
      if (!this.#closed) this.#dispatch();
    });
  }

  #dispatch(): void {
    if (!this.#channel.isMaster()) {
      this.#checkRole();
      return;
    }
    // One dispatch write at a time: the next is made once this one's turn is applied here.
    if (this.#dispatchWriting) return;
    const now = this.#clock.now();
    const puts: Array<readonly [string, Uint8Array]> = [];
    const removes: string[] = [];
    const ifVersions = new Map<string, number>();
    const assigned: string[] = [];
    // The round's new entries: per queue, consumer and delivery count, the message ids.
    const given = new Map<string, { queue: string; consumer: string; deliveryCount: number; ids: string[] }>();
    const give = (queue: string, consumer: string, deliveryCount: number, message: PendingMessage, from: Assignment | undefined) => {
      const group = `${deliveryCount}/${consumer}/${queue}`;
      let found = given.get(group);
      if (found === undefined) given.set(group, (found = { queue, consumer, deliveryCount, ids: [] }));
      found.ids.push(message.id);
      // Taken from a consumer that left: written again (before the entries), so that what that
      // consumer may still send for it (an acknowledgement, a giving back) is refused.
      if (from === undefined || from.consumer === "") return;
      const key = messageKey(queue, message.id);
      const body = this.#channel.map.get(key);
      if (!(body instanceof Uint8Array)) return;
      puts.push([key, body]);
      ifVersions.set(key, message.current);
      size++;
    };
    let size = 0;
    let wakeAt = Number.POSITIVE_INFINITY;
    for (const [queue, lanes] of this.#lanes) {
      const consumers = [...this.#registrations.entries()].filter(([, r]) => r.queue === queue);
      // No consumer with room: nothing to scan (the queue may be long; it waits as it is).
      const hasRoom = () => consumers.some(([, r]) => r.outstanding < r.prefetch);
      if (!hasRoom()) continue;
      for (let priority = PRIORITIES - 1; priority >= 0; priority--) {
        const lane = lanes[priority]!;
        const kept: string[] = [];
        const seen = new Set<string>();
        let at = 0;
        for (; at < lane.length; at++) {
          if (size >= this.#dispatchEntries || !hasRoom()) break;
          const id = lane[at]!;
          if (seen.has(id)) continue;
          seen.add(id);
          const message = this.#messages.get(id);
          const assignment = this.#assignments.get(id);
          // Gone, on its way to a consumer, or held by a live one: not pending (any more).
          if (message === undefined || message.inFlight === true) continue;
          if (assignment !== undefined && assignment.consumer !== "" && this.#registrations.has(assignment.consumer)) continue;
          const headers = message.headers!;
          if (headers.timeToLiveMs > 0 && now >= message.seenAt + headers.timeToLiveMs) {
            removes.push(messageKey(queue, id));
            message.inFlight = true;
            size++;
            this.stats.expired++;
            continue;
          }
          const deliverAt = message.seenAt + headers.deliveryDelayMs;
          if (deliverAt > now) {
            wakeAt = Math.min(wakeAt, deliverAt);
            kept.push(id);
            continue;
          }
          const count = (assignment?.deliveryCount ?? 0) + 1;
          if (this.#options.maxRedeliveries >= 0 && count > this.#options.maxRedeliveries + 1 && queue !== this.#options.deadLetterQueue) {
            const deadLetter = this.#deadLetter(queue, id);
            if (deadLetter !== undefined) puts.push(deadLetter);
            removes.push(messageKey(queue, id));
            message.inFlight = true;
            size += 2;
            this.stats.deadLettered++;
            continue;
          }
          const consumer = this.#choose(queue, consumers, headers, count);
          if (consumer === undefined) {
            kept.push(id);
            continue;
          }
          give(queue, consumer, count, message, assignment);
          message.inFlight = true;
          assigned.push(id);
          size++;
          this.#registrations.get(consumer)!.outstanding++;
          if (count > 1) this.stats.redelivered++;
        }
        // What was not looked at (the batch is full, or no consumer has room) stays, after what was kept.
        const rest = lane.slice(at);
        lane.length = 0;
        for (const id of kept) lane.push(id);
        for (const id of rest) lane.push(id);
      }
    }
    // Entries that hold nothing go; so do those of consumers that left, what they still hold (and this
    // round does not give to another) named again with no consumer — their acknowledgements are refused.
    const retired: AssignmentEntry[] = [];
    for (const entry of this.#entries.values()) {
      if (size >= this.#dispatchEntries) break;
      if (entry.removing === true) continue;
      const left = entry.consumer !== "" && !this.#registrations.has(entry.consumer);
      if (entry.held > 0 && !left) continue;
      for (const id of entry.ids) {
        const assignment = this.#assignments.get(id);
        const message = this.#messages.get(id);
        if (assignment?.key !== entry.key || message === undefined || message.inFlight === true) continue;
        give(queueOf(entry.key), "", assignment.deliveryCount, message, assignment);
        size++;
      }
      removes.push(entry.key);
      ifVersions.set(entry.key, entry.version);
      entry.removing = true;
      retired.push(entry);
      size++;
    }
    this.#armWake(wakeAt);
    if (given.size === 0 && removes.length === 0) return;
    for (const { queue, consumer, deliveryCount, ids } of given.values()) {
      const key = this.#newAssignmentKey(queue);
      puts.push([key, encodeAssignment({ consumer, deliveryCount, messageIds: ids })]);
      ifVersions.set(key, 0);
    }
    puts.push([DISPATCH_KEY, EMPTY]);
    ifVersions.set(DISPATCH_KEY, this.#turn);
    this.#dispatchWriting = true;
    this.#channel.map.putAll(puts, { remove: removes, ifVersions, timeoutMs: this.#options.sendTimeoutMs }).then(
      () => undefined,
      (error: unknown) => {
        this.#dispatchWriting = false;
        // More than a datagram carries: smaller writes from now on (the limit is the channel's, it stays).
        const shrunk = error instanceof BlazeError && error.code === "MESSAGE_TOO_LARGE" && size > 1;
        if (shrunk) this.#dispatchEntries = Math.max(1, Math.floor(size / 2));
        // Refused (a consumer gave a message back meanwhile, or this member no longer coordinates): what
        // did not apply waits again, from the map as it now is.
        for (const entry of retired) entry.removing = false;
        for (const id of assigned) {
          const message = this.#messages.get(id);
          if (message?.inFlight !== true) continue;
          message.inFlight = false;
          const assignment = this.#assignments.get(id);
          if (assignment === undefined || assignment.consumer === "" || !this.#registrations.has(assignment.consumer)) this.#requeue(message);
        }
        this.#recount();
        for (const key of removes) {
          if (!key.startsWith(MESSAGE_PREFIX)) continue;
          const { id } = splitKey(key, MESSAGE_PREFIX);
          const message = this.#messages.get(id);
          if (message?.inFlight === true) {
            message.inFlight = false;
            this.#requeue(message);
          }
        }
        this.#clock.setTimer(shrunk ? 0 : 20, () => this.#dispatching && this.#scheduleDispatch());
      },
    );
  }

  /** Round robin among the queue's consumers with room whose selector takes the message. */
  #choose(queue: string, consumers: ReadonlyArray<readonly [string, Registration]>, headers: WireHeaders, deliveryCount: number): string | undefined {
    if (consumers.length === 0) return undefined;
    const start = this.#roundRobin.get(queue) ?? 0;
    const lookup = wireLookup(headers, deliveryCount);
    for (let i = 0; i < consumers.length; i++) {
      const at = (start + i) % consumers.length;
      const [id, registration] = consumers[at]!;
      if (registration.outstanding >= registration.prefetch) continue;
      if (registration.selector !== undefined && !registration.selector.matches(lookup)) continue;
      this.#roundRobin.set(queue, at + 1);
      return id;
    }
    return undefined;
  }

  #deadLetter(queue: string, id: string): readonly [string, Uint8Array] | undefined {
    const body = this.#channel.map.get(messageKey(queue, id));
    const wire = body instanceof Uint8Array ? decodeMessage(body) : undefined;
    if (wire === undefined) return undefined;
    const dlq = this.#options.deadLetterQueue;
    wire.headers.properties.set(ORIGINAL_DESTINATION_PROPERTY, { type: "string", value: queue });
    wire.headers.destination = { kind: DestinationKind.QUEUE, name: dlq };
    // Its own entry id: the index of pending messages is by id, and the original is removed in the same write.
    return [messageKey(dlq, `${id}!dead`), encodeMessage(wire)];
  }

  #armWake(at: number): void {
    if (at === Number.POSITIVE_INFINITY || at >= this.#wakeAt) return;
    this.#wakeTimer?.cancel();
    this.#wakeAt = at;
    this.#wakeTimer = this.#clock.setTimer(Math.max(0, at - this.#clock.now()), () => {
      this.#wakeAt = Number.POSITIVE_INFINITY;
      this.#wakeTimer = undefined;
      if (this.#dispatching) this.#scheduleDispatch();
    });
  }

  // --- coalesced writes ---

  #checkRoom(queue: string, count: number): void {
    if (this.depth(queue) + count > this.#options.maxQueueMessages) {
      throw new BlazeError("QUEUE_FULL", `queue "${queue}" holds ${this.depth(queue)} messages (maxQueueMessages ${this.#options.maxQueueMessages})`);
    }
  }

  #newBatch(detach: () => void): WriteBatch {
    const batch: WriteBatch = [];
    this.#clock.defer(() => {
      detach();
      if (this.#closed) return;
      void this.#flush(batch);
    });
    return batch;
  }

  /**
   * A commit whose write timed out is in doubt: the coordinator may still have ordered it (a write is
   * answered once every member holds it, and a coordinator's crash can hold the answer back). The same
   * write is sent again on the same conditions, which makes it once-only: the acknowledged messages at
   * the versions this consumer was given them, the sent messages' keys absent. If it applies now, the
   * first never will; if it is refused, the first applied exactly when the acknowledged messages are
   * gone from the map (no one else removes a message a consumer holds) — or, for a transaction of sends
   * alone, when its messages are there. True when the transaction took effect.
   */
  async #committedAfterAll(
    puts: ReadonlyArray<readonly [string, Uint8Array]>,
    removes: readonly string[],
    ifVersions: ReadonlyMap<string, number>,
  ): Promise<boolean> {
    const conditions = new Map(ifVersions);
    for (const [key] of puts) conditions.set(key, 0);
    const map = this.#channel.map;
    try {
      await map.putAll(puts, { remove: removes, ifVersions: conditions, timeoutMs: this.#options.sendTimeoutMs });
      return true;
    } catch (error) {
      if (!(error instanceof BlazeError) || error.code !== "VERSION_MISMATCH") return false;
    }
    // Refused: the first write's effect, if it applied, reaches the local replica shortly.
    const applied = () => (removes.length > 0 ? removes.every((key) => !map.has(key)) : puts.every(([key]) => map.has(key)));
    const deadline = this.#clock.now() + this.#options.sendTimeoutMs;
    while (!applied() && this.#clock.now() < deadline && !this.#closed) {
      await new Promise<void>((resolve) => this.#clock.setTimer(DOUBT_POLL_MS, resolve));
    }
    return applied();
  }

  /** Writes a tick's coalesced items in order, up to MAX_BATCH_ENTRIES entries a write. */
  async #flush(batch: WriteBatch): Promise<void> {
    let from = 0;
    let entries = 0;
    for (let at = 0; at < batch.length; at++) {
      const size = batch[at]!.puts.length + batch[at]!.removes.length;
      if (at > from && entries + size > MAX_BATCH_ENTRIES) {
        await this.#write(batch.slice(from, at));
        from = at;
        entries = 0;
      }
      entries += size;
    }
    if (from < batch.length) await this.#write(batch.slice(from));
  }

  /**
   * Writes `items` as one update. Refused whole, they are written again in parts: in halves when the
   * update is more than a datagram carries, one by one when a condition failed (an acknowledgement of a
   * message given to another consumer meanwhile), so that the others still apply.
   */
  async #write(items: readonly WriteItem[]): Promise<void> {
    const puts: Array<readonly [string, Uint8Array]> = [];
    const removes: string[] = [];
    const ifVersions = new Map<string, number>();
    for (const item of items) {
      for (const put of item.puts) puts.push(put);
      for (const key of item.removes) removes.push(key);
      for (const [key, version] of item.ifVersions) ifVersions.set(key, version);
    }
    let failure: BlazeError | undefined;
    try {
      await this.#channel.map.putAll(puts, { remove: removes, ifVersions, timeoutMs: this.#options.sendTimeoutMs });
    } catch (error) {
      const code = error instanceof BlazeError ? error.code : undefined;
      if (items.length > 1 && code === "MESSAGE_TOO_LARGE") {
        const half = Math.ceil(items.length / 2);
        await this.#write(items.slice(0, half));
        await this.#write(items.slice(half));
        return;
      }
      if (items.length > 1 && code === "VERSION_MISMATCH") {
        for (const item of items) await this.#write([item]);
        return;
      }
      // A lone item whose condition failed: an acknowledgement (or a release) of a message given to another consumer meanwhile.
      if (code === "VERSION_MISMATCH" && items[0]!.removes.length > 0) {
        this.stats.staleAcknowledgements++;
        failure = new BlazeError("ILLEGAL_STATE", "a queue message was given to another consumer before it was acknowledged (it will be redelivered there)", { cause: error });
      } else failure = wrap(error, "a queue write");
    }
    for (const item of items) {
      // Only acknowledgements remove: a message and its assignment each.
      if (failure === undefined && item.removes.length > 0) this.stats.acknowledged++;
      const waiter = item.waiter;
      waiter.failure ??= failure;
      if (--waiter.pending > 0) continue;
      if (waiter.failure === undefined) waiter.resolve();
      else waiter.reject(waiter.failure);
    }
  }
}

function messageKey(queue: string, id: string): string {
  return `${MESSAGE_PREFIX}${queue}/${id}`;
}

/** The queue of an assignment entry's key. */
function queueOf(key: string): string {
  return key.slice(ASSIGNMENT_PREFIX.length, key.lastIndexOf("/"));
}

/** A message id holds no "/": the last one separates it from the queue name. */
function splitKey(key: string, prefix: string): { queue: string; id: string } {
  const at = key.lastIndexOf("/");
  return { queue: key.slice(prefix.length, at), id: key.slice(at + 1) };
}

function wrap(error: unknown, what: string): BlazeError {
  return error instanceof BlazeError ? error : new BlazeError("INTERNAL_ERROR", `${what} failed: ${String(error)}`, { cause: error });
}
