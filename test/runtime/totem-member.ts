/**
 * One member of a Totem (total order) group over real UDP, for test/udp-totem.test.ts. The same file runs
 * under Node (through tsx), Bun and Deno (`--unstable-net`): it joins the group, waits for a ring of all
 * the members, broadcasts `messages` numbered messages (a few of them safe, a few large enough to be
 * fragmented), and records every delivery, its own messages included, in delivery order. It prints one
 * JSON line (a `TotemMemberResult`) with a digest of that order, which must be the same at every member,
 * and exits 0, or 1 on a timeout, an error, or a delivery that breaks a sender's order or the payload.
 * Usage: `<runtime> totem-member.ts '<TotemMemberConfig as JSON>'`.
 */
import { Channel } from "../../src/channel/channel.ts";
import type { TotemStats } from "../../src/reliable/totem/totem-protocol.ts";
import { announceDone, type BroadcastMemberConfig, broadcastMemberOptions, type BroadcastMemberResult, buildPayload, DATA, everyoneDone, HEADER_BYTES, runReporting, signal, sleep } from "./broadcast-member.ts";
import { detectRuntime } from "./runtime-host.ts";

export interface TotemMemberConfig extends BroadcastMemberConfig {
  /** The member that kills itself (SIGKILL) once it has broadcast `crashAfter` messages; the others carry on without it. */
  readonly victim?: number;
  readonly crashAfter?: number;
}

/** `received` includes this member's own messages. */
export interface TotemMemberResult extends BroadcastMemberResult {
  /** A digest of the whole delivery order (sender and number of every message, in order). */
  readonly orderDigest: string;
}

const BURST = 200;

function messageSize(counter: number): number {
  if (counter % 500 === 499) return 150 * 1024;
  return HEADER_BYTES + ((counter * 53) % 1_500);
}

const fillerByte = (sender: number, counter: number, offset: number) => (sender * 31 + counter + offset) & 0xff;

async function main(): Promise<void> {
  const startedAt = Date.now();
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as TotemMemberConfig;
  const channel = new Channel({ ...broadcastMemberOptions(config, host), reliability: "totem", heartbeatIntervalMs: 200 });
  channel.on("error", (event) => console.error(`member ${config.index} (${host.name}): ${event.stage}: ${event.error.message}`));
  let sent = 0;
  const received: Record<string, number> = {};
  const next = new Array<number>(config.members).fill(0);
  for (let i = 0; i < config.members; i++) received[i] = 0;
  // What must arrive: every message of every member that stays up (a victim's, as many as made it).
  const survivors = config.victim === undefined ? config.members : config.members - 1;
  let ordered = true;
  let corrupt = 0;
  // FNV-1a over the delivery order.
  let digest = 0x811c9dc5;
  const mix = (value: number) => {
    for (let shift = 0; shift < 32; shift += 8) digest = Math.imul(digest ^ ((value >>> shift) & 0xff), 0x01000193) >>> 0;
  };
  const everything = signal();
  let total = 0;
  channel.onTopic(DATA, (message) => {
    const payload = message.payload;
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const sender = payload.length >= HEADER_BYTES ? view.getUint32(0) : -1;
    const counter = payload.length >= HEADER_BYTES ? view.getUint32(4) : -1;
    if (received[sender] === undefined || payload.length !== messageSize(counter)) {
      corrupt++;
      return;
    }
    for (let i = HEADER_BYTES; i < payload.length; i += 97) if (payload[i] !== fillerByte(sender, counter, i)) return void corrupt++;
    mix(sender);
    mix(counter);
    received[sender]++;
    if (counter !== next[sender]) ordered = false;
    next[sender] = counter + 1;
    if (sender !== config.victim && ++total === survivors * config.messages) everything.resolve();
  });
  const allDone = everyoneDone(channel, survivors);

  const report = (complete: boolean, error: string | undefined): number => {
    const stats = channel.stats;
    const { ring, ...counters } = stats.protocol as TotemStats;
    const result: TotemMemberResult = {
      runtime: host.name,
      index: config.index,
      sent,
      received,
      orderDigest: digest.toString(16),
      ordered,
      corrupt,
      complete,
      elapsedMs: Date.now() - startedAt,
      stats: { ...counters, ringSeq: ring.seq, ringMembers: ring.members.length, dropped: stats.dropped },
      ...(error === undefined ? {} : { error }),
    };
    console.log(JSON.stringify(result));
    return complete && ordered && corrupt === 0 ? 0 : 1;
  };
  await runReporting(host, channel, config.timeoutMs, async () => {
    await channel.start();
    await channel.waitForPeers(config.members - 1, { timeoutMs: Math.floor(config.timeoutMs / 2) });
    // Messages sent before the ring holds everyone would reach only the ring they were sent on.
    const ring = () => (channel.stats.protocol as TotemStats).ring;
    while (!(ring().state === "operational" && ring().members.length === config.members)) await sleep(10);
    while (sent < config.messages) {
      let last: Promise<void> | undefined;
      for (let i = 0; i < BURST && sent < config.messages; i++) {
        const counter = sent++;
        last = channel.broadcast(DATA, buildPayload(config.index, counter, messageSize(counter), fillerByte), { safe: counter % 10 === 0 });
        // Die without a goodbye while still sending: the token is lost and the others form the ring again.
        if (config.index === config.victim && sent === config.crashAfter) setTimeout(() => process.kill(process.pid, "SIGKILL"), 20);
      }
      await last;
      await sleep(0);
    }
    await everything.promise;
    // Safe: once this member delivers every "done", every member holds every "done" and delivers it even
    // if this member leaves at once.
    await announceDone(channel, config.index, { safe: true });
    await allDone;
  }, report);
}

await main();
