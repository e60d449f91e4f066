import { describe, expect, it } from "vitest";
import type { BlazeError } from "../errors.ts";
import { isIpLiteral, parseSeed, RESOLVE_INTERVAL_MS, type Seed, StaticSeeds } from "./host-names.ts";
import type { Address } from "./transport.ts";

const seeds = (...texts: string[]): Seed[] => texts.map((text) => parseSeed(text) as Seed);
const hosts = (list: readonly Address[]) => list.map((a) => `${a.host}:${a.port}`);
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("parseSeed", () => {
  it("reads addresses, bracketed IPv6, host names and dns: names", () => {
    expect(parseSeed("10.0.0.2:7800")).toEqual({ kind: "address", text: "10.0.0.2:7800", address: { host: "10.0.0.2", port: 7800 } });
    expect(parseSeed("[fd00::2]:7800")).toEqual({ kind: "address", text: "[fd00::2]:7800", address: { host: "fd00::2", port: 7800 } });
    expect(parseSeed("node-b.example:7800")).toEqual({ kind: "host", text: "node-b.example:7800", name: "node-b.example", port: 7800 });
    expect(parseSeed("dns:peers.ns.svc.cluster.local:7800")).toEqual({ kind: "dns", text: "dns:peers.ns.svc.cluster.local:7800", name: "peers.ns.svc.cluster.local", port: 7800 });
    for (const bad of ["host", "host:0", "host:65536", ":7800", "a b:1", "[::1:7800", "::1:7800", "dns:[::1]:7800", "1.2.3:7800"]) {
      expect(typeof parseSeed(bad), bad).toBe("string");
    }
  });

  it("tells IP literals from names", () => {
    for (const literal of ["127.0.0.1", "0.0.0.0", "::1", "::", "fd00::2", "::ffff:10.0.0.1", "fe80::1%eth0"]) expect(isIpLiteral(literal), literal).toBe(true);
    for (const name of ["localhost", "h1", "256.0.0.1", "1.2.3", "example.com", "1::2::3", ""]) expect(isIpLiteral(name), name).toBe(false);
  });
});

describe("StaticSeeds", () => {
  function setUp(answers: Record<string, string[] | undefined>) {
    const asked: string[] = [];
    const errors: BlazeError[] = [];
    const resolver = async (name: string) => {
      asked.push(name);
      const answer = answers[name];
      if (answer === undefined) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
      return answer;
    };
    const list = new StaticSeeds(seeds("10.0.0.9:1", "one.test:2", "dns:all.test:3", "gone.test:4"), 4, resolver, (error) => errors.push(error));
    return { list, asked, errors };
  }

  it("resolves at start: a host name to its first address of the socket's family, a dns: name to all of them", async () => {
    const { list, errors } = setUp({ "one.test": ["fd00::1", "10.0.0.1", "10.0.0.11"], "all.test": ["10.0.0.2", "fd00::2", "10.0.0.3", "10.0.0.2"] });
    await list.resolveAll(0);
    expect(hosts(list.addresses)).toEqual(["10.0.0.9:1", "10.0.0.1:2", "10.0.0.2:3", "10.0.0.3:3"]);
    expect(errors.map((e) => `${e.code}: ${e.message}`)).toEqual(["RESOLVE_FAILED: static peer gone.test:4 does not resolve: ENOTFOUND"]);
  });

  it("tries a failed name again after 1 s, backing off to 30 s, and reports a failure once", async () => {
    const answers: Record<string, string[] | undefined> = { "one.test": ["10.0.0.1"], "all.test": ["10.0.0.2"] };
    const { list, asked, errors } = setUp(answers);
    await list.resolveAll(0);
    const live = () => true;
    const askedAt: number[] = [];
    for (let now = 0; now <= 70_000; now += 500) {
      const before = asked.length;
      list.refresh(now, live);
      await settle();
      if (asked.slice(before).includes("gone.test")) askedAt.push(now);
    }
    expect(askedAt).toEqual([1_000, 3_000, 7_000, 15_000, 31_000, 61_000]);
    expect(errors).toHaveLength(1);
    answers["gone.test"] = ["10.0.0.4"];
    list.refresh(95_000, live);
    await settle();
    expect(hosts(list.addresses)).toContain("10.0.0.4:4");
  });

  it("resolves a name again every 30 s only while an address it gave is silent", async () => {
    const answers: Record<string, string[] | undefined> = { "one.test": ["10.0.0.1"], "all.test": ["10.0.0.2", "10.0.0.3"], "gone.test": ["10.0.0.4"] };
    const { list, asked } = setUp(answers);
    await list.resolveAll(0);
    asked.length = 0;
    const silent = new Set(["10.0.0.3"]);
    const isLive = (address: Address) => !silent.has(address.host);
    for (let now = 1_000; now <= RESOLVE_INTERVAL_MS * 2 + 1_000; now += 1_000) {
      list.refresh(now, isLive);
      await settle();
    }
    expect(asked).toEqual(["all.test", "all.test"]);
    // The headless service lost a pod and gained one: the silent address goes, the new one comes.
    answers["all.test"] = ["10.0.0.2", "10.0.0.5"];
    list.refresh(RESOLVE_INTERVAL_MS * 3 + 1_000, isLive);
    await settle();
    expect(hosts(list.addresses)).toEqual(["10.0.0.9:1", "10.0.0.1:2", "10.0.0.2:3", "10.0.0.5:3", "10.0.0.4:4"]);
    expect(list.describe(isLive)).toBe("");
    silent.add("10.0.0.9");
    expect(list.describe(isLive)).toBe("no answer from 10.0.0.9:1");
  });
});
