#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { runDemo, runDemoMember } from "./demo.ts";
import { nodeCrypto } from "../adapters/node-crypto.ts";
import { KEY_BYTES } from "../security/crypto-provider.ts";
import { generateSecret } from "../security/keys.ts";
import { decodeBase64, encodeBase64 } from "../security/options.ts";
import { runGateway } from "./gateway.ts";
import { inspectBytes, inspectSealed, parseHex } from "./inspect.ts";
import { formatPerf, runPerf, runPerfChild, writeJson } from "./perf.ts";
import type { PerfSecurity } from "./perf-protocol.ts";

const HELP = `blaze: the activeblaze command line

Usage:
  blaze inspect <hex | file | ->  [--type NAME] [--cluster NAME] [--key SECRET]
      Decode one datagram through the schema and print it as ProtoJSON. The input is hex on the
      command line, a file holding raw bytes or hex, or - for standard input. --type decodes as another
      message type (default activeblaze.v1.Envelope); --cluster checks an envelope against a cluster.
      --key opens a sealed datagram with a key's secret (base64) and prints its seal and the envelope
      inside. Exits 1 when the bytes are refused (or do not open), printing the reason.
  blaze keygen  [--id N] [--identity]
      Print a new random key for the security option, { "id": N, "secret": "<32 bytes, base64>" }
      (id 1 unless --id), or with --identity a new Ed25519 key pair for insider mode.
  blaze demo  [--messages N] [--cluster NAME]
      Start three members on loopback multicast and exchange messages, share a replicated map, and
      move a lock from a member killed with SIGKILL to a waiting one (no configuration needed).
      --cluster runs it as a cluster of another name (default activeblaze-demo).
  blaze perf  [--senders 1] [--receivers 2] [--size 1024] [--seconds 5] [--loss 0]
              [--reliability nack|best-effort|totem|fec] [--security encrypt|authenticate|insider]
              [--crypto node|web] [--no-baseline] [--json FILE]
      Run members as separate processes on loopback multicast; print messages/s and MB/s as seen by
      the slowest receiver, delivery latency p50/p99, and raw node:dgram throughput of the same size
      measured in the same run. --loss injects receive loss (0..1) in every member. --security seals
      every datagram under a key made for the run (insider: with Ed25519 signatures too), with
      node:crypto or, with --crypto web, WebCrypto.
  blaze gateway  [--port 61613] [--ws-port 61614] [--host 127.0.0.1] [--cluster NAME] [--name NAME]
                 [--group jms] [--login USER --passcode PASS]
      Join the cluster as a member (loopback multicast) and run a STOMP 1.2 gateway on it: TCP on
      --port, WebSocket on --ws-port (0: any free port). With --login, clients must CONNECT with that
      login and passcode. Prints {"type":"listening",...} with the ports; leaves on SIGINT or SIGTERM.
  blaze --help | --version
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
      type: { type: "string" },
      cluster: { type: "string" },
      messages: { type: "string" },
      senders: { type: "string" },
      receivers: { type: "string" },
      size: { type: "string" },
      seconds: { type: "string" },
      loss: { type: "string" },
      reliability: { type: "string" },
      security: { type: "string" },
      crypto: { type: "string" },
      "no-baseline": { type: "boolean" },
      json: { type: "string" },
      port: { type: "string" },
      "ws-port": { type: "string" },
      host: { type: "string" },
      name: { type: "string" },
      group: { type: "string" },
      login: { type: "string" },
      passcode: { type: "string" },
      key: { type: "string" },
      id: { type: "string" },
      identity: { type: "boolean" },
    },
  });
  const [command, ...rest] = positionals;
  if (values.version) {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    console.log(pkg.version);
    return 0;
  }
  if (values.help || command === undefined || command === "help") {
    console.log(HELP);
    return command === undefined && !values.help ? 1 : 0;
  }
  switch (command) {
    case "inspect":
      return inspect(rest[0], values.type, values.cluster, values.key);
    case "keygen":
      return keygen(values.id, values.identity ?? false);
    case "demo":
      return runDemo({ messages: values.messages === undefined ? 5 : Number(values.messages), ...(values.cluster === undefined ? {} : { cluster: values.cluster }) });
    case "gateway":
      return runGateway({
        port: port(values.port ?? "61613", "--port"),
        websocketPort: values["ws-port"] === undefined ? 61614 : port(values["ws-port"], "--ws-port"),
        host: values.host ?? "127.0.0.1",
        cluster: values.cluster,
        name: values.name ?? "gateway",
        group: values.group ?? "jms",
        login: values.login,
        passcode: values.passcode,
      });
    case "demo-member":
      await runDemoMember(rest);
      return 0;
    case "perf": {
      const reliability = values.reliability ?? "nack";
      if (reliability !== "nack" && reliability !== "best-effort" && reliability !== "totem" && reliability !== "fec") {
        throw new Error("--reliability must be nack, best-effort, totem or fec");
      }
      const options = {
        senders: positiveInt(values.senders ?? "1", "--senders"),
        receivers: positiveInt(values.receivers ?? "2", "--receivers"),
        size: positiveInt(values.size ?? "1024", "--size"),
        seconds: positiveInt(values.seconds ?? "5", "--seconds"),
        loss: fraction(values.loss ?? "0", "--loss"),
        reliability,
        baseline: !values["no-baseline"],
        progress: true,
        ...securityFlags(values.security, values.crypto),
      } as const;
      if (options.size < 12) throw new Error("--size must be at least 12 bytes (a timestamp and a counter travel in each message)");
      const result = await runPerf(options, process.argv[1]!);
      console.log(formatPerf(result));
      if (values.json !== undefined) writeJson(values.json, result);
      return result.complete ? 0 : 1;
    }
    case "perf-member":
    case "perf-baseline-receiver":
    case "perf-baseline-sender":
      await runPerfChild(command, rest);
      return 0;
    default:
      console.error(`blaze: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

function securityFlags(security: string | undefined, crypto: string | undefined): { security?: PerfSecurity; crypto?: "node" | "web" } {
  if (security !== undefined && security !== "encrypt" && security !== "authenticate" && security !== "insider") {
    throw new Error("--security must be encrypt, authenticate or insider");
  }
  if (crypto !== undefined && crypto !== "node" && crypto !== "web") throw new Error("--crypto must be node or web");
  return { ...(security === undefined ? {} : { security }), ...(crypto === undefined ? {} : { crypto }) };
}

function positiveInt(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} must be a positive integer, got "${text}"`);
  return value;
}

function port(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 65_535) throw new Error(`${flag} must be a port from 0 to 65535, got "${text}"`);
  return value;
}

function fraction(text: string, flag: string): number {
  const value = Number(text);
  if (!(value >= 0 && value < 1)) throw new Error(`${flag} must be a number from 0 to below 1, got "${text}"`);
  return value;
}

function keygen(id: string | undefined, identity: boolean): number {
  if (identity) {
    const keys = nodeCrypto.generateIdentity();
    console.log(JSON.stringify({ publicKey: encodeBase64(keys.publicKey), privateKey: encodeBase64(keys.privateKey) }, null, 2));
    return 0;
  }
  const keyId = id === undefined ? 1 : Number(id);
  if (!Number.isInteger(keyId) || keyId < 1 || keyId > 0xffff_ffff) throw new Error(`--id must be an integer from 1 to 4294967295, got "${id}"`);
  console.log(JSON.stringify({ id: keyId, secret: generateSecret() }, null, 2));
  return 0;
}

function inspect(input: string | undefined, type: string | undefined, cluster: string | undefined, key: string | undefined): number {
  if (input === undefined) {
    console.error("blaze inspect: give hex, a file or - for standard input");
    return 2;
  }
  const bytes = readInput(input);
  if (bytes === undefined) {
    console.error(`blaze inspect: "${input}" is neither hex nor a readable file`);
    return 2;
  }
  let secret: Uint8Array | undefined;
  if (key !== undefined) {
    secret = decodeBase64(key);
    if (secret?.length !== KEY_BYTES) {
      console.error(`blaze inspect: --key is a key's secret, ${KEY_BYTES} bytes in base64`);
      return 2;
    }
  }
  const result = secret === undefined ? inspectBytes(bytes, type, cluster) : inspectSealed(bytes, secret, cluster);
  if (result.json !== undefined) console.log(JSON.stringify(result.json, null, 2));
  if (result.error !== undefined) {
    console.error(`refused: ${result.error.code}: ${result.error.detail}`);
    if (secret === undefined && result.error.code === "UNKNOWN_KEY") console.error("(a sealed datagram: --key SECRET opens it)");
    return 1;
  }
  return 0;
}

function readInput(input: string): Uint8Array | undefined {
  const fromText = input === "-" ? undefined : parseHex(input);
  if (fromText !== undefined) return fromText;
  let raw: Uint8Array;
  try {
    raw = readFileSync(input === "-" ? 0 : input);
  } catch {
    return undefined;
  }
  // A file may hold hex text rather than raw bytes.
  return parseHex(new TextDecoder().decode(raw).trim()) ?? raw;
}

main(process.argv.slice(2)).then(
  (code) => {
    // Forked perf processes keep running on their IPC channel; everything else ends here.
    if (process.send === undefined) process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? `blaze: ${error.message}` : error);
    process.exitCode = 1;
  },
);
