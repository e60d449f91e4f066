import { BlazeError } from "../errors.ts";

/**
 * JMS message selectors (JMS 2.0 §3.8.1): a subset of SQL-92 conditional expressions over a message's
 * headers and properties, parsed once and compiled to closures.
 *
 * Values at evaluation: exact numbers (int, long, integer literals) are bigints, approximate ones (float,
 * double, decimal literals) are numbers, so that `5 / 2` is 2 and `5.0 / 2` is 2.5 as in Java; mixed
 * arithmetic promotes to approximate. `null` is SQL's NULL (an absent property): comparisons and
 * arithmetic with it are UNKNOWN, and AND, OR and NOT follow SQL's three-valued logic. A message is
 * selected only when the selector is TRUE. Comparing values of unlike types (a string with a number) is
 * FALSE, and strings and booleans compare only with `=` and `<>`.
 */

export type SelectorValue = null | boolean | string | number | bigint;

/** Looks up an identifier (a header or property name) on a message; `null` when absent. */
export type SelectorLookup = (identifier: string) => SelectorValue;

/** A compiled selector: true only when the message is selected. */
export interface Selector {
  readonly text: string;
  /** The identifiers the selector reads. */
  readonly identifiers: readonly string[];
  matches(lookup: SelectorLookup): boolean;
  /** TRUE, FALSE or UNKNOWN (`null`). */
  evaluate(lookup: SelectorLookup): boolean | null;
}

/** Header names a selector may use (JMS 2.0 §3.8.1.1); other JMS headers are not selectable. */
const SELECTABLE_HEADERS = new Set(["JMSDeliveryMode", "JMSPriority", "JMSMessageID", "JMSTimestamp", "JMSCorrelationID", "JMSType"]);
const KEYWORDS = new Set(["NOT", "AND", "OR", "BETWEEN", "LIKE", "IN", "IS", "NULL", "TRUE", "FALSE", "ESCAPE"]);

/** Most characters a selector may have (a consumer's selector is sent to the dispatcher). */
export const MAX_SELECTOR_LENGTH = 4096;

type Token =
  | { readonly type: "number"; readonly value: number | bigint; readonly pos: number; readonly text: string }
  | { readonly type: "string"; readonly value: string; readonly pos: number; readonly text: string }
  | { readonly type: "identifier"; readonly value: string; readonly pos: number; readonly text: string }
  | { readonly type: "keyword"; readonly value: string; readonly pos: number; readonly text: string }
  | { readonly type: "operator"; readonly value: string; readonly pos: number; readonly text: string }
  | { readonly type: "end"; readonly value: ""; readonly pos: number; readonly text: string };

/** What an expression can yield, as far as the parser can tell (an identifier can be anything). */
type Kind = "boolean" | "number" | "string" | "any";

interface Node {
  readonly kind: Kind;
  readonly pos: number;
  readonly eval: (lookup: SelectorLookup) => SelectorValue;
  /** Set on literals: their value. */
  readonly literal?: SelectorValue;
}

/** Parses and compiles a selector; throws `INVALID_SELECTOR` naming the position (1-based) of the fault. */
export function parseSelector(text: string): Selector {
  if (typeof text !== "string") throw new BlazeError("INVALID_SELECTOR", "a selector is a string", { path: ["selector"] });
  if (text.length > MAX_SELECTOR_LENGTH) {
    throw new BlazeError("INVALID_SELECTOR", `a selector has at most ${MAX_SELECTOR_LENGTH} characters, not ${text.length}`, { path: ["selector"] });
  }
  const parser = new Parser(text);
  const root = parser.parse();
  const identifiers = [...parser.identifiers];
  const evaluate = (lookup: SelectorLookup): boolean | null => {
    const value = root.eval(lookup);
    return typeof value === "boolean" ? value : null;
  };
  return { text, identifiers, evaluate, matches: (lookup) => evaluate(lookup) === true };
}

class Parser {
  readonly #text: string;
  readonly #tokens: Token[];
  #at = 0;
  readonly identifiers = new Set<string>();

  constructor(text: string) {
    this.#text = text;
    this.#tokens = tokenize(text);
  }

  parse(): Node {
    if (this.#peek().type === "end") throw this.#error(this.#peek(), "the selector is empty (leave it out to select every message)");
    const node = this.#or();
    const next = this.#peek();
    if (next.type !== "end") throw this.#error(next, `unexpected ${describe(next)}`);
    if (node.kind !== "boolean" && node.kind !== "any") throw this.#fault(node.pos, "the selector is not a condition (it yields a " + node.kind + ")");
    return node;
  }

  #peek(): Token {
    return this.#tokens[this.#at]!;
  }

  #next(): Token {
    return this.#tokens[this.#at++]!;
  }

  #isKeyword(word: string): boolean {
    const token = this.#peek();
    return token.type === "keyword" && token.value === word;
  }

  #isOperator(op: string): boolean {
    const token = this.#peek();
    return token.type === "operator" && token.value === op;
  }

  #expectKeyword(word: string): Token {
    const token = this.#next();
    if (token.type !== "keyword" || token.value !== word) throw this.#error(token, `expected ${word} but found ${describe(token)}`);
    return token;
  }

  #expectOperator(op: string): Token {
    const token = this.#next();
    if (token.type !== "operator" || token.value !== op) throw this.#error(token, `expected "${op}" but found ${describe(token)}`);
    return token;
  }

  #error(token: Token, message: string): BlazeError {
    return this.#fault(token.pos, message);
  }

  #fault(pos: number, message: string): BlazeError {
    const at = pos + 1;
    return new BlazeError("INVALID_SELECTOR", `invalid selector at position ${at}: ${message} in "${this.#text}"`, { path: ["selector", at] });
  }

  #condition(node: Node, what: string): Node {
    if (node.kind === "number" || node.kind === "string") throw this.#fault(node.pos, `${what} needs a condition, not a ${node.kind}`);
    return node;
  }

  #arithmetic(node: Node, what: string): Node {
    if (node.kind === "boolean" || node.kind === "string") throw this.#fault(node.pos, `${what} needs a number, not a ${node.kind}`);
    return node;
  }

  #or(): Node {
    return this.#connective("OR", () => this.#and(), true);
  }

  #and(): Node {
    return this.#connective("AND", () => this.#not(), false);
  }

  // OR and AND in SQL's three-valued logic: one operand equal to `decisive` decides (true for OR, false
  // for AND, the right one not evaluated); otherwise an unknown operand makes the result unknown.
  #connective(keyword: "OR" | "AND", operand: () => Node, decisive: boolean): Node {
    let left = operand();
    while (this.#isKeyword(keyword)) {
      const op = this.#next();
      const a = this.#condition(left, keyword);
      const b = this.#condition(operand(), keyword);
      left = {
        kind: "boolean",
        pos: op.pos,
        eval: (lookup) => {
          const x = truth(a.eval(lookup));
          if (x === decisive) return decisive;
          const y = truth(b.eval(lookup));
          if (y === decisive) return decisive;
          return x === null || y === null ? null : !decisive;
        },
      };
    }
    return left;
  }

  #not(): Node {
    if (this.#isKeyword("NOT")) {
      const op = this.#next();
      const operand = this.#condition(this.#not(), "NOT");
      return {
        kind: "boolean",
        pos: op.pos,
        eval: (lookup) => {
          const x = truth(operand.eval(lookup));
          return x === null ? null : !x;
        },
      };
    }
    return this.#predicate();
  }

  #predicate(): Node {
    const left = this.#additive();
    const token = this.#peek();
    if (token.type === "operator" && COMPARISONS.has(token.value)) {
      this.#next();
      const right = this.#additive();
      return this.#comparison(token, left, right);
    }
    if (token.type !== "keyword") return left;
    let negated = false;
    if (token.value === "NOT") {
      const after = this.#tokens[this.#at + 1]!;
      if (after.type !== "keyword" || !["BETWEEN", "IN", "LIKE"].includes(after.value)) return left;
      this.#next();
      negated = true;
    }
    const keyword = this.#peek();
    switch (keyword.type === "keyword" ? keyword.value : "") {
      case "BETWEEN":
        this.#next();
        return this.#between(keyword, left, negated);
      case "IN":
        this.#next();
        return this.#in(keyword, left, negated);
      case "LIKE":
        this.#next();
        return this.#like(keyword, left, negated);
      case "IS":
        this.#next();
        return this.#isNull(keyword, left);
      default:
        return left;
    }
  }

  #comparison(op: Token, a: Node, b: Node): Node {
    const operator = op.value as string;
    const ordering = operator !== "=" && operator !== "<>";
    for (const side of [a, b]) {
      if (ordering && (side.kind === "boolean" || side.kind === "string")) {
        throw this.#fault(side.pos, `"${operator}" compares numbers; ${side.kind === "boolean" ? "booleans" : "strings"} compare only with = and <>`);
      }
    }
    if (a.kind !== "any" && b.kind !== "any" && a.kind !== b.kind) {
      throw this.#fault(op.pos, `"${operator}" between a ${a.kind} and a ${b.kind}`);
    }
    const compare = COMPARE[operator]!;
    return { kind: "boolean", pos: op.pos, eval: (lookup) => compare(a.eval(lookup), b.eval(lookup)) };
  }

  #between(op: Token, value: Node, negated: boolean): Node {
    this.#arithmetic(value, "BETWEEN");
    const low = this.#arithmetic(this.#additive(), "BETWEEN");
    this.#expectKeyword("AND");
    const high = this.#arithmetic(this.#additive(), "BETWEEN");
    const ge = COMPARE[">="]!;
    const le = COMPARE["<="]!;
    return {
      kind: "boolean",
      pos: op.pos,
      eval: (lookup) => {
        const v = value.eval(lookup);
        const x = ge(v, low.eval(lookup));
        const y = le(v, high.eval(lookup));
        const both = x === false || y === false ? false : x === null || y === null ? null : true;
        return negated && both !== null ? !both : both;
      },
    };
  }

  #in(op: Token, value: Node, negated: boolean): Node {
    if (value.kind === "boolean") throw this.#fault(value.pos, "IN needs a string or a number, not a boolean");
    this.#expectOperator("(");
    const items: SelectorValue[] = [];
    for (;;) {
      const token = this.#next();
      let item: SelectorValue;
      if (token.type === "string" || token.type === "number") item = token.value;
      else if (token.type === "operator" && (token.value === "-" || token.value === "+") && this.#peek().type === "number") {
        const number = this.#next().value as number | bigint;
        item = token.value === "-" ? (typeof number === "bigint" ? -number : -number) : number;
      } else throw this.#error(token, `IN lists literals (strings or numbers), not ${describe(token)}`);
      items.push(item);
      const separator = this.#next();
      if (separator.type === "operator" && separator.value === ")") break;
      if (separator.type !== "operator" || separator.value !== ",") throw this.#error(separator, `expected "," or ")" but found ${describe(separator)}`);
    }
    const strings = new Set(items.filter((item): item is string => typeof item === "string"));
    const numbers = items.filter((item): item is number | bigint => typeof item === "number" || typeof item === "bigint");
    return {
      kind: "boolean",
      pos: op.pos,
      eval: (lookup) => {
        const v = value.eval(lookup);
        if (v === null) return null;
        let found: boolean;
        if (typeof v === "string") found = strings.has(v);
        else if (typeof v === "number" || typeof v === "bigint") found = numbers.some((n) => n == v);
        else return false;
        return negated ? !found : found;
      },
    };
  }

  #like(op: Token, value: Node, negated: boolean): Node {
    if (value.kind === "number" || value.kind === "boolean") throw this.#fault(value.pos, `LIKE needs a string, not a ${value.kind}`);
    const pattern = this.#next();
    if (pattern.type !== "string") throw this.#error(pattern, `LIKE needs a string literal pattern, not ${describe(pattern)}`);
    let escape: string | undefined;
    if (this.#isKeyword("ESCAPE")) {
      this.#next();
      const token = this.#next();
      if (token.type !== "string") throw this.#error(token, `ESCAPE needs a string literal, not ${describe(token)}`);
      if ([...token.value].length !== 1) throw this.#error(token, `ESCAPE takes one character, not ${JSON.stringify(token.value)}`);
      escape = token.value;
    }
    const regex = likeToRegex(pattern.value, escape, () => this.#error(pattern, `the pattern ends with its escape character ${JSON.stringify(escape)}`));
    return {
      kind: "boolean",
      pos: op.pos,
      eval: (lookup) => {
        const v = value.eval(lookup);
        if (v === null) return null;
        if (typeof v !== "string") return false;
        const found = regex.test(v);
        return negated ? !found : found;
      },
    };
  }

  #isNull(op: Token, value: Node): Node {
    let negated = false;
    if (this.#isKeyword("NOT")) {
      this.#next();
      negated = true;
    }
    this.#expectKeyword("NULL");
    return { kind: "boolean", pos: op.pos, eval: (lookup) => (value.eval(lookup) === null) !== negated };
  }

  #additive(): Node {
    let left = this.#multiplicative();
    while (this.#isOperator("+") || this.#isOperator("-")) {
      const op = this.#next();
      const a = this.#arithmetic(left, `"${op.value}"`);
      const b = this.#arithmetic(this.#multiplicative(), `"${op.value}"`);
      const fn = op.value === "+" ? add : subtract;
      left = { kind: "number", pos: op.pos, eval: (lookup) => fn(a.eval(lookup), b.eval(lookup)) };
    }
    return left;
  }

  #multiplicative(): Node {
    let left = this.#unary();
    while (this.#isOperator("*") || this.#isOperator("/")) {
      const op = this.#next();
      const a = this.#arithmetic(left, `"${op.value}"`);
      const b = this.#arithmetic(this.#unary(), `"${op.value}"`);
      const fn = op.value === "*" ? multiply : divide;
      left = { kind: "number", pos: op.pos, eval: (lookup) => fn(a.eval(lookup), b.eval(lookup)) };
    }
    return left;
  }

  #unary(): Node {
    if (this.#isOperator("+") || this.#isOperator("-")) {
      const op = this.#next();
      const operand = this.#arithmetic(this.#unary(), `unary "${op.value}"`);
      if (op.value === "+") return { ...operand, pos: op.pos, kind: "number" };
      const literal = operand.literal;
      if (typeof literal === "number" || typeof literal === "bigint") {
        const negative = -literal;
        return { kind: "number", pos: op.pos, literal: negative, eval: () => negative };
      }
      return { kind: "number", pos: op.pos, eval: (lookup) => negate(operand.eval(lookup)) };
    }
    return this.#primary();
  }

  #primary(): Node {
    const token = this.#next();
    switch (token.type) {
      case "number": {
        const value = token.value;
        return { kind: "number", pos: token.pos, literal: value, eval: () => value };
      }
      case "string": {
        const value = token.value;
        return { kind: "string", pos: token.pos, literal: value, eval: () => value };
      }
      case "identifier": {
        const name = token.value;
        if (name.startsWith("JMS") && !name.startsWith("JMSX") && !name.startsWith("JMS_") && !SELECTABLE_HEADERS.has(name)) {
          throw this.#error(token, `${name} cannot be used in a selector (selectable headers: ${[...SELECTABLE_HEADERS].join(", ")})`);
        }
        this.identifiers.add(name);
        return { kind: "any", pos: token.pos, eval: (lookup) => lookup(name) };
      }
      case "keyword": {
        if (token.value === "TRUE" || token.value === "FALSE") {
          const value = token.value === "TRUE";
          return { kind: "boolean", pos: token.pos, literal: value, eval: () => value };
        }
        if (token.value === "NULL") throw this.#error(token, "NULL is not a value here (test for it with IS NULL)");
        throw this.#error(token, `expected an expression but found ${describe(token)}`);
      }
      case "operator": {
        if (token.value === "(") {
          const inner = this.#or();
          this.#expectOperator(")");
          return inner;
        }
        throw this.#error(token, `expected an expression but found ${describe(token)}`);
      }
      case "end":
        throw this.#error(token, "the selector ends where an expression is expected");
    }
  }
}

// --- evaluation ---

const COMPARISONS = new Set(["=", "<>", "<", "<=", ">", ">="]);

function truth(value: SelectorValue): boolean | null {
  return typeof value === "boolean" ? value : null;
}

function isNumber(value: SelectorValue): value is number | bigint {
  return typeof value === "number" || typeof value === "bigint";
}

function ordered(test: (a: number | bigint, b: number | bigint) => boolean): (a: SelectorValue, b: SelectorValue) => boolean | null {
  return (a, b) => {
    if (a === null || b === null) return null;
    if (!isNumber(a) || !isNumber(b)) return false;
    return test(a, b);
  };
}

function equal(a: SelectorValue, b: SelectorValue): boolean | null {
  if (a === null || b === null) return null;
  // Numbers of any type compare by value (1 = 1.0); unlike types never match.
  if (isNumber(a) && isNumber(b)) return a == b;
  return typeof a === typeof b ? a === b : false;
}

const COMPARE: Record<string, (a: SelectorValue, b: SelectorValue) => boolean | null> = {
  "=": equal,
  "<>": (a, b) => {
    const same = equal(a, b);
    if (same === null) return null;
    // Unlike types are not comparable: FALSE both ways.
    if (!same && typeof a !== typeof b && !(isNumber(a) && isNumber(b))) return false;
    return !same;
  },
  "<": ordered((a, b) => a < b),
  "<=": ordered((a, b) => a <= b),
  ">": ordered((a, b) => a > b),
  ">=": ordered((a, b) => a >= b),
};

function arithmetic(exact: (a: bigint, b: bigint) => bigint | null, approximate: (a: number, b: number) => number) {
  return (a: SelectorValue, b: SelectorValue): SelectorValue => {
    if (!isNumber(a) || !isNumber(b)) return null;
    if (typeof a === "bigint" && typeof b === "bigint") return exact(a, b);
    return approximate(Number(a), Number(b));
  };
}

const add = arithmetic((a, b) => a + b, (a, b) => a + b);
const subtract = arithmetic((a, b) => a - b, (a, b) => a - b);
const multiply = arithmetic((a, b) => a * b, (a, b) => a * b);
// Integer division by zero fails in Java: the expression is UNKNOWN. Floating division gives infinities.
const divide = arithmetic((a, b) => (b === 0n ? null : a / b), (a, b) => a / b);

function negate(value: SelectorValue): SelectorValue {
  if (typeof value === "bigint") return -value;
  if (typeof value === "number") return -value;
  return null;
}

/** A LIKE pattern as an anchored regular expression: `_` one character, `%` any run, `escape` quotes the next. */
function likeToRegex(pattern: string, escape: string | undefined, danglingEscape: () => BlazeError): RegExp {
  let source = "^";
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i]!;
    if (char === escape) {
      const next = chars[++i];
      if (next === undefined) throw danglingEscape();
      source += escapeRegex(next);
    } else if (char === "%") source += "[\\s\\S]*";
    else if (char === "_") source += "[\\s\\S]";
    else source += escapeRegex(char);
  }
  return new RegExp(`${source}$`, "u");
}

function escapeRegex(char: string): string {
  return char.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

// --- tokens ---

function describe(token: Token): string {
  switch (token.type) {
    case "end":
      return "the end";
    case "string":
      return `the string ${token.text}`;
    case "number":
      return `the number ${token.text}`;
    case "identifier":
      return `the identifier ${token.text}`;
    case "keyword":
      return token.value;
    case "operator":
      return `"${token.value}"`;
  }
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const fault = (pos: number, message: string) =>
    new BlazeError("INVALID_SELECTOR", `invalid selector at position ${pos + 1}: ${message} in "${text}"`, { path: ["selector", pos + 1] });
  while (i < text.length) {
    const char = text[i]!;
    if (/\s/.test(char)) {
      i++;
      continue;
    }
    const start = i;
    if (char === "'") {
      let value = "";
      i++;
      for (;;) {
        if (i >= text.length) throw fault(start, "the string is not closed (a quote is written '')");
        if (text[i] === "'") {
          if (text[i + 1] === "'") {
            value += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        value += text[i++];
      }
      tokens.push({ type: "string", value, pos: start, text: text.slice(start, i) });
      continue;
    }
    if (/[0-9]/.test(char) || (char === "." && /[0-9]/.test(text[i + 1] ?? ""))) {
      const match = /^(?:0[xX][0-9a-fA-F]+[lL]?|(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdDlL]?)/.exec(text.slice(i))!;
      const literal = match[0];
      i += literal.length;
      if (/^[A-Za-z_$0-9]/.test(text[i] ?? "")) throw fault(start, `the number ${literal} runs into "${text[i]}"`);
      tokens.push({ type: "number", value: numberLiteral(literal), pos: start, text: literal });
      continue;
    }
    if (/[A-Za-z_$]/.test(char) || char.charCodeAt(0) > 0x7f) {
      while (i < text.length && (/[A-Za-z0-9_$]/.test(text[i]!) || text.charCodeAt(i) > 0x7f)) i++;
      const word = text.slice(start, i);
      const upper = word.toUpperCase();
      if (KEYWORDS.has(upper)) tokens.push({ type: "keyword", value: upper, pos: start, text: word });
      else tokens.push({ type: "identifier", value: word, pos: start, text: word });
      continue;
    }
    const two = text.slice(i, i + 2);
    if (two === "<>" || two === "<=" || two === ">=") {
      tokens.push({ type: "operator", value: two, pos: start, text: two });
      i += 2;
      continue;
    }
    if ("=<>+-*/(),".includes(char)) {
      tokens.push({ type: "operator", value: char, pos: start, text: char });
      i++;
      continue;
    }
    if (two === "!=") throw fault(start, 'not-equal is written "<>"');
    throw fault(start, `unexpected character "${char}"`);
  }
  tokens.push({ type: "end", value: "", pos: text.length, text: "" });
  return tokens;
}

/** Integer literals (decimal, 0x hex, octal with a leading 0, an optional L) are exact; others approximate. */
function numberLiteral(literal: string): number | bigint {
  if (/^0[xX]/.test(literal)) return BigInt(literal.replace(/[lL]$/, ""));
  if (/^[0-9]+[lL]?$/.test(literal)) {
    const digits = literal.replace(/[lL]$/, "");
    return digits.length > 1 && digits.startsWith("0") && /^[0-7]+$/.test(digits) ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  }
  return Number(literal.replace(/[fFdD]$/, ""));
}
