import { create, toBinary } from "@bufbuild/protobuf";
import type { DiagnosticsRequest } from "../../gen/activeblaze/v1/diagnostics_pb.ts";
import { type Frame, FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { LeaveSchema } from "../../gen/activeblaze/v1/membership_pb.ts";
import { BlazeError, internalError } from "../errors.ts";
import { keyOf } from "../reliable/member-key.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { Clock, RandomSource } from "../transport/clock.ts";
import { familyOf, type HostResolver, type Seed, StaticSeeds } from "../transport/host-names.ts";
import type { Address, Transport, TransportFactory } from "../transport/transport.ts";
import { DropCounters } from "../wire/drop-reason.ts";
import { type DataFields, DatagramBuilder, DatagramReader, encodeEnvelopeHeader, leaveGroupOf, type ReceivedFrame } from "../wire/frames.ts";
import { Admission, type AdmissionStats, isChallenge } from "./admission.ts";

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
  /** Resolves the host names among static peers (never a name read from a datagram). */
  readonly resolver: HostResolver;
}

/** A peer heard on the network. */
export interface Peer {
  readonly key: PeerKey;
  readonly id: Uint8Array;
  incarnation: number;
  /** The unicast address its datagrams come from. */
  address: Address;
  lastHeardAt: number;
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

/** An endpoint's counters, admission's included. */
export type NetworkStats = EndpointStats & AdmissionStats & { readonly pendingSenders: number };

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
  readonly #handlers: EndpointHandlers;
  readonly #peers = new Map<PeerKey, Peer>();
  /** Peers that left or timed out, by the incarnation they had, for one peer timeout: their late datagrams are stale. */
  readonly #departed = new Map<PeerKey, { incarnation: number; at: number }>();
  readonly #unicast = new Map<string, Outbox>();
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
  #running = false;
  #lastKeyBytes: Uint8Array | undefined;
  #lastKey = "";

  constructor(config: EndpointConfig, clock: Clock, random: RandomSource, handlers: EndpointHandlers) {
    this.#config = config;
    this.#clock = clock;
    this.#handlers = handlers;
    this.#admission = new Admission(random, (to, frame) => this.#sendNow(to, frame));
    this.localKey = keyOf(config.memberId);
    this.#reader = new DatagramReader({ cluster: config.cluster, maxDatagramBytes: config.maxDatagramBytes });
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
    return { ...this.stats, ...this.#admission.stats, pendingSenders: this.#admission.pending };
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
      this.#sender = await factory({
        ...common,
        bindAddress: network.interface,
        port: 0,
        multicastInterface: network.interface,
        multicastTtl: network.ttl,
      });
      try {
        this.#listener = await factory({ ...common, bindAddress: "0.0.0.0", port: network.port, reuseAddress: true });
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
    this.#group = { builder: new DatagramBuilder(this.#header, this.#config.maxDatagramBytes), to: "group" };
    this.#unsent = new DatagramBuilder(this.#header, this.#config.maxDatagramBytes);
    this.#unicast.clear();
    if (network.type === "multicast") this.#listener!.joinGroup(network.group, network.interface);
    this.#running = true;
  }

  /** Says goodbye to the peers, stops receiving, and forgets them. */
  stop(): void {
    if (!this.#running) return;
    // Everything queued goes first: the goodbye must be the last datagram peers get from this incarnation.
    this.flush();
    this.multicastFrame(toBinary(FrameSchema, create(FrameSchema, { kind: { case: "leave", value: create(LeaveSchema) } })));
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
    this.#departed.clear();
    this.#admission.clear();
  }

  async close(): Promise<void> {
    this.stop();
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
    const outbox = this.#group!;
    if (!outbox.builder.fits(outbox.builder.dataFrameSize(data))) this.#send(outbox);
    const frame = outbox.builder.addData(data);
    this.#scheduleFlush();
    return frame;
  }

  multicastFrame(frame: Uint8Array): void {
    this.#queueFrame(this.#group!, frame);
  }

  unicastFrame(peer: PeerKey, frame: Uint8Array): void {
    const address = this.#peers.get(peer)?.address;
    if (address !== undefined) this.unicastFrameTo(address, frame);
  }

  /** Queues a frame for `address`: a peer's, or the source of a datagram just received (a reply). */
  unicastFrameTo(address: Address, frame: Uint8Array): void {
    this.#queueFrame(this.#outboxTo(address), frame);
  }

  // One frame in a datagram of its own, sent at once: for answers to senders not admitted, which must
  // cost no outbox (a flood of spoofed sources would otherwise make one each).
  #sendNow(to: Address, frame: Uint8Array): void {
    const sender = this.#sender;
    if (sender === undefined || !this.#running) return;
    // A Frame's bytes equal the body of an Envelope carrying that kind alone (envelope.proto).
    const datagram = new Uint8Array(this.#header.length + frame.length);
    datagram.set(this.#header);
    datagram.set(frame, this.#header.length);
    try {
      this.#transmit(sender, datagram, to);
    } catch (error) {
      this.#handlers.error(error instanceof BlazeError ? error : new BlazeError("SEND_FAILED", String(error), { cause: error }), "transport");
    }
  }

  /**
   * Writes a point-to-point Data frame into the next datagram to `peer`; returns the frame's bytes (kept
   * for retransmission). To a peer not heard from directly yet, the frame is only encoded — the stream
   * retransmits it once the peer is admitted — and the peer is introduced at `hint`'s address.
   */
  unicastData(peer: PeerKey, data: DataFields, hint: { readonly incarnation: number; readonly address: Address } | undefined): Uint8Array {
    const address = this.#peers.get(peer)?.address;
    if (address !== undefined) return this.#unicastDataTo(address, data);
    if (hint !== undefined) this.introduce(peer, hint.incarnation, hint.address);
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

  #unicastDataTo(address: Address, data: DataFields): Uint8Array {
    const outbox = this.#outboxTo(address);
    if (!outbox.builder.fits(outbox.builder.dataFrameSize(data))) this.#send(outbox);
    const frame = outbox.builder.addData(data);
    this.#scheduleFlush();
    return frame;
  }

  #outboxTo(address: Address): Outbox {
    const key = `${address.host}:${address.port}`;
    let outbox = this.#unicast.get(key);
    if (outbox === undefined) {
      if (this.#unicast.size >= 1024) {
        this.flush();
        this.#unicast.clear();
      }
      outbox = { builder: new DatagramBuilder(this.#header, this.#config.maxDatagramBytes), to: address };
      this.#unicast.set(key, outbox);
    }
    return outbox;
  }

  /** Sends every datagram being filled. */
  flush(): void {
    this.#flushScheduled = false;
    if (this.#group !== undefined) this.#send(this.#group);
    for (const outbox of this.#unicast.values()) this.#send(outbox);
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
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#clock.defer(() => this.flush());
  }

  #send(outbox: Outbox): void {
    const datagram = outbox.builder.finish();
    const sender = this.#sender;
    if (datagram === undefined || sender === undefined || !this.#running) return;
    try {
      if (outbox.to !== "group") this.#transmit(sender, datagram, outbox.to);
      else {
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
    } catch (error) {
      this.#handlers.error(error instanceof BlazeError ? error : new BlazeError("SEND_FAILED", String(error), { cause: error }), "transport");
    }
  }

  #transmit(sender: Transport, datagram: Uint8Array, to: Address): void {
    sender.send(datagram, to);
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
    const result = this.#reader.read(bytes);
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
    this.#admission.answer(from, frames);
    // A Leave of no group is a channel-level goodbye; one naming a group is membership's business.
    const leaving = frames.some((frame) => frame.case === "leave" && leaveGroupOf(frame.frame) === "");
    let held: ReadonlyArray<readonly ReceivedFrame[]> = [];
    if (peer === undefined || incarnation > peer.incarnation) {
      if (leaving && peer === undefined) return;
      const admitted = this.#admission.receive(key, incarnation, from, frames, bytes.length, now);
      if (!admitted.admitted) return;
      // An asker that proved its address and only asks for diagnostics (`blaze probe`) is answered, and stays no peer.
      if (peer === undefined && asksOnlyDiagnostics([...admitted.held, frames])) {
        for (const frame of [...admitted.held.flat(), ...frames]) this.#answerDiagnostics(from, frame);
        return;
      }
      if (peer === undefined && this.#peers.size >= this.#config.maxPeers) {
        this.stats.peerTableFull++;
        return;
      }
      if (peer !== undefined) this.#remove(peer, "left", now);
      peer = { key, id: senderId.slice(), incarnation, address: from, lastHeardAt: now };
      this.#peers.set(key, peer);
      this.#handlers.peerUp(peer);
      held = admitted.held;
    }
    peer.lastHeardAt = now;
    // What it sent while being admitted (its first datagram and its latest) is handled now, before this one.
    for (const frames of held) this.#handFrames(peer, frames);
    this.#handFrames(peer, frames);
    if (leaving) this.#remove(peer, "left", now);
  }

  // Challenges are admission's, diagnostics requests answered here; the rest goes up.
  #handFrames(peer: Peer, frames: readonly ReceivedFrame[]): void {
    if (frames.some((frame) => isChallenge(frame) || frame.case === "diagnosticsRequest")) {
      for (const frame of frames) this.#answerDiagnostics(peer.address, frame);
      frames = frames.filter((frame) => !isChallenge(frame) && frame.case !== "diagnosticsRequest");
    }
    if (frames.length > 0) this.#handlers.frames(peer, frames);
  }

  // The reply goes in a datagram of its own, at once, to where the request came from.
  #answerDiagnostics(to: Address, frame: ReceivedFrame): void {
    if (frame.case !== "diagnosticsRequest") return;
    const reply = this.#handlers.diagnostics(frame.frame.kind.value as DiagnosticsRequest, this.#config.maxDatagramBytes - this.#header.length);
    if (reply === undefined) {
      this.stats.diagnosticsRefused++;
      return;
    }
    this.stats.diagnosticsAnswered++;
    this.#sendNow(to, reply);
  }

  #remove(peer: Peer, reason: "left" | "timeout", now: number): void {
    this.#peers.delete(peer.key);
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

  // Consecutive datagrams mostly come from the same sender: reuse its key.
  #keyOf(id: Uint8Array): PeerKey {
    const last = this.#lastKeyBytes;
    if (last !== undefined && last.length === id.length) {
      let same = true;
      for (let i = 0; i < id.length; i++) {
        if (last[i] !== id[i]) {
          same = false;
          break;
        }
      }
      if (same) return this.#lastKey;
    }
    this.#lastKeyBytes = id.slice();
    this.#lastKey = keyOf(id);
    return this.#lastKey;
  }
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

function sameAddress(a: Address, b: Address): boolean {
  return a.port === b.port && a.host === b.host;
}

// Exact: members may share a port on different loopback addresses (127.0.0.2, 127.0.0.3), as on different hosts.
function isSelf(peer: Address, local: Address): boolean {
  return sameAddress(peer, local);
}

/** Re-export for callers that dispatch frames. */
export type { Frame };
