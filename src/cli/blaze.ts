#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { startDashboard } from "../dashboard/dashboard.ts";
import { VERSION } from "../version.ts";
import { parseCommandLine, UsageError } from "./command-line.ts";
import { runDemo, runDemoMember } from "./demo.ts";
import { nodeCrypto } from "../adapters/node-crypto.ts";
import { KEY_BYTES } from "../security/crypto-provider.ts";
import { generateSecret } from "../security/keys.ts";
import { decodeBase64, encodeBase64 } from "../security/options.ts";
import { runGateway } from "./gateway.ts";
import { idsInHex, inspectBytes, inspectSealed, parseHex } from "./inspect.ts";
import { formatPerf, runPerf, runPerfChild } from "./perf.ts";
import { runProbe } from "./probe.ts";

const HELP = `blaze: the activeblaze command line (Node, Bun and Deno)

Usage:
  blaze inspect <hex | file | ->  [--type NAME] [--cluster NAME] [--protojson] [--key SECRET]
      Decode one datagram through the schema and print it as JSON, member ids in hex as the API shows
      them (--protojson: canonical ProtoJSON, bytes in base64). The input is hex on the command line, a
      file holding raw bytes or hex, or - for standard input. --type decodes as another message type
      (default activeblaze.v1.Envelope); --cluster checks an envelope against a cluster. --key opens a
      sealed datagram with a key's secret (base64) and prints its seal and the envelope inside. Exits 1
      when the bytes are refused (or do not open), printing the reason.
  blaze keygen  [--id N] [--identity]
      Print a new random key for the security option, { "id": N, "secret": "<32 bytes, base64>" }
      (id 1 unless --id), or with --identity a new Ed25519 key pair for insider mode.
  blaze demo  [--messages N] [--cluster NAME]
      Start three members on loopback multicast and exchange messages, share a replicated map, and
      move a lock from a member killed with SIGKILL to a waiting one (no configuration needed). Each run
      is a cluster of its own (demo-<random>) unless --cluster names one.
  blaze probe [network] [key] [--entries] [--timeout MS] [--watch [--interval MS] [--count N]] [--json]
      Ask every member of a cluster for its identity, groups, views, coordinator, peers, counters,
      drops, queue depths, map and locks, and print a table (--json: one JSON object per round on
      stdout). --watch asks again every --interval ms (default 1000), --count times or until Ctrl-C.
      --entries lists the replicated map's entries too. Exits 1 when no member answered.
  blaze dashboard [network] [key] [--port 8080] [--host 127.0.0.1] [--interval MS]
      Serve a live web page of the cluster at http://127.0.0.1:8080/: members and their views,
      coordinators, members per view and per-member throughput and retransmissions over time, the
      replicated map's entries and locks, and recent events. It watches as the probe asks (every
      --interval ms, default 1000): it counts in no view, takes no queue message and holds no sender
      back. Runs until Ctrl-C.
  blaze perf  [--senders 1] [--receivers 2] [--size 1024] [--seconds 5] [--loss 0]
              [--reliability nack|best-effort|totem|fec] [--security encrypt|authenticate|insider]
              [--crypto node|web] [--no-baseline] [--json]
      Run members as separate processes on loopback multicast; print messages/s and MB/s as seen by
      the slowest receiver, delivery latency p50/p99, and raw node:dgram throughput of the same size
      measured in the same run (--json: the result as JSON on stdout). --loss injects receive loss
      (0..1) in every member. --security seals every datagram under a key made for the run (insider:
      with Ed25519 signatures too), with node:crypto or, with --crypto web, WebCrypto. Progress is
      drawn on a terminal only.
  blaze gateway  [--port 61613] [--ws-port 61614] [--host 127.0.0.1] [--cluster NAME] [--name NAME]
                 [--group jms] [--login USER --passcode PASS]
      Join the cluster as a member (loopback multicast) and run a STOMP 1.2 gateway on it: TCP on
      --port, WebSocket on --ws-port (0: any free port). With --login, clients must CONNECT with that
      login and passcode. Prints {"type":"listening",...} with the ports; leaves on SIGINT or SIGTERM.
  blaze --help | --version

Network and key (probe, dashboard), as the cluster's members are configured:
  --cluster NAME          the cluster (default activeblaze)
  --group ADDR            multicast group (default 239.255.42.99; IPv6 too: ff15::1234)
  --group-port N          multicast port (default 45588)
  --interface ADDR        multicast interface (default 127.0.0.1); for an IPv6 group its name
                          (eth0) or one of its IPv6 addresses
  --ttl N                 multicast time to live (default 1)
  --peers LIST            static peers instead of multicast: host:port,[ipv6]:port,dns:name:port,...
  --bind ADDR             address to bind with --peers (default 127.0.0.1; ::1 or :: for IPv6)
  --key SECRET            a secured cluster's key (base64, as blaze keygen prints it): requests are
                          sealed with it and answers opened; members refuse a probe without their key
  --key-id N              the key's id (default 1)
  --key-file PATH         the key from a file instead (not shown in the process list): a secret,
                          blaze keygen's output, or the members' security option as JSON

Runtimes: npx blaze …, bunx --bun blaze …, deno run -A --unstable-net npm:activeblaze/blaze …
`;

async function main(argv: string[]): Promise<number> {
  const command = parseCommandLine(argv, { progress: process.stderr.isTTY === true });
  switch (command.kind) {
    case "version":
      console.log(VERSION);
      return 0;
    case "help":
      console.log(HELP);
      return command.exitCode;
    case "inspect":
      return inspect(command.input, command.type, command.cluster, command.protoJson, command.key);
    case "keygen":
      return keygen(command.id, command.identity);
    case "gateway":
      return runGateway(command.options);
    case "demo":
      return runDemo(command);
    case "probe": {
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      return runProbe(command.command, process.stdout, stop.signal);
    }
    case "dashboard": {
      const dashboard = await startDashboard(command.options);
      console.log(`blaze dashboard: watching cluster "${command.options.cluster ?? "activeblaze"}" at ${dashboard.url} (Ctrl-C stops)`);
      await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
      await dashboard.close();
      return 0;
    }
    case "perf": {
      const result = await runPerf(command.options, process.argv[1]!);
      console.log(command.json ? JSON.stringify(result, null, 2) : formatPerf(result));
      return result.complete ? 0 : 1;
    }
    case "child":
      if (command.name === "demo-member") await runDemoMember(command.args);
      else await runPerfChild(command.name, [...command.args]);
      return 0;
    case "unknown":
      console.error(`blaze: unknown command "${command.name}"\n\n${HELP}`);
      return 2;
  }
}

function keygen(id: number, identity: boolean): number {
  if (identity) {
    const keys = nodeCrypto.generateIdentity();
    console.log(JSON.stringify({ publicKey: encodeBase64(keys.publicKey), privateKey: encodeBase64(keys.privateKey) }, null, 2));
  } else {
    console.log(JSON.stringify({ id, secret: generateSecret() }, null, 2));
  }
  return 0;
}

function inspect(input: string | undefined, type: string | undefined, cluster: string | undefined, protoJson: boolean, key: string | undefined): number {
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
  if (result.json !== undefined) console.log(JSON.stringify(protoJson ? result.json : idsInHex(result.json), null, 2));
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
    if (error instanceof UsageError) {
      console.error(`blaze: ${error.message} (blaze --help says more)`);
      process.exitCode = 2;
      return;
    }
    console.error(error instanceof Error ? `blaze: ${error.message}` : error);
    process.exitCode = 1;
  },
);
