/**
 * The published package as users get it: `dist/` (built by `npm test`) copied into a consumer's
 * `node_modules/nestjs-context`, imported by name from plain Node processes — ESM and CommonJS —
 * with none of the optional peer dependencies installed. Also checks the exports map, the type
 * declarations (a strict TypeScript consumer in both module systems; nothing marked `@internal` left
 * in them), and that the ESM and CommonJS builds share one AsyncLocalStorage.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

const ROOT = process.cwd();
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};
/** What the root entry may import besides Node built-ins (the brief's "small core"). */
const CORE = ['@nestjs/common', '@nestjs/core', 'rxjs', 'reflect-metadata'];
const OPTIONAL = Object.keys(pkg.peerDependenciesMeta ?? {}).filter((name) => pkg.peerDependenciesMeta?.[name]?.optional);
const SUBPATHS = Object.keys(pkg.exports).filter((key) => key !== '.' && key !== './package.json').map((key) => key.slice(2));

/** Runs `node args…` in `cwd`; resolves with its exit code and output (never rejects). */
function node(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--disable-warning=ExperimentalWarning', ...args], { cwd, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Every file reachable from `entry` through relative imports/requires, and the bare specifiers they use. */
function importGraph(entry: string): { files: string[]; bare: Set<string> } {
  const seen = new Set<string>();
  const bare = new Set<string>();
  const queue = [entry];
  const pattern = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]/g;
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(pattern)) {
      if (spec.startsWith('.')) queue.push(join(dirname(file), spec.endsWith('.js') ? spec : `${spec}.js`));
      else if (!spec.startsWith('node:')) bare.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
    }
  }
  return { files: [...seen], bare };
}

const APP = (load: string) => `
${load}
const { Controller, Get, Inject, Injectable, Module } = common;
const { NestFactory } = core;
const { ContextModule, ContextService, Ctx, currentContext } = lib;

class MyContext {
  constructor(init) { this.correlationId = init.correlationId; }
}
class AppController {
  constructor(service) { this.service = service; }
  index(ctx) {
    return { viaCtx: ctx.correlationId, viaCurrent: currentContext.correlationId, viaService: this.service.get().correlationId, same: ctx === this.service.get() };
  }
}
Inject(ContextService)(AppController, undefined, 0);
Ctx()(AppController.prototype, 'index', 0);
Get()(AppController.prototype, 'index', Object.getOwnPropertyDescriptor(AppController.prototype, 'index'));
Controller()(AppController);
class AppModule {}
Module({ imports: [ContextModule.forRoot(MyContext)], controllers: [AppController] })(AppModule);

const app = await NestFactory.create(AppModule, { logger: false });
await app.listen(0, '127.0.0.1');
const { port } = app.getHttpServer().address();
const first = await fetch('http://127.0.0.1:' + port + '/', { headers: { 'x-request-id': 'pkg-test-1' } });
const second = await fetch('http://127.0.0.1:' + port + '/');
console.log(JSON.stringify({ first: await first.json(), echoed: first.headers.get('x-request-id'), second: await second.json() }));
await app.close();
`;

describe('the built package, imported by name', () => {
  let consumer: string;

  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist/esm/index.js')) || !existsSync(join(ROOT, 'dist/cjs/index.js'))) {
      throw new Error('dist/ is missing: these tests load the built package. Run `npm run build` first (`npm test` does).');
    }
    consumer = mkdtempSync(join(tmpdir(), 'nestjs-context-consumer-'));
    const modules = join(consumer, 'node_modules');
    mkdirSync(modules);
    // The package as npm would install it: its manifest and dist/, no source, no node_modules of its own.
    const self = join(modules, 'nestjs-context');
    mkdirSync(self);
    cpSync(join(ROOT, 'package.json'), join(self, 'package.json'));
    cpSync(join(ROOT, 'dist'), join(self, 'dist'), { recursive: true });
    // Every installed package except the optional peer dependencies: those are "not installed".
    for (const name of readdirSync(join(ROOT, 'node_modules'))) {
      if (name.startsWith('.') || name === 'nestjs-context') continue;
      if (name.startsWith('@')) {
        for (const sub of readdirSync(join(ROOT, 'node_modules', name))) {
          if (OPTIONAL.includes(`${name}/${sub}`)) continue;
          mkdirSync(join(modules, name), { recursive: true });
          symlinkSync(join(ROOT, 'node_modules', name, sub), join(modules, name, sub));
        }
      } else if (!OPTIONAL.includes(name)) {
        symlinkSync(join(ROOT, 'node_modules', name), join(modules, name));
      }
    }
  });

  afterAll(() => {
    if (consumer?.startsWith(tmpdir())) rmSync(consumer, { recursive: true, force: true });
  });

  it('exports every integration folder and only built files that exist', () => {
    const folders = readdirSync(join(ROOT, 'src/integrations')).sort();
    expect(SUBPATHS.sort()).toEqual(folders);
    const targets = JSON.stringify(pkg.exports).match(/\.\/dist\/[^"]+/g) ?? [];
    expect(targets.length).toBeGreaterThan(0);
    for (const target of targets) expect(existsSync(join(ROOT, target))).toBe(true);
  });

  it.each(['esm', 'cjs'])('the %s root entry imports nothing but @nestjs/common, @nestjs/core, rxjs, reflect-metadata and node:*', (format) => {
    const { bare } = importGraph(join(ROOT, `dist/${format}/index.js`));
    expect([...bare].filter((name) => !CORE.includes(name))).toEqual([]);
  });

  it.each(SUBPATHS)('the %s subpath imports only the core and its own optional peer dependencies', (subpath) => {
    for (const format of ['esm', 'cjs']) {
      const { bare } = importGraph(join(ROOT, `dist/${format}/integrations/${subpath}/index.js`));
      for (const name of bare) {
        if (CORE.includes(name)) continue;
        expect({ subpath, name, declared: pkg.peerDependencies[name] !== undefined, optional: OPTIONAL.includes(name) }).toEqual({
          subpath,
          name,
          declared: true,
          optional: true,
        });
      }
    }
  });

  it('boots an ESM app (import) with no optional peer dependency installed', async () => {
    writeFileSync(join(consumer, 'app.mjs'), APP(`
import * as common from '@nestjs/common';
import * as core from '@nestjs/core';
import * as lib from 'nestjs-context';
import 'reflect-metadata';`));
    const { code, stdout, stderr } = await node(consumer, ['app.mjs']);
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(out.first).toEqual({ viaCtx: 'pkg-test-1', viaCurrent: 'pkg-test-1', viaService: 'pkg-test-1', same: true });
    expect(out.echoed).toBe('pkg-test-1');
    expect(out.second.viaCtx).not.toBe('pkg-test-1');
    expect(out.second.same).toBe(true);
  });

  it('boots a CommonJS app (require) with no optional peer dependency installed', async () => {
    writeFileSync(join(consumer, 'app.cjs'), `(async () => {${APP(`
require('reflect-metadata');
const common = require('@nestjs/common');
const core = require('@nestjs/core');
const lib = require('nestjs-context');
if (!require.resolve('nestjs-context').includes('/dist/cjs/')) throw new Error('require() did not pick the CommonJS build');`)}})().catch((e) => { console.error(e); process.exit(1); });`);
    const { code, stdout, stderr } = await node(consumer, ['app.cjs']);
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(out.first).toEqual({ viaCtx: 'pkg-test-1', viaCurrent: 'pkg-test-1', viaService: 'pkg-test-1', same: true });
    expect(out.echoed).toBe('pkg-test-1');
  });

  it('shares one AsyncLocalStorage between the ESM and CommonJS builds', async () => {
    // The app is wired with the CommonJS build; `currentContext` comes from the ESM build, as when a
    // CommonJS app uses an ESM library that reads the context.
    writeFileSync(join(consumer, 'dual.mjs'), APP(`
import { createRequire } from 'node:module';
import * as common from '@nestjs/common';
import * as core from '@nestjs/core';
import * as esm from 'nestjs-context';
const cjs = createRequire(import.meta.url)('nestjs-context');
if (esm.ContextService === cjs.ContextService) throw new Error('expected two builds');
const lib = { ...cjs, currentContext: esm.currentContext };`));
    const { code, stdout, stderr } = await node(consumer, ['dual.mjs']);
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(out.first).toEqual({ viaCtx: 'pkg-test-1', viaCurrent: 'pkg-test-1', viaService: 'pkg-test-1', same: true });
  });

  it('says which peer dependency is missing when an integration needs one that is not installed', async () => {
    const needing = SUBPATHS.filter((subpath) =>
      [...importGraph(join(ROOT, `dist/esm/integrations/${subpath}/index.js`)).bare].some((name) => OPTIONAL.includes(name)),
    );
    expect(needing.length).toBeGreaterThan(0);
    for (const subpath of needing) {
      writeFileSync(join(consumer, 'missing.mjs'), `await import('nestjs-context/${subpath}');`);
      const { code, stderr } = await node(consumer, ['missing.mjs']);
      expect(code).not.toBe(0);
      expect(stderr).toMatch(/Cannot find (package|module) '[^']+'/);
    }
  });

  it('type-checks a strict TypeScript consumer in ESM and CommonJS (moduleResolution nodenext)', async () => {
    const use = `
import { ContextModule, ContextService, Ctx, currentContext, getOutboundHeaders, type ContextInit } from 'nestjs-context';
import { propagateContext } from 'nestjs-context/axios';
import { propagateContext as propagateFetch } from 'nestjs-context/fetch';
export class MyContext { correlationId: string; userId?: string; constructor(init: ContextInit) { this.correlationId = init.correlationId; } }
export const module = ContextModule.forRoot(MyContext, { correlationId: { responseHeader: 'x-request-id' }, enterEarly: true });
export function read(service: ContextService<MyContext>): string | undefined {
  const id: string = service.get().correlationId;
  return service.get().userId ?? id ?? String(currentContext) ?? getOutboundHeaders()['x-request-id'];
}
export const decorators = [Ctx(), Ctx('userId')];
export const clients = [propagateContext, propagateFetch];
`;
    writeFileSync(join(consumer, 'use.mts'), use);
    writeFileSync(join(consumer, 'use.cts'), use);
    writeFileSync(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true,
          experimentalDecorators: true, emitDecoratorMetadata: true, skipLibCheck: false, types: ['node'],
          typeRoots: [join(ROOT, 'node_modules/@types')],
        },
        files: ['use.mts', 'use.cts'],
      }),
    );
    const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
    const { code, stdout } = await node(consumer, [tsc, '-p', 'tsconfig.json']);
    expect(stdout.split('\n').filter((line) => line.includes('error')).map((line) => relative(consumer, line))).toEqual([]);
    expect(code).toBe(0);
  });
});

/** Every file under `dir` whose name ends with `suffix`, as paths relative to `dir`. */
function filesUnder(dir: string, suffix: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((file) => file.endsWith(suffix)).sort();
}

/** Whether the comments right before `node` say `@internal` (how `stripInternal` decides). */
function markedInternal(node: ts.Node, text: string): boolean {
  return (ts.getLeadingCommentRanges(text, node.getFullStart()) ?? []).some((range) => text.slice(range.pos, range.end).includes('@internal'));
}

/**
 * The named declarations of one file, as dotted paths (`ContextHost`, `ContextHost.enterHttp`,
 * `OpenOptions.source`), with whether each is marked `@internal`. Variables count by their statement.
 */
function declarations(file: string): { path: string; internal: boolean }[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: { path: string; internal: boolean }[] = [];
  const visit = (node: ts.Node, container: string, insideInternal: boolean): void => {
    let path = container;
    let internal = insideInternal;
    if (ts.isVariableStatement(node)) {
      const marked = insideInternal || markedInternal(node, text);
      for (const declaration of node.declarationList.declarations) {
        if (ts.isIdentifier(declaration.name)) found.push({ path: `${container}${declaration.name.text}`, internal: marked });
      }
      return;
    }
    const name = (node as ts.Node & { name?: ts.Node }).name;
    const named =
      ts.isClassDeclaration(node) || ts.isFunctionDeclaration(node) || ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node) ||
      ts.isEnumDeclaration(node) || ts.isModuleDeclaration(node) || ts.isPropertyDeclaration(node) || ts.isMethodDeclaration(node) ||
      ts.isGetAccessorDeclaration(node) || ts.isSetAccessorDeclaration(node) || ts.isPropertySignature(node) || ts.isMethodSignature(node) ||
      ts.isEnumMember(node);
    if (named && name !== undefined && (ts.isIdentifier(name) || ts.isStringLiteral(name) || ts.isPrivateIdentifier(name))) {
      internal = insideInternal || markedInternal(node, text);
      path = `${container}${name.text}`;
      found.push({ path, internal });
      path += '.';
    } else if (ts.isExportDeclaration(node) && node.exportClause !== undefined && ts.isNamedExports(node.exportClause)) {
      const marked = markedInternal(node, text);
      for (const element of node.exportClause.elements) found.push({ path: `${container}export ${element.name.text}`, internal: marked });
      return;
    }
    ts.forEachChild(node, (child) => visit(child, path, internal));
  };
  visit(source, '', false);
  return found;
}

describe('the built type declarations keep nothing marked @internal (stripInternal)', () => {
  const builds = ['esm', 'cjs'] as const;

  beforeAll(() => {
    for (const build of builds) {
      if (!existsSync(join(ROOT, `dist/${build}/index.d.ts`))) {
        throw new Error('dist/ is missing: these tests read the built declarations. Run `npm run build` first (`npm test` does).');
      }
    }
  });

  it('no .d.ts file mentions @internal', () => {
    for (const build of builds) {
      const dir = join(ROOT, 'dist', build);
      const files = filesUnder(dir, '.d.ts');
      expect(files.length).toBeGreaterThan(20);
      expect(files.filter((file) => readFileSync(join(dir, file), 'utf8').includes('@internal')).map((file) => `dist/${build}/${file}`)).toEqual([]);
    }
  });

  it('no declaration marked @internal in src/ is declared in its built .d.ts (classes, functions, types, constants, members, re-exports)', () => {
    const sources = filesUnder(join(ROOT, 'src'), '.ts').filter((file) => !file.endsWith('.spec.ts') && !file.endsWith('.d.ts'));
    let internals = 0;
    const leftOver: string[] = [];
    for (const file of sources) {
      const marked = new Set(declarations(join(ROOT, 'src', file)).filter((d) => d.internal).map((d) => d.path));
      internals += marked.size;
      for (const build of builds) {
        const built = join(ROOT, 'dist', build, file.replace(/\.ts$/, '.d.ts'));
        if (!existsSync(built)) continue;
        for (const { path } of declarations(built)) if (marked.has(path)) leftOver.push(`dist/${build}/${file.replace(/\.ts$/, '.d.ts')}: ${path}`);
      }
    }
    expect(internals).toBeGreaterThan(50); // the walk finds the library's internal declarations at all
    expect(leftOver).toEqual([]);
  });

  it('every built .d.ts type-checks on its own (no reference to a stripped declaration), in both builds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-context-dts-'));
    try {
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true,
            experimentalDecorators: true, skipLibCheck: false, types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')],
          },
          include: builds.map((build) => join(ROOT, 'dist', build, '**/*.d.ts')),
        }),
      );
      const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
      const { code, stdout } = await node(dir, [tsc, '-p', 'tsconfig.json']);
      expect(stdout.split('\n').filter((line) => line.includes('error'))).toEqual([]);
      expect(code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
