import * as z from "zod";
import type { ClusterChannel } from "../cluster/cluster-channel.ts";
import type { ClusterChannelOptions } from "../cluster/options.ts";
import { parseOptions } from "../options.ts";
import type { Clock } from "../transport/clock.ts";

const ms = z.number().int().positive();

/** The zod schema of {@link ConnectionFactoryOptions}; every default is documented there. */
export const connectionFactoryOptionsSchema: z.ZodType<ResolvedFactoryOptions, ConnectionFactoryOptions> = z.strictObject({
  channel: z.custom<ClusterChannel>((value) => typeof value === "object" && value !== null && "map" in value && "join" in value, "expected a ClusterChannel").optional(),
  cluster: z.custom<ClusterChannelOptions>((value) => typeof value === "object" && value !== null, "expected cluster channel options").optional(),
  clock: z.custom<Clock>((value) => typeof value === "object" && value !== null && "now" in value && "setTimer" in value, "expected a Clock").optional(),
  prefetch: z.number().int().min(1).max(65_535).default(1000),
  maxRedeliveries: z.number().int().min(-1).default(6),
  deadLetterQueue: z.string().min(1).max(255).default("DLQ"),
  maxQueueMessages: z.number().int().min(1).default(100_000),
  sendTimeoutMs: ms.default(10_000),
  requestTimeoutMs: ms.default(10_000),
  maxBufferedMessages: z.number().int().min(1).default(10_000),
});

/**
 * Options of a connection factory (`createConnectionFactory`).
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `channel` | | a new one | a cluster channel to build on (joined by the caller); without it the factory creates and joins its own from `cluster` |
 * | `cluster` | | `{}` | options of the cluster channel the factory creates (ignored with `channel`) |
 * | `clock` | | the system's | the clock of the channel (a simulated one in tests) |
 * | `prefetch` | messages | `1000` | default of a queue consumer's prefetch: most messages given to it and not yet acknowledged (ActiveMQ's queue prefetch) |
 * | `maxRedeliveries` | deliveries | `6` | a queue message delivered more than 1 + this many times goes to the dead-letter queue; `-1`: never (ActiveMQ's default policy) |
 * | `deadLetterQueue` | name | `"DLQ"` | where such messages go, with the property `JMSX_OriginalDestination` |
 * | `maxQueueMessages` | messages | `100000` | most messages one queue holds; a send past it fails with `QUEUE_FULL` |
 * | `sendTimeoutMs` | ms | `10000` | a queue send or a commit not replicated by then fails with `TIMEOUT` |
 * | `requestTimeoutMs` | ms | `10000` | default timeout of `request` |
 * | `maxBufferedMessages` | messages | `10000` | most topic messages a consumer holds undelivered; a slower consumer loses the oldest (counted in `stats.slowConsumerDropped`) |
 */
export interface ConnectionFactoryOptions {
  readonly channel?: ClusterChannel | undefined;
  readonly cluster?: ClusterChannelOptions | undefined;
  readonly clock?: Clock | undefined;
  readonly prefetch?: number | undefined;
  readonly maxRedeliveries?: number | undefined;
  readonly deadLetterQueue?: string | undefined;
  readonly maxQueueMessages?: number | undefined;
  readonly sendTimeoutMs?: number | undefined;
  readonly requestTimeoutMs?: number | undefined;
  readonly maxBufferedMessages?: number | undefined;
}

/** {@link ConnectionFactoryOptions} with their defaults filled in. */
export interface ResolvedFactoryOptions {
  readonly channel?: ClusterChannel | undefined;
  readonly cluster?: ClusterChannelOptions | undefined;
  readonly clock?: Clock | undefined;
  readonly prefetch: number;
  readonly maxRedeliveries: number;
  readonly deadLetterQueue: string;
  readonly maxQueueMessages: number;
  readonly sendTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxBufferedMessages: number;
}

export function resolveFactoryOptions(options: ConnectionFactoryOptions | undefined): ResolvedFactoryOptions {
  return parseOptions(connectionFactoryOptionsSchema, options, "jms");
}

/** How a context acknowledges what it consumes (JMS's session modes; INDIVIDUAL as in ActiveMQ). */
export const SessionMode = {
  AUTO_ACKNOWLEDGE: "AUTO_ACKNOWLEDGE",
  CLIENT_ACKNOWLEDGE: "CLIENT_ACKNOWLEDGE",
  DUPS_OK_ACKNOWLEDGE: "DUPS_OK_ACKNOWLEDGE",
  INDIVIDUAL_ACKNOWLEDGE: "INDIVIDUAL_ACKNOWLEDGE",
  SESSION_TRANSACTED: "SESSION_TRANSACTED",
} as const;
export type SessionMode = (typeof SessionMode)[keyof typeof SessionMode];

export const contextOptionsSchema: z.ZodType<ResolvedContextOptions, ContextOptions> = z.strictObject({
  sessionMode: z.enum(Object.values(SessionMode) as [SessionMode, ...SessionMode[]]).default("AUTO_ACKNOWLEDGE"),
  clientId: z.string().max(255).optional(),
  autoStart: z.boolean().default(true),
});

/**
 * Options of a context (`factory.createContext`).
 *
 * | option | default | meaning |
 * | --- | --- | --- |
 * | `sessionMode` | `"AUTO_ACKNOWLEDGE"` | `AUTO_ACKNOWLEDGE`, `CLIENT_ACKNOWLEDGE`, `DUPS_OK_ACKNOWLEDGE`, `INDIVIDUAL_ACKNOWLEDGE` or `SESSION_TRANSACTED` |
 * | `clientId` | none | the client id (informational; JMS uses it for durable subscriptions, which are a later step) |
 * | `autoStart` | `true` | start delivery when the first consumer is created |
 */
export interface ContextOptions {
  readonly sessionMode?: SessionMode | undefined;
  readonly clientId?: string | undefined;
  readonly autoStart?: boolean | undefined;
}

/** {@link ContextOptions} with their defaults filled in. */
export interface ResolvedContextOptions {
  readonly sessionMode: SessionMode;
  readonly clientId?: string | undefined;
  readonly autoStart: boolean;
}

export function resolveContextOptions(options: ContextOptions | undefined): ResolvedContextOptions {
  return parseOptions(contextOptionsSchema, options, "context");
}

export const consumerOptionsSchema: z.ZodType<ResolvedConsumerOptions, ConsumerOptions> = z.strictObject({
  selector: z.string().optional(),
  noLocal: z.boolean().default(false),
  prefetch: z.number().int().min(1).max(65_535).optional(),
});

/** Options of a consumer: a JMS selector, `noLocal` (topics: skip this context's own messages), `prefetch` (queues). */
export interface ConsumerOptions {
  readonly selector?: string | undefined;
  readonly noLocal?: boolean | undefined;
  readonly prefetch?: number | undefined;
}

/** {@link ConsumerOptions} with their defaults filled in. */
export interface ResolvedConsumerOptions {
  readonly selector?: string | undefined;
  readonly noLocal: boolean;
  readonly prefetch?: number | undefined;
}

export function resolveConsumerOptions(options: ConsumerOptions | undefined): ResolvedConsumerOptions {
  return parseOptions(consumerOptionsSchema, options, "consumer");
}
