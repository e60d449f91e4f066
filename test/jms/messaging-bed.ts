import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import type { ClusterChannelOptions } from "../../src/cluster/options.ts";
import { SimulatedNetwork, type SimulatedNetworkOptions } from "../../src/transport/simulated-network.ts";
import { ConnectionFactory, createConnectionFactory } from "../../src/jms/connection-factory.ts";
import type { ConnectionFactoryOptions } from "../../src/jms/options.ts";
import { flushMicrotasks as flush, settleInVirtualTime } from "../support/virtual-time.ts";

/** Member timings for simulations: failures are detected within about a virtual second. */
export const SIM_TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;

/**
 * Messaging members on a simulated network under virtual time: each a cluster channel on its own host
 * with a connection factory on it. Tests of the messaging layer (and its seeded simulations) use it.
 */
export class MessagingBed {
  readonly net: SimulatedNetwork;
  readonly members: Array<{ readonly host: string; readonly channel: ClusterChannel; readonly factory: ConnectionFactory }> = [];
  #count = 0;

  constructor(options: SimulatedNetworkOptions = { seed: 1, defaultLink: {} }) {
    this.net = new SimulatedNetwork(options);
  }

  /** A new member, joined, with its factory. */
  async add(
    options: {
      channel?: Partial<ClusterChannelOptions>;
      factory?: Omit<ConnectionFactoryOptions, "channel" | "clock">;
      /** Runs on the joined channel before its factory is made (a test's stubs). */
      prepare?: (channel: ClusterChannel) => void;
    } = {},
  ): Promise<ConnectionFactory> {
    const index = this.#count++;
    const host = `h${index}`;
    const channel = new ClusterChannel({
      name: `m${index}`,
      transport: this.net.transportFactory(host),
      clock: this.net.clock,
      random: this.net.random.fork(`member-${index}`),
      incarnation: index + 1,
      groups: ["jms"],
      ...SIM_TIMING,
      ...options.channel,
    });
    await channel.init();
    await this.settle(channel.join());
    options.prepare?.(channel);
    const factory = await createConnectionFactory({ ...options.factory, channel, clock: this.net.clock });
    this.members.push({ host, channel, factory });
    return factory;
  }

  /** `count` new members with default options, one after the other, and then half a virtual second for their views to settle. */
  async addMembers(count: 2): Promise<[ConnectionFactory, ConnectionFactory]>;
  async addMembers(count: 3): Promise<[ConnectionFactory, ConnectionFactory, ConnectionFactory]>;
  async addMembers(count: number): Promise<ConnectionFactory[]> {
    const factories: ConnectionFactory[] = [];
    for (let i = 0; i < count; i++) factories.push(await this.add());
    await this.run(500);
    return factories;
  }

  /** Runs virtual time until the promise settles (or `maxMs` passes: then throws). */
  async settle<T>(promise: Promise<T>, maxMs = 30_000): Promise<T> {
    return settleInVirtualTime(this.net.clock, promise, maxMs);
  }

  /** Runs `ms` of virtual time. */
  async run(ms: number): Promise<void> {
    const end = this.net.clock.now() + ms;
    while (this.net.clock.now() < end) {
      this.net.clock.runFor(2);
      await flush();
    }
  }

  /** Runs virtual time until `check()` holds (or throws after `maxMs`). */
  async until(check: () => boolean, maxMs = 30_000): Promise<void> {
    const start = this.net.clock.now();
    while (!check()) {
      if (this.net.clock.now() - start > maxMs) throw new Error(`condition not met within ${maxMs} virtual ms`);
      this.net.clock.runFor(2);
      await flush();
    }
  }

  /** Crashes member `index`'s host: it stops at once, without leaving. */
  crash(index: number): void {
    this.net.crash(this.members[index]!.host);
  }

  async close(): Promise<void> {
    for (const member of this.members) {
      if (this.net.isCrashed(member.host)) continue;
      await member.factory.close().catch(() => undefined);
      await member.channel.stop().catch(() => undefined);
    }
  }
}

