import { defineConfig } from "tsup";

// One entry per public subpath; the paths mirror src/ so package.json and deno.json map alike.
export const entries = {
  index: "src/index.ts",
  "option-schemas": "src/option-schemas.ts",
  "transport/index": "src/transport/index.ts",
  "security/index": "src/security/index.ts",
  "wire/index": "src/wire/index.ts",
  testing: "src/testing.ts",
  "jms/index": "src/jms/index.ts",
  "stomp/index": "src/stomp/index.ts",
  "diagnostics/index": "src/diagnostics/index.ts",
  otel: "src/otel.ts",
  "dashboard/index": "src/dashboard/index.ts",
  "relay/index": "src/relay/index.ts",
  "adapters/node": "src/adapters/node.ts",
  "adapters/bun": "src/adapters/bun.ts",
  "adapters/deno": "src/adapters/deno.ts",
  "adapters/node-crypto": "src/adapters/node-crypto.ts",
  "security/web-crypto": "src/security/web-crypto.ts",
};

export default defineConfig({
  // The command line shares the library's chunks; it runs in Node, Bun and Deno alike.
  entry: { ...entries, "cli/blaze": "src/cli/blaze.ts" },
  format: ["esm"],
  target: "es2022",
  platform: "neutral",
  dts: { entry: entries, compilerOptions: { types: ["node"] } },
  // No source maps in the package: they were most of its size, and the sources ship for Deno (JSR).
  sourcemap: false,
  clean: true,
  splitting: true,
  treeshake: true,
  external: [/^node:/],
});
