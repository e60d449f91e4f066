import { BlazeError } from "../errors.ts";
import type { ErrorStage } from "../channel/error-report.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { Clock, TimerHandle } from "../transport/clock.ts";
import type { DropReason } from "../wire/drop-reason.ts";
import type { ResolvedRelayOptions } from "./options.ts";
import { decodeRelay, encodeRelay, type RelayBody, type RelayedMessage, type SiteAnnouncement, type SiteMember, type StreamPosition } from "./relay-frames.ts";
import { SiteAcknowledgements } from "./site-acknowledgements.ts";
import type { SiteBus, SiteBusFactory } from "./site-bus.ts";

/** Positions per acknowledgement frame: about 70 bytes each, far below any bus's payload limit. */
const POSITIONS_PER_FRAME = 1_000;
/** Most other sites a gateway follows: announcements of more are refused (counted in `unknownSite`). */
export const MAX_SITES = 256;

/** What a gateway needs from the member it runs in. */
export interface GatewayHost {
  readonly clock: Clock;
  /** This member. */
  local(): SiteMember;
  /** The site's members that take part in the relay (its group's view), this one included. */
  siteMembers(): readonly SiteMember[];
  /** The other sites up as this member knew them before it became the gateway. */
  knownSites(): readonly SiteAnnouncement[];
  /** Broadcasts a frame to the site's members (not to this one). */
  broadcast(bytes: Uint8Array): void;
  /** Sends a frame to one member of the site; to this one, handles it here. */
  sendTo(member: PeerKey, body: RelayBody): void;
  /** This member's own handling of a frame the gateway gives the whole site (a remote topic message). */
  receive(body: RelayBody): void;
  /** The table of other sites changed: this member takes it (and the gateway sends it to the others). */
  tableChanged(sites: readonly SiteAnnouncement[]): void;
  /** The bus is connected: this member's own unacknowledged messages go out again. */
  connected(): void;
  /** A frame of the map's copy from a site that is up (mapEntries, mapDigest). */
  mapFrame(body: RelayBody): void;
  /** A frame from the bus refused: counted under its reason. */
  dropped(reason: DropReason): void;
  report(error: BlazeError, stage: ErrorStage): void;
}

export interface GatewayStats {
  /** Frames published on the bus. */
  published: number;
  /** Frames taken from the bus. */
  received: number;
  /** Messages from another site for a member this site does not have (refused back to the origin). */
  refused: number;
  /** Acknowledgements ignored: from a gateway another than the one its site announced. */
  foreignAcks: number;
  /** Frames from a site that is not up here (or announcements past `MAX_SITES`), dropped. */
  unknownSite: number;
}

/**
 * A site's gateway: the coordinator of the site's group, connected to the bus. It announces its site,
 * follows the other sites' announcements (a site not heard for `siteTimeoutMs` is down), forwards its
 * members' relayed messages to the sites they are for, hands what other sites send to its members
 * (a topic message to all by a group broadcast, a direct one to its target), and acknowledges to each
 * origin's site what its members reported delivered. It keeps no message: what it loses by crashing,
 * the origins send again through the next gateway.
 */
export class SiteGateway {
  readonly stats: GatewayStats = { published: 0, received: 0, refused: 0, foreignAcks: 0, unknownSite: 0 };
  readonly #acks: SiteAcknowledgements;
  readonly #directory = new Map<string, { announcement: SiteAnnouncement; heardAt: number }>();
  readonly #subscriptions: Array<() => void> = [];
  #bus: SiteBus | undefined;
  #announceTimer: TimerHandle | undefined;
  #ackTimer: TimerHandle | undefined;
  #closed = false;

  constructor(
    private readonly site: string,
    private readonly options: ResolvedRelayOptions,
    private readonly connect: SiteBusFactory,
    private readonly host: GatewayHost,
  ) {
    this.#acks = new SiteAcknowledgements(options.maxStreams);
    const now = host.clock.now();
    // The sites this member knew stay up: a gateway change is not a site going down and up.
    for (const announcement of host.knownSites()) this.#directory.set(announcement.site, { announcement, heardAt: now });
    this.membersChanged();
    void this.#open();
  }

  get connected(): boolean {
    return this.#bus !== undefined;
  }

  /** The site's view changed: reports of departed members go, and the site is announced again. */
  membersChanged(): void {
    this.#acks.setMembers(this.host.siteMembers().map((m) => m.id));
    this.#armAck();
    if (this.#bus !== undefined) this.#announce();
  }

  /** A relayed message of one of this site's members, to forward. */
  forward(message: RelayedMessage): void {
    if (message.stream === "direct") {
      const site = message.target!.site;
      if (this.#directory.has(site)) this.#publish(this.#siteSubject(site), { kind: "message", message });
      return;
    }
    const bytes = encodeRelay({ kind: "message", message: message.sites.length === 0 ? message : { ...message, sites: [] } });
    for (const site of message.sites.length === 0 ? this.#directory.keys() : message.sites) {
      if (this.#directory.has(site)) this.#publishBytes(this.#siteSubject(site), bytes);
    }
  }

  /** The other sites up, as this gateway last heard them. */
  sitesUp(): string[] {
    return [...this.#directory.keys()];
  }

  /** The largest frame the bus carries. */
  get maxPayloadBytes(): number {
    return this.#bus?.maxPayloadBytes ?? 1024 * 1024;
  }

  /** Publishes a frame to another site's gateway, if that site is up (lost while the bus is down). */
  publishTo(site: string, body: RelayBody): void {
    if (this.#directory.has(site)) this.#publish(this.#siteSubject(site), body);
  }

  /** A member's report of how far it delivered. */
  report(member: PeerKey, positions: readonly StreamPosition[], complete: boolean): void {
    this.#acks.report(member, positions, complete);
    this.#armAck();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#announceTimer?.cancel();
    this.#ackTimer?.cancel();
    for (const unsubscribe of this.#subscriptions.splice(0)) unsubscribe();
    const bus = this.#bus;
    this.#bus = undefined;
    await bus?.close();
  }

  async #open(): Promise<void> {
    let bus: SiteBus;
    try {
      bus = await this.connect(this.site);
    } catch (error) {
      if (this.#closed) return;
      this.host.report(error instanceof BlazeError ? error : new BlazeError("TRANSPORT_ERROR", "the gateway cannot reach the bus", { cause: error }), "transport");
      // Still the gateway: try again, and go on announcing from the known table meanwhile.
      this.#announceTimer = this.host.clock.setTimer(this.options.announceIntervalMs, () => void this.#open());
      return;
    }
    if (this.#closed) {
      await bus.close();
      return;
    }
    this.#bus = bus;
    const prefix = this.options.subjectPrefix;
    this.#subscriptions.push(bus.subscribe(this.#siteSubject(this.site), (data) => this.#guard(() => this.#fromBus(data))));
    this.#subscriptions.push(bus.subscribe(`${prefix}.announce`, (data) => this.#guard(() => this.#fromBus(data))));
    bus.onConnection((up) => this.#guard(() => up && this.#announce()));
    this.#tick();
    this.host.connected();
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.host.report(new BlazeError("INTERNAL_ERROR", `the gateway threw: ${error instanceof Error ? error.message : String(error)}`, { cause: error }), "receive");
    }
  }

  #siteSubject(site: string): string {
    return `${this.options.subjectPrefix}.site.${site}`;
  }

  // Every announce interval: announce, expire sites not heard, and tell the members the table.
  #tick(): void {
    if (this.#closed) return;
    this.#announce();
    const now = this.host.clock.now();
    let changed = false;
    for (const [site, entry] of this.#directory) {
      if (now - entry.heardAt < this.options.siteTimeoutMs) continue;
      this.#directory.delete(site);
      changed = true;
    }
    this.#tableChanged(changed);
    this.#announceTimer = this.host.clock.setTimer(this.options.announceIntervalMs, () => this.#tick());
  }

  #announce(): void {
    const announcement: SiteAnnouncement = { site: this.site, gateway: this.host.local(), members: this.host.siteMembers(), intervalMs: this.options.announceIntervalMs };
    this.#publish(`${this.options.subjectPrefix}.announce`, { kind: "announce", announcement });
  }

  // Members hear the table every interval (a joiner learns it so) and at once when it changed.
  #tableChanged(changed: boolean): void {
    const sites = [...this.#directory.values()].map((entry) => entry.announcement);
    if (changed) this.host.tableChanged(sites);
    this.host.broadcast(encodeRelay({ kind: "table", sites }));
  }

  #fromBus(data: Uint8Array): void {
    this.stats.received++;
    const decoded = decodeRelay(data, this.#bus?.maxPayloadBytes ?? data.length);
    if (!decoded.ok) {
      this.host.dropped(decoded.reason);
      return;
    }
    const body = decoded.body;
    switch (body.kind) {
      case "announce":
        this.#heard(body.announcement);
        return;
      case "message":
        this.#deliver(body.message);
        return;
      case "ack": {
        const gateway = this.#directory.get(body.site)?.announcement.gateway;
        if (gateway === undefined) {
          this.stats.unknownSite++;
          return;
        }
        if (gateway.id !== body.gatewayId) {
          this.stats.foreignAcks++;
          return;
        }
        const byOrigin = new Map<PeerKey, StreamPosition[]>();
        for (const position of body.positions) {
          if (position.origin.site !== this.site) continue;
          let list = byOrigin.get(position.origin.id);
          if (list === undefined) byOrigin.set(position.origin.id, (list = []));
          list.push(position);
        }
        const members = new Set(this.host.siteMembers().map((m) => m.id));
        for (const [origin, positions] of byOrigin) if (members.has(origin)) this.host.sendTo(origin, { kind: "ack", site: body.site, gatewayId: body.gatewayId, positions });
        return;
      }
      case "mapEntries":
      case "mapDigest":
        if (!this.#directory.has(body.site)) {
          this.stats.unknownSite++;
          return;
        }
        this.host.mapFrame(body);
        return;
      case "refusal": {
        if (!this.#directory.has(body.site)) {
          this.stats.unknownSite++;
          return;
        }
        const origin = body.position.origin;
        if (origin.site === this.site && this.host.siteMembers().some((m) => m.id === origin.id)) this.host.sendTo(origin.id, body);
        return;
      }
      default:
        this.host.dropped("INVALID_FIELD");
    }
  }

  #heard(announcement: SiteAnnouncement): void {
    if (announcement.site === this.site) return;
    const known = this.#directory.get(announcement.site);
    if (known === undefined && this.#directory.size >= MAX_SITES) {
      this.stats.unknownSite++;
      return;
    }
    this.#directory.set(announcement.site, { announcement, heardAt: this.host.clock.now() });
    const changed = known === undefined || known.announcement.gateway.id !== announcement.gateway.id || known.announcement.gateway.incarnation !== announcement.gateway.incarnation;
    if (changed) this.#tableChanged(true);
  }

  // A message from another site for this one.
  #deliver(message: RelayedMessage): void {
    if (message.origin.site === this.site) {
      this.host.dropped("INVALID_FIELD");
      return;
    }
    // From a site not up here: its origin sends it again once this gateway heard the site announced.
    if (!this.#directory.has(message.origin.site)) {
      this.stats.unknownSite++;
      return;
    }
    if (message.stream === "topic") {
      const bytes = encodeRelay({ kind: "message", message });
      this.host.broadcast(bytes);
      this.host.receive({ kind: "message", message });
      return;
    }
    const target = message.target!;
    if (target.site !== this.site) {
      this.host.dropped("INVALID_FIELD");
      return;
    }
    if (this.host.siteMembers().some((m) => m.id === target.id)) {
      this.host.sendTo(target.id, { kind: "message", message });
      return;
    }
    this.stats.refused++;
    this.#publish(this.#siteSubject(message.origin.site), {
      kind: "refusal",
      site: this.site,
      position: { origin: message.origin, stream: "direct", targetId: target.id, seq: message.seq },
    });
  }

  #armAck(): void {
    if (this.#ackTimer !== undefined || !this.#acks.pending) return;
    this.#ackTimer = this.host.clock.setTimer(this.options.ackDelayMs, () => {
      this.#ackTimer = undefined;
      if (this.#bus === undefined) {
        // Not connected yet: the tally waits (taking it would lose the acknowledgements).
        this.#ackTimer = this.host.clock.setTimer(this.options.ackDelayMs, () => {
          this.#ackTimer = undefined;
          this.#armAck();
        });
        return;
      }
      const gatewayId = this.host.local().id;
      for (const [site, positions] of this.#acks.take()) {
        if (site === this.site) continue;
        for (let i = 0; i < positions.length; i += POSITIONS_PER_FRAME) {
          this.#publish(this.#siteSubject(site), { kind: "ack", site: this.site, gatewayId, positions: positions.slice(i, i + POSITIONS_PER_FRAME) });
        }
      }
    });
  }

  #publish(subject: string, body: RelayBody): void {
    this.#publishBytes(subject, encodeRelay(body));
  }

  #publishBytes(subject: string, bytes: Uint8Array): void {
    if (this.#bus === undefined) return;
    this.stats.published++;
    this.#bus.publish(subject, bytes);
  }
}
