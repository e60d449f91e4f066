import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // The default transport comes through package.json "imports"; from the sources it is Node's adapter.
    alias: { "#udp": fileURLToPath(new URL("./src/adapters/node.ts", import.meta.url)) },
  },
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts", "conformance/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
