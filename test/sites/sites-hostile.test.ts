import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RelayFrameSchema, RelayStream } from "../../gen/activeblaze/v1/relay_pb.ts";
import { encodeRelay, type SiteMember } from "../../src/relay/relay-frames.ts";
import { MAX_SITES } from "../../src/relay/site-gateway.ts";
import { payload, type SiteProc, SitesSim, TOPIC } from "./sites-sim.ts";

const SUBJECT = "activeblaze.relay";
const STRANGER: SiteMember = { site: "us", id: "00112233445566778899aabbccddeeff", incarnation: 1, name: "x" };

describe("hostile frames on the bus", () => {
  it("are dropped and counted by reason; made-up sites are bounded; a forged acknowledgement releases nothing unsent, and what it releases is reported lost; the sites carry on", async () => {
    const sim = new SitesSim(31);
    try {
      for (const site of ["eu", "us"]) for (let i = 0; i < 3; i++) await sim.spawn(site, `h${i}`);
      await sim.runUntil(() => sim.siteAgreed("eu") && sim.siteAgreed("us") && sim.sitesUp(["eu", "us"]), 10_000, "both sites up");
      const attacker = await sim.bus.factory()("attacker");
      const gateway = sim.gateway("eu")!;
      const eu = `${SUBJECT}.site.eu`;
      const dropped = () => gateway.relay.stats.dropped;

      attacker.publish(eu, Uint8Array.of(0xff, 0xff, 0xff));
      attacker.publish(eu, toBinary(RelayFrameSchema, create(RelayFrameSchema, { version: 2, kind: { case: "report", value: {} } })));
      attacker.publish(eu, toBinary(RelayFrameSchema, create(RelayFrameSchema, { version: 1 })));
      const strangerWire = { site: "us", id: new Uint8Array(16).fill(7), incarnation: 1n };
      const frame = (value: object) => toBinary(RelayFrameSchema, create(RelayFrameSchema, { version: 1, kind: { case: "message", value } }));
      attacker.publish(eu, frame({ origin: strangerWire, stream: RelayStream.TOPIC, seq: 2n, floor: 5n }));
      attacker.publish(eu, frame({ origin: { ...strangerWire, site: "bad.site" }, stream: RelayStream.TOPIC, seq: 1n, floor: 1n }));
      attacker.publish(eu, frame({ origin: strangerWire, stream: RelayStream.DIRECT, seq: 1n, floor: 1n, target: { ...strangerWire, id: new Uint8Array(3) } }));
      attacker.publish(eu, frame({ origin: strangerWire, stream: RelayStream.TOPIC, seq: 2n ** 60n, floor: 1n }));
      await sim.run(50);
      expect(dropped().DECODE_FAILED).toBe(1);
      expect(dropped().UNSUPPORTED_VERSION).toBe(1);
      expect(dropped().MISSING_FIELD).toBe(1);
      expect(dropped().INVALID_FIELD).toBe(4);

      // A message from a made-up site is refused; one that claims this site as origin too.
      const message = { origin: STRANGER, stream: "topic" as const, seq: 1, floor: 1, destination: TOPIC, target: undefined, requestId: 0, reply: false, format: 0, payload: new Uint8Array(1), sites: [] };
      attacker.publish(eu, encodeRelay({ kind: "message", message: { ...message, origin: { ...STRANGER, site: "mars" } } }));
      attacker.publish(eu, encodeRelay({ kind: "message", message: { ...message, origin: { ...STRANGER, site: "eu" } } }));
      await sim.run(50);
      expect(gateway.relay.stats.bus!.unknownSite).toBe(1);
      expect(dropped().INVALID_FIELD).toBe(5);

      // Announcements of more sites than a gateway follows.
      for (let i = 0; i < MAX_SITES + 50; i++) {
        const site = `fake${i}`;
        attacker.publish(`${SUBJECT}.announce`, encodeRelay({ kind: "announce", announcement: { site, gateway: { ...STRANGER, site }, members: [], intervalMs: 1 } }));
      }
      await sim.run(50);
      expect(gateway.relay.stats.bus!.unknownSite).toBeGreaterThanOrEqual(51);
      expect(gateway.relay.getSites().length).toBeLessThanOrEqual(MAX_SITES + 1);
      // Made-up sites that stop announcing go down again.
      await sim.runUntil(() => sim.running().every((p) => p.relay.getSites().filter((s) => s.up).length === 2), 5_000, "the made-up sites down");

      // A forged acknowledgement (from the real gateway's id) of far more than was sent releases only what was sent.
      const eu0 = sim.running("eu").find((p) => p !== gateway)!;
      const usGateway = sim.gateway("us")!;
      const us: SiteProc[] = sim.running("us");
      void eu0.relay.broadcast(TOPIC, payload(eu0, 1));
      await sim.runUntil(() => us.every((p) => p.topic.get(eu0.id)?.length === 1) && eu0.relay.stats.held === 0, 1_000, "the first message");
      sim.bus.disconnect("us");
      for (let n = 2; n <= 6; n++) void eu0.relay.broadcast(TOPIC, payload(eu0, n));
      await sim.run(20);
      expect(eu0.relay.stats.held).toBe(5);
      const origin = eu0.relay.local;
      attacker.publish(eu, encodeRelay({ kind: "ack", site: "us", gatewayId: usGateway.id, positions: [{ origin, stream: "topic", targetId: "", seq: 2 ** 50 }] }));
      await sim.run(20);
      expect(eu0.relay.stats.held).toBe(0);
      for (let n = 7; n <= 9; n++) void eu0.relay.broadcast(TOPIC, payload(eu0, n));
      await sim.run(20);
      expect(eu0.relay.stats.held).toBe(3);

      // The sites carry on: us back on the bus gets what is still held, and reports what the forgery released as lost.
      sim.bus.reconnect("us");
      await sim.runUntil(() => us.every((p) => p.topic.get(eu0.id)?.length === 4) && eu0.relay.stats.held === 0, 2_000, "the rest at us");
      for (const member of us) {
        expect(member.topic.get(eu0.id)).toEqual([1, 7, 8, 9]);
        expect(member.lost).toEqual([{ origin: eu0.id, firstSeq: 2, lastSeq: 6 }]);
      }
      for (const member of sim.running()) expect(member.errors).toEqual([]);
    } finally {
      await sim.close();
    }
  });
});
