import { BlazeError } from "../errors.ts";
import type { BlazeMessage } from "../message/blaze-message.ts";
import { PayloadMessage } from "../message/payload-message.ts";
import type { SiteMember } from "./relay-frames.ts";

/** A message delivered by a relay channel: from this site or another, on a topic or to an inbox. */
export class SiteMessage extends PayloadMessage {
  constructor(
    /** The member that sent it, with its site. */
    readonly origin: SiteMember,
    /** The topic, or the inbox it was sent to ("" the default inbox). */
    readonly destination: string,
    payload: Uint8Array,
    format: "bytes" | "blaze-message",
    /** Its number in the origin's stream across the bridge (0 within a site). */
    readonly seq: number,
    private readonly replier: ((response: BlazeMessage | Uint8Array) => Promise<void>) | undefined,
  ) {
    super(payload, format);
  }

  /** The site it comes from. */
  get site(): string {
    return this.origin.site;
  }

  /** True when the sender waits for an answer. */
  get isRequest(): boolean {
    return this.replier !== undefined;
  }

  /** Answers a request, across the bridge when it came from another site. */
  reply(response: BlazeMessage | Uint8Array): Promise<void> {
    if (this.replier === undefined) throw new BlazeError("ILLEGAL_STATE", "reply() on a message that is not a request");
    return this.replier(response);
  }
}
