import { BlazeError } from "../errors.ts";
import type { BlazeMessage } from "../message/blaze-message.ts";
import { PayloadMessage } from "../message/payload-message.ts";
import type { Member } from "./view.ts";

/** A message delivered point to point (to an inbox), from a queue, or as a reply. */
export class GroupMessage extends PayloadMessage {
  constructor(
    /** The sender, as the group knows it (undefined if it is not in any view here yet). */
    readonly sender: Member | undefined,
    /** The sender's member id. */
    readonly senderId: string,
    /** The inbox or queue it was sent to ("" is the default inbox). */
    readonly destination: string,
    payload: Uint8Array,
    format: "bytes" | "blaze-message",
    /** Non-zero for a request or a queue message (its id), and for a reply. */
    readonly requestId: number,
    private readonly replier: ((response: BlazeMessage | Uint8Array) => Promise<void>) | undefined,
  ) {
    super(payload, format);
  }

  /** True when the sender waits for an answer. */
  get isRequest(): boolean {
    return this.replier !== undefined;
  }

  /** Answers a request (ActiveBlaze's sendMessageResponse). Throws `ILLEGAL_STATE` for a message that is not a request. */
  reply(response: BlazeMessage | Uint8Array): Promise<void> {
    if (this.replier === undefined) throw new BlazeError("ILLEGAL_STATE", "reply() on a message that is not a request");
    return this.replier(response);
  }
}
