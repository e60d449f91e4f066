import { BlazeError } from "../errors.ts";
import { BlazeMessage } from "../message/blaze-message.ts";
import { web } from "../web.ts";
import type { Member } from "./view.ts";

const decoder = new web.TextDecoder("utf-8");

/** A message delivered point to point (to an inbox), from a queue, or as a reply. */
export class GroupMessage {
  #message: BlazeMessage | undefined;

  constructor(
    /** The sender, as the group knows it (undefined if it is not in any view here yet). */
    readonly sender: Member | undefined,
    /** The sender's member id. */
    readonly senderId: string,
    /** The inbox or queue it was sent to ("" is the default inbox). */
    readonly destination: string,
    readonly payload: Uint8Array,
    readonly format: "bytes" | "blaze-message",
    /** Non-zero for a request (answer it with `reply`) and for a reply. */
    readonly requestId: number,
    private readonly replier: ((response: BlazeMessage | Uint8Array) => Promise<void>) | undefined,
  ) {}

  /** True when the sender waits for an answer. */
  get isRequest(): boolean {
    return this.replier !== undefined;
  }

  get message(): BlazeMessage {
    this.#message ??= this.format === "blaze-message" ? BlazeMessage.fromBinary(this.payload) : new BlazeMessage(this.payload);
    return this.#message;
  }

  text(): string {
    return this.format === "blaze-message" ? (this.message.getText() ?? "") : decoder.decode(this.payload);
  }

  json<T = unknown>(): T {
    return this.format === "blaze-message" ? (this.message.getObject<T>() as T) : (JSON.parse(this.text()) as T);
  }

  /** Answers a request (ActiveBlaze's sendMessageResponse). Throws `ILLEGAL_STATE` for a message that is not a request. */
  reply(response: BlazeMessage | Uint8Array): Promise<void> {
    if (this.replier === undefined) throw new BlazeError("ILLEGAL_STATE", "reply() on a message that is not a request");
    return this.replier(response);
  }
}
