import type { Channel } from "../channel/channel.ts";
import { BlazeError } from "../errors.ts";
import type { LogEntry, Logger, LogLevel } from "./logger.ts";
import { memberCounters, type MetricAttributes } from "./member-counters.ts";
import { type DescribedMember, type MemberEvent, watchMember } from "./member-events.ts";
import type { MemberEventCounterName, MemberHistogramName, Metrics } from "./metrics.ts";

/** How many recent events a member keeps for diagnostics requests. */
export const RECENT_EVENTS = 64;

/** An event as kept for diagnostics: with its wall-clock time. */
export type RecordedEvent = MemberEvent & { readonly at: number };

const EVENT_COUNTERS: Partial<Record<MemberEvent["kind"], MemberEventCounterName>> = {
  viewChange: "activeblaze.view.changes",
  suspect: "activeblaze.suspicions",
  stalled: "activeblaze.stalls",
  peerUp: "activeblaze.peers.up",
  peerDown: "activeblaze.peers.down",
  lockExpired: "activeblaze.locks.expired",
};

/**
 * What a member tells about itself: its log (the `logger` option), its metrics (the `metrics` option)
 * and the recent events diagnostics requests return. It watches the member through its public events.
 */
export class MemberObserver {
  readonly #channel: Channel;
  readonly #member: DescribedMember;
  readonly #logger: Logger | undefined;
  readonly #metrics: Metrics | undefined;
  readonly #recent: RecordedEvent[] = [];
  #watching = false;

  readonly #onError: (error: BlazeError) => void;

  /** `channel` names the member; `member` is the level built on it that users hold (the channel itself, or a group or cluster channel): what is watched and counted. */
  constructor(channel: Channel, member: DescribedMember, logger: Logger | undefined, metrics: Metrics | undefined, onError: (error: BlazeError) => void) {
    this.#channel = channel;
    this.#member = member;
    this.#onError = onError;
    this.#logger = logger;
    this.#metrics = metrics;
    metrics?.observe?.({
      id: channel.id,
      name: channel.name,
      cluster: channel.cluster,
      read: () => {
        const { totals, levels } = memberCounters(member);
        const who = this.attributes();
        const tag = (values: typeof totals) => values.map((value) => ({ ...value, attributes: { ...value.attributes, ...who } }));
        return { totals: tag(totals), levels: tag(levels) };
      },
    });
  }

  /** Starts watching the member's events (once: the level above it is constructed by now). */
  watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    watchMember(this.#member, (event) => {
      if (this.#recent.length === RECENT_EVENTS) this.#recent.shift();
      this.#recent.push({ ...event, at: Date.now() });
      this.log(event.level, event.message, { event: event.kind, group: event.group, about: event.member, value: event.value });
      const counter = EVENT_COUNTERS[event.kind];
      if (counter !== undefined) {
        const attributes: Record<string, string> = {};
        if (event.group !== undefined) attributes["group"] = event.group;
        if (event.reason !== undefined) attributes["reason"] = event.reason;
        const metrics = this.#metrics;
        if (metrics !== undefined) this.#safely(() => metrics.count(counter, 1, { ...attributes, ...this.attributes() }), "count");
      }
      if (event.kind === "stalled" && event.value !== undefined) this.record("activeblaze.stall.duration", event.value, {});
    });
  }

  /** The member's events, oldest first (at most RECENT_EVENTS). */
  get recent(): readonly RecordedEvent[] {
    return this.#recent;
  }

  /** True when a metrics backend takes this member's measurements. */
  get measuring(): boolean {
    return this.#metrics !== undefined;
  }

  /** True when a logger takes this member's log. */
  get logging(): boolean {
    return this.#logger !== undefined;
  }

  log(level: LogLevel, message: string, fields: Omit<Partial<LogEntry>, "level" | "message">): void {
    const logger = this.#logger;
    if (logger === undefined) return;
    const member = this.#channel;
    const entry: Record<string, unknown> = { level, message, time: Date.now(), member: member.id.slice(0, 8), name: member.name, cluster: member.cluster };
    for (const [field, value] of Object.entries(fields)) if (value !== undefined) entry[field] = value;
    try {
      logger(entry as LogEntry);
    } catch {
      // A logger that fails has nowhere left to report to; the member goes on.
    }
  }

  /** Records a measured duration (ms) with the member's attributes. */
  record(name: MemberHistogramName, value: number, attributes: MetricAttributes): void {
    const metrics = this.#metrics;
    if (metrics !== undefined) this.#safely(() => metrics.record(name, value, { ...attributes, ...this.attributes() }), "record");
  }

  // A metrics backend that throws is the user's code failing: reported, never the member's problem.
  #safely(call: () => void, what: string): void {
    try {
      call();
    } catch (error) {
      this.#onError(new BlazeError("LISTENER_ERROR", `the metrics hook's ${what}() threw`, { cause: error }));
    }
  }

  /** `member` (its name, or its id's first 8 hex digits) and `cluster`: on every measurement. */
  attributes(): MetricAttributes {
    const member = this.#channel;
    return { member: member.name === "" ? member.id.slice(0, 8) : member.name, cluster: member.cluster };
  }
}
