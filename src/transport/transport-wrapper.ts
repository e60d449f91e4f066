import type { Address, ReceiveHandler, Transport, TransportFactory } from "./transport.ts";

/** What a wrapper changes of a transport; everything else is the inner transport's own. */
export interface TransportOverrides {
  readonly nativeBatchSend?: boolean;
  /** Sees each datagram about to be sent, by `send` or `sendMany`; returning false drops it. */
  readonly beforeSend?: (data: Uint8Array, to: Address) => boolean | void;
  /** Stands between the inner transport and the handler of what arrives. */
  readonly receive?: (handler: ReceiveHandler) => ReceiveHandler;
  /** Replace sending altogether (`beforeSend` is then not consulted). */
  readonly send?: Transport["send"];
  readonly sendMany?: Transport["sendMany"];
}

/** `inner`, changed by `overrides`: how loss, taps and guards are put around a transport. */
export function wrapTransport(inner: Transport, overrides: TransportOverrides): Transport {
  const { beforeSend, receive } = overrides;
  return {
    get localAddress() {
      return inner.localAddress;
    },
    maxDatagramBytes: inner.maxDatagramBytes,
    nativeBatchSend: overrides.nativeBatchSend ?? inner.nativeBatchSend,
    send:
      overrides.send ??
      (beforeSend === undefined
        ? (data, to) => inner.send(data, to)
        : (data, to) => {
            if (beforeSend(data, to) !== false) inner.send(data, to);
          }),
    sendMany:
      overrides.sendMany ??
      (beforeSend === undefined
        ? (datagrams) => inner.sendMany(datagrams)
        : (datagrams) => inner.sendMany(datagrams.filter(([data, to]) => beforeSend(data, to) !== false))),
    joinGroup: (group, iface) => inner.joinGroup(group, iface),
    leaveGroup: (group, iface) => inner.leaveGroup(group, iface),
    onReceive: receive === undefined ? (handler) => inner.onReceive(handler) : (handler) => inner.onReceive(receive(handler)),
    onError: (handler) => inner.onError(handler),
    close: () => inner.close(),
  };
}

/** A factory whose every transport is wrapped by the overrides `wrap` gives for it. */
export function wrapTransports(factory: TransportFactory, wrap: (inner: Transport) => TransportOverrides): TransportFactory {
  return async (options) => {
    const inner = await factory(options);
    return wrapTransport(inner, wrap(inner));
  };
}
