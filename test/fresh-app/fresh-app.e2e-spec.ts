/**
 * The README's quick start in an app as `nest new` makes it today (Nest CLI 12: ESM, Vitest,
 * `@nestjs/observe` wired into AppModule and main.ts). test/fresh-app/template is a checked-in copy of
 * what the CLI generated (see test/fresh-app/README.md), so this does not depend on the CLI.
 *
 * One run: copy the template to a temporary directory, pack this checkout (`npm pack`; `npm test`
 * has just built dist/), install the app's dependencies from the npm registry together with the
 * tarball (one `npm install`, as the README's Install section says), apply the quick start from the
 * README's own code blocks and the Vitest recipes from docs/testing.md's, then run the app's own
 * tools: `tsc`, `npm run lint` (oxlint), `nest build`, `npm test`, `npm run test:e2e`, and `node dist/main.js`.
 * Then the `@nestjs/observe` line of docs/observe.md's set-up (`createObserveModule(contextObserveOptions())`), after
 * which Observe's trace id must be the correlation id (tsc, oxlint and the e2e tests again).
 * Observe's collector (`OBSERVE_ENDPOINT`) is a stand-in on 127.0.0.1: no telemetry leaves the machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../utils/brokers.js';
import { run, type RunResult } from '../utils/run.js';

const ROOT = process.cwd();
const HERE = join(ROOT, 'test/fresh-app');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The named ```ts blocks (first line `// name.ts`) of a Markdown file, optionally only under one `## ` heading. */
function namedBlocks(doc: string, section?: string): Map<string, string> {
  let text = readFileSync(join(ROOT, doc), 'utf8');
  if (section !== undefined) {
    const start = text.indexOf(`\n## ${section}\n`);
    if (start < 0) throw new Error(`${doc} has no "## ${section}" section; this test applies the code blocks under it.`);
    const end = text.indexOf('\n## ', start + 1);
    text = text.slice(start, end < 0 ? undefined : end);
  }
  const blocks = new Map<string, string>();
  for (const [, body] of text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)) {
    const name = /^\/\/ ([\w.-]+\.ts)\n/.exec(body as string)?.[1];
    if (name !== undefined) blocks.set(name, body as string);
  }
  return blocks;
}

/** The ```ts blocks under one `## ` heading of a Markdown file, in order. */
function sectionBlocks(doc: string, section: string): string[] {
  const text = readFileSync(join(ROOT, doc), 'utf8');
  const start = text.indexOf(`\n## ${section}\n`);
  if (start < 0) throw new Error(`${doc} has no "## ${section}" section; this test applies the code blocks under it.`);
  const end = text.indexOf('\n## ', start + 1);
  return [...text.slice(start, end < 0 ? undefined : end).matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1] as string);
}

function block(blocks: Map<string, string>, name: string, where: string): string {
  const code = blocks.get(name);
  if (code === undefined) throw new Error(`${where} has no \`// ${name}\` code block; this test writes it into the fresh app.`);
  return code;
}

/**
 * The README's `app.module.ts` applied to the generated one as a user does it: the imports the
 * generated file lacks go after its own, and what the README's `imports: [...]` holds joins the
 * generated module's `imports` array, after `ObserveModule.forRoot(...)`.
 */
function applyModule(generated: string, readme: string): string {
  const lines = generated.split('\n');
  const lastImport = lines.map((l) => l.startsWith('import ')).lastIndexOf(true);
  const missing = readme.split('\n').filter((l) => l.startsWith('import ') && !lines.includes(l));
  lines.splice(lastImport + 1, 0, ...missing);
  const entries = /^ {2}imports: \[(.+)\],$/m.exec(readme)?.[1];
  if (entries === undefined) throw new Error("The README's app.module.ts has no one-line `imports: [...]`; update applyModule() in this test.");
  const withImports = lines.join('\n');
  const end = withImports.indexOf('\n  ],\n  controllers');
  if (end < 0) throw new Error("The generated app.module.ts has no multi-line `imports: [...]` followed by `controllers`; update applyModule() in this test.");
  return `${withImports.slice(0, end)}\n    ${entries},${withImports.slice(end)}`;
}

/**
 * docs/observe.md's "Set-up: one line" block applied to the generated app.module.ts: its imports the file
 * lacks, and its `createObserveModule(...)` line in place of the generated one.
 */
function applyObserve(generated: string, observe: string): string {
  const lines = generated.split('\n');
  const at = lines.findIndex((l) => /^export const \{ ObserveModule, ObserveInstrument \} = createObserveModule\(.*\);$/.test(l));
  const line = observe.split('\n').find((l) => l.startsWith('export const { ObserveModule, ObserveInstrument } = createObserveModule('));
  if (at < 0 || line === undefined) throw new Error("The generated app.module.ts or docs/observe.md's \"Set-up: one line\" block has no `export const { ObserveModule, ObserveInstrument } = createObserveModule(...)` line; update applyObserve() in this test.");
  lines[at] = line;
  const lastImport = lines.map((l) => l.startsWith('import ')).lastIndexOf(true);
  lines.splice(lastImport + 1, 0, ...observe.split('\n').filter((l) => l.startsWith('import ') && !lines.includes(l)));
  return lines.join('\n');
}

function failure(step: string, result: RunResult): string {
  return `${step} failed (exit code ${result.code}):\n${result.stdout.slice(-6000)}\n${result.stderr.slice(-6000)}`;
}

interface VitestReport {
  numFailedTests: number;
  testResults: { name: string; assertionResults: { fullName: string; status: string }[] }[];
}

/** `file > full test name` → status, from Vitest's JSON report. */
function outcomes(report: VitestReport, app: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const file of report.testResults) {
    for (const test of file.assertionResults) out[`${file.name.slice(app.length + 1)} > ${test.fullName}`] = test.status;
  }
  return out;
}

describe('the README quick start in an app generated by `nest new` (Nest CLI 12, ESM, Vitest, @nestjs/observe)', () => {
  let work: string;
  let app: string;
  let env: NodeJS.ProcessEnv;
  let collector: Server;
  let server: ChildProcess | undefined;

  beforeAll(async () => {
    const started = Date.now();
    // The npm registry first, so that an unreachable one says so instead of timing out in npm install.
    const ping = await run('npm', ['ping', '--fetch-retries=1'], ROOT, { timeout: 120_000 });
    if (ping.code !== 0) {
      throw new Error(`This test installs the fresh app's dependencies from the npm registry, which is not reachable (\`npm ping\` exited ${ping.code}). Check the network or the registry setting (npm config get registry):\n${ping.stderr}`);
    }
    if (!existsSync(join(ROOT, 'dist/esm/index.js')) || !existsSync(join(ROOT, 'dist/cjs/index.js'))) {
      throw new Error('dist/ is missing: run `npm run build` first (`npm test` does), then this test packs it.');
    }

    collector = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    // Without what `npm test` tells its script about this checkout (its package, its directory).
    env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_(package_|lifecycle_|config_local_prefix$)/.test(key) && key !== 'INIT_CWD'));
    Object.assign(env, {
      OBSERVE_ENDPOINT: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`,
      NO_UPDATE_NOTIFIER: '1',
      CI: '1',
    });

    work = mkdtempSync(join(tmpdir(), 'nestjs-context-fresh-app-'));
    app = join(work, 'app');
    cpSync(join(HERE, 'template'), app, { recursive: true });

    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT, { env });
    if (pack.code !== 0) throw new Error(failure('npm pack', pack));
    const tarball = join(work, (JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string }[])[0]!.filename);

    const install = await run('npm', ['install', '--no-audit', '--no-fund', tarball], app, { env, timeout: 600_000 });
    if (install.code !== 0) throw new Error(failure('npm install of the fresh app and the packed nestjs-context', install));
    console.log(`fresh app: packed and installed in ${Math.round((Date.now() - started) / 1000)}s`);

    // The quick start, from the README's blocks.
    const readme = namedBlocks('README.md', 'Quick start');
    writeFileSync(join(app, 'src/my-context.ts'), block(readme, 'my-context.ts', "README.md's Quick start"));
    writeFileSync(join(app, 'src/app.controller.ts'), block(readme, 'app.controller.ts', "README.md's Quick start"));
    const modulePath = join(app, 'src/app.module.ts');
    writeFileSync(modulePath, applyModule(readFileSync(modulePath, 'utf8'), block(readme, 'app.module.ts', "README.md's Quick start")));
    // The generated e2e test expects `Hello World!`; ours asks for ids (Observe's instrumentation on).
    cpSync(join(HERE, 'added/quick-start'), app, { recursive: true });

    // docs/testing.md: the Vitest rewrite of the generated unit test, and the unit recipe with its
    // one line for Vitest.
    const testing = namedBlocks('docs/testing.md');
    writeFileSync(join(app, 'src/app.controller.spec.ts'), block(testing, 'app.controller.spec.ts', 'docs/testing.md'));
    writeFileSync(join(app, 'src/orders.service.ts'), block(testing, 'orders.service.ts', 'docs/testing.md'));
    const recipe = block(testing, 'orders.service.spec.ts', 'docs/testing.md');
    if (!recipe.includes("from '@jest/globals';")) throw new Error("docs/testing.md's orders.service.spec.ts no longer imports from '@jest/globals'; docs/testing.md#with-vitest says which line to change.");
    writeFileSync(join(app, 'src/orders.service.spec.ts'), recipe.replace("from '@jest/globals';", "from 'vitest';"));
  }, 900_000);

  afterAll(async () => {
    server?.kill();
    await new Promise((resolve) => (collector ? collector.close(resolve) : resolve(undefined)));
    if (work?.startsWith(tmpdir())) rmSync(work, { recursive: true, force: true });
  });

  it('the quick start joins the generated AppModule beside ObserveModule, main.ts untouched', () => {
    const module = readFileSync(join(app, 'src/app.module.ts'), 'utf8');
    expect(module).toMatch(/ObserveModule\.forRoot\(\{[\s\S]*\}\),\n {4}ContextModule\.forRoot\(MyContext\),\n {2}\],/);
    expect(module).toContain("import { ContextModule } from 'nestjs-context';");
    expect(readFileSync(join(app, 'src/main.ts'), 'utf8')).toBe(readFileSync(join(HERE, 'template/src/main.ts'), 'utf8'));
  });

  it("type-checks with the app's tsconfig (sources and tests), lints clean with its oxlint and builds with `nest build`", async () => {
    const tsc = await run('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit'], app, { env });
    expect(tsc.code === 0 ? '' : failure('tsc', tsc)).toBe('');
    const lint = await run('npm', ['run', 'lint'], app, { env });
    expect(lint.code === 0 && lint.stdout.includes('Found 0 warnings and 0 errors') ? '' : failure('npm run lint (oxlint)', lint)).toBe('');
    const build = await run('npm', ['run', 'build'], app, { env });
    expect(build.code === 0 ? '' : failure('nest build', build)).toBe('');
    expect(existsSync(join(app, 'dist/main.js'))).toBe(true);
    expect(existsSync(join(app, 'dist/my-context.js'))).toBe(true);
  }, 300_000);

  it("`npm test` (Vitest): the docs' unit recipes pass", async () => {
    const result = await run('npm', ['test', '--', '--reporter=default', '--reporter=json', '--outputFile.json=unit.json'], app, { env });
    expect(result.code === 0 ? '' : failure('npm test', result)).toBe('');
    const report = JSON.parse(readFileSync(join(app, 'unit.json'), 'utf8')) as VitestReport;
    expect(outcomes(report, app)).toEqual({
      'src/app.controller.spec.ts > AppController answers with the correlation id of the context it runs in': 'passed',
      'src/orders.service.spec.ts > OrdersService sees the context object you give it': 'passed',
      'src/orders.service.spec.ts > OrdersService or one your class builds for a correlation id': 'passed',
      'src/orders.service.spec.ts > OrdersService request-scoped providers resolved inside runWith get the same context': 'passed',
      'src/orders.service.spec.ts > OrdersService outside runWith there is no context': 'passed',
    });
  }, 300_000);

  it('`npm run test:e2e` (Vitest, Observe instrumenting): an inbound id is adopted, and a fresh one differs per request', async () => {
    const result = await run('npm', ['run', 'test:e2e', '--', '--reporter=default', '--reporter=json', '--outputFile.json=e2e.json'], app, { env });
    expect(result.code === 0 ? '' : failure('npm run test:e2e', result)).toBe('');
    const report = JSON.parse(readFileSync(join(app, 'e2e.json'), 'utf8')) as VitestReport;
    const suite = 'the README quick start in an app from nest new (e2e)';
    expect(outcomes(report, app)).toEqual({
      [`test/app.e2e-spec.ts > ${suite} adopts an inbound x-request-id: the response header and the body carry it`]: 'passed',
      [`test/app.e2e-spec.ts > ${suite} makes a fresh id for a request without one, different each time`]: 'passed',
      [`test/app.e2e-spec.ts > ${suite} rejects an invalid inbound id and answers with a fresh one`]: 'passed',
    });
  }, 300_000);

  it("the built app (`node dist/main.js`, the generated main.ts) answers as the README's curl lines show", async () => {
    const port = await freePort();
    let output = '';
    server = spawn(process.execPath, ['dist/main.js'], { cwd: app, env: { ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<never>((_, reject) => server?.once('exit', (code) => reject(new Error(`dist/main.js exited (${code}) before it listened:\n${output}`))));
    // Nest logs "successfully started" at the end of init(), before the server listens: wait for
    // that line, then for the port to accept a connection (or the process to exit).
    await Promise.race([exited, new Promise<void>((resolve) => server?.stdout?.on('data', () => output.includes('Nest application successfully started') && resolve()))]);
    await Promise.race([exited, accepting(port, 20_000)]);

    const get = async (headers: Record<string, string> = {}) => {
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers });
      return { status: res.status, id: res.headers.get('x-request-id'), body: await res.text() };
    };
    expect(await get({ 'x-request-id': 'my-id-1' })).toEqual({ status: 200, id: 'my-id-1', body: 'Hello, World! my-id-1' });
    const first = await get();
    const second = await get();
    for (const res of [first, second]) {
      expect(res.id).toMatch(UUID);
      expect(res).toEqual({ status: 200, id: res.id, body: `Hello, World! ${res.id}` });
    }
    expect(first.id).not.toBe(second.id);
  }, 120_000);

  it("with docs/observe.md's @nestjs/observe line, Observe's trace id is the correlation id (tsc, oxlint, Vitest e2e)", async () => {
    const [observeBlock] = sectionBlocks('docs/observe.md', 'Set-up: one line');
    if (observeBlock === undefined) throw new Error('docs/observe.md\'s "Set-up: one line" section has no ts block; this test applies it.');
    const modulePath = join(app, 'src/app.module.ts');
    writeFileSync(modulePath, applyObserve(readFileSync(modulePath, 'utf8'), observeBlock));
    expect(readFileSync(modulePath, 'utf8')).toContain('createObserveModule(contextObserveOptions())');
    cpSync(join(HERE, 'added/observe'), app, { recursive: true });
    const tsc = await run('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit'], app, { env });
    expect(tsc.code === 0 ? '' : failure('tsc', tsc)).toBe('');
    const lint = await run('npm', ['run', 'lint'], app, { env });
    expect(lint.code === 0 && lint.stdout.includes('Found 0 warnings and 0 errors') ? '' : failure('npm run lint (oxlint)', lint)).toBe('');
    const result = await run('npm', ['run', 'test:e2e', '--', '--reporter=default', '--reporter=json', '--outputFile.json=observe.json'], app, { env });
    expect(result.code === 0 ? '' : failure('npm run test:e2e', result)).toBe('');
    const report = JSON.parse(readFileSync(join(app, 'observe.json'), 'utf8')) as VitestReport;
    const quickStart = 'the README quick start in an app from nest new (e2e)';
    const observe = 'the README quick start with its @nestjs/observe line (e2e)';
    expect(outcomes(report, app)).toEqual({
      [`test/app.e2e-spec.ts > ${quickStart} adopts an inbound x-request-id: the response header and the body carry it`]: 'passed',
      [`test/app.e2e-spec.ts > ${quickStart} makes a fresh id for a request without one, different each time`]: 'passed',
      [`test/app.e2e-spec.ts > ${quickStart} rejects an invalid inbound id and answers with a fresh one`]: 'passed',
      [`test/observe.e2e-spec.ts > ${observe} an inbound x-request-id is the correlation id and Observe's trace id`]: 'passed',
      [`test/observe.e2e-spec.ts > ${observe} without one, the fresh id is the correlation id and Observe's trace id, different each time`]: 'passed',
    });
  }, 300_000);
});

/** Resolves once 127.0.0.1:`port` accepts a connection; rejects after `ms` without one. */
async function accepting(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Nothing accepted connections on 127.0.0.1:${port} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
