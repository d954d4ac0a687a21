import type { CarrierSetter } from '../../propagation/carrier.js';
import { randomSpanId } from '../../propagation/ids.js';
import { injectRecord, partsOf } from '../../propagation/inject.js';
import { storage, type ContextRecord } from '../../record/context-record.js';
import { traceSourceOf } from '../../record/trace-source.js';

/** What to do with statements a driver prepares and caches by their text (see {@link SqlCommentOptions.prepared}). */
export type PreparedStatementPolicy = 'skip' | 'comment';

/** Options of the SQL comment (every integration of `nestjs-context/sql` takes them). */
export interface SqlCommentOptions {
  /**
   * Fields of your context object to add, opt-in per field: a list of field names (the comment key
   * is the field name) or a map from field name to comment key. Strings, numbers, booleans and
   * bigints are written; any other value (and a field that is `undefined`) is left out. Nothing else
   * of your context ever reaches the database. Default: none.
   */
  fields?: readonly string[] | Readonly<Record<string, string>>;
  /**
   * Add `traceparent`: the current trace id with a fresh parent id for every statement, as an
   * outbound HTTP call gets (with an app's trace source, e.g. the OpenTelemetry interop, and a span
   * active, the tracer writes it: the active span is the parent). It makes statement text differ
   * per statement; set `false` where statement text must repeat (see {@link prepared}). Default: `true`.
   */
  traceparent?: boolean;
  /** Add the trace's `tracestate` (vendor data from the inbound trace context), when there is one. Default: `false`. */
  tracestate?: boolean;
  /** The key of the correlation id. Default: `'correlation_id'`. */
  correlationIdKey?: string;
  /**
   * Longest correlation id or field value written, in UTF-16 code units before encoding (longer
   * ones are cut, never inside a character). `traceparent` and `tracestate` are bounded by the
   * trace options and never cut. Default: 128.
   */
  maxValueLength?: number;
  /**
   * Statements a driver prepares on the server and caches by their text (mysql2's `execute()`).
   * `'skip'` sends them unchanged, so each statement is prepared once per connection as without this
   * library. `'comment'` comments them too: the text then differs per request (and per statement
   * with `traceparent`), so each one is prepared anew and the driver's statement cache churns; use it
   * with `traceparent: false` and a small cache. Named pg queries (`{ name, text }`) are always sent
   * unchanged: pg refuses a name whose text changes. Default: `'skip'`.
   */
  prepared?: PreparedStatementPolicy;
}

/** Default longest value. */
const DEFAULT_MAX_VALUE_LENGTH = 128;
/** Longest key. */
const MAX_KEY_LENGTH = 64;
/** Longest statement text {@link SqlCommenter} remembers as having no comment (a longer one is searched every time). */
const MAX_REMEMBERED = 4096;
/** Characters left as they are: everything else is percent-encoded (RFC 3986 unreserved). */
const UNRESERVED = /^[A-Za-z0-9_.~-]*$/;
/** What `encodeURIComponent` leaves that can mean something in SQL or in a comment (`*`, `'`, MySQL's `/*!`). */
const SUB_DELIMS = /[!'()*]/g;
const HAS_SUB_DELIMS = /[!'()*]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const FORBIDDEN_FIELDS = new Set(['__proto__', 'constructor', 'prototype']);

function percent(char: string): string {
  return `%${char.charCodeAt(0).toString(16).toUpperCase()}`;
}

/**
 * `value` cut to `max` code units (never inside a surrogate pair) and URL-encoded so that only
 * `A-Z a-z 0-9 _ . ~ - %` remain: no quote, `*`, `/`, whitespace, NUL, `?`, `$` or `:` can reach
 * the statement, so a value can neither close the comment nor look like a placeholder. Lone
 * surrogates become U+FFFD. @internal
 */
export function encodeCommentValue(value: string, max: number): string {
  const text = cut(value, max);
  if (UNRESERVED.test(text)) return text;
  let encoded: string;
  try {
    encoded = encodeURIComponent(text);
  } catch {
    encoded = encodeURIComponent(text.replace(LONE_SURROGATE, '\uFFFD'));
  }
  return HAS_SUB_DELIMS.test(encoded) ? encoded.replace(SUB_DELIMS, percent) : encoded;
}

/** `value` cut to `max` code units, never inside a surrogate pair. */
function cut(value: string, max: number): string {
  if (value.length <= max) return value;
  const last = value.charCodeAt(max - 1);
  return value.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/** The trace fields one statement gets, collected through the propagation contract's setter. */
interface Collected {
  traceparent: string | undefined;
  tracestate: string | undefined;
}

const collector: CarrierSetter<Collected> = {
  set(carrier, name, value) {
    if (name === 'traceparent') carrier.traceparent = value;
    else if (name === 'tracestate') carrier.tracestate = value;
    // baggage and the correlation id header are not taken from here: the comment carries declared fields only.
  },
};

const enum Slot {
  Traceparent,
  Tracestate,
  CorrelationId,
  Field,
}

interface Entry {
  /** The key as declared. */
  readonly key: string;
  /** `key=` (the key encoded). */
  readonly prefix: string;
  readonly slot: Slot;
  /** The context field (for {@link Slot.Field}). */
  readonly field: string;
  /** The last value written and its quoted, encoded form: a request's statements mostly repeat them. */
  lastRaw: string;
  lastQuoted: string;
}

function optionError(problem: string, fix: string): TypeError {
  return new TypeError(`nestjs-context/sql: ${problem}. ${fix}`);
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : typeof value === 'object' && value !== null ? 'an object' : String(value);
}

function checkKey(key: unknown, what: string): string {
  if (typeof key !== 'string' || key === '' || key.length > MAX_KEY_LENGTH) {
    throw optionError(`${what} must be a non-empty string of at most ${MAX_KEY_LENGTH} characters, got ${describe(key)}`, 'Use a short key such as tenant or route.');
  }
  return encodeCommentValue(key, MAX_KEY_LENGTH);
}

function resolveFields(fields: SqlCommentOptions['fields']): [field: string, key: string][] {
  if (fields === undefined) return [];
  const pairs: [string, string][] = Array.isArray(fields)
    ? (fields as readonly string[]).map((field) => [field, field])
    : fields !== null && typeof fields === 'object'
      ? Object.entries(fields as Record<string, string>)
      : (() => {
          throw optionError(`option fields must be a list of field names or a map from field name to comment key, got ${describe(fields)}`, `Use e.g. ['tenant'] or { tenantId: 'tenant' }.`);
        })();
  for (const [field] of pairs) {
    if (typeof field !== 'string' || field === '' || FORBIDDEN_FIELDS.has(field)) {
      throw optionError(`option fields names an unusable context field: ${describe(field)}`, 'Name ordinary fields of your context class.');
    }
  }
  return pairs;
}

/**
 * Builds the sqlcommenter comment of the active context and appends it to statements:
 * `SELECT 1 /*correlation_id='abc',tenant='acme',traceparent='00-…-…-01'*\/`. Keys and values are
 * URL-encoded and quoted as the sqlcommenter format says, keys sorted. Every integration of
 * `nestjs-context/sql` uses one; use it directly for a client without an integration.
 *
 * @example
 * const commenter = new SqlCommenter({ fields: ['tenant'] });
 * await client.query(commenter.apply('SELECT * FROM orders'));
 */
export class SqlCommenter {
  /** What happens to statements the driver prepares and caches by their text (see {@link SqlCommentOptions.prepared}). */
  readonly prepared: PreparedStatementPolicy;
  private readonly entries: readonly Entry[];
  private readonly maxValueLength: number;
  private readonly trace: boolean;
  /** Whether `traceparent` is written: the comment is then cached per record around its parent id. */
  private readonly traceparent: boolean;
  /** The entries of declared fields, whose values a cached comment is checked against. */
  private readonly fieldEntries: readonly Entry[];
  /** The last statement {@link apply} found without a comment (short ones only: it is held until the next). */
  private lastPlain: string | undefined = undefined;

  /** Checks `options` once; throws a `TypeError` naming the option that cannot be used. */
  constructor(options: SqlCommentOptions = {}) {
    if (options === null || typeof options !== 'object') throw optionError(`options must be an object, got ${describe(options)}`, 'Pass e.g. { fields: ["tenant"] } or nothing.');
    const max = options.maxValueLength ?? DEFAULT_MAX_VALUE_LENGTH;
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) {
      throw optionError(`option maxValueLength must be a positive integer, got ${describe(max)}`, `Leave it out for the default (${DEFAULT_MAX_VALUE_LENGTH}).`);
    }
    const prepared = options.prepared ?? 'skip';
    if (prepared !== 'skip' && prepared !== 'comment') {
      throw optionError(`option prepared must be 'skip' or 'comment', got ${describe(prepared)}`, `Leave it out for the default ('skip').`);
    }
    for (const name of ['traceparent', 'tracestate'] as const) {
      const value = options[name];
      if (value !== undefined && typeof value !== 'boolean') throw optionError(`option ${name} must be a boolean, got ${describe(value)}`, 'Use true or false.');
    }
    this.maxValueLength = max;
    this.prepared = prepared;
    const entries: Entry[] = [];
    if (options.traceparent !== false) entries.push({ key: 'traceparent', prefix: 'traceparent=', slot: Slot.Traceparent, field: '', lastRaw: '', lastQuoted: '' });
    if (options.tracestate === true) entries.push({ key: 'tracestate', prefix: 'tracestate=', slot: Slot.Tracestate, field: '', lastRaw: '', lastQuoted: '' });
    const idKey = options.correlationIdKey ?? 'correlation_id';
    entries.push({ key: idKey, prefix: `${checkKey(idKey, 'option correlationIdKey')}=`, slot: Slot.CorrelationId, field: '', lastRaw: '', lastQuoted: '' });
    for (const [field, key] of resolveFields(options.fields)) {
      entries.push({ key, prefix: `${checkKey(key, `the comment key of field ${field}`)}=`, slot: Slot.Field, field, lastRaw: '', lastQuoted: '' });
    }
    const seen = new Set<string>();
    for (const entry of entries) {
      if (seen.has(entry.prefix)) {
        throw optionError(`the comment key ${entry.prefix.slice(0, -1)} is used twice`, 'Give every field its own key (traceparent, tracestate and the correlation id key are taken).');
      }
      seen.add(entry.prefix);
    }
    entries.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
    this.entries = entries;
    this.trace = options.traceparent !== false || options.tracestate === true;
    this.traceparent = options.traceparent !== false;
    this.fieldEntries = entries.filter((entry) => entry.slot === Slot.Field);
  }

  /** The comment for a statement issued now (`/*…*\/`), or `''` outside any context. Never throws. */
  comment(): string {
    const record = storage.getStore();
    return record === undefined ? '' : this.safeBuild(record);
  }

  /**
   * `sql` with the comment appended (before a trailing `;`). Unchanged outside any context, and when
   * `sql` already holds a comment (`/*` or `--`, as the sqlcommenter format says: this also keeps a
   * statement from being commented twice). Never throws.
   */
  apply(sql: string): string {
    if (typeof sql !== 'string' || sql.length === 0) return sql;
    const record = storage.getStore();
    if (record === undefined) return sql;
    // Most statements repeat a text the code holds (the same string, often the same object): the
    // last one found without a comment is not searched again.
    if (sql !== this.lastPlain) {
      if (hasComment(sql)) return sql;
      if (sql.length <= MAX_REMEMBERED) this.lastPlain = sql;
    }
    const comment = this.safeBuild(record);
    if (comment === '') return sql;
    let end = sql.length;
    for (;;) {
      const code = sql.charCodeAt(end - 1);
      if (code === 59 /* ; */ || code === 32 || code === 9 || code === 10 || code === 13) end--;
      else break;
    }
    return end === sql.length ? `${sql} ${comment}` : `${sql.slice(0, end)} ${comment}${sql.slice(end)}`;
  }

  private safeBuild(record: ContextRecord): string {
    try {
      return this.build(record);
    } catch {
      return ''; // a context whose fields cannot be read gets no comment, never a failed statement
    }
  }

  /**
   * The comment's pairs for a statement issued now, not encoded (values capped, lone surrogates
   * replaced), for clients that format the comment themselves, such as Prisma's sqlcommenter
   * plugins; `{}` outside any context. Never throws.
   */
  tags(): Record<string, string> {
    const tags: Record<string, string> = {};
    const record = storage.getStore();
    if (record === undefined) return tags;
    try {
      const trace = this.trace ? collectTrace(record) : undefined;
      let context: Record<string, unknown> | undefined;
      let contextRead = false;
      for (const entry of this.entries) {
        let value: string | undefined;
        if (entry.slot === Slot.Traceparent) value = trace?.traceparent;
        else if (entry.slot === Slot.Tracestate) value = trace?.tracestate;
        else if (entry.slot === Slot.CorrelationId) value = record.correlationId;
        else {
          if (!contextRead) {
            contextRead = true;
            context = readContext(record);
          }
          value = fieldValue(context, entry.field);
        }
        if (value === undefined || value === '') continue;
        tags[entry.key] = entry.slot === Slot.Traceparent || entry.slot === Slot.Tracestate ? value : cut(value, this.maxValueLength).replace(LONE_SURROGATE, '\uFFFD');
      }
      return tags;
    } catch {
      return {};
    }
  }

  private build(record: ContextRecord): string {
    if (!this.traceparent || traceSourceOf(record.config) !== undefined) return this.compose(record, undefined);
    // The library's own trace (what injectRecord writes without a trace source): everything but
    // the parent id is the same for all of a record's statements while the declared fields keep
    // their values, so the comment is kept on the record around it.
    const cached = record.sqlComment as CachedComment | undefined;
    if (cached !== undefined && cached.commenter === this && this.sameFields(record, cached.fields)) return cached.head + randomSpanId() + cached.tail;
    const parts = partsOf(record);
    const fields: (string | undefined)[] = [];
    // NUL cannot appear anywhere else in a comment (values and keys are encoded): it marks the parent id.
    const marked = this.compose(record, `'${parts.prefix}\0${parts.suffix}'`, parts.tracestate === '' ? undefined : parts.tracestate, fields);
    const at = marked.indexOf('\0');
    const comment: CachedComment = { commenter: this, fields, head: marked.slice(0, at), tail: marked.slice(at + 1) };
    record.sqlComment = comment;
    return comment.head + randomSpanId() + comment.tail;
  }

  /** Whether the declared fields hold the values a cached comment was built from. */
  private sameFields(record: ContextRecord, values: readonly (string | undefined)[]): boolean {
    const entries = this.fieldEntries;
    if (entries.length === 0) return true;
    const context = readContext(record);
    for (let i = 0; i < entries.length; i++) if (fieldValue(context, (entries[i] as Entry).field) !== values[i]) return false;
    return true;
  }

  /**
   * The comment, built entry by entry. `traceparent` is the quoted value to write (the trace's, or
   * the caller's with a marker), or `undefined` to collect the trace fields through the propagation
   * contract (the app's trace source, if any, writes them); `fields` receives the declared fields'
   * values in order.
   */
  private compose(record: ContextRecord, traceparent: string | undefined, tracestate?: string, fields?: (string | undefined)[]): string {
    if (traceparent === undefined && this.trace) {
      const collected = collectTrace(record);
      // A tracer's propagator writes these: encoded like any value (a valid traceparent is unchanged).
      if (collected.traceparent !== undefined && collected.traceparent !== '') traceparent = `'${encodeCommentValue(collected.traceparent, Infinity)}'`;
      tracestate = collected.tracestate;
    }
    let context: Record<string, unknown> | undefined;
    let contextRead = false;
    let out = '';
    const max = this.maxValueLength;
    for (const entry of this.entries) {
      let quoted: string;
      if (entry.slot === Slot.Traceparent) {
        if (traceparent === undefined) continue;
        quoted = entry.prefix + traceparent;
      } else {
        let value: string | undefined;
        if (entry.slot === Slot.CorrelationId) value = record.correlationId;
        else if (entry.slot === Slot.Tracestate) value = tracestate;
        else {
          if (!contextRead) {
            contextRead = true;
            context = readContext(record);
          }
          value = fieldValue(context, entry.field);
          fields?.push(value);
        }
        if (value === undefined || value === '') continue;
        if (value !== entry.lastRaw) {
          // tracestate is bounded by the trace options and never cut (a cut one would be malformed).
          entry.lastQuoted = `${entry.prefix}'${encodeCommentValue(value, entry.slot === Slot.Tracestate ? Infinity : max)}'`;
          entry.lastRaw = value;
        }
        quoted = entry.lastQuoted;
      }
      out = out === '' ? `/*${quoted}` : `${out},${quoted}`;
    }
    return out === '' ? '' : `${out}*/`;
  }
}

/** A record's comment around its parent id, kept on the record (`ContextRecord.sqlComment`) by the commenter that built it. */
interface CachedComment {
  readonly commenter: SqlCommenter;
  /** The declared fields' values it was built from, in order. */
  readonly fields: readonly (string | undefined)[];
  /** Up to the parent id: `/*…traceparent='00-<trace-id>-`. */
  readonly head: string;
  /** After the parent id: `-<flags>'…*\/`. */
  readonly tail: string;
}

/** The trace fields of a statement issued now, through the propagation contract (the app's trace source, if any, writes them). */
function collectTrace(record: ContextRecord): Collected {
  const collected: Collected = { traceparent: undefined, tracestate: undefined };
  injectRecord(record, collected, collector);
  return collected;
}

/** A declared field's value as written: strings as they are, numbers, booleans and bigints as text; anything else is left out. */
function fieldValue(context: Record<string, unknown> | undefined, field: string): string | undefined {
  const raw = context?.[field];
  return typeof raw === 'string' ? raw : typeof raw === 'number' || typeof raw === 'boolean' || typeof raw === 'bigint' ? String(raw) : undefined;
}

/** The user's context object (built now if it was not yet), or `undefined` when building it fails. */
function readContext(record: ContextRecord): Record<string, unknown> | undefined {
  try {
    return record.context as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Whether `sql` holds a comment already (or something that looks like one inside a literal). @internal */
export function hasComment(sql: string): boolean {
  return sql.includes('/*') || sql.includes('--');
}

/** The commenter for integration options: one given, or a new one. @internal */
export function toCommenter(options: SqlCommentOptions | SqlCommenter | undefined): SqlCommenter {
  return options instanceof SqlCommenter ? options : new SqlCommenter(options);
}
