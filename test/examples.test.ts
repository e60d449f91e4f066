/** The examples under examples/, one per runtime, run as a user runs them (the Node and Bun ones on the built package). */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);

function run(command: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(command, args, { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe("examples", () => {
  it.each([
    ["Node", process.execPath, ["examples/node/topics.mjs"], "ok: 3 prices received"],
    ["Bun", bin("bun"), ["examples/bun/request-reply.ts"], "ok: the request was answered"],
    ["Deno", bin("deno"), ["run", "--unstable-net", "--allow-net", "--allow-env", "--allow-read", "examples/deno/replicated-map.ts"], "ok: every replica holds bob's write"],
  ])("the %s example runs to its end", (_runtime, command, args, success) => {
    if (!existsSync(join(root, "dist", "index.js"))) throw new Error("build first: npm run build");
    const { status, output } = run(command, args as string[]);
    expect(status, output).toBe(0);
    expect(output).toContain(success);
  }, 60_000);
});
