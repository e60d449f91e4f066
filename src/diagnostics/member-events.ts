import type { Channel } from "../channel/channel.ts";
import type { ClusterChannel } from "../cluster/cluster-channel.ts";
import type { GroupChannelApi } from "../group/group-channel.ts";
import type { LogLevel } from "./logger.ts";

/** What happened to a member that an operator wants to know: the events its log, metrics and diagnostics share. */
export type MemberEventKind =
  | "peerUp"
  | "peerDown"
  | "receiverUnresponsive"
  | "messagesLost"
  | "viewChange"
  | "join"
  | "leave"
  | "suspect"
  | "coordinatorChange"
  | "stalled"
  | "lockExpired";

/** One such event, readable as it stands. */
export interface MemberEvent {
  readonly kind: MemberEventKind;
  readonly level: LogLevel;
  /** What happened, for people: `member bravo (4f2a…) left group "demo"`. */
  readonly message: string;
  readonly group?: string;
  /** The member (or peer) it is about: its id in hex and its name ("" when the channel level does not know it). */
  readonly member?: { readonly id: string; readonly name: string };
  /** A duration or count it carries (ms stalled or silent, messages lost, view counter). */
  readonly value?: number;
  /** Why a peer went down: it left, or fell silent ("timeout"). */
  readonly reason?: "left" | "timeout";
}

/** A member as diagnostics see it, at whatever level users hold it: a channel, a group channel or a cluster channel. */
export type DescribedMember = Channel | GroupChannelApi;

/**
 * Calls `handler` for every event of `member` worth telling an operator, at whatever level the member is
 * (a channel, a group channel, a cluster channel), through the public event API. Never listens for
 * `error`: that would count as handling errors, and unhandled ones must still be reported.
 */
export function watchMember(member: DescribedMember, handler: (event: MemberEvent) => void): () => void {
  const short = (id: string, name = "") => `${name === "" ? "" : `${name} `}(${id.slice(0, 8)})`;
  // Every level takes a channel's events.
  const channel: Pick<Channel, "on"> = member;
  const offs = [
    channel.on("peerUp", ({ peer }) =>
      handler({ kind: "peerUp", level: "info", message: `peer ${short(peer.id)} up at ${peer.address.host}:${peer.address.port}`, member: { id: peer.id, name: "" } }),
    ),
    channel.on("peerDown", ({ peer, reason }) =>
      handler({ kind: "peerDown", level: "info", message: `peer ${short(peer.id)} down (${reason})`, member: { id: peer.id, name: "" }, reason }),
    ),
    channel.on("receiverUnresponsive", ({ peer, silentMs }) =>
      handler({ kind: "receiverUnresponsive", level: "warn", message: `receiver ${short(peer)} silent for ${Math.round(silentMs)} ms no longer holds this sender back`, member: { id: peer, name: "" }, value: silentMs }),
    ),
    channel.on("messagesLost", ({ peer, count, firstSeq, lastSeq }) =>
      handler({ kind: "messagesLost", level: "warn", message: `lost ${count} message(s) of ${short(peer)} for good (${firstSeq}–${lastSeq})`, member: { id: peer, name: "" }, value: count }),
    ),
  ];
  if (typeof (member as Partial<GroupChannelApi>).getView === "function") {
    const groups = member as GroupChannelApi;
    const onGroup = groups.on.bind(groups);
    offs.push(
      onGroup("viewChange", ({ group, view }) =>
        handler({
          kind: "viewChange",
          level: "info",
          message: `group "${group}": view ${view.id.counter}, ${view.members.length} member(s) (${view.members.map((m) => m.name || m.id.slice(0, 8)).join(", ")}), coordinator ${view.coordinator.name || view.coordinator.id.slice(0, 8)}`,
          group,
          value: view.id.counter,
        }),
      ),
      onGroup("join", ({ group, member: m }) => handler({ kind: "join", level: "info", message: `member ${short(m.id, m.name)} joined group "${group}"`, group, member: { id: m.id, name: m.name } })),
      onGroup("leave", ({ group, member: m }) => handler({ kind: "leave", level: "info", message: `member ${short(m.id, m.name)} left group "${group}"`, group, member: { id: m.id, name: m.name } })),
      onGroup("suspect", ({ group, member: m }) =>
        handler({ kind: "suspect", level: "warn", message: `member ${short(m.id, m.name)} of group "${group}" is silent: suspected, being verified`, group, member: { id: m.id, name: m.name } }),
      ),
      onGroup("coordinatorChange", ({ group, coordinator }) =>
        handler({ kind: "coordinatorChange", level: "info", message: `group "${group}" is coordinated by ${short(coordinator.id, coordinator.name)}`, group, member: { id: coordinator.id, name: coordinator.name } }),
      ),
      onGroup("stalled", ({ stalledMs }) =>
        handler({ kind: "stalled", level: "warn", message: `this member's event loop stalled for ${stalledMs} ms: its peers get time to be heard before any is suspected`, value: stalledMs }),
      ),
    );
  }
  const map = (member as Partial<ClusterChannel>).map;
  if (map !== undefined) {
    offs.push(
      map.on("lockExpired", (lock) =>
        handler({ kind: "lockExpired", level: "warn", message: `the lease of ${short(lock.holder.id)} on lock "${lock.key}" ran out (fencing token ${lock.fencingToken})`, member: { id: lock.holder.id, name: "" }, value: lock.fencingToken }),
      ),
    );
  }
  return () => {
    for (const off of offs) off();
  };
}
