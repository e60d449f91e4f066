import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The packed package, installed into a scratch project (with its runtime dependencies only) and used
// from Node, Bun and Deno as a user would.
const root = join(import.meta.dirname, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);
const project = mkdtempSync(join(tmpdir(), "activeblaze-consumer-"));
let tarball = "";

function run(command: string, args: string[], cwd = project, timeout = 120_000): string {
  return execFileSync(command, args, { cwd, encoding: "utf8", timeout, stdio: ["ignore", "pipe", "pipe"] });
}

function attempt(command: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(command, args, { cwd: project, encoding: "utf8", timeout: 120_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

function lastJsonLine(output: string): unknown {
  const line = output.trim().split("\n").at(-1) ?? "";
  return JSON.parse(line);
}

function sizeOf(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.size;
  return readdirSync(path).reduce((sum, entry) => sum + sizeOf(join(path, entry)), 0);
}

describe("the packed package", () => {
  beforeAll(() => {
    if (!existsSync(join(root, "dist", "index.js"))) throw new Error("build first: npm run build");
    tarball = run("npm", ["pack", "--silent", "--pack-destination", project], root).trim().split("\n").at(-1)!;
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    // npm may take minutes on a machine busy with other work.
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(project, tarball)], project, 300_000);
    copyFileSync(join(root, "test", "fixtures", "consumer.mjs"), join(project, "consumer.mjs"));
  }, 360_000);
  afterAll(() => rmSync(project, { recursive: true, force: true }));

  const expected = { decoded: true, tooLarge: true, simulated: true, jms: true, inspected: 'BlazeMessage { text: "hi", n: 5 }' };

  it("holds the library, its license and changelog, and no source maps, tests or benchmarks", () => {
    const files = run("tar", ["-tzf", join(project, tarball)]).trim().split("\n").map((file) => file.replace(/^package\//, ""));
    for (const file of ["LICENSE", "CHANGELOG.md", "README.md", "package.json", "dist/index.js", "dist/cli/blaze.js", "dist/otel.js", "dist/dashboard/index.js"]) expect(files).toContain(file);
    expect(files.filter((file) => file.endsWith(".map") || /^(test|bench|src|examples)\//.test(file))).toEqual([]);
    expect(readFileSync(join(project, "node_modules", "activeblaze", "LICENSE"), "utf8")).toContain("Apache License");
  });

  it("installs its runtime dependencies only", () => {
    const installed = readdirSync(join(project, "node_modules")).filter((name) => !name.startsWith("."));
    expect(installed.sort()).toEqual(["@bufbuild", "activeblaze", "zod"]);
    // What `npx activeblaze demo` downloads, all told.
    expect(sizeOf(join(project, "node_modules"))).toBeLessThan(20 * 1024 * 1024);
  });

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

  it("runs the demo with nothing but the package and its runtime dependencies (npx activeblaze demo)", () => {
    const { status, output } = attempt(join(project, "node_modules", ".bin", "activeblaze"), ["demo", "--messages", "2"]);
    expect(status, output).toBe(0);
    expect(output).toMatch(/-- cluster "demo-[a-z0-9]+"/);
    expect(output).toContain("charlie: delivered 7/7 topic messages");
  }, 60_000);

  it("runs the command line under Bun and Deno, on their own adapters", () => {
    const blaze = join(project, "node_modules", "activeblaze", "dist", "cli", "blaze.js");
    const probe = ["probe", "--cluster", `nobody-${process.pid}`, "--timeout", "200"];
    const underBun = attempt(bin("bun"), ["--bun", blaze, ...probe]);
    expect(underBun.status, underBun.output).toBe(1);
    expect(underBun.output).toContain("no member answered");
    const underDeno = attempt(bin("deno"), ["run", "-A", "--unstable-net", blaze, ...probe]);
    expect(underDeno.status, underDeno.output).toBe(1);
    expect(underDeno.output).toContain("no member answered");
    // Without --unstable-net Deno has no UDP: the command says what to add.
    const withoutNet = attempt(bin("deno"), ["run", "-A", blaze, ...probe]);
    expect(withoutNet.status).toBe(1);
    expect(withoutNet.output).toContain("--unstable-net");
    expect(run(bin("bun"), ["--bun", blaze, "--version"]).trim()).toBe(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version);
  }, 60_000);

  it("runs the blaze command line", () => {
    const help = run(join(project, "node_modules", ".bin", "blaze"), ["--help"]);
    expect(help).toContain("blaze inspect");
  });

  it("type-checks the README's snippets under tsc --strict against the packed types", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const snippets = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!).filter((code) => /from "activeblaze/.test(code));
    expect(snippets.length).toBeGreaterThanOrEqual(4);
    const files = snippets.map((code, i) => {
      const file = join(project, `snippet-${i}.ts`);
      writeFileSync(file, `${code}\nexport {};\n`);
      return file;
    });
    // A user's strict project, with no runtime's types: the snippets need none.
    // The OpenTelemetry snippet's API package is the user's to install (an optional peer): this repository's copy stands in.
    mkdirSync(join(project, "node_modules", "@opentelemetry"), { recursive: true });
    symlinkSync(join(root, "node_modules", "@opentelemetry", "api"), join(project, "node_modules", "@opentelemetry", "api"));
    const compilerOptions = { strict: true, noEmit: true, skipLibCheck: true, target: "es2022", module: "nodenext", moduleResolution: "nodenext", lib: ["es2022", "esnext.disposable", "dom"], types: [] };
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify({ compilerOptions, files }));
    const tsc = attempt(bin("tsc"), ["-p", project]);
    expect(tsc.status, tsc.output).toBe(0);
  }, 60_000);
});
