/**
 * The README's option tables, made from the options' zod schemas (src/options-doc.ts): between
 * `<!-- options: NAME -->` and `<!-- /options -->` stands the table of schema NAME.
 *
 *   npm run docs:options  rewrites the README's tables
 *   (test/docs.test.ts checks that they are what this makes)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type * as z from "zod";
import { channelOptionsSchema } from "../../src/channel/options.ts";
import { groupOptionsSchema } from "../../src/group/options.ts";
import { optionTable } from "../../src/options-doc.ts";
import { natsOptionsSchema, relayOptionsSchema } from "../../src/relay/options.ts";

export const README = join(import.meta.dirname, "..", "..", "README.md");

const SCHEMAS: Record<string, z.ZodType> = {
  channel: channelOptionsSchema,
  group: groupOptionsSchema,
  relay: relayOptionsSchema,
  nats: natsOptionsSchema,
};

const SECTION = /(<!-- options: (\w+) -->\n)[\s\S]*?(<!-- \/options -->)/g;

/** The README with every marked table made afresh; throws on a marker naming no schema. */
export function renderOptionTables(readme: string): string {
  return readme.replace(SECTION, (_match, open: string, name: string, close: string) => {
    const schema = SCHEMAS[name];
    if (schema === undefined) throw new Error(`README: no options schema named "${name}"`);
    return `${open}${optionTable(schema)}\n${close}`;
  });
}

/** The names of the tables the README marks. */
export function markedTables(readme: string): string[] {
  return [...readme.matchAll(SECTION)].map((match) => match[2]!);
}

if (process.argv.includes("--write")) {
  const readme = readFileSync(README, "utf8");
  writeFileSync(README, renderOptionTables(readme));
  console.log(`README: ${markedTables(readme).join(", ")} options tables written`);
}
