import type { MemberReport } from "../diagnostics/member-report.ts";
import type { ProbeResult } from "../diagnostics/probe.ts";

/** How many rounds of history the charts keep (at one a second: two minutes). */
export const HISTORY_ROUNDS = 120;
/** How many recent events the page lists. */
const EVENTS = 50;

/** A member as the page shows it: its report's essentials and its rates since the last round. */
export interface DashboardMember {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly software: string;
  readonly reliability: string;
  readonly uptimeMs: number;
  readonly groups: ReadonlyArray<{ readonly group: string; readonly view: number | undefined; readonly members: readonly string[]; readonly coordinator: string | undefined }>;
  readonly peers: number;
  /** Per second, since the last round. */
  readonly sentPerSecond: number;
  readonly deliveredPerSecond: number;
  readonly retransmittedPerSecond: number;
  readonly dropped: number;
  readonly errors: number;
  readonly queued: number;
}

/** What the page draws: the latest round, and the history its charts need. */
export interface DashboardState {
  readonly cluster: string;
  readonly at: number;
  readonly round: number;
  readonly members: readonly DashboardMember[];
  /** Members others list that did not answer this round. */
  readonly silent: ReadonlyArray<{ readonly id: string; readonly name: string; readonly listedBy: readonly string[] }>;
  readonly map:
    | {
        readonly group: string;
        readonly master: string | undefined;
        readonly entryCount: number;
        readonly entries: ReadonlyArray<{ readonly key: string; readonly preview: string; readonly version: number; readonly owner: string }>;
        readonly locks: ReadonlyArray<{ readonly key: string; readonly holder: string; readonly fencingToken: number; readonly leaseMs: number }>;
      }
    | undefined;
  readonly events: ReadonlyArray<{ readonly at: number; readonly by: string; readonly kind: string; readonly message: string }>;
  /** Per round: when, and per member name its delivered and retransmitted messages a second; members in each group's view. */
  readonly history: ReadonlyArray<{
    readonly at: number;
    readonly delivered: Readonly<Record<string, number>>;
    readonly retransmitted: Readonly<Record<string, number>>;
    readonly viewSizes: Readonly<Record<string, number>>;
  }>;
  readonly warnings: readonly string[];
}

/** Turns probe rounds into what the page shows: names for ids, rates from totals, merged events, history. */
export class DashboardModel {
  readonly #cluster: string;
  #previous = new Map<string, { at: number; totals: Readonly<Record<string, number>> }>();
  readonly #names = new Map<string, string>();
  readonly #history: Array<DashboardState["history"][number]> = [];
  readonly #events = new Map<string, DashboardState["events"][number]>();
  #round = 0;
  #state: DashboardState;

  constructor(cluster: string) {
    this.#cluster = cluster;
    this.#state = { cluster, at: Date.now(), round: 0, members: [], silent: [], map: undefined, events: [], history: [], warnings: [] };
  }

  get state(): DashboardState {
    return this.#state;
  }

  /** Takes one round's findings (at wall-clock `at`). */
  update(result: ProbeResult, at: number): DashboardState {
    this.#round++;
    for (const report of result.members) {
      this.#names.set(report.id, report.name);
      for (const group of report.groups) for (const member of group.members) if (member.name !== "") this.#names.set(member.id, member.name);
    }
    const name = (id: string | undefined) => (id === undefined ? "" : this.#names.get(id) || id.slice(0, 8));
    const previous = this.#previous;
    this.#previous = new Map(result.members.map((m) => [m.id, { at, totals: m.totals }]));
    const rate = (report: MemberReport, total: string) => {
      const before = previous.get(report.id);
      if (before === undefined || at <= before.at) return 0;
      return Math.max(0, ((report.totals[total] ?? 0) - (before.totals[total] ?? 0)) / ((at - before.at) / 1000));
    };
    const members = result.members.map(
      (report): DashboardMember => ({
        id: report.id,
        name: report.name || report.id.slice(0, 8),
        address: `${report.address.host.includes(":") ? `[${report.address.host}]` : report.address.host}:${report.address.port}`,
        software: report.software,
        reliability: report.reliability,
        uptimeMs: report.uptimeMs,
        groups: report.groups.map((group) => ({ group: group.group, view: group.view?.counter, members: group.members.map((m) => m.name || m.id.slice(0, 8)), coordinator: group.coordinator === undefined ? undefined : name(group.coordinator) })),
        peers: report.peerCount,
        sentPerSecond: rate(report, "messages.sent"),
        deliveredPerSecond: rate(report, "messages.delivered"),
        retransmittedPerSecond: rate(report, "retransmissions"),
        dropped: total(report.totals, "datagrams.dropped/"),
        errors: total(report.totals, "errors/"),
        queued: total(report.levels, "queue.depth/"),
      }),
    );
    // The master's replica is the one that orders writes; any complete one will do without it.
    const replicas = result.members.filter((m) => m.stateMap !== undefined);
    const replica = replicas.find((m) => m.stateMap!.master === m.id) ?? replicas.find((m) => m.stateMap!.ready);
    const map =
      replica === undefined
        ? undefined
        : {
            group: replica.stateMap!.group,
            master: replica.stateMap!.master === undefined ? undefined : name(replica.stateMap!.master),
            entryCount: replica.stateMap!.entryCount,
            entries: replica.stateMap!.entries.map((e) => ({ key: e.key, preview: e.preview, version: e.version, owner: name(e.owner) })),
            locks: replica.stateMap!.locks.map((l) => ({ key: l.key, holder: name(l.holder), fencingToken: l.fencingToken, leaseMs: l.leaseMs })),
          };
    for (const report of result.members) {
      for (const event of report.events) {
        const by = report.name || report.id.slice(0, 8);
        this.#events.set(`${event.at}/${by}/${event.message}`, { at: event.at, by, kind: event.kind, message: event.message });
      }
    }
    const events = [...this.#events.values()].sort((a, b) => b.at - a.at).slice(0, EVENTS);
    for (const key of [...this.#events.keys()]) if (!events.some((e) => `${e.at}/${e.by}/${e.message}` === key)) this.#events.delete(key);
    const viewSizes: Record<string, number> = {};
    for (const member of members) for (const group of member.groups) viewSizes[group.group] = Math.max(viewSizes[group.group] ?? 0, group.members.length);
    this.#history.push({
      at,
      delivered: Object.fromEntries(members.map((m) => [m.name, Math.round(m.deliveredPerSecond)])),
      retransmitted: Object.fromEntries(members.map((m) => [m.name, Math.round(m.retransmittedPerSecond)])),
      viewSizes,
    });
    if (this.#history.length > HISTORY_ROUNDS) this.#history.shift();
    this.#state = {
      cluster: this.#cluster,
      at,
      round: this.#round,
      members: members.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      silent: result.silent.map((s) => ({ ...s, name: s.name || name(s.id) })),
      map,
      events,
      history: [...this.#history],
      warnings: result.warnings,
    };
    return this.#state;
  }
}

function total(values: Readonly<Record<string, number>>, prefix: string): number {
  return Object.entries(values).reduce((sum, [name, value]) => (name.startsWith(prefix) ? sum + value : sum), 0);
}
