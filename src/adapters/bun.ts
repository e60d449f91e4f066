/** The Bun UDP adapter, on the native `Bun.udpSocket` (batched sends through `sendMany`). */
import { BlazeError } from "../errors.ts";
import { resolveTransportOptions } from "../transport/options.ts";
import type { Address, Transport, TransportFactory } from "../transport/transport.ts";
import { AdapterCore, type InterfaceList, ipv6MulticastScope, toBlazeError, wrongRuntime } from "./shared.ts";

/** The part of Bun's UDP socket this adapter uses (Bun 1.4). */
interface BunUdpSocket {
  readonly hostname: string;
  readonly port: number;
  /** False when the kernel took nothing (send buffer full); throws on socket errors. */
  send(data: Uint8Array, port: number, host: string): boolean;
  /** Takes `[data, port, host, data, port, host, …]`; returns how many datagrams the kernel took. */
  sendMany(packets: ReadonlyArray<Uint8Array | number | string>): number;
  addMembership(group: string, iface?: string): boolean;
  dropMembership(group: string, iface?: string): boolean;
  setMulticastInterface(iface: string): boolean;
  setMulticastTTL(ttl: number): number;
  setMulticastLoopback(enabled: boolean): boolean;
  close(): void;
}
interface BunUdpOptions {
  hostname: string;
  port: number;
  flags: number;
  binaryType: "uint8array";
  socket: {
    data(socket: BunUdpSocket, data: Uint8Array, port: number, address: string): void;
    error(...args: unknown[]): void;
  };
}
type BunUdp = (options: BunUdpOptions) => Promise<BunUdpSocket>;

/** uSockets' SO_REUSEADDR flag (not public API; Bun's node:dgram uses it too). It shares ports with Node and Deno sockets. */
const LIBUS_SOCKET_REUSE_ADDR = 16;

/** Bun sets IP_RECVERR, so an ICMP "port unreachable" from a departed peer surfaces as ECONNREFUSED. */
const isRefused = (error: unknown): boolean => (error as { code?: unknown } | null)?.code === "ECONNREFUSED";

/** The runtime this adapter is for. */
export const runtime = "bun";

export const createUdpTransport: TransportFactory = async (options) => {
  const udpSocket = (globalThis as { Bun?: { udpSocket?: BunUdp } }).Bun?.udpSocket;
  if (typeof udpSocket !== "function") throw wrongRuntime("Bun");
  const o = resolveTransportOptions(options);
  const core = new AdapterCore(o.maxDatagramBytes);
  // An IPv6 socket's multicast interface is a scope ("::%eth0"), found from a name or an address.
  const getBuiltinModule = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
  const multicastInterface = (iface: string) =>
    o.bindAddress.includes(":") ? ipv6MulticastScope(iface, () => (getBuiltinModule?.("node:os") as { networkInterfaces(): InterfaceList } | undefined)?.networkInterfaces() ?? {}) : iface;
  let socket: BunUdpSocket;
  try {
    socket = await udpSocket({
      hostname: o.bindAddress,
      port: o.port,
      flags: o.reuseAddress ? LIBUS_SOCKET_REUSE_ADDR : 0,
      binaryType: "uint8array",
      socket: {
        data: (_socket, data, port, address) => core.deliver(data, { host: address, port }),
        // Bun 1.4 calls this with the error alone (its docs say `(socket, error)`): take the last argument.
        error: (...args) => {
          const error = args[args.length - 1];
          // Node and Deno never report ICMP errors on unconnected sockets; the protocol notices departures itself.
          if (!isRefused(error)) core.report("TRANSPORT_ERROR", "UDP socket error", error);
        },
      },
    });
  } catch (error) {
    throw toBlazeError("BIND_FAILED", `Could not bind UDP ${o.bindAddress}:${o.port}`, error);
  }
  try {
    socket.setMulticastTTL(o.multicastTtl);
    socket.setMulticastLoopback(o.multicastLoopback);
    // Bun answers false, without throwing, for an address it cannot parse.
    if (o.multicastInterface !== undefined && !socket.setMulticastInterface(multicastInterface(o.multicastInterface))) {
      throw new Error(`"${o.multicastInterface}" is not an IP address`);
    }
    // Bun has no way to size the socket buffers (its node:dgram only pretends to): the options are ignored.
  } catch (error) {
    socket.close();
    throw toBlazeError("BIND_FAILED", "Could not set the multicast options", error);
  }

  /**
   * Sends `[data, port, host, …]`. A short count means the kernel refused the next datagram: a full
   * buffer, or a stale ECONNREFUSED from an earlier datagram (which the failed call clears), so it is
   * retried once before the rest is given up and reported.
   */
  const sendFlat = (flat: ReadonlyArray<Uint8Array | number | string>): void => {
    const total = flat.length / 3;
    let sent = 0;
    let stalled = false;
    let cause: unknown = "the socket send buffer is full";
    while (sent < total) {
      let taken = 0;
      try {
        taken = sent === 0 ? socket.sendMany(flat) : socket.sendMany(flat.slice(sent * 3));
      } catch (error) {
        cause = error;
      }
      if (taken === 0 && stalled) {
        core.report("SEND_FAILED", `Sent ${sent} of ${total} datagrams`, cause);
        return;
      }
      stalled = taken === 0;
      sent += taken;
    }
  };
  const membership = (drop: boolean, group: string, iface = o.multicastInterface): void => {
    if (core.closed) throw new BlazeError("CLOSED", "The transport is closed");
    try {
      const on = iface === undefined ? undefined : multicastInterface(iface);
      if (drop) socket.dropMembership(group, on);
      else socket.addMembership(group, on);
    } catch (error) {
      throw toBlazeError("BIND_FAILED", `Could not ${drop ? "leave" : "join"} multicast group ${group}`, error);
    }
  };

  const transport: Transport = {
    localAddress: { host: socket.hostname, port: socket.port },
    maxDatagramBytes: o.maxDatagramBytes,
    nativeBatchSend: true,
    send(data: Uint8Array, to: Address) {
      core.checkSend(data);
      try {
        if (socket.send(data, to.port, to.host)) return;
      } catch {
        // Retried below through the batch path, which reports what still fails.
      }
      sendFlat([data, to.port, to.host]);
    },
    sendMany(datagrams) {
      core.checkBatch(datagrams);
      const flat: Array<Uint8Array | number | string> = [];
      for (const [data, to] of datagrams) flat.push(data, to.port, to.host);
      if (flat.length > 0) sendFlat(flat);
    },
    joinGroup: (group, iface) => membership(false, group, iface),
    leaveGroup: (group, iface) => membership(true, group, iface),
    onReceive: (handler) => core.onReceive(handler),
    onError: (handler) => core.onError(handler),
    close() {
      if (!core.closed) {
        core.closed = true;
        socket.close();
      }
      return Promise.resolve();
    },
  };
  return transport;
};
