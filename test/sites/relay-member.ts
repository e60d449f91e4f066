/**
 * One member of a site over real UDP (loopback multicast) whose gateway role reaches a real nats-server,
 * for test/sites/relay-nats.test.ts and bench/relay.ts. Usage: `tsx relay-member.ts '<RelayMemberConfig>'`.
 *
 * It prints one JSON line per event (ready, site up/down, gateway changes, messages lost, errors) and
 * answers commands read from stdin, one JSON line each: `stream` broadcasts numbered messages on the
 * relayed topic ("stream") or a topic that stays in the site ("local"), `report` prints what it
 * delivered from each origin on each (count, first, last, whether in order with no gap or copy, when,
 * and the latencies), `reset` forgets it, `request` asks a member of any site, `exit` leaves. It answers requests on its
 * default inbox with `re:<text>`, and exits on its own after `lifetimeMs`, whatever happens.
 *
 * With `map`, the site's replicated map is copied across sites (`relay.map`): `put` writes a key,
 * `fill` writes `count` keys with at most `window` writes under way (each value `<text>@<wall ms>`;
 * `pauseMs` after each), `map` prints every entry and tombstone with its stamp, and the delivery lag
 * of the entries copied from other sites (wall clock from the write to the change here) since the
 * last `reset`.
 */
import { createInterface } from "node:readline";
import { createRelayChannel } from "../../src/relay/index.ts";
import { createUdpTransport } from "../../src/adapters/node.ts";

export interface RelayMemberConfig {
  readonly name: string;
  readonly site: string;
  readonly cluster: string;
  readonly group: string;
  readonly port: number;
  readonly nats: string;
  readonly lifetimeMs: number;
  /** The payload size of streamed messages. Default: just the number. */
  readonly bytes?: number;
  /** Copy the site's replicated map across sites. */
  readonly map?: boolean;
}

export type RelayMemberCommand =
  | { readonly cmd: "stream"; readonly count: number; readonly from?: number; readonly pauseEvery?: number; readonly pauseMs?: number; readonly topic?: string }
  | { readonly cmd: "report" }
  | { readonly cmd: "reset" }
  | { readonly cmd: "request"; readonly site: string; readonly id: string; readonly text: string }
  | { readonly cmd: "put"; readonly key: string; readonly text: string }
  | { readonly cmd: "fill"; readonly prefix: string; readonly count: number; readonly window: number; readonly pauseMs?: number }
  | { readonly cmd: "map" }
  | { readonly cmd: "exit" };

export interface OriginReport {
  readonly count: number;
  readonly first: number;
  readonly last: number;
  readonly inOrder: boolean;
  /** Wall-clock time of the first and the last delivery, ms. */
  readonly firstAt: number;
  readonly lastAt: number;
  /** Wall-clock delivery latency of the streamed messages, ms (send time rides in the payload). */
  readonly latencies: readonly number[];
}

export type RelayMemberEvent =
  | { readonly type: "ready"; readonly name: string; readonly id: string; readonly site: string }
  | { readonly type: "siteUp"; readonly site: string }
  | { readonly type: "siteDown"; readonly site: string }
  | { readonly type: "gateway"; readonly site: string; readonly gateway: string }
  | { readonly type: "lost"; readonly origin: string; readonly firstSeq: number; readonly lastSeq: number }
  | { readonly type: "streamed"; readonly count: number; readonly ms: number }
  | { readonly type: "report"; readonly origins: Record<string, OriginReport>; readonly isGateway: boolean }
  | { readonly type: "reply"; readonly text: string; readonly ms: number }
  | { readonly type: "requestFailed"; readonly code: string }
  | { readonly type: "put"; readonly key: string; readonly time: number; readonly site: string }
  | { readonly type: "putFailed"; readonly key: string; readonly code: string }
  | { readonly type: "filled"; readonly count: number; readonly acknowledged: readonly string[]; readonly ms: number }
  /** Every entry as `value@time/site` (tombstones `×@time/site`), the lags of copied entries, ms, and the gateway's copy counters. */
  | { readonly type: "map"; readonly entries: Record<string, string>; readonly lags: readonly number[]; readonly copiedAt: readonly number[]; readonly stats: unknown }
  | { readonly type: "error"; readonly stage: string; readonly message: string };

const config = JSON.parse(process.argv[2]!) as RelayMemberConfig;
const print = (event: RelayMemberEvent) => process.stdout.write(`${JSON.stringify(event)}\n`);
const now = () => performance.timeOrigin + performance.now();

const relay = await createRelayChannel({
  name: config.name,
  cluster: config.cluster,
  network: { type: "multicast", group: config.group, port: config.port, interface: "127.0.0.1" },
  transport: createUdpTransport,
  groups: ["site"],
  heartbeatIntervalMs: 100,
  failureTimeoutMs: 1_000,
  verifyTimeoutMs: 300,
  discoveryTimeoutMs: 500,
  relay: {
    site: config.site,
    nats: { servers: [config.nats] },
    topics: ["stream"],
    announceIntervalMs: 200,
    siteTimeoutMs: 5_000,
    resendTimeoutMs: 500,
    ...(config.map === true ? { map: { digestIntervalMs: 1_000 } } : {}),
  },
});
setTimeout(() => void relay.close().finally(() => process.exit(0)), config.lifetimeMs).unref();

// What it delivered, by topic and origin: "stream" is relayed to every site, "local" stays in the site.
const origins = new Map<string, { count: number; first: number; last: number; inOrder: boolean; firstAt: number; lastAt: number; latencies: number[] }>();
for (const topic of ["stream", "local"]) {
  relay.onTopic(topic, (message) => {
    const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength);
    const n = view.getFloat64(0);
    const at = now();
    const latency = at - view.getFloat64(8);
    const key = `${topic}:${message.origin.name}`;
    const seen = origins.get(key);
    if (seen === undefined) {
      origins.set(key, { count: 1, first: n, last: n, inOrder: true, firstAt: at, lastAt: at, latencies: [latency] });
      return;
    }
    seen.count++;
    seen.lastAt = at;
    if (n !== seen.last + 1) seen.inOrder = false;
    seen.last = n;
    if (seen.latencies.length < 100_000) seen.latencies.push(latency);
  });
}
relay.onInbox("", (message) => (message.isRequest ? message.reply(new TextEncoder().encode(`re:${message.text()}`)) : undefined));
relay.on("siteUp", ({ site }) => print({ type: "siteUp", site }));
relay.on("siteDown", ({ site }) => print({ type: "siteDown", site }));
relay.on("gatewayChange", ({ site, gateway }) => print({ type: "gateway", site, gateway: gateway.name }));
relay.on("messagesLost", ({ origin, firstSeq, lastSeq }) => print({ type: "lost", origin: origin.name, firstSeq, lastSeq }));
relay.on("error", ({ error, stage }) => print({ type: "error", stage, message: `${error.code}: ${error.message}` }));
relay.group.on("error", ({ error, stage }) => print({ type: "error", stage, message: `${error.code}: ${error.message}` }));

// Entries copied from other sites: how long after their write (the wall time in the value) they changed here.
const lags: number[] = [];
const copiedAt: number[] = [];
if (config.map === true) {
  relay.map.on("change", (change) => {
    if (change.type !== "put" || change.stamp.site === config.site || lags.length >= 100_000) return;
    const text = new TextDecoder().decode(change.value as Uint8Array);
    const at = now();
    lags.push(at - Number(text.slice(text.lastIndexOf("@") + 1)));
    copiedAt.push(at);
  });
}

async function put(key: string, text: string): Promise<boolean> {
  try {
    const stamp = await relay.map.put(key, new TextEncoder().encode(`${text}@${now()}`));
    print({ type: "put", key, time: stamp.time, site: stamp.site });
    return true;
  } catch (error) {
    print({ type: "putFailed", key, code: `${(error as { code?: string }).code}: ${(error as Error).message}` });
    return false;
  }
}

async function fill(command: Extract<RelayMemberCommand, { cmd: "fill" }>): Promise<void> {
  const start = now();
  const acknowledged: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < command.count) {
      const key = `${command.prefix}${next++}`;
      try {
        await relay.map.put(key, new TextEncoder().encode(`${key}@${now()}`));
        acknowledged.push(key);
        if (command.pauseMs !== undefined) await new Promise((resolve) => setTimeout(resolve, command.pauseMs));
      } catch (error) {
        print({ type: "putFailed", key, code: `${(error as { code?: string }).code}: ${(error as Error).message}` });
      }
    }
  };
  await Promise.all(Array.from({ length: command.window }, worker));
  print({ type: "filled", count: command.count, acknowledged, ms: now() - start });
}

await relay.join({ timeoutMs: 30_000 });
print({ type: "ready", name: config.name, id: relay.group.id, site: config.site });

async function stream(command: Extract<RelayMemberCommand, { cmd: "stream" }>): Promise<void> {
  const start = now();
  const from = command.from ?? 1;
  const payload = new Uint8Array(Math.max(16, config.bytes ?? 16));
  const view = new DataView(payload.buffer);
  for (let n = from; n < from + command.count; n++) {
    view.setFloat64(0, n);
    view.setFloat64(8, now());
    await relay.broadcast(command.topic ?? "stream", payload.slice());
    if (command.pauseEvery !== undefined && (n - from + 1) % command.pauseEvery === 0) await new Promise((resolve) => setTimeout(resolve, command.pauseMs ?? 1));
  }
  print({ type: "streamed", count: command.count, ms: now() - start });
}

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line) as RelayMemberCommand;
  switch (command.cmd) {
    case "stream":
      void stream(command);
      break;
    case "report":
      print({ type: "report", origins: Object.fromEntries(origins), isGateway: relay.isGateway });
      break;
    case "reset":
      origins.clear();
      lags.length = 0;
      copiedAt.length = 0;
      break;
    case "request": {
      const start = now();
      relay
        .request({ site: command.site, id: command.id }, new TextEncoder().encode(command.text), { timeoutMs: 10_000 })
        .then((reply) => print({ type: "reply", text: reply.text(), ms: now() - start }))
        .catch((error: { code?: string }) => print({ type: "requestFailed", code: error.code ?? String(error) }));
      break;
    }
    case "put":
      void put(command.key, command.text);
      break;
    case "fill":
      void fill(command);
      break;
    case "map": {
      const entries: Record<string, string> = {};
      for (const e of relay.map.stamped()) entries[e.key] = `${e.removed ? "×" : new TextDecoder().decode(e.value)}@${e.time}/${e.site}`;
      print({ type: "map", entries, lags, copiedAt, stats: relay.stats.mapCopy ?? null });
      break;
    }
    case "exit":
      await relay.close();
      process.exit(0);
  }
}
