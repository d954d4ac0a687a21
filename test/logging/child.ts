import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

const ROOT = process.cwd();

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* tsFiles(path);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts') && !name.includes('spec.ts')) yield path;
  }
}

/**
 * Transpiles `src/` and the test helpers to plain JavaScript (ESM, or CommonJS for `src/` only) in a
 * temporary directory, for code that must run in a real Node process rather than under Jest: packages
 * Jest cannot load on Node 20 (nest-winston requires the ESM-only @nestjs/common), a missing peer
 * dependency, sample output. `without` lists packages left out of its `node_modules`; `dirs`, the
 * test folders transpiled besides `src/` and `test/utils` (default: `test/logging`).
 */
export function transpile(options: { without?: readonly string[]; commonjs?: boolean; dirs?: readonly string[] } = {}): string {
  const out = mkdtempSync(join(tmpdir(), 'nestjs-context-logging-'));
  const dirs = options.commonjs ? ['src'] : ['src', 'test/utils', ...(options.dirs ?? ['test/logging'])];
  for (const dir of dirs) {
    for (const file of tsFiles(join(ROOT, dir))) {
      const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
        fileName: file,
        compilerOptions: {
          module: options.commonjs ? ts.ModuleKind.CommonJS : ts.ModuleKind.ES2022,
          target: ts.ScriptTarget.ES2022,
          experimentalDecorators: true,
          emitDecoratorMetadata: true,
          esModuleInterop: true,
        },
      });
      const target = join(out, relative(ROOT, file)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, outputText);
    }
  }
  writeFileSync(join(out, 'package.json'), JSON.stringify({ type: options.commonjs ? 'commonjs' : 'module' }));
  const modules = join(out, 'node_modules');
  mkdirSync(modules);
  const without = new Set(options.without ?? []);
  for (const name of readdirSync(join(ROOT, 'node_modules'))) {
    if (!without.has(name) && !name.startsWith('.')) symlinkSync(join(ROOT, 'node_modules', name), join(modules, name));
  }
  return out;
}

/** Removes a tree made by {@link transpile} (its `node_modules` holds symlinks only, which are unlinked, not followed). */
export function removeTree(out: string | undefined): void {
  if (out !== undefined && out.startsWith(tmpdir())) rmSync(out, { recursive: true, force: true });
}

/** A transpiled script running in its own Node process: the app's stdout, split into lines. */
export interface ChildApp {
  /** The base URL the app listens on (printed by the script as `READY <url>` on stderr). */
  readonly url: string;
  /** Lines written to stdout so far. */
  lines(): string[];
  /** Forgets the lines captured so far. */
  clear(): void;
  /** Stops the process (SIGTERM; the script closes the app) and waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * Starts `script` (a path relative to the transpiled tree, `.js`) with arguments; resolves once it
 * is ready. `nodeArgs` go to `node` before the script (e.g. `--import` of a preload).
 */
export function startScript(out: string, script: string, args: readonly string[] = [], nodeArgs: readonly string[] = []): Promise<ChildApp> {
  const child: ChildProcess = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', ...nodeArgs, join(out, script), ...args], {
    cwd: out,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  let started = false;
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`${script} exited (${code}) before it was ready:\n${stderr}`)));
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
      // Once only: a later chunk (a warning the app writes while it closes) must not remove the
      // 'exit' listener that stop() added.
      if (started) return;
      const ready = /READY (\S+)/.exec(stderr);
      if (ready === null) return;
      started = true;
      child.removeAllListeners('exit');
      resolve({
        url: ready[1]!,
        lines: () => stdout.split('\n').filter((line) => line !== ''),
        clear: () => {
          stdout = '';
        },
        stop: () =>
          new Promise<void>((done) => {
            child.on('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

/** Runs `node` with `args` in `cwd` to completion; resolves with the exit code and output. */
export function runNode(cwd: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}
