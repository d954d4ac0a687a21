import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Every relative Markdown link of README.md and docs/*.md points at a file of the checkout, and a
 * link with a `#fragment` into a Markdown file (or within its own page) at a heading of that file,
 * slugged as GitHub does it: the heading's text (inline code, links and emphasis reduced to their
 * text), lower-cased, punctuation and symbols dropped (letters, digits, `-`, `_` and spaces kept),
 * each space turned into `-`; a repeated slug gets `-1`, `-2`, … Links inside code (fenced blocks,
 * inline code spans) are not links. README.md also links every page of docs/.
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

function documents(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`);
  return ['README.md', ...docs];
}

/** The file's text with fenced code blocks and inline code spans blanked out (same offsets, same lines). */
function prose(text: string): string {
  const blank = (s: string): string => s.replace(/[^\n]/g, ' ');
  const lines = text.split('\n');
  let fence: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const open = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === undefined && open !== undefined) {
      fence = open;
      lines[i] = blank(line);
    } else if (fence !== undefined) {
      if (line.trimStart().startsWith(fence) && line.trim() === fence[0]!.repeat(line.trim().length)) fence = undefined;
      lines[i] = blank(line);
    }
  }
  return lines.join('\n').replace(/(`+)[\s\S]*?\1/g, blank);
}

/** GitHub's anchor for a heading's Markdown text. */
function slug(heading: string): string {
  const text = heading
    .replace(/`([^`]*)`/g, '$1')
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/(\*+|\b_+|_+\b)/g, (m, _g, offset: number, all: string) => (/\w/.test(all[offset - 1] ?? '') && /\w/.test(all[offset + m.length] ?? '') ? m : ''));
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors a Markdown file offers: its headings' slugs (repeats numbered) and any `id`/`name` attributes. */
function anchorsOf(file: string): Set<string> {
  const text = prose(readFileSync(file, 'utf8'));
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, heading] of text.matchAll(/^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$/gm)) {
    const base = slug(heading as string);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const [, id] of readFileSync(file, 'utf8').matchAll(/<a\s[^>]*\b(?:id|name)="([^"]+)"/g)) anchors.add(id as string);
  return anchors;
}

interface Link {
  /** `docs/api.md:13` */
  where: string;
  target: string;
}

function linksOf(doc: string): Link[] {
  const text = prose(readFileSync(join(ROOT, doc), 'utf8'));
  const links: Link[] = [];
  for (const match of text.matchAll(/\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)) {
    const target = match[1] as string;
    if (target === '' || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:, …
    const line = text.slice(0, match.index).split('\n').length;
    links.push({ where: `${doc}:${line}`, target });
  }
  return links;
}

/** What is wrong with one link, or undefined. */
function problem(doc: string, link: Link, anchors: (file: string) => Set<string>): string | undefined {
  const hash = link.target.indexOf('#');
  const path = decodeURI(hash < 0 ? link.target : link.target.slice(0, hash));
  const fragment = hash < 0 ? undefined : decodeURIComponent(link.target.slice(hash + 1));
  const file = path === '' ? join(ROOT, doc) : resolve(dirname(join(ROOT, doc)), path);
  if (!file.startsWith(ROOT)) return `${link.where}: ${link.target} leaves the repository`;
  if (!existsSync(file)) return `${link.where}: ${link.target}: no file ${relative(ROOT, file)}`;
  if (fragment === undefined) return undefined;
  if (!file.endsWith('.md') || statSync(file).isDirectory()) return `${link.where}: ${link.target}: a #fragment into ${relative(ROOT, file)}, which is not a Markdown file`;
  if (!anchors(file).has(fragment)) return `${link.where}: ${link.target}: ${relative(ROOT, file)} has no heading whose anchor is #${fragment}`;
  return undefined;
}

describe('the links of README.md and docs/', () => {
  const cache = new Map<string, Set<string>>();
  const anchors = (file: string): Set<string> => {
    let found = cache.get(file);
    if (found === undefined) cache.set(file, (found = anchorsOf(file)));
    return found;
  };

  it('slugs headings as GitHub does', () => {
    expect(slug('@nestjs/observe')).toBe('nestjsobserve');
    expect(slug('Set-up: one line')).toBe('set-up-one-line');
    expect(slug('Four ways to reach the context')).toBe('four-ways-to-reach-the-context');
    expect(slug('Outside a request: cron jobs, queue consumers, scripts, tests')).toBe('outside-a-request-cron-jobs-queue-consumers-scripts-tests');
    expect(slug('`ContextService` and `run()`')).toBe('contextservice-and-run');
    expect(slug('SQL comment, per statement')).toBe('sql-comment-per-statement');
    expect(slug('With **Vitest**')).toBe('with-vitest');
    expect(slug('snake_case and [a link](x.md)')).toBe('snake_case-and-a-link');
  });

  it('finds the links', () => {
    expect(documents().flatMap(linksOf).length).toBeGreaterThan(50);
  });

  it('every relative link points at an existing file, and every #fragment at a heading there', () => {
    const problems = documents().flatMap((doc) => linksOf(doc).flatMap((link) => problem(doc, link, anchors) ?? []));
    expect(problems).toEqual([]);
  });

  it('the README links every page of docs/', () => {
    const linked = new Set(linksOf('README.md').map((link) => link.target.replace(/#.*$/, '')));
    expect(documents().filter((doc) => doc !== 'README.md' && !linked.has(doc))).toEqual([]);
  });
});
