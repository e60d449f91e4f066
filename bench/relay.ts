/**
 * Sites bridged over NATS: relayed messages per second and their latency across the bridge, next to the
 * same within a site, in the same run. Two sites over real UDP (each its own loopback multicast group),
 * a nats-server of the run's own on 127.0.0.1, every member a Node process (test/sites/relay-member.ts):
 * site eu has its gateway, a sender and a receiver; site us its gateway and a receiver. In each round:
 *
 *  - within a site: the sender streams N messages on a topic that stays in the site, as fast as flow
 *    control lets it; measured at eu's receiver;
 *  - across the bridge: the same on a relayed topic; measured at us's receiver (sender → multicast →
 *    eu's gateway → NATS → us's gateway → multicast → receiver) and, for the same messages, at eu's;
 *  - latency at a low rate: one message a millisecond (paced), within the site and across;
 *  - the map's copy (every member copies its site's map, `relay.map`): the sender writes N keys with
 *    up to 32 writes under way; measured are the writes per second at eu (each acknowledged by eu's
 *    map) and the entries per second copied into us's map at us's receiver (first to last change
 *    there), with the copy lag: from the write's start at eu to the change at us's receiver; then the
 *    lag of writes one at a time, a millisecond apart.
 *
 * Rates are messages delivered per second at the receiver (first to last delivery); latencies are
 * send-to-delivery wall clock. Writes bench/results/relay.json and prints a table.
 *
 *   npx tsx bench/relay.ts [--messages 20000] [--paced 2000] [--bytes 256] [--entries 5000] [--rounds 3]
 */
import { parseArgs } from "node:util";
import { NatsServer, natsServerMissing } from "../test/sites/nats-server.ts";
import type { OriginReport, RelayMemberEvent } from "../test/sites/relay-member.ts";
import { RelayProcess, siteNetwork, waitFor } from "../test/sites/relay-processes.ts";
import { type LatencySummary, machine, median, startRun, summarize, writeResults } from "./lib.ts";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    paced: { type: "string", default: "2000" },
    bytes: { type: "string", default: "256" },
    entries: { type: "string", default: "5000" },
    rounds: { type: "string", default: "3" },
  },
});
const MESSAGES = Number(values.messages);
const PACED = Number(values.paced);
const BYTES = Number(values.bytes);
const ROUNDS = Number(values.rounds);
const ENTRIES = Number(values.entries);
/** Writes under way at once when the sender fills the map. */
const WRITE_WINDOW = 32;

interface Measurement {
  readonly messagesPerSecond: number;
  /** Not measured for the writes at the site: their rate alone. */
  readonly latency: LatencySummary | undefined;
}

const missing = natsServerMissing();
if (missing !== undefined) {
  console.error(`bench/relay.ts: ${missing}`);
  process.exit(1);
}

const run = startRun();
const nats = await NatsServer.start();
const members: RelayProcess[] = [];
const cleanUp = () => {
  for (const member of members) member.kill();
};
process.on("exit", cleanUp);

try {
  const cluster = `relay-bench-${Date.now().toString(36)}`;
  const networks = { eu: siteNetwork(), us: siteNetwork() };
  const start = async (site: "eu" | "us", name: string) => {
    const member = new RelayProcess({ name, site, cluster, ...networks[site], nats: nats.url, lifetimeMs: 1_800_000, bytes: BYTES, map: true });
    members.push(member);
    await member.next("ready", 60_000, 0);
    return member;
  };
  // Gateways first: the longest-standing member coordinates.
  const euGateway = await start("eu", "eu-gateway");
  const usGateway = await start("us", "us-gateway");
  const sender = await start("eu", "eu-sender");
  const euReceiver = await start("eu", "eu-receiver");
  const usReceiver = await start("us", "us-receiver");
  await waitFor(() => members.every((m) => m.of("siteUp").length > 0), 30_000, "both sites up", members);
  if (!(await euGateway.report()).isGateway || !(await usGateway.report()).isGateway) throw new Error("the first members are not the gateways");

  let next = 1;
  const measure = async (topic: "local" | "stream", count: number, paced: boolean, receivers: readonly RelayProcess[]): Promise<Measurement[]> => {
    // A report answers after the reset (one stdin, in order): nothing of the stream is counted before it.
    for (const receiver of receivers) receiver.command({ cmd: "reset" });
    await Promise.all(receivers.map((receiver) => receiver.report()));
    const from = sender.events.length;
    sender.command({ cmd: "stream", topic, count, from: next, ...(paced ? { pauseEvery: 1, pauseMs: 1 } : {}) });
    next += count;
    await sender.next("streamed", 300_000, from);
    const key = `${topic}:${sender.name}`;
    const reports: OriginReport[] = [];
    for (const receiver of receivers) {
      await waitFor(async () => ((await receiver.report()).origins[key]?.count ?? 0) >= count, 60_000, `${count} at ${receiver.name}`, members);
      const report = (await receiver.report()).origins[key]!;
      if (!report.inOrder || report.count !== count) throw new Error(`${receiver.name}: ${report.count} of ${count}, in order: ${report.inOrder}`);
      reports.push(report);
    }
    return reports.map((r) => ({ messagesPerSecond: (r.count - 1) / ((r.lastAt - r.firstAt) / 1_000), latency: summarize(r.latencies) }));
  };

  let fills = 0;
  // The sender writes `count` keys; measured at us's receiver once every acknowledged one is there.
  const copy = async (count: number, window: number, pauseMs: number | undefined): Promise<{ written: Measurement; copied: Measurement }> => {
    usReceiver.command({ cmd: "reset" });
    await usReceiver.report();
    const prefix = `fill${++fills}/`;
    const from = sender.events.length;
    sender.command({ cmd: "fill", prefix, count, window, ...(pauseMs === undefined ? {} : { pauseMs }) });
    const filled = await sender.next("filled", 300_000, from);
    if (filled.acknowledged.length !== count) throw new Error(`${count - filled.acknowledged.length} writes failed`);
    let map: Extract<RelayMemberEvent, { type: "map" }> | undefined;
    await waitFor(
      async () => {
        const mark = usReceiver.events.length;
        usReceiver.command({ cmd: "map" });
        map = await usReceiver.next("map", 10_000, mark);
        return filled.acknowledged.every((key) => map!.entries[key] !== undefined);
      },
      120_000,
      `${count} entries copied to ${usReceiver.name}`,
      members,
    );
    const copiedAt = map!.copiedAt;
    return {
      written: { messagesPerSecond: count / (filled.ms / 1_000), latency: undefined },
      copied: { messagesPerSecond: (copiedAt.length - 1) / ((copiedAt.at(-1)! - copiedAt[0]!) / 1_000), latency: summarize([...map!.lags]) },
    };
  };

  const rounds: Array<Record<string, Measurement>> = [];
  for (let round = 0; round < ROUNDS; round++) {
    const [withinSite] = await measure("local", MESSAGES, false, [euReceiver]);
    const [acrossAtEu, across] = await measure("stream", MESSAGES, false, [euReceiver, usReceiver]);
    const [pacedWithin] = await measure("local", PACED, true, [euReceiver]);
    const [, pacedAcross] = await measure("stream", PACED, true, [euReceiver, usReceiver]);
    const { written: mapWritten, copied: mapCopied } = await copy(ENTRIES, WRITE_WINDOW, undefined);
    const { copied: mapPaced } = await copy(Math.min(ENTRIES, 1_000), 1, 1);
    rounds.push({ withinSite: withinSite!, across: across!, acrossAtEu: acrossAtEu!, pacedWithin: pacedWithin!, pacedAcross: pacedAcross!, mapWritten, mapCopied, mapPaced });
    console.error(
      `round ${round + 1}: within ${withinSite!.messagesPerSecond.toFixed(0)}/s, across ${across!.messagesPerSecond.toFixed(0)}/s, map written ${mapWritten.messagesPerSecond.toFixed(0)}/s, copied ${mapCopied.messagesPerSecond.toFixed(0)}/s`,
    );
  }
  const errors = members.flatMap((m) => m.of("error").map((e) => `${m.name}: ${e.stage} ${e.message}`));
  const lost = members.flatMap((m) => m.of("lost"));

  const medianOf = (name: string, pick: (m: Measurement) => number) => median(rounds.map((r) => pick(r[name]!)));
  const row = (name: string) => ({
    messagesPerSecond: medianOf(name, (m) => m.messagesPerSecond),
    p50Ms: medianOf(name, (m) => m.latency?.p50Ms ?? Number.NaN),
    p99Ms: medianOf(name, (m) => m.latency?.p99Ms ?? Number.NaN),
  });
  const summary = {
    benchmark: "relay",
    date: new Date().toISOString(),
    machine: machine(run.load),
    messages: MESSAGES,
    paced: PACED,
    bytes: BYTES,
    entries: ENTRIES,
    rounds: ROUNDS,
    medians: {
      withinSite: row("withinSite"),
      acrossTheBridge: row("across"),
      relayedTopicWithinSite: row("acrossAtEu"),
      pacedWithinSite: row("pacedWithin"),
      pacedAcrossTheBridge: row("pacedAcross"),
      mapWrittenAtTheSite: { entriesPerSecond: row("mapWritten").messagesPerSecond },
      mapCopiedAcrossTheBridge: row("mapCopied"),
      mapPacedCopyLag: row("mapPaced"),
    },
    runs: rounds,
    lost,
    errors,
  };
  writeResults("relay", summary);

  const m = summary.medians;
  const fmt = (n: number) => n.toLocaleString("en-US", { maximumFractionDigits: n < 10 ? 2 : 0 });
  console.log(`\nSites bridged over NATS: ${MESSAGES} messages of ${BYTES} B as fast as flow control lets, ${PACED} paced at one a millisecond; medians of ${ROUNDS} rounds\n`);
  console.log("| measurement | messages/s | latency p50 | latency p99 |");
  console.log("| --- | ---: | ---: | ---: |");
  console.log(`| within a site (a topic that stays in it) | ${fmt(m.withinSite.messagesPerSecond)} | ${fmt(m.withinSite.p50Ms)} ms | ${fmt(m.withinSite.p99Ms)} ms |`);
  console.log(`| across the bridge (a relayed topic, at the other site) | ${fmt(m.acrossTheBridge.messagesPerSecond)} | ${fmt(m.acrossTheBridge.p50Ms)} ms | ${fmt(m.acrossTheBridge.p99Ms)} ms |`);
  console.log(`| the same relayed messages, in the sender's site | ${fmt(m.relayedTopicWithinSite.messagesPerSecond)} | ${fmt(m.relayedTopicWithinSite.p50Ms)} ms | ${fmt(m.relayedTopicWithinSite.p99Ms)} ms |`);
  console.log(`| paced, within a site | | ${fmt(m.pacedWithinSite.p50Ms)} ms | ${fmt(m.pacedWithinSite.p99Ms)} ms |`);
  console.log(`| paced, across the bridge | | ${fmt(m.pacedAcrossTheBridge.p50Ms)} ms | ${fmt(m.pacedAcrossTheBridge.p99Ms)} ms |`);
  console.log(`\nThe map's copy: ${ENTRIES} keys written at eu with up to ${WRITE_WINDOW} writes under way, then ${Math.min(ENTRIES, 1_000)} one at a time a millisecond apart\n`);
  console.log("| measurement | entries/s | copy lag p50 | copy lag p99 |");
  console.log("| --- | ---: | ---: | ---: |");
  console.log(`| written to the site's map at eu (acknowledged) | ${fmt(m.mapWrittenAtTheSite.entriesPerSecond)} | | |`);
  console.log(`| copied into us's map, at us's receiver | ${fmt(m.mapCopiedAcrossTheBridge.messagesPerSecond)} | ${fmt(m.mapCopiedAcrossTheBridge.p50Ms)} ms | ${fmt(m.mapCopiedAcrossTheBridge.p99Ms)} ms |`);
  console.log(`| one at a time, copied into us's map | | ${fmt(m.mapPacedCopyLag.p50Ms)} ms | ${fmt(m.mapPacedCopyLag.p99Ms)} ms |`);
  if (lost.length > 0 || errors.length > 0) console.log(`\nlost: ${JSON.stringify(lost)}; errors: ${errors.join("; ")}`);
  console.log(`\nwall time ${((Date.now() - run.startedAt) / 1_000).toFixed(0)} s; JSON: bench/results/relay.json`);
} finally {
  cleanUp();
  await nats.stop();
}
process.exit(0);
