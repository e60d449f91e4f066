/**
 * Runtime-neutral pieces of the UDP adapters: option defaults, the size check, and the handler
 * plumbing that keeps user callbacks from throwing into the runtime. Imports nothing runtime-specific.
 */
import { BlazeError, type BlazeErrorCode } from "../errors.ts";
import {
  type Address,
  type ReceiveHandler,
  type TransportErrorHandler,
} from "../transport/transport.ts";

export function wrongRuntime(runtime: string, detail = ""): BlazeError {
  return new BlazeError("WRONG_RUNTIME", `This activeblaze UDP adapter needs ${runtime}${detail}; load the adapter for the runtime in use.`);
}

/** Wraps a runtime failure; the original stays available as `cause`. */
export function toBlazeError(code: BlazeErrorCode, message: string, cause: unknown): BlazeError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new BlazeError(code, `${message}: ${detail}`, { cause });
}

/** True for IPv4 multicast addresses (224.0.0.0/4). */
export function isMulticastV4(host: string): boolean {
  const first = Number.parseInt(host, 10);
  return first >= 224 && first <= 239 && host.includes(".");
}

/** A host's network interfaces by name, each with its addresses (as `os.networkInterfaces()` gives them). */
export type InterfaceList = Readonly<Record<string, ReadonlyArray<{ readonly address: string }> | undefined>>;

/**
 * The interface of IPv6 multicast as socket APIs take it, a scope ("::%eth0"): IPv6 multicast goes by
 * interface, not by address. From a name, an address with its zone ("fe80::1%eth0"), or an address of
 * one of `interfaces`; throws `BIND_FAILED` when no interface has that address.
 */
export function ipv6MulticastScope(iface: string, interfaces: () => InterfaceList): string {
  const zone = iface.indexOf("%");
  if (zone >= 0) return `::${iface.slice(zone)}`;
  if (!iface.includes(":")) return `::%${iface}`;
  const wanted = canonicalIpv6(iface);
  for (const [name, addresses] of Object.entries(interfaces())) {
    if (addresses?.some((entry) => canonicalIpv6(entry.address) === wanted)) return `::%${name}`;
  }
  throw new BlazeError("BIND_FAILED", `No network interface of this host has the address ${iface} (give the interface's name instead)`);
}

// One spelling of an IPv6 address, its eight groups in full ("fd00:0::1" and "fd00::1" are the same).
function canonicalIpv6(address: string): string {
  const [head, tail] = address.toLowerCase().split("::") as [string, string?];
  const groups = (text: string): number[] =>
    text === ""
      ? []
      : text.split(":").flatMap((part) => {
          if (!part.includes(".")) return [Number.parseInt(part, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = part.split(".").map(Number);
          return [(a << 8) | b, (c << 8) | d];
        });
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  return [...left, ...new Array<number>(Math.max(0, 8 - left.length - right.length)).fill(0), ...right].map((group) => group.toString(16)).join(":");
}

/** State every adapter shares: the closed flag, the size check and the guarded user callbacks. */
export class AdapterCore {
  closed = false;
  private receiver: ReceiveHandler = () => {};
  private errorHandler: TransportErrorHandler | undefined;

  constructor(readonly maxDatagramBytes: number) {}

  /** The synchronous checks of `send`: throws `CLOSED` or `DATAGRAM_TOO_LARGE`. */
  checkSend(data: Uint8Array): void {
    this.checkLength(data.length);
  }

  /** The checks of `send` for a datagram of `length` bytes (given in parts, say). */
  checkLength(length: number): void {
    if (this.closed) throw new BlazeError("CLOSED", "The transport is closed");
    if (length > this.maxDatagramBytes) {
      throw new BlazeError(
        "DATAGRAM_TOO_LARGE",
        `Datagram of ${length} bytes exceeds the maximum of ${this.maxDatagramBytes} bytes`,
      );
    }
  }

  checkBatch(datagrams: ReadonlyArray<readonly [Uint8Array, Address]>): void {
    if (this.closed) throw new BlazeError("CLOSED", "The transport is closed");
    for (const [data] of datagrams) this.checkSend(data);
  }

  onReceive(handler: ReceiveHandler): void {
    this.receiver = handler;
  }

  onError(handler: TransportErrorHandler): void {
    this.errorHandler = handler;
  }

  /** Hands a datagram to the user; a throwing handler is reported, never propagated into the runtime. */
  deliver(data: Uint8Array, from: Address): void {
    try {
      this.receiver(data, from);
    } catch (error) {
      this.report("TRANSPORT_ERROR", "The receive handler threw", error);
    }
  }

  report(code: BlazeErrorCode, message: string, cause: unknown): void {
    const handler = this.errorHandler;
    if (handler === undefined || this.closed) return;
    try {
      handler(toBlazeError(code, message, cause));
    } catch {
      // The error handler is the last resort: nothing is left to report its own failure to.
    }
  }
}
