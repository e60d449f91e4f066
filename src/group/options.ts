import * as z from "zod";
import { parseOptions } from "../options.ts";
import type { ChannelOptions } from "../channel/options.ts";
import type { CoordinatorSelector } from "./view.ts";

const ms = z.number().int().positive();
const name = z.string().min(1).max(255);

const groupOptions = z
  .strictObject({
    groups: z.array(name).default(["default"]),
    weight: z.number().int().default(0),
    metadata: z.record(z.string(), z.string()).default({}),
    failureTimeoutMs: ms.default(5_000),
    verifyTimeoutMs: ms.default(1_500),
    discoveryTimeoutMs: ms.default(1_000),
    requestTimeoutMs: ms.default(10_000),
    queueTimeoutMs: ms.default(30_000),
    coordinatorSelector: z.custom<CoordinatorSelector>((value) => typeof value === "function", "expected a function").optional(),
  });

/** The zod schema of the group-specific options; every default is documented on {@link GroupOptions}. */
export const groupOptionsSchema: z.ZodType<ResolvedGroupOptions, GroupOptions> = groupOptions;

/**
 * Options of a group channel, besides every {@link ChannelOptions} one.
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `groups` | names | `["default"]` | the groups `join()` joins |
 * | `weight` | integer | `0` | coordinator weight: the highest is elected |
 * | `metadata` | strings | `{}` | told to the other members |
 * | `failureTimeoutMs` | ms | `5000` | a member silent this long is suspected and pinged… |
 * | `verifyTimeoutMs` | ms | `1500` | …and removed if still silent this long after |
 * | `discoveryTimeoutMs` | ms | `1000` | how long a starting member looks for its group before forming it |
 * | `requestTimeoutMs` | ms | `10000` | default timeout of `request` and `requestAny` |
 * | `queueTimeoutMs` | ms | `30000` | default time `sendToQueue` waits for a consumer to process a message |
 * | `coordinatorSelector` | function | highest weight, then longest in the view | picks the coordinator from a view's members |
 */
export interface GroupOptions {
  readonly groups?: readonly string[] | undefined;
  readonly weight?: number | undefined;
  readonly metadata?: Readonly<Record<string, string>> | undefined;
  readonly failureTimeoutMs?: number | undefined;
  readonly verifyTimeoutMs?: number | undefined;
  readonly discoveryTimeoutMs?: number | undefined;
  readonly requestTimeoutMs?: number | undefined;
  readonly queueTimeoutMs?: number | undefined;
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
