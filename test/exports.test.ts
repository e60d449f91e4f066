import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VERSION } from "../src/version.ts";
import { entries } from "../tsup.config.ts";

const root = join(import.meta.dirname, "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  version: string;
  exports: Record<string, string | Record<string, string>>;
};
const deno = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as { version: string; exports: Record<string, string> };

// dist/x.js is built from the tsup entry named x; deno.json must point at that entry's source.
const sourceOfDist = new Map(Object.entries(entries).map(([name, source]) => [`./dist/${name}.js`, `./${source}`]));

describe("export maps", () => {
  it("package.json and deno.json export the same subpaths", () => {
    const npmPaths = Object.keys(pkg.exports).filter((path) => path !== "./package.json");
    expect(Object.keys(deno.exports).sort()).toEqual(npmPaths.sort());
  });

  it("every subpath maps to the same source in both maps (Deno's condition for ./udp)", () => {
    for (const [subpath, target] of Object.entries(deno.exports)) {
      const npmTarget = pkg.exports[subpath]!;
      const dist = typeof npmTarget === "string" ? npmTarget : (npmTarget["deno"] ?? npmTarget["default"]!);
      expect(sourceOfDist.get(dist), `${subpath}: ${dist}`).toBe(target);
    }
  });

  it("every tsup entry is exported", () => {
    const exported = new Set(
      Object.values(pkg.exports).flatMap((target) => (typeof target === "string" ? [target] : Object.values(target))),
    );
    for (const name of Object.keys(entries)) expect(exported.has(`./dist/${name}.js`), name).toBe(true);
  });

  it("./udp picks the adapter of each runtime by condition", () => {
    expect(pkg.exports["./udp"]).toMatchObject({
      deno: "./dist/adapters/deno.js",
      bun: "./dist/adapters/bun.js",
      node: "./dist/adapters/node.js",
      default: "./dist/adapters/node.js",
    });
  });

  it("package.json, deno.json and the library say the same version", () => {
    expect(deno.version).toBe(pkg.version);
    expect(VERSION).toBe(pkg.version);
  });
});
