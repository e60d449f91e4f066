/**
 * `activeblaze/transport`: the runtime plumbing a channel is built on — the datagram transport
 * interface its per-runtime UDP adapters implement (`activeblaze/udp`), the clock and random source
 * (injected for simulations: `activeblaze/testing`), and host name resolution for static peers.
 */
export { MAX_UDP_PAYLOAD_BYTES } from "./transport.ts";
export type { Address, ReceiveHandler, Transport, TransportErrorHandler, TransportFactory } from "./transport.ts";
export { systemClock, systemRandom } from "./clock.ts";
export type { Clock, RandomSource, TimerHandle } from "./clock.ts";
export type { HostResolver, Seed } from "./host-names.ts";
