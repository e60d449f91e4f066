import { describe, expect, it } from "vitest";
import { runSeeds, seedsFromEnv } from "../../src/transport/sim-run.ts";
import { runSitesScenario, type SitesScenarioResult } from "./sites-scenario.ts";
import { payload, RELAY_TIMING, type SiteProc, SitesSim, TOPIC } from "./sites-sim.ts";

describe("sites bridged over a simulated NATS server", () => {
  it("delivers relayed topic and point-to-point messages once, in order and all, through gateway crashes, bus loss and bus cuts (60 seeds)", async () => {
    const results: SitesScenarioResult[] = [];
    await runSeeds({
      seeds: seedsFromEnv({ from: 1, count: 60 }),
      run: async (seed) => {
        results.push(await runSitesScenario(seed));
      },
      file: "test/sites/sites-sim.test.ts",
    });
    if (results.length >= 60) {
      // The seeds exercise what the test claims: every fault, resends, and duplicates dropped.
      for (const fault of ["calm", "gateway-eu", "gateway-us", "both-gateways", "bus-cut"]) {
        expect(results.filter((r) => r.fault === fault).length).toBeGreaterThan(5);
      }
      expect(results.filter((r) => r.resent > 0).length).toBeGreaterThan(20);
      expect(results.reduce((sum, r) => sum + r.duplicates, 0)).toBeGreaterThan(0);
      expect(results.reduce((sum, r) => sum + r.busLost, 0)).toBeGreaterThan(0);
    }
  }, 600_000);
});

async function twoSites(seed: number, size = 3): Promise<SitesSim> {
  const sim = new SitesSim(seed);
  for (const site of ["eu", "us"]) for (let i = 0; i < size; i++) await sim.spawn(site, `h${i}`);
  await sim.runUntil(() => sim.siteAgreed("eu") && sim.siteAgreed("us") && sim.sitesUp(["eu", "us"]), 10_000, "both sites up");
  return sim;
}

const sites = (proc: SiteProc) => proc.siteEvents.map((event) => event.split(" at ")[0]);

describe("sites going down and coming back", () => {
  it("a site cut off the bus is down for the others, then up again; what it missed meanwhile is released by its origin and reported lost, with its range, by each of its members", async () => {
    const sim = await twoSites(21);
    try {
      const [eu0] = sim.running("eu");
      const us = sim.running("us");
      for (let n = 1; n <= 10; n++) void eu0!.relay.broadcast(TOPIC, payload(eu0!, n));
      await sim.runUntil(() => us.every((p) => p.topic.get(eu0!.id)?.length === 10) && eu0!.relay.stats.held === 0, 2_000, "the first ten");

      sim.bus.disconnect("us");
      const downAt = sim.now;
      await sim.runUntil(() => sim.running().every((p) => sites(p).includes(`down ${p.site === "eu" ? "us" : "eu"}`)), 5_000, "both sides see the other down");
      // Within the site timeout and an announce interval of the last announcement heard.
      expect(sim.now - downAt).toBeLessThanOrEqual(RELAY_TIMING.siteTimeoutMs + 2 * RELAY_TIMING.announceIntervalMs + 20);
      for (let n = 11; n <= 20; n++) void eu0!.relay.broadcast(TOPIC, payload(eu0!, n));
      await sim.run(50);
      // Nothing is held for a site that is down.
      expect(eu0!.relay.stats.held).toBe(0);

      sim.bus.reconnect("us");
      await sim.runUntil(() => sim.sitesUp(["eu", "us"]), 2_000, "both up again");
      for (let n = 21; n <= 25; n++) void eu0!.relay.broadcast(TOPIC, payload(eu0!, n));
      await sim.runUntil(() => us.every((p) => p.topic.get(eu0!.id)?.length === 15) && eu0!.relay.stats.held === 0, 2_000, "the last five");

      for (const member of us) {
        expect(member.topic.get(eu0!.id)).toEqual([...range(1, 10), ...range(21, 25)]);
        expect(member.lost).toEqual([{ origin: eu0!.id, firstSeq: 11, lastSeq: 20 }]);
        expect(sites(member)).toEqual(["up eu", "down eu", "up eu"]);
      }
      for (const member of sim.running("eu")) {
        expect(sites(member)).toEqual(["up us", "down us", "up us"]);
        expect(member.errors).toEqual([]);
      }
    } finally {
      await sim.close();
    }
  });

  it("a whole site that crashes is down for the others (requests to it fail at once), and a new site of new members is up and gets what follows", async () => {
    const sim = await twoSites(22);
    try {
      const [eu0, eu1] = sim.running("eu");
      const oldUs = sim.running("us");
      for (const member of oldUs) sim.crash(member);
      await sim.runUntil(() => sim.running("eu").every((p) => sites(p).includes("down us")), 5_000, "us down");
      await expect(eu0!.relay.request({ site: "us", id: oldUs[0]!.id }, payload(eu0!, 0))).rejects.toMatchObject({ code: "UNREACHABLE" });
      expect(eu0!.relay.getSites().map((s) => [s.name, s.up])).toEqual([["eu", true], ["us", false]]);

      for (const member of oldUs) sim.restartHost(member);
      for (let i = 0; i < 3; i++) await sim.spawn("us", `h${i}`);
      await sim.runUntil(() => sim.siteAgreed("us") && sim.sitesUp(["eu", "us"]), 5_000, "the new us up");
      for (const member of sim.running("eu")) expect(sites(member)).toEqual(["up us", "down us", "up us"]);
      const newUs = sim.running("us");
      expect(eu1!.relay.getSites()[1]!.members.map((m) => m.id).sort()).toEqual(newUs.map((p) => p.id).sort());

      for (let n = 1; n <= 20; n++) void eu0!.relay.broadcast(TOPIC, payload(eu0!, n));
      await sim.runUntil(() => newUs.every((p) => p.topic.get(eu0!.id)?.length === 20) && eu0!.relay.stats.held === 0, 3_000, "the new site's messages");
      for (const member of newUs) {
        expect(member.topic.get(eu0!.id)).toEqual(range(1, 20));
        expect(member.lost).toEqual([]);
      }
      const reply = eu1!.relay.request({ site: "us", id: newUs[2]!.id }, payload(eu1!, 7));
      let answer = "";
      void reply.then((m) => (answer = m.text()));
      await sim.runUntil(() => answer !== "", 2_000, "the reply");
      expect(answer).toBe(`re:eu${eu1!.index}:7`);
    } finally {
      await sim.close();
    }
  });
});

describe("point to point across sites", () => {
  it("a request to a member the other site does not have fails with UNREACHABLE; one nobody answers times out; a local one goes through the group", async () => {
    const sim = await twoSites(23);
    try {
      const [eu0, eu1] = sim.running("eu");
      const [us0] = sim.running("us");
      const missing = "0123456789abcdef0123456789abcdef";
      const refused = eu0!.relay.request({ site: "us", id: missing }, payload(eu0!, 1), { timeoutMs: 5_000 });
      let outcome: unknown;
      refused.catch((error: unknown) => (outcome = error));
      await sim.runUntil(() => outcome !== undefined, 1_000, "the refusal");
      expect(outcome).toMatchObject({ code: "UNREACHABLE" });

      us0!.relay.onInbox("silent", () => undefined);
      const silent = eu0!.relay.request({ site: "us", id: us0!.id }, payload(eu0!, 2), { inbox: "silent", timeoutMs: 300 });
      outcome = undefined;
      silent.catch((error: unknown) => (outcome = error));
      await sim.runUntil(() => outcome !== undefined, 1_000, "the timeout");
      expect(outcome).toMatchObject({ code: "TIMEOUT" });

      const local = eu0!.relay.request({ site: "eu", id: eu1!.id }, payload(eu0!, 3));
      let answer = "";
      void local.then((m) => (answer = `${m.site} ${m.text()}`));
      await sim.runUntil(() => answer !== "", 1_000, "the local reply");
      expect(answer).toBe(`eu re:eu${eu0!.index}:3`);
      await expect(eu0!.relay.request({ site: "mars", id: missing }, payload(eu0!, 4))).rejects.toMatchObject({ code: "UNREACHABLE" });
      // Nothing is left held once the refused stream is dropped and the rest acknowledged.
      await sim.run(200);
      expect(eu0!.relay.stats.held).toBe(0);
    } finally {
      await sim.close();
    }
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
