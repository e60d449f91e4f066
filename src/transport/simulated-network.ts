/**
 * A deterministic, in-memory UDP network for tests: virtual hosts and transports on a
 * {@link VirtualClock}, with seeded loss, duplication, reordering, delay, bandwidth, partitions,
 * crashes and stalled processes.
 * Every random choice comes from the seed, and every delivery is a clock timer, so the same seed
 * and the same test actions replay the same run, event for event.
 */
import { BlazeError } from "../errors.ts";
import type { Clock, TimerHandle } from "./clock.ts";
import { SeededRandom } from "./seeded-random.ts";
import {
  MAX_UDP_PAYLOAD_BYTES,
  type Address,
  type ReceiveHandler,
  type Transport,
  type TransportErrorHandler,
  type TransportFactory,
  type TransportOptions,
} from "./transport.ts";
import { VirtualClock } from "./virtual-clock.ts";

/** A closed range of milliseconds; a value is drawn uniformly from it. */
export interface DelayRange {
  /** Lower bound in milliseconds, ≥ 0. */
  readonly min: number;
  /** Upper bound in milliseconds, ≥ `min`. */
  readonly max: number;
}

/**
 * How one direction of a link between two hosts treats datagrams. Each datagram's fate is drawn
 * independently from the link's own random stream.
 */
export interface LinkConditions {
  /** Probability that a datagram is lost, 0..1. Default 0. */
  readonly loss: number;
  /** Probability that a datagram that was not lost arrives twice (each copy with its own delay), 0..1. Default 0. */
  readonly duplicate: number;
  /**
   * Probability that a datagram is held back by an extra `reorderDelayMs`, so that datagrams sent
   * after it overtake it, 0..1. Default 0. Datagrams that are not held back keep their sending
   * order on the link (a later one never arrives before an earlier one), whatever their delays.
   */
  readonly reorder: number;
  /** One-way delay, drawn uniformly from the range, in milliseconds. Default `{ min: 0.1, max: 0.5 }` (a LAN). */
  readonly delayMs: DelayRange;
  /** Extra delay of a held-back (reordered) datagram, in milliseconds. Default `{ min: 1, max: 5 }`. */
  readonly reorderDelayMs: DelayRange;
  /**
   * How many bytes a second the link carries, > 0. Default `Infinity` (no serialization delay). A
   * datagram leaves once the link has finished with the ones sent before it and takes `size / bandwidth`
   * to go out, then the delay: a 16 MiB burst over a 10 MB/s link takes 1.7 s. The queue in front of the
   * link is unbounded (nothing is dropped for being late). Each link has its own: a multicast datagram
   * takes the time on the link to each receiver.
   */
  readonly bandwidthBytesPerSecond: number;
}

/** The built-in default link: a clean LAN. */
export const DEFAULT_LINK: LinkConditions = Object.freeze({
  loss: 0,
  duplicate: 0,
  reorder: 0,
  delayMs: Object.freeze({ min: 0.1, max: 0.5 }),
  reorderDelayMs: Object.freeze({ min: 1, max: 5 }),
  bandwidthBytesPerSecond: Infinity,
});

/** A host's link to itself (loopback): lossless, in order, no delay, unless set with `setLink`. */
const LOOPBACK_LINK: LinkConditions = Object.freeze({
  loss: 0,
  duplicate: 0,
  reorder: 0,
  delayMs: Object.freeze({ min: 0, max: 0 }),
  reorderDelayMs: DEFAULT_LINK.reorderDelayMs,
  bandwidthBytesPerSecond: Infinity,
});

export interface SimulatedNetworkOptions {
  /** Seed of every random choice the network makes: a safe integer or a string. Required. */
  readonly seed: number | string;
  /** Conditions of every link between two different hosts not set with `setLink`; missing fields from {@link DEFAULT_LINK}. */
  readonly defaultLink?: Partial<LinkConditions>;
  /** The largest datagram a transport accepts, in bytes. Default 65,507 (the IPv4 UDP maximum). */
  readonly maxDatagramBytes?: number;
  /** Record every event as a line of text and keep a running digest of them. Default false (no formatting cost). */
  readonly trace?: boolean;
  /** How many of the latest trace lines to keep in memory (the digest covers all of them). Default 100,000. */
  readonly traceMaxLines?: number;
  /** The clock to run on. Default: a new {@link VirtualClock} starting at 0. */
  readonly clock?: VirtualClock;
}

export interface SimulatedTransportOptions {
  /** The host to bind on; created when the name is new. Default: a new host `10.0.0.N`. */
  readonly host?: string;
  /** The port to bind; 0 or absent picks a free one from 49,152 up. */
  readonly port?: number;
  /** Allow several transports on one host and port (all must set it); unicast then reaches the first bound. Default false. */
  readonly reuseAddress?: boolean;
  /** Whether this transport's multicast datagrams reach group members on its own host, itself included. Default true. */
  readonly multicastLoopback?: boolean;
  /** The largest datagram this transport accepts, in bytes. Default: the network's `maxDatagramBytes`. */
  readonly maxDatagramBytes?: number;
}

/** Why a datagram did not arrive. */
export type DropReason =
  /** Lost by the link's `loss`. */
  | "loss"
  /** The two hosts are on different sides of a partition, or one is isolated. */
  | "partition"
  /** The sending or the receiving host had crashed. */
  | "crashed"
  /** The receiving transport was closed before the datagram arrived. */
  | "closed"
  /** No such host, no transport on that port, or no member of that group on that port. */
  | "unreachable";

/** Counters since the network was created. */
export interface NetworkStats {
  /** Datagrams passed to `send` (a multicast datagram counts once). */
  readonly sent: number;
  /** Datagrams handed to a receiving transport (each multicast receiver and each duplicate counts). */
  readonly delivered: number;
  /** Extra copies made by `duplicate`. */
  readonly duplicated: number;
  /** Datagrams (or multicast copies) that did not arrive, by reason. */
  readonly dropped: Readonly<Record<DropReason, number>>;
  /** Exceptions thrown by receive handlers (passed to the transport's error handler). */
  readonly handlerErrors: number;
}

/**
 * A simulated UDP network. Hosts are virtual names (`10.0.0.1`, `10.0.0.2`, … by default; nothing
 * touches the operating system); transports on them implement {@link Transport} fully. A datagram
 * to a multicast group (`239.x.y.z`) and port reaches every transport that joined the group and is
 * bound to that port, the sender included when it joined (multicast loopback).
 *
 * Nothing happens until the clock runs: `send` only schedules deliveries on {@link clock}, so drive
 * a test with `network.clock.runFor(ms)` / `runUntil(...)`. Give protocol layers `network.clock`
 * (or `network.clockOf(host)`, to stall them with their host) and `network.random.fork(label)` so one
 * seed determines the whole run.
 *
 * Partitions and link conditions are applied when a datagram is sent; datagrams already in flight
 * still arrive. A crash drops everything in flight *to* the host; what it sent before still arrives.
 */
export class SimulatedNetwork {
  /** The clock every delivery is scheduled on. */
  readonly clock: VirtualClock;
  /** The network's root random source; fork it for protocol layers (`random.fork("node-1")`). */
  readonly random: SeededRandom;
  private readonly engine: Engine;

  constructor(options: SimulatedNetworkOptions) {
    this.random = new SeededRandom(options.seed);
    this.clock = options.clock ?? new VirtualClock();
    this.engine = new Engine(this.clock, this.random, options);
  }

  /** Adds a host (or returns the existing one) and returns its name. Default name: the next free `10.0.0.N`. */
  createHost(name?: string): string {
    return (name === undefined ? this.engine.newHost() : this.engine.host(name, true)).name;
  }

  /**
   * Binds a transport on a host.
   * @throws BlazeError `BIND_FAILED` when the port is taken (without `reuseAddress` on both) or
   *   invalid; `ILLEGAL_STATE` when the host has crashed and not been restarted; `INVALID_OPTION`
   *   for a host name that is a multicast, loopback or wildcard address.
   */
  createTransport(options: SimulatedTransportOptions = {}): Transport {
    return this.engine.bind(options);
  }

  /**
   * A {@link TransportFactory} over this network, for code that opens its own transports.
   * A wildcard or loopback `bindAddress` binds on `host` (or a new host per call, without one), so
   * code written for one real machine runs unchanged; any other `bindAddress` names the host.
   */
  transportFactory(host?: string): TransportFactory {
    return async (options: TransportOptions = {}) => {
      const bind = options.bindAddress;
      const local = bind === undefined || bind === "0.0.0.0" || bind === "::" || bind === "localhost" || bind === "::1" || bind.startsWith("127.");
      return this.engine.bind({
        host: local ? host : bind,
        port: options.port,
        reuseAddress: options.reuseAddress,
        multicastLoopback: options.multicastLoopback,
        maxDatagramBytes: options.maxDatagramBytes,
      });
    };
  }

  /** The names of all hosts, in creation order. */
  hosts(): string[] {
    return [...this.engine.hosts.keys()];
  }

  /**
   * Sets the conditions of the link from one host to another (one direction; call twice for
   * both). Fields left out come from the current default link.
   */
  setLink(fromHost: string, toHost: string, conditions: Partial<LinkConditions>): void {
    this.engine.setLink(fromHost, toHost, conditions);
  }

  /** Makes a link set with `setLink` follow the default link again. */
  clearLink(fromHost: string, toHost: string): void {
    this.engine.clearLink(fromHost, toHost);
  }

  /** Changes the default link conditions (fields left out keep their current default); links set with `setLink` keep theirs. */
  setDefaultLink(conditions: Partial<LinkConditions>): void {
    this.engine.setDefaultLink(conditions);
  }

  /** The conditions currently in force on the link from one host to another. */
  linkConditions(fromHost: string, toHost: string): LinkConditions {
    return this.engine.conditions(fromHost, toHost).source;
  }

  /**
   * Cuts the network into sides: hosts on different sides cannot exchange datagrams, in either
   * direction. Adds to earlier partitions until `heal()`. Unknown host names are created.
   */
  partition(...sides: ReadonlyArray<readonly string[]>): void {
    this.engine.partition(sides);
  }

  /** Cuts one host off from every other host, including hosts created later, until `heal()`. */
  isolate(host: string): void {
    this.engine.isolate(host);
  }

  /** Removes every partition and isolation. */
  heal(): void {
    this.engine.heal();
  }

  /**
   * Crashes a host: its transports go dead at once, silently — they send nothing, receive nothing,
   * and datagrams in flight to them are dropped. Their ports and group memberships are freed.
   */
  crash(host: string): void {
    this.engine.crash(host);
  }

  /** Lets a crashed host bind new transports again; the transports it had stay dead. */
  restart(host: string): void {
    this.engine.restart(host);
  }

  /** True when the host has crashed and not been restarted. */
  isCrashed(host: string): boolean {
    return this.engine.host(host, false).crashed;
  }

  /**
   * The clock of the code running on a host: the network's clock, but for what {@link stall} does to
   * it. Give it to the members on that host (`clock: net.clockOf("h1")`) so that a stall reaches them.
   * Created with the host when the name is new; the same object on every call.
   */
  clockOf(host: string): Clock {
    return this.engine.clockOf(this.engine.host(host, true));
  }

  /**
   * Stalls the process on a host for `ms` (a long garbage collection, a suspended VM; to the process it
   * is a forward jump of its clock): timers set through {@link clockOf} that fall due and datagrams that
   * reach its transports wait, then all run when the stall ends, in the order they fell due, at that
   * moment. Nothing is lost to the stall (a crash during it drops what waits). A stall during a stall
   * ends at the later of the two ends.
   * @throws BlazeError `INVALID_OPTION` unless `ms` is a finite number ≥ 0.
   */
  stall(host: string, ms: number): void {
    if (!(ms >= 0 && Number.isFinite(ms))) throw invalid(`stall: ms must be a finite number ≥ 0, got ${ms}`, "ms");
    this.engine.stall(this.engine.host(host, true), ms);
  }

  /** True while the host's process is stalled. */
  isStalled(host: string): boolean {
    return this.engine.host(host, false).stalledUntil !== undefined;
  }

  /** A snapshot of the counters. */
  get stats(): NetworkStats {
    const c = this.engine.counters;
    return { ...c, dropped: { ...c.dropped } };
  }

  /** Adds a line of your own to the trace (a no-op when tracing is off). */
  note(text: string): void {
    if (this.engine.tracing) this.engine.trace(`note ${text}`);
  }

  /**
   * The 64-bit FNV-1a hash of the whole trace text (UTF-8, one `\n`-terminated line per event), as
   * 16 hex digits: equal digests mean the runs were event-for-event identical.
   * @throws BlazeError `ILLEGAL_STATE` when the network was created without `trace: true`.
   */
  traceDigest(): string {
    return this.engine.requireTrace().digest.hex();
  }

  /** The latest trace lines (at most `traceMaxLines`). @throws BlazeError `ILLEGAL_STATE` without `trace: true`. */
  traceLines(): string[] {
    return this.engine.requireTrace().lines.slice();
  }
}

// ---------------------------------------------------------------------------------------------

const OPEN = 0;
const CRASHED = 1;
const CLOSED = 2;

const TWO_POW_32 = 4_294_967_296;
const FIRST_AUTO_PORT = 49_152;
/** Size of the buffers received payloads are copied into, in bytes. */
const SLAB_BYTES = 65_536;

/** Link conditions precompiled for the per-datagram path: probabilities as 32-bit thresholds. */
class Compiled {
  readonly source: LinkConditions;
  readonly lossT: number;
  readonly dupT: number;
  readonly reorderT: number;
  readonly delayMin: number;
  readonly delaySpan: number;
  readonly reorderMin: number;
  readonly reorderSpan: number;
  /** Serialization time of one byte; 0 for an unlimited link. */
  readonly msPerByte: number;

  constructor(source: LinkConditions) {
    this.source = source;
    this.lossT = source.loss * TWO_POW_32;
    this.dupT = source.duplicate * TWO_POW_32;
    this.reorderT = source.reorder * TWO_POW_32;
    this.delayMin = source.delayMs.min;
    this.delaySpan = (source.delayMs.max - source.delayMs.min) / TWO_POW_32;
    this.reorderMin = source.reorderDelayMs.min;
    this.reorderSpan = (source.reorderDelayMs.max - source.reorderDelayMs.min) / TWO_POW_32;
    this.msPerByte = 1_000 / source.bandwidthBytesPerSecond;
  }
}

/** One direction between two hosts. */
class Link {
  readonly rng: SeededRandom;
  conditions: Compiled;
  /** Set with `setLink`: does not follow the default link. */
  custom = false;
  blocked = false;
  /** Arrival time of the latest in-order datagram: later ones may not arrive before it. */
  fifoAt = -Infinity;
  /** With a finite bandwidth: when the link has finished sending what it was given. */
  busyUntil = 0;

  constructor(rng: SeededRandom, conditions: Compiled) {
    this.rng = rng;
    this.conditions = conditions;
  }
}

class Host {
  readonly name: string;
  readonly id: number;
  crashed = false;
  isolated = false;
  /** While the process is stalled: when the stall ends. */
  stalledUntil: number | undefined;
  /** What fell due during the stall, in that order: datagrams and timers. */
  backlog: Array<InFlight | HostTimer> = [];
  clock: HostClock | undefined;
  /** Open transports by port (several only with reuseAddress), in bind order. */
  readonly ports = new Map<number, SimTransport[]>();
  /** Outgoing links by destination host id, created on first use. */
  readonly links: Array<Link | undefined> = [];
  nextPort = FIRST_AUTO_PORT;

  constructor(name: string, id: number) {
    this.name = name;
    this.id = id;
  }
}

/** A datagram on its way to one transport. */
class InFlight {
  readonly id: number;
  readonly to: SimTransport;
  readonly data: Uint8Array;
  readonly from: Address;

  constructor(id: number, to: SimTransport, data: Uint8Array, from: Address) {
    this.id = id;
    this.to = to;
    this.data = data;
    this.from = from;
  }
}

/** A timer of a host's process: it runs when it falls due, or when the stall it fell due in ends. */
class HostTimer implements TimerHandle {
  fn: (() => void) | null;
  inner: TimerHandle | undefined;

  constructor(fn: () => void) {
    this.fn = fn;
  }

  cancel(): void {
    this.fn = null;
    this.inner?.cancel();
  }
}

/** The clock a host's process sees: the network's, with its timers held while the host is stalled. */
class HostClock implements Clock {
  private readonly clock: VirtualClock;
  private readonly host: Host;
  /** One callback for every timer, so that scheduling one allocates no closure beyond the timer. */
  private readonly fire = (timer: HostTimer): void => {
    if (timer.fn === null) return;
    if (this.host.stalledUntil !== undefined) {
      this.host.backlog.push(timer);
      return;
    }
    runTimer(timer);
  };

  constructor(clock: VirtualClock, host: Host) {
    this.clock = clock;
    this.host = host;
  }

  now(): number {
    return this.clock.now();
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const timer = new HostTimer(fn);
    timer.inner = this.clock.scheduleAt(this.clock.now() + (delayMs > 0 ? delayMs : 0), this.fire, timer);
    return timer;
  }

  defer(fn: () => void): void {
    this.setTimer(0, fn);
  }
}

function runTimer(timer: HostTimer): void {
  const fn = timer.fn;
  if (fn === null) return;
  timer.fn = null;
  fn();
}

class SimTransport implements Transport {
  readonly localAddress: Address;
  readonly maxDatagramBytes: number;
  readonly nativeBatchSend = false;
  readonly host: Host;
  readonly reuseAddress: boolean;
  readonly loopback: boolean;
  state = OPEN;
  receiveHandler: ReceiveHandler | undefined;
  errorHandler: TransportErrorHandler | undefined;
  /** Joined groups, in join order. */
  readonly groups = new Set<string>();
  private readonly engine: Engine;

  constructor(engine: Engine, host: Host, port: number, options: SimulatedTransportOptions, maxBytes: number) {
    this.engine = engine;
    this.host = host;
    this.localAddress = Object.freeze({ host: host.name, port });
    this.maxDatagramBytes = maxBytes;
    this.reuseAddress = options.reuseAddress ?? false;
    this.loopback = options.multicastLoopback ?? true;
  }

  send(data: Uint8Array, to: Address): void {
    if (this.state === CLOSED) throw closedError();
    if (data.length > this.maxDatagramBytes) {
      throw new BlazeError(
        "DATAGRAM_TOO_LARGE",
        `datagram of ${data.length} bytes exceeds the maximum of ${this.maxDatagramBytes}`,
      );
    }
    this.engine.route(this, data, to);
  }

  sendMany(datagrams: ReadonlyArray<readonly [data: Uint8Array, to: Address]>): void {
    for (const [data, to] of datagrams) this.send(data, to);
  }

  joinGroup(group: string, _interfaceAddress?: string): void {
    if (this.state === CLOSED) throw closedError();
    if (!isMulticast(group)) throw new BlazeError("BIND_FAILED", `not a multicast group address: ${group}`);
    this.engine.join(this, group);
  }

  leaveGroup(group: string, _interfaceAddress?: string): void {
    this.engine.leave(this, group);
  }

  onReceive(handler: ReceiveHandler): void {
    this.receiveHandler = handler;
  }

  onError(handler: TransportErrorHandler): void {
    this.errorHandler = handler;
  }

  close(): Promise<void> {
    this.engine.close(this);
    return Promise.resolve();
  }

  /** Passes a receive handler's exception to the error handler, which may not throw either. */
  reportError(error: unknown): void {
    const handler = this.errorHandler;
    if (handler === undefined) return;
    const wrapped =
      error instanceof BlazeError
        ? error
        : new BlazeError("TRANSPORT_ERROR", "receive handler threw", { cause: error });
    try {
      handler(wrapped);
    } catch {
      // The simulation must survive any handler; the count in stats.handlerErrors shows it.
    }
  }
}

interface Counters {
  sent: number;
  delivered: number;
  duplicated: number;
  dropped: Record<DropReason, number>;
  handlerErrors: number;
}

interface Trace {
  readonly digest: Fnv64;
  readonly lines: string[];
  readonly maxLines: number;
}

/** The network's state and per-datagram logic, kept apart from its public API. */
class Engine {
  readonly hosts = new Map<string, Host>();
  readonly counters: Counters = {
    sent: 0,
    delivered: 0,
    duplicated: 0,
    dropped: { loss: 0, partition: 0, crashed: 0, closed: 0, unreachable: 0 },
    handlerErrors: 0,
  };
  readonly tracing: boolean;
  private readonly traceState: Trace | undefined;
  /** Multicast group → joined open transports, in join order. */
  private readonly groups = new Map<string, SimTransport[]>();
  private readonly byId: Host[] = [];
  private readonly clock: VirtualClock;
  private readonly random: SeededRandom;
  private readonly maxDatagramBytes: number;
  private defaultLink: Compiled;
  private readonly loopbackLink = new Compiled(LOOPBACK_LINK);
  private slab = new Uint8Array(SLAB_BYTES);
  private slabUsed = 0;
  private autoHost = 0;
  private datagramIds = 0;
  /** One callback for every delivery, so that scheduling one allocates no closure. */
  private readonly deliverFn = (d: InFlight): void => this.deliver(d);

  constructor(clock: VirtualClock, random: SeededRandom, options: SimulatedNetworkOptions) {
    this.clock = clock;
    this.random = random;
    this.defaultLink = new Compiled(mergeLink(DEFAULT_LINK, options.defaultLink ?? {}, "defaultLink"));
    this.maxDatagramBytes = options.maxDatagramBytes ?? MAX_UDP_PAYLOAD_BYTES;
    if (!Number.isInteger(this.maxDatagramBytes) || this.maxDatagramBytes < 0) {
      throw invalid("maxDatagramBytes must be a non-negative integer", "maxDatagramBytes");
    }
    this.tracing = options.trace ?? false;
    const maxLines = options.traceMaxLines ?? 100_000;
    if (!(maxLines >= 0)) throw invalid("traceMaxLines must be ≥ 0", "traceMaxLines");
    this.traceState = this.tracing ? { digest: new Fnv64(), lines: [], maxLines } : undefined;
  }

  // --- hosts and transports ---

  newHost(): Host {
    for (;;) {
      const n = ++this.autoHost;
      const low = n & 255;
      if (low === 0 || low === 255) continue;
      const name = `10.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${low}`;
      if (!this.hosts.has(name)) return this.host(name, true);
    }
  }

  /** The host with this name; created when `create` is set, otherwise a missing one throws. */
  host(name: string, create: boolean): Host {
    const existing = this.hosts.get(name);
    if (existing !== undefined) return existing;
    if (!create) throw invalid(`no such host: ${name}`, "host");
    if (isMulticast(name) || name === "localhost" || name === "127.0.0.1" || name === "0.0.0.0" || name === "::" || name === "::1") {
      throw invalid(`a host cannot be named ${name}`, "host");
    }
    const host = new Host(name, this.byId.length);
    this.byId.push(host);
    this.hosts.set(name, host);
    return host;
  }

  bind(options: SimulatedTransportOptions): SimTransport {
    const maxBytes = options.maxDatagramBytes ?? this.maxDatagramBytes;
    if (!Number.isInteger(maxBytes) || maxBytes < 0) {
      throw invalid("maxDatagramBytes must be a non-negative integer", "maxDatagramBytes");
    }
    let port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new BlazeError("BIND_FAILED", `invalid port ${port}`);
    }
    const reuse = options.reuseAddress ?? false;
    const host = options.host === undefined ? this.newHost() : this.host(options.host, true);
    if (host.crashed) throw new BlazeError("ILLEGAL_STATE", `host ${host.name} has crashed; restart it first`);
    if (port === 0) {
      port = this.freePort(host);
    } else {
      const bound = host.ports.get(port);
      if (bound !== undefined && !(reuse && bound[0]!.reuseAddress)) {
        throw new BlazeError("BIND_FAILED", `${host.name}:${port} is already in use`);
      }
    }
    const transport = new SimTransport(this, host, port, options, maxBytes);
    const bound = host.ports.get(port);
    if (bound === undefined) host.ports.set(port, [transport]);
    else bound.push(transport);
    if (this.tracing) this.trace(`open ${addr(transport.localAddress)}`);
    return transport;
  }

  private freePort(host: Host): number {
    for (let tries = 0; tries < 65_536 - FIRST_AUTO_PORT; tries++) {
      const port = host.nextPort;
      host.nextPort = port === 65_535 ? FIRST_AUTO_PORT : port + 1;
      if (!host.ports.has(port)) return port;
    }
    throw new BlazeError("BIND_FAILED", `no free port left on ${host.name}`);
  }

  join(t: SimTransport, group: string): void {
    // A crashed host's code may still run in the test; its calls simply do nothing.
    if (t.state !== OPEN || t.groups.has(group)) return;
    t.groups.add(group);
    const members = this.groups.get(group);
    if (members === undefined) this.groups.set(group, [t]);
    else members.push(t);
    if (this.tracing) this.trace(`join ${addr(t.localAddress)} ${group}`);
  }

  leave(t: SimTransport, group: string): void {
    if (!t.groups.delete(group)) return;
    this.removeMember(t, group);
    if (this.tracing) this.trace(`leave ${addr(t.localAddress)} ${group}`);
  }

  close(t: SimTransport): void {
    if (t.state === CLOSED) return;
    if (t.state === OPEN) this.unregister(t);
    t.state = CLOSED;
    if (this.tracing) this.trace(`close ${addr(t.localAddress)}`);
  }

  /** Frees a transport's port and group memberships. */
  private unregister(t: SimTransport): void {
    const port = t.localAddress.port;
    const bound = t.host.ports.get(port);
    if (bound !== undefined) {
      const i = bound.indexOf(t);
      if (i >= 0) bound.splice(i, 1);
      if (bound.length === 0) t.host.ports.delete(port);
    }
    for (const group of t.groups) this.removeMember(t, group);
    t.groups.clear();
  }

  private removeMember(t: SimTransport, group: string): void {
    const members = this.groups.get(group);
    if (members === undefined) return;
    const i = members.indexOf(t);
    if (i >= 0) members.splice(i, 1);
    if (members.length === 0) this.groups.delete(group);
  }

  crash(name: string): void {
    const host = this.host(name, false);
    if (host.crashed) return;
    host.crashed = true;
    // The stalled process died: what waited for it goes with it.
    for (const waiting of host.backlog) {
      if (waiting instanceof InFlight) this.drop(waiting.id, "crashed", waiting.to.localAddress);
    }
    host.backlog = [];
    host.stalledUntil = undefined;
    for (const bound of [...host.ports.values()]) {
      for (const t of [...bound]) {
        this.unregister(t);
        t.state = CRASHED;
      }
    }
    if (this.tracing) this.trace(`crash ${name}`);
  }

  restart(name: string): void {
    const host = this.host(name, false);
    if (!host.crashed) return;
    host.crashed = false;
    if (this.tracing) this.trace(`restart ${name}`);
  }

  clockOf(host: Host): HostClock {
    host.clock ??= new HostClock(this.clock, host);
    return host.clock;
  }

  stall(host: Host, ms: number): void {
    if (host.crashed) return;
    const until = this.clock.now() + ms;
    if (this.tracing) this.trace(`stall ${host.name} ${ms}`);
    if (host.stalledUntil !== undefined) {
      if (until > host.stalledUntil) host.stalledUntil = until;
      return;
    }
    host.stalledUntil = until;
    this.clock.scheduleAt(until, this.resumeFn, host);
  }

  private readonly resumeFn = (host: Host): void => this.resume(host);

  /** The stall is over: everything that fell due meanwhile runs now, in order. */
  private resume(host: Host): void {
    if (host.stalledUntil === undefined) return;
    if (host.stalledUntil > this.clock.now()) {
      this.clock.scheduleAt(host.stalledUntil, this.resumeFn, host);
      return;
    }
    host.stalledUntil = undefined;
    const backlog = host.backlog;
    host.backlog = [];
    if (this.tracing) this.trace(`resume ${host.name} ${backlog.length}`);
    for (const waiting of backlog) {
      if (waiting instanceof InFlight) this.deliver(waiting);
      else runTimer(waiting);
    }
  }

  // --- links ---

  link(from: Host, to: Host): Link {
    const existing = from.links[to.id];
    if (existing !== undefined) return existing;
    // Each link draws from its own fork, so traffic on one link never shifts another's fates.
    const rng = this.random.fork(`link ${from.name}>${to.name}`);
    const link = new Link(rng, from === to ? this.loopbackLink : this.defaultLink);
    link.blocked = from !== to && (from.isolated || to.isolated);
    from.links[to.id] = link;
    return link;
  }

  /** The conditions in force from one host to another, without creating hosts or links. */
  conditions(fromName: string, toName: string): Compiled {
    const from = this.hosts.get(fromName);
    const to = this.hosts.get(toName);
    const link = from !== undefined && to !== undefined ? from.links[to.id] : undefined;
    if (link !== undefined) return link.conditions;
    return fromName === toName ? this.loopbackLink : this.defaultLink;
  }

  setLink(fromName: string, toName: string, patch: Partial<LinkConditions>): void {
    const link = this.link(this.host(fromName, true), this.host(toName, true));
    link.conditions = new Compiled(mergeLink(this.defaultLink.source, patch, "conditions"));
    link.custom = true;
    if (this.tracing) this.trace(`link ${fromName}>${toName} ${describeLink(link.conditions.source)}`);
  }

  clearLink(fromName: string, toName: string): void {
    const from = this.host(fromName, true);
    const to = this.host(toName, true);
    const link = this.link(from, to);
    link.custom = false;
    link.conditions = from === to ? this.loopbackLink : this.defaultLink;
    if (this.tracing) this.trace(`link ${fromName}>${toName} default`);
  }

  setDefaultLink(patch: Partial<LinkConditions>): void {
    this.defaultLink = new Compiled(mergeLink(this.defaultLink.source, patch, "conditions"));
    for (const host of this.byId) {
      for (const link of host.links) {
        if (link !== undefined && !link.custom && link.conditions !== this.loopbackLink) {
          link.conditions = this.defaultLink;
        }
      }
    }
    if (this.tracing) this.trace(`link default ${describeLink(this.defaultLink.source)}`);
  }

  partition(sides: ReadonlyArray<readonly string[]>): void {
    if (sides.length < 2) throw invalid("partition needs at least two sides", "sides");
    const hostSides = sides.map((names) => names.map((name) => this.host(name, true)));
    for (let i = 0; i < hostSides.length; i++) {
      for (let j = i + 1; j < hostSides.length; j++) {
        for (const a of hostSides[i]!) for (const b of hostSides[j]!) this.block(a, b);
      }
    }
    if (this.tracing) this.trace(`partition ${sides.map((s) => s.join(",")).join(" | ")}`);
  }

  isolate(name: string): void {
    const host = this.host(name, true);
    host.isolated = true;
    for (const other of this.byId) this.block(host, other);
    if (this.tracing) this.trace(`isolate ${name}`);
  }

  private block(a: Host, b: Host): void {
    if (a === b) return;
    this.link(a, b).blocked = true;
    this.link(b, a).blocked = true;
  }

  heal(): void {
    for (const host of this.byId) {
      host.isolated = false;
      for (const link of host.links) if (link !== undefined) link.blocked = false;
    }
    if (this.tracing) this.trace("heal");
  }

  // --- datagrams ---

  route(t: SimTransport, data: Uint8Array, to: Address): void {
    const id = ++this.datagramIds;
    this.counters.sent++;
    if (this.tracing) this.trace(`send #${id} ${addr(t.localAddress)}>${to.host}:${to.port} ${data.length}B h=${hash32(data)}`);
    const from = t.host;
    if (t.state === CRASHED) return this.drop(id, "crashed", t.localAddress);
    let dest = this.hosts.get(to.host);
    if (dest === undefined && (to.host === "127.0.0.1" || to.host === "localhost")) dest = from;
    if (dest !== undefined) {
      if (dest.crashed) return this.drop(id, "crashed", to);
      const bound = dest.ports.get(to.port);
      if (bound === undefined) return this.drop(id, "unreachable", to);
      return this.transmit(from, bound[0]!, data, id, t.localAddress);
    }
    const members = this.groups.get(to.host);
    let reached = false;
    if (members !== undefined) {
      for (let i = 0; i < members.length; i++) {
        const m = members[i]!;
        if (m.localAddress.port !== to.port || (!t.loopback && m.host === from)) continue;
        reached = true;
        this.transmit(from, m, data, id, t.localAddress);
      }
    }
    if (!reached) this.drop(id, "unreachable", to);
  }

  private transmit(from: Host, target: SimTransport, data: Uint8Array, id: number, fromAddress: Address): void {
    const link = from.links[target.host.id] ?? this.link(from, target.host);
    if (link.blocked) return this.drop(id, "partition", target.localAddress);
    const c = link.conditions;
    if (c.lossT > 0 && link.rng.nextUint32() < c.lossT) return this.drop(id, "loss", target.localAddress);
    this.dispatch(link, target, data, id, fromAddress);
    if (c.dupT > 0 && link.rng.nextUint32() < c.dupT) {
      this.counters.duplicated++;
      if (this.tracing) this.trace(`dup #${id} ${addr(target.localAddress)}`);
      this.dispatch(link, target, data, id, fromAddress);
    }
  }

  /** Schedules one copy's arrival. */
  private dispatch(link: Link, target: SimTransport, data: Uint8Array, id: number, fromAddress: Address): void {
    const c = link.conditions;
    const rng = link.rng;
    let at = this.clock.now();
    if (c.msPerByte > 0) {
      // The datagram goes out once the link is done with the ones before it.
      if (at < link.busyUntil) at = link.busyUntil;
      at += data.length * c.msPerByte;
      link.busyUntil = at;
    }
    at += c.delayMin;
    if (c.delaySpan > 0) at += rng.nextUint32() * c.delaySpan;
    if (c.reorderT > 0 && rng.nextUint32() < c.reorderT) {
      at += c.reorderMin;
      if (c.reorderSpan > 0) at += rng.nextUint32() * c.reorderSpan;
    } else {
      if (at < link.fifoAt) at = link.fifoAt;
      link.fifoAt = at;
    }
    // A copy per receiver: neither the sender's later writes nor another receiver's may show.
    this.clock.scheduleAt(at, this.deliverFn, new InFlight(id, target, this.copy(data), fromAddress));
  }

  /**
   * Copies a payload into a shared slab: a fresh ArrayBuffer per datagram costs ten times more
   * than the copy. Receivers get views with a non-zero `byteOffset`, as pooled buffers of real
   * runtimes may be, which also catches code that reads `data.buffer` without the offset.
   */
  private copy(data: Uint8Array): Uint8Array {
    const n = data.length;
    if (n > SLAB_BYTES / 8) return data.slice();
    if (this.slabUsed + n > SLAB_BYTES) {
      this.slab = new Uint8Array(SLAB_BYTES);
      this.slabUsed = 0;
    }
    const view = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    view.set(data);
    this.slabUsed += n;
    return view;
  }

  private deliver(d: InFlight): void {
    const t = d.to;
    if (t.state === OPEN && t.host.stalledUntil !== undefined) {
      t.host.backlog.push(d);
      if (this.tracing) this.trace(`hold #${d.id} ${addr(t.localAddress)}`);
      return;
    }
    if (t.state !== OPEN) return this.drop(d.id, t.state === CLOSED ? "closed" : "crashed", t.localAddress);
    this.counters.delivered++;
    if (this.tracing) this.trace(`deliver #${d.id} ${addr(t.localAddress)}`);
    const handler = t.receiveHandler;
    if (handler === undefined) return;
    try {
      handler(d.data, d.from);
    } catch (error) {
      this.counters.handlerErrors++;
      if (this.tracing) this.trace(`handler-error #${d.id} ${addr(t.localAddress)}`);
      t.reportError(error);
    }
  }

  private drop(id: number, reason: DropReason, at: Address): void {
    this.counters.dropped[reason]++;
    if (this.tracing) this.trace(`drop #${id} ${reason} ${addr(at)}`);
  }

  // --- trace ---

  requireTrace(): Trace {
    if (this.traceState === undefined) {
      throw new BlazeError("ILLEGAL_STATE", "the trace is off: create the SimulatedNetwork with trace: true");
    }
    return this.traceState;
  }

  /** Records one event; callers check `tracing` first so that no string is built when it is off. */
  trace(event: string): void {
    const state = this.traceState!;
    const line = `${this.clock.now().toFixed(3)} ${event}`;
    state.digest.update(line);
    state.digest.update("\n");
    if (state.maxLines === 0) return;
    const lines = state.lines;
    lines.push(line);
    // Trim in batches so that keeping the latest lines stays amortized O(1).
    if (lines.length >= 2 * state.maxLines) lines.splice(0, lines.length - state.maxLines);
  }
}

// ---------------------------------------------------------------------------------------------

function closedError(): BlazeError {
  return new BlazeError("CLOSED", "the transport is closed");
}

function invalid(message: string, field: string): BlazeError {
  return new BlazeError("INVALID_OPTION", message, { path: [field] });
}

function addr(a: Address): string {
  return `${a.host}:${a.port}`;
}

/** IPv4 224.0.0.0/4 or IPv6 ff00::/8. */
function isMulticast(host: string): boolean {
  return /^(22[4-9]|23\d)\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^ff[0-9a-f]{2}:/i.test(host);
}

function mergeLink(base: LinkConditions, patch: Partial<LinkConditions>, path: string): LinkConditions {
  const merged: LinkConditions = {
    loss: patch.loss ?? base.loss,
    duplicate: patch.duplicate ?? base.duplicate,
    reorder: patch.reorder ?? base.reorder,
    delayMs: Object.freeze({ ...(patch.delayMs ?? base.delayMs) }),
    reorderDelayMs: Object.freeze({ ...(patch.reorderDelayMs ?? base.reorderDelayMs) }),
    bandwidthBytesPerSecond: patch.bandwidthBytesPerSecond ?? base.bandwidthBytesPerSecond,
  };
  for (const field of ["loss", "duplicate", "reorder"] as const) {
    const p = merged[field];
    if (!(p >= 0 && p <= 1)) throw new BlazeError("INVALID_OPTION", `${field} must be in [0, 1], got ${p}`, { path: [path, field] });
  }
  for (const field of ["delayMs", "reorderDelayMs"] as const) {
    const { min, max } = merged[field];
    if (!(min >= 0 && max >= min && Number.isFinite(max))) {
      throw new BlazeError("INVALID_OPTION", `${field} must have 0 ≤ min ≤ max < ∞, got {min: ${min}, max: ${max}}`, {
        path: [path, field],
      });
    }
  }
  if (!(merged.bandwidthBytesPerSecond > 0)) {
    throw new BlazeError("INVALID_OPTION", `bandwidthBytesPerSecond must be > 0, got ${merged.bandwidthBytesPerSecond}`, {
      path: [path, "bandwidthBytesPerSecond"],
    });
  }
  return Object.freeze(merged);
}

function describeLink(c: LinkConditions): string {
  return (
    `loss=${c.loss} dup=${c.duplicate} reorder=${c.reorder} delay=${c.delayMs.min}..${c.delayMs.max}` +
    ` reorderDelay=${c.reorderDelayMs.min}..${c.reorderDelayMs.max}` +
    (c.bandwidthBytesPerSecond === Infinity ? "" : ` bandwidth=${c.bandwidthBytesPerSecond}`)
  );
}

/** FNV-1a, 32-bit, of a payload: lets the trace tell payloads apart without printing them. */
function hash32(data: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/**
 * FNV-1a, 64-bit, over the UTF-8 bytes of text fed in pieces, in two 32-bit halves (no BigInt).
 * The 64-bit prime is 2^40 + 0x1b3, so h·prime = h·0x1b3 + (low half << 40).
 */
class Fnv64 {
  private hi = 0xcbf29ce4;
  private lo = 0x84222325;

  update(text: string): void {
    let hi = this.hi;
    let lo = this.lo;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) {
        this.hi = hi;
        this.lo = lo;
        i = this.nonAscii(text, i);
        hi = this.hi;
        lo = this.lo;
        continue;
      }
      // Inlined byte step for the ASCII that makes up nearly all of a trace.
      lo = (lo ^ c) >>> 0;
      const product = lo * 0x1b3; // < 2^41: exact in a double
      hi = (Math.imul(hi, 0x1b3) + ((product / TWO_POW_32) | 0) + (lo << 8)) >>> 0;
      lo = product >>> 0;
    }
    this.hi = hi;
    this.lo = lo;
  }

  /** Hashes the UTF-8 bytes of the code point at `i`; returns the index of its last code unit. */
  private nonAscii(text: string, i: number): number {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c < 0x800) {
      this.byte(0xc0 | (c >> 6));
    } else {
      if (c < 0x10000) {
        this.byte(0xe0 | (c >> 12));
      } else {
        this.byte(0xf0 | (c >> 18));
        this.byte(0x80 | ((c >> 12) & 63));
      }
      this.byte(0x80 | ((c >> 6) & 63));
    }
    this.byte(0x80 | (c & 63));
    return i;
  }

  private byte(b: number): void {
    const lo = (this.lo ^ b) >>> 0;
    const product = lo * 0x1b3;
    this.lo = product >>> 0;
    this.hi = (Math.imul(this.hi, 0x1b3) + ((product / TWO_POW_32) | 0) + (lo << 8)) >>> 0;
  }

  hex(): string {
    return this.hi.toString(16).padStart(8, "0") + this.lo.toString(16).padStart(8, "0");
  }
}
