/** Runs the adapter suite on Bun: `bun run test/runtime/bun-adapter.ts`. */
import { createUdpTransport } from "../../src/adapters/bun.ts";
import { createUdpTransport as deno } from "../../src/adapters/deno.ts";
import { createUdpTransport as node } from "../../src/adapters/node.ts";
import { runAdapterSuite } from "./adapter-suite.ts";

const result = await runAdapterSuite("bun", createUdpTransport, { node, deno });
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
