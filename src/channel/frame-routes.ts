import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { Stream } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { type HandReadCase, type HandReadFrame, leaveGroupOf, type ReceivedFrame, streamOf } from "../wire/frames.ts";
import type { Peer } from "./endpoint.ts";

/** The routes of a stream's frames: its data, acks and NACKs, whatever their kind. */
export type StreamRoute = "multicastStream" | "unicastStream";

/**
 * What a received frame is routed by: its kind, except that data, acks and NACKs go by the stream they
 * belong to (a sender's multicast stream, run by the channel, or a unicast stream, run by the level above).
 */
export type FrameRoute = StreamRoute | Exclude<NonNullable<Frame["kind"]["case"]>, "data" | "nack" | "ack">;

/**
 * The frames a route carries: a stream's data, acks and NACKs, or the frames of the route's kind (of a
 * kind read by hand, the hand reader's form, or the generated message where it declined).
 */
export type RoutedFrame<R extends FrameRoute> = R extends StreamRoute
  ? Exclude<ReceivedFrame, HandReadFrame>
  : R extends HandReadCase
    ? { readonly case: R; readonly frame: Frame; readonly read?: undefined } | (HandReadFrame & { readonly case: R })
    : { readonly case: R; readonly frame: Frame; readonly read?: undefined };

/** What a unit registers for its routes: called with each frame in arrival order, and the peer it came from. */
export type FrameHandler<R extends FrameRoute = FrameRoute> = (peer: Peer, frame: RoutedFrame<R>) => void;

/** The route of `frame`; undefined for a channel-level goodbye (a Leave of no group), which the endpoint took. */
export function routeOf(frame: ReceivedFrame): FrameRoute | undefined {
  switch (frame.case) {
    case "data":
      return frame.targetId.length === 0 ? "multicastStream" : "unicastStream";
    case "nack":
    case "ack":
      return streamOf(frame.frame) === Stream.MULTICAST ? "multicastStream" : "unicastStream";
    case "leave":
      return leaveGroupOf(frame.frame) === "" ? undefined : "leave";
    default:
      return frame.case;
  }
}

/**
 * Which unit handles which frames: units register for routes, and a received frame goes to every unit
 * registered for its route, in the order they registered (a heartbeat, say, to the multicast protocol
 * and to the group level, which reads the queues it lists).
 */
export class FrameRoutes {
  readonly #routes = new Map<FrameRoute, Array<FrameHandler<never>>>();
  // The handlers of the two stream routes, the map's own arrays held in fields as well: nearly every
  // frame received is a stream's (a request, a reply, their acknowledgements), and a field is read
  // without the map lookup, two a request/reply datagram.
  #unicastStream: Array<FrameHandler<never>> | undefined;
  #multicastStream: Array<FrameHandler<never>> | undefined;

  /** Hands frames of `routes` to `handler`; returns the function that stops it. */
  add<R extends FrameRoute>(routes: readonly R[], handler: FrameHandler<R>): () => void {
    for (const route of routes) {
      const handlers = this.#routes.get(route);
      if (handlers === undefined) this.#routes.set(route, [handler as FrameHandler<never>]);
      else handlers.push(handler as FrameHandler<never>);
      this.#held(route);
    }
    let added = true;
    return () => {
      if (!added) return;
      added = false;
      for (const route of routes) {
        const handlers = this.#routes.get(route);
        const index = handlers?.indexOf(handler as FrameHandler<never>) ?? -1;
        if (index < 0) continue;
        handlers!.splice(index, 1);
        if (handlers!.length === 0) {
          this.#routes.delete(route);
          this.#held(route);
        }
      }
    };
  }

  // The fields of the stream routes follow the map.
  #held(route: FrameRoute): void {
    if (route === "unicastStream") this.#unicastStream = this.#routes.get(route);
    else if (route === "multicastStream") this.#multicastStream = this.#routes.get(route);
  }

  /** Hands `frame` to the handlers of `route`; false when none is registered. */
  dispatch(route: FrameRoute, peer: Peer, frame: ReceivedFrame): boolean {
    const held = route === "unicastStream" ? this.#unicastStream : route === "multicastStream" ? this.#multicastStream : this.#routes.get(route);
    const handlers = held as Array<(peer: Peer, frame: ReceivedFrame) => void> | undefined;
    if (handlers === undefined) return false;
    for (const handler of handlers) handler(peer, frame);
    return true;
  }
}
