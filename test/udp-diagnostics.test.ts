/**
 * Watching a secured cluster over real UDP on loopback: three members with `security` on answer a probe,
 * a dashboard and `blaze probe` (a process of its own) that hold the cluster's key — sealed, over
 * multicast and to static peers, with node:crypto and with WebCrypto — and refuse, counting it, one in
 * clear or under another key, which says the cluster may need a key.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUdpTransport } from "../src/adapters/node.ts";
import { nodeCrypto } from "../src/adapters/node-crypto.ts";
import { ClusterChannel } from "../src/cluster/cluster-channel.ts";
import { startDashboard } from "../src/dashboard/dashboard.ts";
import { probeCluster, type ProbeOptions } from "../src/diagnostics/probe.ts";
import { BlazeMessage } from "../src/message/blaze-message.ts";
import { encodeBase64 } from "../src/security/options.ts";
import { webCrypto } from "../src/security/web-crypto.ts";
import type { DropReason } from "../src/wire/drop-reason.ts";
import { FAST_TIMING, freshNetwork } from "./members.ts";
import { temporaryDirectory } from "./support/temporary.ts";

const root = join(import.meta.dirname, "..");
const KEY = { id: 7, secret: encodeBase64(nodeCrypto.generateIdentity().privateKey) };
const OTHER_SECRET = encodeBase64(nodeCrypto.generateIdentity().privateKey);

/** Runs `blaze` in a process of its own without blocking this one (its members must keep answering). */
function blaze(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(join(root, "node_modules", ".bin", "tsx"), [join(root, "src", "cli", "blaze.ts"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe("diagnostics of a secured cluster over UDP", () => {
  const { group, port, cluster } = freshNetwork("secured-probe");
  const network = { type: "multicast" as const, group, port };
  const members: ClusterChannel[] = [];

  beforeAll(async () => {
    for (const name of ["alpha", "bravo", "charlie"]) {
      members.push(
        new ClusterChannel({ name, cluster, network, transport: createUdpTransport, groups: ["g"], weight: name === "bravo" ? 10 : 0, ...FAST_TIMING, security: { keys: [KEY] } }),
      );
    }
    await Promise.all(members.map((member) => member.join({ timeoutMs: 15_000 })));
    await members[0]!.map.put("color", new BlazeMessage("blue"));
  }, 30_000);
  afterAll(async () => {
    await Promise.all(members.map((member) => member.shutDown()));
  });

  const probe = (options: Omit<ProbeOptions, "cluster" | "network"> & Pick<ProbeOptions, "network"> = {}) => probeCluster({ cluster, network, timeoutMs: 900, ...options });
  const dropped = (reason: DropReason) => members.map((member) => member.stats.dropped[reason]);
  const answered = () => members.map((member) => member.stats.network.diagnosticsAnswered);

  it("answers a probe holding the key, sealed: over multicast, to static peers, and with WebCrypto", async () => {
    const peers = members.map((member) => `127.0.0.1:${member.localAddress.port}`);
    for (const options of [{ security: { keys: [KEY] } }, { security: { keys: [KEY] }, network: { type: "static" as const, peers } }, { security: { keys: [KEY], provider: webCrypto } }]) {
      const result = await probe({ ...options, includeEntries: true });
      expect(result.members.map((m) => m.name)).toEqual(["alpha", "bravo", "charlie"]);
      expect(result.warnings).toEqual([]);
      for (const report of result.members) {
        expect(report.groups[0]).toMatchObject({ group: "g", coordinator: members[1]!.id });
        expect(report.groups[0]!.members).toHaveLength(3);
        expect(report.stateMap?.entries.map((e) => e.key)).toEqual(["color"]);
      }
    }
    // The probes proved their addresses, were answered, and became no one's peer.
    for (const member of members) expect(member.peers).toHaveLength(2);
  });

  it("refuses a probe in clear or under another key, counting it; the probe says the cluster may need a key", async () => {
    const cases = [
      { security: undefined, reason: "UNSEALED", warning: "no answer: the cluster may need a key" },
      { security: { keys: [{ id: KEY.id, secret: OTHER_SECRET }] }, reason: "AUTH_FAILED", warning: "no answer: the cluster may hold another key" },
      { security: { keys: [{ id: 1, secret: KEY.secret }] }, reason: "UNKNOWN_KEY", warning: "this probe seals with key 1" },
    ] as const;
    for (const { security, reason, warning } of cases) {
      const before = dropped(reason);
      const answeredBefore = answered();
      const result = await probe(security === undefined ? {} : { security });
      expect(result.members, reason).toEqual([]);
      expect(result.warnings.join("\n")).toContain(warning);
      // Every member got the three requests of the round, refused and counted each, and answered none.
      expect(dropped(reason).map((count, i) => count - before[i]!)).toEqual([3, 3, 3]);
      expect(answered()).toEqual(answeredBefore);
    }
  });

  it("a dashboard with the key shows the members; one without shows none and says why", async () => {
    await using keyed = await startDashboard({ cluster, network, port: 0, intervalMs: 300, security: { keys: [KEY] } });
    await using keyless = await startDashboard({ cluster, network, port: 0, intervalMs: 300 });
    await expect.poll(() => keyed.state.members.map((m) => m.name), { timeout: 10_000 }).toEqual(["alpha", "bravo", "charlie"]);
    expect(keyed.state.members[0]!.groups[0]).toMatchObject({ group: "g", coordinator: "bravo" });
    expect([...keyed.state.members[0]!.groups[0]!.members].sort()).toEqual(["alpha", "bravo", "charlie"]);
    expect(keyed.state.map?.entries.map((e) => e.key)).toEqual(["color"]);
    await expect.poll(() => keyless.state.round, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    expect(keyless.state.members).toEqual([]);
    expect(keyless.state.warnings.join("\n")).toContain("no answer: the cluster may need a key");
    const served = (await (await fetch(`${keyless.url}state`)).json()) as { warnings: string[] };
    expect(served.warnings.join("\n")).toContain("the cluster may need a key");
  }, 30_000);

  it("blaze probe --key-file and --key answer; without a key it exits 1 saying the cluster may need a key", async () => {
    const directory = temporaryDirectory("blaze-key-");
    const keyFile = join(directory, "key.json");
    // What `blaze keygen --id 7` prints.
    writeFileSync(keyFile, JSON.stringify(KEY, null, 2));
    const where = ["--cluster", cluster, "--group", group, "--group-port", String(port), "--timeout", "900"];
    const [fromFile, fromFlag, keyless] = await Promise.all([
      blaze("probe", ...where, "--key-file", keyFile),
      blaze("probe", ...where, "--key", KEY.secret, "--key-id", String(KEY.id), "--json"),
      blaze("probe", ...where),
    ]);
    expect(fromFile.status, fromFile.stderr).toBe(0);
    expect(fromFile.stdout).toContain(`cluster "${cluster}": 3 member(s) answered`);
    for (const member of members) expect(fromFile.stdout).toMatch(new RegExp(`\\n${member.name}\\s+${member.id.slice(0, 8)}\\s+127\\.0\\.0\\.1:${member.localAddress.port}\\s`));
    expect(fromFlag.status, fromFlag.stderr).toBe(0);
    expect((JSON.parse(fromFlag.stdout) as { members: Array<{ name: string }> }).members.map((m) => m.name)).toEqual(["alpha", "bravo", "charlie"]);
    expect(keyless.status).toBe(1);
    expect(keyless.stdout).toContain("warning: no answer: the cluster may need a key");
    expect(keyless.stdout).toContain("no member answered");
  }, 90_000);
});
