import * as z from "zod";
import { documented } from "../options-doc.ts";
import { parseOptions } from "../options.ts";
import { DEFAULT_NACK_OPTIONS } from "../reliable/nack/nack-protocol.ts";
import { fecOptionsSchema } from "../reliable/fec/options.ts";
import { totemOptionsSchema } from "../reliable/totem/options.ts";
import { securityOptionsSchema } from "../security/options.ts";
import type { Clock, RandomSource } from "../transport/clock.ts";
import type { Address, TransportFactory } from "../transport/transport.ts";
import { MAX_CLUSTER_NAME_BYTES, MAX_DATAGRAM_BYTES } from "../wire/limits.ts";
import { web } from "../web.ts";

const ms = z.number().int().positive();
const port = z.number().int().min(1).max(65_535);
const ipv4 = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, "expected an IPv4 address");
const multicastGroup = ipv4.refine((group) => {
  const first = Number(group.split(".")[0]);
  return first >= 224 && first <= 239;
}, "expected an IPv4 multicast address (224.0.0.0 to 239.255.255.255)");

const hostPort = z
  .string()
  .regex(/^[^:\s]+:\d{1,5}$/, 'expected "host:port"')
  .transform((text): Address => {
    const at = text.lastIndexOf(":");
    return { host: text.slice(0, at), port: Number(text.slice(at + 1)) };
  })
  .refine((address) => address.port >= 1 && address.port <= 65_535, "port must be from 1 to 65535");

const multicastNetwork = z.strictObject({
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

const staticNetwork = z.strictObject({
  type: z.literal("static"),
  /** Every member's unicast address as "host:port" (this member's own is skipped when sending). */
  peers: z.array(hostPort).min(1),
  /** Address to bind. Default "127.0.0.1". */
  bindAddress: z.string().min(1).default("127.0.0.1"),
  /** Port to bind: this member's entry in `peers`. */
  port,
});

const d = documented;
const N = DEFAULT_NACK_OPTIONS;

/** The zod schema of the NACK options (`nack: { … }`), each documented for the README's table. */
export const nackOptionsSchema = z.strictObject({
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
  nackDelayMaxMs: d(z.number().min(0).default(N.nackDelayMaxMs), { unit: "ms", description: "…and at most this" }),
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
    description: "a message is not retransmitted twice within this time: the first receiver asking gets it alone, a second one asking makes it go to everyone",
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

/** The zod schema of {@link ChannelOptions}, each option documented for the README's table. */
export const channelOptionsSchema = z
  .strictObject({
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
        '`{ type: "multicast", group: "239.255.42.99", port: 45588, interface: "127.0.0.1", ttl: 1 }`, or `{ type: "static", peers: ["host:port", …], bindAddress: "127.0.0.1", port }` for networks without multicast: the peers are seeds, and members heard from are reached too',
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
    clock: d(z.custom<Clock>((value) => typeof (value as Clock)?.setTimer === "function", "expected a Clock").optional(), {
      defaultText: "the system's",
      description: "injected time (virtual in tests)",
    }),
    random: d(z.custom<RandomSource>((value) => typeof (value as RandomSource)?.next === "function", "expected a RandomSource").optional(), {
      defaultText: "the system's",
      description: "injected randomness (seeded in tests)",
    }),
  })
  .refine((options) => options.peerTimeoutMs > options.heartbeatIntervalMs, {
    message: "peerTimeoutMs must be longer than heartbeatIntervalMs",
    path: ["peerTimeoutMs"],
  })
  .refine((options) => options.nack.nackDelayMaxMs >= options.nack.nackDelayMinMs, {
    message: "nackDelayMaxMs must be at least nackDelayMinMs",
    path: ["nack", "nackDelayMaxMs"],
  });

/** Options of {@link createChannel}. Every field is optional; the README's "Channel options" table documents each (made from the schema above). */
export type ChannelOptions = z.input<typeof channelOptionsSchema>;
export type ResolvedChannelOptions = z.output<typeof channelOptionsSchema>;

export function resolveChannelOptions(options: ChannelOptions | undefined): ResolvedChannelOptions {
  return parseOptions(channelOptionsSchema, options, "channel");
}
