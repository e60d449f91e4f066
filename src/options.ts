import type * as z from "zod";
import { BlazeError } from "./errors.ts";

/**
 * Validates an options object against its zod schema. On failure it throws a `BlazeError` with code
 * `INVALID_OPTION` whose `path` names the first offending field, and whose message names every one,
 * e.g. `invalid option "channel.port": Too big: expected number to be <=65535; and "channel.nack.ackDelayMs": …`.
 */
export function parseOptions<Schema extends z.ZodType>(
  schema: Schema,
  input: unknown,
  what: string,
): z.output<Schema> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.filter((part): part is string | number => typeof part !== "symbol");
    // An unknown key is reported on its parent object; name the key itself.
    if (issue.code === "unrecognized_keys" && issue.keys[0] !== undefined) path.push(issue.keys[0]);
    return { path, text: `"${[what, ...path].join(".")}": ${issue.message}` };
  });
  const [first, ...rest] = problems;
  const more = rest.length === 0 ? "" : `; and ${rest.map((problem) => problem.text).join("; ")}`;
  throw new BlazeError("INVALID_OPTION", `invalid option ${first!.text}${more}`, { cause: result.error, path: first!.path });
}
