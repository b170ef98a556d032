import { Component, DestroyRef, OnInit, inject, signal } from '@angular/core';
import { RouterLink } from '@angular/router';
import { explain } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { Live } from '../core/live';
import { Throughput } from '../core/throughput';
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

const QUEUE_FIELDS = 'name ready scheduled running dead completed failed retried throughputPerMinute';
const WORKERS_EVERY_MS = 5_000;

/** The state of the whole system at a glance, live. */
@Component({
  selector: 'sf-overview',
  imports: [LineChart, RouterLink],
  template: `
    <h1>Overview</h1>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    <section class="panel">
      <h2>Queues</h2>
      <div class="table-wrap">
        <table data-testid="queues">
          <thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Scheduled</th><th class="num">Running</th>
            <th class="num">Dead</th><th class="num">Succeeded</th><th class="num">Failed</th><th class="num">Per minute</th></tr></thead>
          <tbody>
            @for (q of queues(); track q.name) {
              <tr [attr.data-queue]="q.name">
                <td><a [routerLink]="['/jobs']" [queryParams]="{ kind: q.name.toUpperCase() }">{{ q.name }}</a></td>
                <td class="num">{{ q.ready }}</td><td class="num">{{ q.scheduled }}</td><td class="num">{{ q.running }}</td>
                <td class="num">@if (q.dead > 0) { <a routerLink="/dead">{{ q.dead }}</a> } @else { 0 }</td>
                <td class="num">{{ q.completed }}</td><td class="num">{{ q.failed }}</td>
                <td class="num">{{ q.throughputPerMinute.toFixed(0) }}</td>
              </tr>
            } @empty {
              <tr><td colspan="8" class="muted">Loading queue counts…</td></tr>
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
  styles: `.alerts { padding-left: 1.1rem; margin: 0; } .alerts li { margin: 0.3rem 0; }`,
})
export class OverviewPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly destroyRef = inject(DestroyRef);
  protected readonly when = when;
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

  private async loadQueues(): Promise<void> {
    try {
      const data = await this.graphql.request<{ queues: Queue[] }>(`{ queues { ${QUEUE_FIELDS} } }`);
      if (this.queues().length === 0) this.queues.set(data.queues);
    } catch (e) {
      this.error.set(explain(e));
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
