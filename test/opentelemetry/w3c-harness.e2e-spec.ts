import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { removeTree, transpile } from '../logging/child.js';
import type { SpanSummary } from '../conformance/otel.js';
import { freePort } from '../utils/brokers.js';

/**
 * The official W3C Trace Context harness (w3c/trace-context `test/`, Python 3 with aiohttp) against
 * the conformance service, as it is and in its OpenTelemetry interop mode (`CONFORMANCE_OTEL=1`): the service runs
 * in its own Node process, as `npm run conformance` runs it, with the OTel SDK started before Nest
 * (http and undici instrumentations, OTel's W3C propagator composed with ContextPropagator), so the
 * callbacks' `traceparent` / `tracestate` are written by OTel's propagation. All 41 Level 2 tests at
 * STRICT_LEVEL=2 must pass, on Express and on Fastify.
 *
 * The harness is not part of the repository, so this file is not part of `npm test`: `npm run
 * test:w3c` runs it (CI does, with the harness beside the checkout). `W3C_HARNESS` names the
 * harness's folder (default `../shared/w3c-harness` beside the checkout); `W3C_HARNESS_PYTHON` the
 * interpreter (default: the first of `python3`, `/usr/bin/python3` that has aiohttp).
 */

const HARNESS = resolve(process.env.W3C_HARNESS ?? join(process.cwd(), '..', 'shared', 'w3c-harness'));

function run(cmd: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { ...options, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      done({ code, output: `${stdout}${stderr}` });
    });
  });
}

/** An interpreter that can run the harness, or an error saying what is missing and how to get it. */
async function findPython(): Promise<string> {
  const candidates = process.env.W3C_HARNESS_PYTHON !== undefined ? [process.env.W3C_HARNESS_PYTHON] : ['python3', '/usr/bin/python3'];
  for (const python of candidates) {
    if ((await run(python, ['-c', 'import aiohttp'])).code === 0) return python;
  }
  throw new Error(
    `The W3C harness needs Python 3 with the aiohttp package, and none of ${candidates.join(', ')} has it. ` +
      'Install it (Debian/Ubuntu: apt-get install python3-aiohttp; else pip install aiohttp), or set W3C_HARNESS_PYTHON to an interpreter that has it.',
  );
}

interface Service {
  readonly url: string;
  stop(): Promise<void>;
}

/** Starts `main.js` of the transpiled tree (with OTel on or off) on a free port; resolves once it listens. */
function startService(out: string, platform: string, otel: boolean): Promise<Service> {
  const child: ChildProcess = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(out, 'test/conformance/main.js')], {
    cwd: out,
    env: { ...process.env, CONFORMANCE_OTEL: otel ? '1' : '0', PORT: '0', PLATFORM: platform },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((done, fail) => {
    child.on('exit', (code) => fail(new Error(`The conformance service exited (${code}) before it listened:\n${output}`)));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const url = /POST (http:\/\/127\.0\.0\.1:\d+\/test)/.exec(output)?.[1];
      if (url === undefined) return;
      child.removeAllListeners('exit');
      done({
        url,
        stop: () =>
          new Promise<void>((exited) => {
            if (child.exitCode !== null) return exited();
            child.on('exit', () => exited());
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

describe('the official W3C harness, Level 2 strict, against the conformance service', () => {
  let out: string | undefined;
  let python: string;

  beforeAll(async () => {
    if (!existsSync(join(HARNESS, 'test.py'))) {
      throw new Error(
        `The W3C trace-context harness is not at ${HARNESS} (no test.py). Check out https://github.com/w3c/trace-context ` +
          'and set W3C_HARNESS to its test/ folder.',
      );
    }
    python = await findPython();
    out = transpile({ dirs: ['test/conformance'] });
  }, 120_000);

  afterAll(() => removeTree(out));

  /** Runs the harness against `url`; expects all 41 Level 2 tests to pass. */
  async function harness(url: string): Promise<void> {
    const harnessPort = String(await freePort());
    const env = { ...process.env, STRICT_LEVEL: '2', SPEC_LEVEL: '2', HARNESS_PORT: harnessPort, HARNESS_BIND_PORT: harnessPort };
    const { code, output } = await run(python, ['test.py', url], { cwd: HARNESS, env });
    const failures = output.match(/^(?:FAIL|ERROR): .*$/gm) ?? [];
    expect({ code, failures, summary: /Ran \d+ tests/.exec(output)?.[0], ok: /\nOK\s*$/.test(output) }).toEqual({ code: 0, failures: [], summary: 'Ran 41 tests', ok: true });
  }

  it.each(['express', 'fastify'])('passes all 41 tests on %s', async (platform) => {
    const service = await startService(out!, platform, false);
    try {
      await harness(service.url);
    } finally {
      await service.stop();
    }
  }, 120_000);

  it.each(['express', 'fastify'])('passes all 41 tests on %s with OpenTelemetry on, the callbacks traced by OTel', async (platform) => {
    const service = await startService(out!, platform, true);
    try {
      await harness(service.url);
      // OTel really traced them: a server span per request to /test, a client span per callback.
      const spans = (await (await fetch(service.url.replace(/\/test$/, '/otel/spans'))).json()) as SpanSummary[];
      const servers = spans.filter((s) => s.kind === 'server' && s.name.startsWith('POST'));
      const clients = spans.filter((s) => s.kind === 'client');
      expect(servers.length).toBeGreaterThanOrEqual(41);
      expect(clients.length).toBeGreaterThanOrEqual(41);
      const serverIds = new Set(servers.map((s) => s.spanId));
      expect(clients.every((s) => s.parentSpanId !== undefined && serverIds.has(s.parentSpanId))).toBe(true);
    } finally {
      await service.stop();
    }
  }, 120_000);
});
