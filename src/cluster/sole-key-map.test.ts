import { describe, expect, it } from "vitest";
import { SoleKeyMap } from "./sole-key-map.ts";

/** The map's contents as a Map's would be listed: entries in order, size, and each key's value. */
function listed<K, V>(map: ReadonlyMap<K, V>): { entries: Array<[K, V]>; size: number } {
  return { entries: [...map], size: map.size };
}

describe("SoleKeyMap", () => {
  it("does what a Map does, through a key coming and going beside keys that stay", () => {
    const map = new SoleKeyMap<string, number>();
    const reference = new Map<string, number>();
    const steps: Array<(m: Map<string, number> | SoleKeyMap<string, number>) => unknown> = [
      (m) => m.set("a", 1),
      (m) => m.get("a"),
      (m) => m.delete("a"),
      (m) => m.delete("a"),
      (m) => m.set("a", 2),
      (m) => m.set("b", 3),
      (m) => m.set("a", 4),
      (m) => m.has("b"),
      (m) => m.delete("a"),
      (m) => m.set("a", 5),
      (m) => m.set("c", 6),
      (m) => m.delete("b"),
      (m) => m.delete("a"),
      (m) => m.delete("c"),
      (m) => m.has("c"),
      (m) => m.set("d", 7),
      (m) => m.clear(),
      (m) => m.get("d"),
      (m) => m.set("e", 8),
    ];
    for (const step of steps) {
      const got = step(map);
      const expected = step(reference);
      expect(got === map ? reference : got).toEqual(expected);
      expect(listed(map)).toEqual(listed(reference));
      expect([...map.keys()]).toEqual([...reference.keys()]);
      expect([...map.values()]).toEqual([...reference.values()]);
    }
  });

  it("may lose its entries while it is iterated, and copies into a Map", () => {
    const map = new SoleKeyMap<string, number>();
    for (const [key, value] of [["x", 1], ["y", 2], ["z", 3]] as const) map.set(key, value);
    const seen: string[] = [];
    for (const [key] of map) {
      seen.push(key);
      map.delete(key);
    }
    expect(seen).toEqual(["x", "y", "z"]);
    expect(map.size).toBe(0);
    map.set("w", 4);
    expect(new Map(map)).toEqual(new Map([["w", 4]]));
    const each: Array<[string, number]> = [];
    map.forEach((value, key) => each.push([key, value]));
    expect(each).toEqual([["w", 4]]);
  });
});
