import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * Every ```ts / ```typescript block of README.md and docs/*.md is type-checked against the
 * library's source (the repo's path mapping), strict, with decorators and NodeNext modules.
 *
 * Each block becomes its own module in a virtual directory beside its document. A block whose
 * first line is a comment naming a file (`// app.module.ts`) gets that name, so the blocks of one
 * page can import each other (`./my-context.js`). The README's `my-context.ts` is the one
 * `MyContext` (and the one `ContextRegistry` augmentation): every docs page gets a `my-context.ts`
 * re-exporting it, unless it defines its own, and likewise an `app.controller.ts` re-exporting the
 * quick start's `AppController`. PRELUDE declares the few names the snippets treat as given (an order
 * type, a token check, a Redis connection) and types the Vitest recipes' `'vitest'` import as Jest's
 * globals (the same shapes; those recipes run under real Vitest in test/fresh-app/).
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const VIRTUAL = join(ROOT, '.doc-blocks');

const PRELUDE = `
interface Order { item: string }
declare function verify(authorization: string | undefined): string;
declare const connection: { host: string; port: number };
declare const urls: string[];
declare module 'vitest' {
  export { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
}
`;

interface Block {
  /** Where the block is: `docs/logging.md:42` (the line of its opening fence). */
  origin: string;
  file: string;
  code: string;
}

function documents(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`);
  return ['README.md', ...docs];
}

function extract(doc: string): { blocks: Block[]; others: string[] } {
  const lines = readFileSync(join(ROOT, doc), 'utf8').split('\n');
  const dir = join(VIRTUAL, doc.replace(/\.md$/, ''));
  const blocks: Block[] = [];
  const others: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i] as string);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] as string); i++) body.push(lines[i] as string);
    const lang = open[1] as string;
    if (lang !== 'ts' && lang !== 'typescript') {
      others.push(`${doc}:${start + 1} ${lang || '(no language)'}`);
      continue;
    }
    const named = /^\/\/ ([\w.-]+\.ts)$/.exec(body[0] ?? '');
    const name = named ? (named[1] as string) : `block-${start + 1}.ts`;
    blocks.push({ origin: `${doc}:${start + 1}`, file: join(dir, name), code: body.join('\n') + '\n' });
  }
  return { blocks, others };
}

function allBlocks(): Block[] {
  const blocks = documents().flatMap((doc) => extract(doc).blocks);
  const readmeContext = join(VIRTUAL, 'README', 'my-context.ts');
  if (!blocks.some((b) => b.file === readmeContext)) throw new Error('README.md has no `// my-context.ts` block');
  const shared = { 'my-context.ts': 'MyContext', 'app.controller.ts': 'AppController' };
  for (const doc of documents().filter((d) => d !== 'README.md' && blocks.some((b) => b.origin.startsWith(`${d}:`)))) {
    for (const [name, symbol] of Object.entries(shared)) {
      const file = join(VIRTUAL, doc.replace(/\.md$/, ''), name);
      const from = `../../README/${name.replace(/\.ts$/, '.js')}`;
      if (!blocks.some((b) => b.file === file)) blocks.push({ origin: `${doc} (shared ${symbol})`, file, code: `export { ${symbol} } from '${from}';\n` });
    }
  }
  blocks.push({ origin: 'the test prelude', file: join(VIRTUAL, 'prelude.d.ts'), code: PRELUDE });
  return blocks;
}

function compilerOptions(): ts.CompilerOptions {
  const config = ts.readConfigFile(join(ROOT, 'tsconfig.json'), (path) => ts.sys.readFile(path));
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
  return {
    ...parsed.options,
    strict: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: ['node'],
    noEmit: true,
    declaration: false,
    sourceMap: false,
    noUnusedLocals: false,
  };
}

/** The virtual directories a block's file lies in, up to the repo root. */
function ancestors(file: string): string[] {
  const dirs: string[] = [];
  for (let dir = dirname(file); dir.startsWith(VIRTUAL); dir = dirname(dir)) dirs.push(dir);
  return dirs;
}

function typeCheck(blocks: Block[]): string[] {
  const byFile = new Map(blocks.map((b) => [b.file, b]));
  const options = compilerOptions();
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile, directoryExists } = host;
  const dirs = new Set([...byFile.keys()].flatMap((file) => ancestors(file)));
  host.fileExists = (path) => byFile.has(path) || fileExists.call(host, path);
  host.directoryExists = (path) => dirs.has(path) || (directoryExists ? directoryExists.call(host, path) : ts.sys.directoryExists(path));
  host.readFile = (path) => byFile.get(path)?.code ?? readFile.call(host, path);
  host.getSourceFile = (path, language, onError, shouldCreate) => {
    const block = byFile.get(path);
    return block ? ts.createSourceFile(path, block.code, language, true) : getSourceFile.call(host, path, language, onError, shouldCreate);
  };
  const program = ts.createProgram([...byFile.keys()], options, host);
  const problems: string[] = [];
  for (const diagnostic of [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]) {
    problems.push(`options: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`);
  }
  for (const [file, block] of byFile) {
    const source = program.getSourceFile(file);
    if (!source) {
      problems.push(`${block.origin}: not compiled`);
      continue;
    }
    for (const diagnostic of [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]) {
      const { line } = source.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
      const [doc, fence] = block.origin.split(':');
      const where = fence ? `${doc}:${Number(fence) + 1 + line}` : block.origin;
      problems.push(`${where} (block at ${block.origin}, ${relative(ROOT, file)}): ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`);
    }
  }
  return problems;
}

describe('the code blocks of README.md and docs/', () => {
  const blocks = allBlocks();

  it('finds the TypeScript blocks, and every other block says what it is', () => {
    expect(blocks.filter((b) => b.origin.includes('.md:')).length).toBeGreaterThan(10);
    const unlabelled = documents()
      .flatMap((doc) => extract(doc).others)
      .filter((o) => o.endsWith('(no language)'));
    expect(unlabelled).toEqual([]);
  });

  it('every TypeScript block compiles against the source (strict, decorators, NodeNext)', () => {
    expect(typeCheck(blocks)).toEqual([]);
  });
});
