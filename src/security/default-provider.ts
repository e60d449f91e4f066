import { BlazeError } from "../errors.ts";
import { type CryptoProvider, equalBytes } from "./crypto-provider.ts";
import type { ResolvedSecurityOptions } from "./options.ts";

/** The running runtime's crypto provider: `node:crypto` on Node and Bun, WebCrypto on Deno and elsewhere. */
export async function defaultCryptoProvider(): Promise<CryptoProvider> {
  return (await import("../adapters/runtime.ts")).runtimeCryptoProvider();
}

/**
 * The crypto provider of a `security` option (its own, or the runtime's), insider mode's identity checked
 * against it: a public key that is not the private key's fails here, naming the option (`owner.security…`).
 */
export async function securityProvider(options: ResolvedSecurityOptions, owner: string): Promise<CryptoProvider> {
  const provider = options.provider ?? (await defaultCryptoProvider());
  const identity = options.identity;
  if (identity !== undefined && !equalBytes(await provider.publicKeyOf(identity.privateKey), identity.publicKey)) {
    throw new BlazeError("INVALID_OPTION", `invalid option "${owner}.security.identity.publicKey": not the public key of identity.privateKey`, {
      path: ["security", "identity", "publicKey"],
    });
  }
  return provider;
}
