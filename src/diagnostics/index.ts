/**
 * `activeblaze/diagnostics`: seeing a cluster. Ask its members to describe themselves (`Prober`,
 * `probeCluster`: what `blaze probe` and the dashboard use), and the types of the `logger` and
 * `metrics` options with the names of what members measure.
 */
export { Prober, probeCluster, probeOptionsSchema, type ProbeNetworkOptions, type ProbeOptions, type ProbeResult, type ResolvedProbeOptions } from "./probe.ts";
export type { MemberReport } from "./member-report.ts";
export type { LogEntry, Logger, LogLevel } from "./logger.ts";
export {
  MEMBER_EVENT_COUNTERS,
  MEMBER_HISTOGRAMS,
  type MeasuredValue,
  type MemberEventCounterName,
  type MemberHistogramName,
  type MemberLevelName,
  type MemberTotalName,
  type MetricAttributes,
  type Metrics,
  type ObservedMember,
} from "./metrics.ts";
export { MEMBER_LEVELS, MEMBER_TOTALS } from "./member-counters.ts";
export type { MemberEvent, MemberEventKind } from "./member-events.ts";
// The counters a member's `stats` getters return, by level.
export type { AdmissionStats } from "../channel/admission.ts";
export type { EndpointStats, NetworkStats } from "../channel/endpoint.ts";
export type { ErrorStage } from "../channel/error-report.ts";
export type { ProtocolStats } from "../reliable/protocol.ts";
export type { FecStats } from "../reliable/fec/fec-protocol.ts";
export type { TotemState, TotemStats } from "../reliable/totem/totem-protocol.ts";
export type { StateStats } from "../cluster/state-engine.ts";
export type { SecurityStats } from "../security/datagram-guard.ts";
