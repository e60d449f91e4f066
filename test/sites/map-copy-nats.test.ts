/**
 * The map copied between two sites of Node processes over real UDP (each its own loopback multicast
 * group), bridged through a real nats-server of the test's own: writes at either site appear at the
 * other, a write of one key at both sites at once ends as the greater stamp everywhere, and a site's
 * gateway (its map's master too) SIGKILLed while another member writes loses no acknowledged write.
 * Skips, saying why, where nats-server is not installed.
 */
import { describe, expect, it } from "vitest";
import { natsServerMissing } from "./nats-server.ts";
import type { RelayMemberEvent } from "./relay-member.ts";
import { bridgedSites, type RelayProcess, waitFor } from "./relay-processes.ts";

const missing = natsServerMissing();
const LIFETIME_MS = 150_000;
const START_MS = 45_000;

type MapEvent = Extract<RelayMemberEvent, { type: "map" }>;

describe.skipIf(missing !== undefined)(`the map copied between sites over a real nats-server${missing === undefined ? "" : ` (skipped: ${missing})`}`, () => {
  const { members, start, alive, gatewayOf } = bridgedSites("map", { lifetimeMs: LIFETIME_MS, map: true });
  const mapOf = async (member: RelayProcess): Promise<MapEvent> => {
    const from = member.events.length;
    member.command({ cmd: "map" });
    return member.next("map", 5_000, from);
  };
  const maps = () => Promise.all(alive().map(mapOf));
  const sorted = (map: MapEvent) => JSON.stringify(Object.entries(map.entries).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const same = (a: MapEvent, b: MapEvent) => sorted(a) === sorted(b);

  it(
    "copies writes both ways, and a write of one key at both sites at once ends as the greater stamp everywhere",
    async () => {
      for (let i = 0; i < 3; i++) start("eu", `eu-${i}`);
      for (let i = 0; i < 2; i++) start("us", `us-${i}`);
      await Promise.all(members.map((m) => m.next("ready", START_MS, 0)));
      for (const member of members) await member.next("siteUp", START_MS, 0, (e) => e.site === (member.config.site === "eu" ? "us" : "eu"));
      const [eu0, eu1, , us0, us1] = members;
      eu0!.command({ cmd: "put", key: "from-eu", text: "a" });
      us0!.command({ cmd: "put", key: "from-us", text: "b" });
      await waitFor(async () => (await maps()).every((m) => m.entries["from-eu"]?.startsWith("a@") === true && m.entries["from-us"]?.startsWith("b@") === true), 20_000, "both writes at every member", members);

      const marks = [eu1!.events.length, us1!.events.length];
      eu1!.command({ cmd: "put", key: "both", text: "eu" });
      us1!.command({ cmd: "put", key: "both", text: "us" });
      const [euPut, usPut] = await Promise.all([eu1!.next("put", 20_000, marks[0]), us1!.next("put", 20_000, marks[1])]);
      const winner = euPut.time > usPut.time || (euPut.time === usPut.time && euPut.site > usPut.site) ? euPut : usPut;
      await waitFor(async () => (await maps()).every((m) => m.entries["both"]?.endsWith(`@${winner.time}/${winner.site}`) === true), 20_000, "the greater stamp everywhere", members);
      const all = await maps();
      for (const map of all) expect(sorted(map)).toBe(sorted(all[0]!));
    },
    START_MS + 60_000,
  );

  it(
    "loses no acknowledged write when the writing site's gateway, its map's master, is killed mid-copy",
    async () => {
      const gateway = await gatewayOf("eu");
      const writer = alive("eu").find((m) => m !== gateway)!;
      const from = writer.events.length;
      writer.command({ cmd: "fill", prefix: "fill/", count: 1_500, window: 8 });
      await waitFor(async () => Object.keys((await mapOf(alive("us")[0]!)).entries).filter((k) => k.startsWith("fill/")).length >= 300, 30_000, "300 copied", members);
      gateway.kill();
      const filled = await writer.next("filled", 60_000, from);
      expect(filled.acknowledged.length).toBeGreaterThan(1_000);
      let last: MapEvent[] = [];
      await waitFor(async () => {
        const [first, ...rest] = (last = await maps());
        return rest.every((m) => same(m, first!)) && filled.acknowledged.every((key) => first!.entries[key] !== undefined);
      }, 30_000, "every acknowledged write at every member of both sites", []).catch((error: Error) => {
        const summary = last.map((m, i) => {
          const missed = filled.acknowledged.filter((key) => m.entries[key] === undefined);
          return `${alive()[i]?.name}: ${Object.keys(m.entries).length} entries, ${missed.length} acknowledged missing (${missed.slice(0, 5).join(", ")}) ${JSON.stringify(m.stats)}`;
        });
        throw new Error(`${error.message}\n${summary.join("\n")}`);
      });
      // Agreed, the digests find nothing more to push.
      const pushed = async () => (await maps()).reduce((sum, m) => sum + ((m.stats as { pushed?: number } | null)?.pushed ?? 0), 0);
      const before = await pushed();
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(await pushed()).toBe(before);
      for (const member of alive()) expect(member.of("error").filter((e) => !e.message.startsWith("TRANSPORT_ERROR"))).toEqual([]);
    },
    120_000,
  );
});
