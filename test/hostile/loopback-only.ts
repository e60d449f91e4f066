import type { Address, Transport, TransportFactory } from "../../src/transport/transport.ts";

/**
 * A transport factory for tests that forge or fuzz datagrams: every member it opens may send only to
 * loopback (127.0.0.0/8) or to the test's multicast group (on the loopback interface). A send anywhere
 * else — an address read from a forged datagram — is refused, recorded, and never reaches the network.
 */
export function loopbackOnly(factory: TransportFactory, multicastGroup: string, refused: Address[]): TransportFactory {
  const allowed = (to: Address) => to.host.startsWith("127.") || to.host === multicastGroup;
  return async (options) => {
    const inner: Transport = await factory(options);
    const guard = (to: Address): boolean => {
      if (allowed(to)) return true;
      refused.push(to);
      return false;
    };
    return {
      get localAddress() {
        return inner.localAddress;
      },
      maxDatagramBytes: inner.maxDatagramBytes,
      nativeBatchSend: inner.nativeBatchSend,
      send: (data, to) => {
        if (guard(to)) inner.send(data, to);
      },
      sendMany: (datagrams) => inner.sendMany(datagrams.filter(([, to]) => guard(to))),
      joinGroup: (group, iface) => inner.joinGroup(group, iface),
      leaveGroup: (group, iface) => inner.leaveGroup(group, iface),
      onReceive: (handler) => inner.onReceive(handler),
      onError: (handler) => inner.onError(handler),
      close: () => inner.close(),
    };
  };
}
