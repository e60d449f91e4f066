import type * as z from "zod";

/**
 * Documentation of options, from their zod schemas: every option carries its meaning, unit and (where
 * the value alone says too little) the text of its default in `.meta()`, and the README's option
 * tables are made from that (`npm run docs:options`), and checked against it by a test — so the tables cannot
 * drift from the code again.
 */

/** What an option's schema says about it, besides its type and default. */
export interface OptionMeta {
  /** What the option does, for people: a table cell. */
  readonly description: string;
  /** Its unit ("ms", "bytes", "messages", …); none for flags, names and objects. */
  readonly unit?: string;
  /** How to show its default when the value does not say it well ("4 MiB", "the runtime's adapter"). */
  readonly defaultText?: string;
}

/** Attaches an option's documentation to its schema (keep it the outermost call, after `.default()`). */
export function documented<Schema extends z.ZodType>(schema: Schema, meta: OptionMeta): Schema {
  return schema.meta({ ...meta }) as Schema;
}

interface Def {
  readonly type: string;
  readonly innerType?: z.ZodType;
  readonly defaultValue?: unknown;
  readonly shape?: Record<string, z.ZodType>;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

function metaOf(schema: z.ZodType): OptionMeta | undefined {
  return (schema as unknown as { meta(): OptionMeta | undefined }).meta();
}

function formatDefault(value: unknown): string {
  if (value === undefined) return "";
  return `\`${JSON.stringify(value)}\``;
}

/** The object schema an option holds, when it is a group of options (`nack: { … }`). */
function nestedShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  let def = defOf(schema);
  while ((def.type === "default" || def.type === "prefault" || def.type === "optional") && def.innerType !== undefined) def = defOf(def.innerType);
  return def.type === "object" ? (def.shape ?? (def as unknown as { shape: Record<string, z.ZodType> }).shape) : undefined;
}

/** One markdown table row per option of `schema` (nested groups flattened as `group.option`). */
export function optionRows(schema: z.ZodType, prefix = ""): string[] {
  const shape = nestedShape(schema);
  if (shape === undefined) throw new Error(`${prefix || "the schema"} is not an object of options`);
  const rows: string[] = [];
  for (const [key, option] of Object.entries(shape)) {
    const name = `${prefix}${key}`;
    const meta = metaOf(option);
    const inner = nestedShape(option);
    if (meta === undefined && inner !== undefined) {
      rows.push(...optionRows(option, `${name}.`));
      continue;
    }
    if (meta === undefined) throw new Error(`option ${name} has no documentation (documented(…) in its schema)`);
    const def = defOf(option);
    const fallback = def.type === "default" || def.type === "prefault" ? formatDefault(def.defaultValue) : "";
    const cells = [`\`${name}\``, meta.unit ?? "", meta.defaultText ?? fallback, meta.description];
    rows.push(`| ${cells.join(" | ")} |`.replaceAll("|  |", "| |"));
  }
  return rows;
}

/** The markdown table of `schema`'s options. */
export function optionTable(schema: z.ZodType): string {
  return ["| option | unit | default | meaning |", "| --- | --- | --- | --- |", ...optionRows(schema)].join("\n");
}
