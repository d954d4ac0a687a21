import 'reflect-metadata';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import fc from 'fast-check';
import { ContextModule, ContextService, currentContext } from '../../../src/index.js';
import { ContextMicroservicesModule } from '../../../src/integrations/microservices/index.js';
import { freePort } from '../../utils/brokers.js';
import { serverContextOptions, TransportContext } from '../../transports/fixtures/harness.js';
import {
  assertHostile,
  candidates,
  expectIdFrom,
  expectWellFormed,
  headerName,
  hostileString,
  runs,
  type Received,
} from './fixtures.js';

/**
 * gRPC: hostile call metadata from a raw grpc-js client to Nest's real gRPC server. On the wire a
 * key is lower-case `[0-9a-z_.-]`, a value printable ASCII, or bytes under a `-bin` key; other
 * shapes (numbers, objects, getters) are fed to the extractor in-process.
 */

const protoPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'transports', 'fixtures', 'echo.proto');

@Controller()
class HostileGrpcController {
  constructor(private readonly context: ContextService<TransportContext>) {}

  @GrpcMethod('Echo', 'WhoAmI')
  whoAmI(request: { key?: string }): { json: string } {
    const trace = this.context.trace;
    const seen: Received = {
      key: request.key ?? '',
      payload: { key: request.key },
      correlationId: this.context.correlationId,
      viaCurrent: (currentContext as unknown as TransportContext).correlationId,
      traceId: trace?.traceId,
      parentId: trace?.parentId,
      tenant: this.context.get().tenant,
    };
    return { json: JSON.stringify(seen) };
  }
}

@Module({
  imports: [ContextModule.forRoot(TransportContext, serverContextOptions), ContextMicroservicesModule.forRoot()],
  controllers: [HostileGrpcController],
})
class HostileGrpcModule {}

interface RawEcho extends grpc.Client {
  WhoAmI(request: { key: string }, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, reply?: { json: string }) => void): grpc.ClientUnaryCall;
}

type Entry = readonly [string, string | Buffer];

/** Legal keys only (the client throws otherwise); `grpc-` keys are reserved. */
const grpcKey = headerName.map((name) => name.toLowerCase()).filter((name) => /^[0-9a-z_.-]+$/.test(name) && !name.startsWith('grpc-') && !name.endsWith('-bin'));
/** Printable ASCII only; non-ASCII and control characters become '?'. */
const grpcValue = hostileString.map((value) => value.replace(/[^\x20-\x7e]/g, '?'));
const binEntry = fc.tuple(
  fc.constantFrom('x-request-id-bin', 'traceparent-bin', 'baggage-bin', '__proto__-bin'),
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
);
/**
 * Node's HTTP/2 client refuses to send a header block over 64 KB (the stream is reset before the
 * server sees it): entries beyond ~50 KB are left out. 9 KB values (over the extractor's cap) remain.
 */
function withinHttp2Budget(list: Entry[]): Entry[] {
  let bytes = 0;
  return list.filter(([key, value]) => {
    const size = key.length + (typeof value === 'string' ? value.length : Math.ceil((value.length * 4) / 3)) + 32;
    if (bytes + size > 50_000) return false;
    bytes += size;
    return true;
  });
}
const entries: fc.Arbitrary<Entry[]> = fc
  .array(fc.oneof({ weight: 8, arbitrary: fc.tuple(grpcKey, grpcValue) as fc.Arbitrary<Entry> }, { weight: 1, arbitrary: binEntry as fc.Arbitrary<Entry> }), {
    maxLength: 8,
  })
  .map(withinHttp2Budget);

describe('hostile metadata over gRPC (call metadata)', () => {
  let server: INestMicroservice;
  let client: RawEcho;
  const numRuns = runs(100);

  beforeAll(async () => {
    const url = `127.0.0.1:${await freePort()}`;
    server = await NestFactory.createMicroservice<MicroserviceOptions>(HostileGrpcModule, {
      transport: Transport.GRPC,
      // 100 KB values must reach the server: its default metadata limit is 8 KB.
      options: { package: 'ctxtest', protoPath, url, maxMetadataSize: 4 * 1024 * 1024 },
      logger: false,
    });
    await server.listen();
    const definition = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath)) as unknown as {
      ctxtest: { Echo: new (address: string, credentials: grpc.ChannelCredentials, options?: object) => RawEcho };
    };
    client = new definition.ctxtest.Echo(url, grpc.credentials.createInsecure(), { 'grpc.max_metadata_size': 4 * 1024 * 1024 });
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
  });

  function call(key: string, metadata: grpc.Metadata): Promise<Received> {
    return new Promise((resolve, reject) =>
      client.WhoAmI({ key }, metadata, (error, reply) => (error ? reject(error) : resolve(JSON.parse(reply!.json) as Received))),
    );
  }

  it(`never crashes, pollutes or echoes an invalid id; the first valid id wins; the handler always answers (${numRuns} runs)`, async () => {
    let n = 0;
    await assertHostile(entries, async (list) => {
      const key = `grpc-${++n}`;
      const metadata = new grpc.Metadata();
      const sent = new Set<string>();
      for (const [name, value] of list) {
        metadata.add(name, value);
        sent.add(typeof value === 'string' ? value : value.toString('latin1'));
      }
      const seen = await call(key, metadata);
      // A field value with leading or trailing whitespace is malformed in HTTP/2 (RFC 9113) and never
      // arrives; Node's server joins the rest of a repeated field with ', ', which grpc-js keeps as one value.
      const values = (name: string) => {
        const found = list.filter(([k, value]) => k === name && !/^[ \t]|[ \t]$/.test(value as string)).map(([, value]) => value as string);
        return found.length === 0 ? [] : [found.join(', ')];
      };
      expectWellFormed(seen, key);
      expectIdFrom(seen.correlationId, candidates([{ kind: 'lists', get: values }]), sent);
    }, numRuns);
  }, 60_000);
});
