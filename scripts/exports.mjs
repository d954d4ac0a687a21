// Keeps package.json's "exports" and "typesVersions" in step with src/integrations/*: one subpath
// per integration folder (`nestjs-context/<folder>`), ESM and CommonJS, types first.
// `node scripts/exports.mjs` rewrites them; `--check` fails (exit 1) when they are out of step.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const pkgPath = new URL('../package.json', import.meta.url);
const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));
const names = readdirSync(new URL('../src/integrations/', import.meta.url), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

/** The conditional export of one entry file (path under dist/<format>/, without extension). */
const entry = (file) => ({
  import: { types: `./dist/esm/${file}.d.ts`, default: `./dist/esm/${file}.js` },
  require: { types: `./dist/cjs/${file}.d.ts`, default: `./dist/cjs/${file}.js` },
});

const exportsMap = { '.': entry('index') };
for (const name of names) exportsMap[`./${name}`] = entry(`integrations/${name}/index`);
exportsMap['./package.json'] = './package.json';
const typesVersions = { '*': Object.fromEntries(names.map((n) => [n, [`./dist/cjs/integrations/${n}/index.d.ts`]])) };

const same = JSON.stringify(pkg.exports) === JSON.stringify(exportsMap) && JSON.stringify(pkg.typesVersions) === JSON.stringify(typesVersions);
if (process.argv.includes('--check')) {
  if (!same) {
    console.error('package.json "exports"/"typesVersions" do not match src/integrations/*. Run: node scripts/exports.mjs');
    process.exit(1);
  }
} else if (!same) {
  pkg.exports = exportsMap;
  pkg.typesVersions = typesVersions;
  writeFileSync(pkgPath, JSON.stringify(pkg, null, 2) + '\n');
  console.log(`exports: ., ${names.map((n) => `./${n}`).join(', ')}`);
}
