/** Messages between `blaze perf` and the member processes it forks (over Node's IPC channel). */

export interface MemberConfig {
  readonly role: "sender" | "receiver";
  readonly index: number;
  readonly cluster: string;
  readonly group: string;
  readonly port: number;
  readonly size: number;
  readonly reliability: "nack" | "best-effort" | "totem" | "fec";
  /** Receive loss injected in this member, 0..1. */
  readonly loss: number;
  /** Members in all (senders + receivers). */
  readonly members: number;
  readonly senders: number;
  readonly seconds: number;
  /** Sealed datagrams: the mode, the run's key (base64), the crypto provider. */
  readonly security?: { readonly mode: PerfSecurity; readonly secret: string; readonly crypto: "node" | "web" };
}

/** How a perf run seals its datagrams: AES-256-GCM, HMAC-SHA-256, or AES-256-GCM with Ed25519 signatures. */
export type PerfSecurity = "encrypt" | "authenticate" | "insider";

export type ToMember =
  | { readonly type: "go"; readonly t0: number }
  | { readonly type: "expect"; readonly total: number }
  | { readonly type: "exit" };

export interface ReceiverReport {
  readonly received: number;
  readonly bytes: number;
  /** Absolute time (ms since the epoch, sub-millisecond) of the first and last delivery. */
  readonly firstAt: number;
  readonly lastAt: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly latencyMaxMs: number;
  readonly outOfOrder: number;
  readonly duplicates: number;
  readonly nacksSent: number;
  readonly retransmitted: number;
  readonly dropped: number;
  /** CPU time (user and system) the receiver spent from its first message to its last. */
  readonly cpuMs: number;
}

export type FromMember =
  | { readonly type: "ready"; readonly id: string }
  | { readonly type: "peers" }
  | { readonly type: "progress"; readonly received: number }
  | { readonly type: "sent"; readonly count: number; readonly retransmitted: number; readonly elapsedMs: number; readonly cpuMs: number }
  | ({ readonly type: "done" } & ReceiverReport)
  | { readonly type: "failed"; readonly error: string };

/** Absolute time in milliseconds with sub-millisecond precision, comparable across processes on one host. */
export function absoluteNow(): number {
  return performance.timeOrigin + performance.now();
}
