import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { LockStateSchema, SnapshotEntriesSchema } from "../../gen/activeblaze/v1/cluster_pb.ts";
import { idOf } from "../reliable/member-key.ts";
import { SeededRandom } from "../transport/seeded-random.ts";
import { MAX_COUNTER } from "../wire/safe-integers.ts";
import { type BlockLock, readEntryBlock, writeEntryBlock } from "./entry-block.ts";
import type { StoredEntry } from "./state-types.ts";

const A = { id: "0a".repeat(16), incarnation: 7 };
const B = { id: "0b".repeat(16), incarnation: 0 };

const entries: StoredEntry[] = [
  { key: "plain", value: new Uint8Array([1, 2, 3]), format: 0, version: 12, owner: A, removeOnExit: false, ttlMs: 0, expiresAt: undefined },
  { key: "grüße/日本/😀", value: new Uint8Array(0), format: 1, version: MAX_COUNTER, owner: B, removeOnExit: true, ttlMs: 5_000, expiresAt: 2_500 },
  { key: "", value: new Uint8Array(200).fill(9), format: 0, version: 0, owner: A, removeOnExit: false, ttlMs: 0, expiresAt: undefined },
];
const LOCK = { holder: { id: idOf(B.id), incarnation: 0n }, fencingToken: 44n, leaseRemainingMs: 250n, releaseOnExit: true };
const lockBytes = toBinary(LockStateSchema, create(LockStateSchema, LOCK));
const lockOf = (key: string) => (key === "plain" ? lockBytes : undefined);

/** The generated codec's bytes of the same entries, as they stand at `now`. */
function generated(now: number): Uint8Array {
  return toBinary(
    SnapshotEntriesSchema,
    create(SnapshotEntriesSchema, {
      entries: entries.map((e) => ({
        key: e.key,
        value: e.value,
        format: e.format,
        version: BigInt(e.version),
        owner: { id: idOf(e.owner.id), incarnation: BigInt(e.owner.incarnation) },
        removeOnExit: e.removeOnExit,
        ttlRemainingMs: e.expiresAt === undefined ? 0n : BigInt(Math.max(1, Math.ceil(e.expiresAt - now))),
        lock: e.key === "plain" ? LOCK : undefined,
      })),
    }),
  );
}

describe("entry blocks", () => {
  it("are the bytes the schema's codec writes, and read back as the map stores them", () => {
    const block = writeEntryBlock(entries, lockOf, 1_000);
    expect(block).toEqual(generated(1_000));
    const locks: BlockLock[] = [];
    const read = readEntryBlock(block, 10_000, locks);
    // The time to live left when written (1,500 ms), counted from the reader's clock.
    expect(read).toEqual([entries[0], { ...entries[1], ttlMs: 1_500, expiresAt: 11_500 }, entries[2]]);
    expect(locks).toEqual([{ key: "plain", state: lockBytes }]);
    // A block larger than the buffer it is written in at first (the buffer grows).
    const large = [0, 1, 2].map((i) => ({ ...entries[0]!, key: `big${i}`, value: new Uint8Array(30_000).fill(i) }));
    expect(readEntryBlock(writeEntryBlock(large, () => undefined, 0).slice(), 0, [])).toEqual(large);
    // One owner instance for consecutive entries of one owner.
    const [first, second] = readEntryBlock(writeEntryBlock([entries[0]!, entries[2]!], () => undefined, 0), 0, [])!;
    expect(second!.owner).toBe(first!.owner);
  });

  it("reads any valid encoding: unknown fields skipped, a repeated owner merged", () => {
    const id = idOf(A.id);
    const entry = [
      ...[0x20, 5], // version first
      ...[0xa0, 0x01, 1], // field 20 (unknown), a varint
      ...[0x2a, 18, 0x0a, 16, ...id], // owner: the id alone
      ...[0x0a, 1, 0x6b], // key "k"
      ...[0xaa, 0x01, 2, 7, 7], // field 21 (unknown), bytes
      ...[0x2a, 2, 0x10, 9], // owner again: the incarnation
    ];
    const block = new Uint8Array([0x0a, entry.length, ...entry, 0xf8, 0x01, 3]); // then field 31 (unknown) of the block
    expect(readEntryBlock(block, 0, [])).toEqual([{ key: "k", value: new Uint8Array(0), format: 0, version: 5, owner: { id: A.id, incarnation: 9 }, removeOnExit: false, ttlMs: 0, expiresAt: undefined }]);
  });

  it("refuses what the state wire refuses: no owner, an id not of 16 bytes, a counter past MAX_COUNTER, bad UTF-8, truncation", () => {
    const one = (fields: number[]) => new Uint8Array([0x0a, fields.length, ...fields]);
    const owner = [0x2a, 18, 0x0a, 16, ...idOf(A.id)];
    expect(readEntryBlock(one([0x0a, 1, 0x6b, ...owner]), 0, [])).toHaveLength(1);
    expect(readEntryBlock(one([0x0a, 1, 0x6b]), 0, [])).toBeUndefined();
    expect(readEntryBlock(one([0x0a, 1, 0x6b, 0x2a, 5, 0x0a, 3, 1, 2, 3]), 0, [])).toBeUndefined();
    const past = writeEntryBlock([{ ...entries[0]!, version: MAX_COUNTER + 1 }], () => undefined, 0);
    expect(readEntryBlock(past, 0, [])).toBeUndefined();
    expect(readEntryBlock(one([0x0a, 2, 0xc3, 0x28, ...owner]), 0, [])).toBeUndefined();
    const block = writeEntryBlock(entries, lockOf, 0);
    for (const cut of [1, 5, 40, block.length - 1]) expect(readEntryBlock(block.subarray(0, cut), 0, [])).toBeUndefined();
    // A group (wire type 3) cannot be skipped.
    expect(readEntryBlock(new Uint8Array([0x1b]), 0, [])).toBeUndefined();
  });

  it("reads corrupted blocks without throwing: entries, or undefined", () => {
    const random = new SeededRandom(11);
    const valid = writeEntryBlock(entries, lockOf, 0).slice();
    for (let i = 0; i < 2_000; i++) {
      const bytes = valid.slice();
      for (let flips = 1 + Math.floor(random.next() * 4); flips > 0; flips--) bytes[Math.floor(random.next() * bytes.length)] = Math.floor(random.next() * 256);
      const read = readEntryBlock(bytes, 0, []);
      if (read !== undefined) for (const entry of read) expect(entry.owner.id).toHaveLength(32);
    }
  });
});

