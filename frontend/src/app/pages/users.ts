import { Component, OnInit, computed, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { ROLES, Role, roleSummary } from '../core/access';
import { explain, explainForm } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { Session } from '../core/session';
import { runAction } from '../shared/action';
import { ConfirmBar } from '../shared/confirm-bar';

interface User {
  id: string;
  email: string;
  role: Role;
  createdAt: string;
  disabledAt: string | null;
  version: number;
}

const FIELDS = 'id email role createdAt disabledAt version';

/** Accounts and roles (admin): create, change a role, disable and enable. */
@Component({
  selector: 'sf-users',
  imports: [FormsModule, ConfirmBar],
  template: `
    <h1>Users</h1>
    @if (!admin()) { <p class="notice">Accounts and roles are managed by admins.</p> }
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (disabling(); as u) {
      <sf-confirm [message]="'Disable ' + u.email + '? They are signed out everywhere within a second and cannot sign in again until enabled.'"
        action="Disable" [busy]="busy()" (confirmed)="setDisabled(u, true)" (cancelled)="disabling.set(null)" />
    }
    <section class="panel table-wrap">
      <table data-testid="users">
        <thead><tr><th>Email</th><th>Role</th><th>Since</th><th>Status</th>@if (admin()) { <th></th> }</tr></thead>
        <tbody>
          @for (u of users(); track u.id) {
            <tr [attr.data-user]="u.email">
              <td>{{ u.email }}</td>
              <td>
                @if (admin() && u.id !== me()) {
                  <select [attr.aria-label]="'Role of ' + u.email" [ngModel]="u.role" (ngModelChange)="setRole(u, $event)" [disabled]="busy()">
                    @for (r of roles; track r) { <option [value]="r">{{ r.toLowerCase() }}</option> }
                  </select>
                } @else { {{ u.role.toLowerCase() }} }
                <br /><small class="muted">{{ summary(u.role) }}</small>
              </td>
              <td>{{ when(u.createdAt) }}</td>
              <td>{{ u.disabledAt ? 'disabled' : 'active' }}</td>
              @if (admin()) {
                <td>@if (u.id !== me()) {
                  @if (u.disabledAt) { <button type="button" (click)="setDisabled(u, false)" [disabled]="busy()">Enable</button> }
                  @else { <button type="button" (click)="disabling.set(u)" [disabled]="busy()">Disable</button> }
                }</td>
              }
            </tr>
          }
        </tbody>
      </table>
    </section>
    @if (admin()) {
      <form class="panel" (ngSubmit)="create()" data-testid="create-user">
        <h2>New account</h2>
        <div class="row">
          <label>Email <input name="email" type="email" required [(ngModel)]="email" /></label>
          <label>Password <input name="password" type="password" required [(ngModel)]="password" /></label>
          <label>Role
            <select name="role" [(ngModel)]="role">
              @for (r of roles; track r) { <option [value]="r">{{ r.toLowerCase() }}</option> }
            </select>
          </label>
          <button type="submit" class="primary" [disabled]="busy()">Create account</button>
        </div>
        @if (formError()) { <p class="field-error">{{ formError() }}</p> }
      </form>
    }
  `,
})
export class UsersPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly session = inject(Session);
  protected readonly when = when;
  protected readonly roles = ROLES;
  protected readonly summary = roleSummary;
  protected readonly admin = computed(() => this.session.can('ADMIN'));
  protected readonly me = computed(() => this.session.user()?.id ?? null);
  protected readonly users = signal<User[]>([]);
  protected readonly error = signal<string | null>(null);
  protected readonly formError = signal<string | null>(null);
  protected readonly busy = signal(false);
  protected readonly disabling = signal<User | null>(null);
  protected email = '';
  protected password = '';
  protected role: Role = 'VIEWER';

  ngOnInit(): void {
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const data = await this.graphql.request<{ users: { nodes: User[] } }>(`{ users(first: 100) { nodes { ${FIELDS} } } }`);
      this.users.set(data.users.nodes);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  async create(): Promise<void> {
    this.formError.set(null);
    await this.act(async () => {
      await this.graphql.request(
        `mutation($e: String!, $p: String!, $r: Role!) { createUser(email: $e, password: $p, role: $r) { id } }`,
        { e: this.email, p: this.password, r: this.role },
      );
      this.email = '';
      this.password = '';
    }, (e) => this.formError.set(explainForm(e)));
  }

  async setRole(user: User, role: Role): Promise<void> {
    await this.act(async () => {
      await this.graphql.request(`mutation($id: ID!, $r: Role!, $v: Int) { setUserRole(userId: $id, role: $r, expectedVersion: $v) { id } }`, {
        id: user.id,
        r: role,
        v: user.version,
      });
    }, (e) => this.error.set(explain(e)));
  }

  async setDisabled(user: User, disabled: boolean): Promise<void> {
    await this.act(async () => {
      await this.graphql.request(`mutation($id: ID!, $d: Boolean!, $v: Int) { setUserDisabled(userId: $id, disabled: $d, expectedVersion: $v) { id } }`, {
        id: user.id,
        d: disabled,
        v: user.version,
      });
      this.disabling.set(null);
    }, (e) => this.error.set(explain(e)));
  }

  private async act(work: () => Promise<void>, failed: (e: unknown) => void): Promise<void> {
    this.error.set(null);
    await runAction(this.busy, work, failed, () => this.load());
  }
}
