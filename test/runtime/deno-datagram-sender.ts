/**
 * A worker of deno-timer-order.ts: sends one datagram to the main thread's socket each time it is asked
 * (flag 1), and says when the datagram has gone (flag 2), while the main thread is blocked; 3 ends it.
 */
declare const Deno: {
  listenDatagram(options: { transport: "udp"; hostname: string; port: number }): {
    send(data: Uint8Array, to: { transport: "udp"; hostname: string; port: number }): Promise<number>;
    close(): void;
  };
};
declare const self: { onmessage: ((event: { data: { flag: SharedArrayBuffer; port: number } }) => void) | null; close(): void };

self.onmessage = async (event) => {
  const flag = new Int32Array(event.data.flag);
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port: event.data.port };
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  for (;;) {
    Atomics.wait(flag, 0, 0);
    if (Atomics.load(flag, 0) === 3) break;
    await socket.send(new Uint8Array(8), to);
    Atomics.store(flag, 0, 2);
    Atomics.notify(flag, 0);
    Atomics.wait(flag, 0, 2);
  }
  socket.close();
  self.close();
};
