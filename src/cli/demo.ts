import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BlazeMessageSchema, ValueSchema } from "../../gen/activeblaze/v1/message_pb.ts";
import { Addressing, DataSchema, PayloadFormat } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { createUdpTransport } from "../adapters/node.ts";
import { systemRandom } from "../transport/clock.ts";
import type { Address, Transport } from "../transport/transport.ts";
import { createEnvelope, decodeEnvelope, encodeEnvelope } from "../wire/codec.ts";
import { DropCounters } from "../wire/drop-reason.ts";
import { MEMBER_ID_BYTES } from "../wire/limits.ts";

const CLUSTER = "demo";
const GROUP: Address = { host: "239.255.77.1", port: 46_655 };
const LOOPBACK = "127.0.0.1";

interface DemoMember {
  readonly name: string;
  readonly id: Uint8Array;
  readonly transport: Transport;
  readonly drops: DropCounters;
  received: number;
}

/**
 * Three members on loopback multicast, each publishing a few messages on the topic "demo.chat";
 * every member prints what it receives, and a garbage datagram shows bad input dropped and counted.
 */
export async function runDemo(options: { messages: number }): Promise<number> {
  const names = ["alpha", "bravo", "charlie"];
  const members: DemoMember[] = [];
  for (const name of names) {
    const transport = await createUdpTransport({
      bindAddress: "0.0.0.0",
      port: GROUP.port,
      reuseAddress: true,
      multicastInterface: LOOPBACK,
    });
    transport.joinGroup(GROUP.host, LOOPBACK);
    const member: DemoMember = {
      name,
      id: systemRandom.fill(new Uint8Array(MEMBER_ID_BYTES)),
      transport,
      drops: new DropCounters(),
      received: 0,
    };
    transport.onReceive((bytes) => receive(member, bytes, members));
    members.push(member);
  }
  console.log(`three members joined ${GROUP.host}:${GROUP.port} on ${LOOPBACK} (cluster "${CLUSTER}")`);

  for (let n = 1; n <= options.messages; n++) {
    for (const member of members) member.transport.send(chatDatagram(member, n), GROUP);
  }
  members[0]!.transport.send(new Uint8Array([0xde, 0xad, 0xbe, 0xef]), GROUP);

  const expected = options.messages * members.length * members.length;
  const deadline = Date.now() + 3_000;
  while (members.reduce((sum, m) => sum + m.received, 0) < expected && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (const member of members) {
    console.log(`${member.name}: received ${member.received} messages, dropped ${member.drops.total} bad datagrams`);
    await member.transport.close();
  }
  const received = members.reduce((sum, m) => sum + m.received, 0);
  // Plain UDP multicast without the reliable layer: loss is possible but rare on loopback.
  return received > 0 ? 0 : 1;
}

function chatDatagram(member: DemoMember, n: number): Uint8Array {
  const message = create(BlazeMessageSchema, {
    fields: {
      text: create(ValueSchema, { kind: { case: "stringValue", value: `hello #${n} from ${member.name}` } }),
      n: create(ValueSchema, { kind: { case: "int32Value", value: n } }),
    },
  });
  const data = create(DataSchema, {
    seq: BigInt(n),
    addressing: Addressing.TOPIC,
    destination: "demo.chat",
    format: PayloadFormat.BLAZE_MESSAGE,
    payload: toBinary(BlazeMessageSchema, message),
  });
  const envelope = createEnvelope({ cluster: CLUSTER, senderId: member.id, incarnation: 1n }, { case: "data", value: data });
  return encodeEnvelope(envelope);
}

function receive(member: DemoMember, bytes: Uint8Array, members: readonly DemoMember[]): void {
  const result = decodeEnvelope(bytes, { cluster: CLUSTER });
  if (!result.ok) {
    member.drops.count(result.reason);
    console.log(`${member.name}: dropped a datagram (${result.reason}: ${result.detail})`);
    return;
  }
  const { envelope } = result;
  if (envelope.body.case !== "data") return;
  const sender = members.find((m) => sameId(m.id, envelope.senderId))?.name ?? "unknown";
  const text = fromBinary(BlazeMessageSchema, envelope.body.value.payload).fields["text"]?.kind;
  member.received++;
  console.log(`${member.name} <- ${sender} on ${envelope.body.value.destination}: ${text?.case === "stringValue" ? text.value : "?"}`);
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
