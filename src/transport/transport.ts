import type { BlazeError } from "../errors.ts";

/** A UDP endpoint: an IPv4 or IPv6 address in text form, and a port. */
export interface Address {
  readonly host: string;
  readonly port: number;
}

/**
 * Called for every datagram that arrives. Each call gets bytes of its own (adapters never reuse a
 * receive buffer), so a receiver may keep views into them.
 */
export type ReceiveHandler = (data: Uint8Array, from: Address) => void;

/** Called for failures that happen in the background (a failed asynchronous send, a socket error). */
export type TransportErrorHandler = (error: BlazeError) => void;

/**
 * The runtime-neutral UDP endpoint the protocol core talks to. One small adapter per runtime
 * implements it (`node:dgram`, `Bun.udpSocket`, `Deno.listenDatagram`); the simulated network
 * implements it too. Sends are fire-and-forget, as UDP is: a failure the runtime reports later goes
 * to the error handler.
 */
export interface Transport {
  /** The address and port this transport is bound to. */
  readonly localAddress: Address;
  /** The largest datagram `send` accepts, in bytes. */
  readonly maxDatagramBytes: number;
  /** True when `sendMany` is backed by a native batched send. */
  readonly nativeBatchSend: boolean;
  /**
   * Sends one datagram to a unicast address or a multicast group.
   * @throws BlazeError `DATAGRAM_TOO_LARGE` when `data` is larger than `maxDatagramBytes`;
   *   `CLOSED` after `close()`.
   */
  send(data: Uint8Array, to: Address): void;
  /** Sends several datagrams, in order; natively batched where the runtime can. Same errors as `send`. */
  sendMany(datagrams: ReadonlyArray<readonly [data: Uint8Array, to: Address]>): void;
  /**
   * Optional: sends one datagram given as consecutive parts, which the runtime gathers as it sends
   * (no copy into one buffer first). Same errors as `send`, for the parts' total length.
   */
  sendParts?(parts: readonly Uint8Array[], to: Address): void;
  /**
   * Joins a multicast group on an interface, given by address or (IPv6) by name (default: the interface
   * the transport is bound to, or the one given as `multicastInterface` when it was created).
   * @throws BlazeError `BIND_FAILED` when the runtime refuses.
   */
  joinGroup(group: string, interfaceAddress?: string): void;
  /** Leaves a multicast group joined before. */
  leaveGroup(group: string, interfaceAddress?: string): void;
  /** Sets the receive callback; one at a time, a later call replaces an earlier one. */
  onReceive(handler: ReceiveHandler): void;
  /** Sets the background error callback; one at a time. Without one, background errors are dropped. */
  onError(handler: TransportErrorHandler): void;
  /** Closes the socket. Idempotent: a second call resolves at once. */
  close(): Promise<void>;
}

/** How to open a transport. Every field is optional. */
export interface TransportOptions {
  /** Local address to bind. Default `"0.0.0.0"`. */
  readonly bindAddress?: string;
  /** Local port to bind; 0 picks a free one. Default 0. */
  readonly port?: number;
  /** Allow several sockets on one port (needed for several multicast members on one host). Default false. */
  readonly reuseAddress?: boolean;
  /**
   * Interface for outgoing multicast and for `joinGroup` without one: its address; on an IPv6 socket
   * also its name ("eth0"), since IPv6 multicast goes by interface. Default: the runtime's choice.
   */
  readonly multicastInterface?: string;
  /** Time to live of outgoing multicast datagrams, in hops. Default 1 (the LAN). */
  readonly multicastTtl?: number;
  /** Whether this host's own multicast datagrams loop back to it. Default true. */
  readonly multicastLoopback?: boolean;
  /** The largest datagram to accept for sending, in bytes. Default 65,507 (the IPv4 UDP maximum). */
  readonly maxDatagramBytes?: number;
  /** Socket receive buffer size in bytes, where the runtime lets it be set. Default: the runtime's. */
  readonly receiveBufferBytes?: number;
  /** Socket send buffer size in bytes, where the runtime lets it be set. Default: the runtime's. */
  readonly sendBufferBytes?: number;
}

/** Opens a bound transport. Each runtime adapter exports one as `createUdpTransport`. */
export type TransportFactory = (options?: TransportOptions) => Promise<Transport>;

/** The IPv4 UDP payload maximum: 65,535 − 8 (UDP header) − 20 (IP header). */
export const MAX_UDP_PAYLOAD_BYTES = 65_507;
