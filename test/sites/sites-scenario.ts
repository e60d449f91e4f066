import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { isPrefix, isRun, payload, type SiteProc, SitesSim, TIMING } from "./sites-sim.ts";

/**
 * One seeded run of two sites, "eu" and "us", of 3–4 members each: every member streams messages on a
 * relayed topic and point to point to a member of the other site, while the seed picks the faults —
 * loss on each site's LAN and on the bus, one site's gateway crashing mid-stream, both sites'
 * gateways crashing at different moments, or a site cut off the bus for less than the site timeout.
 * Then, after a quiet spell, it checks what the bridge promises: at every member that lived through
 * the run, each origin's relayed messages arrived once, in order, and all of them (a prefix for an
 * origin that crashed), point-to-point messages likewise; nothing was reported lost and no site went
 * down; every surviving origin holds nothing (every site acknowledged everything); a request across
 * gets its reply; and no member reported a fault of its own.
 */

export type Fault = "calm" | "gateway-eu" | "gateway-us" | "both-gateways" | "bus-cut";
const FAULTS: readonly Fault[] = ["calm", "gateway-eu", "gateway-us", "both-gateways", "bus-cut"];

export interface SitesScenarioResult {
  readonly fault: Fault;
  readonly delivered: number;
  readonly resent: number;
  readonly busLost: number;
  readonly duplicates: number;
}

const MESSAGES = 40;
/** Failure detection of a crashed gateway, the resend timeout, and slack for loss. */
const SETTLE_MS = TIMING.failureTimeoutMs + TIMING.verifyTimeoutMs + 4_000;

export async function runSitesScenario(seed: number): Promise<SitesScenarioResult> {
  const rng = new SeededRandom(seed).fork("scenario");
  const fault = FAULTS[rng.nextInt(FAULTS.length)]!;
  const sim = new SitesSim(seed, {
    siteLoss: rng.next() * 0.1,
    busLoss: rng.next() * 0.05,
    busDelayMs: { min: 1, max: 1 + rng.next() * 20 },
  });
  try {
    const sites = ["eu", "us"];
    for (const site of sites) {
      const size = 3 + rng.nextInt(2);
      for (let i = 0; i < size; i++) await sim.spawn(site, `h${i}`);
    }
    await sim.runUntil(() => sites.every((s) => sim.siteAgreed(s)) && sim.sitesUp(sites), 10_000, "both sites formed and up");
    sim.note(`fault ${fault}`);

    const senders = sim.running();
    const initial = new Set(senders.map((p) => p.id));
    const sent = new Map<string, number>();
    const sentDirect = new Map<string, { target: SiteProc; count: number }>();
    const crashAt = [rng.nextInt(MESSAGES), rng.nextInt(MESSAGES)];
    for (let n = 1; n <= MESSAGES; n++) {
      if (fault === "gateway-eu" && n === crashAt[0]) sim.crash(sim.gateway("eu")!);
      if (fault === "gateway-us" && n === crashAt[0]) sim.crash(sim.gateway("us")!);
      if (fault === "both-gateways" && n === crashAt[0]) sim.crash(sim.gateway("eu")!);
      if (fault === "both-gateways" && n === crashAt[1] && n !== crashAt[0]) sim.crash(sim.gateway("us")!);
      if (fault === "bus-cut" && n === crashAt[0]) {
        const site = sites[rng.nextInt(2)]!;
        sim.note(`cut ${site} off the bus`);
        sim.bus.disconnect(site);
        const back = 100 + rng.nextInt(600);
        sim.clock.setTimer(back, () => {
          sim.note(`reconnect ${site}`);
          sim.bus.reconnect(site);
        });
      }
      for (const sender of senders) {
        if (sender.status !== "running") continue;
        sender.relay.broadcast("prices", payload(sender, n)).catch(() => undefined);
        sent.set(sender.id, n);
        if (n % 4 === 0) {
          // Point to point to the other site's member of the same position (not its first: the gateway may crash).
          const others = senders.filter((p) => p.site !== sender.site);
          const target = others[1 + (sender.index % (others.length - 1))]!;
          const count = (sentDirect.get(sender.id)?.count ?? 0) + 1;
          sentDirect.set(sender.id, { target, count });
          sender.relay.send({ site: target.site, id: target.id }, payload(sender, count)).catch(() => undefined);
        }
      }
      await sim.run(2 + rng.nextInt(15));
    }
    await sim.run(SETTLE_MS);

    const survivors = sim.running().filter((p) => initial.has(p.id));
    const problems: string[] = [];
    for (const receiver of survivors) {
      for (const origin of senders) {
        if (origin.site === receiver.site) continue;
        const got = receiver.topic.get(origin.id);
        const name = `${receiver.site}${receiver.index} from ${origin.site}${origin.index}`;
        if (origin.status === "running") {
          if (!isRun(got, sent.get(origin.id)!)) problems.push(`${name}: topic ${summary(got)}, sent 1..${sent.get(origin.id)}`);
        } else if (!isPrefix(got)) problems.push(`${name} (crashed): topic ${summary(got)} is no prefix`);
        const direct = sentDirect.get(origin.id);
        if (direct?.target.id === receiver.id) {
          const gotDirect = receiver.direct.get(origin.id);
          if (origin.status === "running" && !isRun(gotDirect, direct.count)) problems.push(`${name}: direct ${summary(gotDirect)}, sent 1..${direct.count}`);
          if (origin.status !== "running" && !isPrefix(gotDirect)) problems.push(`${name} (crashed): direct ${summary(gotDirect)} is no prefix`);
        }
      }
      if (receiver.lost.length > 0) problems.push(`${receiver.site}${receiver.index} reported lost: ${JSON.stringify(receiver.lost)}`);
      const downs = receiver.siteEvents.filter((e) => e.startsWith("down"));
      if (downs.length > 0) problems.push(`${receiver.site}${receiver.index} saw ${downs.join(", ")}`);
      if (receiver.relay.stats.held > 0) problems.push(`${receiver.site}${receiver.index} still holds ${receiver.relay.stats.held} messages`);
      const errors = receiver.errors.filter((e) => !e.startsWith("transport TRANSPORT_ERROR"));
      if (errors.length > 0) problems.push(`${receiver.site}${receiver.index} reported: ${errors.join("; ")}`);
    }
    // Same-site delivery goes on as a group's: each member gets its site mates' messages in order.
    for (const receiver of survivors) {
      for (const origin of senders) {
        if (origin.site !== receiver.site || origin.id === receiver.id) continue;
        if (!isPrefix(receiver.topic.get(origin.id))) problems.push(`${receiver.site}${receiver.index} from site mate ${origin.index}: ${summary(receiver.topic.get(origin.id))}`);
      }
    }
    // A request across, answered.
    const asker = survivors.find((p) => p.site === "eu")!;
    const answerer = survivors.find((p) => p.site === "us")!;
    const reply = asker.relay.request({ site: "us", id: answerer.id }, payload(asker, 0), { timeoutMs: 5_000 });
    let answer: string | undefined;
    reply.then((m) => (answer = m.text())).catch((error: unknown) => problems.push(`request: ${String(error)}`));
    await sim.runUntil(() => answer !== undefined || problems.length > 0, 6_000, "the reply");
    if (answer !== undefined && answer !== `re:${asker.site}${asker.index}:0`) problems.push(`request answered "${answer}"`);
    if (problems.length > 0) {
      const stats = sim.procs.map((p) => `${p.site}${p.index} ${p.status} ${JSON.stringify(p.relay.stats)}`);
      throw new Error(`${fault}: ${problems.slice(0, 12).join("\n")}\n--- log\n${sim.log.join("\n")}\n--- stats\n${stats.join("\n")}`);
    }

    const sum = (f: (p: SiteProc) => number) => survivors.reduce((total, p) => total + f(p), 0);
    return {
      fault,
      delivered: sum((p) => p.relay.stats.received.delivered),
      resent: sum((p) => p.relay.stats.resent),
      busLost: sim.bus.lost,
      duplicates: sum((p) => p.relay.stats.received.duplicates),
    };
  } finally {
    await sim.close();
  }
}

function summary(list: readonly number[] | undefined): string {
  const got = list ?? [];
  if (got.length <= 12) return `[${got.join(",")}]`;
  return `[${got.slice(0, 5).join(",")} … ${got.slice(-5).join(",")}] (${got.length})`;
}
