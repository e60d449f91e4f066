import { describe, expect, it } from "vitest";
import { Replica } from "./replica.ts";
import type { Update } from "./state-types.ts";
import { VisibleState } from "./visible-state.ts";

const A = { id: "0a".repeat(16), incarnation: 1 };

function put(index: number, key: string, value: number): Update {
  return {
    epoch: 1,
    index,
    coordinator: A.id,
    requests: [{ requestId: index, requester: A, changes: [{ kind: "put", entry: { key, value: new Uint8Array([value]), format: 0, version: index, owner: A, removeOnExit: false, ttlMs: 0 }, inserted: false }] }],
    tokenCeiling: 0,
    forget: [],
  };
}

describe("VisibleState", () => {
  it("shows an update the coordinator applied only once it is committed, in order", () => {
    const replica = new Replica(100);
    const visible = new VisibleState(replica);
    visible.hide(1, replica.apply(put(1, "x", 1), 0).changes);
    visible.hide(2, replica.apply(put(2, "x", 2), 0).changes);
    visible.hide(3, replica.apply(put(3, "y", 3), 0).changes);
    expect(visible.getEntry("x")).toBeUndefined();
    expect(visible.size).toBe(0);
    expect(replica.entries.size).toBe(2);
    expect(visible.commit(1).map((c) => c.kind)).toEqual(["insert"]);
    expect(visible.getEntry("x")?.value).toEqual(new Uint8Array([1]));
    expect([...visible.entries()].map((e) => e.key)).toEqual(["x"]);
    expect(visible.commit(3).map((c) => c.kind)).toEqual(["update", "insert"]);
    expect(visible.getEntry("x")?.value).toEqual(new Uint8Array([2]));
    expect(visible.size).toBe(2);
    expect(visible.pending).toBe(0);
  });

  it("puts the replica back to what was shown (a snapshot is about to replace the history)", () => {
    const replica = new Replica(100);
    const visible = new VisibleState(replica);
    replica.apply(put(1, "x", 1), 0);
    visible.hide(2, replica.apply(put(2, "x", 2), 0).changes);
    visible.hide(3, replica.apply(put(3, "z", 3), 0).changes);
    visible.revert();
    expect(replica.entries.get("x")?.value).toEqual(new Uint8Array([1]));
    expect(replica.entries.has("z")).toBe(false);
    expect(visible.commitAll()).toEqual([]);
  });
});
