import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type Frame, FrameSchema } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { Channel, type ChannelOptions } from "../../index.ts";
import { BlazeError } from "../../errors.ts";
import { SeededRandom } from "../../transport/seeded-random.ts";
import { SimulatedNetwork } from "../../transport/simulated-network.ts";
import { VirtualClock } from "../../transport/virtual-clock.ts";
import { type DataFields, emptyDataFields } from "../../wire/frames.ts";
import { MAX_COUNTER } from "../../wire/safe-integers.ts";
import { DrivenProtocol } from "../../../test/support/driven-protocol.ts";
import { keyOf } from "../member-key.ts";
import type { OutgoingData, PeerKey, ProtocolHost } from "../protocol.ts";
import { totemOptionsSchema } from "./options.ts";
import { RingStore } from "./ring-store.ts";
import { type Commit, decodeCommit, decodeToken, encodeCommit, encodeJoin, encodeRelay, encodeToken, type Token, TotemPhase } from "./totem-frames.ts";
import { TotemProtocol, type TotemStats } from "./totem-protocol.ts";

const A = keyOf(new Uint8Array(16).fill(0xa1));
const B = keyOf(new Uint8Array(16).fill(0xb2));
/** A peer of the channel (it answered its admission challenge) that is on no ring of A's. */
const C = keyOf(new Uint8Array(16).fill(0xc3));

function message(seq: number): DataFields {
  return { ...emptyDataFields(), seq, addressing: 1, destination: "t", payload: new Uint8Array([seq & 0xff]) };
}

function outgoing(payload: Uint8Array, safe?: boolean): OutgoingData {
  return {
    destination: "t",
    addressing: 1,
    format: 0,
    payload,
    outOfBand: false,
    fragmentIndex: 0,
    fragmentCount: 0,
    messageLength: 0,
    requestId: 0,
    ...(safe === undefined ? {} : { safe }),
  };
}

/** A protocol driven on a virtual clock (as a channel drives it), whose host records what it sends and delivers. */
function harness(options: Partial<ReturnType<typeof totemOptionsSchema.parse>> = {}) {
  const clock = new VirtualClock();
  const sent: Array<{ to: PeerKey | "all" | "turn"; frame: Frame | DataFields }> = [];
  const delivered: Array<{ peer: PeerKey; data: DataFields }> = [];
  const host: ProtocolHost = {
    random: new SeededRandom(1),
    localKey: A,
    multicastData: (data) => {
      sent.push({ to: "all", frame: { ...data } });
      return new Uint8Array(0);
    },
    multicastFrame: (frame) => sent.push({ to: "all", frame: fromBinary(FrameSchema, frame) }),
    unicastFrame: (peer, frame) => sent.push({ to: peer, frame: fromBinary(FrameSchema, frame) }),
    deliver: (peer, data) => delivered.push({ peer, data }),
    report: () => undefined,
    writable: () => undefined,
    atEndOfTurn: (fn) => clock.defer(fn),
  };
  const protocol = new DrivenProtocol(new TotemProtocol(host, 7, totemOptionsSchema.parse(options), clock.now()), clock);
  // The end of each turn marks where one token visit ends (a ring of one passes the token to itself in the next turn).
  protocol.onEndOfTurn(() => sent.push({ to: "turn", frame: emptyDataFields() }));
  const stats = () => protocol.stats as TotemStats;
  return { clock, sent, delivered, protocol, stats };
}

describe("RingStore", () => {
  it("tracks all-received-up-to, gaps and trimming", () => {
    const ring = new RingStore({ representative: A, seq: 1 }, [A, B]);
    const put = (seq: number) => ring.put(seq, { origin: A, originIncarnation: 1, data: message(seq), carrier: undefined });
    expect(put(1)).toBe(true);
    expect(put(3)).toBe(true);
    expect(put(6)).toBe(true);
    expect(put(3)).toBe(false);
    expect(ring.aru).toBe(1);
    expect(ring.highest).toBe(6);
    expect(ring.missing(2, 6, 100)).toEqual([
      [2, 2],
      [4, 5],
    ]);
    expect(ring.missing(2, 6, 2)).toEqual([
      [2, 2],
      [4, 4],
    ]);
    put(2);
    expect(ring.aru).toBe(3);
    ring.safe = 3;
    ring.delivered = 2;
    ring.trim();
    // Trimmed up to min(safe, delivered); what is below counts as received.
    expect(ring.received(1)).toBe(true);
    expect(ring.get(3)).toBeDefined();
    expect(put(2)).toBe(false);
    expect(ring.successor(B)).toBe(A);
  });
});

describe("TotemProtocol alone", () => {
  it("forms a ring of one and delivers its own messages in order, agreed and safe", () => {
    const { clock, delivered, protocol, stats } = harness();
    clock.runFor(100);
    expect(stats().ring.state).toBe("operational");
    expect(stats().ring.members).toEqual([A]);
    for (let i = 1; i <= 5; i++) protocol.send(outgoing(new Uint8Array([i]), i % 2 === 0));
    clock.runFor(50);
    expect(delivered.map((d) => d.data.payload[0])).toEqual([1, 2, 3, 4, 5]);
    expect(delivered.every((d) => d.peer === A)).toBe(true);
    expect(delivered.map((d) => d.data.safe)).toEqual([false, true, false, true, false]);
    // Per-sender numbers (for reassembly) and global numbers (the total order).
    expect(delivered.map((d) => d.data.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(new Set(delivered.map((d) => d.data.globalSeq)).size).toBe(5);
    protocol.close();
  });

  it("keeps its own copy of a queued payload", () => {
    const { clock, delivered, protocol } = harness();
    clock.runFor(100);
    const bytes = new Uint8Array([1, 2, 3]);
    protocol.send(outgoing(bytes));
    bytes.fill(9);
    clock.runFor(20);
    expect([...delivered[0]!.data.payload]).toEqual([1, 2, 3]);
    protocol.close();
  });

  it("bounds what one token visit sends (flow control)", () => {
    const { clock, sent, protocol } = harness({ windowMessages: 8, maxMessagesPerVisit: 3 });
    clock.runFor(100);
    sent.length = 0;
    for (let i = 0; i < 10; i++) protocol.send(outgoing(new Uint8Array([i])));
    clock.runFor(50);
    // Visits are separated by the token passing: at most three messages in each.
    const runs = sent.map((s) => (s.to === "all" && "case" in s.frame && s.frame.case === "data" ? "d" : "|")).join("").split("|");
    expect(Math.max(...runs.map((run) => run.length))).toBe(3);
    expect(runs.join("").length).toBe(10);
    protocol.close();
  });

  it("drops and counts malformed and foreign frames without throwing", () => {
    const { clock, protocol, stats } = harness();
    clock.runFor(100);
    const before = stats().malformed;
    const bad: Frame[] = [
      // A ring id whose representative is not a member id.
      create(FrameSchema, { kind: { case: "totemToken", value: { ring: { representativeId: new Uint8Array(3), ringSeq: 1n }, tokenSeq: 1n } } }),
      // aru above seq.
      create(FrameSchema, { kind: { case: "totemToken", value: { ring: { representativeId: new Uint8Array(16), ringSeq: 1n }, seq: 1n, aru: 2n } } }),
      // A backwards retransmission range.
      create(FrameSchema, {
        kind: { case: "totemToken", value: { ring: { representativeId: new Uint8Array(16), ringSeq: 1n }, seq: 9n, retransmit: [{ first: 5n, last: 4n }] } },
      }),
      // Retransmission requests too many to walk.
      create(FrameSchema, {
        kind: { case: "totemToken", value: { ring: { representativeId: new Uint8Array(16), ringSeq: 1n }, seq: 2n ** 40n, retransmit: [{ first: 1n, last: 2n ** 40n }] } },
      }),
      // Overlapping retransmission ranges.
      create(FrameSchema, {
        kind: {
          case: "totemToken",
          value: { ring: { representativeId: new Uint8Array(16), ringSeq: 1n }, seq: 9n, retransmit: [{ first: 2n, last: 5n }, { first: 4n, last: 6n }] },
        },
      }),
      // A relay without its message.
      create(FrameSchema, { kind: { case: "totemRelay", value: { origin: { id: new Uint8Array(16) }, ring: { representativeId: new Uint8Array(16), ringSeq: 1n } } } }),
      // A commit naming one member twice.
      create(FrameSchema, {
        kind: {
          case: "totemCommit",
          value: { ring: { representativeId: new Uint8Array(16), ringSeq: 9n }, members: [{ member: { id: new Uint8Array(16) } }, { member: { id: new Uint8Array(16) } }] },
        },
      }),
      // A join with a malformed member.
      create(FrameSchema, { kind: { case: "totemJoin", value: { procSet: [{ id: new Uint8Array(5) }] } } }),
    ];
    for (const frame of bad) expect(() => protocol.onControl(B, 1, frame)).not.toThrow();
    expect(stats().malformed - before).toBe(bad.length);
    // Data without a place in a ring's order.
    expect(() => protocol.onData(B, 1, message(1))).not.toThrow();
    expect(stats().malformed - before).toBe(bad.length + 1);
    // A well-formed token of a ring this member is not on.
    const foreign = fromBinary(
      FrameSchema,
      encodeToken(
        { ring: { representative: B, seq: 40 }, tokenSeq: 5, seq: 0, aru: 0, aruId: "", retransmit: [], fcc: 0, backlog: 0, recoveryPending: false, phase: TotemPhase.OPERATIONAL },
        A,
      ),
    );
    const stale = stats().staleTokens;
    protocol.onControl(B, 1, foreign);
    expect(stats().staleTokens).toBe(stale + 1);
    // A retransmission of a message of a ring this member is not on.
    const relay = fromBinary(
      FrameSchema,
      encodeRelay({ origin: B, originIncarnation: 1, ring: { representative: B, seq: 40 }, data: { ...message(1), globalSeq: 1, ringSeq: 40 }, carrierRing: undefined, carrierSeq: 0 }),
    );
    const foreignBefore = stats().foreign;
    protocol.onControl(B, 1, relay);
    expect(stats().foreign).toBe(foreignBefore + 1);
    // A token addressed to this member from another ring: the two rings merge.
    expect(stats().ring.state).toBe("gather");
    protocol.close();
  });

  it("takes part only in a ring formed for this incarnation of it", () => {
    const { clock, protocol, stats } = harness();
    protocol.onPeerUp(B, 1);
    clock.runFor(100);
    const commit = (incarnation: number) =>
      fromBinary(
        FrameSchema,
        encodeCommit({
          ring: { representative: A, seq: 50 },
          members: [
            { member: A, incarnation, oldRing: undefined, oldAru: 0, highDelivered: 0, highReceived: 0, received: false },
            { member: B, incarnation: 1, oldRing: undefined, oldAru: 0, highDelivered: 0, highReceived: 0, received: true },
          ],
        }),
      );
    // A commit token that outlived this member's previous incarnation.
    const foreign = stats().foreign;
    protocol.onControl(B, 1, commit(6));
    expect(stats().foreign).toBe(foreign + 1);
    expect(stats().ring.state).toBe("gather");
    protocol.onControl(B, 1, commit(7));
    expect(stats().ring.state).toBe("commit");
    protocol.close();
  });

  it("gives a ring up whose commit token does not come back, and sends that token no more (the loss and a resend due at once)", () => {
    const { clock, sent, protocol, stats } = harness({ tokenTimeoutMs: 1_000, tokenRetransmitMs: 50 });
    protocol.onPeerUp(B, 1);
    const join = encodeJoin({ ring: undefined, members: [A, B], failed: [], highestRingSeq: 0, announce: false }, new Map());
    protocol.onControl(B, 1, fromBinary(FrameSchema, join));
    // A forms the ring at its first join deadline, and passes the commit token to B: B never answers.
    clock.runFor(50);
    expect(stats().ring.state).toBe("commit");
    const commits = () => sent.filter((s) => s.to === B && "kind" in s.frame && s.frame.kind.case === "totemCommit").length;
    clock.runFor(999);
    expect(commits()).toBe(20);
    // At 1,050 ms the ring is lost just as the token is due to be sent again: it is not sent.
    clock.runFor(1);
    expect(stats().ring.state).toBe("gather");
    expect(stats().tokenLosses).toBe(1);
    expect(commits()).toBe(20);
    protocol.close();
  });

  it("does not take a restarted member's messages for its earlier incarnation's on a ring of the same number", () => {
    const { clock, protocol, stats } = harness();
    protocol.onPeerUp(B, 1);
    clock.runFor(100);
    const ring = { representative: A, seq: 50 };
    const state = (member: PeerKey, incarnation: number) => ({ member, incarnation, oldRing: undefined, oldAru: 0, highDelivered: 0, highReceived: 0, received: true });
    // The commit token's second rotation: the ring {A, B as incarnation 1} recovers.
    protocol.onControl(B, 1, fromBinary(FrameSchema, encodeCommit({ ring, members: [{ ...state(A, 7), received: false }, state(B, 1)] })));
    protocol.onControl(B, 1, fromBinary(FrameSchema, encodeCommit({ ring, members: [state(A, 7), state(B, 1)] })));
    expect(stats().ring.state).toBe("recovery");
    const data = { ...message(1), globalSeq: 1, ringSeq: 50 };
    const foreign = stats().foreign;
    protocol.onData(B, 2, data); // B restarted, on a ring of its own numbered 50 too
    const retransmission = encodeRelay({ origin: B, originIncarnation: 2, ring, data, carrierRing: undefined, carrierSeq: 0 });
    protocol.onControl(B, 2, fromBinary(FrameSchema, retransmission));
    expect(stats().foreign).toBe(foreign + 2);
    protocol.onData(B, 1, data);
    expect(stats().foreign).toBe(foreign + 2);
    expect(stats().duplicates).toBe(0);
    protocol.onData(B, 1, data);
    expect(stats().duplicates).toBe(1);
    protocol.close();
  });
});

describe("TotemProtocol under made-up frames", () => {
  const RING = { representative: A, seq: 50 };
  const state = (member: PeerKey, incarnation: number, received = true) => ({ member, incarnation, oldRing: undefined, oldAru: 0, highDelivered: 0, highReceived: 0, received });
  const commitFrame = (commit: Commit) => fromBinary(FrameSchema, encodeCommit(commit));
  /** The last frame of kind `kind` unicast to `peer`. */
  const lastSent = (sent: ReturnType<typeof harness>["sent"], peer: PeerKey, kind: Frame["kind"]["case"]): Frame => {
    const frames = sent.flatMap((s) => (s.to === peer && "kind" in s.frame && s.frame.kind.case === kind ? [s.frame] : []));
    return frames[frames.length - 1]!;
  };

  /** A on a running ring {A, B}; B is played by the test: it passes back each token A passes it. */
  function ringOfTwo() {
    const h = harness();
    h.protocol.onPeerUp(B, 1);
    h.clock.runFor(100);
    // The commit token's rotations, from B (the member before A): the ring recovers, then its token starts.
    h.protocol.onControl(B, 1, commitFrame({ ring: RING, members: [state(A, 7, false), state(B, 1)] }));
    h.protocol.onControl(B, 1, commitFrame({ ring: RING, members: [state(A, 7), state(B, 1)] }));
    h.protocol.onControl(B, 1, commitFrame({ ring: RING, members: [state(A, 7), state(B, 1)] }));
    const lastToB = (): Token => decodeToken(lastSent(h.sent, B, "totemToken"), B)!;
    /** B passes the token back (it received everything A sent), `rotations` times. */
    const rotate = (rotations: number) => {
      for (let i = 0; i < rotations; i++) {
        h.clock.runFor(10);
        const token = lastToB();
        h.protocol.onControl(B, 1, fromBinary(FrameSchema, encodeToken({ ...token, tokenSeq: token.tokenSeq + 1 }, A)));
      }
      h.clock.runFor(10);
    };
    rotate(4);
    expect(h.stats().ring.state).toBe("operational");
    return { ...h, rotate, lastToB };
  }

  it("takes the token only from the member before it on the ring", () => {
    const { delivered, protocol, rotate, lastToB, stats } = ringOfTwo();
    protocol.send(outgoing(new Uint8Array([1])));
    rotate(2);
    expect(delivered.map((d) => [...d.data.payload])).toEqual([[1]]);
    // An old token of the ring, with a tokenSeq above the real one's, from a peer that is not on the
    // ring: taken, it would run in the real token's place and A's next messages would be stamped with
    // numbers already used.
    const forged: Token = { ring: RING, tokenSeq: 2 ** 32, seq: 0, aru: 0, aruId: "", retransmit: [], fcc: 0, backlog: 0, recoveryPending: false, phase: TotemPhase.OPERATIONAL };
    const before = { foreign: stats().foreign, tokenSeq: lastToB().tokenSeq };
    protocol.onControl(C, 1, fromBinary(FrameSchema, encodeToken(forged, A)));
    // Nor from B as another incarnation than the one on the ring.
    protocol.onControl(B, 2, fromBinary(FrameSchema, encodeToken(forged, A)));
    expect(stats().foreign).toBe(before.foreign + 2);
    expect(lastToB().tokenSeq).toBe(before.tokenSeq);
    protocol.send(outgoing(new Uint8Array([2])));
    rotate(3);
    expect(delivered.map((d) => [...d.data.payload])).toEqual([[1], [2]]);
    expect(stats().ring.state).toBe("operational");
    protocol.close();
  });

  it("takes a retransmission only from a member of the ring", () => {
    const { delivered, protocol, rotate, stats } = ringOfTwo();
    // A message of B's numbered 1 before B sent one: taken, it would take the place of B's real one.
    const data = { ...message(1), globalSeq: 1, ringSeq: RING.seq };
    const foreign = stats().foreign;
    protocol.onControl(C, 1, fromBinary(FrameSchema, encodeRelay({ origin: B, originIncarnation: 1, ring: RING, data, carrierRing: undefined, carrierSeq: 0 })));
    expect(stats().foreign).toBe(foreign + 1);
    rotate(2);
    expect(delivered).toEqual([]);
    protocol.close();
  });

  it("counts rings on from no number past MAX_COUNTER a join names", () => {
    const { clock, sent, protocol, stats } = harness();
    protocol.onPeerUp(B, 1);
    const join = (highestRingSeq: number) => fromBinary(FrameSchema, encodeJoin({ ring: undefined, members: [A, B], failed: [], highestRingSeq, announce: false }, new Map()));
    // Taken, the next ring would be numbered 2^53, past what a member reads: no commit token of it,
    // nor of any ring after it, would be taken.
    const malformed = stats().malformed;
    protocol.onControl(B, 1, join(Number.MAX_SAFE_INTEGER));
    expect(stats().malformed).toBe(malformed + 1);
    protocol.onControl(B, 1, join(MAX_COUNTER));
    clock.runFor(50);
    expect(decodeCommit(lastSent(sent, B, "totemCommit"))?.ring.seq).toBe(MAX_COUNTER + 1);
    protocol.close();
  });

  it("takes a commit token only from the member before it on the ring it proposes", () => {
    const { clock, protocol, stats } = harness();
    protocol.onPeerUp(B, 1);
    clock.runFor(100);
    // A commit token for the very ring A gathers for ({A, B}) from a peer not on it: taken, A would
    // wait in a ring that never forms, silent, while the others leave it out of theirs.
    const foreign = stats().foreign;
    protocol.onControl(C, 1, commitFrame({ ring: RING, members: [state(A, 7, false), state(B, 1)] }));
    protocol.onControl(B, 2, commitFrame({ ring: RING, members: [state(A, 7, false), state(B, 1)] }));
    expect(stats().foreign).toBe(foreign + 2);
    expect(stats().ring.state).toBe("gather");
    protocol.onControl(B, 1, commitFrame({ ring: RING, members: [state(A, 7, false), state(B, 1)] }));
    expect(stats().ring.state).toBe("commit");
    protocol.close();
  });
});

describe("Totem options", () => {
  const cases: Array<[string, unknown, Array<string | number>, RegExp]> = [
    ["tokenTimeoutMs: 0", { tokenTimeoutMs: 0 }, ["totem", "tokenTimeoutMs"], /"channel\.totem\.tokenTimeoutMs"/],
    ["an unknown key", { tokenTimeout: 5 }, ["totem", "tokenTimeout"], /"channel\.totem\.tokenTimeout"/],
    ["delivery: total", { delivery: "total" }, ["totem", "delivery"], /"channel\.totem\.delivery"/],
    ["tokenTimeoutMs ≤ tokenRetransmitMs", { tokenTimeoutMs: 50, tokenRetransmitMs: 50 }, ["totem", "tokenTimeoutMs"], /longer than tokenRetransmitMs/],
    ["windowMessages < maxMessagesPerVisit", { windowMessages: 10, maxMessagesPerVisit: 20 }, ["totem", "windowMessages"], /at least maxMessagesPerVisit/],
  ];
  it.each(cases)("refuses %s with INVALID_OPTION naming the field", (_name, totem, path, text) => {
    let error: unknown;
    try {
      new Channel({ reliability: "totem", totem } as ChannelOptions);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(BlazeError);
    expect((error as BlazeError).code).toBe("INVALID_OPTION");
    expect((error as BlazeError).path).toEqual(path);
    expect((error as BlazeError).message).toMatch(text);
  });

  it("documents its defaults", () => {
    expect(totemOptionsSchema.parse({})).toEqual({
      tokenTimeoutMs: 1_000,
      tokenRetransmitMs: 50,
      tokenHoldMs: 5,
      joinIntervalMs: 50,
      consensusTimeoutMs: 1_200,
      windowMessages: 16_384,
      maxMessagesPerVisit: 4_096,
      maxBytesPerVisit: 4 * 1024 * 1024,
      maxRetransmitRequests: 1_024,
      queueMessages: 65_536,
      queueBytes: 2 * 1024 * 1024,
      delivery: "agreed",
    });
  });
});

describe("Totem channels", () => {
  async function members(count: number, seed: number, extra: Partial<ChannelOptions> = {}) {
    // Hosts h0, h1, …: the partition test names them.
    const net = new SimulatedNetwork({ seed, defaultLink: { delayMs: { min: 0.05, max: 0.3 } } });
    const channels: Channel[] = [];
    for (let i = 0; i < count; i++) {
      const channel = new Channel({
        name: `m${i}`,
        transport: net.transportFactory(`h${i}`),
        clock: net.clock,
        random: net.random.fork(`m${i}`),
        incarnation: 1,
        reliability: "totem",
        heartbeatIntervalMs: 100,
        ...extra,
      });
      await channel.start();
      channels.push(channel);
    }
    net.clock.runUntil(() => channels.every((c) => (c.stats.protocol as TotemStats).ring.members.length === count && (c.stats.protocol as TotemStats).ring.state === "operational"), { maxMs: 30_000 });
    return { net, channels };
  }

  it("delivers a member's own messages in the total order, or not at all without loopback", async () => {
    const { net, channels } = await members(3, 5);
    const quiet = new Channel({ transport: net.transportFactory("h9"), clock: net.clock, random: net.random.fork("q"), reliability: "totem", loopback: false });
    await quiet.start();
    net.clock.runUntil(() => channels.every((c) => (c.stats.protocol as TotemStats).ring.members.length === 4 && (c.stats.protocol as TotemStats).ring.state === "operational"), { maxMs: 30_000 });
    const logs = [...channels, quiet].map(() => [] as string[]);
    [...channels, quiet].forEach((channel, i) => channel.onTopic("t", (m) => logs[i]!.push(m.text())));
    for (let k = 0; k < 20; k++) {
      void channels[k % 3]!.broadcast("t", new TextEncoder().encode(`m${k % 3}-${k}`));
      void quiet.broadcast("t", new TextEncoder().encode(`q-${k}`), { safe: k % 2 === 0 });
    }
    net.clock.runUntil(() => logs.slice(0, 3).every((log) => log.length === 40) && logs[3]!.length === 20, { maxMs: 30_000 });
    expect(logs[1]).toEqual(logs[0]);
    expect(logs[2]).toEqual(logs[0]);
    // The member without loopback delivers everyone else's messages, in the same order, and not its own.
    expect(logs[3]).toEqual(logs[0]!.filter((text) => !text.startsWith("q-")));
    for (const channel of [...channels, quiet]) await channel.shutDown();
  });

  it("forms a new ring without a member that leaves, and with one that joins", async () => {
    const { net, channels } = await members(3, 6);
    const ring = (c: Channel) => (c.stats.protocol as TotemStats).ring;
    const first = ring(channels[0]!).seq;
    await channels[2]!.stop();
    net.clock.runUntil(() => ring(channels[0]!).members.length === 2 && ring(channels[1]!).members.length === 2 && ring(channels[0]!).state === "operational", { maxMs: 30_000 });
    expect(ring(channels[0]!).seq).toBeGreaterThan(first);
    await channels[2]!.start();
    net.clock.runUntil(() => channels.every((c) => ring(c).members.length === 3 && ring(c).state === "operational"), { maxMs: 30_000 });
    const log: string[][] = channels.map(() => []);
    channels.forEach((c, i) => c.onTopic("t", (m) => log[i]!.push(m.text())));
    await channels[2]!.broadcast("t", new TextEncoder().encode("back"));
    net.clock.runUntil(() => log.every((l) => l.length === 1), { maxMs: 10_000 });
    for (const channel of channels) await channel.shutDown();
  });

  it("runs one ring per side of a partition and merges them into one when it heals", async () => {
    const { net, channels } = await members(4, 8);
    const ring = (c: Channel) => (c.stats.protocol as TotemStats).ring;
    const logs = channels.map(() => [] as string[]);
    channels.forEach((c, i) => c.onTopic("t", (m) => logs[i]!.push(m.text())));
    net.partition(["h0", "h1"], ["h2", "h3"]);
    net.clock.runUntil(() => channels.every((c) => ring(c).members.length === 2 && ring(c).state === "operational"), { maxMs: 30_000 });
    expect(ring(channels[0]!).members).toEqual(ring(channels[1]!).members);
    expect(ring(channels[2]!).members).toEqual(ring(channels[3]!).members);
    for (let k = 0; k < 10; k++) channels.forEach((c, i) => void c.broadcast("t", new TextEncoder().encode(`split-${i}-${k}`)));
    net.clock.runUntil(() => logs.every((log) => log.length === 20), { maxMs: 30_000 });
    // Each side delivers its own side's messages, in one order on that side.
    expect(logs[1]).toEqual(logs[0]);
    expect(logs[3]).toEqual(logs[2]);
    expect(logs[0]!.every((text) => /^split-[01]-/.test(text))).toBe(true);
    expect(logs[2]!.every((text) => /^split-[23]-/.test(text))).toBe(true);
    net.heal();
    net.clock.runUntil(() => channels.every((c) => ring(c).members.length === 4 && ring(c).state === "operational"), { maxMs: 30_000 });
    for (let k = 0; k < 10; k++) channels.forEach((c, i) => void c.broadcast("t", new TextEncoder().encode(`merged-${i}-${k}`)));
    net.clock.runUntil(() => logs.every((log) => log.length === 60), { maxMs: 30_000 });
    const merged = logs.map((log) => log.slice(20));
    for (const log of merged) expect(log).toEqual(merged[0]);
    for (const channel of channels) await channel.shutDown();
  });

  it("passes each token once on an idle ring of 16, and still sends again a token the network lost", async () => {
    const { net, channels } = await members(16, 11);
    const total = (what: "tokensResent" | "tokenLosses") => channels.reduce((sum, c) => sum + (c.stats.protocol as TotemStats)[what], 0);
    net.clock.runFor(1_000);
    // A rotation takes each member's hold (16 × 5 ms), longer than tokenRetransmitMs: the resend timer follows it.
    const resent = total("tokensResent");
    net.clock.runFor(10_000);
    expect(total("tokensResent") - resent).toBeLessThanOrEqual(2);
    net.setDefaultLink({ loss: 0.03 });
    const [resentBefore, lossesBefore] = [total("tokensResent"), total("tokenLosses")];
    net.clock.runFor(10_000);
    expect(total("tokensResent") - resentBefore).toBeGreaterThan(20);
    expect(total("tokenLosses")).toBe(lossesBefore);
    for (const channel of channels) await channel.shutDown();
  });

  it("sends a large message in fragments and reassembles it in order", async () => {
    const { net, channels } = await members(3, 7);
    const got: number[][] = channels.map(() => []);
    channels.forEach((c, i) => c.onTopic("t", (m) => got[i]!.push(m.payload.length)));
    void channels[0]!.broadcast("t", new Uint8Array(300_000).fill(7), { safe: true });
    void channels[1]!.broadcast("t", new Uint8Array(10));
    net.clock.runUntil(() => got.every((g) => g.length === 2), { maxMs: 30_000 });
    expect(got[1]).toEqual(got[0]);
    expect(got[2]).toEqual(got[0]);
    for (const channel of channels) await channel.shutDown();
  });
});

// Encoded frames round-trip through the generated code (what the wire carries).
describe("Totem frames", () => {
  it("encode a relay that decodes to the same message", () => {
    const data = { ...message(4), globalSeq: 9, ringSeq: 2, safe: true };
    const frame = fromBinary(FrameSchema, encodeRelay({ origin: B, originIncarnation: 3, ring: { representative: A, seq: 2 }, data, carrierRing: undefined, carrierSeq: 0 }));
    expect(frame.kind.case).toBe("totemRelay");
    expect(toBinary(FrameSchema, frame).length).toBeGreaterThan(0);
  });
});
