import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Controller, Inject, Module, type INestMicroservice, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientProxyFactory,
  Ctx,
  GrpcMethod,
  GrpcStreamCall,
  GrpcStreamMethod,
  Payload,
  Transport,
  type ClientGrpc,
  type MicroserviceOptions,
} from '@nestjs/microservices';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { concatMap, lastValueFrom, map, mergeMap, range, toArray, type Observable } from 'rxjs';
import { ContextModule, Ctx as ContextParam, ContextService, currentContext } from '../../src/index.js';
import { ContextMicroservicesModule } from '../../src/integrations/microservices/index.js';
import { freePort } from '../utils/brokers.js';
import { serverContextOptions, TransportContext, UUID } from './fixtures/harness.js';

/**
 * gRPC streaming: every inbound message and every reply of a streaming call runs in that call's
 * context, restored from its metadata. A real Nest gRPC microservice on loopback and a raw
 * @grpc/grpc-js client; many streams in flight at once, each with its own correlation id, trace and
 * baggage, and random delays inside the handlers so their emissions interleave.
 */

const protoPath = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'stream.proto');

interface Note {
  seq?: number;
  count?: number;
  json?: string;
}

/** What a handler saw at one step (`at`) of a call, through every access path that applies. */
interface Sight {
  at: string;
  /** `ContextService#correlationId`. */
  service: string | undefined;
  /** `currentContext.correlationId`. */
  current: string | undefined;
  /** `@Ctx()` (read when the handler was called). */
  param: string | undefined;
  /** The injected context class (request-scoped controller only). */
  injected: string | undefined;
  /** `ContextService#get()` is the very object `@Ctx()` (and the injection) gave. */
  same: boolean;
  traceId: string | undefined;
  tenant: string | undefined;
}

const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.random() * 3));

/** Token the unscoped controller injects instead of the context class (so it stays a singleton). */
const NOT_INJECTED = Symbol('not injected');

const SERVICES = ['Stream', 'ScopedStream'] as const;
type ServiceName = (typeof SERVICES)[number];

/** The controller serving `service`; `ScopedStream`'s injects the context class, so it is request-scoped. */
function streamController(service: ServiceName): Type {
  const token = service === 'ScopedStream' ? TransportContext : NOT_INJECTED;

  @Controller()
  class StreamController {
    constructor(
      private readonly contexts: ContextService<TransportContext>,
      @Inject(token) private readonly injected: TransportContext | null,
    ) {}

    private look(at: string, param: TransportContext | undefined): Sight {
      const active = this.contexts.getOrUndefined();
      let current: string | undefined;
      try {
        current = (currentContext as unknown as TransportContext).correlationId;
      } catch {
        current = undefined; // outside any context
      }
      return {
        at,
        service: this.contexts.correlationId,
        current,
        param: param?.correlationId,
        injected: this.injected?.correlationId,
        same: active !== undefined && active === param && (this.injected === null || this.injected === active),
        traceId: this.contexts.trace?.traceId,
        tenant: active?.tenant,
      };
    }

    @GrpcStreamMethod(service, 'Chat')
    chat(@Payload() notes: Observable<Note>, @ContextParam() ctx: TransportContext): Observable<Note> {
      const start = this.look('handler', ctx);
      return notes.pipe(
        map((note) => ({ note, sights: [start, this.look('map', ctx)] })),
        mergeMap(async (step) => {
          await pause();
          step.sights.push(this.look('mergeMap', ctx));
          return step;
        }),
        map(({ note, sights }) => ({ seq: note.seq, json: JSON.stringify([...sights, this.look('reply', ctx)]) })),
      );
    }

    @GrpcStreamMethod(service, 'Collect')
    collect(@Payload() notes: Observable<Note>, @ContextParam() ctx: TransportContext): Observable<Note> {
      const start = this.look('handler', ctx);
      return notes.pipe(
        mergeMap(async () => {
          const first = this.look('map', ctx);
          await pause();
          return [first, this.look('mergeMap', ctx)];
        }),
        toArray(),
        map((all) => ({ count: all.length, json: JSON.stringify([start, ...all.flat(), this.look('reply', ctx)]) })),
      );
    }

    @GrpcMethod(service, 'Feed')
    feed(@Payload() request: Note, @ContextParam() ctx: TransportContext): Observable<Note> {
      const start = this.look('handler', ctx);
      return range(1, request.count ?? 0).pipe(
        concatMap(async (seq) => {
          await pause();
          return seq;
        }),
        map((seq) => ({ seq, json: JSON.stringify([start, this.look('reply', ctx)]) })),
      );
    }

    @GrpcStreamCall(service, 'ChatCall')
    chatCall(@Payload() call: grpc.ServerDuplexStream<Note, Note>, @ContextParam() ctx: TransportContext): void {
      const start = this.look('handler', ctx);
      const pending: Promise<void>[] = [];
      call.on('data', (note: Note) => {
        const sights = [start, this.look('data', ctx)];
        pending.push(
          (async () => {
            await pause();
            sights.push(this.look('mergeMap', ctx));
            call.write({ seq: note.seq, json: JSON.stringify(sights) });
          })(),
        );
      });
      call.on('end', () => {
        const atEnd = this.look('end', ctx);
        void Promise.all(pending).then(() => {
          call.write({ seq: 0, json: JSON.stringify([atEnd, this.look('reply', ctx)]) });
          call.end();
        });
      });
    }

    @GrpcStreamCall(service, 'CollectCall')
    collectCall(
      @Payload() call: grpc.ServerReadableStream<Note, Note>,
      @Ctx() callback: grpc.sendUnaryData<Note>,
      @ContextParam() ctx: TransportContext,
    ): void {
      const sights = [this.look('handler', ctx)];
      const pending: Promise<void>[] = [];
      let count = 0;
      call.on('data', () => {
        count++;
        sights.push(this.look('data', ctx));
        pending.push(pause().then(() => void sights.push(this.look('mergeMap', ctx))));
      });
      call.on('end', () => {
        sights.push(this.look('end', ctx));
        void Promise.all(pending).then(() => callback(null, { count, json: JSON.stringify([...sights, this.look('reply', ctx)]) }));
      });
    }
  }
  Object.defineProperty(StreamController, 'name', { value: `${service}Controller` });
  return StreamController;
}

@Module({
  imports: [ContextModule.forRoot(TransportContext, serverContextOptions), ContextMicroservicesModule.forRoot()],
  controllers: SERVICES.map(streamController),
  providers: [{ provide: NOT_INJECTED, useValue: null }],
})
class StreamServerModule {}

type Callback = (error: grpc.ServiceError | null, reply?: Note) => void;
interface StreamClient extends grpc.Client {
  Chat(metadata: grpc.Metadata): grpc.ClientDuplexStream<Note, Note>;
  Collect(metadata: grpc.Metadata, callback: Callback): grpc.ClientWritableStream<Note>;
  Feed(request: Note, metadata: grpc.Metadata): grpc.ClientReadableStream<Note>;
  ChatCall(metadata: grpc.Metadata): grpc.ClientDuplexStream<Note, Note>;
  CollectCall(metadata: grpc.Metadata, callback: Callback): grpc.ClientWritableStream<Note>;
}
type Shape = 'Chat' | 'Collect' | 'Feed' | 'ChatCall' | 'CollectCall';

/** One call of the test: what its metadata carries (nothing at all when `fresh`). */
interface CallSpec {
  service: ServiceName;
  shape: Shape;
  id: string;
  trace: string;
  tenant: string;
  fresh: boolean;
}

/** What came back from one call. */
interface Outcome {
  spec: CallSpec;
  replies: Note[];
}

const MESSAGES = 100;

let counter = 0;
function spec(service: ServiceName, shape: Shape, fresh = false): CallSpec {
  const n = ++counter;
  return { service, shape, id: `stream-${n}-${randomBytes(3).toString('hex')}`, trace: randomBytes(16).toString('hex'), tenant: `tenant-${n}`, fresh };
}

function metadataOf(call: CallSpec): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (call.fresh) return metadata;
  metadata.set('x-request-id', call.id);
  metadata.set('traceparent', `00-${call.trace}-${randomBytes(8).toString('hex')}-01`);
  metadata.set('baggage', `tenant=${call.tenant}`);
  return metadata;
}

/** Writes `MESSAGES` notes, pausing now and then so that the streams in flight interleave. */
async function writeAll(stream: grpc.ClientWritableStream<Note> | grpc.ClientDuplexStream<Note, Note>): Promise<void> {
  for (let seq = 1; seq <= MESSAGES; seq++) {
    stream.write({ seq });
    if (seq % 7 === 0) await pause();
  }
  stream.end();
}

function readAll(stream: grpc.ClientReadableStream<Note> | grpc.ClientDuplexStream<Note, Note>): Promise<Note[]> {
  return new Promise((resolve, reject) => {
    const replies: Note[] = [];
    stream.on('data', (note: Note) => replies.push(note));
    stream.on('error', reject);
    stream.on('end', () => resolve(replies));
  });
}

function clientStreaming(open: (callback: Callback) => grpc.ClientWritableStream<Note>): Promise<Note[]> {
  return new Promise((resolve, reject) => {
    const stream = open((error, reply) => (error ? reject(error) : resolve([reply!])));
    writeAll(stream).catch(reject);
  });
}

describe('context across gRPC streaming calls', () => {
  let server: INestMicroservice;
  let clients: Record<ServiceName, StreamClient>;
  let url = '';

  beforeAll(async () => {
    url = `127.0.0.1:${await freePort()}`;
    server = await NestFactory.createMicroservice<MicroserviceOptions>(StreamServerModule, {
      transport: Transport.GRPC,
      options: { package: 'ctxstream', protoPath, url },
      logger: false,
    });
    await server.listen();
    const definition = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath)) as unknown as {
      ctxstream: Record<ServiceName, new (address: string, credentials: grpc.ChannelCredentials) => StreamClient>;
    };
    clients = {
      Stream: new definition.ctxstream.Stream(url, grpc.credentials.createInsecure()),
      ScopedStream: new definition.ctxstream.ScopedStream(url, grpc.credentials.createInsecure()),
    };
  });

  afterAll(async () => {
    for (const client of Object.values(clients ?? {})) client.close();
    await server?.close();
  });

  async function run(call: CallSpec): Promise<Outcome> {
    const client = clients[call.service];
    const metadata = metadataOf(call);
    let replies: Note[];
    switch (call.shape) {
      case 'Chat':
      case 'ChatCall': {
        const stream = client[call.shape](metadata);
        const read = readAll(stream);
        await writeAll(stream);
        replies = await read;
        break;
      }
      case 'Collect':
      case 'CollectCall':
        replies = await clientStreaming((callback) => client[call.shape as 'Collect' | 'CollectCall'](metadata, callback));
        break;
      case 'Feed':
        replies = await readAll(client.Feed({ count: MESSAGES }, metadata));
        break;
    }
    return { spec: call, replies };
  }

  /** How many sights of each step one call must produce (so that no step silently did not run). */
  function expectedSteps(shape: Shape): Record<string, number> {
    switch (shape) {
      case 'Chat':
        return { handler: MESSAGES, map: MESSAGES, mergeMap: MESSAGES, reply: MESSAGES };
      case 'Collect':
        return { handler: 1, map: MESSAGES, mergeMap: MESSAGES, reply: 1 };
      case 'Feed':
        return { handler: MESSAGES, reply: MESSAGES };
      case 'ChatCall':
        return { handler: MESSAGES, data: MESSAGES, mergeMap: MESSAGES, end: 1, reply: 1 };
      case 'CollectCall':
        return { handler: 1, data: MESSAGES, mergeMap: MESSAGES, end: 1, reply: 1 };
    }
  }

  /**
   * Every sight of every call saw that call's own context, through every access path: its id (or
   * one fresh id for the whole call when it sent no metadata), its trace and its baggage.
   */
  function check(outcomes: Outcome[]): void {
    const wrong: unknown[] = [];
    const freshIds = new Set<string>();
    for (const { spec: call, replies } of outcomes) {
      const sights = replies.flatMap((reply) => JSON.parse(reply.json ?? '[]') as Sight[]);
      const steps: Record<string, number> = {};
      for (const sight of sights) steps[sight.at] = (steps[sight.at] ?? 0) + 1;
      expect({ call: `${call.service}.${call.shape}`, steps }).toEqual({ call: `${call.service}.${call.shape}`, steps: expectedSteps(call.shape) });
      if (call.shape === 'Chat' || call.shape === 'Feed') {
        expect(replies.map((reply) => reply.seq).sort((a, b) => a! - b!)).toEqual(Array.from({ length: MESSAGES }, (_, i) => i + 1));
      }
      if (call.shape === 'Collect' || call.shape === 'CollectCall') expect(replies[0]?.count).toBe(MESSAGES);

      const id = call.fresh ? sights[0]?.service : call.id;
      if (call.fresh) {
        expect(id).toMatch(UUID);
        freshIds.add(id!);
      }
      const traceId = call.fresh ? sights[0]?.traceId : call.trace;
      const tenant = call.fresh ? undefined : call.tenant;
      const injected = call.service === 'ScopedStream' ? id : undefined;
      for (const sight of sights) {
        const own =
          sight.service === id &&
          sight.current === id &&
          sight.param === id &&
          sight.injected === injected &&
          sight.same &&
          sight.traceId === traceId &&
          sight.tenant === tenant;
        if (!own) wrong.push({ call: `${call.service}.${call.shape}`, expected: { id, traceId, tenant }, sight });
      }
    }
    expect(freshIds.size).toBe(outcomes.filter(({ spec: call }) => call.fresh).length);
    expect(wrong.slice(0, 5)).toEqual([]);
    expect(wrong).toHaveLength(0);
  }

  /** Four calls of `shape` per service, one of them without metadata, all in flight at once. */
  const concurrently = (shape: Shape): CallSpec[] =>
    SERVICES.flatMap((service) => [spec(service, shape), spec(service, shape), spec(service, shape), spec(service, shape, true)]);

  it('@GrpcStreamMethod, bidirectional: 8 streams of 100 messages in flight, every step of every message in its own call', async () => {
    check(await Promise.all(concurrently('Chat').map(run)));
  });

  it('@GrpcStreamMethod, client streaming: every inbound message and the single reply in its own call', async () => {
    check(await Promise.all(concurrently('Collect').map(run)));
  });

  it('@GrpcMethod, server streaming: every reply of the returned Observable in its own call', async () => {
    check(await Promise.all(concurrently('Feed').map(run)));
  });

  it("@GrpcStreamCall, bidirectional: every call.on('data') callback, the work it starts and the end in its own call", async () => {
    check(await Promise.all(concurrently('ChatCall').map(run)));
  });

  it("@GrpcStreamCall, client streaming: every call.on('data') callback and the callback's reply in its own call", async () => {
    check(await Promise.all(concurrently('CollectCall').map(run)));
  });

  it('every shape on both controllers at once: 40 calls, 100 messages each, zero cross-talk', async () => {
    const shapes: Shape[] = ['Chat', 'Collect', 'Feed', 'ChatCall', 'CollectCall'];
    const started = performance.now();
    const outcomes = await Promise.all(shapes.flatMap(concurrently).map(run));
    const ms = performance.now() - started;
    check(outcomes);
    process.stdout.write(`[gRPC streaming] ${outcomes.length} calls x ${MESSAGES} messages in flight: ${ms.toFixed(0)} ms\n`);
  });

  it("a Nest ClientGrpc stream opened inside a context continues it in the handler's every step", async () => {
    const client = ClientProxyFactory.create({ transport: Transport.GRPC, options: { package: 'ctxstream', protoPath, url } }) as unknown as ClientGrpc & {
      close(): void;
    };
    const chat = client.getService<{ chat(notes: Observable<Note>): Observable<Note> }>('Stream');
    const contexts: ContextService<TransportContext> = server.get(ContextService);
    try {
      const calls = [spec('Stream', 'Chat'), spec('Stream', 'Chat'), spec('Stream', 'Chat')];
      const outcomes = await Promise.all(
        calls.map((call) =>
          contexts.run(
            async (): Promise<Outcome> => {
              call.trace = contexts.trace!.traceId;
              contexts.get().tenant = call.tenant;
              const notes = range(1, MESSAGES).pipe(
                concatMap(async (seq) => {
                  if (seq % 7 === 0) await pause();
                  return { seq };
                }),
              );
              return { spec: call, replies: await lastValueFrom(chat.chat(notes).pipe(toArray())) };
            },
            { correlationId: call.id },
          ),
        ),
      );
      check(outcomes);
    } finally {
      client.close();
    }
  });
});
