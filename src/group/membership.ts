import { create } from "@bufbuild/protobuf";
import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import {
  DiscoveryResponseSchema,
  DiscoverySchema,
  JoinResponseSchema,
  JoinSchema,
  LeaveSchema,
  PingSchema,
  PongSchema,
  ViewAckSchema,
} from "../../gen/activeblaze/v1/membership_pb.ts";
import { MemberRefSchema } from "../../gen/activeblaze/v1/common_pb.ts";
import { idOf, keyOf } from "../reliable/member-key.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { Clock, RandomSource, TimerHandle } from "../transport/clock.ts";
import type { Address } from "../transport/transport.ts";
import { encodeFrame, memberInfo, toMember, toView, toViewId, viewIdProto, viewProto } from "./frames.ts";
import { contains, type CoordinatorSelector, type Member, sameView, type View, type ViewId } from "./view.ts";

/** Timing of membership. Every duration is in milliseconds. */
export interface MembershipOptions {
  /** How often members say they are alive (any datagram counts). */
  readonly heartbeatIntervalMs: number;
  /** A member silent this long is suspected… */
  readonly failureTimeoutMs: number;
  /** …and removed when it does not answer pings within this time. */
  readonly verifyTimeoutMs: number;
  /** How long a starting member looks for the group before forming one alone. */
  readonly discoveryTimeoutMs: number;
}

/** What membership needs from the channel it runs in. */
export interface MembershipHost {
  readonly clock: Clock;
  readonly random: RandomSource;
  /** This member as the group sees it (read afresh: the weight may change). */
  local(): Member;
  multicastFrame(frame: Uint8Array): void;
  unicastFrame(peer: PeerKey, frame: Uint8Array): void;
  unicastFrameTo(address: Address, frame: Uint8Array): void;
  /** When a datagram from `peer` last arrived (undefined: never, or forgotten). */
  lastHeard(peer: PeerKey): number | undefined;
  /** A new view was installed here. */
  viewInstalled(view: View, previous: View | undefined): void;
  /** `peer` is suspected of having failed (it is being verified). */
  suspected(peer: Member): void;
}

type Phase = "idle" | "discovering" | "joining" | "member" | "left";

interface Candidate {
  readonly member: Member;
  readonly coordinator: Member | undefined;
}

// How often a discovering or joining member repeats itself, and how often the view is checked.
const DISCOVERY_INTERVAL_MS = 100;
const JOIN_RETRY_MS = 200;
const VERIFY_PINGS = 3;
// View acknowledgements are awaited this long before the view is sent again to the silent members.
const VIEW_ACK_RESEND_MS = 100;

/**
 * Membership of one group, as a state machine over a channel: discovery, join, failure detection with
 * verification, view installation by the coordinator, graceful leave, and the merge of partitions.
 *
 * - Discovery: a starting member multicasts Discovery; members answer with the coordinator. It then
 *   sends Join to the coordinator until a view includes it. If nobody answers within the discovery
 *   timeout it forms the group alone; members that start together agree (by the coordinator selector)
 *   on which of them forms it, and the others join.
 * - Views: only the coordinator installs views, each with a larger counter; it multicasts the view,
 *   resends it to members that do not acknowledge it, and repeats it every heartbeat interval (which
 *   also lets a partition's coordinator notice another's). A member installs a view with a larger
 *   counter than its own; one that finds itself left out by its coordinator joins again.
 * - Failure detection: a member silent for `failureTimeoutMs` is suspected and pinged; if it stays
 *   silent `verifyTimeoutMs` more it is removed (the coordinator removes members; the members remove a
 *   failed coordinator: the survivor chosen by the selector installs the next view). Loss short of
 *   total silence for `failureTimeoutMs` plus the pings removes nobody. A graceful leave is seen at once.
 * - Merge: a coordinator hearing another coordinator's view of the same group merges both: the higher
 *   ranked of the two (selector over the pair in id order) installs a view of all members, counter
 *   above both.
 */
export class GroupMembership {
  readonly group: string;
  readonly #host: MembershipHost;
  readonly #options: MembershipOptions;
  readonly #select: CoordinatorSelector;
  #phase: Phase = "idle";
  #view: View | undefined;
  #maxCounter = 0;
  readonly #candidates = new Map<PeerKey, Candidate>();
  #discoveryDeadline = 0;
  #joinTarget: Member | undefined;
  readonly #pendingJoins = new Map<PeerKey, Member>();
  readonly #pendingLeaves = new Set<PeerKey>();
  readonly #verifying = new Map<PeerKey, { since: number; pings: number }>();
  readonly #dead = new Set<PeerKey>();
  #unacked = new Set<PeerKey>();
  #ackDeadline = 0;
  #installScheduled = false;
  #timer: TimerHandle | undefined;
  #nonce = 1;
  #lastViewRepeat = 0;
  #joiningSince = 0;
  /** When each member entered our view: a member never heard is silent since then. */
  readonly #addedAt = new Map<PeerKey, number>();

  constructor(group: string, host: MembershipHost, options: MembershipOptions, select: CoordinatorSelector) {
    this.group = group;
    this.#host = host;
    this.#options = options;
    this.#select = select;
  }

  get view(): View | undefined {
    return this.#view;
  }

  get isMember(): boolean {
    return this.#phase === "member";
  }

  get isCoordinator(): boolean {
    return this.#phase === "member" && this.#view?.coordinator.id === this.#host.local().id;
  }

  /** Starts looking for the group. */
  start(): void {
    if (this.#phase !== "idle" && this.#phase !== "left") return;
    this.#phase = "discovering";
    this.#discoveryDeadline = this.#host.clock.now() + this.#options.discoveryTimeoutMs;
    this.#sendDiscovery();
    this.#schedule(DISCOVERY_INTERVAL_MS);
  }

  /** Leaves the group gracefully: a coordinator hands over first; everyone says goodbye. */
  leave(): void {
    if (this.#phase === "idle" || this.#phase === "left") return;
    const view = this.#view;
    const local = this.#host.local();
    if (this.#phase === "member" && view !== undefined && this.isCoordinator && view.members.length > 1) {
      // Hand the group over with a view without us, so that the next coordinator takes over at once.
      this.#install(view.members.filter((m) => m.id !== local.id));
    }
    this.#host.multicastFrame(encodeFrame({ case: "leave", value: create(LeaveSchema, { group: this.group }) }));
    this.#phase = "left";
    this.#view = undefined;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /** Stops without a goodbye (the channel is going away). */
  stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#phase = "left";
  }

  /** A membership frame for this group arrived from `peer`, whose datagram came from `from`. */
  onFrame(peer: PeerKey, from: Address, frame: Frame): void {
    if (this.#phase === "idle" || this.#phase === "left") return;
    const kind = frame.kind;
    switch (kind.case) {
      case "discovery":
        return this.#onDiscovery(from, kind.value.member);
      case "discoveryResponse":
        return this.#onDiscoveryResponse(kind.value);
      case "join":
        return this.#onJoin(kind.value.member);
      case "joinResponse":
        if (kind.value.view !== undefined) this.#onView(peer, kind.value.view);
        return;
      case "view":
        return this.#onView(peer, kind.value);
      case "viewAck":
        if (sameView(toViewId(kind.value.viewId), this.#view?.id)) this.#unacked.delete(peer);
        return;
      case "leave":
        return this.#onLeave(peer);
      case "ping":
        this.#host.unicastFrameTo(from, encodeFrame({ case: "pong", value: create(PongSchema, { nonce: kind.value.nonce, group: this.group }) }));
        return;
      default:
        // A pong needs no handling: like any datagram, it refreshed the peer's last-heard time.
        return;
    }
  }

  // --- discovery and join ---

  #sendDiscovery(): void {
    this.#host.multicastFrame(
      encodeFrame({ case: "discovery", value: create(DiscoverySchema, { member: memberInfo(this.#host.local()), group: this.group }) }),
    );
  }

  #onDiscovery(from: Address, info: Parameters<typeof toMember>[0]): void {
    const member = toMember(info);
    if (member === undefined || member.id === this.#host.local().id) return;
    if (this.#phase === "discovering") {
      // Another member starting at the same time: remember it, so we agree on who forms the group.
      if (!this.#candidates.has(member.id)) this.#candidates.set(member.id, { member, coordinator: undefined });
      return;
    }
    const view = this.#view;
    if (this.#phase !== "member" || view === undefined) return;
    this.#host.unicastFrameTo(
      from,
      encodeFrame({
        case: "discoveryResponse",
        value: create(DiscoveryResponseSchema, {
          member: memberInfo(this.#host.local()),
          group: this.group,
          viewId: viewIdProto(view.id),
          coordinator: create(MemberRefSchema, { id: idOf(view.coordinator.id), incarnation: BigInt(view.coordinator.incarnation) }),
          coordinatorHost: view.coordinator.address.host,
          coordinatorPort: view.coordinator.address.port,
        }),
      }),
    );
  }

  #onDiscoveryResponse(response: { member?: Parameters<typeof toMember>[0]; coordinatorHost: string; coordinatorPort: number; coordinator?: { id: Uint8Array; incarnation: bigint } }): void {
    if (this.#phase !== "discovering" && this.#phase !== "joining") return;
    const member = toMember(response.member);
    if (member === undefined || response.coordinator === undefined || response.coordinatorPort === 0) return;
    const coordinatorKey = keyOf(response.coordinator.id);
    const coordinator: Member =
      coordinatorKey === member.id
        ? member
        : { ...member, id: coordinatorKey, incarnation: Number(response.coordinator.incarnation), name: "", address: { host: response.coordinatorHost, port: response.coordinatorPort } };
    this.#candidates.set(member.id, { member, coordinator });
    if (this.#phase === "discovering") this.#startJoining(coordinator);
  }

  #sendJoin(): void {
    const target = this.#joinTarget;
    if (target === undefined) return;
    this.#host.unicastFrameTo(
      target.address,
      encodeFrame({ case: "join", value: create(JoinSchema, { member: memberInfo(this.#host.local()), group: this.group }) }),
    );
  }

  #onJoin(info: Parameters<typeof toMember>[0]): void {
    const member = toMember(info);
    const view = this.#view;
    if (member === undefined || view === undefined || !this.isCoordinator) return;
    if (contains(view, member.id, member.incarnation)) {
      // It missed the view that added it: send it again.
      this.#sendView(view, member);
      return;
    }
    this.#pendingJoins.set(member.id, member);
    this.#scheduleInstall();
  }

  // Forms the group alone, unless a member starting at the same time ranks higher: that one forms it.
  #discoveryExpired(): void {
    const local = this.#host.local();
    const starters = [local, ...[...this.#candidates.values()].filter((c) => c.coordinator === undefined).map((c) => c.member)];
    starters.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const former = this.#select(starters);
    if (former.id === local.id) {
      this.#phase = "member";
      this.#install([local]);
      return;
    }
    // Wait for the former to answer (it will, once its own discovery expires); then join it.
    this.#discoveryDeadline = this.#host.clock.now() + this.#options.discoveryTimeoutMs;
    this.#candidates.delete(former.id);
    this.#sendDiscovery();
  }

  // --- views ---

  #scheduleInstall(): void {
    if (this.#installScheduled) return;
    this.#installScheduled = true;
    // A short wait gathers joins and leaves that come together into one view.
    this.#host.clock.setTimer(5, () => {
      this.#installScheduled = false;
      const view = this.#view;
      if (view === undefined || !this.isCoordinator) return;
      const members = view.members.filter((m) => !this.#pendingLeaves.has(m.id) && !this.#dead.has(m.id) && !this.#pendingJoins.has(m.id));
      for (const joiner of this.#pendingJoins.values()) if (!this.#pendingLeaves.has(joiner.id)) members.push(joiner);
      this.#pendingJoins.clear();
      this.#pendingLeaves.clear();
      this.#dead.clear();
      this.#install(members);
    });
  }

  /** Installs (as coordinator) and disseminates a view of `members`, in this order. */
  #install(members: Member[], mergedIds: readonly ViewId[] = []): void {
    const local = this.#host.local();
    const fresh = members.map((m) => (m.id === local.id ? local : m));
    this.#maxCounter++;
    const view: View = {
      group: this.group,
      id: { installer: local.id, counter: this.#maxCounter },
      members: fresh,
      coordinator: this.#select(fresh),
    };
    this.#unacked = new Set(fresh.map((m) => m.id).filter((id) => id !== local.id));
    this.#ackDeadline = this.#host.clock.now() + VIEW_ACK_RESEND_MS;
    this.#host.multicastFrame(encodeFrame({ case: "view", value: viewProto(view, mergedIds) }));
    if (contains(view, local.id)) this.#adopt(view);
  }

  #sendView(view: View, to: Member): void {
    this.#host.unicastFrameTo(
      to.address,
      encodeFrame({ case: "joinResponse", value: create(JoinResponseSchema, { group: this.group, view: viewProto(view) }) }),
    );
  }

  #onView(peer: PeerKey, proto: Parameters<typeof toView>[0]): void {
    if (proto.group !== this.group) return;
    const view = toView(proto);
    if (view === undefined) return;
    const local = this.#host.local();
    const current = this.#view;
    if (view.id.counter > this.#maxCounter) this.#maxCounter = view.id.counter;
    if (current !== undefined && sameView(view.id, current.id)) {
      this.#ackView(peer, view);
      return;
    }
    if (contains(view, local.id, local.incarnation)) {
      if (current === undefined || view.id.counter > current.id.counter) {
        this.#adopt(view);
        this.#ackView(peer, view);
      }
      return;
    }
    // A view without us.
    if (current === undefined) {
      // Not in the group yet: the view names the coordinator to join.
      if (this.#phase === "joining") this.#joinTarget = view.coordinator;
      return;
    }
    const fromOurCoordinator = view.id.installer === current.coordinator.id || view.coordinator.id === current.coordinator.id;
    if (fromOurCoordinator && view.id.counter > current.id.counter) {
      // Our coordinator took us for dead: join again.
      this.#view = undefined;
      this.#startJoining(view.coordinator);
      return;
    }
    // Another partition's view: its coordinator and ours merge them.
    if (this.isCoordinator && view.coordinator.id !== local.id) this.#merge(current, view);
  }

  #ackView(peer: PeerKey, view: View): void {
    this.#host.unicastFrame(peer, encodeFrame({ case: "viewAck", value: create(ViewAckSchema, { group: this.group, viewId: viewIdProto(view.id) }) }));
  }

  #startJoining(target: Member | undefined): void {
    this.#phase = "joining";
    this.#joiningSince = this.#host.clock.now();
    this.#joinTarget = target;
    this.#sendJoin();
    this.#schedule(JOIN_RETRY_MS);
  }

  #merge(mine: View, theirs: View): void {
    const local = this.#host.local();
    const pair = [mine.coordinator, theirs.coordinator].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (this.#select(pair).id !== local.id) return;
    const members = [...mine.members];
    for (const member of theirs.members) {
      const index = members.findIndex((m) => m.id === member.id);
      if (index < 0) members.push(member);
      else if (member.incarnation > members[index]!.incarnation) members[index] = member;
    }
    if (theirs.id.counter > this.#maxCounter) this.#maxCounter = theirs.id.counter;
    this.#install(members, [mine.id, theirs.id]);
  }

  #adopt(view: View): void {
    const previous = this.#view;
    this.#view = view;
    this.#phase = "member";
    this.#joinTarget = undefined;
    this.#candidates.clear();
    const now = this.#host.clock.now();
    for (const member of view.members) {
      this.#verifying.delete(member.id);
      if (!this.#addedAt.has(member.id)) this.#addedAt.set(member.id, now);
    }
    for (const id of this.#addedAt.keys()) if (!contains(view, id)) this.#addedAt.delete(id);
    for (const id of this.#verifying.keys()) if (!contains(view, id)) this.#verifying.delete(id);
    this.#schedule(this.#checkInterval());
    this.#host.viewInstalled(view, previous);
  }

  #onLeave(peer: PeerKey): void {
    const view = this.#view;
    if (view === undefined || !contains(view, peer)) return;
    if (this.isCoordinator) {
      this.#pendingLeaves.add(peer);
      this.#scheduleInstall();
    } else if (peer === view.coordinator.id) {
      // The coordinator left without handing over (or its handover view was lost): take over if next.
      this.#dead.add(peer);
      this.#takeOverIfNext(view, new Set([peer]));
    }
  }

  // --- failure detection ---

  #checkInterval(): number {
    return Math.max(10, Math.min(this.#options.heartbeatIntervalMs, this.#options.verifyTimeoutMs / VERIFY_PINGS) / 2);
  }

  #schedule(delayMs: number): void {
    this.#timer?.cancel();
    this.#timer = this.#host.clock.setTimer(delayMs, () => {
      this.#timer = undefined;
      this.#tick();
    });
  }

  #tick(): void {
    const now = this.#host.clock.now();
    switch (this.#phase) {
      case "discovering":
        if (now >= this.#discoveryDeadline) this.#discoveryExpired();
        else this.#sendDiscovery();
        if (this.#phase === "discovering") this.#schedule(DISCOVERY_INTERVAL_MS);
        return;
      case "joining":
        if (now - this.#joiningSince > 2 * this.#options.discoveryTimeoutMs) {
          // The coordinator we were sent to does not answer (it may have died): look again.
          this.#phase = "idle";
          this.start();
          return;
        }
        if (this.#joinTarget === undefined) this.#sendDiscovery();
        else this.#sendJoin();
        this.#schedule(JOIN_RETRY_MS);
        return;
      case "member":
        this.#checkMembers(now);
        this.#schedule(this.#checkInterval());
        return;
      default:
        return;
    }
  }

  #checkMembers(now: number): void {
    const view = this.#view!;
    const local = this.#host.local();
    const failed = new Set<PeerKey>();
    for (const member of view.members) {
      if (member.id === local.id) continue;
      const heard = this.#host.lastHeard(member.id);
      const silentSince = Math.max(heard ?? 0, this.#addedAt.get(member.id) ?? 0);
      const verification = this.#verifying.get(member.id);
      if (now - silentSince <= this.#options.failureTimeoutMs) {
        this.#verifying.delete(member.id);
        continue;
      }
      if (verification === undefined) {
        this.#verifying.set(member.id, { since: now, pings: 0 });
        this.#host.suspected(member);
        this.#ping(member);
        continue;
      }
      if (heard !== undefined && heard > verification.since) {
        this.#verifying.delete(member.id);
        continue;
      }
      if (now - verification.since >= this.#options.verifyTimeoutMs) failed.add(member.id);
      else if (verification.pings < VERIFY_PINGS && now - verification.since >= (verification.pings * this.#options.verifyTimeoutMs) / VERIFY_PINGS) {
        this.#ping(member);
      }
    }
    if (this.isCoordinator) {
      if (failed.size > 0) {
        for (const id of failed) this.#dead.add(id);
        this.#scheduleInstall();
      }
      this.#resendView(view, now);
    } else if (failed.has(view.coordinator.id)) {
      this.#takeOverIfNext(view, failed);
    }
  }

  // The coordinator failed: the survivor the selector picks installs the next view.
  #takeOverIfNext(view: View, failed: ReadonlySet<PeerKey>): void {
    const local = this.#host.local();
    const survivors = view.members.filter((m) => !failed.has(m.id) && !this.#dead.has(m.id));
    if (survivors.length === 0 || this.#select(survivors).id !== local.id) return;
    this.#dead.clear();
    this.#install(survivors);
  }

  #ping(member: Member): void {
    const verification = this.#verifying.get(member.id);
    if (verification !== undefined) verification.pings++;
    this.#host.unicastFrameTo(member.address, encodeFrame({ case: "ping", value: create(PingSchema, { nonce: BigInt(this.#nonce++), group: this.group }) }));
  }

  // Members that have not acknowledged the view get it again, directly; everyone hears it every heartbeat.
  #resendView(view: View, now: number): void {
    if (this.#unacked.size > 0 && now >= this.#ackDeadline) {
      for (const member of view.members) if (this.#unacked.has(member.id)) this.#sendView(view, member);
      this.#ackDeadline = now + VIEW_ACK_RESEND_MS * 4;
    }
    if (now - this.#lastViewRepeat >= this.#options.heartbeatIntervalMs) {
      this.#lastViewRepeat = now;
      this.#host.multicastFrame(encodeFrame({ case: "view", value: viewProto(view) }));
    }
  }
}
