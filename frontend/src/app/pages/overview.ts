import { Component, DestroyRef, OnInit, computed, inject, signal } from '@angular/core';
import { RouterLink } from '@angular/router';
import { explain } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { Live } from '../core/live';
import { FormsModule } from '@angular/forms';
import { LIMITS_FIELDS, LimitsForm, QueueControl, QueueLimits, limitsForm, limitsInput, limitsSummary, queueAction, waitedFor } from '../core/queues';
import { Session } from '../core/session';
import { Throughput } from '../core/throughput';
import { ConfirmBar } from '../shared/confirm-bar';
import { LineChart, Series } from '../shared/line-chart';

interface Queue {
  name: string;
  ready: number;
  scheduled: number;
  running: number;
  dead: number;
  completed: number;
  failed: number;
  retried: number;
  throughputPerMinute: number;
  paused: boolean;
  oldestReadyAgeMs: number | null;
}
interface Worker {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  concurrency: number;
  inFlight: number;
  lastBeatAt: string;
}
interface Breaker {
  name: string;
  state: string;
  failures: number;
  openUntil: string;
}
interface OpenAlert {
  id: string;
  sensor: string | null;
  count: number;
  openedAt: string;
  acknowledgedAt: string | null;
}

const QUEUE_FIELDS = 'name ready scheduled running dead completed failed retried throughputPerMinute paused oldestReadyAgeMs';
const WORKERS_EVERY_MS = 5_000;

/** The state of the whole system at a glance, live. */
@Component({
  selector: 'sf-overview',
  imports: [LineChart, RouterLink, ConfirmBar, FormsModule],
  template: `
    <h1>Overview</h1>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (done()) { <p class="notice" role="status" data-testid="done">{{ done() }}</p> }
    @if (draining(); as name) {
      <sf-confirm [message]="'Cancel every job waiting on ' + name + '? Running jobs finish; the cancelled ones cannot be run again.'"
        action="Drain" [busy]="busy()" (confirmed)="drain(name)" (cancelled)="draining.set(null)" />
    }
    @if (editing(); as name) {
      <section class="panel" data-testid="limits-editor">
        <h2>Limits of {{ name }}</h2>
        <p class="muted">Every worker obeys them from its next fetch. Empty fields are no limit. Per-key limits count jobs by their limit key (evaluate: its sensor; notify: its channel). A job held back waits without spending an attempt.</p>
        <form (ngSubmit)="saveLimits(name)" class="limits">
          <label>Running at once <input name="concurrency" data-testid="limit-concurrency" inputmode="numeric" [(ngModel)]="form.concurrency" /></label>
          <label>Running at once per key <input name="perKeyConcurrency" data-testid="limit-per-key-concurrency" inputmode="numeric" [(ngModel)]="form.perKeyConcurrency" /></label>
          <label>Starts <input name="rate" data-testid="limit-rate" inputmode="numeric" [(ngModel)]="form.rate" /></label>
          <label>per (ms) <input name="rateWindowMs" data-testid="limit-rate-window" inputmode="numeric" [(ngModel)]="form.rateWindowMs" /></label>
          <label>Starts per key <input name="perKeyRate" data-testid="limit-per-key-rate" inputmode="numeric" [(ngModel)]="form.perKeyRate" /></label>
          <label>per (ms) <input name="perKeyRateWindowMs" data-testid="limit-per-key-rate-window" inputmode="numeric" [(ngModel)]="form.perKeyRateWindowMs" /></label>
          @if (limitsError()) { <p class="error" role="alert" data-testid="limits-error">{{ limitsError() }}</p> }
          <div><button type="submit" [disabled]="busy()">Save limits</button> <button type="button" (click)="editing.set(null)">Close</button></div>
        </form>
      </section>
    }
    <section class="panel">
      <h2>Queues</h2>
      <div class="table-wrap">
        <table data-testid="queues">
          <thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Oldest waiting</th><th class="num">Scheduled</th><th class="num">Running</th>
            <th class="num">Dead</th><th class="num">Succeeded</th><th class="num">Failed</th><th class="num">Per minute</th><th>Limits</th>
            @if (operator()) { <th></th> }</tr></thead>
          <tbody>
            @for (q of queues(); track q.name) {
              <tr [attr.data-queue]="q.name" [class.paused]="q.paused">
                <td><a [routerLink]="['/jobs']" [queryParams]="{ kind: q.name.toUpperCase() }">{{ q.name }}</a>
                  @if (q.paused) { <span class="badge" data-testid="paused">paused</span> }</td>
                <td class="num">{{ q.ready }}</td><td class="num">{{ waitedFor(q.oldestReadyAgeMs) }}</td>
                <td class="num">{{ q.scheduled }}</td><td class="num">{{ q.running }}</td>
                <td class="num">@if (q.dead > 0) { <a routerLink="/dead">{{ q.dead }}</a> } @else { 0 }</td>
                <td class="num">{{ q.completed }}</td><td class="num">{{ q.failed }}</td>
                <td class="num">{{ q.throughputPerMinute.toFixed(0) }}</td>
                <td data-testid="limits">{{ limitsSummary(limits()[q.name]) }}</td>
                @if (operator()) {
                  <td class="acts">
                    @let action = queueAction(q);
                    <button type="button" (click)="control(q.name, action)" [disabled]="busy()">{{ action.label }}</button>
                    <button type="button" (click)="editLimits(q.name)" [disabled]="busy()">Limits</button>
                    @if (admin()) { <button type="button" (click)="draining.set(q.name)" [disabled]="busy() || q.ready + q.scheduled === 0">Drain</button> }
                  </td>
                }
              </tr>
            } @empty {
              <tr><td colspan="11" class="muted">Loading queue counts…</td></tr>
            }
          </tbody>
        </table>
      </div>
    </section>
    <section class="panel">
      <h2>Jobs per second, last {{ minutes }} minutes</h2>
      <sf-line-chart [series]="series()" caption="finished per second" />
    </section>
    <div class="grid">
      <section class="panel">
        <h2>Workers</h2>
        @if (workers().length === 0) {
          <p class="empty">No worker has reported in the last two minutes. Start one with <code>workers</code>, or run the API with <code>--with-workers</code>.</p>
        } @else {
          <div class="table-wrap">
            <table data-testid="workers">
              <thead><tr><th>Worker</th><th>Queues</th><th class="num">In flight</th><th>Last beat</th></tr></thead>
              <tbody>
                @for (w of workers(); track w.id) {
                  <tr><td>{{ w.id }}<br /><small class="muted">{{ w.host }} · pid {{ w.pid }}</small></td>
                    <td>{{ w.queues.join(', ') }}</td><td class="num">{{ w.inFlight }} / {{ w.concurrency }}</td>
                    <td>{{ when(w.lastBeatAt) }}</td></tr>
                }
              </tbody>
            </table>
          </div>
        }
        @if (breakers().length > 0) {
          <h2>Circuit breakers not closed</h2>
          <ul>
            @for (b of breakers(); track b.name) {
              <li><strong>{{ b.name }}</strong> {{ b.state }} after {{ b.failures }} failures, until {{ when(b.openUntil) }}</li>
            }
          </ul>
        }
      </section>
      <section class="panel">
        <h2>Open alerts</h2>
        @if (alerts().length === 0) {
          <p class="empty">No open alerts.</p>
        } @else {
          <ul class="alerts" data-testid="open-alerts">
            @for (a of alerts(); track a.id) {
              <li><a routerLink="/alerts">{{ a.sensor }}</a> — {{ a.count }} breaching reading(s) since {{ when(a.openedAt) }}
                @if (a.acknowledgedAt) { <span class="muted">(acknowledged)</span> }</li>
            }
          </ul>
        }
      </section>
    </div>
  `,
  styles: `
    .alerts { padding-left: 1.1rem; margin: 0; } .alerts li { margin: 0.3rem 0; }
    tr.paused { background: #fffbeb; }
    .badge { margin-left: 0.4rem; padding: 0 0.4rem; border-radius: 4px; background: #f59e0b; color: #fff; font-size: 0.75rem; }
    .acts { white-space: nowrap; } .acts button { margin-right: 0.25rem; }
    .limits { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: end; }
    .limits label { display: flex; flex-direction: column; font-size: 0.85rem; } .limits input { width: 7rem; }
  `,
})
export class OverviewPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly destroyRef = inject(DestroyRef);
  private readonly session = inject(Session);
  protected readonly when = when;
  protected readonly waitedFor = waitedFor;
  protected readonly queueAction = queueAction;
  protected readonly operator = computed(() => this.session.can('OPERATOR'));
  protected readonly admin = computed(() => this.session.can('ADMIN'));
  protected readonly busy = signal(false);
  protected readonly done = signal<string | null>(null);
  protected readonly draining = signal<string | null>(null);
  protected readonly limitsSummary = limitsSummary;
  protected readonly limits = signal<Record<string, QueueLimits>>({});
  protected readonly editing = signal<string | null>(null);
  protected readonly limitsError = signal<string | null>(null);
  protected form: LimitsForm = limitsForm({ concurrency: null, perKeyConcurrency: null, rate: null, perKeyRate: null });
  protected readonly minutes = 5;
  protected readonly queues = signal<Queue[]>([]);
  protected readonly workers = signal<Worker[]>([]);
  protected readonly breakers = signal<Breaker[]>([]);
  protected readonly alerts = signal<OpenAlert[]>([]);
  protected readonly series = signal<Series[]>([]);
  protected readonly error = signal<string | null>(null);
  private readonly throughput = new Throughput(this.minutes * 60);

  ngOnInit(): void {
    void this.loadQueues();
    void this.loadWorkers();
    void this.loadAlerts();
    const timer = setInterval(() => void this.loadWorkers(), WORKERS_EVERY_MS);
    const stats = this.live.subscribe<{ queueStats: Queue[] }>({
      query: `subscription { queueStats { ${QUEUE_FIELDS} } }`,
      variables: () => ({}),
      next: (data) => this.onStats(data.queueStats),
    });
    const alerts = this.live.reloadOn(`subscription { alertUpdates { event } }`, () => void this.loadAlerts(), 300);
    this.destroyRef.onDestroy(() => {
      clearInterval(timer);
      stats.close();
      alerts.close();
    });
  }

  private onStats(queues: Queue[]): void {
    this.queues.set(queues);
    this.throughput.push(queues, Date.now());
    this.series.set([
      { label: 'processed/s', color: '#2563eb', values: [...this.throughput.processed] },
      { label: 'failed/s', color: '#dc2626', values: [...this.throughput.failed] },
    ]);
  }

  private async loadQueues(replace = false): Promise<void> {
    try {
      const data = await this.graphql.request<{ queues: Queue[] }>(`{ queues { ${QUEUE_FIELDS} } }`);
      if (replace || this.queues().length === 0) this.queues.set(data.queues);
      await this.loadLimits(data.queues.map((q) => q.name));
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  protected async control(name: string, action: QueueControl): Promise<void> {
    await this.act(async () => {
      const data = await this.graphql.request<Record<string, Queue>>(
        `mutation($n: String!) { ${action.mutation}(name: $n) { ${QUEUE_FIELDS} } }`,
        { n: name },
      );
      const changed = data[action.mutation];
      this.queues.update((qs) => qs.map((q) => (q.name === changed.name ? changed : q)));
      this.done.set(`${name} ${changed.paused ? 'paused: workers lease nothing from it' : 'resumed'}.`);
    });
  }

  /** Every queue's limits in one request (one alias per queue). */
  private async loadLimits(names: string[]): Promise<void> {
    if (names.length === 0) return;
    const parts = names.map((n, i) => `q${i}: queueLimits(name: ${JSON.stringify(n)}) { ${LIMITS_FIELDS} }`);
    const data = await this.graphql.request<Record<string, QueueLimits>>(`{ ${parts.join(' ')} }`);
    this.limits.set(Object.fromEntries(names.map((n, i) => [n, data[`q${i}`]])));
  }

  protected editLimits(name: string): void {
    const current = this.limits()[name] ?? { concurrency: null, perKeyConcurrency: null, rate: null, perKeyRate: null };
    this.form = limitsForm(current);
    this.limitsError.set(null);
    this.editing.set(name);
  }

  protected async saveLimits(name: string): Promise<void> {
    const checked = limitsInput(this.form);
    if ('field' in checked) {
      this.limitsError.set(`${checked.field}: ${checked.error}`);
      return;
    }
    this.limitsError.set(null);
    await this.act(async () => {
      try {
        const data = await this.graphql.request<{ setQueueLimits: QueueLimits }>(
          `mutation($n: String!, $l: QueueLimitsInput!) { setQueueLimits(name: $n, limits: $l) { ${LIMITS_FIELDS} } }`,
          { n: name, l: checked.limits },
        );
        this.limits.update((all) => ({ ...all, [name]: data.setQueueLimits }));
        this.editing.set(null);
        this.done.set(`${name} limits saved: ${limitsSummary(data.setQueueLimits)}.`);
      } catch (e) {
        this.limitsError.set(explain(e));
        throw e;
      }
    });
  }

  protected async drain(name: string): Promise<void> {
    await this.act(async () => {
      const data = await this.graphql.request<{ drainQueue: number }>(`mutation($n: String!) { drainQueue(name: $n) }`, { n: name });
      this.draining.set(null);
      this.done.set(`${name} drained: ${data.drainQueue} waiting job(s) cancelled.`);
      await this.loadQueues(true);
    });
  }

  private async act(work: () => Promise<void>): Promise<void> {
    this.busy.set(true);
    this.error.set(null);
    this.done.set(null);
    try {
      await work();
    } catch (e) {
      this.error.set(explain(e));
    } finally {
      this.busy.set(false);
    }
  }

  private async loadWorkers(): Promise<void> {
    try {
      const data = await this.graphql.request<{ workers: Worker[]; circuitBreakers: Breaker[] }>(
        `{ workers { id host pid queues concurrency inFlight lastBeatAt } circuitBreakers { name state failures openUntil } }`,
      );
      this.workers.set(data.workers);
      this.breakers.set(data.circuitBreakers);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  private async loadAlerts(): Promise<void> {
    try {
      const data = await this.graphql.request<{ alerts: { nodes: OpenAlert[] } }>(
        `{ alerts(filter: { state: OPEN }, first: 20) { nodes { id sensor count openedAt acknowledgedAt } } }`,
      );
      this.alerts.set(data.alerts.nodes);
    } catch (e) {
      this.error.set(explain(e));
    }
  }
}
