/**
 * On Deno: a channel driver's timer takes its turn after a datagram that waited at the socket when the
 * timer fired, as an input's turn does (a NACK timer must see the NACK of another receiver that is
 * already there). `deno run --unstable-net --allow-net --allow-read test/runtime/deno-timer-order.ts`
 * prints `{"trials": …, "datagramFirst": …}` last.
 *
 * Each trial arms a timer of its own just before the driver's, for the same time; in it, the main
 * thread has a worker send it a datagram and waits, blocked, until the datagram has gone and the
 * driver's deadline has passed. The driver's timer fires next, with the datagram waiting.
 */
import { createUdpTransport } from "../../src/adapters/deno.ts";
import { Driver, type TimedUnit } from "../../src/core/driver.ts";
import { systemClock } from "../../src/transport/clock.ts";

declare const Deno: { exit(code: number): never };
declare const Worker: new (url: string, options: { type: "module" }) => { postMessage(message: unknown): void; terminate(): void };

const TRIALS = 30;
const DELAY_MS = 3;

const transport = await createUdpTransport({ bindAddress: "127.0.0.1" });
let received = 0;
transport.onReceive(() => received++);
const flag = new Int32Array(new SharedArrayBuffer(4));
const worker = new Worker(new URL("./deno-datagram-sender.ts", import.meta.url).href, { type: "module" });
worker.postMessage({ flag: flag.buffer, port: transport.localAddress.port });

/** One deadline; notes how many datagrams had been received when it was met. */
class Deadline implements TimedUnit {
  due = Number.POSITIVE_INFINITY;
  receivedThen = -1;
  pollTimeout(): number {
    return this.due;
  }
  handleTimeout(now: number): void {
    if (now < this.due) return;
    this.due = Number.POSITIVE_INFINITY;
    this.receivedThen = received;
  }
}

const driver = new Driver(systemClock, (error) => {
  throw error;
});
const deadline = new Deadline();
driver.add(deadline);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
await sleep(100);

let datagramFirst = 0;
for (let trial = 0; trial < TRIALS; trial++) {
  const before = received;
  const due = systemClock.now() + DELAY_MS;
  setTimeout(() => {
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    while (Atomics.load(flag, 0) !== 2 || systemClock.now() < due + 0.5);
    Atomics.store(flag, 0, 0);
    Atomics.notify(flag, 0);
  }, DELAY_MS);
  deadline.due = due;
  driver.touch();
  await sleep(DELAY_MS + 20);
  if (deadline.receivedThen === before + 1) datagramFirst++;
}

Atomics.store(flag, 0, 3);
Atomics.notify(flag, 0);
driver.close();
await transport.close();
worker.terminate();
console.log(JSON.stringify({ trials: TRIALS, datagramFirst }));
Deno.exit(0);
