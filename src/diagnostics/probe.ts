import type { DiagnosticsReply } from "../../gen/activeblaze/v1/diagnostics_pb.ts";
import { channelOptionFields, multicastBindings, multicastNetwork, type MulticastNetworkOptions, staticNetwork, type StaticNetworkOptions } from "../channel/options.ts";
import { BlazeError } from "../errors.ts";
import { parseOptions } from "../options.ts";
import { keyOf } from "../reliable/member-key.ts";
import { DatagramGuard } from "../security/datagram-guard.ts";
import { securityProvider } from "../security/default-provider.ts";
import { KeyRing } from "../security/keyring.ts";
import type { ResolvedSecurityOptions, SecurityOptions } from "../security/options.ts";
import type { CryptoProvider } from "../security/crypto-provider.ts";
import { type Clock, type RandomSource, systemClock, systemRandom } from "../transport/clock.ts";
import { familyOf, type HostResolver, type Seed, StaticSeeds } from "../transport/host-names.ts";
import type { Address, Transport, TransportFactory } from "../transport/transport.ts";
import { MAX_DATAGRAM_BYTES, MEMBER_ID_BYTES } from "../wire/limits.ts";
import { DatagramReader, encodeEnvelopeHeader, encodeFrame, type ReceiveResult } from "../wire/frames.ts";
import * as z from "zod";
import { type MemberReport, readReport } from "./member-report.ts";

/** The zod schema of {@link ProbeOptions}. */
export const probeOptionsSchema: z.ZodType<ResolvedProbeOptions, ProbeOptions> = z.strictObject({
  cluster: channelOptionFields.shape.cluster,
  // The members' network; a static one without the port, which is each member's own.
  network: z.discriminatedUnion("type", [multicastNetwork, staticNetwork.omit({ port: true })]).prefault({ type: "multicast" }),
  timeoutMs: z.number().int().positive().max(600_000).default(1_000),
  includeEntries: z.boolean().default(false),
  security: channelOptionFields.shape.security,
  transport: channelOptionFields.shape.transport,
  resolver: channelOptionFields.shape.resolver,
  clock: channelOptionFields.shape.clock,
  random: channelOptionFields.shape.random,
});

/**
 * How to find a cluster's members: the cluster's name and network, as its members are configured.
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `cluster` | name | `"activeblaze"` | the cluster to ask |
 * | `network` | | loopback multicast | where its members are: the members' own `network` option |
 * | `timeoutMs` | ms | `1000` | how long to wait for answers (the request is repeated meanwhile) |
 * | `includeEntries` | boolean | `false` | also ask for the replicated map's entries |
 * | `security` | | none (in clear) | the cluster's keys, as its members' `security` option: the probe seals its requests and opens the answers (in insider mode, with an `identity` of its own that the members trust) |
 * | `transport`, `resolver`, `clock`, `random` | | the runtime's | as for a channel |
 */
export interface ProbeOptions {
  readonly cluster?: string;
  readonly network?: ProbeNetworkOptions;
  readonly timeoutMs?: number;
  readonly includeEntries?: boolean;
  readonly security?: SecurityOptions;
  readonly transport?: TransportFactory;
  readonly resolver?: HostResolver;
  readonly clock?: Clock;
  readonly random?: RandomSource;
}

/** The members' network, as their `network` option, less a static network's port (each member's own). */
export type ProbeNetworkOptions = MulticastNetworkOptions | Omit<StaticNetworkOptions, "port">;

/** {@link ProbeOptions} with their defaults filled in, static peers parsed. */
export interface ResolvedProbeOptions {
  readonly cluster: string;
  readonly network:
    | { readonly type: "multicast"; readonly group: string; readonly port: number; readonly interface: string; readonly ttl: number }
    | { readonly type: "static"; readonly peers: readonly Seed[]; readonly bindAddress: string };
  readonly timeoutMs: number;
  readonly includeEntries: boolean;
  readonly security?: ResolvedSecurityOptions | undefined;
  readonly transport?: TransportFactory | undefined;
  readonly resolver?: HostResolver | undefined;
  readonly clock?: Clock | undefined;
  readonly random?: RandomSource | undefined;
}

/** What one round of asking found. */
export interface ProbeResult {
  /** Every member that answered, by name (then id). */
  readonly members: readonly MemberReport[];
  /** Members others list (in a view, or as a peer) that did not answer: down, unreachable, or with diagnostics off. */
  readonly silent: ReadonlyArray<{ readonly id: string; readonly name: string; readonly listedBy: readonly string[] }>;
  /**
   * What may be wrong: configured peers whose names did not resolve, the provider failing to seal or
   * open, and — when no member answered — that the cluster may need a key (or another one).
   */
  readonly warnings: readonly string[];
}

/** Why no member may have answered: members with `security` refuse a probe in clear, or under a key they do not hold. */
const NO_KEY = "no answer: the cluster may need a key (a member with security on refuses a probe without its key: the security option, --key or --key-file)";
const wrongKey = (keyId: number) => `no answer: the cluster may hold another key (a member with security on refuses a probe sealed under a key it does not hold; this probe seals with key ${keyId})`;

/** How often a request is repeated within one round, for the members that have not answered. */
const ROUNDS_PER_ASK = 3;

/**
 * Asks a cluster's members to describe themselves, as `blaze probe` does, over a socket of its own.
 * It is no member: it answers the members' admission challenges (proving its address), so they answer
 * it, but it never becomes their peer, and it sends only to the cluster's multicast group or to its
 * configured static peers — never to an address read from a reply. A secured cluster's members refuse
 * (and count) a probe's datagrams unless they are sealed under their key: with `security`, the probe
 * seals what it sends as a sender of its own (its own id and incarnation, counters of its own) and opens
 * what they answer, which they seal too.
 */
export class Prober implements AsyncDisposable {
  readonly #options: ResolvedProbeOptions;
  readonly #clock: Clock;
  readonly #transport: Transport;
  readonly #targets: () => readonly Address[];
  readonly #seeds: StaticSeeds | undefined;
  readonly #warnings: string[];
  readonly #header: Uint8Array;
  readonly #reader: DatagramReader;
  readonly #random: RandomSource;
  /** With `security`: seals what the probe sends, opens what it hears. */
  readonly #guard: DatagramGuard | undefined;
  #round: { readonly nonce: bigint; readonly replies: Map<string, MemberReport> } | undefined;

  private constructor(options: ResolvedProbeOptions, transport: Transport, seeds: StaticSeeds | undefined, warnings: string[], provider: CryptoProvider | undefined) {
    this.#warnings = warnings;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? systemRandom;
    this.#transport = transport;
    this.#seeds = seeds;
    const network = options.network;
    const group: readonly Address[] = network.type === "multicast" ? [{ host: network.group, port: network.port }] : [];
    this.#targets = () => seeds?.addresses ?? group;
    const security = options.security;
    // In insider mode a sender's id is its public key's first 16 bytes, as a member's.
    const id = security?.identity?.publicKey.slice(0, MEMBER_ID_BYTES) ?? this.#random.fill(new Uint8Array(MEMBER_ID_BYTES));
    const incarnation = Math.max(1, Math.floor(Date.now()));
    this.#header = encodeEnvelopeHeader(options.cluster, id, incarnation);
    this.#reader = new DatagramReader({ cluster: options.cluster });
    if (security !== undefined && provider !== undefined) {
      const identity = { cluster: options.cluster, memberId: id, maxDatagramBytes: MAX_DATAGRAM_BYTES };
      this.#guard = new DatagramGuard(security, new KeyRing(security.keys, security.primary), provider, identity, {
        // Datagrams that do not open are not the probe's business (it tells only of members that answered).
        refused: () => {},
        fault: (error) => this.#warn(`sealing or opening a datagram failed: ${error instanceof Error ? error.message : String(error)}`),
        own: () => {},
      });
      this.#guard.start(incarnation);
    }
    transport.onReceive((bytes, from) => this.#receive(bytes, from));
  }

  /** Opens the probe's socket; options are checked at once (`INVALID_OPTION` naming the field). */
  static async open(options: ProbeOptions = {}): Promise<Prober> {
    const resolved = parseOptions(probeOptionsSchema, options, "probe");
    const network = resolved.network;
    const provider = resolved.security === undefined ? undefined : await securityProvider(resolved.security, "probe");
    // The running runtime's adapters, only for what the options do not inject.
    const needsRuntime = resolved.transport === undefined || (network.type === "static" && resolved.resolver === undefined);
    const runtime = needsRuntime ? await import("../adapters/runtime.ts") : undefined;
    const factory = resolved.transport ?? (await runtime!.runtimeTransport());
    const transport =
      network.type === "multicast"
        ? await factory({ bindAddress: multicastBindings(network).sender, multicastInterface: network.interface, multicastTtl: network.ttl })
        : await factory({ bindAddress: network.bindAddress });
    let seeds: StaticSeeds | undefined;
    const warnings: string[] = [];
    if (network.type === "static") {
      seeds = new StaticSeeds(network.peers, familyOf(network.bindAddress), resolved.resolver ?? runtime!.lookupHost, (error) => warnings.push(error.message));
      await seeds.resolveAll(0);
    }
    return new Prober(resolved, transport, seeds, warnings, provider);
  }

  /** Asks every member once (repeating the request within `timeoutMs` for those that have not answered). */
  async ask(options: { readonly timeoutMs?: number; readonly includeEntries?: boolean } = {}): Promise<ProbeResult> {
    if (this.#round !== undefined) throw new BlazeError("ILLEGAL_STATE", "the probe is already asking: await the round under way");
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs;
    const nonce = BigInt(this.#random.nextInt(2 ** 31) * 2 ** 21 + this.#random.nextInt(2 ** 21) + 1);
    const round = { nonce, replies: new Map<string, MemberReport>() };
    // Sealed for the whole group, or for whoever is at a static peer's address.
    const receiver = this.#options.network.type === "multicast" ? "group" : undefined;
    this.#round = round;
    const request = encodeFrame({ case: "diagnosticsRequest", value: { nonce, includeEntries: options.includeEntries ?? this.#options.includeEntries } });
    try {
      for (let i = 0; i < ROUNDS_PER_ASK; i++) {
        for (const target of this.#targets()) this.#send(request, target, receiver);
        await new Promise<void>((resolve) => this.#clock.setTimer(timeoutMs / ROUNDS_PER_ASK, resolve));
      }
    } finally {
      this.#round = undefined;
    }
    // Names that did not resolve are tried again, as a member would.
    this.#seeds?.refresh(this.#clock.now(), () => true);
    const warnings = [...this.#warnings];
    if (round.replies.size === 0) warnings.push(this.#guard === undefined ? NO_KEY : wrongKey(this.#guard.keyring.primary));
    return { ...summarize([...round.replies.values()]), warnings };
  }

  async close(): Promise<void> {
    // What is being sealed (with an asynchronous provider) goes out before the socket closes.
    await this.#guard?.drained();
    this.#guard?.close();
    await this.#transport.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // A frame in a datagram of its own (its bytes are the body of an envelope carrying it alone); with
  // security, sealed for `receiver`: the group, one member, or (undefined) whoever is at the address.
  #send(frame: Uint8Array, to: Address, receiver: Uint8Array | "group" | undefined): void {
    const datagram = new Uint8Array(this.#header.length + frame.length);
    datagram.set(this.#header);
    datagram.set(frame, this.#header.length);
    const send = (bytes: Uint8Array) => {
      try {
        this.#transport.send(bytes, to);
      } catch {
        // A target that cannot be sent to answers nothing: it shows as silent.
      }
    };
    if (this.#guard === undefined) send(datagram);
    else this.#guard.seal(datagram, this.#header.length, receiver, send);
  }

  // A fault of the crypto provider is told in the warnings of every round from then on, once.
  #warn(message: string): void {
    if (!this.#warnings.includes(message)) this.#warnings.push(message);
  }

  #receive(bytes: Uint8Array, from: Address): void {
    if (this.#guard === undefined) this.#receivePlain(this.#reader.read(bytes), from);
    else this.#guard.open(bytes, (opened) => this.#receivePlain(this.#reader.readSplit(opened), from));
  }

  #receivePlain(result: ReceiveResult, from: Address): void {
    if (!result.ok) return;
    const { senderId, incarnation, frames } = result.datagram;
    for (const frame of frames) {
      if (frame.case === "ping") {
        // A member's admission challenge: answered from this socket, which proves the probe's address.
        const ping = frame.frame.kind.value as { group: string; nonce: bigint };
        if (ping.group !== "") continue;
        this.#send(encodeFrame({ case: "pong", value: { nonce: ping.nonce } }), from, senderId);
      } else if (frame.case === "diagnosticsReply") {
        const reply = frame.frame.kind.value as DiagnosticsReply;
        const round = this.#round;
        if (round === undefined || reply.nonce !== round.nonce) continue;
        const id = keyOf(senderId);
        if (!round.replies.has(id)) round.replies.set(id, readReport(reply, { id, incarnation, cluster: this.#options.cluster, address: from }));
      }
    }
  }
}

/** Asks once and closes: the members of a cluster, and the ones others list that did not answer. */
export async function probeCluster(options: ProbeOptions = {}): Promise<ProbeResult> {
  await using prober = await Prober.open(options);
  return await prober.ask();
}

function summarize(reports: MemberReport[]): Omit<ProbeResult, "warnings"> {
  const members = reports.sort((a, b) => (a.name === b.name ? (a.id < b.id ? -1 : 1) : a.name < b.name ? -1 : 1));
  const answered = new Set(members.map((m) => m.id));
  const silent = new Map<string, { id: string; name: string; listedBy: string[] }>();
  const list = (id: string, name: string, by: MemberReport) => {
    if (answered.has(id)) return;
    const entry = silent.get(id) ?? { id, name, listedBy: [] };
    if (entry.name === "") entry.name = name;
    const who = by.name || by.id.slice(0, 8);
    if (!entry.listedBy.includes(who)) entry.listedBy.push(who);
    silent.set(id, entry);
  };
  for (const report of members) {
    for (const group of report.groups) for (const member of group.members) list(member.id, member.name, report);
    for (const peer of report.peers) list(peer.id, "", report);
  }
  return { members, silent: [...silent.values()] };
}
