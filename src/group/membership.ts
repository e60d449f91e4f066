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
  SuspectSchema,
  ViewAckSchema,
} from "../../gen/activeblaze/v1/membership_pb.ts";
import { MemberRefSchema } from "../../gen/activeblaze/v1/common_pb.ts";
import { idOf, keyOf } from "../reliable/member-key.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { TimedUnit } from "../core/driver.ts";
import type { RandomSource } from "../transport/clock.ts";
import type { Address } from "../transport/transport.ts";
import { memberInfo, toMember, toView, toViewId, validPort, viewIdProto, viewProto } from "./frames.ts";
import { encodeFrame } from "../wire/frames.ts";
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
  readonly random: RandomSource;
  /** This member as the group sees it (read afresh: the weight may change). */
  local(): Member;
  multicastFrame(frame: Uint8Array): void;
  /** Sends a frame to a peer this member hears (the sender of the frame being handled, say). */
  unicastFrame(peer: PeerKey, frame: Uint8Array): void;
  /**
   * Sends a frame to a member at the address its own datagrams come from. A member this one has not
   * heard from directly yet is introduced instead (challenged at the address the group gives for it)
   * and the frame is dropped: membership repeats what matters.
   */
  unicastTo(member: Member, frame: Uint8Array): void;
  /** Sends a frame back to the source of the datagram being handled (never to an address read from one). */
  reply(to: Address, frame: Uint8Array): void;
  /**
   * When a datagram from `member` — this incarnation of it — last arrived (undefined: never, or
   * forgotten). A member restarted in place comes back under the same id: its new incarnation's
   * datagrams say nothing of the old one, which may still be in a view that missed its goodbye.
   */
  lastHeard(member: Member): number | undefined;
  /** A new view was installed here. */
  viewInstalled(view: View, previous: View | undefined): void;
  /** `peer` is suspected of having failed (it is being verified). */
  suspected(peer: Member): void;
  /** This member's own timer ran `stalledMs` late (its event loop stalled): it blamed nobody for it. */
  stalled(stalledMs: number): void;
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
// A coordinator installs views in bursts of up to INSTALL_BURST, and then one every INSTALL_INTERVAL_MS
// (joins, leaves and merges that come meanwhile go into the next): a flood of joins or of made-up
// partitions cannot make a storm of views, and ordinary changes are never held back.
const INSTALL_BURST = 10;
const INSTALL_INTERVAL_MS = 50;
// A member in a group refuses a view counted further than this above any it has seen: no real group
// gets a million views ahead of one of its members, and a made-up view could otherwise spend the
// counters (they stop at MAX_COUNTER) in a few datagrams.
const MAX_VIEW_STEP = 2 ** 20;
// The stalls a member remembers, to credit its peers' silence with (a member silent longer is long gone).
const MAX_STALLS = 16;

/**
 * Membership of one group, as a state machine over a channel: discovery, join, failure detection with
 * verification, view installation by the coordinator, graceful leave, and the merge of partitions.
 *
 * - Discovery: a starting member multicasts Discovery; members answer with the coordinator (or with
 *   the view itself, to a member already in it). It then sends Join to the coordinator until a view
 *   includes it; a member that is not the coordinator answers a Join with its view. If nobody answers
 *   within the discovery timeout it forms the group alone; members that start together agree (by the
 *   coordinator selector) on which of them forms it, and the others join.
 * - Views: only the coordinator installs views, each with a larger counter; its installer resends a
 *   view to members that do not acknowledge it, and the coordinator repeats it every heartbeat interval
 *   (which also lets a partition's coordinator notice another's). A member installs a view with a
 *   larger counter than its own; one that finds itself left out by its coordinator (or by the member
 *   that took over from a failed one) joins again. A member that holds a view its coordinator's does
 *   not follow (the coordinator missed it, say a handover) shows it to the coordinator, which adopts it
 *   or, on a tie of counters, installs a view counted above both.
 * - Failure detection: a member silent for `failureTimeoutMs` is suspected and pinged; if it stays
 *   silent `verifyTimeoutMs` more it is removed (the coordinator removes members; the members remove a
 *   failed coordinator: the survivor chosen by the selector installs the next view, or any survivor
 *   does it for it after `verifyTimeoutMs`). A member reports the members it finds failed to the
 *   coordinator, which verifies them itself at once (it may be newer than their death). Loss short of
 *   total silence for `failureTimeoutMs` plus the pings removes nobody. A graceful leave is seen at once.
 * - Merge: a coordinator hearing another coordinator's view of the same group merges both: the higher
 *   ranked of the two (selector over the pair in id order) installs a view of all members, counter
 *   above both.
 */
export class GroupMembership implements TimedUnit {
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
  /** Members of the view whose details (weight) changed: the next view carries the new ones. */
  readonly #pendingUpdates = new Map<PeerKey, Member>();
  readonly #pendingLeaves = new Set<PeerKey>();
  /** Members being verified; `reported`: on another member's word (see #onSuspect), not our own watch. */
  readonly #verifying = new Map<PeerKey, { since: number; pings: number; reported?: boolean }>();
  readonly #dead = new Set<PeerKey>();
  #unacked = new Set<PeerKey>();
  #ackDeadline = 0;
  /** Views the coordinator may install at once (a token bucket: INSTALL_BURST, one more every INSTALL_INTERVAL_MS). */
  #installTokens = INSTALL_BURST;
  #tokensAt = 0;
  /** Views of other partitions to merge into the next view, by their id. */
  readonly #pendingMerges = new Map<string, View>();
  /** Views refused for a counter too far ahead (MAX_VIEW_STEP). */
  refusedViews = 0;
  /** When the next periodic step (discovery, join retry, failure check) is due (`Infinity`: none). */
  #tickDue = Number.POSITIVE_INFINITY;
  /** When the gathered changes are installed as a view (`Infinity`: none are waiting). */
  #installDue = Number.POSITIVE_INFINITY;
  /** The time of the input being handled: every entry point sets it; nothing here reads a clock. */
  #now = 0;
  #nonce = 1;
  #lastViewRepeat = 0;
  #lastSuspectReport = Number.NEGATIVE_INFINITY;
  /** When we found the coordinator of our view gone (see #takeOverIfNext). */
  #takeOverSince: number | undefined;
  #joiningSince = 0;
  /** When each member entered our view: a member never heard is silent since then. */
  readonly #addedAt = new Map<PeerKey, number>();
  /** This member's recent stalls (when it woke, for how long): time nobody is blamed for. */
  readonly #stalls: Array<{ readonly at: number; readonly ms: number }> = [];

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
  start(now: number): void {
    this.#now = now;
    if (this.#phase !== "idle" && this.#phase !== "left") return;
    this.#phase = "discovering";
    this.#discoveryDeadline = now + this.#options.discoveryTimeoutMs;
    this.#sendDiscovery();
    this.#schedule(DISCOVERY_INTERVAL_MS);
  }

  /** Leaves the group gracefully: a coordinator hands over first; everyone says goodbye. */
  leave(now: number): void {
    this.#now = now;
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
    this.#tickDue = this.#installDue = Number.POSITIVE_INFINITY;
  }

  /**
   * This member's details (its weight) changed: the coordinator installs a view with them, which may
   * elect another coordinator. A member tells its coordinator, and again until a view shows the change.
   */
  localChanged(now: number): void {
    this.#now = now;
    if (this.#phase !== "member") return;
    if (this.isCoordinator) this.#scheduleInstall();
    else if (this.#view !== undefined) this.#sendJoinTo(this.#view.coordinator);
  }

  /** `incarnation` of `peer` said goodbye to the channel: it left the group, whether or not its Leave arrives. */
  peerLeft(peer: PeerKey, incarnation: number, now: number): void {
    this.#now = now;
    const view = this.#view;
    if (this.#phase === "member" && view !== undefined && contains(view, peer, incarnation)) this.#onLeave(peer);
  }

  /** Stops without a goodbye (the channel is going away). */
  stop(): void {
    this.#tickDue = this.#installDue = Number.POSITIVE_INFINITY;
    this.#phase = "left";
  }

  /** A membership frame for this group arrived from `peer`, whose datagram came from `from`. */
  onFrame(peer: PeerKey, from: Address, frame: Frame, now: number): void {
    this.#now = now;
    if (this.#phase === "idle" || this.#phase === "left") return;
    const kind = frame.kind;
    switch (kind.case) {
      case "discovery":
        return this.#onDiscovery(from, kind.value.member);
      case "discoveryResponse":
        return this.#onDiscoveryResponse(from, kind.value);
      case "join":
        return this.#onJoin(from, kind.value.member);
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
      case "suspect":
        return this.#onSuspect(peer, kind.value.suspects);
      case "ping":
        this.#host.reply(from, encodeFrame({ case: "pong", value: create(PongSchema, { nonce: kind.value.nonce, group: this.group }) }));
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
    const member = toMember(info, from);
    if (member === undefined || member.id === this.#host.local().id) return;
    if (this.#phase === "discovering") {
      // Another member starting at the same time: remember it, so we agree on who forms the group.
      if (!this.#candidates.has(member.id)) this.#candidates.set(member.id, { member, coordinator: undefined });
      return;
    }
    const view = this.#view;
    if (this.#phase !== "member" || view === undefined) return;
    if (contains(view, member.id, member.incarnation)) {
      // It is in our view but missed it (it looks again because the coordinator that added it died
      // before it heard back): the view itself lets it in, and take over if it is next.
      this.#sendView(view, member);
      return;
    }
    this.#host.reply(
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

  #onDiscoveryResponse(from: Address, response: { member?: Parameters<typeof toMember>[0]; coordinatorHost: string; coordinatorPort: number; coordinator?: { id: Uint8Array; incarnation: bigint } }): void {
    if (this.#phase !== "discovering" && this.#phase !== "joining") return;
    const member = toMember(response.member, from);
    if (member === undefined || response.coordinator === undefined || !validPort(response.coordinatorPort)) return;
    const coordinatorKey = keyOf(response.coordinator.id);
    const coordinator: Member =
      coordinatorKey === member.id
        ? member
        : { ...member, id: coordinatorKey, incarnation: Number(response.coordinator.incarnation), name: "", address: { host: response.coordinatorHost, port: response.coordinatorPort } };
    this.#candidates.set(member.id, { member, coordinator });
    if (this.#phase === "discovering") this.#startJoining(coordinator);
  }

  #sendJoin(): void {
    if (this.#joinTarget !== undefined) this.#sendJoinTo(this.#joinTarget);
  }

  /** A Join to `target`: to join, or (from a member) to show the coordinator our changed details. */
  #sendJoinTo(target: Member): void {
    this.#host.unicastTo(target, encodeFrame({ case: "join", value: create(JoinSchema, { member: memberInfo(this.#host.local()), group: this.group }) }));
  }

  #onJoin(from: Address, info: Parameters<typeof toMember>[0]): void {
    // The joiner is where its Join came from, whatever address the Join names: a view goes nowhere else.
    const member = toMember(info, from);
    const view = this.#view;
    if (member === undefined || view === undefined || this.#phase !== "member") return;
    const known = view.members.find((m) => m.id === member.id && m.incarnation === member.incarnation);
    if (known !== undefined && this.isCoordinator && known.weight !== member.weight) {
      // A member in the view changed its weight: the next view carries it (and may elect another).
      this.#pendingUpdates.set(member.id, member);
      this.#scheduleInstall();
      return;
    }
    if (contains(view, member.id, member.incarnation) || !this.isCoordinator) {
      // It missed the view that added it, or it asks a member that is no longer (or not yet) the
      // coordinator: the view tells it it is in, or whom to ask. Any member answers, because the one
      // it asks may be the only one it hears — or it may itself be the coordinator the view names.
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
    this.#discoveryDeadline = this.#now + this.#options.discoveryTimeoutMs;
    this.#candidates.delete(former.id);
    this.#sendDiscovery();
  }

  // --- views ---

  #scheduleInstall(): void {
    if (this.#installDue !== Number.POSITIVE_INFINITY) return;
    // A short wait gathers joins and leaves that come together into one view.
    const tokens = this.#refillTokens();
    this.#installDue = this.#now + Math.max(5, tokens >= 1 ? 0 : (1 - tokens) * INSTALL_INTERVAL_MS);
  }

  #installGathered(): void {
    this.#installDue = Number.POSITIVE_INFINITY;
    const view = this.#view;
    if (view === undefined || !this.isCoordinator) {
      this.#pendingMerges.clear();
      return;
    }
    const members = view.members
      .filter((m) => !this.#pendingLeaves.has(m.id) && !this.#dead.has(m.id) && !this.#pendingJoins.has(m.id))
      .map((m) => {
        const updated = this.#pendingUpdates.get(m.id);
        return updated !== undefined && updated.incarnation === m.incarnation ? updated : m;
      });
    for (const joiner of this.#pendingJoins.values()) if (!this.#pendingLeaves.has(joiner.id)) members.push(joiner);
    const merged = [...this.#pendingMerges.values()];
    for (const theirs of merged) {
      for (const member of theirs.members) {
        if (this.#pendingLeaves.has(member.id) || this.#dead.has(member.id)) continue;
        const index = members.findIndex((m) => m.id === member.id);
        if (index < 0) members.push(member);
        else if (member.incarnation > members[index]!.incarnation) members[index] = member;
      }
    }
    this.#pendingJoins.clear();
    this.#pendingUpdates.clear();
    this.#pendingLeaves.clear();
    this.#pendingMerges.clear();
    this.#dead.clear();
    this.#install(members, merged.length === 0 ? [] : [view.id, ...merged.map((theirs) => theirs.id)]);
  }

  /** Installs (as coordinator) and disseminates a view of `members`, in this order. */
  #install(members: Member[], mergedIds: readonly ViewId[] = []): void {
    const local = this.#host.local();
    const fresh = members.map((m) => (m.id === local.id ? local : m));
    this.#maxCounter++;
    this.#installTokens = this.#refillTokens() - 1;
    const view: View = {
      group: this.group,
      id: { installer: local.id, counter: this.#maxCounter },
      members: fresh,
      coordinator: this.#select(fresh),
    };
    this.#unacked = new Set(fresh.map((m) => m.id).filter((id) => id !== local.id));
    this.#ackDeadline = this.#now + VIEW_ACK_RESEND_MS;
    this.#host.multicastFrame(encodeFrame({ case: "view", value: viewProto(view, mergedIds) }));
    if (contains(view, local.id)) this.#adopt(view);
  }

  #refillTokens(): number {
    const now = this.#now;
    this.#installTokens = Math.min(INSTALL_BURST, this.#installTokens + (now - this.#tokensAt) / INSTALL_INTERVAL_MS);
    this.#tokensAt = now;
    return this.#installTokens;
  }

  #sendView(view: View, to: Member): void {
    this.#host.unicastTo(to, encodeFrame({ case: "joinResponse", value: create(JoinResponseSchema, { group: this.group, view: viewProto(view) }) }));
  }

  #onView(peer: PeerKey, proto: Parameters<typeof toView>[0]): void {
    if (proto.group !== this.group) return;
    const view = toView(proto);
    if (view === undefined) return;
    const local = this.#host.local();
    const current = this.#view;
    if (current !== undefined && view.id.counter > this.#maxCounter + MAX_VIEW_STEP) {
      this.refusedViews++;
      return;
    }
    if (view.id.counter > this.#maxCounter) this.#maxCounter = view.id.counter;
    if (current !== undefined && sameView(view.id, current.id)) {
      this.#ackView(peer, view);
      return;
    }
    if (contains(view, local.id, local.incarnation)) {
      if (current === undefined || view.id.counter > current.id.counter) {
        this.#adopt(view);
        this.#ackView(peer, view);
      } else if (!sameView(view.id, current.id) && view.coordinator.id === current.coordinator.id) {
        if (view.coordinator.id !== local.id) {
          // Our coordinator sends a view we cannot adopt: it installed it without having seen ours (say
          // it missed the handover view of the coordinator that left, and took over from an older view).
          // Show it ours: it adopts it if it is newer, or settles a tie.
          this.#sendView(current, view.coordinator);
        } else if (view.id.counter === current.id.counter) {
          // A tie: a member holds a view naming us coordinator, counted as ours but installed by another
          // (the handover we missed). A view of both, counted above them, settles it.
          this.#merge(current, view);
        }
      }
      return;
    }
    // A view without us.
    if (current === undefined) {
      // Not in the group yet: the view names the coordinator to join. A member still discovering joins
      // it too: the group exists (the answers to our Discovery were lost), and forming one alone at the
      // discovery's end would make a second group, with a second coordinator.
      if (this.#phase === "joining") this.#joinTarget = view.coordinator;
      else if (this.#phase === "discovering") this.#startJoining(view.coordinator);
      return;
    }
    const fromOurCoordinator = view.id.installer === current.coordinator.id || contains(view, current.coordinator.id);
    // Counted above ours — or as ours but installed by another (two sides installed at once) — and
    // holding our coordinator without us: it follows another view, not ours.
    const ourCoordinatorMovedOn = view.id.counter > current.id.counter || (view.id.counter === current.id.counter && view.id.installer !== current.id.installer);
    if (fromOurCoordinator && ourCoordinatorMovedOn) {
      // Our coordinator took us for dead, or went over to another group (a merge) without us: join again.
      this.#view = undefined;
      this.#startJoining(view.coordinator);
      return;
    }
    const coordinatorGone = this.#verifying.has(current.coordinator.id) || this.#dead.has(current.coordinator.id);
    if (!this.isCoordinator && coordinatorGone && contains(current, view.coordinator.id) && view.id.counter >= current.id.counter) {
      // Our coordinator is gone and the member of our view that took over left us out (it could not
      // hear us then, in a partition say): we would wait for it forever. Join it.
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
    this.#joiningSince = this.#now;
    this.#joinTarget = target;
    this.#sendJoin();
    this.#schedule(JOIN_RETRY_MS);
  }

  #merge(mine: View, theirs: View): void {
    const local = this.#host.local();
    const pair = [mine.coordinator, theirs.coordinator].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    // Their coordinator is one of ours (a view installed for it that it never took up): it will not merge.
    const theirsFollowsUs = contains(mine, theirs.coordinator.id, theirs.coordinator.incarnation);
    if (!theirsFollowsUs && this.#select(pair).id !== local.id) return;
    if (theirs.id.counter > this.#maxCounter) this.#maxCounter = theirs.id.counter;
    // Into the next view, with whatever else comes meanwhile (the latest view of each other side).
    this.#pendingMerges.set(`${theirs.id.installer}/${theirs.coordinator.id}`, theirs);
    this.#scheduleInstall();
  }

  #adopt(view: View): void {
    const previous = this.#view;
    this.#view = view;
    this.#phase = "member";
    this.#joinTarget = undefined;
    this.#candidates.clear();
    this.#takeOverSince = undefined;
    const now = this.#now;
    // Verifications under way go on: a new view does not make a silent member less silent (restarting
    // them would delay the removal of a member that died with the coordinator by one more verification).
    for (const member of view.members) if (!this.#addedAt.has(member.id)) this.#addedAt.set(member.id, now);
    for (const id of this.#addedAt.keys()) if (!contains(view, id)) this.#addedAt.delete(id);
    for (const id of this.#verifying.keys()) if (!contains(view, id)) this.#verifying.delete(id);
    for (const id of this.#dead) if (!contains(view, id)) this.#dead.delete(id);
    this.#schedule(this.#checkInterval());
    this.#host.viewInstalled(view, previous);
  }

  #onLeave(peer: PeerKey): void {
    const view = this.#view;
    if (view === undefined || !contains(view, peer)) return;
    if (this.isCoordinator) {
      this.#pendingLeaves.add(peer);
      this.#scheduleInstall();
    } else {
      // Remember it: if the coordinator fails before removing it, whoever takes over leaves it out, and
      // nobody waits for it to take over.
      this.#dead.add(peer);
      // The coordinator left without handing over (or its handover view was lost): take over if next.
      if (peer === view.coordinator.id) this.#takeOverIfNext(view, new Set([peer]));
    }
  }

  // --- failure detection ---

  #checkInterval(): number {
    return Math.max(10, Math.min(this.#options.heartbeatIntervalMs, this.#options.verifyTimeoutMs / VERIFY_PINGS) / 2);
  }

  #schedule(delayMs: number): void {
    this.#tickDue = this.#now + delayMs;
  }

  pollTimeout(): number {
    return Math.min(this.#tickDue, this.#installDue);
  }

  handleTimeout(now: number): void {
    this.#now = now;
    if (this.#installDue <= now) this.#installGathered();
    if (this.#tickDue <= now) {
      // Later than due by much: this member's event loop stalled, not its peers.
      const late = now - this.#tickDue;
      this.#tickDue = Number.POSITIVE_INFINITY;
      if (late > this.#options.failureTimeoutMs / 4) this.#resumeAfterStall(now, late);
      this.#tick(now);
    }
  }

  #tick(now: number): void {
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
          this.start(now);
          return;
        }
        if (this.#joinTarget === undefined) this.#sendDiscovery();
        else this.#sendJoin();
        this.#schedule(JOIN_RETRY_MS);
        return;
      case "member":
        this.#checkMembers(now);
        if (this.#phase === "member") this.#schedule(Math.max(1, Math.min(this.#checkInterval(), this.#nextVerdict(now) - now)));
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
      const heard = this.#host.lastHeard(member);
      const silentSince = this.#silentSince(member);
      const verification = this.#verifying.get(member.id);
      if (now - silentSince - this.#stalledSince(silentSince) <= this.#options.failureTimeoutMs && verification?.reported !== true) {
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
      else if (now >= this.#nextPingAt(verification)) {
        this.#ping(member);
      }
    }
    if (this.isCoordinator) {
      if (failed.size > 0) {
        for (const id of failed) this.#dead.add(id);
        this.#scheduleInstall();
      }
      this.#repeatView(view, now);
    } else if (failed.has(view.coordinator.id) || this.#dead.has(view.coordinator.id)) {
      this.#takeOverIfNext(view, failed);
    } else {
      // The coordinator answers again (a false suspicion): a later failure counts afresh.
      this.#takeOverSince = undefined;
      // Our weight changed and the view does not show it yet: tell the coordinator (again).
      if (view.members.find((m) => m.id === local.id)?.weight !== local.weight) this.#sendJoinTo(view.coordinator);
      if (failed.size > 0 && now - this.#lastSuspectReport >= this.#options.heartbeatIntervalMs) {
        // Only the coordinator removes members, and it may not have watched these long enough to know
        // (a coordinator that joined after they died counts their silence from its join): tell it.
        this.#lastSuspectReport = now;
        const suspects = view.members.filter((m) => failed.has(m.id)).map((m) => create(MemberRefSchema, { id: idOf(m.id), incarnation: BigInt(m.incarnation) }));
        this.#host.unicastTo(view.coordinator, encodeFrame({ case: "suspect", value: create(SuspectSchema, { group: this.group, suspects }) }));
      }
    }
    // The installer sends its view again to the members that have not acknowledged it — also when the
    // view names another coordinator (a heavier joiner, say), which may be the very member that missed it.
    if (this.#view === view && view.id.installer === local.id) this.#resendUnacked(view, now);
  }

  /** Since when `member` has been silent: its last datagram, or its joining the view if later. */
  #silentSince(member: Member): number {
    return Math.max(this.#host.lastHeard(member) ?? 0, this.#addedAt.get(member.id) ?? 0);
  }

  /** When a verification's next ping is due (they spread over `verifyTimeoutMs`); never once all were sent. */
  #nextPingAt(verification: { readonly since: number; readonly pings: number }): number {
    return verification.pings < VERIFY_PINGS ? verification.since + (verification.pings * this.#options.verifyTimeoutMs) / VERIFY_PINGS : Number.POSITIVE_INFINITY;
  }

  /**
   * The earliest time a check could find something new: a member's silence passing `failureTimeoutMs`,
   * a verification's next ping or its end, a take-over's wait running out. Checks wake at that time, not
   * a check interval later, so a crash is acted on when its timeouts say.
   */
  #nextVerdict(now: number): number {
    const view = this.#view;
    if (view === undefined) return Number.POSITIVE_INFINITY;
    const { failureTimeoutMs, verifyTimeoutMs } = this.#options;
    const local = this.#host.local();
    let next = Number.POSITIVE_INFINITY;
    for (const member of view.members) {
      if (member.id === local.id) continue;
      const verification = this.#verifying.get(member.id);
      if (verification === undefined) {
        const silentSince = this.#silentSince(member);
        // Suspected once silent for longer than the timeout: the first millisecond past it.
        next = Math.min(next, silentSince + this.#stalledSince(silentSince) + failureTimeoutMs + 1);
      } else next = Math.min(next, this.#nextPingAt(verification), verification.since + verifyTimeoutMs);
    }
    if (this.#takeOverSince !== undefined) next = Math.min(next, this.#takeOverSince + verifyTimeoutMs);
    return Math.max(next, now);
  }

  /**
   * This member's timer fired `late` ms late: its event loop stalled (a long GC pause, a blocking
   * handler), and timers run before the datagrams that arrived meanwhile. That much of its peers'
   * silence is its own, so it blames nobody for it: the stall does not count as anyone's silence,
   * verifications under way start again, and a discovery that was under way gets the time it lost.
   */
  #resumeAfterStall(now: number, late: number): void {
    if (this.#stalls.length === MAX_STALLS) this.#stalls.shift();
    this.#stalls.push({ at: now, ms: late });
    this.#verifying.clear();
    this.#takeOverSince = undefined;
    this.#discoveryDeadline += late;
    this.#joiningSince += late;
    this.#host.stalled(Math.round(late));
  }

  /** How long this member itself stalled since `since`: silence of others it does not count. */
  #stalledSince(since: number): number {
    let stalled = 0;
    for (const stall of this.#stalls) if (stall.at > since) stalled += stall.ms;
    return stalled;
  }

  // A member verified that these members are silent: the coordinator verifies them itself, at once (its
  // own watch may have started late), and removes those that stay silent `verifyTimeoutMs`.
  #onSuspect(peer: PeerKey, suspects: ReadonlyArray<{ id: Uint8Array }>): void {
    const view = this.#view;
    if (view === undefined || !this.isCoordinator || !contains(view, peer)) return;
    const now = this.#now;
    for (const ref of suspects) {
      if (ref.id.length !== 16) continue;
      const member = view.members.find((m) => m.id === keyOf(ref.id));
      if (member === undefined || member.id === this.#host.local().id || this.#verifying.has(member.id)) continue;
      this.#verifying.set(member.id, { since: now, pings: 0, reported: true });
      this.#host.suspected(member);
      this.#ping(member);
    }
  }

  // The coordinator failed (or left): the survivor the selector picks installs the next view. Should it
  // not have done so within `verifyTimeoutMs` of our finding (it may not know: say it joined as the
  // coordinator died and never got the view that let it in), we install that view for it — the view
  // names it coordinator all the same, and it takes over on receiving it.
  #takeOverIfNext(view: View, failed: ReadonlySet<PeerKey>): void {
    const local = this.#host.local();
    const survivors = view.members.filter((m) => !failed.has(m.id) && !this.#dead.has(m.id));
    if (survivors.length === 0) return;
    const now = this.#now;
    this.#takeOverSince ??= now;
    if (this.#select(survivors).id !== local.id && now - this.#takeOverSince < this.#options.verifyTimeoutMs) return;
    this.#dead.clear();
    this.#install(survivors);
  }

  #ping(member: Member): void {
    const verification = this.#verifying.get(member.id);
    if (verification !== undefined) verification.pings++;
    this.#host.unicastTo(member, encodeFrame({ case: "ping", value: create(PingSchema, { nonce: BigInt(this.#nonce++), group: this.group }) }));
  }

  // Members that have not acknowledged the view get it again, directly.
  #resendUnacked(view: View, now: number): void {
    if (this.#unacked.size > 0 && now >= this.#ackDeadline) {
      for (const member of view.members) if (this.#unacked.has(member.id)) this.#sendView(view, member);
      this.#ackDeadline = now + VIEW_ACK_RESEND_MS * 4;
    }
  }

  // Everyone hears the coordinator's view every heartbeat (and another partition's coordinator notices it).
  #repeatView(view: View, now: number): void {
    if (now - this.#lastViewRepeat >= this.#options.heartbeatIntervalMs) {
      this.#lastViewRepeat = now;
      this.#host.multicastFrame(encodeFrame({ case: "view", value: viewProto(view) }));
    }
  }
}
