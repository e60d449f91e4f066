import type * as z from "zod";
import { BlazeError } from "./errors.ts";

/**
 * Validates an options object against its zod schema. On failure it throws a `BlazeError` with code
 * `INVALID_OPTION` whose `path` and message name the first offending field, e.g.
 * `invalid option "transport.port": Too big: expected number to be <=65535`.
 */
export function parseOptions<Schema extends z.ZodType>(
  schema: Schema,
  input: unknown,
  what: string,
): z.output<Schema> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.filter((part): part is string | number => typeof part !== "symbol");
  // An unknown key is reported on its parent object; name the key itself.
  if (issue.code === "unrecognized_keys" && issue.keys[0] !== undefined) path.push(issue.keys[0]);
  const field = [what, ...path].join(".");
  throw new BlazeError("INVALID_OPTION", `invalid option "${field}": ${issue.message}`, {
    cause: result.error,
    path,
  });
}
