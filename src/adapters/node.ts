/** The Node.js UDP adapter, on `node:dgram`. */
import { BlazeError } from "../errors.ts";
import { resolveTransportOptions } from "../transport/options.ts";
import type { Address, Transport, TransportFactory } from "../transport/transport.ts";
import { AdapterCore, type InterfaceList, ipv6MulticastScope, toBlazeError, wrongRuntime } from "./shared.ts";

/**
 * The part of `node:dgram` and `node:net` this adapter uses. They are loaded through
 * `process.getBuiltinModule` (Node 20.16 and later) rather than imported, so that the library can pick
 * this adapter at run time without any module importing `node:` modules where Node is not running.
 */
interface NodeSocket {
  bind(options: { port: number; address: string; exclusive: boolean }, callback: () => void): void;
  once(event: "error", listener: (error: Error) => void): void;
  off(event: "error", listener: (error: Error) => void): void;
  on(event: "error", listener: (error: Error & { syscall?: string }) => void): void;
  on(event: "message", listener: (message: Uint8Array, rinfo: { address: string; port: number }) => void): void;
  address(): { address: string; port: number };
  send(data: Uint8Array | readonly Uint8Array[], port: number, host: string): void;
  setMulticastTTL(ttl: number): void;
  setMulticastLoopback(enabled: boolean): void;
  setMulticastInterface(iface: string): void;
  setRecvBufferSize(bytes: number): void;
  setSendBufferSize(bytes: number): void;
  addMembership(group: string, iface?: string): void;
  dropMembership(group: string, iface?: string): void;
  close(callback: () => void): void;
}
interface NodeDgram {
  createSocket(options: { type: "udp4" | "udp6"; reuseAddr: boolean; lookup: Lookup }): NodeSocket;
}
interface NodeNet {
  isIP(host: string): number;
}
interface NodeOs {
  networkInterfaces(): InterfaceList;
}
type GetBuiltinModule = (id: string) => unknown;

type Lookup = (host: string, family: unknown, callback: (error: Error | null, address: string, family: number) => void) => void;

/**
 * Accepts IP literals only, and answers synchronously: dgram's default `dns.lookup` defers every send
 * to the next tick, which costs time and lets a caller's later changes to the buffer leak into the datagram.
 */
function literalLookup(isIP: NodeNet["isIP"]): Lookup {
  // Datagrams mostly go to the host of the one before: remember the last answer.
  let lastHost = "";
  let lastFamily = 0;
  return (host, _family, callback) => {
    const family = host === lastHost ? lastFamily : isIP(host);
    if (family !== 0) {
      lastHost = host;
      lastFamily = family;
      callback(null, host, family);
    } else callback(Object.assign(new Error(`"${host}" is not an IP address literal`), { syscall: "send" }), host, 0);
  };
}

/** The runtime this adapter is for. */
export const runtime = "node";

export const createUdpTransport: TransportFactory = async (options) => {
  const process = (globalThis as { process?: { versions?: { node?: string }; getBuiltinModule?: GetBuiltinModule } }).process;
  // Bun and Deno emulate Node here; their native adapters are the ones that work well there.
  if (typeof process?.versions?.node !== "string" || "Bun" in globalThis || "Deno" in globalThis) throw wrongRuntime("Node.js");
  if (typeof process.getBuiltinModule !== "function") throw wrongRuntime("Node.js", ` 20.16 or later (this is ${process.versions.node})`);
  const { createSocket } = process.getBuiltinModule("node:dgram") as NodeDgram;
  const { isIP } = process.getBuiltinModule("node:net") as NodeNet;
  const o = resolveTransportOptions(options);
  const core = new AdapterCore(o.maxDatagramBytes);
  const type = isIP(o.bindAddress) === 6 ? "udp6" : "udp4";
  const socket = createSocket({ type, reuseAddr: o.reuseAddress, lookup: literalLookup(isIP) });
  // An IPv6 socket's multicast interface is a scope ("::%eth0"), found from a name or an address.
  const multicastInterface = (iface: string) =>
    type === "udp6" ? ipv6MulticastScope(iface, () => (process.getBuiltinModule!("node:os") as NodeOs).networkInterfaces()) : iface;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      // exclusive: in a cluster worker, never share the primary's handle (memberships are per socket).
      socket.bind({ port: o.port, address: o.bindAddress, exclusive: true }, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    socket.setMulticastTTL(o.multicastTtl);
    socket.setMulticastLoopback(o.multicastLoopback);
    if (o.multicastInterface !== undefined) socket.setMulticastInterface(multicastInterface(o.multicastInterface));
    if (o.receiveBufferBytes !== undefined) socket.setRecvBufferSize(o.receiveBufferBytes);
    if (o.sendBufferBytes !== undefined) socket.setSendBufferSize(o.sendBufferBytes);
  } catch (error) {
    socket.close(() => {});
    throw toBlazeError("BIND_FAILED", `Could not bind UDP ${o.bindAddress}:${o.port}`, error);
  }
  // Without a per-send callback dgram drops most send failures silently; a callback would cost a tick per datagram.
  socket.on("error", (error: Error & { syscall?: string }) =>
    core.report(error.syscall === "send" ? "SEND_FAILED" : "TRANSPORT_ERROR", "UDP socket error", error),
  );
  // A Buffer is a Uint8Array; a plain view of its bytes is what receivers get in every runtime.
  socket.on("message", (msg, rinfo) => core.deliver(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), { host: rinfo.address, port: rinfo.port }));

  const sendOne = (data: Uint8Array | readonly Uint8Array[], to: Address): void => {
    try {
      socket.send(data, to.port, to.host);
    } catch (error) {
      core.report("SEND_FAILED", `Could not send to ${to.host}:${to.port}`, error);
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
  const bound = socket.address();
  let closing: Promise<void> | undefined;

  const transport: Transport = {
    localAddress: { host: bound.address, port: bound.port },
    maxDatagramBytes: o.maxDatagramBytes,
    nativeBatchSend: false,
    send(data, to) {
      core.checkSend(data);
      sendOne(data, to);
    },
    sendMany(datagrams) {
      core.checkBatch(datagrams);
      for (const [data, to] of datagrams) sendOne(data, to);
    },
    // dgram sends an array of buffers as one datagram, gathered by the kernel.
    sendParts(parts, to) {
      let length = 0;
      for (const part of parts) length += part.length;
      core.checkLength(length);
      sendOne(parts, to);
    },
    joinGroup: (group, iface) => membership(false, group, iface),
    leaveGroup: (group, iface) => membership(true, group, iface),
    onReceive: (handler) => core.onReceive(handler),
    onError: (handler) => core.onError(handler),
    close() {
      core.closed = true;
      closing ??= new Promise<void>((resolve) => socket.close(() => resolve()));
      return closing;
    },
  };
  return transport;
};
