/** Runs the adapter suite on Deno: `deno run --unstable-net -A test/runtime/deno-adapter.ts`. */
import { createUdpTransport as bun } from "../../src/adapters/bun.ts";
import { createUdpTransport } from "../../src/adapters/deno.ts";
import { createUdpTransport as node } from "../../src/adapters/node.ts";
import { runAdapterSuite } from "./adapter-suite.ts";

declare const Deno: { exit(code: number): never };

const result = await runAdapterSuite("deno", createUdpTransport, { node, bun });
console.log(JSON.stringify(result));
Deno.exit(result.ok ? 0 : 1);
