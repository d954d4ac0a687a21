import 'reflect-metadata';
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import fc from 'fast-check';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { prismaSqlCommenter, SqlCommenter } from '../../src/integrations/sql/index.js';
import { storage } from '../../src/record/context-record.js';
import { commentOf, expectedValue, INBOUND_TRACEPARENT, TRACE_ID, traceOf } from './helpers.js';

/** The comment itself, without a database: format, encoding, options, and what is never written. */

class Ctx {
  correlationId: string;
  tenant?: unknown;
  route?: string;
  secret = 'undeclared';
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

let app: INestApplicationContext;
let service: ContextService<Ctx>;

beforeAll(async () => {
  @Module({ imports: [ContextModule.forRoot(Ctx, { baggage: { fields: ['tenant'] }, correlationId: { validate: () => true } })] })
  class AppModule {}
  app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  service = app.get<ContextService<Ctx>>(ContextService);
});
afterAll(() => app.close());

function inContext<R>(fn: () => R, id = 'req-1'): R {
  return service.run(fn, { headers: { 'x-request-id': id, traceparent: INBOUND_TRACEPARENT, tracestate: 'congo=t61rcWkgMzE' }, trusted: true });
}

/** The exact alphabet a comment may hold. */
const WELL_FORMED = /^\/\*[A-Za-z0-9_.~%-]+='[A-Za-z0-9_.~%-]*'(,[A-Za-z0-9_.~%-]+='[A-Za-z0-9_.~%-]*')*\*\/$/;

describe('SqlCommenter', () => {
  it('writes sorted keys with quoted, URL-encoded values', () => {
    const commenter = new SqlCommenter({ fields: { tenant: 'tenant', route: 'a_route' }, tracestate: true });
    const comment = inContext(() => {
      service.get().tenant = 'acme corp';
      service.get().route = '/orders/:id';
      return commenter.comment();
    });
    expect(comment).toMatch(
      /^\/\*a_route='%2Forders%2F%3Aid',correlation_id='req-1',tenant='acme%20corp',traceparent='00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01',tracestate='congo%3Dt61rcWkgMzE'\*\/$/,
    );
  });

  it('appends to the statement, before a trailing semicolon, and leaves commented statements and everything outside a context alone', () => {
    const commenter = new SqlCommenter({ traceparent: false });
    expect(commenter.apply('SELECT 1')).toBe('SELECT 1');
    expect(commenter.comment()).toBe('');
    inContext(() => {
      expect(commenter.apply('SELECT 1')).toBe("SELECT 1 /*correlation_id='req-1'*/");
      expect(commenter.apply('SELECT 1 ;\n')).toBe("SELECT 1 /*correlation_id='req-1'*/ ;\n");
      expect(commenter.apply('SELECT 1 /* mine */')).toBe('SELECT 1 /* mine */');
      expect(commenter.apply('SELECT 1 -- mine')).toBe('SELECT 1 -- mine');
      expect(commenter.apply('')).toBe('');
      // Applying twice comments once.
      expect(commenter.apply(commenter.apply('SELECT 2'))).toBe("SELECT 2 /*correlation_id='req-1'*/");
    });
  });

  it('remembering the last statement without a comment never changes what a statement gets', () => {
    // apply() skips the search for a comment when the statement is the last one it found without:
    // any sequence of texts (repeated, rebuilt equal, commented, longer than what it remembers)
    // comes out as if each were looked at afresh.
    const commenter = new SqlCommenter({ traceparent: false });
    const long = `SELECT '${'x'.repeat(5000)}'`;
    const texts = ['SELECT 1', 'SELECT 1 /* mine */', 'SELECT 1 -- mine', 'SELECT 2', long, `${long} /* mine */`, `${long}--`, 'SELECT 1;'];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(texts.length - 1), fc.boolean()), { maxLength: 30 }), (picks) => {
        inContext(() => {
          for (const [index, rebuilt] of picks) {
            const text = texts[index] as string;
            // The same string object, or an equal one built anew.
            const sql = rebuilt ? text.split('').join('') : text;
            const commented = !sql.includes('/*') && !sql.includes('--');
            const end = sql.endsWith(';') ? sql.length - 1 : sql.length;
            expect(commenter.apply(sql)).toBe(commented ? `${sql.slice(0, end)} /*correlation_id='req-1'*/${sql.slice(end)}` : sql);
          }
        });
        // Outside a context nothing is written, whatever was remembered inside one.
        for (const text of texts) expect(commenter.apply(text)).toBe(text);
      }),
    );
  });

  it('a fresh parent id per statement, the trace id of the request', () => {
    const commenter = new SqlCommenter();
    const parents = inContext(() => Array.from({ length: 50 }, () => traceOf(commentOf(commenter.apply('SELECT 1')).traceparent)));
    expect(new Set(parents.map((p) => p.traceId))).toEqual(new Set([TRACE_ID]));
    expect(new Set(parents.map((p) => p.parentId)).size).toBe(50);
  });

  it('follows the declared fields as they change between a request’s statements, and two commenters on one request each write their own', () => {
    const commenter = new SqlCommenter({ fields: ['tenant', 'route'] });
    const other = new SqlCommenter({ fields: { tenant: 'org' }, correlationIdKey: 'request' });
    const seen = inContext(() => {
      const context = service.get();
      const rows: Record<string, string>[] = [];
      for (const [tenant, route] of [['a', '/x'], ['a', '/x'], ['b', '/x'], [7, '/x'], [7, undefined], ['a', '/x']] as const) {
        context.tenant = tenant;
        context.route = route;
        rows.push(commentOf(commenter.apply('SELECT 1')), commentOf(other.apply('SELECT 1')));
      }
      return rows;
    });
    const mine = seen.filter((_, i) => i % 2 === 0);
    const theirs = seen.filter((_, i) => i % 2 === 1);
    expect(mine.map((c) => [c.tenant, c.route])).toEqual([['a', '/x'], ['a', '/x'], ['b', '/x'], ['7', '/x'], ['7', undefined], ['a', '/x']]);
    expect(theirs.map((c) => c.org)).toEqual(['a', 'a', 'b', '7', '7', 'a']);
    for (const c of mine) expect(Object.keys(c).sort()).toEqual(c.route === undefined ? ['correlation_id', 'tenant', 'traceparent'] : ['correlation_id', 'route', 'tenant', 'traceparent']);
    for (const c of theirs) expect(Object.keys(c).sort()).toEqual(['org', 'request', 'traceparent']);
    expect(new Set(seen.map((c) => c.traceparent)).size).toBe(seen.length);
    expect(new Set(seen.map((c) => traceOf(c.traceparent).traceId))).toEqual(new Set([TRACE_ID]));
    // A second request reusing the commenters gets its own id, never the first one's cached comment.
    expect(inContext(() => commentOf(commenter.apply('SELECT 1')).correlation_id, 'req-2')).toBe('req-2');
  });

  it('keeps one comment per request while the declared fields keep their values, and builds a new one when one changes', () => {
    const commenter = new SqlCommenter({ fields: ['tenant', 'route'] });
    const kept = inContext(() => {
      const context = service.get();
      context.tenant = 'a';
      context.route = '/x';
      const slot = () => storage.getStore()?.sqlComment;
      const texts = [commenter.apply('SELECT 1')];
      const first = slot();
      texts.push(commenter.apply('SELECT 2'));
      const same = slot() === first;
      context.route = '/y';
      texts.push(commenter.apply('SELECT 3'));
      return { first, same, rebuilt: slot() !== first && slot() !== undefined, texts };
    });
    expect(kept.first).toBeDefined();
    expect(kept.same).toBe(true);
    expect(kept.rebuilt).toBe(true);
    expect(kept.texts.map((t) => commentOf(t).route)).toEqual(['/x', '/x', '/y']);
  });

  it('writes declared fields only: strings, numbers, booleans, bigints; never objects, never undeclared fields or baggage', () => {
    const commenter = new SqlCommenter({ fields: ['tenant'] });
    const read = (value: unknown) =>
      inContext(() => {
        service.get().tenant = value;
        return commentOf(commenter.apply('SELECT 1'));
      });
    expect(read(42).tenant).toBe('42');
    expect(read(true).tenant).toBe('true');
    expect(read(10n).tenant).toBe('10');
    expect(read({ toString: () => 'leak' }).tenant).toBeUndefined();
    expect(read(undefined).tenant).toBeUndefined();
    expect(Object.keys(read('x')).sort()).toEqual(['correlation_id', 'tenant', 'traceparent']);
  });

  it('a context whose construction or fields fail still runs the statement, with the comment left out', () => {
    const commenter = new SqlCommenter({ fields: ['boom'] });
    const text = inContext(() => {
      Object.defineProperty(service.get(), 'boom', {
        get() {
          throw new Error('getter fails');
        },
      });
      return commenter.apply('SELECT 1');
    });
    expect(text).toBe('SELECT 1');
  });

  it('any value (quotes, */, newlines, NUL, unicode, lone surrogates) stays inside the comment and decodes back, capped', () => {
    const commenter = new SqlCommenter({ fields: ['tenant'], maxValueLength: 40, traceparent: false });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ maxLength: 80 }), fc.constantFrom("'*/--\u0000\n", '/*!', '\ud800x', 'x\udc00')), (value) => {
        const statement = inContext(() => {
          service.get().tenant = value;
          return commenter.apply('SELECT 1');
        });
        const comment = statement.slice('SELECT 1 '.length);
        const expected = expectedValue(value, 40);
        if (expected === '') {
          expect(comment).toBe("/*correlation_id='req-1'*/");
          return;
        }
        expect(comment).toMatch(WELL_FORMED);
        expect(commentOf(statement).tenant).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('correlation ids of any form are encoded the same way', () => {
    const commenter = new SqlCommenter({ traceparent: false });
    fc.assert(
      fc.property(fc.stringMatching(/^[\x21-\x7e]{1,64}$/), (id) => {
        const statement = service.run(() => commenter.apply('SELECT 1'), { correlationId: id });
        expect(statement.slice('SELECT 1 '.length)).toMatch(WELL_FORMED);
        expect(commentOf(statement).correlation_id).toBe(id);
      }),
      { numRuns: 500 },
    );
  });

  it('rejects unusable options with a message that says how to fix them', () => {
    expect(() => new SqlCommenter({ maxValueLength: 0 })).toThrow(/maxValueLength must be a positive integer, got 0/);
    expect(() => new SqlCommenter({ prepared: 'always' as never })).toThrow(/prepared must be 'skip' or 'comment'/);
    expect(() => new SqlCommenter({ fields: { tenant: 'traceparent' } })).toThrow(/comment key traceparent is used twice/);
    expect(() => new SqlCommenter({ fields: ['__proto__'] })).toThrow(/unusable context field/);
    expect(() => new SqlCommenter({ correlationIdKey: '' })).toThrow(/correlationIdKey must be a non-empty string/);
    expect(() => new SqlCommenter({ traceparent: 'yes' as never })).toThrow(/traceparent must be a boolean/);
  });
});

describe('prismaSqlCommenter (Prisma 7 `comments` plugin)', () => {
  it('returns the pairs unencoded for Prisma to format: correlation id, a fresh traceparent per statement, declared fields only', () => {
    const plugin = prismaSqlCommenter({ fields: { tenant: 'tenant' }, maxValueLength: 8 });
    const [first, second] = inContext(() => {
      service.get().tenant = "o'reilly */ \ud800";
      return [plugin({ query: { type: 'single' } }), plugin({ query: { type: 'single' } })];
    });
    expect(Object.keys(first!).sort()).toEqual(['correlation_id', 'tenant', 'traceparent']);
    expect(first!.correlation_id).toBe('req-1');
    expect(first!.tenant).toBe("o'reilly");
    expect(traceOf(first!.traceparent).traceId).toBe(TRACE_ID);
    expect(traceOf(second!.traceparent).parentId).not.toBe(traceOf(first!.traceparent).parentId);
  });

  it('caps values and repairs lone surrogates (Prisma’s encoder would throw on them)', () => {
    const plugin = prismaSqlCommenter({ fields: ['tenant'], maxValueLength: 4 });
    const tags = inContext(() => {
      service.get().tenant = 'a\udc00b\ud83d\ude00';
      return plugin({ query: { type: 'single' } });
    });
    expect(tags.tenant).toBe('a\ufffdb');
    expect(() => encodeURIComponent(tags.tenant!)).not.toThrow();
  });

  it('adds nothing outside a context, and nothing to statements Prisma compacted from several queries', () => {
    const plugin = prismaSqlCommenter();
    expect(plugin({ query: { type: 'single' } })).toEqual({});
    expect(inContext(() => plugin({ query: { type: 'compacted' } }))).toEqual({});
  });
});
