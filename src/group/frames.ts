import { create } from "@bufbuild/protobuf";
import { MemberRefSchema, type ViewId as ViewIdProto, ViewIdSchema } from "../../gen/activeblaze/v1/common_pb.ts";
import { type MemberInfo, MemberInfoSchema, type View as ViewProto, ViewSchema } from "../../gen/activeblaze/v1/membership_pb.ts";
import { idOf, keyOf } from "../reliable/member-key.ts";
import type { Address } from "../transport/transport.ts";
import { MAX_COUNTER } from "../wire/safe-integers.ts";
import type { Member, View, ViewId } from "./view.ts";

/** Encoders and decoders between the membership messages of the schema and the group's own types. */


export function memberInfo(member: Member, groups: readonly string[] = []): MemberInfo {
  return create(MemberInfoSchema, {
    id: idOf(member.id),
    incarnation: BigInt(member.incarnation),
    name: member.name,
    weight: member.weight,
    metadata: { ...member.metadata },
    groups: [...groups],
    host: member.address.host,
    port: member.address.port,
    startTimeMs: BigInt(Math.max(0, Math.floor(member.startTimeMs))),
  });
}

/**
 * Reads a MemberInfo; undefined when it is unusable (no id, no address). `observed`: where the member's
 * own datagram came from, which is its address whatever the datagram says (a Join names no target).
 */
export function toMember(info: MemberInfo | undefined, observed?: Address): Member | undefined {
  if (info === undefined || info.id.length !== 16) return undefined;
  const address = observed ?? { host: info.host, port: info.port };
  if (address.host === "" || !validPort(address.port)) return undefined;
  return {
    id: keyOf(info.id),
    incarnation: Number(info.incarnation),
    name: info.name,
    weight: info.weight,
    metadata: { ...info.metadata },
    address,
    startTimeMs: Number(info.startTimeMs),
  };
}

export function validPort(port: number): boolean {
  return port >= 1 && port <= 65_535;
}

export function viewIdProto(id: ViewId): ViewIdProto {
  return create(ViewIdSchema, { coordinatorId: idOf(id.installer), counter: BigInt(id.counter) });
}

/**
 * Reads a view id; undefined when malformed, or when its counter is above `MAX_COUNTER`: a made-up view
 * at 2^53 − 1 would otherwise stop the group counting on exactly (or split its views).
 */
export function toViewId(proto: ViewIdProto | undefined): ViewId | undefined {
  if (proto === undefined || proto.coordinatorId.length !== 16 || proto.counter > BigInt(MAX_COUNTER)) return undefined;
  return { installer: keyOf(proto.coordinatorId), counter: Number(proto.counter) };
}

export function viewProto(view: View, merged: readonly ViewId[] = []): ViewProto {
  return create(ViewSchema, {
    group: view.group,
    id: viewIdProto(view.id),
    members: view.members.map((m) => memberInfo(m)),
    coordinator: create(MemberRefSchema, { id: idOf(view.coordinator.id), incarnation: BigInt(view.coordinator.incarnation) }),
    merged: merged.map(viewIdProto),
  });
}

/** Reads a View; undefined when it is malformed (no id, a member without address, a coordinator not among the members). */
export function toView(proto: ViewProto): View | undefined {
  const id = toViewId(proto.id);
  if (id === undefined || proto.coordinator === undefined) return undefined;
  const members: Member[] = [];
  for (const info of proto.members) {
    const member = toMember(info);
    if (member === undefined) return undefined;
    members.push(member);
  }
  const coordinatorKey = keyOf(proto.coordinator.id);
  const coordinator = members.find((m) => m.id === coordinatorKey);
  if (coordinator === undefined) return undefined;
  return { group: proto.group, id, members, coordinator };
}
