import * as z from "zod";

/** Tuning of forward error correction (`reliability: "fec"`). */
export const fecOptionsSchema = z.strictObject({});

export type FecOptions = z.output<typeof fecOptionsSchema>;
