import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

const port = Number(process.env.PORT ?? 3000);
const app = await NestFactory.create(AppModule);
app.enableShutdownHooks();
await app.listen(port);
new Logger('Sample').log(`listening on http://localhost:${port}/ — try: curl -i http://localhost:${port}/ -H 'x-request-id: my-id-1'`);
