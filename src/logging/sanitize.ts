/** Default longest value (in UTF-16 code units, after escaping) a context field may have on a log line. */
export const DEFAULT_MAX_LOG_VALUE_LENGTH = 256;

/** The shortest `maxLength` accepted: room for a few characters and the `...` marker. */
export const MIN_MAX_LOG_VALUE_LENGTH = 8;

/**
 * Characters that must never reach a log line raw: C0 controls (CR, LF, TAB, ESC of ANSI
 * sequences, ...), DEL, C1 controls (NEL among them), invisible format characters that can reorder
 * or hide text (bidi overrides, zero-width characters, BOM), the Unicode line and paragraph
 * separators, and lone surrogates.
 */
const UNSAFE =
  /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');

const SHORT_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(char: string): string {
  return SHORT_ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Makes a string safe to put on a log line: every control or invisible formatting character is
 * replaced by a visible escape (`\n`, `\r`, `\t`, `\u001b`, ...), so no value can start a new line,
 * colour the terminal or hide text; the result is then capped at `maxLength` characters, ending in
 * `...` when cut (`maxLength` below 8 counts as 8). Strings that need neither are returned as they are (no allocation).
 *
 * @example sanitizeLogValue('a\r\n[Nest] forged') // 'a\\r\\n[Nest] forged'
 */
export function sanitizeLogValue(value: string, maxLength: number = DEFAULT_MAX_LOG_VALUE_LENGTH): string {
  if (!(maxLength >= MIN_MAX_LOG_VALUE_LENGTH)) maxLength = MIN_MAX_LOG_VALUE_LENGTH;
  let out = UNSAFE.test(value) ? value.replace(UNSAFE_ALL, escapeChar) : value;
  if (out.length > maxLength) {
    let end = Math.max(0, maxLength - 3);
    const last = out.charCodeAt(end - 1);
    if (last >= 0xd800 && last <= 0xdbff) end--; // never split a surrogate pair
    out = `${out.slice(0, end)}...`;
  }
  return out;
}
