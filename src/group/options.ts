import * as z from "zod";
import { documented } from "../options-doc.ts";
import { parseOptions } from "../options.ts";
import type { ChannelOptions } from "../channel/options.ts";
import { unicastOptionsSchema } from "../reliable/unicast/options.ts";
import type { UnicastOptions } from "../reliable/unicast/unicast-protocol.ts";
import type { CoordinatorSelector } from "./view.ts";

const ms = z.number().int().positive();
const name = z.string().min(1).max(255);

const d = documented;

const groupOptions = z.strictObject({
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

/** The zod schema of the group-specific options, each documented for the README's table. */
export const groupOptionsSchema: z.ZodType<ResolvedGroupOptions, GroupOptions> = groupOptions;

/** Options of a group channel, besides every {@link ChannelOptions} one; the README's table documents each. */
export interface GroupOptions {
  readonly groups?: readonly string[] | undefined;
  readonly weight?: number | undefined;
  readonly metadata?: Readonly<Record<string, string>> | undefined;
  readonly failureTimeoutMs?: number | undefined;
  readonly verifyTimeoutMs?: number | undefined;
  readonly discoveryTimeoutMs?: number | undefined;
  readonly requestTimeoutMs?: number | undefined;
  readonly queueTimeoutMs?: number | undefined;
  /** Tuning of the point-to-point streams. */
  readonly unicast?: Partial<UnicastOptions> | undefined;
  readonly coordinatorSelector?: CoordinatorSelector | undefined;
}

/** {@link GroupOptions} with their defaults filled in. */
export interface ResolvedGroupOptions {
  readonly groups: readonly string[];
  readonly weight: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly failureTimeoutMs: number;
  readonly verifyTimeoutMs: number;
  readonly discoveryTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly queueTimeoutMs: number;
  readonly unicast: UnicastOptions;
  readonly coordinatorSelector?: CoordinatorSelector | undefined;
}
export type GroupChannelOptions = ChannelOptions & GroupOptions;

const GROUP_KEYS = Object.keys(groupOptions.shape) as Array<keyof GroupOptions>;

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
