/** The Deno UDP adapter, on the native `Deno.listenDatagram` (needs `--unstable-net`). */
import { BlazeError } from "../errors.ts";
import { type ResolvedTransportOptions, resolveTransportOptions } from "../transport/options.ts";
import { isIpLiteral } from "../transport/host-names.ts";
import type { Address, Transport, TransportFactory } from "../transport/transport.ts";
import { AdapterCore, isMulticastV4, toBlazeError, wrongRuntime } from "./shared.ts";

/** The part of Deno's unstable datagram API this adapter uses (Deno 2.x). */
interface DenoNetAddr {
  readonly transport: "udp";
  readonly hostname: string;
  readonly port: number;
}
interface DenoMembership {
  leave(): Promise<void>;
  setTTL(ttl: number): Promise<void>;
}
interface DenoDatagramConn {
  readonly addr: DenoNetAddr;
  joinMulticastV4(group: string, iface: string): Promise<DenoMembership>;
  receive(buffer?: Uint8Array): Promise<[Uint8Array, DenoNetAddr]>;
  send(data: Uint8Array, to: DenoNetAddr): Promise<number>;
  close(): void;
}
type ListenDatagram = (options: {
  transport: "udp";
  hostname: string;
  port: number;
  reuseAddress: boolean;
  loopback: boolean;
}) => DenoDatagramConn;

/** Deno sets IP_MULTICAST_TTL only through a membership: join the all-hosts group, which every multicast interface is already in, just for that. */
async function setMulticastTtl(conn: DenoDatagramConn, o: ResolvedTransportOptions): Promise<void> {
  const membership = await conn.joinMulticastV4("224.0.0.1", o.multicastInterface ?? "0.0.0.0");
  await membership.setTTL(o.multicastTtl);
  await membership.leave();
}

/**
 * Deno's UDP API can neither choose the interface IPv6 multicast goes out of nor join an IPv6 group by
 * interface name or address (only by index, which it does not tell): refused at once, not half done.
 */
function noIpv6Multicast(iface: string): BlazeError {
  return new BlazeError(
    "UNSUPPORTED",
    `IPv6 multicast (interface "${iface}") is not available on Deno: its UDP API cannot choose the interface of IPv6 multicast. An IPv6 group (network.group) needs Node or Bun; on Deno use an IPv4 group or a static network`,
  );
}

/** The runtime this adapter is for. */
export const runtime = "deno";

export const createUdpTransport: TransportFactory = async (options) => {
  const deno = (globalThis as { Deno?: { listenDatagram?: ListenDatagram } }).Deno;
  if (deno === undefined) throw wrongRuntime("Deno");
  const listen = deno.listenDatagram;
  if (typeof listen !== "function") throw wrongRuntime("Deno", " started with --unstable-net");
  const o = resolveTransportOptions(options);
  if (o.multicastInterface !== undefined && o.bindAddress.includes(":")) throw noIpv6Multicast(o.multicastInterface);
  const core = new AdapterCore(o.maxDatagramBytes);
  // Deno cannot set IP_MULTICAST_IF, and Linux sends multicast out of the interface a socket is bound to.
  // So a wildcard-bound transport sends multicast through a second socket bound to the interface, on the
  // same port (hence SO_REUSEADDR) so that peers see one sender address. It receives unicast too.
  const iface = o.multicastInterface;
  const needsSender = iface !== undefined && iface !== "0.0.0.0" && o.bindAddress === "0.0.0.0";
  const conns: DenoDatagramConn[] = [];
  try {
    const open = (hostname: string, port: number) =>
      listen.call(deno, { transport: "udp", hostname, port, reuseAddress: o.reuseAddress || needsSender, loopback: o.multicastLoopback });
    conns.push(open(o.bindAddress, o.port));
    if (needsSender) conns.push(open(iface, conns[0]!.addr.port));
    // 1 is the kernel default; setting it needs a group join, so only do it when asked for another value.
    if (o.multicastTtl !== 1) for (const conn of conns) await setMulticastTtl(conn, o);
    // Deno has no way to size the socket buffers: receiveBufferBytes and sendBufferBytes are ignored.
  } catch (error) {
    for (const conn of conns) conn.close();
    const sender = needsSender ? ` with a multicast sender on ${iface}` : "";
    throw toBlazeError("BIND_FAILED", `Could not bind UDP ${o.bindAddress}:${o.port}${sender}`, error);
  }
  const [main, multicastSender = main] = conns as [DenoDatagramConn, DenoDatagramConn?];

  // One receive buffer per socket; each datagram is copied out, since receivers may keep its bytes.
  const pump = async (conn: DenoDatagramConn): Promise<void> => {
    const buffer = new Uint8Array(65_536);
    while (!core.closed) {
      try {
        const [data, from] = await conn.receive(buffer);
        core.deliver(data.slice(), { host: from.hostname, port: from.port });
      } catch (error) {
        // Closing rejects the pending receive; anything else (e.g. a Windows ICMP reset) is reported and survived.
        core.report("TRANSPORT_ERROR", "UDP receive failed", error);
      }
    }
  };
  const pumps = conns.map(pump);

  // Deno runs sends that are in flight together in reverse order (a burst of 100 arrives last-first), so
  // they go one at a time from a queue; the first of a burst still leaves synchronously.
  let queue: Array<readonly [DenoDatagramConn, Uint8Array, DenoNetAddr]> = [];
  let flushing = false;
  const flush = async (): Promise<void> => {
    flushing = true;
    while (queue.length > 0 && !core.closed) {
      const batch = queue;
      queue = [];
      for (const [conn, data, to] of batch) {
        try {
          await conn.send(data, to);
        } catch (error) {
          core.report("SEND_FAILED", `UDP send to ${to.hostname}:${to.port} failed`, error);
        }
      }
    }
    flushing = false;
  };
  // Deno resolves a host name it is given; a member never resolves a name it read from a datagram.
  let literal = "";
  const sendOne = (data: Uint8Array, to: Address): void => {
    if (to.host !== literal) {
      if (!isIpLiteral(to.host)) {
        core.report("SEND_FAILED", `Could not send to ${to.host}:${to.port}`, new Error(`"${to.host}" is not an IP address literal`));
        return;
      }
      literal = to.host;
    }
    queue.push([isMulticastV4(to.host) ? multicastSender : main, data, { transport: "udp", hostname: to.host, port: to.port }]);
    if (!flushing) void flush();
  };
  // Deno joins and leaves asynchronously: failures arrive through onError, not as exceptions.
  const memberships = new Map<string, Promise<DenoMembership | undefined>>();
  const defaultIface = iface ?? "0.0.0.0";
  let closing: Promise<void> | undefined;

  const transport: Transport = {
    localAddress: { host: main.addr.hostname, port: main.addr.port },
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
    joinGroup(group, on = defaultIface) {
      const key = `${group}@${on}`;
      if (core.closed) throw new BlazeError("CLOSED", "The transport is closed");
      if (group.includes(":")) throw noIpv6Multicast(on);
      if (memberships.has(key)) throw new BlazeError("BIND_FAILED", `Already a member of multicast group ${key}`);
      const joined: Promise<DenoMembership | undefined> = main.joinMulticastV4(group, on).catch((error: unknown) => {
        if (memberships.get(key) === joined) memberships.delete(key);
        core.report("BIND_FAILED", `Could not join multicast group ${key}`, error);
        return undefined;
      });
      memberships.set(key, joined);
    },
    leaveGroup(group, on = defaultIface) {
      const key = `${group}@${on}`;
      if (core.closed) throw new BlazeError("CLOSED", "The transport is closed");
      const joined = memberships.get(key);
      if (joined === undefined) throw new BlazeError("BIND_FAILED", `Not a member of multicast group ${key}`);
      memberships.delete(key);
      joined
        .then((membership) => membership?.leave())
        .catch((error: unknown) => core.report("BIND_FAILED", `Could not leave multicast group ${key}`, error));
    },
    onReceive: (handler) => core.onReceive(handler),
    onError: (handler) => core.onError(handler),
    close() {
      if (closing === undefined) {
        core.closed = true;
        for (const conn of conns) conn.close();
        // Resolve once the receive loops have stopped, so no datagram is delivered after close.
        closing = Promise.all(pumps).then(() => {});
      }
      return closing;
    },
  };
  return transport;
};
