// The public API of activeblaze. Re-exports only.
export { BlazeError, isBlazeError, isTimeoutError } from "./errors.ts";
export type { BlazeErrorCode, BlazeErrorOptions } from "./errors.ts";
export { systemClock, systemRandom } from "./transport/clock.ts";
export type { Clock, RandomSource, TimerHandle } from "./transport/clock.ts";
export { MAX_UDP_PAYLOAD_BYTES } from "./transport/transport.ts";
export type {
  Address,
  ReceiveHandler,
  Transport,
  TransportErrorHandler,
  TransportFactory,
  TransportOptions,
} from "./transport/transport.ts";
export { resolveTransportOptions, transportOptionsSchema } from "./transport/options.ts";
export type { ResolvedTransportOptions } from "./transport/options.ts";
export { DropCounters } from "./wire/drop-reason.ts";
export type { DropReason } from "./wire/drop-reason.ts";
