import * as z from "zod";
import { BlazeError } from "../errors.ts";
import type { ClusterChannelOptions } from "../cluster/options.ts";
import { documented } from "../options-doc.ts";
import { parseOptions } from "../options.ts";
import type { SiteBusFactory } from "./site-bus.ts";

const d = documented;
const ms = z.number().int().positive();
/** A NATS subject token: site names and the prefix's parts become subjects. */
const token = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "expected 1 to 64 letters, digits, '_' or '-' (it becomes a NATS subject token)");
/** Topics are channel topic names; "$"-names are reserved for activeblaze's own traffic. */
const topic = z.string().min(1).max(255).refine((name) => !name.startsWith("$"), "topics starting with '$' are reserved");

/** How the gateway reaches NATS (`nats: { … }`), passed to the NATS client as they are. */
export const natsOptionsSchema: z.ZodType<NatsOptions, NatsOptions> = z.strictObject({
  servers: d(z.array(z.string().min(1)).min(1), { description: 'NATS server URLs, e.g. `["nats://127.0.0.1:4222"]`' }),
  name: d(z.string().optional(), { defaultText: '"activeblaze <site>"', description: "the connection's name, as the server shows it" }),
  user: d(z.string().optional(), { description: "user name…" }),
  pass: d(z.string().optional(), { description: "…and password, where the server asks for them" }),
  token: d(z.string().optional(), { description: "an authentication token, where the server asks for one" }),
});

/** The copy of the site's replicated map (`map: { … }`): given, the relay channel is a cluster channel whose map is copied. */
export const mapCopyOptionsSchema: z.ZodType<ResolvedMapCopyOptions, MapCopyOptions> = z.strictObject({
  keys: d(z.array(z.string().min(1).max(255)).min(1).optional(), {
    unit: "prefixes",
    defaultText: "every key",
    description: "with `map` given, the site's map is copied to the other sites (`relay.map`): the keys starting with one of these; sites bridged together give the same",
  }),
  tombstoneMs: d(ms.default(3_600_000), {
    unit: "ms",
    description: "a removal is kept (and copied) as a tombstone this long after its stamp, so that an older write arriving later cannot bring the key back; a site cut off for longer may",
  }),
  digestIntervalMs: d(ms.default(5_000), { unit: "ms", description: "how often a gateway sends the other sites a digest of its map, and they push what differs (the copy's repair)" }),
  wallClock: d(z.custom<() => number>((value) => typeof value === "function", "expected a function").default(() => Date.now), {
    unit: "function",
    defaultText: "`Date.now`",
    description: "the wall clock that stamps writes (ms); the merge rule compares stamps of different sites",
  }),
});

/** The zod schema of the relay options (`relay: { … }`), each documented for the README's table. */
export const relayOptionsSchema: z.ZodType<ResolvedRelayOptions, RelayOptions> = z.strictObject({
  site: d(token, { unit: "name", description: "this site's name; every member of the site's group gives the same one" }),
  nats: d(natsOptionsSchema.optional(), { description: "the NATS servers the site's gateway connects to (required unless `bus` is given)" }),
  topics: d(z.array(topic).default([]), { unit: "names", description: "the topics relayed to every other site; other topics stay in the site" }),
  group: d(z.string().min(1).max(255).optional(), { defaultText: "the first of `groups`", description: "the group that makes up the site: its coordinator is the site's gateway" }),
  subjectPrefix: d(z.string().regex(/^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$/, "expected NATS subject tokens joined by '.'").default("activeblaze.relay"), {
    unit: "subject",
    description: "the NATS subjects used start with this; sites bridged together use the same",
  }),
  announceIntervalMs: d(ms.default(1_000), { unit: "ms", description: "how often a gateway announces its site to the others" }),
  siteTimeoutMs: d(ms.default(10_000), {
    unit: "ms",
    description: "a site not announced for this long is down (`siteDown`); more than the group's failure detection, so a gateway's crash is a gateway change, not a site going down",
  }),
  ackDelayMs: d(ms.default(10), { unit: "ms", description: "members report, and gateways acknowledge, what was delivered at most this long after it was" }),
  resendTimeoutMs: d(ms.default(1_000), { unit: "ms", description: "a relayed message not acknowledged by a site this long after it went is sent to it again" }),
  windowMessages: d(z.number().int().min(1).max(1 << 20).default(16_384), {
    unit: "messages",
    description: "most relayed messages a member holds until every site acknowledged them; past it `broadcast` and `send` wait for room",
  }),
  windowBytes: d(z.number().int().min(64 * 1024).default(16 * 1024 * 1024), { unit: "bytes", defaultText: "16 MiB", description: "most payload bytes it holds so" }),
  maxStreams: d(z.number().int().min(16).default(4_096), {
    unit: "streams",
    description: "most origins' streams a member follows (and a gateway acknowledges); past it the longest idle one is forgotten",
  }),
  bus: d(z.custom<SiteBusFactory>((value) => typeof value === "function", "expected a function").optional(), {
    unit: "function",
    defaultText: "NATS",
    description: "how a gateway connects to the other sites (a simulated bus in tests)",
  }),
  map: mapCopyOptionsSchema.optional(),
});

/** The copy of the site's replicated map; the README's table documents each field. */
export interface MapCopyOptions {
  readonly keys?: readonly string[] | undefined;
  readonly tombstoneMs?: number | undefined;
  readonly digestIntervalMs?: number | undefined;
  readonly wallClock?: (() => number) | undefined;
}

/** {@link MapCopyOptions} with their defaults filled in. */
export interface ResolvedMapCopyOptions {
  readonly keys?: readonly string[] | undefined;
  readonly tombstoneMs: number;
  readonly digestIntervalMs: number;
  readonly wallClock: () => number;
}

/** How the gateway reaches NATS; the README's table documents each field. */
export interface NatsOptions {
  readonly servers: readonly string[];
  readonly name?: string | undefined;
  readonly user?: string | undefined;
  readonly pass?: string | undefined;
  readonly token?: string | undefined;
}

/** The relay options (`relay: { … }`); the README's table documents each field. */
export interface RelayOptions {
  readonly site: string;
  readonly nats?: NatsOptions | undefined;
  readonly topics?: readonly string[] | undefined;
  readonly group?: string | undefined;
  readonly subjectPrefix?: string | undefined;
  readonly announceIntervalMs?: number | undefined;
  readonly siteTimeoutMs?: number | undefined;
  readonly ackDelayMs?: number | undefined;
  readonly resendTimeoutMs?: number | undefined;
  readonly windowMessages?: number | undefined;
  readonly windowBytes?: number | undefined;
  readonly maxStreams?: number | undefined;
  readonly bus?: SiteBusFactory | undefined;
  readonly map?: MapCopyOptions | undefined;
}

/** {@link RelayOptions} with their defaults filled in. */
export interface ResolvedRelayOptions {
  readonly site: string;
  readonly nats?: NatsOptions | undefined;
  readonly topics: readonly string[];
  readonly group?: string | undefined;
  readonly subjectPrefix: string;
  readonly announceIntervalMs: number;
  readonly siteTimeoutMs: number;
  readonly ackDelayMs: number;
  readonly resendTimeoutMs: number;
  readonly windowMessages: number;
  readonly windowBytes: number;
  readonly maxStreams: number;
  readonly bus?: SiteBusFactory | undefined;
  readonly map?: ResolvedMapCopyOptions | undefined;
}

/** A group channel's options plus `relay`; with `relay.map`, a cluster channel's (`state` too). */
export type RelayChannelOptions = ClusterChannelOptions & { relay: RelayOptions };

/** Validates the relay options against the group's: invalid ones throw `INVALID_OPTION` naming the field. */
export function resolveRelayOptions(options: RelayChannelOptions | undefined): { relay: ResolvedRelayOptions; group: ClusterChannelOptions } {
  const { relay, ...group } = options ?? ({} as RelayChannelOptions);
  const resolved = parseOptions(relayOptionsSchema, relay, "relay");
  if (group.state !== undefined && resolved.map === undefined) {
    throw new BlazeError("INVALID_OPTION", 'invalid option "state": a relay channel has a replicated map only with relay.map (its copy across sites)', { path: ["state"] });
  }
  if (resolved.nats === undefined && resolved.bus === undefined) {
    throw new BlazeError("INVALID_OPTION", 'invalid option "relay.nats": required (the NATS servers the gateway connects to)', { path: ["nats"] });
  }
  // A gateway's crash takes the group's failure detection to notice; the site must outlast it.
  const detection = (group.failureTimeoutMs ?? 5_000) + (group.verifyTimeoutMs ?? 1_500);
  if (resolved.siteTimeoutMs <= detection) {
    throw new BlazeError(
      "INVALID_OPTION",
      `invalid option "relay.siteTimeoutMs": ${resolved.siteTimeoutMs} ms is not more than the group's failure detection (failureTimeoutMs + verifyTimeoutMs = ${detection} ms)`,
      { path: ["siteTimeoutMs"] },
    );
  }
  const groups = group.groups ?? ["default"];
  if (resolved.group !== undefined && !groups.includes(resolved.group)) {
    throw new BlazeError("INVALID_OPTION", `invalid option "relay.group": "${resolved.group}" is not one of the groups joined (${groups.join(", ")})`, { path: ["group"] });
  }
  return { relay: resolved, group };
}
