import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { nodeCrypto } from "../adapters/node-crypto.ts";
import { SeededRandom } from "../transport/seeded-random.ts";
import { decodeEnvelope } from "../wire/codec.ts";
import type { DropReason } from "../wire/drop-reason.ts";
import { DatagramBuilder, encodeEnvelopeHeader, plainEnvelope } from "../wire/frames.ts";
import { MAX_DATAGRAM_BYTES } from "../wire/limits.ts";
import type { AsyncCryptoProvider, CryptoProvider, SyncCryptoProvider } from "./crypto-provider.ts";
import { DatagramGuard } from "./datagram-guard.ts";
import { KeyRing } from "./keyring.ts";
import { type SecurityOptions, securityOptionsSchema } from "./options.ts";
import { webCrypto } from "./web-crypto.ts";

const CLUSTER = "guard-test";
const SECRET_1 = new Uint8Array(32).fill(1);
const SECRET_2 = new Uint8Array(32).fill(2);
const ID_A = new Uint8Array(16).fill(0xa1);
const ID_B = new Uint8Array(16).fill(0xb2);
const NOW = 1_700_000_000_000;

/** node:crypto behind promises that settle after seeded random delays: out of order, as WebCrypto may. */
function delayed(provider: SyncCryptoProvider, seed: number): AsyncCryptoProvider {
  const random = new SeededRandom(seed);
  const later = <T>(value: () => T): Promise<T> => new Promise((resolve) => setTimeout(() => resolve(value()), random.nextInt(4)));
  return {
    name: "delayed node:crypto",
    synchronous: false,
    deriveKey: (...args) => later(() => provider.deriveKey(...args)),
    seal: (...args) => later(() => provider.seal(...args)),
    open: (...args) => later(() => provider.open(...args)),
    signingKey: (...args) => later(() => provider.signingKey(...args)),
    verifyKey: (...args) => later(() => provider.verifyKey(...args)),
    sign: (...args) => later(() => provider.sign(...args)),
    verify: (...args) => later(() => provider.verify(...args)),
    publicKeyOf: (...args) => later(() => provider.publicKeyOf(...args)),
    generateIdentity: () => later(() => provider.generateIdentity()),
  };
}

interface Side {
  readonly guard: DatagramGuard;
  readonly refused: Partial<Record<DropReason, number>>;
  readonly delivered: Array<{ plain: Uint8Array; keyId: number }>;
  readonly faults: unknown[];
  /** Datagrams in this side's own name (an earlier incarnation's) heard back. */
  readonly own: { count: number };
  /** Opens `bytes` and waits until it is handed on (or refused). */
  receive(bytes: Uint8Array): Promise<void>;
  /** Seals a plain datagram from this side and returns the sealed bytes. */
  send(plain: { datagram: Uint8Array; headerLength: number }, to?: Uint8Array | "group" | undefined, keyId?: number): Promise<Uint8Array>;
}

function side(provider: CryptoProvider, id: Uint8Array, options: Partial<SecurityOptions> = {}, incarnation = 1): Side {
  const resolved = securityOptionsSchema.parse({ keys: [{ id: 1, secret: SECRET_1 }], ...options });
  const refused: Partial<Record<DropReason, number>> = {};
  const delivered: Array<{ plain: Uint8Array; keyId: number }> = [];
  const faults: unknown[] = [];
  const own = { count: 0 };
  const guard = new DatagramGuard(
    resolved,
    new KeyRing(resolved.keys, resolved.primary),
    provider,
    { cluster: CLUSTER, memberId: id, maxDatagramBytes: MAX_DATAGRAM_BYTES },
    { refused: (reason) => (refused[reason] = (refused[reason] ?? 0) + 1), fault: (error) => faults.push(error), own: () => own.count++ },
    () => NOW,
  );
  guard.start(incarnation);
  return {
    guard,
    refused,
    delivered,
    faults,
    own,
    async receive(bytes) {
      guard.open(bytes, (opened, keyId) => delivered.push({ plain: plainEnvelope(opened.header, opened.body), keyId }));
      await guard.drained();
    },
    async send(plain, to = "group", keyId) {
      let sealed: Uint8Array | undefined;
      guard.seal(plain.datagram, plain.headerLength, to, (bytes) => (sealed = bytes), keyId);
      await guard.drained();
      return sealed!;
    },
  };
}

function heartbeat(n: number): Uint8Array {
  return toBinary(FrameSchema, create(FrameSchema, { kind: { case: "heartbeat", value: { highestSeq: BigInt(n) } } }));
}

/** A plain datagram from `id` (as an endpoint builds it), with `frames` heartbeats. */
function plainFrom(id: Uint8Array, frames = 1, incarnation = 1, payloadBytes = 0): { datagram: Uint8Array; headerLength: number } {
  const header = encodeEnvelopeHeader(CLUSTER, id, incarnation);
  const builder = new DatagramBuilder(header, MAX_DATAGRAM_BYTES);
  for (let i = 1; i <= frames; i++) builder.addFrame(heartbeat(i));
  if (payloadBytes > 0) builder.addFrame(toBinary(FrameSchema, create(FrameSchema, { kind: { case: "data", value: { seq: 1n, addressing: 1, destination: "t", payload: new Uint8Array(payloadBytes).fill(9) } } })));
  return { datagram: builder.finish()!, headerLength: header.length };
}

const total = (counts: Partial<Record<DropReason, number>>) => Object.values(counts).reduce((sum, n) => sum + n, 0);

const providers: Array<[string, () => CryptoProvider]> = [
  ["node:crypto", () => nodeCrypto],
  ["WebCrypto", () => webCrypto],
  ["a slow asynchronous provider", () => delayed(nodeCrypto, 7)],
];

describe.each(providers)("DatagramGuard with %s", (_name, provider) => {
  for (const mode of ["encrypt", "authenticate"] as const) {
    it(`${mode}: a sealed datagram opens to the very envelope that was sealed, and is readable only in authenticate mode`, async () => {
      const a = side(provider(), ID_A, { mode });
      const b = side(provider(), ID_B, { mode });
      const plain = plainFrom(ID_A, 3, 1, 200);
      const sealed = await a.send(plain);
      expect(sealed.length).toBeLessThanOrEqual(plain.datagram.length + DatagramGuard.overheadBytes(securityOptionsSchema.parse({ keys: [{ id: 1, secret: SECRET_1 }], mode })));
      const body = plain.datagram.subarray(plain.headerLength);
      expect(containsBytes(sealed, body.subarray(body.length - 200))).toBe(mode === "authenticate");
      await b.receive(sealed);
      expect(b.delivered).toHaveLength(1);
      expect(b.delivered[0]!.plain).toEqual(plain.datagram);
      expect(b.delivered[0]!.keyId).toBe(1);
      const decoded = decodeEnvelope(b.delivered[0]!.plain, { cluster: CLUSTER });
      expect(decoded.ok).toBe(true);
      expect(b.guard.stats).toMatchObject({ opened: 1, senders: 1 });
      expect(a.guard.stats).toMatchObject({ sealed: 1, senders: 0 });
    });
  }

  it("refuses a replay of any datagram, data or control, to the group or to one member", async () => {
    const a = side(provider(), ID_A);
    const b = side(provider(), ID_B);
    const toGroup = await a.send(plainFrom(ID_A));
    const toOne = await a.send(plainFrom(ID_A), ID_B);
    for (const bytes of [toGroup, toOne, toGroup, toOne, toOne]) await b.receive(bytes);
    expect(b.delivered).toHaveLength(2);
    expect(b.refused).toEqual({ REPLAYED: 3 });
  });

  it("refuses a datagram to one member replayed to another, which has not seen its counter", async () => {
    const a = side(provider(), ID_A);
    const b = side(provider(), ID_B);
    const c = side(provider(), new Uint8Array(16).fill(0xc3));
    const toB = await a.send(plainFrom(ID_A), ID_B);
    await c.receive(toB);
    await b.receive(toB);
    expect(c.refused).toEqual({ REPLAYED: 1 });
    expect(c.guard.stats.senders).toBe(0);
    expect(b.delivered).toHaveLength(1);
  });

  it("refuses every flipped bit and every truncation, delivers nothing and remembers nobody", async () => {
    const a = side(provider(), ID_A);
    const b = side(provider(), ID_B);
    const sealed = await a.send(plainFrom(ID_A, 2));
    let attempts = 0;
    for (let i = 0; i < sealed.length; i++) {
      for (const bitNumber of [0, 3, 7]) {
        const flipped = sealed.slice();
        flipped[i]! ^= 1 << bitNumber;
        await b.receive(flipped);
        attempts++;
      }
    }
    for (let length = 0; length < sealed.length; length++) {
      await b.receive(sealed.subarray(0, length));
      attempts++;
    }
    expect(b.delivered).toEqual([]);
    expect(total(b.refused)).toBe(attempts);
    expect(b.guard.stats.senders).toBe(0);
    // The tag itself, cut or changed, never authenticates.
    expect(b.refused.AUTH_FAILED).toBeGreaterThan(16 * 3);
    await b.receive(sealed);
    expect(b.delivered).toHaveLength(1);
  });

  it("counts each refusal by reason: unsealed, wrong mode, unknown key, another secret, a future incarnation", async () => {
    const b = side(provider(), ID_B);
    const plain = plainFrom(ID_A);
    await b.receive(plain.datagram);
    await b.receive(await side(provider(), ID_A, { mode: "authenticate" }).send(plain));
    await b.receive(await side(provider(), ID_A, { keys: [{ id: 2, secret: SECRET_1 }] }).send(plain));
    await b.receive(await side(provider(), ID_A, { keys: [{ id: 1, secret: SECRET_2 }] }).send(plain));
    const future = plainFrom(ID_A, 1, NOW + 400_000);
    await b.receive(await side(provider(), ID_A, {}, NOW + 400_000).send(future));
    expect(b.refused).toEqual({ UNSEALED: 1, WRONG_MODE: 1, UNKNOWN_KEY: 1, AUTH_FAILED: 1, FUTURE_INCARNATION: 1 });
    expect(b.delivered).toEqual([]);
    expect(b.guard.stats.senders).toBe(0);
  });

  it("a new incarnation is a new sender; the old one's datagrams are refused from then on", async () => {
    const first = side(provider(), ID_A, {}, 5);
    const second = side(provider(), ID_A, {}, 6);
    const b = side(provider(), ID_B);
    const old = await first.send(plainFrom(ID_A, 1, 5));
    const older = await first.send(plainFrom(ID_A, 1, 5));
    await b.receive(old);
    await b.receive(await second.send(plainFrom(ID_A, 1, 6)));
    await b.receive(older);
    expect(b.delivered).toHaveLength(2);
    expect(b.refused).toEqual({ REPLAYED: 1 });
  });

  it("counts a datagram in its own name (an earlier incarnation's, heard back) as its own: nothing opened, nobody tracked", async () => {
    const earlier = side(provider(), ID_B, {}, 1);
    const now = side(provider(), ID_B, {}, 2);
    await now.receive(await earlier.send(plainFrom(ID_B)));
    expect({ own: now.own.count, delivered: now.delivered.length, senders: now.guard.stats.senders, refused: now.refused }).toEqual({ own: 1, delivered: 0, senders: 0, refused: {} });
  });

  it("opens datagrams of every key in the ring, seals with the primary, and refuses a retired key", async () => {
    const a = side(provider(), ID_A, { keys: [{ id: 1, secret: SECRET_1 }, { id: 2, secret: SECRET_2 }], primary: 2 });
    const b = side(provider(), ID_B, { keys: [{ id: 1, secret: SECRET_1 }, { id: 2, secret: SECRET_2 }], primary: 2 });
    await b.receive(await a.send(plainFrom(ID_A)));
    await b.receive(await a.send(plainFrom(ID_A), "group", 1));
    expect(b.delivered.map((d) => d.keyId)).toEqual([2, 1]);
    b.guard.keyring.retire(1);
    await b.receive(await a.send(plainFrom(ID_A), "group", 1));
    expect(b.refused).toEqual({ UNKNOWN_KEY: 1 });
  });

  it("keeps datagrams in the order they arrived, however long each takes to open", async () => {
    const a = side(provider(), ID_A);
    const b = side(provider(), ID_B);
    const sealed: Uint8Array[] = [];
    const sent: Uint8Array[] = [];
    for (let i = 1; i <= 200; i++) {
      const plain = plainFrom(ID_A, (i % 7) + 1);
      sent.push(plain.datagram);
      sealed.push(await a.send(plain, i % 3 !== 0 ? "group" : i % 2 === 0 ? ID_B : undefined));
    }
    for (const bytes of sealed) b.guard.open(bytes, (opened, keyId) => b.delivered.push({ plain: plainEnvelope(opened.header, opened.body), keyId }));
    await b.guard.drained();
    expect(b.delivered.map((d) => d.plain)).toEqual(sent);
    expect(b.faults).toEqual([]);
  });

  it("forgets the longest silent sender past maxSenders, and never holds more", async () => {
    const b = side(provider(), ID_B, { maxSenders: 16 });
    for (let i = 0; i < 40; i++) {
      const id = new Uint8Array(16).fill(i + 1);
      await b.receive(await side(provider(), id).send(plainFrom(id)));
    }
    expect(b.delivered).toHaveLength(40);
    expect(b.guard.stats).toMatchObject({ senders: 16, sendersForgotten: 24 });
  });
});

describe("DatagramGuard in insider mode", () => {
  const identityA = nodeCrypto.generateIdentity();
  const identityB = nodeCrypto.generateIdentity();
  const identityC = nodeCrypto.generateIdentity();
  const idOf = (identity: { publicKey: Uint8Array }) => identity.publicKey.slice(0, 16);

  for (const [name, provider] of providers) {
    it(`${name}: signed datagrams open; a member cannot speak as another; trusted members only`, async () => {
      const a = side(provider(), idOf(identityA), { identity: identityA });
      const b = side(provider(), idOf(identityB), { identity: identityB, trustedMembers: [identityA.publicKey, identityB.publicKey] });
      const c = side(provider(), idOf(identityC), { identity: identityC });
      await b.receive(await a.send(plainFrom(idOf(identityA))));
      expect(b.delivered).toHaveLength(1);
      // C, holding the cluster key, claims A's id: its signer key is not A's, or (with A's key) its signature is not A's.
      await b.receive(await c.send(plainFrom(idOf(identityA))));
      // A claimed new incarnation of A, signed with C's key: it does not push A out.
      const forged = side(provider(), idOf(identityA), { identity: { publicKey: identityA.publicKey, privateKey: identityC.privateKey } }, 2);
      await b.receive(await forged.send(plainFrom(idOf(identityA), 1, 2)));
      // C as itself is not trusted by B; a member without signatures is in another mode.
      await b.receive(await c.send(plainFrom(idOf(identityC))));
      await b.receive(await side(provider(), ID_A).send(plainFrom(ID_A)));
      expect(b.refused).toEqual({ UNTRUSTED_SIGNER: 2, AUTH_FAILED: 1, WRONG_MODE: 1 });
      expect(b.delivered).toHaveLength(1);
      expect(b.guard.stats.senders).toBe(1);
    });
  }
});

describe("DatagramGuard.sealNow (a synchronous provider's seal, returned)", () => {
  it("returns what seal hands on, with the same counters, to the group and to one member; refuses an asynchronous provider", async () => {
    const now = side(nodeCrypto, ID_A);
    const later = side(nodeCrypto, ID_A);
    const receiver = side(nodeCrypto, ID_B);
    for (const to of ["group", ID_B, "group", ID_B] as const) {
      const plain = plainFrom(ID_A);
      expect(now.guard.synchronous).toBe(true);
      const sealed = now.guard.sealNow(plain.datagram, plain.headerLength, to)!;
      expect(sealed).toEqual(await later.send(plain, to));
      await receiver.receive(sealed);
    }
    expect(receiver.delivered).toHaveLength(4);
    expect(now.guard.stats).toMatchObject({ sealed: 4 });
    const asynchronous = side(webCrypto, ID_A);
    expect(asynchronous.guard.synchronous).toBe(false);
    expect(() => asynchronous.guard.sealNow(plainFrom(ID_A).datagram, plainFrom(ID_A).headerLength, "group")).toThrow(/synchronous/);
  });
});

describe("DatagramGuard with a provider that allocates sealed datagrams (not zeroed)", () => {
  it("writes every byte of a large datagram into the provider's buffer, and carves small ones as before", async () => {
    const allocated: number[] = [];
    // Bytes left over from earlier use: a byte the sender failed to write would show in the output.
    const dirty: SyncCryptoProvider = { ...nodeCrypto, allocate: (length) => (allocated.push(length), new Uint8Array(length).fill(0xaa)) };
    const zeroed: SyncCryptoProvider = { ...nodeCrypto, allocate: undefined };
    for (const mode of ["encrypt", "authenticate"] as const) {
      const a = side(dirty, ID_A, { mode });
      const same = side(zeroed, ID_A, { mode });
      const b = side(nodeCrypto, ID_B, { mode });
      allocated.length = 0;
      for (const payloadBytes of [60_000, 200, 20_000]) {
        const plain = plainFrom(ID_A, 1, 1, payloadBytes);
        const sealed = a.guard.sealNow(plain.datagram, plain.headerLength, "group")!;
        expect(sealed).toEqual(same.guard.sealNow(plain.datagram, plain.headerLength, "group"));
        await b.receive(sealed);
        expect(b.delivered.at(-1)!.plain).toEqual(plain.datagram);
      }
      expect(allocated).toHaveLength(2);
      expect(allocated[0]).toBeGreaterThan(60_000);
    }
    // node:crypto's buffer is a plain Uint8Array of its own (a Buffer's `slice` would not copy).
    const own = nodeCrypto.allocate!(70_000);
    expect(Object.getPrototypeOf(own)).toBe(Uint8Array.prototype);
    expect([own.length, own.byteOffset, own.buffer.byteLength]).toEqual([70_000, 0, 70_000]);
  });
});

describe("DatagramGuard.sealParts (a large datagram sealed into parts, sent gathered)", () => {
  it("gives the very bytes sealNow gives, in parts, with the same counters, in both modes; only for large datagrams", async () => {
    for (const mode of ["encrypt", "authenticate"] as const) {
      const parts = side(nodeCrypto, ID_A, { mode });
      const whole = side(nodeCrypto, ID_A, { mode });
      const b = side(nodeCrypto, ID_B, { mode });
      for (const to of ["group", ID_B, "group"] as const) {
        const plain = plainFrom(ID_A, 1, 1, 40_000);
        expect(parts.guard.sealsInParts(plain.datagram.length)).toBe(true);
        const [aad, payload, tag] = parts.guard.sealParts(plain.datagram, plain.headerLength, to)!;
        expect(tag).toHaveLength(16);
        const joined = new Uint8Array([...aad, ...payload, ...tag]);
        expect(joined).toEqual(whole.guard.sealNow(plain.datagram, plain.headerLength, to));
        await b.receive(joined);
        expect(b.delivered.at(-1)!.plain).toEqual(plain.datagram);
      }
      expect(b.delivered).toHaveLength(3);
      expect(parts.guard.stats).toMatchObject({ sealed: 3 });
      expect(parts.guard.sealsInParts(plainFrom(ID_A, 1, 1, 200).datagram.length)).toBe(false);
    }
    expect(side(webCrypto, ID_A).guard.sealsInParts(50_000)).toBe(false);
    expect(side(nodeCrypto, ID_A, { identity: nodeCrypto.generateIdentity() }).guard.sealsInParts(50_000)).toBe(false);
  });
});

describe("DatagramGuard with what node:crypto makes ahead (prepare, at the end of a turn)", () => {
  const keys = [
    { id: 1, secret: SECRET_1 },
    { id: 2, secret: SECRET_2 },
  ];

  for (const mode of ["encrypt", "authenticate"] as const) {
    it(`${mode}: seals the same bytes and opens the same datagrams as without it, on seeded streams of sends, replays, reordering and forgeries`, async () => {
      for (let seed = 1; seed <= 20; seed++) {
        const random = new SeededRandom(seed);
        let prepared = 0;
        const counting: SyncCryptoProvider = {
          ...nodeCrypto,
          prepare: (...args) => {
            prepared++;
            nodeCrypto.prepare!(...args);
          },
        };
        // The same sender twice and the same receiver twice: one of each makes ahead, the other never.
        const sender = side(counting, ID_A, { mode, keys });
        const plainSender = side({ ...nodeCrypto, prepare: undefined }, ID_A, { mode, keys });
        const receiver = side(counting, ID_B, { mode, keys });
        const plainReceiver = side({ ...nodeCrypto, prepare: undefined }, ID_B, { mode, keys });
        const sent: Uint8Array[] = [];
        for (let step = 0; step < 300; step++) {
          const action = random.nextInt(6);
          if (action <= 1) {
            const to = random.nextInt(2) === 0 ? "group" : ID_B;
            const keyId = random.nextInt(8) === 0 ? 2 : 1;
            const plain = plainFrom(ID_A, 1 + random.nextInt(3));
            const sealed = await sender.send(plain, to, keyId);
            expect(sealed, `seed ${seed}, step ${step}`).toEqual(await plainSender.send(plain, to, keyId));
            sent.push(sealed);
          } else if (action === 2) {
            sender.guard.prepare();
          } else if (action === 3) {
            receiver.guard.prepare();
          } else if (sent.length > 0) {
            // Mostly the next one sent, sometimes an older one again or a forgery of one not yet heard.
            const pick = random.nextInt(3) === 0 ? random.nextInt(sent.length) : sent.length - 1 - random.nextInt(Math.min(2, sent.length));
            const bytes = sent[pick]!.slice();
            if (random.nextInt(5) === 0) bytes[bytes.length - 1 - random.nextInt(20)]! ^= 1 << random.nextInt(8);
            await receiver.receive(bytes);
            await plainReceiver.receive(bytes);
          }
        }
        expect(receiver.delivered, `seed ${seed}`).toEqual(plainReceiver.delivered);
        expect(receiver.refused, `seed ${seed}`).toEqual(plainReceiver.refused);
        expect(receiver.delivered.length).toBeGreaterThan(20);
        expect(receiver.refused.AUTH_FAILED).toBeGreaterThan(0);
        expect(prepared).toBeGreaterThan(0);
        expect([...sender.faults, ...receiver.faults]).toEqual([]);
      }
    });
  }

  it("a forgery carrying the counter made ahead for spends it; the genuine datagram still opens", async () => {
    const sender = side(nodeCrypto, ID_A);
    const receiver = side(nodeCrypto, ID_B);
    await receiver.receive(await sender.send(plainFrom(ID_A), ID_B));
    receiver.guard.prepare();
    sender.guard.prepare();
    const next = await sender.send(plainFrom(ID_A, 2), ID_B);
    const forged = next.slice();
    forged[forged.length - 1]! ^= 1;
    await receiver.receive(forged);
    await receiver.receive(next);
    expect(receiver.refused).toEqual({ AUTH_FAILED: 1 });
    expect(receiver.delivered).toHaveLength(2);
    expect(receiver.delivered[1]!.plain).toEqual(plainFrom(ID_A, 2).datagram);
  });
});

describe("the seal's overhead", () => {
  it("a datagram filled to the limit less the overhead seals to at most the limit, in every mode", async () => {
    for (const options of [{}, { mode: "authenticate" as const }, { identity: nodeCrypto.generateIdentity() }]) {
      const identity = (options as { identity?: { publicKey: Uint8Array } }).identity;
      const id = identity === undefined ? ID_A : identity.publicKey.slice(0, 16);
      const resolved = securityOptionsSchema.parse({ keys: [{ id: 0xffff_ffff, secret: SECRET_1 }], ...options });
      const a = side(nodeCrypto, id, { keys: [{ id: 0xffff_ffff, secret: SECRET_1 }], ...options });
      const limit = 2_000;
      const header = encodeEnvelopeHeader(CLUSTER, id, 1);
      const builder = new DatagramBuilder(header, limit - DatagramGuard.overheadBytes(resolved, limit));
      builder.addFrame(new Uint8Array(builder.maxFrameBytes));
      const sealed = await a.send({ datagram: builder.finish()!, headerLength: header.length });
      expect(sealed.length).toBeLessThanOrEqual(limit);
      expect(sealed.length).toBeGreaterThan(limit - 40);
    }
  });
});

function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}
