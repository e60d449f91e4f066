/**
 * `activeblaze/dashboard`: a live web page of a cluster (what `blaze dashboard` serves): its members
 * and views, coordinators, throughput and retransmissions, the replicated map's entries and locks, and
 * recent events.
 */
export { startDashboard, type Dashboard, type DashboardOptions } from "./dashboard.ts";
export type { DashboardMember, DashboardState } from "./dashboard-state.ts";
