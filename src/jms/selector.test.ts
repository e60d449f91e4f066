import { describe, expect, it } from "vitest";
import { BlazeError } from "../errors.ts";
import { parseSelector, type SelectorValue } from "./selector.ts";

// The selector conformance suite: cases in the style of ActiveMQ's SelectorTest and Artemis's
// FilterTest — precedence, NULL logic, LIKE with escapes, numeric promotion, headers, and invalid syntax
// with the position of the fault.

/** The message every case is evaluated against (properties, and the selectable headers). */
const MESSAGE: Record<string, SelectorValue> = {
  JMSType: "selector-test",
  JMSMessageID: "ID:connection:1:1:1:1",
  JMSPriority: 4n,
  JMSDeliveryMode: "NON_PERSISTENT",
  JMSTimestamp: 1_767_225_600_000n,
  JMSCorrelationID: null,
  JMSXDeliveryCount: 1n,
  name: "James",
  location: "London",
  byteProp: 123n,
  shortProp: -32_000n,
  intProp: 100n,
  longProp: 10_000_000_000n,
  floatProp: 1.5,
  doubleProp: 3.25,
  doubleWhole: 5,
  rank: 123n,
  version: 2.0,
  trueProp: true,
  falseProp: false,
  emptyString: "",
  percent: "50%",
  under: "a_b",
  quote: "it's",
  path: "c:\\temp",
  unicode: "héllo 😀",
  zero: 0n,
};

const lookup = (name: string): SelectorValue => (name in MESSAGE ? MESSAGE[name]! : null);

/** selector → TRUE, FALSE or UNKNOWN (null) against MESSAGE. */
const CASES: ReadonlyArray<readonly [string, boolean | null]> = [
  // Headers.
  ["JMSType = 'selector-test'", true],
  ["JMSType = 'crash'", false],
  ["JMSPriority = 4", true],
  ["JMSPriority > 3 AND JMSPriority < 5", true],
  ["JMSDeliveryMode = 'NON_PERSISTENT'", true],
  ["JMSDeliveryMode = 'PERSISTENT'", false],
  ["JMSMessageID LIKE 'ID:%'", true],
  ["JMSTimestamp > 0", true],
  ["JMSCorrelationID IS NULL", true],
  ["JMSXDeliveryCount = 1", true],
  // Strings.
  ["name = 'James'", true],
  ["name = 'james'", false],
  ["name <> 'James'", false],
  ["name <> 'Jim'", true],
  ["emptyString = ''", true],
  ["quote = 'it''s'", true],
  ["unicode = 'héllo 😀'", true],
  // Booleans.
  ["trueProp", true],
  ["falseProp", false],
  ["trueProp = TRUE", true],
  ["falseProp = false", true],
  ["NOT falseProp", true],
  ["trueProp AND NOT falseProp", true],
  ["trueProp <> falseProp", true],
  // Numbers and promotion.
  ["rank = 123", true],
  ["rank = 123.0", true],
  ["rank > 100 AND rank < 200", true],
  ["byteProp = 123", true],
  ["shortProp = -32000", true],
  ["longProp = 10000000000", true],
  ["longProp > intProp", true],
  ["floatProp = 1.5", true],
  ["doubleProp > floatProp", true],
  ["doubleProp = 3.25E0", true],
  ["doubleProp = 325E-2", true],
  ["doubleWhole = 5", true],
  ["intProp = 1E2", true],
  ["intProp = 0x64", true],
  ["intProp = 0144", true],
  ["intProp = 100L", true],
  ["version = 2", true],
  ["intProp >= 100 AND intProp <= 100", true],
  ["intProp < 100", false],
  // Arithmetic and precedence.
  ["intProp + 1 = 101", true],
  ["intProp - 1 = 99", true],
  ["intProp * 2 = 200", true],
  ["intProp / 3 = 33", true],
  ["(intProp + 0.0) / 3 > 33.3", true],
  ["doubleProp / 2 = 1.625", true],
  ["intProp + 2 * 3 = 106", true],
  ["(intProp + 2) * 3 = 306", true],
  ["-intProp = -100", true],
  ["- -intProp = 100", true],
  ["+intProp = 100", true],
  ["intProp - -1 = 101", true],
  ["10 - 2 - 3 = 5", true],
  ["100 / 10 / 5 = 2", true],
  ["intProp / zero > 0", null],
  ["doubleProp / 0 > 1000000", true],
  ["trueProp OR falseProp AND falseProp", true],
  ["(trueProp OR falseProp) AND falseProp", false],
  ["NOT trueProp OR trueProp", true],
  ["NOT (trueProp OR trueProp)", false],
  ["NOT intProp = 100", false],
  ["NOT intProp = 99 AND name = 'James'", true],
  // BETWEEN.
  ["intProp BETWEEN 99 AND 101", true],
  ["intProp BETWEEN 100 AND 100", true],
  ["intProp BETWEEN 101 AND 200", false],
  ["intProp NOT BETWEEN 101 AND 200", true],
  ["doubleProp BETWEEN 3 AND 3.5", true],
  ["intProp BETWEEN 50 * 2 AND 200 - 1", true],
  ["missing BETWEEN 1 AND 2", null],
  ["missing NOT BETWEEN 1 AND 2", null],
  ["intProp BETWEEN missing AND 200", null],
  ["intProp BETWEEN 200 AND missing", false],
  // IN.
  ["location IN ('London', 'Paris')", true],
  ["location IN ('Paris')", false],
  ["location NOT IN ('Paris', 'Berlin')", true],
  ["location NOT IN ('London')", false],
  ["missing IN ('a')", null],
  ["missing NOT IN ('a')", null],
  ["intProp IN (1, 100, 1000)", true],
  ["intProp IN (1, -2)", false],
  // LIKE.
  ["name LIKE 'J%'", true],
  ["name LIKE 'j%'", false],
  ["name LIKE 'J_mes'", true],
  ["name LIKE 'J_es'", false],
  ["name LIKE '%'", true],
  ["name LIKE 'James%'", true],
  ["name LIKE '%ame%'", true],
  ["name NOT LIKE 'J%'", false],
  ["emptyString LIKE '%'", true],
  ["emptyString LIKE '_'", false],
  ["percent LIKE '50\\%' ESCAPE '\\'", true],
  ["percent LIKE '5!%' ESCAPE '!'", false],
  ["percent LIKE '50!%' ESCAPE '!'", true],
  ["under LIKE 'a!_b' ESCAPE '!'", true],
  ["under LIKE 'a__' ", true],
  ["name LIKE 'a!_b' ESCAPE '!'", false],
  ["path LIKE 'c:\\%'", true],
  ["path LIKE 'c:.temp'", false],
  ["quote LIKE 'it''s'", true],
  ["unicode LIKE 'h_llo _'", true],
  ["missing LIKE 'x%'", null],
  ["missing NOT LIKE 'x%'", null],
  ["intProp LIKE '1%'", false],
  // IS NULL.
  ["missing IS NULL", true],
  ["missing IS NOT NULL", false],
  ["name IS NULL", false],
  ["name IS NOT NULL", true],
  ["missing + 1 IS NULL", true],
  // NULL in three-valued logic.
  ["missing = 'x'", null],
  ["missing <> 'x'", null],
  ["missing > 1", null],
  ["NOT missing = 1", null],
  ["missing = 1 AND trueProp", null],
  ["missing = 1 AND falseProp", false],
  ["missing = 1 OR trueProp", true],
  ["missing = 1 OR falseProp", null],
  ["missing", null],
  ["NOT missing", null],
  ["missing + 1 = 2", null],
  // Unlike types compare FALSE.
  ["name = 1 + 0", false],
  ["intProp = '100'", false],
  ["intProp <> '100'", false],
  ["trueProp = 1 + 0", false],
  ["name > 1", false],
  ["name + 1 = 2", null],
  // Keywords are case-insensitive; identifiers are not.
  ["name like 'J%' and not location in ('Paris') or falseProp", true],
  ["NAME = 'James'", null],
  ["intProp between 1 and 200", true],
  ["missing is null", true],
];

/** selector → the position (1-based) the error names. */
const INVALID: ReadonlyArray<readonly [string, number]> = [
  ["", 1],
  ["   ", 4],
  ["name =", 7],
  ["= 'x'", 1],
  ["name = 'x", 8],
  ["name == 'x'", 7],
  ["name != 'x'", 6],
  ["(name = 'x'", 12],
  ["name = 'x')", 11],
  ["name 'x'", 6],
  ["intProp BETWEEN 1", 18],
  ["intProp BETWEEN 1 OR 2", 19],
  ["name IN ()", 10],
  ["name IN ('a' 'b')", 14],
  ["name IN (other)", 10],
  ["name IN 'a'", 9],
  ["name LIKE other", 11],
  ["name LIKE 'a' ESCAPE 'ab'", 22],
  ["name LIKE 'a!' ESCAPE '!'", 11],
  ["name IS 'x'", 9],
  ["name IS NOT", 12],
  ["1 + 2", 3],
  ["'text'", 1],
  ["name AND 1", 10],
  ["'a' + 1 = 2", 1],
  ["TRUE + 1 = 2", 1],
  ["'a' = 1", 5],
  ["TRUE > 1", 1],
  ["name > 1 AND 'b' < name", 14],
  ["1 LIKE 'x'", 1],
  ["TRUE IN ('x')", 1],
  ["intProp = NULL", 11],
  ["JMSDestination = 'x'", 1],
  ["JMSRedelivered = TRUE", 1],
  ["name = 'x' # 1", 12],
  ["12abc = 1", 1],
  ["NOT", 4],
  ["name = 'x' AND", 15],
  ["a BETWEEN 'x' AND 'y'", 11],
];

describe("JMS selectors", () => {
  for (const [selector, expected] of CASES) {
    it(`${selector} → ${expected === null ? "UNKNOWN" : String(expected).toUpperCase()}`, () => {
      const compiled = parseSelector(selector);
      expect(compiled.evaluate(lookup)).toBe(expected);
      expect(compiled.matches(lookup)).toBe(expected === true);
    });
  }

  for (const [selector, position] of INVALID) {
    it(`refuses ${JSON.stringify(selector)} at position ${position}`, () => {
      let error: unknown;
      try {
        parseSelector(selector);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(BlazeError);
      const blazeError = error as BlazeError;
      expect(blazeError.code).toBe("INVALID_SELECTOR");
      expect(blazeError.message).toContain(`at position ${position}:`);
      expect(blazeError.path).toEqual(["selector", position]);
    });
  }

  it("lists the identifiers a selector reads", () => {
    expect(parseSelector("a = 1 AND (b LIKE 'x' OR c IS NULL) AND a > 0").identifiers).toEqual(["a", "b", "c"]);
  });

  it("refuses selectors past the length limit", () => {
    expect(() => parseSelector(`a = '${"x".repeat(5000)}'`)).toThrow(/at most 4096 characters/);
  });

  it("never throws while evaluating, whatever the property types", () => {
    const selectors = CASES.map(([text]) => parseSelector(text));
    const values: SelectorValue[] = [null, true, false, "", "x", 0, -0, Number.NaN, Number.POSITIVE_INFINITY, 0n, 1n, -(2n ** 63n), 1.5];
    for (const selector of selectors) {
      for (const value of values) expect(() => selector.evaluate(() => value)).not.toThrow();
    }
  });
});
