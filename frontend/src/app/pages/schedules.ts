import { Component, OnInit, computed, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { RouterLink } from '@angular/router';
import { ApiError, explain } from '../core/api-error';
import { relative, when } from '../core/format';
import { Graphql } from '../core/graphql';
import { SCHEDULE_FIELDS, Schedule, ScheduleForm, scheduleFieldOf, scheduleInput } from '../core/schedules';
import { Session } from '../core/session';
import { runAction } from '../shared/action';
import { ConfirmBar } from '../shared/confirm-bar';

const EXAMPLE: ScheduleForm = {
  name: '',
  cron: '0 6 * * 1-5',
  timeZone: 'UTC',
  kind: 'EVALUATE',
  payload: '{ "sensor": "boiler-1" }',
  missed: 'SKIP',
};

/** Recurring jobs: create, pause, resume, delete; each tick makes one job (on the workers). */
@Component({
  selector: 'sf-schedules',
  imports: [FormsModule, RouterLink, ConfirmBar],
  template: `
    <h1>Schedules</h1>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (deleting(); as s) {
      <sf-confirm [message]="'Delete ' + s.name + '? It makes no more jobs; the jobs it made stay.'"
        action="Delete" [busy]="busy()" (confirmed)="remove(s)" (cancelled)="deleting.set(null)" />
    }
    <section class="panel table-wrap">
      <table data-testid="schedule-table">
        <thead><tr><th>Schedule</th><th>When</th><th>Kind</th><th>Next</th><th>Last job</th><th>State</th>@if (operator()) { <th></th> }</tr></thead>
        <tbody>
          @for (s of schedules(); track s.id) {
            <tr [attr.data-schedule]="s.name">
              <td>{{ s.name }}</td>
              <td><code>{{ s.cron }}</code> {{ s.timeZone }}<br /><small class="muted">{{ s.description }}</small></td>
              <td>{{ s.kind.toLowerCase() }}</td>
              <td data-testid="next">@if (s.nextRunAt) { {{ when(s.nextRunAt) }} <small class="muted">({{ relative(s.nextRunAt) }})</small> } @else { — }</td>
              <td>@if (s.lastJobId) { <a [routerLink]="['/jobs', s.lastJobId]" data-testid="last-job">{{ when(s.lastRunAt) }}</a> } @else { — }</td>
              <td>@if (s.enabled) { running } @else { <span data-testid="schedule-paused">paused</span> }</td>
              @if (operator()) {
                <td class="acts">
                  <button type="button" (click)="startEdit(s)" [disabled]="busy()">Edit</button>
                  <button type="button" (click)="setEnabled(s, !s.enabled)" [disabled]="busy()">{{ s.enabled ? 'Pause' : 'Resume' }}</button>
                  <button type="button" class="danger" (click)="deleting.set(s)" [disabled]="busy()">Delete</button>
                </td>
              }
            </tr>
          } @empty {
            <tr><td colspan="7"><div class="empty">No schedules yet.</div></td></tr>
          }
        </tbody>
      </table>
    </section>
    @if (operator()) {
      <form class="panel" (ngSubmit)="save()" data-testid="new-schedule">
        <h2>@if (editing(); as e) { Edit {{ e.name }} } @else { New schedule }</h2>
        <div class="row">
          <label>Name <input name="name" [(ngModel)]="form.name" data-testid="schedule-name" /></label>
          <label>Cron <input name="cron" [(ngModel)]="form.cron" data-testid="schedule-cron" /></label>
          <label>Time zone <input name="timeZone" [(ngModel)]="form.timeZone" data-testid="schedule-zone" /></label>
          <label>Kind
            <select name="kind" [(ngModel)]="form.kind" data-testid="schedule-kind">
              <option value="INGEST">ingest</option><option value="EVALUATE">evaluate</option>
              <option value="ALERT">alert</option><option value="NOTIFY">notify</option>
            </select>
          </label>
          <label>Missed ticks
            <select name="missed" [(ngModel)]="form.missed" data-testid="schedule-missed">
              <option value="SKIP">skip them</option><option value="CATCH_UP_ONCE">one job for all of them</option>
            </select>
          </label>
        </div>
        @for (f of errorFields(); track f) { <p class="field-error" [attr.data-testid]="'error-' + f">{{ f }}: {{ fieldErrors()[f] }}</p> }
        <label class="editor">Payload (JSON) <textarea class="code" name="payload" rows="4" [(ngModel)]="form.payload" data-testid="schedule-payload"></textarea></label>
        <p class="muted">Five fields (minute hour day month weekday; Sunday is 0) or six with seconds first, read on the zone's wall clock.</p>
        <p>
          <button type="submit" class="primary" [disabled]="busy()">{{ editing() ? 'Save schedule' : 'Create schedule' }}</button>
          @if (editing()) { <button type="button" (click)="cancelEdit()" [disabled]="busy()">Cancel</button> }
        </p>
      </form>
    }
  `,
  styles: `.acts { white-space: nowrap; } .acts button { margin-right: 0.25rem; } textarea { width: 100%; }`,
})
export class SchedulesPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly session = inject(Session);
  protected readonly when = when;
  protected readonly relative = relative;
  protected readonly operator = computed(() => this.session.can('OPERATOR'));
  protected readonly schedules = signal<Schedule[]>([]);
  protected readonly error = signal<string | null>(null);
  protected readonly busy = signal(false);
  protected readonly deleting = signal<Schedule | null>(null);
  protected readonly fieldErrors = signal<Partial<Record<keyof ScheduleForm, string>>>({});
  protected readonly errorFields = computed(() => Object.keys(this.fieldErrors()) as (keyof ScheduleForm)[]);
  protected readonly editing = signal<Schedule | null>(null);
  protected form: ScheduleForm = { ...EXAMPLE };

  ngOnInit(): void {
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const data = await this.graphql.request<{ schedules: Schedule[] }>(`{ schedules { ${SCHEDULE_FIELDS} } }`);
      this.schedules.set(data.schedules);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  startEdit(s: Schedule): void {
    this.fieldErrors.set({});
    this.form = { name: s.name, cron: s.cron, timeZone: s.timeZone, kind: s.kind, payload: JSON.stringify(s.payload), missed: s.missed };
    this.editing.set(s);
  }

  cancelEdit(): void {
    this.editing.set(null);
    this.fieldErrors.set({});
    this.form = { ...EXAMPLE };
  }

  /** Creates a schedule, or saves the one being edited against the version the page read. */
  async save(): Promise<void> {
    const checked = scheduleInput(this.form);
    if ('field' in checked) {
      this.fieldErrors.set({ [checked.field]: checked.error });
      return;
    }
    this.fieldErrors.set({});
    const editing = this.editing();
    await this.act(async () => {
      if (editing) {
        await this.graphql.request(
          `mutation($id: ID!, $v: Int!, $input: ScheduleInput!) { updateSchedule(id: $id, expectedVersion: $v, input: $input) { id } }`,
          { id: editing.id, v: editing.version, input: checked.input },
        );
      } else {
        await this.graphql.request(`mutation($input: ScheduleInput!) { createSchedule(input: $input) { id } }`, { input: checked.input });
      }
      this.editing.set(null);
      this.form = { ...EXAMPLE };
    }, (e) => {
      const at = e instanceof ApiError ? scheduleFieldOf(e.field) : null;
      if (at && e instanceof ApiError) this.fieldErrors.set({ [at]: e.message });
      else this.error.set(explain(e));
    });
  }

  async setEnabled(s: Schedule, enabled: boolean): Promise<void> {
    await this.act(async () => {
      await this.graphql.request(`mutation($id: ID!, $on: Boolean!, $v: Int) { setScheduleEnabled(id: $id, enabled: $on, expectedVersion: $v) { id } }`, {
        id: s.id,
        on: enabled,
        v: s.version,
      });
    }, (e) => this.error.set(explain(e)));
  }

  async remove(s: Schedule): Promise<void> {
    await this.act(async () => {
      await this.graphql.request(`mutation($id: ID!, $v: Int) { deleteSchedule(id: $id, expectedVersion: $v) }`, { id: s.id, v: s.version });
      this.deleting.set(null);
    }, (e) => this.error.set(explain(e)));
  }

  private async act(work: () => Promise<void>, failed: (e: unknown) => void): Promise<void> {
    this.error.set(null);
    await runAction(this.busy, work, failed, () => this.load());
  }
}
