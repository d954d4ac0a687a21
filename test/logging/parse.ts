/** A log line seen by a test: its message and the fields it carries. */
export interface ParsedLine {
  raw: string;
  message: string;
  context?: string;
  level?: string;
  fields: Record<string, unknown>;
}

/** Parses a `ContextLogger` JSON line. */
export function parseJsonLine(raw: string): ParsedLine | undefined {
  if (!raw.startsWith('{')) return undefined;
  const object = JSON.parse(raw) as Record<string, unknown>;
  return { raw, message: String(object.message), context: object.context as string | undefined, level: object.level as string, fields: object };
}

const TEXT_LINE = /^\[Nest\] \d+ {2}- .*? +(LOG|ERROR|WARN|DEBUG|VERBOSE|FATAL) (?:\[([^\]]*)\] )?(.*)$/;

/** Reads `[k=v k="v v"]` at the start of `rest`; returns the fields and the remaining text. */
function readFields(rest: string): { fields: Record<string, unknown>; remaining: string } | undefined {
  if (!rest.startsWith('[') || !/^\[[A-Za-z_$][\w$.-]*=/.test(rest)) return undefined;
  const fields: Record<string, unknown> = {};
  let i = 1;
  while (i < rest.length && rest[i] !== ']') {
    const eq = rest.indexOf('=', i);
    const key = rest.slice(i, eq);
    let value: string;
    let j = eq + 1;
    if (rest[j] === '"') {
      let k = j + 1;
      while (rest[k] !== '"') k += rest[k] === '\\' ? 2 : 1;
      value = JSON.parse(rest.slice(j, k + 1)) as string;
      j = k + 1;
    } else {
      let k = j;
      while (k < rest.length && rest[k] !== ' ' && rest[k] !== ']') k++;
      value = rest.slice(j, k);
      j = k;
    }
    fields[key] = value;
    i = rest[j] === ' ' ? j + 1 : j;
  }
  return { fields, remaining: rest.slice(i + 2) };
}

/** Parses a `ContextLogger` text line (`[Nest] pid  - time   LOG [Context] [fields] message`). */
export function parseTextLine(raw: string): ParsedLine | undefined {
  const match = TEXT_LINE.exec(raw);
  if (match === null) return undefined;
  let [, level, context, rest] = match as unknown as [string, string, string | undefined, string];
  if (context !== undefined && /^[A-Za-z_$][\w$.-]*=/.test(context)) {
    rest = raw.slice(raw.indexOf(`[${context}`));
    context = undefined;
  }
  const read = readFields(rest);
  return {
    raw,
    level: level.toLowerCase(),
    context,
    message: read === undefined ? rest : read.remaining,
    fields: read === undefined ? {} : read.fields,
  };
}
