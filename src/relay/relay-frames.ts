import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type RelayFrame,
  RelayFrameSchema,
  type RelayMapEntry,
  type RelayMapEntrySchema,
  type RelayMember,
  type RelayMemberSchema,
  type RelayPosition,
  type RelayPositionSchema,
  type RelaySiteAnnounce,
  type RelaySiteAnnounceSchema,
  RelayStream,
} from "../../gen/activeblaze/v1/relay_pb.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { idOf, keyOf } from "../reliable/member-key.ts";
import type { DropReason } from "../wire/drop-reason.ts";
import { MAX_NAME_BYTES, MEMBER_ID_BYTES } from "../wire/limits.ts";
import { unsafeIntegerIn } from "../wire/safe-integers.ts";
import { web } from "../web.ts";

/** The bridge protocol's major version (RelayFrame.version). */
export const RELAY_VERSION = 1;

const SITE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** A member somewhere: its site, id, incarnation and name. */
export interface SiteMember {
  readonly site: string;
  /** Member id (32 hex digits). */
  readonly id: PeerKey;
  readonly incarnation: number;
  readonly name: string;
}

export type StreamKind = "topic" | "direct";

/** One relayed message of an origin's stream (RelayMessage, numbers as numbers, ids as keys). */
export interface RelayedMessage {
  readonly origin: SiteMember;
  readonly stream: StreamKind;
  readonly seq: number;
  readonly floor: number;
  /** The topic, or the target's inbox. */
  readonly destination: string;
  readonly target: SiteMember | undefined;
  readonly requestId: number;
  readonly reply: boolean;
  readonly format: number;
  readonly payload: Uint8Array;
  /** A topic message's resend: the sites it is for (empty: every site up). */
  readonly sites: readonly string[];
}

/** How far a stream was delivered: every message up to and including `seq`. */
export interface StreamPosition {
  readonly origin: SiteMember;
  readonly stream: StreamKind;
  /** A direct stream's target ("" for a topic stream). */
  readonly targetId: PeerKey;
  readonly seq: number;
}

export interface SiteAnnouncement {
  readonly site: string;
  readonly gateway: SiteMember;
  readonly members: readonly SiteMember[];
  readonly intervalMs: number;
}

/** An entry of the cross-site copy of the map (RelayMapEntry): a key, its stamp, and its value or a tombstone. */
export interface CopiedEntry {
  readonly key: string;
  /** The stamp: hybrid clock time (ms), then site, orders two entries of a key. */
  readonly time: number;
  readonly site: string;
  readonly removed: boolean;
  readonly format: number;
  readonly value: Uint8Array;
}

/** Hashes in a map digest: two per bucket. */
export const DIGEST_BUCKETS = 64;

export type RelayBody =
  | { readonly kind: "message"; readonly message: RelayedMessage }
  | { readonly kind: "ack"; readonly site: string; readonly gatewayId: PeerKey; readonly positions: readonly StreamPosition[] }
  | { readonly kind: "report"; readonly positions: readonly StreamPosition[]; readonly complete: boolean }
  | { readonly kind: "refusal"; readonly site: string; readonly position: StreamPosition }
  | { readonly kind: "announce"; readonly announcement: SiteAnnouncement }
  | { readonly kind: "table"; readonly sites: readonly SiteAnnouncement[] }
  | { readonly kind: "mapEntries"; readonly site: string; readonly entries: readonly CopiedEntry[] }
  | { readonly kind: "mapDigest"; readonly site: string; readonly hashes: readonly number[]; readonly reply: boolean };

export type RelayDecoded = { readonly ok: true; readonly body: RelayBody } | { readonly ok: false; readonly reason: DropReason; readonly detail: string };

/** The key of an origin's stream: the same at every member and gateway. */
export function streamKey(origin: SiteMember, stream: StreamKind, targetId: PeerKey): string {
  return `${origin.site}/${origin.id}/${origin.incarnation}/${stream}/${targetId}`;
}

export function encodeRelay(body: RelayBody): Uint8Array {
  return toBinary(RelayFrameSchema, create(RelayFrameSchema, { version: RELAY_VERSION, kind: toWire(body) }));
}

function toWire(body: RelayBody): MessageInitShape<typeof RelayFrameSchema>["kind"] {
  switch (body.kind) {
    case "message": {
      const m = body.message;
      return {
        case: "message",
        value: {
          origin: memberToWire(m.origin),
          stream: m.stream === "topic" ? RelayStream.TOPIC : RelayStream.DIRECT,
          seq: BigInt(m.seq),
          floor: BigInt(m.floor),
          destination: m.destination,
          target: m.target === undefined ? undefined : memberToWire(m.target),
          requestId: BigInt(m.requestId),
          reply: m.reply,
          format: m.format,
          payload: m.payload,
          sites: [...m.sites],
        },
      };
    }
    case "ack":
      return { case: "ack", value: { site: body.site, gatewayId: idOf(body.gatewayId), positions: body.positions.map(positionToWire) } };
    case "report":
      return { case: "report", value: { positions: body.positions.map(positionToWire), complete: body.complete } };
    case "refusal":
      return { case: "refusal", value: { site: body.site, position: positionToWire(body.position) } };
    case "announce":
      return { case: "siteAnnounce", value: announceToWire(body.announcement) };
    case "table":
      return { case: "siteTable", value: { sites: body.sites.map(announceToWire) } };
    case "mapEntries":
      return { case: "mapEntries", value: { site: body.site, entries: body.entries.map(copiedToWire) } };
    case "mapDigest":
      return { case: "mapDigest", value: { site: body.site, hashes: [...body.hashes], reply: body.reply } };
  }
}

export function copiedToWire(entry: CopiedEntry): MessageInitShape<typeof RelayMapEntrySchema> {
  return { key: entry.key, time: BigInt(entry.time), site: entry.site, removed: entry.removed, format: entry.format, value: entry.value };
}

function memberToWire(member: SiteMember): MessageInitShape<typeof RelayMemberSchema> {
  return { site: member.site, id: idOf(member.id), incarnation: BigInt(member.incarnation), name: member.name };
}

function positionToWire(position: StreamPosition): MessageInitShape<typeof RelayPositionSchema> {
  return {
    origin: memberToWire(position.origin),
    stream: position.stream === "topic" ? RelayStream.TOPIC : RelayStream.DIRECT,
    targetId: position.targetId === "" ? new Uint8Array(0) : idOf(position.targetId),
    seq: BigInt(position.seq),
  };
}

function announceToWire(announcement: SiteAnnouncement): MessageInitShape<typeof RelaySiteAnnounceSchema> {
  return {
    site: announcement.site,
    gateway: memberToWire(announcement.gateway),
    members: announcement.members.map(memberToWire),
    intervalMs: BigInt(announcement.intervalMs),
  };
}

/** Thrown inside decoding only; turned into a refusal with its reason. */
class Refused extends Error {
  constructor(
    readonly reason: DropReason,
    detail: string,
  ) {
    super(detail);
  }
}

const encoder = new web.TextEncoder();

/**
 * Decodes and checks a relay frame from the bus or from a member. Never throws: a frame that does not
 * decode or breaks a rule of relay.proto comes back refused, with the reason it is counted under.
 */
export function decodeRelay(bytes: Uint8Array, maxBytes: number): RelayDecoded {
  if (bytes.length > maxBytes) return { ok: false, reason: "OVERSIZE", detail: `${bytes.length} bytes, over ${maxBytes}` };
  let frame: RelayFrame;
  try {
    frame = fromBinary(RelayFrameSchema, bytes);
  } catch (error) {
    return { ok: false, reason: "DECODE_FAILED", detail: error instanceof Error ? error.message : String(error) };
  }
  if (frame.version === 0) return { ok: false, reason: "MISSING_FIELD", detail: "no version" };
  if (frame.version !== RELAY_VERSION) return { ok: false, reason: "UNSUPPORTED_VERSION", detail: `version ${frame.version}` };
  const unsafe = unsafeIntegerIn(RelayFrameSchema, frame);
  if (unsafe !== undefined) return { ok: false, reason: "INVALID_FIELD", detail: `${unsafe} is over 2^53 - 1` };
  try {
    return { ok: true, body: fromWire(frame.kind) };
  } catch (error) {
    if (error instanceof Refused) return { ok: false, reason: error.reason, detail: error.message };
    throw error;
  }
}

function fromWire(kind: RelayFrame["kind"]): RelayBody {
  switch (kind.case) {
    case "message": {
      const m = kind.value;
      const origin = memberFromWire(required(m.origin, "message.origin"), "message.origin");
      const stream = streamOf(m.stream, "message.stream");
      const seq = Number(m.seq);
      const floor = Number(m.floor);
      if (seq < 1) throw new Refused("INVALID_FIELD", "message.seq is 0");
      if (floor < 1 || floor > seq) throw new Refused("INVALID_FIELD", `message.floor ${floor} is not in 1..seq (${seq})`);
      checkName(m.destination, "message.destination");
      const target = m.target === undefined ? undefined : memberFromWire(m.target, "message.target");
      if (stream === "direct" && target === undefined) throw new Refused("MISSING_FIELD", "a direct message without target");
      for (const site of m.sites) checkSite(site, "message.sites");
      return {
        kind: "message",
        message: {
          origin,
          stream,
          seq,
          floor,
          destination: m.destination,
          target,
          requestId: Number(m.requestId),
          reply: m.reply,
          format: m.format,
          payload: m.payload,
          sites: m.sites,
        },
      };
    }
    case "ack":
      checkSite(kind.value.site, "ack.site");
      return { kind: "ack", site: kind.value.site, gatewayId: idFromWire(kind.value.gatewayId, "ack.gatewayId"), positions: kind.value.positions.map((p) => positionFromWire(p, "ack.positions")) };
    case "report":
      return { kind: "report", positions: kind.value.positions.map((p) => positionFromWire(p, "report.positions")), complete: kind.value.complete };
    case "refusal":
      checkSite(kind.value.site, "refusal.site");
      return { kind: "refusal", site: kind.value.site, position: positionFromWire(required(kind.value.position, "refusal.position"), "refusal.position") };
    case "siteAnnounce":
      return { kind: "announce", announcement: announceFromWire(kind.value, "siteAnnounce") };
    case "siteTable":
      return { kind: "table", sites: kind.value.sites.map((s) => announceFromWire(s, "siteTable.sites")) };
    case "mapEntries":
      checkSite(kind.value.site, "mapEntries.site");
      return { kind: "mapEntries", site: kind.value.site, entries: kind.value.entries.map((e) => copiedFromWire(e, "mapEntries.entries")) };
    case "mapDigest":
      checkSite(kind.value.site, "mapDigest.site");
      if (kind.value.hashes.length !== 2 * DIGEST_BUCKETS) throw new Refused("INVALID_FIELD", `mapDigest.hashes has ${kind.value.hashes.length} hashes, not ${2 * DIGEST_BUCKETS}`);
      return { kind: "mapDigest", site: kind.value.site, hashes: kind.value.hashes, reply: kind.value.reply };
    default:
      throw new Refused("MISSING_FIELD", "no kind");
  }
}

function required<T>(value: T | undefined, path: string): T {
  if (value === undefined) throw new Refused("MISSING_FIELD", `no ${path}`);
  return value;
}

function streamOf(stream: RelayStream, path: string): StreamKind {
  if (stream === RelayStream.TOPIC) return "topic";
  if (stream === RelayStream.DIRECT) return "direct";
  throw new Refused("INVALID_FIELD", `${path} is ${stream}`);
}

function checkSite(site: string, path: string): void {
  if (!SITE_NAME.test(site)) throw new Refused("INVALID_FIELD", `${path} "${site.slice(0, 80)}" is no site name`);
}

function checkName(name: string, path: string): void {
  if (name.length * 3 > MAX_NAME_BYTES && encoder.encode(name).length > MAX_NAME_BYTES) throw new Refused("OVERSIZE", `${path} is over ${MAX_NAME_BYTES} bytes`);
}

function idFromWire(id: Uint8Array, path: string): PeerKey {
  if (id.length !== MEMBER_ID_BYTES) throw new Refused("INVALID_FIELD", `${path} has ${id.length} bytes, not ${MEMBER_ID_BYTES}`);
  return keyOf(id);
}

function memberFromWire(member: RelayMember, path: string): SiteMember {
  checkSite(member.site, `${path}.site`);
  checkName(member.name, `${path}.name`);
  return { site: member.site, id: idFromWire(member.id, `${path}.id`), incarnation: Number(member.incarnation), name: member.name };
}

function positionFromWire(position: RelayPosition, path: string): StreamPosition {
  const origin = memberFromWire(required(position.origin, `${path}.origin`), `${path}.origin`);
  const stream = streamOf(position.stream, `${path}.stream`);
  return {
    origin,
    stream,
    targetId: stream === "topic" ? "" : idFromWire(position.targetId, `${path}.targetId`),
    seq: Number(position.seq),
  };
}

/**
 * Checks an entry of the copy (`path` names it in the refusal). Exported for the map's own copies of
 * entries (key ""), which are checked as strictly as the bus's.
 */
export function copiedFromWire(entry: RelayMapEntry, path: string): CopiedEntry {
  checkName(entry.key, `${path}.key`);
  checkSite(entry.site, `${path}.site`);
  const time = Number(entry.time);
  if (time < 1) throw new Refused("INVALID_FIELD", `${path}.time is 0`);
  if (entry.removed && entry.value.length > 0) throw new Refused("INVALID_FIELD", `${path}: a removal with a value`);
  return { key: entry.key, time, site: entry.site, removed: entry.removed, format: entry.format, value: entry.value };
}

function announceFromWire(announce: RelaySiteAnnounce, path: string): SiteAnnouncement {
  checkSite(announce.site, `${path}.site`);
  const gateway = memberFromWire(required(announce.gateway, `${path}.gateway`), `${path}.gateway`);
  const members = announce.members.map((m) => memberFromWire(m, `${path}.members`));
  if (gateway.site !== announce.site || members.some((m) => m.site !== announce.site)) throw new Refused("INVALID_FIELD", `${path}: a member of another site`);
  const intervalMs = Number(announce.intervalMs);
  if (intervalMs < 1) throw new Refused("INVALID_FIELD", `${path}.intervalMs is 0`);
  return { site: announce.site, gateway, members, intervalMs };
}
