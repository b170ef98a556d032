import { Component, DestroyRef, OnInit, computed, inject, signal } from '@angular/core';
import { ActivatedRoute, RouterLink } from '@angular/router';
import { explain } from '../core/api-error';
import { between, duration, json, relative, when } from '../core/format';
import { Graphql } from '../core/graphql';
import { JOB_UPDATE_FIELDS, JobKind, JobState, JobUpdate, WAITING } from '../core/jobs';
import { Live, LiveHandle } from '../core/live';
import { Session } from '../core/session';
import { StateBadge } from '../shared/state-badge';

interface Attempt {
  attempt: number;
  startedAt: string | null;
  endedAt: string | null;
  outcome: string | null;
  error: string | null;
  worker: string | null;
}
interface JobDetail {
  id: string;
  kind: JobKind | null;
  state: JobState;
  attempt: number;
  maxAttempts: number | null;
  priority: 'HIGH' | 'NORMAL' | 'LOW' | null;
  progress: { percent: number; message: string } | null;
  controls: { timeoutMs: number | null; limitKey: string | null; waitingForKey: boolean; attemptDeadline: string | null } | null;
  round: number | null;
  payload: unknown;
  result: unknown;
  lastError: string | null;
  idempotencyKey: string | null;
  workflowRunId: string | null;
  runAt: string | null;
  nextRunAt: string | null;
  createdAt: string | null;
  updatedAt: string | null;
  attempts: Attempt[];
}

const JOB = `query Job($id: ID!) { job(id: $id) { id kind state attempt maxAttempts priority progress { percent message }
  controls { timeoutMs limitKey waitingForKey attemptDeadline } round payload result lastError
  idempotencyKey workflowRunId runAt nextRunAt createdAt updatedAt
  attempts { attempt startedAt endedAt outcome error worker } } }`;

/** One job: payload, result, every attempt, and its state as it changes. */
@Component({
  selector: 'sf-job',
  imports: [RouterLink, StateBadge],
  template: `
    <p><a routerLink="/jobs">← Jobs</a></p>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (duplicate()) { <p class="notice">That idempotency key was used before: this is the job it first queued.</p> }
    @if (job(); as job) {
      <h1>{{ job.kind?.toLowerCase() }} job <code>{{ job.id }}</code> <sf-state [state]="job.state" data-testid="job-state" /></h1>
      <section class="panel">
        <dl class="facts">
          <dt>Priority</dt><dd data-testid="priority">{{ job.priority?.toLowerCase() ?? '—' }}</dd>
          <dt>Attempt</dt><dd>{{ job.attempt }} of {{ job.maxAttempts ?? '—' }}@if (job.round) { (requeued {{ job.round }}×) }</dd>
          @if (job.nextRunAt && waitingToRun()) {
            <dt>Next run</dt><dd data-testid="next-run">{{ when(job.nextRunAt) }} ({{ relative(job.nextRunAt, now()) }})</dd>
          }
          @if (job.workflowRunId) {
            <dt>Workflow run</dt><dd><a [routerLink]="['/runs', job.workflowRunId]" data-testid="run-link"><code>{{ job.workflowRunId }}</code></a></dd>
          }
          <dt>Idempotency key</dt><dd>{{ job.idempotencyKey ?? '—' }}</dd>
          <dt>Created</dt><dd>{{ when(job.createdAt) }}</dd>
          <dt>Updated</dt><dd>{{ when(job.updatedAt) }}</dd>
          @if (job.controls; as c) {
            @if (c.timeoutMs !== null) { <dt>Timeout per attempt</dt><dd data-testid="timeout">{{ duration(c.timeoutMs) }}</dd> }
            @if (c.attemptDeadline && job.state === 'RUNNING') { <dt>Must end by</dt><dd>{{ when(c.attemptDeadline) }}</dd> }
            @if (c.limitKey) {
              <dt>Limit key</dt><dd data-testid="limit-key"><code>{{ c.limitKey }}</code>@if (c.waitingForKey && job.state === 'QUEUED') { <span class="muted" data-testid="waiting-for-key"> — waiting for a running job of this key to end</span> }</dd>
            }
          }
          @if (job.progress && job.state === 'RUNNING') {
            <dt>Progress</dt><dd data-testid="progress"><progress max="100" [value]="job.progress.percent"></progress> {{ job.progress.percent }}% {{ job.progress.message }}</dd>
          }
          @if (job.lastError) { <dt>Last error</dt><dd class="err" data-testid="last-error">{{ job.lastError }}</dd> }
        </dl>
        <div class="row actions">
          @if (cancellable() && session.can('OPERATOR')) {
            <button type="button" (click)="cancel()" [disabled]="busy()">{{ job.state === 'RUNNING' ? 'Ask to stop' : 'Cancel' }}</button>
          }
          @if (job.state === 'DEAD') {
            @if (session.can('ADMIN')) {
              <button type="button" class="primary" (click)="requeue()" [disabled]="busy()">Requeue</button>
            } @else {
              <span class="muted">Dead: an admin can requeue it from <a routerLink="/dead">Dead jobs</a>.</span>
            }
          }
        </div>
      </section>
      <div class="grid">
        <section class="panel"><h2>Payload</h2><pre data-testid="payload">{{ json(job.payload) }}</pre></section>
        <section class="panel"><h2>Result</h2><pre data-testid="result">{{ json(job.result) }}</pre></section>
      </div>
      <section class="panel">
        <h2>Attempts</h2>
        <div class="table-wrap">
          <table data-testid="attempts">
            <thead><tr><th class="num">#</th><th>Started</th><th>Took</th><th>Outcome</th><th>Worker</th><th>Error</th></tr></thead>
            <tbody>
              @for (a of job.attempts; track a.attempt) {
                <tr><td class="num">{{ a.attempt }}</td><td>{{ when(a.startedAt) }}</td><td>{{ between(a.startedAt, a.endedAt) }}</td>
                  <td>{{ a.outcome ?? 'running' }}</td><td>{{ a.worker ?? '—' }}</td><td class="err">{{ a.error }}</td></tr>
              } @empty {
                <tr><td colspan="6" class="muted">No attempt yet.</td></tr>
              }
            </tbody>
          </table>
        </div>
      </section>
      <section class="panel">
        <h2>Events seen on this page</h2>
        <ol class="events" data-testid="events">
          @for (e of events(); track e.cursor) { <li><code>{{ when(e.at) }}</code> {{ e.event }}@if (e.progress) { {{ e.progress.percent }}% {{ e.progress.message }} }@if (e.error) { — {{ e.error }} }</li> }
          @empty { <li class="muted">Waiting for the next change…</li> }
        </ol>
      </section>
    } @else if (!error()) {
      <p class="muted">Loading…</p>
    }
  `,
  styles: `.err { color: #991b1b; word-break: break-word; } .events { font-size: 0.85rem; margin: 0; } .actions { margin-top: 0.75rem; }`,
})
export class JobPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly route = inject(ActivatedRoute);
  private readonly destroyRef = inject(DestroyRef);
  protected readonly session = inject(Session);
  protected readonly when = when;
  protected readonly between = between;
  protected readonly relative = relative;
  protected readonly duration = duration;
  protected readonly json = json;
  protected readonly job = signal<JobDetail | null>(null);
  protected readonly events = signal<JobUpdate[]>([]);
  protected readonly error = signal<string | null>(null);
  protected readonly busy = signal(false);
  protected readonly duplicate = signal(false);
  protected readonly now = signal(Date.now());
  protected readonly cancellable = computed(() => WAITING.includes(this.job()?.state as JobState));
  protected readonly waitingToRun = computed(() => ['SCHEDULED', 'RETRYING'].includes(this.job()?.state ?? ''));
  private id = '';
  private subscription: LiveHandle | null = null;
  private refetch: ReturnType<typeof setTimeout> | null = null;

  ngOnInit(): void {
    const clock = setInterval(() => this.now.set(Date.now()), 1000);
    const sub = this.route.paramMap.subscribe((params) => {
      this.id = params.get('id') ?? '';
      this.duplicate.set(this.route.snapshot.queryParamMap.has('duplicate'));
      this.job.set(null);
      this.events.set([]);
      this.follow();
      void this.load();
    });
    this.destroyRef.onDestroy(() => {
      clearInterval(clock);
      sub.unsubscribe();
      this.subscription?.close();
      if (this.refetch) clearTimeout(this.refetch);
    });
  }

  /** Subscribes before loading: each event then triggers a fresh read, so none is missed. */
  private follow(): void {
    this.subscription?.close();
    this.subscription = this.live.subscribe<{ jobUpdates: JobUpdate }>({
      query: `subscription One($filter: JobUpdatesFilter, $after: String) { jobUpdates(filter: $filter, after: $after) { ${JOB_UPDATE_FIELDS} } }`,
      variables: (cursor) => ({ filter: { ids: [this.id] }, after: cursor ?? null }),
      cursorOf: (data) => data.jobUpdates.cursor,
      next: (data) => {
        const update = data.jobUpdates;
        this.events.update((events) => [...events, update].slice(-50));
        this.job.update((job) =>
          job
            ? { ...job, state: update.job.state, attempt: update.job.attempt, nextRunAt: update.nextRunAt, progress: update.progress ?? job.progress }
            : job,
        );
        if (this.refetch) clearTimeout(this.refetch);
        this.refetch = setTimeout(() => void this.load(), 150);
      },
    });
  }

  private async load(): Promise<void> {
    try {
      const data = await this.graphql.request<{ job: JobDetail | null }>(JOB, { id: this.id });
      if (!data.job) {
        this.error.set(`No job has the id ${this.id}. It may have been discarded, or removed by retention.`);
        return;
      }
      this.error.set(null);
      this.job.set(data.job);
    } catch (e) {
      this.error.set(explain(e));
    }
  }

  async cancel(): Promise<void> {
    await this.act(`mutation Cancel($id: ID!) { cancelJob(id: $id) { id } }`);
  }

  async requeue(): Promise<void> {
    await this.act(`mutation Requeue($id: ID!) { requeueDeadJob(id: $id) { id } }`);
  }

  private async act(mutation: string): Promise<void> {
    this.busy.set(true);
    try {
      await this.graphql.request(mutation, { id: this.id });
      await this.load();
    } catch (e) {
      this.error.set(explain(e));
    } finally {
      this.busy.set(false);
    }
  }
}
