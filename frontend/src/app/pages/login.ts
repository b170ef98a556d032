import { Component, OnInit, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { ActivatedRoute, Router } from '@angular/router';
import { explain } from '../core/api-error';
import { Auth, SignUpPolicy } from '../core/auth';

/**
 * Sign in, or create an account where the server takes one: the first account (the admin,
 * with the bootstrap token in production), or anyone when the server allows open sign-up.
 */
@Component({
  selector: 'sf-login',
  imports: [FormsModule],
  template: `
    <section class="panel card">
      <h1>{{ registering() ? 'Create an account' : 'Sign in to Steadfast' }}</h1>
      <form (ngSubmit)="submit()">
        <label>Email <input name="email" type="email" autocomplete="username" required [(ngModel)]="email" /></label>
        <label>Password
          <input name="password" type="password" required minlength="8"
                 [attr.autocomplete]="registering() ? 'new-password' : 'current-password'" [(ngModel)]="password" />
        </label>
        @if (registering() && policy()?.bootstrapTokenRequired) {
          <label>Bootstrap token
            <input name="bootstrapToken" type="password" autocomplete="off" required [(ngModel)]="bootstrapToken" />
          </label>
          <small class="muted">This deployment has no admin yet: the first account needs the server's BOOTSTRAP_ADMIN_TOKEN.</small>
        }
        @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
        <button type="submit" class="primary" [disabled]="busy()">
          {{ busy() ? 'Please wait…' : registering() ? 'Create account' : 'Sign in' }}
        </button>
      </form>
      <p class="muted switch">
        @if (registering()) {
          Have an account? <button type="button" class="link" (click)="registering.set(false)">Sign in</button>
        } @else if (policy()?.open) {
          New here? <button type="button" class="link" (click)="registering.set(true)">Create an account</button>
          <br /><small>The first account is the admin; later ones start as viewers until an admin promotes them.</small>
        } @else if (policy()) {
          <small data-testid="signup-closed">New here? An admin creates accounts on this deployment.</small>
        }
      </p>
    </section>
  `,
  styles: `
    .card { max-width: 24rem; margin: 4rem auto; }
    form { display: flex; flex-direction: column; gap: 0.75rem; }
    .link { border: none; background: none; color: var(--accent); padding: 0; text-decoration: underline; }
    .switch { margin-top: 1rem; font-size: 0.9rem; }
  `,
})
export class LoginPage implements OnInit {
  private readonly auth = inject(Auth);
  private readonly router = inject(Router);
  private readonly route = inject(ActivatedRoute);
  protected readonly registering = signal(false);
  protected readonly busy = signal(false);
  protected readonly error = signal<string | null>(null);
  protected readonly email = signal('');
  protected readonly password = signal('');
  protected readonly bootstrapToken = signal('');
  protected readonly policy = signal<SignUpPolicy | null>(null);

  async ngOnInit(): Promise<void> {
    try {
      this.policy.set(await this.auth.signUpPolicy());
    } catch {
      // Signing in still works; only the sign-up link stays hidden.
    }
  }

  async submit(): Promise<void> {
    this.busy.set(true);
    this.error.set(null);
    try {
      if (this.registering()) await this.auth.register(this.email().trim(), this.password(), this.bootstrapToken());
      else await this.auth.login(this.email().trim(), this.password());
      const next = this.route.snapshot.queryParamMap.get('next');
      await this.router.navigateByUrl(next && next.startsWith('/') ? next : '/');
    } catch (e) {
      this.error.set(explain(e));
    } finally {
      this.busy.set(false);
    }
  }
}
