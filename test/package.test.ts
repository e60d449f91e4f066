import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The packed package, installed into a scratch project and imported from Node, Bun and Deno.
const root = join(import.meta.dirname, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);
const project = mkdtempSync(join(tmpdir(), "activeblaze-consumer-"));

function run(command: string, args: string[], cwd = project): string {
  return execFileSync(command, args, { cwd, encoding: "utf8", timeout: 120_000, stdio: ["ignore", "pipe", "pipe"] });
}

function lastJsonLine(output: string): unknown {
  const line = output.trim().split("\n").at(-1) ?? "";
  return JSON.parse(line);
}

describe("the packed package", () => {
  beforeAll(() => {
    if (!existsSync(join(root, "dist", "index.js"))) throw new Error("build first: npm run build");
    const tarball = run("npm", ["pack", "--silent", "--pack-destination", project], root).trim().split("\n").at(-1)!;
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(project, tarball)]);
    copyFileSync(join(root, "test", "fixtures", "consumer.mjs"), join(project, "consumer.mjs"));
  }, 180_000);
  afterAll(() => rmSync(project, { recursive: true, force: true }));

  const expected = { decoded: true, tooLarge: true, simulated: true, inspected: 'BlazeMessage { text: "hi", n: 5 }' };

  it("works from Node with the node:dgram adapter", () => {
    expect(lastJsonLine(run(process.execPath, ["consumer.mjs"]))).toEqual({ runtime: "node", ...expected });
  });

  it("works from Bun with the Bun.udpSocket adapter", () => {
    expect(lastJsonLine(run(bin("bun"), ["consumer.mjs"]))).toEqual({ runtime: "bun", ...expected });
  });

  it("works from Deno with the Deno.listenDatagram adapter", () => {
    const output = run(bin("deno"), ["run", "--allow-all", "--unstable-net", "consumer.mjs"]);
    expect(lastJsonLine(output)).toEqual({ runtime: "deno", ...expected });
  });

  it("runs the blaze command line", () => {
    const help = run(join(project, "node_modules", ".bin", "blaze"), ["--help"]);
    expect(help).toContain("blaze inspect");
  });
});
