import { Component, DestroyRef, OnInit, WritableSignal, computed, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { RouterLink } from '@angular/router';
import { explain, explainForm } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { Live } from '../core/live';
import { Session } from '../core/session';

interface SensorRow {
  id: string;
  key: string;
  name: string;
  unit: string;
  lastSeenAt: string | null;
  openAlerts: number;
  lastReading: { value: number; ts: string } | null;
}
export interface ChannelRow {
  id: string;
  name: string;
  kind: 'WEBHOOK' | 'IN_APP' | null;
  url: string | null;
  hasSecret: boolean;
}

/** Sensors with their latest state, and the channels alerts are sent to. */
@Component({
  selector: 'sf-sensors',
  imports: [FormsModule, RouterLink],
  template: `
    <h1>Sensors</h1>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    <section class="panel table-wrap">
      <table data-testid="sensors">
        <thead><tr><th>Sensor</th><th>Name</th><th class="num">Last reading</th><th>Last seen</th><th class="num">Open alerts</th></tr></thead>
        <tbody>
          @for (s of sensors(); track s.id) {
            <tr [attr.data-sensor]="s.key"><td><a [routerLink]="['/sensors', s.key]">{{ s.key }}</a></td><td>{{ s.name }}</td>
              <td class="num">@if (s.lastReading) { {{ s.lastReading.value }} {{ s.unit }} } @else { — }</td>
              <td>{{ when(s.lastSeenAt) }}</td>
              <td class="num">@if (s.openAlerts > 0) { <a routerLink="/alerts" class="hot">{{ s.openAlerts }}</a> } @else { 0 }</td></tr>
          } @empty {
            <tr><td colspan="5"><div class="empty">No sensors yet. @if (admin()) { Create one below. } @else { An admin creates them. }</div></td></tr>
          }
        </tbody>
      </table>
    </section>
    @if (admin()) {
      <form class="panel" (ngSubmit)="createSensor()" data-testid="create-sensor">
        <h2>New sensor</h2>
        <div class="row">
          <label>Key <input name="key" required [(ngModel)]="key" placeholder="boiler-1" /></label>
          <label>Name <input name="name" required [(ngModel)]="name" placeholder="Boiler room" /></label>
          <label>Unit <input name="unit" required [(ngModel)]="unit" placeholder="°C" /></label>
          <button type="submit" class="primary" [disabled]="busy()">Create sensor</button>
        </div>
        @if (sensorError()) { <p class="field-error">{{ sensorError() }}</p> }
      </form>
    }
    <section class="panel">
      <h2>Channels</h2>
      <ul data-testid="channels">
        @for (c of channels(); track c.id) {
          <li [attr.data-channel-id]="c.id" [attr.data-channel-name]="c.name">#{{ c.id }} <strong>{{ c.name }}</strong> · {{ c.kind?.toLowerCase() }} @if (c.url) { · <code>{{ c.url }}</code> }
            @if (c.hasSecret) { · signed }</li>
        } @empty { <li class="muted">No channels. Alerts are recorded but sent nowhere until a rule names a channel.</li> }
      </ul>
      @if (admin()) {
        <form (ngSubmit)="createChannel()" data-testid="create-channel">
          <div class="row">
            <label>Name <input name="channelName" required [(ngModel)]="channelName" placeholder="on-call webhook" /></label>
            <label>Kind
              <select name="channelKind" [(ngModel)]="channelKind">
                <option value="WEBHOOK">webhook</option><option value="IN_APP">in app</option>
              </select>
            </label>
            @if (channelKind() === 'WEBHOOK') {
              <label>URL <input name="url" type="url" [(ngModel)]="url" placeholder="https://example.com/hook" /></label>
              <label>Signing secret <input name="secret" type="password" autocomplete="off" [(ngModel)]="secret" /></label>
            }
            <button type="submit" class="primary" [disabled]="busy()">Create channel</button>
          </div>
          @if (channelError()) { <p class="field-error">{{ channelError() }}</p> }
        </form>
      }
    </section>
  `,
  styles: `.hot { color: #b45309; font-weight: 700; } ul { padding-left: 1.1rem; }`,
})
export class SensorsPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly session = inject(Session);
  private readonly destroyRef = inject(DestroyRef);
  protected readonly when = when;
  protected readonly admin = computed(() => this.session.can('ADMIN'));
  protected readonly sensors = signal<SensorRow[]>([]);
  protected readonly channels = signal<ChannelRow[]>([]);
  protected readonly error = signal<string | null>(null);
  protected readonly sensorError = signal<string | null>(null);
  protected readonly channelError = signal<string | null>(null);
  protected readonly busy = signal(false);
  protected readonly key = signal('');
  protected readonly name = signal('');
  protected readonly unit = signal('');
  protected readonly channelName = signal('');
  protected readonly channelKind = signal<'WEBHOOK' | 'IN_APP'>('WEBHOOK');
  protected readonly url = signal('');
  protected readonly secret = signal('');

  ngOnInit(): void {
    void this.load();
    // A finished ingest or alert changes the last reading or the open-alert count.
    const changes = this.live.reloadOn(
      `subscription SensorChanges { jobUpdates(filter: { kinds: [INGEST, ALERT], states: [SUCCEEDED] }) { cursor } }`,
      () => void this.load(),
      1000,
    );
    this.destroyRef.onDestroy(() => changes.close());
  }

  async load(): Promise<void> {
    try {
      const data = await this.graphql.request<{ sensors: SensorRow[]; channels: ChannelRow[] }>(
        `{ sensors { id key name unit lastSeenAt openAlerts lastReading { value ts } } channels { id name kind url hasSecret } }`,
      );
      this.sensors.set(data.sensors);
      this.channels.set(data.channels);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  async createSensor(): Promise<void> {
    this.sensorError.set(null);
    await this.run(this.sensorError, async () => {
      await this.graphql.request(`mutation S($input: CreateSensorInput!) { createSensor(input: $input) { id } }`, {
        input: { key: this.key().trim(), name: this.name().trim(), unit: this.unit().trim() },
      });
      this.key.set('');
      this.name.set('');
      this.unit.set('');
    });
  }

  async createChannel(): Promise<void> {
    this.channelError.set(null);
    const webhook = this.channelKind() === 'WEBHOOK';
    await this.run(this.channelError, async () => {
      await this.graphql.request(`mutation C($input: CreateChannelInput!) { createChannel(input: $input) { id } }`, {
        input: {
          name: this.channelName().trim(),
          kind: this.channelKind(),
          url: webhook ? this.url().trim() : null,
          secret: webhook ? this.secret() : null,
        },
      });
      this.channelName.set('');
      this.url.set('');
      this.secret.set('');
    });
  }

  private async run(errorSlot: WritableSignal<string | null>, action: () => Promise<void>): Promise<void> {
    this.busy.set(true);
    try {
      await action();
      await this.load();
    } catch (e) {
      errorSlot.set(explainForm(e));
    } finally {
      this.busy.set(false);
    }
  }
}
