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

  it("keygen prints a new key, or an identity, each time another", () => {
    const first = JSON.parse(blaze("keygen").stdout) as { id: number; secret: string };
    const second = JSON.parse(blaze("keygen", "--id", "9").stdout) as { id: number; secret: string };
    expect(first.id).toBe(1);
    expect(second.id).toBe(9);
    for (const key of [first, second]) expect(Buffer.from(key.secret, "base64")).toHaveLength(32);
    expect(first.secret).not.toBe(second.secret);
    const identity = JSON.parse(blaze("keygen", "--identity").stdout) as { publicKey: string; privateKey: string };
    expect(Buffer.from(identity.publicKey, "base64")).toHaveLength(32);
    expect(Buffer.from(identity.privateKey, "base64")).toHaveLength(32);
    expect(blaze("keygen", "--id", "0").status).toBe(1);
  });

  it("inspect --key opens a sealed datagram and prints its seal and envelope; another key or a changed byte is refused", () => {
    const sealed = JSON.parse(readFileSync(join(root, "conformance", "vectors", "v1", "sealed.json"), "utf8")) as VectorFile & {
      testGroups: Array<{ security?: { keys: Array<{ secret: string }> } }>;
    };
    const group = sealed.testGroups[0]!;
    const test = group.tests.find((t) => t.name === "sealed/aes-gcm/bundle")!;
    const secret = group.security!.keys[0]!.secret;
    const opened = blaze("inspect", test.hex, "--key", secret);
    expect(opened.status, opened.stderr).toBe(0);
    expect(JSON.parse(opened.stdout)).toEqual({ seal: { keyId: 1, mode: "encrypt", counter: 1 }, envelope: test.expected });
    const wrong = blaze("inspect", test.hex, "--key", Buffer.alloc(32, 7).toString("base64"));
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toContain("AUTH_FAILED");
    const flipped = Buffer.from(test.hex, "hex");
    flipped[flipped.length - 3]! ^= 1;
    expect(blaze("inspect", flipped.toString("hex"), "--key", secret).stderr).toContain("AUTH_FAILED");
    const unopened = blaze("inspect", test.hex);
    expect(unopened.status).toBe(1);
    expect(unopened.stderr).toContain("--key SECRET opens it");
    expect(blaze("inspect", test.hex, "--key", "short").status).toBe(2);
  });

  it("rejects input that is neither hex nor a file", () => {
    const { status, stderr } = blaze("inspect", "not-hex-or-file");
    expect(status).toBe(2);
    expect(stderr).toContain("neither hex nor a readable file");
  });
});
