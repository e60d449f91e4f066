/**
 * What a member tells about itself on the simulated network: background failures reported even when
 * nobody listens, the `logger` option (levels, structured fields, every background failure), and the
 * `metrics` option (event counts, write / lock-wait / request durations, running totals and levels).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { Channel } from "../src/channel/channel.ts";
import { ClusterChannel } from "../src/cluster/cluster-channel.ts";
import type { LogEntry } from "../src/diagnostics/logger.ts";
import type { MetricAttributes, Metrics, ObservedMember } from "../src/diagnostics/metrics.ts";
import { BlazeError } from "../src/errors.ts";
import { BlazeMessage } from "../src/message/blaze-message.ts";
import { SimulatedNetwork } from "../src/transport/simulated-network.ts";
import type { TransportErrorHandler, TransportFactory } from "../src/transport/transport.ts";
import { settleInVirtualTime } from "./support/virtual-time.ts";

const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;

/** Runs virtual time until the promise settles. */
async function settle<T>(net: SimulatedNetwork, promise: Promise<T>, maxMs = 20_000): Promise<T> {
  return settleInVirtualTime(net.clock, promise, maxMs);
}

/** The simulated network's transports, but each one's sends can be made to fail (at once, or later through onError). */
function failingSends(factory: TransportFactory) {
  const state = { failNow: false, errorHandlers: [] as TransportErrorHandler[] };
  const wrapped: TransportFactory = async (options) => {
    const transport = await factory(options);
    const send = transport.send.bind(transport);
    const onError = transport.onError.bind(transport);
    return Object.assign(transport, {
      send: (data: Uint8Array, to: { host: string; port: number }) => {
        if (state.failNow) throw new BlazeError("SEND_FAILED", `Could not send to ${to.host}:${to.port}: EPERM`);
        send(data, to);
      },
      onError: (handler: TransportErrorHandler) => {
        state.errorHandlers.push(handler);
        onError(handler);
      },
    });
  };
  return { factory: wrapped, state };
}

const closing: Array<{ shutDown(): Promise<void> }> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(closing.splice(0).map((member) => member.shutDown()));
});

function channel(net: SimulatedNetwork, i: number, options: ConstructorParameters<typeof Channel>[0] = {}): Channel {
  const member = new Channel({ name: `m${i}`, transport: net.transportFactory(`h${i}`), clock: net.clock, random: net.random.fork(`m${i}`), incarnation: 1, heartbeatIntervalMs: 100, ...options });
  closing.push(member);
  return member;
}

describe("a failure nobody listens for", () => {
  it("is printed, once per kind and window: a throwing topic listener", async () => {
    const printed = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const net = new SimulatedNetwork({ seed: 1 });
    const [a, b] = [channel(net, 1), channel(net, 2)];
    await Promise.all([a.start(), b.start()]);
    net.clock.runUntil(() => a.peers.length === 1 && b.peers.length === 1, { maxMs: 5_000 });
    b.onTopic("t", () => {
      throw new Error("listener bug");
    });
    for (let n = 0; n < 3; n++) await a.broadcast("t", new BlazeMessage(`${n}`));
    net.clock.runFor(100);
    expect(printed).toHaveBeenCalledTimes(1);
    expect(String(printed.mock.calls[0]![0])).toMatch(/^activeblaze member [0-9a-f]{8} \(m2\): unhandled listener error — add an "error" listener/);
    expect(printed.mock.calls[0]![1]).toMatchObject({ code: "LISTENER_ERROR", cause: new Error("listener bug") });
    expect(b.stats.errors.listener).toBe(3);
    // The next window says how many were held back.
    net.clock.runFor(10_000);
    await a.broadcast("t", new BlazeMessage("3"));
    net.clock.runFor(100);
    expect(printed).toHaveBeenCalledTimes(2);
    expect(String(printed.mock.calls[1]![0])).toContain("(2 more like it since the last report)");
  });

  it("is printed: a send that fails at once, and one the socket reports later", async () => {
    const printed = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const net = new SimulatedNetwork({ seed: 2 });
    const { factory, state } = failingSends(net.transportFactory("h1"));
    const a = channel(net, 1, { transport: factory });
    await a.start();
    state.failNow = true;
    await a.broadcast("t", new BlazeMessage("x"));
    net.clock.runFor(10);
    expect(printed).toHaveBeenCalledTimes(1);
    expect(String(printed.mock.calls[0]![0])).toContain("unhandled transport error");
    expect(printed.mock.calls[0]![1]).toMatchObject({ code: "SEND_FAILED" });
    for (const handler of state.errorHandlers) handler(new BlazeError("TRANSPORT_ERROR", "UDP socket error: ENOBUFS"));
    expect(printed).toHaveBeenCalledTimes(2);
    expect(printed.mock.calls[1]![1]).toMatchObject({ code: "TRANSPORT_ERROR" });
    expect(a.stats.errors.transport).toBeGreaterThanOrEqual(2);
  });

  it("is handled quietly by an error listener", async () => {
    const printed = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const net = new SimulatedNetwork({ seed: 3 });
    const { factory, state } = failingSends(net.transportFactory("h1"));
    const a = channel(net, 1, { transport: factory });
    const seen: string[] = [];
    a.on("error", ({ error, stage }) => seen.push(`${stage}/${error.code}`));
    await a.start();
    state.failNow = true;
    await a.broadcast("t", new BlazeMessage("x"));
    net.clock.runFor(10);
    expect(seen).toContain("transport/SEND_FAILED");
    expect(printed).not.toHaveBeenCalled();
  });
});

describe("the logger option", () => {
  it("logs every background failure with structured fields, rate-limited, and what an operator wants to know", async () => {
    const printed = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const net = new SimulatedNetwork({ seed: 4 });
    const entries: LogEntry[] = [];
    const a = channel(net, 1, { cluster: "logged", logger: (entry) => entries.push(entry) });
    const b = channel(net, 2, { cluster: "logged" });
    a.on("error", () => undefined); // logged all the same
    await Promise.all([a.start(), b.start()]);
    net.clock.runUntil(() => a.peers.length === 1, { maxMs: 5_000 });
    a.onTopic("t", () => {
      throw new Error("listener bug");
    });
    for (let n = 0; n < 3; n++) await b.broadcast("t", new BlazeMessage(`${n}`));
    net.clock.runFor(10_100);
    await b.broadcast("t", new BlazeMessage("last"));
    net.clock.runFor(100);
    const failures = entries.filter((entry) => entry.level === "error");
    expect(failures).toHaveLength(2);
    expect(failures[0]).toMatchObject({ message: 'a listener of topic "t" threw', member: a.id.slice(0, 8), name: "m1", cluster: "logged", stage: "listener", code: "LISTENER_ERROR" });
    expect(failures[0]!.error).toBeInstanceOf(BlazeError);
    expect(failures[0]!.suppressed).toBeUndefined();
    expect(failures[1]!.suppressed).toBe(2);
    expect(typeof failures[0]!.time).toBe("number");
    const info = entries.filter((entry) => entry.level === "info").map((entry) => entry.message);
    expect(info[0]).toMatch(/^started as incarnation 1 at h1:\d+$/);
    expect(info).toContain(`peer (${b.id.slice(0, 8)}) up at h2:${b.localAddress.port}`);
    await b.stop();
    net.clock.runFor(100);
    expect(entries.at(-1)).toMatchObject({ level: "info", message: `peer (${b.id.slice(0, 8)}) down (left)`, event: "peerDown", about: { id: b.id, name: "" } });
    expect(printed).not.toHaveBeenCalled();
  });

  it("a logger that throws does not break the member", async () => {
    const net = new SimulatedNetwork({ seed: 5 });
    const a = channel(net, 1, {
      logger: () => {
        throw new Error("logger bug");
      },
    });
    await a.start();
    await a.broadcast("t", new BlazeMessage("x"));
    net.clock.runFor(100);
    expect(a.state).toBe("started");
  });
});

describe("the metrics option", () => {
  class Recorder implements Metrics {
    readonly counts: Array<[string, number, MetricAttributes]> = [];
    readonly records: Array<[string, number, MetricAttributes]> = [];
    observed: ObservedMember | undefined;
    observe(member: ObservedMember): void {
      this.observed = member;
    }
    count(name: string, increment: number, attributes: MetricAttributes): void {
      this.counts.push([name, increment, attributes]);
    }
    record(name: string, value: number, attributes: MetricAttributes): void {
      this.records.push([name, value, attributes]);
    }
  }

  it("counts views and peers, measures writes, lock waits and requests, and reads totals and levels", async () => {
    const net = new SimulatedNetwork({ seed: 6 });
    const metrics = new Recorder();
    const members = [0, 1, 2].map((i) => {
      const member = new ClusterChannel({
        name: `c${i}`,
        cluster: "measured",
        transport: net.transportFactory(`h${i}`),
        clock: net.clock,
        random: net.random.fork(`c${i}`),
        incarnation: 1,
        groups: ["g"],
        ...TIMING,
        ...(i === 0 ? { metrics } : {}),
      });
      closing.push(member);
      return member;
    });
    const [a, b] = members as [ClusterChannel, ClusterChannel, ClusterChannel];
    expect(metrics.observed).toMatchObject({ id: a.id, name: "c0", cluster: "measured" });
    await settle(net, Promise.all(members.map((member) => member.join())));
    await settle(net, a.map.put("k", new BlazeMessage("v")));
    const lock = await settle(net, a.map.lock("k"));
    await settle(net, lock.release());
    b.onInbox("", (message) => void message.reply(new BlazeMessage("pong")));
    await settle(net, a.request(b.getLocalMember(), new BlazeMessage("ping")));
    await settle(net, a.request(b.getLocalMember(), new BlazeMessage("ping"), { inbox: "nobody", timeoutMs: 50 }).catch(() => undefined));

    const who = { member: "c0", cluster: "measured" };
    const named = (name: string) => metrics.records.filter(([n]) => n === name);
    expect(named("activeblaze.map.write.duration")).toEqual([["activeblaze.map.write.duration", expect.any(Number), { operation: "put", outcome: "ok", ...who }]]);
    expect(named("activeblaze.map.lock.wait")).toEqual([["activeblaze.map.lock.wait", expect.any(Number), { outcome: "acquired", ...who }]]);
    expect(named("activeblaze.request.duration").map(([, , attributes]) => attributes)).toEqual([
      { to: "member", outcome: "ok", ...who },
      { to: "member", outcome: "TIMEOUT", ...who },
    ]);
    expect(named("activeblaze.request.duration")[1]![1]).toBe(50);
    const counted = (name: string) => metrics.counts.filter(([n]) => n === name).reduce((sum, [, n]) => sum + n, 0);
    expect(counted("activeblaze.peers.up")).toBe(2);
    expect(counted("activeblaze.view.changes")).toBeGreaterThanOrEqual(1);
    expect(metrics.counts.find(([n]) => n === "activeblaze.view.changes")![2]).toEqual({ group: "g", ...who });

    const { totals, levels } = metrics.observed!.read();
    const total = (name: string) => totals.find((value) => value.name === name);
    expect(total("activeblaze.messages.sent")!.value).toBe(0); // no topic messages: membership and the map travel otherwise
    expect(total("activeblaze.datagrams.sent")!.value).toBeGreaterThan(0);
    expect(total("activeblaze.datagrams.received")).toMatchObject({ attributes: who });
    expect(total("activeblaze.map.writes")!.value).toBeGreaterThanOrEqual(3);
    expect(totals.filter((value) => value.name === "activeblaze.errors").map((value) => value.attributes!["stage"])).toEqual(["transport", "listener", "receive", "timer", "send"]);
    expect(levels).toContainEqual({ name: "activeblaze.peers", value: 2, attributes: who });
    expect(levels).toContainEqual({ name: "activeblaze.map.entries", value: 1, attributes: who });
    expect(levels).toContainEqual({ name: "activeblaze.map.locks", value: 0, attributes: who });
    expect(levels).toContainEqual({ name: "activeblaze.queue.depth", value: 0, attributes: { queue: "requests", ...who } });
  });
});
