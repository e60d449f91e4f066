import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");

function blaze(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(join(root, "node_modules", ".bin", "tsx"), [join(root, "src", "cli", "blaze.ts"), ...args], {
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

interface VectorFile {
  testGroups: Array<{ messageType: string; tests: Array<{ name: string; hex: string; result: string; expected?: unknown; error?: string }> }>;
}
const vectors = JSON.parse(readFileSync(join(root, "conformance", "vectors", "v1", "envelope.json"), "utf8")) as VectorFile;
const valid = vectors.testGroups.flatMap((g) => g.tests).find((t) => t.result === "valid" && t.hex.length < 400)!;
const invalid = (JSON.parse(readFileSync(join(root, "conformance", "vectors", "v1", "invalid.json"), "utf8")) as VectorFile).testGroups
  .flatMap((g) => g.tests)
  .find((t) => t.error === "WRONG_CLUSTER")!;

describe("blaze", () => {
  it("prints help", () => {
    const { status, stdout } = blaze("--help");
    expect(status).toBe(0);
    expect(stdout).toContain("blaze inspect");
    expect(stdout).toContain("blaze demo");
  });

  it("inspect decodes hex through the schema and prints ProtoJSON", () => {
    const { status, stdout } = blaze("inspect", valid.hex);
    expect(status, stdout).toBe(0);
    expect(JSON.parse(stdout)).toEqual(valid.expected);
  });

  it("inspect reads a file of raw bytes", () => {
    const file = join(mkdtempSync(join(tmpdir(), "blaze-inspect-")), "datagram.bin");
    writeFileSync(file, Buffer.from(valid.hex, "hex"));
    const { status, stdout } = blaze("inspect", file);
    expect(status).toBe(0);
    expect(JSON.parse(stdout)).toEqual(valid.expected);
  });

  it("inspect reports a refusal with its code and exits 1", () => {
    const { status, stderr } = blaze("inspect", invalid.hex, "--cluster", "conformance");
    expect(status).toBe(1);
    expect(stderr).toContain("WRONG_CLUSTER");
    expect(blaze("inspect", "0b").stderr).toContain("DECODE_FAILED");
  });

  it("demo: members exchange messages, share a map, and a lock moves from a killed member to a waiting one", () => {
    // A cluster name of its own: other runs of the demo on this machine use the same multicast group.
    const { status, stdout, stderr } = blaze("demo", "--cluster", `cli-test-${process.pid}-${Date.now().toString(36)}`);
    expect(status, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).toContain("coordinator bravo (weight 10)");
    for (const name of ["alpha", "bravo", "charlie"]) {
      expect(stdout).toContain(`${name}: delivered 16/16 topic messages`);
      expect(stdout).toContain(`${name} sees update color: green -> red`);
    }
    expect(stdout).toContain(`every member reads "color" locally: alpha red, bravo red, charlie red`);
    expect(stdout).toMatch(/delta \(process \d+\): joined with the map's 2 entries; holds the lock on "printer"/);
    expect(stdout).toContain(`alpha sees the lock on "printer" freed (delta left the group)`);
    expect(stdout).toMatch(/charlie got the lock on "printer" \d+ ms after the kill/);
    expect(stdout).toContain("the map: 2 entries at every member");
  }, 90_000);

  it("rejects input that is neither hex nor a file", () => {
    const { status, stderr } = blaze("inspect", "not-hex-or-file");
    expect(status).toBe(2);
    expect(stderr).toContain("neither hex nor a readable file");
  });
});
