/**
 * Two sites over real UDP (each its own loopback multicast group) bridged through a real nats-server
 * of the test's own: relayed topics both ways, a request to a member of the other site, each site's
 * gateway SIGKILLed mid-stream with nothing lost and the order kept, and a site going down and coming
 * back seen as site events. Skips, saying why, where nats-server is not installed.
 */
import { describe, expect, it } from "vitest";
import { natsServerMissing } from "./nats-server.ts";
import { bridgedSites, type RelayProcess, waitFor } from "./relay-processes.ts";

const missing = natsServerMissing();
/** Members exit on their own after this long; the test kills them well before. */
const LIFETIME_MS = 150_000;
/** Starting six tsx processes at once on two cores takes seconds. */
const START_MS = 45_000;

describe.skipIf(missing !== undefined)(`sites bridged over a real nats-server${missing === undefined ? "" : ` (skipped: ${missing})`}`, () => {
  const { members, start, alive, gatewayOf } = bridgedSites("relay", { lifetimeMs: LIFETIME_MS });
  /** Waits until every member of `receivers` delivered `count` messages from `origin` in order, then checks them. */
  const delivered = async (receivers: readonly RelayProcess[], origin: string, count: number, timeoutMs: number) => {
    const key = `stream:${origin}`;
    await waitFor(async () => (await Promise.all(receivers.map((r) => r.report()))).every((r) => (r.origins[key]?.count ?? 0) >= count), timeoutMs, `${count} from ${origin}`, members);
    for (const receiver of receivers) {
      const report = (await receiver.report()).origins[key]!;
      expect({ name: receiver.name, count: report.count, last: report.last, inOrder: report.inOrder }).toEqual({ name: receiver.name, count, last: report.first + count - 1, inOrder: true });
    }
  };

  it(
    "relays topics both ways and answers a request across",
    async () => {
      for (let i = 0; i < 3; i++) start("eu", `eu-${i}`);
      for (let i = 0; i < 3; i++) start("us", `us-${i}`);
      await Promise.all(members.map((m) => m.next("ready", START_MS, 0)));
      for (const member of members) {
        const other = member.config.site === "eu" ? "us" : "eu";
        await member.next("siteUp", START_MS, 0, (e) => e.site === other);
      }
      const [eu1, us1] = [members[1]!, members[4]!];
      eu1.command({ cmd: "stream", count: 300 });
      us1.command({ cmd: "stream", count: 300 });
      await delivered(alive("us"), "eu-1", 300, 20_000);
      await delivered(alive("eu"), "us-1", 300, 20_000);
      // Within each site the members get their own site's messages too.
      await delivered([members[0]!, members[2]!], "eu-1", 300, 5_000);

      const from = eu1.events.length;
      eu1.command({ cmd: "request", site: "us", id: members[5]!.id, text: "ping" });
      expect((await eu1.next("reply", 10_000, from)).text).toBe("re:ping");
    },
    START_MS + 60_000,
  );

  it(
    "loses nothing and keeps the order when the sending site's gateway, then the receiving site's, is killed mid-stream",
    async () => {
      const euGateway = await gatewayOf("eu");
      const sender = alive("eu").find((m) => m !== euGateway)!;
      // The sender may be the one that streamed in the test before: counts start afresh.
      for (const member of alive()) member.command({ cmd: "reset" });
      const receivers = () => alive("us");
      let from = sender.events.length;
      sender.command({ cmd: "stream", count: 3_000, pauseEvery: 50, pauseMs: 5 });
      await waitFor(async () => ((await receivers()[0]!.report()).origins[`stream:${sender.name}`]?.count ?? 0) >= 500, 20_000, "500 relayed", members);
      euGateway.kill();
      await sender.next("streamed", 60_000, from);
      await delivered(receivers(), sender.name, 3_000, 30_000);
      for (const member of alive()) expect(member.of("lost")).toEqual([]);

      const usGateway = await gatewayOf("us");
      from = sender.events.length;
      sender.command({ cmd: "stream", count: 2_000, from: 3_001, pauseEvery: 50, pauseMs: 5 });
      await waitFor(async () => ((await receivers()[0]!.report()).origins[`stream:${sender.name}`]?.count ?? 0) >= 3_500, 20_000, "500 more relayed", members);
      usGateway.kill();
      await sender.next("streamed", 60_000, from);
      // The survivors of us: all 5,000, in order, once; nothing reported lost anywhere.
      await delivered(receivers().filter((m) => m !== usGateway), sender.name, 5_000, 30_000);
      for (const member of alive()) {
        expect(member.of("lost")).toEqual([]);
        expect(member.of("siteDown")).toEqual([]);
        expect(member.of("error").filter((e) => !e.message.startsWith("TRANSPORT_ERROR"))).toEqual([]);
      }
    },
    120_000,
  );

  it(
    "sees a site that goes down and comes back as site events",
    async () => {
      const eu = alive("eu");
      const marks = eu.map((m) => m.events.length);
      for (const member of alive("us")) member.kill();
      await Promise.all(eu.map((m, i) => m.next("siteDown", 15_000, marks[i], (e) => e.site === "us")));

      const newcomers = [start("us", "us-3"), start("us", "us-4")];
      await Promise.all(newcomers.map((m) => m.next("ready", START_MS, 0)));
      await Promise.all(eu.map((m, i) => m.next("siteUp", START_MS, marks[i], (e) => e.site === "us")));
      await Promise.all(newcomers.map((m) => m.next("siteUp", START_MS, 0, (e) => e.site === "eu")));

      // The new site gets what is sent from now on.
      const sender = eu[0]!;
      sender.command({ cmd: "stream", count: 100, from: 10_001 });
      await delivered(newcomers, sender.name, 100, 20_000);
      for (const member of newcomers) expect(member.of("lost")).toEqual([]);
    },
    START_MS + 60_000,
  );
});
