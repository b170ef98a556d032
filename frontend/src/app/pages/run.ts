import { Component, DestroyRef, OnInit, computed, inject, signal } from '@angular/core';
import { ActivatedRoute, RouterLink } from '@angular/router';
import { explain } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { JOB_UPDATE_FIELDS, JobUpdate } from '../core/jobs';
import { Live, LiveHandle } from '../core/live';
import { RUN_FIELDS, WorkflowRun, stages } from '../core/runs';
import { StateBadge } from '../shared/state-badge';

/** One run of the pipeline as a graph of its stages, each with its jobs, live. */
@Component({
  selector: 'sf-run',
  imports: [RouterLink, StateBadge],
  template: `
    <p><a routerLink="/runs">← Runs</a></p>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (run(); as run) {
      <h1>Run <code>{{ run.id }}</code> <sf-state [state]="run.state" data-testid="run-state" /></h1>
      <p class="muted">{{ run.workflow }} · started {{ when(run.createdAt) }} · {{ run.stepsFinished }} of {{ run.stepsTotal }} steps finished
        @if (run.finishedAt) { · finished {{ when(run.finishedAt) }} }</p>
    } @else if (!error()) {
      <h1>Run <code>{{ id }}</code></h1>
    }
    <section class="graph" data-testid="run-graph">
      @for (stage of stages(); track stage.kind; let last = $last) {
        <div class="stage" [attr.data-stage]="stage.kind">
          <h2>{{ stage.kind.toLowerCase() }}</h2>
          @for (step of stage.steps; track step.jobId) {
            <a class="step" [routerLink]="['/jobs', step.jobId]" [attr.data-step]="step.jobId">
              <code>{{ step.jobId.slice(-8) }}</code> <sf-state [state]="step.state" />
            </a>
          } @empty {
            <p class="muted none">none</p>
          }
        </div>
        @if (!last) { <div class="arrow" aria-hidden="true">→</div> }
      }
    </section>
  `,
  styles: `
    .graph { display: flex; align-items: stretch; gap: 0.5rem; overflow-x: auto; padding-bottom: 0.5rem; }
    .stage { flex: 1 1 0; min-width: 10rem; background: var(--panel); border: 1px solid var(--border); border-radius: 8px; padding: 0.6rem; }
    .stage h2 { margin: 0 0 0.5rem; font-size: 0.95rem; text-transform: capitalize; }
    .arrow { align-self: center; font-size: 1.5rem; color: var(--muted); }
    .step { display: flex; justify-content: space-between; align-items: center; gap: 0.3rem; padding: 0.3rem 0.4rem;
      border: 1px solid var(--border); border-radius: 6px; margin-bottom: 0.35rem; text-decoration: none; color: inherit; }
    .step:hover { border-color: var(--accent); }
    .none { font-size: 0.85rem; }
    @media (max-width: 720px) { .graph { flex-direction: column; } .arrow { transform: rotate(90deg); } }
  `,
})
export class RunPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly route = inject(ActivatedRoute);
  private readonly destroyRef = inject(DestroyRef);
  protected readonly when = when;
  protected readonly run = signal<WorkflowRun | null>(null);
  protected readonly updates = signal<ReadonlyMap<string, JobUpdate>>(new Map());
  protected readonly stages = computed(() => stages(this.run(), this.updates()));
  protected readonly error = signal<string | null>(null);
  protected id = '';
  private subscription: LiveHandle | null = null;
  private refetch: ReturnType<typeof setTimeout> | null = null;

  ngOnInit(): void {
    const sub = this.route.paramMap.subscribe((params) => {
      this.id = params.get('id') ?? '';
      this.run.set(null);
      this.updates.set(new Map());
      this.follow();
      void this.load();
    });
    this.destroyRef.onDestroy(() => {
      sub.unsubscribe();
      this.subscription?.close();
      if (this.refetch) clearTimeout(this.refetch);
    });
  }

  private follow(): void {
    this.subscription?.close();
    this.subscription = this.live.subscribe<{ jobUpdates: JobUpdate }>({
      query: `subscription Run($filter: JobUpdatesFilter, $after: String) { jobUpdates(filter: $filter, after: $after) { ${JOB_UPDATE_FIELDS} } }`,
      variables: (cursor) => ({ filter: { workflowRunId: this.id }, after: cursor ?? null }),
      cursorOf: (data) => data.jobUpdates.cursor,
      next: (data) => {
        const update = data.jobUpdates;
        this.updates.update((map) => new Map(map).set(update.job.id, update));
        if (this.refetch) clearTimeout(this.refetch);
        // The ledger records a moment after the event: read the run once things settle.
        this.refetch = setTimeout(() => void this.load(), 400);
      },
    });
  }

  private async load(): Promise<void> {
    try {
      const data = await this.graphql.request<{ workflowRun: WorkflowRun | null }>(
        `query Run($id: ID!) { workflowRun(id: $id) { ${RUN_FIELDS} } }`,
        { id: this.id },
      );
      if (data.workflowRun) {
        this.run.set(data.workflowRun);
        this.error.set(null);
      } else if (this.updates().size === 0) {
        this.error.set(`No run has the id ${this.id} yet. A new run appears once its ingest is recorded; this page updates by itself.`);
      }
    } catch (e) {
      this.error.set(explain(e));
    }
  }
}
