import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type Frame, FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { LeaveSchema, ViewSchema } from "../../gen/activeblaze/v1/membership_pb.ts";
import { AckSchema, HeartbeatSchema, NackSchema, Stream } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { emptyDataFields, type ReceivedFrame } from "../wire/frames.ts";
import type { Peer } from "./endpoint.ts";
import { FrameRoutes, routeOf } from "./frame-routes.ts";

const PEER: Peer = { key: "aa".repeat(16), id: new Uint8Array(16), incarnation: 1, address: { host: "127.0.0.1", port: 1 }, lastHeardAt: 0 };

function received(kind: Frame["kind"]): ReceivedFrame {
  return { case: kind.case!, frame: create(FrameSchema, { kind }) } as ReceivedFrame;
}

function data(targetId: Uint8Array): ReceivedFrame {
  return { ...emptyDataFields(), targetId };
}

describe("routeOf", () => {
  it("routes data, acks and NACKs by their stream, and every other frame by its kind", () => {
    expect(routeOf(data(new Uint8Array(0)))).toBe("multicastStream");
    expect(routeOf(data(new Uint8Array(16)))).toBe("unicastStream");
    expect(routeOf(received({ case: "nack", value: create(NackSchema, { stream: Stream.MULTICAST }) }))).toBe("multicastStream");
    expect(routeOf(received({ case: "nack", value: create(NackSchema, { stream: Stream.UNICAST }) }))).toBe("unicastStream");
    expect(routeOf(received({ case: "ack", value: create(AckSchema, { stream: Stream.MULTICAST }) }))).toBe("multicastStream");
    expect(routeOf(received({ case: "ack", value: create(AckSchema, { stream: Stream.UNICAST }) }))).toBe("unicastStream");
    expect(routeOf(received({ case: "heartbeat", value: create(HeartbeatSchema) }))).toBe("heartbeat");
    expect(routeOf(received({ case: "view", value: create(ViewSchema, { group: "g" }) }))).toBe("view");
    expect(routeOf(received({ case: "leave", value: create(LeaveSchema, { group: "g" }) }))).toBe("leave");
  });

  it("routes a channel-level goodbye nowhere: the endpoint took it", () => {
    expect(routeOf(received({ case: "leave", value: create(LeaveSchema, { group: "" }) }))).toBeUndefined();
  });
});

describe("FrameRoutes", () => {
  it("hands a frame to every handler of its route, in registration order, until each is removed", () => {
    const routes = new FrameRoutes();
    const seen: string[] = [];
    const heartbeat = received({ case: "heartbeat", value: create(HeartbeatSchema) });
    const stopFirst = routes.add(["heartbeat", "view"], (_, frame) => seen.push(`first ${frame.case}`));
    const stopSecond = routes.add(["heartbeat"], (peer, frame) => seen.push(`second ${frame.case} from ${peer.key.slice(0, 2)}`));
    expect(routes.dispatch("heartbeat", PEER, heartbeat)).toBe(true);
    expect(seen).toEqual(["first heartbeat", "second heartbeat from aa"]);
    stopFirst();
    seen.length = 0;
    expect(routes.dispatch("heartbeat", PEER, heartbeat)).toBe(true);
    expect(seen).toEqual(["second heartbeat from aa"]);
    // A route whose last handler went is unrouted again.
    expect(routes.dispatch("view", PEER, received({ case: "view", value: create(ViewSchema) }))).toBe(false);
    stopSecond();
    expect(routes.dispatch("heartbeat", PEER, heartbeat)).toBe(false);
    expect(seen).toEqual(["second heartbeat from aa"]);
  });

  it("removes a handler once, however often its remover is called", () => {
    const routes = new FrameRoutes();
    const calls: string[] = [];
    const handler = () => calls.push("handled");
    const stop = routes.add(["multicastStream"], handler);
    routes.add(["multicastStream"], handler);
    stop();
    stop();
    expect(routes.dispatch("multicastStream", PEER, data(new Uint8Array(0)))).toBe(true);
    expect(calls).toEqual(["handled"]);
  });

  it("routes the streams' frames as any other, handlers of both streams added and removed in turn", () => {
    const routes = new FrameRoutes();
    const seen: string[] = [];
    const unicast = data(new Uint8Array(16));
    const multicast = data(new Uint8Array(0));
    expect(routes.dispatch("unicastStream", PEER, unicast)).toBe(false);
    const stopUnicast = routes.add(["unicastStream"], () => seen.push("unicast"));
    const stopBoth = routes.add(["unicastStream", "multicastStream"], () => seen.push("both"));
    expect(routes.dispatch("unicastStream", PEER, unicast)).toBe(true);
    expect(routes.dispatch("multicastStream", PEER, multicast)).toBe(true);
    expect(seen).toEqual(["unicast", "both", "both"]);
    stopBoth();
    seen.length = 0;
    expect(routes.dispatch("multicastStream", PEER, multicast)).toBe(false);
    expect(routes.dispatch("unicastStream", PEER, unicast)).toBe(true);
    expect(seen).toEqual(["unicast"]);
    stopUnicast();
    expect(routes.dispatch("unicastStream", PEER, unicast)).toBe(false);
    routes.add(["unicastStream"], () => seen.push("again"));
    expect(routes.dispatch("unicastStream", PEER, unicast)).toBe(true);
    expect(seen).toEqual(["unicast", "again"]);
  });
});
