import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import { AddressInfo, createServer as createTcpServer } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export const FRONTEND = resolve(__dirname, '..');

/** The `api` binary: $STEADFAST_API_BIN, else the debug build in the CI target directory. */
export function apiBinary(): string {
  const explicit = process.env['STEADFAST_API_BIN'];
  const target = process.env['CARGO_TARGET_DIR'] ?? join(homedir(), '.cache/steadfast/target');
  const binary = explicit ?? join(target, 'debug/api');
  if (!existsSync(binary)) {
    throw new Error(`No api binary at ${binary}: run \`cargo build -p steadfast-api --bin api\` first, or set STEADFAST_API_BIN.`);
  }
  return binary;
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createTcpServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => done(port));
    });
  });
}

/** What every API process of one test run shares: its database, Redis prefix and secret. */
export interface Deployment {
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  jwtSecret: string;
  staticDir: string;
}

export function deploymentFromEnv(): Deployment {
  const need = (name: string) => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set: the global setup did not run`);
    return value;
  };
  return {
    databaseUrl: need('E2E_DATABASE_URL'),
    redisUrl: need('E2E_REDIS_URL'),
    prefix: need('E2E_PREFIX'),
    jwtSecret: need('E2E_JWT_SECRET'),
    staticDir: need('E2E_STATIC_DIR'),
  };
}

export interface ApiProcess {
  url: string;
  port: number;
  child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts an `api` process of the deployment and waits until /ready answers 200. */
export async function startApi(
  deployment: Deployment,
  options: { port?: number; withWorkers?: boolean; env?: Record<string, string> } = {},
): Promise<ApiProcess> {
  const port = options.port ?? (await freePort());
  const args = options.withWorkers ? ['--with-workers'] : [];
  const child = spawn(apiBinary(), args, {
    env: {
      ...process.env,
      API_ADDR: `127.0.0.1:${port}`,
      DATABASE_URL: deployment.databaseUrl,
      REDIS_URL: deployment.redisUrl,
      STEADFAST_PREFIX: deployment.prefix,
      JWT_SECRET: deployment.jwtSecret,
      STATIC_DIR: deployment.staticDir,
      RUST_LOG: process.env['RUST_LOG'] ?? 'warn',
      // The suite's webhook receivers listen on loopback.
      WEBHOOK_ALLOW_NETWORKS: '127.0.0.0/8',
      ...options.env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`api exited with ${child.exitCode} before it was ready`);
    try {
      const response = await fetch(`${url}/ready`);
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`api at ${url} was not ready within 60 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    child,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Deletes every Redis key of a prefix (keys live under the `{prefix}` hash tag). */
export function dropRedisPrefix(redisUrl: string, prefix: string): void {
  const scan = spawnSync('redis-cli', ['-u', redisUrl, '--scan', '--pattern', `{${prefix}}*`], { encoding: 'utf8' });
  const keys = scan.stdout.split('\n').filter(Boolean);
  for (let i = 0; i < keys.length; i += 500) {
    spawnSync('redis-cli', ['-u', redisUrl, 'del', ...keys.slice(i, i + 500)]);
  }
}

export interface ReceivedPost {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/** A local webhook receiver that answers 200, or 500 while `failing` is true. */
export class Receiver {
  readonly posts: ReceivedPost[] = [];
  failing = false;
  private server: Server | null = null;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      request.on('end', () => {
        const status = this.failing ? 500 : 200;
        this.posts.push({ headers: request.headers, body, status });
        response.writeHead(status, { 'content-type': 'text/plain' });
        response.end(status === 200 ? 'ok' : 'receiver is failing on purpose');
      });
    });
    await new Promise<void>((done) => this.server?.listen(0, '127.0.0.1', () => done()));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}/hook`;
    return this;
  }

  keys(): string[] {
    return this.posts.map((p) => String(p.headers['idempotency-key'] ?? ''));
  }

  async stop(): Promise<void> {
    await new Promise<void>((done) => (this.server ? this.server.close(() => done()) : done()));
  }
}

/** Calls the API's GraphQL endpoint directly (for setup the UI does not need to show). */
export async function graphql<T>(baseUrl: string, token: string | null, query: string, variables: object = {}): Promise<T> {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: { message: string; extensions?: { code?: string } }[] };
  if (body.errors?.length) {
    const error = new Error(body.errors[0].message) as Error & { code?: string };
    error.code = body.errors[0].extensions?.code;
    throw error;
  }
  return body.data as T;
}

export async function login(baseUrl: string, email: string, password: string): Promise<string> {
  const data = await graphql<{ login: { accessToken: string } }>(
    baseUrl,
    null,
    `mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { accessToken } }`,
    { email, password },
  );
  return data.login.accessToken;
}
