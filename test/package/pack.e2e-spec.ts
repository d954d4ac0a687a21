/**
 * `npm pack` as a maintainer runs it on a fresh clone: in a copy of the checkout without `dist/`,
 * the `prepack` script must build first, and the tarball must hold the complete package — every
 * entry point of the exports map in both module systems, README, LICENSE and CHANGELOG, no tests,
 * no sources, no source maps — within a size budget. The tarball is then unpacked into a throwaway
 * consumer's `node_modules` (what npm does for a package without dependencies) and every entry point
 * is imported from ESM and required from CommonJS.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../utils/run.js';

const ROOT = process.cwd();
/**
 * Largest acceptable tarball, gzipped: today about 223 kB (the root and 16 subpaths, each built twice,
 * ESM and CommonJS, with declarations; 145 kB before the GraphQL, OpenTelemetry, Observe, SQL and
 * testing subpaths).
 */
const MAX_PACKED_BYTES = 260_000;

interface PackResult {
  filename: string;
  size: number;
  files: { path: string }[];
}

describe('npm pack on a fresh checkout', () => {
  let work: string;
  let packed: PackResult;
  let exportsMap: Record<string, { import: { default: string; types: string }; require: { default: string; types: string } } | string>;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'nestjs-context-pack-'));
    const clone = join(work, 'clone');
    mkdirSync(clone);
    // What a clone has, without dist/ (and with the checkout's installed node_modules).
    for (const entry of ['package.json', 'package-lock.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'tsconfig.json', 'tsconfig.build.json', 'tsconfig.build.cjs.json', 'src', 'scripts']) {
      cpSync(join(ROOT, entry), join(clone, entry), { recursive: true });
    }
    symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'));
    const npm = await run('npm', ['pack', '--json', '--pack-destination', work], clone);
    if (npm.code !== 0) throw new Error(`npm pack failed (${npm.code}):\n${npm.stderr}`);
    const json = npm.stdout.slice(npm.stdout.indexOf('['));
    packed = (JSON.parse(json) as PackResult[])[0] as PackResult;
    exportsMap = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: typeof exportsMap }).exports;
  }, 300_000);

  afterAll(() => {
    if (work?.startsWith(tmpdir())) rmSync(work, { recursive: true, force: true });
  });

  it('builds first and ships every exported file in both module systems', () => {
    const files = new Set(packed.files.map((f) => f.path));
    const targets = JSON.stringify(exportsMap).match(/\.\/dist\/[^"]+/g) ?? [];
    expect(targets.length).toBeGreaterThan(20);
    expect(targets.filter((t) => !files.has(t.slice(2)))).toEqual([]);
  });

  it('ships README, LICENSE, CHANGELOG and package.json, and no tests, sources or source maps', () => {
    const files = packed.files.map((f) => f.path);
    for (const doc of ['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json']) expect(files).toContain(doc);
    expect(files.filter((f) => !f.startsWith('dist/') && !['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json'].includes(f))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.map') || /\.spec\.|\.e2e-spec\./.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')))).toEqual([]);
  });

  it(`stays within ${MAX_PACKED_BYTES / 1000} kB packed`, () => {
    expect(packed.size).toBeLessThanOrEqual(MAX_PACKED_BYTES);
  });

  it('installs into a consumer and every entry point loads from ESM and from CommonJS', async () => {
    const consumer = join(work, 'consumer');
    const self = join(consumer, 'node_modules', 'nestjs-context');
    mkdirSync(self, { recursive: true });
    const tar = await run('tar', ['-xzf', join(work, packed.filename), '-C', self, '--strip-components=1'], work);
    expect(tar.code).toBe(0);
    // Its peers (and the optional ones, so that every entry point can load) from the checkout.
    for (const name of readdirSync(join(ROOT, 'node_modules'))) {
      if (name.startsWith('.') || name === 'nestjs-context') continue;
      symlinkSync(join(ROOT, 'node_modules', name), join(consumer, 'node_modules', name));
    }
    const specifiers = Object.keys(exportsMap)
      .filter((key) => key !== './package.json')
      .map((key) => (key === '.' ? 'nestjs-context' : `nestjs-context/${key.slice(2)}`));
    writeFileSync(join(consumer, 'esm.mjs'), `import 'reflect-metadata';\n${specifiers.map((s, i) => `import * as m${i} from '${s}';`).join('\n')}\nconsole.log(JSON.stringify([${specifiers.map((_, i) => `Object.keys(m${i}).length`).join(', ')}]));\n`);
    writeFileSync(join(consumer, 'cjs.cjs'), `require('reflect-metadata');\nconsole.log(JSON.stringify([${specifiers.map((s) => `Object.keys(require('${s}')).length`).join(', ')}]));\n`);
    for (const file of ['esm.mjs', 'cjs.cjs']) {
      const out = await run(process.execPath, ['--disable-warning=ExperimentalWarning', file], consumer);
      expect([file, out.code, out.stderr]).toEqual([file, 0, '']);
      const counts = JSON.parse(out.stdout) as number[];
      expect(counts).toHaveLength(specifiers.length);
      expect(counts.every((n) => n > 0)).toBe(true);
    }
  });
});
