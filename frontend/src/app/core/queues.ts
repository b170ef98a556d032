import { duration } from './format';

/** What the queue row's control button does next. */
export interface QueueControl {
  mutation: 'pauseQueue' | 'resumeQueue';
  label: 'Pause' | 'Resume';
}

export function queueAction(queue: { paused: boolean }): QueueControl {
  return queue.paused ? { mutation: 'resumeQueue', label: 'Resume' } : { mutation: 'pauseQueue', label: 'Pause' };
}

/** How long the next job has waited: '—' when none is ready. */
export function waitedFor(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '—' : duration(ms);
}

/** A queue's limits as the API holds them: null is no limit. */
export interface RateLimit {
  limit: number;
  windowMs: number;
}
export interface QueueLimits {
  concurrency: number | null;
  perKeyConcurrency: number | null;
  rate: RateLimit | null;
  perKeyRate: RateLimit | null;
}

/** The limits form: text fields, empty for no limit. */
export interface LimitsForm {
  concurrency: string;
  perKeyConcurrency: string;
  rate: string;
  rateWindowMs: string;
  perKeyRate: string;
  perKeyRateWindowMs: string;
}

export const LIMITS_FIELDS = 'concurrency perKeyConcurrency rate { limit windowMs } perKeyRate { limit windowMs }';

export function limitsForm(limits: QueueLimits): LimitsForm {
  const text = (n: number | null | undefined) => (n === null || n === undefined ? '' : String(n));
  return {
    concurrency: text(limits.concurrency),
    perKeyConcurrency: text(limits.perKeyConcurrency),
    rate: text(limits.rate?.limit),
    rateWindowMs: text(limits.rate?.windowMs),
    perKeyRate: text(limits.perKeyRate?.limit),
    perKeyRateWindowMs: text(limits.perKeyRate?.windowMs),
  };
}

/**
 * The form as the `setQueueLimits` input, or the first field that is wrong. The server checks
 * again (and answers at the field); this only saves a round trip for the obvious mistakes.
 */
export function limitsInput(form: LimitsForm): { limits: QueueLimits } | { field: keyof LimitsForm; error: string } {
  const whole = (field: keyof LimitsForm): number | null | { field: keyof LimitsForm; error: string } => {
    const raw = form[field].trim();
    if (raw === '') return null;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) return { field, error: 'a whole number from 1 (empty for no limit)' };
    return n;
  };
  const values: Record<string, number | null> = {};
  for (const field of Object.keys(form) as (keyof LimitsForm)[]) {
    const v = whole(field);
    if (v !== null && typeof v === 'object') return v;
    values[field] = v;
  }
  const rate = (limit: keyof LimitsForm, window: keyof LimitsForm): RateLimit | null | { field: keyof LimitsForm; error: string } => {
    if (values[limit] === null && values[window] === null) return null;
    if (values[limit] === null) return { field: limit, error: 'a rate needs a number of jobs' };
    if (values[window] === null) return { field: window, error: 'a rate needs a window in milliseconds' };
    return { limit: values[limit] as number, windowMs: values[window] as number };
  };
  const queueRate = rate('rate', 'rateWindowMs');
  if (queueRate && 'field' in queueRate) return queueRate;
  const keyRate = rate('perKeyRate', 'perKeyRateWindowMs');
  if (keyRate && 'field' in keyRate) return keyRate;
  return {
    limits: {
      concurrency: values['concurrency'],
      perKeyConcurrency: values['perKeyConcurrency'],
      rate: queueRate,
      perKeyRate: keyRate,
    },
  };
}

/** One line for the queue row: '—' without limits. */
export function limitsSummary(limits: QueueLimits | undefined): string {
  if (!limits) return '—';
  const parts: string[] = [];
  const per = (r: RateLimit) => `${r.limit}/${duration(r.windowMs)}`;
  if (limits.concurrency !== null) parts.push(`≤${limits.concurrency} running`);
  if (limits.perKeyConcurrency !== null) parts.push(`≤${limits.perKeyConcurrency} per key`);
  if (limits.rate) parts.push(per(limits.rate));
  if (limits.perKeyRate) parts.push(`${per(limits.perKeyRate)} per key`);
  return parts.length ? parts.join(', ') : '—';
}
