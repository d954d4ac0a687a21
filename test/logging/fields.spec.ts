import 'reflect-metadata';
import { ConsoleLogger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import fc from 'fast-check';
import { RECORD_KEY } from '../../src/constants.js';
import { storage } from '../../src/record/context-record.js';
import { ContextConfigError, ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { createLogFields, sanitizeLogValue } from '../../src/integrations/logger/index.js';
import { captureStdio, HOSTILE } from './helpers.js';

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

describe('sanitizeLogValue()', () => {
  it('escapes CR, LF, TAB, ESC and other controls visibly', () => {
    expect(sanitizeLogValue('a\r\nb\tc\u001b[31md\u0000\u007f\u0085\u009b\u2028\u202e')).toBe('a\\r\\nb\\tc\\u001b[31md\\u0000\\u007f\\u0085\\u009b\\u2028\\u202e');
  });

  it('returns safe short values unchanged, including non-ASCII text', () => {
    for (const value of ['req-1', 'Zoë 日本 🎉', '']) expect(sanitizeLogValue(value)).toBe(value);
  });

  it('caps long values, ending in "...", without splitting a surrogate pair', () => {
    expect(sanitizeLogValue(HOSTILE.long)).toBe(`${'L'.repeat(253)}...`);
    expect(sanitizeLogValue('abcdefgh', 8)).toBe('abcdefgh');
    expect(sanitizeLogValue('abcdefghi', 8)).toBe('abcde...');
    expect(sanitizeLogValue('abcd🎉🎉🎉', 8)).toBe('abcd...');
    expect(sanitizeLogValue('x'.repeat(20), 2)).toBe('xxxxx...'); // below 8 counts as 8
  });

  it('escapes lone surrogates', () => {
    expect(sanitizeLogValue('a\ud800b\udc00')).toBe('a\\ud800b\\udc00');
  });

  it('property: no unsafe character survives and the result never exceeds maxLength', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 600 }), fc.integer({ min: 8, max: 300 }), (value, max) => {
        const out = sanitizeLogValue(value, max);
        return !UNSAFE.test(out) && out.length <= max && !out.includes('\n') && !out.includes('\r');
      }),
      { numRuns: 2000 },
    );
  });
});

class FieldsContext {
  correlationId: string;
  userId?: unknown;
  secret = 'do-not-log';
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
  get exploding(): string {
    throw new Error('getter failed');
  }
}

describe('createLogFields()', () => {
  let context: ContextService<FieldsContext>;
  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [ContextModule.forRoot(FieldsContext)] }).compile();
    context = moduleRef.get(ContextService);
  });

  it('outside any context: undefined', () => {
    expect(createLogFields().current()).toBeUndefined();
    expect(createLogFields().forRequest({ headers: {} })).toBeUndefined();
    expect(createLogFields().forRequest(undefined)).toBeUndefined();
  });

  it('inside: ids only by default, and reading them does not build the user\'s context', () => {
    context.run(() => {
      const fields = createLogFields().current();
      expect(Object.keys(fields!)).toEqual(['correlationId', 'traceId', 'spanId']);
      expect(fields).toMatchObject({ correlationId: 'cid-1', traceId: context.trace!.traceId, spanId: context.trace!.spanId });
      expect(storage.getStore()!.created).toBe(false);
    }, { correlationId: 'cid-1' });
  });

  it('forRequest() reads the record hanging on a Node request or on Fastify\'s request.raw', () => {
    context.run(() => {
      const record = storage.getStore();
      const node = { [RECORD_KEY]: record };
      const fastify = { raw: { [RECORD_KEY]: record } };
      storage.exit(() => {
        expect(createLogFields().forRequest(node)?.correlationId).toBe('req-1');
        expect(createLogFields().forRequest(fastify)?.correlationId).toBe('req-1');
      });
    }, { correlationId: 'req-1' });
  });

  it('selected fields: values converted, null/undefined left out, ids never overridden', () => {
    const fields = createLogFields({
      contextFields: () => ({
        n: 42, nan: Number.NaN, yes: true, big: 10n, date: new Date(0), obj: { a: [1] }, none: null, undef: undefined,
        fn: () => 1, correlationId: 'forged', 'bad key\n': 'v', __proto__: 'x',
      }),
    });
    context.run(() => {
      expect(fields.current()).toEqual({
        correlationId: 'sel-1', traceId: expect.any(String), spanId: expect.any(String),
        n: 42, nan: 'NaN', yes: true, big: '10', date: '1970-01-01T00:00:00.000Z', obj: '{"a":[1]}', bad_key_: 'v',
      });
    }, { correlationId: 'sel-1' });
  });

  it('a throwing getter or serializer, or an unserializable value, never breaks a line: the ids stay', () => {
    context.run(() => {
      expect(Object.keys(createLogFields({ contextFields: ['exploding'] }).current()!)).toEqual(['correlationId', 'traceId', 'spanId']);
      expect(Object.keys(createLogFields({ contextFields: () => { throw new Error('no'); } }).current()!)).toEqual(['correlationId', 'traceId', 'spanId']);
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      context.get().userId = circular;
      expect(createLogFields({ contextFields: ['userId'] }).current()).not.toHaveProperty('userId');
    });
  });

  it('a context factory that throws: lines of that request keep their ids', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [ContextModule.forRoot(FieldsContext, { factory: () => { throw new Error('factory failed'); } })],
    }).compile();
    const failing = moduleRef.get<ContextService<FieldsContext>>(ContextService);
    failing.run(() => {
      expect(() => failing.get()).toThrow('factory failed');
      expect(createLogFields({ contextFields: ['userId'] }).current()).toEqual({ correlationId: 'f-1', traceId: expect.any(String), spanId: expect.any(String) });
    }, { correlationId: 'f-1' });
  });

  it('selected string fields are sanitized and capped with the maxLength option', () => {
    context.run(() => {
      context.get().userId = `u\r\n${'z'.repeat(100)}`;
      expect(createLogFields({ contextFields: ['userId'], maxLength: 16 }).current()?.userId).toBe('u\\r\\nzzzzzzzz...');
    });
  });

  it.each([
    [{ contextFields: [''] }, /option contextFields names an unusable field: string ""/],
    [{ contextFields: ['__proto__'] }, /unusable field/],
    [{ keys: { correlationId: 'cid', traceId: 'cid' } }, /option keys names one field twice \(cid, cid, spanId\)/],
    [{ keys: 'x' }, /option keys must be an object, got string "x"/],
    [{ maxLength: 4 }, /option maxLength must be an integer of at least 8, got number 4/],
    ['nope', /the options must be an object, got string "nope"/],
  ])('rejects unusable options: %j', (options, message) => {
    expect(() => createLogFields(options as never)).toThrow(ContextConfigError);
    expect(() => createLogFields(options as never)).toThrow(message);
  });
});

describe('the injection checks of these suites can see an injection', () => {
  it('a raw CR/LF in a plain ConsoleLogger message does forge a line (what sanitizing prevents for context fields)', () => {
    const capture = captureStdio();
    try {
      new ConsoleLogger('Demo', { colors: false }).log(`user x\r\n${HOSTILE.forged}`);
    } finally {
      capture.restore();
    }
    expect(capture.lines().some((line) => line.startsWith('[Nest] 666'))).toBe(true);
  });
});
