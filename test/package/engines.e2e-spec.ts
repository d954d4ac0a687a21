import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * `engines.node` of package.json names the Node releases the package supports; on each of them the
 * whole dependency tree (runtime, optional peers used in tests, development tools) must install
 * without an engine warning. Checked against the lowest release of every supported line, from the
 * lock file (what `npm ci` installs).
 */
const root = process.cwd();
const require = createRequire(path.join(root, 'package.json'));
const semver = require('semver') as {
  satisfies(version: string, range: string, options?: { includePrerelease?: boolean }): boolean;
  minVersion(range: string): { version: string } | null;
};

interface LockPackage {
  version?: string;
  engines?: { node?: unknown };
}

const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };

/** The lowest release of each `||` alternative of the engines range (e.g. 22.15.0 and 24.11.0). */
const lowest = pkg.engines.node.split('||').map((part) => {
  const min = semver.minVersion(part.trim());
  if (min === null) throw new Error(`engines.node alternative "${part}" has no lowest version`);
  return min.version;
});

describe('engines', () => {
  it('names Node 22 and 24 and leaves out 20, which reached end of life in April 2026', () => {
    expect(lowest.map((v) => Number(v.split('.')[0]))).toEqual([22, 24]);
    expect(semver.satisfies('20.19.0', pkg.engines.node)).toBe(false);
    expect(semver.satisfies('23.11.0', pkg.engines.node)).toBe(false);
    expect(semver.satisfies('26.0.0', pkg.engines.node)).toBe(true);
  });

  it('the lock file root carries the same range (npm install leaves a fresh clone unchanged)', () => {
    expect(lock.packages['']?.engines?.node).toBe(pkg.engines.node);
  });

  it.each(lowest)('on Node %s, no package of the installed tree asks for another Node', (version) => {
    const refused = Object.entries(lock.packages)
      .filter(([name, info]) => name !== '' && typeof info.engines?.node === 'string')
      .filter(([, info]) => !semver.satisfies(version, info.engines?.node as string, { includePrerelease: true }))
      .map(([name, info]) => `${name.replace(/^.*node_modules\//, '')}@${info.version} (${String(info.engines?.node)})`);
    expect(refused).toEqual([]);
  });
});
