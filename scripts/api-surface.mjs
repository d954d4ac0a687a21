// Lists what each entry point of the package exports (runtime values and types), with whether each
// exported declaration has a doc comment. `node scripts/api-surface.mjs` prints it; the API test uses it.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** @returns {{ entry: string, subpath: string, values: string[], types: string[], undocumented: string[] }[]} */
export function listExports(root = fileURLToPath(new URL('..', import.meta.url))) {
  const entries = [
    ['.', `${root}/src/index.ts`],
    ...readdirSync(`${root}/src/integrations`, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => [`./${d.name}`, `${root}/src/integrations/${d.name}/index.ts`]),
  ];
  const program = ts.createProgram(
    entries.map(([, file]) => file),
    { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, experimentalDecorators: true, strict: true, skipLibCheck: true },
  );
  const checker = program.getTypeChecker();
  return entries.map(([subpath, file]) => {
    const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)));
    const values = [];
    const types = [];
    const undocumented = [];
    for (const symbol of exports) {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      (target.flags & ts.SymbolFlags.Value ? values : types).push(symbol.name);
      const documented = (target.declarations ?? []).some((d) => ts.getJSDocCommentsAndTags(d).length > 0)
        || ts.displayPartsToString(target.getDocumentationComment(checker)).trim() !== '';
      if (!documented) undocumented.push(symbol.name);
    }
    return { entry: file.slice(root.length + 1), subpath, values, types, undocumented };
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let total = 0;
  for (const { subpath, values, types, undocumented } of listExports()) {
    total += values.length + types.length;
    console.log(`${subpath}: ${values.length} values, ${types.length} types`);
    console.log(`  values: ${values.join(', ')}`);
    if (types.length > 0) console.log(`  types:  ${types.join(', ')}`);
    if (undocumented.length > 0) console.log(`  UNDOCUMENTED: ${undocumented.join(', ')}`);
  }
  console.log(`total: ${total} exported names`);
}
