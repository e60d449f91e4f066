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
import { detectRuntime } from "./runtime-host.ts";

export interface TotemMemberConfig {
  readonly index: number;
  readonly members: number;
  readonly messages: number;
  readonly cluster: string;
  readonly group: string;
  readonly port: number;
  readonly timeoutMs: number;
  /** The member that kills itself (SIGKILL) once it has broadcast `crashAfter` messages; the others carry on without it. */
  readonly victim?: number;
  readonly crashAfter?: number;
}

export interface TotemMemberResult {
  readonly runtime: string;
  readonly index: number;
  readonly sent: number;
  /** Messages delivered, by sender index (this member's own included). */
  readonly received: Record<string, number>;
  /** A digest of the whole delivery order (sender and number of every message, in order). */
  readonly orderDigest: string;
  /** False when some sender's messages were delivered with a gap or out of its order. */
  readonly ordered: boolean;
  readonly corrupt: number;
  readonly complete: boolean;
  readonly elapsedMs: number;
  readonly stats: Record<string, unknown>;
  readonly error?: string;
}

const DATA = "data";
const DONE = "done";
const BURST = 200;
const HEADER_BYTES = 8;

function messageSize(counter: number): number {
  if (counter % 500 === 499) return 150 * 1024;
  return HEADER_BYTES + ((counter * 53) % 1_500);
}

const fillerByte = (sender: number, counter: number, offset: number) => (sender * 31 + counter + offset) & 0xff;

function buildPayload(sender: number, counter: number): Uint8Array {
  const payload = new Uint8Array(messageSize(counter));
  const view = new DataView(payload.buffer);
  view.setUint32(0, sender);
  view.setUint32(4, counter);
  for (let i = HEADER_BYTES; i < payload.length; i++) payload[i] = fillerByte(sender, counter, i);
  return payload;
}

function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const startedAt = Date.now();
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as TotemMemberConfig;
  const channel = new Channel({
    cluster: config.cluster,
    name: `${host.name}-${config.index}`,
    network: { type: "multicast", group: config.group, port: config.port, interface: "127.0.0.1" },
    reliability: "totem",
    heartbeatIntervalMs: 200,
    transport: host.transport,
  });
  channel.on("error", (event) => console.error(`member ${config.index} (${host.name}): ${event.stage}: ${event.error.message}`));
  let sent = 0;
  let error: string | undefined;
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
  channel.addTopicListener(DATA, (message) => {
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
  const allDone = signal();
  const doneFrom = new Set<number>();
  channel.addTopicListener(DONE, (message) => {
    doneFrom.add(new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0));
    if (doneFrom.size === survivors) allDone.resolve();
  });

  const report = (complete: boolean): number => {
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
  const deadline = setTimeout(() => host.exit(report(false)), config.timeoutMs);

  try {
    await channel.start();
    await channel.waitForPeers(config.members - 1, { timeoutMs: Math.floor(config.timeoutMs / 2) });
    // Messages sent before the ring holds everyone would reach only the ring they were sent on.
    const ring = () => (channel.stats.protocol as TotemStats).ring;
    while (!(ring().state === "operational" && ring().members.length === config.members)) await sleep(10);
    while (sent < config.messages) {
      let last: Promise<void> | undefined;
      for (let i = 0; i < BURST && sent < config.messages; i++) {
        const counter = sent++;
        last = channel.broadcast(DATA, buildPayload(config.index, counter), { safe: counter % 10 === 0 });
        // Die without a goodbye while still sending: the token is lost and the others form the ring again.
        if (config.index === config.victim && sent === config.crashAfter) setTimeout(() => process.kill(process.pid, "SIGKILL"), 20);
      }
      await last;
      await sleep(0);
    }
    await everything.promise;
    const done = new Uint8Array(4);
    new DataView(done.buffer).setUint32(0, config.index);
    // Safe: once this member delivers every "done", every member holds every "done" and delivers it even
    // if this member leaves at once.
    await channel.broadcast(DONE, done, { safe: true });
    await allDone.promise;
  } catch (caught) {
    error = caught instanceof Error ? caught.message : String(caught);
  }
  clearTimeout(deadline);
  const code = report(error === undefined);
  await channel.shutDown();
  host.exit(code);
}

await main();
