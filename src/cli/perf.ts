import { type ChildProcess, fork } from "node:child_process";
import { writeFileSync } from "node:fs";
import { runBaselineReceiver, runBaselineSender, type BaselineMessage } from "./perf-baseline.ts";
import { runPerfMember } from "./perf-member.ts";
import { generateSecret } from "../security/keys.ts";
import { absoluteNow, type FromMember, type MemberConfig, type PerfSecurity, type ReceiverReport, type ToMember } from "./perf-protocol.ts";

/** What `blaze perf` runs. */
export interface PerfOptions {
  readonly senders: number;
  readonly receivers: number;
  /** Message size in bytes (at least 12: a timestamp and a counter travel in it). */
  readonly size: number;
  /** How long the senders send. */
  readonly seconds: number;
  /** Receive loss injected in every member, 0..1. */
  readonly loss: number;
  readonly reliability: "nack" | "best-effort" | "totem" | "fec";
  /** Also measure raw node:dgram, one process to one, with the same size. */
  readonly baseline: boolean;
  /** Draw a progress bar on stderr. */
  readonly progress: boolean;
  /** Seal every datagram: AES-256-GCM ("encrypt"), HMAC-SHA-256 ("authenticate"), or AES-256-GCM with Ed25519 signatures ("insider"). Default: none. */
  readonly security?: PerfSecurity;
  /** The crypto provider of sealing members: node:crypto (default) or WebCrypto (asynchronous). */
  readonly crypto?: "node" | "web";
}

export interface PerfResult {
  readonly scenario: PerfOptions;
  readonly sent: number;
  readonly receivers: ReadonlyArray<ReceiverReport & { readonly messagesPerSecond: number; readonly megabytesPerSecond: number }>;
  /** The slowest receiver's figures: what the run achieved. */
  readonly messagesPerSecond: number;
  readonly megabytesPerSecond: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  /** CPU time per message delivered: the sender's, and the busiest receiver's (µs). */
  readonly senderCpuUsPerMessage: number;
  readonly receiverCpuUsPerMessage: number;
  readonly complete: boolean;
  readonly baseline?: { readonly messagesPerSecond: number; readonly megabytesPerSecond: number };
  /** Reliable MB/s over the baseline's MB/s. */
  readonly ratioToBaseline?: number;
}

const MB = 1_000_000;
// A larger young generation: at hundreds of thousands of messages a second, the default one is
// scavenged hundreds of times a second.
const MEMBER_EXEC_ARGV = [...process.execArgv, "--max-semi-space-size=64"];

/** Runs members as separate processes on loopback multicast and measures what the slowest receiver gets. */
export async function runPerf(options: PerfOptions, script: string): Promise<PerfResult> {
  const run = Math.floor(Math.random() * 1e9).toString(36);
  const members = options.senders + options.receivers;
  const base = {
    cluster: `perf-${run}`,
    group: `239.255.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`,
    port: 20_000 + Math.floor(Math.random() * 20_000),
    size: options.size,
    reliability: options.reliability,
    loss: options.loss,
    members,
    senders: options.senders,
    seconds: options.seconds,
    // One key for the run, told to every member.
    ...(options.security === undefined ? {} : { security: { mode: options.security, secret: generateSecret(), crypto: options.crypto ?? "node" } }),
  };
  const children: Array<{ process: ChildProcess; config: MemberConfig }> = [];
  for (let i = 0; i < members; i++) {
    const config: MemberConfig = { ...base, role: i < options.senders ? "sender" : "receiver", index: i };
    children.push({ process: fork(script, ["perf-member", JSON.stringify(config)], { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: MEMBER_EXEC_ARGV }), config });
  }
  try {
    const inbox = children.map((child) => messages<FromMember>(child.process));
    await Promise.all(inbox.map((box) => box.next("ready", 30_000)));
    await Promise.all(inbox.map((box) => box.next("peers", 30_000)));
    const t0 = absoluteNow() + 50;
    const senders = children.filter((c) => c.config.role === "sender");
    const receivers = children.filter((c) => c.config.role === "receiver");
    const receiverInbox = inbox.filter((_, i) => children[i]!.config.role === "receiver");
    const progress = options.progress ? startProgress(options, receiverInbox, t0) : undefined;
    for (const sender of senders) post(sender.process, { type: "go", t0 });
    const sentReports = await Promise.all(inbox.filter((_, i) => children[i]!.config.role === "sender").map((box) => box.next("sent", options.seconds * 1000 + 60_000)));
    const sent = sentReports.reduce((sum, report) => sum + report.count, 0);
    for (const receiver of receivers) post(receiver.process, { type: "expect", total: sent });
    const done = await Promise.all(receiverInbox.map((box) => box.next("done", 60_000).catch(() => undefined)));
    progress?.stop();
    const reports = done.map((report, i) => {
      const fallback: ReceiverReport = { received: receiverInbox[i]!.lastProgress, bytes: 0, firstAt: t0, lastAt: absoluteNow(), latencyP50Ms: 0, latencyP99Ms: 0, latencyMaxMs: 0, outOfOrder: 0, duplicates: 0, nacksSent: 0, retransmitted: 0, dropped: 0, cpuMs: 0 };
      const r = report ?? fallback;
      const seconds = (r.lastAt - t0) / 1000;
      return { ...r, messagesPerSecond: r.received / seconds, megabytesPerSecond: (r.received * options.size) / MB / seconds };
    });
    const slowest = reports.reduce((a, b) => (b.messagesPerSecond < a.messagesPerSecond ? b : a));
    const result: PerfResult = {
      scenario: options,
      sent,
      receivers: reports,
      messagesPerSecond: slowest.messagesPerSecond,
      megabytesPerSecond: slowest.megabytesPerSecond,
      latencyP50Ms: Math.max(...reports.map((r) => r.latencyP50Ms)),
      latencyP99Ms: Math.max(...reports.map((r) => r.latencyP99Ms)),
      senderCpuUsPerMessage: (sentReports.reduce((sum, report) => sum + report.cpuMs, 0) * 1000) / Math.max(1, sent),
      receiverCpuUsPerMessage: Math.max(...reports.map((r) => (r.cpuMs * 1000) / Math.max(1, r.received))),
      complete: done.every((report) => report !== undefined && report.received === sent),
    };
    if (!options.baseline) return result;
    const baseline = await runBaseline(script, options.size, options.seconds);
    return { ...result, baseline, ratioToBaseline: result.megabytesPerSecond / baseline.megabytesPerSecond };
  } finally {
    for (const child of children) {
      post(child.process, { type: "exit" });
      setTimeout(() => child.process.kill("SIGKILL"), 2_000).unref();
    }
  }
}

/** Raw `node:dgram` throughput of `size`-byte datagrams, one process to one. */
export async function runBaseline(script: string, size: number, seconds: number): Promise<{ messagesPerSecond: number; megabytesPerSecond: number }> {
  const receiver = fork(script, ["perf-baseline-receiver"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const receiverBox = messages<BaselineMessage>(receiver);
  try {
    const { port } = await receiverBox.next("listening", 10_000);
    const sender = fork(script, ["perf-baseline-sender", String(port), String(size), String(seconds)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const result = await receiverBox.next("result", seconds * 1000 + 30_000);
    sender.kill();
    return { messagesPerSecond: result.received / result.seconds, megabytesPerSecond: result.bytes / MB / result.seconds };
  } finally {
    receiver.kill();
  }
}

/** The entry points of the processes `blaze perf` forks. */
export async function runPerfChild(command: string, args: string[]): Promise<void> {
  switch (command) {
    case "perf-member":
      return runPerfMember(JSON.parse(args[0]!) as MemberConfig);
    case "perf-baseline-receiver":
      return runBaselineReceiver();
    case "perf-baseline-sender":
      return runBaselineSender(Number(args[0]), Number(args[1]), Number(args[2]));
  }
}

/** A readable summary of a run. */
export function formatPerf(result: PerfResult): string {
  const s = result.scenario;
  const lines = [
    `${s.senders} sender(s) → ${s.receivers} receiver(s), ${s.size} B messages, ${s.reliability}, ${(s.loss * 100).toFixed(1)} % loss, ${s.seconds} s${s.security === undefined ? "" : `, sealed: ${s.security} (${s.crypto ?? "node"})`}`,
    `  sent ${fmt(result.sent)} messages; every receiver got all: ${result.complete ? "yes" : "NO"}`,
    `  slowest receiver: ${fmt(result.messagesPerSecond)} msgs/s, ${result.megabytesPerSecond.toFixed(1)} MB/s; latency p50 ${result.latencyP50Ms.toFixed(2)} ms, p99 ${result.latencyP99Ms.toFixed(2)} ms`,
  ];
  for (const [i, r] of result.receivers.entries()) {
    lines.push(`    receiver ${i}: ${fmt(r.received)} msgs, ${fmt(r.messagesPerSecond)} msgs/s, nacks ${r.nacksSent}, out of order ${r.outOfOrder}, duplicates ${r.duplicates}`);
  }
  if (result.baseline !== undefined) {
    lines.push(`  raw node:dgram baseline (1 → 1): ${fmt(result.baseline.messagesPerSecond)} msgs/s, ${result.baseline.megabytesPerSecond.toFixed(1)} MB/s`);
    lines.push(`  reliable / raw: ${((result.ratioToBaseline ?? 0) * 100).toFixed(1)} % of the baseline's MB/s`);
  }
  return lines.join("\n");
}

export function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function post(child: ChildProcess, message: ToMember): void {
  if (child.connected) child.send(message);
}

interface Inbox<M extends { type: string }> {
  next<T extends M["type"]>(type: T, timeoutMs: number): Promise<Extract<M, { type: T }>>;
  readonly lastProgress: number;
}

// Messages from a child, awaited by type; a child that exits or reports failure rejects every wait.
function messages<M extends { type: string }>(child: ChildProcess): Inbox<M> {
  const queue: M[] = [];
  const waiters: Array<() => void> = [];
  let failure: Error | undefined;
  let lastProgress = 0;
  const wake = () => waiters.splice(0).forEach((w) => w());
  child.on("message", (message: M) => {
    if (message.type === "progress") lastProgress = (message as unknown as { received: number }).received;
    else if (message.type === "failed") failure = new Error((message as unknown as { error: string }).error);
    else queue.push(message);
    wake();
  });
  child.on("exit", (code) => {
    failure ??= new Error(`a perf process exited with code ${code}`);
    wake();
  });
  return {
    get lastProgress() {
      return lastProgress;
    },
    next(type, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for "${type}" from a perf process`)), timeoutMs);
        const check = () => {
          const index = queue.findIndex((m) => m.type === type);
          if (index >= 0) {
            clearTimeout(timer);
            resolve(queue.splice(index, 1)[0] as never);
          } else if (failure !== undefined) {
            clearTimeout(timer);
            reject(failure);
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

function startProgress(options: PerfOptions, receivers: ReadonlyArray<Inbox<FromMember>>, t0: number): { stop(): void } {
  const width = 30;
  const draw = () => {
    const done = Math.min(1, Math.max(0, (absoluteNow() - t0) / (options.seconds * 1000)));
    const received = Math.min(...receivers.map((r) => r.lastProgress));
    const bar = "#".repeat(Math.round(done * width)).padEnd(width, ".");
    process.stderr.write(`\r[${bar}] ${Math.round(done * 100)}%  slowest receiver ${fmt(received)} msgs   `);
  };
  const timer = setInterval(draw, 250);
  return {
    stop() {
      clearInterval(timer);
      draw();
      process.stderr.write("\n");
    },
  };
}
