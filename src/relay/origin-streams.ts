import type { PeerKey } from "../reliable/protocol.ts";
import type { RelayedMessage, SiteMember, StreamPosition } from "./relay-frames.ts";

/** How many dropped direct streams' numbers an origin remembers. */
const MAX_RETIRED_STREAMS = 4_096;

/** A relayed message an origin holds until the sites it went to acknowledge it. */
interface Held {
  readonly message: RelayedMessage;
  /** When it last went to the gateway (first send or resend). */
  sentAt: number;
}

/** An origin's stream: its numbers, what it holds, and how far each site acknowledged it. */
interface OutStream {
  readonly target: SiteMember | undefined;
  next: number;
  readonly held: Map<number, Held>;
  /** Per site, the highest number it acknowledged (every one below too). */
  readonly acked: Map<string, number>;
}

/** What to send again, and to which sites (a topic message) — a direct message goes to its target's. */
export interface Resend {
  readonly message: RelayedMessage;
  readonly sites: readonly string[];
}

/**
 * The origin's side of the streams above the bridge (what RELAY3 added to RELAY2): every relayed
 * message a member sends gets the next number of its stream — one stream for its relayed topics, one
 * per member it sends to point to point — and the member holds it until every site it went to
 * acknowledged it (a topic message: every other site up when it was sent, and any that came up while
 * it was held; a direct message: its target's site). Sites acknowledge what every member that should
 * get it delivered, so a gateway that crashes on either side loses nothing: the origin sends what is
 * unacknowledged again through its site's next gateway, and receivers drop what they had by number.
 * A site that goes down releases what was held for it; what it missed then is skipped, and reported
 * lost, by its members — each message carries the lowest number its origin still holds.
 * Pure state: the caller passes the time and does the sending.
 */
export class OriginStreams {
  readonly #topic: OutStream = { target: undefined, next: 1, held: new Map(), acked: new Map() };
  readonly #direct = new Map<PeerKey, OutStream>();
  readonly #upSites = new Set<string>();
  /**
   * The next numbers of dropped direct streams: a stream to the same member again goes on from there,
   * so that a receiver that still follows it does not take its new messages for old ones. Bounded.
   */
  readonly #retired = new Map<PeerKey, number>();
  #heldMessages = 0;
  #heldBytes = 0;

  constructor(
    private readonly origin: SiteMember,
    private readonly windowMessages: number,
    private readonly windowBytes: number,
  ) {}

  get heldMessages(): number {
    return this.#heldMessages;
  }

  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Whether a message of `bytes` fits in the window now (one always fits in an empty one). */
  hasRoom(bytes: number): boolean {
    return this.#heldMessages === 0 || (this.#heldMessages < this.windowMessages && this.#heldBytes + bytes <= this.windowBytes);
  }

  /** The remote sites up, as the site's gateway last said. */
  get upSites(): ReadonlySet<string> {
    return this.#upSites;
  }

  /** A site came up: topic messages held from now on wait for it too. */
  siteUp(site: string): void {
    this.#upSites.add(site);
  }

  /** A site went down: nothing is held for it any more; returns the direct streams to it, now dropped. */
  siteDown(site: string): SiteMember[] {
    this.#upSites.delete(site);
    this.#topic.acked.delete(site);
    this.#trim(this.#topic);
    const dropped: SiteMember[] = [];
    for (const [id, stream] of this.#direct) {
      if (stream.target!.site !== site) continue;
      this.#drop(id, stream);
      dropped.push(stream.target!);
    }
    return dropped;
  }

  /** Numbers a topic message; it is held while a site up has not acknowledged it. */
  topic(destination: string, payload: Uint8Array, format: number, now: number): RelayedMessage {
    return this.#add(this.#topic, now, { destination, target: undefined, requestId: 0, reply: false, format, payload });
  }

  /** Numbers a point-to-point message (a request with `requestId`, or a `reply` to one). */
  direct(target: SiteMember, destination: string, payload: Uint8Array, format: number, requestId: number, reply: boolean, now: number): RelayedMessage {
    let stream = this.#direct.get(target.id);
    if (stream === undefined) {
      stream = { target, next: this.#retired.get(target.id) ?? 1, held: new Map(), acked: new Map() };
      this.#retired.delete(target.id);
      this.#direct.set(target.id, stream);
    }
    return this.#add(stream, now, { destination, target, requestId, reply, format, payload });
  }

  /** A site acknowledged positions of this origin's streams; returns whether anything was released. */
  acknowledge(site: string, positions: readonly StreamPosition[]): boolean {
    const before = this.#heldMessages;
    for (const position of positions) {
      if (position.origin.id !== this.origin.id || position.origin.incarnation !== this.origin.incarnation) continue;
      const stream = position.stream === "topic" ? this.#topic : this.#direct.get(position.targetId);
      // Only a site the stream goes to acknowledges it (and only such sites are remembered).
      if (stream === undefined || (stream.target === undefined ? !this.#upSites.has(site) : stream.target.site !== site)) continue;
      // Never past what was sent: a hostile or confused acknowledgement cannot release the unsent.
      const seq = Math.min(position.seq, stream.next - 1);
      if (seq <= (stream.acked.get(site) ?? 0)) continue;
      stream.acked.set(site, seq);
      this.#trim(stream);
    }
    return this.#heldMessages < before;
  }

  /** The target refused a direct stream (no such member at its site): drops it; returns its target. */
  refused(site: string, targetId: PeerKey): SiteMember | undefined {
    const stream = this.#direct.get(targetId);
    if (stream === undefined || stream.target!.site !== site) return undefined;
    this.#drop(targetId, stream);
    return stream.target;
  }

  /** Everything held, with the sites that still owe an acknowledgement: what a new gateway is given. */
  unacknowledged(now: number, sites?: ReadonlySet<string>): Resend[] {
    return this.#collect(() => true, now, sites);
  }

  /** What was sent `resendTimeoutMs` ago or more and is still unacknowledged. */
  due(now: number, resendTimeoutMs: number): Resend[] {
    return this.#collect((held) => held.sentAt + resendTimeoutMs <= now, now, undefined);
  }

  /** When the next resend falls due (infinity when nothing is held). */
  nextDue(resendTimeoutMs: number): number {
    let earliest = Number.POSITIVE_INFINITY;
    for (const stream of this.#streams()) {
      // Held messages are in number order and sent in that order: the first is the oldest.
      for (const held of stream.held.values()) {
        earliest = Math.min(earliest, held.sentAt + resendTimeoutMs);
        break;
      }
    }
    return earliest;
  }

  #collect(pick: (held: Held) => boolean, now: number, only: ReadonlySet<string> | undefined): Resend[] {
    const out: Resend[] = [];
    for (const stream of this.#streams()) {
      for (const held of stream.held.values()) {
        if (!pick(held)) continue;
        const sites = this.#owing(stream, held.message.seq).filter((site) => only === undefined || only.has(site));
        if (sites.length === 0) continue;
        held.sentAt = now;
        out.push({ message: { ...held.message, floor: this.#floor(stream) }, sites });
      }
    }
    return out;
  }

  *#streams(): Iterable<OutStream> {
    yield this.#topic;
    yield* this.#direct.values();
  }

  // The sites that still owe an acknowledgement of message `seq` of the stream.
  #owing(stream: OutStream, seq: number): string[] {
    const sites = stream.target === undefined ? [...this.#upSites] : [stream.target.site];
    return sites.filter((site) => (stream.acked.get(site) ?? 0) < seq);
  }

  #add(stream: OutStream, now: number, fields: Omit<RelayedMessage, "origin" | "stream" | "seq" | "floor" | "sites">): RelayedMessage {
    const seq = stream.next++;
    const message: RelayedMessage = { origin: this.origin, stream: stream.target === undefined ? "topic" : "direct", seq, floor: seq, sites: [], ...fields };
    if (this.#owing(stream, seq).length > 0) {
      stream.held.set(seq, { message, sentAt: now });
      this.#heldMessages++;
      this.#heldBytes += fields.payload.length;
    }
    return { ...message, floor: this.#floor(stream) };
  }

  // The lowest number held (receivers waiting for less skip to it), or the next one when none is.
  #floor(stream: OutStream): number {
    for (const seq of stream.held.keys()) return seq;
    return stream.next;
  }

  #trim(stream: OutStream): void {
    for (const [seq, held] of stream.held) {
      if (this.#owing(stream, seq).length > 0) break;
      stream.held.delete(seq);
      this.#heldMessages--;
      this.#heldBytes -= held.message.payload.length;
    }
  }

  #drop(id: PeerKey, stream: OutStream): void {
    for (const held of stream.held.values()) {
      this.#heldMessages--;
      this.#heldBytes -= held.message.payload.length;
    }
    this.#direct.delete(id);
    this.#retired.set(id, stream.next);
    if (this.#retired.size > MAX_RETIRED_STREAMS) this.#retired.delete(this.#retired.keys().next().value!);
  }
}
