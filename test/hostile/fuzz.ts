/**
 * The long fuzz campaign: mutated valid datagrams into live members over loopback UDP, per level.
 *
 *   npm run fuzz -- [--count 100000] [--seed 1] [--level all|nack|fec|totem|cluster] [--security] [--json file]
 *
 * With --security the members seal their datagrams (AES-256-GCM) and the fuzzer is an insider that
 * holds the key: it opens their datagrams, mutates the envelopes inside and seals the mutants as its
 * made-up senders; the rest are their sealed datagrams mutated as they are (see live.ts, fuzz).
 *
 * After every 10,000 datagrams the real members exchange a round of messages, which must arrive
 * exactly once, in order, intact; nothing may be sent off loopback; no fault may happen inside a
 * member; the event loop must keep time. Prints a table (resident memory after a collection, before
 * and after) and exits 1 on the first violation.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { bedKeys, fuzz, type Level, loopLag, startBed, violations, workload } from "./live.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "100000" },
    seed: { type: "string", default: "1" },
    level: { type: "string", default: "all" },
    security: { type: "boolean", default: false },
    json: { type: "string" },
  },
});
const count = Number(values.count);
const seed = Number(values.seed);
if (!Number.isSafeInteger(count) || count < 1) throw new Error(`--count must be a positive integer, not ${values.count}`);
if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, not ${values.seed}`);
const levels: Level[] = values.level === "all" ? ["nack", "fec", "totem", "cluster"] : [values.level as Level];
for (const level of levels) if (!["nack", "fec", "totem", "cluster"].includes(level)) throw new Error(`--level must be all, nack, fec, totem or cluster`);

const gc = (globalThis as { gc?: () => void }).gc;
const rss = () => {
  gc?.();
  return process.memoryUsage().rss;
};
const CHUNK = 10_000;
const WORK = 20;

interface Row {
  level: Level;
  datagrams: number;
  seconds: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  maxLagMs: number;
  refused: Record<string, number>;
  admitted: number;
  addressMismatch: number;
  /** With --security: datagrams that opened (the insider's mutants), of all received. */
  opened?: number;
  received: number;
}

const rows: Row[] = [];
for (const level of levels) {
  const bed = await startBed(level, 3, {}, values.security ? bedKeys() : undefined);
  let delivered = 0;
  await workload(bed, WORK, 1);
  delivered += WORK;
  const before = rss();
  const started = performance.now();
  let maxLag = 0;
  for (let sent = 0; sent < count; sent += CHUNK) {
    await fuzz(bed, seed * 1_000_003 + sent, Math.min(CHUNK, count - sent));
    maxLag = Math.max(maxLag, await loopLag());
    await workload(bed, WORK, delivered + 1, 20_000);
    delivered += WORK;
    const found = violations(bed, delivered);
    if (found.length > 0) {
      console.error(`${level}, after ${sent + CHUNK} datagrams (seed ${seed}):\n  ${found.join("\n  ")}`);
      await bed.close();
      process.exit(1);
    }
    process.stdout.write(`\r${level}: ${Math.min(count, sent + CHUNK).toLocaleString("en-US")} datagrams`);
  }
  const seconds = (performance.now() - started) / 1000;
  const after = rss();
  const stats = bed.members[0]!.channel.stats;
  rows.push({
    level,
    datagrams: count,
    seconds,
    rssBeforeMiB: before / 2 ** 20,
    rssAfterMiB: after / 2 ** 20,
    maxLagMs: maxLag,
    refused: { ...stats.dropped, staleIncarnation: stats.network.staleIncarnation, unadmitted: stats.network.unadmittedDatagrams },
    admitted: stats.network.admitted,
    addressMismatch: stats.network.addressMismatch,
    ...(stats.network.security === undefined ? {} : { opened: stats.network.security.opened }),
    received: stats.network.datagramsReceived,
  });
  process.stdout.write("\n");
  await bed.close();
}

const mode = values.security ? "sealed (AES-256-GCM), the fuzzer an insider holding the key" : "in clear";
console.log(`\nfuzz campaign, seed ${seed}, ${count.toLocaleString("en-US")} datagrams a level, 3 members a level, datagrams ${mode} (member m0's counters)\n`);
console.log("| level | datagrams | seconds | RSS before → after (MiB) | worst loop lag (ms) | refused at decode | refused by the seal | not admitted | wrong address |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
const SEAL_REASONS = ["UNSEALED", "WRONG_MODE", "UNKNOWN_KEY", "UNTRUSTED_SIGNER", "FUTURE_INCARNATION", "REPLAYED", "AUTH_FAILED"];
for (const row of rows) {
  const codes = Object.entries(row.refused).filter(([k]) => k === k.toUpperCase());
  const decode = codes.filter(([k]) => !SEAL_REASONS.includes(k)).reduce((sum, [, v]) => sum + v, 0);
  const seal = codes.filter(([k]) => SEAL_REASONS.includes(k)).reduce((sum, [, v]) => sum + v, 0);
  console.log(
    `| ${row.level} | ${row.datagrams.toLocaleString("en-US")} | ${row.seconds.toFixed(1)} | ${row.rssBeforeMiB.toFixed(0)} → ${row.rssAfterMiB.toFixed(0)} | ${row.maxLagMs.toFixed(0)} | ${decode.toLocaleString("en-US")} | ${seal.toLocaleString("en-US")} | ${row.refused.unadmitted!.toLocaleString("en-US")} | ${row.addressMismatch.toLocaleString("en-US")} |`,
  );
}
if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify({ campaign: "fuzz", seed, security: values.security, date: new Date().toISOString(), rows }, null, 2)}\n`);
console.log("\nno violation: every real message delivered once, in order, intact; nothing sent off loopback; no internal fault");
process.exit(0);
