import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { DashboardOptions } from "../dashboard/dashboard.ts";
import type { ProbeOptions } from "../diagnostics/probe.ts";
import { KEY_BYTES } from "../security/crypto-provider.ts";
import { decodeBase64, type SecurityOptions } from "../security/options.ts";
import type { GatewayCommandOptions } from "./gateway.ts";
import type { PerfOptions } from "./perf.ts";
import type { ProbeCommand } from "./probe.ts";

/** What the command line asks for, its flags checked. */
export type Command =
  | { readonly kind: "help"; readonly exitCode: number }
  | { readonly kind: "version" }
  | {
      readonly kind: "inspect";
      readonly input: string | undefined;
      readonly type: string | undefined;
      readonly cluster: string | undefined;
      readonly protoJson: boolean;
      /** A key's secret (base64) that opens a sealed datagram. */
      readonly key: string | undefined;
    }
  | { readonly kind: "keygen"; readonly id: number; readonly identity: boolean }
  | { readonly kind: "gateway"; readonly options: GatewayCommandOptions }
  | { readonly kind: "demo"; readonly messages: number; readonly cluster: string }
  | { readonly kind: "probe"; readonly command: ProbeCommand }
  | { readonly kind: "dashboard"; readonly options: DashboardOptions }
  | { readonly kind: "perf"; readonly options: PerfOptions; readonly json: boolean }
  /** The processes `blaze demo` and `blaze perf` fork. */
  | { readonly kind: "child"; readonly name: string; readonly args: readonly string[] }
  | { readonly kind: "unknown"; readonly name: string };

/** A flag's problem: printed as `blaze: …`, exit code 2. */
export class UsageError extends Error {}

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
  type: { type: "string" },
  cluster: { type: "string" },
  protojson: { type: "boolean" },
  messages: { type: "string" },
  senders: { type: "string" },
  receivers: { type: "string" },
  size: { type: "string" },
  seconds: { type: "string" },
  loss: { type: "string" },
  reliability: { type: "string" },
  "no-baseline": { type: "boolean" },
  json: { type: "boolean" },
  group: { type: "string" },
  port: { type: "string" },
  interface: { type: "string" },
  ttl: { type: "string" },
  peers: { type: "string" },
  bind: { type: "string" },
  entries: { type: "boolean" },
  timeout: { type: "string" },
  watch: { type: "boolean" },
  interval: { type: "string" },
  count: { type: "string" },
  host: { type: "string" },
  "group-port": { type: "string" },
  "ws-port": { type: "string" },
  name: { type: "string" },
  login: { type: "string" },
  passcode: { type: "string" },
  key: { type: "string" },
  "key-id": { type: "string" },
  "key-file": { type: "string" },
  id: { type: "string" },
  identity: { type: "boolean" },
  security: { type: "string" },
  crypto: { type: "string" },
} as const;

/** Which flags each command takes: any other is refused, naming it. */
const FLAGS: Record<string, ReadonlyArray<keyof typeof OPTIONS>> = {
  inspect: ["type", "cluster", "protojson", "key"],
  keygen: ["id", "identity"],
  gateway: ["port", "ws-port", "host", "cluster", "name", "group", "login", "passcode"],
  demo: ["messages", "cluster"],
  probe: ["cluster", "group", "group-port", "interface", "ttl", "peers", "bind", "key", "key-id", "key-file", "entries", "timeout", "watch", "interval", "count", "json"],
  perf: ["senders", "receivers", "size", "seconds", "loss", "reliability", "no-baseline", "json", "security", "crypto"],
  dashboard: ["cluster", "group", "group-port", "interface", "ttl", "peers", "bind", "key", "key-id", "key-file", "interval", "port", "host"],
};

const CHILDREN = new Set(["demo-member", "perf-member", "perf-baseline-receiver", "perf-baseline-sender"]);

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

/** Reads the command line; throws `UsageError` for a flag that is unknown, misplaced or out of range. */
export function parseCommandLine(argv: readonly string[], terminal: { readonly progress: boolean }): Command {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, options: OPTIONS });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  const [name, ...rest] = positionals;
  if (values.version) return { kind: "version" };
  if (values.help || name === undefined || name === "help") return { kind: "help", exitCode: name === undefined && !values.help ? 1 : 0 };
  if (CHILDREN.has(name)) return { kind: "child", name, args: rest };
  const allowed = FLAGS[name];
  if (allowed === undefined) return { kind: "unknown", name };
  const stray = Object.keys(values).find((flag) => !(allowed as readonly string[]).includes(flag));
  if (stray !== undefined) throw new UsageError(`${name} takes no --${stray}`);
  switch (name) {
    case "inspect":
      return { kind: "inspect", input: rest[0], type: values.type, cluster: values.cluster, protoJson: values.protojson === true, key: values.key };
    case "keygen":
      return { kind: "keygen", id: integer(values.id ?? "1", "--id", 1, 0xffff_ffff), identity: values.identity === true };
    case "gateway":
      return {
        kind: "gateway",
        options: {
          port: integer(values.port ?? "61613", "--port", 0, 65_535),
          websocketPort: integer(values["ws-port"] ?? "61614", "--ws-port", 0, 65_535),
          host: values.host ?? "127.0.0.1",
          cluster: values.cluster,
          name: values.name ?? "gateway",
          group: values.group ?? "jms",
          login: values.login,
          passcode: values.passcode,
        },
      };
    case "demo":
      return { kind: "demo", messages: integer(values.messages ?? "5", "--messages", 1, 10_000), cluster: values.cluster ?? `demo-${Math.random().toString(36).slice(2, 8)}` };
    case "dashboard": {
      const { includeEntries: _entries, ...probe } = probeOptions(values);
      return {
        kind: "dashboard",
        options: {
          ...probe,
          port: integer(values.port ?? "8080", "--port", 0, 65_535),
          host: values.host ?? "127.0.0.1",
          intervalMs: integer(values.interval ?? "1000", "--interval", 100, 3_600_000),
        },
      };
    }
    case "probe":
      return {
        kind: "probe",
        command: {
          probe: probeOptions(values),
          watch: values.watch === true,
          intervalMs: integer(values.interval ?? "1000", "--interval", 100, 3_600_000),
          count: values.count === undefined ? undefined : integer(values.count, "--count", 1, Number.MAX_SAFE_INTEGER),
          json: values.json === true,
        },
      };
    default: {
      const reliability = values.reliability ?? "nack";
      if (reliability !== "nack" && reliability !== "best-effort" && reliability !== "totem" && reliability !== "fec") {
        throw new UsageError(`--reliability must be nack, best-effort, totem or fec, got "${reliability}"`);
      }
      const security = values.security;
      if (security !== undefined && security !== "encrypt" && security !== "authenticate" && security !== "insider") {
        throw new UsageError(`--security must be encrypt, authenticate or insider, got "${security}"`);
      }
      const crypto = values.crypto;
      if (crypto !== undefined && crypto !== "node" && crypto !== "web") throw new UsageError(`--crypto must be node or web, got "${crypto}"`);
      if (crypto !== undefined && security === undefined) throw new UsageError("--crypto goes with --security");
      const json = values.json === true;
      return {
        kind: "perf",
        json,
        options: {
          senders: integer(values.senders ?? "1", "--senders", 1, 64),
          receivers: integer(values.receivers ?? "2", "--receivers", 1, 64),
          size: integer(values.size ?? "1024", "--size", 12, 16 * 1024 * 1024),
          seconds: integer(values.seconds ?? "5", "--seconds", 1, 3_600),
          loss: fraction(values.loss ?? "0", "--loss"),
          reliability,
          baseline: !values["no-baseline"],
          // A progress bar is for a person watching a terminal, never for a pipe or a file.
          progress: terminal.progress && !json,
          ...(security === undefined ? {} : { security }),
          ...(crypto === undefined ? {} : { crypto }),
        },
      };
    }
  }
}

/** The probe's network from the flags: multicast by default, static peers with --peers; the cluster's key. */
function probeOptions(values: Values): ProbeOptions {
  const security = probeSecurity(values);
  const common = {
    ...(values.cluster === undefined ? {} : { cluster: values.cluster }),
    ...(security === undefined ? {} : { security }),
    ...(values.timeout === undefined ? {} : { timeoutMs: integer(values.timeout, "--timeout", 10, 600_000) }),
    includeEntries: values.entries === true,
  };
  if (values.peers !== undefined) {
    if (values.group !== undefined || values["group-port"] !== undefined || values.interface !== undefined || values.ttl !== undefined) {
      throw new UsageError("--peers takes no --group, --group-port, --interface or --ttl");
    }
    const peers = values.peers.split(",").map((peer) => peer.trim()).filter((peer) => peer !== "");
    return { ...common, network: { type: "static", peers, ...(values.bind === undefined ? {} : { bindAddress: values.bind }) } };
  }
  if (values.bind !== undefined) throw new UsageError("--bind goes with --peers");
  return {
    ...common,
    network: {
      type: "multicast",
      ...(values.group === undefined ? {} : { group: values.group }),
      ...(values["group-port"] === undefined ? {} : { port: integer(values["group-port"], "--group-port", 1, 65_535) }),
      ...(values.interface === undefined ? {} : { interface: values.interface }),
      ...(values.ttl === undefined ? {} : { ttl: integer(values.ttl, "--ttl", 0, 255) }),
    },
  };
}

/**
 * The cluster's key, for a secured cluster: --key, a secret in base64 (key id --key-id, default 1), or
 * --key-file, a file holding one (kept out of the process list): a bare secret, `blaze keygen`'s
 * output, or the members' whole `security` option in JSON (several keys, a mode, an identity).
 */
function probeSecurity(values: Values): SecurityOptions | undefined {
  const file = values["key-file"];
  if (values.key !== undefined && file !== undefined) throw new UsageError("--key and --key-file are one or the other");
  let text = values.key;
  if (file !== undefined) {
    try {
      text = readFileSync(file, "utf8").trim();
    } catch (error) {
      throw new UsageError(`--key-file: cannot read "${file}": ${(error as Error).message}`);
    }
  }
  if (text === undefined) {
    if (values["key-id"] !== undefined) throw new UsageError("--key-id goes with --key or --key-file");
    return undefined;
  }
  if (file !== undefined && text.startsWith("{")) {
    if (values["key-id"] !== undefined) throw new UsageError(`--key-id goes with a bare secret: "${file}" names its keys`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`--key-file: "${file}" is not JSON: ${(error as Error).message}`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) throw new UsageError(`--key-file: "${file}" holds JSON that is not an object`);
    const object = json as Record<string, unknown>;
    // `blaze keygen`'s output is one key; the security option is checked as the probe's options are.
    if ("keys" in object) return object as unknown as SecurityOptions;
    if ("id" in object && "secret" in object) return { keys: [object as unknown as { id: number; secret: string }] };
    throw new UsageError(`--key-file: "${file}" holds neither a key ({ "id", "secret" }) nor a security option ({ "keys": [...] })`);
  }
  if (decodeBase64(text)?.length !== KEY_BYTES) throw new UsageError(`${file === undefined ? "--key" : `--key-file "${file}"`} is a key's secret, ${KEY_BYTES} bytes in base64 (blaze keygen makes one)`);
  return { keys: [{ id: integer(values["key-id"] ?? "1", "--key-id", 1, 0xffff_ffff), secret: text }] };
}

function integer(text: string, flag: string, min: number, max: number): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`${flag} must be a whole number from ${min.toLocaleString("en-US")} to ${max.toLocaleString("en-US")}, got "${text}"`);
  }
  return value;
}

function fraction(text: string, flag: string): number {
  const value = Number(text);
  if (text.trim() === "" || !(value >= 0 && value < 1)) throw new UsageError(`${flag} must be a number from 0 to below 1, got "${text}"`);
  return value;
}
