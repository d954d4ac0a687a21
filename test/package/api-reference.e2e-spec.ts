/**
 * The API reference (`npm run docs:api`, TypeDoc) is generated from the doc comments. This runs
 * TypeDoc's conversion and validation with the project's `typedoc.json` — no HTML is rendered — and
 * fails on any error or warning: an exported symbol or member without a doc comment, a type the
 * public API references but no entry point exports, a `{@link}` that does not resolve. It also
 * checks that the reference has one module per entry of package.json's `exports`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Application, Logger, LogLevel, TSConfigReader, TypeDocReader } from 'typedoc';

const ROOT = process.cwd();
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
/** The module names the reference must have: `nestjs-context` and `nestjs-context/<subpath>`. */
const MODULES = Object.keys(pkg.exports)
  .filter((key) => key !== './package.json')
  .map((key) => (key === '.' ? 'nestjs-context' : `nestjs-context/${key.slice(2)}`))
  .sort();

describe('the API reference (TypeDoc)', () => {
  let messages: string[];
  let logger: Logger;
  let modules: string[];

  beforeAll(async () => {
    messages = [];
    const app = await Application.bootstrapWithPlugins({ options: join(ROOT, 'typedoc.json') }, [new TypeDocReader(), new TSConfigReader()]);
    logger = app.logger;
    // Collect the messages instead of printing them; the base class keeps the counts.
    logger.log = (message: string, level: LogLevel) => {
      if (level >= LogLevel.Warn) messages.push(message.replace(/\x1b\[[\d;]*m/g, ''));
      Logger.prototype.log.call(logger, message, level);
    };
    const project = await app.convert();
    if (project === undefined) throw new Error(`TypeDoc could not convert the project:\n${messages.join('\n')}`);
    app.validate(project);
    modules = (project.children ?? []).map((child) => child.name).sort();
  }, 60_000);

  it('has every exported symbol and member documented and every link resolved', () => {
    expect(messages).toEqual([]);
    expect(logger.errorCount).toBe(0);
    expect(logger.warningCount).toBe(0);
  });

  it('has one module per entry point of package.json, named after its import path', () => {
    expect(modules).toEqual(MODULES);
  });
});
