/** Sensor keys as typed in one box: separated by commas or spaces, without repeats. */
export function sensorKeys(raw: string): string[] {
  const keys = raw
    .split(/[\s,]+/)
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  return [...new Set(keys)];
}

export type Role = 'VIEWER' | 'OPERATOR' | 'ADMIN';
export const ROLES: readonly Role[] = ['VIEWER', 'OPERATOR', 'ADMIN'];

/** What a role may do, for the users page. */
export function roleSummary(role: Role): string {
  switch (role) {
    case 'VIEWER':
      return 'reads everything';
    case 'OPERATOR':
      return 'also submits, cancels, acknowledges and resolves alerts, pauses queues';
    case 'ADMIN':
      return 'also manages sensors, rules, channels, devices and users, requeues and drains';
  }
}

/** What an edit of a device changes: only the fields that differ, or null when none does. */
export function deviceChanges(
  device: { name: string; sensorKeys: string[] },
  name: string,
  sensorsRaw: string,
): { name?: string; sensorKeys?: string[] } | null {
  const changes: { name?: string; sensorKeys?: string[] } = {};
  if (name.trim() !== device.name) changes.name = name.trim();
  const keys = sensorKeys(sensorsRaw);
  const same = keys.length === device.sensorKeys.length && keys.every((k) => device.sensorKeys.includes(k));
  if (!same) changes.sensorKeys = keys;
  return Object.keys(changes).length > 0 ? changes : null;
}

/** What a rename of a sensor changes (name and unit, trimmed), or null when neither differs. */
export function sensorChanges(
  sensor: { name: string; unit: string },
  form: { name: string; unit: string },
): { name?: string; unit?: string } | null {
  const changes: { name?: string; unit?: string } = {};
  if (form.name.trim() !== sensor.name) changes.name = form.name.trim();
  if (form.unit.trim() !== sensor.unit) changes.unit = form.unit.trim();
  return Object.keys(changes).length > 0 ? changes : null;
}
