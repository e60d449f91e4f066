import type { CryptoProvider } from "./crypto-provider.ts";

/** The running runtime's crypto provider: `node:crypto` on Node and Bun, WebCrypto on Deno and elsewhere. */
export async function defaultCryptoProvider(): Promise<CryptoProvider> {
  return (await import("../adapters/runtime.ts")).runtimeCryptoProvider();
}
