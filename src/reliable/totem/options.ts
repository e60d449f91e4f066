import * as z from "zod";

/** Tuning of the Totem single-ring protocol (`reliability: "totem"`). */
export const totemOptionsSchema = z.strictObject({});

export type TotemOptions = z.output<typeof totemOptionsSchema>;
