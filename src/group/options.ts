import * as z from "zod";
import { documented } from "../options-doc.ts";
import { parseOptions } from "../options.ts";
import type { ChannelOptions } from "../channel/options.ts";
import { unicastOptionsSchema } from "../reliable/unicast/options.ts";
import type { CoordinatorSelector } from "./view.ts";

const ms = z.number().int().positive();
const name = z.string().min(1).max(255);

const d = documented;

/** The zod schema of the group-specific options, each documented for the README's table. */
export const groupOptionsSchema = z.strictObject({
  groups: d(z.array(name).default(["default"]), { unit: "names", description: "the groups `join()` joins (`addToGroup`/`removeFromGroup` change them)" }),
  weight: d(z.number().int().default(0), { unit: "integer", description: "coordinator weight: the highest is elected" }),
  metadata: d(z.record(z.string(), z.string()).default({}), { unit: "strings", description: "told to the other members" }),
  failureTimeoutMs: d(ms.default(5_000), { unit: "ms", description: "silence before a member is suspected and pinged (memberlist and JGroups' VERIFY_SUSPECT2 scale)…" }),
  verifyTimeoutMs: d(ms.default(1_500), { unit: "ms", description: "…and removed if still silent this long after" }),
  discoveryTimeoutMs: d(ms.default(1_000), { unit: "ms", description: "discovery before forming a group alone (JGroups' join timeout)" }),
  requestTimeoutMs: d(ms.default(10_000), { unit: "ms", description: "default timeout of `request` and `requestAny`" }),
  queueTimeoutMs: d(ms.default(30_000), { unit: "ms", description: "default time `sendToQueue` waits for a consumer to process a message" }),
  unicast: unicastOptionsSchema.prefault({}),
  coordinatorSelector: d(z.custom<CoordinatorSelector>((value) => typeof value === "function", "expected a function").optional(), {
    unit: "function",
    defaultText: "weight, then longest in view",
    description: "picks the coordinator from a view's members",
  }),
});

/** Options of a group channel, besides every {@link ChannelOptions} one; the README's table documents each. */
export type GroupOptions = z.input<typeof groupOptionsSchema>;
export type ResolvedGroupOptions = z.output<typeof groupOptionsSchema>;
export type GroupChannelOptions = ChannelOptions & GroupOptions;

const GROUP_KEYS = Object.keys(groupOptionsSchema.shape) as Array<keyof GroupOptions>;

/** Splits group options from channel options and validates the group ones. */
export function resolveGroupOptions(options: GroupChannelOptions | undefined): { group: ResolvedGroupOptions; channel: ChannelOptions } {
  const group: Record<string, unknown> = {};
  const channel: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options ?? {})) {
    if ((GROUP_KEYS as string[]).includes(key)) group[key] = value;
    else channel[key] = value;
  }
  return { group: parseOptions(groupOptionsSchema, group, "group"), channel: channel as ChannelOptions };
}
