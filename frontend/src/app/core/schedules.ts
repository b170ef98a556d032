/** A schedule as the API holds it. */
export interface Schedule {
  id: string;
  name: string;
  cron: string;
  timeZone: string;
  description: string;
  kind: 'INGEST' | 'EVALUATE' | 'ALERT' | 'NOTIFY';
  payload: unknown;
  missed: 'SKIP' | 'CATCH_UP_ONCE';
  enabled: boolean;
  nextRunAt: string | null;
  lastRunAt: string | null;
  lastJobId: string | null;
  version: number;
}

export const SCHEDULE_FIELDS = 'id name cron timeZone description kind payload missed enabled nextRunAt lastRunAt lastJobId version';

export interface ScheduleForm {
  name: string;
  cron: string;
  timeZone: string;
  kind: Schedule['kind'];
  payload: string;
  missed: Schedule['missed'];
}

/** The form as `ScheduleInput`, or the field that is plainly wrong (the server checks the rest). */
export function scheduleInput(form: ScheduleForm): { input: Record<string, unknown> } | { field: keyof ScheduleForm; error: string } {
  if (!form.name.trim()) return { field: 'name', error: 'a schedule needs a name' };
  const fields = form.cron.trim().split(/\s+/).filter((f) => f).length;
  if (fields !== 5 && fields !== 6) {
    return { field: 'cron', error: 'five fields (minute hour day month weekday), or six with seconds first' };
  }
  let payload: unknown;
  try {
    payload = JSON.parse(form.payload);
  } catch (e) {
    return { field: 'payload', error: `not valid JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  return {
    input: {
      name: form.name.trim(),
      cron: form.cron.trim(),
      timeZone: form.timeZone.trim() || 'UTC',
      kind: form.kind,
      payload,
      missed: form.missed,
    },
  };
}

/** Where a server error goes: `input.payload.sensor` → the payload field, and so on. */
export function scheduleFieldOf(field: string | undefined): keyof ScheduleForm | null {
  const path = (field ?? '').replace(/^input\./, '');
  const head = path.split('.')[0];
  return (['name', 'cron', 'timeZone', 'kind', 'payload', 'missed'] as const).find((f) => f === head) ?? null;
}
