import * as z from "zod";
import { documented } from "../../options-doc.ts";
import { MAX_K, MAX_M } from "./reed-solomon.ts";

/** Defaults of {@link FecOptions}; the README's table repeats them. */
export const DEFAULT_FEC_OPTIONS: FecOptions = {
  k: 16,
  m: 2,
  interleaveBytes: 65_507,
  parityWaitMs: 2,
};

const d = documented;
const F = DEFAULT_FEC_OPTIONS;

/**
 * Tuning of forward error correction (`reliability: "fec"`): NACK reliability plus proactive
 * Reed-Solomon parity. Each option is documented for the README's table.
 */
export const fecOptionsSchema: z.ZodType<FecOptions, Partial<FecOptions>> = z.strictObject({
  k: d(z.number().int().min(1).max(MAX_K).default(F.k), {
    unit: "packets",
    description: 'with `reliability: "fec"`: source packets (messages or fragments) per block, at most (1–64); a burst that ends sooner closes a shorter block',
  }),
  m: d(z.number().int().min(1).max(MAX_M).default(F.m), {
    unit: "packets",
    description: "parity packets sent after each block (1–3): a receiver that lost up to `m` of a block's packets rebuilds them with no retransmission",
  }),
  interleaveBytes: d(z.number().int().min(0).max(16 * 1024 * 1024).default(F.interleaveBytes), {
    unit: "bytes",
    description: "blocks are interleaved so that this many consecutive bytes (one lost datagram of bundled messages) hold at most `m` packets of a block; `0`: consecutive blocks",
  }),
  parityWaitMs: d(z.number().min(0).max(60_000).default(F.parityWaitMs), {
    unit: "ms",
    description: 'gaps are NACKed this much later than with `"nack"`, so parity can fill them first',
  }),
});

export interface FecOptions {
  readonly k: number;
  readonly m: number;
  readonly interleaveBytes: number;
  readonly parityWaitMs: number;
}
