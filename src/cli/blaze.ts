#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { runDemo } from "./demo.ts";
import { inspectBytes, parseHex } from "./inspect.ts";

const HELP = `blaze: the activeblaze command line

Usage:
  blaze inspect <hex | file | ->  [--type NAME] [--cluster NAME]
      Decode one datagram through the schema and print it as ProtoJSON. The input is hex on the
      command line, a file holding raw bytes or hex, or - for standard input. --type decodes as another
      message type (default activeblaze.v1.Envelope); --cluster checks an envelope against a cluster.
      Exits 1 when the bytes are refused, printing the reason.
  blaze demo  [--messages N]
      Start three members on loopback multicast and exchange messages (no configuration needed).
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
      return inspect(rest[0], values.type, values.cluster);
    case "demo":
      return runDemo({ messages: values.messages === undefined ? 5 : Number(values.messages) });
    default:
      console.error(`blaze: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

function inspect(input: string | undefined, type: string | undefined, cluster: string | undefined): number {
  if (input === undefined) {
    console.error("blaze inspect: give hex, a file or - for standard input");
    return 2;
  }
  const bytes = readInput(input);
  if (bytes === undefined) {
    console.error(`blaze inspect: "${input}" is neither hex nor a readable file`);
    return 2;
  }
  const result = inspectBytes(bytes, type, cluster);
  if (result.json !== undefined) console.log(JSON.stringify(result.json, null, 2));
  if (result.error !== undefined) {
    console.error(`refused: ${result.error.code}: ${result.error.detail}`);
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
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? `blaze: ${error.message}` : error);
    process.exitCode = 1;
  },
);
