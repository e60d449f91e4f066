import { describe, expect, it } from "vitest";
import { RepairScope } from "./repair-scope.ts";

const HOLDOFF = 20;

/** `n` NACKs, one ms apart from `start`, each for one message; `again` says whether a second receiver asks too. */
function nacks(scope: RepairScope, start: number, n: number, again: (i: number) => boolean): Array<"one" | "everyone"> {
  const chosen: Array<"one" | "everyone"> = [];
  for (let i = 0; i < n; i++) {
    const seq = start + i;
    const now = start + i;
    const choice = scope.choose(now);
    chosen.push(choice);
    if (choice === "one") {
      scope.sentToOne(seq, now);
      if (again(i)) scope.askedAgain(seq);
    }
  }
  return chosen;
}

describe("RepairScope", () => {
  it("repairs to the one receiver that asked while nothing says the losses are shared", () => {
    const scope = new RepairScope(HOLDOFF);
    expect(nacks(scope, 0, 100, () => false).every((c) => c === "one")).toBe(true);
  });

  it("repairs to everyone at once once most repairs were asked for twice, still probing one NACK in four", () => {
    const scope = new RepairScope(HOLDOFF);
    const learning = nacks(scope, 0, 8, () => true);
    // A new sender starts just short of shared: two repairs asked for twice tell it.
    expect(learning.slice(0, 3)).toEqual(["one", "one", "everyone"]);
    const shared = nacks(scope, 100, 40, () => true);
    expect(shared.filter((c) => c === "everyone").length).toBe(30);
    expect(shared.filter((c) => c === "one").length).toBe(10);
  });

  it("goes back to one receiver when the probes stop being asked for again (the holdoff passes on them)", () => {
    const scope = new RepairScope(HOLDOFF);
    nacks(scope, 0, 40, () => true);
    expect(scope.choose(1_000)).toBe("everyone");
    // Losses now are one receiver's own: the probes are asked for by their receiver alone.
    const after = nacks(scope, 2_000, 200, () => false);
    expect(after.slice(-20).every((c) => c === "one")).toBe(true);
  });

  it("a second ask for a message it never sent to one alone, or asked again twice, teaches nothing", () => {
    const scope = new RepairScope(HOLDOFF);
    for (let seq = 0; seq < 50; seq++) scope.askedAgain(seq);
    scope.sentToOne(7, 0);
    scope.askedAgain(7);
    scope.askedAgain(7);
    expect(scope.choose(1)).toBe("one");
  });

  it("keeps at most 1,024 repairs awaiting judgement", () => {
    const scope = new RepairScope(HOLDOFF);
    for (let seq = 0; seq < 5_000; seq++) scope.sentToOne(seq, 0);
    // The oldest were forgotten unjudged: asking again for them teaches nothing.
    for (let seq = 0; seq < 3_976; seq++) scope.askedAgain(seq);
    expect(scope.choose(1)).toBe("one");
    // The last 1,024 are still open: all asked again, the losses look shared.
    for (let seq = 3_976; seq < 5_000; seq++) scope.askedAgain(seq);
    expect(scope.choose(2)).toBe("everyone");
  });
});
