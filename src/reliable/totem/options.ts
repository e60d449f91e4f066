import * as z from "zod";
import { documented } from "../../options-doc.ts";

const ms = z.number().int().positive().max(3_600_000);
const count = z.number().int().positive().max(1 << 24);

/** Defaults of {@link TotemOptions}; the table in the README repeats them. */
export const DEFAULT_TOTEM_OPTIONS: TotemOptions = {
  tokenTimeoutMs: 1_000,
  tokenRetransmitMs: 50,
  tokenHoldMs: 5,
  joinIntervalMs: 50,
  consensusTimeoutMs: 1_200,
  windowMessages: 16_384,
  maxMessagesPerVisit: 4_096,
  maxBytesPerVisit: 4 * 1024 * 1024,
  maxRetransmitRequests: 1_024,
  queueMessages: 65_536,
  queueBytes: 2 * 1024 * 1024,
  delivery: "agreed",
};

const d = documented;
const T = DEFAULT_TOTEM_OPTIONS;

/** Tuning of the Totem single-ring protocol (`reliability: "totem"`), each option documented for the README's table. */
export const totemOptionsSchema: z.ZodType<TotemOptions, Partial<TotemOptions>> = z
  .strictObject({
    delivery: d(z.enum(["agreed", "safe"]).default(T.delivery), {
      description:
        'with `reliability: "totem"`: `"agreed"` delivers in the total order as soon as every earlier message is delivered; `"safe"` also waits until every ring member holds the message. `broadcast(topic, message, { safe })` chooses per message',
    }),
    tokenTimeoutMs: d(ms.default(T.tokenTimeoutMs), {
      unit: "ms",
      description:
        "no token for this long: the ring is lost and formed again. A rotation must fit in it, including the time one visit's bytes (`maxBytesPerVisit`) take on the slowest link: lower that, or raise this, on slow links",
    }),
    tokenRetransmitMs: d(ms.default(T.tokenRetransmitMs), {
      unit: "ms",
      description:
        "a token passed on is sent again when it has not come back within 1.5 times the time it took lately (at least this long, at most a quarter of `tokenTimeoutMs`): on an idle ring of many members a rotation takes longer than this",
    }),
    tokenHoldMs: d(z.number().min(0).max(60_000).default(T.tokenHoldMs), {
      unit: "ms",
      description: "on an idle ring each holder keeps the token this long (a send passes it on at once)",
    }),
    joinIntervalMs: d(ms.default(T.joinIntervalMs), { unit: "ms", description: "while a ring forms, joins are repeated this often" }),
    consensusTimeoutMs: d(ms.default(T.consensusTimeoutMs), {
      unit: "ms",
      description:
        "a member not heard at all for this long while a ring forms is left out of it, whatever it said before; one that hears none of the others waits twice as long before it forms a ring alone. 1.2 × `tokenTimeoutMs`, as in Corosync, keeps a member that is slow for a moment (a flood, a pause) in the ring",
    }),
    windowMessages: d(count.default(T.windowMessages), { unit: "messages", description: "most messages (new and retransmitted) the whole ring sends in one token rotation" }),
    maxMessagesPerVisit: d(count.default(T.maxMessagesPerVisit), { unit: "messages", description: "most new messages one member sends per token visit" }),
    maxBytesPerVisit: d(z.number().int().min(1_024).default(T.maxBytesPerVisit), { unit: "bytes", defaultText: "4 MiB", description: "most payload bytes one member sends per token visit" }),
    maxRetransmitRequests: d(z.number().int().positive().max(65_536).default(T.maxRetransmitRequests), {
      unit: "messages",
      description: "most missing messages the token asks for at once",
    }),
    queueMessages: d(count.default(T.queueMessages), { unit: "messages", description: "most messages waiting for the token; past it `broadcast` waits for room" }),
    queueBytes: d(z.number().int().min(1_024).default(T.queueBytes), { unit: "bytes", defaultText: "2 MiB", description: "most bytes waiting for the token" }),
  })
  .refine((options) => options.tokenTimeoutMs > options.tokenRetransmitMs, {
    message: "tokenTimeoutMs must be longer than tokenRetransmitMs",
    path: ["tokenTimeoutMs"],
  })
  .refine((options) => options.tokenRetransmitMs > options.tokenHoldMs, {
    message: "tokenRetransmitMs must be longer than tokenHoldMs",
    path: ["tokenRetransmitMs"],
  })
  .refine((options) => options.consensusTimeoutMs > options.joinIntervalMs, {
    message: "consensusTimeoutMs must be longer than joinIntervalMs",
    path: ["consensusTimeoutMs"],
  })
  .refine((options) => options.windowMessages >= options.maxMessagesPerVisit, {
    message: "windowMessages must be at least maxMessagesPerVisit",
    path: ["windowMessages"],
  });

export interface TotemOptions {
  readonly tokenTimeoutMs: number;
  readonly tokenRetransmitMs: number;
  readonly tokenHoldMs: number;
  readonly joinIntervalMs: number;
  readonly consensusTimeoutMs: number;
  readonly windowMessages: number;
  readonly maxMessagesPerVisit: number;
  readonly maxBytesPerVisit: number;
  readonly maxRetransmitRequests: number;
  readonly queueMessages: number;
  readonly queueBytes: number;
  readonly delivery: "agreed" | "safe";
}
