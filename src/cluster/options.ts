import * as z from "zod";
import { parseOptions } from "../options.ts";
import { resolveChannelOptions } from "../channel/options.ts";
import { type GroupChannelOptions, resolveGroupOptions } from "../group/options.ts";

const ms = z.number().int().positive();
const msOrZero = z.number().int().min(0);

/** The zod schema of the state-map options; every default is documented on {@link StateOptions}. */
export const stateOptionsSchema: z.ZodType<ResolvedStateOptions, StateOptions> = z.strictObject({
  group: z.string().min(1).max(255).optional(),
  quorum: z.boolean().default(false),
  minimumMembers: z.number().int().min(1).default(1),
  requestTimeoutMs: ms.default(10_000),
  timeToLiveMs: msOrZero.default(0),
  removeOnExit: z.boolean().default(false),
  leaseMs: msOrZero.default(0),
  releaseLockOnExit: z.boolean().default(true),
  lockTimeoutMs: ms.default(30_000),
  logLimit: z.number().int().min(16).default(10_000),
  snapshotChunkBytes: z.number().int().min(1_024).max(65_536).default(60_000),
  retryDelayMs: ms.default(20),
});

/**
 * Options of the replicated state map and its locks (the `state` option of a cluster channel).
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `group` | name | the first of `groups` | the group whose members share the map; its coordinator orders the writes |
 * | `quorum` | boolean | `false` | refuse writes and lock grants (`NO_QUORUM`) on a side of a partition without a majority of the last agreed view |
 * | `minimumMembers` | members | `1` | refuse writes and lock grants (`NO_QUORUM`) while the view has fewer members (ActiveBlaze's `minimumGroupSize`); with `quorum`, set it to a majority of the intended cluster size so that two groups formed apart (a partition at first start) cannot both take writes |
 * | `requestTimeoutMs` | ms | `10000` | default time a write waits to be applied everywhere, else `TIMEOUT` |
 * | `timeToLiveMs` | ms | `0` = forever | default time to live of an entry, counted on the coordinator's monotonic clock |
 * | `removeOnExit` | boolean | `false` | default: remove an entry when its owner (last writer) leaves the group |
 * | `leaseMs` | ms | `0` = until released | default lock lease, counted on the coordinator's monotonic clock |
 * | `releaseLockOnExit` | boolean | `true` | default: free a member's locks when it leaves the group |
 * | `lockTimeoutMs` | ms | `30000` | default time `lock()` queues for a lock, else `TIMEOUT` |
 * | `logLimit` | updates | `10000` | updates kept to bring a replica that fell behind up to date (older: a snapshot) |
 * | `snapshotChunkBytes` | bytes | `60000` | the largest snapshot chunk sent to a member the log cannot bring up to date (at most a datagram's largest frame) |
 * | `retryDelayMs` | ms | `20` | wait before a request refused by a member not (yet) coordinating is sent again |
 */
export interface StateOptions {
  readonly group?: string | undefined;
  readonly quorum?: boolean | undefined;
  readonly minimumMembers?: number | undefined;
  readonly requestTimeoutMs?: number | undefined;
  readonly timeToLiveMs?: number | undefined;
  readonly removeOnExit?: boolean | undefined;
  readonly leaseMs?: number | undefined;
  readonly releaseLockOnExit?: boolean | undefined;
  readonly lockTimeoutMs?: number | undefined;
  readonly logLimit?: number | undefined;
  readonly snapshotChunkBytes?: number | undefined;
  readonly retryDelayMs?: number | undefined;
}

/** {@link StateOptions} with their defaults filled in. */
export interface ResolvedStateOptions {
  readonly group?: string | undefined;
  readonly quorum: boolean;
  readonly minimumMembers: number;
  readonly requestTimeoutMs: number;
  readonly timeToLiveMs: number;
  readonly removeOnExit: boolean;
  readonly leaseMs: number;
  readonly releaseLockOnExit: boolean;
  readonly lockTimeoutMs: number;
  readonly logLimit: number;
  readonly snapshotChunkBytes: number;
  readonly retryDelayMs: number;
}

/** Options of a cluster channel: a group channel's, plus `state`. */
export type ClusterChannelOptions = GroupChannelOptions & { readonly state?: StateOptions };

/** What the state map is built with: its options, and what it takes from its group channel's. */
export interface ClusterStateSettings {
  readonly options: ResolvedStateOptions;
  /** The group whose members share the map: `state.group`, else the first of `groups`. */
  readonly group: string;
  /** How long a coordinator serves unheard by a majority: the group's `failureTimeoutMs`. */
  readonly leaseMs: number;
  /** The largest value: the channel's `maxMessageBytes`. */
  readonly maxValueBytes: number;
}

/** Splits a cluster channel's options into the state map's settings and its group channel's options (validating both). */
export function resolveClusterOptions(options: ClusterChannelOptions | undefined): { state: ClusterStateSettings; group: GroupChannelOptions } {
  const { state, ...group } = options ?? {};
  const resolved = parseOptions(stateOptionsSchema, state, "state");
  const groupLevel = resolveGroupOptions(group);
  return {
    state: {
      options: resolved,
      group: resolved.group ?? group.groups?.[0] ?? "default",
      leaseMs: groupLevel.group.failureTimeoutMs,
      maxValueBytes: resolveChannelOptions(groupLevel.channel).maxMessageBytes,
    },
    group,
  };
}
