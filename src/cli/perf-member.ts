import { nodeCrypto } from "../adapters/node-crypto.ts";
import { runtimeTransport } from "../adapters/runtime.ts";
import type { SecurityOptions } from "../security/options.ts";
import { webCrypto } from "../security/web-crypto.ts";
import { Channel } from "../channel/channel.ts";
import type { TopicMessage } from "../channel/topic-message.ts";
import { withLoss } from "../transport/lossy-transport.ts";
import { absoluteNow, type FromMember, type MemberConfig, type ToMember } from "./perf-protocol.ts";

const TOPIC = "perf";
const MAX_SAMPLES = 1_000_000;
const SAMPLE_EVERY = 16;

/** One member of a `blaze perf` run, in its own process: a sender or a receiver on one channel. */
export async function runPerfMember(config: MemberConfig): Promise<void> {
  const send = (message: FromMember) => process.send!(message);
  const udp = await runtimeTransport();
  const transport = config.loss > 0 ? withLoss(udp, { receiveLoss: config.loss }) : udp;
  const channel = new Channel({
    cluster: config.cluster,
    name: `${config.role}-${config.index}`,
    network: { type: "multicast", group: config.group, port: config.port, interface: "127.0.0.1" },
    reliability: config.reliability,
    loopback: false,
    heartbeatIntervalMs: 500,
    transport,
    ...(config.security === undefined ? {} : { security: securityOf(config.security) }),
  });
  channel.on("error", ({ error, stage }) => console.error(`${config.role}-${config.index}: ${stage}: ${error.message}`));
  await channel.start();
  send({ type: "ready", id: channel.id });
  await channel.waitForPeers(config.members - 1, { timeoutMs: 20_000 });
  send({ type: "peers" });

  const receiver = config.role === "receiver" ? new ReceiverState(channel) : undefined;
  process.on("message", (message: ToMember) => {
    switch (message.type) {
      case "go":
        if (config.role === "sender") void runSender(config, channel, message.t0).then(send, fail);
        break;
      case "expect":
        receiver?.expect(message.total);
        break;
      case "exit":
        void channel.shutDown().then(() => process.exit(0));
        break;
    }
  });
}

function securityOf(security: NonNullable<MemberConfig["security"]>): SecurityOptions {
  return {
    keys: [{ id: 1, secret: security.secret }],
    mode: security.mode === "authenticate" ? "authenticate" : "encrypt",
    provider: security.crypto === "web" ? webCrypto : nodeCrypto,
    // Insider mode: a key pair of this member's own; every datagram it sends is signed.
    ...(security.mode === "insider" ? { identity: nodeCrypto.generateIdentity() } : {}),
  };
}

function fail(error: unknown): void {
  process.send!({ type: "failed", error: error instanceof Error ? error.stack ?? error.message : String(error) } satisfies FromMember);
}

async function runSender(config: MemberConfig, channel: Channel, t0: number): Promise<FromMember> {
  const endAt = t0 + config.seconds * 1000;
  const cpuBefore = cpuMs();
  let count = 0;
  const started = absoluteNow();
  // Send in bursts, yielding to the event loop between them so acknowledgements get in; await only
  // when the flow-control window is full.
  // Payloads are carved from slabs, never reused: a queued message keeps its bytes until it is sent.
  const slabBytes = Math.max(1 << 20, config.size);
  let slab = new ArrayBuffer(slabBytes);
  let view = new DataView(slab);
  let offset = 0;
  while (absoluteNow() < endAt) {
    let last: Promise<void> | undefined;
    const now = absoluteNow();
    for (let i = 0; i < 256; i++) {
      if (offset + config.size > slabBytes) {
        slab = new ArrayBuffer(slabBytes);
        view = new DataView(slab);
        offset = 0;
      }
      view.setFloat64(offset, now);
      view.setUint32(offset + 8, count++);
      last = channel.broadcast(TOPIC, new Uint8Array(slab, offset, config.size));
      offset += config.size;
    }
    await last;
    await new Promise((resolve) => setImmediate(resolve));
  }
  // Stay until every receiver has everything (retransmissions come from here).
  return { type: "sent", count, retransmitted: channel.stats.protocol.retransmitted, elapsedMs: absoluteNow() - started, cpuMs: cpuMs() - cpuBefore };
}

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

class ReceiverState {
  received = 0;
  #cpuAtFirst = 0;
  bytes = 0;
  firstAt = 0;
  lastAt = 0;
  outOfOrder = 0;
  duplicates = 0;
  #expected = Number.POSITIVE_INFINITY;
  #done = false;
  readonly #next = new Map<string, number>();
  readonly #samples = new Float64Array(MAX_SAMPLES);
  #sampleCount = 0;
  #stride = 1;
  #seen = 0;

  constructor(private readonly channel: Channel) {
    channel.onTopic(TOPIC, (message) => this.#onMessage(message));
    const progress = setInterval(() => process.send!({ type: "progress", received: this.received } satisfies FromMember), 250);
    progress.unref();
  }

  expect(total: number): void {
    this.#expected = total;
    this.#check();
  }

  // The measuring listener must cost little next to what it measures: the counter is read by hand,
  // and time is read for a sample of the messages only (every SAMPLE_EVERY-th, and the last).
  #onMessage(message: TopicMessage): void {
    const payload = message.payload;
    const number = ((payload[8]! << 24) | (payload[9]! << 16) | (payload[10]! << 8) | payload[11]!) >>> 0;
    let expected = this.#next.get(message.sender);
    if (expected === undefined) expected = 0;
    if (number < expected) this.duplicates++;
    else if (number > expected) this.outOfOrder++;
    this.#next.set(message.sender, number + 1);
    this.received++;
    this.bytes += payload.length;
    const last = this.received >= this.#expected;
    if (this.received % SAMPLE_EVERY !== 1 && !last) return;
    const now = absoluteNow();
    if (this.firstAt === 0) {
      this.firstAt = now;
      this.#cpuAtFirst = cpuMs();
    }
    this.lastAt = now;
    // A uniform sample of latencies in bounded memory: every stride-th sampled message, the stride
    // doubling (and the sample thinning) whenever the buffer fills.
    if (this.#seen++ % this.#stride === 0) {
      if (this.#sampleCount === MAX_SAMPLES) {
        for (let i = 0; i < MAX_SAMPLES / 2; i++) this.#samples[i] = this.#samples[2 * i]!;
        this.#sampleCount = MAX_SAMPLES / 2;
        this.#stride *= 2;
      }
      const sentAt = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getFloat64(0);
      this.#samples[this.#sampleCount++] = now - sentAt;
    }
    if (last) this.#check();
  }

  #check(): void {
    if (this.#done || this.received < this.#expected) return;
    this.#done = true;
    const samples = this.#samples.subarray(0, this.#sampleCount).sort();
    const at = (q: number) => (samples.length === 0 ? 0 : samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!);
    const stats = this.channel.stats;
    process.send!({
      type: "done",
      received: this.received,
      bytes: this.bytes,
      firstAt: this.firstAt,
      lastAt: this.lastAt,
      latencyP50Ms: at(0.5),
      latencyP99Ms: at(0.99),
      latencyMaxMs: samples.length === 0 ? 0 : samples[samples.length - 1]!,
      outOfOrder: this.outOfOrder,
      duplicates: this.duplicates,
      nacksSent: stats.protocol.nacksSent,
      retransmitted: stats.protocol.retransmitted,
      dropped: Object.values(stats.dropped).reduce((sum, n) => sum + n, 0),
      cpuMs: cpuMs() - this.#cpuAtFirst,
    } satisfies FromMember);
  }
}
