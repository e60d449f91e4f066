/**
 * `activeblaze/testing`: the deterministic test bed — a simulated network on a virtual clock with
 * a seeded random source, and helpers to run scenarios under many seeds and replay a failing one.
 */
export {
  SimulatedNetwork,
  DEFAULT_LINK,
  type DelayRange,
  type DropReason,
  type LinkConditions,
  type NetworkStats,
  type SimulatedNetworkOptions,
  type SimulatedTransportOptions,
} from "./transport/simulated-network.ts";
export { VirtualClock, type RunOptions, type VirtualClockOptions } from "./transport/virtual-clock.ts";
export { SeededRandom } from "./transport/seeded-random.ts";
export { SeedFailure, expandSeeds, runSeeds, seedsFromEnv, withSeed, type SeedSpec } from "./transport/sim-run.ts";
export { withLoss } from "./transport/lossy-transport.ts";
export type { LossOptions } from "./transport/lossy-transport.ts";
