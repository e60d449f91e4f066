import * as z from "zod";
import { MAX_K, MAX_M } from "./reed-solomon.ts";

/** Defaults of {@link FecOptions}; the README's table repeats them. */
export const DEFAULT_FEC_OPTIONS: FecOptions = {
  k: 16,
  m: 2,
  interleaveBytes: 65_507,
  parityWaitMs: 2,
};

/**
 * Tuning of forward error correction (`reliability: "fec"`): NACK reliability plus proactive
 * Reed-Solomon parity.
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `k` | packets | 16 | source packets (messages or fragments) per block, at most; 1 to 64. A burst that ends sooner closes a shorter block |
 * | `m` | packets | 2 | parity packets sent after each block: a receiver that lost up to `m` of a block's packets rebuilds them with no retransmission; 1 to 3 |
 * | `interleaveBytes` | bytes | 65507 | blocks are interleaved so that this many consecutive bytes of the stream (what one lost datagram of bundled messages takes) hold at most `m` packets of any block; 0: consecutive blocks |
 * | `parityWaitMs` | ms | 2 | gaps are NACKed this much later than with `"nack"` (`nack.nackDelayMinMs`/`MaxMs` plus this), so parity can fill them first |
 */
export const fecOptionsSchema: z.ZodType<FecOptions, Partial<FecOptions>> = z.strictObject({
  k: z.number().int().min(1).max(MAX_K).default(DEFAULT_FEC_OPTIONS.k),
  m: z.number().int().min(1).max(MAX_M).default(DEFAULT_FEC_OPTIONS.m),
  interleaveBytes: z.number().int().min(0).max(16 * 1024 * 1024).default(DEFAULT_FEC_OPTIONS.interleaveBytes),
  parityWaitMs: z.number().min(0).max(60_000).default(DEFAULT_FEC_OPTIONS.parityWaitMs),
});

export interface FecOptions {
  readonly k: number;
  readonly m: number;
  readonly interleaveBytes: number;
  readonly parityWaitMs: number;
}
