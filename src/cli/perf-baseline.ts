import { createSocket } from "node:dgram";
import { absoluteNow } from "./perf-protocol.ts";

/** The raw baseline: unreliable `node:dgram` datagrams, one process to one, as fast as they go. */

export interface BaselineReport {
  readonly received: number;
  readonly bytes: number;
  readonly seconds: number;
}

export type BaselineMessage =
  | { readonly type: "listening"; readonly port: number }
  | ({ readonly type: "result" } & BaselineReport)
  | { readonly type: "sent"; readonly count: number };

const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** Receives for as long as datagrams keep coming; reports once the sender has been quiet for 300 ms. */
export async function runBaselineReceiver(): Promise<void> {
  const socket = createSocket("udp4");
  let received = 0;
  let bytes = 0;
  let firstAt = 0;
  let lastAt = 0;
  socket.on("message", (message) => {
    lastAt = absoluteNow();
    if (received === 0) firstAt = lastAt;
    received++;
    bytes += message.length;
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  socket.setRecvBufferSize(SOCKET_BUFFER_BYTES);
  process.send!({ type: "listening", port: socket.address().port } satisfies BaselineMessage);
  const timer = setInterval(() => {
    if (received > 0 && absoluteNow() - lastAt > 300) {
      clearInterval(timer);
      socket.close();
      process.send!({ type: "result", received, bytes, seconds: (lastAt - firstAt) / 1000 } satisfies BaselineMessage);
    }
  }, 50);
}

/** Sends `size`-byte datagrams to 127.0.0.1:`port` for `seconds`. */
export async function runBaselineSender(port: number, size: number, seconds: number): Promise<void> {
  // An immediate lookup, as the Node adapter uses: dgram's default defers every send by a tick.
  const lookup = (_host: string, _options: unknown, callback: (error: null, address: string, family: number) => void) =>
    callback(null, "127.0.0.1", 4);
  const socket = createSocket({ type: "udp4", lookup: lookup as never });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  socket.setSendBufferSize(SOCKET_BUFFER_BYTES);
  const payload = new Uint8Array(size);
  const endAt = absoluteNow() + seconds * 1000;
  let count = 0;
  while (absoluteNow() < endAt) {
    for (let i = 0; i < 64; i++) {
      socket.send(payload, port, "127.0.0.1");
      count++;
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  process.send!({ type: "sent", count } satisfies BaselineMessage);
  socket.close();
}
