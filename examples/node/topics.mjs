// Two members in one Node process exchange messages on a topic over loopback multicast.
// Run it from a checkout after `npm run build` (or with activeblaze installed): node examples/node/topics.mjs
import { BlazeMessage, createChannel } from "activeblaze";

// A cluster name of its own, so that other runs on this host do not mix in.
const cluster = `example-node-${process.pid}`;
const publisher = await createChannel({ cluster, name: "publisher" });
const subscriber = await createChannel({ cluster, name: "subscriber" });
try {
  await Promise.all([publisher.start(), subscriber.start()]);
  await subscriber.waitForPeers(1, { timeoutMs: 5_000 });

  const received = [];
  const reading = (async () => {
    for await (const message of subscriber.subscribe("prices", { signal: AbortSignal.timeout(5_000) })) {
      received.push(message.message);
      console.log(`subscriber <- ${String(message.message)}`);
      if (received.length === 3) break;
    }
  })();
  for (const [symbol, bid] of [["ACME", 12.5], ["INIT", 3.25], ["TECH", 101]]) {
    await publisher.broadcast("prices", new BlazeMessage().setStringValue("symbol", symbol).setDoubleValue("bid", bid));
  }
  await reading;
  console.log(received.length === 3 ? "ok: 3 prices received" : `failed: ${received.length} of 3 prices received`);
  process.exitCode = received.length === 3 ? 0 : 1;
} finally {
  await Promise.all([publisher.shutDown(), subscriber.shutDown()]);
}
