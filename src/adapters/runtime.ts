/**
 * The adapters of the runtime this runs in, picked at run time: what a channel uses when it is given no
 * transport (or no host resolver). Plain relative imports, so that every packaging (npm's bundles, JSR's
 * sources) and every bundler finds them; only the running runtime's adapter is ever loaded.
 */
import type { CryptoProvider } from "../security/crypto-provider.ts";
import type { HostResolver } from "../transport/host-names.ts";
import type { TransportFactory } from "../transport/transport.ts";

type GetBuiltinModule = (id: string) => unknown;
interface NodeDns {
  promises: { lookup(host: string, options: { all: true; verbatim: true }): Promise<Array<{ address: string; family: number }>> };
}

/** The UDP adapter of the running runtime: Deno's, Bun's, else Node's. */
export async function runtimeTransport(): Promise<TransportFactory> {
  if ("Deno" in globalThis) return (await import("./deno.ts")).createUdpTransport;
  if ("Bun" in globalThis) return (await import("./bun.ts")).createUdpTransport;
  return (await import("./node.ts")).createUdpTransport;
}

/**
 * The crypto provider of the running runtime: `node:crypto` (synchronous) on Node and Bun, WebCrypto
 * (asynchronous) on Deno and wherever `node:crypto` is missing.
 */
export async function runtimeCryptoProvider(): Promise<CryptoProvider> {
  const versions = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions;
  if (!("Deno" in globalThis) && typeof versions?.node === "string") return (await import("./node-crypto.ts")).cryptoProvider;
  return (await import("../security/web-crypto.ts")).cryptoProvider;
}

/**
 * Every address of a host name, IPv4 and IPv6, as the system resolves it (getaddrinfo: `/etc/hosts`,
 * then DNS). Node, Bun and Deno all provide `node:dns`; in Deno it is the one resolver that reads
 * `/etc/hosts` (`Deno.resolveDns` asks DNS servers only).
 */
export const lookupHost: HostResolver = async (name) => {
  const getBuiltinModule = (globalThis as { process?: { getBuiltinModule?: GetBuiltinModule } }).process?.getBuiltinModule;
  if (typeof getBuiltinModule !== "function") throw new Error("this runtime offers no node:dns to resolve host names with");
  const { promises } = getBuiltinModule("node:dns") as NodeDns;
  const found = await promises.lookup(name, { all: true, verbatim: true });
  return found.map((entry) => entry.address);
};
