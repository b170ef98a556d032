import { Page, expect, test } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FRONTEND, Receiver, deploymentFromEnv, graphql, login, startApi } from './support';

test.describe.configure({ mode: 'serial' });

const ADMIN = { email: 'admin@example.com', password: 'correct horse battery staple' };
const VIEWER = { email: 'viewer@example.com', password: 'viewer password 123' };
const SHOTS = process.env['SCREENSHOT_DIR'] ?? join(FRONTEND, 'test-results/screenshots');
mkdirSync(SHOTS, { recursive: true });

function baseUrl(): string {
  const url = process.env['E2E_BASE_URL'];
  if (!url) throw new Error('E2E_BASE_URL is not set: the global setup did not run');
  return url;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** A `datetime-local` value `ms` from now, in the browser's own time zone. */
async function localTimeIn(page: Page, ms: number): Promise<string> {
  return page.evaluate((offset) => {
    const at = new Date(Date.now() + offset);
    const pad = (n: number) => String(n).padStart(2, '0');
    return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
  }, ms);
}

async function register(page: Page, who: { email: string; password: string }): Promise<void> {
  await page.goto(`${baseUrl()}/login`);
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
}

async function signIn(page: Page, who: { email: string; password: string }, url = baseUrl()): Promise<void> {
  await page.goto(`${url}/login`);
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
}

async function submit(page: Page, kind: string, payload: unknown, options: { maxAttempts?: number; runAt?: string } = {}): Promise<string> {
  await page.goto(`${baseUrl()}/submit`);
  await page.getByTestId('kind').selectOption(kind);
  await page.getByTestId('payload').fill(JSON.stringify(payload, null, 2));
  if (options.maxAttempts !== undefined) await page.getByTestId('max-attempts').fill(String(options.maxAttempts));
  if (options.runAt) await page.getByTestId('run-at').fill(options.runAt);
  await page.getByRole('button', { name: 'Submit', exact: true }).click();
  await page.waitForURL(/\/jobs\/[^/?]+/);
  return new URL(page.url()).pathname.split('/').pop() ?? '';
}

const alertReceiver = new Receiver();
const flakyReceiver = new Receiver();

test.beforeAll(async () => {
  await alertReceiver.start();
  await flakyReceiver.start();
});

test.afterAll(async () => {
  await alertReceiver.stop();
  await flakyReceiver.stop();
});

test('an admin registers, builds a sensor pipeline, watches a breach become a delivered alert', async ({ page }) => {
  await page.goto(`${baseUrl()}/jobs`);
  await expect(page).toHaveURL(/\/login\?next=%2Fjobs/);
  await shot(page, 'login');
  await register(page, ADMIN);
  await expect(page.locator('.live')).toHaveAttribute('data-status', 'live');

  // The session survives a reload (the refresh token), deep links included.
  await page.goto(`${baseUrl()}/sensors`);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Sensors' })).toBeVisible();

  const sensorForm = page.getByTestId('create-sensor');
  await sensorForm.getByLabel('Key').fill('boiler-1');
  await sensorForm.getByLabel('Name').fill('Boiler room');
  await sensorForm.getByLabel('Unit').fill('°C');
  await sensorForm.getByRole('button', { name: 'Create sensor' }).click();
  await expect(page.locator('[data-sensor="boiler-1"]')).toBeVisible();

  const channelForm = page.getByTestId('create-channel');
  for (const [name, receiver] of [['ops webhook', alertReceiver], ['flaky webhook', flakyReceiver]] as const) {
    await channelForm.getByLabel('Name').fill(name);
    await channelForm.getByLabel('URL').fill(receiver.url);
    await channelForm.getByLabel('Signing secret').fill(`${name} secret`);
    await channelForm.getByRole('button', { name: 'Create channel' }).click();
    await expect(page.locator(`[data-channel-name="${name}"]`)).toBeVisible();
  }

  await page.getByRole('link', { name: 'boiler-1', exact: true }).click();
  const ruleForm = page.getByTestId('create-rule');
  await ruleForm.getByLabel('Threshold').fill('80');
  await ruleForm.locator('[data-channel="ops webhook"]').check();
  await ruleForm.getByRole('button', { name: 'Create rule' }).click();
  await expect(page.getByTestId('rules').locator('tbody tr')).toHaveCount(1);
  await expect(page.getByTestId('rules')).toContainText('above');

  // A bad payload is refused at the field the server names, and nothing is queued.
  await page.goto(`${baseUrl()}/submit`);
  await page.getByTestId('payload').fill(JSON.stringify({ readings: [{ sensor: 'boiler-1', ts: 'yesterday', value: 1 }] }));
  await page.getByRole('button', { name: 'Submit', exact: true }).click();
  await expect(page.getByTestId('payload-error')).toContainText('readings.0.ts');
  await shot(page, 'submit');

  // Scheduled a few seconds ahead, so the page sees every state as it happens.
  const now = Date.now();
  const readings = [20, 95].map((value, i) => ({ sensor: 'boiler-1', ts: new Date(now - 1000 + i * 500).toISOString(), value }));
  const runAt = await localTimeIn(page, 3000);
  const ingestId = await submit(page, 'INGEST', { readings }, { runAt });
  await expect(page.getByTestId('job-state')).toHaveText('SCHEDULED');
  await expect(page.getByTestId('job-state')).toHaveText('SUCCEEDED', { timeout: 30_000 });
  const events = page.getByTestId('events');
  for (const event of ['promoted', 'started', 'succeeded']) await expect(events).toContainText(event);
  await expect(page.getByTestId('result')).toContainText('"stored": 2');
  await expect(page.getByTestId('attempts').locator('tbody tr')).toHaveCount(1);
  await shot(page, 'job');

  // The run's graph fills in live: ingest → evaluate → alert → notify.
  await page.getByTestId('run-link').click();
  await expect(page).toHaveURL(new RegExp(`/runs/${ingestId}`));
  const graph = page.getByTestId('run-graph');
  for (const stage of ['INGEST', 'EVALUATE', 'ALERT', 'NOTIFY']) {
    await expect(graph.locator(`[data-stage="${stage}"] [data-state="SUCCEEDED"]`).first()).toBeVisible({ timeout: 30_000 });
  }
  await expect(page.getByTestId('run-state')).toHaveText('SUCCEEDED', { timeout: 30_000 });
  await shot(page, 'run');

  // The alert is open, its delivery recorded; the receiver got one signed POST.
  await page.getByRole('link', { name: 'Alerts', exact: true }).click();
  const alert = page.locator('[data-alert]').first();
  await expect(alert).toContainText('boiler-1');
  await expect(alert.locator('[data-delivery="DELIVERED"]')).toHaveCount(1);
  expect(alertReceiver.posts).toHaveLength(1);
  expect(alertReceiver.posts[0].headers['x-steadfast-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
  await alert.getByRole('button', { name: 'Acknowledge' }).click();
  await expect(alert.getByTestId('acknowledged')).toBeVisible();
  await shot(page, 'alerts');

  await page.getByRole('link', { name: 'Sensors', exact: true }).click();
  await expect(page.locator('[data-sensor="boiler-1"]')).toContainText('95');
  await shot(page, 'sensors');
  await page.getByRole('link', { name: 'boiler-1', exact: true }).click();
  await expect(page.locator('sf-line-chart polyline')).toHaveCount(1);
  await shot(page, 'sensor');

  await page.getByRole('link', { name: 'Jobs', exact: true }).click();
  await expect(page.locator(`[data-job="${ingestId}"]`)).toBeVisible();
  await shot(page, 'jobs');
});

test('a paused queue holds a submitted job until the operator resumes it', async ({ page }) => {
  await signIn(page, ADMIN);
  // `/dashboard`, the source documents' name for it, opens the overview.
  await page.goto(`${baseUrl()}/dashboard`);
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  const row = page.locator('[data-queue="ingest"]');
  await row.getByRole('button', { name: 'Pause' }).click();
  await expect(row.getByTestId('paused')).toBeVisible();
  await expect(page.getByTestId('done')).toContainText('ingest paused');

  const readings = [{ sensor: 'boiler-1', ts: new Date().toISOString(), value: 21 }];
  const held = await submit(page, 'INGEST', { readings });
  await expect(page.getByTestId('job-state')).toHaveText('QUEUED');
  // The embedded workers are running: the job waits only because its queue is paused.
  await page.waitForTimeout(1500);
  await expect(page.getByTestId('job-state')).toHaveText('QUEUED');

  await page.getByRole('link', { name: 'Overview', exact: true }).click();
  await expect(row.getByTestId('paused')).toBeVisible();
  await expect(row.locator('td').nth(1)).toHaveText('1');
  await shot(page, 'overview-paused');
  await row.getByRole('button', { name: 'Resume' }).click();
  await expect(row.getByTestId('paused')).toHaveCount(0);
  await page.goto(`${baseUrl()}/jobs/${held}`);
  await expect(page.getByTestId('job-state')).toHaveText('SUCCEEDED', { timeout: 15_000 });
});

test('an operator limits a queue per key, a bad limit is explained, and a job shows its timeout and key', async ({ page }) => {
  await signIn(page, ADMIN);
  const row = page.locator('[data-queue="ingest"]');
  await expect(row.getByTestId('limits')).toHaveText('—');
  await row.getByRole('button', { name: 'Limits' }).click();
  const editor = page.getByTestId('limits-editor');
  await editor.getByTestId('limit-per-key-concurrency').fill('-2');
  await editor.getByRole('button', { name: 'Save limits' }).click();
  await expect(editor.getByTestId('limits-error')).toContainText('perKeyConcurrency');
  await editor.getByTestId('limit-per-key-concurrency').fill('1');
  await editor.getByTestId('limit-rate').fill('50');
  await editor.getByTestId('limit-rate-window').fill('1000');
  await editor.getByRole('button', { name: 'Save limits' }).click();
  await expect(page.getByTestId('done')).toContainText('ingest limits saved');
  await expect(row.getByTestId('limits')).toHaveText('≤1 per key, 50/1.0 s');
  // What the API stores is what the row shows after a reload.
  await page.reload();
  await expect(row.getByTestId('limits')).toHaveText('≤1 per key, 50/1.0 s');
  await shot(page, 'overview-limits');

  await page.goto(`${baseUrl()}/submit`);
  await page.getByTestId('payload').fill(JSON.stringify({ readings: [{ sensor: 'boiler-1', ts: new Date().toISOString(), value: 22 }] }));
  await page.getByTestId('timeout-ms').fill('0');
  await page.getByRole('button', { name: 'Submit', exact: true }).click();
  await expect(page.getByTestId('timeout-error')).toContainText('1 ms to 7 days');
  await page.getByTestId('timeout-ms').fill('30000');
  await page.getByTestId('limit-key').fill('boiler-1');
  await page.getByRole('button', { name: 'Submit', exact: true }).click();
  await page.waitForURL(/\/jobs\/[^/?]+/);
  await expect(page.getByTestId('timeout')).toHaveText('30.0 s');
  await expect(page.getByTestId('limit-key')).toContainText('boiler-1');
  await expect(page.getByTestId('job-state')).toHaveText('SUCCEEDED', { timeout: 15_000 });

  // Lifted again, so the flows after this one run unlimited.
  await page.getByRole('link', { name: 'Overview', exact: true }).click();
  await row.getByRole('button', { name: 'Limits' }).click();
  for (const field of ['limit-per-key-concurrency', 'limit-rate', 'limit-rate-window']) await editor.getByTestId(field).fill('');
  await editor.getByRole('button', { name: 'Save limits' }).click();
  await expect(row.getByTestId('limits')).toHaveText('—');
});

test('an operator schedules a recurring job: a bad zone is explained, ticks make jobs, pause and delete', async ({ page }) => {
  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Schedules', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'Schedules' })).toBeVisible();
  const form = page.getByTestId('new-schedule');
  await form.getByTestId('schedule-name').fill('boiler every second');
  await form.getByTestId('schedule-cron').fill('* * * * * *');
  await form.getByTestId('schedule-zone').fill('Mars/Olympus');
  await form.getByTestId('schedule-kind').selectOption('EVALUATE');
  await form.getByTestId('schedule-payload').fill('{ "sensor": "boiler-1" }');
  await form.getByRole('button', { name: 'Create schedule' }).click();
  await expect(form.getByTestId('error-timeZone')).toContainText('Mars/Olympus');
  await expect(page.locator('[data-schedule]')).toHaveCount(0);
  await form.getByTestId('schedule-zone').fill('Europe/Berlin');
  await form.getByRole('button', { name: 'Create schedule' }).click();
  const row = page.locator('[data-schedule="boiler every second"]');
  await expect(row).toBeVisible();
  // The embedded workers make its jobs; the page shows the last one after a reload.
  await expect(async () => {
    await page.reload();
    await expect(row.getByTestId('last-job')).toBeVisible({ timeout: 1000 });
  }).toPass({ timeout: 15_000 });
  await shot(page, 'schedules');
  await row.getByTestId('last-job').click();
  await expect(page.getByRole('heading', { name: /evaluate job/ })).toBeVisible();
  await page.goBack();
  // Edited against the version it was read at: the cron is checked again, then applies.
  await row.getByRole('button', { name: 'Edit' }).click();
  await form.getByTestId('schedule-cron').fill('0 6 * * 1-5');
  await form.getByRole('button', { name: 'Save schedule' }).click();
  await expect(row).toContainText('0 6 * * 1-5');
  await row.getByRole('button', { name: 'Pause' }).click();
  await expect(row.getByTestId('schedule-paused')).toBeVisible();
  await expect(row.getByTestId('next')).toHaveText('—');
  await row.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
  await expect(row).toHaveCount(0);
});

test('an admin edits a rule and the next breach follows the new threshold', async ({ page }) => {
  await signIn(page, ADMIN);
  await page.goto(`${baseUrl()}/sensors/boiler-1`);
  const rule = page.getByTestId('rules').locator('tbody tr').first();
  await rule.getByRole('button', { name: 'Edit' }).click();
  const form = page.getByTestId('edit-rule');
  await form.getByLabel('Threshold').fill('99');
  await form.getByRole('button', { name: 'Save rule' }).click();
  await expect(form).toHaveCount(0);
  await expect(rule.locator('td').nth(2)).toHaveText('99');
  // The edit resolved the alert the old threshold had opened.
  await expect(page.getByText('0 open alert(s)')).toBeVisible();
  await shot(page, 'rule-edited');

  // 95 breached the old threshold (80), not the new one: evaluated, and no alert.
  const below = await submit(page, 'INGEST', { readings: [{ sensor: 'boiler-1', ts: new Date().toISOString(), value: 95 }] });
  await page.goto(`${baseUrl()}/runs/${below}`);
  await expect(page.getByTestId('run-graph').locator('[data-stage="EVALUATE"] [data-state="SUCCEEDED"]')).toBeVisible({ timeout: 15_000 });
  await expect(page.getByTestId('run-state')).toHaveText('SUCCEEDED', { timeout: 15_000 });
  await expect(page.getByTestId('run-graph').locator('[data-stage="ALERT"] [data-step]')).toHaveCount(0);
  await page.goto(`${baseUrl()}/sensors/boiler-1`);
  await expect(page.getByText('0 open alert(s)')).toBeVisible();

  const above = await submit(page, 'INGEST', { readings: [{ sensor: 'boiler-1', ts: new Date().toISOString(), value: 100 }] });
  await page.goto(`${baseUrl()}/runs/${above}`);
  await expect(page.getByTestId('run-graph').locator('[data-stage="ALERT"] [data-state="SUCCEEDED"]').first()).toBeVisible({ timeout: 15_000 });
  await page.goto(`${baseUrl()}/sensors/boiler-1`);
  await expect(page.getByText('1 open alert(s)')).toBeVisible();
});

test('an admin creates a device, its key writes readings, and once revoked its next POST is refused', async ({ page }) => {
  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Devices', exact: true }).click();
  const form = page.getByTestId('create-device');
  await form.getByLabel('Name').fill('gateway');
  await form.getByLabel('Sensors it writes').fill('boiler-1');
  await form.getByRole('button', { name: 'Create device' }).click();
  const key = (await page.getByTestId('device-key').locator('code').textContent())?.trim() ?? '';
  expect(key).toMatch(/^sfd_/);
  await shot(page, 'devices');

  const post = () =>
    fetch(`${baseUrl()}/api/sensors/data`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ readings: [{ sensor: 'boiler-1', ts: new Date().toISOString(), value: 20 }] }),
    });
  expect((await post()).status).toBe(202);

  const row = page.locator('[data-device="gateway"]');
  await row.getByRole('button', { name: 'Revoke' }).click();
  await page.getByRole('alertdialog').getByRole('button', { name: 'Revoke' }).click();
  await expect(row.getByTestId('revoked')).toBeVisible();
  const refused = await post();
  expect(refused.status).toBe(401);
  expect(((await refused.json()) as { error: { message: string } }).error.message).toContain('revoked');
});

test('an admin switches a sensor off, its readings are refused, and on again they are taken', async ({ page }) => {
  const token = await login(baseUrl(), ADMIN.email, ADMIN.password);
  await graphql(baseUrl(), token, `mutation { createSensor(input: {key: "chiller-1", name: "Chiller", unit: "°C"}) { id } }`);
  const device = await graphql<{ createDevice: { apiKey: string } }>(
    baseUrl(),
    token,
    `mutation { createDevice(input: {name: "chiller gateway", sensorKeys: ["chiller-1"]}) { apiKey } }`,
  );
  const post = () =>
    fetch(`${baseUrl()}/api/sensors/data`, {
      method: 'POST',
      headers: { authorization: `Bearer ${device.createDevice.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ readings: [{ sensor: 'chiller-1', ts: new Date().toISOString(), value: 20 }] }),
    });
  await signIn(page, ADMIN);
  await page.goto(`${baseUrl()}/sensors/chiller-1`);
  await page.getByRole('button', { name: 'Switch sensor off' }).click();
  await expect(page.getByTestId('sensor-off')).toBeVisible();
  const refused = await post();
  expect(refused.status).toBe(400);
  expect(((await refused.json()) as { error: { field: string } }).error.field).toBe('readings.0.sensor');
  await page.getByRole('button', { name: 'Switch sensor on' }).click();
  await expect(page.getByTestId('sensor-off')).toHaveCount(0);
  expect((await post()).status).toBe(202);
});

test('an admin gives a device another sensor, an edit against a stale version is explained, and a channel is edited and removed', async ({ page }) => {
  const token = await login(baseUrl(), ADMIN.email, ADMIN.password);
  for (const key of ['freezer-1', 'freezer-2']) {
    await graphql(baseUrl(), token, `mutation { createSensor(input: {key: "${key}", name: "${key}", unit: "°C"}) { id } }`);
  }
  const device = await graphql<{ createDevice: { apiKey: string; device: { id: string } } }>(
    baseUrl(),
    token,
    `mutation { createDevice(input: {name: "freezer gateway", sensorKeys: ["freezer-1"]}) { apiKey device { id } } }`,
  );
  const post = (sensor: string) =>
    fetch(`${baseUrl()}/api/sensors/data`, {
      method: 'POST',
      headers: { authorization: `Bearer ${device.createDevice.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ readings: [{ sensor, ts: new Date().toISOString(), value: -18 }] }),
    });
  expect((await post('freezer-2')).status).toBe(403);

  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Devices', exact: true }).click();
  const row = page.locator('[data-device="freezer gateway"]');
  await row.getByRole('button', { name: 'Edit' }).click();
  const edit = page.getByTestId('edit-device');
  await edit.getByLabel('Sensors it writes').fill('freezer-1, freezer-2');
  await edit.getByRole('button', { name: 'Save' }).click();
  await expect(row).toContainText('freezer-2');
  expect((await post('freezer-2')).status).toBe(202);

  // Another admin renames it while this page still shows version 2: saving is refused, explained.
  await row.getByRole('button', { name: 'Edit' }).click();
  await graphql(baseUrl(), token, `mutation { updateDevice(id: "${device.createDevice.device.id}", expectedVersion: 2, name: "freezer gw") { id } }`);
  await edit.getByLabel('Name').fill('mine');
  await edit.getByRole('button', { name: 'Save' }).click();
  await expect(edit.getByRole('alert')).toContainText('Someone changed this since you loaded it');
  await expect(page.locator('[data-device="freezer gw"]')).toBeVisible();
  await expect(page.locator('[data-device="mine"]')).toHaveCount(0);

  await graphql(baseUrl(), token, `mutation($u: String!) { createChannel(input: {name: "spare webhook", kind: WEBHOOK, url: $u, secret: "spare secret"}) { id } }`, {
    u: alertReceiver.url,
  });
  await page.getByRole('link', { name: 'Channels', exact: true }).click();
  const channel = page.locator('[data-channel="spare webhook"]');
  await channel.getByRole('button', { name: 'Edit' }).click();
  await page.getByTestId('edit-channel').getByLabel('Name').fill('standby webhook');
  await page.getByTestId('edit-channel').getByRole('button', { name: 'Save' }).click();
  const renamed = page.locator('[data-channel="standby webhook"]');
  await renamed.getByRole('button', { name: 'Switch off' }).click();
  await expect(renamed.getByTestId('channel-off')).toBeVisible();
  await shot(page, 'channels');
  await renamed.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
  await expect(renamed).toHaveCount(0);
});

test('a notify to a failing receiver retries, dies, and succeeds once requeued from the dead-jobs page', async ({ page }) => {
  await signIn(page, ADMIN);

  await page.goto(`${baseUrl()}/sensors`);
  const channelId = await page.locator('[data-channel-name="flaky webhook"]').getAttribute('data-channel-id');
  expect(channelId).toBeTruthy();

  flakyReceiver.failing = true;
  const jobId = await submit(page, 'NOTIFY', { channel: Number(channelId), message: 'end-to-end' }, { maxAttempts: 3 });
  const state = page.getByTestId('job-state');
  await expect(state).toHaveText('RETRYING', { timeout: 30_000 });
  await expect(page.getByTestId('next-run')).toBeVisible();
  await expect(state).toHaveText('DEAD', { timeout: 60_000 });
  await expect(page.getByTestId('attempts').locator('tbody tr')).toHaveCount(3);
  await expect(page.getByTestId('last-error')).toContainText('500');
  expect(flakyReceiver.posts).toHaveLength(3);

  flakyReceiver.failing = false;
  await page.getByRole('link', { name: 'Dead jobs', exact: true }).click();
  const row = page.locator(`[data-dead="${jobId}"]`);
  await expect(row).toBeVisible();
  await expect(page.getByTestId('groups')).toContainText('notify');
  await shot(page, 'dead-jobs');
  await row.getByRole('checkbox').check();
  await page.getByTestId('requeue-selected').click();
  const confirm = page.getByRole('alertdialog');
  await expect(confirm).toContainText('Requeue 1 dead job?');
  await confirm.getByRole('button', { name: 'Requeue 1' }).click();
  await expect(page.getByTestId('done')).toHaveText('Requeued 1 dead job.');
  await expect(row).toHaveCount(0);
  await expect(page.getByTestId('audit')).toContainText('dead_job.requeue');

  await page.goto(`${baseUrl()}/jobs/${jobId}`);
  await expect(page.getByTestId('job-state')).toHaveText('SUCCEEDED', { timeout: 30_000 });
  // Every POST of one notification carried the same Idempotency-Key.
  expect(flakyReceiver.posts).toHaveLength(4);
  expect(new Set(flakyReceiver.keys())).toEqual(new Set([`delivery-${jobId}`]));

  // Some traffic for the overview's live counts and throughput chart.
  await page.goto(`${baseUrl()}/`);
  await expect(page.locator('[data-queue="notify"]')).toBeVisible();
  await expect(page.getByTestId('workers')).toBeVisible();
  const token = await login(baseUrl(), ADMIN.email, ADMIN.password);
  for (let batch = 0; batch < 6; batch++) {
    const inputs = Array.from({ length: 40 }, (_, i) => ({
      kind: 'INGEST',
      payload: { readings: [{ sensor: 'boiler-1', ts: new Date(Date.now() - 60_000 + batch * 40 + i).toISOString(), value: 20 + (i % 10) }] },
    }));
    await graphql(baseUrl(), token, `mutation ($inputs: [SubmitJobInput!]!) { submitJobs(inputs: $inputs) { job { id } } }`, { inputs });
    await page.waitForTimeout(1000);
  }
  await expect(page.locator('[data-queue="ingest"] td').nth(5)).not.toHaveText('1');
  await expect(page.locator('sf-line-chart')).not.toContainText('max 0');
  await shot(page, 'overview');
});

test('a viewer sees dead jobs read-only and cannot requeue them', async ({ page }) => {
  // One more dead job for the viewer to look at.
  const adminToken = await login(baseUrl(), ADMIN.email, ADMIN.password);
  const channels = await graphql<{ channels: { id: string; name: string }[] }>(baseUrl(), adminToken, '{ channels { id name } }');
  const flaky = channels.channels.find((c) => c.name === 'flaky webhook');
  flakyReceiver.failing = true;
  const submitted = await graphql<{ submitJob: { job: { id: string } } }>(
    baseUrl(),
    adminToken,
    `mutation ($input: SubmitJobInput!) { submitJob(input: $input) { job { id } } }`,
    { input: { kind: 'NOTIFY', payload: { channel: Number(flaky?.id), message: 'for the viewer' }, maxAttempts: 1 } },
  );
  const deadId = submitted.submitJob.job.id;

  // At phone width the navigation folds behind a menu button.
  // Sign-up is closed once an admin exists: the admin creates the viewer's account.
  await graphql(
    baseUrl(),
    adminToken,
    `mutation ($e: String!, $p: String!) { createUser(email: $e, password: $p, role: VIEWER) { id } }`,
    { e: VIEWER.email, p: VIEWER.password },
  );
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${baseUrl()}/login`);
  await expect(page.getByTestId('signup-closed')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Create an account' })).toHaveCount(0);
  await signIn(page, VIEWER);
  await expect(page.getByRole('link', { name: 'Dead jobs', exact: true })).toBeHidden();
  await shot(page, 'overview-phone');
  await page.getByRole('button', { name: 'Menu' }).click();
  await page.getByRole('link', { name: 'Dead jobs', exact: true }).click();
  await expect(page.getByTestId('read-only')).toBeVisible();
  await expect(page.locator(`[data-dead="${deadId}"]`)).toBeVisible({ timeout: 30_000 });
  await expect(page.getByRole('button', { name: /Requeue/ })).toHaveCount(0);
  await expect(page.getByRole('button', { name: /Discard/ })).toHaveCount(0);
  await shot(page, 'dead-jobs-viewer');

  // The server refuses it too, whatever the page shows.
  const viewerToken = await login(baseUrl(), VIEWER.email, VIEWER.password);
  await expect(
    graphql(baseUrl(), viewerToken, `mutation ($id: ID!) { requeueDeadJob(id: $id) { id } }`, { id: deadId }),
  ).rejects.toMatchObject({ code: 'FORBIDDEN' });

  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/login/);
  await page.goto(`${baseUrl()}/dead`);
  await expect(page).toHaveURL(/\/login/);
});

test('live rows survive an API restart and an expired token, resuming from their cursor', async ({ page }) => {
  test.setTimeout(180_000);
  const deployment = deploymentFromEnv();
  const ttlSeconds = 35;
  const env = { ACCESS_TOKEN_TTL_SECS: String(ttlSeconds) };
  let second = await startApi(deployment, { env });
  const adminToken = await login(baseUrl(), ADMIN.email, ADMIN.password);
  const submitEvaluate = async (n: number) => {
    const data = await graphql<{ submitJobs: { job: { id: string } }[] }>(
      baseUrl(),
      adminToken,
      `mutation ($inputs: [SubmitJobInput!]!) { submitJobs(inputs: $inputs) { job { id } } }`,
      { inputs: Array.from({ length: n }, () => ({ kind: 'EVALUATE', payload: { sensor: 'boiler-1' }, runAt: new Date(Date.now() + 3_600_000).toISOString() })) },
    );
    return data.submitJobs.map((r) => r.job.id);
  };

  try {
    // Signed in on the second API process; its tokens live 35 s.
    await signIn(page, ADMIN, second.url);
    await page.goto(`${second.url}/jobs?kind=EVALUATE&state=SCHEDULED`);
    const live = page.locator('.live');
    await expect(live).toHaveAttribute('data-status', 'live');

    const before = await submitEvaluate(2);
    for (const id of before) await expect(page.locator(`[data-job="${id}"]`)).toBeVisible();

    // The API process dies; jobs keep arriving through the other one meanwhile.
    await second.stop('SIGKILL');
    await expect(live).toHaveAttribute('data-status', 'reconnecting');
    const during = await submitEvaluate(3);
    second = await startApi(deployment, { port: second.port, env });
    await expect(live).toHaveAttribute('data-status', 'live', { timeout: 30_000 });
    for (const id of during) await expect(page.locator(`[data-job="${id}"]`)).toBeVisible();
    await shot(page, 'jobs-after-reconnect');

    // At the token's expiry the server closes the socket (4401): the page refreshes the token
    // and opens a new socket by itself, resuming from its cursor.
    await page.waitForEvent('websocket', { timeout: (ttlSeconds + 30) * 1000 });
    const after = await submitEvaluate(2);
    for (const id of after) await expect(page.locator(`[data-job="${id}"]`)).toBeVisible();
    await expect(live).toHaveAttribute('data-status', 'live');
    const rows = await page.locator('[data-job]').count();
    expect(rows).toBeGreaterThanOrEqual(7);
    const ids = await page.locator('[data-job]').evaluateAll((els) => els.map((e) => e.getAttribute('data-job')));
    expect(new Set(ids).size).toBe(ids.length);
  } finally {
    await second.stop();
    // The scheduled evaluations would otherwise wait an hour in the shared queue.
    const jobs = await graphql<{ jobs: { nodes: { id: string }[] } }>(
      baseUrl(),
      adminToken,
      `{ jobs(filter: { kinds: [EVALUATE], states: [SCHEDULED] }, first: 100) { nodes { id } } }`,
    ).catch(() => ({ jobs: { nodes: [] } }));
    for (const job of jobs.jobs.nodes) {
      await graphql(baseUrl(), adminToken, `mutation ($id: ID!) { cancelJob(id: $id) { id } }`, { id: job.id }).catch(() => undefined);
    }
  }
});
