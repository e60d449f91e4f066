/** `activeblaze/otel` on the OpenTelemetry SDK: two members on the simulated network share one meter. */
import { MeterProvider, MetricReader, type MetricData } from "@opentelemetry/sdk-metrics";
import { afterEach, describe, expect, it } from "vitest";
import { GroupChannel } from "../src/group/group-channel.ts";
import { BlazeMessage } from "../src/message/blaze-message.ts";
import { openTelemetryMetrics } from "../src/otel.ts";
import { SimulatedNetwork } from "../src/transport/simulated-network.ts";

/** Collects when asked. */
class Reader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => queueMicrotask(resolve));
}

async function settle<T>(net: SimulatedNetwork, promise: Promise<T>): Promise<T> {
  let outcome: { value: T } | { error: unknown } | undefined;
  promise.then(
    (value) => (outcome = { value }),
    (error: unknown) => (outcome = { error }),
  );
  while (outcome === undefined) {
    net.clock.runFor(2);
    await flush();
  }
  if ("error" in outcome) throw outcome.error;
  return outcome.value;
}

const closing: GroupChannel[] = [];
afterEach(async () => {
  await Promise.all(closing.splice(0).map((member) => member.shutDown()));
});

describe("activeblaze/otel", () => {
  it("reports counters, gauges and histograms of every member sharing a meter, with member and cluster attributes", async () => {
    const reader = new Reader();
    const provider = new MeterProvider({ readers: [reader] });
    const metrics = openTelemetryMetrics(provider.getMeter("activeblaze-test"));
    const net = new SimulatedNetwork({ seed: 21 });
    const [a, b] = ["alpha", "bravo"].map((name, i) => {
      const member = new GroupChannel({
        name,
        cluster: "otel",
        transport: net.transportFactory(`h${i}`),
        clock: net.clock,
        random: net.random.fork(name),
        groups: ["g"],
        heartbeatIntervalMs: 100,
        discoveryTimeoutMs: 300,
        metrics,
      });
      closing.push(member);
      return member;
    }) as [GroupChannel, GroupChannel];
    await settle(net, Promise.all([a.join(), b.join()]));
    net.clock.runUntil(() => a.getMembers("g").length === 2 && b.getMembers("g").length === 2, { maxMs: 5_000 });
    b.onInbox("", (message) => void message.reply(new BlazeMessage("pong")));
    await settle(net, a.request(b.getLocalMember(), new BlazeMessage("ping")));

    const { resourceMetrics } = await reader.collect();
    const all = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
    const metric = (name: string): MetricData => {
      const found = all.find((m) => m.descriptor.name === name);
      if (found === undefined) throw new Error(`no metric ${name} among ${all.map((m) => m.descriptor.name).join(", ")}`);
      return found;
    };
    const points = (name: string) => metric(name).dataPoints.map((point) => ({ attributes: point.attributes, value: point.value }));

    expect(points("activeblaze.peers.up")).toEqual([
      { attributes: { member: "alpha", cluster: "otel" }, value: 1 },
      { attributes: { member: "bravo", cluster: "otel" }, value: 1 },
    ]);
    expect(points("activeblaze.view.changes").map((p) => p.attributes)).toContainEqual({ group: "g", member: "alpha", cluster: "otel" });
    expect(points("activeblaze.peers")).toEqual([
      { attributes: { member: "alpha", cluster: "otel" }, value: 1 },
      { attributes: { member: "bravo", cluster: "otel" }, value: 1 },
    ]);
    const sent = points("activeblaze.datagrams.sent");
    expect(sent.map((p) => p.attributes["member"]).sort()).toEqual(["alpha", "bravo"]);
    for (const point of sent) expect(point.value).toBe((point.attributes["member"] === "alpha" ? a : b).stats.network.datagramsSent);
    expect(metric("activeblaze.datagrams.sent").descriptor.description).toBe("datagrams sent");
    const request = metric("activeblaze.request.duration");
    expect(request.descriptor.unit).toBe("ms");
    expect(request.dataPoints).toHaveLength(1);
    expect(request.dataPoints[0]!.attributes).toEqual({ to: "member", outcome: "ok", member: "alpha", cluster: "otel" });
    expect((request.dataPoints[0]!.value as { count: number }).count).toBe(1);
    await provider.shutdown();
  });
});
