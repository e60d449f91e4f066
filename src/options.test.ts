import { describe, expect, it } from "vitest";
import { Channel } from "./channel/channel.ts";
import { BlazeError } from "./errors.ts";
import { GroupChannel } from "./group/group-channel.ts";

function refusal(fn: () => unknown): BlazeError {
  try {
    fn();
  } catch (error) {
    if (error instanceof BlazeError) return error;
    throw error;
  }
  throw new Error("no error");
}

describe("options", () => {
  it("name every invalid field at once, the first one in `path`", () => {
    const error = refusal(() => new Channel({ heartbeatIntervalMs: 0, nack: { ackDelayMs: -1 }, bogus: 1 } as never));
    expect(error.code).toBe("INVALID_OPTION");
    expect(error.path).toEqual(["heartbeatIntervalMs"]);
    expect(error.message).toMatch(/^invalid option "channel\.heartbeatIntervalMs": /);
    expect(error.message).toContain('"channel.nack.ackDelayMs"');
    expect(error.message).toContain('"channel.bogus"');
  });

  it("check the point-to-point streams' options of a group channel", () => {
    const error = refusal(() => new GroupChannel({ unicast: { rtoMs: 500, rtoMaxMs: 100 } }));
    expect(error.code).toBe("INVALID_OPTION");
    expect(error.message).toContain('"group.unicast.rtoMaxMs"');
  });
});
