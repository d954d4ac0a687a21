import { execFile } from 'node:child_process';

/** What a finished child process left: its exit code (1 when it could not start or was killed) and output. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd args` in `cwd` and resolves (never rejects) with its exit code and output; killed after
 * `timeout` ms (default 4 minutes). `env` replaces the environment when given.
 */
export function run(cmd: string, args: string[], cwd: string, options: { timeout?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout: options.timeout ?? 240_000, maxBuffer: 64 * 1024 * 1024, env: options.env }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}
