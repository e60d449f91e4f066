import type { MemberReport } from "../diagnostics/member-report.ts";
import { Prober, type ProbeOptions, type ProbeResult } from "../diagnostics/probe.ts";

/** What `blaze probe` runs. */
export interface ProbeCommand {
  readonly probe: ProbeOptions;
  /** Ask again and again (every `intervalMs`), `count` times (default: until interrupted). */
  readonly watch: boolean;
  readonly intervalMs: number;
  readonly count: number | undefined;
  /** One JSON object per round on stdout, instead of the table. */
  readonly json: boolean;
}

/** Asks the cluster once, or round after round; returns 0 once a round found a member, 1 if none did. */
export async function runProbe(command: ProbeCommand, output: { write(text: string): void; readonly isTTY?: boolean }, stop: AbortSignal): Promise<number> {
  await using prober = await Prober.open(command.probe);
  let found = false;
  for (let round = 1; ; round++) {
    const started = performance.now();
    const result = await prober.ask();
    found ||= result.members.length > 0;
    if (command.json) output.write(`${JSON.stringify({ at: new Date().toISOString(), cluster: command.probe.cluster ?? "activeblaze", ...result })}\n`);
    else {
      // A terminal is redrawn in place; a pipe gets one table after another.
      const clear = command.watch && output.isTTY === true ? "\x1b[2J\x1b[H" : "";
      output.write(`${clear}${formatProbe(result, command.probe.cluster ?? "activeblaze", performance.now() - started)}\n`);
    }
    if (!command.watch || stop.aborted || (command.count !== undefined && round >= command.count)) break;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, command.intervalMs);
      stop.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    });
    if (stop.aborted) break;
  }
  return found ? 0 : 1;
}

/** The probe's findings as tables for people. */
export function formatProbe(result: ProbeResult, cluster: string, tookMs: number): string {
  const { members, silent } = result;
  const lines = [`cluster "${cluster}": ${members.length} member(s) answered in ${(tookMs / 1000).toFixed(1)} s${silent.length > 0 ? `, ${silent.length} listed by others did not` : ""}`];
  for (const warning of result.warnings) lines.push(`warning: ${warning}`);
  if (members.length === 0) {
    lines.push(`no member answered: is the cluster's name right, are its members on this network, and do they have diagnostics on?`);
    return lines.join("\n");
  }
  const nameOf = nameIndex(members);
  lines.push("");
  lines.push(
    ...table(
      ["MEMBER", "ID", "ADDRESS", "SOFTWARE", "QOS", "UP", "GROUPS (VIEW, COORDINATOR)", "PEERS", "SENT", "DELIVERED", "RETRANS", "NACKS", "DROPPED", "ERRORS", "QUEUED", "MAP", "LOCKS"],
      members.map((m) => [
        m.name || "-",
        m.id.slice(0, 8),
        `${m.address.host.includes(":") ? `[${m.address.host}]` : m.address.host}:${m.address.port}`,
        m.software.replace(/, activeblaze .*$/, ""),
        m.reliability,
        duration(m.uptimeMs),
        m.groups.map((g) => `${g.group} (${g.view === undefined ? "joining" : `v${g.view.counter}, ${g.members.length} members, ${nameOf(g.coordinator)}`})`).join("; ") || "-",
        String(m.peerCount),
        count(m.totals["messages.sent"]),
        count(m.totals["messages.delivered"]),
        count(m.totals["retransmissions"]),
        count((m.totals["nacks.sent"] ?? 0) + (m.totals["nacks.received"] ?? 0)),
        count(sum(m.totals, "datagrams.dropped/")),
        count(sum(m.totals, "errors/")),
        count(sum(m.levels, "queue.depth/")),
        m.stateMap === undefined ? "-" : `${m.stateMap.entryCount}${m.stateMap.ready ? "" : " (syncing)"}`,
        m.stateMap === undefined ? "-" : String(m.stateMap.lockCount),
      ]),
    ),
  );
  const drops = members.flatMap((m) => breakdown(m, "datagrams.dropped/").map((part) => `  ${m.name || m.id.slice(0, 8)}: dropped ${part}`));
  const errors = members.flatMap((m) => breakdown(m, "errors/").map((part) => `  ${m.name || m.id.slice(0, 8)}: ${part} error(s)`));
  if (drops.length + errors.length > 0) lines.push("", "drops and errors:", ...drops, ...errors);
  const master = members.find((m) => m.stateMap?.master !== undefined)?.stateMap;
  if (master !== undefined) {
    lines.push("", `replicated map of group "${master.group}": master ${nameOf(master.master)}, epoch ${master.epoch}, ${master.entryCount} entries, ${master.lockCount} lock(s)`);
    for (const lock of master.locks) lines.push(`  lock "${lock.key}": held by ${nameOf(lock.holder)}, fencing token ${lock.fencingToken}${lock.leaseMs > 0 ? `, lease ${lock.leaseMs} ms` : ""}`);
    for (const entry of master.entries) lines.push(`  ${entry.key} = ${entry.preview} (version ${entry.version}, ${entry.size} bytes, by ${nameOf(entry.owner)})`);
  }
  if (silent.length > 0) {
    lines.push("", "listed by others but silent (down, unreachable, or diagnostics off):");
    for (const s of silent) lines.push(`  ${s.name || "-"} ${s.id.slice(0, 8)}, listed by ${s.listedBy.join(", ")}`);
  }
  const events = members
    .flatMap((m) => m.events.map((event) => ({ ...event, by: m.name || m.id.slice(0, 8) })))
    .sort((a, b) => a.at - b.at)
    .slice(-12);
  if (events.length > 0) {
    lines.push("", "recent events:");
    for (const event of events) lines.push(`  ${new Date(event.at).toISOString().slice(11, 23)} ${event.by}: ${event.message}`);
  }
  return lines.join("\n");
}

function nameIndex(members: readonly MemberReport[]): (id: string | undefined) => string {
  const names = new Map<string, string>();
  for (const m of members) {
    names.set(m.id, m.name);
    for (const group of m.groups) for (const member of group.members) if (!names.has(member.id)) names.set(member.id, member.name);
  }
  return (id) => (id === undefined ? "-" : names.get(id) || id.slice(0, 8));
}

function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(header), ...rows.map(line)];
}

function sum(values: Readonly<Record<string, number>>, prefix: string): number {
  return Object.entries(values).reduce((total, [name, value]) => (name.startsWith(prefix) ? total + value : total), 0);
}

function breakdown(member: MemberReport, prefix: string): string[] {
  return Object.entries(member.totals).flatMap(([name, value]) => (name.startsWith(prefix) && value > 0 ? [`${count(value)} ${name.slice(prefix.length)}`] : []));
}

function count(value: number | undefined): string {
  return (value ?? 0).toLocaleString("en-US");
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
