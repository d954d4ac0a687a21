import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The testing recipes of docs/testing.md are run exactly as shown: each named block there is a
 * file of test/docs/testing/ (which Jest runs: `orders.service.spec.ts`, `app.e2e-spec.ts`), and
 * this keeps the two equal. (test/docs/code-blocks.e2e-spec.ts type-checks the blocks.)
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const RECIPES = ['orders.service.ts', 'orders.service.spec.ts', 'app.module.ts', 'app.e2e-spec.ts'];

function namedBlocks(doc: string): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const [, body] of readFileSync(join(ROOT, doc), 'utf8').matchAll(/^```ts\n([\s\S]*?)^```$/gm)) {
    const name = /^\/\/ ([\w.-]+\.ts)\n/.exec(body as string)?.[1];
    if (name !== undefined) blocks.set(name, body as string);
  }
  return blocks;
}

describe('docs/testing.md recipes', () => {
  const blocks = namedBlocks('docs/testing.md');

  it.each(RECIPES)('%s is shown exactly as test/docs/testing/ runs it', (name) => {
    expect(blocks.get(name)).toBe(readFileSync(join(ROOT, 'test/docs/testing', name), 'utf8'));
  });
});
