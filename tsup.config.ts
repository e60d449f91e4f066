import { defineConfig } from "tsup";

// One entry per public subpath; the paths mirror src/ so package.json and deno.json map alike.
export const entries = {
  index: "src/index.ts",
  "wire/index": "src/wire/index.ts",
  testing: "src/testing.ts",
  "relay/index": "src/relay/index.ts",
  "adapters/node": "src/adapters/node.ts",
  "adapters/bun": "src/adapters/bun.ts",
  "adapters/deno": "src/adapters/deno.ts",
};

export default defineConfig([
  {
    entry: entries,
    format: ["esm"],
    target: "es2022",
    platform: "neutral",
    dts: { compilerOptions: { types: ["node"] } },
    sourcemap: true,
    clean: true,
    splitting: true,
    treeshake: true,
    external: ["node:dgram", "node:net", "node:os", "#udp"],
  },
  {
    entry: { "cli/blaze": "src/cli/blaze.ts" },
    format: ["esm"],
    target: "node20",
    platform: "node",
    sourcemap: true,
    // The CLI is a Node program run from the package as installed; dependencies stay external.
  },
]);
