import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { markedTables, README, renderOptionTables } from "./support/readme-options.ts";

describe("the README's option tables", () => {
  it("are made from the options' schemas, every option documented (npm run docs:options rewrites them)", () => {
    const readme = readFileSync(README, "utf8");
    expect(markedTables(readme)).toEqual(["channel", "group", "relay", "nats"]);
    expect(readme, "the README's option tables differ from the schemas: run npm run docs:options").toBe(renderOptionTables(readme));
  });
});
