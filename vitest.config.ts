import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // The default transport and crypto provider come through package.json "imports"; from the sources
    // they are Node's adapters.
    alias: {
      "#udp": fileURLToPath(new URL("./src/adapters/node.ts", import.meta.url)),
      "#crypto": fileURLToPath(new URL("./src/adapters/node-crypto.ts", import.meta.url)),
    },
  },
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts", "conformance/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
