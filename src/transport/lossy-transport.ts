import type { RandomSource } from "./clock.ts";
import { systemRandom } from "./clock.ts";
import type { Transport, TransportFactory } from "./transport.ts";
import { wrapTransport } from "./transport-wrapper.ts";

/** Loss injected in-process, for benchmarks and tests over real sockets (where `tc netem` is not available). */
export interface LossOptions {
  /** Probability that an arriving datagram is dropped before the receiver sees it, 0..1. */
  readonly receiveLoss: number;
  /** Random source of the drops. Default: the system's. */
  readonly random?: RandomSource;
}

/** Wraps a transport factory so that every transport it opens drops arriving datagrams at random. */
export function withLoss(factory: TransportFactory, options: LossOptions): TransportFactory {
  const random = options.random ?? systemRandom;
  return async (transportOptions) => {
    const transport = await factory(transportOptions);
    return lossyTransport(transport, options.receiveLoss, random);
  };
}

function lossyTransport(inner: Transport, loss: number, random: RandomSource): Transport {
  return wrapTransport(inner, {
    receive: (handler) => (data, from) => {
      if (random.next() >= loss) handler(data, from);
    },
  });
}
