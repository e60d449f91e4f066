/**
 * The CPU cost of one sealed datagram, operation by operation, on node:crypto: sealing and opening a
 * small datagram (a request or a reply: about 150 bytes) through the datagram guard, as an endpoint
 * does (the guard's `prepare` between turns, or not), and through the provider alone; and what the
 * primitives under them cost (making a cipher, AES-256-GCM of the bytes, HMAC-SHA-256).
 *
 * Each figure is the median of `--rounds` rounds of `--count` operations, as CPU time (user + system)
 * per operation (a "prepared" row counts the guard's or provider's `prepare` too), with the JavaScript
 * heap and ArrayBuffer bytes allocated per operation (measured over rounds of 500 in which no garbage
 * collection ran). Guard rows also give the mean wall time of the seal or open alone, without the
 * `prepare` that follows it: what lies on a datagram's way (timed per call, so noisier). One process,
 * one core; no network.
 *
 *   npx tsx bench/seal-ops.ts [--count 50000] [--rounds 7] [--body 120] [--only guard,provider,primitives]
 */
import { type CipherGCM, createCipheriv, createDecipheriv, createHmac, createSecretKey } from "node:crypto";
import { PerformanceObserver } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { getHeapStatistics } from "node:v8";
import { nodeCrypto } from "../src/adapters/node-crypto.ts";
import { nonceOf, type SenderKey } from "../src/security/crypto-provider.ts";
import { DatagramGuard } from "../src/security/datagram-guard.ts";
import { KeyRing } from "../src/security/keyring.ts";
import { securityOptionsSchema } from "../src/security/options.ts";
import type { SealMode } from "../src/security/crypto-provider.ts";
import { DatagramBuilder, emptyDataFields, encodeEnvelopeHeader } from "../src/wire/frames.ts";
import { MAX_DATAGRAM_BYTES } from "../src/wire/limits.ts";
import { median } from "./lib.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "50000" },
    rounds: { type: "string", default: "7" },
    body: { type: "string", default: "120" },
    only: { type: "string" },
  },
});
const COUNT = Number(values.count);
const ROUNDS = Number(values.rounds);
const BODY = Number(values.body);
const ALLOCATION_COUNT = 500;
const only = values.only?.split(",");
const want = (name: string) => only === undefined || only.includes(name);

let collections = 0;
new PerformanceObserver((list) => (collections += list.getEntries().length)).observe({ entryTypes: ["gc"] });

interface Figure {
  readonly cpuUs: number;
  /** Undefined when every round collected garbage. */
  readonly heapBytes: number | undefined;
  readonly arrayBufferBytes: number | undefined;
}

/**
 * Runs `op(i)` `COUNT` times a round (`setup` before each round and before the warm-up, not measured),
 * then rounds of `ALLOCATION_COUNT` operations for the bytes allocated: few enough that no collection runs.
 */
async function measure(op: (i: number) => void, setup?: () => void): Promise<Figure> {
  setup?.();
  for (let i = 0; i < Math.min(COUNT, 2_000); i++) op(i);
  const cpu: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    setup?.();
    const before = process.cpuUsage();
    for (let i = 0; i < COUNT; i++) op(i);
    const used = process.cpuUsage(before);
    cpu.push((used.user + used.system) / COUNT);
  }
  const heap: number[] = [];
  const arrays: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    setup?.();
    // Let pending collections and observer callbacks run before the round starts.
    await new Promise((resolve) => setTimeout(resolve, 2));
    const gcBefore = collections;
    const heapBefore = getHeapStatistics().used_heap_size;
    const arraysBefore = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < ALLOCATION_COUNT; i++) op(i);
    const heapAfter = getHeapStatistics().used_heap_size;
    const arraysAfter = process.memoryUsage().arrayBuffers;
    await new Promise((resolve) => setTimeout(resolve, 2));
    if (collections === gcBefore) {
      heap.push((heapAfter - heapBefore) / ALLOCATION_COUNT);
      arrays.push((arraysAfter - arraysBefore) / ALLOCATION_COUNT);
    }
  }
  return { cpuUs: median(cpu), heapBytes: heap.length === 0 ? undefined : median(heap), arrayBufferBytes: arrays.length === 0 ? undefined : median(arrays) };
}

/** Wall time of the part of an operation on a datagram's way (without what `prepare` makes ahead). */
const onTheWay = { ms: 0, count: 0 };
function timedPart(part: () => void): void {
  const started = performance.now();
  part();
  onTheWay.ms += performance.now() - started;
  onTheWay.count++;
}

async function row(name: string, op: (i: number) => void, setup?: () => void): Promise<void> {
  onTheWay.ms = 0;
  onTheWay.count = 0;
  const figure = await measure(op, setup);
  const bytes = (b: number | undefined) => (b === undefined ? "(gc)" : `${Math.round(b)} B`);
  const way = onTheWay.count === 0 ? "" : `${((onTheWay.ms * 1000) / onTheWay.count).toFixed(2)} µs`;
  console.log(`| ${name} | ${figure.cpuUs.toFixed(2)} µs | ${way} | ${bytes(figure.heapBytes)} | ${bytes(figure.arrayBufferBytes)} |`);
}

const CLUSTER = "bench-seal";
const SECRET = new Uint8Array(32).fill(5);
const ID_A = new Uint8Array(16).fill(0xa1);
const ID_B = new Uint8Array(16).fill(0xb2);

/** A plain datagram from `id` with one Data frame whose payload makes the body about `BODY` bytes. */
function plainFrom(id: Uint8Array): { datagram: Uint8Array; headerLength: number } {
  const header = encodeEnvelopeHeader(CLUSTER, id, 1_700_000_000_000);
  const builder = new DatagramBuilder(header, MAX_DATAGRAM_BYTES);
  builder.addData({ ...emptyDataFields(), seq: 1, addressing: 2, destination: "echo", requestId: 1, payload: new Uint8Array(Math.max(0, BODY - 20)).fill(7) });
  return { datagram: builder.finish()!, headerLength: header.length };
}

function guardOf(id: Uint8Array, mode: SealMode): DatagramGuard {
  const options = securityOptionsSchema.parse({ keys: [{ id: 1, secret: SECRET }], mode });
  const guard = new DatagramGuard(
    options,
    new KeyRing(options.keys, options.primary),
    nodeCrypto,
    { cluster: CLUSTER, memberId: id, maxDatagramBytes: MAX_DATAGRAM_BYTES },
    { refused: (reason, detail) => { throw new Error(`refused: ${reason}: ${detail}`); }, fault: (error) => { throw error; }, own: () => {} },
    () => 1_700_000_000_000 + 1000,
  );
  guard.start(1_700_000_000_000);
  return guard;
}

console.log(`Node ${process.version}; ${COUNT} operations a round, median of ${ROUNDS} rounds; body ${BODY} B\n`);
console.log("| operation | CPU per op | wall, on the way | JS heap per op | ArrayBuffers per op |\n| --- | ---: | ---: | ---: | ---: |");

if (want("guard")) {
  for (const mode of ["encrypt", "authenticate"] as const) {
    for (const prepared of [true, false]) {
      // A sends to B over its own point-to-point sequence; B opens. With `prepared`, each side's guard
      // makes ahead what the next datagram needs after each one, as an endpoint does at the end of a turn.
      const a = guardOf(ID_A, mode);
      const b = guardOf(ID_B, mode);
      const plain = plainFrom(ID_A);
      const sealed: Uint8Array[] = [];
      let delivered = 0;
      await row(`guard seal, ${mode}${prepared ? ", prepared" : ""}`, () => {
        timedPart(() => a.seal(plain.datagram, plain.headerLength, ID_B, (bytes) => sealed.push(bytes)));
        if (prepared) a.prepare();
      }, () => (sealed.length = 0));
      // Open what was sealed (every round's datagrams from the last round, in order: fresh counters).
      let next = 0;
      const round = sealed.slice();
      await row(`guard open, ${mode}${prepared ? ", prepared" : ""}`, () => {
        const datagram = round[next++]!;
        timedPart(() => b.open(datagram, () => delivered++));
        if (prepared) b.prepare();
      }, () => {
        round.length = 0;
        next = 0;
        for (let i = 0; i < COUNT; i++) a.seal(plain.datagram, plain.headerLength, ID_B, (bytes) => round.push(bytes.slice()));
      });
      if (delivered === 0) throw new Error("nothing opened");
    }
  }
}

if (want("provider")) {
  const info = new Uint8Array(80).fill(3);
  for (const mode of ["encrypt", "authenticate"] as const) {
    const key: SenderKey = nodeCrypto.deriveKey(mode, SECRET, info);
    const aad = new Uint8Array(70).fill(1);
    const body = new Uint8Array(BODY).fill(2);
    const out = new Uint8Array(aad.length + BODY + 16);
    let counter = 1;
    await row(`provider seal, ${mode}, prepared`, () => {
      nodeCrypto.seal(key, mode, counter, aad, body, out, aad.length);
      counter += 2;
      nodeCrypto.prepare!(key, mode, counter, "seal");
    });
    await row(`provider seal, ${mode}`, () => {
      nodeCrypto.seal(key, mode, counter, aad, body, out, aad.length);
      counter += 2;
    });
    // Opening needs datagrams sealed under each counter: seal them in setup.
    const payloads: Uint8Array[] = [];
    let first = 0;
    let i0 = 0;
    const setup = () => {
      payloads.length = 0;
      first = counter;
      for (let i = 0; i < COUNT; i++) {
        const sealed = new Uint8Array(BODY + 16);
        nodeCrypto.seal(key, mode, counter, aad, body, sealed, 0);
        payloads.push(sealed);
        counter += 2;
      }
      i0 = 0;
    };
    setup();
    for (const prepared of [true, false]) {
      await row(`provider open, ${mode}${prepared ? ", prepared" : ""}`, () => {
        const c = first + 2 * i0;
        if (nodeCrypto.open(key, mode, c, aad, payloads[i0]!) === undefined) throw new Error("did not open");
        i0++;
        if (prepared) nodeCrypto.prepare!(key, mode, c + 2, "open");
      }, setup);
    }
  }
}

if (want("primitives")) {
  const raw = new Uint8Array(32).fill(9);
  const keyObject = createSecretKey(raw);
  const aad = new Uint8Array(70).fill(1);
  const body = new Uint8Array(BODY).fill(2);
  const nonce = new Uint8Array(12);
  await row("createCipheriv, key as bytes", (i) => void createCipheriv("aes-256-gcm", raw, nonceOf(i + 1)));
  await row("createCipheriv, key as KeyObject", (i) => void createCipheriv("aes-256-gcm", keyObject, nonceOf(i + 1)));
  await row("createCipheriv, bytes, one nonce buffer", () => void createCipheriv("aes-256-gcm", raw, nonce));
  await row("createDecipheriv, key as bytes", (i) => void createDecipheriv("aes-256-gcm", raw, nonceOf(i + 1)));
  await row("createDecipheriv, key as KeyObject", (i) => void createDecipheriv("aes-256-gcm", keyObject, nonceOf(i + 1)));
  await row("nonceOf", (i) => void nonceOf(i + 1));
  const ciphers: CipherGCM[] = [];
  const fill = () => {
    ciphers.length = 0;
    for (let i = 0; i < COUNT; i++) ciphers.push(createCipheriv("aes-256-gcm", raw, nonce));
  };
  fill();
  await row("cipher: setAAD + update + final + getAuthTag", (i) => {
    const c = ciphers[i]!;
    c.setAAD(aad);
    c.update(body);
    c.final();
    c.getAuthTag();
  }, fill);
  fill();
  await row("cipher: update + final + getAuthTag (no AAD)", (i) => {
    const c = ciphers[i]!;
    c.update(body);
    c.final();
    c.getAuthTag();
  }, fill);
  fill();
  await row("cipher: setAAD alone", (i) => void ciphers[i]!.setAAD(aad), fill);
  await row("createHmac, key as bytes", () => void createHmac("sha256", raw));
  await row("createHmac, key as KeyObject", () => void createHmac("sha256", keyObject));
  await row("HMAC-SHA-256: create + update ×2 + digest", () => void createHmac("sha256", raw).update(aad).update(body).digest());
}
