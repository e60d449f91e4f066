/**
 * The dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by playwright-core)
 * opens the page against a running 3-member cluster, finds the members, a map write and a lock, sees a
 * member killed with SIGKILL disappear, and keeps a screenshot in test/output/dashboard.png.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { createUdpTransport } from "../src/adapters/node.ts";
import { ClusterChannel } from "../src/cluster/cluster-channel.ts";
import { startDashboard } from "../src/dashboard/dashboard.ts";
import type { DashboardState } from "../src/dashboard/dashboard-state.ts";
import { BlazeMessage } from "../src/message/blaze-message.ts";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const root = join(import.meta.dirname, "..");
const output = join(root, "test", "output");
const TIMING = { heartbeatIntervalMs: 200, failureTimeoutMs: 1_000, verifyTimeoutMs: 300, discoveryTimeoutMs: 300 } as const;

const closing: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const close of closing.reverse()) await close();
});

describe.skipIf(!existsSync(CHROMIUM))(`the dashboard in headless Chromium (${CHROMIUM}; .ci/run installs it)`, () => {
  it("shows the members, a map write and a lock live, and a killed member disappearing", async () => {
    const cluster = `dashboard-${process.pid}-${Date.now().toString(36)}`;
    const network = { type: "multicast" as const, group: `239.255.${1 + (process.pid % 250)}.${1 + ((Date.now() >> 3) % 250)}`, port: 20_000 + ((process.pid * 7) % 20_000) };
    const common = { cluster, network, groups: ["g"], ...TIMING };
    // charlie runs in a process of its own, to be killed.
    const charlie: ChildProcess = spawn(join(root, "node_modules", ".bin", "tsx"), [join(root, "test", "fixtures", "watched-member.ts"), JSON.stringify({ ...common, name: "charlie" })], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    closing.push(() => charlie.kill("SIGKILL"));
    const joined = new Promise<void>((resolve, reject) => {
      charlie.stdout!.on("data", (chunk: Buffer) => chunk.toString().includes("joined") && resolve());
      charlie.on("exit", (code) => reject(new Error(`charlie exited (${code})`)));
    });
    const members = ["alpha", "bravo"].map((name) => new ClusterChannel({ ...common, name, weight: name === "bravo" ? 10 : 0, transport: createUdpTransport }));
    closing.push(() => Promise.all(members.map((member) => member.shutDown())));
    await Promise.all([...members.map((member) => member.join({ timeoutMs: 20_000 })), joined]);
    const [alpha, bravo] = members as [ClusterChannel, ClusterChannel];

    const dashboard = await startDashboard({ cluster, network, port: 0, intervalMs: 300 });
    closing.push(() => dashboard.close());
    const profile = mkdtempSync(join(tmpdir(), "blaze-chromium-"));
    closing.push(() => rmSync(profile, { recursive: true, force: true }));
    const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
    closing.push(() => browser.close());
    const page = browser.pages()[0] ?? (await browser.newPage());
    await page.goto(dashboard.url);

    // Every member, each in a view of three coordinated by bravo (the heaviest).
    for (const name of ["alpha", "bravo", "charlie"]) await page.waitForSelector(`#members tr[data-member="${name}"]`, { timeout: 15_000 });
    await expect.poll(() => page.textContent(`#members tr[data-member="alpha"]`), { timeout: 10_000 }).toContain("g (v");
    expect(await page.textContent(`#members tr[data-member="alpha"]`)).toMatch(/3 members, bravo/);
    expect(await page.textContent("#cluster")).toBe(cluster);

    // A write and a lock appear.
    await alpha.map.put("color", new BlazeMessage("blue"));
    const lock = await bravo.map.lock("printer");
    await page.waitForSelector(`#entries tr[data-key="color"]`, { timeout: 10_000 });
    expect(await page.textContent(`#entries tr[data-key="color"]`)).toContain('BlazeMessage { text: "blue" }');
    await page.waitForSelector(`#locks tr[data-key="printer"]`, { timeout: 10_000 });
    expect(await page.textContent(`#locks tr[data-key="printer"]`)).toContain(`bravo${lock.fencingToken}`);
    // Page-side expressions (run in the browser, not here).
    await page.waitForFunction(`document.querySelectorAll("#throughput polyline").length >= 3`, undefined, { timeout: 10_000 });

    // charlie is killed: it stops answering, and its peers drop it from the view, which the page shows.
    charlie.kill("SIGKILL");
    await page.waitForSelector(`#members tr[data-member="charlie"]`, { state: "detached", timeout: 15_000 });
    await expect.poll(() => page.textContent(`#members tr[data-member="alpha"]`), { timeout: 15_000 }).toMatch(/2 members, bravo/);
    await page.waitForFunction(`[...document.querySelectorAll('#events li[data-kind="leave"]')].some((li) => li.textContent.includes("charlie"))`, undefined, { timeout: 15_000 });

    const state = (await (await fetch(`${dashboard.url}state`)).json()) as DashboardState;
    expect(state.members.map((m) => m.name)).toEqual(["alpha", "bravo"]);
    expect(state.map?.master).toBe("bravo");
    mkdirSync(output, { recursive: true });
    await page.screenshot({ path: join(output, "dashboard.png"), fullPage: true });
  }, 120_000);
});
