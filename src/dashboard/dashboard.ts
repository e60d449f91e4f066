import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { Prober, type ProbeOptions } from "../diagnostics/probe.ts";
import { BlazeError } from "../errors.ts";
import { type DashboardState, DashboardModel } from "./dashboard-state.ts";
import { DASHBOARD_PAGE } from "./page.ts";

/** Where the dashboard serves, and what it watches. */
export interface DashboardOptions extends Omit<ProbeOptions, "includeEntries"> {
  /** The HTTP port. Default 8080; 0 picks a free one (see `Dashboard.port`). */
  readonly port?: number;
  /** The address to listen on. Default "127.0.0.1" (this host only). */
  readonly host?: string;
  /** How often the cluster is asked, in ms. Default 1000. */
  readonly intervalMs?: number;
}

/** A running dashboard. */
export interface Dashboard extends AsyncDisposable {
  /** Where it listens (the port chosen, with port 0). */
  readonly url: string;
  readonly port: number;
  /** What the page shows now. */
  readonly state: DashboardState;
  close(): Promise<void>;
}

type NodeHttp = typeof import("node:http");

/**
 * Starts the dashboard: it asks the cluster's members to describe themselves every `intervalMs`, as
 * `blaze probe` does — an observer that is no member: it counts in no view, takes no queue message and
 * holds no sender back — and serves a page (`/`) that follows it live over Server-Sent Events
 * (`/events`), and the latest state as JSON (`/state`). Runs on Node, Bun and Deno (`node:http`).
 */
export async function startDashboard(options: DashboardOptions = {}): Promise<Dashboard> {
  const intervalMs = options.intervalMs ?? 1_000;
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 100) throw new BlazeError("INVALID_OPTION", `invalid option "dashboard.intervalMs": a whole number of ms, at least 100`, { path: ["intervalMs"] });
  const port = options.port ?? 8_080;
  if (!Number.isSafeInteger(port) || port < 0 || port > 65_535) throw new BlazeError("INVALID_OPTION", `invalid option "dashboard.port": from 0 to 65535`, { path: ["port"] });
  const { port: _port, host: _host, intervalMs: _interval, ...probeOptions } = options;
  const prober = await Prober.open({ ...probeOptions, includeEntries: true });
  const model = new DashboardModel(options.cluster ?? "activeblaze");
  const streams = new Set<ServerResponse>();
  const getBuiltinModule = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
  if (typeof getBuiltinModule !== "function") throw new BlazeError("WRONG_RUNTIME", "the dashboard needs node:http (Node 20.16 or later, Bun or Deno)");
  const { createServer } = getBuiltinModule("node:http") as NodeHttp;
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? "/", "http://dashboard").pathname;
    if (request.method !== "GET") return void response.writeHead(405, { allow: "GET" }).end();
    if (path === "/") return void response.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(DASHBOARD_PAGE);
    if (path === "/state") return void response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(model.state));
    if (path === "/events") {
      response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
      response.write(`retry: 1000\ndata: ${JSON.stringify(model.state)}\n\n`);
      streams.add(response);
      request.on("close", () => streams.delete(response));
      return;
    }
    response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === "object" && address !== null ? address.port : port;
  let closed = false;
  const loop = (async () => {
    while (!closed) {
      const started = Date.now();
      const state = model.update(await prober.ask({ timeoutMs: Math.min(1_000, intervalMs) }), Date.now());
      const event = `data: ${JSON.stringify(state)}\n\n`;
      for (const stream of streams) stream.write(event);
      const wait = intervalMs - (Date.now() - started);
      if (wait > 0 && !closed) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();
  const host = options.host ?? "127.0.0.1";
  const dashboard: Dashboard = {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${bound}/`,
    port: bound,
    get state() {
      return model.state;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const stream of streams) stream.end();
      await loop.catch(() => undefined);
      await prober.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
  return dashboard;
}
