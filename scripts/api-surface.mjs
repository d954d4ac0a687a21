import ts from 'typescript';
import { readdirSync } from 'node:fs';
const entries = ['src/index.ts', ...readdirSync('src/integrations').map((d) => `src/integrations/${d}/index.ts`)];
const program = ts.createProgram(entries, { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, experimentalDecorators: true, strict: true });
const checker = program.getTypeChecker();
let total = 0;
for (const e of entries) {
  const sf = program.getSourceFile(e);
  const sym = checker.getSymbolAtLocation(sf);
  const exps = checker.getExportsOfModule(sym);
  const values = [], types = [];
  for (const x of exps) {
    const t = x.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(x) : x;
    (t.flags & ts.SymbolFlags.Value ? values : types).push(x.name);
  }
  total += exps.length;
  console.log(`${e}: ${values.length} values, ${types.length} types\n  values: ${values.join(', ')}\n  types: ${types.join(', ')}`);
}
console.log('total', total);
