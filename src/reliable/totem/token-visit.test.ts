import { describe, expect, it } from "vitest";
import { emptyDataFields } from "../../wire/frames.ts";
import { keyOf } from "../member-key.ts";
import { totemOptionsSchema } from "./options.ts";
import { RingStore } from "./ring-store.ts";
import { type Arrival, advanceToken, FIRST_VISIT, type TokenHolder, type Visit, type VisitMemory, visitToken } from "./token-visit.ts";
import { type Token, TotemPhase } from "./totem-frames.ts";

const A = keyOf(new Uint8Array(16).fill(0xa1));
const B = keyOf(new Uint8Array(16).fill(0xb2));
const LIMITS = totemOptionsSchema.parse({ windowMessages: 64, maxMessagesPerVisit: 16, maxBytesPerVisit: 4_096, maxRetransmitRequests: 8 });

/** How a case describes the holder: the ring's messages it holds, what waits, its memory. */
interface HolderSpec {
  /** Sequence numbers held on the ring. */
  readonly held?: readonly number[];
  /** Everything up to here was delivered and is held everywhere: dropped as done. */
  readonly doneTo?: number;
  readonly safe?: number;
  readonly representative?: boolean;
  readonly recovering?: boolean;
  readonly open?: boolean;
  /** Payload sizes of its own messages waiting. */
  readonly queued?: readonly number[];
  readonly carriers?: number;
  readonly memory?: Partial<VisitMemory>;
}

function holder(spec: HolderSpec): TokenHolder {
  const ring = new RingStore({ representative: A, seq: 1 }, [A, B]);
  for (const seq of spec.held ?? []) ring.put(seq, { origin: B, originIncarnation: 1, data: emptyDataFields(), carrier: undefined });
  if (spec.doneTo !== undefined) {
    ring.safe = ring.delivered = spec.doneTo;
    ring.trim();
  }
  ring.safe = Math.max(ring.safe, spec.safe ?? 0);
  const queued = spec.queued ?? [];
  return {
    local: spec.representative === true ? A : B,
    representative: spec.representative === true,
    ring,
    recovering: spec.recovering ?? false,
    open: spec.open ?? true,
    queued: { length: queued.length, bytesAt: (index) => queued[index]! },
    carriers: spec.carriers ?? 0,
    memory: { ...FIRST_VISIT, ...spec.memory },
  };
}

function token(fields: Partial<Token>): Token {
  return {
    ring: { representative: A, seq: 1 },
    tokenSeq: 10,
    seq: 0,
    aru: 0,
    aruId: "",
    retransmit: [],
    fcc: 0,
    backlog: 0,
    recoveryPending: false,
    phase: TotemPhase.OPERATIONAL,
    ...fields,
  };
}

const heldTo = (last: number) => Array.from({ length: last }, (_, i) => i + 1);

describe("advanceToken: the token's arrival", () => {
  type Expected = Partial<Omit<Arrival, "token" | "memory">> & { phase?: TotemPhase; memory?: Partial<VisitMemory> };
  const cases: Array<[string, Partial<Token>, HolderSpec, Expected]> = [
    ["safe is the lower of the aru now and at the last visit", { seq: 12, aru: 10 }, { memory: { lastAru: 7 } }, { safe: 7, memory: { lastAru: 10 } }],
    ["safe never goes down", { seq: 12, aru: 10 }, { safe: 9, memory: { lastAru: 7 } }, { safe: 9 }],
    ["the first visit makes nothing safe", { seq: 12, aru: 12 }, {}, { safe: 0, memory: { lastAru: 12 } }],
    [
      "the representative waits while a member still carries",
      { phase: TotemPhase.UNSPECIFIED, seq: 5, aru: 5, recoveryPending: true },
      { representative: true, recovering: true, memory: { lastAru: 5, recoveryDoneSeq: 3 } },
      { install: false, open: false, phase: TotemPhase.UNSPECIFIED, memory: { recoveryDoneSeq: -1 } },
    ],
    [
      "the representative waits while it still carries",
      { phase: TotemPhase.UNSPECIFIED, seq: 5, aru: 5 },
      { representative: true, recovering: true, carriers: 2, memory: { lastAru: 5 } },
      { install: false, phase: TotemPhase.UNSPECIFIED, memory: { recoveryDoneSeq: -1 } },
    ],
    [
      "a rotation with nothing carried: the representative notes how far carriers reach",
      { phase: TotemPhase.UNSPECIFIED, seq: 5, aru: 5 },
      { representative: true, recovering: true, memory: { lastAru: 3 } },
      { install: false, phase: TotemPhase.UNSPECIFIED, safe: 3, memory: { recoveryDoneSeq: 5 } },
    ],
    [
      "once every member holds the carriers, the representative installs",
      { phase: TotemPhase.UNSPECIFIED, seq: 5, aru: 5 },
      { representative: true, recovering: true, memory: { lastAru: 5, recoveryDoneSeq: 5 } },
      { install: true, open: false, phase: TotemPhase.INSTALL, safe: 5 },
    ],
    [
      "the install back at the representative: the ring opens",
      { phase: TotemPhase.INSTALL, seq: 5, aru: 5 },
      { representative: true },
      { install: false, open: true, phase: TotemPhase.OPERATIONAL },
    ],
    ["the representative on a running ring", { phase: TotemPhase.OPERATIONAL }, { representative: true }, { install: false, open: false, phase: TotemPhase.OPERATIONAL }],
    ["another member in recovery follows the install", { phase: TotemPhase.INSTALL }, { recovering: true, open: false }, { install: true, open: false, phase: TotemPhase.INSTALL }],
    ["another member in recovery that missed the install installs and opens", { phase: TotemPhase.OPERATIONAL }, { recovering: true, open: false }, { install: true, open: true }],
    ["another member opens when the ring runs", { phase: TotemPhase.OPERATIONAL }, { open: false }, { install: false, open: true }],
    ["another member already open", { phase: TotemPhase.OPERATIONAL }, { open: true }, { install: false, open: false }],
    ["another member still recovering", { phase: TotemPhase.UNSPECIFIED }, { recovering: true, open: false }, { install: false, open: false }],
  ];

  it.each(cases)("%s", (_name, fields, spec, expected) => {
    const before = token(fields);
    const copy = structuredClone(before);
    const arrival = advanceToken(before, holder(spec));
    const { phase, memory, ...rest } = expected;
    expect(arrival).toMatchObject(rest);
    if (phase !== undefined) expect(arrival.token.phase).toBe(phase);
    if (memory !== undefined) expect(arrival.memory).toMatchObject(memory);
    // Pure: the token as it came is left as it was.
    expect(before).toEqual(copy);
  });
});

describe("visitToken: a holder's work", () => {
  type Expected = Partial<Omit<Visit, "token" | "memory">> & { token?: Partial<Token>; memory?: Partial<VisitMemory> };
  const cases: Array<[string, Partial<Token>, HolderSpec, Expected]> = [
    [
      "sends its messages stamped after the token's seq, raises the aru it holds down to none, counts them for flow control",
      { seq: 4, aru: 4 },
      { held: heldTo(4), queued: [10, 10, 10] },
      { send: 3, resend: [], idle: false, token: { tokenSeq: 11, seq: 7, aru: 7, aruId: "", fcc: 3, backlog: 0 }, memory: { lastSeq: 4, lastSent: 3, lastBacklog: 0 } },
    ],
    ["sends at most maxMessagesPerVisit", { seq: 0 }, { queued: Array(40).fill(1) }, { send: 16, token: { seq: 16, backlog: 24 } }],
    ["sends at most maxBytesPerVisit (the message that crosses it goes)", {}, { queued: [3_000, 3_000, 3_000] }, { send: 2, token: { seq: 2 } }],
    ["sends nothing of its own before the ring opens", { seq: 3, aru: 3 }, { held: heldTo(3), open: false, queued: [1, 1] }, { send: 0, token: { seq: 3, backlog: 2 } }],
    [
      "while recovering, carries old-ring messages instead of its own",
      { seq: 0, phase: TotemPhase.UNSPECIFIED, recoveryPending: true },
      { recovering: true, carriers: 5, queued: [1, 1, 1] },
      { send: 5, idle: false, token: { seq: 5, backlog: 0, recoveryPending: true } },
    ],
    [
      "the representative says whether anything is still carried, from what it sees",
      { seq: 0, phase: TotemPhase.UNSPECIFIED, recoveryPending: true },
      { representative: true, recovering: true, carriers: 20 },
      { send: 16, token: { backlog: 4, recoveryPending: true } },
    ],
    [
      "the representative clears the carrying flag when it has nothing left",
      { seq: 5, aru: 5, phase: TotemPhase.UNSPECIFIED, recoveryPending: true },
      { representative: true, recovering: true, held: heldTo(5) },
      { send: 0, token: { recoveryPending: false } },
    ],
    ["a window per rotation: what the others sent counts", { fcc: 60 }, { queued: Array(10).fill(1) }, { send: 4, token: { fcc: 64 } }],
    ["its own part of fcc is replaced, not added up", { fcc: 60 }, { queued: Array(10).fill(1), memory: { lastSent: 50 } }, { send: 10, token: { fcc: 20 } }],
    ["never more than two windows ahead of the aru", { seq: 126, aru: 0, aruId: A }, { queued: Array(10).fill(1) }, { send: 2, token: { seq: 128 } }],
    [
      "a share of the window by backlog when others have messages waiting",
      { backlog: 1_200 },
      { queued: Array(100).fill(1) },
      // ceil(64 × 100 / 1,300) = 5.
      { send: 5, token: { backlog: 1_295 } },
    ],
    ["its share is at least one message", { backlog: 10_000 }, { queued: [1, 1] }, { send: 1, token: { backlog: 10_001 } }],
    [
      "its own part of the backlog is replaced, not added up",
      { backlog: 30 },
      { queued: Array(5).fill(1), memory: { lastBacklog: 20 } },
      { send: 5, token: { backlog: 10 }, memory: { lastBacklog: 0 } },
    ],
    [
      "sends again what was asked for and it holds, drops requests for what every member has, keeps the rest",
      { seq: 8, aru: 2, aruId: B, retransmit: [[2, 2], [5, 5], [8, 8]] },
      { held: heldTo(6), doneTo: 3 },
      { resend: [5], send: 0, token: { retransmit: [[8, 8]], fcc: 1 } },
    ],
    [
      "sends again at most a window; what is left stays asked for",
      { seq: 70, aru: 0, aruId: B, retransmit: [[1, 70]] },
      { held: heldTo(70) },
      { resend: heldTo(64), token: { retransmit: [[65, 70]], fcc: 64 } },
    ],
    [
      "asks for gaps below what it received and for what was stamped before its last visit",
      { seq: 9, aru: 2, aruId: B },
      { held: [1, 2, 5], memory: { lastSeq: 7 } },
      { token: { retransmit: [[3, 4], [6, 7]] }, memory: { lastSeq: 9 } },
    ],
    ["does not ask for what was stamped since its last visit and it never saw", { seq: 9, aru: 2, aruId: B }, { held: [1, 2], memory: { lastSeq: 2 } }, { token: { retransmit: [] } }],
    [
      "asks for at most maxRetransmitRequests in all, merging into the ranges there",
      { seq: 40, aru: 0, aruId: B, retransmit: [[30, 32]] },
      { held: [40], memory: { lastSeq: 40 } },
      { token: { retransmit: [[1, 5], [30, 32]] } },
    ],
    ["lowers the aru to what it holds, and holds it down", { seq: 10, aru: 10 }, { held: heldTo(8).concat([10]) }, { token: { aru: 8, aruId: B } }],
    ["leaves an aru another member holds down lower", { seq: 10, aru: 6, aruId: A }, { held: heldTo(9) }, { token: { aru: 6, aruId: A } }],
    ["raises the aru it held down, to all once it has all", { seq: 10, aru: 6, aruId: B }, { held: heldTo(10) }, { token: { aru: 10, aruId: "" } }],
    ["raises the aru it held down as far as it holds", { seq: 10, aru: 6, aruId: B }, { held: heldTo(9) }, { token: { aru: 9, aruId: B } }],
    ["raises an aru nobody holds down", { seq: 10, aru: 6, aruId: "" }, { held: heldTo(9) }, { token: { aru: 9, aruId: B } }],
    ["an idle ring: the token may be held", { seq: 5, aru: 5 }, { held: heldTo(5) }, { idle: true, send: 0, token: { fcc: 0 } }],
    ["not idle while messages go round", { seq: 5, aru: 5, fcc: 1 }, { held: heldTo(5) }, { idle: false }],
    ["not idle while a message is asked for", { seq: 5, aru: 4, aruId: A, retransmit: [[5, 5]] }, { held: heldTo(4) }, { idle: false }],
    ["not idle before the ring runs", { seq: 5, aru: 5, phase: TotemPhase.INSTALL }, { held: heldTo(5) }, { idle: false }],
    ["not idle while its own messages wait", { seq: 5, aru: 5 }, { held: heldTo(5), open: false, queued: [1] }, { idle: false }],
  ];

  it.each(cases)("%s", (_name, fields, spec, expected) => {
    const before = token(fields);
    const copy = structuredClone(before);
    const visit = visitToken(before, holder(spec), LIMITS);
    const { token: tokenFields, memory, ...rest } = expected;
    expect(visit).toMatchObject(rest);
    if (tokenFields !== undefined) expect(visit.token).toMatchObject(tokenFields);
    if (memory !== undefined) expect(visit.memory).toMatchObject(memory);
    expect(visit.token.tokenSeq).toBe(before.tokenSeq + 1);
    expect(visit.token.seq).toBe(before.seq + visit.send);
    // Pure: the token as it came is left as it was, its requests included.
    expect(before).toEqual(copy);
  });
});
