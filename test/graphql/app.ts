/**
 * The GraphQL app of the e2e suite: a code-first schema with every kind of resolver (queries, a
 * mutation, nested field resolvers with a DataLoader, a subscription), each reporting what the four
 * access paths see; booted on Apollo (Express, Fastify) and Mercurius (Fastify).
 */
import 'reflect-metadata';
import {
  Catch,
  Injectable,
  Module,
  Scope,
  UseGuards,
  UseInterceptors,
  type CallHandler,
  type CanActivate,
  type DynamicModule,
  type ExecutionContext,
  type NestInterceptor,
  type PipeTransform,
} from '@nestjs/common';
import {
  Args,
  Field,
  GraphQLModule,
  Int,
  Mutation,
  ObjectType,
  Parent,
  Query,
  ResolveField,
  Resolver,
  Subscription,
  type GqlExceptionFilter,
} from '@nestjs/graphql';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { APP_FILTER } from '@nestjs/core';
import DataLoader from 'dataloader';
import { Observable } from 'rxjs';
import type { IncomingMessage } from 'node:http';
import { ContextModule, ContextService, Ctx, currentContext, getOutboundHeaders, type ContextModuleOptions } from 'nestjs-context';
import { ContextGraphQLModule, type ContextGraphQLOptions } from 'nestjs-context/graphql';
import { MyContext } from '../fixtures/app-context.js';
import { storage } from '../../src/record/context-record.js';

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** What one resolver saw through each access path. */
@ObjectType()
export class Probe {
  @Field(() => String) service!: string;
  @Field(() => String) current!: string;
  @Field(() => String) param!: string;
  @Field(() => String) injected!: string;
  @Field(() => Boolean) sameObject!: boolean;
  @Field(() => String, { nullable: true }) label?: string;
  @Field(() => String) traceId!: string;
  @Field(() => String) spanId!: string;
  @Field(() => String) baggage!: string;
  @Field(() => String) outbound!: string;
  @Field(() => String) source!: string;
}

@ObjectType()
export class Customer {
  @Field(() => Int) id!: number;
  /** The correlation id the DataLoader batch function saw. */
  @Field(() => String) batchSeen!: string;
  @Field(() => Int) batchSize!: number;
}

@ObjectType()
export class Order {
  @Field(() => Int) id!: number;
  @Field(() => Int) customerId!: number;
}

@ObjectType()
export class Tick {
  @Field(() => Int) n!: number;
}

/** The context class of the suite: records where it was built from. */
export class GqlContext extends MyContext {
  readonly source: string;
  constructor(init: ConstructorParameters<typeof MyContext>[0]) {
    super(init);
    this.source = init.source;
  }
}

/** A hand-written pub/sub: events published in one context (a mutation) reach subscribers in theirs. */
@Injectable()
export class Bus {
  private readonly queues = new Set<(value: unknown) => void>();

  get subscribers(): number {
    return this.queues.size;
  }

  subscribe(): AsyncIterableIterator<unknown> {
    const buffered: unknown[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    const push = (value: unknown): void => {
      buffered.push(value);
      wake?.();
    };
    this.queues.add(push);
    const iterator: AsyncIterableIterator<unknown> = {
      next: async () => {
        while (!done && buffered.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        return done ? { done: true, value: undefined } : { done: false, value: buffered.shift() };
      },
      return: async () => {
        done = true;
        this.queues.delete(push);
        wake?.();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  publish(value: unknown): void {
    for (const push of this.queues) push(value);
  }
}

/** Reports what the four access paths see; `injected` is the request-scoped `GqlContext` of the resolver. */
function probe(service: ContextService<GqlContext>, param: GqlContext, injected: GqlContext): Probe {
  const context = service.get();
  return {
    service: service.correlationId ?? 'none',
    current: currentContext.correlationId as string,
    param: param.correlationId,
    injected: injected.correlationId,
    sameObject: context === param && context === injected,
    label: context.userId,
    traceId: service.trace?.traceId ?? 'none',
    spanId: service.trace?.spanId ?? 'none',
    baggage: service.baggage.map((m) => `${m.key}=${m.value}`).join(','),
    outbound: getOutboundHeaders()['x-request-id'] ?? 'none',
    source: context.source,
  };
}

/** One DataLoader per operation (request-scoped); its batch function reports the context it ran in. */
@Injectable({ scope: Scope.REQUEST })
export class CustomerLoader {
  readonly loader = new DataLoader<number, Customer>(async (ids) => {
    await sleep(Math.random() * 5);
    const seen = currentContext.correlationId as string;
    return ids.map((id) => ({ id, batchSeen: seen, batchSize: ids.length }));
  });
}

/** Guard, interceptor and pipe that write into the context, for the pipeline query. */
@Injectable()
class SeenGuard implements CanActivate {
  canActivate(): boolean {
    (currentContext as unknown as GqlContext).seenBy.push('guard');
    return true;
  }
}
@Injectable()
class SeenInterceptor implements NestInterceptor {
  constructor(private readonly context: ContextService<GqlContext>) {}
  intercept(_ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    this.context.get().seenBy.push('interceptor');
    return next.handle();
  }
}
@Injectable()
class SeenPipe implements PipeTransform {
  transform(value: unknown): unknown {
    (currentContext as unknown as GqlContext).seenBy.push('pipe');
    return value;
  }
}
/** Runs the handler outside any context, as a library that loses the async chain would. */
@Injectable()
class LoseContextInterceptor implements NestInterceptor {
  intercept(_ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    return new Observable((subscriber) => storage.exit(() => next.handle().subscribe(subscriber)));
  }
}

/** Fills the context before the resolver runs; the filter reads it on the error path. */
@Injectable()
class FillGuard implements CanActivate {
  constructor(private readonly context: ContextService<GqlContext>) {}
  canActivate(): boolean {
    const ctx = this.context.get();
    ctx.userId = `guard:${ctx.correlationId}`;
    return true;
  }
}
@Catch()
class ContextFilter implements GqlExceptionFilter {
  constructor(private readonly context: ContextService<GqlContext>) {}
  catch(exception: unknown): Error {
    const ctx = this.context.getOrUndefined();
    return new Error(`filtered ${exception instanceof Error ? exception.message : String(exception)} for ${ctx?.userId ?? 'nobody'}`);
  }
}

@Resolver(() => Order)
export class OrderResolver {
  constructor(
    private readonly context: ContextService<GqlContext>,
    private readonly injected: GqlContext,
    private readonly customers: CustomerLoader,
    private readonly bus: Bus,
  ) {}

  @Query(() => [Order])
  async orders(@Args('count', { type: () => Int }) count: number, @Args('wait', { type: () => Int }) wait: number): Promise<Order[]> {
    await sleep(wait);
    return Array.from({ length: count }, (_, i) => ({ id: i + 1, customerId: 100 + i }));
  }

  @Query(() => Probe)
  async probe(@Ctx() ctx: GqlContext, @Args('wait', { type: () => Int, nullable: true }) wait?: number): Promise<Probe> {
    await sleep(wait ?? 0);
    return probe(this.context, ctx, this.injected);
  }

  @Query(() => [String])
  @UseGuards(SeenGuard)
  @UseInterceptors(SeenInterceptor)
  pipeline(@Args('value', { type: () => String }, SeenPipe) _value: string, @Ctx() ctx: GqlContext): string[] {
    ctx.seenBy.push('resolver');
    return ctx.seenBy;
  }

  /** `@Ctx()` where the async chain was lost: it finds the HTTP request's context through `req`. */
  @Query(() => String)
  @UseInterceptors(LoseContextInterceptor)
  lost(@Ctx() ctx: GqlContext): string {
    return `${ctx.correlationId}/${String(storage.getStore() === undefined)}`;
  }

  @Mutation(() => Boolean)
  publish(@Args('n', { type: () => Int }) n: number): boolean {
    this.bus.publish({ ticks: { n } });
    return true;
  }

  @Mutation(() => Boolean)
  @UseGuards(FillGuard)
  async fail(@Args('reason', { type: () => String }) reason: string): Promise<boolean> {
    await sleep(1);
    throw new Error(reason);
  }

  @ResolveField(() => Probe)
  async seen(@Parent() _order: Order, @Ctx() ctx: GqlContext): Promise<Probe> {
    await sleep(Math.random() * 5);
    return probe(this.context, ctx, this.injected);
  }

  @ResolveField(() => Customer)
  customer(@Parent() order: Order): Promise<Customer> {
    return this.customers.loader.load(order.customerId);
  }
}

@Resolver(() => Customer)
export class CustomerResolver {
  constructor(
    private readonly context: ContextService<GqlContext>,
    private readonly injected: GqlContext,
  ) {}

  @ResolveField(() => Probe)
  async seen(@Parent() _customer: Customer, @Ctx() ctx: GqlContext): Promise<Probe> {
    await sleep(Math.random() * 5);
    return probe(this.context, ctx, this.injected);
  }
}

/** What each subscription's `subscribe` saw, by label. */
export const subscribedWith = new Map<string, { service: string; current: string; param: string; sameObject: boolean }>();

/** The ids the subscription filter saw, by label. */
export const filteredWith = new Map<string, Set<string>>();

@Resolver(() => Tick)
export class TickResolver {
  constructor(
    private readonly context: ContextService<GqlContext>,
    private readonly injected: GqlContext,
  ) {}

  @ResolveField(() => Probe)
  async seen(@Parent() _tick: Tick, @Ctx() ctx: GqlContext): Promise<Probe> {
    await sleep(Math.random() * 3);
    return probe(this.context, ctx, this.injected);
  }
}

@Resolver()
export class TickSubscription {
  constructor(
    private readonly context: ContextService<GqlContext>,
    private readonly bus: Bus,
  ) {}

  @Subscription(() => Tick, {
    // Runs for every event, inside the subscription's context: it records the id it saw.
    filter: (_payload: unknown, variables: { label: string }) => {
      filteredWith.get(variables.label)?.add(currentContext.correlationId as string);
      return true;
    },
  })
  ticks(@Args('label', { type: () => String }) label: string, @Ctx() ctx: GqlContext): AsyncIterableIterator<unknown> {
    // Written at subscribe time; every event of this subscription must read it back.
    ctx.userId = label;
    filteredWith.set(label, new Set());
    subscribedWith.set(label, {
      service: this.context.correlationId ?? 'none',
      current: currentContext.correlationId as string,
      param: ctx.correlationId,
      sameObject: this.context.get() === ctx,
    });
    return this.bus.subscribe();
  }
}

export type Driver = 'apollo' | 'mercurius';

/** Trust policy of the suite: a handshake or request with `x-untrusted: 1` is not trusted. */
export const trusted = (request: IncomingMessage): boolean => request.headers['x-untrusted'] !== '1';

/** The app module for `driver`, with the integration's `options` (or without the integration: `false`). */
export function graphqlModule(
  driver: Driver,
  options: ContextGraphQLOptions | false = {},
  contextOptions: ContextModuleOptions<GqlContext> = {},
): DynamicModule {
  const gql =
    driver === 'apollo'
      ? GraphQLModule.forRoot<ApolloDriverConfig>({
          driver: ApolloDriver,
          autoSchemaFile: true,
          graphiql: false,
          subscriptions: { 'graphql-ws': true },
          allowBatchedHttpRequests: true,
        })
      : GraphQLModule.forRoot<MercuriusDriverConfig>({
          driver: MercuriusDriver,
          autoSchemaFile: true,
          graphiql: false,
          subscription: { fullWsTransport: true },
          allowBatchedQueries: true,
        });
  @Module({
    imports: [
      ContextModule.forRoot(GqlContext, { trustInbound: trusted, ...contextOptions }),
      gql,
      ...(options === false ? [] : [ContextGraphQLModule.forRoot(options)]),
    ],
    providers: [
      Bus,
      CustomerLoader,
      SeenGuard,
      SeenInterceptor,
      SeenPipe,
      FillGuard,
      LoseContextInterceptor,
      { provide: APP_FILTER, useClass: ContextFilter },
      OrderResolver,
      CustomerResolver,
      TickResolver,
      TickSubscription,
    ],
  })
  class GraphQLAppModule {}
  return { module: GraphQLAppModule };
}
