import type { Address, TransportFactory } from "../../src/transport/transport.ts";
import { wrapTransports } from "../../src/transport/transport-wrapper.ts";

/**
 * A transport factory for tests that forge or fuzz datagrams: every member it opens may send only to
 * loopback (127.0.0.0/8) or to the test's multicast group (on the loopback interface). A send anywhere
 * else — an address read from a forged datagram — is refused, recorded, and never reaches the network.
 */
export function loopbackOnly(factory: TransportFactory, multicastGroup: string, refused: Address[]): TransportFactory {
  const allowed = (to: Address) => to.host.startsWith("127.") || to.host === multicastGroup;
  return wrapTransports(factory, () => ({
    beforeSend: (_data, to) => {
      if (allowed(to)) return true;
      refused.push(to);
      return false;
    },
  }));
}
