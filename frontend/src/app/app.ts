import { Component, computed, effect, inject, signal } from '@angular/core';
import { Router, RouterLink, RouterLinkActive, RouterOutlet } from '@angular/router';
import { Auth } from './core/auth';
import { Live } from './core/live';
import { Session } from './core/session';

/** The shell: navigation, whether the live feed is connected, and the signed-in user. */
@Component({
  selector: 'sf-root',
  imports: [RouterOutlet, RouterLink, RouterLinkActive],
  template: `
    @if (session.signedIn()) {
      <header class="top">
        <a routerLink="/" class="brand">Steadfast</a>
        <button type="button" class="menu" (click)="menuOpen.set(!menuOpen())" aria-label="Menu">☰</button>
        <nav [class.open]="menuOpen()" (click)="menuOpen.set(false)">
          <a routerLink="/" routerLinkActive="active" [routerLinkActiveOptions]="{ exact: true }">Overview</a>
          <a routerLink="/submit" routerLinkActive="active">Submit</a>
          <a routerLink="/jobs" routerLinkActive="active">Jobs</a>
          <a routerLink="/runs" routerLinkActive="active">Runs</a>
          <a routerLink="/schedules" routerLinkActive="active">Schedules</a>
          <a routerLink="/dead" routerLinkActive="active">Dead jobs</a>
          <a routerLink="/sensors" routerLinkActive="active">Sensors</a>
          <a routerLink="/alerts" routerLinkActive="active">Alerts</a>
          <a routerLink="/channels" routerLinkActive="active">Channels</a>
          @if (session.can('ADMIN')) {
            <a routerLink="/devices" routerLinkActive="active">Devices</a>
            <a routerLink="/users" routerLinkActive="active">Users</a>
          }
        </nav>
        <span class="live" [attr.data-status]="live.status()" [title]="liveTitle()">
          <i></i>{{ liveLabel() }}
        </span>
        <span class="who">{{ session.user()?.email }} · {{ session.role()?.toLowerCase() }}</span>
        <button type="button" (click)="signOut()">Sign out</button>
      </header>
    }
    <main>
      <router-outlet />
    </main>
  `,
  styles: `
    .top { display: flex; align-items: center; flex-wrap: wrap; gap: 0.75rem; padding: 0.5rem 1rem;
      background: #0f172a; color: #e2e8f0; }
    .brand { font-weight: 700; color: #fff; text-decoration: none; margin-right: 0.5rem; }
    nav { display: flex; gap: 0.25rem; flex-wrap: wrap; flex: 1; }
    nav a { color: #cbd5e1; text-decoration: none; padding: 0.3rem 0.6rem; border-radius: 4px; }
    nav a.active, nav a:hover { background: #1e293b; color: #fff; }
    .live { font-size: 0.8rem; display: inline-flex; align-items: center; gap: 0.3rem; }
    .live i { width: 0.6rem; height: 0.6rem; border-radius: 50%; background: #64748b; display: inline-block; }
    .live[data-status='live'] i { background: #22c55e; }
    .live[data-status='reconnecting'] i, .live[data-status='connecting'] i { background: #f59e0b; }
    .who { font-size: 0.8rem; color: #94a3b8; }
    .top button { background: #1e293b; color: #e2e8f0; border-color: #334155; }
    .menu { display: none; }
    main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
    @media (max-width: 720px) {
      .menu { display: inline-block; margin-left: auto; }
      nav { display: none; flex-basis: 100%; flex-direction: column; }
      nav.open { display: flex; }
      .who { display: none; }
      main { padding: 0.5rem; }
    }
  `,
})
export class App {
  protected readonly session = inject(Session);
  protected readonly live = inject(Live);
  private readonly auth = inject(Auth);
  private readonly router = inject(Router);
  protected readonly menuOpen = signal(false);

  constructor() {
    // The session can end under any page: a refused refresh, or a sign-out in another tab.
    let wasSignedIn = this.session.signedIn();
    effect(() => {
      const signedIn = this.session.signedIn();
      if (wasSignedIn && !signedIn && !this.router.url.startsWith('/login')) {
        void this.router.navigate(['/login'], { queryParams: { next: this.router.url } });
      }
      wasSignedIn = signedIn;
    });
  }

  protected readonly liveLabel = computed(() => {
    switch (this.live.status()) {
      case 'live':
        return 'Live';
      case 'connecting':
        return 'Connecting…';
      case 'reconnecting':
        return 'Reconnecting…';
      default:
        return 'Idle';
    }
  });
  protected readonly liveTitle = computed(() =>
    this.live.status() === 'reconnecting'
      ? 'The live feed dropped; it reconnects by itself and resumes where it left off.'
      : 'Live updates over a websocket',
  );

  async signOut(): Promise<void> {
    await this.auth.logout();
    await this.router.navigate(['/login']);
  }
}
