import type { DiagnosticsRequest } from "../../gen/activeblaze/v1/diagnostics_pb.ts";
import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { BlazeError, internalError } from "../errors.ts";
import { idOf, keyOf } from "../reliable/member-key.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { Driver } from "../core/driver.ts";
import type { CryptoProvider } from "../security/crypto-provider.ts";
import { DatagramGuard, type SecurityStats, type SenderState } from "../security/datagram-guard.ts";
import { KeyRotation } from "../security/key-rotation.ts";
import type { KeyRing } from "../security/keyring.ts";
import type { ResolvedSecurityOptions } from "../security/options.ts";
import type { Clock, RandomSource } from "../transport/clock.ts";
import { familyOf, type HostResolver, type Seed, StaticSeeds } from "../transport/host-names.ts";
import type { Address, Transport, TransportFactory } from "../transport/transport.ts";
import { joinBytes } from "../wire/bytes.ts";
import { DropCounters, type DropReason } from "../wire/drop-reason.ts";
import { type DataFields, DatagramBuilder, DatagramReader, encodeEnvelopeHeader, encodeFrame, type HandReaders, leaveGroupOf, type ReceivedFrame, type ReceiveResult } from "../wire/frames.ts";
import { Admission, type AdmissionStats, isChallenge } from "./admission.ts";
import { multicastBindings } from "./options.ts";

/** Where a channel's "everyone" datagrams go. */
export type NetworkConfig =
  | {
      readonly type: "multicast";
      readonly group: string;
      readonly port: number;
      readonly interface: string;
      readonly ttl: number;
    }
  | {
      readonly type: "static";
      /** Addresses, host names and `dns:` names (see host-names.ts); names are resolved at bind. */
      readonly peers: readonly Seed[];
      readonly bindAddress: string;
      readonly port: number;
    };

export interface EndpointConfig {
  readonly cluster: string;
  readonly memberId: Uint8Array;
  readonly network: NetworkConfig;
  readonly maxDatagramBytes: number;
  readonly peerTimeoutMs: number;
  readonly socketBufferBytes: number;
  /** Most peers at once; a sender proven while the table is full is not admitted (counted). */
  readonly maxPeers: number;
  /** Sealed datagrams (src/security/): every datagram out is sealed, every datagram in opened first. */
  readonly security?: {
    readonly options: ResolvedSecurityOptions;
    readonly keyring: KeyRing;
    readonly provider: CryptoProvider;
    /** The senders heard, kept by the channel across its endpoints (their replay windows). */
    readonly senders: Map<PeerKey, SenderState>;
  };
  /** Resolves the host names among static peers (never a name read from a datagram). */
  readonly resolver: HostResolver;
  /** The frame kinds the levels above read by hand (the channel's, kept across its endpoints). */
  readonly handReaders?: HandReaders;
}

/** A peer heard on the network. */
export interface Peer {
  readonly key: PeerKey;
  readonly id: Uint8Array;
  incarnation: number;
  /** The unicast address its datagrams come from. */
  address: Address;
  lastHeardAt: number;
  /** The datagram being filled for it (made on first use). */
  outbox?: Outbox;
}

export interface EndpointHandlers {
  /** A datagram's frames from a live peer, in order. */
  frames(peer: Peer, frames: readonly ReceivedFrame[]): void;
  /** A peer was heard for the first time (or with a new incarnation). */
  peerUp(peer: Peer): void;
  /** A peer left, or fell silent for longer than the peer timeout. */
  peerDown(peer: Peer, reason: "left" | "timeout"): void;
  /** A background failure: a socket error ("transport"), a fault handling a datagram ("receive") or one it could not send ("send"). */
  error(error: BlazeError, stage: "transport" | "receive" | "send"): void;
  /**
   * A diagnostics request from a peer, or from an asker that answered its admission challenge: the
   * reply frame (at most `maxFrameBytes`), or undefined to refuse it.
   */
  diagnostics(request: DiagnosticsRequest, maxFrameBytes: number): Uint8Array | undefined;
}

/** Datagram and byte counters of an endpoint. */
export interface EndpointStats {
  datagramsSent: number;
  datagramsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Our own multicast datagrams heard back. */
  ownDatagrams: number;
  /** Datagrams from an older incarnation of a known peer. */
  staleIncarnation: number;
  /** Datagrams whose handling threw (a fault inside activeblaze, reported as an `INTERNAL_ERROR`). */
  receiveFaults: number;
  /** Datagrams in a peer's name from another address than the peer's: refused. */
  addressMismatch: number;
  /** Senders proven while the peer table was full (`maxPeers`): not admitted. */
  peerTableFull: number;
  /** Diagnostics requests answered (from peers, and from askers that answered a challenge and stay no peer). */
  diagnosticsAnswered: number;
  /** Diagnostics requests refused: diagnostics turned off, or too many at once. */
  diagnosticsRefused: number;
}

/** An endpoint's counters, admission's included, and the seal's with security on. */
export type NetworkStats = EndpointStats & AdmissionStats & { readonly pendingSenders: number; readonly security?: SecurityStats };

export function emptyNetworkStats(): NetworkStats {
  return { ...emptyEndpointStats(), unadmittedDatagrams: 0, challengesSent: 0, challengesAnswered: 0, admitted: 0, pendingEvicted: 0, pendingSenders: 0 };
}

export function emptyEndpointStats(): EndpointStats {
  return {
    datagramsSent: 0,
    datagramsReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    ownDatagrams: 0,
    staleIncarnation: 0,
    receiveFaults: 0,
    addressMismatch: 0,
    peerTableFull: 0,
    diagnosticsAnswered: 0,
    diagnosticsRefused: 0,
  };
}

interface Outbox {
  readonly builder: DatagramBuilder;
  readonly to: Address | "group";
  /** The member a peer's outbox is for: a sealed datagram names it (undefined for other addresses). */
  readonly receiver?: Uint8Array;
  /** Holds frames not sent yet (it is on the list the next flush sends). */
  dirty: boolean;
}

/**
 * A channel's network endpoint: the sockets, bundling of outgoing frames into datagrams (flushed when
 * a datagram is full, and as soon as the current burst of sends is over), the checks on incoming
 * datagrams (counted by reason and dropped when bad), and the table of peers heard.
 *
 * On a multicast network it binds two sockets, as JGroups does: one on the group's port that only
 * receives multicast, and one on a port of its own for everything it sends and for unicast replies
 * (so a receiver learns a sender's unicast address from the datagrams themselves).
 */
export class Endpoint {
  readonly #config: EndpointConfig;
  readonly #clock: Clock;
  readonly #driver: Driver;
  readonly #stopFlushing: () => void;
  readonly #handlers: EndpointHandlers;
  readonly #peers = new Map<PeerKey, Peer>();
  // The peer a frame was queued for last: a message, its acknowledgement and the next message mostly
  // go to one peer, found again without the map (forgotten when that peer goes).
  #lastQueuedFor: Peer | undefined;
  /** The same peers by "host:port": whom a datagram to an address is for (a sealed one names its receiver). */
  readonly #peersByAddress = new Map<string, Peer>();
  /** Peers that left or timed out, by the incarnation they had, for one peer timeout: their late datagrams are stale. */
  readonly #departed = new Map<PeerKey, { incarnation: number; at: number }>();
  /** Outboxes to addresses that are not peers' (replies to a datagram's source), a bounded number. */
  readonly #unicast = new Map<string, Outbox>();
  /** Outboxes holding frames for the next flush. */
  readonly #dirty: Outbox[] = [];
  readonly drops: DropCounters = new DropCounters();
  readonly stats: EndpointStats = emptyEndpointStats();
  readonly localKey: PeerKey;
  readonly #admission: Admission;
  #header: Uint8Array = new Uint8Array(0);
  /** Encodes frames for peers not admitted yet: nothing it builds is sent. */
  #unsent: DatagramBuilder = new DatagramBuilder(new Uint8Array(0));
  #reader: DatagramReader;
  #group: Outbox | undefined;
  #sender: Transport | undefined;
  #listener: Transport | undefined;
  /** A static network's peers, names resolved. */
  #seeds: StaticSeeds | undefined;
  #flushScheduled = false;
  /** On a runtime that sends in batches: the datagrams of the flush under way, sent together at its end. */
  #batch: Array<readonly [Uint8Array, Address]> | undefined;
  #running = false;
  #lastKeyBytes: Uint8Array | undefined;
  /** The array `#lastKey` was last found for (a header reader's copy, never written again). */
  #lastKeyId: Uint8Array | undefined;
  #lastKey = "";
  /** With security: seals what goes out and opens what comes in (the one seam of the security layer). */
  readonly #guard: DatagramGuard | undefined;
  readonly #rotation: KeyRotation | undefined;

  constructor(config: EndpointConfig, clock: Clock, driver: Driver, random: RandomSource, handlers: EndpointHandlers) {
    this.#config = config;
    this.#clock = clock;
    this.#driver = driver;
    this.#stopFlushing = driver.onFlush(() => {
      if (this.#flushScheduled) this.flush();
      // With security, what the next datagrams' seals need is made now that this turn's are out.
      this.#guard?.prepare();
    });
    this.#handlers = handlers;
    this.#admission = new Admission(random, (to, frame, receiver) => this.#sendNow(to, frame, receiver));
    this.localKey = keyOf(config.memberId);
    this.#reader = new DatagramReader({ cluster: config.cluster, maxDatagramBytes: config.maxDatagramBytes }, config.handReaders);
    const security = config.security;
    if (security !== undefined) {
      const host = {
        refused: (reason: DropReason) => this.drops.count(reason),
        fault: (error: unknown) => {
          this.stats.receiveFaults++;
          handlers.error(internalError("sealing or opening a datagram", error), "receive");
        },
        own: () => this.stats.ownDatagrams++,
      };
      this.#guard = new DatagramGuard(security.options, security.keyring, security.provider, config, host, () => Date.now(), security.senders);
      this.#rotation = new KeyRotation(security.keyring, {
        clock,
        random,
        peers: () => this.#peers.keys(),
        send: (peer, frame, keyId) => {
          const address = this.#peers.get(peer)?.address;
          if (address !== undefined) this.#sendNow(address, frame, peer, keyId);
        },
      });
    }
  }

  /** The key rotation driver of a secured endpoint. */
  get rotation(): KeyRotation | undefined {
    return this.#rotation;
  }

  // The largest datagram the builders fill: room is left for the seal.
  get #builderBytes(): number {
    const security = this.#config.security;
    return this.#config.maxDatagramBytes - (security === undefined ? 0 : DatagramGuard.overheadBytes(security.options, this.#config.maxDatagramBytes));
  }

  /** The unicast address this endpoint sends from. */
  get localAddress(): Address {
    if (this.#sender === undefined) throw new BlazeError("ILLEGAL_STATE", "the endpoint is not bound");
    return this.#sender.localAddress;
  }

  get peers(): ReadonlyMap<PeerKey, Peer> {
    return this.#peers;
  }

  /** Datagram counters, admission's included. */
  get networkStats(): NetworkStats {
    const stats = { ...this.stats, ...this.#admission.stats, pendingSenders: this.#admission.pending };
    return this.#guard === undefined ? stats : { ...stats, security: this.#guard.stats };
  }

  /** Binds the sockets. */
  async bind(factory: TransportFactory): Promise<void> {
    const network = this.#config.network;
    const common = {
      maxDatagramBytes: this.#config.maxDatagramBytes,
      receiveBufferBytes: this.#config.socketBufferBytes,
      sendBufferBytes: this.#config.socketBufferBytes,
    };
    if (network.type === "multicast") {
      const bindings = multicastBindings(network);
      this.#sender = await factory({
        ...common,
        bindAddress: bindings.sender,
        port: 0,
        multicastInterface: network.interface,
        multicastTtl: network.ttl,
      });
      try {
        this.#listener = await factory({ ...common, bindAddress: bindings.listener, port: network.port, reuseAddress: true });
      } catch (error) {
        await this.#sender.close();
        this.#sender = undefined;
        throw error;
      }
    } else {
      this.#sender = await factory({ ...common, bindAddress: network.bindAddress, port: network.port });
      this.#seeds = new StaticSeeds(network.peers, familyOf(network.bindAddress), this.#config.resolver, (error) => this.#handlers.error(error, "transport"));
      await this.#seeds.resolveAll(this.#clock.now());
    }
    for (const transport of [this.#sender, this.#listener]) {
      transport?.onReceive((bytes, from) => this.#receiveGuarded(bytes, from));
      transport?.onError((error) => this.#handlers.error(error, "transport"));
    }
  }

  /** Starts sending and receiving as incarnation `incarnation`. */
  start(incarnation: number): void {
    const network = this.#config.network;
    this.#header = encodeEnvelopeHeader(this.#config.cluster, this.#config.memberId, incarnation);
    this.#group = this.#newOutbox("group");
    this.#dirty.length = 0;
    this.#unsent = new DatagramBuilder(this.#header, this.#builderBytes);
    this.#guard?.start(incarnation);
    this.#unicast.clear();
    if (network.type === "multicast") this.#listener!.joinGroup(network.group, network.interface);
    this.#running = true;
  }

  /** Says goodbye to the peers, stops receiving, and forgets them. */
  stop(): void {
    if (!this.#running) return;
    // Everything queued goes first: the goodbye must be the last datagram peers get from this incarnation.
    this.flush();
    this.multicastFrame(encodeFrame({ case: "leave", value: {} }));
    this.flush();
    this.#running = false;
    const network = this.#config.network;
    if (network.type === "multicast") {
      try {
        this.#listener!.leaveGroup(network.group, network.interface);
      } catch (error) {
        this.#handlers.error(error instanceof BlazeError ? error : new BlazeError("TRANSPORT_ERROR", String(error), { cause: error }), "transport");
      }
    }
    this.#peers.clear();
    this.#lastQueuedFor = undefined;
    this.#peersByAddress.clear();
    this.#departed.clear();
    this.#admission.clear();
    this.#rotation?.close();
  }

  async close(): Promise<void> {
    this.stop();
    this.#stopFlushing();
    // The goodbye may still be being sealed (an asynchronous provider): it goes out before the sockets close.
    await this.#guard?.drained();
    this.#guard?.close();
    await Promise.all([this.#sender?.close(), this.#listener?.close()]);
    this.#sender = undefined;
    this.#listener = undefined;
  }

  /** The largest encoded frame one datagram carries. */
  get maxFrameBytes(): number {
    return this.#group!.builder.maxFrameBytes;
  }

  /** The largest payload of one unfragmented Data frame to `destination`. */
  maxPayloadBytes(destination: string): number {
    return this.#group!.builder.maxPayloadBytes(destination);
  }

  multicastData(data: DataFields): Uint8Array {
    return this.#addData(this.#group!, data);
  }

  multicastFrame(frame: Uint8Array): void {
    this.#queueFrame(this.#group!, frame);
  }

  unicastFrame(peer: PeerKey, frame: Uint8Array): void {
    const known = this.#peerOf(peer);
    if (known !== undefined) this.#queueFrame(this.#peerOutbox(known), frame);
  }

  /**
   * Queues an acknowledgement (the fields of `encodeAckFrame`) for the next datagram to `peer`, written
   * straight into it: the most frequent control frame costs no frame of its own.
   */
  unicastAck(peer: PeerKey, stream: number, originId: Uint8Array, incarnation: number, cumulative: number, highestReceived: number): void {
    const known = this.#peerOf(peer);
    if (known === undefined) return;
    const outbox = this.#peerOutbox(known);
    if (!outbox.builder.tryAddAck(stream, originId, incarnation, cumulative, highestReceived)) {
      this.#send(outbox);
      outbox.builder.tryAddAck(stream, originId, incarnation, cumulative, highestReceived);
    }
    this.#filled(outbox);
  }

  /** Queues a frame for `address`: a peer's, or the source of a datagram just received (a reply). */
  unicastFrameTo(address: Address, frame: Uint8Array): void {
    this.#queueFrame(this.#outboxTo(address), frame);
  }

  // One frame in a datagram of its own, sent at once: for answers to senders not admitted, which must
  // cost no outbox (a flood of spoofed sources would otherwise make one each), and for key rotation
  // (sealed with the key `keyId`, not necessarily the primary one).
  #sendNow(to: Address, frame: Uint8Array, receiver: PeerKey, keyId?: number): void {
    const sender = this.#sender;
    if (sender === undefined || !this.#running) return;
    // A Frame's bytes equal the body of an Envelope carrying that kind alone (envelope.proto).
    const datagram = new Uint8Array(this.#header.length + frame.length);
    datagram.set(this.#header);
    datagram.set(frame, this.#header.length);
    if (this.#guard === undefined) this.#transmitTo(sender, datagram, to);
    else this.#guard.seal(datagram, this.#header.length, idOf(receiver), this.#transmitSealed, keyId, to);
  }

  // Where the guard hands what it seals later (an asynchronous provider) or for `#sendNow`: one function
  // for all of them, told where each goes, rather than a closure made per datagram.
  readonly #transmitSealed = (sealed: Uint8Array, to: Address | "group"): void => {
    const sender = this.#sender;
    if (sender !== undefined) this.#transmitTo(sender, sealed, to);
  };

  /**
   * Writes a point-to-point Data frame into the next datagram to `peer`; returns the frame's bytes (kept
   * for retransmission). To a peer not heard from directly yet, the frame is only encoded — the stream
   * retransmits it once the peer is admitted — and the peer is introduced at the address `hint` gives for
   * it (asked only then).
   */
  unicastData(peer: PeerKey, data: DataFields, hint: (peer: PeerKey) => { readonly incarnation: number; readonly address: Address } | undefined): Uint8Array {
    const known = this.#peerOf(peer);
    if (known !== undefined) return this.#addData(this.#peerOutbox(known), data);
    const member = hint(peer);
    if (member !== undefined) this.introduce(peer, member.incarnation, member.address);
    const frame = this.#unsent.addData(data);
    this.#unsent.finish();
    return frame;
  }

  /**
   * Challenges a member not heard from directly at an address others gave for it, so that it can be
   * admitted as a peer (on a static network, members learn of each other through views). Rate-limited.
   */
  introduce(peer: PeerKey, incarnation: number, address: Address): void {
    if (this.#peers.has(peer) || peer === this.localKey) return;
    this.#admission.introduce(peer, incarnation, address, this.#clock.now());
  }

  // A peer heard from, by its key, for a frame queued for it.
  #peerOf(key: PeerKey): Peer | undefined {
    const last = this.#lastQueuedFor;
    if (last !== undefined && last.key === key) return last;
    const known = this.#peers.get(key);
    if (known !== undefined) this.#lastQueuedFor = known;
    return known;
  }

  #addData(outbox: Outbox, data: DataFields): Uint8Array {
    let frame = outbox.builder.tryAddData(data);
    if (frame === undefined) {
      this.#send(outbox);
      frame = outbox.builder.addData(data);
    }
    this.#filled(outbox);
    return frame;
  }

  // A peer's own outbox, made on first use: it knows the member it is for (a sealed datagram names it).
  #peerOutbox(known: Peer): Outbox {
    return (known.outbox ??= this.#newOutbox(known.address, known.id));
  }

  #newOutbox(to: Address | "group", receiver?: Uint8Array): Outbox {
    return { builder: new DatagramBuilder(this.#header, this.#builderBytes), to, receiver, dirty: false };
  }

  // For replies to a datagram's source (rare: a discovery, a ping); a peer's own traffic has its outbox.
  #outboxTo(address: Address): Outbox {
    const key = addressKey(address);
    let outbox = this.#unicast.get(key);
    if (outbox === undefined) {
      if (this.#unicast.size >= 1024) this.#unicast.clear();
      outbox = this.#newOutbox(address);
      this.#unicast.set(key, outbox);
    }
    return outbox;
  }

  /** Sends every datagram being filled. */
  flush(): void {
    this.#flushScheduled = false;
    const sender = this.#sender;
    const batching = sender !== undefined && sender.nativeBatchSend && this.#batch === undefined;
    if (batching) this.#batch = [];
    try {
      if (this.#group !== undefined) this.#send(this.#group);
      const dirty = this.#dirty;
      for (let i = 0; i < dirty.length; i++) {
        dirty[i]!.dirty = false;
        this.#send(dirty[i]!);
      }
      // Emptied by pops: setting `length` goes through the engine's runtime on every flush.
      while (dirty.length > 0) dirty.pop();
    } finally {
      if (batching) this.#sendBatch(sender, this.#batch!);
    }
  }

  // The datagrams one flush produced, in one native call (a sealed datagram that an asynchronous
  // provider finishes later is sent on its own then).
  #sendBatch(sender: Transport, batch: Array<readonly [Uint8Array, Address]>): void {
    this.#batch = undefined;
    if (batch.length === 0) return;
    try {
      if (batch.length === 1) sender.send(batch[0]![0], batch[0]![1]);
      else sender.sendMany(batch);
    } catch (error) {
      this.#sendFailed(error);
    }
  }

  /** Removes peers not heard for longer than the peer timeout; resolves static peers' names again where due. */
  expirePeers(): void {
    const now = this.#clock.now();
    this.#seeds?.refresh(now, (address) => this.#isPeerAddress(address));
    for (const peer of [...this.#peers.values()]) {
      if (now - peer.lastHeardAt > this.#config.peerTimeoutMs) this.#remove(peer, "timeout", now);
    }
    for (const [key, departed] of this.#departed) {
      if (now - departed.at > this.#config.peerTimeoutMs) this.#departed.delete(key);
    }
  }

  #queueFrame(outbox: Outbox, frame: Uint8Array): void {
    if (frame.length > outbox.builder.maxFrameBytes) {
      // A caller's bug, not the network's: reported, and the frame dropped rather than the member.
      this.#handlers.error(new BlazeError("INTERNAL_ERROR", `a ${frame.length}-byte frame does not fit in a datagram (${outbox.builder.maxFrameBytes} bytes at most)`), "send");
      return;
    }
    if (!outbox.builder.fits(DatagramBuilder.framedSize(frame.length))) this.#send(outbox);
    outbox.builder.addFrame(frame);
    this.#filled(outbox);
  }

  // An outbox got a frame: it goes out with the next flush, at the end of the turn.
  #filled(outbox: Outbox): void {
    if (!outbox.dirty && outbox.to !== "group") {
      outbox.dirty = true;
      this.#dirty.push(outbox);
    }
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#driver.touch();
  }

  #send(outbox: Outbox): void {
    const datagram = outbox.builder.finish();
    const sender = this.#sender;
    if (datagram === undefined || sender === undefined || !this.#running) return;
    // Unsealed (the common case), a datagram needs neither its receiver looked up nor a callback.
    if (this.#guard === undefined) {
      this.#transmitTo(sender, datagram, outbox.to);
      return;
    }
    // Sealed once per datagram, however many receivers it goes to; one to a single member names it: a
    // peer's outbox knows its member, a datagram to another address names the peer there, if any.
    const receiver = outbox.to === "group" ? "group" : (outbox.receiver ?? this.#peersByAddress.get(addressKey(outbox.to))?.id);
    const guard = this.#guard;
    if (!guard.synchronous) guard.seal(datagram, this.#header.length, receiver, this.#transmitSealed, undefined, outbox.to);
    else if (sender.sendParts !== undefined && this.#batch === undefined && guard.sealsInParts(datagram.length)) this.#sendInParts(sender, guard, datagram, receiver, outbox.to);
    else {
      // Handed on from here, as a plain datagram is: the whole path is optimized as one.
      const sealed = guard.sealNow(datagram, this.#header.length, receiver);
      if (sealed !== undefined) this.#transmitTo(sender, sealed, outbox.to);
    }
  }

  // A large datagram, sealed into parts that the transport sends as one (it gathers them): the ciphertext
  // is never copied into a buffer of the datagram's size. To the group on a network of peers (one send
  // to each), the parts are joined once and sent as any datagram is.
  #sendInParts(sender: Transport, guard: DatagramGuard, datagram: Uint8Array, receiver: Uint8Array | "group" | undefined, to: Address | "group"): void {
    const parts = guard.sealParts(datagram, this.#header.length, receiver);
    if (parts === undefined) return;
    const length = parts[0].length + parts[1].length + parts[2].length;
    try {
      if (to !== "group") this.#transmitParts(sender, parts, length, to);
      else {
        const network = this.#config.network;
        if (network.type === "multicast") this.#transmitParts(sender, parts, length, { host: network.group, port: network.port });
        else this.#transmitToGroup(sender, joinBytes(parts, length));
      }
    } catch (error) {
      this.#sendFailed(error);
    }
  }

  #transmitParts(sender: Transport, parts: readonly Uint8Array[], length: number, to: Address): void {
    sender.sendParts!(parts, to);
    this.stats.datagramsSent++;
    this.stats.bytesSent += length;
  }

  // Small on purpose, the group's fan-out apart: the optimizing compiler inlines it into the send path
  // (larger, it was compiled on its own, and only after thousands of datagrams had gone through it
  // unoptimized).
  #transmitTo(sender: Transport, datagram: Uint8Array, to: Address | "group"): void {
    try {
      if (to !== "group") this.#transmit(sender, datagram, to);
      else this.#transmitToGroup(sender, datagram);
    } catch (error) {
      this.#sendFailed(error);
    }
  }

  #transmitToGroup(sender: Transport, datagram: Uint8Array): void {
    const network = this.#config.network;
    if (network.type === "multicast") this.#transmit(sender, datagram, { host: network.group, port: network.port });
    else {
      // The configured peers are seeds: members heard from that are not among them are reached too.
      const seeds = this.#seeds!.addresses;
      for (const peer of seeds) if (!isSelf(peer, sender.localAddress)) this.#transmit(sender, datagram, peer);
      for (const peer of this.#peers.values()) {
        if (!seeds.some((seed) => sameAddress(seed, peer.address))) this.#transmit(sender, datagram, peer.address);
      }
    }
  }

  #sendFailed(error: unknown): void {
    this.#handlers.error(error instanceof BlazeError ? error : new BlazeError("SEND_FAILED", String(error), { cause: error }), "transport");
  }

  #transmit(sender: Transport, datagram: Uint8Array, to: Address): void {
    if (this.#batch !== undefined) this.#batch.push([datagram, to]);
    else sender.send(datagram, to);
    this.stats.datagramsSent++;
    this.stats.bytesSent += datagram.length;
  }

  // A fault anywhere above while handling one datagram is reported and counted; the next one is handled as usual.
  #receiveGuarded(bytes: Uint8Array, from: Address): void {
    try {
      this.#receive(bytes, from);
    } catch (error) {
      this.stats.receiveFaults++;
      this.#handlers.error(internalError("handling a datagram", error), "receive");
    }
  }

  #receive(bytes: Uint8Array, from: Address): void {
    if (!this.#running) return;
    this.stats.datagramsReceived++;
    this.stats.bytesReceived += bytes.length;
    // Our own multicast comes back to us; our envelope header is a fixed prefix, so skip decoding it.
    if (startsWith(bytes, this.#header)) {
      this.stats.ownDatagrams++;
      return;
    }
    if (this.#guard === undefined) this.#receivePlain(this.#reader.read(bytes), bytes.length, from, undefined);
    else this.#guard.open(bytes, (opened, keyId) => this.#receivePlain(this.#reader.readSplit(opened), opened.header.length + opened.body.length, from, keyId));
  }

  // A plain envelope of `length` bytes, read: as received, or opened (`sealedWith` the key that sealed
  // it). With an asynchronous provider this runs later, in arrival order, so the endpoint may have
  // stopped since.
  #receivePlain(result: ReceiveResult, length: number, from: Address, sealedWith: number | undefined): void {
    if (!this.#running) return;
    if (!result.ok) {
      this.drops.count(result.reason);
      return;
    }
    const { senderId, incarnation, frames } = result.datagram;
    const key = this.#keyOf(senderId);
    if (key === this.localKey) {
      this.stats.ownDatagrams++;
      return;
    }
    const now = this.#clock.now();
    let peer = this.#peers.get(key);
    if (peer !== undefined ? incarnation < peer.incarnation : this.#isDeparted(key, incarnation, now)) {
      this.stats.staleIncarnation++;
      return;
    }
    if (peer !== undefined && incarnation === peer.incarnation && !sameAddress(peer.address, from)) {
      // A peer sends from one socket for its whole incarnation: this is someone else using its name.
      this.stats.addressMismatch++;
      return;
    }
    // Most datagrams carry stream frames alone (a request or a reply and its acknowledgement): nothing
    // in them is a challenge, a goodbye, a diagnostics request or key rotation, and the scans for those
    // are skipped.
    const streamOnly = streamFramesOnly(frames);
    if (!streamOnly) this.#admission.answer(from, key, frames);
    // A Leave of no group is a channel-level goodbye; one naming a group is membership's business.
    const leaving = !streamOnly && frames.some((frame) => frame.case === "leave" && leaveGroupOf(frame.frame) === "");
    let held: ReadonlyArray<readonly ReceivedFrame[]> = [];
    if (peer === undefined || incarnation > peer.incarnation) {
      if (leaving && peer === undefined) return;
      const admitted = this.#admission.receive(key, incarnation, from, frames, length, now);
      if (!admitted.admitted) return;
      // An asker that proved its address and only asks for diagnostics (`blaze probe`) is answered, and stays no peer.
      if (peer === undefined && asksOnlyDiagnostics([...admitted.held, frames])) {
        for (const frame of [...admitted.held.flat(), ...frames]) this.#answerDiagnostics(from, key, frame);
        return;
      }
      if (peer === undefined && this.#peers.size >= this.#config.maxPeers) {
        this.stats.peerTableFull++;
        return;
      }
      if (peer !== undefined) this.#remove(peer, "left", now);
      peer = { key, id: senderId.slice(), incarnation, address: from, lastHeardAt: now };
      this.#peers.set(key, peer);
      this.#peersByAddress.set(addressKey(from), peer);
      this.#handlers.peerUp(peer);
      held = admitted.held;
    }
    peer.lastHeardAt = now;
    // What it sent while being admitted (its first datagram and its latest) is handled now, before this one.
    for (const frames of held) this.#handFrames(peer, frames, undefined);
    if (streamOnly) this.#handlers.frames(peer, frames);
    else this.#handFrames(peer, frames, sealedWith);
    if (leaving) this.#remove(peer, "left", now);
    // Whatever the frames changed (a deadline, a datagram to send) is taken up at the end of the turn,
    // which, early, takes the time read here as its own.
    this.#driver.touchAt(now);
  }

  // Challenges are admission's, diagnostics requests answered here, key rotation's frames the
  // rotation's (with security on); the rest goes up.
  #handFrames(peer: Peer, frames: readonly ReceivedFrame[], sealedWith: number | undefined): void {
    const rotation = this.#rotation;
    if (frames.some((frame) => isChallenge(frame) || frame.case === "diagnosticsRequest" || (rotation !== undefined && isKeyRotation(frame)))) {
      for (const frame of frames) {
        if (rotation !== undefined && isKeyRotation(frame)) rotation.onFrame(peer.key, frame, sealedWith);
        else this.#answerDiagnostics(peer.address, peer.key, frame);
      }
      frames = frames.filter((frame) => !isChallenge(frame) && frame.case !== "diagnosticsRequest" && (rotation === undefined || !isKeyRotation(frame)));
    }
    if (frames.length > 0) this.#handlers.frames(peer, frames);
  }

  // The reply goes in a datagram of its own, at once, to where the request came from.
  #answerDiagnostics(to: Address, receiver: PeerKey, frame: ReceivedFrame): void {
    if (frame.case !== "diagnosticsRequest") return;
    const reply = this.#handlers.diagnostics(frame.frame.kind.value as DiagnosticsRequest, this.#builderBytes - this.#header.length);
    if (reply === undefined) {
      this.stats.diagnosticsRefused++;
      return;
    }
    this.stats.diagnosticsAnswered++;
    this.#sendNow(to, reply, receiver);
  }

  #remove(peer: Peer, reason: "left" | "timeout", now: number): void {
    this.#peers.delete(peer.key);
    if (this.#lastQueuedFor === peer) this.#lastQueuedFor = undefined;
    if (this.#peersByAddress.get(addressKey(peer.address)) === peer) this.#peersByAddress.delete(addressKey(peer.address));
    this.#rotation?.peerDown(peer.key);
    // Only a goodbye makes the incarnation's late datagrams stale; a peer that merely fell silent (a
    // partition) must be heard again as soon as it speaks.
    if (reason === "left") this.#departed.set(peer.key, { incarnation: peer.incarnation, at: now });
    this.#handlers.peerDown(peer, reason);
  }

  /** Why no peer may be heard, for people: static peers that do not resolve or never answered. */
  describeSeeds(): string {
    return this.#seeds?.describe((address) => this.#isPeerAddress(address)) ?? "";
  }

  #isPeerAddress(address: Address): boolean {
    for (const peer of this.#peers.values()) if (sameAddress(peer.address, address)) return true;
    return false;
  }

  // A datagram of a departed incarnation that arrives late (reordered behind the goodbye) must not bring it back.
  #isDeparted(key: PeerKey, incarnation: number, now: number): boolean {
    const departed = this.#departed.get(key);
    if (departed === undefined) return false;
    if (now - departed.at > this.#config.peerTimeoutMs) {
      this.#departed.delete(key);
      return false;
    }
    return incarnation <= departed.incarnation;
  }

  // Consecutive datagrams mostly come from the same sender: reuse its key. The header reader hands out
  // the same sender id (its own copy) for every datagram of the header it read last: that one is known
  // without comparing its bytes.
  #keyOf(id: Uint8Array): PeerKey {
    if (id === this.#lastKeyId) return this.#lastKey;
    const last = this.#lastKeyBytes;
    if (last !== undefined && last.length === id.length) {
      let same = true;
      for (let i = 0; i < id.length; i++) {
        if (last[i] !== id[i]) {
          same = false;
          break;
        }
      }
      if (same) {
        this.#lastKeyId = id;
        return this.#lastKey;
      }
    }
    this.#lastKeyBytes = id.slice();
    this.#lastKeyId = id;
    this.#lastKey = keyOf(id);
    return this.#lastKey;
  }
}

/** True when every frame belongs to a stream (data, acknowledgements, NACKs), as in most datagrams. */
function streamFramesOnly(frames: readonly ReceivedFrame[]): boolean {
  for (let i = 0; i < frames.length; i++) {
    const kind = frames[i]!.case;
    if (kind !== "data" && kind !== "ack" && kind !== "nack") return false;
  }
  return frames.length > 0;
}

function isKeyRotation(frame: ReceivedFrame): boolean {
  return frame.case === "keyUpdate" || frame.case === "keyUpdateAck";
}

/** True when, challenges aside, the datagrams hold diagnostics requests and nothing else. */
function asksOnlyDiagnostics(datagrams: ReadonlyArray<readonly ReceivedFrame[]>): boolean {
  let asks = false;
  for (const frames of datagrams) {
    for (const frame of frames) {
      if (frame.case === "diagnosticsRequest") asks = true;
      else if (!isChallenge(frame)) return false;
    }
  }
  return asks;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length || prefix.length === 0) return false;
  for (let i = prefix.length - 1; i >= 0; i--) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function addressKey(address: Address): string {
  return `${address.host}:${address.port}`;
}

function sameAddress(a: Address, b: Address): boolean {
  return a.port === b.port && a.host === b.host;
}

// Exact: members may share a port on different loopback addresses (127.0.0.2, 127.0.0.3), as on different hosts.
function isSelf(peer: Address, local: Address): boolean {
  return sameAddress(peer, local);
}

/** Re-export for callers that dispatch frames. */
export type { Frame };
