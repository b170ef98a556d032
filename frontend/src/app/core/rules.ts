/** A rule as the sensor page shows and edits it. */
export interface RuleRow {
  id: string;
  kind: string | null;
  threshold: number | null;
  clearThreshold: number | null;
  forReadings: number;
  silenceSeconds: number | null;
  throttleSeconds: number;
  enabled: boolean;
  inBreach: boolean;
  channelIds: string[];
  version: number;
}

/** What the edit form holds: numbers as typed (an empty box is null). */
export interface RuleForm {
  threshold: number | string | null;
  clearThreshold: number | string | null;
  forReadings: number | string | null;
  silenceSeconds: number | string | null;
}

export function numberOrNull(value: number | string | null | undefined): number | null {
  if (value === null || value === undefined || value === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

export function formOf(rule: RuleRow): RuleForm {
  return {
    threshold: rule.threshold,
    clearThreshold: rule.clearThreshold,
    forReadings: rule.forReadings,
    silenceSeconds: rule.silenceSeconds,
  };
}

/**
 * The `UpdateRuleInput` for what the form changed: only the fields that differ from the rule,
 * so an edit never rewrites what the operator did not touch. Empty boxes leave a field as it is.
 */
export function ruleChanges(rule: RuleRow, form: RuleForm): Record<string, number> {
  const fields: (keyof RuleForm)[] =
    rule.kind === 'SILENCE' ? ['silenceSeconds'] : ['threshold', 'clearThreshold', 'forReadings'];
  const changes: Record<string, number> = {};
  for (const field of fields) {
    const value = numberOrNull(form[field]);
    if (value !== null && value !== rule[field]) changes[field] = value;
  }
  return changes;
}
