import type { ClusterChannel } from "../cluster/cluster-channel.ts";
import type { GroupChannel } from "../group/group-channel.ts";
import type { DescribedMember } from "./member-events.ts";

/** Attributes of a measurement: what it is about (a drop reason, an error stage, a queue). */
export interface MetricAttributes {
  readonly [key: string]: string | number | boolean;
}

/** One number a member reports, named as OpenTelemetry names instruments. */
export interface MeasuredValue {
  readonly name: MemberTotalName | MemberLevelName;
  readonly value: number;
  readonly attributes?: MetricAttributes;
}

/** Totals since the member started (monotonic): a backend turns them into rates (messages/s in and out). */
export const MEMBER_TOTALS = {
  "activeblaze.messages.sent": "messages this member sent on its multicast stream (fragments count one each)",
  "activeblaze.messages.delivered": "messages delivered to this member's topic listeners",
  "activeblaze.datagrams.sent": "datagrams sent",
  "activeblaze.datagrams.received": "datagrams received",
  "activeblaze.bytes.sent": "bytes sent in datagrams",
  "activeblaze.bytes.received": "bytes received in datagrams",
  "activeblaze.retransmissions": "messages sent again on a NACK or in recovery",
  "activeblaze.nacks.sent": "NACKs this member sent (it missed messages)",
  "activeblaze.nacks.received": "NACKs this member got (others missed its messages)",
  "activeblaze.messages.lost": "messages skipped for good (reported by messagesLost)",
  "activeblaze.datagrams.dropped": "datagrams refused, by reason (attribute reason)",
  "activeblaze.errors": "background failures, by stage (attribute stage)",
  "activeblaze.map.writes": "state-map writes this member's replica applied",
} as const;

/** Levels now (they go up and down). */
export const MEMBER_LEVELS = {
  "activeblaze.peers": "peers this member hears",
  "activeblaze.queue.depth": "messages waiting, by queue (attribute queue: broadcast, requests, state)",
  "activeblaze.map.entries": "entries in the replicated map",
  "activeblaze.map.locks": "locks held in the replicated map",
} as const;

export type MemberTotalName = keyof typeof MEMBER_TOTALS;
export type MemberLevelName = keyof typeof MEMBER_LEVELS;

/** A member's totals and levels now, from its public statistics, at whatever level it is. */
export function memberCounters(member: DescribedMember): { readonly totals: MeasuredValue[]; readonly levels: MeasuredValue[] } {
  const stats = member.stats;
  const totals: MeasuredValue[] = [
    { name: "activeblaze.messages.sent", value: stats.protocol.sent },
    { name: "activeblaze.messages.delivered", value: stats.delivered },
    { name: "activeblaze.datagrams.sent", value: stats.network.datagramsSent },
    { name: "activeblaze.datagrams.received", value: stats.network.datagramsReceived },
    { name: "activeblaze.bytes.sent", value: stats.network.bytesSent },
    { name: "activeblaze.bytes.received", value: stats.network.bytesReceived },
    { name: "activeblaze.retransmissions", value: stats.protocol.retransmitted },
    { name: "activeblaze.nacks.sent", value: stats.protocol.nacksSent },
    { name: "activeblaze.nacks.received", value: stats.protocol.nacksReceived },
    { name: "activeblaze.messages.lost", value: stats.protocol.lost },
  ];
  for (const [reason, value] of Object.entries(stats.dropped)) if (value > 0) totals.push({ name: "activeblaze.datagrams.dropped", value, attributes: { reason } });
  for (const [stage, value] of Object.entries(stats.errors)) totals.push({ name: "activeblaze.errors", value, attributes: { stage } });
  const levels: MeasuredValue[] = [
    { name: "activeblaze.peers", value: stats.peers },
    { name: "activeblaze.queue.depth", value: stats.queued, attributes: { queue: "broadcast" } },
  ];
  const group = member as Partial<GroupChannel>;
  if (group.groupStats !== undefined) levels.push({ name: "activeblaze.queue.depth", value: group.groupStats.pending, attributes: { queue: "requests" } });
  const cluster = member as Partial<ClusterChannel>;
  if (cluster.map !== undefined && cluster.stateStats !== undefined && member.state === "started") {
    const state = cluster.stateStats;
    totals.push({ name: "activeblaze.map.writes", value: state.requestsApplied + state.updatesApplied });
    levels.push(
      { name: "activeblaze.queue.depth", value: state.pendingRequests, attributes: { queue: "state" } },
      { name: "activeblaze.map.entries", value: cluster.map.size },
      { name: "activeblaze.map.locks", value: cluster.map.locks().length },
    );
  }
  return { totals, levels };
}
