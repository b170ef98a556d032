import { Component, OnInit, computed, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { deviceChanges, sensorKeys } from '../core/access';
import { explain, explainForm } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { Session } from '../core/session';
import { runAction } from '../shared/action';
import { ConfirmBar } from '../shared/confirm-bar';

interface Device {
  id: string;
  name: string;
  sensorKeys: string[];
  createdAt: string;
  revokedAt: string | null;
  version: number;
}

const FIELDS = 'id name sensorKeys createdAt revokedAt version';

/**
 * Devices and their keys (admin): create, rename or change the sensors one writes, revoke,
 * rotate, delete; a key is shown once. Every change names the version the page read.
 */
@Component({
  selector: 'sf-devices',
  imports: [FormsModule, ConfirmBar],
  template: `
    <h1>Devices</h1>
    @if (!admin()) { <p class="notice">Devices and their keys are managed by admins.</p> }
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (shownKey(); as shown) {
      <div class="notice key" role="status" data-testid="device-key">
        <p>The key of <strong>{{ shown.name }}</strong>, shown this once: copy it to the device now.</p>
        <code>{{ shown.key }}</code>
        <button type="button" (click)="shownKey.set(null)">I have copied it</button>
      </div>
    }
    @if (deleting(); as d) {
      <sf-confirm [message]="'Delete ' + d.name + '? Its key is refused at once and its sensors are released; their readings stay.'"
        action="Delete" [busy]="busy()" (confirmed)="remove(d)" (cancelled)="deleting.set(null)" />
    }
    @if (editing(); as d) {
      <form class="panel" (ngSubmit)="saveEdit(d)" data-testid="edit-device">
        <h2>Edit {{ d.name }}</h2>
        <div class="row">
          <label>Name <input name="editName" required [(ngModel)]="editName" /></label>
          <label>Sensors it writes <input name="editSensors" required [(ngModel)]="editSensors" /></label>
          <button type="submit" class="primary" [disabled]="busy()">Save</button>
          <button type="button" (click)="editing.set(null)" [disabled]="busy()">Cancel</button>
        </div>
        @if (editError()) { <p class="field-error" role="alert">{{ editError() }}</p> }
      </form>
    }
    @if (revoking(); as d) {
      <sf-confirm [message]="'Revoke the key of ' + d.name + '? Its next request is refused; rotating issues a new key instead.'"
        action="Revoke" [busy]="busy()" (confirmed)="revoke(d)" (cancelled)="revoking.set(null)" />
    }
    <section class="panel table-wrap">
      <table data-testid="devices">
        <thead><tr><th>Device</th><th>Sensors</th><th>Created</th><th>Key</th>@if (admin()) { <th></th> }</tr></thead>
        <tbody>
          @for (d of devices(); track d.id) {
            <tr [attr.data-device]="d.name">
              <td>{{ d.name }} <small class="muted">#{{ d.id }}</small></td><td>{{ d.sensorKeys.join(', ') }}</td>
              <td>{{ when(d.createdAt) }}</td>
              <td>@if (d.revokedAt) { <span data-testid="revoked">revoked {{ when(d.revokedAt) }}</span> } @else { active }</td>
              @if (admin()) {
                <td class="acts">
                  <button type="button" (click)="startEdit(d)" [disabled]="busy()">Edit</button>
                  <button type="button" (click)="rotate(d)" [disabled]="busy()">Rotate key</button>
                  @if (!d.revokedAt) { <button type="button" (click)="revoking.set(d)" [disabled]="busy()">Revoke</button> }
                  <button type="button" class="danger" (click)="deleting.set(d)" [disabled]="busy()">Delete</button>
                </td>
              }
            </tr>
          } @empty {
            <tr><td colspan="5"><div class="empty">No devices yet. A device posts readings of its sensors with its key.</div></td></tr>
          }
        </tbody>
      </table>
    </section>
    @if (admin()) {
      <form class="panel" (ngSubmit)="create()" data-testid="create-device">
        <h2>New device</h2>
        <div class="row">
          <label>Name <input name="deviceName" required [(ngModel)]="name" placeholder="gateway-3" /></label>
          <label>Sensors it writes <input name="deviceSensors" required [(ngModel)]="sensors" placeholder="boiler-1, boiler-2" /></label>
          <button type="submit" class="primary" [disabled]="busy()">Create device</button>
        </div>
        @if (formError()) { <p class="field-error">{{ formError() }}</p> }
      </form>
    }
  `,
  styles: `.key code { display: block; margin: 0.4rem 0; font-size: 1rem; word-break: break-all; }
    .acts { white-space: nowrap; } .acts button { margin-right: 0.25rem; }`,
})
export class DevicesPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly session = inject(Session);
  protected readonly when = when;
  protected readonly admin = computed(() => this.session.can('ADMIN'));
  protected readonly devices = signal<Device[]>([]);
  protected readonly error = signal<string | null>(null);
  protected readonly formError = signal<string | null>(null);
  protected readonly busy = signal(false);
  protected readonly revoking = signal<Device | null>(null);
  protected readonly deleting = signal<Device | null>(null);
  protected readonly editing = signal<Device | null>(null);
  protected readonly editError = signal<string | null>(null);
  protected editName = '';
  protected editSensors = '';
  protected readonly shownKey = signal<{ name: string; key: string } | null>(null);
  protected name = '';
  protected sensors = '';

  ngOnInit(): void {
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const data = await this.graphql.request<{ devices: Device[] }>(`{ devices { ${FIELDS} } }`);
      this.devices.set(data.devices);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  async create(): Promise<void> {
    this.formError.set(null);
    await this.act(async () => {
      const data = await this.graphql.request<{ createDevice: { apiKey: string; device: Device } }>(
        `mutation($input: CreateDeviceInput!) { createDevice(input: $input) { apiKey device { ${FIELDS} } } }`,
        { input: { name: this.name, sensorKeys: sensorKeys(this.sensors) } },
      );
      this.shownKey.set({ name: data.createDevice.device.name, key: data.createDevice.apiKey });
      this.name = '';
      this.sensors = '';
    }, (e) => this.formError.set(explainForm(e)));
  }

  async rotate(device: Device): Promise<void> {
    await this.act(async () => {
      const data = await this.graphql.request<{ rotateDeviceKey: { apiKey: string } }>(
        `mutation($id: ID!, $v: Int) { rotateDeviceKey(id: $id, expectedVersion: $v) { apiKey } }`,
        { id: device.id, v: device.version },
      );
      this.shownKey.set({ name: device.name, key: data.rotateDeviceKey.apiKey });
    }, (e) => this.error.set(explain(e)));
  }

  async revoke(device: Device): Promise<void> {
    await this.act(async () => {
      await this.graphql.request(`mutation($id: ID!, $v: Int) { revokeDevice(id: $id, expectedVersion: $v) { id } }`, {
        id: device.id,
        v: device.version,
      });
      this.revoking.set(null);
    }, (e) => this.error.set(explain(e)));
  }

  startEdit(device: Device): void {
    this.editError.set(null);
    this.editName = device.name;
    this.editSensors = device.sensorKeys.join(', ');
    this.editing.set(device);
  }

  async saveEdit(device: Device): Promise<void> {
    const changes = deviceChanges(device, this.editName, this.editSensors);
    if (!changes) {
      this.editing.set(null);
      return;
    }
    this.editError.set(null);
    await this.act(async () => {
      await this.graphql.request(
        `mutation($id: ID!, $v: Int!, $n: String, $s: [String!]) { updateDevice(id: $id, expectedVersion: $v, name: $n, sensorKeys: $s) { id } }`,
        { id: device.id, v: device.version, n: changes.name, s: changes.sensorKeys },
      );
      this.editing.set(null);
    }, (e) => this.editError.set(explainForm(e)));
  }

  async remove(device: Device): Promise<void> {
    await this.act(async () => {
      await this.graphql.request(`mutation($id: ID!, $v: Int!) { deleteDevice(id: $id, expectedVersion: $v) { id } }`, {
        id: device.id,
        v: device.version,
      });
      this.deleting.set(null);
    }, (e) => this.error.set(explain(e)));
  }

  private async act(work: () => Promise<void>, failed: (e: unknown) => void): Promise<void> {
    this.error.set(null);
    await runAction(this.busy, work, failed, () => this.load());
  }
}
