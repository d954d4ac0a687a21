import { Injectable, type CanActivate } from '@nestjs/common';
import { currentContext } from 'nestjs-context';

/** An auth guard in miniature: it sets `userId` on the context, which every later stage sees. */
@Injectable()
export class UserGuard implements CanActivate {
  canActivate(): boolean {
    currentContext.userId = 'demo-user';
    return true;
  }
}
