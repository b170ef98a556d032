import { Component, DestroyRef, OnInit, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { RouterLink } from '@angular/router';
import { explain } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { Live } from '../core/live';
import { Session } from '../core/session';
import { StateBadge } from '../shared/state-badge';

interface Delivery {
  id: string;
  channelId: string;
  idempotencyKey: string;
  status: string;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  deliveredAt: string | null;
  jobId: string;
}
interface AlertRow {
  id: string;
  ruleId: string;
  state: 'OPEN' | 'RESOLVED';
  count: number;
  sensor: string | null;
  workflowRunId: string | null;
  openedAt: string;
  resolvedAt: string | null;
  acknowledgedAt: string | null;
  lastNotifiedAt: string | null;
  deliveries: Delivery[];
}

/** Alerts with their deliveries; operators acknowledge them. */
@Component({
  selector: 'sf-alerts',
  imports: [FormsModule, RouterLink, StateBadge],
  template: `
    <h1>Alerts</h1>
    <div class="row panel">
      <label>Show
        <select name="state" [ngModel]="state()" (ngModelChange)="state.set($event); load()">
          <option value="">all</option><option value="OPEN">open</option><option value="RESOLVED">resolved</option>
        </select>
      </label>
    </div>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @for (a of alerts(); track a.id) {
      <section class="panel alert" [attr.data-alert]="a.id">
        <div class="row">
          <h2>{{ a.sensor }} · rule #{{ a.ruleId }}</h2>
          <sf-state [state]="a.state" />
          <span class="muted">{{ a.count }} breaching reading(s) · opened {{ when(a.openedAt) }}
            @if (a.resolvedAt) { · resolved {{ when(a.resolvedAt) }} }</span>
          @if (a.workflowRunId) { <a [routerLink]="['/runs', a.workflowRunId]">run</a> }
          <span class="spacer"></span>
          @if (a.acknowledgedAt) {
            <span class="muted" data-testid="acknowledged">acknowledged {{ when(a.acknowledgedAt) }}</span>
          } @else if (canAck()) {
            <button type="button" (click)="acknowledge(a)" [disabled]="busy()">Acknowledge</button>
          }
        </div>
        <div class="table-wrap">
          <table data-testid="deliveries">
            <thead><tr><th>Channel</th><th>Status</th><th class="num">Attempts</th><th>HTTP</th><th>Idempotency key</th><th>Delivered</th></tr></thead>
            <tbody>
              @for (d of a.deliveries; track d.id) {
                <tr [attr.data-delivery]="d.status"><td>#{{ d.channelId }}</td><td><sf-state [state]="d.status" /></td>
                  <td class="num">{{ d.attempts }}</td><td>{{ d.lastStatusCode ?? '—' }}</td>
                  <td><a [routerLink]="['/jobs', d.jobId]"><code>{{ d.idempotencyKey }}</code></a></td><td>{{ when(d.deliveredAt) }}</td></tr>
              } @empty { <tr><td colspan="6" class="muted">No deliveries: its rule names no channel, or they are still queued.</td></tr> }
            </tbody>
          </table>
        </div>
      </section>
    } @empty {
      <div class="empty">No alerts. They open when a sensor's readings breach one of its rules; see <a routerLink="/sensors">Sensors</a>.</div>
    }
  `,
  styles: `.alert h2 { margin: 0; } .spacer { flex: 1; } .alert .row { align-items: center; margin-bottom: 0.5rem; }`,
})
export class AlertsPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly session = inject(Session);
  private readonly destroyRef = inject(DestroyRef);
  protected readonly when = when;
  protected readonly state = signal('');
  protected readonly alerts = signal<AlertRow[]>([]);
  protected readonly error = signal<string | null>(null);
  protected readonly busy = signal(false);
  protected readonly canAck = () => this.session.can('OPERATOR');

  ngOnInit(): void {
    void this.load();
    const reload = () => void this.load();
    const updates = this.live.reloadOn(`subscription { alertUpdates { event } }`, reload, 300);
    // Deliveries change when notify jobs finish.
    const deliveries = this.live.reloadOn(
      `subscription Deliveries { jobUpdates(filter: { kinds: [NOTIFY] }) { cursor } }`,
      reload,
      300,
    );
    this.destroyRef.onDestroy(() => {
      updates.close();
      deliveries.close();
    });
  }

  async load(): Promise<void> {
    try {
      const filter = this.state() ? { state: this.state() } : null;
      const data = await this.graphql.request<{ alerts: { nodes: AlertRow[] } }>(
        `query Alerts($filter: AlertsFilter) { alerts(filter: $filter, first: 50) { nodes {
          id ruleId state count sensor workflowRunId openedAt resolvedAt acknowledgedAt lastNotifiedAt
          deliveries { id channelId idempotencyKey status attempts lastStatusCode lastError deliveredAt jobId } } } }`,
        { filter },
      );
      this.alerts.set(data.alerts.nodes);
      this.error.set(null);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  async acknowledge(alert: AlertRow): Promise<void> {
    this.busy.set(true);
    try {
      await this.graphql.request(`mutation Ack($id: ID!) { acknowledgeAlert(id: $id) { id } }`, { id: alert.id });
      await this.load();
    } catch (e) {
      this.error.set(explain(e));
    } finally {
      this.busy.set(false);
    }
  }
}
