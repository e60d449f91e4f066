/**
 * One behavioural suite for every runtime UDP adapter. It uses nothing runtime-specific, so Node
 * (in-process, under vitest), Bun and Deno (as child processes) run the very same checks.
 */
import { isBlazeError, type BlazeError, type BlazeErrorCode } from "../../src/errors.ts";
import type { Address, Transport, TransportFactory, TransportOptions } from "../../src/transport/transport.ts";

export interface CheckResult {
  readonly name: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly error?: string;
}

export interface SuiteResult {
  readonly runtime: string;
  readonly ok: boolean;
  readonly nativeBatchSend: boolean | undefined;
  readonly checks: readonly CheckResult[];
}

/** Factories of the other runtimes' adapters, which must refuse to run here. */
export type ForeignFactories = Readonly<Record<string, TransportFactory>>;

const CHECK_TIMEOUT_MS = 3_000;
const LOOPBACK = "127.0.0.1";

interface Received {
  readonly data: Uint8Array;
  readonly from: Address;
}

/** A transport whose datagrams are collected, copied, for the check to wait on. */
class Probe {
  readonly received: Received[] = [];
  readonly errors: BlazeError[] = [];
  private waiters: Array<() => void> = [];

  constructor(readonly transport: Transport) {
    transport.onReceive((data, from) => this.push({ data: data.slice(), from }));
    transport.onError((error) => {
      this.errors.push(error);
      this.wake();
    });
  }

  push(item: Received): void {
    this.received.push(item);
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Resolves once `done()` holds, re-checking on every datagram or error. */
  async until(done: () => boolean): Promise<void> {
    while (!done()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

function fail(message: string): never {
  throw new Error(message);
}

function expectCode(action: () => unknown, code: BlazeErrorCode, ...mentions: string[]): void {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  if (!isBlazeError(thrown, code)) fail(`expected BlazeError ${code}, got ${String(thrown)}`);
  for (const text of mentions) {
    if (!thrown.message.includes(text)) fail(`error message "${thrown.message}" does not mention ${text}`);
  }
}

async function expectRejection(promise: Promise<unknown>, code: BlazeErrorCode): Promise<void> {
  const outcome = await promise.then(
    () => "resolved",
    (error: unknown) => error,
  );
  if (!isBlazeError(outcome, code)) fail(`expected a rejection with BlazeError ${code}, got ${String(outcome)}`);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const bytes = (...values: number[]) => new Uint8Array(values);
const randomBytes = (length: number) => Uint8Array.from({ length }, () => Math.floor(Math.random() * 256));
const sameAddress = (a: Address, b: Address) => a.host === b.host && a.port === b.port;
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((value, i) => value === b[i]);
const show = (a: Address) => `${a.host}:${a.port}`;

/** Sends every 100 ms until `done()` holds: multicast joins may complete asynchronously (Deno). */
async function repeatUntil(probes: Probe[], send: () => void, done: () => boolean): Promise<void> {
  const timer = setInterval(() => {
    try {
      send();
    } catch {
      clearInterval(timer); // the check timed out and its transports were closed
    }
  }, 100);
  try {
    send();
    await Promise.race(probes.map((probe) => probe.until(done)));
  } finally {
    clearInterval(timer);
  }
}

type Check = (open: (options?: TransportOptions) => Promise<Probe>) => Promise<void>;

const checks: Record<string, Check> = {
  async "unicast round trip reports sender addresses"(open) {
    const a = await open({ bindAddress: LOOPBACK });
    const b = await open({ bindAddress: LOOPBACK });
    if (a.transport.localAddress.host !== LOOPBACK || a.transport.localAddress.port <= 0) {
      fail(`unexpected local address ${show(a.transport.localAddress)}`);
    }
    b.transport.onReceive((data, from) => {
      b.push({ data: data.slice(), from });
      b.transport.send(data.slice().reverse(), from);
    });
    a.transport.send(bytes(1, 2, 3), b.transport.localAddress);
    await a.until(() => a.received.length > 0);
    const [request] = b.received;
    const [reply] = a.received;
    if (!request || !sameAddress(request.from, a.transport.localAddress)) fail(`request came from ${request && show(request.from)}`);
    if (!reply || !sameAddress(reply.from, b.transport.localAddress)) fail(`reply came from ${reply && show(reply.from)}`);
    if (reply.data.join() !== "3,2,1") fail(`reply was ${reply.data.join()}`);
  },

  async "loopback multicast reaches every member"(open) {
    const group = `239.255.${1 + Math.floor(Math.random() * 254)}.${1 + Math.floor(Math.random() * 254)}`;
    const options = { reuseAddress: true, multicastInterface: LOOPBACK };
    const m1 = await open(options);
    const port = m1.transport.localAddress.port;
    const m2 = await open({ ...options, port });
    m1.transport.joinGroup(group);
    m2.transport.joinGroup(group, LOOPBACK);
    const sender = await open({ multicastInterface: LOOPBACK });
    const fromSender = (probe: Probe) =>
      probe.received.some((r) => r.data[0] === 7 && r.from.port === sender.transport.localAddress.port);
    await repeatUntil([m1, m2], () => sender.transport.send(bytes(7), { host: group, port }), () => fromSender(m1) && fromSender(m2));
    // A member's own multicast comes back to both members (multicastLoopback defaults to true).
    const fromM1 = (probe: Probe) => probe.received.some((r) => r.data[0] === 8 && r.from.port === port);
    await repeatUntil([m1, m2], () => m1.transport.send(bytes(8), { host: group, port }), () => fromM1(m1) && fromM1(m2));
    m1.transport.leaveGroup(group);
    m2.transport.leaveGroup(group, LOOPBACK);
    expectCode(() => m2.transport.leaveGroup(group, LOOPBACK), "BIND_FAILED");
  },

  async "oversize datagrams are refused synchronously"(open) {
    const a = await open({ bindAddress: LOOPBACK, maxDatagramBytes: 1_000 });
    const b = await open({ bindAddress: LOOPBACK });
    const to = b.transport.localAddress;
    if (a.transport.maxDatagramBytes !== 1_000 || b.transport.maxDatagramBytes !== 65_507) fail("maxDatagramBytes not reported");
    expectCode(() => a.transport.send(new Uint8Array(1_001), to), "DATAGRAM_TOO_LARGE", "1001", "1000");
    expectCode(() => a.transport.sendMany([[bytes(1), to], [new Uint8Array(1_001), to]]), "DATAGRAM_TOO_LARGE");
    expectCode(() => b.transport.send(new Uint8Array(65_508), to), "DATAGRAM_TOO_LARGE", "65508", "65507");
    a.transport.send(new Uint8Array(1_000).fill(2), to);
    await b.until(() => b.received.length > 0);
    // The refused batch must not have been sent in part.
    if (b.received.length !== 1 || b.received[0]!.data.length !== 1_000) fail(`received ${b.received.map((r) => r.data.length)}`);
    await expectRejection(open({ maxDatagramBytes: 70_000 }), "INVALID_OPTION");
  },

  async "close is idempotent and sending afterwards throws CLOSED"(open) {
    const a = await open({ bindAddress: LOOPBACK });
    await a.transport.close();
    await a.transport.close();
    const to = { host: LOOPBACK, port: 9 };
    expectCode(() => a.transport.send(bytes(1), to), "CLOSED");
    expectCode(() => a.transport.sendMany([[bytes(1), to]]), "CLOSED");
    expectCode(() => a.transport.joinGroup("239.255.0.1"), "CLOSED");
  },

  async "garbage and a throwing handler do not break receiving"(open) {
    const a = await open({ bindAddress: LOOPBACK });
    const b = await open({ bindAddress: LOOPBACK });
    const lengths: number[] = [];
    b.transport.onReceive((data) => {
      lengths.push(data.length);
      throw new Error("handler bug");
    });
    const garbage = [new Uint8Array(0), randomBytes(1), randomBytes(1_400), randomBytes(65_507)];
    for (const data of garbage) a.transport.send(data, b.transport.localAddress);
    await b.until(() => b.errors.length >= garbage.length);
    if (lengths.join() !== garbage.map((g) => g.length).join()) fail(`received lengths ${lengths.join()}`);
    const error = b.errors[0]!;
    if (error.code !== "TRANSPORT_ERROR" || !(error.cause instanceof Error) || error.cause.message !== "handler bug") {
      fail(`handler failure reported as ${error.code}: ${error.message}`);
    }
    b.transport.onReceive((data, from) => b.transport.send(data, from));
    a.transport.send(bytes(42), b.transport.localAddress);
    await a.until(() => a.received.length > 0);
    if (a.received[0]!.data[0] !== 42) fail("no echo after the garbage");
  },

  async "sendParts, where a runtime has it, sends the parts as one datagram and checks their total length"(open) {
    const a = await open({ bindAddress: LOOPBACK, maxDatagramBytes: 60_000 });
    const b = await open({ bindAddress: LOOPBACK });
    const sendParts = a.transport.sendParts?.bind(a.transport);
    if (sendParts === undefined) return;
    const to = b.transport.localAddress;
    const parts = [randomBytes(57), randomBytes(50_000), randomBytes(16)];
    sendParts(parts, to);
    expectCode(() => sendParts([new Uint8Array(30_000), new Uint8Array(30_001)], to), "DATAGRAM_TOO_LARGE", "60001", "60000");
    sendParts([bytes(7)], to);
    await b.until(() => b.received.length >= 2);
    const joined = new Uint8Array(50_073);
    joined.set(parts[0]!);
    joined.set(parts[1]!, 57);
    joined.set(parts[2]!, 50_057);
    if (b.received.length !== 2 || !sameBytes(b.received[0]!.data, joined) || !sameBytes(b.received[1]!.data, bytes(7))) {
      fail(`received ${b.received.map((r) => r.data.length)}`);
    }
  },

  async "sendMany delivers a batch of 100 in order"(open) {
    const a = await open({ bindAddress: LOOPBACK });
    const b = await open({ bindAddress: LOOPBACK });
    const c = await open({ bindAddress: LOOPBACK });
    const batch: Array<readonly [Uint8Array, Address]> = [];
    for (let i = 0; i < 100; i++) batch.push([bytes(i, ...randomBytes(31)), (i % 2 === 0 ? b : c).transport.localAddress]);
    a.transport.sendMany(batch);
    await b.until(() => b.received.length >= 50);
    await c.until(() => c.received.length >= 50);
    const order = (probe: Probe) => probe.received.map((r) => r.data[0]).join();
    const expected = (parity: number) => batch.map((_, i) => i).filter((i) => i % 2 === parity).join();
    if (order(b) !== expected(0) || order(c) !== expected(1)) fail(`order: ${order(b)} / ${order(c)}`);
    if (b.received.some((r) => !sameAddress(r.from, a.transport.localAddress))) fail("wrong sender address");
    a.transport.sendMany([]);
  },

  async "a datagram to a closed port neither fails later sends nor reports an error"(open) {
    const a = await open({ bindAddress: LOOPBACK });
    const b = await open({ bindAddress: LOOPBACK });
    const gone = await open({ bindAddress: LOOPBACK });
    const dead = gone.transport.localAddress;
    await gone.transport.close();
    const live = b.transport.localAddress;
    a.transport.send(bytes(0), dead);
    a.transport.send(bytes(1), live);
    a.transport.sendMany([[bytes(0), dead], [bytes(2), live], [bytes(0), dead], [bytes(3), live]]);
    await b.until(() => b.received.length >= 3);
    await sleep(50);
    if (b.received.map((r) => r.data[0]).join() !== "1,2,3") fail(`received ${b.received.map((r) => r.data[0]).join()}`);
    if (a.errors.length > 0) fail(`reported ${a.errors.map((e) => `${e.code}: ${e.message}`).join("; ")}`);
  },

  async "IPv6 unicast round trip on ::1"(open) {
    const a = await open({ bindAddress: "::1" });
    const b = await open({ bindAddress: "::1" });
    if (a.transport.localAddress.host !== "::1") fail(`bound to ${show(a.transport.localAddress)}`);
    b.transport.onReceive((data, from) => b.transport.send(data.slice().reverse(), from));
    a.transport.send(bytes(4, 5, 6), b.transport.localAddress);
    await a.until(() => a.received.length > 0);
    const [reply] = a.received;
    if (reply!.data.join() !== "6,5,4" || !sameAddress(reply!.from, b.transport.localAddress)) fail(`reply ${reply!.data.join()} from ${show(reply!.from)}`);
  },

  async "IPv6 multicast: the interface by its address, one no interface has refused (Deno refuses IPv6 multicast)"(open) {
    const group = `ff15::${(1 + Math.floor(Math.random() * 0xfffe)).toString(16)}`;
    if ("Deno" in globalThis) {
      await expectRejection(open({ bindAddress: "::1", multicastInterface: "::1" }), "UNSUPPORTED");
      const listener = await open({ bindAddress: "::" });
      expectCode(() => listener.transport.joinGroup(group, "::1"), "UNSUPPORTED", "network.group");
      return;
    }
    // Linux's loopback carries no IPv6 multicast (test/hosts/multicast-ipv6.test.ts sends it): joins and interfaces only.
    await open({ bindAddress: "::1", multicastInterface: "::1" });
    const listener = await open({ bindAddress: "::", reuseAddress: true });
    listener.transport.joinGroup(group, "::1");
    listener.transport.leaveGroup(group, "::1");
    await expectRejection(open({ bindAddress: "::", multicastInterface: "2001:db8::77" }), "BIND_FAILED");
    expectCode(() => listener.transport.joinGroup(group, "2001:db8::77"), "BIND_FAILED", "2001:db8::77");
  },

  async "a host name is refused at send, never resolved"(open) {
    const a = await open({ bindAddress: LOOPBACK });
    const b = await open({ bindAddress: LOOPBACK });
    a.transport.send(bytes(9), { host: "localhost", port: b.transport.localAddress.port });
    await a.until(() => a.errors.length > 0);
    await sleep(50);
    if (b.received.length > 0) fail("a datagram sent to a host name arrived");
    if (a.errors[0]!.code !== "SEND_FAILED") fail(`reported ${a.errors[0]!.code}: ${a.errors[0]!.message}`);
  },

  async "binding an address this host lacks fails with BIND_FAILED"(open) {
    await expectRejection(open({ bindAddress: "203.0.113.77" }), "BIND_FAILED");
    await expectRejection(open({ port: 70_000 }), "INVALID_OPTION");
  },
};

async function runCheck(name: string, check: Check, factory: TransportFactory): Promise<CheckResult> {
  const started = Date.now();
  const opened: Transport[] = [];
  const open = async (options?: TransportOptions) => {
    const transport = await factory(options);
    opened.push(transport);
    return new Probe(transport);
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([check(open), timeout]);
    return { name, ok: true, ms: Date.now() - started };
  } catch (error) {
    return { name, ok: false, ms: Date.now() - started, error: error instanceof Error ? error.message : String(error) };
  } finally {
    clearTimeout(timer);
    await Promise.race([Promise.all(opened.map((t) => t.close())), sleep(1_000)]);
  }
}

/** Runs every check against `factory`, then checks that the `foreign` adapters refuse with WRONG_RUNTIME. */
export async function runAdapterSuite(runtime: string, factory: TransportFactory, foreign: ForeignFactories = {}): Promise<SuiteResult> {
  const results: CheckResult[] = [];
  for (const [name, check] of Object.entries(checks)) results.push(await runCheck(name, check, factory));
  for (const [name, other] of Object.entries(foreign)) {
    results.push(await runCheck(`the ${name} adapter refuses with WRONG_RUNTIME`, () => expectRejection(other(), "WRONG_RUNTIME"), factory));
  }
  const probe = await factory({ bindAddress: LOOPBACK }).catch(() => undefined);
  await probe?.close();
  return { runtime, ok: results.every((r) => r.ok), nativeBatchSend: probe?.nativeBatchSend, checks: results };
}
