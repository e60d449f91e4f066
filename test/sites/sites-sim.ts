import { RelayChannel } from "../../src/relay/relay-channel.ts";
import type { RelayOptions } from "../../src/relay/options.ts";
import { SimulatedBus } from "../../src/relay/simulated-bus.ts";
import type { SiteMessage } from "../../src/relay/site-message.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { VirtualClock } from "../../src/transport/virtual-clock.ts";
import { flush } from "../sim/sim-helpers.ts";

/**
 * Sites bridged over a simulated NATS server, under virtual time: each site its own simulated network
 * (its own LAN), every member a RelayChannel on a host of it, all on one clock; the bus between the
 * sites' gateways delays and may lose messages, and a site can be cut off it. Each member records what
 * it delivered, by origin, so that order, completeness and duplicates can be checked.
 */

/** Group timing of every simulated member (fast, so that a run takes a few virtual seconds). */
export const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;
/** Relay timing: a site is down after 1.5 s without announcements, past the group's failure detection. */
export const RELAY_TIMING = { announceIntervalMs: 100, siteTimeoutMs: 1_500, ackDelayMs: 5, resendTimeoutMs: 300 } as const;
export const TOPIC = "prices";
export const SITE_GROUP = "site";

export interface SiteProc {
  readonly index: number;
  readonly site: string;
  readonly host: string;
  readonly relay: RelayChannel;
  readonly id: string;
  status: "running" | "crashed" | "left";
  /** Topic messages delivered, by origin id: the numbers they carry, in delivery order. */
  readonly topic: Map<string, number[]>;
  /** Point-to-point messages delivered, by origin id. */
  readonly direct: Map<string, number[]>;
  readonly lost: Array<{ origin: string; firstSeq: number; lastSeq: number }>;
  readonly siteEvents: string[];
  readonly errors: string[];
}

export class SitesSim {
  readonly clock = new VirtualClock();
  readonly random: SeededRandom;
  readonly bus: SimulatedBus;
  readonly nets = new Map<string, SimulatedNetwork>();
  readonly procs: SiteProc[] = [];
  readonly log: string[] = [];
  #next = 0;

  constructor(
    readonly seed: number,
    options: { readonly siteLoss?: number; readonly busLoss?: number; readonly busDelayMs?: { min: number; max: number } } = {},
  ) {
    this.random = new SeededRandom(seed);
    this.bus = new SimulatedBus({ clock: this.clock, random: this.random.fork("bus"), loss: options.busLoss ?? 0, delayMs: options.busDelayMs ?? { min: 1, max: 3 } });
    this.siteLoss = options.siteLoss ?? 0;
  }

  readonly siteLoss: number;

  get now(): number {
    return this.clock.now();
  }

  net(site: string): SimulatedNetwork {
    let net = this.nets.get(site);
    if (net === undefined) {
      net = new SimulatedNetwork({ seed: `${this.seed}-${site}`, clock: this.clock, defaultLink: { loss: this.siteLoss } });
      this.nets.set(site, net);
    }
    return net;
  }

  running(site?: string): SiteProc[] {
    return this.procs.filter((p) => p.status === "running" && (site === undefined || p.site === site));
  }

  /** Starts a member of `site` on `host` and has it join (without waiting). */
  async spawn(site: string, host: string, relay: Partial<RelayOptions> = {}): Promise<SiteProc> {
    const index = this.#next++;
    const net = this.net(site);
    const relayChannel = new RelayChannel({
      name: `${site}${index}`,
      transport: net.transportFactory(host),
      clock: net.clockOf(host),
      random: net.random.fork(`process-${index}`),
      incarnation: 1,
      groups: [SITE_GROUP],
      ...TIMING,
      relay: { site, topics: [TOPIC], bus: this.bus.factory(() => !net.isCrashed(host)), ...RELAY_TIMING, ...relay },
    });
    const proc: SiteProc = {
      index,
      site,
      host,
      relay: relayChannel,
      id: relayChannel.group.id,
      status: "running",
      topic: new Map(),
      direct: new Map(),
      lost: [],
      siteEvents: [],
      errors: [],
    };
    this.procs.push(proc);
    this.note(`start ${site}${index}@${host} ${proc.id.slice(0, 8)}`);
    const record = (into: Map<string, number[]>) => (message: SiteMessage) => {
      let list = into.get(message.origin.id);
      if (list === undefined) into.set(message.origin.id, (list = []));
      list.push(Number(message.text().split(":")[1]));
    };
    relayChannel.onTopic(TOPIC, record(proc.topic));
    relayChannel.onInbox("", (message) => {
      if (message.isRequest) return message.reply(new TextEncoder().encode(`re:${message.text()}`));
      record(proc.direct)(message);
    });
    relayChannel.on("messagesLost", (event) => proc.lost.push({ origin: event.origin.id, firstSeq: event.firstSeq, lastSeq: event.lastSeq }));
    relayChannel.on("siteUp", (event) => proc.siteEvents.push(`up ${event.site} at ${this.now}`));
    relayChannel.on("siteDown", (event) => proc.siteEvents.push(`down ${event.site} at ${this.now}`));
    const onError = (stage: string, error: { code: string; message: string }) => {
      if (proc.status === "running") proc.errors.push(`${stage} ${error.code}: ${error.message}`);
    };
    relayChannel.on("error", ({ error, stage }) => onError(stage, error));
    relayChannel.group.on("error", ({ error, stage }) => onError(stage, error));
    relayChannel.join({ timeoutMs: 3_600_000 }).catch((error: unknown) => {
      if (proc.status === "running") proc.errors.push(`join: ${String(error)}`);
    });
    await flush();
    await flush();
    return proc;
  }

  /** Crashes a member's host: its LAN traffic and its bus connection go silent at once; its code stops. */
  crash(proc: SiteProc): void {
    this.note(`crash ${proc.site}${proc.index}${proc.relay.isGateway ? " (gateway)" : ""}`);
    proc.status = "crashed";
    this.net(proc.site).crash(proc.host);
    void proc.relay.close();
  }

  /** Crashed hosts may start new processes again. */
  restartHost(proc: SiteProc): void {
    this.net(proc.site).restart(proc.host);
  }

  note(text: string): void {
    this.log.push(`${this.now.toFixed(1)} ${text}`);
  }

  async run(ms: number, stepMs = 5): Promise<void> {
    const end = this.now + ms;
    while (this.now < end) {
      this.clock.runFor(Math.min(stepMs, end - this.now));
      await flush();
    }
  }

  async runUntil(predicate: () => boolean, maxMs: number, what: string, stepMs = 5): Promise<number> {
    const start = this.now;
    while (!predicate()) {
      if (this.now - start >= maxMs) throw new Error(`${what}: not reached within ${maxMs} ms (at ${this.now} ms)\n${this.log.slice(-40).join("\n")}`);
      this.clock.runFor(stepMs);
      await flush();
    }
    return this.now - start;
  }

  /** Every running member of `site` has one view of exactly the running members. */
  siteAgreed(site: string): boolean {
    const running = this.running(site);
    const ids = running.map((p) => p.id).sort().join();
    return running.every((p) => (p.relay.group.getView(SITE_GROUP)?.members.map((m) => m.id).sort().join() ?? "") === ids);
  }

  /** Every running member sees every other site of `sites` up. */
  sitesUp(sites: readonly string[]): boolean {
    return this.running().every((p) =>
      sites.every((site) => site === p.site || p.relay.getSites().some((s) => s.name === site && s.up)),
    );
  }

  gateway(site: string): SiteProc | undefined {
    return this.running(site).find((p) => p.relay.isGateway);
  }

  async close(): Promise<void> {
    for (const proc of this.running()) await proc.relay.close().catch(() => undefined);
  }
}

/** The payload a sender sends as its `n`-th message. */
export function payload(proc: SiteProc, n: number): Uint8Array {
  return new TextEncoder().encode(`${proc.site}${proc.index}:${n}`);
}

/** Whether `list` is exactly 1, 2, …, `count`. */
export function isRun(list: readonly number[] | undefined, count: number): boolean {
  const got = list ?? [];
  return got.length === count && got.every((n, i) => n === i + 1);
}

/** Whether `list` is 1, 2, …, k for some k (a prefix of a sender's stream). */
export function isPrefix(list: readonly number[] | undefined): boolean {
  return (list ?? []).every((n, i) => n === i + 1);
}
