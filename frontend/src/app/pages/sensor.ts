import { Component, DestroyRef, OnInit, computed, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { ActivatedRoute, RouterLink } from '@angular/router';
import { sensorChanges } from '../core/access';
import { explain, explainForm } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { Live } from '../core/live';
import { Session } from '../core/session';
import { RuleForm, RuleRow, formOf, numberOrNull, ruleChanges } from '../core/rules';
import { runAction } from '../shared/action';
import { ConfirmBar } from '../shared/confirm-bar';
import { LineChart } from '../shared/line-chart';
import { ChannelRow } from './sensors';

type Rule = RuleRow;
interface SensorDetail {
  id: string;
  key: string;
  enabled: boolean;
  version: number;
  name: string;
  unit: string;
  lastSeenAt: string | null;
  openAlerts: number;
  readings: { id: string; ts: string; value: number }[];
  rules: Rule[];
}

type RuleKind = 'ABOVE' | 'BELOW' | 'RATE_OF_CHANGE' | 'SILENCE';

/** One sensor: a chart of its recent readings, its rules, and a form for a new rule. */
@Component({
  selector: 'sf-sensor',
  imports: [FormsModule, RouterLink, LineChart, ConfirmBar],
  template: `
    <p><a routerLink="/sensors">← Sensors</a></p>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (sensor(); as s) {
      <h1>{{ s.name }} <code>{{ s.key }}</code></h1>
      <p class="muted">Last seen {{ when(s.lastSeenAt) }} · {{ s.openAlerts }} open alert(s)</p>
      @if (!s.enabled) {
        <p class="notice" data-testid="sensor-off">Switched off: its readings are refused and it is never reported silent.</p>
      }
      @if (admin()) {
        <p>
          <button type="button" (click)="setSensorEnabled(s, !s.enabled)" [disabled]="busy()">{{ s.enabled ? 'Switch sensor off' : 'Switch sensor on' }}</button>
          <button type="button" (click)="startRename(s)" [disabled]="busy()">Rename</button>
        </p>
        @if (renaming()) {
          <form class="panel" (ngSubmit)="saveRename(s)" data-testid="rename-sensor">
            <div class="row">
              <label>Name <input name="sensorName" required [(ngModel)]="rename.name" /></label>
              <label>Unit <input name="sensorUnit" required [(ngModel)]="rename.unit" /></label>
              <button type="submit" class="primary" [disabled]="busy()">Save</button>
              <button type="button" (click)="renaming.set(false)" [disabled]="busy()">Cancel</button>
            </div>
            @if (renameError()) { <p class="field-error" role="alert">{{ renameError() }}</p> }
          </form>
        }
      }
      <section class="panel">
        <h2>Recent readings</h2>
        @if (s.readings.length === 0) {
          <p class="empty">No readings yet. Devices send them to <code>POST /api/sensors/data</code>, or submit an ingest job.</p>
        } @else {
          <sf-line-chart [series]="chart()" [caption]="s.readings.length + ' readings'" [unit]="' ' + s.unit" />
        }
      </section>
      <section class="panel">
        <h2>Rules</h2>
        <div class="table-wrap">
          <table data-testid="rules">
            <thead><tr><th>#</th><th>Kind</th><th>Breach at</th><th>Clears at</th><th>For</th><th>Channels</th><th>Now</th>
              @if (admin()) { <th></th> }</tr></thead>
            <tbody>
              @for (r of s.rules; track r.id) {
                <tr [attr.data-rule]="r.id" [class.off]="!r.enabled"><td>{{ r.id }}</td><td>{{ r.kind?.toLowerCase() }}</td>
                  <td>{{ r.kind === 'SILENCE' ? r.silenceSeconds + ' s silent' : r.threshold }}</td><td>{{ r.clearThreshold ?? '—' }}</td>
                  <td>{{ r.forReadings }} reading(s)</td><td>{{ r.channelIds.join(', ') || '—' }}</td>
                  <td>{{ !r.enabled ? 'off' : r.inBreach ? 'in breach' : 'ok' }}</td>
                  @if (admin()) {
                    <td class="acts">
                      <button type="button" (click)="startEdit(r)" [disabled]="busy()">Edit</button>
                      <button type="button" (click)="setEnabled(r, !r.enabled)" [disabled]="busy()">{{ r.enabled ? 'Disable' : 'Enable' }}</button>
                      <button type="button" (click)="archiving.set(r)" [disabled]="busy()">Delete</button>
                    </td>
                  }
                </tr>
              } @empty { <tr><td [attr.colspan]="admin() ? 8 : 7" class="muted">No rules: readings are stored but never raise alerts.</td></tr> }
            </tbody>
          </table>
        </div>
        @if (archiving(); as r) {
          <sf-confirm [message]="'Delete rule ' + r.id + '? It stops raising alerts and its open alert is resolved; its past alerts stay.'"
            action="Delete rule" [busy]="busy()" (confirmed)="archive(r)" (cancelled)="archiving.set(null)" />
        }
        @if (editing(); as r) {
          <form (ngSubmit)="saveEdit(r)" data-testid="edit-rule">
            <h2>Edit rule {{ r.id }}</h2>
            <p class="muted">A new threshold resolves the rule's open alert and applies from the next reading.</p>
            <div class="row">
              @if (r.kind === 'SILENCE') {
                <label>Silent for (s) <input name="editSilence" type="number" min="1" [(ngModel)]="edit.silenceSeconds" /></label>
              } @else {
                <label>Threshold <input name="editThreshold" type="number" step="any" [(ngModel)]="edit.threshold" /></label>
                <label>Clears at <input name="editClear" type="number" step="any" [(ngModel)]="edit.clearThreshold" /></label>
                <label>Breaching readings before alert <input name="editFor" type="number" min="1" [(ngModel)]="edit.forReadings" /></label>
              }
            </div>
            <button type="submit" class="primary" [disabled]="busy()">Save rule</button>
            <button type="button" (click)="editing.set(null)" [disabled]="busy()">Cancel</button>
            @if (editError()) { <p class="field-error" role="alert">{{ editError() }}</p> }
          </form>
        }
        @if (admin()) {
          <form (ngSubmit)="createRule()" data-testid="create-rule">
            <h2>New rule</h2>
            <div class="row">
              <label>Kind
                <select name="ruleKind" [(ngModel)]="kind">
                  <option value="ABOVE">above</option><option value="BELOW">below</option>
                  <option value="RATE_OF_CHANGE">rate of change</option><option value="SILENCE">silence</option>
                </select>
              </label>
              @if (kind() === 'SILENCE') {
                <label>Silent for (s) <input name="silence" type="number" min="1" [(ngModel)]="silenceSeconds" /></label>
              } @else {
                <label>Threshold <input name="threshold" type="number" step="any" [(ngModel)]="threshold" /></label>
                <label>Clears at (optional) <input name="clear" type="number" step="any" [(ngModel)]="clearThreshold" /></label>
                <label>Breaching readings before alert <input name="for" type="number" min="1" [(ngModel)]="forReadings" /></label>
              }
            </div>
            <fieldset>
              <legend>Notify</legend>
              @for (c of channels(); track c.id) {
                <label class="check"><input type="checkbox" [checked]="chosen().has(c.id)" (change)="toggleChannel(c.id)" [attr.data-channel]="c.name" />
                  {{ c.name }} ({{ c.kind?.toLowerCase() }})</label>
              } @empty { <p class="muted">No channels yet: create one on the <a routerLink="/sensors">sensors page</a>.</p> }
            </fieldset>
            <button type="submit" class="primary" [disabled]="busy()">Create rule</button>
            @if (ruleError()) { <p class="field-error">{{ ruleError() }}</p> }
          </form>
        }
      </section>
    } @else if (!error()) {
      <p class="muted">Loading…</p>
    }
  `,
  styles: `fieldset { border: 1px solid var(--border); border-radius: 6px; margin: 0.75rem 0; }
    .check { flex-direction: row; align-items: center; gap: 0.4rem; }
    tr.off { color: #6b7280; } .acts { white-space: nowrap; } .acts button { margin-right: 0.25rem; }`,
})
export class SensorPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly route = inject(ActivatedRoute);
  private readonly session = inject(Session);
  private readonly destroyRef = inject(DestroyRef);
  protected readonly when = when;
  protected readonly admin = computed(() => this.session.can('ADMIN'));
  protected readonly sensor = signal<SensorDetail | null>(null);
  protected readonly channels = signal<ChannelRow[]>([]);
  protected readonly chart = computed(() => [
    { label: 'value', color: '#2563eb', values: (this.sensor()?.readings ?? []).map((r) => r.value) },
  ]);
  protected readonly error = signal<string | null>(null);
  protected readonly ruleError = signal<string | null>(null);
  protected readonly busy = signal(false);
  protected readonly kind = signal<RuleKind>('ABOVE');
  protected readonly threshold = signal<number | null>(null);
  protected readonly clearThreshold = signal<number | null>(null);
  protected readonly forReadings = signal<number | null>(1);
  protected readonly silenceSeconds = signal<number | null>(300);
  protected readonly chosen = signal<ReadonlySet<string>>(new Set());
  protected readonly editing = signal<Rule | null>(null);
  protected readonly archiving = signal<Rule | null>(null);
  protected readonly editError = signal<string | null>(null);
  protected readonly renaming = signal(false);
  protected readonly renameError = signal<string | null>(null);
  protected rename = { name: '', unit: '' };
  protected edit: RuleForm = { threshold: null, clearThreshold: null, forReadings: null, silenceSeconds: null };
  private key = '';

  ngOnInit(): void {
    const sub = this.route.paramMap.subscribe((params) => {
      this.key = params.get('key') ?? '';
      void this.load();
    });
    const changes = this.live.reloadOn(
      `subscription Readings { jobUpdates(filter: { kinds: [INGEST], states: [SUCCEEDED] }) { cursor } }`,
      () => void this.load(),
      1000,
    );
    this.destroyRef.onDestroy(() => {
      sub.unsubscribe();
      changes.close();
    });
  }

  toggleChannel(id: string): void {
    this.chosen.update((s) => {
      const next = new Set(s);
      if (!next.delete(id)) next.add(id);
      return next;
    });
  }

  async load(): Promise<void> {
    try {
      const data = await this.graphql.request<{ sensor: SensorDetail | null; channels: ChannelRow[] }>(
        `query Sensor($key: String!) { sensor(key: $key) { id key name unit lastSeenAt openAlerts enabled version
          readings(last: 200) { id ts value }
          rules { id kind threshold clearThreshold forReadings silenceSeconds throttleSeconds enabled inBreach channelIds version } }
          channels { id name kind url hasSecret } }`,
        { key: this.key },
      );
      if (!data.sensor) {
        this.error.set(`No sensor has the key ${this.key}. Check the address, or create it on the sensors page.`);
        return;
      }
      this.sensor.set(data.sensor);
      this.channels.set(data.channels);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  startEdit(rule: Rule): void {
    this.edit = formOf(rule);
    this.editError.set(null);
    this.editing.set(rule);
  }

  async saveEdit(rule: Rule): Promise<void> {
    const input = ruleChanges(rule, this.edit);
    if (Object.keys(input).length === 0) {
      this.editing.set(null);
      return;
    }
    await this.change(
      `mutation E($id: ID!, $v: Int!, $input: UpdateRuleInput!) { updateRule(id: $id, expectedVersion: $v, input: $input) { id } }`,
      { id: rule.id, v: rule.version, input },
      (e) => this.editError.set(explainForm(e)),
    );
    if (!this.editError()) this.editing.set(null);
  }

  async setEnabled(rule: Rule, enabled: boolean): Promise<void> {
    await this.change(
      `mutation S($id: ID!, $v: Int!, $on: Boolean!) { setRuleEnabled(id: $id, expectedVersion: $v, enabled: $on) { id } }`,
      { id: rule.id, v: rule.version, on: enabled },
      (e) => this.error.set(explain(e)),
    );
  }

  async setSensorEnabled(sensor: SensorDetail, enabled: boolean): Promise<void> {
    await this.change(
      `mutation S($k: String!, $v: Int!, $on: Boolean!) { setSensorEnabled(key: $k, expectedVersion: $v, enabled: $on) { enabled } }`,
      { k: sensor.key, v: sensor.version, on: enabled },
      (e) => this.error.set(explain(e)),
    );
  }

  startRename(sensor: SensorDetail): void {
    this.rename = { name: sensor.name, unit: sensor.unit };
    this.renameError.set(null);
    this.renaming.set(true);
  }

  async saveRename(sensor: SensorDetail): Promise<void> {
    const input = sensorChanges(sensor, this.rename);
    if (!input) {
      this.renaming.set(false);
      return;
    }
    this.renameError.set(null);
    await this.change(
      `mutation R($k: String!, $v: Int!, $input: UpdateSensorInput!) { updateSensor(key: $k, expectedVersion: $v, input: $input) { version } }`,
      { k: sensor.key, v: sensor.version, input },
      (e) => this.renameError.set(explainForm(e)),
    );
    if (!this.renameError()) this.renaming.set(false);
  }

  async archive(rule: Rule): Promise<void> {
    await this.change(
      `mutation A($id: ID!, $v: Int!) { archiveRule(id: $id, expectedVersion: $v) }`,
      { id: rule.id, v: rule.version },
      (e) => this.error.set(explain(e)),
    );
    this.archiving.set(null);
  }

  /** Runs an edit; whatever the answer (a stale version included), shows the rules as they are now. */
  private async change(query: string, variables: Record<string, unknown>, failed: (e: unknown) => void): Promise<void> {
    this.error.set(null);
    this.editError.set(null);
    await runAction(this.busy, () => this.graphql.request(query, variables).then(() => undefined), failed, () => this.load());
  }

  async createRule(): Promise<void> {
    this.ruleError.set(null);
    const silence = this.kind() === 'SILENCE';
    const input = {
      sensor: this.key,
      kind: this.kind(),
      threshold: silence ? null : numberOrNull(this.threshold()),
      clearThreshold: silence ? null : numberOrNull(this.clearThreshold()),
      forReadings: silence ? null : numberOrNull(this.forReadings()),
      silenceSeconds: silence ? numberOrNull(this.silenceSeconds()) : null,
      channelIds: [...this.chosen()],
    };
    this.busy.set(true);
    try {
      await this.graphql.request(`mutation R($input: CreateRuleInput!) { createRule(input: $input) { id } }`, { input });
      this.chosen.set(new Set());
      await this.load();
    } catch (e) {
      this.ruleError.set(explainForm(e));
    } finally {
      this.busy.set(false);
    }
  }
}
