import type { MeasuredValue, MetricAttributes } from "./member-counters.ts";

export type { MeasuredValue, MemberLevelName, MemberTotalName, MetricAttributes } from "./member-counters.ts";

/** Events a member counts as they happen. */
export const MEMBER_EVENT_COUNTERS = {
  "activeblaze.view.changes": "views installed, by group",
  "activeblaze.suspicions": "members suspected of having failed, by group",
  "activeblaze.stalls": "times this member's event loop stalled long enough to matter for failure detection",
  "activeblaze.peers.up": "peers heard for the first time (or as a new incarnation)",
  "activeblaze.peers.down": "peers that left or fell silent, by reason",
  "activeblaze.locks.expired": "locks freed because their lease ran out",
} as const;

/** Durations a member measures, in milliseconds. */
export const MEMBER_HISTOGRAMS = {
  "activeblaze.map.write.duration": "from a state-map write to its acknowledgement, by operation and outcome",
  "activeblaze.map.lock.wait": "from asking for a lock to getting it (or giving up), by outcome",
  "activeblaze.request.duration": "from a request (or queue request) to its reply, by outcome",
  "activeblaze.stall.duration": "how long the event loop stalled",
} as const;

export type MemberEventCounterName = keyof typeof MEMBER_EVENT_COUNTERS;
export type MemberHistogramName = keyof typeof MEMBER_HISTOGRAMS;

/** What a metrics backend may read from a member whenever it collects. */
export interface ObservedMember {
  readonly id: string;
  readonly name: string;
  readonly cluster: string;
  /** Totals since start and levels now (see `MEMBER_TOTALS`, `MEMBER_LEVELS`). */
  read(): { readonly totals: readonly MeasuredValue[]; readonly levels: readonly MeasuredValue[] };
}

/**
 * The `metrics` option: where a member reports what users watch. `count` and `record` are called as
 * things happen (views, suspicions, stalls, lock expiries; write, lock-wait and request durations);
 * `observe` is called once, when the member is created, with a way to read its running totals
 * (messages, datagrams and bytes in and out, retransmissions, NACKs, drops, errors) and levels (peers,
 * queue depths, map entries and locks) whenever the backend collects. Every measurement's attributes
 * include `member` (the member's name, or its id's first 8 hex digits) and `cluster`.
 * `activeblaze/otel` implements it on OpenTelemetry.
 */
export interface Metrics {
  observe?(member: ObservedMember): void;
  count(name: MemberEventCounterName, increment: number, attributes: MetricAttributes): void;
  record(name: MemberHistogramName, value: number, attributes: MetricAttributes): void;
}
