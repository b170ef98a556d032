import { Component, computed, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { Router } from '@angular/router';
import { ApiError, explain } from '../core/api-error';
import { Graphql } from '../core/graphql';
import { Session } from '../core/session';

export type SubmittableKind = 'INGEST' | 'EVALUATE' | 'ALERT' | 'NOTIFY';

/** A payload of each kind that passes the server's checks once its ids exist. */
export function examplePayload(kind: SubmittableKind, now: Date = new Date()): unknown {
  switch (kind) {
    case 'INGEST':
      return { readings: [{ sensor: 'boiler-1', ts: now.toISOString(), value: 21.5 }] };
    case 'EVALUATE':
      return { sensor: 'boiler-1' };
    case 'ALERT':
      return { rule: 1, sensor: 'boiler-1', reading: 1, breach: true };
    case 'NOTIFY':
      return { channel: 1, message: 'Test notification from Steadfast' };
  }
}

export interface FieldErrors {
  payload?: string;
  maxAttempts?: string;
  runAt?: string;
  idempotencyKey?: string;
  timeoutMs?: string;
  limitKey?: string;
  other?: string;
}

/** Puts a server error at the form field it names (`input.payload.readings.0.ts`). */
export function fieldErrors(error: unknown): FieldErrors {
  if (!(error instanceof ApiError) || error.code !== 'BAD_USER_INPUT' || !error.field) {
    return { other: explain(error) };
  }
  const path = error.field.replace(/^input\./, '');
  if (path === 'payload') return { payload: error.message };
  if (path.startsWith('payload.')) return { payload: `${path.slice('payload.'.length)}: ${error.message}` };
  if (['maxAttempts', 'runAt', 'idempotencyKey', 'timeoutMs', 'limitKey'].includes(path)) return { [path]: error.message };
  return { other: `${error.field}: ${error.message}` };
}

interface SubmitResult {
  submitJob: { duplicate: boolean; job: { id: string } };
}

/** Queue one job of any submittable kind, then follow it live on its page. */
@Component({
  selector: 'sf-submit',
  imports: [FormsModule],
  template: `
    <h1>Submit a task</h1>
    @if (!canSubmit()) {
      <p class="notice">You are a viewer: submitting needs the operator role. An admin can promote you.</p>
    }
    <form class="panel" (ngSubmit)="submit()">
      <div class="row">
        <label>Kind
          <select name="kind" [ngModel]="kind()" (ngModelChange)="chooseKind($event)" data-testid="kind">
            @for (k of kinds; track k) { <option [value]="k">{{ k.toLowerCase() }}</option> }
          </select>
        </label>
        <button type="button" (click)="chooseKind(kind())">Reset to example</button>
      </div>
      <label class="editor">Payload (JSON)
        <textarea class="code" name="payload" rows="12" spellcheck="false" [class.invalid]="!!errors().payload"
                  [ngModel]="payload()" (ngModelChange)="payload.set($event)" data-testid="payload"></textarea>
      </label>
      @if (errors().payload) { <p class="field-error" data-testid="payload-error">{{ errors().payload }}</p> }
      <div class="row">
        <label>Idempotency key (optional)
          <input name="idempotencyKey" [(ngModel)]="idempotencyKey" [class.invalid]="!!errors().idempotencyKey" />
          @if (errors().idempotencyKey) { <span class="field-error">{{ errors().idempotencyKey }}</span> }
        </label>
        <label>Max attempts (1–100)
          <input name="maxAttempts" type="number" min="1" max="100" [(ngModel)]="maxAttempts"
                 [class.invalid]="!!errors().maxAttempts" data-testid="max-attempts" />
          @if (errors().maxAttempts) { <span class="field-error" data-testid="max-attempts-error">{{ errors().maxAttempts }}</span> }
        </label>
        <label>Priority
          <select name="priority" [(ngModel)]="priority" data-testid="priority">
            <option value="HIGH">high</option><option value="NORMAL">normal</option><option value="LOW">low</option>
          </select>
        </label>
        <label>Timeout per attempt, ms (optional)
          <input name="timeoutMs" type="number" min="1" [(ngModel)]="timeoutMs" [class.invalid]="!!errors().timeoutMs" data-testid="timeout-ms" />
          @if (errors().timeoutMs) { <span class="field-error" data-testid="timeout-error">{{ errors().timeoutMs }}</span> }
        </label>
        <label>Limit key (optional)
          <input name="limitKey" [(ngModel)]="limitKey" [class.invalid]="!!errors().limitKey" data-testid="limit-key" />
          @if (errors().limitKey) { <span class="field-error">{{ errors().limitKey }}</span> }
        </label>
        <label>Run at (optional)
          <input name="runAt" type="datetime-local" step="1" [(ngModel)]="runAt" data-testid="run-at" [class.invalid]="!!errors().runAt" />
          @if (errors().runAt) { <span class="field-error">{{ errors().runAt }}</span> }
        </label>
      </div>
      @if (errors().other) { <p class="error" role="alert">{{ errors().other }}</p> }
      <p><button type="submit" class="primary" [disabled]="busy() || !canSubmit()">{{ busy() ? 'Submitting…' : 'Submit' }}</button></p>
    </form>
  `,
  styles: `textarea { width: 100%; } .editor { margin: 0.75rem 0 0.25rem; }`,
})
export class SubmitPage {
  private readonly graphql = inject(Graphql);
  private readonly router = inject(Router);
  private readonly session = inject(Session);
  protected readonly kinds: SubmittableKind[] = ['INGEST', 'EVALUATE', 'ALERT', 'NOTIFY'];
  protected readonly kind = signal<SubmittableKind>('INGEST');
  protected readonly payload = signal(JSON.stringify(examplePayload('INGEST'), null, 2));
  protected readonly idempotencyKey = signal('');
  protected readonly maxAttempts = signal<number | null>(null);
  protected readonly runAt = signal('');
  protected readonly timeoutMs = signal<number | null>(null);
  protected readonly limitKey = signal('');
  protected readonly priority = signal<'HIGH' | 'NORMAL' | 'LOW'>('NORMAL');
  protected readonly errors = signal<FieldErrors>({});
  protected readonly busy = signal(false);
  protected readonly canSubmit = computed(() => this.session.can('OPERATOR'));

  chooseKind(kind: SubmittableKind): void {
    this.kind.set(kind);
    this.payload.set(JSON.stringify(examplePayload(kind), null, 2));
    this.errors.set({});
  }

  async submit(): Promise<void> {
    this.errors.set({});
    let payload: unknown;
    try {
      payload = JSON.parse(this.payload());
    } catch (e) {
      this.errors.set({ payload: `Not valid JSON: ${e instanceof Error ? e.message : String(e)}` });
      return;
    }
    const input: Record<string, unknown> = { kind: this.kind(), payload };
    if (this.idempotencyKey().trim()) input['idempotencyKey'] = this.idempotencyKey().trim();
    const attempts = this.maxAttempts();
    if (attempts !== null && `${attempts}` !== '') input['maxAttempts'] = Number(attempts);
    if (this.priority() !== 'NORMAL') input['priority'] = this.priority();
    const timeout = this.timeoutMs();
    if (timeout !== null && `${timeout}` !== '') input['timeoutMs'] = Number(timeout);
    if (this.limitKey().trim()) input['limitKey'] = this.limitKey().trim();
    if (this.runAt()) {
      const at = new Date(this.runAt());
      if (Number.isNaN(at.getTime())) {
        this.errors.set({ runAt: 'Not a date and time' });
        return;
      }
      input['runAt'] = at.toISOString();
    }
    this.busy.set(true);
    try {
      const data = await this.graphql.request<SubmitResult>(
        `mutation Submit($input: SubmitJobInput!) { submitJob(input: $input) { duplicate job { id } } }`,
        { input },
      );
      await this.router.navigate(['/jobs', data.submitJob.job.id], {
        queryParams: data.submitJob.duplicate ? { duplicate: 1 } : {},
      });
    } catch (e) {
      this.errors.set(fieldErrors(e));
    } finally {
      this.busy.set(false);
    }
  }
}
