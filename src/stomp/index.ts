// activeblaze/stomp: a STOMP 1.2 gateway (TCP and WebSocket) onto a member's connection factory.
// Re-exports only.
export { createStompGateway, StompGateway } from "./gateway.ts";
export type { GatewayStats } from "./gateway.ts";
export { stompGatewayOptionsSchema } from "./options.ts";
export type { ResolvedGatewayOptions, StompGatewayOptions } from "./options.ts";
