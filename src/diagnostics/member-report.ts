import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { MemberRefSchema } from "../../gen/activeblaze/v1/common_pb.ts";
import {
  type DiagnosticsReply,
  DiagnosticsReplySchema,
  type EntryReportSchema,
  type EventReportSchema,
  type GroupReportSchema,
  type LockReportSchema,
  type PeerReportSchema,
} from "../../gen/activeblaze/v1/diagnostics_pb.ts";
import { encodeFrame } from "../wire/frames.ts";
import type { ClusterChannel } from "../cluster/cluster-channel.ts";
import { memberInfo } from "../group/frames.ts";
import type { GroupChannel } from "../group/group-channel.ts";
import type { DescribedMember } from "./member-events.ts";
import { BlazeMessage } from "../message/blaze-message.ts";
import { idOf, keyOf } from "../reliable/member-key.ts";
import type { Address } from "../transport/transport.ts";
import { VERSION } from "../version.ts";
import { memberCounters, type MeasuredValue } from "./member-counters.ts";
import type { RecordedEvent } from "./member-observer.ts";

/** A member as it describes itself to `blaze probe` and the dashboard. */
export interface MemberReport {
  readonly id: string;
  readonly incarnation: number;
  readonly cluster: string;
  /** Where its reply came from: its unicast address. */
  readonly address: Address;
  readonly name: string;
  /** Runtime and library, e.g. "node 20.20.2, activeblaze 0.1.0". */
  readonly software: string;
  readonly reliability: string;
  readonly state: string;
  readonly uptimeMs: number;
  readonly groups: ReadonlyArray<{
    readonly group: string;
    /** Undefined while it is still joining. */
    readonly view: { readonly counter: number; readonly installer: string } | undefined;
    readonly members: ReadonlyArray<{ readonly id: string; readonly incarnation: number; readonly name: string; readonly weight: number; readonly address: Address }>;
    readonly coordinator: string | undefined;
  }>;
  readonly peers: ReadonlyArray<{ readonly id: string; readonly incarnation: number; readonly address: Address; readonly silentMs: number }>;
  readonly peerCount: number;
  /** Running totals, e.g. "messages.sent", "datagrams.dropped/WRONG_CLUSTER", "errors/listener". */
  readonly totals: Readonly<Record<string, number>>;
  /** Levels now, e.g. "peers", "queue.depth/broadcast", "map.entries". */
  readonly levels: Readonly<Record<string, number>>;
  readonly stateMap:
    | {
        readonly group: string;
        readonly master: string | undefined;
        readonly epoch: number;
        readonly ready: boolean;
        readonly entryCount: number;
        readonly locks: ReadonlyArray<{ readonly key: string; readonly holder: string; readonly fencingToken: number; readonly leaseMs: number }>;
        readonly lockCount: number;
        readonly entries: ReadonlyArray<{ readonly key: string; readonly version: number; readonly owner: string; readonly size: number; readonly preview: string }>;
      }
    | undefined;
  readonly events: ReadonlyArray<{ readonly at: number; readonly kind: string; readonly group: string; readonly member: string | undefined; readonly message: string }>;
  /** Some list was cut short to fit one datagram. */
  readonly truncated: boolean;
}

/** What a member knows of itself beyond its public API, for its report. */
export interface ReportContext {
  readonly nonce: bigint;
  readonly includeEntries: boolean;
  readonly uptimeMs: number;
  readonly peers: ReadonlyArray<{ readonly key: string; readonly incarnation: number; readonly address: Address; readonly silentMs: number }>;
  readonly recent: readonly RecordedEvent[];
  /** The reply frame must not be larger. */
  readonly maxFrameBytes: number;
}

const PREVIEW_CHARS = 80;
/** No list element encodes in fewer bytes: longer lists cannot fit, and are not even built (a map of 100,000 entries). */
const MIN_ELEMENT_BYTES = 16;

/**
 * The DiagnosticsReply frame of `member`, at most `context.maxFrameBytes` long: lists that do not fit
 * (entries first, then events, peers, locks, group members) are halved until it fits, and marked.
 */
export function reportFrame(member: DescribedMember, context: ReportContext): Uint8Array {
  const reply = create(DiagnosticsReplySchema, describe(member, context));
  for (;;) {
    const frame = encodeFrame({ case: "diagnosticsReply", value: reply });
    if (frame.length <= context.maxFrameBytes || !shorten(reply)) return frame;
    reply.truncated = true;
  }
}

// Halves the longest list there is to cut; false when nothing is left to cut.
function shorten(reply: DiagnosticsReply): boolean {
  const lists: Array<{ length: number; splice(start: number): unknown }> = [
    reply.stateMap?.entries ?? [],
    reply.events,
    reply.peers,
    reply.stateMap?.locks ?? [],
    ...reply.groups.map((group) => group.members),
  ];
  const longest = lists.reduce((a, b) => (b.length > a.length ? b : a));
  if (longest.length === 0) return false;
  longest.splice(Math.floor(longest.length / 2));
  return true;
}

function describe(member: DescribedMember, context: ReportContext): MessageInitShape<typeof DiagnosticsReplySchema> {
  const ref = (id: string, incarnation: number) => create(MemberRefSchema, { id: idOf(id), incarnation: BigInt(incarnation) });
  const { totals, levels } = memberCounters(member);
  const groups: Array<MessageInitShape<typeof GroupReportSchema>> = [];
  const level = member as Partial<GroupChannel>;
  if (typeof level.getGroups === "function") {
    for (const group of level.getGroups()) {
      const view = level.getView!(group);
      groups.push({
        group,
        viewId: view === undefined ? undefined : { coordinatorId: idOf(view.id.installer), counter: BigInt(view.id.counter) },
        members: view?.members.map((m) => memberInfo(m)) ?? [],
        coordinator: view === undefined ? undefined : ref(view.coordinator.id, view.coordinator.incarnation),
      });
    }
  }
  const most = Math.floor(context.maxFrameBytes / MIN_ELEMENT_BYTES);
  const peers: Array<MessageInitShape<typeof PeerReportSchema>> = context.peers.slice(0, most).map((peer) => ({
    member: ref(peer.key, peer.incarnation),
    host: peer.address.host,
    port: peer.address.port,
    silentMs: BigInt(Math.max(0, Math.round(peer.silentMs))),
  }));
  const events: Array<MessageInitShape<typeof EventReportSchema>> = context.recent.map((event) => ({
    atMs: BigInt(Math.max(0, Math.round(event.at))),
    kind: event.kind,
    group: event.group ?? "",
    member: event.member === undefined ? undefined : create(MemberRefSchema, { id: idOf(event.member.id) }),
    message: event.message,
  }));
  return {
    nonce: context.nonce,
    name: member.name,
    software: `${runtimeName()}, activeblaze ${VERSION}`,
    reliability: member.stats.reliability,
    state: member.state,
    uptimeMs: BigInt(Math.max(0, Math.round(context.uptimeMs))),
    groups,
    peers,
    peerCount: context.peers.length,
    totals: flatten(totals),
    levels: flatten(levels),
    stateMap: stateReport(member, context.includeEntries, most, ref),
    events,
    truncated: context.peers.length > most,
  };
}

function stateReport(
  member: DescribedMember,
  includeEntries: boolean,
  most: number,
  ref: (id: string, incarnation: number) => ReturnType<typeof create<typeof MemberRefSchema>>,
): MessageInitShape<typeof DiagnosticsReplySchema>["stateMap"] {
  const cluster = member as Partial<ClusterChannel>;
  if (cluster.map === undefined || member.state !== "started") return undefined;
  const map = cluster.map;
  const master = cluster.getMaster!();
  const allLocks = map.locks();
  const locks: Array<MessageInitShape<typeof LockReportSchema>> = allLocks.slice(0, most).map((lock) => ({
    key: lock.key,
    holder: ref(lock.holder.id, lock.holder.incarnation),
    fencingToken: BigInt(lock.fencingToken),
    leaseMs: BigInt(lock.leaseMs),
  }));
  const entries: Array<MessageInitShape<typeof EntryReportSchema>> = [];
  if (includeEntries) {
    for (const key of map.keys()) {
      if (entries.length === most) break;
      const entry = map.getEntry(key)!;
      const { size, preview } = previewOf(entry.value);
      entries.push({ key, version: BigInt(entry.version), owner: ref(entry.owner.id, entry.owner.incarnation), size, preview });
    }
  }
  return {
    group: cluster.stateGroup!,
    master: master === undefined ? undefined : ref(master.id, master.incarnation),
    epoch: BigInt(cluster.stateStats!.epoch),
    ready: cluster.ready!,
    entryCount: map.size,
    locks,
    lockCount: allLocks.length,
    entries,
  };
}

function previewOf(value: BlazeMessage | Uint8Array): { size: number; preview: string } {
  if (value instanceof BlazeMessage) {
    const text = value.toString();
    return { size: value.toBinary().length, preview: text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text };
  }
  const hex = Array.from(value.subarray(0, PREVIEW_CHARS / 4), (byte) => byte.toString(16).padStart(2, "0")).join(" ");
  return { size: value.length, preview: value.length > PREVIEW_CHARS / 4 ? `${hex} …` : hex };
}

// "datagrams.dropped/WRONG_CLUSTER": the name without its prefix, then the attribute values.
function flatten(values: readonly MeasuredValue[]): Record<string, bigint> {
  const flat: Record<string, bigint> = {};
  for (const { name, value, attributes } of values) {
    const key = [name.replace(/^activeblaze\./, ""), ...Object.values(attributes ?? {})].join("/");
    flat[key] = BigInt(Math.max(0, Math.round(value)));
  }
  return flat;
}

function runtimeName(): string {
  const g = globalThis as { Deno?: { version?: { deno?: string } }; Bun?: { version?: string }; process?: { versions?: { node?: string } } };
  if (g.Deno?.version?.deno !== undefined) return `deno ${g.Deno.version.deno}`;
  if (g.Bun?.version !== undefined) return `bun ${g.Bun.version}`;
  if (g.process?.versions?.node !== undefined) return `node ${g.process.versions.node}`;
  return "an unknown runtime";
}

/** Reads a DiagnosticsReply from a member with id `senderId` (hex) and `incarnation`, received from `address`. */
export function readReport(reply: DiagnosticsReply, sender: { readonly id: string; readonly incarnation: number; readonly cluster: string; readonly address: Address }): MemberReport {
  const key = (id: Uint8Array | undefined) => (id === undefined || id.length !== 16 ? undefined : keyOf(id));
  const state = reply.stateMap;
  return {
    ...sender,
    name: reply.name,
    software: reply.software,
    reliability: reply.reliability,
    state: reply.state,
    uptimeMs: Number(reply.uptimeMs),
    groups: reply.groups.map((group) => ({
      group: group.group,
      view: group.viewId === undefined || key(group.viewId.coordinatorId) === undefined ? undefined : { counter: Number(group.viewId.counter), installer: key(group.viewId.coordinatorId)! },
      members: group.members.flatMap((m) =>
        key(m.id) === undefined ? [] : [{ id: key(m.id)!, incarnation: Number(m.incarnation), name: m.name, weight: m.weight, address: { host: m.host, port: m.port } }],
      ),
      coordinator: key(group.coordinator?.id),
    })),
    peers: reply.peers.flatMap((peer) =>
      key(peer.member?.id) === undefined ? [] : [{ id: key(peer.member!.id)!, incarnation: Number(peer.member!.incarnation), address: { host: peer.host, port: peer.port }, silentMs: Number(peer.silentMs) }],
    ),
    peerCount: reply.peerCount,
    totals: numbers(reply.totals),
    levels: numbers(reply.levels),
    stateMap:
      state === undefined
        ? undefined
        : {
            group: state.group,
            master: key(state.master?.id),
            epoch: Number(state.epoch),
            ready: state.ready,
            entryCount: state.entryCount,
            locks: state.locks.map((lock) => ({ key: lock.key, holder: key(lock.holder?.id) ?? "", fencingToken: Number(lock.fencingToken), leaseMs: Number(lock.leaseMs) })),
            lockCount: state.lockCount,
            entries: state.entries.map((entry) => ({ key: entry.key, version: Number(entry.version), owner: key(entry.owner?.id) ?? "", size: entry.size, preview: entry.preview })),
          },
    events: reply.events.map((event) => ({ at: Number(event.atMs), kind: event.kind, group: event.group, member: key(event.member?.id), message: event.message })),
    truncated: reply.truncated,
  };
}

function numbers(values: Record<string, bigint>): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, Number(value)]));
}
