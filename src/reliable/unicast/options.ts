import * as z from "zod";
import { documented } from "../../options-doc.ts";
import { DEFAULT_UNICAST_OPTIONS, type UnicastOptions } from "./unicast-protocol.ts";

const d = documented;
const U = DEFAULT_UNICAST_OPTIONS;
const ms = z.number().int().positive().max(3_600_000);

/** Tuning of the point-to-point streams (`unicast: { … }` of a group channel), each documented for the README's table. */
export const unicastOptionsSchema: z.ZodType<UnicastOptions, Partial<UnicastOptions>> = z
  .strictObject({
    windowMessages: d(z.number().int().min(16).max(1 << 22).default(U.windowMessages), {
      unit: "messages",
      description: "most messages sent to one member and not yet acknowledged; a receiver holds at most this many of one sender out of order",
    }),
    windowBytes: d(z.number().int().min(64 * 1024).default(U.windowBytes), {
      unit: "bytes",
      defaultText: "4 MiB",
      description: "most bytes sent to one member and not yet acknowledged (a message always fits in an empty window)",
    }),
    ackThreshold: d(z.number().int().min(1).default(U.ackThreshold), { unit: "messages", description: "a receiver acknowledges after this many messages…" }),
    ackThresholdBytes: d(z.number().int().min(1).default(U.ackThresholdBytes), { unit: "bytes", defaultText: "1 MiB", description: "…or this many bytes…" }),
    ackDelayMs: d(ms.default(U.ackDelayMs), { unit: "ms", description: "…or this long after the first unacknowledged one — or at once with the next message it sends that member" }),
    nackDelayMs: d(z.number().min(0).max(60_000).default(U.nackDelayMs), { unit: "ms", description: "a gap is NACKed this long after it appears" }),
    nackRetryMs: d(ms.default(U.nackRetryMs), { unit: "ms", description: "an unanswered NACK is repeated after this long, doubling…" }),
    nackRetryMaxMs: d(ms.default(U.nackRetryMaxMs), { unit: "ms", description: "…up to this" }),
    maxNackSeqs: d(z.number().int().min(1).max(65_536).default(U.maxNackSeqs), { unit: "messages", description: "most sequence numbers one NACK asks for (and a sender answers)" }),
    retransmitHoldoffMs: d(z.number().min(0).max(60_000).default(U.retransmitHoldoffMs), { unit: "ms", description: "a message is not retransmitted twice within this time" }),
    rtoMs: d(ms.default(U.rtoMs), {
      unit: "ms",
      description: "with messages unacknowledged and no acknowledgement for this long, the highest is sent again; the wait doubles…",
    }),
    rtoMaxMs: d(ms.default(U.rtoMaxMs), { unit: "ms", description: "…up to this" }),
  })
  .refine((options) => options.nackRetryMaxMs >= options.nackRetryMs, { message: "nackRetryMaxMs must be at least nackRetryMs", path: ["nackRetryMaxMs"] })
  .refine((options) => options.rtoMaxMs >= options.rtoMs, { message: "rtoMaxMs must be at least rtoMs", path: ["rtoMaxMs"] });

