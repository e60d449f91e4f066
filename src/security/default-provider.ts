import type { CryptoProvider } from "./crypto-provider.ts";

/**
 * The running runtime's crypto provider, through the package's "#crypto" import map: `node:crypto` on
 * Node and Bun (conditions node, bun), WebCrypto on Deno and elsewhere.
 */
export async function defaultCryptoProvider(): Promise<CryptoProvider> {
  const specifier = "#crypto";
  const module = (await import(specifier)) as { cryptoProvider: CryptoProvider };
  return module.cryptoProvider;
}
