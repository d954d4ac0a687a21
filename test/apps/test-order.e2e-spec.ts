/**
 * One runtime per app (issue #13, deliverable 6): an e2e suite whose test files create apps in both
 * orders gives the same results. The suite is test/apps/order-fixture/ — an app with the schedule and
 * event-emitter integrations, a plain app whose listeners must get no context, an HTTP app with
 * another context class and options — run by Jest in a child process, in one worker (as a user's
 * `--runInBand` e2e run shares one process between files), once with the files forward and once in
 * reverse. Both runs must pass, with the same status for every test and the same observations (what
 * each test saw of the context; fresh ids as `'fresh'`).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { run } from '../utils/run.js';

const ROOT = process.cwd();
const FILES = ['integrations.e2e-spec.ts', 'other-class.e2e-spec.ts', 'plain.e2e-spec.ts'];

interface JestJson {
  success: boolean;
  numTotalTests: number;
  numFailedTests: number;
  testResults: { name: string; status: string; assertionResults: { fullName: string; status: string }[] }[];
}

interface Observation {
  file: string;
  test: string;
  observed: unknown;
}

interface OrderRun {
  code: number;
  output: string;
  json: JestJson;
  /** The files in the order they ran (their observations' order). */
  ranFiles: string[];
  /** `file › test name: status`, sorted. */
  results: string[];
  /** The observations, sorted by file and test. */
  observations: Observation[];
}

/** Runs the fixture with Jest in one worker, its files in `order`. */
async function runFixture(order: 'forward' | 'reverse', dir: string): Promise<OrderRun> {
  const jsonFile = join(dir, `${order}.json`);
  const log = join(dir, `${order}.log`);
  const { code, stdout, stderr } = await run(
    process.execPath,
    [
      '--experimental-vm-modules',
      '--disable-warning=ExperimentalWarning',
      join(ROOT, 'node_modules/jest/bin/jest.js'),
      '--config',
      join(ROOT, 'test/apps/order-fixture/jest.config.js'),
      '--runInBand',
      '--ci',
      '--json',
      `--outputFile=${jsonFile}`,
    ],
    ROOT,
    { env: { ...process.env, ORDER_FIXTURE_ORDER: order, ORDER_FIXTURE_LOG: log }, timeout: 180_000 },
  );
  const json = JSON.parse(readFileSync(jsonFile, 'utf8')) as JestJson;
  const lines = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Observation);
  const ranFiles = [...new Set(lines.map((o) => o.file))];
  const results = json.testResults
    .flatMap((file) => file.assertionResults.map((a) => `${basename(file.name)} › ${a.fullName}: ${a.status}`))
    .sort();
  const observations = [...lines].sort((a, b) => `${a.file} ${a.test}`.localeCompare(`${b.file} ${b.test}`));
  return { code, output: `${stdout}\n${stderr}`, json, ranFiles, results, observations };
}

describe('an e2e suite whose files create apps in both orders', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nestjs-context-order-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('passes forward and in reverse, in one worker, with the same result and observations for every test', async () => {
    const forward = await runFixture('forward', dir);
    const reverse = await runFixture('reverse', dir);

    for (const one of [forward, reverse]) {
      expect({ code: one.code, failed: one.json.numFailedTests, output: one.code === 0 ? '' : one.output }).toEqual({ code: 0, failed: 0, output: '' });
      expect(one.json.numTotalTests).toBe(8);
    }
    // The files really ran in the two orders.
    expect(forward.ranFiles).toEqual(FILES);
    expect(reverse.ranFiles).toEqual([...FILES].reverse());

    expect(reverse.results).toEqual(forward.results);
    expect(forward.results.every((line) => line.endsWith(': passed'))).toBe(true);
    expect(reverse.observations).toEqual(forward.observations);
    expect(forward.observations).toHaveLength(8);
  }, 240_000);
});
