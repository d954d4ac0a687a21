// The load of one instruction count (bench/instructions.mjs): `node instructions-driver.mjs <port>
// <warm> <count> <headers JSON>` sends <warm> GET / requests to 127.0.0.1:<port> in batches of 16
// concurrent keep-alive requests, prints `warm`, waits for a line on stdin, sends <count> more on
// the same connections and prints how many of all were not answered 200, and how many of the
// counted requests had to be sent again.
import http from 'node:http';

const BATCH = 16;
const [port, warm, count, headersJson] = process.argv.slice(2);
const headers = JSON.parse(headersJson);
const agent = new http.Agent({ keepAlive: true, maxSockets: BATCH });

/** One request; resolves its status. */
const once = () =>
  new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: Number(port), path: '/', headers, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.setTimeout(60_000, () => req.destroy(new Error('no answer in 60 s')));
    req.on('error', reject);
  });

// Under valgrind a batch can outlast the server's keep-alive timeout (when instrumentation starts,
// valgrind re-translates everything): a request on a socket the server just closed is sent again,
// and counted, since the server may or may not have served the first attempt.
let retries = 0;
const one = async () => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await once();
    } catch (error) {
      if (attempt === 3 || !['ECONNRESET', 'EPIPE'].includes(error?.code)) throw error;
      retries++;
    }
  }
};

/** Sends `n` requests in batches of 16; resolves how many were not answered 200. */
async function send(n) {
  let bad = 0;
  for (let sent = 0; sent < n; sent += BATCH) {
    const statuses = await Promise.all(Array.from({ length: Math.min(BATCH, n - sent) }, one));
    bad += statuses.filter((s) => s !== 200).length;
  }
  return bad;
}

let bad = await send(Number(warm));
process.stdout.write('warm\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
retries = 0;
bad += await send(Number(count));
agent.destroy();
process.stdout.write(`${bad} ${retries}\n`);
process.exit(0);
