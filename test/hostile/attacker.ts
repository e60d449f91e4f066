import { createSocket, type Socket } from "node:dgram";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { PongSchema } from "../../gen/activeblaze/v1/membership_pb.ts";
import { PROTOCOL_VERSION } from "../../src/wire/limits.ts";
import type { Address } from "../../src/transport/transport.ts";
import type { SpeakerCrypto } from "./insider-keys.ts";

/** A made-up member: the sender id and incarnation forged datagrams carry. */
export interface Identity {
  readonly senderId: Uint8Array;
  readonly incarnation: bigint;
}

/**
 * An outsider on the LAN with real sockets on loopback. Its plain socket sends anything (spoofing a
 * sender id costs nothing; it never answers). `as(identity)` opens a socket that speaks for one made-up
 * member and — unlike a spoofed source — answers the members' admission challenges for it, as a real
 * member would. Everything goes only to loopback and to the test's multicast group.
 */
export class Attacker {
  readonly #plain: Speaker;
  readonly #speakers: Speaker[] = [];

  private constructor(
    plain: Speaker,
    private readonly group: Address,
    private readonly cluster: string,
  ) {
    this.#plain = plain;
  }

  static async open(group: Address, cluster: string): Promise<Attacker> {
    return new Attacker(await Speaker.open(group, cluster, undefined, undefined), group, cluster);
  }

  /** Sends `bytes` from the plain socket to the group, or to one member's unicast address. */
  send(bytes: Uint8Array, to: Address = this.group): void {
    this.#plain.send(bytes, to);
  }

  /** A socket speaking for `identity` (it answers that identity's challenges; sealed, with `crypto`). */
  async as(identity: Identity, crypto?: SpeakerCrypto): Promise<Speaker> {
    const speaker = await Speaker.open(this.group, this.cluster, identity, crypto);
    this.#speakers.push(speaker);
    return speaker;
  }

  /** Challenges answered, over every socket. */
  get answered(): number {
    return this.#speakers.reduce((sum, s) => sum + s.answered, 0);
  }

  async close(): Promise<void> {
    await Promise.all([this.#plain, ...this.#speakers.splice(0)].map((s) => s.close()));
  }
}

export class Speaker {
  answered = 0;

  private constructor(
    private readonly socket: Socket,
    private readonly group: Address,
    private readonly cluster: string,
    readonly identity: Identity | undefined,
    private readonly crypto: SpeakerCrypto | undefined,
  ) {
    socket.on("message", (bytes, from) => this.#onMessage(bytes, { host: from.address, port: from.port }));
  }

  static async open(group: Address, cluster: string, identity: Identity | undefined, crypto: SpeakerCrypto | undefined): Promise<Speaker> {
    const socket = createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    return new Speaker(socket, group, cluster, identity, crypto);
  }

  /** Seals a plain envelope of this speaker's (as is without crypto). */
  seal(plain: Uint8Array, toGroup = true): Uint8Array {
    return this.crypto === undefined ? plain : this.crypto.seal(plain, toGroup);
  }

  send(bytes: Uint8Array, to: Address = this.group): void {
    if (!to.host.startsWith("127.") && to.host !== this.group.host) throw new Error(`the attacker sends only to loopback, not ${to.host}`);
    this.socket.send(bytes, to.port, to.host);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  #onMessage(received: Uint8Array, from: Address): void {
    const identity = this.identity;
    if (identity === undefined) return;
    const bytes = this.crypto === undefined ? received : this.crypto.open(received);
    if (bytes === undefined) return;
    let envelope;
    try {
      envelope = fromBinary(EnvelopeSchema, bytes);
    } catch {
      return;
    }
    const body = envelope.body;
    const pings = body.case === "ping" ? [body.value] : body.case === "bundle" ? body.value.frames.flatMap((f) => (f.kind.case === "ping" ? [f.kind.value] : [])) : [];
    for (const ping of pings) {
      if (ping.group !== "") continue;
      const pong = create(EnvelopeSchema, {
        version: PROTOCOL_VERSION,
        cluster: this.cluster,
        senderId: identity.senderId,
        incarnation: identity.incarnation,
        body: { case: "pong", value: create(PongSchema, { nonce: ping.nonce }) },
      });
      this.answered++;
      this.send(this.seal(toBinary(EnvelopeSchema, pong), false), from);
    }
  }
}
