import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

interface EntryExports {
  subpath: string;
  values: string[];
  types: string[];
  undocumented: string[];
}

/** The "API at a glance" page (docs/api.md): subpath → the names it lists. */
function documentedApi(): Map<string, Set<string>> {
  const page = readFileSync(join(ROOT, 'docs/api.md'), 'utf8');
  const start = page.indexOf('\n## API at a glance');
  if (start < 0) throw new Error('docs/api.md has no "## API at a glance" section');
  const end = page.indexOf('\n## ', start + 1);
  const section = page.slice(start, end < 0 ? undefined : end);
  const api = new Map<string, Set<string>>();
  let current: Set<string> | undefined;
  for (const line of section.split('\n')) {
    const heading = /^### `(nestjs-context(?:\/[\w-]+)?)`/.exec(line);
    if (heading) {
      const subpath = heading[1] === 'nestjs-context' ? '.' : `./${(heading[1] as string).slice('nestjs-context/'.length)}`;
      api.set(subpath, (current = new Set()));
      continue;
    }
    const item = /^- ((?:`[\w$]+`(?:, )?)+) — /.exec(line);
    if (item && current) for (const [, name] of (item[1] as string).matchAll(/`([\w$]+)`/g)) current.add(name as string);
  }
  return api;
}

describe('the public API', () => {
  let entries: EntryExports[];
  beforeAll(async () => {
    const script = join(ROOT, 'scripts/api-surface.mjs');
    const { listExports } = (await import(script)) as { listExports(root: string): EntryExports[] };
    entries = listExports(ROOT);
  });

  it('the root entry has at most 12 runtime values', () => {
    const root = entries.find((e) => e.subpath === '.') as EntryExports;
    expect(root.values.length).toBeLessThanOrEqual(12);
  });

  it('every exported symbol has a doc comment', () => {
    expect(entries.filter((e) => e.undocumented.length > 0).map((e) => [e.subpath, e.undocumented])).toEqual([]);
  });

  it('docs/api.md lists exactly what each entry point exports', () => {
    const documented = documentedApi();
    const exported = new Map(entries.map((e) => [e.subpath, [...e.values, ...e.types].sort()]));
    const listed = new Map([...documented].map(([subpath, names]) => [subpath, [...names].sort()]));
    expect(Object.fromEntries(listed)).toEqual(Object.fromEntries(exported));
  });

  it('every exported name is in package.json exports, and nothing else is', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
    const subpaths = Object.keys(pkg.exports).filter((key) => key !== './package.json').sort();
    expect(subpaths).toEqual(entries.map((e) => e.subpath).sort());
  });
});
