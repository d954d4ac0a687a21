import { UseGuards } from '@nestjs/common';
import { Field, ObjectType, Query, Resolver } from '@nestjs/graphql';
import { Ctx } from 'nestjs-context';
import { GreetingService } from './greeting.service.js';
import { MyContext } from './my-context.js';
import { UserGuard } from './user.guard.js';

@ObjectType()
export class Greeting {
  @Field(() => String) correlationId!: string;
  @Field(() => String) message!: string;
}

/** The seed example over GraphQL (`POST /graphql`, `{ hello { correlationId message } }`): the same context. */
@Resolver(() => Greeting)
@UseGuards(UserGuard)
export class GreetingResolver {
  constructor(private readonly greeting: GreetingService) {}

  @Query(() => Greeting)
  async hello(@Ctx() ctx: MyContext): Promise<Greeting> {
    return { correlationId: ctx.correlationId, message: await this.greeting.greet() };
  }
}
