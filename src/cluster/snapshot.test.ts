import { describe, expect, it } from "vitest";
import { SnapshotLayout, SnapshotSender, type SnapshotSource, type Staging, stageChunk } from "./snapshot.ts";
import type { SnapshotChunk, StoredEntry } from "./state-types.ts";

const OWNER = { id: "0a".repeat(16), incarnation: 1 };

function source(count: number, valueBytes: number): SnapshotSource {
  const entries: StoredEntry[] = Array.from({ length: count }, (_, i) => ({
    key: `k${i}`,
    value: new Uint8Array(valueBytes),
    format: 0,
    version: i + 1,
    owner: OWNER,
    removeOnExit: false,
    ttlMs: 0,
    expiresAt: undefined,
  }));
  return {
    epoch: 2,
    index: count,
    entries,
    locks: new Map([["free", { key: "free", holder: OWNER, token: 5, leaseMs: 0, expiresAt: undefined, releaseOnExit: true }]]),
    applied: [{ requester: OWNER, requestId: 1, index: 1, previous: [], token: 0 }],
    nextToken: 6,
  };
}

describe("snapshots", () => {
  it("cuts chunks by bytes, entries first, then the other locks and the applied requests", () => {
    const layout = new SnapshotLayout(source(1_000, 100), 10_000);
    // 1,000 entries of about 168 bytes each: some 60 per chunk.
    expect(layout.chunkCount).toBeGreaterThan(15);
    expect(layout.chunkCount).toBeLessThan(20);
    let entries = 0;
    for (let k = 0; k < layout.chunkCount; k++) {
      const chunk = layout.chunk(k, 0);
      entries += chunk.entries.length;
      const bytes = chunk.entries.reduce((sum, e) => sum + e.key.length + e.value.length + 64, 0);
      expect(bytes).toBeLessThanOrEqual(10_000);
    }
    expect(entries).toBe(1_000);
    const last = layout.chunk(layout.chunkCount - 1, 0);
    expect(last.locks.map((l) => l.key)).toEqual(["free"]);
    expect(last.applied).toHaveLength(1);
    // An entry larger than a chunk still travels, alone (then a chunk of the lock and the record).
    expect(new SnapshotLayout(source(3, 20_000), 10_000).chunkCount).toBe(4);
  });

  it("keeps a window of chunks in flight, goes on as they are acknowledged, and sends again from the first missing one", () => {
    const sent: number[] = [];
    const sender = new SnapshotSender(10_000, (_peer, chunk) => sent.push(chunk.chunk));
    const { transfer, chunks } = sender.start("p", source(3_000, 100), 0);
    expect(sent).toEqual(Array.from({ length: 16 }, (_, i) => i));
    sender.onAck("p", transfer, 4, 10);
    expect(sent.slice(16)).toEqual([16, 17, 18, 19]);
    // Nothing acknowledged for a while: back to chunk 4.
    expect(sender.pollTimeout()).toBe(110);
    sender.handleTimeout(110);
    expect(sent.slice(20, 24)).toEqual([4, 5, 6, 7]);
    // An acknowledgement of another transfer, or an old one, is ignored.
    sender.onAck("p", transfer + 1, 10, 120);
    sender.onAck("p", transfer, 2, 120);
    expect(sender.inProgress("p", transfer)).toBe(true);
    sender.onAck("p", transfer, chunks, 130);
    expect(sender.inProgress("p", transfer)).toBe(false);
    expect(sender.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
  });

  it("waits twice as long after each resend that brought no progress, and 100 ms again once the receiver moves on", () => {
    const sent: number[] = [];
    const sender = new SnapshotSender(10_000, (_peer, chunk) => sent.push(chunk.chunk));
    const { transfer } = sender.start("p", source(3_000, 100), 0);
    for (const [at, next] of [
      [100, 300],
      [300, 700],
      [700, 1_500],
      [1_500, 2_300],
    ] as const) {
      expect(sender.pollTimeout()).toBe(at);
      sender.handleTimeout(at);
      expect(sent.at(-16)).toBe(0);
      expect(sender.pollTimeout()).toBe(next);
    }
    sender.onAck("p", transfer, 3, 2_000);
    expect(sender.pollTimeout()).toBe(2_100);
  });

  it("stops sending to a member that left the view, and drops at its first resend a transfer started to one afterwards", () => {
    const sent: string[] = [];
    const sender = new SnapshotSender(10_000, (peer) => sent.push(peer));
    sender.start("stays", source(3_000, 100), 0);
    sender.start("leaves", source(3_000, 100), 0);
    sender.retain(new Set(["stays"]));
    // A repair of the last term, started once the view no longer had the member.
    sender.start("left", source(3_000, 100), 10);
    sent.length = 0;
    for (let at = sender.pollTimeout(); at < 10_000; at = sender.pollTimeout()) sender.handleTimeout(at);
    expect(new Set(sent)).toEqual(new Set(["stays"]));
  });

  it("sends entries in one block only to a member whose acknowledgements say it reads them", () => {
    const blocks: Array<[string, boolean]> = [];
    const sender = new SnapshotSender(10_000, (peer, chunk, _lockOf, _now, entryBlock) => {
      if (chunk.chunk === 0) blocks.push([peer, entryBlock]);
    });
    sender.readsEntryBlock("new", true);
    sender.readsEntryBlock("old", false);
    sender.readsEntryBlock("restarted", true);
    sender.readsEntryBlock("restarted", false);
    sender.readsEntryBlock("gone", true);
    sender.retain(new Set(["new", "old", "restarted", "unheard"]));
    for (const peer of ["new", "old", "restarted", "unheard", "gone"]) sender.start(peer, source(10, 10), 0);
    expect(blocks).toEqual([
      ["new", true],
      ["old", false],
      ["restarted", false],
      ["unheard", false],
      ["gone", false],
    ]);
  });

  it("stages chunks in order only, and starts over on a new transfer", () => {
    const chunk = (transfer: number, k: number): SnapshotChunk => ({ transfer, epoch: 1, index: 9, chunk: k, chunkCount: 3, entries: [], locks: [], applied: [], nextToken: 1 });
    let staging: Staging | undefined;
    staging = stageChunk(staging, "p", chunk(1, 0));
    staging = stageChunk(staging, "p", chunk(1, 2));
    expect(staging.held).toBe(1);
    staging = stageChunk(staging, "p", chunk(1, 1));
    staging = stageChunk(staging, "p", chunk(1, 1));
    expect(staging.held).toBe(2);
    staging = stageChunk(staging, "p", chunk(2, 0));
    expect(staging).toMatchObject({ transfer: 2, held: 1 });
    // The entries go into the map the replica will take over, as they come.
    const entry = source(1, 1).entries[0]!;
    staging = stageChunk(staging, "p", { ...chunk(2, 1), entries: [entry] });
    expect([...staging.entries.values()]).toEqual([entry]);
  });

  it("starts over on a snapshot of another position under a transfer number it staged: the sender restarted in place and counts its transfers afresh", () => {
    const entry = (value: number): StoredEntry => ({ ...source(1, 1).entries[0]!, value: new Uint8Array([value]) });
    // A copy of the last chunk of a snapshot installed already (a duplicate, come late): staged again.
    let staging: Staging | undefined = stageChunk(undefined, "p", { transfer: 1, epoch: 8, index: 655, chunk: 0, chunkCount: 1, entries: [entry(1)], locks: [], applied: [], nextToken: 7 });
    expect(staging.held).toBe(1);
    // The sender's next incarnation (same id) sends its first transfer, of a later position.
    staging = stageChunk(staging, "p", { transfer: 1, epoch: 12, index: 988, chunk: 0, chunkCount: 1, entries: [entry(2)], locks: [], applied: [], nextToken: 9 });
    expect(staging).toMatchObject({ transfer: 1, epoch: 12, index: 988, held: 1, nextToken: 9 });
    expect([...staging.entries.values()]).toEqual([entry(2)]);
  });
});
