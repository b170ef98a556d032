import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Deployment, FRONTEND, dropRedisPrefix, startApi } from './support';

/**
 * Starts one `api --with-workers` on a free port over a temporary SQLite file and its own
 * Redis prefix, and hands both to the tests through the environment. The teardown stops
 * it and removes the database and every Redis key of the prefix.
 */
export default async function globalSetup(): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'steadfast-e2e-'));
  const deployment: Deployment = {
    databaseUrl: `sqlite://${join(dir, 'steadfast.db')}?mode=rwc`,
    redisUrl: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379',
    prefix: `e2e-${process.pid}-${Date.now()}`,
    jwtSecret: `e2e-secret-${process.pid}-${Date.now()}-0123456789abcdef`,
    staticDir: join(FRONTEND, 'dist/browser'),
  };
  const api = await startApi(deployment, { withWorkers: true });
  process.env['E2E_BASE_URL'] = api.url;
  process.env['E2E_DATABASE_URL'] = deployment.databaseUrl;
  process.env['E2E_REDIS_URL'] = deployment.redisUrl;
  process.env['E2E_PREFIX'] = deployment.prefix;
  process.env['E2E_JWT_SECRET'] = deployment.jwtSecret;
  process.env['E2E_STATIC_DIR'] = deployment.staticDir;
  return async () => {
    await api.stop();
    dropRedisPrefix(deployment.redisUrl, deployment.prefix);
    rmSync(dir, { recursive: true, force: true });
  };
}
