import { BlazeError } from "../errors.ts";
import type { Address } from "./transport.ts";

/**
 * Resolves a host name to its addresses (IPv4 and IPv6, in the resolver's order). The default is the
 * running runtime's system resolver (`/etc/hosts`, then DNS); tests inject their own.
 */
export type HostResolver = (name: string) => Promise<readonly string[]>;

/** A static peer as configured: an address, a host name (one peer), or `dns:` a name (every address it has). */
export type Seed =
  | { readonly kind: "address"; readonly text: string; readonly address: Address }
  | { readonly kind: "host" | "dns"; readonly text: string; readonly name: string; readonly port: number };

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
// Hex groups and colons, at most one "::", optionally ending in dotted IPv4; a zone ("%eth0") allowed.
const IPV6 = /^(?=.*:)[0-9A-Fa-f:.]{2,45}(%[\w.-]{1,32})?$/;
const HOST_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** True for an IPv6 multicast address (ff00::/8). */
export function isMulticastV6(host: string): boolean {
  return /^ff[0-9a-f]{2}:/i.test(host) && IPV6.test(host) && isIpLiteral(host);
}

/** True for an IPv4 or IPv6 address literal (never a name: names read from datagrams are never resolved). */
export function isIpLiteral(host: string): boolean {
  return IPV4.test(host) || (IPV6.test(host) && host.split("::").length <= 2);
}

/** The address family of an address literal: 6 when it holds a colon. */
export function familyOf(host: string): 4 | 6 {
  return host.includes(":") ? 6 : 4;
}

/**
 * Reads a static peer: `"10.0.0.2:7800"`, `"[fd00::2]:7800"`, `"node-b.example:7800"` or
 * `"dns:peers.example:7800"`. Returns a reason when the text is none of these.
 */
export function parseSeed(text: string): Seed | string {
  const dns = text.startsWith("dns:");
  const rest = dns ? text.slice(4) : text;
  const match = /^(?:\[([^\]]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(rest);
  if (match === null) return dns ? 'expected "dns:name:port"' : 'expected "host:port" (an IPv6 address in brackets: "[::1]:port")';
  const port = Number(match[3]);
  if (port < 1 || port > 65_535) return "port must be from 1 to 65535";
  const bracketed = match[1];
  const host = bracketed ?? match[2]!;
  if (bracketed !== undefined && !(IPV6.test(bracketed) && isIpLiteral(bracketed))) return `"${bracketed}" is not an IPv6 address`;
  if (isIpLiteral(host)) {
    if (bracketed === undefined && familyOf(host) === 6) return 'an IPv6 address goes in brackets: "[::1]:port"';
    return dns ? `"dns:" takes a name, not the address ${host}` : { kind: "address", text, address: { host, port } };
  }
  if (/^[\d.]+$/.test(host)) return `"${host}" is not an IPv4 address`;
  if (!HOST_NAME.test(host)) return `"${host}" is neither an IP address nor a host name`;
  return { kind: dns ? "dns" : "host", text, name: host, port };
}

/** A configured name is resolved again this long after it failed, doubling up to RESOLVE_INTERVAL_MS. */
const RESOLVE_RETRY_MS = 1_000;
/** A resolved name is resolved again this often while an address it gave is not a live peer. */
export const RESOLVE_INTERVAL_MS = 30_000;

interface NameState {
  readonly seed: Extract<Seed, { kind: "host" | "dns" }>;
  addresses: readonly Address[];
  /** Why the last resolution gave nothing usable; undefined once it did. */
  failure: string | undefined;
  nextAt: number;
  retryMs: number;
  resolving: boolean;
}

/**
 * The static peers of a channel, names resolved: at `init()`, and again when a name failed to resolve
 * or an address it gave fell silent (a peer that moved to another address, a headless service whose
 * pods changed). Only configured names are ever resolved, never one read from a datagram. Addresses of
 * the socket's other family are left out (an IPv4 socket cannot send to IPv6).
 */
export class StaticSeeds {
  readonly #literals: readonly Address[];
  readonly #names: NameState[];
  #addresses: readonly Address[] = [];

  constructor(
    seeds: readonly Seed[],
    private readonly family: 4 | 6,
    private readonly resolver: HostResolver,
    /** A name that did not resolve (reported once per failure, not per retry of the same failure). */
    private readonly report: (error: BlazeError) => void,
  ) {
    this.#literals = seeds.flatMap((seed) => (seed.kind === "address" ? [seed.address] : []));
    this.#names = seeds.flatMap((seed) =>
      seed.kind === "address" ? [] : [{ seed, addresses: [], failure: undefined, nextAt: 0, retryMs: RESOLVE_RETRY_MS, resolving: false }],
    );
    this.#update();
  }

  /** Every address to send "everyone" datagrams to, deduplicated. */
  get addresses(): readonly Address[] {
    return this.#addresses;
  }

  /** Resolves every name (at `init()`); a name that fails is reported and tried again later. */
  async resolveAll(now: number): Promise<void> {
    await Promise.all(this.#names.map((state) => this.#resolve(state, now)));
  }

  /** Resolves again the names that failed, or that gave an address `isLive` says no peer answers from, when due. */
  refresh(now: number, isLive: (address: Address) => boolean): void {
    for (const state of this.#names) {
      if (state.resolving || now < state.nextAt) continue;
      if (state.failure === undefined && state.addresses.every(isLive)) continue;
      void this.#resolve(state, now);
    }
  }

  /** What is wrong with the configured peers, for people: names that do not resolve, addresses never heard from. */
  describe(isLive: (address: Address) => boolean): string {
    const problems: string[] = [];
    for (const state of this.#names) if (state.failure !== undefined) problems.push(`${state.seed.text} does not resolve (${state.failure})`);
    const silent = this.#addresses.filter((address) => !isLive(address)).map(formatAddress);
    if (silent.length > 0) problems.push(`no answer from ${silent.slice(0, 8).join(", ")}${silent.length > 8 ? ` and ${silent.length - 8} more` : ""}`);
    return problems.join("; ");
  }

  async #resolve(state: NameState, now: number): Promise<void> {
    state.resolving = true;
    let failure: string | undefined;
    try {
      const found = (await this.resolver(state.seed.name)).filter((host) => familyOf(host) === this.family);
      if (found.length === 0) failure = `no IPv${this.family} address`;
      else {
        const hosts = state.seed.kind === "dns" ? [...new Set(found)] : [found[0]!];
        state.addresses = hosts.map((host) => ({ host, port: state.seed.port }));
      }
    } catch (error) {
      failure = (error as { code?: unknown })?.code !== undefined ? String((error as { code: unknown }).code) : String((error as Error)?.message ?? error);
    } finally {
      state.resolving = false;
    }
    if (failure !== undefined && failure !== state.failure) {
      this.report(new BlazeError("RESOLVE_FAILED", `static peer ${state.seed.text} does not resolve: ${failure}`));
    }
    state.failure = failure;
    // A failure is retried soon, backing off; a success is looked at again only if its addresses go silent.
    state.nextAt = now + (failure === undefined ? RESOLVE_INTERVAL_MS : state.retryMs);
    state.retryMs = failure === undefined ? RESOLVE_RETRY_MS : Math.min(RESOLVE_INTERVAL_MS, state.retryMs * 2);
    this.#update();
  }

  #update(): void {
    const seen = new Set<string>();
    const addresses: Address[] = [];
    for (const address of [...this.#literals, ...this.#names.flatMap((state) => state.addresses)]) {
      const key = formatAddress(address);
      if (seen.has(key)) continue;
      seen.add(key);
      addresses.push(address);
    }
    this.#addresses = addresses;
  }
}

/** "10.0.0.2:7800", or "[fd00::2]:7800" for IPv6. */
export function formatAddress(address: Address): string {
  return familyOf(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
