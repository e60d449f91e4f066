/** The package as JSR publishes it: `deno publish --dry-run` finds nothing to complain about, and ships only the library. */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");

describe("publishing to JSR", () => {
  it("deno publish --dry-run is clean (explicit types, analyzable imports) and lists only the library's files", () => {
    const run = spawnSync(join(root, "node_modules", ".bin", "deno"), ["publish", "--dry-run", "--allow-dirty"], {
      cwd: root,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, NO_COLOR: "1" },
    });
    // Deno reports on standard error.
    const output = `${run.stdout}${run.stderr}`;
    expect(run.status, output).toBe(0);
    expect(output).toContain("Success Dry run complete");
    expect(output).not.toMatch(/^(warning|error)\b/m);
    const files = [...output.matchAll(/file:\/\/\S+/g)].map((match) => match[0].slice(`file://${root}/`.length));
    expect(files).toContain("src/index.ts");
    expect(files).toContain("LICENSE");
    expect(files.filter((file) => /\.test\.ts$|^test\/|^bench\/|^conformance\/|^src\/cli\//.test(file))).toEqual([]);
  }, 120_000);
});
