import * as z from "zod";
import { parseOptions } from "../options.ts";
import { DEFAULT_NACK_OPTIONS, type NackOptions } from "../reliable/nack/nack-protocol.ts";
import { type FecOptions, fecOptionsSchema } from "../reliable/fec/options.ts";
import { type TotemOptions, totemOptionsSchema } from "../reliable/totem/options.ts";
import type { Clock, RandomSource } from "../transport/clock.ts";
import type { Logger } from "../diagnostics/logger.ts";
import type { Metrics } from "../diagnostics/metrics.ts";
import { type HostResolver, parseSeed, type Seed } from "../transport/host-names.ts";
import type { TransportFactory } from "../transport/transport.ts";
import { MAX_CLUSTER_NAME_BYTES, MAX_DATAGRAM_BYTES } from "../wire/limits.ts";
import { web } from "../web.ts";

const ms = z.number().int().positive();
const port = z.number().int().min(1).max(65_535);
const ipv4 = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, "expected an IPv4 address");
const multicastGroup = ipv4.refine((group) => {
  const first = Number(group.split(".")[0]);
  return first >= 224 && first <= 239;
}, "expected an IPv4 multicast address (224.0.0.0 to 239.255.255.255)");

// An address, a host name or "dns:" a name (host-names.ts); names are resolved at init(), never from datagrams.
const seed = z.string().transform((text, context): Seed => {
  const parsed = parseSeed(text);
  if (typeof parsed === "string") context.addIssue({ code: "custom", message: parsed });
  return parsed as Seed;
});

/** A channel's multicast network (`network: { type: "multicast", … }`). */
export const multicastNetwork = z.strictObject({
  type: z.literal("multicast"),
  /** Multicast group address. Default "239.255.42.99". */
  group: multicastGroup.default("239.255.42.99"),
  /** Group port. Default 45588 (as JGroups). */
  port: port.default(45_588),
  /** Interface address for multicast. Default "127.0.0.1" (loopback: no configuration, traffic stays on the host). */
  interface: ipv4.default("127.0.0.1"),
  /** Multicast time to live in hops. Default 1. */
  ttl: z.number().int().min(0).max(255).default(1),
});

/** A channel's static network (`network: { type: "static", … }`). */
export const staticNetwork = z.strictObject({
  type: z.literal("static"),
  /** Members' unicast addresses as "host:port", "[ipv6]:port", "name:port" or "dns:name:port" (this member's own is skipped when sending). */
  peers: z.array(seed).min(1),
  /** Address to bind: IPv4, or IPv6 to reach IPv6 peers. Default "127.0.0.1". */
  bindAddress: z.string().min(1).default("127.0.0.1"),
  /** Port to bind: this member's entry in `peers`. */
  port,
});

const nackOptions = z.strictObject({
  windowMessages: z.number().int().min(16).max(1 << 22).default(DEFAULT_NACK_OPTIONS.windowMessages),
  windowBytes: z.number().int().min(64 * 1024).default(DEFAULT_NACK_OPTIONS.windowBytes),
  nackDelayMinMs: z.number().min(0).default(DEFAULT_NACK_OPTIONS.nackDelayMinMs),
  nackDelayMaxMs: z.number().min(0).default(DEFAULT_NACK_OPTIONS.nackDelayMaxMs),
  nackRetryMs: ms.default(DEFAULT_NACK_OPTIONS.nackRetryMs),
  nackRetryMaxMs: ms.default(DEFAULT_NACK_OPTIONS.nackRetryMaxMs),
  maxNackSeqs: z.number().int().min(1).max(65_536).default(DEFAULT_NACK_OPTIONS.maxNackSeqs),
  retransmitHoldoffMs: z.number().min(0).default(DEFAULT_NACK_OPTIONS.retransmitHoldoffMs),
  ackThreshold: z.number().int().min(1).default(DEFAULT_NACK_OPTIONS.ackThreshold),
  ackThresholdBytes: z.number().int().min(1).default(DEFAULT_NACK_OPTIONS.ackThresholdBytes),
  ackDelayMs: ms.default(DEFAULT_NACK_OPTIONS.ackDelayMs),
  receiverTimeoutMs: ms.default(DEFAULT_NACK_OPTIONS.receiverTimeoutMs),
  tailAnnounceMs: ms.default(DEFAULT_NACK_OPTIONS.tailAnnounceMs),
  tailAnnounceMaxMs: ms.default(DEFAULT_NACK_OPTIONS.tailAnnounceMaxMs),
});

/** The fields of a channel's options, each with its check and default (the probe takes some of them). */
export const channelOptionFields = z.strictObject({
    cluster: z
      .string()
      .min(1)
      .refine((name) => new web.TextEncoder().encode(name).length <= MAX_CLUSTER_NAME_BYTES, `at most ${MAX_CLUSTER_NAME_BYTES} bytes`)
      .default("activeblaze"),
    name: z.string().max(255).default(""),
    network: z.discriminatedUnion("type", [multicastNetwork, staticNetwork]).prefault({ type: "multicast" }),
    reliability: z.enum(["best-effort", "nack", "totem", "fec"]).default("nack"),
    heartbeatIntervalMs: ms.default(1_000),
    peerTimeoutMs: ms.default(10_000),
    maxMessageBytes: z.number().int().positive().max(2 ** 31 - 1).default(16 * 1024 * 1024),
    maxDatagramBytes: z.number().int().min(1_024).max(MAX_DATAGRAM_BYTES).default(MAX_DATAGRAM_BYTES),
    loopback: z.boolean().default(true),
    socketBufferBytes: z.number().int().min(65_536).default(4 * 1024 * 1024),
    maxPeers: z.number().int().min(1).max(65_536).default(1_024),
    incarnation: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
    nack: nackOptions.prefault({}),
    totem: totemOptionsSchema.prefault({}),
    fec: fecOptionsSchema.prefault({}),
    transport: z.custom<TransportFactory>((value) => typeof value === "function", "expected a TransportFactory").optional(),
    resolver: z.custom<HostResolver>((value) => typeof value === "function", "expected a HostResolver").optional(),
    logger: z.custom<Logger>((value) => typeof value === "function", "expected a Logger (a function taking a log entry)").optional(),
    metrics: z
      .custom<Metrics>((value) => typeof (value as Metrics)?.count === "function" && typeof (value as Metrics)?.record === "function", "expected Metrics (count and record)")
      .optional(),
    diagnostics: z.boolean().default(true),
    clock: z.custom<Clock>((value) => typeof (value as Clock)?.setTimer === "function", "expected a Clock").optional(),
    random: z.custom<RandomSource>((value) => typeof (value as RandomSource)?.next === "function", "expected a RandomSource").optional(),
});

/** The zod schema of {@link ChannelOptions}; every default is documented there. */
export const channelOptionsSchema: z.ZodType<ResolvedChannelOptions, ChannelOptions> = channelOptionFields
  .refine((options) => options.peerTimeoutMs > options.heartbeatIntervalMs, {
    message: "peerTimeoutMs must be longer than heartbeatIntervalMs",
    path: ["peerTimeoutMs"],
  })
  .refine((options) => options.nack.nackDelayMaxMs >= options.nack.nackDelayMinMs, {
    message: "nackDelayMaxMs must be at least nackDelayMinMs",
    path: ["nack", "nackDelayMaxMs"],
  });

/**
 * Options of {@link createChannel}. Every field is optional.
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `cluster` | name | `"activeblaze"` | members of other clusters are ignored (their datagrams counted as WRONG_CLUSTER) |
 * | `name` | text | `""` | this member's name, for people |
 * | `network` | | multicast 239.255.42.99:45588 on 127.0.0.1, TTL 1 | `{ type: "multicast", group, port, interface, ttl }` or `{ type: "static", peers: ["host:port", "[ipv6]:port", "dns:name:port", …], bindAddress, port }` |
 * | `reliability` | | `"nack"` | `"nack"` (exactly once, in order per sender) or `"best-effort"` |
 * | `heartbeatIntervalMs` | ms | 1000 | how often a member says it is alive (and what it has received) |
 * | `peerTimeoutMs` | ms | 10000 | a peer silent this long is dropped |
 * | `maxMessageBytes` | bytes | 16 MiB | larger messages are refused with MESSAGE_TOO_LARGE |
 * | `maxDatagramBytes` | bytes | 65507 | the largest datagram sent; bundles and fragments fill up to it |
 * | `loopback` | boolean | true | deliver this member's own broadcasts to its own listeners |
 * | `socketBufferBytes` | bytes | 4 MiB | socket receive and send buffer size requested (the OS may cap it; Bun and Deno keep their own) |
 * | `maxPeers` | peers | 1024 | most peers at once; a new sender proven while the table is full is not admitted (counted) |
 * | `incarnation` | number | wall-clock ms at creation | grows on every `start()`; set it to restart with a fixed identity |
 * | `nack` | | see {@link NackOptions} | tuning of the NACK protocol |
 * | `transport` | | the running runtime's UDP adapter | how sockets are opened (the simulated network's factory in tests) |
 * | `resolver` | | the system's (`/etc/hosts`, DNS) | resolves the host names among static peers |
 * | `logger` | function | none (unhandled failures go to the console) | takes this member's log: every background failure, and what an operator wants to know (see {@link Logger}) |
 * | `metrics` | | none | where counters and durations go (see {@link Metrics}; `activeblaze/otel` for OpenTelemetry) |
 * | `diagnostics` | boolean | `true` | answer diagnostics requests (`blaze probe`, the dashboard) from peers and from askers that answer admission challenges |
 * | `clock`, `random` | | the system's | injected time and randomness (virtual in tests) |
 */
export interface ChannelOptions {
  readonly cluster?: string | undefined;
  readonly name?: string | undefined;
  readonly network?: MulticastNetworkOptions | StaticNetworkOptions | undefined;
  readonly reliability?: "best-effort" | "nack" | "totem" | "fec" | undefined;
  readonly heartbeatIntervalMs?: number | undefined;
  readonly peerTimeoutMs?: number | undefined;
  readonly maxMessageBytes?: number | undefined;
  readonly maxDatagramBytes?: number | undefined;
  readonly loopback?: boolean | undefined;
  readonly socketBufferBytes?: number | undefined;
  readonly maxPeers?: number | undefined;
  readonly incarnation?: number | undefined;
  readonly nack?: Partial<NackOptions> | undefined;
  readonly totem?: Partial<TotemOptions> | undefined;
  readonly fec?: Partial<FecOptions> | undefined;
  readonly transport?: TransportFactory | undefined;
  readonly resolver?: HostResolver | undefined;
  readonly logger?: Logger | undefined;
  readonly metrics?: Metrics | undefined;
  readonly diagnostics?: boolean | undefined;
  readonly clock?: Clock | undefined;
  readonly random?: RandomSource | undefined;
}

/** A multicast network (the default): members find each other on a group; its defaults are on {@link ChannelOptions}. */
export interface MulticastNetworkOptions {
  readonly type: "multicast";
  /** Multicast group address. Default "239.255.42.99". */
  readonly group?: string | undefined;
  /** Group port. Default 45588. */
  readonly port?: number | undefined;
  /** Interface address for multicast. Default "127.0.0.1" (loopback: traffic stays on the host). */
  readonly interface?: string | undefined;
  /** Multicast time to live in hops. Default 1. */
  readonly ttl?: number | undefined;
}

/** A static list of peers, for networks without multicast. */
export interface StaticNetworkOptions {
  readonly type: "static";
  /** Members' unicast addresses: "host:port", "[ipv6]:port", "name:port" or "dns:name:port" (every address of the name). */
  readonly peers: readonly string[];
  /** Address to bind: IPv4, or IPv6 to reach IPv6 peers. Default "127.0.0.1". */
  readonly bindAddress?: string | undefined;
  /** Port to bind: this member's entry in `peers`. */
  readonly port: number;
}

/** {@link ChannelOptions} with their defaults filled in, static peers parsed. */
export interface ResolvedChannelOptions {
  readonly cluster: string;
  readonly name: string;
  readonly network:
    | { readonly type: "multicast"; readonly group: string; readonly port: number; readonly interface: string; readonly ttl: number }
    | { readonly type: "static"; readonly peers: readonly Seed[]; readonly bindAddress: string; readonly port: number };
  readonly reliability: "best-effort" | "nack" | "totem" | "fec";
  readonly heartbeatIntervalMs: number;
  readonly peerTimeoutMs: number;
  readonly maxMessageBytes: number;
  readonly maxDatagramBytes: number;
  readonly loopback: boolean;
  readonly socketBufferBytes: number;
  readonly maxPeers: number;
  readonly incarnation?: number | undefined;
  readonly nack: NackOptions;
  readonly totem: TotemOptions;
  readonly fec: FecOptions;
  readonly transport?: TransportFactory | undefined;
  readonly resolver?: HostResolver | undefined;
  readonly logger?: Logger | undefined;
  readonly metrics?: Metrics | undefined;
  readonly diagnostics: boolean;
  readonly clock?: Clock | undefined;
  readonly random?: RandomSource | undefined;
}

export function resolveChannelOptions(options: ChannelOptions | undefined): ResolvedChannelOptions {
  return parseOptions(channelOptionsSchema, options, "channel");
}
