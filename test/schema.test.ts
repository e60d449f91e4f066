import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const buf = join(root, "node_modules", ".bin", "buf");
const env = { ...process.env, PATH: `${join(root, "node_modules", ".bin")}:${process.env["PATH"] ?? ""}` };

function run(args: string[]): string {
  return execFileSync(buf, args, { cwd: root, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

describe("schema", () => {
  const scratch = mkdtempSync(join(tmpdir(), "activeblaze-gen-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("passes buf lint", () => {
    expect(run(["lint"])).toBe("");
  });

  it("stays wire-compatible with the released baseline (buf breaking)", () => {
    expect(run(["breaking", "--against", "schema/baseline/activeblaze-v1.binpb"])).toBe("");
  });

  it("matches the committed generated code in gen/", () => {
    run(["generate", "--output", scratch]);
    const fresh = join(scratch, "gen");
    const committed = join(root, "gen");
    expect(listFiles(fresh)).toEqual(listFiles(committed));
    for (const file of listFiles(committed)) {
      expect(readFileSync(join(fresh, file), "utf8"), `gen/${file} differs from a fresh buf generate`).toBe(
        readFileSync(join(committed, file), "utf8"),
      );
    }
  });
});
