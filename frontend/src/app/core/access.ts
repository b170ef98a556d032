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
