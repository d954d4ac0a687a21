import { removeTree, runNode, transpile } from './child.js';

/** The before/after output in docs/logging.md comes from fixtures/readme-demo.ts; this keeps it true. */
describe('the README demo (a plain Node process, nothing mocked)', () => {
  let out: string;
  const run = async (mode: string) => {
    const { code, stdout, stderr } = await runNode(out, ['--disable-warning=ExperimentalWarning', `${out}/test/logging/fixtures/readme-demo.js`, mode]);
    expect(code).toBe(0);
    return `${stdout}${stderr}`.replace(/\u001b\[[0-9;]*m/g, '');
  };
  beforeAll(() => {
    out = transpile();
  });
  afterAll(() => removeTree(out));

  it('before: no line carries the correlation id', async () => {
    const text = await run('before');
    expect(text).toMatch(/\[GreetingService\] greeting demo-user/);
    expect(text).toMatch(/ERROR \[ExceptionsHandler\] Error: database unavailable/);
    expect(text).not.toContain('my-id-1');
  });

  it('ContextLogger text: the app line, the access log and Nest\'s error line carry the fields', async () => {
    const text = await run('text');
    expect(text).toMatch(/\[GreetingService\] \[correlationId=my-id-1 traceId=[0-9a-f]{32} spanId=[0-9a-f]{16} userId=demo-user\] greeting demo-user/);
    expect(text).toMatch(/\[AccessLog\] \[correlationId=my-id-1 .*\] GET \/ 200 [\d.]+ms/);
    expect(text).toMatch(/ERROR \[ExceptionsHandler\] \[correlationId=[0-9a-f-]{36} traceId=4bf92f3577b34da6a3ce929d0e0e4736 spanId=[0-9a-f]{16} userId=demo-user\] Error: database unavailable/);
  });

  it.each(['json', 'pino', 'winston'])('%s: the greeting line carries the fields', async (mode) => {
    const greeting = (await run(mode)).split('\n').find((line) => line.includes('greeting demo-user'));
    expect(JSON.parse(greeting!)).toMatchObject({ correlationId: 'my-id-1', userId: 'demo-user', traceId: expect.stringMatching(/^[0-9a-f]{32}$/) });
  });
});
