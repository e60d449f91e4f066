import * as z from "zod";

const ms = z.number().int().positive().max(3_600_000);
const count = z.number().int().positive().max(1 << 24);

/** Defaults of {@link TotemOptions}; the table in the README repeats them. */
export const DEFAULT_TOTEM_OPTIONS: TotemOptions = {
  tokenTimeoutMs: 1_000,
  tokenRetransmitMs: 50,
  tokenHoldMs: 5,
  joinIntervalMs: 50,
  consensusTimeoutMs: 200,
  windowMessages: 16_384,
  maxMessagesPerVisit: 4_096,
  maxBytesPerVisit: 4 * 1024 * 1024,
  maxRetransmitRequests: 1_024,
  queueMessages: 65_536,
  queueBytes: 2 * 1024 * 1024,
  delivery: "agreed",
};

/**
 * Tuning of the Totem single-ring protocol (`reliability: "totem"`). Every duration is in milliseconds.
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `tokenTimeoutMs` | ms | 1000 | no token for this long: the ring is lost and formed again |
 * | `tokenRetransmitMs` | ms | 50 | a token passed on is sent again after this long while the ring shows no sign of it |
 * | `tokenHoldMs` | ms | 5 | on an idle ring each holder keeps the token this long before passing it (less idle traffic; a send passes it at once) |
 * | `joinIntervalMs` | ms | 50 | while a ring forms, a member repeats its join this often |
 * | `consensusTimeoutMs` | ms | 200 | a member that sends no join for this long while a ring forms is left out of it |
 * | `windowMessages` | messages | 16384 | most messages (new and retransmitted) the whole ring sends in one token rotation |
 * | `maxMessagesPerVisit` | messages | 4096 | most new messages one member sends per token visit |
 * | `maxBytesPerVisit` | bytes | 4 MiB | most payload bytes one member sends per token visit |
 * | `maxRetransmitRequests` | messages | 1024 | most missing messages the token asks for at once |
 * | `queueMessages`, `queueBytes` | messages, bytes | 65536, 2 MiB | most messages waiting for the token; a fuller queue holds `broadcast` back |
 * | `delivery` | | `"agreed"` | `"agreed"`: delivered in the total order as soon as every earlier message is; `"safe"`: also only once every ring member has it. A broadcast's `safe` option overrides it per message |
 */
export const totemOptionsSchema: z.ZodType<TotemOptions, Partial<TotemOptions>> = z
  .strictObject({
    tokenTimeoutMs: ms.default(DEFAULT_TOTEM_OPTIONS.tokenTimeoutMs),
    tokenRetransmitMs: ms.default(DEFAULT_TOTEM_OPTIONS.tokenRetransmitMs),
    tokenHoldMs: z.number().min(0).max(60_000).default(DEFAULT_TOTEM_OPTIONS.tokenHoldMs),
    joinIntervalMs: ms.default(DEFAULT_TOTEM_OPTIONS.joinIntervalMs),
    consensusTimeoutMs: ms.default(DEFAULT_TOTEM_OPTIONS.consensusTimeoutMs),
    windowMessages: count.default(DEFAULT_TOTEM_OPTIONS.windowMessages),
    maxMessagesPerVisit: count.default(DEFAULT_TOTEM_OPTIONS.maxMessagesPerVisit),
    maxBytesPerVisit: z.number().int().min(1_024).default(DEFAULT_TOTEM_OPTIONS.maxBytesPerVisit),
    maxRetransmitRequests: z.number().int().positive().max(65_536).default(DEFAULT_TOTEM_OPTIONS.maxRetransmitRequests),
    queueMessages: count.default(DEFAULT_TOTEM_OPTIONS.queueMessages),
    queueBytes: z.number().int().min(1_024).default(DEFAULT_TOTEM_OPTIONS.queueBytes),
    delivery: z.enum(["agreed", "safe"]).default(DEFAULT_TOTEM_OPTIONS.delivery),
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
