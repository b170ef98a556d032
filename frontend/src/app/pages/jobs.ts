import { Component, DestroyRef, OnInit, inject, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { ActivatedRoute, Router, RouterLink } from '@angular/router';
import { explain } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import {
  JOB_KINDS,
  JOB_ROW_FIELDS,
  JOB_STATES,
  JOB_UPDATE_FIELDS,
  JobKind,
  JobRow,
  JobState,
  JobUpdate,
  applyJobUpdate,
} from '../core/jobs';
import { Live, LiveHandle } from '../core/live';
import { StateBadge } from '../shared/state-badge';

interface JobsAnswer {
  jobs: { eventCursor: string | null; pageInfo: { hasNextPage: boolean; endCursor: string | null }; nodes: JobRow[] };
}

const PAGE = 50;

/** Jobs from the ledger, filtered, with rows that follow the live event stream. */
@Component({
  selector: 'sf-jobs',
  imports: [FormsModule, RouterLink, StateBadge],
  template: `
    <h1>Jobs</h1>
    <form class="panel row" (ngSubmit)="applyFilters()">
      <label>Kind
        <select name="kind" [(ngModel)]="kind" data-testid="filter-kind">
          <option value="">any</option>
          @for (k of kinds; track k) { <option [value]="k">{{ k.toLowerCase() }}</option> }
        </select>
      </label>
      <label>State
        <select name="state" [(ngModel)]="state" data-testid="filter-state">
          <option value="">any</option>
          @for (s of states; track s) { <option [value]="s">{{ s.toLowerCase() }}</option> }
        </select>
      </label>
      <label>Created since <input name="since" type="datetime-local" [(ngModel)]="since" /></label>
      <label>Workflow run <input name="run" placeholder="run id" [(ngModel)]="run" data-testid="filter-run" /></label>
      <label>About <input name="subject" placeholder="sensor key or channel:ID" [(ngModel)]="subject" data-testid="filter-subject" /></label>
      <label>Idempotency key <input name="key" placeholder="api:…" [(ngModel)]="key" data-testid="filter-key" /></label>
      <button type="submit" class="primary">Filter</button>
      <button type="button" (click)="clearFilters()">Clear</button>
    </form>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    <section class="panel">
      <div class="table-wrap">
        <table data-testid="jobs">
          <thead><tr><th>Job</th><th>Kind</th><th>State</th><th class="num">Attempt</th><th>Created</th><th>Updated</th><th>Run</th><th>Last error</th></tr></thead>
          <tbody>
            @for (job of rows(); track job.id) {
              <tr [attr.data-job]="job.id">
                <td><a [routerLink]="['/jobs', job.id]"><code>{{ short(job.id) }}</code></a></td>
                <td>{{ job.kind?.toLowerCase() }}</td>
                <td><sf-state [state]="job.state" /></td>
                <td class="num">{{ job.attempt }}@if (job.maxAttempts) { / {{ job.maxAttempts }} }</td>
                <td>{{ when(job.createdAt) }}</td>
                <td>{{ when(job.updatedAt) }}</td>
                <td>@if (job.workflowRunId) { <a [routerLink]="['/runs', job.workflowRunId]"><code>{{ short(job.workflowRunId) }}</code></a> }</td>
                <td class="err">{{ job.lastError }}</td>
              </tr>
            } @empty {
              <tr><td colspan="8">
                @if (loading()) { <span class="muted">Loading…</span> }
                @else { <div class="empty">No jobs match these filters. Clear them, or <a routerLink="/submit">submit a task</a>.</div> }
              </td></tr>
            }
          </tbody>
        </table>
      </div>
      @if (nextPage()) {
        <p><button type="button" (click)="loadMore()" [disabled]="loading()">{{ loading() ? 'Loading…' : 'Load more' }}</button></p>
      }
    </section>
  `,
  styles: `.err { max-width: 22rem; color: #991b1b; font-size: 0.8rem; word-break: break-word; }`,
})
export class JobsPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly route = inject(ActivatedRoute);
  private readonly router = inject(Router);
  private readonly destroyRef = inject(DestroyRef);
  protected readonly when = when;
  protected readonly kinds = JOB_KINDS;
  protected readonly states = JOB_STATES;
  protected readonly kind = signal('');
  protected readonly state = signal('');
  protected readonly since = signal('');
  protected readonly run = signal('');
  protected readonly subject = signal('');
  protected readonly key = signal('');
  protected readonly rows = signal<JobRow[]>([]);
  protected readonly loading = signal(false);
  protected readonly error = signal<string | null>(null);
  protected readonly nextPage = signal<string | null>(null);
  private subscription: LiveHandle | null = null;

  ngOnInit(): void {
    const sub = this.route.queryParamMap.subscribe((params) => {
      this.kind.set(params.get('kind') ?? '');
      this.state.set(params.get('state') ?? '');
      this.since.set(params.get('since') ?? '');
      this.run.set(params.get('run') ?? '');
      this.subject.set(params.get('subject') ?? '');
      this.key.set(params.get('key') ?? '');
      void this.reload();
    });
    this.destroyRef.onDestroy(() => {
      sub.unsubscribe();
      this.subscription?.close();
    });
  }

  protected short(id: string): string {
    return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id;
  }

  applyFilters(): void {
    const queryParams: Record<string, string | null> = {
      kind: this.kind() || null,
      state: this.state() || null,
      since: this.since() || null,
      run: this.run().trim() || null,
      subject: this.subject().trim() || null,
      key: this.key().trim() || null,
    };
    void this.router.navigate([], { queryParams });
  }

  clearFilters(): void {
    void this.router.navigate([], { queryParams: {} });
  }

  private filter(): Record<string, unknown> {
    const filter: Record<string, unknown> = {};
    if (this.kind()) filter['kinds'] = [this.kind() as JobKind];
    if (this.state()) filter['states'] = [this.state() as JobState];
    if (this.run().trim()) filter['workflowRunId'] = this.run().trim();
    if (this.subject().trim()) filter['subject'] = this.subject().trim();
    if (this.key().trim()) filter['idempotencyKey'] = this.key().trim();
    if (this.since()) {
      const since = new Date(this.since());
      if (!Number.isNaN(since.getTime())) filter['since'] = since.toISOString();
    }
    return filter;
  }

  private async reload(): Promise<void> {
    this.subscription?.close();
    this.subscription = null;
    this.rows.set([]);
    this.loading.set(true);
    this.error.set(null);
    try {
      const page = await this.fetch(null);
      this.rows.set(page.nodes);
      this.nextPage.set(page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null);
      this.follow(page.eventCursor);
    } catch (e) {
      this.error.set(explain(e));
    } finally {
      this.loading.set(false);
    }
  }

  async loadMore(): Promise<void> {
    const after = this.nextPage();
    if (!after) return;
    this.loading.set(true);
    try {
      const page = await this.fetch(after);
      const known = new Set(this.rows().map((r) => r.id));
      this.rows.update((rows) => [...rows, ...page.nodes.filter((n) => !known.has(n.id))]);
      this.nextPage.set(page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null);
    } catch (e) {
      this.error.set(explain(e));
    } finally {
      this.loading.set(false);
    }
  }

  private async fetch(after: string | null): Promise<JobsAnswer['jobs']> {
    const data = await this.graphql.request<JobsAnswer>(
      `query Jobs($filter: JobsFilter, $first: Int, $after: String) {
        jobs(filter: $filter, first: $first, after: $after) {
          eventCursor pageInfo { hasNextPage endCursor } nodes { ${JOB_ROW_FIELDS} } } }`,
      { filter: this.filter(), first: PAGE, after },
    );
    return data.jobs;
  }

  /** Live rows from the list's own event cursor, so nothing between load and subscribe is missed. */
  private follow(eventCursor: string | null): void {
    const filter = this.filter();
    const liveFilter: Record<string, unknown> = {};
    if (filter['kinds']) liveFilter['kinds'] = filter['kinds'];
    if (filter['workflowRunId']) liveFilter['workflowRunId'] = filter['workflowRunId'];
    const states = (filter['states'] as JobState[] | undefined) ?? null;
    const onlyListed = Boolean(filter['subject'] || filter['idempotencyKey']);
    this.subscription = this.live.subscribe<{ jobUpdates: JobUpdate }>({
      query: `subscription Rows($filter: JobUpdatesFilter, $after: String) { jobUpdates(filter: $filter, after: $after) { ${JOB_UPDATE_FIELDS} } }`,
      cursor: eventCursor ?? undefined,
      variables: (cursor) => ({ filter: liveFilter, after: cursor ?? null }),
      cursorOf: (data) => data.jobUpdates.cursor,
      next: (data) => this.rows.update((rows) => applyJobUpdate(rows, data.jobUpdates, states, 500, onlyListed)),
      expired: () => void this.reload(),
    });
  }
}
