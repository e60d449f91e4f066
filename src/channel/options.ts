import * as z from "zod";
import { documented } from "../options-doc.ts";
import { parseOptions } from "../options.ts";
import { DEFAULT_NACK_OPTIONS, type NackOptions } from "../reliable/nack/nack-protocol.ts";
import { type FecOptions, fecOptionsSchema } from "../reliable/fec/options.ts";
import { type TotemOptions, totemOptionsSchema } from "../reliable/totem/options.ts";
import { type ResolvedSecurityOptions, type SecurityOptions, securityOptionsSchema } from "../security/options.ts";
import type { Clock, RandomSource } from "../transport/clock.ts";
import type { Logger } from "../diagnostics/logger.ts";
import type { Metrics } from "../diagnostics/metrics.ts";
import { familyOf, type HostResolver, isIpLiteral, isMulticastV6, parseSeed, type Seed } from "../transport/host-names.ts";
import type { TransportFactory } from "../transport/transport.ts";
import { MAX_CLUSTER_NAME_BYTES, MAX_DATAGRAM_BYTES } from "../wire/limits.ts";
import { web } from "../web.ts";

const ms = z.number().int().positive();
const port = z.number().int().min(1).max(65_535);
const ipv4 = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, "expected an IPv4 address");
const multicastGroup = z.string().refine((group) => {
  if (isMulticastV6(group)) return true;
  const first = Number(group.split(".")[0]);
  return ipv4.safeParse(group).success && first >= 224 && first <= 239;
}, "expected a multicast address: IPv4 224.0.0.0 to 239.255.255.255, or IPv6 ff00::/8");
/** A network interface's name, as Linux allows them (at most 15 characters). */
const INTERFACE_NAME = /^[\w.-]{1,15}$/;

// An address, a host name or "dns:" a name (host-names.ts); names are resolved at init(), never from datagrams.
const seed = z.string().transform((text, context): Seed => {
  const parsed = parseSeed(text);
  if (typeof parsed === "string") context.addIssue({ code: "custom", message: parsed });
  return parsed as Seed;
});

/** A channel's multicast network (`network: { type: "multicast", … }`). */
export const multicastNetwork = z
  .strictObject({
    type: z.literal("multicast"),
    /** Multicast group address, IPv4 or IPv6. Default "239.255.42.99". */
    group: multicastGroup.default("239.255.42.99"),
    /** Group port. Default 45588 (as JGroups). */
    port: port.default(45_588),
    /**
     * The interface for multicast: for an IPv4 group its IPv4 address, default "127.0.0.1" (loopback: no
     * configuration, traffic stays on the host); for an IPv6 group its name ("eth0") or one of its IPv6
     * addresses, no default (Linux's loopback carries no IPv6 multicast).
     */
    interface: z.string().min(1).optional(),
    /** Multicast time to live in hops. Default 1. */
    ttl: z.number().int().min(0).max(255).default(1),
  })
  .transform((network, context) => {
    const iface = network.interface ?? (isMulticastV6(network.group) ? undefined : "127.0.0.1");
    const fault = interfaceFault(network.group, iface);
    if (fault !== undefined) {
      context.addIssue({ code: "custom", message: fault, path: ["interface"] });
      return z.NEVER;
    }
    return { ...network, interface: iface! };
  });

// What is wrong with a multicast network's interface, given its group's family; undefined when nothing.
function interfaceFault(group: string, iface: string | undefined): string | undefined {
  if (!isMulticastV6(group)) return iface !== undefined && ipv4.safeParse(iface).success ? undefined : "expected an IPv4 address (the group is IPv4)";
  if (iface === undefined) return 'an IPv6 group needs an interface: its name ("eth0") or one of its IPv6 addresses';
  if (isIpLiteral(iface)) return familyOf(iface) === 6 ? undefined : "expected an IPv6 address or an interface name (the group is IPv6)";
  return INTERFACE_NAME.test(iface) ? undefined : "expected an interface name or an IPv6 address";
}

/**
 * Where a multicast member's sockets bind: the sending one to the interface's address (for an
 * interface given by name, to every IPv6 address: the interface is chosen by scope), the listening one
 * to every address of the group's family.
 */
export function multicastBindings(network: { readonly group: string; readonly interface: string }): { readonly sender: string; readonly listener: string } {
  if (!isMulticastV6(network.group)) return { sender: network.interface, listener: "0.0.0.0" };
  return { sender: isIpLiteral(network.interface) ? network.interface : "::", listener: "::" };
}

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

const d = documented;
const N = DEFAULT_NACK_OPTIONS;

/** The zod schema of the NACK options (`nack: { … }`), each documented for the README's table. */
export const nackOptionsSchema: z.ZodType<NackOptions, Partial<NackOptions>> = z.strictObject({
  windowMessages: d(z.number().int().min(16).max(1 << 22).default(N.windowMessages), {
    unit: "messages",
    description: "most messages in flight (sent, not yet received by every receiver)",
  }),
  windowBytes: d(z.number().int().min(64 * 1024).default(N.windowBytes), {
    unit: "bytes",
    defaultText: "4 MiB",
    description: "most bytes in flight; up to 4 windows are kept for retransmission while gaps are repaired, and a receiver holds at most as much of one sender out of order",
  }),
  nackDelayMinMs: d(z.number().min(0).default(N.nackDelayMinMs), { unit: "ms", description: "a gap is NACKed after a random delay of at least this…" }),
  nackDelayMaxMs: d(z.number().min(0).default(N.nackDelayMaxMs), { unit: "ms", description: "…and at most this (a loss shared in a group of more than four: the range widens by half the log2 of the group's size, and most delays fall late in it)" }),
  nackRetryMs: d(ms.default(N.nackRetryMs), {
    unit: "ms",
    description: "an unanswered NACK is repeated after this long, the wait doubling up to `nackRetryMaxMs` (so is the start a joiner is told, until it acknowledges)",
  }),
  nackRetryMaxMs: d(ms.default(N.nackRetryMaxMs), { unit: "ms", description: "the longest wait between repeated NACKs" }),
  maxNackSeqs: d(z.number().int().min(1).max(65_536).default(N.maxNackSeqs), {
    unit: "messages",
    description: "most sequence numbers one NACK asks for (and one NACK gets repaired)",
  }),
  retransmitHoldoffMs: d(z.number().min(0).default(N.retransmitHoldoffMs), {
    unit: "ms",
    description: "a message is not retransmitted twice within this time: the first receiver asking gets it alone (or everyone, when its NACK says its losses are mostly shared), a second one asking makes it go to everyone",
  }),
  ackThreshold: d(z.number().int().min(1).default(N.ackThreshold), { unit: "messages", description: "a receiver acknowledges after this many messages received…" }),
  ackThresholdBytes: d(z.number().int().min(1).default(N.ackThresholdBytes), { unit: "bytes", defaultText: "512 KiB", description: "…or this many bytes…" }),
  ackDelayMs: d(ms.default(N.ackDelayMs), { unit: "ms", description: "…or this long after the first unacknowledged message" }),
  receiverTimeoutMs: d(ms.default(N.receiverTimeoutMs), {
    unit: "ms",
    description: "a receiver silent this long stops holding the sender back (`receiverUnresponsive`)",
  }),
  tailAnnounceMs: d(ms.default(N.tailAnnounceMs), { unit: "ms", description: "after its last send, a sender announces its highest sequence number after this long, backing off…" }),
  tailAnnounceMaxMs: d(ms.default(N.tailAnnounceMaxMs), { unit: "ms", description: "…to at most this" }),
});

/** The fields of a channel's options, each with its check, default and documentation (the README's table; the probe takes some of them). */
export const channelOptionFields = z.strictObject({
    cluster: d(
      z
        .string()
        .min(1)
        .refine((name) => new web.TextEncoder().encode(name).length <= MAX_CLUSTER_NAME_BYTES, `at most ${MAX_CLUSTER_NAME_BYTES} bytes`)
        .default("activeblaze"),
      { unit: "name", description: "members of other clusters are ignored (counted as `WRONG_CLUSTER`)" },
    ),
    name: d(z.string().max(255).default(""), { unit: "text", description: "this member's name" }),
    network: d(z.discriminatedUnion("type", [multicastNetwork, staticNetwork]).prefault({ type: "multicast" }), {
      defaultText: "multicast",
      description:
        '`{ type: "multicast", group: "239.255.42.99", port: 45588, interface: "127.0.0.1", ttl: 1 }` (an IPv6 group such as `"ff15::1234"` with an interface name or IPv6 address), or `{ type: "static", peers: ["host:port", …], bindAddress: "127.0.0.1", port }` for networks without multicast: the peers are seeds, and members heard from are reached too',
    }),
    reliability: d(z.enum(["best-effort", "nack", "totem", "fec"]).default("nack"), {
      description: '`"nack"`, `"best-effort"`, `"totem"` (total order) or `"fec"`',
    }),
    heartbeatIntervalMs: d(ms.default(1_000), { unit: "ms", description: "how often a member announces itself and what it has received" }),
    peerTimeoutMs: d(ms.default(10_000), { unit: "ms", description: "a peer silent this long is dropped (`peerDown`, reason `timeout`)" }),
    maxMessageBytes: d(z.number().int().positive().max(2 ** 31 - 1).default(16 * 1024 * 1024), {
      unit: "bytes",
      defaultText: "16 MiB",
      description: "larger messages are refused with `MESSAGE_TOO_LARGE`",
    }),
    maxDatagramBytes: d(z.number().int().min(1_024).max(MAX_DATAGRAM_BYTES).default(MAX_DATAGRAM_BYTES), { unit: "bytes", description: "largest datagram sent" }),
    loopback: d(z.boolean().default(true), { unit: "boolean", description: "deliver a member's own broadcasts to its own listeners" }),
    socketBufferBytes: d(z.number().int().min(65_536).default(4 * 1024 * 1024), {
      unit: "bytes",
      defaultText: "4 MiB",
      description: "socket buffers requested (the OS may cap them)",
    }),
    maxPeers: d(z.number().int().min(1).max(65_536).default(1_024), {
      unit: "peers",
      description: "most peers at once; a new sender proven while the table is full is not admitted (counted in `stats.network.peerTableFull`)",
    }),
    incarnation: d(z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(), {
      unit: "number",
      defaultText: "wall-clock ms",
      description: "this member's incarnation; grows by one on every restart",
    }),
    nack: nackOptionsSchema.prefault({}),
    totem: totemOptionsSchema.prefault({}),
    fec: fecOptionsSchema.prefault({}),
    security: d(securityOptionsSchema.optional(), {
      defaultText: "none (datagrams in clear)",
      description: "keys, seal mode and limits of authenticated, encrypted datagrams: see [Security](#security)",
    }),
    transport: d(z.custom<TransportFactory>((value) => typeof value === "function", "expected a TransportFactory").optional(), {
      defaultText: "the runtime's adapter",
      description: "how sockets are opened (the simulated network's factory in tests)",
    }),
    resolver: d(z.custom<HostResolver>((value) => typeof value === "function", "expected a HostResolver").optional(), {
      defaultText: "the system's (`/etc/hosts`, DNS)",
      description: "resolves the host names among static peers (never a name read from a datagram)",
    }),
    logger: d(z.custom<Logger>((value) => typeof value === "function", "expected a Logger (a function taking a log entry)").optional(), {
      unit: "function",
      defaultText: "none (unhandled failures go to the console)",
      description: "takes this member's log: every background failure, and what an operator wants to know (see [Seeing a cluster](#seeing-a-cluster))",
    }),
    metrics: d(
      z
        .custom<Metrics>((value) => typeof (value as Metrics)?.count === "function" && typeof (value as Metrics)?.record === "function", "expected Metrics (count and record)")
        .optional(),
      { defaultText: "none", description: "where counters and durations go (`activeblaze/otel` for OpenTelemetry)" },
    ),
    diagnostics: d(z.boolean().default(true), {
      unit: "boolean",
      description: "answer diagnostics requests (`blaze probe`, the dashboard) from peers and from askers that answer admission challenges",
    }),
    clock: d(z.custom<Clock>((value) => typeof (value as Clock)?.setTimer === "function", "expected a Clock").optional(), {
      defaultText: "the system's",
      description: "injected time (virtual in tests)",
    }),
    random: d(z.custom<RandomSource>((value) => typeof (value as RandomSource)?.next === "function", "expected a RandomSource").optional(), {
      defaultText: "the system's",
      description: "injected randomness (seeded in tests)",
    }),
});

/** The zod schema of {@link ChannelOptions}. */
export const channelOptionsSchema: z.ZodType<ResolvedChannelOptions, ChannelOptions> = channelOptionFields
  .refine((options) => options.peerTimeoutMs > options.heartbeatIntervalMs, {
    message: "peerTimeoutMs must be longer than heartbeatIntervalMs",
    path: ["peerTimeoutMs"],
  })
  .refine((options) => options.nack.nackDelayMaxMs >= options.nack.nackDelayMinMs, {
    message: "nackDelayMaxMs must be at least nackDelayMinMs",
    path: ["nack", "nackDelayMaxMs"],
  });

/** Options of {@link createChannel}. Every field is optional; the README's "Channel options" table documents each (made from the schema above). */
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
  readonly security?: SecurityOptions | undefined;
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
  /** Multicast group address: IPv4 (224.0.0.0/4) or IPv6 (ff00::/8, e.g. "ff15::1234"). Default "239.255.42.99". */
  readonly group?: string | undefined;
  /** Group port. Default 45588. */
  readonly port?: number | undefined;
  /**
   * The interface for multicast: for an IPv4 group its IPv4 address, default "127.0.0.1" (loopback:
   * traffic stays on the host); for an IPv6 group its name ("eth0") or one of its IPv6 addresses, required.
   */
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
  readonly security?: ResolvedSecurityOptions | undefined;
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
