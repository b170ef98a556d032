import { Component, OnInit, computed, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { explain, explainForm } from '../core/api-error';
import { Channel, channelChanges } from '../core/channels';
import { Graphql } from '../core/graphql';
import { Session } from '../core/session';
import { runAction } from '../shared/action';
import { ConfirmBar } from '../shared/confirm-bar';

const FIELDS = 'id name kind url hasSecret enabled version';

/**
 * The channels alerts are sent to: edit (rename, move a webhook, rotate its secret), switch
 * off and on, delete. Every change names the version the page read, so an edit made against
 * a channel another admin changed is refused and explained.
 */
@Component({
  selector: 'sf-channels',
  imports: [FormsModule, ConfirmBar],
  template: `
    <h1>Channels</h1>
    @if (!admin()) { <p class="notice">Channels are managed by admins.</p> }
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (deleting(); as c) {
      <sf-confirm [message]="'Delete ' + c.name + '? Its rules stop notifying it and its delivery history goes.'"
        action="Delete" [busy]="busy()" (confirmed)="remove(c)" (cancelled)="deleting.set(null)" />
    }
    @if (editing(); as c) {
      <form class="panel" (ngSubmit)="save(c)" data-testid="edit-channel">
        <h2>Edit {{ c.name }}</h2>
        <div class="row">
          <label>Name <input name="editName" required [(ngModel)]="form.name" /></label>
          @if (c.kind === 'WEBHOOK') {
            <label>URL <input name="editUrl" type="url" [(ngModel)]="form.url" /></label>
            <label>New signing secret <input name="editSecret" type="password" autocomplete="off" [(ngModel)]="form.secret" placeholder="keep the current one" /></label>
          }
          <button type="submit" class="primary" [disabled]="busy()">Save</button>
          <button type="button" (click)="editing.set(null)" [disabled]="busy()">Cancel</button>
        </div>
        @if (editError()) { <p class="field-error" role="alert">{{ editError() }}</p> }
      </form>
    }
    <section class="panel table-wrap">
      <table data-testid="channel-table">
        <thead><tr><th>Channel</th><th>Kind</th><th>Where</th><th>State</th>@if (admin()) { <th></th> }</tr></thead>
        <tbody>
          @for (c of channels(); track c.id) {
            <tr [attr.data-channel]="c.name">
              <td>{{ c.name }} <small class="muted">#{{ c.id }}</small></td>
              <td>{{ c.kind?.toLowerCase() }}</td>
              <td>@if (c.url) { <code>{{ c.url }}</code> } @if (c.hasSecret) { · signed }</td>
              <td>@if (c.enabled) { on } @else { <span data-testid="channel-off">off</span> }</td>
              @if (admin()) {
                <td class="acts">
                  <button type="button" (click)="startEdit(c)" [disabled]="busy()">Edit</button>
                  <button type="button" (click)="setEnabled(c, !c.enabled)" [disabled]="busy()">{{ c.enabled ? 'Switch off' : 'Switch on' }}</button>
                  <button type="button" class="danger" (click)="deleting.set(c)" [disabled]="busy()">Delete</button>
                </td>
              }
            </tr>
          } @empty {
            <tr><td colspan="5"><div class="empty">No channels. Create one on the sensors page.</div></td></tr>
          }
        </tbody>
      </table>
    </section>
  `,
  styles: `.acts { white-space: nowrap; } .acts button { margin-right: 0.25rem; }`,
})
export class ChannelsPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly session = inject(Session);
  protected readonly admin = computed(() => this.session.can('ADMIN'));
  protected readonly channels = signal<Channel[]>([]);
  protected readonly error = signal<string | null>(null);
  protected readonly editError = signal<string | null>(null);
  protected readonly busy = signal(false);
  protected readonly editing = signal<Channel | null>(null);
  protected readonly deleting = signal<Channel | null>(null);
  protected form = { name: '', url: '', secret: '' };

  ngOnInit(): void {
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const data = await this.graphql.request<{ channels: Channel[] }>(`{ channels { ${FIELDS} } }`);
      this.channels.set(data.channels);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  startEdit(channel: Channel): void {
    this.editError.set(null);
    this.form = { name: channel.name, url: channel.url ?? '', secret: '' };
    this.editing.set(channel);
  }

  async save(channel: Channel): Promise<void> {
    const input = channelChanges(channel, this.form);
    if (!input) {
      this.editing.set(null);
      return;
    }
    this.editError.set(null);
    await this.act(async () => {
      await this.graphql.request(
        `mutation($id: ID!, $v: Int!, $input: UpdateChannelInput!) { updateChannel(id: $id, expectedVersion: $v, input: $input) { id } }`,
        { id: channel.id, v: channel.version, input },
      );
      this.editing.set(null);
    }, (e) => this.editError.set(explainForm(e)));
  }

  async setEnabled(channel: Channel, enabled: boolean): Promise<void> {
    await this.act(async () => {
      await this.graphql.request(
        `mutation($id: ID!, $on: Boolean!, $v: Int) { setChannelEnabled(id: $id, enabled: $on, expectedVersion: $v) { id } }`,
        { id: channel.id, on: enabled, v: channel.version },
      );
    }, (e) => this.error.set(explain(e)));
  }

  async remove(channel: Channel): Promise<void> {
    await this.act(async () => {
      await this.graphql.request(`mutation($id: ID!, $v: Int) { deleteChannel(id: $id, expectedVersion: $v) }`, {
        id: channel.id,
        v: channel.version,
      });
      this.deleting.set(null);
    }, (e) => this.error.set(explain(e)));
  }

  private async act(work: () => Promise<void>, failed: (e: unknown) => void): Promise<void> {
    this.error.set(null);
    await runAction(this.busy, work, failed, () => this.load());
  }
}
