import { join } from 'node:path';
import { removeTree, runNode, transpile } from './child.js';

/**
 * Each integration imports its peer statically, so loading it without the peer fails at once with
 * Node's own error naming the missing package (ESM and CommonJS), and the root entry never loads it.
 */
describe.each([
  ['ESM', false],
  ['CommonJS', true],
] as const)('an integration loaded without its peer dependency (%s)', (_kind, commonjs) => {
  let out: string;
  beforeAll(() => {
    out = transpile({ commonjs, without: ['pino', 'winston', 'pino-http', 'nestjs-pino', 'nest-winston', 'logform'] });
  });
  afterAll(() => removeTree(out));

  const load = (path: string) =>
    runNode(out, commonjs ? ['-e', `require(${JSON.stringify(join(out, path))})`] : ['--input-type=module', '-e', `await import(${JSON.stringify(join(out, path))})`]);

  it.each([
    ['src/integrations/pino/index.js', 'pino'],
    ['src/integrations/winston/index.js', 'winston'],
  ])('%s fails naming %s', async (path, peer) => {
    const { code, stderr } = await load(path);
    expect(code).not.toBe(0);
    expect(stderr).toMatch(commonjs ? new RegExp(`Cannot find module '${peer}'`) : new RegExp(`Cannot find package '${peer}' imported from .*integrations/${peer}/index\\.js`));
  });

  it('with every package installed, each integration loads', async () => {
    const full = transpile({ commonjs });
    for (const name of ['pino', 'winston', 'logger']) {
      const path = join(full, `src/integrations/${name}/index.js`);
      const { code, stderr } = await runNode(full, commonjs ? ['-e', `require(${JSON.stringify(path)})`] : ['--input-type=module', '-e', `await import(${JSON.stringify(path)})`]);
      expect([name, code, stderr]).toEqual([name, 0, '']);
    }
    removeTree(full);
  });

  it('the logger integration needs no extra package', async () => {
    const { code, stderr } = await load('src/integrations/logger/index.js');
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});
