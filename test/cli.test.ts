import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUdpTransport } from "../src/adapters/node.ts";
import { ClusterChannel } from "../src/cluster/cluster-channel.ts";
import { parseCommandLine, UsageError } from "../src/cli/command-line.ts";
import { BlazeMessage } from "../src/message/blaze-message.ts";
import { temporaryDirectory } from "./support/temporary.ts";

const root = join(import.meta.dirname, "..");
const tsx = join(root, "node_modules", ".bin", "tsx");
const cli = join(root, "src", "cli", "blaze.ts");

function blaze(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(tsx, [cli, ...args], { encoding: "utf8", timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs the command line without blocking this process (members in it must keep answering). */
function blazeAsync(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(tsx, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
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
    for (const command of ["inspect", "demo", "probe", "dashboard", "perf"]) expect(stdout).toContain(`blaze ${command}`);
  });

  it("inspect decodes hex through the schema, member ids in hex (--protojson: canonical ProtoJSON)", () => {
    const canonical = blaze("inspect", valid.hex, "--protojson");
    expect(canonical.status, canonical.stdout).toBe(0);
    expect(JSON.parse(canonical.stdout)).toEqual(valid.expected);
    const readable = blaze("inspect", valid.hex);
    expect(readable.status).toBe(0);
    const senderId = (valid.expected as { senderId: string }).senderId;
    expect(JSON.parse(readable.stdout)).toEqual({ ...(valid.expected as object), senderId: Buffer.from(senderId, "base64").toString("hex") });
  });

  it("inspect reads a file of raw bytes", () => {
    const file = join(temporaryDirectory("blaze-inspect-"), "datagram.bin");
    writeFileSync(file, Buffer.from(valid.hex, "hex"));
    const { status, stdout } = blaze("inspect", file, "--protojson");
    expect(status).toBe(0);
    expect(JSON.parse(stdout)).toEqual(valid.expected);
  });

  it("inspect reports a refusal with its code and exits 1", () => {
    const { status, stderr } = blaze("inspect", invalid.hex, "--cluster", "conformance");
    expect(status).toBe(1);
    expect(stderr).toContain("WRONG_CLUSTER");
    expect(blaze("inspect", "0b").stderr).toContain("DECODE_FAILED");
  });

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
    expect(blaze("keygen", "--id", "0").status).toBe(2);
  });

  it("inspect --key opens a sealed datagram and prints its seal and envelope; another key or a changed byte is refused", () => {
    const sealed = JSON.parse(readFileSync(join(root, "conformance", "vectors", "v1", "sealed.json"), "utf8")) as VectorFile & {
      testGroups: Array<{ security?: { keys: Array<{ secret: string }> } }>;
    };
    const group = sealed.testGroups[0]!;
    const test = group.tests.find((t) => t.name === "sealed/aes-gcm/bundle")!;
    const secret = group.security!.keys[0]!.secret;
    const opened = blaze("inspect", test.hex, "--key", secret, "--protojson");
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

  it("probe and dashboard take a key: --key (with --key-id), or --key-file holding a secret, keygen's output or a security option", () => {
    const secret = Buffer.alloc(32, 5).toString("base64");
    const directory = temporaryDirectory("blaze-keys-");
    const file = (name: string, text: string) => (writeFileSync(join(directory, name), text), join(directory, name));
    const bare = file("bare", `${secret}\n`);
    const keygen = file("keygen.json", JSON.stringify({ id: 3, secret }));
    const option = file("security.json", JSON.stringify({ keys: [{ id: 1, secret }, { id: 2, secret }], primary: 2, mode: "authenticate" }));
    const securityOf = (args: string[]) => {
      const command = parseCommandLine(args, { progress: false }) as { command?: { probe: { security?: unknown } }; options?: { security?: unknown } };
      return command.command?.probe.security ?? command.options?.security;
    };
    expect(securityOf(["probe", "--key", secret])).toEqual({ keys: [{ id: 1, secret }] });
    expect(securityOf(["dashboard", "--key", secret, "--key-id", "9"])).toEqual({ keys: [{ id: 9, secret }] });
    expect(securityOf(["probe", "--key-file", bare, "--key-id", "4"])).toEqual({ keys: [{ id: 4, secret }] });
    expect(securityOf(["probe", "--key-file", keygen])).toEqual({ keys: [{ id: 3, secret }] });
    expect(securityOf(["dashboard", "--key-file", option])).toEqual({ keys: [{ id: 1, secret }, { id: 2, secret }], primary: 2, mode: "authenticate" });
    expect(securityOf(["probe"])).toBeUndefined();
    const refusals: Array<[string[], string]> = [
      [["probe", "--key", "short"], "--key is a key's secret, 32 bytes in base64"],
      [["probe", "--key", secret, "--key-file", bare], "--key and --key-file are one or the other"],
      [["probe", "--key-id", "2"], "--key-id goes with --key or --key-file"],
      [["probe", "--key", secret, "--key-id", "0"], "--key-id must be a whole number from 1"],
      [["probe", "--key-file", keygen, "--key-id", "2"], "--key-id goes with a bare secret"],
      [["probe", "--key-file", join(directory, "missing")], "--key-file: cannot read"],
      [["probe", "--key-file", file("broken.json", "{ id: 1")], "is not JSON"],
      [["probe", "--key-file", file("other.json", '{ "secrets": [] }')], "holds neither a key"],
      [["probe", "--key-file", file("null.json", "null")], "is a key's secret"],
      [["inspect", "--key-file", bare], "inspect takes no --key-file"],
    ];
    for (const [args, message] of refusals) {
      expect(() => parseCommandLine(args, { progress: false }), args.join(" ")).toThrow(UsageError);
      expect(() => parseCommandLine(args, { progress: false }), args.join(" ")).toThrow(message);
    }
  });

  it("checks every numeric flag, and refuses flags a command does not take", () => {
    const refusals: Array<[string[], string]> = [
      [["demo", "--messages", "abc"], '--messages must be a whole number from 1 to 10,000, got "abc"'],
      [["demo", "--messages", "0"], "--messages must be a whole number"],
      [["demo", "--messages", "2.5"], "--messages must be a whole number"],
      [["perf", "--size", "5"], "--size must be a whole number from 12"],
      [["perf", "--seconds=-1"], "--seconds must be a whole number"],
      [["perf", "--loss", "1"], "--loss must be a number from 0 to below 1"],
      [["perf", "--loss", "x"], "--loss must be a number from 0 to below 1"],
      [["perf", "--reliability", "fast"], "--reliability must be nack, best-effort, totem or fec"],
      [["probe", "--group-port", "70000"], "--group-port must be a whole number from 1 to 65,535"],
      [["dashboard", "--port", "http"], "--port must be a whole number from 0 to 65,535"],
      [["probe", "--port", "1"], "probe takes no --port"],
      [["probe", "--interval", "1.5", "--watch"], "--interval must be a whole number"],
      [["probe", "--timeout", ""], "--timeout must be a whole number"],
      [["probe", "--count", "0"], "--count must be a whole number"],
      [["probe", "--ttl", "300"], "--ttl must be a whole number from 0 to 255"],
      [["demo", "--port", "1"], "demo takes no --port"],
      [["probe", "--peers", "127.0.0.1:1", "--group", "239.1.1.1"], "--peers takes no --group"],
      [["probe", "--bind", "::1"], "--bind goes with --peers"],
      [["inspect", "--nonsense"], "Unknown option '--nonsense'"],
    ];
    for (const [args, message] of refusals) {
      let thrown: unknown;
      try {
        parseCommandLine(args, { progress: true });
      } catch (error) {
        thrown = error;
      }
      expect(thrown, args.join(" ")).toBeInstanceOf(UsageError);
      expect((thrown as Error).message, args.join(" ")).toContain(message);
    }
    expect(parseCommandLine(["perf"], { progress: true })).toMatchObject({ kind: "perf", json: false, options: { progress: true } });
    expect(parseCommandLine(["perf", "--json"], { progress: true })).toMatchObject({ kind: "perf", json: true, options: { progress: false } });
    expect(parseCommandLine(["perf"], { progress: false })).toMatchObject({ options: { progress: false } });
    const [first, second] = [parseCommandLine(["demo"], { progress: false }), parseCommandLine(["demo"], { progress: false })] as Array<{ cluster: string }>;
    expect(first!.cluster).toMatch(/^demo-[a-z0-9]+$/);
    expect(first!.cluster).not.toBe(second!.cluster);
    expect(parseCommandLine(["demo", "--cluster", "mine"], { progress: false })).toMatchObject({ cluster: "mine" });
    // As the command line reports it: the reason, and exit code 2.
    const { status, stderr } = blaze("demo", "--messages", "abc");
    expect(status).toBe(2);
    expect(stderr).toBe('blaze: --messages must be a whole number from 1 to 10,000, got "abc" (blaze --help says more)\n');
  });

  it("demo: two runs at once on one host, each a cluster of its own: members exchange messages, share a map, and a lock moves from a killed member to a waiting one", async () => {
    const runs = await Promise.all([blazeAsync("demo"), blazeAsync("demo")]);
    const clusters = runs.map(({ stdout }) => /-- cluster "(demo-[a-z0-9]+)"/.exec(stdout)?.[1]);
    expect(clusters[0]).toBeDefined();
    expect(clusters[0]).not.toBe(clusters[1]);
    for (const { status, stdout, stderr } of runs) {
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
    }
  }, 120_000);

  it("perf --json prints the result as JSON on stdout and draws no progress into a pipe", () => {
    const { status, stdout, stderr } = blaze("perf", "--seconds", "1", "--no-baseline", "--json");
    expect(status, stderr).toBe(0);
    const result = JSON.parse(stdout) as { complete: boolean; sent: number; scenario: { progress: boolean } };
    expect(result.complete).toBe(true);
    expect(result.sent).toBeGreaterThan(0);
    expect(result.scenario.progress).toBe(false);
    expect(stderr).not.toContain("[#");
  }, 90_000);
});

describe("blaze probe", () => {
  const cluster = `probe-${process.pid}-${Date.now().toString(36)}`;
  const network = { type: "multicast" as const, group: `239.255.${1 + (process.pid % 250)}.${1 + (Date.now() % 250)}`, port: 20_000 + (process.pid % 20_000) };
  const members: ClusterChannel[] = [];
  let printerToken = 0;

  beforeAll(async () => {
    for (const name of ["alpha", "bravo", "charlie"]) {
      members.push(
        new ClusterChannel({ name, cluster, network, transport: createUdpTransport, groups: ["g"], weight: name === "bravo" ? 10 : 0, heartbeatIntervalMs: 200, discoveryTimeoutMs: 300 }),
      );
    }
    await Promise.all(members.map((member) => member.join({ timeoutMs: 10_000 })));
    await members[0]!.map.put("color", new BlazeMessage("blue"));
    // Fencing tokens are unique, not numbered from 1: a term starts above every ceiling reported.
    printerToken = (await members[2]!.map.lock("printer")).fencingToken;
  }, 30_000);
  afterAll(async () => {
    await Promise.all(members.map((member) => member.shutDown()));
  });

  const where = () => ["--cluster", cluster, "--group", network.group, "--group-port", String(network.port)];

  it("prints every member, its view and coordinator, the map and its locks", async () => {
    const { status, stdout, stderr } = await blazeAsync("probe", ...where(), "--entries");
    expect(status, stderr).toBe(0);
    expect(stdout).toContain(`cluster "${cluster}": 3 member(s) answered`);
    for (const member of members) expect(stdout).toMatch(new RegExp(`\\n${member.name}\\s+${member.id.slice(0, 8)}\\s+127\\.0\\.0\\.1:${member.localAddress.port}\\s+node \\S+\\s+nack\\s+\\S+\\s+g \\(v\\d+, 3 members, bravo\\)`));
    expect(stdout).toContain(`replicated map of group "g": master bravo`);
    expect(stdout).toContain(`lock "printer": held by charlie, fencing token ${printerToken}`);
    expect(stdout).toContain(`color = BlazeMessage { text: "blue" } (version 1`);
    expect(stdout).toMatch(/recent events:\n/);
  });

  it("--json --watch --count 2 prints one JSON object a round; members saw no new peer", async () => {
    const { status, stdout, stderr } = await blazeAsync("probe", ...where(), "--json", "--watch", "--count", "2", "--interval", "200");
    expect(status, stderr).toBe(0);
    const rounds = stdout.trim().split("\n").map((line) => JSON.parse(line) as { cluster: string; members: Array<{ name: string; peerCount: number; groups: Array<{ coordinator: string }> }> });
    expect(rounds).toHaveLength(2);
    for (const round of rounds) {
      expect(round.cluster).toBe(cluster);
      expect(round.members.map((m) => m.name)).toEqual(["alpha", "bravo", "charlie"]);
      for (const member of round.members) {
        expect(member.peerCount).toBe(2);
        expect(member.groups[0]!.coordinator).toBe(members[1]!.id);
      }
    }
  });

  it("exits 1, saying so, when no member answers", async () => {
    const { status, stdout } = await blazeAsync("probe", "--cluster", `${cluster}-nobody`, "--group", network.group, "--group-port", String(network.port), "--timeout", "300");
    expect(status).toBe(1);
    expect(stdout).toContain("no member answered");
  });
});
