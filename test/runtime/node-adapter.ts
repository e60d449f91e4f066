/** Runs the adapter suite on Node (needs a TypeScript-capable Node, e.g. Node ≥ 22.6 with type stripping). */
import { createUdpTransport } from "../../src/adapters/node.ts";
import { createUdpTransport as bun } from "../../src/adapters/bun.ts";
import { createUdpTransport as deno } from "../../src/adapters/deno.ts";
import { runAdapterSuite } from "./adapter-suite.ts";

const result = await runAdapterSuite("node", createUdpTransport, { bun, deno });
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
